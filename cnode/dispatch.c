/* Incoming control messages, on the loop thread with node->lock held.
 * Layers above (erpc client and server, pg) see every message first through
 * their hooks; what none of them takes is handled here with Erlang's rules. */
#include <stdlib.h>
#include <string.h>

#include "cnode/internal.h"
#include "cnode/terms.h"

void
cnode__send_term(cnode_node *node, const erlang_pid *to, const char *term, size_t len)
{
    if (cnode__is_local(node, to->node)) {
        cnode_proc *p = cnode__proc_by_pid(node, to);
        if (p)
            cnode__deliver(p, NULL, term, len);
        return;
    }
    cnode__peer *peer = cnode__peer_get(node, to->node, 1);
    if (!peer)
        return;
    cnode__ctl c = {.op = CNODE__OP_SEND};
    c.to.pid = *to;
    cnode__send_ctl(node, peer, &c, term, len);
}

/* Target of a signal: a live local process, by pid (of our creation) or name. */
static cnode_proc *
target(cnode_node *node, const cnode__pid_or_name *t)
{
    if (t->is_name)
        return cnode__proc_by_name(node, t->name);
    return cnode__proc_by_pid(node, &t->pid);
}

static void
reply_noproc_monitor(cnode_node *node, cnode__peer *peer, const cnode__ctl *in)
{
    char r[16];
    size_t rl = cnode__enc_atom(r + 1, "noproc");
    r[0] = (char)131;
    cnode__ctl c = {.op = CNODE__OP_PAYLOAD_MONITOR_P_EXIT, .ref = in->ref};
    c.from = in->to; /* exactly as received: atom or pid */
    c.to.pid = in->from.pid;
    cnode__send_ctl(node, peer, &c, r, rl + 1);
}

static void
reply_noproc_link(cnode_node *node, cnode__peer *peer, const cnode__ctl *in)
{
    char r[16];
    size_t rl = cnode__enc_atom(r + 1, "noproc");
    r[0] = (char)131;
    cnode__ctl c = {.op = CNODE__OP_PAYLOAD_EXIT};
    c.from.pid = in->to.pid;
    c.to.pid = in->from.pid;
    cnode__send_ctl(node, peer, &c, r, rl + 1);
}

/* Options of a spawn request: link -> 1, monitor / {monitor, _} -> 2. */
static unsigned
spawn_flags(const cnode__term *opts)
{
    unsigned f = 0;
    if (!opts->p)
        return 0;
    int idx = 0, n, type, size;
    const char *b = opts->p;
    if (ei_get_type(b, &idx, &type, &size) < 0 || type != ERL_LIST_EXT || ei_decode_list_header(b, &idx, &n) < 0)
        return 0;
    for (int i = 0; i < n; i++) {
        char a[MAXATOMLEN_UTF8];
        int arity, save = idx;
        if (ei_decode_atom(b, &idx, a) == 0) {
            f |= strcmp(a, "link") == 0 ? 1u : strcmp(a, "monitor") == 0 ? 2u : 0u;
            continue;
        }
        idx = save;
        if (ei_decode_tuple_header(b, &idx, &arity) == 0 && arity == 2 && ei_decode_atom(b, &idx, a) == 0 &&
            strcmp(a, "monitor") == 0)
            f |= 2u;
        idx = save;
        if (ei_skip_term(b, &idx) < 0)
            return f;
    }
    return f;
}

/* A spawn request nobody serves: answer as BEAM does for a missing module: a
 * fresh pid that exits at once with {undef, [{M, F, Args, []}]}. */
static void
spawn_undef(cnode_node *node, cnode__peer *peer, const cnode__ctl *in)
{
    unsigned flags = spawn_flags(&in->opts);
    cnode_proc *p;
    if (cnode__proc_new_locked(node, NULL, 1, &p) != 0) {
        cnode__ctl c = {.op = CNODE__OP_SPAWN_REPLY, .ref = in->ref, .spawn_flags = 0};
        c.to.pid = in->from.pid;
        c.from.is_name = 1;
        strcpy(c.from.name, "system_limit");
        cnode__send_ctl(node, peer, &c, NULL, 0);
        return;
    }
    cnode__ctl c = {.op = CNODE__OP_SPAWN_REPLY, .ref = in->ref, .spawn_flags = flags};
    c.to.pid = in->from.pid;
    c.from.pid = p->pid;
    cnode__send_ctl(node, peer, &c, NULL, 0);
    cnode__xpid from;
    if (cnode__xpid_of(node, &in->from.pid, &from, 1) != 0)
        flags = 0; /* no record of its node: no link or monitor can be kept */
    if (flags & 1)
        cnode__add_link(p, &from);
    if (flags & 2)
        cnode__add_monby(p, &in->ref, &from, 0);
    ei_x_buff x;
    if (ei_x_new(&x) == 0) {
        ei_x_encode_tuple_header(&x, 2);
        cnode__x_atom(&x, "undef");
        ei_x_encode_list_header(&x, 1);
        ei_x_encode_tuple_header(&x, 4);
        cnode__x_atom(&x, in->mod);
        cnode__x_atom(&x, in->fun);
        if (in->msg && in->msg_len > 1)
            ei_x_append_buf(&x, in->msg + 1, (int)in->msg_len - 1);
        else
            ei_x_encode_empty_list(&x);
        ei_x_encode_empty_list(&x);
        ei_x_encode_empty_list(&x);
        cnode__log(node, CNODE_LOG_WARNING, "spawn request from %s for %s:%s/%ld: no such function here (undef)",
                   peer->name, in->mod, in->fun, in->arity);
        cnode__proc_finish(p, x.buff, (size_t)x.index);
        ei_x_free(&x);
    }
}

