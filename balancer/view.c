/* The pick path's prepared data, kept per thread.
 *
 * A view is the candidate set of a balancer's own source (pg mirror or
 * static list) made ready for picking: the per-node slots in source order,
 * weighted_round_robin's running sums, and hash_ring's merged ring (built
 * at the first keyed pick). It is built when the source changes (a new pg
 * snapshot generation) and then read by every pick on that thread without
 * allocating, locking or touching the snapshot: a pick is a generation
 * check, the algorithm on the arrays, and the counter.
 *
 * cnode_balancer_select_from's lists are the caller's, so nothing tells
 * when they change: its hash ring is cached per thread too and reused while
 * the candidates are the same names in the same order, which each pick
 * checks (O(n) compares).
 *
 * Per thread, so nothing is shared: no lock and no reclamation problem.
 * Entries are keyed by the balancer's id (never reused), so an entry of a
 * freed balancer is never read again; it is freed when the thread exits or
 * reuses the entry. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "balancer/internal.h"

#define TL_VIEWS 4
#define TL_RINGS 2

typedef struct {
    uint64_t id; /* the balancer's; 0 = empty */
    size_t n;
    char **names; /* the candidates it was built from */
    cnode__ring_pt *pts;
    size_t npts;
} ring_cache;

typedef struct {
    cnode__lb_view views[TL_VIEWS];
    unsigned victim;
    ring_cache rings[TL_RINGS];
} tl_state;

static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;
static _Thread_local tl_state *tl;

static void
view_clear(cnode__lb_view *v)
{
    free(v->names);
    free(v->slots);
    free(v->cumw);
    free(v->ring);
    memset(v, 0, sizeof *v);
}

static void
ring_clear(ring_cache *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->names[i]);
    free(c->names);
    free(c->pts);
    memset(c, 0, sizeof *c);
}

static void
tl_free(void *p)
{
    tl_state *t = p;
    for (int i = 0; i < TL_VIEWS; i++)
        view_clear(&t->views[i]);
    for (int i = 0; i < TL_RINGS; i++)
        ring_clear(&t->rings[i]);
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

/* ---- views ---- */

cnode__lb_view *
cnode__lb_view_of(cnode_balancer *b)
{
    tl_state *t = tl_get();
    if (!t)
        return NULL;
    for (int i = 0; i < TL_VIEWS; i++)
        if (t->views[i].bid == b->id)
            return &t->views[i];
    for (int i = 0; i < TL_VIEWS; i++)
        if (t->views[i].bid == 0)
            return &t->views[i];
    cnode__lb_view *v = &t->views[t->victim++ % TL_VIEWS];
    view_clear(v);
    return v;
}

int
cnode__lb_view_fill(cnode_balancer *b, cnode__lb_view *v, uint64_t gen, const char *const *names, size_t n,
                    const size_t counts[3])
{
    view_clear(v);
    if (n) {
        v->names = malloc(n * sizeof *v->names);
        v->slots = malloc(n * sizeof *v->slots);
        if (b->algo == CNODE_LB_WEIGHTED_ROUND_ROBIN)
            v->cumw = malloc(n * sizeof *v->cumw);
        if (!v->names || !v->slots || (b->algo == CNODE_LB_WEIGHTED_ROUND_ROBIN && !v->cumw)) {
            view_clear(v);
            return CNODE_ENOMEM;
        }
    }
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        cnode__nslot *s = cnode__lb_slot(b, names[i], 1);
        if (!s) {
            view_clear(v);
            return CNODE_ENOMEM;
        }
        v->slots[i] = s;
        v->names[i] = s->name;
        if (v->cumw)
            v->cumw[i] = total += s->weight;
    }
    v->n = n;
    v->total_weight = total;
    v->members = counts[0];
    v->suspect = counts[1];
    v->filtered = counts[2];
    v->gen = gen;
    v->bid = b->id;
    return 0;
}

/* ---- the hash ring ---- */

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
    const cnode__ring_pt *x = a, *y = c;
    if (x->point != y->point)
        return x->point < y->point ? -1 : 1;
    return x->owner < y->owner ? -1 : x->owner > y->owner; /* a tie goes to the node added first */
}

/* The ring of the nodes at slots[0, n) added in order: sorted points, one
 * owner (a candidate index) per point. *out yours. */
static int
ring_merge(cnode_balancer *b, cnode__nslot *const *slots, size_t n, cnode__ring_pt **out, size_t *nout)
{
    size_t w = b->ring_weight;
    if (n > UINT32_MAX)
        return CNODE_ENOMEM;
    cnode__ring_pt *pts = malloc(n * w * sizeof *pts);
    if (!pts)
        return CNODE_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const uint32_t *p = slot_points(b, slots[i]);
        if (!p) {
            free(pts);
            return CNODE_ENOMEM;
        }
        for (size_t k = 0; k < w; k++)
            pts[i * w + k] = (cnode__ring_pt){p[k], (uint32_t)i};
    }
    qsort(pts, n * w, sizeof *pts, pt_cmp);
    /* one owner per point: the first node added (libring's tie rule) */
    size_t o = 0;
    for (size_t k = 0; k < n * w; k++)
        if (o == 0 || pts[o - 1].point != pts[k].point)
            pts[o++] = pts[k];
    *out = pts;
    *nout = o;
    return 0;
}

/* The owner of the smallest point >= h, else of the smallest point. */
static long
ring_find(const cnode__ring_pt *pts, size_t npts, uint32_t h)
{
    size_t at = cnode__ring_lower_bound(pts, npts, h);
    return (long)pts[at < npts ? at : 0].owner;
}

long
cnode__lb_view_ring(cnode_balancer *b, cnode__lb_view *v, const char *key, size_t key_len)
{
    uint32_t h;
    int rc = cnode_ring_key_hash(key, key_len, b->otp, &h);
    if (rc)
        return rc;
    if (!v->ring && (rc = ring_merge(b, v->slots, v->n, &v->ring, &v->nring)) != 0)
        return rc;
    return ring_find(v->ring, v->nring, h);
}

static int
same_set(const ring_cache *c, cnode_balancer *b, const char *const *nodes, size_t n)
{
    if (c->id != b->id || c->n != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(c->names[i], nodes[i]) != 0) /* not memcmp: nodes[i] may be shorter */
            return 0;
    return 1;
}

static int
ring_build(ring_cache *c, cnode_balancer *b, const char *const *nodes, size_t n)
{
    ring_clear(c);
    cnode__nslot **slots = malloc(n * sizeof *slots);
    c->names = calloc(n, sizeof *c->names);
    int rc = slots && c->names ? 0 : CNODE_ENOMEM;
    for (size_t i = 0; i < n && !rc; i++) {
        slots[i] = cnode__lb_slot(b, nodes[i], 1);
        c->names[i] = strdup(nodes[i]);
        c->n = i + 1;
        if (!slots[i] || !c->names[i])
            rc = CNODE_ENOMEM;
    }
    if (!rc)
        rc = ring_merge(b, slots, n, &c->pts, &c->npts);
    free(slots);
    if (rc) {
        ring_clear(c);
        return rc;
    }
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
    if (!t)
        return CNODE_ENOMEM;
    ring_cache *c = &t->rings[b->id % TL_RINGS];
    if (!same_set(c, b, nodes, n) && (rc = ring_build(c, b, nodes, n)) != 0)
        return rc;
    return ring_find(c->pts, c->npts, h);
}
