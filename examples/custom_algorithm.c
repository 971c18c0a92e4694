/* custom_algorithm: a selection algorithm of your own through the balancer's
 * vtable (init, select, on_result, destroy), rpc_load_balancer's
 * SelectionAlgorithm behaviour in C.
 *
 * This one is a round robin with a circuit breaker: a node that failed
 * `trip` times in a row is skipped for `cool_ms`, then tried again. select
 * runs concurrently on every calling thread, so the shared state is a
 * mutex-protected table (an algorithm on a hot path would use atomics, as
 * the built-in ones do); on_result hears every call's outcome.
 *
 * Runs without a cluster: it picks from a fixed node list with
 * cnode_balancer_select_from and feeds back made-up outcomes (b@h fails).
 * With a cluster, give the same opts to cnode_balancer_new together with a
 * node and a pg scope, and cnode_balancer_call reports real outcomes.
 *
 *   build/examples/custom_algorithm
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode_balancer.h"

#define MAX_NODES 64

typedef struct {
    unsigned trip;  /* consecutive failures that open the circuit */
    long cool_ms;   /* how long an open circuit skips the node */
} breaker_conf;

typedef struct {
    char name[CNODE_BALANCER_NODE_MAX];
    unsigned failures;
    long long open_until_ms;
} node_state;

typedef struct {
    breaker_conf conf;
    pthread_mutex_t lock;
    node_state nodes[MAX_NODES];
    size_t n;
    unsigned long cursor;
} breaker;

static long long
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The node's entry, added on first sight; lock held. */
static node_state *
entry(breaker *br, const char *name)
{
    for (size_t i = 0; i < br->n; i++)
        if (strcmp(br->nodes[i].name, name) == 0)
            return &br->nodes[i];
    if (br->n == MAX_NODES)
        return NULL;
    node_state *s = &br->nodes[br->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    return s;
}

/* init: once, before any select. custom_data is what opts.custom_data held. */
static int
br_init(void *custom_data, void **state)
{
    breaker *br = calloc(1, sizeof *br);
    if (!br)
        return CNODE_ENOMEM;
    br->conf = *(const breaker_conf *)custom_data;
    pthread_mutex_init(&br->lock, NULL);
    *state = br;
    return 0;
}

/* select: round robin over the candidates whose circuit is closed. If every
 * circuit is open, the least recently opened one is tried (a half-open probe)
 * rather than failing: returning CNODE_EUNAVAILABLE would be the other choice. */
static long
br_select(void *state, const cnode_balancer_pick *pick)
{
    breaker *br = state;
    long long now = now_ms();
    pthread_mutex_lock(&br->lock);
    unsigned long start = br->cursor++;
    long chosen = -1, soonest = 0;
    long long soonest_at = 0;
    for (size_t k = 0; k < pick->n && chosen < 0; k++) {
        size_t i = (start + k) % pick->n;
        node_state *s = entry(br, pick->nodes[i]);
        if (!s || s->open_until_ms <= now)
            chosen = (long)i;
        else if (k == 0 || s->open_until_ms < soonest_at) {
            soonest = (long)i;
            soonest_at = s->open_until_ms;
        }
    }
    pthread_mutex_unlock(&br->lock);
    return chosen >= 0 ? chosen : soonest;
}

/* on_result: exactly once per successful select, when the caller is done. */
static void
br_on_result(void *state, const char *node, int status)
{
    breaker *br = state;
    pthread_mutex_lock(&br->lock);
    node_state *s = entry(br, node);
    if (s && status == 0) {
        s->failures = 0;
    } else if (s && (status == CNODE_ENOCONNECTION || status == CNODE_ETIMEOUT) && ++s->failures >= br->conf.trip) {
        s->open_until_ms = now_ms() + br->conf.cool_ms;
        s->failures = 0;
        printf("  circuit for %s open for %ld ms\n", node, br->conf.cool_ms);
    }
    pthread_mutex_unlock(&br->lock);
}

static void
br_destroy(void *state)
{
    breaker *br = state;
    pthread_mutex_destroy(&br->lock);
    free(br);
}

static const cnode_balancer_algo breaker_algo = {br_init, br_select, br_on_result, br_destroy};

int
main(void)
{
    breaker_conf conf = {.trip = 3, .cool_ms = 200};
    cnode_balancer_opts o = {.algorithm = CNODE_LB_CUSTOM, .custom = &breaker_algo, .custom_data = &conf};
    cnode_balancer *b;
    cnode_error err = {0};
    if (cnode_balancer_new(NULL, NULL, "demo", &o, &b, &err) != 0) {
        fprintf(stderr, "custom_algorithm: %s\n", err.message);
        return 1;
    }
    static const char *const nodes[] = {"a@h", "b@h", "c@h"};
    int hits[3] = {0};
    for (int round = 0; round < 2; round++) {
        printf("round %d\n", round + 1);
        for (int k = 0; k < 30; k++) {
            size_t i;
            if (cnode_balancer_select_from(b, nodes, 3, NULL, NULL, &i) != 0)
                continue;
            hits[i]++;
            /* b@h is down: its calls fail with noconnection */
            cnode_balancer_release(b, nodes[i], strcmp(nodes[i], "b@h") == 0 ? CNODE_ENOCONNECTION : 0);
        }
        struct timespec pause = {0, 250 * 1000000L};
        nanosleep(&pause, NULL); /* let the circuit cool down */
    }
    for (int i = 0; i < 3; i++)
        printf("%s %d\n", nodes[i], hits[i]);
    cnode_balancer_free(b);
    return 0;
}
