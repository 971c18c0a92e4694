/* cnode_hardtest: the C side of the hardening suites (chaos_SUITE,
 * partition_SUITE, soak_SUITE). Each mode runs its whole load on its own and
 * reports on stdout, one fact per line; the suite does the violence (kills,
 * link cuts) and checks the lines.
 *
 *   cnode_hardtest chaos --sname N --cookie C --scope S --group G --seeds A,B,..
 *                  --seconds T --inflight K --mod M --fun F --seed X
 *       READY, then K threads call M:F(Id) through a balancer over G for T s;
 *       every answer must be {Id, Node}. Ends with
 *       "inflight N" (sum of the balancer's counters after the load),
 *       "picks: N checked, N stale, N unpicked, N misattributed, N removals,
 *       N after a removal, N events, N mismatches" (see "chaos: picks against
 *       the mirror's history" below) and
 *       "chaos: N calls, N ok, N errors, N unanswered, N duplicates, seed X".
 *       A reply carrying another call's Id is a duplicate; a call still not
 *       answered when the load's deadline passed is unanswered.
 *
 *   cnode_hardtest partition --name c@ADDR --cookie C --scope S --group G --peer P
 *                  --ticktime T --control FILE --mod M --fun F
 *       READY once P's member is in the mirror; then, per phase the suite
 *       writes into FILE ("cut", "heal", "oneway", "heal2", "stop"), pending
 *       calls, down, suspect, mirror and resync times (see the suite).
 *
 *   cnode_hardtest soak --sname N --cookie C --scope S --group G --seeds A,B
 *                  --seconds T --mod M --fun F
 *       mixed load (calls through the balancer, calls from BEAM served here,
 *       joins and leaves of a C process, reconnects); "rss T kB" every 10 s,
 *       then "soak: N s, rss start N kB, end N kB, N calls, N served, N errors".
 *
 *   cnode_hardtest props --sname N --cookie C --scope S --group G
 *       serves, for props_SUITE, hardtest:F(Bin) where Bin is an encoding (with 131) or a text:
 *       echo(T) -> T, print(Bin) -> Text | error, parse(Text) -> T | {error, Why},
 *       phash2(Bin) -> H (range 2^32) | error, inspect(Bin) -> Text | error,
 *       walk(Bin) -> Extent | need_more | malformed (the bounded walker on Bin, no 131).
 *       READY, then runs until SIGTERM.
 *
 * Exit status 0 when the run itself worked (the suites judge the figures). */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <signal.h>

#include "cnode.h"
#include "cnode_balancer.h"
#include "cnode_term.h"
#include "ei_glue/glue.h"

#define MAX_SEEDS 8
#define MAX_THREADS 128
#define MAX_PENDING 8

static struct {
    const char *mode, *sname, *name, *cookie, *scope, *group, *seeds, *peer, *control, *mod, *fun, *seed;
    long seconds, inflight, ticktime;
} A = {.seconds = 20, .inflight = 64, .ticktime = 4, .mod = "erlang", .fun = "node", .seed = "0"};

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void
out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void
out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

static int
die(const char *what, int rc, const cnode_error *err)
{
    out("FAILED %s: %d %s", what, rc, err ? err->message : "");
    return 2;
}

static cnode_node *node;
static cnode_pg_scope *scope;
static char *seedv[MAX_SEEDS];
static size_t nseeds;

/* ---- node, scope, members ---------------------------------------------------- */

static void on_change(cnode_pg_scope *sc, int event, uint64_t gen, const char *group, size_t glen, const char *nd,
                      const erlang_pid *pids, size_t n, void *ud);

static _Atomic int64_t down_ms, up_ms;

static void
on_down(const char *peer, const char *reason, void *ud)
{
    (void)ud;
    if (A.peer && strcmp(peer, A.peer) == 0)
        atomic_store(&down_ms, now_ms());
    out("nodedown %s %s", peer, reason);
}

static void
on_up(const char *peer, void *ud)
{
    (void)ud;
    if (A.peer && strcmp(peer, A.peer) == 0)
        atomic_store(&up_ms, now_ms());
    out("nodeup %s", peer);
}

