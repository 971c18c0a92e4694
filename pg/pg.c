/* pg: the C node as a peer of OTP's pg scope processes (kernel pg.erl,
 * OTP 25), and a mirror of every group that readers see through immutable
 * snapshots.
 *
 * The scope is a system process registered under the scope name; its
 * messages are handled on the loop thread with node->lock held, by the same
 * rules as pg.erl: discover -> sync back, monitor and discover the peer;
 * sync -> replace all knowledge of that peer; join/leave from unknown peers
 * are ignored; DOWN of a peer scope drops its members. The group lists keep
 * pg's order (joins prepend, leave deletes the first copy). Anything that
 * does not have the shape pg sends is logged and ignored: the mirror is left
 * as it was.
 *
 * OTP scopes never discover a hidden node, so this side discovers them: on
 * every new connection to a node that can spawn (OTP, libcnode), and by
 * asking those nodes for erlang:nodes(connected) through rex. ei-based peers
 * (erl_call) are never sent anything unasked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/internal.h"
#include "cnode/terms.h"
#include "pg/pg_internal.h"

/* ---- small helpers ------------------------------------------------------------------------- */

static uint32_t
intern_node(cnode_pg_scope *s, const char *name)
{
    for (uint32_t i = 0; i < s->nnodes; i++)
        if (strcmp(s->nodes[i].name, name) == 0)
            return i;
    if (s->nnodes == s->capnodes) {
        size_t nc = s->capnodes ? s->capnodes * 2 : 8;
        pg_node *nn = realloc(s->nodes, nc * sizeof *nn);
        if (!nn)
            return 0; /* index 0 is always this node: a safe fallback */
        s->nodes = nn;
        s->capnodes = nc;
    }
    memset(&s->nodes[s->nnodes], 0, sizeof s->nodes[s->nnodes]);
    snprintf(s->nodes[s->nnodes].name, sizeof s->nodes[s->nnodes].name, "%s", name);
    s->nodes[s->nnodes].rtt_us = -1;
    return (uint32_t)s->nnodes++;
}

/* The node's entry, added if new. Take the index first: interning may move
 * s->nodes, so &s->nodes[intern_node(...)] could read the old base. The
 * pointer is good until the next node is interned. */
static pg_nodeinfo *
node_info(cnode_pg_scope *s, const char *name)
{
    uint32_t i = intern_node(s, name);
    return &s->nodes[i];
}

static void
to_mpid(cnode_pg_scope *s, const erlang_pid *p, pg_pid *out)
{
    out->node = intern_node(s, p->node);
    out->num = p->num;
    out->serial = p->serial;
    out->creation = p->creation;
}

static void
from_mpid(const cnode_pg_scope *s, const pg_pid *p, erlang_pid *out)
{
    cnode__pid_make(out, s->nodes[p->node].name, p->num, p->serial, p->creation);
}

static int
mpid_eq(const pg_pid *a, const pg_pid *b)
{
    return a->node == b->node && a->num == b->num && a->serial == b->serial && a->creation == b->creation;
}

static int
key_eq(const pg_list *l, const char *k, size_t kl)
{
    return l->klen == kl && memcmp(l->key, k, kl) == 0;
}

/* Find (or create) the list for key in a vector of lists. */
static pg_list *
lists_get(pg_list **v, size_t *n, size_t *cap, const char *k, size_t kl, int create)
{
    for (size_t i = 0; i < *n; i++)
        if (key_eq(&(*v)[i], k, kl))
            return &(*v)[i];
    if (!create)
        return NULL;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        pg_list *nv = realloc(*v, nc * sizeof *nv);
        if (!nv)
            return NULL;
        *v = nv;
        *cap = nc;
    }
    pg_list *l = &(*v)[*n];
    memset(l, 0, sizeof *l);
    if (!(l->key = malloc(kl ? kl : 1)))
        return NULL;
    memcpy(l->key, k, kl);
    l->klen = kl;
    (*n)++;
    return l;
}

static void
lists_drop_empty(pg_list *v, size_t *n)
{
    for (size_t i = 0; i < *n;) {
        if (v[i].n == 0) {
            free(v[i].key);
            free(v[i].v);
            v[i] = v[--*n];
        } else {
            i++;
        }
    }
}

static void
lists_free(pg_list *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].key);
        free(v[i].v);
    }
    free(v);
}

/* Pids ++ List */
static int
list_prepend(pg_list *l, const pg_pid *p, size_t n)
{
    if (l->n + n > l->cap) {
        size_t nc = l->cap ? l->cap : 4;
        while (nc < l->n + n)
            nc *= 2;
        pg_pid *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv)
            return -1;
        l->v = nv;
        l->cap = nc;
    }
    memmove(l->v + n, l->v, l->n * sizeof *l->v);
    memcpy(l->v, p, n * sizeof *p);
    l->n += n;
    return 0;
}

/* lists:delete/2 of each pid in turn: List -- Pids. Returns how many went. */
static size_t
list_subtract(pg_list *l, const pg_pid *p, size_t n)
{
    size_t gone = 0;
    for (size_t k = 0; k < n; k++)
        for (size_t i = 0; i < l->n; i++)
            if (mpid_eq(&l->v[i], &p[k])) {
                memmove(l->v + i, l->v + i + 1, (l->n - i - 1) * sizeof *l->v);
                l->n--;
                gone++;
                break;
            }
    return gone;
}

/* ---- events ------------------------------------------------------------------------------------- */

static void
event(cnode_pg_scope *s, int kind, const char *key, size_t kl, const char *node, const pg_pid *p, size_t n)
{
    s->dirty = 1;
    if (!s->opts.on_change)
        return;
    pg_event *e = calloc(1, sizeof *e + kl + n * sizeof(erlang_pid));
    if (!e)
        return;
    e->scope = s;
    e->kind = kind;
    e->klen = kl;
    e->pids = (erlang_pid *)(void *)(e + 1);
    e->key = (char *)(e->pids + n);
    memcpy(e->key, key, kl);
    e->n = n;
    for (size_t i = 0; i < n; i++)
        from_mpid(s, &p[i], &e->pids[i]);
    snprintf(e->node, sizeof e->node, "%s", node ? node : (n ? s->nodes[p[0].node].name : ""));
    if (s->ev_tail)
        s->ev_tail->next = e;
    else
        s->ev_head = e;
    s->ev_tail = e;
}

