/* The balancer: candidates from the pg mirror, the seeds' selection
 * algorithms, in-flight counters, retries (seed-behaviour.md A6-A9, B3-B4).
 *
 * Lock-free on the pick path: the mirror is an immutable snapshot, cursors
 * and counters are C11 atomics, per-node state (counter, hash-ring points)
 * lives in an insert-only hash table, and EasyRpc's per-process state
 * (round-robin cursor, sticky node) is per thread. Nothing is allocated per
 * pick unless a group has more than STACK_CANDS members. */
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode_balancer.h"

#define NBUCKETS 64
#define STACK_CANDS 64
#define RR_RESET 10000000UL /* the seed's cursor wraps after this */
#define TL_RR 32
#define TL_STICKY 8
#define WAIT_POLL_MS 5
#define AVOID_MAX 8

typedef struct nslot {
    struct nslot *next;
    atomic_long in_flight;
    _Atomic(uint32_t *) points; /* hash_ring: this node's sorted points */
    char name[];
} nslot;

typedef struct {
    char *node;
    unsigned weight;
} weight_ent;

struct cnode_balancer {
    cnode_node *node;
    cnode_pg_scope *scope;
    char group[CNODE_BALANCER_NODE_MAX];
    uint64_t id; /* never reused: keys the per-thread state */
    int algo;
    cnode_balancer_algo custom;
    void *custom_state;
    cnode_filter *filter;
    unsigned timeout_ms, retries, sleep_ms, wait_ms, ring_weight;
    int retry_policy, otp, sticky;
    weight_ent *weights;
    size_t nweights;
    cnode_balancer_local_fn *local;
    void *local_data;
    atomic_ulong rr_cursor, wrr_cursor;
    _Atomic(nslot *) buckets[NBUCKETS];
};

static atomic_ullong next_id = 1;

/* ---- per-thread state ---- */

static _Thread_local uint64_t rng_state;
static _Thread_local struct {
    uint64_t id;
    size_t idx;
} tl_rr[TL_RR];
static _Thread_local struct {
    uint64_t id;
    char node[CNODE_BALANCER_NODE_MAX];
} tl_sticky[TL_STICKY];

static uint64_t
rng_next(void)
{
    if (rng_state == 0) {
        static atomic_ullong seeds;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        rng_state = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)&rng_state ^
                    (atomic_fetch_add(&seeds, 1) * 0x9e3779b97f4a7c15ULL);
        if (rng_state == 0)
            rng_state = 1;
    }
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n), n >= 1. */
static size_t
rng_below(size_t n)
{
    return (size_t)((rng_next() >> 32) * (uint64_t)n >> 32);
}

/* ---- per-node slots: insert-only, lock-free reads ---- */

static uint32_t
name_hash(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static nslot *
slot_get(cnode_balancer *b, const char *name, int create)
{
    _Atomic(nslot *) *bucket = &b->buckets[name_hash(name) % NBUCKETS];
    for (;;) {
        nslot *head = atomic_load(bucket);
        for (nslot *s = head; s; s = s->next)
            if (strcmp(s->name, name) == 0)
                return s;
        if (!create)
            return NULL;
        size_t len = strlen(name);
        nslot *s = calloc(1, sizeof *s + len + 1);
        if (!s)
            return NULL;
        memcpy(s->name, name, len + 1);
        s->next = head;
        if (atomic_compare_exchange_strong(bucket, &head, s))
            return s;
        free(s); /* another thread inserted first: look again */
    }
}

static long
slot_count(cnode_balancer *b, const char *name)
{
    nslot *s = slot_get(b, name, 0);
    return s ? atomic_load(&s->in_flight) : 0;
}

static int
u32_cmp(const void *a, const void *c)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)c;
    return x < y ? -1 : x > y;
}

