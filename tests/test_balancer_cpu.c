/* LeastCpu (seed-behaviour.md A6) without a network: /proc/stat readings,
 * and the pick over injected readings: lowest wins, random among the
 * members within the threshold, a missing or stale reading counts as 50.0,
 * a single member is returned directly. The poll over real nodes is in
 * test_balancer_rpc.c. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnode_balancer.h"
#include "tests/testutil.h"

static const char *abc[] = {"a@h", "b@h", "c@h"};

static cnode_balancer *
mk(long ttl, double threshold)
{
    cnode_balancer_opts o = {.algorithm = CNODE_LB_LEAST_CPU, .cpu_cache_ttl_ms = ttl, .cpu_threshold = threshold};
    cnode_balancer *b = NULL;
    CU_ASSERT_EQUAL(cnode_balancer_new(NULL, NULL, "cpu", &o, &b, NULL), 0);
    return b;
}

static void
spread(cnode_balancer *b, const char *const *nodes, size_t n, int picks, int *hits)
{
    memset(hits, 0, n * sizeof *hits);
    for (int k = 0; k < picks; k++) {
        size_t i;
        if (cnode_balancer_select_from(b, nodes, n, NULL, NULL, &i) == 0) {
            hits[i]++;
            cnode_balancer_release(b, nodes[i], 0);
        }
    }
}

static void
test_cpu_util(void)
{
    double a = -1, b = -1;
    CU_ASSERT_EQUAL(cnode_cpu_util(&a), 0);
    for (volatile long spin = 0; spin < 20000000; spin++)
        ;
    CU_ASSERT_EQUAL(cnode_cpu_util(&b), 0);
    CU_ASSERT(a >= 0 && a <= 100);
    CU_ASSERT(b >= 0 && b <= 100);
    CU_ASSERT_EQUAL(cnode_cpu_util(NULL), CNODE_EINVAL);
}

static void
test_lowest_wins(void)
{
    cnode_balancer *b = mk(0, 0);
    int hits[3];
    cnode_balancer_cpu_set(b, "a@h", 80);
    cnode_balancer_cpu_set(b, "b@h", 10);
    cnode_balancer_cpu_set(b, "c@h", 60);
    spread(b, abc, 3, 300, hits);
    CU_ASSERT_EQUAL(hits[1], 300);
    /* within the threshold (default 5.0 points): random among them */
    cnode_balancer_cpu_set(b, "c@h", 14.5);
    spread(b, abc, 3, 600, hits);
    CU_ASSERT_EQUAL(hits[0], 0);
    CU_ASSERT(hits[1] > 200 && hits[2] > 200);
    /* exactly min + threshold still counts */
    cnode_balancer_cpu_set(b, "c@h", 15.0);
    spread(b, abc, 3, 600, hits);
    CU_ASSERT(hits[2] > 200);
    cnode_balancer_free(b);
}

/* 1 once the reading for node counts as 50.0 (stale), 0 past the deadline. */
static int
await_stale(cnode_balancer *b, const char *node)
{
    long long deadline = tu_now_ms() + tu_ms(10000);
    while (cnode_balancer_cpu_get(b, node) != 50.0) {
        if (tu_now_ms() > deadline)
            return 0;
        usleep(10000);
    }
    return 1;
}

static void
test_missing_and_stale(void)
{
    /* a member with no reading counts as 50.0: it beats one at 70. The ttl is
     * one no run reaches, so the readings stay fresh however slow the machine */
    cnode_balancer *b = mk(3600L * 1000, 1.0);
    int hits[3];
    cnode_balancer_cpu_set(b, "a@h", 70);
    cnode_balancer_cpu_set(b, "b@h", 75);
    spread(b, abc, 3, 200, hits);
    CU_ASSERT_EQUAL(hits[2], 200);
    CU_ASSERT_EQUAL(cnode_balancer_cpu_get(b, "c@h"), 50.0);
    CU_ASSERT_EQUAL(cnode_balancer_cpu_get(b, "a@h"), 70.0);
    cnode_balancer_free(b);
    /* readings older than the ttl count as 50.0 too: a short ttl, waited out as
     * a condition (under a deadline), then all three tie */
    b = mk(50, 1.0);
    cnode_balancer_cpu_set(b, "a@h", 70);
    cnode_balancer_cpu_set(b, "b@h", 75);
    CU_ASSERT(await_stale(b, "a@h"));
    CU_ASSERT(await_stale(b, "b@h"));
    spread(b, abc, 3, 900, hits);
    for (int i = 0; i < 3; i++)
        CU_ASSERT(hits[i] > 200);
    cnode_balancer_free(b);
}

static void
test_single_and_errors(void)
{
    cnode_balancer *b = mk(0, 0);
    int hits[1];
    cnode_balancer_cpu_set(b, "a@h", 99);
    spread(b, abc, 1, 10, hits);
    CU_ASSERT_EQUAL(hits[0], 10);
    CU_ASSERT_EQUAL(cnode_balancer_cpu_set(b, NULL, 1), CNODE_EINVAL);
    CU_ASSERT_EQUAL(cnode_balancer_cpu_set(b, "a@h", NAN), CNODE_EINVAL);
    CU_ASSERT_EQUAL(cnode_balancer_cpu_poll(b), 0); /* no node: nothing to poll, no error */
    cnode_balancer_free(b);
    /* not least_cpu */
    cnode_balancer_opts o = {0};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(NULL, NULL, "cpu", &o, &b, NULL), 0);
    CU_ASSERT_EQUAL(cnode_balancer_cpu_set(b, "a@h", 1), CNODE_EINVAL);
    CU_ASSERT_EQUAL(cnode_balancer_cpu_poll(b), CNODE_EINVAL);
    cnode_balancer_free(b);
    CU_ASSERT_EQUAL(cnode_balancer_serve_cpu(NULL, NULL, NULL, 0), CNODE_EINVAL);
}

/* Readings written by one thread while others pick: every pick valid. */
typedef struct {
    cnode_balancer *b;
    int bad;
} pick_job;

static void *
picker(void *arg)
{
    pick_job *j = arg;
    for (int k = 0; k < 20000; k++) {
        size_t i;
        if (cnode_balancer_select_from(j->b, abc, 3, NULL, NULL, &i) != 0 || i > 2)
            j->bad++;
        else
            cnode_balancer_release(j->b, abc[i], 0);
    }
    return NULL;
}

static void
test_concurrent_readings(void)
{
    cnode_balancer *b = mk(0, 0);
    pick_job jobs[2] = {{b, 0}, {b, 0}};
    pthread_t t[2];
    for (int k = 0; k < 2; k++)
        pthread_create(&t[k], NULL, picker, &jobs[k]);
    for (int k = 0; k < 20000; k++)
        cnode_balancer_cpu_set(b, abc[k % 3], (double)(k % 100));
    for (int k = 0; k < 2; k++)
        pthread_join(t[k], NULL);
    CU_ASSERT_EQUAL(jobs[0].bad + jobs[1].bad, 0);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(cnode_balancer_in_flight(b, abc[i]), 0);
    cnode_balancer_free(b);
}

void
cnode_test_register(void)
{
    CU_pSuite s = CU_add_suite("least_cpu", NULL, NULL);
    ADD_TEST(s, test_cpu_util);
    ADD_TEST(s, test_lowest_wins);
    ADD_TEST(s, test_missing_and_stale);
    ADD_TEST(s, test_single_and_errors);
    ADD_TEST(s, test_concurrent_readings);
}
