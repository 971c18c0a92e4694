/* The call path where the waiting caller reads its own reply (cnode/README.md, "Callers that
 * read"), between C nodes on a private epmd: many callers at once while the I/O thread reads
 * other traffic on the same connection, a reading caller that times out hands the socket on, a
 * late reply is dropped, the peer's link or the peer itself dies while a caller reads, and poll
 * mode next to thread mode. Frames held back to go out many per sendmsg ("Batching" there):
 * windows of requests from several threads while calls, messages and served requests cross the
 * same connection; a worker's batched replies arrive in order; a batch that nobody flushes goes
 * out by the loop's tick; a peer that dies with requests in a batch. */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cnode.h"
#include "cnode/internal.h"
#include "tests/testutil.h"

#define CALLERS 8
#define CALLS 150
#define MESSAGES 1500

static cnode_node *srv, *cli;
static pid_t epmd_pid;
static char srv_name[300];

/* ---- served functions ------------------------------------------------------------------------ */

static atomic_int gate[4];    /* hot:hold/1 with argument N waits for gate[N % 4] */
static atomic_int entered[4]; /* ... and counts its entry there */
static atomic_int finished[4];

static void
reply_arg(cnode_call_ctx *ctx, const cnode_args *a)
{
    ei_x_buff x;
    ei_x_new_with_version(&x);
    int s = a->idx[0], e = s;
    ei_skip_term(a->buf, &e);
    ei_x_append_buf(&x, a->buf + s, e - s);
    cnode_reply(ctx, &x);
    ei_x_free(&x);
}

static void
h_echo(cnode_call_ctx *ctx, const cnode_args *a, void *ud)
{
    (void)ud;
    reply_arg(ctx, a);
}

/* Answers its argument once gate[N % 4] opens; a cancelled call waits too when the argument is
 * odd (its reply then comes late, after the caller gave up). */
static void
h_hold(cnode_call_ctx *ctx, const cnode_args *a, void *ud)
{
    (void)ud;
    long n = 0;
    int i = a->idx[0];
    ei_decode_long(a->buf, &i, &n);
    int g = (int)(n % 4);
    atomic_fetch_add(&entered[g], 1);
    long long end = tu_now_ms() + tu_ms(30000);
    while (!atomic_load(&gate[g]) && tu_now_ms() < end) {
        if (!(n & 1) && cnode_call_cancelled(ctx))
            break;
        usleep(2000);
    }
    reply_arg(ctx, a);
    atomic_fetch_add(&finished[g], 1);
}

static int
wait_count(atomic_int *c, int want, int ms)
{
    long long end = tu_now_ms() + tu_ms(ms);
    while (atomic_load(c) < want) {
        if (tu_now_ms() > end)
            return 0;
        usleep(2000);
    }
    return 1;
}

static cnode_stats
stats(cnode_node *n)
{
    cnode_stats st;
    memset(&st, 0, sizeof st);
    cnode_node_stats(n, &st);
    return st;
}

static ei_x_buff
args_of(long a, long b)
{
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_long(&x, a);
    ei_x_encode_long(&x, b);
    ei_x_encode_empty_list(&x);
    return x;
}

static ei_x_buff
arg_long(long n)
{
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_long(&x, n);
    ei_x_encode_empty_list(&x);
    return x;
}

/* 1 if reply (with 131) is {a, b} */
static int
is_pair(const ei_x_buff *r, long a, long b)
{
    int idx = 0, ver, ar;
    long x, y;
    return ei_decode_version(r->buff, &idx, &ver) == 0 && ei_decode_tuple_header(r->buff, &idx, &ar) == 0 && ar == 2 &&
           ei_decode_long(r->buff, &idx, &x) == 0 && ei_decode_long(r->buff, &idx, &y) == 0 && x == a && y == b &&
           idx == r->index;
}

static int
is_long(const ei_x_buff *r, long n)
{
    int idx = 0, ver;
    long x;
    return ei_decode_version(r->buff, &idx, &ver) == 0 && ei_decode_long(r->buff, &idx, &x) == 0 && x == n &&
           idx == r->index;
}

/* ---- suite ------------------------------------------------------------------------------------- */

static cnode_node *
start_node(const char *prefix, int no_io)
{
    char name[64];
    snprintf(name, sizeof name, "%s_%d", prefix, (int)getpid());
    cnode_node_opts no = {.name = name, .cookie = "hot_cookie", .workers = CALLERS + 4, .no_io_thread = no_io};
    cnode_node *n = NULL;
    cnode_error err = {0};
    if (cnode_node_new(&no, &n, &err) != 0)
        fprintf(stderr, "hot_path: no node %s: %s\n", name, err.message);
    cnode_error_clear(&err);
    return n;
}

static int
suite_init(void)
{
    if (tu_epmd_start(&epmd_pid) != 0)
        return 1;
    srv = start_node("hotsrv", 0);
    cli = srv ? start_node("hotcli", 0) : NULL;
    if (!srv || !cli) {
        cnode_node_close(srv);
        srv = NULL;
        tu_epmd_stop(&epmd_pid);
        return 1;
    }
    snprintf(srv_name, sizeof srv_name, "%s", cnode_node_name(srv));
    cnode_register_function(srv, "hot", "echo", 1, h_echo, NULL);
    cnode_register_function(srv, "hot", "hold", 1, h_hold, NULL);
    cnode_register_function(cli, "hot", "echo", 1, h_echo, NULL); /* served requests the other way */
    return cnode_ping(cli, srv_name, (unsigned)tu_ms(10000), NULL) == 0 ? 0 : 1;
}

