/* Elixir 1.14's inspect/1 over the external term format, as EasyRpc's
 * messages and log lines print values (seed-behaviour.md B5, B6).
 *
 * A term is first bounded by the ei_glue walker (cnode__term_extent), then
 * printed by a reader that trusts the lengths the walker proved. The limits
 * are inspect's defaults: a collection prints at most `limit` elements
 * (50 at the top; element i of a collection gets limit - i - 1, as
 * Inspect.Algebra.container_doc hands them down), a printable binary or
 * charlist at most 4096 characters (inspect_text.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balancer/internal.h"
#include "ei_glue/glue.h"

#define LIMIT 50

/* ---- reader over a term the walker has bounded ---- */

typedef struct {
    const unsigned char *p, *end;
} rd;

static uint32_t
be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static unsigned
be16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static int
need(const rd *r, size_t n)
{
    return (size_t)(r->end - r->p) >= n;
}

static int
skip_term(rd *r)
{
    ptrdiff_t n = cnode__term_extent((const char *)r->p, (size_t)(r->end - r->p), &cnode__term_limits_default, NULL);
    if (n <= 0)
        return -1;
    r->p += n;
    return 0;
}

/* An atom's text as UTF-8 into buf (>= 1024 bytes); its length, or -1. */
static long
rd_atom(rd *r, char *buf)
{
    if (!need(r, 2))
        return -1;
    unsigned tag = *r->p++, len;
    int latin1 = tag == 100 || tag == 115;
    if (tag == 115 || tag == 119) {
        len = *r->p++;
    } else if (tag == 100 || tag == 118) {
        if (!need(r, 2))
            return -1;
        len = be16(r->p);
        r->p += 2;
    } else {
        return -1;
    }
    if (!need(r, len) || len > 1020)
        return -1;
    size_t o = 0;
    for (unsigned i = 0; i < len; i++) {
        unsigned c = r->p[i];
        if (latin1 && c >= 0x80) {
            buf[o++] = (char)(0xC0 | c >> 6);
            buf[o++] = (char)(0x80 | (c & 0x3F));
        } else {
            buf[o++] = (char)c;
        }
        if (o >= 1020)
            return -1;
    }
    buf[o] = 0;
    r->p += len;
    return (long)o;
}

static int
is_atom_tag(unsigned tag)
{
    return tag == 100 || tag == 115 || tag == 118 || tag == 119;
}

/* ---- terms ---- */

static int term(rd *r, cnode__sb *o, long limit);

/* "..." for the elements past the limit. */
static void
ellipsis(cnode__sb *o, size_t printed)
{
    cnode__sb_str(o, printed ? ", ..." : "...");
}

/* A proper list's elements: every one a 2-tuple whose first element is an
 * atom not starting with "Elixir." (Inspect.List.keyword?/1). */
static int
keyword_list(rd r, uint32_t n)
{
    char name[1024];
    for (uint32_t i = 0; i < n; i++) {
        if (!need(&r, 2) || r.p[0] != 104 || r.p[1] != 2)
            return 0;
        r.p += 2;
        if (!need(&r, 1) || !is_atom_tag(*r.p))
            return 0;
        long len = rd_atom(&r, name);
        if (len < 0 || (len >= 7 && memcmp(name, "Elixir.", 7) == 0))
            return 0;
        if (skip_term(&r) != 0)
            return 0;
    }
    return need(&r, 1) && *r.p == 106;
}

/* List elements as a charlist, if they all are ASCII printable (List.ascii_printable?). */
static int
ascii_printable_list(rd r, uint32_t n, unsigned char *out)
{
    for (uint32_t i = 0; i < n; i++) {
        long v;
        if (!need(&r, 2))
            return 0;
        if (r.p[0] == 97) {
            v = r.p[1];
            r.p += 2;
        } else if (r.p[0] == 98 && need(&r, 5)) {
            v = (int32_t)be32(r.p + 1);
            r.p += 5;
        } else {
            return 0;
        }
        if (!((v >= 32 && v <= 126) || cnode__insp_escape_char((uint32_t)v)))
            return 0;
        if (out)
            out[i] = (unsigned char)v;
    }
    return need(&r, 1) && *r.p == 106;
}

