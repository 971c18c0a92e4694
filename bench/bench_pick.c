/* Nanoseconds per pick of every selection algorithm, no network. By
 * default the balancer's source is a static list of the members and a pick
 * is cnode_balancer_select (the path every routed call takes: the thread's
 * prepared view of the source, the algorithm, the counter, the name copied
 * out) + cnode_balancer_release, so the counting algorithms pay for their
 * counter both ways. --from times cnode_balancer_select_from over the same
 * list held by the caller instead. The provider (MFA discovery) source is
 * left out: it makes a call per pick.
 *
 * For each algorithm, 1 and 2 threads (sharing one balancer), 3, 30 and 300
 * members; each figure is the median of --reps runs of --n picks per
 * thread (fewer when a run would take over ~0.25 s), the threads' mean.
 * One line per figure:
 *     pick ALGO THREADS MEMBERS NS_PER_PICK
 *
 *   build/bench/bench_pick [--n 200000] [--reps 5] [--algo NAME] [--threads 1,2] [--members 3,30,300]
 *                          [--select-only] [--from]
 *
 * --select-only times cnode_balancer_select_from alone (nothing released:
 * the counting algorithms then see every member loaded, and least_connections
 * scans them all).
 *
 * hash_ring cycles through 1024 binary keys, easy_hash through 1024
 * one-element argument lists; least_cpu has a reading for every member;
 * custom is a round robin on one atomic cursor. least_connections and
 * power_of_two start with one call held in flight on every member, so that
 * least_connections scans them all on every pick (with every count 0 it
 * stops at the first member): its figure is the O(n) worst case. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode_balancer.h"
#include "tests/pick_fixture.h"

#define NKEYS 1024
#define MAX_THREADS 8

static ei_x_buff keys[NKEYS], arglists[NKEYS];
static int select_only; /* --select-only: no release (counters stay in flight) */
static int from_list;   /* --from: cnode_balancer_select_from over the caller's list */

/* custom: round robin on one atomic cursor */
static atomic_ulong custom_cursor;
static long
custom_select(void *state, const cnode_balancer_pick *p)
{
    (void)state;
    return (long)(atomic_fetch_add_explicit(&custom_cursor, 1, memory_order_relaxed) % p->n);
}
static const cnode_balancer_algo custom_algo = {NULL, custom_select, NULL, NULL};

/* call_direct's local function: required by the options, never run by a pick */
static int
local_fn(const char *mod, const char *fun, const ei_x_buff *args, ei_x_buff *reply, cnode_error *err, void *data)
{
    (void)mod, (void)fun, (void)args, (void)reply, (void)err, (void)data;
    return 0;
}

typedef struct {
    cnode_balancer *b;
    const char *const *nodes;
    size_t n;
    int algo;
    long picks;
    pthread_barrier_t *start;
    double ns;
    long failures;
} job;

static double
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *
run(void *arg)
{
    job *j = arg;
    size_t i;
    char self[CNODE_BALANCER_NODE_MAX];
    pthread_barrier_wait(j->start);
    double t0 = now_ns();
    for (long k = 0; k < j->picks; k++) {
        const ei_x_buff *key = j->algo == CNODE_LB_HASH_RING ? &keys[k & (NKEYS - 1)] : NULL;
        const ei_x_buff *args = j->algo == CNODE_LB_EASY_HASH ? &arglists[k & (NKEYS - 1)] : NULL;
        if (from_list && j->algo != CNODE_LB_CALL_DIRECT) {
            if (cnode_balancer_select_from(j->b, j->nodes, j->n, key, args, &i) != 0)
                j->failures++;
            else if (!select_only)
                cnode_balancer_release(j->b, j->nodes[i], 0);
        } else if (cnode_balancer_select(j->b, key, args, self, sizeof self, NULL) != 0) {
            j->failures++;
        } else if (!select_only) {
            cnode_balancer_release(j->b, self, 0);
        }
    }
    j->ns = (now_ns() - t0) / (double)j->picks;
    return NULL;
}