static int
suite_clean(void)
{
    for (int i = 0; i < 4; i++)
        atomic_store(&gate[i], 1);
    cnode_node_close(cli);
    cnode_node_close(srv);
    cli = srv = NULL;
    tu_epmd_stop(&epmd_pid);
    return 0;
}

/* ---- many callers ------------------------------------------------------------------------------ */

static atomic_int wrong, cb_ok, cb_bad;

static void *
caller_main(void *arg)
{
    long t = (long)(intptr_t)arg;
    ei_x_buff reply;
    ei_x_new(&reply);
    for (long i = 0; i < CALLS; i++) {
        ei_x_buff a = args_of(t, i);
        reply.index = 0;
        cnode_error err = {0};
        int rc = cnode_call(cli, srv_name, "hot", "echo", &a, (unsigned)tu_ms(20000), &reply, &err);
        if (rc != 0 || !is_pair(&reply, t, i))
            atomic_fetch_add(&wrong, 1);
        cnode_error_clear(&err);
        ei_x_free(&a);
    }
    ei_x_free(&reply);
    return NULL;
}

/* a completion callback: it runs on the I/O thread, so its reply never goes to a caller */
static void
on_done(cnode_req *r, int status, const ei_x_buff *reply, const cnode_error *err, void *ud)
{
    (void)r;
    (void)err;
    long i = (long)(intptr_t)ud;
    if (status == 0 && reply && is_pair(reply, 1000, i))
        atomic_fetch_add(&cb_ok, 1);
    else
        atomic_fetch_add(&cb_bad, 1);
}

static void *
sender_main(void *arg)
{
    (void)arg;
    cnode_proc *p = NULL;
    if (cnode_proc_new(srv, NULL, &p) != 0)
        return NULL;
    for (long i = 0; i < MESSAGES; i++) {
        ei_x_buff m;
        ei_x_new_with_version(&m);
        ei_x_encode_long(&m, i);
        cnode_reg_send(p, "hot_sink", cnode_node_name(cli), &m);
        ei_x_free(&m);
        if (i % 100 == 0)
            usleep(1000); /* spread the messages over the calls */
    }
    cnode_proc_close(p);
    return NULL;
}

/* CALLERS threads call one peer at once while that peer also sends messages and completions go
 * to callbacks over the same connection: every caller gets exactly its own reply, every callback
 * its own, every message arrives once and in order, and callers did read replies themselves. */
static void
test_many_callers(void)
{
    cnode_proc *sink;
    CU_ASSERT_EQUAL_FATAL(cnode_proc_new(cli, "hot_sink", &sink), 0);
    uint64_t reads0 = stats(cli).caller_reads;
    atomic_store(&wrong, 0);
    pthread_t th[CALLERS], snd;
    for (long t = 0; t < CALLERS; t++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[t], NULL, caller_main, (void *)(intptr_t)t), 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&snd, NULL, sender_main, NULL), 0);
    for (long i = 0; i < 100; i++) {
        ei_x_buff a = args_of(1000, i);
        CU_ASSERT_EQUAL(cnode_send_request(cli, srv_name, "hot", "echo", &a, (unsigned)tu_ms(20000), on_done,
                                           (void *)(intptr_t)i, NULL),
                        0);
        ei_x_free(&a);
    }
    long next = 0;
    long long end = tu_now_ms() + tu_ms(60000);
    while (next < MESSAGES && tu_now_ms() < end) {
        cnode_msg m = {0};
        if (cnode_receive(sink, 100, &m) != 0)
            continue;
        int idx = 0, ver;
        long v = -1;
        ei_decode_version(m.data.buff, &idx, &ver);
        ei_decode_long(m.data.buff, &idx, &v);
        CU_ASSERT_EQUAL(v, next);
        next = v + 1;
        cnode_msg_free(&m);
    }
    CU_ASSERT_EQUAL(next, MESSAGES);
    for (int t = 0; t < CALLERS; t++)
        pthread_join(th[t], NULL);
    pthread_join(snd, NULL);
    CU_ASSERT_EQUAL(atomic_load(&wrong), 0);
    CU_ASSERT(wait_count(&cb_ok, 100, 20000));
    CU_ASSERT_EQUAL(atomic_load(&cb_bad), 0);
    cnode_msg m = {0};
    CU_ASSERT_EQUAL(cnode_receive(sink, 0, &m), CNODE_ETIMEOUT); /* nothing twice */
    /* a sequential call reads its own reply: both frames of it */
    uint64_t reads1 = stats(cli).caller_reads;
    ei_x_buff a = args_of(7, 7), reply;
    ei_x_new(&reply);
    CU_ASSERT_EQUAL(cnode_call(cli, srv_name, "hot", "echo", &a, (unsigned)tu_ms(20000), &reply, NULL), 0);
    CU_ASSERT(is_pair(&reply, 7, 7));
    CU_ASSERT(stats(cli).caller_reads >= reads1 + 2);
    CU_ASSERT(reads1 > reads0);
    ei_x_free(&a);
    ei_x_free(&reply);
    cnode_proc_close(sink);
}

/* After a call the caller leaves the socket out of epoll's read interest for a moment (the loop
 * re-arms it): a message that comes right after the call, with no call to read it, still arrives. */