static int
keyword_items(rd *r, cnode__sb *o, uint32_t n, long limit)
{
    char name[1024];
    uint32_t i = 0;
    for (; i < n; i++) {
        if (i >= (uint32_t)limit) {
            ellipsis(o, i);
            for (; i < n; i++)
                if (skip_term(r) != 0)
                    return -1;
            return 0;
        }
        if (i)
            cnode__sb_put(o, ", ", 2);
        r->p += 2; /* {_, _} header, checked by keyword_list */
        if (rd_atom(r, name) < 0)
            return -1;
        cnode__inspect_key(o, name);
        if (term(r, o, limit - (long)i - 1) != 0)
            return -1;
    }
    return 0;
}

static int
list(rd *r, cnode__sb *o, uint32_t n, long limit)
{
    unsigned char *chars = n <= 65536 ? malloc(n ? n : 1) : NULL;
    if (chars && ascii_printable_list(*r, n, chars)) {
        cnode__insp_string(o, chars, n, '\'');
        free(chars);
        for (uint32_t i = 0; i <= n; i++)
            if (skip_term(r) != 0)
                return -1;
        return 0;
    }
    free(chars);
    cnode__sb_put(o, "[", 1);
    if (keyword_list(*r, n)) {
        if (keyword_items(r, o, n, limit) != 0)
            return -1;
        if (skip_term(r) != 0) /* the [] tail */
            return -1;
        cnode__sb_put(o, "]", 1);
        return 0;
    }
    uint32_t i = 0;
    for (; i < n; i++) {
        if (i >= (uint32_t)limit) {
            ellipsis(o, i);
            for (; i <= n; i++)
                if (skip_term(r) != 0)
                    return -1;
            cnode__sb_put(o, "]", 1);
            return 0;
        }
        if (i)
            cnode__sb_put(o, ", ", 2);
        if (term(r, o, limit - (long)i - 1) != 0)
            return -1;
    }
    if (need(r, 1) && *r->p == 106) {
        r->p++;
    } else {
        cnode__sb_put(o, " | ", 3);
        if (term(r, o, limit - (long)i - 1) != 0)
            return -1;
    }
    cnode__sb_put(o, "]", 1);
    return 0;
}

static int
tuple(rd *r, cnode__sb *o, uint32_t n, long limit)
{
    cnode__sb_put(o, "{", 1);
    for (uint32_t i = 0; i < n; i++) {
        if (i >= (uint32_t)limit) {
            ellipsis(o, i);
            for (; i < n; i++)
                if (skip_term(r) != 0)
                    return -1;
            break;
        }
        if (i)
            cnode__sb_put(o, ", ", 2);
        if (term(r, o, limit - (long)i - 1) != 0)
            return -1;
    }
    cnode__sb_put(o, "}", 1);
    return 0;
}

/* The map's __struct__ module if it is a struct (an atom value); "" else. */
static void
struct_name(rd r, uint32_t n, char *mod)
{
    char k[1024];
    mod[0] = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (need(&r, 1) && is_atom_tag(*r.p)) {
            long len = rd_atom(&r, k);
            if (len < 0)
                return;
            if (strcmp(k, "__struct__") == 0) {
                if (need(&r, 1) && is_atom_tag(*r.p) && rd_atom(&r, mod) < 0)
                    mod[0] = 0;
                return;
            }
        } else if (skip_term(&r) != 0) {
            return;
        }
        if (skip_term(&r) != 0)
            return;
    }
}

