/* failover: calls that keep going while members die or hang. A few threads call
 * erlang:node() through a round-robin balancer over the members of a pg group, a call per
 * millisecond each, while the pg mirror reports each change; the demo kills one member with
 * kill -9 and freezes another with SIGSTOP and reads what this program saw.
 *
 *   build/examples/failover --cookie C --connect a@host --scope demo --group fo [--threads 4]
 *
 * Output, one line each, T being the wall clock in milliseconds (so a script can subtract
 * the time it sent a signal):
 *   T nodedown|leave|join|suspect|clear NODE      a change in the group (pg mirror, probe)
 *   T report calls=N failed=N NODE=N... [errors: TEXT]   answer to "report" on stdin:
 *                                                  the calls sent since the last "mark"
 *                                                  that have finished
 *   T marked                                       answer to "mark": the counts start over
 * "quit" on stdin (or its end) stops. Calls time out after --timeout ms (default 1000):
 * a call sent to a node that froze fails that way, until the probe marks the node suspect
 * (1 s without an answer) and the balancer stops choosing it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode.h"
#include "cnode_balancer.h"

#define MAX_NODES 16

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    long calls, failed;
    char node[MAX_NODES][CNODE_BALANCER_NODE_MAX];
    long count[MAX_NODES];
    int nnodes;
    char first_error[300];
    unsigned epoch; /* bumped by each mark: a call counts in the window it was sent in */
} win;
static atomic_int stop;
static cnode_balancer *balancer;
static char group_term[MAXATOMLEN_UTF8 + 8]; /* our group as encoded (no 131): to skip other groups' changes */
static int group_term_len;

static long long
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* pg changes, on the I/O thread: one line each, at once */
static void
on_change(cnode_pg_scope *scope, int event, uint64_t gen, const char *group, size_t group_len, const char *node,
          const erlang_pid *pids, size_t n, void *ud)
{
    (void)scope, (void)ud, (void)gen;
    static const char *const names[] = {"?", "join", "leave", "nodedown", "suspect", "clear"};
    if (event < 1 || event > 5)
        return;
    if (event < CNODE_PG_SUSPECT) { /* members of a group: ours only, named by their node */
        if (n == 0 || group_len != (size_t)group_term_len || memcmp(group, group_term, group_len) != 0)
            return;
        node = pids[0].node;
    }
    pthread_mutex_lock(&lock);
    printf("%lld %s %s\n", now_ms(), names[event], node);
    fflush(stdout);
    pthread_mutex_unlock(&lock);
}

static void *
caller(void *arg)
{
    (void)arg;
    ei_x_buff args, reply;
    ei_x_new_with_version(&args);
    ei_x_encode_empty_list(&args);
    ei_x_new(&reply);
    while (!atomic_load(&stop)) {
        char served_by[CNODE_BALANCER_NODE_MAX] = "";
        cnode_error err = {0};
        reply.index = 0;
        pthread_mutex_lock(&lock);
        unsigned epoch = win.epoch;
        pthread_mutex_unlock(&lock);
        int rc = cnode_balancer_call(balancer, "erlang", "node", &args, NULL, &reply, served_by, sizeof served_by, &err);
        pthread_mutex_lock(&lock);
        if (epoch != win.epoch) {
            /* sent before the last mark: not this window's */
        } else if (win.calls++, rc == 0) {
            int i;
            for (i = 0; i < win.nnodes && strcmp(win.node[i], served_by) != 0; i++)
                ;
            if (i == win.nnodes && i < MAX_NODES)
                snprintf(win.node[win.nnodes++], sizeof win.node[0], "%s", served_by);
            if (i < MAX_NODES)
                win.count[i]++;
        } else {
            win.failed++;
            if (!win.first_error[0])
                snprintf(win.first_error, sizeof win.first_error, "%s on %s", err.message[0] ? err.message : cnode_strerror(rc),
                         served_by[0] ? served_by : "?");
        }
        pthread_mutex_unlock(&lock);
        cnode_error_clear(&err);
        /* a call per millisecond per thread at most (20 ms apart while no member is there) */
        struct timespec ts = {0, (rc == CNODE_EUNAVAILABLE ? 20 : 1) * 1000000L};
        nanosleep(&ts, NULL);
    }
    ei_x_free(&args);
    ei_x_free(&reply);
    return NULL;
}