static void
test_message_after_call(void)
{
    cnode_proc *sink, *from;
    CU_ASSERT_EQUAL_FATAL(cnode_proc_new(cli, "hot_sink2", &sink), 0);
    CU_ASSERT_EQUAL_FATAL(cnode_proc_new(srv, NULL, &from), 0);
    ei_x_buff a = args_of(1, 2), reply, m;
    ei_x_new(&reply);
    ei_x_new_with_version(&m);
    ei_x_encode_atom(&m, "after");
    for (int i = 0; i < 20; i++) {
        reply.index = 0;
        CU_ASSERT_EQUAL(cnode_call(cli, srv_name, "hot", "echo", &a, (unsigned)tu_ms(20000), &reply, NULL), 0);
        CU_ASSERT_EQUAL(cnode_reg_send(from, "hot_sink2", cnode_node_name(cli), &m), 0);
        cnode_msg got = {0};
        CU_ASSERT_EQUAL(cnode_receive(sink, (int)tu_ms(10000), &got), 0);
        cnode_msg_free(&got);
    }
    ei_x_free(&a);
    ei_x_free(&reply);
    ei_x_free(&m);
    cnode_proc_close(from);
    cnode_proc_close(sink);
}

/* ---- a reading caller times out ---------------------------------------------------------------- */

typedef struct {
    long arg;
    unsigned timeout_ms;
    int rc;
    ei_x_buff reply;
} call_job;

static void *
call_main(void *arg)
{
    call_job *j = arg;
    ei_x_buff a = arg_long(j->arg);
    ei_x_new(&j->reply);
    j->rc = cnode_call(cli, srv_name, "hot", "hold", &a, j->timeout_ms, &j->reply, NULL);
    ei_x_free(&a);
    return NULL;
}

/* A holds the read token (its call went out first, on an idle connection) and times out; B,
 * waiting behind it, still gets its reply, which arrives only after A gave up. */
static void
test_timeout_hands_on(void)
{
    memset(entered, 0, sizeof entered);
    memset(finished, 0, sizeof finished);
    atomic_store(&gate[0], 0);
    atomic_store(&gate[1], 0);
    call_job a = {.arg = 4, .timeout_ms = (unsigned)tu_ms(300)};    /* gate 0, cancellable */
    call_job b = {.arg = 1, .timeout_ms = (unsigned)tu_ms(20000)}; /* gate 1 */
    pthread_t ta, tb;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&ta, NULL, call_main, &a), 0);
    CU_ASSERT_FATAL(wait_count(&entered[0], 1, 10000));
    CU_ASSERT_EQUAL_FATAL(pthread_create(&tb, NULL, call_main, &b), 0);
    CU_ASSERT_FATAL(wait_count(&entered[1], 1, 10000));
    pthread_join(ta, NULL);
    CU_ASSERT_EQUAL(a.rc, CNODE_ETIMEOUT);
    atomic_store(&gate[1], 1);
    pthread_join(tb, NULL);
    CU_ASSERT_EQUAL(b.rc, 0);
    CU_ASSERT(is_long(&b.reply, 1));
    atomic_store(&gate[0], 1);
    CU_ASSERT(wait_count(&finished[0], 1, 10000));
    ei_x_free(&a.reply);
    ei_x_free(&b.reply);
}

/* ---- a late reply --------------------------------------------------------------------------------- */

/* A call times out; its reply comes while another caller reads the socket: that reader leaves
 * it to the loop, which drops it; the reader still gets its own reply, and the next call its
 * own (LeakSanitizer checks that the dropped reply leaves nothing behind). */
static void
test_late_reply_dropped(void)
{
    memset(entered, 0, sizeof entered);
    memset(finished, 0, sizeof finished);
    atomic_store(&gate[3], 0);
    atomic_store(&gate[2], 0);
    ei_x_buff a = arg_long(3), reply; /* gate 3, odd: answers even after the caller gave up */
    ei_x_new(&reply);
    CU_ASSERT_EQUAL(cnode_call(cli, srv_name, "hot", "hold", &a, (unsigned)tu_ms(200), &reply, NULL), CNODE_ETIMEOUT);
    ei_x_free(&a);
    call_job c = {.arg = 2, .timeout_ms = (unsigned)tu_ms(20000)}; /* gate 2 */
    pthread_t tc;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&tc, NULL, call_main, &c), 0);
    CU_ASSERT_FATAL(wait_count(&entered[2], 1, 10000));
    atomic_store(&gate[3], 1);
    CU_ASSERT(wait_count(&finished[3], 1, 10000));
    atomic_store(&gate[2], 1);
    pthread_join(tc, NULL);
    CU_ASSERT_EQUAL(c.rc, 0);
    CU_ASSERT(is_long(&c.reply, 2));
    ei_x_free(&c.reply);
    a = arg_long(9);
    atomic_store(&gate[1], 1);
    reply.index = 0;
    CU_ASSERT_EQUAL(cnode_call(cli, srv_name, "hot", "hold", &a, (unsigned)tu_ms(20000), &reply, NULL), 0);
    CU_ASSERT(is_long(&reply, 9));
    ei_x_free(&a);
    ei_x_free(&reply);
}

/* ---- the link or the peer dies while a caller reads ---------------------------------------------- */

/* The connection is taken down (cnode_disconnect: the I/O thread closes it) while the caller is
 * blocked reading it: the caller is woken and gets noconnection long before its deadline. */