void
cnode__dispatch(cnode_node *node, cnode__peer *peer, const cnode__ctl *c)
{
    for (int i = 0; i < node->nhooks; i++)
        if (node->ctl_hooks[i](node, peer, c, node->ctl_hook_ud[i]))
            return;
    cnode__xpid from = {0};
    /* ops without a sender (SEND's unused field) leave from.pid.node empty */
    if (!c->from.is_name && c->from.pid.node[0] && cnode__xpid_of(node, &c->from.pid, &from, 1) != 0) {
        /* a sender on a node we cannot record (limits.peers): as undecodable */
        cnode__log(node, CNODE_LOG_ERROR, "dropping connection to %s: message names a node over the peers limit",
                   peer->name);
        cnode__enqueue_req(node, REQ_BAD_DATA, peer);
        return;
    }
    cnode_proc *p;
    switch (c->op) {
    case CNODE__OP_SEND:
    case CNODE__OP_SEND_TT:
        if ((p = target(node, &c->to)))
            cnode__deliver(p, NULL, c->msg, c->msg_len);
        break;
    case CNODE__OP_SEND_SENDER:
    case CNODE__OP_SEND_SENDER_TT:
        if ((p = target(node, &c->to)))
            cnode__deliver(p, &from, c->msg, c->msg_len);
        break;
    case CNODE__OP_REG_SEND:
    case CNODE__OP_REG_SEND_TT:
        if (cnode__sys_reg_send(node, peer, c))
            break;
        if ((p = target(node, &c->to)))
            cnode__deliver(p, &from, c->msg, c->msg_len);
        else
            cnode__log(node, CNODE_LOG_DEBUG, "message from %s to unknown name '%s' dropped", peer->name, c->to.name);
        break;
    case CNODE__OP_LINK:
        if ((p = target(node, &c->to)))
            cnode__add_link(p, &from);
        else
            reply_noproc_link(node, peer, c);
        break;
    case CNODE__OP_UNLINK:
        if ((p = target(node, &c->to)))
            cnode__peer_unlinked(p, &from);
        break;
    case CNODE__OP_UNLINK_ID: {
        if ((p = target(node, &c->to)))
            cnode__peer_unlinked(p, &from);
        cnode__ctl a = {.op = CNODE__OP_UNLINK_ID_ACK, .id = c->id};
        a.from.pid = c->to.pid;
        a.to.pid = c->from.pid;
        cnode__send_ctl(node, peer, &a, NULL, 0);
        break;
    }
    case CNODE__OP_UNLINK_ID_ACK: {
        EI_ULONGLONG id = 0;
        int idx = 0;
        if ((p = target(node, &c->to)) && ei_decode_ulonglong(c->id.p, &idx, &id) == 0)
            cnode__unlink_acked(p, &from, (uint64_t)id);
        break;
    }
    case CNODE__OP_EXIT:
    case CNODE__OP_EXIT_TT:
    case CNODE__OP_PAYLOAD_EXIT:
    case CNODE__OP_PAYLOAD_EXIT_TT:
        if ((p = target(node, &c->to)))
            cnode__signal_exit(p, &from, c->reason.p, c->reason.len, 1);
        break;
    case CNODE__OP_EXIT2:
    case CNODE__OP_EXIT2_TT:
    case CNODE__OP_PAYLOAD_EXIT2:
    case CNODE__OP_PAYLOAD_EXIT2_TT:
        if ((p = target(node, &c->to)))
            cnode__signal_exit(p, &from, c->reason.p, c->reason.len, 0);
        break;
    case CNODE__OP_MONITOR_P:
        if (c->to.is_name && cnode__sys_name(c->to.name))
            break; /* system names never die while the node lives; nodedown covers the rest */
        if ((p = target(node, &c->to)))
            cnode__add_monby(p, &c->ref, &from, c->to.is_name);
        else
            reply_noproc_monitor(node, peer, c);
        break;
    case CNODE__OP_DEMONITOR_P:
        if ((p = target(node, &c->to)))
            cnode__remove_monby(p, &c->ref);
        break;
    case CNODE__OP_MONITOR_P_EXIT:
    case CNODE__OP_PAYLOAD_MONITOR_P_EXIT:
        if ((p = target(node, &c->to)))
            cnode__monitor_fired(p, &c->ref, c->reason.p, c->reason.len);
        break;
    case CNODE__OP_GROUP_LEADER:
        if ((p = target(node, &c->to))) {
            p->group_leader = c->from.pid;
            p->has_gl = 1;
        }
        break;
    case CNODE__OP_SPAWN_REQUEST:
    case CNODE__OP_SPAWN_REQUEST_TT:
        spawn_undef(node, peer, c);
        break;
    default: /* SPAWN_REPLY, ALIAS_SEND nobody asked for: late replies, dropped */
        cnode__log(node, CNODE_LOG_DEBUG, "unclaimed control message %d from %s dropped", c->op, peer->name);
        break;
    }
}
