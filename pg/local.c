/* pg: this node's own members (C processes that joined groups): join, leave,
 * exit, each told to every peer scope as pg's join/leave messages. Kept by
 * pid in a hash table; each remembers its groups, newest first, duplicates
 * kept (pg's Local map). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/internal.h"
#include "pg/pg_internal.h"

static uint32_t
local_hash(const cnode_pg_member *m)
{
    return m->num * 2654435761u ^ m->serial;
}

pg_local *
cnode__pg_local_find(cnode_pg_scope *s, const cnode_pg_member *m)
{
    if (!s->lhcap)
        return NULL;
    for (pg_local *l = s->lhash[local_hash(m) & (s->lhcap - 1)]; l; l = l->hnext)
        if (l->pid.node == m->node && l->pid.num == m->num && l->pid.serial == m->serial)
            return l;
    return NULL;
}

/* ---- local members ------------------------------------------------------------------------------------------ */

static void
local_free(cnode_pg_scope *s, pg_local *l)
{
    for (pg_local **pp = &s->lhash[local_hash(&l->pid) & (s->lhcap - 1)]; *pp; pp = &(*pp)->hnext)
        if (*pp == l) {
            *pp = l->hnext;
            s->nlocals--;
            break;
        }
    for (size_t i = 0; i < l->ngroups; i++)
        free(l->gkeys[i]);
    free(l->gkeys);
    free(l->glens);
    free(l);
}

void
cnode__pg_locals_free(cnode_pg_scope *s)
{
    for (size_t i = 0; i < s->lhcap; i++)
        while (s->lhash[i])
            local_free(s, s->lhash[i]);
    free(s->lhash);
    s->lhash = NULL;
    s->lhcap = 0;
}

/* A local member exited: it leaves all its groups, everywhere (pg's DOWN path). */
void
cnode__pg_local_exit(cnode_pg_scope *s, pg_local *l)
{
    for (size_t i = 0; i < l->ngroups; i++)
        cnode__pg_leave(s, l->gkeys[i], l->glens[i], &l->pid, 1);
    if (l->ngroups)
        cnode__pg_broadcast_local(s, 0, &l->pid, NULL, 0, (int)l->ngroups, (const char *const *)l->gkeys, l->glens);
    local_free(s, l);
}

static uint32_t
local_hash_of(const void *e)
{
    return local_hash(&((const pg_local *)e)->pid);
}

int
cnode__pg_local_join(cnode_pg_scope *s, const char *k, size_t kl, const erlang_pid *pid)
{
    cnode_pg_member mp;
    if (!cnode__pg_intern_pid(s, pid, &mp))
        return CNODE_ENOMEM;
    pg_local *l = cnode__pg_local_find(s, &mp);
    if (!l) {
        if (cnode__pg_rehash((void ***)&s->lhash, &s->lhcap, s->nlocals, offsetof(pg_local, hnext), local_hash_of))
            return CNODE_ENOMEM;
        if (!(l = calloc(1, sizeof *l)))
            return CNODE_ENOMEM;
        l->pid = mp;
        erlang_ref mref;
        if (cnode__monitor_locked(s->proc, pid, NULL, NULL, &mref) != 0) {
            free(l);
            return CNODE_ENOPROC;
        }
        cnode__pg_ref_pack(&mref, &l->mref);
        size_t bkt = local_hash(&mp) & (s->lhcap - 1);
        l->hnext = s->lhash[bkt];
        s->lhash[bkt] = l;
        s->nlocals++;
    }
    if (l->ngroups == l->capgroups) {
        size_t nc = l->capgroups ? l->capgroups * 2 : 4;
        char **nk = realloc(l->gkeys, nc * sizeof *nk);
        if (nk)
            l->gkeys = nk;
        size_t *nl = nk ? realloc(l->glens, nc * sizeof *nl) : NULL;
        if (!nk || !nl)
            return CNODE_ENOMEM;
        l->glens = nl;
        l->capgroups = nc;
    }
    char *key = malloc(kl);
    if (!key)
        return CNODE_ENOMEM;
    memcpy(key, k, kl);
    /* pg's join_local: [Group | Groups] */
    memmove(l->gkeys + 1, l->gkeys, l->ngroups * sizeof *l->gkeys);
    memmove(l->glens + 1, l->glens, l->ngroups * sizeof *l->glens);
    l->gkeys[0] = key;
    l->glens[0] = kl;
    l->ngroups++;
    cnode__pg_join(s, k, kl, &mp, 1);
    cnode__pg_broadcast_local(s, 1, &mp, k, kl, 0, NULL, NULL);
    return 0;
}

int
cnode__pg_local_leave(cnode_pg_scope *s, const char *k, size_t kl, const erlang_pid *pid)
{
    cnode_pg_member mp;
    pg_local *l = cnode__pg_intern_pid(s, pid, &mp) ? cnode__pg_local_find(s, &mp) : NULL;
    if (!l)
        return CNODE_ENOTFOUND;
    for (size_t i = 0; i < l->ngroups; i++)
        if (l->glens[i] == kl && !memcmp(l->gkeys[i], k, kl)) {
            free(l->gkeys[i]);
            memmove(l->gkeys + i, l->gkeys + i + 1, (l->ngroups - i - 1) * sizeof *l->gkeys);
            memmove(l->glens + i, l->glens + i + 1, (l->ngroups - i - 1) * sizeof *l->glens);
            l->ngroups--;
            cnode__pg_leave(s, k, kl, &mp, 1);
            const char *keys[1] = {k};
            cnode__pg_broadcast_local(s, 0, &mp, NULL, 0, 1, keys, &kl);
            if (l->ngroups == 0) {
                erlang_ref mref;
                cnode__pg_ref_unpack(s, &l->mref, &mref);
                cnode__demonitor_locked(s->proc, &mref);
                local_free(s, l);
            }
            return 0;
        }
    return CNODE_ENOTFOUND;
}