static int
start_node(int longnames)
{
    cnode_node_opts o = {0};
    o.name = longnames ? A.name : A.sname;
    o.longnames = longnames;
    o.cookie = A.cookie;
    o.ticktime_s = (unsigned)A.ticktime;
    o.workers = 4;
    o.on_nodedown = on_down;
    o.on_nodeup = on_up;
    cnode_error err = {0};
    int rc = cnode_node_new(&o, &node, &err);
    if (rc != 0)
        return die("node", rc, &err);
    cnode_pg_opts po = {.discover_interval_ms = 500, .probe_interval_ms = 200, .probe_timeout_ms = 1000};
    if (!strcmp(A.mode, "chaos"))
        po.on_change = on_change; /* from the first member on: the history must be whole */
    if ((rc = cnode_pg_scope_start(node, A.scope, &po, &scope)) != 0)
        return die("scope", rc, NULL);
    if (A.seeds) {
        char *s = strdup(A.seeds), *save = NULL;
        for (char *t = strtok_r(s, ",", &save); t && nseeds < MAX_SEEDS; t = strtok_r(NULL, ",", &save))
            seedv[nseeds++] = strdup(t);
        free(s);
    }
    if (A.peer)
        seedv[nseeds++] = strdup(A.peer);
    for (size_t i = 0; i < nseeds; i++)
        cnode_pg_connect(scope, seedv[i]);
    cnode_pg_wait_ready(scope, 5000);
    return 0;
}

/* Members of the group on node n (NULL: all), and the count of pids listed twice. */
static size_t
members(const char *n, size_t *dups)
{
    cnode_pg_snapshot *snap = cnode_pg_snapshot_get(scope);
    size_t cnt = 0, got = 0;
    const cnode_pg_member *m = cnode_pg_members(snap, A.group, &cnt);
    if (dups)
        *dups = 0;
    for (size_t i = 0; i < cnt; i++) {
        if (n && strcmp(m[i].node, n) != 0)
            continue;
        got++;
        if (dups)
            for (size_t j = 0; j < i; j++)
                if (m[j].node == m[i].node && m[j].num == m[i].num && m[j].serial == m[i].serial)
                    (*dups)++; /* node names are interned per (name, creation): the same pointer is the same node */
    }
    cnode_pg_snapshot_release(snap);
    return got;
}

static int
suspect(const char *n)
{
    cnode_pg_snapshot *snap = cnode_pg_snapshot_get(scope);
    int s = cnode_pg_node_suspect(snap, n);
    cnode_pg_snapshot_release(snap);
    return s;
}

static void
finish(void)
{
    cnode_node_close(node);
    for (size_t i = 0; i < nseeds; i++)
        free(seedv[i]);
}

/* ---- chaos ------------------------------------------------------------------------ */

/* ---- chaos: picks against the mirror's history ------------------------------------------ */
/* The property: no call goes to a member from a pick made on a snapshot generation that did not
 * list it. Every attempt's pick (node, generation; the observer, on the calling thread) is kept, and
 * so is every change of the group's membership (the pg callback, with the generation of the first
 * snapshot that shows it). After the load the history is replayed in generation order: a pick of
 * node N on generation G is stale unless N had a member in the group once every change with gen <= G
 * is applied. The history is checked against the mirror itself at the end (mismatches), so a missed
 * change cannot hide a stale pick. */
#define MAX_NAMES 64
#define SYNC_GROUP "chaos_pick_sync"

typedef struct {
    uint64_t gen;
    int name; /* index into names_tab, -1: no pick */
} pick_rec;

typedef struct {
    uint64_t gen;
    int name;
    int delta; /* members joined (+) or gone (-) */
} hist_ev;

static char names_tab[MAX_NAMES][CNODE_BALANCER_NODE_MAX];
static atomic_int n_names;
static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;

static pick_rec *recs[MAX_THREADS];
static size_t nrecs[MAX_THREADS], caprecs[MAX_THREADS];
static _Thread_local long load_index = -1; /* the load thread's slot in recs */
static atomic_long n_rec_lost;

static pthread_mutex_t hist_lock = PTHREAD_MUTEX_INITIALIZER;
static hist_ev *hist;
static size_t nhist, caphist;
static atomic_int sync_seen;

/* The index of node name nm, added if new (the I/O thread and the load threads both meet names). */
static int
name_index(const char *nm)
{
    int n = atomic_load(&n_names);
    for (int i = 0; i < n; i++)
        if (!strcmp(names_tab[i], nm))
            return i;
    pthread_mutex_lock(&names_lock);
    n = atomic_load(&n_names);
    int i = 0;
    while (i < n && strcmp(names_tab[i], nm) != 0)
        i++;
    if (i == n && n < MAX_NAMES) {
        snprintf(names_tab[n], sizeof names_tab[n], "%s", nm);
        atomic_store(&n_names, n + 1);
    }
    pthread_mutex_unlock(&names_lock);
    return i < MAX_NAMES ? i : -2;
}

