/* ei_glue/ctl.c: control messages (protocol.md §4) both ways, and this
 * node's own pids and references. Every term from a peer is walked with
 * cnode__term_extent before any ei_decode_* reads it. */
#include "ei_glue/glue.h"

#include <string.h>

#define FAIL(msg)                                                                                                      \
    do {                                                                                                               \
        if (why)                                                                                                       \
            *why = (msg);                                                                                              \
        return CNODE__MALFORMED;                                                                                       \
    } while (0)

enum { HAS_PAYLOAD = 1, HAS_TOKEN = 2 };

/* Control tuple arity and shape per op; 0 arity = unknown op. */
static int
op_shape(long op, int *arity, int *flags)
{
    int a, f = 0;
    switch (op) {
    case CNODE__OP_LINK: case CNODE__OP_UNLINK: case CNODE__OP_GROUP_LEADER: a = 3; break;
    case CNODE__OP_SEND: a = 3; f = HAS_PAYLOAD; break;
    case CNODE__OP_SEND_TT: a = 4; f = HAS_PAYLOAD | HAS_TOKEN; break;
    case CNODE__OP_EXIT: case CNODE__OP_EXIT2: a = 4; break;
    case CNODE__OP_EXIT_TT: case CNODE__OP_EXIT2_TT: a = 5; f = HAS_TOKEN; break;
    case CNODE__OP_NODE_LINK: a = 1; break;
    case CNODE__OP_REG_SEND: a = 4; f = HAS_PAYLOAD; break;
    case CNODE__OP_REG_SEND_TT: a = 5; f = HAS_PAYLOAD | HAS_TOKEN; break;
    case CNODE__OP_MONITOR_P: case CNODE__OP_DEMONITOR_P: a = 4; break;
    case CNODE__OP_MONITOR_P_EXIT: a = 5; break;
    case CNODE__OP_SEND_SENDER: a = 3; f = HAS_PAYLOAD; break;
    case CNODE__OP_SEND_SENDER_TT: a = 4; f = HAS_PAYLOAD | HAS_TOKEN; break;
    case CNODE__OP_PAYLOAD_EXIT: case CNODE__OP_PAYLOAD_EXIT2: a = 3; f = HAS_PAYLOAD; break;
    case CNODE__OP_PAYLOAD_EXIT_TT: case CNODE__OP_PAYLOAD_EXIT2_TT: a = 4; f = HAS_PAYLOAD | HAS_TOKEN; break;
    case CNODE__OP_PAYLOAD_MONITOR_P_EXIT: a = 4; f = HAS_PAYLOAD; break;
    case CNODE__OP_SPAWN_REQUEST: a = 6; f = HAS_PAYLOAD; break;
    case CNODE__OP_SPAWN_REQUEST_TT: a = 7; f = HAS_PAYLOAD | HAS_TOKEN; break;
    case CNODE__OP_SPAWN_REPLY: a = 5; break;
    case CNODE__OP_SPAWN_REPLY_TT: a = 6; f = HAS_TOKEN; break;
    case CNODE__OP_ALIAS_SEND: a = 3; f = HAS_PAYLOAD; break;
    case CNODE__OP_ALIAS_SEND_TT: a = 4; f = HAS_PAYLOAD | HAS_TOKEN; break;
    case CNODE__OP_UNLINK_ID: case CNODE__OP_UNLINK_ID_ACK: a = 4; break;
    default: return -1;
    }
    *arity = a;
    *flags = f;
    return 0;
}

/* ---- decoding ---------------------------------------------------------------------------- */

typedef struct {
    const char *b; /* the control term, starting at 131 */
    size_t len;
    int i;
    const char **why;
} rd;

static int
rd_pid(rd *r, erlang_pid *p)
{
    int t, sz;
    if (ei_get_type(r->b, &r->i, &t, &sz) != 0 || (t != ERL_NEW_PID_EXT && t != ERL_PID_EXT) ||
        ei_decode_pid(r->b, &r->i, p) != 0) {
        if (r->why)
            *r->why = "control: expected a pid";
        return -1;
    }
    return 0;
}

