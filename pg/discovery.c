/* pg discovery and liveness: finding the nodes of the cluster, the probe
 * that marks unresponsive nodes suspect, the loop's hooks (tick, peer up and
 * down, post: publish and run callbacks, close) and the public entry points.
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

#define EV_CHUNK 32

static pg_node *
node_info(cnode_pg_scope *s, const char *name)
{
    return cnode__pg_node(s, name, 1);
}

static void
rex_ask(cnode_pg_scope *s, cnode__peer *peer, const char *mod, const char *fun, int nodes_arg, pg_ref *ptag)
{
    erlang_ref tagr, *tag = &tagr;
    cnode_make_ref(s->node, tag);
    cnode__pg_ref_pack(tag, ptag);
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
        pg_node *n = node_info(s, name);
        if (n)
            n->connecting = 1;
        cnode__enqueue_req(s->node, REQ_CONNECT, peer);
    }
}

/* {Tag, Reply}: answers to our nodes(connected) requests and probes. */
void
cnode__pg_reply(cnode_pg_scope *s, const char *b, int idx, int arity)
{
    erlang_ref tag;
    if (arity != 2 || ei_decode_ref(b, &idx, &tag) < 0) {
        cnode__pg_bad(s, "message");
        return;
    }
    for (size_t i = 0; i < s->nnodes; i++) {
        pg_node *ni = s->nodes[i];
        if (ni->probe_out && cnode__pg_ref_eq(s, &ni->probe_tag, &tag)) {
            ni->probe_out = 0;
            ni->rtt_us = (long)((cnode__now_ms() - ni->probe_sent_ms) * 1000);
            ni->last_answer_ms = cnode__now_ms();
            if (ni->suspect) {
                ni->suspect = 0;
                cnode__pg_event(s, CNODE_PG_CLEAR, "", 0, ni->name, NULL, 0);
            }
            return;
        }
        if (ni->nodes_out && cnode__pg_ref_eq(s, &ni->nodes_tag, &tag)) {
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
                        pg_node *nj = node_info(s, a);
                        if (nj && (s->nnodes != before || (!nj->synced && !nj->no_scope)))
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
                if (s->nodes[i]->seed && !s->nodes[i]->connecting) {
                    cnode__peer *sp = cnode__peer_get(node, s->nodes[i]->name, 1);
                    if (sp && !sp->up && !sp->dialling)
                        connect_node(s, s->nodes[i]->name);
                }
        }
        for (cnode__peer *peer = node->peers; peer; peer = peer->next) {
            if (!peer->up || !(peer->flags & CNODE__DFLAG_SPAWN))
                continue;
            pg_node *ni = node_info(s, peer->name);
            if (!ni)
                continue;
            if (ni->probe_out) {
                if (!ni->suspect && now - ni->probe_sent_ms > (int64_t)s->opts.probe_timeout_ms) {
                    ni->suspect = 1;
                    cnode__pg_event(s, CNODE_PG_SUSPECT, "", 0, ni->name, NULL, 0);
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
        else
            cnode__pg_reclaim(s); /* snapshots readers have let go of since */
        cnode__pg_trim(s);
    }
}

static void
pg_peer(cnode_node *node, cnode__peer *peer, int up, void *ud)
{
    (void)ud;
    for (cnode_pg_scope *s = node->pg; s; s = s->next) {
        pg_node *ni = node_info(s, peer->name);
        if (!ni)
            continue;
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
    /* members go to the callback as erlang_pids, EV_CHUNK at a time: a big change never needs a big buffer */
    erlang_pid *pids = all ? malloc(EV_CHUNK * sizeof *pids) : NULL;
    while (all) {
        pg_event *nx = all->next;
        cnode_pg_scope *s = all->scope;
        if (pids && !all->n) {
            s->opts.on_change(s, all->kind, all->gen, all->key, all->klen, all->node, pids, 0, s->opts.user_data);
        } else if (pids) {
            for (size_t i = 0; i < all->n; i += EV_CHUNK) {
                size_t k = all->n - i < EV_CHUNK ? all->n - i : EV_CHUNK;
                for (size_t j = 0; j < k; j++)
                    cnode__pg_to_pid(&all->m[i + j], &pids[j]);
                s->opts.on_change(s, all->kind, all->gen, all->key, all->klen, all->node, pids, k, s->opts.user_data);
            }
        }
        free(all);
        all = nx;
    }
    free(pids);
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
        for (size_t i = 0; i < s->lhcap; i++)
            while (s->lhash[i])
                cnode__pg_local_exit(s, s->lhash[i]);
        if (s->dirty)
            cnode__pg_publish(s);
        for (pg_remote *r = s->remotes; r; r = r->next) {
            cnode__peer *peer = cnode__peer_get(node, r->spid.node, 0);
            erlang_pid spid;
            cnode__pg_to_pid(&r->spid, &spid);
            if (!peer || !peer->up || r->closing_wait)
                continue;
            cnode__pg_send_discover_pid(s, &spid);
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

/* ---- public ---------------------------------------------------------------------------------------------- */

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
    /* index 0: this node */
    erlang_pid self;
    cnode_pg_member sm;
    cnode__pid_make(&self, node->name, 0, 0, cnode_node_creation(node));
    if (!cnode__pg_intern_pid(s, &self, &sm)) {
        cnode__pg_mirror_free(s);
        free(s);
        return CNODE_ENOMEM;
    }
    s->self = (pg_pnode *)(void *)(s->nodes[0]->pnodes);
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
            cnode__pg_mirror_free(s);
            free(s);
            return CNODE_EEXIST;
        }
    int rc = cnode__proc_new_locked(node, name, 1, &s->proc);
    if (rc) {
        pthread_mutex_unlock(&node->lock);
        pthread_cond_destroy(&s->cond);
        cnode__pg_mirror_free(s);
        free(s);
        return rc;
    }
    s->proc->sys_ud = s;
    s->proc->sys_handler = cnode__pg_scope_msg;
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
    pg_node *n = node_info(s, node);
    if (n)
        n->seed = 1;
    pthread_mutex_unlock(&s->node->lock);
    if (!n)
        return CNODE_ENOMEM;
    return cnode_ping(s->node, node, 5000, NULL);
}

/* Discovery is done when every connected spawn-capable node has synced (or
 * has no such scope) and has told us its node list, and every node it listed
 * has been tried. */
static int
round_done(cnode_pg_scope *s)
{
    for (size_t i = 0; i < s->nnodes; i++)
        if (s->nodes[i]->connecting) {
            cnode__peer *p = cnode__peer_get(s->node, s->nodes[i]->name, 0);
            if (!p || p->up)
                s->nodes[i]->connecting = 0; /* connected meanwhile, or forgotten */
            else
                return 0;
        }
    for (cnode__peer *peer = s->node->peers; peer; peer = peer->next) {
        if (peer->dialling)
            return 0;
        if (!peer->up || !(peer->flags & CNODE__DFLAG_SPAWN))
            continue;
        pg_node *ni = node_info(s, peer->name);
        if (!ni || (!ni->synced && !ni->no_scope))
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
            pg_node *ni = node_info(s, peer->name);
            if (ni && !ni->nodes_out && !ni->nodes_answered) {
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
    int rc = join ? cnode__pg_local_join(s, k, kl, &proc->pid) : cnode__pg_local_leave(s, k, kl, &proc->pid);
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
    pg_node *n = cnode__pg_node(s, node, 0);
    if (n)
        rtt = n->rtt_us;
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
        cnode__pg_locals_free(s);
        s->remotes = NULL; /* freed with their nodes */
        cnode__pg_mirror_free(s);
        pthread_cond_destroy(&s->cond);
        free(s);
        s = nx;
    }
    node->pg = NULL;
}