static void
on_change(cnode_pg_scope *sc, int event, uint64_t gen, const char *group, size_t glen, const char *nd, const erlang_pid *pids,
          size_t n, void *ud)
{
    (void)sc;
    (void)nd;
    (void)ud;
    char g[MAXATOMLEN_UTF8];
    int idx = 0;
    if (glen == 0 || ei_decode_atom(group, &idx, g) != 0 || (size_t)idx != glen)
        return;
    if (!strcmp(g, SYNC_GROUP)) {
        if (event == CNODE_PG_JOIN)
            atomic_store(&sync_seen, 1);
        return;
    }
    if (strcmp(g, A.group) != 0 || (event != CNODE_PG_JOIN && event != CNODE_PG_LEAVE && event != CNODE_PG_NODEDOWN))
        return;
    pthread_mutex_lock(&hist_lock);
    for (size_t i = 0; i < n; i++) {
        if (nhist == caphist) {
            size_t cap = caphist ? 2 * caphist : 256;
            hist_ev *h = realloc(hist, cap * sizeof *h);
            if (!h)
                break; /* the end check then finds the history short of the mirror */
            hist = h;
            caphist = cap;
        }
        hist[nhist++] = (hist_ev){gen, name_index(pids[i].node), event == CNODE_PG_JOIN ? 1 : -1};
    }
    pthread_mutex_unlock(&hist_lock);
}

/* Every attempt of a load thread's call: its pick, kept in the thread's own array. */
static void
on_attempt(const cnode_balancer_event *ev, void *ud)
{
    (void)ud;
    long t = load_index;
    if (t < 0)
        return;
    if (nrecs[t] == caprecs[t]) {
        size_t cap = caprecs[t] ? 2 * caprecs[t] : 4096;
        pick_rec *r = realloc(recs[t], cap * sizeof *r);
        if (!r) {
            atomic_fetch_add(&n_rec_lost, 1);
            return;
        }
        recs[t] = r;
        caprecs[t] = cap;
    }
    recs[t][nrecs[t]++] = (pick_rec){ev->gen, ev->node[0] ? name_index(ev->node) : -1};
}

static int
by_gen_pick(const void *a, const void *b)
{
    const pick_rec *x = a, *y = b;
    return (x->gen > y->gen) - (x->gen < y->gen);
}

static int
by_gen_hist(const void *a, const void *b)
{
    const hist_ev *x = a, *y = b;
    return (x->gen > y->gen) - (x->gen < y->gen);
}

/* After the load (every load thread joined): make the history whole up to a snapshot taken now,
 * replay it and judge every pick; prints the "picks:" line. */
static void
check_picks(long n_threads, long misattributed)
{
    /* the snapshot the history is checked against; every pick read an older or the same one */
    cnode_pg_snapshot *snap = cnode_pg_snapshot_get(scope);
    uint64_t gen_end = cnode_pg_snapshot_generation(snap);
    /* callbacks run in the order their changes were made: once a join made after that snapshot
     * has been heard, so has every change it shows */
    cnode_proc *p = NULL;
    if (cnode_proc_new(node, NULL, &p) == 0 && cnode_pg_join(scope, SYNC_GROUP, p) == 0) {
        int64_t until = now_ms() + 10000;
        while (!atomic_load(&sync_seen) && now_ms() < until)
            pause_ms(5);
    }
    long stale = 0, unpicked = 0, checked = 0, after_removal = 0, removals = 0, mismatches = 0;
    size_t total = 0;
    for (long t = 0; t < n_threads; t++)
        total += nrecs[t];
    pick_rec *all = malloc((total ? total : 1) * sizeof *all);
    pthread_mutex_lock(&hist_lock);
    size_t nh = nhist;
    hist_ev *h = malloc((nh ? nh : 1) * sizeof *h);
    if (h && nh)
        memcpy(h, hist, nh * sizeof *h);
    pthread_mutex_unlock(&hist_lock);
    if (!all || !h || !atomic_load(&sync_seen)) {
        out("FAILED picks: %s", !all || !h ? "out of memory" : "the history did not catch up with the mirror");
        mismatches = -1;
    } else {
        size_t k = 0;
        for (long t = 0; t < n_threads; t++) {
            memcpy(all + k, recs[t], nrecs[t] * sizeof *all);
            k += nrecs[t];
        }
        qsort(all, total, sizeof *all, by_gen_pick);
        qsort(h, nh, sizeof *h, by_gen_hist);
        long count[MAX_NAMES] = {0};
        uint64_t first_removal = 0;
        size_t e = 0;
        for (size_t i = 0; i < total; i++) {
            while (e < nh && h[e].gen <= all[i].gen) {
                if (h[e].name >= 0)
                    count[h[e].name] += h[e].delta;
                if (h[e].delta < 0 && !first_removal)
                    first_removal = h[e].gen;
                e++;
            }
            if (all[i].name == -1) {
                unpicked++;
                continue;
            }
            checked++;
            if (all[i].name < 0 || all[i].gen == 0 || count[all[i].name] <= 0)
                stale++;
            if (first_removal && all[i].gen >= first_removal)
                after_removal++;
        }
        /* the history up to the snapshot must give the snapshot's own membership */
        for (; e < nh && h[e].gen <= gen_end; e++)
            if (h[e].name >= 0)
                count[h[e].name] += h[e].delta;
        size_t listed;
        cnode_pg_members(snap, A.group, &listed);
        long sum = 0;
        for (int i = 0; i < atomic_load(&n_names); i++) {
            sum += count[i];
            if (count[i] != (long)cnode_pg_node_count(snap, A.group, names_tab[i]))
                mismatches++;
        }
        if (sum != (long)listed)
            mismatches++;
        for (size_t i = 0; i < nh; i++)
            removals += h[i].delta < 0;
    }
    if (atomic_load(&n_rec_lost))
        mismatches++;
    out("picks: %ld checked, %ld stale, %ld unpicked, %ld misattributed, %ld removals, %ld after a removal, %zu events, "
        "%ld mismatches",
        checked, stale, unpicked, misattributed, removals, after_removal, nh, mismatches);
    free(all);
    free(h);
    cnode_pg_snapshot_release(snap);
    if (p) {
        cnode_pg_leave(scope, SYNC_GROUP, p);
        cnode_proc_close(p);
    }
    for (long t = 0; t < n_threads; t++)
        free(recs[t]);
    free(hist);
}