int
main(int argc, char **argv)
{
    const char *sname = "failover", *cookie = NULL, *connect = NULL, *scope_name = NULL, *group = NULL;
    long timeout_ms = 1000;
    int nthreads = 4;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--sname"))
            sname = argv[i + 1];
        else if (!strcmp(argv[i], "--cookie"))
            cookie = argv[i + 1];
        else if (!strcmp(argv[i], "--connect"))
            connect = argv[i + 1];
        else if (!strcmp(argv[i], "--scope"))
            scope_name = argv[i + 1];
        else if (!strcmp(argv[i], "--group"))
            group = argv[i + 1];
        else if (!strcmp(argv[i], "--threads"))
            nthreads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--timeout"))
            timeout_ms = atol(argv[i + 1]);
    }
    if (!connect || !scope_name || !group || strlen(group) >= MAXATOMLEN || nthreads < 1 || nthreads > 64 || timeout_ms < 1) {
        fprintf(stderr, "usage: failover --connect NODE --scope S --group G [--sname N] [--cookie C] [--threads N] "
                        "[--timeout MS]\n");
        return 2;
    }
    if (ei_encode_atom(group_term, &group_term_len, group) < 0) {
        fprintf(stderr, "failover: bad group name\n");
        return 2;
    }
    cnode_node_opts no = {.name = sname, .cookie = cookie};
    cnode_node *node;
    cnode_error err = {0};
    if (cnode_node_new(&no, &node, &err) != 0) {
        fprintf(stderr, "failover: %s\n", err.message);
        return 1;
    }
    cnode_pg_opts po = {.on_change = on_change}; /* probe: every 200 ms, suspect after 1 s */
    cnode_pg_scope *scope;
    int rc = cnode_pg_scope_start(node, scope_name, &po, &scope);
    if (rc == 0) {
        cnode_ping(node, connect, 5000, NULL);
        cnode_pg_connect(scope, connect);
        cnode_pg_wait_ready(scope, 0);
        cnode_balancer_opts o = {.algorithm = CNODE_LB_ROUND_ROBIN, .timeout_ms = timeout_ms};
        rc = cnode_balancer_new(node, scope, group, &o, &balancer, &err);
    }
    if (rc != 0) {
        fprintf(stderr, "failover: %s\n", err.message[0] ? err.message : cnode_strerror(rc));
        cnode_node_close(node);
        return 1;
    }
    pthread_t th[64];
    int started = 0;
    for (; started < nthreads; started++)
        if (pthread_create(&th[started], NULL, caller, NULL) != 0)
            break;
    char line[64];
    while (fgets(line, sizeof line, stdin) && strncmp(line, "quit", 4) != 0) {
        pthread_mutex_lock(&lock);
        if (!strncmp(line, "report", 6)) {
            printf("%lld report calls=%ld failed=%ld", now_ms(), win.calls, win.failed);
            for (int i = 0; i < win.nnodes; i++)
                printf(" %s=%ld", win.node[i], win.count[i]);
            printf(win.first_error[0] ? " errors: %s\n" : "\n", win.first_error);
        } else if (!strncmp(line, "mark", 4)) {
            unsigned epoch = win.epoch + 1;
            memset(&win, 0, sizeof win);
            win.epoch = epoch;
            printf("%lld marked\n", now_ms());
        }
        fflush(stdout);
        pthread_mutex_unlock(&lock);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    cnode_balancer_free(balancer);
    cnode_node_close(node);
    return 0;
}
