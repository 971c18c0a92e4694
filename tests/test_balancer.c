/* The balancer's selection core over plain node lists (no network): every
 * algorithm's order and spread as seed-behaviour.md A6 and B3 describe, the
 * selector vectors (tests/data/vectors/libring_key_to_node.tsv through
 * hash_ring, tests/data/vectors/easy_rpc_hash.tsv through easy_hash),
 * counters released on every outcome, and a node with a pg scope of its own
 * for "no live member -> service_unavailable at once", the wait option, and
 * the pick's record (node and pg snapshot generation) as members come and go. */
#include <CUnit/CUnit.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cnode_balancer.h"
#include "tests/testutil.h"

#define RING_TSV "tests/data/vectors/libring_key_to_node.tsv"
#define EASY_TSV "tests/data/vectors/easy_rpc_hash.tsv"

static const char *abc[] = {"a@h", "b@h", "c@h"};

static cnode_balancer *
mk(int algo)
{
    cnode_balancer_opts o = {.algorithm = algo};
    cnode_balancer *b = NULL;
    CU_ASSERT_EQUAL(cnode_balancer_new(NULL, NULL, "grp", &o, &b, NULL), 0);
    return b;
}

/* One pick from nodes, released at once with status 0; returns the index. */
static long
pick(cnode_balancer *b, const char *const *nodes, size_t n)
{
    size_t i;
    if (cnode_balancer_select_from(b, nodes, n, NULL, NULL, &i) != 0)
        return -1;
    cnode_balancer_release(b, nodes[i], 0);
    return (long)i;
}

static int64_t
ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
test_names(void)
{
    int a;
    CU_ASSERT_EQUAL(cnode_balancer_algorithm_parse("round_robin", &a), 0);
    CU_ASSERT_EQUAL(a, CNODE_LB_ROUND_ROBIN);
    CU_ASSERT_EQUAL(cnode_balancer_algorithm_parse("PowerOfTwo", &a), 0);
    CU_ASSERT_EQUAL(a, CNODE_LB_POWER_OF_TWO);
    CU_ASSERT_EQUAL(cnode_balancer_algorithm_parse("Elixir.RpcLoadBalancer.LoadBalancer.SelectionAlgorithm.HashRing", &a), 0);
    CU_ASSERT_EQUAL(a, CNODE_LB_HASH_RING);
    CU_ASSERT_EQUAL(cnode_balancer_algorithm_parse("nope", &a), CNODE_EINVAL);
    for (int k = CNODE_LB_RANDOM; k <= CNODE_LB_CUSTOM; k++) {
        CU_ASSERT_EQUAL(cnode_balancer_algorithm_parse(cnode_balancer_algorithm_name(k), &a), 0);
        CU_ASSERT_EQUAL(a, k);
    }
}

static void
test_bad_options(void)
{
    cnode_balancer *b = NULL;
    cnode_balancer_opts o = {.algorithm = CNODE_LB_CALL_DIRECT};
    CU_ASSERT_EQUAL(cnode_balancer_new(NULL, NULL, "g", &o, &b, NULL), CNODE_ECONFIG); /* no local function */
    o.algorithm = CNODE_LB_CUSTOM;
    CU_ASSERT_EQUAL(cnode_balancer_new(NULL, NULL, "g", &o, &b, NULL), CNODE_ECONFIG); /* no vtable */
    o.algorithm = 99;
    CU_ASSERT_EQUAL(cnode_balancer_new(NULL, NULL, "g", &o, &b, NULL), CNODE_ECONFIG); /* unknown algorithm: config_error */
    o.algorithm = CNODE_LB_RANDOM;
    CU_ASSERT_EQUAL(cnode_balancer_new(NULL, NULL, "", &o, &b, NULL), CNODE_EINVAL);
    o.filter = "a(";
    o.filter_kind = CNODE_FILTER_REGEX;
    CU_ASSERT_EQUAL(cnode_balancer_new(NULL, NULL, "g", &o, &b, NULL), CNODE_ECONFIG);
    CU_ASSERT_PTR_NULL(b);
    cnode_balancer_free(NULL);
    b = mk(CNODE_LB_RANDOM);
    size_t i;
    CU_ASSERT_EQUAL(cnode_balancer_select_from(b, abc, 0, NULL, NULL, &i), CNODE_EUNAVAILABLE);
    char node[64];
    cnode_error err = {0};
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, node, sizeof node, &err), CNODE_EINVAL); /* no scope */
    cnode_balancer_free(b);
}

static void
test_random(void)
{
    cnode_balancer *b = mk(CNODE_LB_RANDOM);
    int hits[3] = {0};
    for (int k = 0; k < 3000; k++) {
        long i = pick(b, abc, 3);
        CU_ASSERT_FATAL(i >= 0 && i < 3);
        hits[i]++;
    }
    for (int k = 0; k < 3; k++)
        CU_ASSERT(hits[k] > 800 && hits[k] < 1200);
    CU_ASSERT_EQUAL(pick(b, abc, 1), 0);
    cnode_balancer_free(b);
}

static void
test_round_robin_order(void)
{
    cnode_balancer *b = mk(CNODE_LB_ROUND_ROBIN);
    /* a fresh balancer over [a, b, c]: a, b, c, a, b, c, ... */
    for (int k = 0; k < 9; k++)
        CU_ASSERT_EQUAL(pick(b, abc, 3), k % 3);
    /* membership changes shift the next index, they do not reset the cursor:
     * the cursor is at 9, so [a, b] gives index 9 mod 2 = 1 */
    CU_ASSERT_EQUAL(pick(b, abc, 2), 1);
    CU_ASSERT_EQUAL(pick(b, abc, 1), 0);
    cnode_balancer_free(b);
}

static void
test_round_robin_even(void)
{
    cnode_balancer *b = mk(CNODE_LB_ROUND_ROBIN);
    int hits[3] = {0};
    for (int k = 0; k < 300; k++)
        hits[pick(b, abc, 3)]++;
    CU_ASSERT_EQUAL(hits[0], 100);
    CU_ASSERT_EQUAL(hits[1], 100);
    CU_ASSERT_EQUAL(hits[2], 100);
    cnode_balancer_free(b);
}

typedef struct {
    cnode_balancer *b;
    int hits[3];
} rr_job;

static void *
rr_worker(void *arg)
{
    rr_job *j = arg;
    for (int k = 0; k < 3000; k++) {
        long i = pick(j->b, abc, 3);
        if (i >= 0)
            j->hits[i]++;
    }
    return NULL;
}

static void
test_round_robin_threads(void)
{
    /* 8 threads x 3000 picks share one cursor: the spread stays exact
     * (the seed's two-step add-then-read could hand two callers one index) */
    cnode_balancer *b = mk(CNODE_LB_ROUND_ROBIN);
    rr_job jobs[8];
    pthread_t t[8];
    for (int k = 0; k < 8; k++) {
        memset(&jobs[k], 0, sizeof jobs[k]);
        jobs[k].b = b;
        pthread_create(&t[k], NULL, rr_worker, &jobs[k]);
    }
    int hits[3] = {0};
    for (int k = 0; k < 8; k++) {
        pthread_join(t[k], NULL);
        for (int i = 0; i < 3; i++)
            hits[i] += jobs[k].hits[i];
    }
    CU_ASSERT_EQUAL(hits[0], 8000);
    CU_ASSERT_EQUAL(hits[1], 8000);
    CU_ASSERT_EQUAL(hits[2], 8000);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(cnode_balancer_in_flight(b, abc[i]), 0);
    cnode_balancer_free(b);
}