static cnode_balancer *lb;
static atomic_long next_id = 1, n_calls, n_ok, n_err, n_dup, n_served, n_misattributed;
static atomic_int stop_load;
static _Atomic int64_t busy_since[MAX_THREADS];
static atomic_long err_by_code[32];

/* One call: M:F(Id) must answer {Id, Node}. */
static int
one_call(long id)
{
    ei_x_buff args, reply;
    ei_x_new(&args);
    ei_x_encode_list_header(&args, 1);
    ei_x_encode_long(&args, id);
    ei_x_encode_empty_list(&args);
    ei_x_new(&reply);
    cnode_error err = {0};
    cnode_balancer_picked picked;
    atomic_fetch_add(&n_calls, 1);
    int rc = cnode_balancer_call_picked(lb, A.mod, A.fun, &args, NULL, &reply, &picked, &err);
    if (rc == 0) {
        int idx = 0, ver, ar;
        long got = -1;
        char who[MAXATOMLEN_UTF8];
        if (ei_decode_version(reply.buff, &idx, &ver) == 0 && ei_decode_tuple_header(reply.buff, &idx, &ar) == 0 &&
            ar == 2 && ei_decode_long(reply.buff, &idx, &got) == 0 && got == id)
            atomic_fetch_add(&n_ok, 1);
        else
            atomic_fetch_add(&n_dup, 1);
        /* the pick's record names the node that answered, and a generation it was read from */
        if (got == id && (ei_decode_atom(reply.buff, &idx, who) != 0 || strcmp(who, picked.node) != 0 || picked.gen == 0))
            atomic_fetch_add(&n_misattributed, 1);
    } else {
        atomic_fetch_add(&n_err, 1);
        atomic_fetch_add(&err_by_code[(-rc) & 31], 1);
    }
    cnode_error_clear(&err);
    ei_x_free(&args);
    ei_x_free(&reply);
    return rc;
}

static void *
load_thread(void *arg)
{
    long t = (long)arg;
    load_index = t;
    while (!atomic_load(&stop_load)) {
        atomic_store(&busy_since[t], now_ms());
        one_call(atomic_fetch_add(&next_id, 1));
        atomic_store(&busy_since[t], 0);
    }
    return NULL;
}

static int
make_balancer(long timeout_ms)
{
    cnode_balancer_opts o = {.algorithm = CNODE_LB_RANDOM, .timeout_ms = timeout_ms, .retries = 3,
                             .retry_policy = CNODE_LB_RETRY_NODE_ERRORS, .wait_members_ms = 200,
                             .observer = on_attempt};
    cnode_error err = {0};
    int rc = cnode_balancer_new(node, scope, A.group, &o, &lb, &err);
    if (rc != 0)
        return die("balancer", rc, &err);
    return 0;
}

static long
inflight_sum(void)
{
    char names[64][CNODE_BALANCER_NODE_MAX];
    long counts[64], sum = 0;
    size_t n = cnode_balancer_counters(lb, names, counts, 64);
    for (size_t i = 0; i < n && i < 64; i++)
        sum += counts[i];
    return sum;
}

