/* pg snapshots: publication, reclamation and the readers' side.
 *
 * Reclamation: a reader announces itself in readers[epoch & 1] for the few
 * instructions between loading `cur` and taking its reference (it re-reads
 * the epoch after announcing and retries if it moved). The publisher never
 * waits and never spins: it advances the epoch whenever the other parity's
 * counter is zero, and drops the scope's reference to a replaced snapshot
 * two epochs after the replacement (every reader that could have loaded it
 * without a reference has left by then). Readers only decrement; freed
 * snapshots and blocks are swept on the next publication or housekeeping
 * turn (node->lock held, no waiting): a snapshot once its references are
 * gone, a block once no unfreed snapshot older than its replacement is left. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/internal.h"
#include "cnode/terms.h"
#include "pg/pg_internal.h"

#define TRIM_BYTES (256 * 1024)

/* ---- publication and reclamation ------------------------------------------------------------------------------- */

static int
block_cmp(const void *a, const void *b)
{
    const pg_block *x = *(pg_block *const *)a, *y = *(pg_block *const *)b;
    if (x->klen != y->klen)
        return x->klen < y->klen ? -1 : 1;
    return memcmp(x->key, y->key, x->klen);
}

static void
retire_block(cnode_pg_scope *s, pg_block *b, uint64_t gen)
{
    b->dead_gen = gen;
    b->rnext = NULL;
    if (s->retired_tail)
        s->retired_tail->rnext = b;
    else
        s->retired = b;
    s->retired_tail = b;
}

static void
unlink_group(cnode_pg_scope *s, pg_group *g)
{
    for (pg_group **pp = &s->ghash[g->hash & (s->ghcap - 1)]; *pp; pp = &(*pp)->hnext)
        if (*pp == g) {
            *pp = g->hnext;
            break;
        }
    s->ngroups--;
    s->groups_changed = 1;
}

/* Build and publish a snapshot (node->lock held). Only the groups that changed get new blocks. */
void
cnode__pg_publish(cnode_pg_scope *s)
{
    cnode_pg_snapshot *prev = atomic_load(&s->cur);
    uint64_t gen = atomic_load(&s->gen) + 1;
    /* the groups after this publication: size known once empty drafts are gone */
    for (pg_group **pp = &s->dirty_groups; *pp;) {
        pg_group *g = *pp;
        if (g->draft && g->draft->n == 0) {
            *pp = g->dnext;
            if (g->pub)
                retire_block(s, g->pub, gen);
            free(g->draft);
            unlink_group(s, g);
            free(g);
            continue;
        }
        pp = &g->dnext;
    }
    size_t ng = s->ngroups, nn = s->nnodes;
    cnode_pg_snapshot *snap = calloc(1, sizeof *snap + ng * sizeof(pg_block *) + nn * sizeof(const char *) + nn);
    if (!snap) {
        cnode__log(s->node, CNODE_LOG_ERROR, "pg %s: out of memory; snapshot not updated", s->name);
        return;
    }
    atomic_init(&snap->refs, 1);
    snap->gen = gen;
    snap->groups = (pg_block **)(void *)(snap + 1);
    snap->names = (const char **)(snap->groups + ng);
    snap->suspect = (unsigned char *)(snap->names + nn);
    snap->ngroups = ng;
    snap->nnodes = nn;
    snap->self = s->self->name;
    for (size_t i = 0; i < nn; i++) {
        snap->names[i] = s->nodes[i]->name;
        snap->suspect[i] = (unsigned char)s->nodes[i]->suspect;
    }
    /* drafts become blocks; the blocks they replace retire */
    for (pg_group *g = s->dirty_groups; g; g = g->dnext) {
        if (!g->draft)
            continue;
        pg_block *d = g->draft;
        if (d->cap > d->n) { /* published blocks never grow: no slack (shrinking in place is cheap) */
            pg_block *t = cnode__pg_block_resize(d, d->n);
            if (t)
                d = t;
        }
        if (g->pub)
            retire_block(s, g->pub, gen);
        g->pub = d;
        g->draft = NULL;
    }
    if (s->groups_changed || !prev) {
        size_t k = 0;
        PG_FOREACH_GROUP(s, g)
        {
            snap->groups[k++] = g->pub;
        }
        qsort(snap->groups, ng, sizeof *snap->groups, block_cmp);
    } else {
        /* the same groups as before: the last spine with the changed groups' blocks replaced */
        memcpy(snap->groups, prev->groups, ng * sizeof *snap->groups);
        for (pg_group *g = s->dirty_groups; g; g = g->dnext) {
            pg_block **at = bsearch(&g->pub, snap->groups, ng, sizeof *snap->groups, block_cmp);
            if (at)
                *at = g->pub;
        }
    }
    while (s->dirty_groups) {
        pg_group *g = s->dirty_groups;
        s->dirty_groups = g->dnext;
        g->dirty = 0;
        g->dnext = NULL;
    }
    s->groups_changed = 0;
    if (s->snaps_tail)
        s->snaps_tail->next = snap;
    else
        s->snaps = snap;
    s->snaps_tail = snap;
    cnode_pg_snapshot *old = atomic_exchange(&s->cur, snap);
    atomic_store(&s->gen, gen);
    if (old) {
        old->epoch = atomic_load(&s->epoch);
        old->retired = 1;
    }
    s->dirty = 0;
    cnode__pg_reclaim(s);
}