/* Every key an atom not starting with "Elixir." (keyword style). */
static int
atom_keys(rd r, uint32_t n)
{
    char k[1024];
    for (uint32_t i = 0; i < n; i++) {
        if (!need(&r, 1) || !is_atom_tag(*r.p))
            return 0;
        long len = rd_atom(&r, k);
        if (len < 0 || (len >= 7 && memcmp(k, "Elixir.", 7) == 0))
            return 0;
        if (skip_term(&r) != 0)
            return 0;
    }
    return 1;
}

static int
map(rd *r, cnode__sb *o, uint32_t n, long limit)
{
    char mod[1024], k[1024];
    struct_name(*r, n, mod);
    int is_struct = mod[0] != 0;
    if (is_struct) {
        cnode__sb_put(o, "%", 1);
        size_t ml = strlen(mod);
        if (cnode__insp_alias(mod, ml))
            cnode__sb_put(o, mod + 7, ml - 7);
        else
            cnode__inspect_atom(o, mod, ml);
        cnode__sb_put(o, "{", 1);
    } else {
        cnode__sb_put(o, "%{", 2);
    }
    int kw = is_struct || atom_keys(*r, n);
    uint32_t shown = 0;
    for (uint32_t i = 0; i < n; i++) {
        rd at = *r;
        if (is_struct && need(r, 1) && is_atom_tag(*r->p)) {
            if (rd_atom(&at, k) >= 0 && (strcmp(k, "__struct__") == 0 || strcmp(k, "__exception__") == 0)) {
                if (skip_term(r) != 0 || skip_term(r) != 0)
                    return -1;
                continue;
            }
        }
        if (shown >= (uint32_t)limit) {
            ellipsis(o, shown);
            for (; i < n; i++)
                if (skip_term(r) != 0 || skip_term(r) != 0)
                    return -1;
            break;
        }
        if (shown)
            cnode__sb_put(o, ", ", 2);
        if (kw && need(r, 1) && is_atom_tag(*r->p)) {
            if (rd_atom(r, k) < 0)
                return -1;
            cnode__inspect_key(o, k);
        } else {
            if (term(r, o, limit - (long)shown - 1) != 0)
                return -1;
            cnode__sb_put(o, " => ", 4);
        }
        if (term(r, o, limit - (long)shown - 1) != 0)
            return -1;
        shown++;
    }
    cnode__sb_put(o, "}", 1);
    return 0;
}

static int
binary(cnode__sb *o, const unsigned char *d, size_t n, unsigned lastbits, long limit)
{
    if (lastbits == 8 && cnode__insp_printable(d, n)) {
        cnode__insp_string(o, d, n, '"');
        return 0;
    }
    cnode__sb_put(o, "<<", 2);
    size_t i = 0;
    for (; i < n; i++) {
        if (i >= (size_t)limit) {
            ellipsis(o, i);
            break;
        }
        if (i)
            cnode__sb_put(o, ", ", 2);
        unsigned v = d[i];
        if (i + 1 == n && lastbits != 8)
            cnode__sb_fmt(o, "%u::size(%u)", v >> (8 - lastbits), lastbits);
        else
            cnode__sb_fmt(o, "%u", v);
    }
    cnode__sb_put(o, ">>", 2);
    return 0;
}