static void
test_disconnect_while_reading(void)
{
    memset(entered, 0, sizeof entered);
    atomic_store(&gate[0], 0);
    call_job d = {.arg = 8, .timeout_ms = (unsigned)tu_ms(60000)};
    pthread_t td;
    long long t0 = tu_now_ms();
    CU_ASSERT_EQUAL_FATAL(pthread_create(&td, NULL, call_main, &d), 0);
    CU_ASSERT_FATAL(wait_count(&entered[0], 1, 10000));
    CU_ASSERT_EQUAL(cnode_disconnect(cli, srv_name), 0);
    pthread_join(td, NULL);
    CU_ASSERT_EQUAL(d.rc, CNODE_ENOCONNECTION);
    CU_ASSERT(tu_now_ms() - t0 < tu_ms(30000));
    atomic_store(&gate[0], 1);
    ei_x_free(&d.reply);
    /* and the next call reconnects */
    ei_x_buff a = arg_long(5), reply;
    ei_x_new(&reply);
    atomic_store(&gate[1], 1);
    CU_ASSERT_EQUAL(cnode_call(cli, srv_name, "hot", "hold", &a, (unsigned)tu_ms(20000), &reply, NULL), 0);
    CU_ASSERT(is_long(&reply, 5));
    ei_x_free(&a);
    ei_x_free(&reply);
}

/* served_now from cnode_demo:stats/0's map, or -1 */
static long
served_now(const char *peer)
{
    ei_x_buff none, reply;
    ei_x_new_with_version(&none);
    ei_x_encode_empty_list(&none);
    ei_x_new(&reply);
    long v = -1;
    if (cnode_call(cli, peer, "cnode_demo", "stats", &none, (unsigned)tu_ms(20000), &reply, NULL) == 0) {
        int idx = 0, ver, n;
        char k[MAXATOMLEN_UTF8];
        unsigned long long u;
        if (ei_decode_version(reply.buff, &idx, &ver) == 0 && ei_decode_map_header(reply.buff, &idx, &n) == 0)
            for (int i = 0; i < n; i++)
                if (ei_decode_atom(reply.buff, &idx, k) == 0 && ei_decode_ulonglong(reply.buff, &idx, &u) == 0 &&
                    strcmp(k, "served_now") == 0)
                    v = (long)u;
    }
    ei_x_free(&none);
    ei_x_free(&reply);
    return v;
}

typedef struct {
    const char *peer;
    int rc;
} sleep_job;

static void *
sleep_main(void *arg)
{
    sleep_job *j = arg;
    ei_x_buff a = arg_long(60000), reply;
    ei_x_new(&reply);
    j->rc = cnode_call(cli, j->peer, "cnode_demo", "sleep", &a, (unsigned)tu_ms(60000), &reply, NULL);
    ei_x_free(&a);
    ei_x_free(&reply);
    return NULL;
}

/* A peer process (`cnode serve`) is killed while our caller reads its socket, waiting for
 * cnode_demo:sleep(60000): noconnection, long before the deadline. */
static void
test_peer_killed_while_reading(void)
{
    char name[64], full[300];
    snprintf(name, sizeof name, "hotpeer_%d", (int)getpid());
    pid_t pid = fork();
    if (pid == 0) {
        execl("build/asan/cnode", "cnode", "--sname", name, "--cookie", "hot_cookie", "serve", (char *)NULL);
        _exit(127);
    }
    CU_ASSERT_FATAL(pid > 0);
    const char *at = strchr(srv_name, '@');
    snprintf(full, sizeof full, "%s%s", name, at);
    long long end = tu_now_ms() + tu_ms(20000);
    while (cnode_ping(cli, full, 1000, NULL) != 0 && tu_now_ms() < end)
        usleep(50000);
    sleep_job j = {.peer = full, .rc = 1};
    long long t0 = tu_now_ms();
    pthread_t ts;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&ts, NULL, sleep_main, &j), 0);
    /* the sleep is running there once stats counts it next to the stats call itself */
    while (served_now(full) < 2 && tu_now_ms() < end)
        usleep(10000);
    kill(pid, SIGKILL);
    pthread_join(ts, NULL);
    CU_ASSERT_EQUAL(j.rc, CNODE_ENOCONNECTION);
    CU_ASSERT(tu_now_ms() - t0 < tu_ms(40000));
    waitpid(pid, NULL, 0);
}


/* ---- batching under load ------------------------------------------------------------------------- */

#define WINDOWS 3
#define WINDOW 32
#define WIN_CALLS 400

/* One thread keeps WINDOW requests in flight to srv (each new one is held back for a batch while
 * the others are out), checking every reply is its own. */
static void *
window_main(void *arg)
{
    long t = (long)(intptr_t)arg;
    cnode_req *slot[WINDOW] = {0};
    ei_x_buff reply;
    ei_x_new(&reply);
    for (long i = 0; i < WIN_CALLS + WINDOW; i++) {
        int k = (int)(i % WINDOW);
        if (slot[k]) {
            reply.index = 0;
            cnode_error err = {0};
            if (cnode_receive_response(slot[k], (int)tu_ms(20000), &reply, &err) != 0 ||
                !is_pair(&reply, t, i - WINDOW))
                atomic_fetch_add(&wrong, 1);
            cnode_error_clear(&err);
            slot[k] = NULL;
        }
        if (i < WIN_CALLS) {
            ei_x_buff a = args_of(t, i);
            if (cnode_send_request(cli, srv_name, "hot", "echo", &a, (unsigned)tu_ms(20000), NULL, NULL, &slot[k]) != 0)
                atomic_fetch_add(&wrong, 1);
            ei_x_free(&a);
        }
    }
    ei_x_free(&reply);
    return NULL;
}

