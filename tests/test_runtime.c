/* The runtime's limits and threads, between two nodes in this process on a
 * private epmd: a sender past out_queue_bytes waits and then times out with
 * nothing lost or reordered; the runtime's own signals past the hard cap take
 * the link down; limits.peers; library threads block signals; a host name
 * that takes long to resolve holds up neither the loop nor other dials. */
#include <CUnit/CUnit.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cnode.h"
#include "testutil.h"

static pid_t epmd_pid;
static atomic_int name_seq;

/* ---- a getaddrinfo that can be made slow for one name --------------------------------- */
/* The library is linked into this program, so its calls come here first. */
#define SLOW_HOST "slow.invalid"
static pthread_mutex_t slow_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slow_cond = PTHREAD_COND_INITIALIZER;
static int slow_in, slow_out, slow_release;

int
getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    if (node && strcmp(node, SLOW_HOST) == 0) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 30; /* bounded even if the test never releases it */
        pthread_mutex_lock(&slow_lock);
        slow_in = 1;
        pthread_cond_broadcast(&slow_cond);
        while (!slow_release && pthread_cond_timedwait(&slow_cond, &slow_lock, &dl) == 0)
            ;
        slow_out = 1;
        pthread_mutex_unlock(&slow_lock);
        return EAI_NONAME;
    }
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
    return real ? real(node, service, hints, res) : EAI_FAIL;
}

/* ---- helpers -------------------------------------------------------------------------------- */

static cnode_node *
mknode(const char *prefix, int io_thread, const cnode_limits *lim)
{
    char name[64];
    snprintf(name, sizeof name, "%s%d_%d", prefix, (int)getpid(), atomic_fetch_add(&name_seq, 1));
    cnode_node_opts o = {.name = name, .cookie = "runtimecookie", .no_io_thread = !io_thread};
    if (lim)
        o.limits = *lim;
    cnode_node *n = NULL;
    cnode_error err = {0};
    if (cnode_node_new(&o, &n, &err) != 0)
        fprintf(stderr, "cnode_node_new(%s): %s\n", name, err.message);
    cnode_error_clear(&err);
    return n;
}

/* Polls a no_io_thread node from a thread of its own until told to stop. */
typedef struct {
    cnode_node *node;
    atomic_int stop;
    pthread_t t;
} poller;

static void *
poller_main(void *arg)
{
    poller *p = arg;
    while (!atomic_load(&p->stop))
        cnode_poll(p->node, 10);
    return NULL;
}

static void
poller_start(poller *p, cnode_node *n)
{
    p->node = n;
    atomic_store(&p->stop, 0);
    pthread_create(&p->t, NULL, poller_main, p);
}

static void
poller_stop(poller *p)
{
    atomic_store(&p->stop, 1);
    pthread_join(p->t, NULL);
}

static int
connected(cnode_node *a, const char *peer)
{
    char **v = NULL;
    size_t n = 0, i;
    int found = 0;
    if (cnode_nodes(a, &v, &n) != 0)
        return 0;
    for (i = 0; i < n; i++)
        found |= strcmp(v[i], peer) == 0;
    cnode_strv_free(v, n);
    return found;
}

/* {Seq, <<0:64/unit:8192>>} messages from src to sink on b, numbered from
 * *seq on, until one send does not return 0 or *seq reaches upto: that rc. */
static int
send_seq(cnode_proc *src, cnode_node *b, long *seq, long upto)
{
    static const char zeros[64 << 10];
    int rc = 0;
    while (*seq < upto && rc == 0) {
        ei_x_buff x;
        ei_x_new_with_version(&x);
        ei_x_encode_tuple_header(&x, 2);
        ei_x_encode_long(&x, *seq);
        ei_x_encode_binary(&x, zeros, (long)sizeof zeros);
        rc = cnode_reg_send(src, "sink", cnode_node_name(b), &x);
        ei_x_free(&x);
        *seq += rc == 0;
    }
    return rc;
}

/* How many of the messages numbered 0, 1, ... arrive at sink in order (it
 * stops at the first out of order), waiting up to 30 s (scaled) for n.
 * pump: a node without an I/O thread whose loop must run meanwhile, or NULL. */