/* All of a group gets pids added (pg's Pids ++ All). */
static void
all_join(cnode_pg_scope *s, const char *k, size_t kl, const pg_pid *p, size_t n)
{
    pg_list *l = lists_get(&s->all, &s->nall, &s->capall, k, kl, 1);
    if (!l || list_prepend(l, p, n) != 0) {
        cnode__log(s->node, CNODE_LOG_ERROR, "pg %s: out of memory; mirror incomplete", s->name);
        return;
    }
    /* one event per node, as members of one join come from one node */
    event(s, CNODE_PG_JOIN, k, kl, NULL, p, n);
}

static void
all_leave(cnode_pg_scope *s, const char *k, size_t kl, const pg_pid *p, size_t n, int kind)
{
    pg_list *l = lists_get(&s->all, &s->nall, &s->capall, k, kl, 0);
    if (!l)
        return;
    if (list_subtract(l, p, n))
        event(s, kind, k, kl, NULL, p, n);
    lists_drop_empty(s->all, &s->nall);
}

/* ---- remote peers ------------------------------------------------------------------------------------- */

static pg_remote *
remote_find(cnode_pg_scope *s, const erlang_pid *spid)
{
    for (pg_remote *r = s->remotes; r; r = r->next)
        if (cnode__pid_eq(&r->spid, spid))
            return r;
    return NULL;
}

static pg_remote *
remote_add(cnode_pg_scope *s, const erlang_pid *spid)
{
    pg_remote *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->spid = *spid;
    if (cnode__monitor_locked(s->proc, spid, NULL, NULL, &r->mref) != 0) {
        free(r);
        return NULL;
    }
    r->next = s->remotes;
    s->remotes = r;
    pg_nodeinfo *ni = node_info(s, spid->node);
    ni->scope_seen = 1;
    return r;
}

/* Drop everything r contributed, as pg does on the peer scope's DOWN. */
static void
remote_forget(cnode_pg_scope *s, pg_remote *r, int kind)
{
    for (size_t i = 0; i < r->ngroups; i++)
        all_leave(s, r->groups[i].key, r->groups[i].klen, r->groups[i].v, r->groups[i].n, kind);
    lists_free(r->groups, r->ngroups);
    r->groups = NULL;
    r->ngroups = r->capgroups = 0;
}