static int
rd_atom(rd *r, char *out)
{
    if (ei_decode_atom_as(r->b, &r->i, out, MAXATOMLEN_UTF8, ERLANG_UTF8, NULL, NULL) < 0) {
        if (r->why)
            *r->why = "control: expected an atom";
        return -1;
    }
    return 0;
}

static int
rd_pid_or_name(rd *r, cnode__pid_or_name *o)
{
    int t, sz;
    if (ei_get_type(r->b, &r->i, &t, &sz) != 0)
        return -1;
    if (t == ERL_ATOM_EXT || t == ERL_SMALL_ATOM_EXT || t == ERL_ATOM_UTF8_EXT || t == ERL_SMALL_ATOM_UTF8_EXT) {
        o->is_name = 1;
        return rd_atom(r, o->name);
    }
    o->is_name = 0;
    return rd_pid(r, &o->pid);
}

static int
rd_ref(rd *r, erlang_ref *ref)
{
    if (ei_decode_ref(r->b, &r->i, ref) != 0) {
        if (r->why)
            *r->why = "control: expected a reference";
        return -1;
    }
    return 0;
}

/* Any term: recorded raw (no 131), skipped. The whole control term was
 * walked already, so the extent cannot fail here. */
static int
rd_raw(rd *r, cnode__term *t)
{
    ptrdiff_t n = cnode__term_extent(r->b + r->i, r->len - (size_t)r->i, NULL, r->why);
    if (n <= 0)
        return -1;
    t->p = r->b + r->i;
    t->len = (size_t)n;
    r->i += (int)n;
    return 0;
}

static int
rd_empty_atom(rd *r)
{
    char a[MAXATOMLEN_UTF8];
    if (rd_atom(r, a) != 0)
        return -1;
    return 0; /* the old cookie slot: OTP sends '', anything is accepted */
}