static void
test_weighted(void)
{
    const char *ab[] = {"a@h", "b@h"};
    cnode_balancer_weight w31[] = {{"a@h", 3}, {"b@h", 1}};
    cnode_balancer_opts o = {.algorithm = CNODE_LB_WEIGHTED_ROUND_ROBIN, .weights = w31, .n_weights = 2};
    cnode_balancer *b;
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(NULL, NULL, "g", &o, &b, NULL), 0);
    /* blocks, not interleaved: a a a b a a a b */
    static const int want[] = {0, 0, 0, 1, 0, 0, 0, 1};
    for (int k = 0; k < 8; k++)
        CU_ASSERT_EQUAL(pick(b, ab, 2), want[k]);
    cnode_balancer_free(b);

    /* a missing weight counts as 1: a:2 over [a, b] gives 4:2 in 6 picks */
    cnode_balancer_weight w2[] = {{"a@h", 2}};
    o.weights = w2;
    o.n_weights = 1;
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(NULL, NULL, "g", &o, &b, NULL), 0);
    int hits[2] = {0};
    for (int k = 0; k < 6; k++)
        hits[pick(b, ab, 2)]++;
    CU_ASSERT_EQUAL(hits[0], 4);
    CU_ASSERT_EQUAL(hits[1], 2);
    cnode_balancer_free(b);

    /* no weights at all: plain a b c a b c; weight 0 leaves a node out */
    o.weights = NULL;
    o.n_weights = 0;
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(NULL, NULL, "g", &o, &b, NULL), 0);
    for (int k = 0; k < 6; k++)
        CU_ASSERT_EQUAL(pick(b, abc, 3), k % 3);
    cnode_balancer_free(b);
    cnode_balancer_weight w0[] = {{"b@h", 0}};
    o.weights = w0;
    o.n_weights = 1;
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(NULL, NULL, "g", &o, &b, NULL), 0);
    for (int k = 0; k < 6; k++)
        CU_ASSERT_NOT_EQUAL(pick(b, abc, 3), 1);
    /* every weight 0: the seed divides by zero; here service_unavailable */
    size_t i;
    CU_ASSERT_EQUAL(cnode_balancer_select_from(b, abc + 1, 1, NULL, NULL, &i), CNODE_EUNAVAILABLE);
    CU_ASSERT_EQUAL(cnode_balancer_in_flight(b, "b@h"), 0);
    cnode_balancer_free(b);
}

static void
test_least_connections(void)
{
    cnode_balancer *b = mk(CNODE_LB_LEAST_CONNECTIONS);
    size_t i;
    /* fresh [a, b, c], nothing released: a, b, c (ties go to the earliest) */
    for (size_t k = 0; k < 3; k++) {
        CU_ASSERT_EQUAL(cnode_balancer_select_from(b, abc, 3, NULL, NULL, &i), 0);
        CU_ASSERT_EQUAL(i, k);
    }
    CU_ASSERT_EQUAL(cnode_balancer_in_flight(b, "a@h"), 1);
    /* releasing b makes it the least loaded */
    cnode_balancer_release(b, "b@h", 0);
    CU_ASSERT_EQUAL(cnode_balancer_select_from(b, abc, 3, NULL, NULL, &i), 0);
    CU_ASSERT_EQUAL(i, 1);
    /* load a up: the minimum wins whatever its position */
    for (int k = 0; k < 5; k++)
        cnode_balancer_select_from(b, abc, 1, NULL, NULL, &i);
    cnode_balancer_release(b, "c@h", CNODE_ETIMEOUT); /* a failed call releases too */
    CU_ASSERT_EQUAL(cnode_balancer_select_from(b, abc, 3, NULL, NULL, &i), 0);
    CU_ASSERT_EQUAL(i, 2);
    /* spare releases never push a count below 0 (the seed's would go negative) */
    for (int k = 0; k < 20; k++)
        cnode_balancer_release(b, "a@h", 0);
    cnode_balancer_release(b, "never@h", 0);
    CU_ASSERT_EQUAL(cnode_balancer_in_flight(b, "a@h"), 0);
    CU_ASSERT_EQUAL(cnode_balancer_in_flight(b, "never@h"), 0);
    CU_ASSERT_EQUAL(pick(b, abc, 1), 0); /* single member: returned */
    cnode_balancer_free(b);
}

typedef struct {
    cnode_balancer *b;
    _Atomic int released; /* set before the last release: drain returns after it */
} drain_job;

static void *
release_later(void *arg)
{
    drain_job *j = arg;
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
    cnode_balancer_release(j->b, "a@h", 0);
    atomic_store(&j->released, 1);
    cnode_balancer_release(j->b, "b@h", CNODE_ETIMEOUT);
    return NULL;
}

/* drain: at once when idle; CNODE_ETIMEOUT, never before its bound, while
 * picks are held; 0 once another thread releases them (not before). */
static void
test_drain(void)
{
    cnode_balancer *b = mk(CNODE_LB_ROUND_ROBIN);
    CU_ASSERT_EQUAL(cnode_balancer_drain(NULL, 10), CNODE_EINVAL);
    CU_ASSERT_EQUAL(cnode_balancer_drain(b, 0), 0);
    size_t i;
    CU_ASSERT_EQUAL(cnode_balancer_select_from(b, abc, 2, NULL, NULL, &i), 0);
    CU_ASSERT_EQUAL(cnode_balancer_select_from(b, abc, 2, NULL, NULL, &i), 0);
    int64_t t0 = ms_now();
    CU_ASSERT_EQUAL(cnode_balancer_drain(b, 50), CNODE_ETIMEOUT);
    int64_t took = ms_now() - t0;
    CU_ASSERT(took >= 50);
    drain_job j = {.b = b};
    pthread_t t;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, release_later, &j), 0);
    CU_ASSERT_EQUAL(cnode_balancer_drain(b, 30000), 0);
    CU_ASSERT_EQUAL(atomic_load(&j.released), 1);
    pthread_join(t, NULL);
    cnode_balancer_free(b);
}

/* select_from's per-thread ring cache notices a new list: names of other
 * lengths at the same places (each in a buffer of its exact size, so a
 * compare that reads past a shorter name is an ASan report) give the ring of
 * the new list, and the old list's ring comes back with the old list. */
