/* pg protocol: the C node as a peer of OTP's pg scope processes (kernel
 * pg.erl, OTP 25), and this node's own members.
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
 * A peer scope's members are the mirror's members of its node: pg scopes
 * announce their local pids only, so a pid of another node in a peer's join or
 * sync is ignored (logged) rather than stored a second time per peer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/internal.h"
#include "cnode/terms.h"
#include "pg/pg_internal.h"

void
cnode__pg_bad(cnode_pg_scope *s, const char *what)
{
    cnode__log(s->node, CNODE_LOG_WARNING, "pg %s: malformed %s ignored; mirror unchanged", s->name, what);
}

/* ---- remote peers ---------------------------------------------------------------------------------------------- */

static pg_remote *
remote_find(cnode_pg_scope *s, const erlang_pid *spid)
{
    pg_node *n = cnode__pg_node(s, spid->node, 0);
    cnode_pg_member m;
    if (!n || !n->remote || !cnode__pg_intern_pid(s, spid, &m))
        return NULL;
    const cnode_pg_member *r = &n->remote->spid;
    return r->node == m.node && r->num == m.num && r->serial == m.serial ? n->remote : NULL; /* node: name and creation */
}

static void remote_remove(cnode_pg_scope *s, pg_remote *r, int kind);

static pg_remote *
remote_add(cnode_pg_scope *s, const erlang_pid *spid)
{
    pg_node *n = cnode__pg_node(s, spid->node, 1);
    if (!n || n->ix == 0)
        return NULL;
    if (n->remote) /* a new scope process on that node: the old one's members are gone */
        remote_remove(s, n->remote, CNODE_PG_LEAVE);
    pg_remote *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->node = n->ix;
    erlang_ref mref;
    if (!cnode__pg_intern_pid(s, spid, &r->spid) || cnode__monitor_locked(s->proc, spid, NULL, NULL, &mref) != 0) {
        free(r);
        return NULL;
    }
    cnode__pg_ref_pack(&mref, &r->mref);
    r->next = s->remotes;
    s->remotes = r;
    n->remote = r;
    n->scope_seen = 1;
    return r;
}

