/* The balancer's core: the seeds' selection algorithms and the in-flight
 * counters (seed-behaviour.md A6-A7, B3). Life cycle and option checks are
 * in lifecycle.c; sources, picks, calls and retries in route.c; the
 * per-thread prepared views of a source (slots, weight sums, merged hash
 * ring) in view.c; LeastCpu in least_cpu.c.
 *
 * Lock-free on the pick path: cursors and counters are C11 atomics, per-node
 * state (counter, hash-ring points, CPU reading) lives in an insert-only hash
 * table, and EasyRpc's per-process state (round-robin cursor, sticky node) is
 * per thread. select_from allocates nothing once a node's slot exists. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "balancer/internal.h"
#include "cnode/internal.h"

#define RR_RESET 10000000UL /* the seed's cursor wraps after this */
#define TL_RR 32

/* ---- per-thread state ---- */

static _Thread_local uint64_t rng_state;
static _Thread_local struct {
    uint64_t id;
    size_t idx;
} tl_rr[TL_RR];
static _Thread_local struct {
    uint64_t id;
    cnode__nslot *slot; /* the node's slot in balancer id */
    char node[CNODE_BALANCER_NODE_MAX];
} tl_sticky[CNODE__LB_TL_STICKY];
/* The slot this thread picked last per balancer: the release that follows
 * a pick on the same thread finds it without hashing the name. */
static _Thread_local struct {
    uint64_t id;
    cnode__nslot *slot;
} tl_last[CNODE__LB_TL_STICKY];

uint64_t
cnode__lb_rand(void)
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
size_t
cnode__lb_rand_below(size_t n)
{
    return (size_t)((cnode__lb_rand() >> 32) * (uint64_t)n >> 32);
}

int64_t
cnode__lb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- errors ---- */

/* The library's one classification (cnode/util.c), unless the error has a type already. */
void
cnode__lb_classify(cnode_error *err)
{
    if (!err || err->type)
        return;
    cnode__error_classify(err);
}

/* The runtime's cnode__seterr (no node named), with a printf-style message. */
int
cnode__lb_fail(cnode_error *err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    char msg[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cnode__seterr(err, code, NULL, "%s", msg);
    return code;
}

/* ---- per-node slots: insert-only, lock-free reads ---- */

/* A word at a time: node names are short, and this runs twice per pick. */
static uint64_t
name_hash(const char *s, size_t len)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 31;
    }
    uint64_t w = 0;
    memcpy(&w, s + i, len - i);
    h = (h ^ w) * 0x94d049bb133111ebULL;
    return h ^ (h >> 29);
}

static unsigned weight_of(const cnode_balancer *b, const char *node);

cnode__nslot *
cnode__lb_slot(cnode_balancer *b, const char *name, int create)
{
    size_t len = strlen(name);
    uint64_t h = name_hash(name, len);
    _Atomic(cnode__nslot *) *bucket = &b->buckets[h % CNODE__LB_NBUCKETS];
    for (;;) {
        cnode__nslot *head = atomic_load_explicit(bucket, memory_order_acquire);
        for (cnode__nslot *s = head; s; s = s->next)
            if (s->hash == h && s->len == len && memcmp(s->name, name, len + 1) == 0)
                return s;
        if (!create)
            return NULL;
        /* whole cache lines: one node's counter never shares a line with another's */
        size_t size = (sizeof(cnode__nslot) + len + 1 + CNODE__LB_LINE - 1) / CNODE__LB_LINE * CNODE__LB_LINE;
        cnode__nslot *s = aligned_alloc(CNODE__LB_LINE, size);
        if (!s)
            return NULL;
        memset(s, 0, size);
        memcpy(s->name, name, len + 1);
        s->hash = h;
        s->len = len;
        s->weight = weight_of(b, name);
        s->next = head;
        if (atomic_compare_exchange_strong(bucket, &head, s))
            return s;
        free(s); /* another thread inserted first: look again */
    }
}

