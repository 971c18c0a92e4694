/* Receivers that read (cnode/README.md, "Receivers that read"): in I/O-thread mode a thread
 * blocked in cnode_receive reads the link its message comes on when nobody else does. Between C
 * nodes on a private epmd: many receivers doing round trips to one peer at once while the loop
 * also reads (nothing lost, twice or misdelivered), a receiver that times out while reading
 * hands the socket on, the peer dies under a reading receiver, and a mailbox with a callback
 * (as pg scopes have) still gets its callback on the I/O thread. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "cnode.h"
#include "cnode/internal.h"
#include "tests/testutil.h"

#define RECEIVERS 8
#define TRIPS 200
#define SINK_MSGS 1000

static cnode_node *srv, *cli;
static pid_t epmd_pid;
static char srv_name[300];
static cnode_proc *echo;
static pthread_t echo_th;
static pthread_t io_thread; /* cli's, from its nodeup callback */
static atomic_int io_known, cb_on_io, cb_off_io, downs;

static void
on_nodedown(const char *name, const char *reason, void *ud)
{
    (void)name;
    (void)reason;
    (void)ud;
    atomic_fetch_add(&downs, 1);
}

static void
on_nodeup(const char *name, void *ud)
{
    (void)name;
    (void)ud;
    if (!atomic_load(&io_known)) {
        io_thread = pthread_self();
        atomic_store(&io_known, 1);
    }
}

/* a process with a callback (as the runtime's pg scopes and served calls have) */
static void
cb_handler(cnode_proc *p, const cnode__xpid *from, const char *data, size_t len)
{
    (void)p, (void)from, (void)data, (void)len;
    if (atomic_load(&io_known) && pthread_equal(pthread_self(), io_thread))
        atomic_fetch_add(&cb_on_io, 1);
    else
        atomic_fetch_add(&cb_off_io, 1);
}

/* The peer's echo: {From, X} -> From ! X; X = noreply: nothing; X = {cb, Pid}: first sends hello
 * to Pid (a frame before the reply, on one connection). */
static void *
echo_main(void *arg)
{
    cnode_proc *self = arg;
    for (;;) {
        cnode_msg m = {0};
        int rc = cnode_receive(self, 200, &m);
        if (rc == CNODE_ETIMEOUT)
            continue;
        if (rc != 0)
            return NULL;
        int idx = 0, ver, ar, s, e;
        erlang_pid from;
        if (ei_decode_version(m.data.buff, &idx, &ver) == 0 && ei_decode_tuple_header(m.data.buff, &idx, &ar) == 0 &&
            ar == 2 && ei_decode_pid(m.data.buff, &idx, &from) == 0) {
            s = e = idx;
            ei_skip_term(m.data.buff, &e);
            char atom[MAXATOMLEN] = "";
            int j = s, a2;
            int noreply = ei_decode_atom(m.data.buff, &j, atom) == 0 && strcmp(atom, "noreply") == 0;
            j = s;
            erlang_pid to;
            if (ei_decode_tuple_header(m.data.buff, &j, &a2) == 0 && a2 == 2 &&
                ei_decode_atom(m.data.buff, &j, atom) == 0 && strcmp(atom, "cb") == 0 && ei_decode_pid(m.data.buff, &j, &to) == 0) {
                ei_x_buff h;
                ei_x_new_with_version(&h);
                ei_x_encode_atom(&h, "hello");
                cnode_send(self, &to, &h);
                ei_x_free(&h);
            }
            if (!noreply) {
                ei_x_buff x;
                ei_x_new_with_version(&x);
                ei_x_append_buf(&x, m.data.buff + s, e - s);
                cnode_send(self, &from, &x);
                ei_x_free(&x);
            }
        }
        cnode_msg_free(&m);
    }
}

static cnode_node *
start_node(const char *prefix, cnode_nodeup_cb *up)
{
    char name[64];
    snprintf(name, sizeof name, "%s_%d", prefix, (int)getpid());
    cnode_node_opts no = {.name = name, .cookie = "rx_cookie", .workers = 2, .on_nodeup = up};
    if (up)
        no.on_nodedown = on_nodedown;
    cnode_node *n = NULL;
    cnode_error err = {0};
    if (cnode_node_new(&no, &n, &err) != 0)
        fprintf(stderr, "rx_lead: no node %s: %s\n", name, err.message);
    cnode_error_clear(&err);
    return n;
}