static void
test_ring_cache_new_list(void)
{
    cnode_balancer_opts o = {.algorithm = CNODE_LB_HASH_RING};
    cnode_balancer *b;
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(NULL, NULL, "g", &o, &b, NULL), 0);
    const char *longer[] = {"alpha-long-name@host", "beta-long-name@host"};
    char *shorter[2] = {strdup("a@h"), strdup("b@h")};
    cnode_ring *rl, *rs;
    CU_ASSERT_EQUAL_FATAL(cnode_ring_new(25, &rl), 0);
    CU_ASSERT_EQUAL_FATAL(cnode_ring_new(25, &rs), 0);
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_EQUAL(cnode_ring_add(rl, longer[i], 128), 0);
        CU_ASSERT_EQUAL(cnode_ring_add(rs, shorter[i], 128), 0);
    }
    for (int k = 0; k < 64; k++) {
        char text[16];
        snprintf(text, sizeof text, "k%d", k);
        ei_x_buff key;
        ei_x_new_with_version(&key);
        ei_x_encode_binary(&key, text, (long)strlen(text));
        const char *want_l = NULL, *want_s = NULL;
        CU_ASSERT_EQUAL(cnode_ring_key_to_node(rl, key.buff, (size_t)key.index, &want_l), 0);
        CU_ASSERT_EQUAL(cnode_ring_key_to_node(rs, key.buff, (size_t)key.index, &want_s), 0);
        size_t i;
        CU_ASSERT_EQUAL(cnode_balancer_select_from(b, longer, 2, &key, NULL, &i), 0);
        CU_ASSERT_STRING_EQUAL(longer[i], want_l);
        cnode_balancer_release(b, longer[i], 0);
        CU_ASSERT_EQUAL(cnode_balancer_select_from(b, (const char *const *)shorter, 2, &key, NULL, &i), 0);
        CU_ASSERT_STRING_EQUAL(shorter[i], want_s);
        cnode_balancer_release(b, shorter[i], 0);
        ei_x_free(&key);
    }
    cnode_ring_free(rl);
    cnode_ring_free(rs);
    free(shorter[0]);
    free(shorter[1]);
    cnode_balancer_free(b);
}

static void
test_power_of_two(void)
{
    cnode_balancer *b = mk(CNODE_LB_POWER_OF_TWO);
    size_t i;
    CU_ASSERT_EQUAL(pick(b, abc, 1), 0);
    /* a carries 50 calls: it loses every comparison with b or c */
    for (int k = 0; k < 50; k++)
        cnode_balancer_select_from(b, abc, 1, NULL, NULL, &i);
    int hits[3] = {0};
    for (int k = 0; k < 600; k++) {
        long p = pick(b, abc, 3);
        CU_ASSERT_FATAL(p >= 0 && p < 3);
        hits[p]++;
    }
    CU_ASSERT_EQUAL(hits[0], 0);
    CU_ASSERT(hits[1] > 200 && hits[2] > 200);
    /* two nodes: always the less loaded one */
    for (int k = 0; k < 50; k++)
        CU_ASSERT_EQUAL(pick(b, abc, 2), 1);
    for (int k = 0; k < 50; k++)
        cnode_balancer_release(b, "a@h", 0);
    CU_ASSERT_EQUAL(cnode_balancer_in_flight(b, "a@h"), 0);
    cnode_balancer_free(b);
}

static int
split_tabs(char *line, char **f, int max)
{
    int n = 0;
    f[n++] = line;
    for (char *p = line; *p && n < max; p++)
        if (*p == '\t') {
            *p = 0;
            f[n++] = p + 1;
        }
    return n;
}

