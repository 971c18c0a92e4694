/* The structure-aware mutator of control messages, shared by the targets that
 * take a packet body (fuzz_ctl, fuzz_dispatch): it decodes a valid packet,
 * changes one field of the control tuple (the op, a pid, a name, a
 * reference, an atom, a raw term, the arity, the flags, the payload) and
 * re-encodes it; one time in four, and for what does not decode, it leaves
 * the bytes to libFuzzer's own mutations. Byte mutation alone rarely gets
 * past the control term: a flipped byte breaks the term before the op is read. */
#ifndef CNODE_FUZZ_CTL_MUTATOR_H
#define CNODE_FUZZ_CTL_MUTATOR_H

#include "fuzz.h"

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

static ptrdiff_t
decode(const char *b, size_t len, cnode__ctl *c)
{
    const char *why = NULL;
    ptrdiff_t n = cnode__ctl_decode(b, len, &cnode__term_limits_default, c, &why);
    FZ_CHECK(n == (ptrdiff_t)len || (n == CNODE__MALFORMED && why));
    return n;
}

static int
has_payload(int op)
{
    switch (op) {
    case CNODE__OP_SEND: case CNODE__OP_SEND_TT: case CNODE__OP_REG_SEND: case CNODE__OP_REG_SEND_TT:
    case CNODE__OP_SEND_SENDER: case CNODE__OP_SEND_SENDER_TT: case CNODE__OP_PAYLOAD_EXIT:
    case CNODE__OP_PAYLOAD_EXIT_TT: case CNODE__OP_PAYLOAD_EXIT2: case CNODE__OP_PAYLOAD_EXIT2_TT:
    case CNODE__OP_PAYLOAD_MONITOR_P_EXIT: case CNODE__OP_SPAWN_REQUEST: case CNODE__OP_SPAWN_REQUEST_TT:
    case CNODE__OP_ALIAS_SEND: case CNODE__OP_ALIAS_SEND_TT:
        return 1;
    default:
        return 0;
    }
}

/* Encode c (+ payload) as a packet body into a malloc'd buffer; NULL if c is inconsistent. */
static char *
encode(const cnode__ctl *c, const char *payload, size_t plen, size_t *out_len)
{
    ei_x_buff x;
    if (ei_x_new(&x) != 0)
        return NULL;
    char *r = NULL;
    if (cnode__ctl_encode(&x, c, has_payload(c->op) ? plen : 0) == 0) {
        size_t clen = (size_t)x.index - 4, pl = has_payload(c->op) ? plen : 0;
        r = malloc(clen + pl + 1);
        if (r) {
            memcpy(r, x.buff + 4, clen);
            if (pl)
                memcpy(r + clen, payload, pl);
            *out_len = clen + pl;
            const unsigned char *h = (const unsigned char *)x.buff;
            FZ_CHECK(((uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3]) == clen + pl);
        }
    }
    ei_x_free(&x);
    return r;
}

/* ---- the structure-aware mutator ------------------------------------------------------ */

static unsigned
rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 8) & 0xffffff;
}

static const int ops[] = {1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 16, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
                          31, 32, 33, 34, 35, 36, 0, 9, 37, 255, -1};

/* Small encoded terms (no 131) for the raw fields. */
static const struct {
    const char *p;
    size_t len;
} raw_terms[] = {
    {"\x61\x01", 2},                          /* 1 */
    {"\x62\xff\xff\xff\xff", 5},              /* -1 */
    {"\x6e\x08\x00\xff\xff\xff\xff\xff\xff\xff\xff", 11}, /* 2^64-1 */
    {"\x77\x06normal", 8},                    /* normal */
    {"\x77\x00", 2},                          /* '' */
    {"\x6a", 1},                              /* [] */
    {"\x68\x00", 2},                          /* {} */
    {"\x6c\x00\x00\x00\x01\x77\x04link\x6a", 11}, /* [link] */
    {"\x74\x00\x00\x00\x00", 5},              /* #{} */
    {"\x6d\x00\x00\x00\x03" "abc", 8},        /* <<"abc">> */
    {"\x46\x40\x09\x21\xfb\x54\x44\x2d\x18", 9}, /* 3.14159... */
    {"\x6b\x00\x02\x01\x02", 5},              /* [1,2] as a string */
};

static void
mut_text(char *t, size_t cap, unsigned *s)
{
    static const char *const names[] = {"", "a", "rex", "erpc", "pg", "node@host", "x@y@z", "\xc3\xa9t\xc3\xa9",
                                        "\xff\xfe", "'quoted'", "net_kernel", "erlang"};
    size_t k = rnd(s) % (sizeof names / sizeof names[0] + 1);
    if (k < sizeof names / sizeof names[0]) {
        snprintf(t, cap, "%s", names[k]);
    } else { /* long: up to the 255 characters an atom may have, or one past */
        size_t n = 250 + rnd(s) % 7;
        if (n >= cap)
            n = cap - 1;
        memset(t, 'a' + (int)(rnd(s) % 26), n);
        t[n] = 0;
    }
}