static int
suite_init(void)
{
    if (tu_epmd_start(&epmd_pid) != 0)
        return 1;
    srv = start_node("rxsrv", NULL);
    cli = srv ? start_node("rxcli", on_nodeup) : NULL;
    if (!srv || !cli || cnode_proc_new(srv, "rx_echo", &echo) != 0 ||
        pthread_create(&echo_th, NULL, echo_main, echo) != 0) {
        cnode_node_close(cli);
        cnode_node_close(srv);
        srv = cli = NULL;
        tu_epmd_stop(&epmd_pid);
        return 1;
    }
    snprintf(srv_name, sizeof srv_name, "%s", cnode_node_name(srv));
    return cnode_ping(cli, srv_name, (unsigned)tu_ms(10000), NULL) == 0 ? 0 : 1;
}

static int
suite_clean(void)
{
    cnode_node_close(cli);
    cnode_node_close(srv); /* the echo's receive returns */
    pthread_join(echo_th, NULL);
    cli = srv = NULL;
    tu_epmd_stop(&epmd_pid);
    return 0;
}

static uint64_t
caller_reads(void)
{
    cnode_stats st;
    memset(&st, 0, sizeof st);
    cnode_node_stats(cli, &st);
    return st.caller_reads;
}

/* until p's receiver reads a socket itself (p->leading, cnode/proc.c) */
static int
wait_leading(cnode_node *n, cnode_proc *p)
{
    long long end = tu_now_ms() + tu_ms(10000);
    for (;;) {
        pthread_mutex_lock(&n->lock);
        int l = p->leading;
        pthread_mutex_unlock(&n->lock);
        if (l)
            return 1;
        if (tu_now_ms() > end)
            return 0;
        usleep(1000);
    }
}

static ei_x_buff
request(cnode_proc *self, long a, long b)
{
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_pid(&x, cnode_proc_pid(self));
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_long(&x, a);
    ei_x_encode_long(&x, b);
    return x;
}

static ei_x_buff
request_atom(cnode_proc *self, const char *a)
{
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_pid(&x, cnode_proc_pid(self));
    ei_x_encode_atom(&x, a);
    return x;
}

static int
is_pair(const cnode_msg *m, long a, long b)
{
    int idx = 0, ver, ar;
    long x, y;
    return ei_decode_version(m->data.buff, &idx, &ver) == 0 && ei_decode_tuple_header(m->data.buff, &idx, &ar) == 0 &&
           ar == 2 && ei_decode_long(m->data.buff, &idx, &x) == 0 && ei_decode_long(m->data.buff, &idx, &y) == 0 &&
           x == a && y == b && idx == m->data.index;
}

/* ---- many receivers ------------------------------------------------------------------------------ */

static atomic_int wrong;

static void *
tripper_main(void *arg)
{
    long t = (long)(intptr_t)arg;
    cnode_proc *self = NULL;
    if (cnode_proc_new(cli, NULL, &self) != 0) {
        atomic_fetch_add(&wrong, 1);
        return NULL;
    }
    for (long i = 0; i < TRIPS; i++) {
        ei_x_buff x = request(self, t, i);
        cnode_msg m = {0};
        int bad = cnode_reg_send(self, "rx_echo", srv_name, &x) != 0 ||
                  cnode_receive(self, (int)tu_ms(20000), &m) != 0 || !is_pair(&m, t, i);
        cnode_msg_free(&m);
        ei_x_free(&x);
        if (bad) {
            atomic_fetch_add(&wrong, 1);
            break; /* one lost reply is enough to know */
        }
    }
    cnode_msg m = {0};
    if (cnode_receive(self, 0, &m) != CNODE_ETIMEOUT) /* nothing twice, nothing of another's */
        atomic_fetch_add(&wrong, 1);
    cnode_msg_free(&m);
    cnode_proc_close(self);
    return NULL;
}

static void *
sender_main(void *arg)
{
    (void)arg;
    cnode_proc *p = NULL;
    if (cnode_proc_new(srv, NULL, &p) != 0)
        return NULL;
    for (long i = 0; i < SINK_MSGS; i++) {
        ei_x_buff m;
        ei_x_new_with_version(&m);
        ei_x_encode_long(&m, i);
        cnode_reg_send(p, "rx_sink", cnode_node_name(cli), &m);
        ei_x_free(&m);
        if (i % 100 == 0)
            usleep(1000); /* spread them over the round trips */
    }
    cnode_proc_close(p);
    return NULL;
}

/* RECEIVERS threads each do TRIPS round trips to one peer at once while that peer also sends a
 * stream to a mailbox the main thread drains (the loop or a reading receiver delivers it):
 * every reply reaches its own receiver once, the stream arrives whole and in order, and the
 * receivers did read frames themselves. */