/* Split a comma list in place into v; returns the count. */
static size_t
split_commas(char *s, const char **v, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *t = strtok_r(s, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
        v[n++] = t;
    return n;
}

static void
test_hash_ring_vectors(void)
{
    /* rpc_load_balancer's HashRing: the owner libring gives for key on the
     * ring of the members, on OTP <= 25 and >= 26 */
    cnode_balancer_opts o25 = {.algorithm = CNODE_LB_HASH_RING, .otp_release = 25};
    cnode_balancer_opts o26 = {.algorithm = CNODE_LB_HASH_RING, .otp_release = 26};
    cnode_balancer *b25, *b26;
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(NULL, NULL, "g", &o25, &b25, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(NULL, NULL, "g", &o26, &b26, NULL), 0);
    char *text = tu_read_file(RING_TSV, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    int rows = 0, bad = 0;
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        char *f[20];
        CU_ASSERT_EQUAL_FATAL(split_tabs(line, f, 20), 16);
        const char *nodes[10];
        size_t n = split_commas(f[1], nodes, 10);
        ei_x_buff key = {0};
        unsigned char kb[1024];
        long klen = tu_unhex(f[5], kb, sizeof kb);
        key.buff = (char *)kb;
        key.index = (int)klen;
        size_t i25 = 99, i26 = 99;
        int rc = cnode_balancer_select_from(b25, nodes, n, &key, NULL, &i25) |
                 cnode_balancer_select_from(b26, nodes, n, &key, NULL, &i26);
        if (rc == 0) {
            cnode_balancer_release(b25, nodes[i25], 0);
            cnode_balancer_release(b26, nodes[i26], 0);
        }
        if (rc || strcmp(nodes[i25], f[7]) != 0 || strcmp(nodes[i26], f[9]) != 0) {
            if (bad++ < 5)
                fprintf(stderr, "hash_ring %s key %s: got %s/%s\n", f[0], f[4], rc ? "-" : nodes[i25], rc ? "-" : nodes[i26]);
        }
        /* the member order does not change the owner */
        if (n > 1) {
            const char *rev[10];
            for (size_t k = 0; k < n; k++)
                rev[k] = nodes[n - 1 - k];
            size_t j;
            if (cnode_balancer_select_from(b25, rev, n, &key, NULL, &j) != 0 || strcmp(rev[j], f[7]) != 0)
                bad++;
            else
                cnode_balancer_release(b25, rev[j], 0);
        }
        rows++;
    }
    free(text);
    CU_ASSERT_EQUAL(rows, 2510);
    CU_ASSERT_EQUAL(bad, 0);
    /* no key: any member (random) */
    size_t i;
    CU_ASSERT_EQUAL(cnode_balancer_select_from(b25, abc, 3, NULL, NULL, &i), 0);
    CU_ASSERT(i < 3);
    cnode_balancer_release(b25, abc[i], 0);
    cnode_balancer_free(b25);
    cnode_balancer_free(b26);
}

static void
test_easy_hash_vectors(void)
{
    cnode_balancer *b = mk(CNODE_LB_EASY_HASH);
    char *text = tu_read_file(EASY_TSV, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    int rows = 0, bad = 0;
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        char *f[10];
        CU_ASSERT_EQUAL_FATAL(split_tabs(line, f, 10), 8);
        const char *nodes[5];
        size_t n = split_commas(f[1], nodes, 5);
        static unsigned char ab[70000];
        long alen = tu_unhex(f[4], ab, sizeof ab);
        ei_x_buff args = {0};
        args.buff = (char *)ab;
        args.index = (int)alen;
        size_t i = 99;
        int rc = cnode_balancer_select_from(b, nodes, n, NULL, &args, &i);
        if (rc == 0)
            cnode_balancer_release(b, nodes[i], 0);
        if (rc || strcmp(nodes[i], f[7]) != 0)
            bad++;
        rows++;
    }
    free(text);
    CU_ASSERT_EQUAL(rows, 520);
    CU_ASSERT_EQUAL(bad, 0);
    /* select without args hashes [] (a zero-arity call) */
    size_t i;
    CU_ASSERT_EQUAL(cnode_balancer_select_from(b, abc, 3, NULL, NULL, &i), 0);
    CU_ASSERT_EQUAL(i, 3468870702u % 3);
    cnode_balancer_release(b, abc[i], 0);
    cnode_balancer_free(b);
}

static long easy_rr_first[2];

static void *
easy_rr_thread(void *arg)
{
    cnode_balancer *b = arg;
    easy_rr_first[1] = pick(b, abc, 3);
    for (int k = 1; k < 6; k++)
        if (pick(b, abc, 3) != (easy_rr_first[1] + k) % 3)
            easy_rr_first[1] = -1;
    return NULL;
}

static void
test_easy_round_robin(void)
{
    cnode_balancer *b = mk(CNODE_LB_EASY_ROUND_ROBIN);
    /* starts at a random index, then walks the list */
    long first = pick(b, abc, 3);
    CU_ASSERT_FATAL(first >= 0);
    for (int k = 1; k < 7; k++)
        CU_ASSERT_EQUAL(pick(b, abc, 3), (first + k) % 3);
    /* another thread has its own cursor */
    pthread_t t;
    pthread_create(&t, NULL, easy_rr_thread, b);
    pthread_join(t, NULL);
    CU_ASSERT(easy_rr_first[1] >= 0);
    CU_ASSERT_EQUAL(pick(b, abc, 3), (first + 7) % 3);
    /* a stored index past a shrunken list starts over at 0 */
    long at = pick(b, abc, 3); /* cursor now at (at + 1) mod 3 */
    if ((at + 1) % 3 == 2)
        CU_ASSERT_EQUAL(pick(b, abc, 2), 0);
    /* reset: a fresh random start, still a valid index */
    cnode_balancer_reset_round_robin(b);
    long r = pick(b, abc, 3);
    CU_ASSERT(r >= 0 && r < 3);
    /* a seen-every-start check: across resets all three starts show up */
    int seen[3] = {0};
    for (int k = 0; k < 200; k++) {
        cnode_balancer_reset_round_robin(b);
        seen[pick(b, abc, 3)] = 1;
    }
    CU_ASSERT(seen[0] && seen[1] && seen[2]);
    cnode_balancer_free(b);
}

static char sticky_other[16];

static void *
sticky_thread(void *arg)
{
    cnode_balancer *b = arg;
    long i = pick(b, abc, 3);
    snprintf(sticky_other, sizeof sticky_other, "%s", i >= 0 ? abc[i] : "-");
    return NULL;
}

static void
test_sticky(void)
{
    cnode_balancer *b = mk(CNODE_LB_STICKY);
    long first = pick(b, abc, 3);
    CU_ASSERT_FATAL(first >= 0);
    for (int k = 0; k < 50; k++)
        CU_ASSERT_EQUAL(pick(b, abc, 3), first);
    /* the sticky node left the list: pick again (EasyRpc would keep it) */
    const char *others[2];
    size_t n = 0;
    for (int k = 0; k < 3; k++)
        if (k != first)
            others[n++] = abc[k];
    long again = pick(b, others, 2);
    CU_ASSERT(again == 0 || again == 1);
    for (int k = 0; k < 20; k++)
        CU_ASSERT_EQUAL(pick(b, others, 2), again);
    /* clear_sticky: the next pick is free again; eventually differs */
    int moved = 0;
    for (int k = 0; k < 200 && !moved; k++) {
        cnode_balancer_clear_sticky(b);
        moved = pick(b, others, 2) != again;
    }
    CU_ASSERT(moved);
    /* threads are isolated: another thread makes its own first pick */
    pthread_t t;
    pthread_create(&t, NULL, sticky_thread, b);
    pthread_join(t, NULL);
    CU_ASSERT(strcmp(sticky_other, "-") != 0);
    cnode_balancer_free(b);

    /* sticky on top of round_robin */
    cnode_balancer_opts o = {.algorithm = CNODE_LB_ROUND_ROBIN, .sticky = 1};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(NULL, NULL, "g", &o, &b, NULL), 0);
    CU_ASSERT_EQUAL(pick(b, abc, 3), 0);
    CU_ASSERT_EQUAL(pick(b, abc, 3), 0);
    cnode_balancer_free(b);
}

typedef struct {
    int inits, selects, results, destroys, last_status;
    long in_flight;
} custom_stats;

static int
c_init(void *data, void **state)
{
    custom_stats *s = data;
    s->inits++;
    *state = s;
    return 0;
}

static long
c_select(void *state, const cnode_balancer_pick *p)
{
    custom_stats *s = state;
    s->selects++;
    s->in_flight++;
    return (long)p->n - 1; /* always the last candidate */
}

static void
c_result(void *state, const char *node, int status)
{
    custom_stats *s = state;
    (void)node;
    s->results++;
    s->in_flight--;
    s->last_status = status;
}

static void
c_destroy(void *state)
{
    ((custom_stats *)state)->destroys++;
}

static int
c_init_fail(void *data, void **state)
{
    (void)data;
    (void)state;
    return CNODE_ENOMEM;
}

static void
test_custom(void)
{
    custom_stats st = {0};
    cnode_balancer_algo algo = {c_init, c_select, c_result, c_destroy};
    cnode_balancer_opts o = {.algorithm = CNODE_LB_CUSTOM, .custom = &algo, .custom_data = &st};
    cnode_balancer *b;
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(NULL, NULL, "g", &o, &b, NULL), 0);
    CU_ASSERT_EQUAL(st.inits, 1);
    size_t i;
    CU_ASSERT_EQUAL(cnode_balancer_select_from(b, abc, 3, NULL, NULL, &i), 0);
    CU_ASSERT_EQUAL(i, 2);
    CU_ASSERT_EQUAL(cnode_balancer_in_flight(b, "c@h"), 1);
    cnode_balancer_release(b, "c@h", CNODE_EEXCEPTION);
    CU_ASSERT_EQUAL(st.results, 1);
    CU_ASSERT_EQUAL(st.last_status, CNODE_EEXCEPTION);
    CU_ASSERT_EQUAL(st.in_flight, 0);
    cnode_balancer_free(b);
    CU_ASSERT_EQUAL(st.destroys, 1);

    algo.init = c_init_fail;
    CU_ASSERT_EQUAL(cnode_balancer_new(NULL, NULL, "g", &o, &b, NULL), CNODE_ECONFIG);
    CU_ASSERT_EQUAL(st.destroys, 1); /* init failed: destroy is not called */
}

/* ---- with a node and a pg scope of its own (needs epmd) ------------------ */

static cnode_node *node;
static cnode_pg_scope *scope;
static pid_t epmd_pid;

