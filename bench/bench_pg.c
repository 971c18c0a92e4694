/* C side of the pg figures (issue 6): a node that mirrors scope bench_scope
 * and stamps every change.
 *
 * The change callback takes clock_gettime(CLOCK_REALTIME) first (the same
 * clock as os:system_time/1 on the BEAM nodes of this host), then sends
 *   {c_ev, ThisNode, Kind, Group, MemberNode, Pids | Count, Us}
 * to {pg_orch, --report}: Kind join | leave | nodedown | suspect | clear,
 * Group the group term ('' for suspect/clear), Pids when at most 16, else
 * their count. Once its discovery round is done it sends
 * {c_hello, ThisNode, "OsPid"}. Runs until SIGTERM or SIGINT.
 * With --stamps 1, single-process join/leave events of group `g` are only
 * kept ({Kind, Pid, Us}), not sent, and bench_pg:stamps/0 (called from BEAM)
 * returns and clears them: the join-latency phase sends nothing while it
 * measures.
 * The pg options are the library defaults (probe 200 ms, suspect after 1 s). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cnode.h"

typedef struct {
    int kind; /* CNODE_PG_JOIN or CNODE_PG_LEAVE */
    erlang_pid pid;
    long long us;
} stamp;

typedef struct {
    cnode_node *node;
    cnode_proc *self;
    const char *report;
    int keep;
    pthread_mutex_t lock; /* guards self and the stamps: the I/O thread adds, a worker takes */
    stamp *v;
    size_t n, cap;
} bench_pg;

static int
is_group_g(const char *group, size_t len)
{
    char a[MAXATOMLEN_UTF8];
    int idx = 0;
    return ei_decode_atom(group, &idx, a) == 0 && (size_t)idx == len && strcmp(a, "g") == 0;
}

static void
keep_stamp(bench_pg *b, int kind, const erlang_pid *pid, long long us)
{
    pthread_mutex_lock(&b->lock);
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 1024;
        stamp *nv = realloc(b->v, nc * sizeof *nv);
        if (!nv) {
            pthread_mutex_unlock(&b->lock);
            return;
        }
        b->v = nv;
        b->cap = nc;
    }
    b->v[b->n++] = (stamp){kind, *pid, us};
    pthread_mutex_unlock(&b->lock);
}

/* bench_pg:stamps() -> [{join | leave, Pid, Us}], oldest first; clears them. */
static void
stamps_fn(cnode_call_ctx *ctx, const cnode_args *args, void *user_data)
{
    (void)args;
    bench_pg *b = user_data;
    ei_x_buff x;
    ei_x_new_with_version(&x);
    pthread_mutex_lock(&b->lock);
    if (b->n)
        ei_x_encode_list_header(&x, (long)b->n);
    for (size_t i = 0; i < b->n; i++) {
        ei_x_encode_tuple_header(&x, 3);
        ei_x_encode_atom(&x, b->v[i].kind == CNODE_PG_JOIN ? "join" : "leave");
        ei_x_encode_pid(&x, &b->v[i].pid);
        ei_x_encode_longlong(&x, b->v[i].us);
    }
    ei_x_encode_empty_list(&x);
    b->n = 0;
    pthread_mutex_unlock(&b->lock);
    cnode_reply(ctx, &x);
    ei_x_free(&x);
}

static void
on_change(cnode_pg_scope *scope, int event, uint64_t gen, const char *group, size_t group_len, const char *node,
          const erlang_pid *pids, size_t n, void *user_data)
{
    (void)scope;
    (void)gen;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long us = (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
    bench_pg *b = user_data;
    if (b->keep && (event == CNODE_PG_JOIN || event == CNODE_PG_LEAVE) && n == 1 && is_group_g(group, group_len)) {
        keep_stamp(b, event, &pids[0], us);
        return;
    }
    static const char *kinds[] = {"?", "join", "leave", "nodedown", "suspect", "clear"};
    ei_x_buff x;
    if (ei_x_new_with_version(&x) != 0)
        return;
    ei_x_encode_tuple_header(&x, 7);
    ei_x_encode_atom(&x, "c_ev");
    ei_x_encode_atom(&x, cnode_node_name(b->node));
    ei_x_encode_atom(&x, event >= 1 && event <= 5 ? kinds[event] : "?");
    if (group_len)
        ei_x_append_buf(&x, group, (int)group_len);
    else
        ei_x_encode_atom(&x, "");
    ei_x_encode_atom(&x, node ? node : "");
    if (n <= 16) {
        if (n)
            ei_x_encode_list_header(&x, (long)n);
        for (size_t i = 0; i < n; i++)
            ei_x_encode_pid(&x, &pids[i]);
        ei_x_encode_empty_list(&x);
    } else {
        ei_x_encode_long(&x, (long)n);
    }
    ei_x_encode_longlong(&x, us);
    pthread_mutex_lock(&b->lock);
    if (b->self)
        cnode_reg_send(b->self, "pg_orch", b->report, &x);
    pthread_mutex_unlock(&b->lock);
    ei_x_free(&x);
}

int
main(int argc, char **argv)
{
    const char *sname = "bench_pg", *cookie = NULL, *report = NULL, *scope_name = "bench_scope";
    const char *connect[8];
    int nconnect = 0, keep = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--sname"))
            sname = v;
        else if (!strcmp(k, "--cookie"))
            cookie = v;
        else if (!strcmp(k, "--report"))
            report = v;
        else if (!strcmp(k, "--stamps"))
            keep = atoi(v);
        else if (!strcmp(k, "--scope"))
            scope_name = v;
        else if (!strcmp(k, "--connect") && nconnect < 8)
            connect[nconnect++] = v;
    }
    if (!report)
        return 2;
    /* the library's threads inherit this mask; this thread waits for the signals */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    bench_pg b = {.report = report, .keep = keep};
    pthread_mutex_init(&b.lock, NULL);
    cnode_node_opts o = {.name = sname, .cookie = cookie};
    cnode_error err = {0};
    if (cnode_node_new(&o, &b.node, &err) != 0) {
        fprintf(stderr, "bench_pg: %s\n", err.message);
        return 1;
    }
    if (cnode_proc_new(b.node, NULL, &b.self) != 0)
        return 1;
    if (keep && cnode_register_function(b.node, "bench_pg", "stamps", 0, stamps_fn, &b) != 0)
        return 1;
    cnode_pg_opts po = {.on_change = on_change, .user_data = &b};
    cnode_pg_scope *scope;
    int rc = cnode_pg_scope_start(b.node, scope_name, &po, &scope);
    if (rc != 0) {
        fprintf(stderr, "bench_pg: scope: %s\n", cnode_strerror(rc));
        return 1;
    }
    for (int i = 0; i < nconnect; i++) {
        if (cnode_ping(b.node, connect[i], 5000, &err) != 0)
            fprintf(stderr, "bench_pg: cannot reach %s\n", connect[i]);
        cnode_pg_connect(scope, connect[i]);
    }
    cnode_pg_wait_ready(scope, 5000);
    char pid[32];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "c_hello");
    ei_x_encode_atom(&x, cnode_node_name(b.node));
    ei_x_encode_string(&x, pid);
    cnode_reg_send(b.self, "pg_orch", report, &x);
    ei_x_free(&x);
    int sig = 0;
    sigwait(&set, &sig);
    /* the process first (cnode_node_close frees handles still open), under
     * the lock the callback sends with */
    pthread_mutex_lock(&b.lock);
    cnode_proc_close(b.self);
    b.self = NULL;
    pthread_mutex_unlock(&b.lock);
    cnode_node_close(b.node);
    free(b.v);
    return 0;
}