static int
run_chaos(void)
{
    int rc = start_node(0);
    if (rc)
        return rc;
    int64_t until = now_ms() + 30000;
    while (members(NULL, NULL) < nseeds && now_ms() < until)
        pause_ms(20);
    const long timeout = 2000;
    if ((rc = make_balancer(timeout)) != 0)
        return rc;
    out("READY %zu members", members(NULL, NULL));
    long k = A.inflight > MAX_THREADS ? MAX_THREADS : A.inflight;
    pthread_t th[MAX_THREADS];
    for (long t = 0; t < k; t++)
        pthread_create(&th[t], NULL, load_thread, (void *)t);
    int64_t end = now_ms() + A.seconds * 1000;
    while (now_ms() < end)
        pause_ms(50);
    atomic_store(&stop_load, 1);
    /* a call takes at most its attempts' timeouts and the waits between them */
    int64_t deadline = now_ms() + 4 * (timeout + 200) + 10000;
    long unanswered;
    for (;;) {
        unanswered = 0;
        for (long t = 0; t < k; t++)
            if (atomic_load(&busy_since[t]))
                unanswered++;
        if (unanswered == 0 || now_ms() > deadline)
            break;
        pause_ms(20);
    }
    for (long c = 1; c < 32; c++)
        if (atomic_load(&err_by_code[c]))
            out("errors %s: %ld", cnode_strerror((int)-c), atomic_load(&err_by_code[c]));
    if (unanswered) {
        out("chaos: %ld calls, %ld ok, %ld errors, %ld unanswered, %ld duplicates, seed %s", atomic_load(&n_calls),
            atomic_load(&n_ok), atomic_load(&n_err), unanswered, atomic_load(&n_dup), A.seed);
        _exit(3); /* threads are stuck in calls: no orderly close */
    }
    for (long t = 0; t < k; t++)
        pthread_join(th[t], NULL);
    out("inflight %ld", inflight_sum());
    check_picks(k, atomic_load(&n_misattributed));
    out("chaos: %ld calls, %ld ok, %ld errors, %ld unanswered, %ld duplicates, seed %s", atomic_load(&n_calls),
        atomic_load(&n_ok), atomic_load(&n_err), 0L, atomic_load(&n_dup), A.seed);
    cnode_balancer_free(lb);
    finish();
    return 0;
}

/* ---- partition --------------------------------------------------------------------- */

static int
control_is(const char *want)
{
    FILE *f = fopen(A.control, "r");
    char b[64] = {0};
    if (f) {
        if (!fgets(b, sizeof b, f))
            b[0] = 0;
        fclose(f);
    }
    b[strcspn(b, "\r\n")] = 0;
    return strcmp(b, want) == 0;
}

static int
wait_control(const char *want, long ms)
{
    int64_t until = now_ms() + ms;
    while (!control_is(want)) {
        if (now_ms() > until)
            return -1;
        pause_ms(10);
    }
    return 0;
}

/* Pending calls to the peer (they sleep there far longer than the test runs) and how each ended
 * (pend_rc: 1 while open, else its status; a request that ended is freed and its slot NULL). */
static cnode_req *pend[MAX_PENDING];
static int pend_rc[MAX_PENDING];

static void
send_pending(void)
{
    for (int i = 0; i < MAX_PENDING; i++) {
        ei_x_buff args;
        ei_x_new(&args);
        ei_x_encode_list_header(&args, 1);
        ei_x_encode_long(&args, 600000);
        ei_x_encode_empty_list(&args);
        pend_rc[i] = cnode_send_request(node, A.peer, "timer", "sleep", &args, 600000, NULL, NULL, &pend[i]);
        if (pend_rc[i] == 0)
            pend_rc[i] = 1;
        else
            pend[i] = NULL;
        ei_x_free(&args);
    }
}

/* Polls the pending calls: how many ended with noconnection / otherwise; *open those not ended. */
static void
poll_pending(int *noconn, int *other, int *open)
{
    *noconn = *other = *open = 0;
    for (int i = 0; i < MAX_PENDING; i++) {
        if (pend[i]) {
            ei_x_buff r;
            ei_x_new(&r);
            cnode_error err = {0};
            int rc = cnode_receive_response(pend[i], 0, &r, &err);
            ei_x_free(&r);
            cnode_error_clear(&err);
            if (rc != CNODE_EAGAIN) {
                pend[i] = NULL; /* ended: the request is freed */
                pend_rc[i] = rc;
            }
        }
        if (pend_rc[i] == 1)
            (*open)++;
        else if (pend_rc[i] == CNODE_ENOCONNECTION)
            (*noconn)++;
        else
            (*other)++;
    }
}

/* The peer's own view of the group (pg:get_members/2 there), as "node:num.serial" text. */
static int
peer_members(char (*pids)[96], int cap)
{
    ei_x_buff args, reply;
    ei_x_new(&args);
    ei_x_encode_list_header(&args, 2);
    ei_x_encode_atom(&args, A.scope);
    ei_x_encode_atom(&args, A.group);
    ei_x_encode_empty_list(&args);
    ei_x_new(&reply);
    cnode_error err = {0};
    int rc = cnode_call(node, A.peer, "pg", "get_members", &args, 5000, &reply, &err), n = -1;
    cnode_error_clear(&err);
    if (rc == 0) {
        int idx = 0, ver, len;
        n = 0;
        if (ei_decode_version(reply.buff, &idx, &ver) == 0 && ei_decode_list_header(reply.buff, &idx, &len) == 0)
            for (int i = 0; i < len && n < cap; i++) {
                erlang_pid p;
                if (ei_decode_pid(reply.buff, &idx, &p) != 0)
                    break;
                snprintf(pids[n++], 96, "%s:%u.%u.%u", p.node, p.num, p.serial, p.creation);
            }
    }
    ei_x_free(&args);
    ei_x_free(&reply);
    return n;
}