static int
suite_node_init(void)
{
    if (tu_epmd_start(&epmd_pid) != 0) {
        fprintf(stderr, "balancer node suite: cannot start a private epmd\n");
        return 1;
    }
    cnode_node_opts no = {0};
    char name[64];
    snprintf(name, sizeof name, "lbtest_%d", (int)getpid());
    no.name = name;
    no.cookie = "lbtest_cookie";
    cnode_error err = {0};
    int rc = cnode_node_new(&no, &node, &err);
    if (rc != 0) {
        fprintf(stderr, "balancer node suite: no node: %s\n", err.message[0] ? err.message : cnode_strerror(rc));
        cnode_error_clear(&err);
        node = NULL;
        tu_epmd_stop(&epmd_pid);
        return 1;
    }
    if (cnode_pg_scope_start(node, "lbtest_scope", NULL, &scope) != 0) {
        fprintf(stderr, "balancer node suite: no pg scope\n");
        cnode_node_close(node);
        node = NULL;
        tu_epmd_stop(&epmd_pid);
        return 1;
    }
    return 0;
}

static int
suite_node_clean(void)
{
    cnode_node_close(node);
    node = NULL;
    tu_epmd_stop(&epmd_pid);
    return 0;
}

static void
test_empty_group_at_once(void)
{
    if (!node)
        return;
    cnode_balancer *b;
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(node, scope, "nobody", NULL, &b, NULL), 0);
    ei_x_buff args, reply;
    ei_x_new_with_version(&args);
    ei_x_encode_empty_list(&args);
    ei_x_new(&reply);
    cnode_error err = {0};
    char served[CNODE_BALANCER_NODE_MAX];
    int rc = cnode_balancer_call(b, "erlang", "node", &args, NULL, &reply, served, sizeof served, &err);
    CU_ASSERT_EQUAL(rc, CNODE_EUNAVAILABLE);
    /* at once: the first attempt is the answer, no retry and no wait for one
     * (how fast is a benchmark's question, not asserted here) */
    CU_ASSERT_EQUAL(err.attempt, 0);
    CU_ASSERT_STRING_EQUAL(err.lb_code, "service_unavailable");
    CU_ASSERT_STRING_EQUAL(err.type, "node_error");
    CU_ASSERT_STRING_EQUAL(err.message, "no members registered");
    CU_ASSERT_STRING_EQUAL(err.module, "erlang");
    CU_ASSERT_EQUAL(err.arity, 0);
    CU_ASSERT_STRING_EQUAL(served, "");
    char text[512];
    CU_ASSERT_EQUAL(cnode_error_format(&err, text, sizeof text), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "[node_error] no members registered"));
    cnode_error_clear(&err);
    /* select and cast say the same */
    char pickd[64];
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, pickd, sizeof pickd, &err), CNODE_EUNAVAILABLE);
    cnode_error_clear(&err);
    CU_ASSERT_EQUAL(cnode_balancer_cast(b, "erlang", "node", &args, NULL, NULL, 0, &err), CNODE_EUNAVAILABLE);
    cnode_error_clear(&err);
    cnode_balancer_free(b);

    /* no-route retries are bounded: 2 retries, each after 50 ms */
    cnode_balancer_opts o = {.retries = 2, .sleep_before_retry_ms = 50};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(node, scope, "nobody", &o, &b, NULL), 0);
    int64_t t0 = ms_now();
    rc = cnode_balancer_call(b, "erlang", "node", &args, NULL, &reply, NULL, 0, &err);
    int64_t took = ms_now() - t0;
    CU_ASSERT_EQUAL(rc, CNODE_EUNAVAILABLE);
    CU_ASSERT_EQUAL(err.attempt, 2);
    CU_ASSERT(took >= 100);
    cnode_error_clear(&err);
    cnode_balancer_free(b);
    ei_x_free(&args);
    ei_x_free(&reply);
}

typedef struct {
    int calls;
    int next_rc; /* what the local function returns */
} local_state;

static int
local_fn(const char *mod, const char *fun, const ei_x_buff *args, ei_x_buff *reply, cnode_error *err, void *data)
{
    (void)mod;
    (void)args;
    local_state *ls = data;
    ls->calls++;
    if (ls->next_rc == 0) {
        if (reply)
            ei_x_encode_atom(reply, fun);
        return 0;
    }
    if (err) {
        cnode_error_clear(err);
        err->code = ls->next_rc;
        snprintf(err->message, sizeof err->message, "local failure");
    }
    return ls->next_rc;
}

typedef struct {
    cnode_proc *proc;
} joiner;

static void *
join_later(void *arg)
{
    joiner *j = arg;
    usleep(100000);
    cnode_pg_join(scope, "late", j->proc);
    return NULL;
}