/* Pid, port and reference: the node atom, then numbers. */
static int
ident(rd *r, cnode__sb *o, unsigned tag)
{
    char node[1024];
    if (tag == 90 || tag == 114 || tag == 101) {
        unsigned nid = 1;
        if (tag != 101) {
            if (!need(r, 2))
                return -1;
            nid = be16(r->p);
            r->p += 2;
        }
        if (rd_atom(r, node) < 0)
            return -1;
        size_t cr = tag == 90 ? 4 : 1;
        if (!need(r, cr + (size_t)nid * 4))
            return -1;
        r->p += cr;
        cnode__sb_fmt(o, "#Reference<%s", node);
        for (unsigned i = nid; i > 0; i--)
            cnode__sb_fmt(o, ".%u", be32(r->p + (i - 1) * 4));
        r->p += (size_t)nid * 4;
        cnode__sb_put(o, ">", 1);
        return 0;
    }
    if (rd_atom(r, node) < 0)
        return -1;
    if (tag == 88 || tag == 103) {
        size_t cr = tag == 88 ? 4 : 1;
        if (!need(r, 8 + cr))
            return -1;
        cnode__sb_fmt(o, "#PID<%s.%u.%u>", node, be32(r->p), be32(r->p + 4));
        r->p += 8 + cr;
        return 0;
    }
    if (tag == 120) {
        if (!need(r, 12))
            return -1;
        cnode__sb_fmt(o, "#Port<%s.%llu>", node, (unsigned long long)be32(r->p) << 32 | be32(r->p + 4));
        r->p += 12;
        return 0;
    }
    size_t cr = tag == 89 ? 4 : 1;
    if (!need(r, 4 + cr))
        return -1;
    cnode__sb_fmt(o, "#Port<%s.%u>", node, be32(r->p));
    r->p += 4 + cr;
    return 0;
}

static int
fun(rd *r, cnode__sb *o, unsigned tag)
{
    char mod[1024], name[1024];
    if (tag == 113) { /* EXPORT_EXT: &Mod.fun/arity */
        if (rd_atom(r, mod) < 0 || rd_atom(r, name) < 0 || !need(r, 2) || r->p[0] != 97)
            return -1;
        cnode__sb_put(o, "&", 1);
        cnode__inspect_atom(o, mod, strlen(mod));
        cnode__sb_put(o, ".", 1);
        cnode__sb_str(o, name);
        cnode__sb_fmt(o, "/%u", r->p[1]);
        r->p += 2;
        return 0;
    }
    /* NEW_FUN_EXT: Size, Arity, Uniq[16], Index, NumFree, Module, OldIndex, OldUniq, Pid, Free... */
    const unsigned char *start = r->p - 1;
    if (!need(r, 4 + 1 + 16 + 4 + 4))
        return -1;
    uint32_t size = be32(r->p);
    unsigned arity = r->p[4];
    uint32_t index = be32(r->p + 21);
    r->p += 29;
    if (rd_atom(r, mod) < 0)
        return -1;
    long olduniq = 0;
    for (int k = 0; k < 2; k++) { /* OldIndex, OldUniq: small or 32-bit integers */
        if (need(r, 2) && r->p[0] == 97) {
            olduniq = r->p[1];
            r->p += 2;
        } else if (need(r, 5) && r->p[0] == 98) {
            olduniq = (int32_t)be32(r->p + 1);
            r->p += 5;
        } else {
            return -1;
        }
    }
    cnode__sb_fmt(o, "#Function<%u.%ld/%u in ", index, olduniq, arity);
    cnode__inspect_atom(o, mod, strlen(mod));
    cnode__sb_put(o, ">", 1);
    if (size < 1 || start + 1 + size > r->end)
        return -1;
    r->p = start + 1 + size; /* Size counts itself and everything after the tag */
    return 0;
}