static void
remote_remove(cnode_pg_scope *s, pg_remote *r, int kind)
{
    remote_forget(s, r, kind);
    for (pg_remote **pp = &s->remotes; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    free(r);
}

/* ---- decoding what peers send (all shapes checked before anything changes) ---------------------------- */

/* Pid or list of pids. Returns count (>= 0) or -1; fills out (malloc'd). */
static long
decode_pids(cnode_pg_scope *s, const char *b, int *idx, pg_pid **out)
{
    int type, size, n;
    erlang_pid p;
    *out = NULL;
    if (ei_get_type(b, idx, &type, &size) < 0)
        return -1;
    if (type == ERL_PID_EXT || type == ERL_NEW_PID_EXT) {
        if (ei_decode_pid(b, idx, &p) < 0 || !(*out = malloc(sizeof **out)))
            return -1;
        to_mpid(s, &p, *out);
        return 1;
    }
    if (type == ERL_NIL_EXT) {
        ei_decode_list_header(b, idx, &n);
        return 0;
    }
    if (ei_decode_list_header(b, idx, &n) < 0 || n < 0 || !(*out = calloc((size_t)n + 1, sizeof **out)))
        return -1;
    for (int i = 0; i < n; i++) {
        if (ei_get_type(b, idx, &type, &size) < 0 || (type != ERL_PID_EXT && type != ERL_NEW_PID_EXT) ||
            ei_decode_pid(b, idx, &p) < 0) {
            free(*out);
            *out = NULL;
            return -1;
        }
        to_mpid(s, &p, &(*out)[i]);
    }
    if (ei_decode_list_header(b, idx, &size) < 0 || size != 0) {
        free(*out);
        *out = NULL;
        return -1;
    }
    return n;
}

/* A term's extent as a group key. */
static int
term_at(const char *b, int *idx, const char **k, size_t *kl)
{
    int s = *idx;
    if (ei_skip_term(b, idx) < 0)
        return -1;
    *k = b + s;
    *kl = (size_t)(*idx - s);
    return 0;
}

static void
bad(cnode_pg_scope *s, const char *what)
{
    cnode__log(s->node, CNODE_LOG_WARNING, "pg %s: malformed %s ignored; mirror unchanged", s->name, what);
}

static void send_sync(cnode_pg_scope *s, const erlang_pid *to);
static void send_discover_pid(cnode_pg_scope *s, const erlang_pid *to);

/* {'$gen_cast', {sync, Peer, [{Group, [Pid]}]}}, idx after '$gen_cast'. */
static void
on_sync(cnode_pg_scope *s, const char *b, int idx)
{
    int arity, n;
    char a[MAXATOMLEN_UTF8];
    erlang_pid peer;
    if (ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 3 || ei_decode_atom(b, &idx, a) < 0 ||
        strcmp(a, "sync") != 0 || ei_decode_pid(b, &idx, &peer) < 0 || ei_decode_list_header(b, &idx, &n) < 0 || n < 0) {
        bad(s, "sync");
        return;
    }
    /* parse everything first */
    pg_list *groups = calloc((size_t)n + 1, sizeof *groups);
    size_t ng = 0;
    for (int i = 0; groups && i < n; i++) {
        const char *k;
        size_t kl;
        pg_pid *pids;
        long np;
        if (ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 2 || term_at(b, &idx, &k, &kl) != 0 ||
            (np = decode_pids(s, b, &idx, &pids)) < 0) {
            lists_free(groups, ng);
            bad(s, "sync");
            return;
        }
        groups[ng].key = malloc(kl);
        if (groups[ng].key)
            memcpy(groups[ng].key, k, kl);
        groups[ng].klen = kl;
        groups[ng].v = pids;
        groups[ng].n = groups[ng].cap = (size_t)np;
        ng++;
    }
    if (!groups || (n > 0 && (ei_decode_list_header(b, &idx, &arity) < 0 || arity != 0))) {
        lists_free(groups, ng);
        bad(s, "sync");
        return;
    }
    pg_remote *r = remote_find(s, &peer);
    if (r && r->closing_wait) {
        /* it handled our leaves before this discover: they are done there */
        r->closing_wait = 0;
        s->closing_waits--;
        pthread_cond_broadcast(&s->cond);
    }
    if (!r && !(r = remote_add(s, &peer))) {
        lists_free(groups, ng);
        return;
    }
    r->synced = 1;
    pg_nodeinfo *ni = node_info(s, peer.node);
    ni->synced = 1;
    if (ni->has_name_mon) {
        cnode__demonitor_locked(s->proc, &ni->name_mon);
        ni->has_name_mon = 0;
    }
    /* pg's sync_groups: per group, new pids ++ (All -- old pids); groups gone leave */
    for (size_t i = 0; i < ng; i++) {
        pg_list *old = lists_get(&r->groups, &r->ngroups, &r->capgroups, groups[i].key, groups[i].klen, 0);
        if (old && old->n == groups[i].n && !memcmp(old->v, groups[i].v, old->n * sizeof *old->v)) {
            old->n = 0; /* unchanged: mark as taken */
            continue;
        }
        if (old) {
            all_leave(s, old->key, old->klen, old->v, old->n, CNODE_PG_LEAVE);
            old->n = 0;
        }
        if (groups[i].n)
            all_join(s, groups[i].key, groups[i].klen, groups[i].v, groups[i].n);
    }
    for (size_t i = 0; i < r->ngroups; i++)
        if (r->groups[i].n)
            all_leave(s, r->groups[i].key, r->groups[i].klen, r->groups[i].v, r->groups[i].n, CNODE_PG_LEAVE);
    lists_free(r->groups, r->ngroups);
    r->groups = groups;
    r->ngroups = ng;
    r->capgroups = (size_t)n + 1;
    lists_drop_empty(r->groups, &r->ngroups);
    pthread_cond_broadcast(&s->cond);
}

static void
on_join(cnode_pg_scope *s, const char *b, int idx)
{
    erlang_pid peer;
    const char *k;
    size_t kl;
    pg_pid *pids;
    long n;
    if (ei_decode_pid(b, &idx, &peer) < 0 || term_at(b, &idx, &k, &kl) != 0 || (n = decode_pids(s, b, &idx, &pids)) < 0) {
        bad(s, "join");
        return;
    }
    pg_remote *r = remote_find(s, &peer);
    if (r && n > 0) { /* joins from unknown peers are ignored, as pg does */
        pg_list *l = lists_get(&r->groups, &r->ngroups, &r->capgroups, k, kl, 1);
        if (l)
            list_prepend(l, pids, (size_t)n);
        all_join(s, k, kl, pids, (size_t)n);
    }
    free(pids);
}

static void
on_leave(cnode_pg_scope *s, const char *b, int idx)
{
    erlang_pid peer;
    pg_pid *pids;
    long n;
    int ng;
    if (ei_decode_pid(b, &idx, &peer) < 0 || (n = decode_pids(s, b, &idx, &pids)) < 0) {
        bad(s, "leave");
        return;
    }
    int gstart = idx;
    if (ei_decode_list_header(b, &idx, &ng) < 0 || ng < 0) {
        free(pids);
        bad(s, "leave");
        return;
    }
    for (int i = 0; i < ng; i++) {
        const char *k;
        size_t kl;
        if (term_at(b, &idx, &k, &kl) != 0) {
            free(pids);
            bad(s, "leave");
            return;
        }
    }
    pg_remote *r = remote_find(s, &peer);
    idx = gstart;
    ei_decode_list_header(b, &idx, &ng);
    for (int i = 0; r && i < ng; i++) {
        const char *k = NULL;
        size_t kl = 0;
        term_at(b, &idx, &k, &kl);
        pg_list *l = lists_get(&r->groups, &r->ngroups, &r->capgroups, k, kl, 0);
        if (l)
            list_subtract(l, pids, (size_t)n);
        all_leave(s, k, kl, pids, (size_t)n, CNODE_PG_LEAVE);
    }
    if (r)
        lists_drop_empty(r->groups, &r->ngroups);
    free(pids);
}

static void
on_discover(cnode_pg_scope *s, const erlang_pid *peer)
{
    send_sync(s, peer);
    if (!remote_find(s, peer) && remote_add(s, peer))
        send_discover_pid(s, peer);
}

/* {'DOWN', Ref, process, Who, Reason}, idx after 'DOWN'. */
static void
on_down(cnode_pg_scope *s, const char *b, int idx)
{
    erlang_ref ref;
    if (ei_decode_ref(b, &idx, &ref) < 0)
        return;
    for (pg_remote *r = s->remotes; r; r = r->next)
        if (cnode__ref_eq(&r->mref, &ref)) {
            int nodedown = 0;
            char a[MAXATOMLEN_UTF8];
            int i2 = idx;
            if (ei_skip_term(b, &i2) == 0 && ei_skip_term(b, &i2) == 0 && ei_decode_atom(b, &i2, a) == 0)
                nodedown = strcmp(a, "noconnection") == 0;
            remote_remove(s, r, nodedown ? CNODE_PG_NODEDOWN : CNODE_PG_LEAVE);
            return;
        }
    for (pg_local *l = s->locals; l; l = l->next)
        if (cnode__ref_eq(&l->mref, &ref)) {
            cnode__pg_local_exit(s, l);
            return;
        }
    for (size_t i = 0; i < s->nnodes; i++)
        if (s->nodes[i].has_name_mon && cnode__ref_eq(&s->nodes[i].name_mon, &ref)) {
            /* {Scope, Node} does not exist there (noproc) or went away before syncing */
            s->nodes[i].has_name_mon = 0;
            if (!s->nodes[i].synced)
                s->nodes[i].no_scope = 1;
            pthread_cond_broadcast(&s->cond);
            return;
        }
}

static void pg_reply(cnode_pg_scope *s, const char *b, int idx, int arity);

/* The scope process: every message that reaches it. */
static void
scope_msg(cnode_proc *p, const cnode__xpid *from, const char *b, size_t len)
{
    (void)from;
    (void)len;
    cnode_pg_scope *s = p->sys_ud;
    int idx = 0, ver, arity;
    char a[MAXATOMLEN_UTF8];
    if (ei_decode_version(b, &idx, &ver) < 0 || ei_decode_tuple_header(b, &idx, &arity) < 0 || arity < 2) {
        bad(s, "message");
        return;
    }
    int first = idx;
    if (ei_decode_atom(b, &idx, a) == 0) {
        erlang_pid peer;
        if ((arity == 2 || arity == 3) && strcmp(a, "discover") == 0 && ei_decode_pid(b, &idx, &peer) == 0)
            on_discover(s, &peer);
        else if (arity == 2 && strcmp(a, "$gen_cast") == 0)
            on_sync(s, b, idx);
        else if (arity == 4 && strcmp(a, "join") == 0)
            on_join(s, b, idx);
        else if (arity == 4 && strcmp(a, "leave") == 0)
            on_leave(s, b, idx);
        else if (arity == 5 && strcmp(a, "DOWN") == 0)
            on_down(s, b, idx);
        else
            bad(s, "message");
        return;
    }
    idx = first;
    pg_reply(s, b, idx, arity);
}

/* ---- what we send -------------------------------------------------------------------------------------- */

static void
send_to_pid(cnode_pg_scope *s, const erlang_pid *to, ei_x_buff *x)
{
    cnode__send_term(s->node, to, x->buff, (size_t)x->index);
    ei_x_free(x);
}

static void
send_discover_pid(cnode_pg_scope *s, const erlang_pid *to)
{
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 2);
    cnode__x_atom(&x, "discover");
    ei_x_encode_pid(&x, &s->proc->pid);
    send_to_pid(s, to, &x);
}