static void
test_local_member_outcomes(void)
{
    if (!node)
        return;
    /* this node joins "self_grp": with opts.local it is a candidate and its
     * calls run locally; every outcome releases the in-flight count */
    cnode_proc *p;
    CU_ASSERT_EQUAL_FATAL(cnode_proc_new(node, NULL, &p), 0);
    CU_ASSERT_EQUAL_FATAL(cnode_pg_join(scope, "self_grp", p), 0);
    local_state ls = {0};
    cnode_balancer_opts o = {.algorithm = CNODE_LB_LEAST_CONNECTIONS, .local = local_fn, .local_data = &ls};
    cnode_balancer *b;
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(node, scope, "self_grp", &o, &b, NULL), 0);
    const char *me = cnode_node_name(node);
    ei_x_buff args, reply;
    ei_x_new_with_version(&args);
    ei_x_encode_list_header(&args, 1);
    ei_x_encode_long(&args, 7);
    ei_x_encode_empty_list(&args);
    static const int outcomes[] = {0, CNODE_ETIMEOUT, CNODE_ENOCONNECTION, CNODE_EEXCEPTION, CNODE_EINVAL};
    for (size_t k = 0; k < sizeof outcomes / sizeof outcomes[0]; k++) {
        ls.next_rc = outcomes[k];
        ei_x_new(&reply);
        cnode_error err = {0};
        char served[CNODE_BALANCER_NODE_MAX];
        int rc = cnode_balancer_call(b, "m", "f", &args, NULL, &reply, served, sizeof served, &err);
        CU_ASSERT_EQUAL(rc, outcomes[k]);
        CU_ASSERT_STRING_EQUAL(served, me);
        CU_ASSERT_EQUAL(cnode_balancer_in_flight(b, me), 0);
        if (rc) {
            CU_ASSERT_STRING_EQUAL(err.node, me);
            CU_ASSERT_STRING_EQUAL(err.function, "f");
            CU_ASSERT_EQUAL(err.arity, 1);
            CU_ASSERT_PTR_NOT_NULL(err.type);
        }
        if (rc == CNODE_ETIMEOUT)
            CU_ASSERT_STRING_EQUAL(err.type, "timeout_error"); /* EasyRpc said rpc_error */
        if (rc == CNODE_ENOCONNECTION)
            CU_ASSERT_STRING_EQUAL(err.type, "node_error");
        cnode_error_clear(&err);
        ei_x_free(&reply);
    }
    CU_ASSERT_EQUAL(ls.calls, 5);
    /* casts release at once */
    ls.next_rc = 0;
    CU_ASSERT_EQUAL(cnode_balancer_cast(b, "m", "f", &args, NULL, NULL, 0, NULL), 0);
    CU_ASSERT_EQUAL(cnode_balancer_in_flight(b, me), 0);
    /* select counts, release uncounts */
    char pickd[CNODE_BALANCER_NODE_MAX];
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, pickd, sizeof pickd, NULL), 0);
    CU_ASSERT_STRING_EQUAL(pickd, me);
    CU_ASSERT_EQUAL(cnode_balancer_in_flight(b, me), 1);
    cnode_balancer_release(b, pickd, 0);
    CU_ASSERT_EQUAL(cnode_balancer_in_flight(b, me), 0);
    cnode_balancer_free(b);

    /* retry policy "all": every failed attempt is tried again, each counted and released */
    o.retries = 2;
    o.retry_policy = CNODE_LB_RETRY_ALL;
    ls.calls = 0;
    ls.next_rc = CNODE_EEXCEPTION;
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(node, scope, "self_grp", &o, &b, NULL), 0);
    ei_x_new(&reply);
    cnode_error err = {0};
    CU_ASSERT_EQUAL(cnode_balancer_call(b, "m", "f", &args, NULL, &reply, NULL, 0, &err), CNODE_EEXCEPTION);
    CU_ASSERT_EQUAL(ls.calls, 3);
    CU_ASSERT_EQUAL(err.attempt, 2);
    CU_ASSERT_EQUAL(cnode_balancer_in_flight(b, me), 0);
    cnode_error_clear(&err);
    cnode_balancer_free(b);
    /* ... while the default policy never retries a call that ran */
    o.retry_policy = CNODE_LB_RETRY_NO_ROUTE;
    ls.calls = 0;
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(node, scope, "self_grp", &o, &b, NULL), 0);
    CU_ASSERT_EQUAL(cnode_balancer_call(b, "m", "f", &args, NULL, &reply, NULL, 0, &err), CNODE_EEXCEPTION);
    CU_ASSERT_EQUAL(ls.calls, 1);
    cnode_error_clear(&err);
    cnode_balancer_free(b);
    ei_x_free(&reply);

    /* without opts.local this node is never a candidate */
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(node, scope, "self_grp", NULL, &b, NULL), 0);
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, pickd, sizeof pickd, &err), CNODE_EUNAVAILABLE);
    cnode_error_clear(&err);
    cnode_balancer_free(b);

    /* a filter that rejects this node: the filter's message */
    o = (cnode_balancer_opts){.local = local_fn, .local_data = &ls, .filter = "no_such_node"};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(node, scope, "self_grp", &o, &b, NULL), 0);
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, pickd, sizeof pickd, &err), CNODE_EUNAVAILABLE);
    CU_ASSERT_STRING_EQUAL(err.message, "no nodes in cluster found with that filter");
    cnode_error_clear(&err);
    cnode_balancer_free(b);

    /* wait_members_ms: a member that joins during the wait is used */
    o = (cnode_balancer_opts){.local = local_fn, .local_data = &ls, .wait_members_ms = tu_ms(30000)};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(node, scope, "late", &o, &b, NULL), 0);
    joiner j = {p};
    pthread_t t;
    pthread_create(&t, NULL, join_later, &j);
    int64_t t0 = ms_now();
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, pickd, sizeof pickd, &err), 0);
    int64_t took = ms_now() - t0;
    CU_ASSERT(took >= 50); /* not before the join */
    pthread_join(t, NULL);
    cnode_balancer_release(b, pickd, 0);
    cnode_balancer_free(b);
    /* and a wait that finds nobody ends, never before its bound */
    o.wait_members_ms = 150;
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(node, scope, "nobody", &o, &b, NULL), 0);
    t0 = ms_now();
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, pickd, sizeof pickd, &err), CNODE_EUNAVAILABLE);
    took = ms_now() - t0;
    CU_ASSERT(took >= 150);
    cnode_error_clear(&err);
    cnode_balancer_free(b);

    /* call_direct: no pg, no selection */
    ls.calls = 0;
    ls.next_rc = 0;
    o = (cnode_balancer_opts){.algorithm = CNODE_LB_CALL_DIRECT, .local = local_fn, .local_data = &ls};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(node, scope, "nobody", &o, &b, NULL), 0);
    ei_x_new(&reply);
    CU_ASSERT_EQUAL(cnode_balancer_call(b, "m", "direct", &args, NULL, &reply, NULL, 0, NULL), 0);
    CU_ASSERT_EQUAL(ls.calls, 1);
    int idx = 0;
    char atom[MAXATOMLEN];
    CU_ASSERT_EQUAL(ei_decode_atom(reply.buff, &idx, atom), 0);
    CU_ASSERT_STRING_EQUAL(atom, "direct");
    ei_x_free(&reply);
    cnode_balancer_free(b);

    /* args that are not a list: refused before any pick */
    o = (cnode_balancer_opts){.local = local_fn, .local_data = &ls};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(node, scope, "self_grp", &o, &b, NULL), 0);
    ei_x_buff bad;
    ei_x_new_with_version(&bad);
    ei_x_encode_atom(&bad, "x");
    ei_x_new(&reply);
    CU_ASSERT_EQUAL(cnode_balancer_call(b, "m", "f", &bad, NULL, &reply, NULL, 0, &err), CNODE_EINVAL);
    CU_ASSERT_STRING_EQUAL(err.type, "validation_error");
    cnode_error_clear(&err);
    ei_x_free(&reply);
    ei_x_free(&bad);
    cnode_balancer_free(b);

    cnode_pg_leave(scope, "self_grp", p);
    cnode_pg_leave(scope, "late", p);
    cnode_proc_close(p);
    ei_x_free(&args);
}

/* ---- the pick's record: node and pg snapshot generation ---- */

typedef struct {
    int n;
    uint64_t gen[8];
    unsigned attempt[8];
    char node[8][CNODE_BALANCER_NODE_MAX];
} gen_events;

static void
gen_observer(const cnode_balancer_event *ev, void *data)
{
    gen_events *e = data;
    if (e->n < 8) {
        e->gen[e->n] = ev->gen;
        e->attempt[e->n] = ev->attempt;
        snprintf(e->node[e->n], sizeof e->node[e->n], "%s", ev->node);
        e->n++;
    }
}

/* select_picked on b while the mirror holds still: the generation read lies between the ones
 * before and after, and a node picked is listed in that snapshot. Returns the select's code. */
static int
pick_checked(cnode_balancer *b, const char *group, cnode_balancer_picked *pk)
{
    cnode_pg_snapshot *before = cnode_pg_snapshot_get(scope);
    uint64_t g0 = cnode_pg_snapshot_generation(before);
    int rc = cnode_balancer_select_picked(b, NULL, NULL, pk, NULL);
    uint64_t g1 = cnode_pg_generation(scope);
    CU_ASSERT(pk->gen >= g0 && pk->gen <= g1);
    CU_ASSERT_EQUAL(pk->attempt, 0);
    if (g1 == g0) /* nothing published meanwhile: the pick read `before` */
        CU_ASSERT_EQUAL(pk->gen, g0);
    if (rc == 0) {
        if (pk->gen == g0)
            CU_ASSERT(cnode_pg_node_count(before, group, pk->node) > 0);
        cnode_balancer_release(b, pk->node, 0);
    } else {
        CU_ASSERT_STRING_EQUAL(pk->node, "");
    }
    cnode_pg_snapshot_release(before);
    return rc;
}