static long
receive_in_order(cnode_proc *sink, long n, cnode_node *pump)
{
    long got = 0;
    long long end = tu_now_ms() + tu_ms(30000);
    while (got < n && tu_now_ms() < end) {
        if (pump)
            cnode_poll(pump, 0);
        cnode_msg m = {0};
        if (cnode_receive(sink, 20, &m) != 0)
            continue;
        int idx = 0, ver, ar;
        long seq = -1;
        ei_decode_version(m.data.buff, &idx, &ver);
        ei_decode_tuple_header(m.data.buff, &idx, &ar);
        ei_decode_long(m.data.buff, &idx, &seq);
        cnode_msg_free(&m);
        if (seq != got)
            break;
        got++;
    }
    return got;
}

/* ---- tests ---------------------------------------------------------------------------------- */

/* A message sender past out_queue_bytes waits for room, then gives up with
 * CNODE_ETIMEOUT; every send that returned 0 arrives, in order, with no gap. */
static void
test_out_queue_waits_then_times_out(void)
{
    cnode_limits la = {.out_queue_bytes = 256 << 10, .send_timeout_ms = 300};
    cnode_node *a = mknode("rta", 1, &la), *b = mknode("rtb", 0, NULL);
    CU_ASSERT_FATAL(a && b);
    cnode_proc *sink = NULL, *src = NULL;
    CU_ASSERT_FATAL(cnode_proc_new(b, "sink", &sink) == 0);
    CU_ASSERT_FATAL(cnode_proc_new(a, NULL, &src) == 0);
    poller pb;
    poller_start(&pb, b);
    CU_ASSERT_FATAL(cnode_ping(a, cnode_node_name(b), (unsigned)tu_ms(10000), NULL) == 0);
    poller_stop(&pb); /* b reads nothing more: its socket fills, then a's queue */

    long sent = 0;
    /* 4000 x 64 KiB = 256 MB at most: loopback buffers hold a few MB */
    CU_ASSERT_EQUAL(send_seq(src, b, &sent, 4000), CNODE_ETIMEOUT);
    cnode_stats st;
    CU_ASSERT_FATAL(cnode_node_stats(a, &st) == 0);
    CU_ASSERT(st.send_waits >= 1);
    CU_ASSERT(st.send_timeouts >= 1);
    CU_ASSERT_EQUAL(st.out_queue_overflows, 0);
    CU_ASSERT(connected(a, cnode_node_name(b)));

    /* b reads again (cnode_receive drives its loop): all of them, in order */
    CU_ASSERT_EQUAL(receive_in_order(sink, sent, NULL), sent);
    cnode_msg m = {0};
    CU_ASSERT_EQUAL(cnode_receive(sink, 200, &m), CNODE_ETIMEOUT); /* nothing after the refused one */
    cnode_msg_free(&m);
    cnode_proc_close(src);
    cnode_proc_close(sink);
    cnode_node_close(a);
    cnode_node_close(b);
}

/* On a node without an I/O thread a sender that waits for room runs the loop
 * itself: once the peer reads again, its sends go through instead of timing
 * out, with nothing lost or reordered. */
static void
test_out_queue_poll_mode_sender_drives_loop(void)
{
    cnode_limits la = {.out_queue_bytes = 256 << 10, .send_timeout_ms = 300};
    cnode_node *a = mknode("rta", 0, &la), *b = mknode("rtb", 0, NULL);
    CU_ASSERT_FATAL(a && b);
    cnode_proc *sink = NULL, *src = NULL;
    CU_ASSERT_FATAL(cnode_proc_new(b, "sink", &sink) == 0);
    CU_ASSERT_FATAL(cnode_proc_new(a, NULL, &src) == 0);
    poller pb;
    poller_start(&pb, b);
    CU_ASSERT_FATAL(cnode_ping(a, cnode_node_name(b), (unsigned)tu_ms(10000), NULL) == 0);
    poller_stop(&pb);

    long sent = 0;
    CU_ASSERT_EQUAL(send_seq(src, b, &sent, 4000), CNODE_ETIMEOUT); /* b reads nothing: a's queue fills */
    /* b reads again; a has no I/O thread: only its waiting sender can flush */
    poller_start(&pb, b);
    long more = sent + 200;
    CU_ASSERT_EQUAL(send_seq(src, b, &sent, more), 0);
    CU_ASSERT_EQUAL(sent, more);
    poller_stop(&pb);
    CU_ASSERT_EQUAL(receive_in_order(sink, sent, a), sent); /* a's last frames still go out */
    cnode_proc_close(src);
    cnode_proc_close(sink);
    cnode_node_close(a);
    cnode_node_close(b);
}