static long
slot_count(cnode_balancer *b, const char *name)
{
    cnode__nslot *s = cnode__lb_slot(b, name, 0);
    return s ? atomic_load(&s->in_flight) : 0;
}

/* ---- the algorithms ---- */

typedef struct {
    cnode__lb_cands c;
    cnode__lb_view *view; /* NULL for a caller's list */
    const char *key, *args;
    size_t key_len, args_len;
} pick_in;

static cnode__nslot *
slot_at(cnode_balancer *b, const cnode__lb_cands *c, size_t i)
{
    return c->slots ? c->slots[i] : cnode__lb_slot(b, c->names[i], 1);
}

static long
load_of(const cnode__nslot *s)
{
    return s ? atomic_load_explicit(&s->in_flight, memory_order_relaxed) : 0;
}

static unsigned long
cursor_next(atomic_ulong *cursor)
{
    unsigned long v = atomic_fetch_add_explicit(cursor, 1, memory_order_relaxed) + 1;
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

#define STACK_WEIGHTS 512

/* A node's weight, from its slot (looked up in opts.weights once). */
static unsigned
slot_weight(cnode_balancer *b, const cnode__lb_cands *c, size_t i)
{
    cnode__nslot *s = slot_at(b, c, i);
    return s ? s->weight : weight_of(b, c->names[i]);
}

/* Position (v - 1) mod total in the expanded list [a, a, a, b, ...],
 * without building it: a binary search of the running sums of a view, or a
 * walk of a caller's list. */
static long
pick_weighted(cnode_balancer *b, const pick_in *in)
{
    const cnode__lb_cands *c = &in->c;
    if (in->view) {
        const cnode__lb_view *v = in->view;
        if (v->total_weight == 0)
            return CNODE_EUNAVAILABLE;
        uint64_t at = (uint64_t)(cursor_next(&b->wrr_cursor) - 1) % v->total_weight;
        size_t lo = 0, hi = v->n - 1;
        while (lo < hi) { /* the first i with cumw[i] > at */
            size_t mid = lo + (hi - lo) / 2;
            if (v->cumw[mid] > at)
                hi = mid;
            else
                lo = mid + 1;
        }
        return (long)lo;
    }
    unsigned stack[STACK_WEIGHTS], *w = c->n <= STACK_WEIGHTS ? stack : NULL;
    unsigned long long total = 0;
    for (size_t i = 0; i < c->n; i++) {
        unsigned x = slot_weight(b, c, i);
        if (w)
            w[i] = x;
        total += x;
    }
    if (total == 0)
        return CNODE_EUNAVAILABLE;
    unsigned long long at = (cursor_next(&b->wrr_cursor) - 1) % total;
    for (size_t i = 0; i < c->n; i++) {
        unsigned x = w ? w[i] : slot_weight(b, c, i);
        if (at < x)
            return (long)i;
        at -= x;
    }
    return CNODE_EUNAVAILABLE; /* not reached */
}

static long
pick_least(cnode_balancer *b, const cnode__lb_cands *c)
{
    size_t best = 0;
    long best_count = load_of(slot_at(b, c, 0));
    for (size_t i = 1; i < c->n && best_count > 0; i++) {
        long k = load_of(slot_at(b, c, i));
        if (k < best_count) {
            best = i;
            best_count = k;
        }
    }
    return (long)best;
}

static long
pick_two(cnode_balancer *b, const cnode__lb_cands *c)
{
    if (c->n == 1)
        return 0;
    size_t i = cnode__lb_rand_below(c->n), j = cnode__lb_rand_below(c->n - 1);
    if (j >= i)
        j++;
    return load_of(slot_at(b, c, i)) <= load_of(slot_at(b, c, j)) ? (long)i : (long)j;
}

static long
pick_easy_rr(cnode_balancer *b, size_t n)
{
    size_t k = b->id % TL_RR;
    if (tl_rr[k].id != b->id) {
        tl_rr[k].id = b->id;
        tl_rr[k].idx = cnode__lb_rand_below(n); /* EasyRpc starts each process at a random index */
    } else if (tl_rr[k].idx >= n) {
        tl_rr[k].idx = 0;
    }
    size_t at = tl_rr[k].idx;
    tl_rr[k].idx = at + 1 < n ? at + 1 : 0;
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
pick_ring(cnode_balancer *b, const pick_in *in)
{
    if (!in->key)
        return (long)cnode__lb_rand_below(in->c.n);
    if (in->view)
        return cnode__lb_view_ring(b, in->view, in->key, in->key_len);
    return cnode__lb_pick_ring(b, in->c.names, in->c.n, in->key, in->key_len);
}

static long
run_algorithm(cnode_balancer *b, const pick_in *in)
{
    size_t n = in->c.n;
    switch (b->algo) {
    case CNODE_LB_ROUND_ROBIN:
        return (long)((cursor_next(&b->rr_cursor) - 1) % n);
    case CNODE_LB_WEIGHTED_ROUND_ROBIN:
        return pick_weighted(b, in);
    case CNODE_LB_LEAST_CONNECTIONS:
        return pick_least(b, &in->c);
    case CNODE_LB_POWER_OF_TWO:
        return pick_two(b, &in->c);
    case CNODE_LB_HASH_RING:
        return pick_ring(b, in);
    case CNODE_LB_EASY_ROUND_ROBIN:
        return pick_easy_rr(b, n);
    case CNODE_LB_EASY_HASH:
        return pick_easy_hash(n, in);
    case CNODE_LB_LEAST_CPU:
        return cnode__lb_pick_cpu(b, &in->c);
    case CNODE_LB_CUSTOM: {
        cnode_balancer_pick p = {in->c.names, n, in->key, in->key_len, in->args, in->args_len};
        long i = b->custom.select(b->custom_state, &p);
        return i >= (long)n ? CNODE_EINVAL : i;
    }
    default: /* random, easy_random, sticky's first pick, call_direct's select */
        return (long)cnode__lb_rand_below(n);
    }
}

/* This thread's sticky node among the candidates, or -1. EasyRpc reuses the
 * stored node blindly; here only while it is a candidate. */
static long
sticky_index(cnode_balancer *b, const pick_in *in)
{
    size_t st = b->id % CNODE__LB_TL_STICKY;
    if (tl_sticky[st].id != b->id)
        return -1;
    const cnode__lb_cands *c = &in->c;
    if (in->view && tl_sticky[st].slot) {
        cnode__lb_view *v = in->view;
        if (v->sticky_at < v->n && v->slots[v->sticky_at] == tl_sticky[st].slot)
            return (long)v->sticky_at;
        for (size_t k = 0; k < v->n; k++)
            if (v->slots[k] == tl_sticky[st].slot) {
                v->sticky_at = k;
                return (long)k;
            }
        return -1;
    }
    for (size_t k = 0; k < c->n; k++)
        if (strcmp(c->names[k], tl_sticky[st].node) == 0)
            return (long)k;
    return -1;
}

static int
choose(cnode_balancer *b, const pick_in *in, size_t *index)
{
    long i = b->sticky ? sticky_index(b, in) : -1;
    if (i < 0)
        i = run_algorithm(b, in);
    if (i < 0)
        return (int)i;
    cnode__nslot *s = slot_at(b, &in->c, (size_t)i);
    if (!s)
        return CNODE_ENOMEM;
    atomic_fetch_add_explicit(&s->in_flight, 1, memory_order_relaxed);
    size_t st = b->id % CNODE__LB_TL_STICKY;
    tl_last[st].id = b->id;
    tl_last[st].slot = s;
    if (b->sticky && (tl_sticky[st].id != b->id || tl_sticky[st].slot != s)) {
        size_t len = strlen(s->name);
        if (len < CNODE_BALANCER_NODE_MAX) {
            tl_sticky[st].id = b->id;
            tl_sticky[st].slot = s;
            memcpy(tl_sticky[st].node, s->name, len + 1);
        }
    }
    *index = (size_t)i;
    return 0;
}

int
cnode__lb_choose(cnode_balancer *b, const char *const *nodes, size_t n, const char *key, size_t key_len, const char *args,
                 size_t args_len, size_t *index)
{
    pick_in in = {{nodes, NULL, n}, NULL, key, args, key_len, args_len};
    return choose(b, &in, index);
}

int
cnode__lb_choose_view(cnode_balancer *b, cnode__lb_view *v, const char *key, size_t key_len, const char *args, size_t args_len,
                      size_t *index)
{
    pick_in in = {{v->names, v->slots, v->n}, v, key, args, key_len, args_len};
    return choose(b, &in, index);
}

int
cnode__lb_filter_pass(cnode_balancer *b, const char *name)
{
    if (!b->filter)
        return 1;
    cnode__nslot *s = cnode__lb_slot(b, name, 1);
    int f = s ? atomic_load_explicit(&s->filt, memory_order_relaxed) : 0;
    if (f == 0) {
        f = cnode_filter_match(b->filter, name) ? 1 : 2;
        if (s)
            atomic_store_explicit(&s->filt, f, memory_order_relaxed);
    }
    return f == 1;
}

void
cnode_balancer_release(cnode_balancer *b, const char *node, int status)
{
    if (!b || !node)
        return;
    size_t st = b->id % CNODE__LB_TL_STICKY;
    cnode__nslot *s = tl_last[st].id == b->id && strcmp(tl_last[st].slot->name, node) == 0 ? tl_last[st].slot
                                                                                         : cnode__lb_slot(b, node, 0);
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

size_t
cnode_balancer_counters(cnode_balancer *b, char (*names)[CNODE_BALANCER_NODE_MAX], long *counts, size_t max)
{
    size_t n = 0;
    if (!b)
        return 0;
    for (int i = 0; i < CNODE__LB_NBUCKETS; i++)
        for (cnode__nslot *s = atomic_load(&b->buckets[i]); s; s = s->next, n++)
            if (n < max) {
                if (names)
                    snprintf(names[n], CNODE_BALANCER_NODE_MAX, "%s", s->name);
                if (counts)
                    counts[n] = atomic_load(&s->in_flight);
            }
    return n;
}

int
cnode_balancer_drain(cnode_balancer *b, unsigned timeout_ms)
{
    if (!b)
        return CNODE_EINVAL;
    int64_t deadline = cnode__lb_now_ms() + timeout_ms;
    for (;;) {
        long busy = 0;
        for (int i = 0; i < CNODE__LB_NBUCKETS; i++)
            for (cnode__nslot *s = atomic_load(&b->buckets[i]); s; s = s->next)
                busy += atomic_load(&s->in_flight);
        if (busy <= 0)
            return 0;
        int64_t left = deadline - cnode__lb_now_ms();
        if (left <= 0)
            return CNODE_ETIMEOUT;
        struct timespec ts = {0, (left < 10 ? left : 10) * 1000000L};
        while (nanosleep(&ts, &ts) != 0)
            ;
    }
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
    const char *k, *a;
    size_t kl, al;
    term_of(key, &k, &kl);
    term_of(args, &a, &al);
    return cnode__lb_choose(b, nodes, n, k, kl, a, al, index);
}

void
cnode_balancer_clear_sticky(cnode_balancer *b)
{
    if (b && tl_sticky[b->id % CNODE__LB_TL_STICKY].id == b->id)
        tl_sticky[b->id % CNODE__LB_TL_STICKY].id = 0;
}

void
cnode_balancer_reset_round_robin(cnode_balancer *b)
{
    if (b && tl_rr[b->id % TL_RR].id == b->id)
        tl_rr[b->id % TL_RR].id = 0;
}
