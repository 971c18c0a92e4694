/* hash_ring's pick (seed-behaviour.md A6, libring 1.7): the owner of a key
 * on the ring built from the candidates in order.
 *
 * Each node's sorted points are computed once per balancer and kept in its
 * slot. A pick merges them into one sorted ring for the candidate set and
 * binary-searches it; the merged ring is cached per thread (like the seed's
 * cached ring, rebuilt when the member set changes) and reused while the
 * candidates are the same names in the same order, which every pick checks.
 * Per thread, so nothing is shared: no lock, no reclamation problem; a
 * thread's rings are freed when it exits or replaces them. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "balancer/internal.h"

#define TL_RINGS 2

typedef struct {
    uint32_t point;
    uint32_t owner; /* candidate index */
} ring_pt;

typedef struct {
    uint64_t id; /* the balancer's; 0 = empty */
    size_t n;
    char **names; /* the candidates it was built from */
    size_t *lens;
    ring_pt *pts;
    size_t npts;
} ring_cache;

typedef struct {
    ring_cache c[TL_RINGS];
} tl_state;

static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;
static _Thread_local tl_state *tl;

static void
cache_clear(ring_cache *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->names[i]);
    free(c->names);
    free(c->lens);
    free(c->pts);
    memset(c, 0, sizeof *c);
}

static void
tl_free(void *p)
{
    tl_state *t = p;
    for (int i = 0; i < TL_RINGS; i++)
        cache_clear(&t->c[i]);
    free(t);
}

static void
tl_key_make(void)
{
    pthread_key_create(&tl_key, tl_free);
}

static tl_state *
tl_get(void)
{
    if (!tl) {
        pthread_once(&tl_once, tl_key_make);
        tl = calloc(1, sizeof *tl);
        if (tl)
            pthread_setspecific(tl_key, tl); /* freed by tl_free when the thread exits */
    }
    return tl;
}

static int
u32_cmp(const void *a, const void *c)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)c;
    return x < y ? -1 : x > y;
}

/* The node's ring points, sorted; computed once per balancer and node. */
static const uint32_t *
slot_points(cnode_balancer *b, cnode__nslot *s)
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

static int
pt_cmp(const void *a, const void *c)
{
    const ring_pt *x = a, *y = c;
    if (x->point != y->point)
        return x->point < y->point ? -1 : 1;
    return x->owner < y->owner ? -1 : x->owner > y->owner; /* a tie goes to the node added first */
}

static int
same_set(const ring_cache *c, cnode_balancer *b, const char *const *nodes, size_t n)
{
    if (c->id != b->id || c->n != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(c->names[i], nodes[i], c->lens[i] + 1) != 0)
            return 0;
    return 1;
}

static int
build(ring_cache *c, cnode_balancer *b, const char *const *nodes, size_t n)
{
    cache_clear(c);
    size_t w = b->ring_weight;
    c->names = calloc(n, sizeof *c->names);
    c->lens = calloc(n, sizeof *c->lens);
    c->pts = malloc(n * w * sizeof *c->pts);
    if (!c->names || !c->lens || !c->pts) {
        cache_clear(c);
        return CNODE_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        cnode__nslot *s = cnode__lb_slot(b, nodes[i], 1);
        const uint32_t *p = s ? slot_points(b, s) : NULL;
        c->lens[i] = strlen(nodes[i]);
        c->names[i] = p ? strdup(nodes[i]) : NULL;
        c->n = i + 1;
        if (!c->names[i]) {
            cache_clear(c);
            return CNODE_ENOMEM;
        }
        for (size_t k = 0; k < w; k++)
            c->pts[i * w + k] = (ring_pt){p[k], (uint32_t)i};
    }
    qsort(c->pts, n * w, sizeof *c->pts, pt_cmp);
    /* one owner per point: the first node added (libring's tie rule) */
    size_t o = 0;
    for (size_t k = 0; k < n * w; k++)
        if (o == 0 || c->pts[o - 1].point != c->pts[k].point)
            c->pts[o++] = c->pts[k];
    c->npts = o;
    c->id = b->id;
    return 0;
}

long
cnode__lb_pick_ring(cnode_balancer *b, const char *const *nodes, size_t n, const char *key, size_t key_len)
{
    uint32_t h;
    int rc = cnode_ring_key_hash(key, key_len, b->otp, &h);
    if (rc)
        return rc;
    tl_state *t = tl_get();
    if (!t || n > UINT32_MAX)
        return CNODE_ENOMEM;
    ring_cache *c = &t->c[b->id % TL_RINGS];
    if (!same_set(c, b, nodes, n) && (rc = build(c, b, nodes, n)) != 0)
        return rc;
    /* the smallest point >= h, else the smallest point */
    size_t lo = 0, hi = c->npts;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->pts[mid].point < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (long)c->pts[lo < c->npts ? lo : 0].owner;
}