/* srv calls cli (served requests arriving on the connection the windows use) */
static void *
reverse_main(void *arg)
{
    (void)arg;
    ei_x_buff reply;
    ei_x_new(&reply);
    for (long i = 0; i < CALLS; i++) {
        ei_x_buff a = args_of(2000, i);
        reply.index = 0;
        if (cnode_call(srv, cnode_node_name(cli), "hot", "echo", &a, (unsigned)tu_ms(20000), &reply, NULL) != 0 ||
            !is_pair(&reply, 2000, i))
            atomic_fetch_add(&wrong, 1);
        ei_x_free(&a);
    }
    ei_x_free(&reply);
    return NULL;
}

/* Windows of requests from several threads, blocking callers, messages from srv and calls from
 * srv all on one connection: every reply is its caller's, every message arrives once and in
 * order, and requests did go out several per sendmsg. */
static void
test_windows_batched(void)
{
    cnode_proc *sink;
    CU_ASSERT_EQUAL_FATAL(cnode_proc_new(cli, "hot_sink", &sink), 0);
    cnode_stats st0 = stats(cli);
    atomic_store(&wrong, 0);
    pthread_t win[WINDOWS], th[CALLERS / 2], snd, rev;
    for (long t = 0; t < WINDOWS; t++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&win[t], NULL, window_main, (void *)(intptr_t)(100 + t)), 0);
    for (long t = 0; t < CALLERS / 2; t++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[t], NULL, caller_main, (void *)(intptr_t)t), 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&snd, NULL, sender_main, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&rev, NULL, reverse_main, NULL), 0);
    long next = 0;
    long long end = tu_now_ms() + tu_ms(60000);
    while (next < MESSAGES && tu_now_ms() < end) {
        cnode_msg m = {0};
        if (cnode_receive(sink, 100, &m) != 0)
            continue;
        int idx = 0, ver;
        long v = -1;
        ei_decode_version(m.data.buff, &idx, &ver);
        ei_decode_long(m.data.buff, &idx, &v);
        CU_ASSERT_EQUAL(v, next);
        next = v + 1;
        cnode_msg_free(&m);
    }
    CU_ASSERT_EQUAL(next, MESSAGES);
    for (int t = 0; t < WINDOWS; t++)
        pthread_join(win[t], NULL);
    for (int t = 0; t < CALLERS / 2; t++)
        pthread_join(th[t], NULL);
    pthread_join(snd, NULL);
    pthread_join(rev, NULL);
    CU_ASSERT_EQUAL(atomic_load(&wrong), 0);
    cnode_msg m = {0};
    CU_ASSERT_EQUAL(cnode_receive(sink, 0, &m), CNODE_ETIMEOUT); /* nothing twice */
    cnode_stats st1 = stats(cli);
    CU_ASSERT(st1.deferred_frames > st0.deferred_frames);
    /* some sendmsg carried several frames */
    CU_ASSERT(st1.out_frames - st0.out_frames > st1.out_writes - st0.out_writes);
    cnode_proc_close(sink);
}

/* A caller reads the reply to the first of a window and lets go of the socket with the others
 * still in flight (no callback, nobody asleep: it leaves the socket unarmed for a moment);
 * polled with no wait, the others still complete (the loop takes the socket back). */
static void
test_window_polled(void)
{
    cnode_req *r[8] = {0};
    for (long i = 0; i < 8; i++) {
        ei_x_buff a = args_of(4000, i);
        CU_ASSERT_EQUAL(
            cnode_send_request(cli, srv_name, "hot", "echo", &a, (unsigned)tu_ms(20000), NULL, NULL, &r[i]), 0);
        ei_x_free(&a);
    }
    ei_x_buff reply;
    ei_x_new(&reply);
    CU_ASSERT_EQUAL(r[0] ? cnode_receive_response(r[0], (int)tu_ms(20000), &reply, NULL) : -1, 0);
    CU_ASSERT(is_pair(&reply, 4000, 0));
    long long end = tu_now_ms() + tu_ms(20000);
    for (long i = 1; i < 8; i++) {
        int rc = CNODE_EAGAIN;
        reply.index = 0;
        while (r[i] && (rc = cnode_receive_response(r[i], 0, &reply, NULL)) == CNODE_EAGAIN && tu_now_ms() < end)
            usleep(1000);
        CU_ASSERT_EQUAL(rc, 0);
        CU_ASSERT(rc == 0 && is_pair(&reply, 4000, i));
        if (rc == CNODE_EAGAIN)
            cnode_req_abandon(r[i]);
    }
    ei_x_free(&reply);
}

static atomic_int order_next, order_bad;

static void
on_ordered(cnode_req *r, int status, const ei_x_buff *reply, const cnode_error *err, void *ud)
{
    (void)r;
    (void)err;
    long i = (long)(intptr_t)ud;
    /* callbacks run on the loop in the order the replies were read */
    if (status != 0 || !reply || !is_pair(reply, 3000, i) || atomic_load(&order_next) != i)
        atomic_fetch_add(&order_bad, 1);
    atomic_fetch_add(&order_next, 1);
}