static int
dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One figure: the median over reps of the threads' mean ns per pick. */
static double
measure(int algo, int threads, const char *const *nodes, size_t n, long picks, int reps, long *failures)
{
    double *runs = calloc((size_t)reps, sizeof *runs);
    for (int r = 0; r < reps; r++) {
        cnode_balancer *b;
        cnode_error err = {0};
        if (pf_balancer(algo, nodes, n, &custom_algo, local_fn, &b, &err) != 0) {
            fprintf(stderr, "bench_pick: %s: %s\n", cnode_balancer_algorithm_name(algo), err.message);
            exit(1);
        }
        if (algo == CNODE_LB_LEAST_CONNECTIONS || algo == CNODE_LB_POWER_OF_TWO)
            for (size_t i = 0; i < n; i++) {
                size_t one;
                if (cnode_balancer_select_from(b, &nodes[i], 1, NULL, NULL, &one) != 0)
                    *failures += 1;
            }
        /* warm-up: slots and ring points exist before the clock starts; it
         * also sizes the run so that one run takes at most ~0.25 s */
        job warm = {b, nodes, n, algo, 2000, NULL, 0, 0};
        pthread_barrier_t one;
        pthread_barrier_init(&one, NULL, 1);
        warm.start = &one;
        run(&warm);
        pthread_barrier_destroy(&one);
        long count = picks;
        if (warm.ns > 0 && 0.25e9 / warm.ns < (double)count)
            count = (long)(0.25e9 / warm.ns) > 2000 ? (long)(0.25e9 / warm.ns) : 2000;
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, (unsigned)threads);
        job jobs[MAX_THREADS];
        pthread_t t[MAX_THREADS];
        for (int k = 0; k < threads; k++) {
            jobs[k] = (job){b, nodes, n, algo, count, &start, 0, 0};
            pthread_create(&t[k], NULL, run, &jobs[k]);
        }
        double sum = 0;
        for (int k = 0; k < threads; k++) {
            pthread_join(t[k], NULL);
            sum += jobs[k].ns;
            *failures += jobs[k].failures;
        }
        runs[r] = sum / threads;
        pthread_barrier_destroy(&start);
        cnode_balancer_free(b);
    }
    qsort(runs, (size_t)reps, sizeof *runs, dbl_cmp);
    double med = runs[reps / 2];
    free(runs);
    return med;
}

static size_t
parse_list(const char *s, int *out, size_t max)
{
    size_t n = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
        out[n++] = atoi(t);
    free(copy);
    return n;
}

int
main(int argc, char **argv)
{
    long picks = 200000;
    int reps = 5;
    const char *only = NULL;
    int threads[4] = {1, 2}, members[8] = {3, 30, 300};
    size_t nthreads = 2, nmembers = 3;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--select-only"))
            select_only = 1;
        else if (!strcmp(argv[i], "--from"))
            from_list = 1;
        else if (v && !strcmp(argv[i], "--n"))
            picks = atol(argv[++i]);
        else if (v && !strcmp(argv[i], "--reps"))
            reps = atoi(argv[++i]);
        else if (v && !strcmp(argv[i], "--algo"))
            only = argv[++i];
        else if (v && !strcmp(argv[i], "--threads"))
            nthreads = parse_list(argv[++i], threads, 4);
        else if (v && !strcmp(argv[i], "--members"))
            nmembers = parse_list(argv[++i], members, 8);
        else {
            fprintf(stderr, "bench_pick: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (picks < 1 || reps < 1)
        return 2;
    pf_inputs(keys, arglists, NKEYS);
    int maxm = 0;
    for (size_t m = 0; m < nmembers; m++)
        if (members[m] > maxm)
            maxm = members[m];
    char(*names)[32] = calloc((size_t)maxm, sizeof *names);
    const char **nodes = calloc((size_t)maxm, sizeof *nodes);
    for (int i = 0; i < maxm; i++) {
        snprintf(names[i], sizeof names[i], "member%03d@benchhost", i);
        nodes[i] = names[i];
    }
    int rc = 0;
    for (int algo = CNODE_LB_RANDOM; algo <= CNODE_LB_CUSTOM; algo++) {
        const char *name = cnode_balancer_algorithm_name(algo);
        if (only && strcmp(only, name) != 0)
            continue;
        for (size_t t = 0; t < nthreads; t++)
            for (size_t m = 0; m < nmembers; m++) {
                if (threads[t] < 1 || threads[t] > MAX_THREADS || members[m] < 1)
                    continue;
                long failures = 0;
                double ns = measure(algo, threads[t], nodes, (size_t)members[m], picks, reps, &failures);
                printf("pick %s %d %d %.1f\n", name, threads[t], members[m], ns);
                fflush(stdout);
                if (failures) {
                    fprintf(stderr, "bench_pick: %s: %ld failed picks\n", name, failures);
                    rc = 1;
                }
            }
    }
    pf_inputs_free(keys, arglists, NKEYS);
    free(names);
    free(nodes);
    return rc;
}