static void
remote_remove(cnode_pg_scope *s, pg_remote *r, int kind)
{
    cnode__pg_drop_node_all(s, r->node, 0, kind);
    for (pg_remote **pp = &s->remotes; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    if (r->closing_wait) {
        s->closing_waits--;
        pthread_cond_broadcast(&s->cond);
    }
    s->nodes[r->node]->remote = NULL;
    free(r);
}

/* ---- decoding what peers send (all shapes checked before anything changes) ----------------------------------- */

/* Pid or list of pids, packed. Returns count (>= 0) or -1; *out malloc'd (or NULL for 0). */
static long
decode_pids(cnode_pg_scope *s, const char *b, int *idx, cnode_pg_member **out)
{
    int type, size, n;
    erlang_pid p;
    *out = NULL;
    if (ei_get_type(b, idx, &type, &size) < 0)
        return -1;
    if (type == ERL_PID_EXT || type == ERL_NEW_PID_EXT) {
        if (ei_decode_pid(b, idx, &p) < 0 || !(*out = malloc(sizeof **out)) || !cnode__pg_intern_pid(s, &p, *out)) {
            free(*out);
            *out = NULL;
            return -1;
        }
        return 1;
    }
    if (type == ERL_NIL_EXT) {
        ei_decode_list_header(b, idx, &n);
        return 0;
    }
    if (ei_decode_list_header(b, idx, &n) < 0 || n < 0 || !(*out = malloc(((size_t)n + 1) * sizeof **out)))
        return -1;
    for (int i = 0; i < n; i++) {
        if (ei_get_type(b, idx, &type, &size) < 0 || (type != ERL_PID_EXT && type != ERL_NEW_PID_EXT) ||
            ei_decode_pid(b, idx, &p) < 0 || !cnode__pg_intern_pid(s, &p, &(*out)[i])) {
            free(*out);
            *out = NULL;
            return -1;
        }
    }
    if (ei_decode_list_header(b, idx, &size) < 0 || size != 0) {
        free(*out);
        *out = NULL;
        return -1;
    }
    return n;
}

/* Keeps the pids of the peer's own node (see the top of the file). */
static size_t
own_pids(cnode_pg_scope *s, const pg_remote *r, cnode_pg_member *p, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (cnode__pg_member_node(&p[i]) == r->node)
            p[w++] = p[i];
    if (w != n)
        cnode__log(s->node, CNODE_LOG_WARNING, "pg %s: %zu pid(s) of other nodes from %s's scope ignored", s->name, n - w,
                   s->nodes[r->node]->name);
    return w;
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

static void send_sync(cnode_pg_scope *s, const erlang_pid *to);

/* The members of node `node` in the group's current list, in order. */
static size_t
node_members(const pg_group *g, uint32_t node, cnode_pg_member *out)
{
    const pg_block *b = cnode__pg_group_block(g);
    size_t k = 0;
    for (size_t i = 0; i < b->n; i++)
        if (cnode__pg_member_node(&b->m[i]) == node) {
            if (out)
                out[k] = b->m[i];
            k++;
        }
    return k;
}

/* pg's sync_groups for one group: unchanged -> nothing; else NewPids ++ (All -- OldPids). */
static void
sync_group(cnode_pg_scope *s, pg_remote *r, const char *k, size_t kl, cnode_pg_member *pids, size_t np)
{
    pg_group *g = cnode__pg_group(s, k, kl, 0);
    if (g) {
        size_t no = node_members(g, r->node, NULL);
        cnode_pg_member *old = no ? malloc(no * sizeof *old) : NULL;
        if (no && old) {
            node_members(g, r->node, old);
            int same = no == np && memcmp(old, pids, no * sizeof *old) == 0;
            free(old);
            if (same) {
                g->mark = s->sync_seq;
                return;
            }
        } else {
            free(old);
        }
        cnode__pg_drop_node(s, g, r->node, CNODE_PG_LEAVE);
    }
    cnode__pg_join(s, k, kl, pids, np);
    if ((g = cnode__pg_group(s, k, kl, 0)))
        g->mark = s->sync_seq;
}

/* {'$gen_cast', {sync, Peer, [{Group, [Pid]}]}}, idx after '$gen_cast'. */
static void
on_sync(cnode_pg_scope *s, const char *b, int idx)
{
    int arity, n;
    char a[MAXATOMLEN_UTF8];
    erlang_pid peer;
    if (ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 3 || ei_decode_atom(b, &idx, a) < 0 || strcmp(a, "sync") != 0 ||
        ei_decode_pid(b, &idx, &peer) < 0 || ei_decode_list_header(b, &idx, &n) < 0 || n < 0) {
        cnode__pg_bad(s, "sync");
        return;
    }
    /* check the shape first */
    int start = idx;
    for (int i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        int type, size;
        if (ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 2 || term_at(b, &idx, &k, &kl) != 0 ||
            ei_get_type(b, &idx, &type, &size) < 0 ||
            (type != ERL_LIST_EXT && type != ERL_NIL_EXT && type != ERL_PID_EXT && type != ERL_NEW_PID_EXT) ||
            ei_skip_term(b, &idx) < 0) {
            cnode__pg_bad(s, "sync");
            return;
        }
    }
    if (n > 0 && (ei_decode_list_header(b, &idx, &arity) < 0 || arity != 0)) {
        cnode__pg_bad(s, "sync");
        return;
    }
    pg_remote *r = remote_find(s, &peer);
    if (r && r->closing_wait) {
        /* it handled our leaves before this discover: they are done there */
        r->closing_wait = 0;
        s->closing_waits--;
        pthread_cond_broadcast(&s->cond);
    }
    if (!r && !(r = remote_add(s, &peer)))
        return;
    r->synced = 1;
    pg_node *ni = s->nodes[r->node];
    ni->synced = 1;
    if (ni->has_name_mon) {
        erlang_ref mref;
        cnode__pg_ref_unpack(s, &ni->name_mon, &mref);
        cnode__demonitor_locked(s->proc, &mref);
        ni->has_name_mon = 0;
    }
    uint64_t mark = ++s->sync_seq;
    idx = start;
    for (int i = 0; i < n; i++) {
        const char *k = NULL;
        size_t kl = 0;
        cnode_pg_member *pids;
        ei_decode_tuple_header(b, &idx, &arity);
        term_at(b, &idx, &k, &kl);
        long np = decode_pids(s, b, &idx, &pids);
        if (np < 0) {
            cnode__log(s->node, CNODE_LOG_ERROR, "pg %s: sync from %s not taken whole", s->name, ni->name);
            break;
        }
        sync_group(s, r, k, kl, pids, own_pids(s, r, pids, (size_t)np));
        free(pids);
    }
    /* groups the peer no longer lists */
    cnode__pg_drop_node_all(s, r->node, mark, CNODE_PG_LEAVE);
    pthread_cond_broadcast(&s->cond);
}

static void
on_join(cnode_pg_scope *s, const char *b, int idx)
{
    erlang_pid peer;
    const char *k;
    size_t kl;
    cnode_pg_member *pids;
    long n;
    if (ei_decode_pid(b, &idx, &peer) < 0 || term_at(b, &idx, &k, &kl) != 0 || (n = decode_pids(s, b, &idx, &pids)) < 0) {
        cnode__pg_bad(s, "join");
        return;
    }
    pg_remote *r = remote_find(s, &peer);
    if (r && n > 0) /* joins from unknown peers are ignored, as pg does */
        cnode__pg_join(s, k, kl, pids, own_pids(s, r, pids, (size_t)n));
    free(pids);
}

static void
on_leave(cnode_pg_scope *s, const char *b, int idx)
{
    erlang_pid peer;
    cnode_pg_member *pids;
    long n;
    int ng;
    if (ei_decode_pid(b, &idx, &peer) < 0 || (n = decode_pids(s, b, &idx, &pids)) < 0) {
        cnode__pg_bad(s, "leave");
        return;
    }
    int gstart = idx;
    if (ei_decode_list_header(b, &idx, &ng) < 0 || ng < 0) {
        free(pids);
        cnode__pg_bad(s, "leave");
        return;
    }
    for (int i = 0; i < ng; i++) {
        const char *k;
        size_t kl;
        if (term_at(b, &idx, &k, &kl) != 0) {
            free(pids);
            cnode__pg_bad(s, "leave");
            return;
        }
    }
    pg_remote *r = remote_find(s, &peer);
    size_t own = r ? own_pids(s, r, pids, (size_t)n) : 0;
    idx = gstart;
    ei_decode_list_header(b, &idx, &ng);
    for (int i = 0; r && i < ng; i++) {
        const char *k = NULL;
        size_t kl = 0;
        term_at(b, &idx, &k, &kl);
        cnode__pg_leave(s, k, kl, pids, own);
    }
    free(pids);
}

static void
on_discover(cnode_pg_scope *s, const erlang_pid *peer)
{
    send_sync(s, peer);
    if (!remote_find(s, peer) && remote_add(s, peer))
        cnode__pg_send_discover_pid(s, peer);
}

/* {Scope, Node} does not exist there (noproc) or went away before syncing */
static void
name_mon_down(cnode_pg_scope *s, pg_node *n)
{
    n->has_name_mon = 0;
    if (!n->synced)
        n->no_scope = 1;
    pthread_cond_broadcast(&s->cond);
}

/* {'DOWN', Ref, process, Who, Reason}, idx after 'DOWN'. */
static void
on_down(cnode_pg_scope *s, const char *b, int idx)
{
    erlang_ref ref;
    if (ei_decode_ref(b, &idx, &ref) < 0)
        return;
    int wi = idx, type, size, arity;
    char a[MAXATOMLEN_UTF8];
    if (ei_skip_term(b, &wi) < 0 || ei_get_type(b, &wi, &type, &size) < 0)
        return;
    if (type == ERL_PID_EXT || type == ERL_NEW_PID_EXT) {
        erlang_pid who;
        int ri = wi;
        if (ei_decode_pid(b, &ri, &who) < 0)
            return;
        pg_remote *r = remote_find(s, &who);
        if (r && cnode__pg_ref_eq(s, &r->mref, &ref)) {
            int nodedown = ei_decode_atom(b, &ri, a) == 0 && strcmp(a, "noconnection") == 0;
            remote_remove(s, r, nodedown ? CNODE_PG_NODEDOWN : CNODE_PG_LEAVE);
            return;
        }
        if (cnode__is_local(s->node, who.node)) {
            cnode_pg_member m;
            pg_local *l = cnode__pg_intern_pid(s, &who, &m) ? cnode__pg_local_find(s, &m) : NULL;
            if (l && cnode__pg_ref_eq(s, &l->mref, &ref)) {
                cnode__pg_local_exit(s, l);
                return;
            }
        }
    } else if (type == ERL_SMALL_TUPLE_EXT) {
        /* {Scope, Node}: the name monitor of a discover */
        char node[MAXATOMLEN_UTF8];
        pg_node *n = NULL;
        if (ei_decode_tuple_header(b, &wi, &arity) == 0 && arity == 2 && ei_decode_atom(b, &wi, a) == 0 &&
            ei_decode_atom(b, &wi, node) == 0)
            n = cnode__pg_node(s, node, 0);
        if (n && n->has_name_mon && cnode__pg_ref_eq(s, &n->name_mon, &ref)) {
            name_mon_down(s, n);
            return;
        }
    }
    /* not where its Who says: look for the reference everywhere (DOWNs are rare) */
    for (pg_remote *r = s->remotes; r; r = r->next)
        if (cnode__pg_ref_eq(s, &r->mref, &ref)) {
            remote_remove(s, r, CNODE_PG_LEAVE);
            return;
        }
    for (size_t i = 0; i < s->lhcap; i++)
        for (pg_local *l = s->lhash[i]; l; l = l->hnext)
            if (cnode__pg_ref_eq(s, &l->mref, &ref)) {
                cnode__pg_local_exit(s, l);
                return;
            }
    for (size_t i = 0; i < s->nnodes; i++)
        if (s->nodes[i]->has_name_mon && cnode__pg_ref_eq(s, &s->nodes[i]->name_mon, &ref)) {
            name_mon_down(s, s->nodes[i]);
            return;
        }
}

/* The scope process: every message that reaches it. */
void
cnode__pg_scope_msg(cnode_proc *p, const cnode__xpid *from, const char *b, size_t len)
{
    (void)from;
    (void)len;
    cnode_pg_scope *s = p->sys_ud;
    int idx = 0, ver, arity;
    char a[MAXATOMLEN_UTF8];
    if (ei_decode_version(b, &idx, &ver) < 0 || ei_decode_tuple_header(b, &idx, &arity) < 0 || arity < 2) {
        cnode__pg_bad(s, "message");
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
            cnode__pg_bad(s, "message");
        return;
    }
    idx = first;
    cnode__pg_reply(s, b, idx, arity);
}

/* ---- what we send ------------------------------------------------------------------------------------------ */

static void
send_to_pid(cnode_pg_scope *s, const erlang_pid *to, ei_x_buff *x)
{
    cnode__send_term(s->node, to, x->buff, (size_t)x->index);
    ei_x_free(x);
}

void
cnode__pg_send_discover_pid(cnode_pg_scope *s, const erlang_pid *to)
{
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 2);
    cnode__x_atom(&x, "discover");
    ei_x_encode_pid(&x, &s->proc->pid);
    send_to_pid(s, to, &x);
}

/* {discover, Self} to {Scope, Node}, with a name monitor that tells us if the scope does not run there. */
void
cnode__pg_discover_node(cnode_pg_scope *s, cnode__peer *peer)
{
    pg_node *ni = cnode__pg_node(s, peer->name, 1);
    if (!ni)
        return;
    erlang_ref mref;
    if (!ni->has_name_mon && !ni->synced && cnode__monitor_locked(s->proc, NULL, s->name, peer->name, &mref) == 0) {
        cnode__pg_ref_pack(&mref, &ni->name_mon);
        ni->has_name_mon = 1;
    }
    ni->no_scope = 0;
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 2);
    cnode__x_atom(&x, "discover");
    ei_x_encode_pid(&x, &s->proc->pid);
    cnode__reg_send_locked(s->proc, s->name, peer, x.buff, (size_t)x.index);
    ei_x_free(&x);
}