ptrdiff_t
cnode__ctl_decode(const char *body, size_t len, const cnode__term_limits *lim, cnode__ctl *out, const char **why)
{
    if (len < 2 || body[0] != 'p')
        FAIL("packet: not a 'p' (pass-through) packet");
    if ((unsigned char)body[1] != 131)
        FAIL("packet: control term without version byte");
    ptrdiff_t ce = cnode__term_extent(body + 2, len - 2, lim, why);
    if (ce == CNODE__NEED_MORE)
        FAIL("packet: control term truncated");
    if (ce < 0)
        return ce;
    if ((unsigned char)body[2] != ERL_SMALL_TUPLE_EXT)
        FAIL("packet: control is not a tuple");
    size_t ctl_end = 2 + (size_t)ce;
    memset(out, 0, sizeof *out);
    rd r = {body + 1, ctl_end - 1, 0, why};
    int ver, arity, shape_arity, flags;
    long op;
    if (ei_decode_version(r.b, &r.i, &ver) != 0 || ei_decode_tuple_header(r.b, &r.i, &arity) != 0 || arity < 1)
        FAIL("packet: bad control tuple");
    if (ei_decode_long(r.b, &r.i, &op) != 0)
        FAIL("packet: control op is not an integer");
    if (op_shape(op, &shape_arity, &flags) != 0)
        FAIL("packet: unknown control op");
    if (arity != shape_arity)
        FAIL("packet: control tuple has the wrong arity for its op");
    out->op = (int)op;
    int tt = (flags & HAS_TOKEN) != 0;
    int e = 0;
    switch (op) {
    case CNODE__OP_LINK:
    case CNODE__OP_UNLINK:
    case CNODE__OP_GROUP_LEADER:
    case CNODE__OP_SEND_SENDER:
    case CNODE__OP_SEND_SENDER_TT:
    case CNODE__OP_PAYLOAD_EXIT:
    case CNODE__OP_PAYLOAD_EXIT_TT:
    case CNODE__OP_PAYLOAD_EXIT2:
    case CNODE__OP_PAYLOAD_EXIT2_TT:
        e = rd_pid(&r, &out->from.pid) || rd_pid(&r, &out->to.pid) || (tt && rd_raw(&r, &out->token));
        break;
    case CNODE__OP_SEND:
    case CNODE__OP_SEND_TT:
        e = rd_empty_atom(&r) || rd_pid(&r, &out->to.pid) || (tt && rd_raw(&r, &out->token));
        break;
    case CNODE__OP_EXIT:
    case CNODE__OP_EXIT2:
    case CNODE__OP_EXIT_TT:
    case CNODE__OP_EXIT2_TT:
        e = rd_pid(&r, &out->from.pid) || rd_pid(&r, &out->to.pid) || (tt && rd_raw(&r, &out->token)) ||
            rd_raw(&r, &out->reason);
        break;
    case CNODE__OP_NODE_LINK:
        break;
    case CNODE__OP_REG_SEND:
    case CNODE__OP_REG_SEND_TT:
        out->to.is_name = 1;
        e = rd_pid(&r, &out->from.pid) || rd_empty_atom(&r) || rd_atom(&r, out->to.name) ||
            (tt && rd_raw(&r, &out->token));
        break;
    case CNODE__OP_MONITOR_P:
    case CNODE__OP_DEMONITOR_P:
        e = rd_pid(&r, &out->from.pid) || rd_pid_or_name(&r, &out->to) || rd_ref(&r, &out->ref);
        break;
    case CNODE__OP_MONITOR_P_EXIT:
        e = rd_pid_or_name(&r, &out->from) || rd_pid(&r, &out->to.pid) || rd_ref(&r, &out->ref) ||
            rd_raw(&r, &out->reason);
        break;
    case CNODE__OP_PAYLOAD_MONITOR_P_EXIT:
        e = rd_pid_or_name(&r, &out->from) || rd_pid(&r, &out->to.pid) || rd_ref(&r, &out->ref);
        break;
    case CNODE__OP_SPAWN_REQUEST:
    case CNODE__OP_SPAWN_REQUEST_TT: {
        int ma;
        e = rd_ref(&r, &out->ref) || rd_pid(&r, &out->from.pid) || rd_pid(&r, &out->group_leader);
        if (!e && (ei_decode_tuple_header(r.b, &r.i, &ma) != 0 || ma != 3 || rd_atom(&r, out->mod) ||
                   rd_atom(&r, out->fun) || ei_decode_long(r.b, &r.i, &out->arity) != 0 || out->arity < 0 ||
                   out->arity > 255))
            FAIL("packet: spawn request without a {Module, Function, Arity}");
        e = e || rd_raw(&r, &out->opts) || (tt && rd_raw(&r, &out->token));
        break;
    }
    case CNODE__OP_SPAWN_REPLY:
    case CNODE__OP_SPAWN_REPLY_TT:
        e = rd_ref(&r, &out->ref) || rd_pid(&r, &out->to.pid) ||
            ei_decode_ulonglong(r.b, &r.i, &out->spawn_flags) != 0 || rd_pid_or_name(&r, &out->from) ||
            (tt && rd_raw(&r, &out->token));
        break;
    case CNODE__OP_ALIAS_SEND:
    case CNODE__OP_ALIAS_SEND_TT:
        e = rd_pid(&r, &out->from.pid) || rd_ref(&r, &out->ref) || (tt && rd_raw(&r, &out->token));
        break;
    case CNODE__OP_UNLINK_ID:
    case CNODE__OP_UNLINK_ID_ACK: {
        int t, sz;
        if (ei_get_type(r.b, &r.i, &t, &sz) != 0 ||
            (t != ERL_SMALL_INTEGER_EXT && t != ERL_INTEGER_EXT && t != ERL_SMALL_BIG_EXT))
            FAIL("packet: unlink id is not an integer");
        e = rd_raw(&r, &out->id) || rd_pid(&r, &out->from.pid) || rd_pid(&r, &out->to.pid);
        break;
    }
    }
    if (e) {
        if (why && !*why)
            *why = "packet: bad control tuple element";
        return CNODE__MALFORMED;
    }
    if ((size_t)r.i != r.len)
        FAIL("packet: control tuple decoded short of its extent");
    size_t pos = ctl_end;
    if (flags & HAS_PAYLOAD) {
        if (pos >= len)
            FAIL("packet: payload missing");
        if ((unsigned char)body[pos] != 131)
            FAIL("packet: payload without version byte");
        ptrdiff_t pe = cnode__term_extent(body + pos + 1, len - pos - 1, lim, why);
        if (pe == CNODE__NEED_MORE)
            FAIL("packet: payload truncated");
        if (pe < 0)
            return pe;
        out->msg = body + pos;
        out->msg_len = 1 + (size_t)pe;
        if (op == CNODE__OP_PAYLOAD_EXIT || op == CNODE__OP_PAYLOAD_EXIT_TT || op == CNODE__OP_PAYLOAD_EXIT2 ||
            op == CNODE__OP_PAYLOAD_EXIT2_TT || op == CNODE__OP_PAYLOAD_MONITOR_P_EXIT) {
            out->reason.p = body + pos + 1;
            out->reason.len = (size_t)pe;
        }
        pos += out->msg_len;
    }
    if (pos != len)
        FAIL("packet: bytes after the last term");
    return (ptrdiff_t)len;
}