/* The runtime's own signals never wait; past 64 x out_queue_bytes the link
 * goes down instead of anything being dropped while it stays up. */
static void
test_out_queue_overflow_takes_link_down(void)
{
    cnode_limits la = {.out_queue_bytes = 64 << 10};
    cnode_node *a = mknode("rta", 1, &la), *b = mknode("rtb", 0, NULL);
    CU_ASSERT_FATAL(a && b);
    cnode_proc *victim = NULL, *src = NULL;
    CU_ASSERT_FATAL(cnode_proc_new(b, NULL, &victim) == 0);
    CU_ASSERT_FATAL(cnode_proc_new(a, NULL, &src) == 0);
    CU_ASSERT_FATAL(cnode_proc_trap_exit(victim, 1) == 0);
    poller pb;
    poller_start(&pb, b);
    CU_ASSERT_FATAL(cnode_ping(a, cnode_node_name(b), (unsigned)tu_ms(10000), NULL) == 0);
    poller_stop(&pb);

    size_t size = 256 << 10;
    char *fill = calloc(1, size);
    ei_x_buff reason;
    ei_x_new_with_version(&reason);
    ei_x_encode_binary(&reason, fill, (long)size);
    free(fill);
    int i, rc = 0;
    for (i = 0; i < 400 && rc == 0; i++) /* 100 MB at most */
        rc = cnode_exit_signal(src, cnode_proc_pid(victim), &reason);
    ei_x_free(&reason);
    CU_ASSERT_EQUAL(rc, CNODE_ENOCONNECTION);
    long long end = tu_now_ms() + tu_ms(10000);
    while (connected(a, cnode_node_name(b)) && tu_now_ms() < end)
        usleep(10000);
    CU_ASSERT(!connected(a, cnode_node_name(b)));
    cnode_stats st;
    cnode_node_stats(a, &st);
    CU_ASSERT_EQUAL(st.out_queue_overflows, 1);
    cnode_proc_close(src);
    cnode_proc_close(victim);
    cnode_node_close(a);
    cnode_node_close(b);
}

/* Waits (up to ms, scaled) until a's peers_now is want; returns it. */
static unsigned long long
peers_settle(cnode_node *a, unsigned long long want, long ms)
{
    cnode_stats st;
    long long end = tu_now_ms() + tu_ms(ms);
    for (;;) {
        cnode_node_stats(a, &st);
        if (st.peers_now == want || tu_now_ms() >= end)
            return st.peers_now;
        usleep(10000);
    }
}

/* limits.peers counts the records held: while b is up, a node past the limit
 * is not recorded and a ping says why; once b is gone and nothing refers to
 * it, its record is reclaimed and the name can be had again. */
static void
test_peers_limit(void)
{
    cnode_limits la = {.peers = 1};
    cnode_node *a = mknode("rta", 1, &la), *b = mknode("rtb", 1, NULL);
    CU_ASSERT_FATAL(a != NULL && b != NULL);
    CU_ASSERT_EQUAL_FATAL(cnode_ping(a, cnode_node_name(b), 5000, NULL), 0);
    cnode_error err = {0};
    CU_ASSERT_EQUAL(cnode_ping(a, "nobody1@127.0.0.1", 3000, &err), CNODE_ENOCONNECTION);
    CU_ASSERT(strstr(err.message, "limits.peers") != NULL);
    cnode_error_clear(&err);
    cnode_stats st;
    cnode_node_stats(a, &st);
    CU_ASSERT_EQUAL(st.peers_now, 1);
    CU_ASSERT_EQUAL(st.peers_refused, 1);
    cnode_node_close(b);
    CU_ASSERT_EQUAL(peers_settle(a, 0, 10000), 0);
    /* room again: pang for the plain reason */
    CU_ASSERT_EQUAL(cnode_ping(a, "nobody1@127.0.0.1", 3000, &err), CNODE_ENOCONNECTION);
    CU_ASSERT(strstr(err.message, "limits.peers") == NULL);
    cnode_error_clear(&err);
    cnode_node_stats(a, &st);
    CU_ASSERT_EQUAL(st.peers_refused, 1);
    cnode_node_close(a);
}