static void
test_pick_generation(void)
{
    if (!node)
        return;
    const char *me = cnode_node_name(node);
    cnode_proc *p;
    CU_ASSERT_EQUAL_FATAL(cnode_proc_new(node, NULL, &p), 0);
    local_state ls = {0};
    gen_events ev = {0};
    cnode_balancer_opts o = {.local = local_fn, .local_data = &ls, .observer = gen_observer, .observer_data = &ev};
    cnode_balancer *b;
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(node, scope, "gen_grp", &o, &b, NULL), 0);
    cnode_balancer_picked pk;

    /* nobody yet: no pick, the generation that had nobody */
    CU_ASSERT_EQUAL(pick_checked(b, "gen_grp", &pk), CNODE_EUNAVAILABLE);
    uint64_t g_empty = pk.gen;
    CU_ASSERT(g_empty > 0);

    /* a member joins: a newer generation, and the pick comes from it */
    CU_ASSERT_EQUAL_FATAL(cnode_pg_join(scope, "gen_grp", p), 0);
    uint64_t g_join = cnode_pg_generation(scope);
    CU_ASSERT(g_join > g_empty);
    CU_ASSERT_EQUAL(pick_checked(b, "gen_grp", &pk), 0);
    CU_ASSERT_STRING_EQUAL(pk.node, me);
    CU_ASSERT(pk.gen >= g_join);

    /* it leaves: the balancer's view of the older snapshot must not serve the pick */
    CU_ASSERT_EQUAL_FATAL(cnode_pg_leave(scope, "gen_grp", p), 0);
    uint64_t g_leave = cnode_pg_generation(scope);
    CU_ASSERT(g_leave > g_join);
    CU_ASSERT_EQUAL(pick_checked(b, "gen_grp", &pk), CNODE_EUNAVAILABLE);
    CU_ASSERT(pk.gen >= g_leave);
    CU_ASSERT_EQUAL(cnode_balancer_in_flight(b, me), 0);

    /* back: calls and casts carry the pick, and so does every observer event */
    CU_ASSERT_EQUAL_FATAL(cnode_pg_join(scope, "gen_grp", p), 0);
    uint64_t g_back = cnode_pg_generation(scope);
    ei_x_buff args, reply;
    ei_x_new_with_version(&args);
    ei_x_encode_empty_list(&args);
    ei_x_new(&reply);
    cnode_error err = {0};
    memset(&pk, 0x55, sizeof pk); /* every field written */
    CU_ASSERT_EQUAL(cnode_balancer_call_picked(b, "m", "f", &args, NULL, &reply, &pk, &err), 0);
    CU_ASSERT_STRING_EQUAL(pk.node, me);
    CU_ASSERT(pk.gen >= g_back && pk.gen <= cnode_pg_generation(scope));
    CU_ASSERT_EQUAL(pk.attempt, 0);
    CU_ASSERT_EQUAL(ev.n, 1);
    CU_ASSERT_EQUAL(ev.gen[0], pk.gen);
    CU_ASSERT_STRING_EQUAL(ev.node[0], me);
    memset(&pk, 0x55, sizeof pk);
    CU_ASSERT_EQUAL(cnode_balancer_cast_picked(b, "m", "f", &args, NULL, &pk, &err), 0);
    CU_ASSERT_STRING_EQUAL(pk.node, me);
    CU_ASSERT(pk.gen >= g_back);
    CU_ASSERT_EQUAL(ev.n, 2);
    CU_ASSERT_EQUAL(ev.gen[1], pk.gen);
    /* the picked pointer may be NULL */
    CU_ASSERT_EQUAL(cnode_balancer_call_picked(b, "m", "f", &args, NULL, &reply, NULL, NULL), 0);
    CU_ASSERT_EQUAL(cnode_balancer_select_picked(b, NULL, NULL, NULL, &err), CNODE_EINVAL);
    cnode_error_clear(&err);
    CU_ASSERT_EQUAL(cnode_balancer_in_flight(b, me), 0);
    cnode_balancer_free(b);

    /* retries pick again: picked is the last attempt's, each attempt's event has its generation */
    o.retries = 2;
    o.retry_policy = CNODE_LB_RETRY_ALL;
    ev.n = 0;
    ls.next_rc = CNODE_EEXCEPTION;
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(node, scope, "gen_grp", &o, &b, NULL), 0);
    CU_ASSERT_EQUAL(cnode_balancer_call_picked(b, "m", "f", &args, NULL, &reply, &pk, &err), CNODE_EEXCEPTION);
    CU_ASSERT_EQUAL(pk.attempt, 2);
    CU_ASSERT_STRING_EQUAL(pk.node, me);
    CU_ASSERT_EQUAL(ev.n, 3);
    for (int i = 0; i < ev.n && i < 3; i++) {
        CU_ASSERT_EQUAL(ev.attempt[i], (unsigned)i);
        CU_ASSERT(ev.gen[i] >= g_back);
    }
    CU_ASSERT_EQUAL(ev.gen[2], pk.gen);
    cnode_error_clear(&err);
    ls.next_rc = 0;
    cnode_balancer_free(b);
    /* the group is gone again: a failed call says "no pick" and the generation that had none */
    CU_ASSERT_EQUAL_FATAL(cnode_pg_leave(scope, "gen_grp", p), 0);
    uint64_t g_gone = cnode_pg_generation(scope);
    o.retries = 0;
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(node, scope, "gen_grp", &o, &b, NULL), 0);
    CU_ASSERT_EQUAL(cnode_balancer_call_picked(b, "m", "f", &args, NULL, &reply, &pk, &err), CNODE_EUNAVAILABLE);
    CU_ASSERT_STRING_EQUAL(pk.node, "");
    CU_ASSERT(pk.gen >= g_gone);
    cnode_error_clear(&err);
    cnode_balancer_free(b);

    /* no snapshot behind a static list or call_direct: generation 0 */
    o = (cnode_balancer_opts){.nodes = abc, .n_nodes = 3};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(NULL, NULL, "gen_list", &o, &b, NULL), 0);
    memset(&pk, 0x55, sizeof pk);
    CU_ASSERT_EQUAL(cnode_balancer_select_picked(b, NULL, NULL, &pk, NULL), 0);
    CU_ASSERT_EQUAL(pk.gen, 0);
    CU_ASSERT(!strcmp(pk.node, "a@h") || !strcmp(pk.node, "b@h") || !strcmp(pk.node, "c@h"));
    cnode_balancer_release(b, pk.node, 0);
    cnode_balancer_free(b);
    o = (cnode_balancer_opts){.algorithm = CNODE_LB_CALL_DIRECT, .local = local_fn, .local_data = &ls};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(node, scope, "gen_grp", &o, &b, NULL), 0);
    memset(&pk, 0x55, sizeof pk);
    CU_ASSERT_EQUAL(cnode_balancer_call_picked(b, "m", "f", &args, NULL, &reply, &pk, NULL), 0);
    CU_ASSERT_EQUAL(pk.gen, 0);
    CU_ASSERT_STRING_EQUAL(pk.node, me);
    cnode_balancer_free(b);

    ei_x_free(&args);
    ei_x_free(&reply);
    cnode_proc_close(p);
}