/* Ghosts: members of the peer in our mirror that the peer does not list (-1 if it could not be
 * asked); *missing: members the peer lists that our mirror lacks. */
static int
ghosts(int *missing)
{
    char theirs[16][96];
    int n = peer_members(theirs, 16);
    *missing = 0;
    if (n < 0)
        return -1;
    cnode_pg_snapshot *snap = cnode_pg_snapshot_get(scope);
    size_t cnt = 0;
    const cnode_pg_member *m = cnode_pg_members(snap, A.group, &cnt);
    char(*mine)[96] = calloc(cnt + 1, sizeof *mine);
    int g = 0;
    for (size_t i = 0; i < cnt; i++) {
        erlang_pid pid;
        cnode_pg_member_pid(&m[i], &pid);
        snprintf(mine[i], 96, "%s:%u.%u.%u", m[i].node, m[i].num, m[i].serial, pid.creation);
    }
    for (size_t i = 0; i < cnt; i++) {
        if (strcmp(m[i].node, A.peer) != 0)
            continue;
        int seen = 0;
        for (int j = 0; j < n; j++)
            seen |= strcmp(theirs[j], mine[i]) == 0;
        g += !seen;
    }
    for (int j = 0; j < n; j++) {
        int seen = 0;
        for (size_t i = 0; i < cnt; i++)
            seen |= strcmp(theirs[j], mine[i]) == 0;
        *missing += !seen;
    }
    free(mine);
    cnode_pg_snapshot_release(snap);
    return g;
}

/* One partition phase: wait for `cut_word`, measure down; wait for `heal_word`, measure the resync. */
static int
phase(const char *label, const char *cut_word, const char *heal_word, long *down_in, long *healed_in, int *gh,
      int *du)
{
    long tick_ms = A.ticktime * 1000;
    send_pending();
    int nc, ot, op;
    poll_pending(&nc, &ot, &op);
    out("%s: pending %d", label, op);
    if (wait_control(cut_word, 120000) != 0)
        return die("control: no cut", 0, NULL);
    int64_t t0 = now_ms();
    atomic_store(&down_ms, 0);
    int64_t t_suspect = 0, t_left = 0, t_calls = 0, until = t0 + 2 * tick_ms + 15000;
    while (now_ms() < until) {
        if (!t_suspect && suspect(A.peer))
            t_suspect = now_ms();
        if (!t_left && members(A.peer, NULL) == 0)
            t_left = now_ms();
        poll_pending(&nc, &ot, &op);
        if (!t_calls && op == 0)
            t_calls = now_ms();
        if (atomic_load(&down_ms) && t_left && t_calls)
            break;
        pause_ms(5);
    }
    int64_t td = atomic_load(&down_ms);
    *down_in = td ? (long)(td - t0) : -1;
    out("%s: down in %ld ms, suspect in %ld ms, left mirror in %ld ms, calls ended in %ld ms", label, *down_in,
        t_suspect ? (long)(t_suspect - t0) : -1L, t_left ? (long)(t_left - t0) : -1L,
        t_calls ? (long)(t_calls - t0) : -1L);
    out("%s: suspect first %d", label, t_suspect && td && t_suspect <= td);
    out("%s: calls %d noconnection, %d other, %d unanswered", label, nc, ot, op);
    for (int i = 0; i < MAX_PENDING; i++)
        if (pend[i]) {
            cnode_req_abandon(pend[i]);
            pend[i] = NULL;
        }
    out("%s: DOWN", label);
    if (wait_control(heal_word, 120000) != 0)
        return die("control: no heal", 0, NULL);
    int64_t h0 = now_ms();
    until = h0 + 60000;
    int g = -1, miss = 0;
    size_t dups = 0;
    while (now_ms() < until) {
        if (members(A.peer, &dups) > 0 && (g = ghosts(&miss)) == 0 && miss == 0)
            break;
        pause_ms(20);
    }
    *healed_in = g == 0 && miss == 0 ? (long)(now_ms() - h0) : -1;
    /* settle: the mirror a little later must still match (no late ghost or duplicate) */
    int64_t settle = now_ms() + 2000;
    while (now_ms() < settle)
        pause_ms(50);
    g = ghosts(&miss);
    members(A.peer, &dups);
    *gh = g < 0 ? 1 : g;
    *du = (int)dups;
    out("%s: %d missing", label, miss);
    out("%s: healed in %ld ms, %d ghosts, %d duplicates, %zu members", label, *healed_in, *gh, *du,
        members(A.peer, NULL));
    return 0;
}