/* Records of nodes that were only named (pings that failed, sends to nobody)
 * are reclaimed; a record still referred to (a queued message from that
 * node, a link) stays until the reference goes, then is reclaimed too. */
static void
test_peer_records_reclaimed(void)
{
    cnode_node *a = mknode("rta", 1, NULL), *b = mknode("rtb", 1, NULL);
    CU_ASSERT_FATAL(a != NULL && b != NULL);
    cnode_proc *pa = NULL, *pb = NULL;
    CU_ASSERT_EQUAL_FATAL(cnode_proc_new(a, "keeper", &pa), 0);
    CU_ASSERT_EQUAL_FATAL(cnode_proc_new(b, NULL, &pb), 0);
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_atom(&x, "hello");
    for (int i = 0; i < 40; i++) {
        char name[64];
        snprintf(name, sizeof name, "nobody%d@127.0.0.1", i);
        if (i % 2) {
            CU_ASSERT_EQUAL(cnode_ping(a, name, 3000, NULL), CNODE_ENOCONNECTION);
        } else {
            CU_ASSERT_EQUAL(cnode_reg_send(pa, "x", name, &x), 0); /* queued, then dropped: nobody there */
        }
    }
    CU_ASSERT_EQUAL(peers_settle(a, 0, 10000), 0);

    /* b's message waits in keeper's mailbox; keeper traps exits and is linked to pb */
    CU_ASSERT_EQUAL(cnode_proc_trap_exit(pa, 1), 0);
    CU_ASSERT_EQUAL(cnode_reg_send(pb, "keeper", cnode_node_name(a), &x), 0);
    ei_x_free(&x);
    CU_ASSERT_EQUAL(cnode_link(pa, cnode_proc_pid(pb)), 0);
    long long end;
    char bname[256];
    snprintf(bname, sizeof bname, "%s", cnode_node_name(b));
    cnode_proc_close(pb);
    cnode_node_close(b);
    /* down, but the queued message (and then the EXIT) keep b's record */
    end = tu_now_ms() + tu_ms(10000);
    while (connected(a, bname) && tu_now_ms() < end)
        usleep(10000);
    CU_ASSERT(!connected(a, bname));
    CU_ASSERT_EQUAL(peers_settle(a, 0, 2500), 1); /* over two sweeps */
    int got = 0, from_b = 0;
    cnode_msg m = {0};
    while (cnode_receive(pa, (int)tu_ms(2000), &m) == 0) {
        got++;
        from_b += m.has_from && strcmp(m.from.node, bname) == 0; /* the name, read after nodedown */
        cnode_msg_free(&m);
    }
    CU_ASSERT(got >= 1);
    CU_ASSERT(from_b >= 1);
    CU_ASSERT_EQUAL(peers_settle(a, 0, 10000), 0);
    cnode_proc_close(pa);
    cnode_node_close(a);
}

/* A monitor of a process on a node that cannot be reached fires with
 * noconnection, as in BEAM, and leaves no record behind. */
static void
test_monitor_unreachable_node(void)
{
    cnode_node *a = mknode("rta", 1, NULL);
    CU_ASSERT_FATAL(a != NULL);
    cnode_proc *pa = NULL;
    CU_ASSERT_EQUAL_FATAL(cnode_proc_new(a, NULL, &pa), 0);
    erlang_pid far;
    memset(&far, 0, sizeof far);
    snprintf(far.node, sizeof far.node, "nobody@127.0.0.1");
    far.num = 42;
    far.creation = 1;
    erlang_ref ref;
    CU_ASSERT_EQUAL_FATAL(cnode_monitor(pa, &far, &ref), 0);
    cnode_msg m = {0};
    CU_ASSERT_EQUAL_FATAL(cnode_receive_ref(pa, &ref, (int)tu_ms(10000), &m), 0);
    int idx = 0, ver, ar;
    char atom[MAXATOMLEN], reason[MAXATOMLEN];
    ei_decode_version(m.data.buff, &idx, &ver);
    ei_decode_tuple_header(m.data.buff, &idx, &ar);
    ei_decode_atom(m.data.buff, &idx, atom);
    CU_ASSERT_STRING_EQUAL(atom, "DOWN");
    for (int k = 0; k < 3; k++)
        ei_skip_term(m.data.buff, &idx);
    CU_ASSERT_EQUAL(ei_decode_atom(m.data.buff, &idx, reason), 0);
    CU_ASSERT_STRING_EQUAL(reason, "noconnection");
    cnode_msg_free(&m);
    CU_ASSERT_EQUAL(peers_settle(a, 0, 10000), 0);
    cnode_proc_close(pa);
    cnode_node_close(a);
}