static void
test_many_receivers(void)
{
    cnode_proc *sink;
    CU_ASSERT_EQUAL_FATAL(cnode_proc_new(cli, "rx_sink", &sink), 0);
    uint64_t reads0 = caller_reads();
    atomic_store(&wrong, 0);
    pthread_t th[RECEIVERS], snd;
    for (long t = 0; t < RECEIVERS; t++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[t], NULL, tripper_main, (void *)(intptr_t)t), 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&snd, NULL, sender_main, NULL), 0);
    long next = 0;
    long long end = tu_now_ms() + tu_ms(60000);
    while (next < SINK_MSGS && tu_now_ms() < end) {
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
    CU_ASSERT_EQUAL(next, SINK_MSGS);
    for (int t = 0; t < RECEIVERS; t++)
        pthread_join(th[t], NULL);
    pthread_join(snd, NULL);
    CU_ASSERT_EQUAL(atomic_load(&wrong), 0);
    cnode_msg m = {0};
    CU_ASSERT_EQUAL(cnode_receive(sink, 0, &m), CNODE_ETIMEOUT);
    CU_ASSERT(caller_reads() > reads0);
    /* one receiver alone reads its own reply */
    cnode_proc *p;
    CU_ASSERT_EQUAL_FATAL(cnode_proc_new(cli, NULL, &p), 0);
    uint64_t reads1 = caller_reads();
    for (long i = 0; i < 5; i++) {
        ei_x_buff x = request(p, 99, i);
        CU_ASSERT_EQUAL(cnode_reg_send(p, "rx_echo", srv_name, &x), 0);
        int rc = cnode_receive(p, (int)tu_ms(20000), &m);
        CU_ASSERT(rc == 0 && is_pair(&m, 99, i));
        cnode_msg_free(&m);
        ei_x_free(&x);
        if (rc != 0)
            break;
    }
    CU_ASSERT(caller_reads() >= reads1 + 5);
    cnode_proc_close(p);
    cnode_proc_close(sink);
}

/* ---- a receiver that times out while it reads ------------------------------------------------------ */

static int a_rc;

static void *
timeout_main(void *arg)
{
    cnode_msg m = {0};
    a_rc = cnode_receive(arg, (int)tu_ms(1500), &m);
    cnode_msg_free(&m);
    return NULL;
}

static int b_rc;
static cnode_msg b_msg;

static void *
waiter_main(void *arg)
{
    b_rc = cnode_receive(arg, (int)tu_ms(20000), &b_msg);
    return NULL;
}

/* A reads the link and times out; B, asleep meanwhile on the same link, then gets its reply. */
static void
test_timeout_hands_on(void)
{
    cnode_proc *a, *b;
    CU_ASSERT_EQUAL_FATAL(cnode_proc_new(cli, NULL, &a), 0);
    CU_ASSERT_EQUAL_FATAL(cnode_proc_new(cli, NULL, &b), 0);
    ei_x_buff x = request_atom(a, "noreply");
    CU_ASSERT_EQUAL(cnode_reg_send(a, "rx_echo", srv_name, &x), 0);
    ei_x_free(&x);
    pthread_t ta, tb;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&ta, NULL, timeout_main, a), 0);
    CU_ASSERT_FATAL(wait_leading(cli, a));
    x = request_atom(b, "noreply"); /* b's last peer is the same: it sleeps, a reads */
    CU_ASSERT_EQUAL(cnode_reg_send(b, "rx_echo", srv_name, &x), 0);
    ei_x_free(&x);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&tb, NULL, waiter_main, b), 0);
    pthread_join(ta, NULL);
    CU_ASSERT_EQUAL(a_rc, CNODE_ETIMEOUT);
    /* now the reply for b: whoever reads the link next (loop or b) delivers it */
    x = request(b, 5, 6);
    CU_ASSERT_EQUAL(cnode_reg_send(b, "rx_echo", srv_name, &x), 0);
    ei_x_free(&x);
    pthread_join(tb, NULL);
    CU_ASSERT_EQUAL(b_rc, 0);
    CU_ASSERT(b_rc == 0 && is_pair(&b_msg, 5, 6));
    cnode_msg_free(&b_msg);
    cnode_proc_close(a);
    cnode_proc_close(b);
}

/* ---- the peer dies while a receiver reads ------------------------------------------------------- */

/* A second peer; r sent to it last and reads its link; the peer closes: the loop still sees the
 * link go (nodedown) while r waits, and r's receive then returns what a local process sends it. */