/* ---- encoding ---------------------------------------------------------------------------- */

static int
x_atom(ei_x_buff *x, const char *a)
{
    return ei_x_encode_atom_len_as(x, a, (int)strlen(a), ERLANG_UTF8, ERLANG_UTF8);
}

static int
x_pid_or_name(ei_x_buff *x, const cnode__pid_or_name *p)
{
    return p->is_name ? x_atom(x, p->name) : ei_x_encode_pid(x, &p->pid);
}

static int
x_raw(ei_x_buff *x, const cnode__term *t)
{
    if (!t->p || t->len == 0)
        return -1;
    return ei_x_append_buf(x, t->p, (int)t->len);
}

int
cnode__ctl_encode(ei_x_buff *x, const cnode__ctl *c, size_t payload_len)
{
    int arity, flags;
    if (op_shape(c->op, &arity, &flags) != 0)
        return -1;
    if (((flags & HAS_PAYLOAD) != 0) != (payload_len > 0))
        return -1;
    int tt = (flags & HAS_TOKEN) != 0;
    int start = x->index;
    static const char hdr[5] = {0, 0, 0, 0, 'p'};
    int e = ei_x_append_buf(x, hdr, 5);
    e = e || ei_x_encode_version(x) || ei_x_encode_tuple_header(x, arity) || ei_x_encode_long(x, c->op);
    if (e)
        return -1;
    switch (c->op) {
    case CNODE__OP_LINK:
    case CNODE__OP_UNLINK:
    case CNODE__OP_GROUP_LEADER:
    case CNODE__OP_SEND_SENDER:
    case CNODE__OP_SEND_SENDER_TT:
    case CNODE__OP_PAYLOAD_EXIT:
    case CNODE__OP_PAYLOAD_EXIT_TT:
    case CNODE__OP_PAYLOAD_EXIT2:
    case CNODE__OP_PAYLOAD_EXIT2_TT:
        e = ei_x_encode_pid(x, &c->from.pid) || ei_x_encode_pid(x, &c->to.pid) || (tt && x_raw(x, &c->token));
        break;
    case CNODE__OP_SEND:
    case CNODE__OP_SEND_TT:
        e = x_atom(x, "") || ei_x_encode_pid(x, &c->to.pid) || (tt && x_raw(x, &c->token));
        break;
    case CNODE__OP_EXIT:
    case CNODE__OP_EXIT2:
    case CNODE__OP_EXIT_TT:
    case CNODE__OP_EXIT2_TT:
        e = ei_x_encode_pid(x, &c->from.pid) || ei_x_encode_pid(x, &c->to.pid) || (tt && x_raw(x, &c->token)) ||
            x_raw(x, &c->reason);
        break;
    case CNODE__OP_NODE_LINK:
        break;
    case CNODE__OP_REG_SEND:
    case CNODE__OP_REG_SEND_TT:
        e = !c->to.is_name || ei_x_encode_pid(x, &c->from.pid) || x_atom(x, "") || x_atom(x, c->to.name) ||
            (tt && x_raw(x, &c->token));
        break;
    case CNODE__OP_MONITOR_P:
    case CNODE__OP_DEMONITOR_P:
        e = ei_x_encode_pid(x, &c->from.pid) || x_pid_or_name(x, &c->to) || ei_x_encode_ref(x, &c->ref);
        break;
    case CNODE__OP_MONITOR_P_EXIT:
        e = x_pid_or_name(x, &c->from) || ei_x_encode_pid(x, &c->to.pid) || ei_x_encode_ref(x, &c->ref) ||
            x_raw(x, &c->reason);
        break;
    case CNODE__OP_PAYLOAD_MONITOR_P_EXIT:
        e = x_pid_or_name(x, &c->from) || ei_x_encode_pid(x, &c->to.pid) || ei_x_encode_ref(x, &c->ref);
        break;
    case CNODE__OP_SPAWN_REQUEST:
    case CNODE__OP_SPAWN_REQUEST_TT: {
        const erlang_pid *gl = c->group_leader.node[0] ? &c->group_leader : &c->from.pid;
        e = ei_x_encode_ref(x, &c->ref) || ei_x_encode_pid(x, &c->from.pid) || ei_x_encode_pid(x, gl) ||
            ei_x_encode_tuple_header(x, 3) || x_atom(x, c->mod) || x_atom(x, c->fun) ||
            ei_x_encode_long(x, c->arity) || (c->opts.p ? x_raw(x, &c->opts) : ei_x_encode_empty_list(x)) ||
            (tt && x_raw(x, &c->token));
        break;
    }
    case CNODE__OP_SPAWN_REPLY:
    case CNODE__OP_SPAWN_REPLY_TT:
        e = ei_x_encode_ref(x, &c->ref) || ei_x_encode_pid(x, &c->to.pid) ||
            ei_x_encode_ulonglong(x, c->spawn_flags) || x_pid_or_name(x, &c->from) || (tt && x_raw(x, &c->token));
        break;
    case CNODE__OP_ALIAS_SEND:
    case CNODE__OP_ALIAS_SEND_TT:
        e = ei_x_encode_pid(x, &c->from.pid) || ei_x_encode_ref(x, &c->ref) || (tt && x_raw(x, &c->token));
        break;
    case CNODE__OP_UNLINK_ID:
    case CNODE__OP_UNLINK_ID_ACK:
        e = x_raw(x, &c->id) || ei_x_encode_pid(x, &c->from.pid) || ei_x_encode_pid(x, &c->to.pid);
        break;
    }
    if (e) {
        x->index = start;
        return -1;
    }
    uint64_t total = (uint64_t)(x->index - start - 4) + payload_len;
    if (total > 0xffffffffULL) {
        x->index = start;
        return -1;
    }
    unsigned char *p = (unsigned char *)x->buff + start;
    p[0] = (unsigned char)(total >> 24);
    p[1] = (unsigned char)(total >> 16);
    p[2] = (unsigned char)(total >> 8);
    p[3] = (unsigned char)total;
    return 0;
}

