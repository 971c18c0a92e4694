/* The pick path allocates nothing and takes no lock once warm: for every
 * algorithm over a static list of members (the prepared view), and through
 * cnode_balancer_select_from, select + release are counted while this
 * thread runs them: allocations through the sanitizer's malloc hook (this
 * program runs under ASan in `make test`), mutex and rwlock acquisitions by
 * wrapping pthread_mutex_lock / pthread_rwlock_{rd,wr}lock in this program
 * (libcnode.a is linked into it, so its calls land here first). Warm means
 * after the first picks of a thread, which build its view and the hash
 * ring's merged points, and for select_from once every node has been seen
 * (its slot exists), as the header promises. Counts of other threads are
 * not taken. */
#include <CUnit/CUnit.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "cnode_balancer.h"
#include "tests/pick_fixture.h"
#include "tests/testutil.h"

#if defined(__SANITIZE_ADDRESS__)
/* from libasan (sanitizer/allocator_interface.h, which gcc does not install) */
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));
#define HAVE_MALLOC_HOOK 1
#else
#define HAVE_MALLOC_HOOK 0
#endif

static _Thread_local int counting;
static _Thread_local long allocs, locks;

static int (*real_mutex_lock)(pthread_mutex_t *);
static int (*real_rdlock)(pthread_rwlock_t *);
static int (*real_wrlock)(pthread_rwlock_t *);

int
pthread_mutex_lock(pthread_mutex_t *m)
{
    if (counting)
        locks++;
    return real_mutex_lock(m);
}

int
pthread_rwlock_rdlock(pthread_rwlock_t *l)
{
    if (counting)
        locks++;
    return real_rdlock(l);
}

int
pthread_rwlock_wrlock(pthread_rwlock_t *l)
{
    if (counting)
        locks++;
    return real_wrlock(l);
}

#if HAVE_MALLOC_HOOK
static void
on_malloc(const volatile void *p, size_t n)
{
    (void)p, (void)n;
    if (counting)
        allocs++;
}

static void
on_free(const volatile void *p)
{
    (void)p;
}
#endif

static int
suite_init(void)
{
    real_mutex_lock = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_lock");
    real_rdlock = (int (*)(pthread_rwlock_t *))dlsym(RTLD_NEXT, "pthread_rwlock_rdlock");
    real_wrlock = (int (*)(pthread_rwlock_t *))dlsym(RTLD_NEXT, "pthread_rwlock_wrlock");
    if (!real_mutex_lock || !real_rdlock || !real_wrlock)
        return 1;
#if HAVE_MALLOC_HOOK
    if (!__sanitizer_install_malloc_and_free_hooks(on_malloc, on_free))
        return 1;
#endif
    return 0;
}

#define NMEMBERS 30
#define WARM 200
#define PICKS 2000

static char names[NMEMBERS][32];
static const char *nodes[NMEMBERS];
static ei_x_buff keys[8], arglists[8];
/* custom: the member after the one this thread picked last; its on_result
 * is counted, so release reaches the algorithm on the measured path too */
static _Thread_local size_t custom_next;
static _Thread_local long custom_results;

static long
next_member(void *state, const cnode_balancer_pick *p)
{
    (void)state;
    return (long)(custom_next++ % p->n);
}

static void
count_result(void *state, const char *node, int status)
{
    (void)state, (void)node, (void)status;
    custom_results++;
}
static const cnode_balancer_algo custom_algo = {NULL, next_member, count_result, NULL};

/* call_direct needs a local function; a pick never runs it */
static int
never_run(const char *mod, const char *fun, const ei_x_buff *args, ei_x_buff *reply, cnode_error *err, void *data)
{
    (void)mod, (void)fun, (void)args, (void)reply, (void)err, (void)data;
    return CNODE_EINVAL;
}

static void
setup_inputs(void)
{
    for (int i = 0; i < NMEMBERS; i++) {
        snprintf(names[i], sizeof names[i], "member%02d@host", i);
        nodes[i] = names[i];
    }
    pf_inputs(keys, arglists, 8);
}