/* Never waits: frees what no reader can reach any more, the rest on a later turn (node->lock held). */
void
cnode__pg_reclaim(cnode_pg_scope *s)
{
    for (int i = 0; i < 2; i++) {
        uint64_t e = atomic_load(&s->epoch);
        if (atomic_load(&s->readers[(e + 1) & 1]) != 0)
            break;
        atomic_store(&s->epoch, e + 1);
    }
    uint64_t e = atomic_load(&s->epoch);
    cnode_pg_snapshot *prev = NULL;
    for (cnode_pg_snapshot *sn = s->snaps, *nx; sn; sn = nx) {
        nx = sn->next;
        if (sn->retired && !sn->dropped && e >= sn->epoch + 2) {
            sn->dropped = 1;
            atomic_fetch_sub(&sn->refs, 1);
        }
        if (sn->dropped && atomic_load(&sn->refs) == 0) {
            if (prev)
                prev->next = nx;
            else
                s->snaps = nx;
            if (s->snaps_tail == sn)
                s->snaps_tail = prev;
            free(sn);
            continue;
        }
        prev = sn;
    }
    uint64_t oldest = s->snaps ? s->snaps->gen : UINT64_MAX;
    while (s->retired && s->retired->dead_gen <= oldest) {
        pg_block *b = s->retired;
        s->retired = b->rnext;
        if (!s->retired)
            s->retired_tail = NULL;
        s->freed_bytes += sizeof *b + b->klen + (size_t)b->cap * sizeof(cnode_pg_member);
        free(b);
    }
}

/* Copy-on-write leaves freed blocks all over the heap: once enough has been freed, give the whole free pages back
 * (at most once a housekeeping turn, node->lock held). */