/* ---- identifiers ----------------------------------------------------------------------- */

void
cnode__pid_make(erlang_pid *out, const char *node, uint32_t num, uint32_t serial, uint32_t creation)
{
    memset(out, 0, sizeof *out);
    strncpy(out->node, node, sizeof out->node - 1);
    out->num = num;
    out->serial = serial;
    out->creation = creation;
}

void
cnode__ref_make(erlang_ref *out, const char *node, uint32_t creation, const uint32_t id[3])
{
    memset(out, 0, sizeof *out);
    strncpy(out->node, node, sizeof out->node - 1);
    out->len = 3;
    out->n[0] = id[0];
    out->n[1] = id[1];
    out->n[2] = id[2];
    out->creation = creation;
}

int
cnode__pid_eq(const erlang_pid *a, const erlang_pid *b)
{
    return a->num == b->num && a->serial == b->serial && a->creation == b->creation && strcmp(a->node, b->node) == 0;
}

int
cnode__ref_eq(const erlang_ref *a, const erlang_ref *b)
{
    if (a->len != b->len || a->creation != b->creation || strcmp(a->node, b->node) != 0)
        return 0;
    for (int i = 0; i < a->len && i < 5; i++)
        if (a->n[i] != b->n[i])
            return 0;
    return 1;
}
