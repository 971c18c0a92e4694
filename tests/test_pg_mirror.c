/* pg's mirror and snapshots without any other node: C processes of one node
 * join and leave groups of a scope (every change publishes a snapshot) while
 * reader threads walk snapshots. Under ASan a block or snapshot freed while a
 * reader can still reach it is a report. Also: a reader stuck between loading
 * the current snapshot and taking its reference (simulated by holding its
 * epoch counter) never makes the publisher wait, and what it holds back is
 * freed once it leaves; a snapshot kept across many publications keeps its
 * contents; the counts per group equal what the joins and leaves add up to. */
#include <CUnit/CUnit.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnode.h"
#include "pg/pg_internal.h"
#include "tests/testutil.h"

#define NPROCS 8
#define NGROUPS 16

static cnode_node *node;
static cnode_pg_scope *scope;
static cnode_proc *procs[NPROCS];
static pid_t epmd_pid;
static int counts[NGROUPS]; /* expected members of this node per group */
static int joined[NPROCS][NGROUPS];

static int
suite_init(void)
{
    if (tu_epmd_start(&epmd_pid) != 0)
        return 1;
    char name[64];
    snprintf(name, sizeof name, "pgm_%d", (int)getpid());
    cnode_node_opts no = {.name = name, .cookie = "pgm_cookie"};
    cnode_error err = {0};
    if (cnode_node_new(&no, &node, &err) != 0 || cnode_pg_scope_start(node, "pgm", NULL, &scope) != 0) {
        cnode_error_clear(&err);
        tu_epmd_stop(&epmd_pid);
        return 1;
    }
    for (int i = 0; i < NPROCS; i++)
        if (cnode_proc_new(node, NULL, &procs[i]) != 0)
            return 1;
    return 0;
}

static int
suite_clean(void)
{
    cnode_node_close(node);
    tu_epmd_stop(&epmd_pid);
    return 0;
}

static void
gname(int g, char *buf, size_t cap)
{
    snprintf(buf, cap, "g%d", g);
}

/* One random join or leave, and the expected counts kept. */
static void
change(unsigned *seed)
{
    int p = (int)(rand_r(seed) % NPROCS), g = (int)(rand_r(seed) % NGROUPS);
    char gn[16];
    gname(g, gn, sizeof gn);
    if (joined[p][g] && rand_r(seed) % 2) {
        CU_ASSERT_EQUAL(cnode_pg_leave(scope, gn, procs[p]), 0);
        joined[p][g]--;
        counts[g]--;
    } else if (joined[p][g] < 3) {
        CU_ASSERT_EQUAL(cnode_pg_join(scope, gn, procs[p]), 0);
        joined[p][g]++;
        counts[g]++;
    }
}

static atomic_int stop_readers;
static atomic_long walks, bad;

static void *
reader(void *arg)
{
    (void)arg;
    const char *self = cnode_node_name(node);
    uint64_t last = 0;
    while (!atomic_load(&stop_readers)) {
        cnode_pg_snapshot *snap = cnode_pg_snapshot_get(scope);
        uint64_t gen = cnode_pg_snapshot_generation(snap);
        if (gen < last)
            atomic_fetch_add(&bad, 1);
        last = gen;
        size_t ng = cnode_pg_group_count(snap);
        for (size_t i = 0; i < ng; i++) {
            size_t gl, n;
            const char *g = cnode_pg_group_at(snap, i, &gl);
            const cnode_pg_member *m = cnode_pg_members_term(snap, g, gl, &n);
            if (n == 0) /* empty groups are not published */
                atomic_fetch_add(&bad, 1);
            for (size_t k = 0; k < n; k++) {
                erlang_pid pid;
                cnode_pg_member_pid(&m[k], &pid);
                if (strcmp(m[k].node, self) != 0 || pid.creation != cnode_node_creation(node))
                    atomic_fetch_add(&bad, 1);
            }
        }
        cnode_pg_snapshot_release(snap);
        atomic_fetch_add(&walks, 1);
    }
    return NULL;
}

static void
check_counts(void)
{
    cnode_pg_snapshot *snap = cnode_pg_snapshot_get(scope);
    size_t nonempty = 0;
    for (int g = 0; g < NGROUPS; g++) {
        char gn[16];
        gname(g, gn, sizeof gn);
        size_t n;
        cnode_pg_members(snap, gn, &n);
        CU_ASSERT_EQUAL(n, (size_t)counts[g]);
        CU_ASSERT_EQUAL(cnode_pg_node_count(snap, gn, cnode_node_name(node)), (size_t)counts[g]);
        CU_ASSERT_EQUAL(cnode_pg_local_members(snap, gn, NULL, 0), (size_t)counts[g]);
        nonempty += counts[g] > 0;
    }
    CU_ASSERT_EQUAL(cnode_pg_group_count(snap), nonempty);
    cnode_pg_snapshot_release(snap);
}

static void
test_readers_during_changes(void)
{
    pthread_t t[2];
    atomic_store(&stop_readers, 0);
    for (int i = 0; i < 2; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, reader, NULL), 0);
    unsigned seed = 1;
    for (int i = 0; i < 4000; i++)
        change(&seed);
    /* let the readers walk the last snapshots too */
    long w0 = atomic_load(&walks);
    long long dl = tu_now_ms() + tu_ms(10000);
    while (atomic_load(&walks) < w0 + 10 && tu_now_ms() < dl)
        usleep(1000);
    atomic_store(&stop_readers, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CU_ASSERT_EQUAL(atomic_load(&bad), 0);
    CU_ASSERT(atomic_load(&walks) >= w0 + 10);
    check_counts();
}