static int
run_partition(void)
{
    int rc = start_node(1);
    if (rc)
        return rc;
    int64_t until = now_ms() + 30000;
    while (members(A.peer, NULL) == 0 && now_ms() < until)
        pause_ms(20);
    if (members(A.peer, NULL) == 0)
        return die("no member of the peer in the mirror", 0, NULL);
    out("READY");
    long d1, h1, d2, h2;
    int g1, u1, g2, u2;
    if ((rc = phase("cut", "cut", "heal", &d1, &h1, &g1, &u1)) != 0)
        return rc;
    if ((rc = phase("oneway", "oneway", "heal2", &d2, &h2, &g2, &u2)) != 0)
        return rc;
    out("partition oneway: down in %ld ms, healed in %ld ms, %d ghosts, %d duplicates", d2, h2, g2, u2);
    out("partition: down in %ld ms, healed in %ld ms, %d ghosts, %d duplicates", d1, h1, g1 + g2, u1 + u2);
    wait_control("stop", 30000);
    finish();
    return 0;
}

/* ---- soak -------------------------------------------------------------------------- */

static long
rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Served here, called from BEAM: echo(X) -> X. */
static void
echo(cnode_call_ctx *ctx, const cnode_args *a, void *ud)
{
    (void)ud;
    ei_x_buff r;
    ei_x_new(&r);
    int idx = a->idx[0], end = idx;
    if (ei_skip_term(a->buf, &end) == 0)
        ei_x_append_buf(&r, a->buf + idx, end - idx);
    else
        ei_x_encode_atom(&r, "bad");
    cnode_reply(ctx, &r);
    ei_x_free(&r);
    atomic_fetch_add(&n_served, 1);
}

static void *
churn_thread(void *arg)
{
    (void)arg;
    /* joins and leaves of a C process, and a reconnect now and then */
    unsigned i = 0;
    while (!atomic_load(&stop_load)) {
        cnode_proc *p;
        if (cnode_proc_new(node, NULL, &p) == 0) {
            cnode_pg_join(scope, A.group, p);
            pause_ms(30);
            if (i % 2)
                cnode_pg_leave(scope, A.group, p);
            cnode_proc_close(p); /* a member that exits leaves by its monitor */
        }
        if (++i % 100 == 0 && nseeds)
            cnode_disconnect(node, seedv[i / 100 % nseeds]);
        pause_ms(20);
    }
    return NULL;
}

static int
run_soak(void)
{
    int rc = start_node(0);
    if (rc)
        return rc;
    if ((rc = cnode_register_function(node, "hardtest", "echo", 1, echo, NULL)) != 0)
        return die("register", rc, NULL);
    int64_t until = now_ms() + 30000;
    while (members(NULL, NULL) < nseeds && now_ms() < until)
        pause_ms(20);
    if ((rc = make_balancer(5000)) != 0)
        return rc;
    out("READY");
    enum { K = 8 };
    pthread_t th[K + 1];
    for (long t = 0; t < K; t++)
        pthread_create(&th[t], NULL, load_thread, (void *)t);
    pthread_create(&th[K], NULL, churn_thread, NULL);
    int64_t t0 = now_ms(), end = t0 + A.seconds * 1000, next = t0 + 10000;
    long first = rss_kb();
    out("rss 0 s %ld kB", first);
    while (now_ms() < end) {
        pause_ms(50);
        if (now_ms() >= next) {
            out("rss %ld s %ld kB", (long)((next - t0) / 1000), rss_kb());
            next += 10000;
        }
    }
    atomic_store(&stop_load, 1);
    for (int t = 0; t <= K; t++)
        pthread_join(th[t], NULL);
    long last = rss_kb();
    out("inflight %ld", inflight_sum());
    out("soak: %ld s, rss start %ld kB, end %ld kB, %ld calls, %ld served, %ld errors, %ld bad replies", A.seconds,
        first, last, atomic_load(&n_calls), atomic_load(&n_served), atomic_load(&n_err), atomic_load(&n_dup));
    cnode_balancer_free(lb);
    finish();
    return 0;
}


/* ---- props: the C side of props_SUITE ------------------------------------------------- */

/* The binary argument of a call: *p, *n (NULL if the argument is no binary). */
static const char *
arg_bin(const cnode_args *a, long *n, char **own)
{
    int idx = a->idx[0], type, size;
    *own = NULL;
    if (ei_get_type(a->buf, &idx, &type, &size) != 0 || type != ERL_BINARY_EXT)
        return NULL;
    *own = malloc((size_t)size + 1);
    if (!*own || ei_decode_binary(a->buf, &idx, *own, n) != 0)
        return NULL;
    (*own)[*n] = 0;
    return *own;
}