void
cnode__pg_trim(cnode_pg_scope *s)
{
    if (s->freed_bytes < TRIM_BYTES)
        return;
    s->freed_bytes = 0;
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

/* Scope freed (the loop has stopped): blocks, groups, snapshots, nodes. */
void
cnode__pg_mirror_free(cnode_pg_scope *s)
{
    for (size_t i = 0; i < s->ghcap; i++)
        for (pg_group *g = s->ghash[i], *nx; g; g = nx) {
            nx = g->hnext;
            free(g->pub);
            free(g->draft);
            free(g);
        }
    free(s->ghash);
    while (s->retired) {
        pg_block *b = s->retired;
        s->retired = b->rnext;
        free(b);
    }
    while (s->snaps) {
        cnode_pg_snapshot *sn = s->snaps;
        s->snaps = sn->next;
        free(sn);
    }
    for (size_t i = 0; i < s->nnodes; i++) {
        pg_node *n = s->nodes[i];
        while (n->pnodes) {
            pg_pnode *pn = n->pnodes;
            n->pnodes = pn->next;
            free(pn);
        }
        free(n->remote);
        free(n);
    }
    free(s->nodes);
    free(s->nhash);
    pg_event *e = s->ev_head;
    while (e) {
        pg_event *en = e->next;
        free(e);
        e = en;
    }
}

/* ---- readers ---------------------------------------------------------------------------------------------------- */

cnode_pg_snapshot *
cnode_pg_snapshot_get(cnode_pg_scope *s)
{
    if (!s)
        return NULL;
    uint64_t e;
    for (;;) {
        e = atomic_load(&s->epoch);
        atomic_fetch_add(&s->readers[e & 1], 1);
        if (atomic_load(&s->epoch) == e)
            break;
        atomic_fetch_sub(&s->readers[e & 1], 1);
    }
    cnode_pg_snapshot *snap = atomic_load(&s->cur);
    atomic_fetch_add(&snap->refs, 1);
    atomic_fetch_sub(&s->readers[e & 1], 1);
    return snap;
}

void
cnode_pg_snapshot_release(cnode_pg_snapshot *snap)
{
    if (snap)
        atomic_fetch_sub(&snap->refs, 1); /* the publisher frees it on a later turn */
}

uint64_t
cnode_pg_snapshot_generation(const cnode_pg_snapshot *snap)
{
    return snap ? snap->gen : 0;
}

uint64_t
cnode_pg_generation(cnode_pg_scope *s)
{
    return s ? atomic_load_explicit(&s->gen, memory_order_acquire) : 0;
}

static const pg_block *
snap_group(const cnode_pg_snapshot *snap, const char *group, size_t glen)
{
    if (!snap || glen > UINT32_MAX)
        return NULL;
    size_t lo = 0, hi = snap->ngroups;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const pg_block *b = snap->groups[mid];
        int c = b->klen != glen ? (b->klen < glen ? -1 : 1) : memcmp(b->key, group, glen);
        if (c == 0)
            return b;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const cnode_pg_member *
cnode_pg_members_term(const cnode_pg_snapshot *snap, const char *group, size_t glen, size_t *n)
{
    const pg_block *b = snap_group(snap, group, glen);
    *n = b ? b->n : 0;
    return b ? b->m : NULL;
}

const cnode_pg_member *
cnode_pg_members(const cnode_pg_snapshot *snap, const char *group, size_t *n)
{
    char k[MAXATOMLEN + 8];
    *n = 0;
    if (!group || strlen(group) >= MAXATOMLEN)
        return NULL;
    return cnode_pg_members_term(snap, k, cnode__enc_atom(k, group), n);
}

size_t
cnode_pg_local_members(const cnode_pg_snapshot *snap, const char *group, cnode_pg_member *out, size_t cap)
{
    size_t n, k = 0;
    const cnode_pg_member *m = cnode_pg_members(snap, group, &n);
    for (size_t i = 0; i < n; i++)
        if (m[i].node == snap->self) {
            if (k < cap)
                out[k] = m[i];
            k++;
        }
    return k;
}

size_t
cnode_pg_group_count(const cnode_pg_snapshot *snap)
{
    return snap ? snap->ngroups : 0;
}

const char *
cnode_pg_group_at(const cnode_pg_snapshot *snap, size_t i, size_t *len)
{
    if (!snap || i >= snap->ngroups)
        return NULL;
    *len = snap->groups[i]->klen;
    return snap->groups[i]->key;
}

int
cnode_pg_node_suspect(const cnode_pg_snapshot *snap, const char *node)
{
    for (size_t i = 0; snap && node && i < snap->nnodes; i++)
        if (strcmp(snap->names[i], node) == 0)
            return snap->suspect[i];
    return 0;
}

size_t
cnode_pg_node_count(const cnode_pg_snapshot *snap, const char *group, const char *node)
{
    size_t n, k = 0;
    const cnode_pg_member *m = cnode_pg_members(snap, group, &n);
    for (size_t i = 0; i < n; i++)
        k += strcmp(m[i].node, node) == 0;
    return k;
}