static void
free_inputs(void)
{
    pf_inputs_free(keys, arglists, 8);
}

/* n picks (select + release) of b; from: through select_from over nodes. */
static long
picks(cnode_balancer *b, int algo, int from, long n)
{
    long failed = 0;
    char self[CNODE_BALANCER_NODE_MAX];
    for (long k = 0; k < n; k++) {
        const ei_x_buff *key = algo == CNODE_LB_HASH_RING ? &keys[k & 7] : NULL;
        const ei_x_buff *args = algo == CNODE_LB_EASY_HASH ? &arglists[k & 7] : NULL;
        size_t i;
        if (from) {
            if (cnode_balancer_select_from(b, nodes, NMEMBERS, key, args, &i) != 0)
                failed++;
            else
                cnode_balancer_release(b, nodes[i], 0);
        } else if (cnode_balancer_select(b, key, args, self, sizeof self, NULL) != 0) {
            failed++;
        } else {
            cnode_balancer_release(b, self, 0);
        }
    }
    return failed;
}

static void
check_algorithm(int algo, int from)
{
    cnode_balancer *b = NULL;
    cnode_error err = {0};
    CU_ASSERT_EQUAL_FATAL(pf_balancer(algo, nodes, NMEMBERS, &custom_algo, never_run, &b, &err), 0);
    CU_ASSERT_EQUAL(picks(b, algo, from, WARM), 0);
    if (from) /* select_from's contract: no allocation once each node has been seen */
        for (int i = 0; i < NMEMBERS; i++) {
            size_t one;
            if (cnode_balancer_select_from(b, &nodes[i], 1, NULL, NULL, &one) == 0)
                cnode_balancer_release(b, nodes[i], 0);
        }
    allocs = locks = 0;
    custom_results = 0;
    counting = 1;
    long failed = picks(b, algo, from, PICKS);
    counting = 0;
    if (algo == CNODE_LB_CUSTOM)
        CU_ASSERT_EQUAL(custom_results, PICKS); /* every release told the algorithm */
    CU_ASSERT_EQUAL(failed, 0);
    if (allocs || locks)
        fprintf(stderr, "pick path of %s (%s): %ld allocations, %ld locks in %d picks\n",
                cnode_balancer_algorithm_name(algo), from ? "select_from" : "select", allocs, locks, PICKS);
    CU_ASSERT_EQUAL(allocs, 0);
    CU_ASSERT_EQUAL(locks, 0);
    cnode_balancer_free(b);
}

static void
test_no_alloc_no_lock(void)
{
    if (!HAVE_MALLOC_HOOK)
        fprintf(stderr, "test_pick_path: built without ASan: allocations are not counted, locks are\n");
    setup_inputs();
    for (int algo = CNODE_LB_RANDOM; algo <= CNODE_LB_CUSTOM; algo++) {
        check_algorithm(algo, 0);
        if (algo != CNODE_LB_CALL_DIRECT) /* call_direct picks this node, not from a list */
            check_algorithm(algo, 1);
    }
    free_inputs();
}

/* The counters themselves can fail: a pick path that allocates is seen. */
static void
test_counters_see_allocations(void)
{
    allocs = locks = 0;
    counting = 1;
    void *volatile p = malloc(16); /* volatile: the compiler may not drop the pair */
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&m);
    pthread_mutex_unlock(&m);
    counting = 0;
    free(p);
    CU_ASSERT_EQUAL(locks, 1);
    if (HAVE_MALLOC_HOOK)
        CU_ASSERT_EQUAL(allocs, 1);
}

void
cnode_test_register(void)
{
    CU_pSuite s = CU_add_suite("pick path", suite_init, NULL);
    ADD_TEST(s, test_counters_see_allocations);
    ADD_TEST(s, test_no_alloc_no_lock);
}