/* Our local members as pg's all_local_pids: [{Group, [Pid]}], duplicates kept, read from the mirror. */
static void
x_local_groups(cnode_pg_scope *s, ei_x_buff *x)
{
    if (s->nlocals)
        PG_FOREACH_GROUP(s, g)
        {
            const pg_block *b = cnode__pg_group_block(g);
            size_t k = node_members(g, 0, NULL);
            if (!k)
                continue;
            ei_x_encode_list_header(x, 1);
            ei_x_encode_tuple_header(x, 2);
            ei_x_append_buf(x, b->key, (int)b->klen);
            ei_x_encode_list_header(x, (long)k);
            for (size_t i = 0; i < b->n; i++)
                if (cnode__pg_member_node(&b->m[i]) == 0) {
                    erlang_pid p;
                    cnode__pg_to_pid(&b->m[i], &p);
                    ei_x_encode_pid(x, &p);
                }
            ei_x_encode_empty_list(x);
        }
    ei_x_encode_empty_list(x);
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
void
cnode__pg_broadcast_local(cnode_pg_scope *s, int join, const cnode_pg_member *p, const char *k, size_t kl, int nkeys,
                          const char *const *keys, const size_t *lens)
{
    erlang_pid pid;
    cnode__pg_to_pid(p, &pid);
    for (pg_remote *r = s->remotes; r; r = r->next) {
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
        erlang_pid spid;
        cnode__pg_to_pid(&r->spid, &spid);
        send_to_pid(s, &spid, &x);
    }
}