#define QUEUED 40

/* A server with one worker finds jobs queued behind the one it runs: it holds their replies back
 * and writes them together; they arrive complete and in the order the jobs ran. The client's
 * requests were held back too (QUEUED behind a call in flight) and went out without the client
 * blocking (the loop's tick). */
static void
test_served_replies_batched(void)
{
    /* both ends new, with a long tick time: no tick frame (which is written at once) carries the
     * held-back requests out before the loop's own tick does */
    char name[64], cname[64];
    snprintf(name, sizeof name, "hotone_%d", (int)getpid());
    snprintf(cname, sizeof cname, "hotc2_%d", (int)getpid());
    cnode_node_opts no = {.name = name, .cookie = "hot_cookie", .workers = 1, .ticktime_s = 600};
    cnode_node_opts co = {.name = cname, .cookie = "hot_cookie", .ticktime_s = 600};
    cnode_node *one = NULL, *c2 = NULL;
    CU_ASSERT_EQUAL_FATAL(cnode_node_new(&no, &one, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(cnode_node_new(&co, &c2, NULL), 0);
    cnode_register_function(one, "hot", "echo", 1, h_echo, NULL);
    cnode_register_function(one, "hot", "hold", 1, h_hold, NULL);
    CU_ASSERT_EQUAL_FATAL(cnode_ping(c2, cnode_node_name(one), (unsigned)tu_ms(10000), NULL), 0);
    ei_x_buff w = args_of(0, 0), reply;
    ei_x_new(&reply);
    CU_ASSERT_EQUAL(cnode_call(c2, cnode_node_name(one), "hot", "echo", &w, (unsigned)tu_ms(10000), &reply, NULL), 0);
    ei_x_free(&w);
    memset(entered, 0, sizeof entered);
    atomic_store(&gate[0], 0);
    ei_x_buff a = arg_long(4); /* gate 0: the worker waits there */
    cnode_req *held = NULL;
    CU_ASSERT_EQUAL_FATAL(
        cnode_send_request(c2, cnode_node_name(one), "hot", "hold", &a, (unsigned)tu_ms(30000), NULL, NULL, &held), 0);
    ei_x_free(&a);
    CU_ASSERT_FATAL(wait_count(&entered[0], 1, 10000));
    uint64_t cdef0 = stats(c2).deferred_frames;
    atomic_store(&order_next, 0);
    atomic_store(&order_bad, 0);
    for (long i = 0; i < QUEUED; i++) {
        ei_x_buff b = args_of(3000, i);
        CU_ASSERT_EQUAL(cnode_send_request(c2, cnode_node_name(one), "hot", "echo", &b, (unsigned)tu_ms(30000),
                                           on_ordered, (void *)(intptr_t)i, NULL),
                        0);
        ei_x_free(&b);
    }
    CU_ASSERT(stats(c2).deferred_frames > cdef0);
    /* nobody blocks on the client: the loop's tick writes the batch; all of it queues on `one` */
    long long end = tu_now_ms() + tu_ms(20000);
    while (stats(one).served_now < QUEUED + 1 && tu_now_ms() < end)
        usleep(2000);
    CU_ASSERT_EQUAL(stats(one).served_now, QUEUED + 1);
    cnode_stats s0 = stats(one);
    atomic_store(&gate[0], 1);
    reply.index = 0;
    CU_ASSERT_EQUAL(cnode_receive_response(held, (int)tu_ms(20000), &reply, NULL), 0);
    CU_ASSERT(is_long(&reply, 4));
    ei_x_free(&reply);
    CU_ASSERT(wait_count(&order_next, QUEUED, 20000));
    CU_ASSERT_EQUAL(atomic_load(&order_bad), 0);
    cnode_stats s1 = stats(one);
    CU_ASSERT(s1.deferred_frames - s0.deferred_frames >= QUEUED / 2);
    CU_ASSERT(s1.out_frames - s0.out_frames > s1.out_writes - s0.out_writes);
    cnode_node_close(c2);
    cnode_node_close(one);
}

/* The loop never sleeps on a peer's write lock to send a spawn reply: while another thread holds
 * it (here the test, standing for a worker inside sendmsg), the call is still admitted, and the
 * worker that takes it sends the spawn reply before it runs the handler, so the caller has it
 * while the handler is still blocked on its gate. */
static void
test_spawn_reply_not_held(void)
{
    char name[64], cname[64];
    snprintf(name, sizeof name, "hotsr_%d", (int)getpid());
    snprintf(cname, sizeof cname, "hotsc_%d", (int)getpid());
    cnode_node_opts no = {.name = name, .cookie = "hot_cookie", .workers = 1, .ticktime_s = 600};
    cnode_node_opts co = {.name = cname, .cookie = "hot_cookie", .ticktime_s = 600};
    cnode_node *one = NULL, *c2 = NULL;
    CU_ASSERT_EQUAL_FATAL(cnode_node_new(&no, &one, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(cnode_node_new(&co, &c2, NULL), 0);
    cnode_register_function(one, "hot", "echo", 1, h_echo, NULL);
    cnode_register_function(one, "hot", "hold", 1, h_hold, NULL);
    ei_x_buff w = args_of(0, 0), reply;
    ei_x_new(&reply);
    CU_ASSERT_EQUAL_FATAL(cnode_call(c2, cnode_node_name(one), "hot", "echo", &w, (unsigned)tu_ms(10000), &reply, NULL), 0);
    ei_x_free(&w);
    pthread_mutex_lock(&one->lock);
    cnode__peer *peer = cnode__peer_get(one, cnode_node_name(c2), 0);
    if (peer)
        cnode__peer_hold(peer);
    pthread_mutex_unlock(&one->lock);
    CU_ASSERT_PTR_NOT_NULL_FATAL(peer);
    memset(entered, 0, sizeof entered);
    memset(finished, 0, sizeof finished);
    atomic_store(&gate[0], 0);
    pthread_mutex_lock(&peer->wlock);
    ei_x_buff a = arg_long(8); /* gate 0 */
    cnode_req *held = NULL;
    CU_ASSERT_EQUAL(
        cnode_send_request(c2, cnode_node_name(one), "hot", "hold", &a, (unsigned)tu_ms(30000), NULL, NULL, &held), 0);
    ei_x_free(&a);
    /* admitted while the lock is held: the loop did not wait for it */
    long long end = tu_now_ms() + tu_ms(10000);
    while (stats(one).served_now < 1 && tu_now_ms() < end)
        usleep(1000);
    CU_ASSERT_EQUAL(stats(one).served_now, 1);
    uint64_t w0 = stats(one).out_writes;
    pthread_mutex_unlock(&peer->wlock);
    CU_ASSERT(wait_count(&entered[0], 1, 10000));
    /* the spawn reply goes out (a tick at most) while the handler still waits at its gate */
    end = tu_now_ms() + tu_ms(10000);
    while (stats(one).out_writes == w0 && tu_now_ms() < end)
        usleep(1000);
    CU_ASSERT(stats(one).out_writes > w0);
    CU_ASSERT_EQUAL(atomic_load(&finished[0]), 0);
    atomic_store(&gate[0], 1);
    if (held) {
        reply.index = 0;
        CU_ASSERT_EQUAL(cnode_receive_response(held, (int)tu_ms(20000), &reply, NULL), 0);
        CU_ASSERT(is_long(&reply, 8));
    }
    ei_x_free(&reply);
    cnode__peer_release(peer);
    cnode_node_close(c2);
    cnode_node_close(one);
}

#define DOOMED 64

/* The peer (`cnode serve`) is killed while DOOMED requests to it are in flight, some of them
 * still held back in a batch: every one ends with noconnection, none hangs, nothing leaks. */
static void
test_peer_dies_mid_batch(void)
{
    char name[64], full[300];
    snprintf(name, sizeof name, "hotdie_%d", (int)getpid());
    pid_t pid = fork();
    if (pid == 0) {
        execl("build/asan/cnode", "cnode", "--sname", name, "--cookie", "hot_cookie", "serve", (char *)NULL);
        _exit(127);
    }
    CU_ASSERT_FATAL(pid > 0);
    const char *at = strchr(srv_name, '@');
    snprintf(full, sizeof full, "%s%s", name, at);
    long long end = tu_now_ms() + tu_ms(20000);
    while (cnode_ping(cli, full, 1000, NULL) != 0 && tu_now_ms() < end)
        usleep(50000);
    cnode_req *r[DOOMED + DOOMED / 2] = {0};
    ei_x_buff a = arg_long(60000);
    for (int i = 0; i < DOOMED; i++)
        CU_ASSERT_EQUAL(
            cnode_send_request(cli, full, "cnode_demo", "sleep", &a, (unsigned)tu_ms(60000), NULL, NULL, &r[i]), 0);
    kill(pid, SIGKILL); /* right after the burst: part of it may still be in our queue */
    int started = DOOMED;
    for (int i = 0; i < DOOMED / 2; i++) /* and more after, on a link going down (refused once it is gone) */
        started += cnode_send_request(cli, full, "cnode_demo", "sleep", &a, (unsigned)tu_ms(60000), NULL, NULL,
                                      &r[DOOMED + i]) == 0;
    ei_x_free(&a);
    long long t0 = tu_now_ms();
    int noconn = 0;
    for (int i = 0; i < DOOMED + DOOMED / 2; i++) {
        if (!r[i])
            continue;
        cnode_error err = {0};
        if (cnode_receive_response(r[i], (int)tu_ms(30000), NULL, &err) == CNODE_ENOCONNECTION)
            noconn++;
        cnode_error_clear(&err);
    }
    CU_ASSERT_EQUAL(noconn, started);
    CU_ASSERT(tu_now_ms() - t0 < tu_ms(30000));
    waitpid(pid, NULL, 0);
}

/* ---- poll mode next to thread mode ------------------------------------------------------------ */

/* cnode_poll on a node with an I/O thread is refused; a poll-mode node's cnode_call runs the
 * loop itself (no caller reads there) and works against the same server. */
static void
test_poll_mode(void)
{
    CU_ASSERT_EQUAL(cnode_poll(cli, 0), CNODE_EINVAL);
    cnode_node *pn = start_node("hotpoll", 1);
    CU_ASSERT_FATAL(pn != NULL);
    ei_x_buff a = args_of(3, 4), reply;
    ei_x_new(&reply);
    for (int i = 0; i < 20; i++) {
        reply.index = 0;
        CU_ASSERT_EQUAL(cnode_call(pn, srv_name, "hot", "echo", &a, (unsigned)tu_ms(20000), &reply, NULL), 0);
        CU_ASSERT(is_pair(&reply, 3, 4));
    }
    CU_ASSERT_EQUAL(stats(pn).caller_reads, 0);
    /* a window of requests: nothing is held back for batching there (the caller runs the loop) */
    cnode_req *w[16] = {0};
    for (int i = 0; i < 16; i++)
        CU_ASSERT_EQUAL(
            cnode_send_request(pn, srv_name, "hot", "echo", &a, (unsigned)tu_ms(20000), NULL, NULL, &w[i]), 0);
    for (int i = 0; i < 16; i++) {
        reply.index = 0;
        CU_ASSERT_EQUAL(w[i] ? cnode_receive_response(w[i], (int)tu_ms(20000), &reply, NULL) : -1, 0);
        CU_ASSERT(is_pair(&reply, 3, 4));
    }
    CU_ASSERT_EQUAL(stats(pn).deferred_frames, 0);
    ei_x_free(&a);
    ei_x_free(&reply);
    cnode_node_close(pn);
}

/* ---- the replies a reading caller waits for ------------------------------------------------------- */

/* Requests to srv that wait for their spawn reply, as cli counts them for a reading caller's
 * SO_RCVLOWAT (erpc.c req_want); UINT_MAX without a peer record. */
static unsigned
unspawned(void)
{
    pthread_mutex_lock(&cli->lock);
    cnode__peer *p = cnode__peer_get(cli, srv_name, 0);
    unsigned v = p ? p->unspawned : UINT_MAX;
    pthread_mutex_unlock(&cli->lock);
    return v;
}

static int
wait_unspawned_zero(int ms)
{
    long long end = tu_now_ms() + tu_ms(ms);
    while (unspawned() != 0) {
        if (tu_now_ms() > end)
            return 0;
        usleep(2000);
    }
    return 1;
}

/* The first of a window gets its reply while the requests after it are held in the server (their
 * spawn replies, which its reader may wait for, came; their results did not); the count of
 * requests waiting for a spawn reply goes back to 0 whether a request is answered, abandoned or
 * timed out, so a later reader never waits for replies that will not come. */
static void
test_window_reads_ahead(void)
{
    memset(entered, 0, sizeof entered);
    memset(finished, 0, sizeof finished);
    atomic_store(&gate[0], 0);
    cnode_req *first = NULL, *held[8] = {0};
    ei_x_buff a = args_of(5000, 0), reply;
    ei_x_new(&reply);
    CU_ASSERT_EQUAL_FATAL(cnode_send_request(cli, srv_name, "hot", "echo", &a, (unsigned)tu_ms(20000), NULL, NULL, &first), 0);
    ei_x_free(&a);
    for (int i = 0; i < 8; i++) {
        ei_x_buff h = arg_long(4 * (i + 1)); /* gate 0, even: a cancelled one stops waiting */
        unsigned tmo = (unsigned)tu_ms(i < 4 ? 20000 : 300);
        CU_ASSERT_EQUAL(cnode_send_request(cli, srv_name, "hot", "hold", &h, tmo, NULL, NULL, &held[i]), 0);
        ei_x_free(&h);
    }
    CU_ASSERT_EQUAL(first ? cnode_receive_response(first, (int)tu_ms(20000), &reply, NULL) : -1, 0);
    CU_ASSERT(is_pair(&reply, 5000, 0));
    CU_ASSERT(wait_count(&entered[0], 8, 10000));
    CU_ASSERT(wait_unspawned_zero(10000));
    for (int i = 0; i < 2; i++) /* abandoned while the server holds them */
        if (held[i])
            cnode_req_abandon(held[i]);
    for (int i = 4; i < 8; i++) { /* timed out while the server holds them */
        reply.index = 0;
        CU_ASSERT_EQUAL(held[i] ? cnode_receive_response(held[i], (int)tu_ms(20000), &reply, NULL) : -1, CNODE_ETIMEOUT);
    }
    atomic_store(&gate[0], 1);
    for (int i = 2; i < 4; i++) {
        reply.index = 0;
        CU_ASSERT_EQUAL(held[i] ? cnode_receive_response(held[i], (int)tu_ms(20000), &reply, NULL) : -1, 0);
        CU_ASSERT(is_long(&reply, 4 * (i + 1)));
    }
    CU_ASSERT_EQUAL(unspawned(), 0);
    CU_ASSERT(wait_count(&finished[0], 4, 10000)); /* the cancelled ones stopped; the rest answered */
    ei_x_free(&reply);
}

void
cnode_test_register(void)
{
    CU_pSuite s = CU_add_suite("callers that read their own replies", suite_init, suite_clean);
    ADD_TEST(s, test_many_callers);
    ADD_TEST(s, test_message_after_call);
    ADD_TEST(s, test_timeout_hands_on);
    ADD_TEST(s, test_late_reply_dropped);
    ADD_TEST(s, test_disconnect_while_reading);
    ADD_TEST(s, test_peer_killed_while_reading);
    ADD_TEST(s, test_windows_batched);
    ADD_TEST(s, test_window_polled);
    ADD_TEST(s, test_served_replies_batched);
    ADD_TEST(s, test_spawn_reply_not_held);
    ADD_TEST(s, test_peer_dies_mid_batch);
    ADD_TEST(s, test_window_reads_ahead);
    ADD_TEST(s, test_poll_mode);
}
