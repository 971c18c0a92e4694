/* The call path where the waiting caller reads its own reply (cnode/README.md, "Callers that
 * read"), between C nodes on a private epmd: many callers at once while the I/O thread reads
 * other traffic on the same connection, a reading caller that times out hands the socket on, a
 * late reply is dropped, the peer's link or the peer itself dies while a caller reads, and poll
 * mode next to thread mode. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cnode.h"
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
    ei_x_free(&a);
    ei_x_free(&reply);
    cnode_node_close(pn);
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
    ADD_TEST(s, test_poll_mode);
}