static void
reply_atom(cnode_call_ctx *ctx, const char *atom)
{
    ei_x_buff r;
    ei_x_new(&r);
    ei_x_encode_atom(&r, atom);
    cnode_reply(ctx, &r);
    ei_x_free(&r);
}

static void
reply_text(cnode_call_ctx *ctx, const char *t)
{
    ei_x_buff r;
    ei_x_new(&r);
    ei_x_encode_binary(&r, t, (long)strlen(t));
    cnode_reply(ctx, &r);
    ei_x_free(&r);
}

static void
prop(cnode_call_ctx *ctx, const cnode_args *a, void *ud)
{
    const char *what = ud;
    long n = 0;
    char *own;
    const char *b = arg_bin(a, &n, &own);
    ei_x_buff r;
    ei_x_new(&r);
    if (!b) {
        ei_x_encode_atom(&r, "badarg");
        cnode_raise(ctx, "error", &r);
    } else if (!strcmp(what, "print")) {
        char *t = NULL;
        if (cnode_term_print(b, (size_t)n, &t, NULL) == 0)
            reply_text(ctx, t);
        else
            reply_atom(ctx, "error");
        free(t);
    } else if (!strcmp(what, "parse")) {
        cnode_error err = {0};
        if (cnode_term_parse(b, &r, &err) == 0) {
            cnode_reply(ctx, &r);
        } else {
            ei_x_free(&r);
            ei_x_new(&r);
            ei_x_encode_tuple_header(&r, 2);
            ei_x_encode_atom(&r, "error");
            ei_x_encode_binary(&r, err.message, (long)strlen(err.message));
            cnode_reply(ctx, &r);
        }
        cnode_error_clear(&err);
    } else if (!strcmp(what, "phash2")) {
        uint32_t h;
        if (cnode_phash2_full(b, (size_t)n, &h) == 0) {
            ei_x_encode_ulong(&r, h);
            cnode_reply(ctx, &r);
        } else {
            reply_atom(ctx, "error");
        }
    } else if (!strcmp(what, "inspect")) {
        size_t cap = 65536;
        char *t = malloc(cap);
        if (t && cnode_rpc_inspect(b, (size_t)n, t, cap) == 0)
            reply_text(ctx, t);
        else
            reply_atom(ctx, "error");
        free(t);
    } else { /* walk */
        ptrdiff_t e = cnode__term_extent(b, (size_t)n, &cnode__term_limits_default, NULL);
        if (e >= 0) {
            ei_x_encode_long(&r, (long)e);
            cnode_reply(ctx, &r);
        } else {
            reply_atom(ctx, e == CNODE__NEED_MORE ? "need_more" : "malformed");
        }
    }
    ei_x_free(&r);
    free(own);
}

static int
run_props(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread started after this one too */
    int rc = start_node(0);
    if (rc)
        return rc;
    static const char *const fns[] = {"print", "parse", "phash2", "inspect", "walk"};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
        if ((rc = cnode_register_function(node, "hardtest", fns[i], 1, prop, (void *)fns[i])) != 0)
            return die("register", rc, NULL);
    if ((rc = cnode_register_function(node, "hardtest", "echo", 1, echo, NULL)) != 0)
        return die("register", rc, NULL);
    out("READY");
    int sig;
    sigwait(&set, &sig);
    finish();
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    A.mode = argv[1];
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--sname")) A.sname = v;
        else if (!strcmp(k, "--name")) A.name = v;
        else if (!strcmp(k, "--cookie")) A.cookie = v;
        else if (!strcmp(k, "--scope")) A.scope = v;
        else if (!strcmp(k, "--group")) A.group = v;
        else if (!strcmp(k, "--seeds")) A.seeds = v;
        else if (!strcmp(k, "--peer")) A.peer = v;
        else if (!strcmp(k, "--control")) A.control = v;
        else if (!strcmp(k, "--mod")) A.mod = v;
        else if (!strcmp(k, "--fun")) A.fun = v;
        else if (!strcmp(k, "--seed")) A.seed = v;
        else if (!strcmp(k, "--seconds")) A.seconds = atol(v);
        else if (!strcmp(k, "--inflight")) A.inflight = atol(v);
        else if (!strcmp(k, "--ticktime")) A.ticktime = atol(v);
        else return die("unknown option", 0, NULL);
    }
    if (!A.cookie || !A.scope || !A.group)
        return die("--cookie, --scope and --group are required", 0, NULL);
    if (!strcmp(A.mode, "chaos") && A.sname)
        return run_chaos();
    if (!strcmp(A.mode, "partition") && A.name && A.peer && A.control)
        return run_partition();
    if (!strcmp(A.mode, "soak") && A.sname)
        return run_soak();
    if (!strcmp(A.mode, "props") && A.sname)
        return run_props();
    return die("usage: see the head of cnode_hardtest.c", 0, NULL);
}