static int
term(rd *r, cnode__sb *o, long limit)
{
    if (!need(r, 1))
        return -1;
    unsigned tag = *r->p;
    if (is_atom_tag(tag)) {
        char name[1024];
        long n = rd_atom(r, name);
        if (n < 0)
            return -1;
        cnode__inspect_atom(o, name, (size_t)n);
        return 0;
    }
    r->p++;
    switch (tag) {
    case 97:
        if (!need(r, 1))
            return -1;
        cnode__sb_fmt(o, "%u", *r->p++);
        return 0;
    case 98:
        if (!need(r, 4))
            return -1;
        cnode__sb_fmt(o, "%d", (int32_t)be32(r->p));
        r->p += 4;
        return 0;
    case 110:
    case 111: {
        size_t n;
        if (tag == 110) {
            if (!need(r, 2))
                return -1;
            n = r->p[0];
            r->p++;
        } else {
            if (!need(r, 5))
                return -1;
            n = be32(r->p);
            r->p += 4;
        }
        int neg = *r->p++;
        if (!need(r, n))
            return -1;
        cnode__insp_big(o, r->p, n, neg);
        r->p += n;
        return 0;
    }
    case 70: {
        if (!need(r, 8))
            return -1;
        uint64_t bits = (uint64_t)be32(r->p) << 32 | be32(r->p + 4);
        double d;
        memcpy(&d, &bits, sizeof d);
        r->p += 8;
        cnode__insp_float(o, d);
        return 0;
    }
    case 99: {
        if (!need(r, 31))
            return -1;
        char txt[32];
        memcpy(txt, r->p, 31);
        txt[31] = 0;
        r->p += 31;
        cnode__insp_float(o, strtod(txt, NULL));
        return 0;
    }
    case 104:
        if (!need(r, 1))
            return -1;
        return tuple(r, o, *r->p++, limit);
    case 105: {
        if (!need(r, 4))
            return -1;
        uint32_t n = be32(r->p);
        r->p += 4;
        return tuple(r, o, n, limit);
    }
    case 106:
        cnode__sb_put(o, "[]", 2);
        return 0;
    case 107: { /* a list of bytes */
        if (!need(r, 2))
            return -1;
        unsigned n = be16(r->p);
        r->p += 2;
        if (!need(r, n))
            return -1;
        const unsigned char *s = r->p;
        r->p += n;
        int printable = 1;
        for (unsigned i = 0; i < n && printable; i++)
            printable = (s[i] >= 32 && s[i] <= 126) || cnode__insp_escape_char(s[i]);
        if (printable) {
            cnode__insp_string(o, s, n, '\'');
            return 0;
        }
        cnode__sb_put(o, "[", 1);
        for (unsigned i = 0; i < n; i++) {
            if (i >= (unsigned)limit) {
                ellipsis(o, i);
                break;
            }
            cnode__sb_fmt(o, "%s%u", i ? ", " : "", s[i]);
        }
        cnode__sb_put(o, "]", 1);
        return 0;
    }
    case 108: {
        if (!need(r, 4))
            return -1;
        uint32_t n = be32(r->p);
        r->p += 4;
        return list(r, o, n, limit);
    }
    case 109:
    case 77: {
        if (!need(r, tag == 77 ? 5 : 4))
            return -1;
        uint32_t n = be32(r->p);
        unsigned bits = 8;
        r->p += 4;
        if (tag == 77)
            bits = *r->p++;
        if (!need(r, n) || bits < 1 || bits > 8)
            return -1;
        const unsigned char *d = r->p;
        r->p += n;
        return binary(o, d, n, bits, limit);
    }
    case 116: {
        if (!need(r, 4))
            return -1;
        uint32_t n = be32(r->p);
        r->p += 4;
        return map(r, o, n, limit);
    }
    case 88:
    case 103:
    case 89:
    case 102:
    case 120:
    case 90:
    case 114:
    case 101:
        return ident(r, o, tag);
    case 112:
    case 113:
        return fun(r, o, tag);
    default:
        return -1;
    }
}

int
cnode__inspect_term(cnode__sb *s, const char *t, size_t len)
{
    ptrdiff_t ext = cnode__term_extent(t, len, &cnode__term_limits_default, NULL);
    if (ext <= 0 || (size_t)ext != len)
        return -1;
    rd r = {(const unsigned char *)t, (const unsigned char *)t + len};
    return term(&r, s, LIMIT);
}

int
cnode_rpc_inspect(const char *buf, size_t len, char *out, size_t cap)
{
    if (!buf || !out || cap < 4 || len == 0)
        return CNODE_EINVAL;
    if ((unsigned char)buf[0] == 131) {
        buf++;
        len--;
    }
    cnode__sb s;
    cnode__sb_init(&s, out, cap);
    if (cnode__inspect_term(&s, buf, len) != 0) {
        out[0] = 0;
        return CNODE_EINVAL;
    }
    cnode__sb_finish(&s);
    return 0;
}