static size_t
unfreed_snapshots(void)
{
    size_t n = 0;
    pthread_mutex_lock(&node->lock);
    for (cnode_pg_snapshot *sn = scope->snaps; sn; sn = sn->next)
        n++;
    pthread_mutex_unlock(&node->lock);
    return n;
}

static void
test_stuck_reader_never_blocks_publisher(void)
{
    /* a reader that loaded `cur` and was descheduled before taking its reference */
    pthread_mutex_lock(&node->lock);
    uint64_t e = atomic_load(&scope->epoch);
    atomic_fetch_add(&scope->readers[e & 1], 1);
    pthread_mutex_unlock(&node->lock);
    uint64_t g0 = cnode_pg_generation(scope);
    unsigned seed = 7;
    for (int i = 0; i < 200; i++) /* each one publishes: none may wait for the stuck reader */
        change(&seed);
    CU_ASSERT(cnode_pg_generation(scope) > g0);
    /* what it might still reach is kept */
    CU_ASSERT(unfreed_snapshots() > 3);
    atomic_fetch_sub(&scope->readers[e & 1], 1);
    /* gone once it has left: reclaimed by the next publication or housekeeping turn */
    long long dl = tu_now_ms() + tu_ms(5000);
    while (unfreed_snapshots() > 2 && tu_now_ms() < dl) {
        change(&seed);
        usleep(1000);
    }
    CU_ASSERT(unfreed_snapshots() <= 2);
    check_counts();
}

static void
test_kept_snapshot_unchanged(void)
{
    cnode_pg_snapshot *old = cnode_pg_snapshot_get(scope);
    size_t n;
    const cnode_pg_member *m = cnode_pg_members(old, "g3", &n);
    cnode_pg_member *copy = malloc((n + 1) * sizeof *copy);
    CU_ASSERT_PTR_NOT_NULL_FATAL(copy);
    memcpy(copy, m, n * sizeof *m);
    size_t ng = cnode_pg_group_count(old);
    unsigned seed = 11;
    for (int i = 0; i < 1000; i++)
        change(&seed);
    /* its blocks and spine outlive every publication since */
    size_t n2;
    const cnode_pg_member *m2 = cnode_pg_members(old, "g3", &n2);
    CU_ASSERT_EQUAL(n2, n);
    CU_ASSERT(n == 0 || memcmp(m2, copy, n * sizeof *m2) == 0);
    CU_ASSERT_EQUAL(cnode_pg_group_count(old), ng);
    cnode_pg_snapshot_release(old);
    free(copy);
    check_counts();
}

/* pg's order: joins prepend; a leave takes the first copy; a group that empties goes and comes back */
static void
test_order_and_duplicates(void)
{
    for (int p = 0; p < NPROCS; p++)
        while (joined[p][0]) {
            CU_ASSERT_EQUAL(cnode_pg_leave(scope, "g0", procs[p]), 0);
            joined[p][0]--;
            counts[0]--;
        }
    cnode_pg_snapshot *snap = cnode_pg_snapshot_get(scope);
    size_t n;
    CU_ASSERT_PTR_NULL(cnode_pg_members(snap, "g0", &n));
    cnode_pg_snapshot_release(snap);
    CU_ASSERT_EQUAL(cnode_pg_join(scope, "g0", procs[0]), 0);
    CU_ASSERT_EQUAL(cnode_pg_join(scope, "g0", procs[1]), 0);
    CU_ASSERT_EQUAL(cnode_pg_join(scope, "g0", procs[0]), 0);
    snap = cnode_pg_snapshot_get(scope);
    const cnode_pg_member *m = cnode_pg_members(snap, "g0", &n);
    CU_ASSERT_EQUAL_FATAL(n, 3);
    const erlang_pid *p0 = cnode_proc_pid(procs[0]), *p1 = cnode_proc_pid(procs[1]);
    CU_ASSERT(m[0].num == p0->num && m[1].num == p1->num && m[2].num == p0->num);
    cnode_pg_snapshot_release(snap);
    CU_ASSERT_EQUAL(cnode_pg_leave(scope, "g0", procs[0]), 0);
    snap = cnode_pg_snapshot_get(scope);
    m = cnode_pg_members(snap, "g0", &n);
    CU_ASSERT_EQUAL_FATAL(n, 2);
    CU_ASSERT(m[0].num == p1->num && m[1].num == p0->num);
    cnode_pg_snapshot_release(snap);
    joined[0][0] = 1;
    joined[1][0] = 1;
    counts[0] = 2;
    check_counts();
}

void
cnode_test_register(void)
{
    CU_pSuite s = CU_add_suite("pg_mirror", suite_init, suite_clean);
    ADD_TEST(s, test_readers_during_changes);
    ADD_TEST(s, test_stuck_reader_never_blocks_publisher);
    ADD_TEST(s, test_kept_snapshot_unchanged);
    ADD_TEST(s, test_order_and_duplicates);
}