/* A static-list balancer picks through its prepared per-thread view
 * (cnode_balancer_select); the same algorithm over the same list through
 * cnode_balancer_select_from must give the same sequence, for every
 * deterministic algorithm, with counters held or released. */
static cnode_balancer *
mk_list(int algo, const char *const *nodes, size_t n, const cnode_balancer_opts *base)
{
    cnode_balancer_opts o = base ? *base : (cnode_balancer_opts){0};
    o.algorithm = algo;
    o.nodes = nodes;
    o.n_nodes = n;
    cnode_balancer *b = NULL;
    CU_ASSERT_EQUAL(cnode_balancer_new(NULL, NULL, "grp", &o, &b, NULL), 0);
    return b;
}

static void
test_view_matches_list(void)
{
    static const char *five[] = {"a@h", "b@h", "c@h", "d@h", "e@h"};
    cnode_balancer_weight w[] = {{"a@h", 3}, {"c@h", 0}, {"d@h", 2}};
    cnode_balancer_opts wo = {.weights = w, .n_weights = 3};
    int algos[] = {CNODE_LB_ROUND_ROBIN, CNODE_LB_WEIGHTED_ROUND_ROBIN, CNODE_LB_LEAST_CONNECTIONS};
    for (size_t a = 0; a < sizeof algos / sizeof algos[0]; a++) {
        cnode_balancer *bl = mk_list(algos[a], five, 5, &wo), *bf = mk_list(algos[a], five, 5, &wo);
        CU_ASSERT_PTR_NOT_NULL_FATAL(bl);
        CU_ASSERT_PTR_NOT_NULL_FATAL(bf);
        int same = 1;
        for (int k = 0; k < 40; k++) {
            char got[CNODE_BALANCER_NODE_MAX];
            size_t i;
            if (cnode_balancer_select(bl, NULL, NULL, got, sizeof got, NULL) != 0 ||
                cnode_balancer_select_from(bf, five, 5, NULL, NULL, &i) != 0 || strcmp(got, five[i]) != 0)
                same = 0;
            else if (k % 3 == 0) { /* release some, hold others: least_connections follows the counts */
                cnode_balancer_release(bl, got, 0);
                cnode_balancer_release(bf, five[i], 0);
            }
            if (algos[a] == CNODE_LB_WEIGHTED_ROUND_ROBIN && strcmp(got, "c@h") == 0)
                same = 0; /* weight 0 */
        }
        CU_ASSERT(same);
        for (size_t k = 0; k < 5; k++)
            CU_ASSERT_EQUAL(cnode_balancer_in_flight(bl, five[k]), cnode_balancer_in_flight(bf, five[k]));
        cnode_balancer_free(bl);
        cnode_balancer_free(bf);
    }

    /* the filter applies to the list once, in the view: only b and e */
    cnode_balancer_opts fo = {.filter = "[be]@", .filter_kind = CNODE_FILTER_REGEX};
    cnode_balancer *b = mk_list(CNODE_LB_ROUND_ROBIN, five, 5, &fo);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    static const char *want[] = {"b@h", "e@h", "b@h", "e@h"};
    for (int k = 0; k < 4; k++) {
        char got[CNODE_BALANCER_NODE_MAX] = "";
        CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, got, sizeof got, NULL), 0);
        CU_ASSERT_STRING_EQUAL(got, want[k]);
        cnode_balancer_release(b, got, 0);
    }
    /* a name buffer too small: EINVAL, and the pick is not left counted */
    char tiny[3];
    cnode_error err = {0};
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, tiny, sizeof tiny, &err), CNODE_EINVAL);
    CU_ASSERT_EQUAL(cnode_balancer_in_flight(b, "b@h") + cnode_balancer_in_flight(b, "e@h"), 0);
    cnode_error_clear(&err);
    cnode_balancer_free(b);

    /* sticky through the view: one node per thread while it is listed */
    b = mk_list(CNODE_LB_STICKY, five, 5, NULL);
    char first[CNODE_BALANCER_NODE_MAX], got[CNODE_BALANCER_NODE_MAX];
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, first, sizeof first, NULL), 0);
    cnode_balancer_release(b, first, 0);
    for (int k = 0; k < 30; k++) {
        CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, got, sizeof got, NULL), 0);
        CU_ASSERT_STRING_EQUAL(got, first);
        cnode_balancer_release(b, got, 0);
    }
    cnode_balancer_free(b);

    /* hash_ring through the view: the ring vectors' owners, the same as select_from's */
    char *text = tu_read_file(RING_TSV, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    int rows = 0, bad = 0;
    while ((line = strtok_r(NULL, "\n", &save)) != NULL && rows < 400) {
        char *f[20];
        CU_ASSERT_EQUAL_FATAL(split_tabs(line, f, 20), 16);
        const char *nodes[10];
        size_t n = split_commas(f[1], nodes, 10);
        unsigned char kb[1024];
        ei_x_buff key = {0};
        key.index = (int)tu_unhex(f[5], kb, sizeof kb);
        key.buff = (char *)kb;
        b = mk_list(CNODE_LB_HASH_RING, nodes, n, NULL);
        if (!b || cnode_balancer_select(b, &key, NULL, got, sizeof got, NULL) != 0 || strcmp(got, f[7]) != 0)
            bad++;
        cnode_balancer_free(b);
        rows++;
    }
    free(text);
    CU_ASSERT_EQUAL(rows, 400);
    CU_ASSERT_EQUAL(bad, 0);
}

void
cnode_test_register(void)
{
    CU_pSuite s = CU_add_suite("balancer selection", NULL, NULL);
    ADD_TEST(s, test_names);
    ADD_TEST(s, test_bad_options);
    ADD_TEST(s, test_random);
    ADD_TEST(s, test_round_robin_order);
    ADD_TEST(s, test_round_robin_even);
    ADD_TEST(s, test_round_robin_threads);
    ADD_TEST(s, test_weighted);
    ADD_TEST(s, test_least_connections);
    ADD_TEST(s, test_power_of_two);
    ADD_TEST(s, test_drain);
    ADD_TEST(s, test_hash_ring_vectors);
    ADD_TEST(s, test_ring_cache_new_list);
    ADD_TEST(s, test_easy_hash_vectors);
    ADD_TEST(s, test_easy_round_robin);
    ADD_TEST(s, test_sticky);
    ADD_TEST(s, test_custom);
    ADD_TEST(s, test_view_matches_list);
    CU_pSuite n = CU_add_suite("balancer with a node", suite_node_init, suite_node_clean);
    ADD_TEST(n, test_empty_group_at_once);
    ADD_TEST(n, test_local_member_outcomes);
    ADD_TEST(n, test_pick_generation);
}