/* {discover, Self} to {Scope, Node}, with a name monitor that tells us if
 * the scope does not run there. */
void
cnode__pg_discover_node(cnode_pg_scope *s, cnode__peer *peer)
{
    pg_nodeinfo *ni = node_info(s, peer->name);
    if (!ni->has_name_mon && !ni->synced &&
        cnode__monitor_locked(s->proc, NULL, s->name, peer->name, &ni->name_mon) == 0)
        ni->has_name_mon = 1;
    ni->no_scope = 0;
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 2);
    cnode__x_atom(&x, "discover");
    ei_x_encode_pid(&x, &s->proc->pid);
    cnode__reg_send_locked(s->proc, s->name, peer, x.buff, (size_t)x.index);
    ei_x_free(&x);
}

/* Our local members as pg's all_local_pids: [{Group, [Pid]}], duplicates kept. */
static void
x_local_groups(cnode_pg_scope *s, ei_x_buff *x)
{
    size_t ng = 0;
    pg_list *groups = NULL;
    size_t cap = 0;
    for (pg_local *l = s->locals; l; l = l->next)
        for (size_t i = 0; i < l->ngroups; i++) {
            pg_list *g = lists_get(&groups, &ng, &cap, l->gkeys[i], l->glens[i], 1);
            if (g)
                list_prepend(g, &l->pid, 1);
        }
    for (size_t i = 0; i < ng; i++) {
        if (!groups[i].n)
            continue;
        ei_x_encode_list_header(x, 1);
        ei_x_encode_tuple_header(x, 2);
        ei_x_append_buf(x, groups[i].key, (int)groups[i].klen);
        ei_x_encode_list_header(x, (long)groups[i].n);
        for (size_t k = 0; k < groups[i].n; k++) {
            erlang_pid p;
            from_mpid(s, &groups[i].v[k], &p);
            ei_x_encode_pid(x, &p);
        }
        ei_x_encode_empty_list(x);
    }
    ei_x_encode_empty_list(x);
    lists_free(groups, ng);
}

static void
send_sync(cnode_pg_scope *s, const erlang_pid *to)
{
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 2);
    cnode__x_atom(&x, "$gen_cast");
    ei_x_encode_tuple_header(&x, 3);
    cnode__x_atom(&x, "sync");
    ei_x_encode_pid(&x, &s->proc->pid);
    x_local_groups(s, &x);
    send_to_pid(s, to, &x);
}

/* join or leave of one local pid, to every known peer scope */
static void
broadcast_local(cnode_pg_scope *s, int join, const pg_pid *p, const char *k, size_t kl, int nkeys, const char *const *keys,
                const size_t *lens)
{
    for (pg_remote *r = s->remotes; r; r = r->next) {
        erlang_pid pid;
        from_mpid(s, p, &pid);
        ei_x_buff x;
        ei_x_new_with_version(&x);
        ei_x_encode_tuple_header(&x, 4);
        cnode__x_atom(&x, join ? "join" : "leave");
        ei_x_encode_pid(&x, &s->proc->pid);
        if (join) {
            ei_x_append_buf(&x, k, (int)kl);
            ei_x_encode_pid(&x, &pid);
        } else {
            ei_x_encode_pid(&x, &pid);
            ei_x_encode_list_header(&x, nkeys);
            for (int i = 0; i < nkeys; i++)
                ei_x_append_buf(&x, keys[i], (int)lens[i]);
            ei_x_encode_empty_list(&x);
        }
        send_to_pid(s, &r->spid, &x);
    }
}

/* ---- local members ------------------------------------------------------------------------------------------ */

static void
local_free(cnode_pg_scope *s, pg_local *l)
{
    for (pg_local **pp = &s->locals; *pp; pp = &(*pp)->next)
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    for (size_t i = 0; i < l->ngroups; i++)
        free(l->gkeys[i]);
    free(l->gkeys);
    free(l->glens);
    free(l);
}

/* A local member exited: it leaves all its groups, everywhere (pg's DOWN path). */
void
cnode__pg_local_exit(cnode_pg_scope *s, pg_local *l)
{
    for (size_t i = 0; i < l->ngroups; i++)
        all_leave(s, l->gkeys[i], l->glens[i], &l->pid, 1, CNODE_PG_LEAVE);
    if (l->ngroups)
        broadcast_local(s, 0, &l->pid, NULL, 0, (int)l->ngroups, (const char *const *)l->gkeys, l->glens);
    local_free(s, l);
}