static void
test_library_threads_block_signals(void)
{
    cnode_node *a = mknode("rta", 1, NULL);
    CU_ASSERT_FATAL(a != NULL);
    pid_t self = (pid_t)syscall(SYS_gettid);
    DIR *d = opendir("/proc/self/task");
    CU_ASSERT_FATAL(d != NULL);
    int others = 0, blocked = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        pid_t tid = (pid_t)atoi(e->d_name);
        if (tid <= 0 || tid == self)
            continue;
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        unsigned long long mask = 0;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "SigBlk: %llx", &mask) == 1)
                break;
        fclose(f);
        others++;
        unsigned long long want = (1ULL << (SIGINT - 1)) | (1ULL << (SIGTERM - 1)) | (1ULL << (SIGUSR1 - 1)) |
                                  (1ULL << (SIGCHLD - 1)) | (1ULL << (SIGPIPE - 1));
        blocked += (mask & want) == want;
    }
    closedir(d);
    CU_ASSERT(others >= 1); /* the I/O thread at least (workers start with the first served call) */
    CU_ASSERT_EQUAL(blocked, others);
    cnode_node_close(a);
}

typedef struct {
    cnode_node *node;
    const char *peer;
    int rc;
} ping_job;

static void *
ping_main(void *arg)
{
    ping_job *j = arg;
    j->rc = cnode_ping(j->node, j->peer, 20000, NULL);
    return NULL;
}

/* A dial whose host name takes long to resolve does not hold up the loop or
 * a dial to another host: that one completes while the lookup still runs. */
static void
test_slow_resolution_blocks_nothing(void)
{
    cnode_node *a = mknode("rta", 1, NULL), *b = mknode("rtb", 1, NULL);
    CU_ASSERT_FATAL(a && b);
    ping_job slow = {a, "x@" SLOW_HOST, 0};
    pthread_t t;
    pthread_create(&t, NULL, ping_main, &slow);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += (time_t)(tu_ms(10000) / 1000);
    pthread_mutex_lock(&slow_lock);
    while (!slow_in && pthread_cond_timedwait(&slow_cond, &slow_lock, &dl) == 0)
        ;
    int in = slow_in;
    pthread_mutex_unlock(&slow_lock);
    CU_ASSERT_FATAL(in);
    /* b's host is a name too (the short host name), resolved while the slow one hangs */
    CU_ASSERT_EQUAL(cnode_ping(a, cnode_node_name(b), (unsigned)tu_ms(10000), NULL), 0);
    pthread_mutex_lock(&slow_lock);
    int out = slow_out;
    slow_release = 1;
    pthread_cond_broadcast(&slow_cond);
    pthread_mutex_unlock(&slow_lock);
    CU_ASSERT_EQUAL(out, 0); /* the answer came while the slow lookup was still running */
    pthread_join(t, NULL);
    CU_ASSERT_EQUAL(slow.rc, CNODE_ENOCONNECTION);
    cnode_node_close(a);
    cnode_node_close(b);
}

static int
suite_init(void)
{
    return tu_epmd_start(&epmd_pid) == 0 ? 0 : -1;
}

static int
suite_clean(void)
{
    tu_epmd_stop(&epmd_pid);
    return 0;
}

void
cnode_test_register(void)
{
    CU_pSuite s = CU_add_suite("runtime", suite_init, suite_clean);
    ADD_TEST(s, test_out_queue_waits_then_times_out);
    ADD_TEST(s, test_out_queue_poll_mode_sender_drives_loop);
    ADD_TEST(s, test_out_queue_overflow_takes_link_down);
    ADD_TEST(s, test_peers_limit);
    ADD_TEST(s, test_peer_records_reclaimed);
    ADD_TEST(s, test_monitor_unreachable_node);
    ADD_TEST(s, test_library_threads_block_signals);
    ADD_TEST(s, test_slow_resolution_blocks_nothing);
}