static void
mut_pid(erlang_pid *p, unsigned *s)
{
    switch (rnd(s) % 5) {
    case 0: p->num = rnd(s) % 3 ? rnd(s) : 0xffffffffu; break;
    case 1: p->serial = rnd(s) % 3 ? rnd(s) % 8192 : 0xffffffffu; break;
    case 2: p->creation = rnd(s) % 2 ? 0 : rnd(s); break;
    default: mut_text(p->node, sizeof p->node, s); break;
    }
}

static void
mut_ref(erlang_ref *r, unsigned *s)
{
    switch (rnd(s) % 4) {
    case 0: r->len = (int)(rnd(s) % 6); break;
    case 1: r->n[rnd(s) % 5] = rnd(s) * 977u; break;
    case 2: r->creation = rnd(s); break;
    default: mut_text(r->node, sizeof r->node, s); break;
    }
    if (r->len < 1)
        r->len = 1;
    if (r->len > 5)
        r->len = 5;
}

static void
mut_raw(cnode__term *t, char *scratch, size_t cap, unsigned *s)
{
    if (rnd(s) % 2 || !t->p || t->len >= cap) {
        size_t k = rnd(s) % (sizeof raw_terms / sizeof raw_terms[0]);
        t->p = raw_terms[k].p;
        t->len = raw_terms[k].len;
        return;
    }
    memcpy(scratch, t->p, t->len);
    t->len = LLVMFuzzerMutate((uint8_t *)scratch, t->len, cap);
    t->p = scratch;
}

/* The body of LLVMFuzzerCustomMutator for a target of packet bodies. */
static size_t
ctl_mutate(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    unsigned s = seed;
    cnode__ctl c;
    if (rnd(&s) % 4 == 0 || size == 0 || cnode__ctl_decode((const char *)data, size, &cnode__term_limits_default, &c,
                                                           NULL) < 0)
        return LLVMFuzzerMutate(data, size, max_size);
    char scratch[512], pay[1024];
    size_t plen = 0;
    if (c.msg && c.msg_len <= sizeof pay) {
        memcpy(pay, c.msg, c.msg_len);
        plen = c.msg_len;
    } else if (c.msg) {
        return LLVMFuzzerMutate(data, size, max_size);
    }
    switch (rnd(&s) % 11) {
    case 0:
        c.op = ops[rnd(&s) % (sizeof ops / sizeof ops[0])];
        if (has_payload(c.op) && plen == 0) {
            memcpy(pay, "\x83\x77\x02hi", 5);
            plen = 5;
        }
        if (!c.token.p && rnd(&s) % 2)
            c.token = (cnode__term){raw_terms[0].p, raw_terms[0].len};
        if (!c.reason.p)
            c.reason = (cnode__term){raw_terms[3].p, raw_terms[3].len};
        if (!c.id.p)
            c.id = (cnode__term){raw_terms[0].p, raw_terms[0].len};
        if (c.op == CNODE__OP_REG_SEND || c.op == CNODE__OP_REG_SEND_TT) {
            c.to.is_name = 1;
            if (!c.to.name[0])
                strcpy(c.to.name, "rex");
        }
        if (!c.ref.node[0])
            cnode__ref_make(&c.ref, "a@b", 1, (const uint32_t[3]){1, 2, 3});
        break;
    case 1: mut_pid(&c.from.pid, &s); break;
    case 2: mut_pid(&c.to.pid, &s); break;
    case 3:
        if (rnd(&s) % 2) {
            c.to.is_name = !c.to.is_name;
            if (c.to.is_name && !c.to.name[0])
                strcpy(c.to.name, "rex");
        } else {
            mut_text(c.to.name, sizeof c.to.name, &s);
        }
        if (c.op == CNODE__OP_REG_SEND || c.op == CNODE__OP_REG_SEND_TT)
            c.to.is_name = 1;
        break;
    case 4:
        if (rnd(&s) % 2)
            c.from.is_name = !c.from.is_name;
        mut_text(c.from.name, sizeof c.from.name, &s);
        break;
    case 5: mut_ref(&c.ref, &s); break;
    case 6: {
        cnode__term *t[] = {&c.token, &c.reason, &c.id, &c.opts};
        mut_raw(t[rnd(&s) % 4], scratch, sizeof scratch, &s);
        break;
    }
    case 7: mut_text(rnd(&s) % 2 ? c.mod : c.fun, sizeof c.mod, &s); break;
    case 8: c.arity = rnd(&s) % 4 ? (long)(rnd(&s) % 300) - 20 : (long)rnd(&s) << 20; break;
    case 9: c.spawn_flags = rnd(&s) % 2 ? rnd(&s) % 8 : ~0ULL - rnd(&s); break;
    default:
        if (plen > 1)
            plen = 1 + LLVMFuzzerMutate((uint8_t *)pay + 1, plen - 1, sizeof pay - 1);
        break;
    }
    size_t elen = 0;
    char *e = encode(&c, pay, plen, &elen);
    if (!e || elen > max_size) {
        free(e);
        return LLVMFuzzerMutate(data, size, max_size);
    }
    memcpy(data, e, elen);
    free(e);
    return elen;
}

#endif