static int
local_join(cnode_pg_scope *s, const char *k, size_t kl, const erlang_pid *pid)
{
    pg_pid mp;
    to_mpid(s, pid, &mp);
    pg_local *l;
    for (l = s->locals; l; l = l->next)
        if (mpid_eq(&l->pid, &mp))
            break;
    if (!l) {
        if (!(l = calloc(1, sizeof *l)))
            return CNODE_ENOMEM;
        l->pid = mp;
        if (cnode__monitor_locked(s->proc, pid, NULL, NULL, &l->mref) != 0) {
            free(l);
            return CNODE_ENOPROC;
        }
        l->next = s->locals;
        s->locals = l;
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
    all_join(s, k, kl, &mp, 1);
    broadcast_local(s, 1, &mp, k, kl, 0, NULL, NULL);
    return 0;
}

static int
local_leave(cnode_pg_scope *s, const char *k, size_t kl, const erlang_pid *pid)
{
    pg_pid mp;
    to_mpid(s, pid, &mp);
    for (pg_local *l = s->locals; l; l = l->next) {
        if (!mpid_eq(&l->pid, &mp))
            continue;
        for (size_t i = 0; i < l->ngroups; i++)
            if (l->glens[i] == kl && !memcmp(l->gkeys[i], k, kl)) {
                free(l->gkeys[i]);
                memmove(l->gkeys + i, l->gkeys + i + 1, (l->ngroups - i - 1) * sizeof *l->gkeys);
                memmove(l->glens + i, l->glens + i + 1, (l->ngroups - i - 1) * sizeof *l->glens);
                l->ngroups--;
                all_leave(s, k, kl, &mp, 1, CNODE_PG_LEAVE);
                const char *keys[1] = {k};
                broadcast_local(s, 0, &mp, NULL, 0, 1, keys, &kl);
                if (l->ngroups == 0) {
                    cnode__demonitor_locked(s->proc, &l->mref);
                    local_free(s, l);
                }
                return 0;
            }
        return CNODE_ENOTFOUND;
    }
    return CNODE_ENOTFOUND;
}

/* ---- snapshots ---------------------------------------------------------------------------------------------- */

static int
key_cmp(const void *a, const void *b)
{
    const pg_sgroup *x = a, *y = b;
    if (x->klen != y->klen)
        return x->klen < y->klen ? -1 : 1;
    return memcmp(x->key, y->key, x->klen);
}

/* Build and publish a snapshot of the mirror (node->lock held). */
void
cnode__pg_publish(cnode_pg_scope *s)
{
    size_t members = 0, keybytes = 0;
    for (size_t i = 0; i < s->nall; i++) {
        members += s->all[i].n;
        keybytes += s->all[i].klen;
    }
    size_t sz = sizeof(cnode_pg_snapshot) + s->nall * sizeof(pg_sgroup) + members * sizeof(cnode_pg_member) +
                s->nnodes * sizeof(pg_snode) + keybytes + 16;
    cnode_pg_snapshot *snap = calloc(1, sz);
    if (!snap) {
        cnode__log(s->node, CNODE_LOG_ERROR, "pg %s: out of memory; snapshot not updated", s->name);
        return;
    }
    atomic_init(&snap->refs, 1);
    snap->gen = atomic_load(&s->gen) + 1; /* only this (the I/O) thread publishes */
    snap->groups = (pg_sgroup *)(void *)(snap + 1);
    cnode_pg_member *m = (cnode_pg_member *)(void *)(snap->groups + s->nall);
    snap->nodes = (pg_snode *)(void *)(m + members);
    char *kp = (char *)(snap->nodes + s->nnodes);
    snap->nnodes = s->nnodes;
    for (size_t i = 0; i < s->nnodes; i++) {
        memcpy(snap->nodes[i].name, s->nodes[i].name, sizeof snap->nodes[i].name);
        snap->nodes[i].suspect = s->nodes[i].suspect;
    }
    snap->ngroups = s->nall;
    for (size_t i = 0; i < s->nall; i++) {
        pg_sgroup *g = &snap->groups[i];
        memcpy(kp, s->all[i].key, s->all[i].klen);
        g->key = kp;
        g->klen = s->all[i].klen;
        kp += g->klen;
        g->m = m;
        g->n = s->all[i].n;
        for (size_t k = 0; k < g->n; k++) {
            const pg_pid *p = &s->all[i].v[k];
            m[k].node = snap->nodes[p->node].name;
            m[k].num = p->num;
            m[k].serial = p->serial;
            m[k].creation = p->creation;
        }
        m += g->n;
    }
    qsort(snap->groups, snap->ngroups, sizeof *snap->groups, key_cmp);
    cnode_pg_snapshot *old = atomic_exchange(&s->cur, snap);
    atomic_store(&s->gen, snap->gen);
    /* readers between their load and their reference are counted in s->readers */
    while (atomic_load(&s->readers) != 0)
        ;
    cnode_pg_snapshot_release(old);
    s->dirty = 0;
}

cnode_pg_snapshot *
cnode_pg_snapshot_get(cnode_pg_scope *s)
{
    if (!s)
        return NULL;
    atomic_fetch_add(&s->readers, 1);
    cnode_pg_snapshot *snap = atomic_load(&s->cur);
    atomic_fetch_add(&snap->refs, 1);
    atomic_fetch_sub(&s->readers, 1);
    return snap;
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

void
cnode_pg_snapshot_release(cnode_pg_snapshot *snap)
{
    if (snap && atomic_fetch_sub(&snap->refs, 1) == 1)
        free(snap);
}

const cnode_pg_member *
cnode_pg_members_term(const cnode_pg_snapshot *snap, const char *group, size_t glen, size_t *n)
{
    *n = 0;
    if (!snap)
        return NULL;
    pg_sgroup key = {.key = group, .klen = glen};
    const pg_sgroup *g = bsearch(&key, snap->groups, snap->ngroups, sizeof *snap->groups, key_cmp);
    if (!g)
        return NULL;
    *n = g->n;
    return g->m;
}

const cnode_pg_member *
cnode_pg_members(const cnode_pg_snapshot *snap, const char *group, size_t *n)
{
    char k[MAXATOMLEN + 8];
    size_t gl = strlen(group);
    *n = 0;
    if (gl >= 256)
        return NULL;
    return cnode_pg_members_term(snap, k, cnode__enc_atom(k, group), n);
}

size_t
cnode_pg_local_members(const cnode_pg_snapshot *snap, const char *group, cnode_pg_member *out, size_t cap)
{
    size_t n, k = 0;
    const cnode_pg_member *m = cnode_pg_members(snap, group, &n);
    for (size_t i = 0; i < n; i++)
        if (m[i].node == snap->nodes[0].name) { /* node 0 is this node */
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
    *len = snap->groups[i].klen;
    return snap->groups[i].key;
}

int
cnode_pg_node_suspect(const cnode_pg_snapshot *snap, const char *node)
{
    for (size_t i = 0; snap && i < snap->nnodes; i++)
        if (strcmp(snap->nodes[i].name, node) == 0)
            return snap->nodes[i].suspect;
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

void
cnode_pg_member_pid(const cnode_pg_member *m, erlang_pid *out)
{
    cnode__pid_make(out, m->node, m->num, m->serial, m->creation);
}

/* ---- discovery, probes, callbacks ------------------------------------------------------------------------------- */

static void
rex_ask(cnode_pg_scope *s, cnode__peer *peer, const char *mod, const char *fun, int nodes_arg, erlang_ref *tag)
{
    cnode_make_ref(s->node, tag);
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 3);
    cnode__x_atom(&x, "$gen_call");
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_pid(&x, &s->proc->pid);
    ei_x_encode_ref(&x, tag);
    if (nodes_arg) {
        ei_x_encode_tuple_header(&x, 5);
        cnode__x_atom(&x, "call");
        cnode__x_atom(&x, mod);
        cnode__x_atom(&x, fun);
        ei_x_encode_list_header(&x, 1);
        cnode__x_atom(&x, "connected");
        ei_x_encode_empty_list(&x);
        ei_x_encode_pid(&x, &s->node->sys_gl->pid);
        cnode__reg_send_locked(s->proc, "rex", peer, x.buff, (size_t)x.index);
    } else {
        ei_x_encode_tuple_header(&x, 2);
        cnode__x_atom(&x, "is_auth");
        cnode__x_atom(&x, s->node->name);
        cnode__reg_send_locked(s->proc, "net_kernel", peer, x.buff, (size_t)x.index);
    }
    ei_x_free(&x);
}

static void
connect_node(cnode_pg_scope *s, const char *name)
{
    cnode__peer *peer = cnode__peer_get(s->node, name, 1);
    if (peer && !peer->up && !peer->dialling) {
        node_info(s, name)->connecting = 1;
        cnode__enqueue_req(s->node, REQ_CONNECT, peer);
    }
}

/* {Tag, Reply}: answers to our nodes(connected) requests and probes. */
static void
pg_reply(cnode_pg_scope *s, const char *b, int idx, int arity)
{
    erlang_ref tag;
    if (arity != 2 || ei_decode_ref(b, &idx, &tag) < 0) {
        bad(s, "message");
        return;
    }
    for (size_t i = 0; i < s->nnodes; i++) {
        pg_nodeinfo *ni = &s->nodes[i];
        if (ni->probe_out && cnode__ref_eq(&ni->probe_tag, &tag)) {
            ni->probe_out = 0;
            ni->rtt_us = (long)((cnode__now_ms() - ni->probe_sent_ms) * 1000);
            ni->last_answer_ms = cnode__now_ms();
            if (ni->suspect) {
                ni->suspect = 0;
                event(s, CNODE_PG_CLEAR, "", 0, ni->name, NULL, 0);
            }
            return;
        }
        if (ni->nodes_out && cnode__ref_eq(&ni->nodes_tag, &tag)) {
            ni->nodes_out = 0;
            ni->nodes_answered = 1;
            int n, type, size;
            if (ei_get_type(b, &idx, &type, &size) == 0 && type == ERL_LIST_EXT && ei_decode_list_header(b, &idx, &n) == 0)
                for (int k = 0; k < n; k++) {
                    char a[MAXATOMLEN_UTF8];
                    if (ei_decode_atom(b, &idx, a) < 0)
                        break;
                    if (!cnode__is_local(s->node, a) && strchr(a, '@')) {
                        size_t before = s->nnodes;
                        pg_nodeinfo *nj = node_info(s, a);
                        if (s->nnodes != before || (!nj->synced && !nj->no_scope))
                            connect_node(s, a);
                    }
                }
            pthread_cond_broadcast(&s->cond);
            return;
        }
    }
}

/* Every housekeeping turn (node->lock held): probes, cluster watch. */
static void
pg_tick(cnode_node *node, void *ud)
{
    (void)ud;
    int64_t now = cnode__now_ms();
    for (cnode_pg_scope *s = node->pg; s; s = s->next) {
        int watch = now - s->last_watch_ms >= (int64_t)s->opts.discover_interval_ms;
        if (watch) {
            s->last_watch_ms = now;
            /* the nodes we were told to join through: redial them while they are down */
            for (size_t i = 0; i < s->nnodes; i++)
                if (s->nodes[i].seed && !s->nodes[i].connecting) {
                    cnode__peer *sp = cnode__peer_get(node, s->nodes[i].name, 1);
                    if (sp && !sp->up && !sp->dialling)
                        connect_node(s, s->nodes[i].name);
                }
        }
        for (cnode__peer *peer = node->peers; peer; peer = peer->next) {
            if (!peer->up || !(peer->flags & CNODE__DFLAG_SPAWN))
                continue;
            pg_nodeinfo *ni = node_info(s, peer->name);
            if (ni->probe_out) {
                if (!ni->suspect && now - ni->probe_sent_ms > (int64_t)s->opts.probe_timeout_ms) {
                    ni->suspect = 1;
                    event(s, CNODE_PG_SUSPECT, "", 0, ni->name, NULL, 0);
                }
            } else if (now - ni->probe_sent_ms >= (int64_t)s->opts.probe_interval_ms) {
                rex_ask(s, peer, NULL, NULL, 0, &ni->probe_tag);
                ni->probe_out = 1;
                ni->probe_sent_ms = now;
            }
            if (watch && !ni->nodes_out) {
                rex_ask(s, peer, "erlang", "nodes", 1, &ni->nodes_tag);
                ni->nodes_out = 1;
            }
        }
        if (s->dirty)
            cnode__pg_publish(s);
    }
}

static void
pg_peer(cnode_node *node, cnode__peer *peer, int up, void *ud)
{
    (void)ud;
    for (cnode_pg_scope *s = node->pg; s; s = s->next) {
        pg_nodeinfo *ni = node_info(s, peer->name);
        ni->connecting = 0;
        if (up == 1) {
            if (peer->flags & CNODE__DFLAG_SPAWN) {
                cnode__pg_discover_node(s, peer);
                /* its node list now, not at the next watch tick: a discovery round may be waiting */
                if (!ni->nodes_out) {
                    rex_ask(s, peer, "erlang", "nodes", 1, &ni->nodes_tag);
                    ni->nodes_out = 1;
                }
            } else
                ni->no_scope = 1; /* an ei-based client: never sent anything unasked */
        } else {
            /* the scope's DOWN (noconnection) already removed its members; reset discovery state */
            ni->synced = ni->probe_out = ni->nodes_out = ni->has_name_mon = 0;
            ni->nodes_answered = 0;
            if (up == -1)
                ni->no_scope = 1;
            if (ni->suspect) {
                ni->suspect = 0;
                s->dirty = 1;
            }
        }
        if (s->dirty)
            cnode__pg_publish(s);
        pthread_cond_broadcast(&s->cond);
    }
}

/* After the loop lets go of node->lock: publish and run callbacks. */
static void
pg_post(cnode_node *node, void *ud)
{
    (void)ud;
    pthread_mutex_lock(&node->lock);
    pg_event *all = NULL, **tail = &all;
    for (cnode_pg_scope *s = node->pg; s; s = s->next) {
        if (s->dirty)
            cnode__pg_publish(s);
        if (s->ev_head) {
            *tail = s->ev_head;
            tail = &s->ev_tail->next;
            s->ev_head = s->ev_tail = NULL;
        }
    }
    pthread_mutex_unlock(&node->lock);
    while (all) {
        pg_event *nx = all->next;
        cnode_pg_scope *s = all->scope;
        s->opts.on_change(s, all->kind, all->key, all->klen, all->node, all->pids, all->n, s->opts.user_data);
        free(all);
        all = nx;
    }
}

#define CLOSE_SYNC_MS 1000

/* Closing the node: every local member leaves every group, and the peers are
 * told, while connections still work (the seed's "deregister first"). Then a
 * discover to every peer scope: pg answers it with a sync once it has handled
 * what came before from us, so when every sync is in (or CLOSE_SYNC_MS has
 * passed) the peers have seen the leaves before they see us go down. */
static void
pg_leave_all(cnode_node *node)
{
    pthread_mutex_lock(&node->lock);
    int waits = 0;
    for (cnode_pg_scope *s = node->pg; s; s = s->next) {
        while (s->locals)
            cnode__pg_local_exit(s, s->locals);
        if (s->dirty)
            cnode__pg_publish(s);
        for (pg_remote *r = s->remotes; r; r = r->next) {
            cnode__peer *peer = cnode__peer_get(node, r->spid.node, 0);
            if (!peer || !peer->up || r->closing_wait)
                continue;
            send_discover_pid(s, &r->spid);
            r->closing_wait = 1;
            s->closing_waits++;
            waits++;
        }
    }
    struct timespec dl;
    cnode__deadline_after(&dl, CLOSE_SYNC_MS);
    while (waits && !cnode__past(&dl)) {
        waits = 0;
        cnode_pg_scope *w = NULL;
        for (cnode_pg_scope *s = node->pg; s; s = s->next)
            if (s->closing_waits) {
                waits += s->closing_waits;
                w = s;
            }
        if (!w)
            break;
        if (node->has_io_thread) {
            cnode__cond_wait_until(&w->cond, &node->lock, &dl);
        } else {
            pthread_mutex_unlock(&node->lock);
            cnode_poll(node, 10); /* application-driven: this thread runs the loop */
            pthread_mutex_lock(&node->lock);
        }
    }
    int sent = 0;
    for (cnode_pg_scope *s = node->pg; s; s = s->next)
        for (pg_remote *r = s->remotes; r; r = r->next)
            sent += r->closing_wait;
    pthread_mutex_unlock(&node->lock);
    if (sent)
        cnode__log(node, CNODE_LOG_WARNING, "closing: %d peer scope(s) did not confirm our leaves within %d ms", sent,
                   CLOSE_SYNC_MS);
    else
        cnode__log(node, CNODE_LOG_DEBUG, "closing: every peer scope has handled our leaves");
}

/* ---- public --------------------------------------------------------------------------------------------------------- */

int
cnode_pg_scope_start(cnode_node *node, const char *name, const cnode_pg_opts *opts, cnode_pg_scope **out)
{
    if (!node || !name || !*name || strlen(name) >= MAXATOMLEN || !out)
        return CNODE_EINVAL;
    cnode_pg_scope *s = calloc(1, sizeof *s);
    if (!s)
        return CNODE_ENOMEM;
    s->node = node;
    snprintf(s->name, sizeof s->name, "%s", name);
    if (opts)
        s->opts = *opts;
    if (!s->opts.discover_interval_ms)
        s->opts.discover_interval_ms = 1000;
    if (!s->opts.probe_interval_ms)
        s->opts.probe_interval_ms = 200;
    if (!s->opts.probe_timeout_ms)
        s->opts.probe_timeout_ms = 1000;
    cnode__cond_init(&s->cond);
    int expected = 0;
    if (atomic_compare_exchange_strong(&node->pg_hooks, &expected, 1)) {
        cnode__add_tick_hook(node, pg_tick, NULL);
        cnode__add_post_hook(node, pg_post, NULL);
        cnode__add_peer_hook(node, pg_peer, NULL);
        cnode__add_close_hook(node, cnode__pg_free_all);
        cnode__add_pre_close_hook(node, pg_leave_all);
    }
    pthread_mutex_lock(&node->lock);
    for (cnode_pg_scope *o = node->pg; o; o = o->next)
        if (strcmp(o->name, name) == 0) {
            pthread_mutex_unlock(&node->lock);
            pthread_cond_destroy(&s->cond);
            free(s);
            return CNODE_EEXIST;
        }
    int rc = cnode__proc_new_locked(node, name, 1, &s->proc);
    if (rc) {
        pthread_mutex_unlock(&node->lock);
        pthread_cond_destroy(&s->cond);
        free(s);
        return rc;
    }
    s->proc->sys_ud = s;
    s->proc->sys_handler = scope_msg;
    intern_node(s, node->name); /* index 0: this node */
    s->next = node->pg;
    node->pg = s;
    cnode__pg_publish(s);
    /* discover through every connection we already have */
    for (cnode__peer *peer = node->peers; peer; peer = peer->next)
        if (peer->up && (peer->flags & CNODE__DFLAG_SPAWN))
            cnode__pg_discover_node(s, peer);
    pthread_mutex_unlock(&node->lock);
    *out = s;
    return 0;
}

int
cnode_pg_connect(cnode_pg_scope *s, const char *node)
{
    if (!s || !node || !strchr(node, '@') || strlen(node) >= CNODE__NAME_MAX)
        return CNODE_EINVAL;
    pthread_mutex_lock(&s->node->lock);
    node_info(s, node)->seed = 1;
    pthread_mutex_unlock(&s->node->lock);
    return cnode_ping(s->node, node, 5000, NULL);
}

/* Discovery is done when every connected spawn-capable node has synced (or
 * has no such scope) and has told us its node list, and every node it listed
 * has been tried. */
static int
round_done(cnode_pg_scope *s)
{
    for (size_t i = 0; i < s->nnodes; i++)
        if (s->nodes[i].connecting) {
            cnode__peer *p = cnode__peer_get(s->node, s->nodes[i].name, 0);
            if (!p || p->up)
                s->nodes[i].connecting = 0; /* connected meanwhile, or forgotten */
            else
                return 0;
        }
    for (cnode__peer *peer = s->node->peers; peer; peer = peer->next) {
        if (peer->dialling)
            return 0;
        if (!peer->up || !(peer->flags & CNODE__DFLAG_SPAWN))
            continue;
        pg_nodeinfo *ni = node_info(s, peer->name);
        if (!ni->synced && !ni->no_scope)
            return 0;
        if (!ni->nodes_answered)
            return 0;
    }
    return 1;
}

int
cnode_pg_wait_ready(cnode_pg_scope *s, unsigned timeout_ms)
{
    if (!s)
        return CNODE_EINVAL;
    cnode_node *node = s->node;
    struct timespec dl;
    cnode__deadline_after(&dl, timeout_ms ? timeout_ms : 3000);
    pthread_mutex_lock(&node->lock);
    /* ask for node lists now rather than at the next watch tick */
    for (cnode__peer *peer = node->peers; peer; peer = peer->next)
        if (peer->up && (peer->flags & CNODE__DFLAG_SPAWN)) {
            pg_nodeinfo *ni = node_info(s, peer->name);
            if (!ni->nodes_out && !ni->nodes_answered) {
                rex_ask(s, peer, "erlang", "nodes", 1, &ni->nodes_tag);
                ni->nodes_out = 1;
            }
        }
    int rc = 0;
    while (!round_done(s)) {
        if (cnode__past(&dl)) {
            rc = CNODE_ETIMEOUT;
            break;
        }
        if (!node->has_io_thread) {
            pthread_mutex_unlock(&node->lock);
            cnode_poll(node, 20);
            pthread_mutex_lock(&node->lock);
        } else {
            struct timespec step;
            cnode__deadline_after(&step, 20);
            cnode__cond_wait_until(&s->cond, &node->lock, cnode__past(&dl) ? &dl : &step);
        }
    }
    if (s->dirty)
        cnode__pg_publish(s);
    pthread_mutex_unlock(&node->lock);
    return rc;
}

static int
join_leave(cnode_pg_scope *s, const char *group, const cnode_proc *proc, int join)
{
    if (!s || !group || !proc || strlen(group) >= MAXATOMLEN)
        return CNODE_EINVAL;
    char k[MAXATOMLEN + 8];
    size_t kl = cnode__enc_atom(k, group);
    pthread_mutex_lock(&s->node->lock);
    int rc = join ? local_join(s, k, kl, &proc->pid) : local_leave(s, k, kl, &proc->pid);
    if (s->dirty)
        cnode__pg_publish(s);
    pthread_mutex_unlock(&s->node->lock);
    if (s->opts.on_change)
        cnode__wake(s->node); /* the loop runs the callbacks */
    return rc;
}

int
cnode_pg_join(cnode_pg_scope *s, const char *group, const cnode_proc *proc)
{
    return join_leave(s, group, proc, 1);
}

int
cnode_pg_leave(cnode_pg_scope *s, const char *group, const cnode_proc *proc)
{
    return join_leave(s, group, proc, 0);
}

long
cnode_pg_probe_rtt_us(cnode_pg_scope *s, const char *node)
{
    long rtt = -1;
    if (!s || !node)
        return -1;
    pthread_mutex_lock(&s->node->lock);
    for (size_t i = 0; i < s->nnodes; i++)
        if (strcmp(s->nodes[i].name, node) == 0)
            rtt = s->nodes[i].rtt_us;
    pthread_mutex_unlock(&s->node->lock);
    return rtt;
}

cnode_node *
cnode_pg_scope_node(const cnode_pg_scope *s)
{
    return s ? s->node : NULL;
}

const char *
cnode_pg_scope_name(const cnode_pg_scope *s)
{
    return s ? s->name : "";
}

/* Node close: free every scope (the loop has stopped). */
void
cnode__pg_free_all(cnode_node *node)
{
    cnode_pg_scope *s = node->pg;
    while (s) {
        cnode_pg_scope *nx = s->next;
        while (s->remotes) {
            pg_remote *r = s->remotes;
            s->remotes = r->next;
            lists_free(r->groups, r->ngroups);
            free(r);
        }
        while (s->locals) {
            pg_local *l = s->locals;
            s->locals = l->next;
            for (size_t i = 0; i < l->ngroups; i++)
                free(l->gkeys[i]);
            free(l->gkeys);
            free(l->glens);
            free(l);
        }
        pg_event *e = s->ev_head;
        while (e) {
            pg_event *en = e->next;
            free(e);
            e = en;
        }
        lists_free(s->all, s->nall);
        cnode_pg_snapshot_release(atomic_load(&s->cur));
        free(s->nodes);
        pthread_cond_destroy(&s->cond);
        free(s);
        s = nx;
    }
    node->pg = NULL;
}
