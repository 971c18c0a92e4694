/* pg mirror: interned nodes, the group index and copy-on-write member
 * blocks, and the changes pg's messages make to them (snapshot.c publishes).
 *
 * Each group has a published block (immutable, shared by every snapshot that
 * holds it) and, after a change, a private draft; a publication turns the
 * drafts of the groups that changed into blocks and builds a new snapshot that
 * points at the same blocks as the last one except those. Members are stored
 * once: 16 bytes each, the node as a pointer to its interned name. Nodes,
 * groups and local members are found through hash tables; a leave of many
 * pids is one pass over the group with the pids in a small hash set. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/internal.h"
#include "cnode/terms.h"
#include "pg/pg_internal.h"

/* FNV-1a */
uint32_t
cnode__pg_hash(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

/* Doubles a chained table when it holds more entries than buckets. next_off: offset of the chain pointer, hash_of
 * gives an entry's hash. */
int
cnode__pg_rehash(void ***tab, size_t *cap, size_t count, size_t next_off, uint32_t (*hash_of)(const void *))
{
    if (count < *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 16;
    void **nt = calloc(nc, sizeof *nt);
    if (!nt)
        return -1;
    for (size_t i = 0; i < *cap; i++)
        for (void *e = (*tab)[i], *nx; e; e = nx) {
            void **link = (void **)(void *)((char *)e + next_off);
            nx = *link;
            size_t b = hash_of(e) & (nc - 1);
            *link = nt[b];
            nt[b] = e;
        }
    free(*tab);
    *tab = nt;
    *cap = nc;
    return 0;
}

/* ---- nodes ------------------------------------------------------------------------------------------------------- */

static uint32_t
node_hash_of(const void *e)
{
    return ((const pg_node *)e)->hash;
}

/* The node's entry, added if new and create is set (NULL if not found or out of memory). */
pg_node *
cnode__pg_node(cnode_pg_scope *s, const char *name, int create)
{
    size_t len = strlen(name);
    uint32_t h = cnode__pg_hash(name, len);
    if (s->nhcap)
        for (pg_node *n = s->nhash[h & (s->nhcap - 1)]; n; n = n->hnext)
            if (n->hash == h && strcmp(n->name, name) == 0)
                return n;
    if (!create || len >= CNODE__NAME_MAX)
        return NULL;
    if (cnode__pg_rehash((void ***)&s->nhash, &s->nhcap, s->nnodes, offsetof(pg_node, hnext), node_hash_of) != 0)
        return NULL;
    if (s->nnodes == s->capnodes) {
        size_t nc = s->capnodes ? s->capnodes * 2 : 8;
        pg_node **nn = realloc(s->nodes, nc * sizeof *nn);
        if (!nn)
            return NULL;
        s->nodes = nn;
        s->capnodes = nc;
    }
    pg_node *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    memcpy(n->name, name, len + 1);
    n->hash = h;
    n->ix = (uint32_t)s->nnodes;
    n->rtt_us = -1;
    s->nodes[s->nnodes++] = n;
    n->hnext = s->nhash[h & (s->nhcap - 1)];
    s->nhash[h & (s->nhcap - 1)] = n;
    s->dirty = 1; /* snapshots list the nodes */
    return n;
}

/* Packs p into out; the node's name and creation interned. Returns out->node, or NULL when out of memory. */
const char *
cnode__pg_intern_pid(cnode_pg_scope *s, const erlang_pid *p, cnode_pg_member *out)
{
    out->node = NULL;
    out->num = p->num;
    out->serial = p->serial;
    pg_node *n = cnode__pg_node(s, p->node, 1);
    if (!n)
        return NULL;
    pg_pnode *pn;
    for (pn = n->pnodes; pn; pn = pn->next)
        if (pn->creation == p->creation)
            break;
    if (!pn) {
        size_t len = strlen(n->name);
        if (!(pn = malloc(sizeof *pn + len + 1)))
            return NULL;
        pn->creation = p->creation;
        pn->node = n->ix;
        memcpy(pn->name, n->name, len + 1);
        pn->next = n->pnodes;
        n->pnodes = pn;
    }
    return out->node = pn->name;
}

static const pg_pnode *
pnode_of(const cnode_pg_member *m)
{
    return (const pg_pnode *)(const void *)(m->node - offsetof(pg_pnode, name));
}

uint32_t
cnode__pg_member_node(const cnode_pg_member *m)
{
    return pnode_of(m)->node;
}

void
cnode__pg_to_pid(const cnode_pg_member *m, erlang_pid *out)
{
    cnode__pid_make(out, m->node, m->num, m->serial, pnode_of(m)->creation);
}

void
cnode__pg_ref_pack(const erlang_ref *r, pg_ref *out)
{
    memset(out, 0, sizeof *out);
    out->len = r->len < 0 ? 0 : r->len > 5 ? 5 : r->len;
    for (int i = 0; i < out->len; i++)
        out->n[i] = r->n[i];
    out->creation = r->creation;
}

void
cnode__pg_ref_unpack(const cnode_pg_scope *s, const pg_ref *r, erlang_ref *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->node, sizeof out->node, "%s", s->self->name);
    out->len = r->len;
    for (int i = 0; i < r->len; i++)
        out->n[i] = r->n[i];
    out->creation = r->creation;
}

int
cnode__pg_ref_eq(const cnode_pg_scope *s, const pg_ref *a, const erlang_ref *b)
{
    if (a->len != b->len || a->creation != b->creation || strcmp(b->node, s->self->name) != 0)
        return 0;
    for (int i = 0; i < a->len; i++)
        if (a->n[i] != b->n[i])
            return 0;
    return 1;
}

void
cnode_pg_member_pid(const cnode_pg_member *m, erlang_pid *out)
{
    cnode__pg_to_pid(m, out);
}

/* ---- groups and blocks ------------------------------------------------------------------------------------------- */

/* Members start at the first 8-byte boundary after the key. */
static size_t
members_off(size_t klen)
{
    return (offsetof(pg_block, key) + klen + 7) & ~(size_t)7;
}

static pg_block *
block_new(const char *k, size_t kl, size_t cap)
{
    pg_block *b = malloc(members_off(kl) + cap * sizeof(cnode_pg_member));
    if (!b)
        return NULL;
    b->rnext = NULL;
    b->dead_gen = 0;
    memcpy(b->key, k, kl);
    b->klen = (uint32_t)kl;
    b->n = 0;
    b->cap = (uint32_t)cap;
    b->m = (cnode_pg_member *)(void *)((char *)b + members_off(kl));
    return b;
}

pg_block *
cnode__pg_block_resize(pg_block *b, size_t cap)
{
    pg_block *nb = realloc(b, members_off(b->klen) + cap * sizeof(cnode_pg_member));
    if (!nb)
        return NULL;
    nb->cap = (uint32_t)cap;
    nb->m = (cnode_pg_member *)(void *)((char *)nb + members_off(nb->klen));
    return nb;
}

const pg_block *
cnode__pg_group_block(const pg_group *g)
{
    return g->draft ? g->draft : g->pub;
}

static uint32_t
group_hash_of(const void *e)
{
    return ((const pg_group *)e)->hash;
}

pg_group *
cnode__pg_group(cnode_pg_scope *s, const char *k, size_t kl, int create)
{
    uint32_t h = cnode__pg_hash(k, kl);
    if (s->ghcap)
        for (pg_group *g = s->ghash[h & (s->ghcap - 1)]; g; g = g->hnext) {
            const pg_block *b = cnode__pg_group_block(g);
            if (g->hash == h && b->klen == kl && memcmp(b->key, k, kl) == 0)
                return g;
        }
    if (!create || kl > UINT32_MAX)
        return NULL;
    if (cnode__pg_rehash((void ***)&s->ghash, &s->ghcap, s->ngroups, offsetof(pg_group, hnext), group_hash_of) != 0)
        return NULL;
    pg_group *g = calloc(1, sizeof *g);
    if (!g || !(g->draft = block_new(k, kl, 4))) {
        free(g);
        return NULL;
    }
    g->hash = h;
    g->hnext = s->ghash[h & (s->ghcap - 1)];
    s->ghash[h & (s->ghcap - 1)] = g;
    s->ngroups++;
    s->groups_changed = 1;
    g->dirty = 1;
    g->dnext = s->dirty_groups;
    s->dirty_groups = g;
    return g;
}

/* The group's draft, room for `extra` more members: a copy of the published block on the first change since the
 * last publication. */
static pg_block *
draft(cnode_pg_scope *s, pg_group *g, size_t extra)
{
    if (!g->draft) {
        const pg_block *p = g->pub;
        pg_block *d = block_new(p->key, p->klen, p->n + extra + 4);
        if (!d)
            return NULL;
        memcpy(d->m, p->m, p->n * sizeof *d->m);
        d->n = p->n;
        g->draft = d;
    } else if (g->draft->n + extra > g->draft->cap) {
        size_t nc = g->draft->cap * 2;
        while (nc < g->draft->n + extra)
            nc *= 2;
        pg_block *d = cnode__pg_block_resize(g->draft, nc);
        if (!d)
            return NULL;
        g->draft = d;
    }
    if (!g->dirty) {
        g->dirty = 1;
        g->dnext = s->dirty_groups;
        s->dirty_groups = g;
    }
    s->dirty = 1;
    return g->draft;
}

static void
oom(cnode_pg_scope *s)
{
    cnode__log(s->node, CNODE_LOG_ERROR, "pg %s: out of memory; mirror incomplete", s->name);
}

/* ---- events ------------------------------------------------------------------------------------------------------- */

void
cnode__pg_event(cnode_pg_scope *s, int kind, const char *key, size_t kl, const char *node, const cnode_pg_member *p, size_t n)
{
    s->dirty = 1;
    if (!s->opts.on_change || (kind != CNODE_PG_SUSPECT && kind != CNODE_PG_CLEAR && n == 0))
        return;
    pg_event *e = calloc(1, sizeof *e + n * sizeof *p + kl);
    if (!e)
        return;
    e->scope = s;
    e->kind = kind;
    e->gen = atomic_load(&s->gen) + 1; /* the next publication shows it */
    e->m = (cnode_pg_member *)(void *)(e + 1);
    if (n)
        memcpy(e->m, p, n * sizeof *p);
    e->n = n;
    e->key = (char *)(e->m + n);
    if (kl)
        memcpy(e->key, key, kl);
    e->klen = kl;
    e->node = node ? node : n ? p[0].node : "";
    if (s->ev_tail)
        s->ev_tail->next = e;
    else
        s->ev_head = e;
    s->ev_tail = e;
}

/* ---- changes ----------------------------------------------------------------------------------------------------- */

/* pg's Pids ++ All */
void
cnode__pg_join(cnode_pg_scope *s, const char *k, size_t kl, const cnode_pg_member *p, size_t n)
{
    if (!n)
        return;
    pg_group *g = cnode__pg_group(s, k, kl, 1);
    pg_block *d = g ? draft(s, g, n) : NULL;
    if (!d) {
        oom(s);
        return;
    }
    memmove(d->m + n, d->m, d->n * sizeof *d->m);
    memcpy(d->m, p, n * sizeof *p);
    d->n += (uint32_t)n;
    cnode__pg_event(s, CNODE_PG_JOIN, k, kl, NULL, p, n);
}

static int
member_eq(const cnode_pg_member *a, const cnode_pg_member *b)
{
    return a->node == b->node && a->num == b->num && a->serial == b->serial;
}

static uint32_t
member_hash(const cnode_pg_member *m)
{
    uintptr_t v = (uintptr_t)m->node;
    return (uint32_t)((m->num * 2654435761u) ^ (m->serial * 40503u) ^ (uint32_t)(v >> 4));
}

/* pg's All -- Pids (the first copy of each), in one pass: the pids to remove in a small open-addressed multiset. */
void
cnode__pg_leave(cnode_pg_scope *s, const char *k, size_t kl, const cnode_pg_member *p, size_t n)
{
    pg_group *g = cnode__pg_group(s, k, kl, 0);
    if (!g || !n)
        return;
    const pg_block *cb = cnode__pg_group_block(g);
    size_t cap = 8;
    while (cap < 2 * n)
        cap *= 2;
    struct slot {
        const cnode_pg_member *m;
        size_t left;
    } *set = calloc(cap, sizeof *set);
    cnode_pg_member *gone = malloc(n * sizeof *gone);
    if (!set || !gone) {
        free(set);
        free(gone);
        oom(s);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t h = member_hash(&p[i]) & (cap - 1);
        while (set[h].m && !member_eq(set[h].m, &p[i]))
            h = (h + 1) & (cap - 1);
        set[h].m = &p[i];
        set[h].left++;
    }
    /* find the first member to go before copying anything */
    size_t first = cb->n, ngone = 0;
    for (size_t i = 0; i < cb->n && first == cb->n; i++) {
        size_t h = member_hash(&cb->m[i]) & (cap - 1);
        while (set[h].m && !member_eq(set[h].m, &cb->m[i]))
            h = (h + 1) & (cap - 1);
        if (set[h].m)
            first = i;
    }
    pg_block *d = first < cb->n ? draft(s, g, 0) : NULL;
    if (d) {
        size_t w = first;
        for (size_t i = first; i < d->n; i++) {
            size_t h = member_hash(&d->m[i]) & (cap - 1);
            while (set[h].m && !member_eq(set[h].m, &d->m[i]))
                h = (h + 1) & (cap - 1);
            if (set[h].m && set[h].left) {
                set[h].left--;
                gone[ngone++] = d->m[i];
            } else {
                d->m[w++] = d->m[i];
            }
        }
        d->n = (uint32_t)w;
        cnode__pg_event(s, CNODE_PG_LEAVE, k, kl, NULL, gone, ngone);
    } else if (first < cb->n) {
        oom(s);
    }
    free(set);
    free(gone);
}

/* Every member of node `node` leaves g (a peer scope went down or re-synced). */
void
cnode__pg_drop_node(cnode_pg_scope *s, pg_group *g, uint32_t node, int kind)
{
    const pg_block *cb = cnode__pg_group_block(g);
    size_t first = cb->n;
    for (size_t i = 0; i < cb->n; i++)
        if (cnode__pg_member_node(&cb->m[i]) == node) {
            first = i;
            break;
        }
    if (first == cb->n)
        return;
    pg_block *d = draft(s, g, 0);
    cnode_pg_member *gone = d ? malloc((d->n - first) * sizeof *gone) : NULL;
    if (!gone) {
        oom(s);
        return;
    }
    size_t w = first, ngone = 0;
    for (size_t i = first; i < d->n; i++) {
        if (cnode__pg_member_node(&d->m[i]) == node)
            gone[ngone++] = d->m[i];
        else
            d->m[w++] = d->m[i];
    }
    d->n = (uint32_t)w;
    cnode__pg_event(s, kind, d->key, d->klen, NULL, gone, ngone);
    free(gone);
}

/* Node `node`'s members leave every group whose mark is not keep_mark (0: every group). */
void
cnode__pg_drop_node_all(cnode_pg_scope *s, uint32_t node, uint64_t keep_mark, int kind)
{
    PG_FOREACH_GROUP(s, g)
    {
        if (!keep_mark || g->mark != keep_mark)
            cnode__pg_drop_node(s, g, node, kind);
    }
}