/* The node's ring points, sorted; computed once per balancer and node. */
static const uint32_t *
slot_points(cnode_balancer *b, nslot *s)
{
    uint32_t *p = atomic_load(&s->points);
    if (p)
        return p;
    p = malloc(b->ring_weight * sizeof *p);
    if (!p || cnode_ring_vnode_points(s->name, b->ring_weight, p) != 0) {
        free(p);
        return NULL;
    }
    qsort(p, b->ring_weight, sizeof *p, u32_cmp);
    uint32_t *expected = NULL;
    if (!atomic_compare_exchange_strong(&s->points, &expected, p)) {
        free(p);
        return expected;
    }
    return p;
}

/* ---- names ---- */

static const struct {
    const char *name, *module;
    int algo;
} algo_names[] = {
    {"random", "Random", CNODE_LB_RANDOM},
    {"round_robin", "RoundRobin", CNODE_LB_ROUND_ROBIN},
    {"least_connections", "LeastConnections", CNODE_LB_LEAST_CONNECTIONS},
    {"power_of_two", "PowerOfTwo", CNODE_LB_POWER_OF_TWO},
    {"hash_ring", "HashRing", CNODE_LB_HASH_RING},
    {"weighted_round_robin", "WeightedRoundRobin", CNODE_LB_WEIGHTED_ROUND_ROBIN},
    {"call_direct", "CallDirect", CNODE_LB_CALL_DIRECT},
    {"easy_random", NULL, CNODE_LB_EASY_RANDOM},
    {"easy_round_robin", NULL, CNODE_LB_EASY_ROUND_ROBIN},
    {"easy_hash", NULL, CNODE_LB_EASY_HASH},
    {"sticky", NULL, CNODE_LB_STICKY},
    {"custom", NULL, CNODE_LB_CUSTOM},
};

int
cnode_balancer_algorithm_parse(const char *name, int *algorithm)
{
    if (!name || !algorithm)
        return CNODE_EINVAL;
    static const char prefix[] = "Elixir.RpcLoadBalancer.LoadBalancer.SelectionAlgorithm.";
    const char *mod = strncmp(name, prefix, sizeof prefix - 1) == 0 ? name + sizeof prefix - 1 : name;
    for (size_t i = 0; i < sizeof algo_names / sizeof algo_names[0]; i++)
        if (strcmp(name, algo_names[i].name) == 0 || (algo_names[i].module && strcmp(mod, algo_names[i].module) == 0)) {
            *algorithm = algo_names[i].algo;
            return 0;
        }
    return CNODE_EINVAL;
}

const char *
cnode_balancer_algorithm_name(int algorithm)
{
    for (size_t i = 0; i < sizeof algo_names / sizeof algo_names[0]; i++)
        if (algo_names[i].algo == algorithm)
            return algo_names[i].name;
    return "unknown";
}

/* ---- life cycle ---- */

void
cnode_balancer_free(cnode_balancer *b)
{
    if (!b)
        return;
    if (b->algo == CNODE_LB_CUSTOM && b->custom.destroy)
        b->custom.destroy(b->custom_state);
    for (int i = 0; i < NBUCKETS; i++) {
        nslot *s = atomic_load(&b->buckets[i]);
        while (s) {
            nslot *next = s->next;
            free(atomic_load(&s->points));
            free(s);
            s = next;
        }
    }
    for (size_t i = 0; i < b->nweights; i++)
        free(b->weights[i].node);
    free(b->weights);
    cnode_filter_free(b->filter);
    free(b);
}