static void
test_peer_dies(void)
{
    cnode_node *p2 = start_node("rxdie", NULL);
    CU_ASSERT_FATAL(p2 != NULL);
    cnode_proc *e2, *r, *local;
    CU_ASSERT_EQUAL_FATAL(cnode_proc_new(p2, "rx_echo2", &e2), 0);
    char p2_name[300];
    snprintf(p2_name, sizeof p2_name, "%s", cnode_node_name(p2));
    CU_ASSERT_EQUAL_FATAL(cnode_proc_new(cli, NULL, &r), 0);
    CU_ASSERT_EQUAL_FATAL(cnode_proc_new(cli, NULL, &local), 0);
    CU_ASSERT_EQUAL_FATAL(cnode_ping(cli, p2_name, (unsigned)tu_ms(10000), NULL), 0);
    ei_x_buff x = request_atom(r, "noreply");
    CU_ASSERT_EQUAL(cnode_reg_send(r, "rx_echo2", p2_name, &x), 0);
    ei_x_free(&x);
    int downs0 = atomic_load(&downs);
    pthread_t tb;
    b_rc = -1;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&tb, NULL, waiter_main, r), 0);
    CU_ASSERT(wait_leading(cli, r));
    cnode_node_close(p2);
    long long end = tu_now_ms() + tu_ms(15000);
    while (atomic_load(&downs) == downs0 && tu_now_ms() < end)
        usleep(2000);
    CU_ASSERT(atomic_load(&downs) > downs0);
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_long(&x, 7);
    ei_x_encode_long(&x, 8);
    CU_ASSERT_EQUAL(cnode_send(local, cnode_proc_pid(r), &x), 0);
    ei_x_free(&x);
    pthread_join(tb, NULL);
    CU_ASSERT_EQUAL(b_rc, 0);
    CU_ASSERT(b_rc == 0 && is_pair(&b_msg, 7, 8));
    cnode_msg_free(&b_msg);
    cnode_proc_close(r);
    cnode_proc_close(local);
}

/* ---- a mailbox with a callback ------------------------------------------------------------------ */

/* The peer sends to a process with a callback, then replies, on the link a receiver reads: the
 * callback's message goes to the loop, and the callback runs on the I/O thread. */
static void
test_callback_on_loop(void)
{
    CU_ASSERT_FATAL(atomic_load(&io_known));
    cnode_proc *p, *cbp;
    CU_ASSERT_EQUAL_FATAL(cnode_proc_new(cli, NULL, &p), 0);
    CU_ASSERT_EQUAL_FATAL(cnode_proc_new(cli, NULL, &cbp), 0);
    pthread_mutex_lock(&cli->lock);
    cbp->sys_handler = cb_handler;
    pthread_mutex_unlock(&cli->lock);
    atomic_store(&cb_on_io, 0);
    atomic_store(&cb_off_io, 0);
    for (int i = 0; i < 20; i++) {
        ei_x_buff x;
        ei_x_new_with_version(&x);
        ei_x_encode_tuple_header(&x, 2);
        ei_x_encode_pid(&x, cnode_proc_pid(p));
        ei_x_encode_tuple_header(&x, 2);
        ei_x_encode_atom(&x, "cb");
        ei_x_encode_pid(&x, cnode_proc_pid(cbp));
        CU_ASSERT_EQUAL(cnode_reg_send(p, "rx_echo", srv_name, &x), 0);
        ei_x_free(&x);
        cnode_msg m = {0};
        CU_ASSERT_EQUAL(cnode_receive(p, (int)tu_ms(20000), &m), 0);
        cnode_msg_free(&m);
    }
    long long end = tu_now_ms() + tu_ms(20000);
    while (atomic_load(&cb_on_io) + atomic_load(&cb_off_io) < 20 && tu_now_ms() < end)
        usleep(2000);
    CU_ASSERT_EQUAL(atomic_load(&cb_on_io), 20);
    CU_ASSERT_EQUAL(atomic_load(&cb_off_io), 0);
    cnode_proc_close(cbp);
    cnode_proc_close(p);
}

void
cnode_test_register(void)
{
    CU_pSuite s = CU_add_suite("receivers that read their own messages", suite_init, suite_clean);
    CU_add_test(s, "many receivers, one peer, the loop reading too", test_many_receivers);
    CU_add_test(s, "a receiver timing out while it reads hands on", test_timeout_hands_on);
    CU_add_test(s, "the peer dies under a reading receiver", test_peer_dies);
    CU_add_test(s, "a callback mailbox's callback stays on the I/O thread", test_callback_on_loop);
}