int
cnode_balancer_new(cnode_node *node, cnode_pg_scope *scope, const char *group, const cnode_balancer_opts *opts,
                   cnode_balancer **out)
{
    static const cnode_balancer_opts defaults = {0};
    if (!opts)
        opts = &defaults;
    if (!group || !out || !*group || strlen(group) >= CNODE_BALANCER_NODE_MAX || opts->algorithm < CNODE_LB_RANDOM ||
        opts->algorithm > CNODE_LB_CUSTOM || opts->retry_policy < CNODE_LB_RETRY_NO_ROUTE ||
        opts->retry_policy > CNODE_LB_RETRY_ALL || (opts->n_weights && !opts->weights) || opts->ring_weight > 65536)
        return CNODE_EINVAL;
    if ((opts->algorithm == CNODE_LB_CALL_DIRECT && !opts->local) ||
        (opts->algorithm == CNODE_LB_CUSTOM && (!opts->custom || !opts->custom->select)))
        return CNODE_ECONFIG;
    cnode_balancer *b = calloc(1, sizeof *b);
    if (!b)
        return CNODE_ENOMEM;
    b->node = node;
    b->scope = scope;
    snprintf(b->group, sizeof b->group, "%s", group);
    b->id = atomic_fetch_add(&next_id, 1);
    b->algo = opts->algorithm;
    b->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 10000;
    b->retries = opts->retries;
    b->retry_policy = opts->retry_policy;
    b->sleep_ms = opts->sleep_before_retry_ms;
    b->wait_ms = opts->wait_members_ms;
    b->ring_weight = opts->ring_weight ? opts->ring_weight : CNODE_RING_DEFAULT_WEIGHT;
    b->otp = opts->otp_release ? opts->otp_release : 25;
    b->sticky = opts->sticky || opts->algorithm == CNODE_LB_STICKY;
    b->local = opts->local;
    b->local_data = opts->local_data;
    int rc = 0;
    if (opts->filter || opts->n_excluded)
        rc = cnode_filter_new(opts->filter ? opts->filter : "", opts->filter ? opts->filter_kind : CNODE_FILTER_SUBSTRING,
                              opts->excluded_node_patterns, opts->n_excluded, &b->filter, NULL);
    if (!rc && opts->n_weights) {
        b->weights = calloc(opts->n_weights, sizeof *b->weights);
        rc = b->weights ? 0 : CNODE_ENOMEM;
        for (size_t i = 0; !rc && i < opts->n_weights; i++) {
            if (!opts->weights[i].node) {
                rc = CNODE_EINVAL;
                break;
            }
            b->weights[i].node = strdup(opts->weights[i].node);
            b->weights[i].weight = opts->weights[i].weight;
            rc = b->weights[i].node ? 0 : CNODE_ENOMEM;
            b->nweights = i + 1;
        }
    }
    if (!rc && b->algo == CNODE_LB_CUSTOM) {
        b->custom = *opts->custom;
        if (b->custom.init && b->custom.init(opts->custom_data, &b->custom_state) != 0) {
            b->custom.destroy = NULL; /* init failed: nothing to destroy */
            rc = CNODE_ECONFIG;
        }
    }
    if (rc) {
        cnode_balancer_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

/* ---- the algorithms ---- */

typedef struct {
    const char *key, *args;
    size_t key_len, args_len;
} pick_in;

static unsigned long
cursor_next(atomic_ulong *cursor)
{
    unsigned long v = atomic_fetch_add(cursor, 1) + 1;
    if (v > RR_RESET) {
        unsigned long expect = v;
        atomic_compare_exchange_strong(cursor, &expect, 0);
    }
    return v;
}

static unsigned
weight_of(const cnode_balancer *b, const char *node)
{
    for (size_t i = 0; i < b->nweights; i++)
        if (strcmp(b->weights[i].node, node) == 0)
            return b->weights[i].weight;
    return 1;
}

static long
pick_weighted(cnode_balancer *b, const char *const *nodes, size_t n)
{
    unsigned long long total = 0;
    for (size_t i = 0; i < n; i++)
        total += weight_of(b, nodes[i]);
    if (total == 0)
        return CNODE_EUNAVAILABLE;
    /* position in the expanded list [a, a, a, b, ...] without building it */
    unsigned long long at = (cursor_next(&b->wrr_cursor) - 1) % total;
    for (size_t i = 0; i < n; i++) {
        unsigned w = weight_of(b, nodes[i]);
        if (at < w)
            return (long)i;
        at -= w;
    }
    return CNODE_EUNAVAILABLE; /* not reached */
}

static long
pick_least(cnode_balancer *b, const char *const *nodes, size_t n)
{
    size_t best = 0;
    long best_count = slot_count(b, nodes[0]);
    for (size_t i = 1; i < n; i++) {
        long c = slot_count(b, nodes[i]);
        if (c < best_count) {
            best = i;
            best_count = c;
        }
    }
    return (long)best;
}

static long
pick_two(cnode_balancer *b, const char *const *nodes, size_t n)
{
    if (n == 1)
        return 0;
    size_t i = rng_below(n), j = rng_below(n - 1);
    if (j >= i)
        j++;
    return slot_count(b, nodes[i]) <= slot_count(b, nodes[j]) ? (long)i : (long)j;
}

/* libring's owner over a ring built from the candidates in order, found
 * from each node's sorted points: the smallest point >= h (else the
 * smallest point), the earlier candidate winning an exact tie. */
static long
pick_ring(cnode_balancer *b, const char *const *nodes, size_t n, const pick_in *in)
{
    uint32_t h;
    int rc = cnode_ring_key_hash(in->key, in->key_len, b->otp, &h);
    if (rc)
        return rc;
    long above = -1, lowest = -1;
    uint32_t above_pt = 0, lowest_pt = 0;
    for (size_t i = 0; i < n; i++) {
        nslot *s = slot_get(b, nodes[i], 1);
        const uint32_t *p = s ? slot_points(b, s) : NULL;
        if (!p)
            return CNODE_ENOMEM;
        if (lowest < 0 || p[0] < lowest_pt) {
            lowest = (long)i;
            lowest_pt = p[0];
        }
        size_t lo = 0, hi = b->ring_weight;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (p[mid] < h)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < b->ring_weight && (above < 0 || p[lo] < above_pt)) {
            above = (long)i;
            above_pt = p[lo];
        }
    }
    return above >= 0 ? above : lowest;
}

static size_t *
tl_rr_slot(const cnode_balancer *b, int *fresh)
{
    size_t k = b->id % TL_RR;
    *fresh = tl_rr[k].id != b->id;
    tl_rr[k].id = b->id;
    return &tl_rr[k].idx;
}

static long
pick_easy_rr(cnode_balancer *b, size_t n)
{
    int fresh;
    size_t *idx = tl_rr_slot(b, &fresh);
    if (fresh)
        *idx = rng_below(n); /* EasyRpc starts each process at a random index */
    else if (*idx >= n)
        *idx = 0;
    size_t at = *idx;
    *idx = (at + 1) % n;
    return (long)at;
}

static long
pick_easy_hash(size_t n, const pick_in *in)
{
    static const char empty_list[] = {(char)131, 106};
    uint32_t i;
    int rc = in->args ? cnode_phash2(in->args, in->args_len, (uint32_t)n, &i) : cnode_phash2(empty_list, 2, (uint32_t)n, &i);
    return rc ? rc : (long)i;
}

static long
run_algorithm(cnode_balancer *b, const char *const *nodes, size_t n, const pick_in *in)
{
    switch (b->algo) {
    case CNODE_LB_ROUND_ROBIN:
        return (long)((cursor_next(&b->rr_cursor) - 1) % n);
    case CNODE_LB_WEIGHTED_ROUND_ROBIN:
        return pick_weighted(b, nodes, n);
    case CNODE_LB_LEAST_CONNECTIONS:
        return pick_least(b, nodes, n);
    case CNODE_LB_POWER_OF_TWO:
        return pick_two(b, nodes, n);
    case CNODE_LB_HASH_RING:
        return in->key ? pick_ring(b, nodes, n, in) : (long)rng_below(n);
    case CNODE_LB_EASY_ROUND_ROBIN:
        return pick_easy_rr(b, n);
    case CNODE_LB_EASY_HASH:
        return pick_easy_hash(n, in);
    case CNODE_LB_CUSTOM: {
        cnode_balancer_pick p = {nodes, n, in->key, in->key_len, in->args, in->args_len};
        long i = b->custom.select(b->custom_state, &p);
        return i >= (long)n ? CNODE_EINVAL : i;
    }
    default: /* random, easy_random, sticky's first pick, call_direct's select */
        return (long)rng_below(n);
    }
}

/* Pick among nodes (n >= 1) and count the pick in flight. */
static int
choose(cnode_balancer *b, const char *const *nodes, size_t n, const pick_in *in, size_t *index)
{
    long i = -1;
    size_t st = b->id % TL_STICKY;
    if (b->sticky && tl_sticky[st].id == b->id) {
        /* EasyRpc reuses the stored node blindly; here only while it is a candidate */
        for (size_t k = 0; k < n && i < 0; k++)
            if (strcmp(nodes[k], tl_sticky[st].node) == 0)
                i = (long)k;
    }
    if (i < 0)
        i = run_algorithm(b, nodes, n, in);
    if (i < 0)
        return (int)i;
    nslot *s = slot_get(b, nodes[i], 1);
    if (!s)
        return CNODE_ENOMEM;
    atomic_fetch_add(&s->in_flight, 1);
    if (b->sticky && strlen(nodes[i]) < CNODE_BALANCER_NODE_MAX) {
        tl_sticky[st].id = b->id;
        memcpy(tl_sticky[st].node, nodes[i], strlen(nodes[i]) + 1);
    }
    *index = (size_t)i;
    return 0;
}

void
cnode_balancer_release(cnode_balancer *b, const char *node, int status)
{
    if (!b || !node)
        return;
    nslot *s = slot_get(b, node, 0);
    if (s) {
        /* never below 0: the seed lets a spare release go negative and attract traffic */
        long c = atomic_load(&s->in_flight);
        while (c > 0 && !atomic_compare_exchange_weak(&s->in_flight, &c, c - 1))
            ;
    }
    if (b->algo == CNODE_LB_CUSTOM && b->custom.on_result)
        b->custom.on_result(b->custom_state, node, status);
}

long
cnode_balancer_in_flight(cnode_balancer *b, const char *node)
{
    return b && node ? slot_count(b, node) : 0;
}

static void
term_of(const ei_x_buff *x, const char **p, size_t *len)
{
    *p = x && x->buff && x->index > 0 ? x->buff : NULL;
    *len = *p ? (size_t)x->index : 0;
}

int
cnode_balancer_select_from(cnode_balancer *b, const char *const *nodes, size_t n, const ei_x_buff *key, const ei_x_buff *args,
                           size_t *index)
{
    if (!b || !index || (n && !nodes))
        return CNODE_EINVAL;
    if (n == 0)
        return CNODE_EUNAVAILABLE;
    for (size_t i = 0; i < n; i++)
        if (!nodes[i])
            return CNODE_EINVAL;
    pick_in in;
    term_of(key, &in.key, &in.key_len);
    term_of(args, &in.args, &in.args_len);
    return choose(b, nodes, n, &in, index);
}

void
cnode_balancer_clear_sticky(cnode_balancer *b)
{
    if (b && tl_sticky[b->id % TL_STICKY].id == b->id)
        tl_sticky[b->id % TL_STICKY].id = 0;
}

void
cnode_balancer_reset_round_robin(cnode_balancer *b)
{
    if (b && tl_rr[b->id % TL_RR].id == b->id)
        tl_rr[b->id % TL_RR].id = 0;
}

/* ---- candidates from the mirror ---- */

typedef struct {
    const char **v; /* candidates */
    size_t n;
    const char **seen; /* every distinct node met, kept or not */
    size_t nseen;
    size_t members, suspect, filtered;
    const char *stack_v[STACK_CANDS], *stack_seen[STACK_CANDS];
} cands;

static void
cands_free(cands *c)
{
    if (c->v != c->stack_v)
        free((void *)c->v);
    if (c->seen != c->stack_seen)
        free((void *)c->seen);
}

/* Distinct live member nodes in pg order that pass the filter, skipping
 * this node and, while others remain, the nodes in avoid. */
static int
cands_build(cnode_balancer *b, const cnode_pg_snapshot *snap, const char *const *avoid, size_t navoid, cands *c)
{
    size_t n;
    const cnode_pg_member *m = cnode_pg_members(snap, b->group, &n);
    memset(c, 0, offsetof(cands, stack_v));
    c->v = c->stack_v;
    c->seen = c->stack_seen;
    c->members = n;
    if (n > STACK_CANDS) {
        c->v = malloc(n * sizeof *c->v);
        c->seen = malloc(n * sizeof *c->seen);
        if (!c->v || !c->seen) {
            free((void *)c->v);
            free((void *)c->seen);
            c->v = c->stack_v;
            c->seen = c->stack_seen;
            return CNODE_ENOMEM;
        }
    }
    const char *self = b->node && !b->local ? cnode_node_name(b->node) : NULL;
    for (size_t i = 0; i < n; i++) {
        const char *name = m[i].node;
        int dup = 0;
        for (size_t k = 0; k < c->nseen && !dup; k++)
            dup = c->seen[k] == name || strcmp(c->seen[k], name) == 0;
        if (dup)
            continue;
        c->seen[c->nseen++] = name;
        if (self && strcmp(self, name) == 0)
            continue;
        if (cnode_pg_node_suspect(snap, name) == 1) {
            c->suspect++;
            continue;
        }
        if (b->filter && !cnode_filter_match(b->filter, name)) {
            c->filtered++;
            continue;
        }
        c->v[c->n++] = name;
    }
    if (navoid) {
        size_t keep = 0;
        for (size_t i = 0; i < c->n; i++) {
            int bad = 0;
            for (size_t k = 0; k < navoid && !bad; k++)
                bad = strcmp(c->v[i], avoid[k]) == 0;
            keep += !bad;
        }
        if (keep > 0) {
            size_t w = 0;
            for (size_t i = 0; i < c->n; i++) {
                int bad = 0;
                for (size_t k = 0; k < navoid && !bad; k++)
                    bad = strcmp(c->v[i], avoid[k]) == 0;
                if (!bad)
                    c->v[w++] = c->v[i];
            }
            c->n = w;
        }
    }
    return 0;
}

static void
sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
classify(cnode_error *err)
{
    if (!err || err->type)
        return;
    switch (err->code) {
    case CNODE_ETIMEOUT:
        err->type = "timeout_error";
        err->lb_code = "request_timeout";
        break;
    case CNODE_ENOCONNECTION:
    case CNODE_ENOTSUP:
    case CNODE_EUNAVAILABLE:
        err->type = "node_error";
        err->lb_code = "service_unavailable";
        break;
    case CNODE_ECONFIG:
        err->type = "config_error";
        break;
    case CNODE_EINVAL:
    case CNODE_EVALIDATION:
        err->type = "validation_error";
        err->lb_code = "bad_request";
        break;
    default:
        err->type = "rpc_error";
        err->lb_code = "service_unavailable";
        break;
    }
}

static void
set_err(cnode_error *err, int code, const char *msg)
{
    if (!err)
        return;
    cnode_error_clear(err);
    err->code = code;
    err->arity = -1;
    snprintf(err->message, sizeof err->message, "%s", msg);
    classify(err);
}

/* Pick a live candidate, waiting up to wait_ms for one; name into out. */
static int
pick_member(cnode_balancer *b, const pick_in *in, const char *const *avoid, size_t navoid, char *out, size_t cap, cnode_error *err)
{
    if (!b->scope)
        return CNODE_EINVAL;
    int64_t deadline = now_ms() + b->wait_ms;
    for (;;) {
        cnode_pg_snapshot *snap = cnode_pg_snapshot_get(b->scope);
        cands c;
        int rc = cands_build(b, snap, avoid, navoid, &c);
        if (!rc && c.n > 0) {
            size_t i;
            rc = choose(b, c.v, c.n, in, &i);
            if (!rc && strlen(c.v[i]) >= cap) {
                cnode_balancer_release(b, c.v[i], CNODE_EINVAL);
                rc = CNODE_EINVAL;
            } else if (!rc) {
                memcpy(out, c.v[i], strlen(c.v[i]) + 1);
            }
            cands_free(&c);
            cnode_pg_snapshot_release(snap);
            if (rc == CNODE_EUNAVAILABLE)
                set_err(err, rc, "no member with a weight above 0");
            else if (rc)
                set_err(err, rc, "node selection failed");
            return rc;
        }
        size_t members = c.members, filtered = c.filtered, suspect = c.suspect;
        cands_free(&c);
        cnode_pg_snapshot_release(snap);
        if (rc) {
            set_err(err, rc, "out of memory");
            return rc;
        }
        if (now_ms() >= deadline) {
            char msg[200];
            if (members == 0)
                snprintf(msg, sizeof msg, "no members registered");
            else if (filtered > 0 && suspect == 0)
                snprintf(msg, sizeof msg, "no nodes in cluster found with that filter");
            else
                snprintf(msg, sizeof msg, "no live members (%zu suspect, %zu filtered out)", suspect, filtered);
            set_err(err, CNODE_EUNAVAILABLE, msg);
            return CNODE_EUNAVAILABLE;
        }
        sleep_ms(WAIT_POLL_MS);
    }
}

int
cnode_balancer_select(cnode_balancer *b, const ei_x_buff *key, const ei_x_buff *args, char *node, size_t cap, cnode_error *err)
{
    if (!b || !node || cap == 0)
        return CNODE_EINVAL;
    pick_in in;
    term_of(key, &in.key, &in.key_len);
    term_of(args, &in.args, &in.args_len);
    if (b->algo == CNODE_LB_CALL_DIRECT) {
        /* like CallDirect.choose_from_nodes: this node */
        const char *self = b->node ? cnode_node_name(b->node) : "";
        if (strlen(self) >= cap)
            return CNODE_EINVAL;
        memcpy(node, self, strlen(self) + 1);
        nslot *s = slot_get(b, node, 1);
        if (!s)
            return CNODE_ENOMEM;
        atomic_fetch_add(&s->in_flight, 1);
        return 0;
    }
    return pick_member(b, &in, NULL, 0, node, cap, err);
}

/* ---- calls ---- */

/* Elements of an encoded argument list, or -1 if it is not a list. */
static int
args_arity(const ei_x_buff *args)
{
    if (!args || !args->buff || args->index <= 0)
        return -1;
    const unsigned char *p = (const unsigned char *)args->buff;
    size_t len = (size_t)args->index, at = p[0] == 131;
    if (at >= len)
        return -1;
    switch (p[at]) {
    case 106:
        return 0;
    case 107:
        return at + 3 <= len ? (int)((unsigned)p[at + 1] << 8 | p[at + 2]) : -1;
    case 108:
        return at + 5 <= len ? (int)((uint32_t)p[at + 1] << 24 | (uint32_t)p[at + 2] << 16 | (uint32_t)p[at + 3] << 8 | p[at + 4])
                             : -1;
    default:
        return -1;
    }
}

static int
should_retry(int policy, int rc)
{
    if (rc == CNODE_EUNAVAILABLE)
        return 1;
    if (policy == CNODE_LB_RETRY_ALL)
        return rc != CNODE_EINVAL && rc != CNODE_ECONFIG && rc != CNODE_ENOMEM && rc != CNODE_ECLOSED;
    if (policy == CNODE_LB_RETRY_NODE_ERRORS)
        return rc == CNODE_ENOCONNECTION || rc == CNODE_ENOTSUP;
    return 0;
}

static void
fill_details(cnode_error *err, int rc, const char *mod, const char *fun, int arity, unsigned attempt, const char *node)
{
    if (!err)
        return;
    if (err->code == 0)
        err->code = rc;
    classify(err);
    snprintf(err->module, sizeof err->module, "%s", mod);
    snprintf(err->function, sizeof err->function, "%s", fun);
    err->arity = arity;
    err->attempt = (int)attempt;
    if (node && *node && !err->node[0])
        snprintf(err->node, sizeof err->node, "%s", node);
}

static void
copy_out(char *dst, size_t cap, const char *src)
{
    if (dst && cap)
        snprintf(dst, cap, "%s", src);
}

/* The shared attempt loop of call (cast = 0) and cast (cast = 1). */
static int
route(cnode_balancer *b, int cast, const char *mod, const char *fun, const ei_x_buff *args, const ei_x_buff *key, ei_x_buff *reply,
      char *served_by, size_t cap, cnode_error *err)
{
    if (!b || !mod || !fun || (!cast && !reply))
        return CNODE_EINVAL;
    int arity = args_arity(args);
    if (arity < 0) {
        set_err(err, CNODE_EINVAL, "args must be an encoded list");
        fill_details(err, CNODE_EINVAL, mod, fun, -1, 0, NULL);
        return CNODE_EINVAL;
    }
    copy_out(served_by, cap, "");
    pick_in in;
    term_of(key, &in.key, &in.key_len);
    term_of(args, &in.args, &in.args_len);
    char avoid_buf[AVOID_MAX][CNODE_BALANCER_NODE_MAX];
    const char *avoid[AVOID_MAX];
    size_t navoid = 0;
    char target[CNODE_BALANCER_NODE_MAX];
    for (unsigned attempt = 0;; attempt++) {
        if (err)
            cnode_error_clear(err);
        int rc;
        target[0] = 0;
        if (b->algo == CNODE_LB_CALL_DIRECT) {
            snprintf(target, sizeof target, "%s", b->node ? cnode_node_name(b->node) : "");
            rc = b->local(mod, fun, args, cast ? NULL : reply, err, b->local_data);
        } else {
            rc = pick_member(b, &in, avoid, navoid, target, sizeof target, err);
            if (rc == 0) {
                if (b->local && b->node && strcmp(target, cnode_node_name(b->node)) == 0)
                    rc = b->local(mod, fun, args, cast ? NULL : reply, err, b->local_data); /* this node is a member */
                else if (cast)
                    rc = cnode_cast(b->node, target, mod, fun, args);
                else
                    rc = cnode_call(b->node, target, mod, fun, args, b->timeout_ms, reply, err);
                cnode_balancer_release(b, target, rc);
            }
        }
        copy_out(served_by, cap, target);
        if (rc == 0) {
            if (err)
                cnode_error_clear(err);
            return 0;
        }
        if (attempt >= b->retries || !should_retry(cast ? CNODE_LB_RETRY_NO_ROUTE : b->retry_policy, rc)) {
            fill_details(err, rc, mod, fun, arity, attempt, target);
            return rc;
        }
        if ((rc == CNODE_ENOCONNECTION || rc == CNODE_ENOTSUP) && target[0] && navoid < AVOID_MAX) {
            /* keep away from a node that could not take the call while others are left */
            memcpy(avoid_buf[navoid], target, sizeof target);
            avoid[navoid] = avoid_buf[navoid];
            navoid++;
            if (b->sticky)
                cnode_balancer_clear_sticky(b);
        }
        if (b->sleep_ms)
            sleep_ms(b->sleep_ms);
    }
}

int
cnode_balancer_call(cnode_balancer *b, const char *mod, const char *fun, const ei_x_buff *args, const ei_x_buff *key,
                    ei_x_buff *reply, char *served_by, size_t cap, cnode_error *err)
{
    return route(b, 0, mod, fun, args, key, reply, served_by, cap, err);
}

int
cnode_balancer_cast(cnode_balancer *b, const char *mod, const char *fun, const ei_x_buff *args, const ei_x_buff *key,
                    char *served_by, size_t cap, cnode_error *err)
{
    return route(b, 1, mod, fun, args, key, NULL, served_by, cap, err);
}
