/* Elixir 1.14's inspect/1 over the external term format, as EasyRpc's
 * messages and log lines print values (seed-behaviour.md B5, B6).
 *
 * A term is first walked whole by the shared reader (ei_glue/reader.h), then
 * printed through the same reader's functions. The limits
 * are inspect's defaults: a collection prints at most `limit` elements
 * (50 at the top; element i of a collection gets limit - i - 1, as
 * Inspect.Algebra.container_doc hands them down), a printable binary or
 * charlist at most 4096 characters (inspect_text.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode_balancer.h"
#include "ei_glue/reader.h"
#include "term/inspect.h"

#define LIMIT 50

/* ---- reads: the whole term was walked (cnode__rd_skip) before any of these ---- */

typedef cnode__rd rd;

static int
skip_term(rd *r)
{
    return cnode__rd_skip(r, NULL) == 0 ? 0 : -1;
}

/* An atom's text as UTF-8 into buf (>= 1024 bytes); its length, or -1. */
static long
rd_atom(rd *r, char *buf)
{
    cnode__atom a;
    if (cnode__rd_atom(r, &a) != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < a.n; i++) {
        if (a.latin1)
            o += cnode__utf8_put((unsigned char *)buf + o, a.s[i]);
        else
            buf[o++] = (char)a.s[i];
    }
    buf[o] = 0;
    return (long)o;
}

static int
is_atom_tag(int tag)
{
    return tag == T_ATOM || tag == T_SMALL_ATOM || tag == T_ATOM_UTF8 || tag == T_SMALL_ATOM_UTF8;
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
        uint32_t arity;
        if (cnode__rd_tag(&r) != T_SMALL_TUPLE || cnode__rd_tuple(&r, &arity) != 0 || arity != 2 || !is_atom_tag(cnode__rd_tag(&r)))
            return 0;
        long len = rd_atom(&r, name);
        if (len < 0 || (len >= 7 && memcmp(name, "Elixir.", 7) == 0))
            return 0;
        if (skip_term(&r) != 0)
            return 0;
    }
    return cnode__rd_tag(&r) == T_NIL;
}

/* List elements as a charlist, if they all are ASCII printable (List.ascii_printable?). */
static int
ascii_printable_list(rd r, uint32_t n, unsigned char *out)
{
    for (uint32_t i = 0; i < n; i++) {
        int64_t v;
        cnode__int x;
        int tag = cnode__rd_tag(&r);
        if ((tag != T_SMALL_INT && tag != T_INT) || cnode__rd_int(&r, &x) != 0 || !cnode__int_small(&x, &v))
            return 0;
        if (!((v >= 32 && v <= 126) || (v >= 0 && cnode__insp_escape_char((uint32_t)v))))
            return 0;
        if (out)
            out[i] = (unsigned char)v;
    }
    return cnode__rd_tag(&r) == T_NIL;
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
        r->pos += 2; /* {_, _} header, checked by keyword_list */
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
    if (cnode__rd_tag(r) == T_NIL) {
        r->pos++;
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
        if (is_atom_tag(cnode__rd_tag(&r))) {
            long len = rd_atom(&r, k);
            if (len < 0)
                return;
            if (strcmp(k, "__struct__") == 0) {
                if (is_atom_tag(cnode__rd_tag(&r)) && rd_atom(&r, mod) < 0)
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
        if (!is_atom_tag(cnode__rd_tag(&r)))
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
        if (is_struct && is_atom_tag(cnode__rd_tag(r))) {
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
        if (kw && is_atom_tag(cnode__rd_tag(r))) {
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
ident(rd *r, cnode__sb *o)
{
    char node[1024];
    cnode__ident id;
    rd at = *r;
    at.pos += cnode__rd_tag(r) == T_NEW_REF || cnode__rd_tag(r) == T_NEWER_REF ? 3 : 1;
    if (cnode__rd_ident(r, &id) != 0 || rd_atom(&at, node) < 0)
        return -1;
    switch (id.tag) {
    case T_NEW_PID:
    case T_PID:
        cnode__sb_fmt(o, "#PID<%s.%u.%u>", node, id.words[0], id.words[1]);
        return 0;
    case T_V4_PORT:
        cnode__sb_fmt(o, "#Port<%s.%llu>", node, (unsigned long long)id.words[1] << 32 | id.words[0]);
        return 0;
    case T_NEW_PORT:
    case T_PORT:
        cnode__sb_fmt(o, "#Port<%s.%u>", node, id.words[0]);
        return 0;
    default:
        cnode__sb_fmt(o, "#Reference<%s", node);
        for (unsigned i = id.nwords; i > 0; i--)
            cnode__sb_fmt(o, ".%u", id.words[i - 1]);
        cnode__sb_put(o, ">", 1);
        return 0;
    }
}

static int
fun(rd *r, cnode__sb *o)
{
    char mod[1024], name[1024];
    if (cnode__rd_tag(r) == T_EXPORT) { /* &Mod.fun/arity */
        cnode__atom m, f;
        uint32_t arity;
        rd at = *r;
        at.pos++;
        if (cnode__rd_export(r, &m, &f, &arity) != 0 || rd_atom(&at, mod) < 0 || rd_atom(&at, name) < 0)
            return -1;
        cnode__sb_put(o, "&", 1);
        cnode__inspect_atom(o, mod, strlen(mod));
        cnode__sb_put(o, ".", 1);
        cnode__sb_str(o, name);
        cnode__sb_fmt(o, "/%u", arity);
        return 0;
    }
    /* NEW_FUN_EXT: Size, Arity, Uniq[16], Index, NumFree, Module, OldIndex, OldUniq, Pid, Free... */
    rd whole = *r;
    cnode__fun f;
    cnode__int old[2];
    int64_t olduniq;
    if (skip_term(&whole) != 0 || cnode__rd_fun(r, &f) != 0 || rd_atom(r, mod) < 0 || cnode__rd_int(r, &old[0]) != 0 ||
        cnode__rd_int(r, &old[1]) != 0 || !cnode__int_small(&old[1], &olduniq))
        return -1;
    cnode__sb_fmt(o, "#Function<%u.%lld/%u in ", f.index, (long long)olduniq, f.arity);
    cnode__inspect_atom(o, mod, strlen(mod));
    cnode__sb_put(o, ">", 1);
    *r = whole;
    return 0;
}

/* A list of bytes (STRING_EXT). */
static int
string(rd *r, cnode__sb *o, long limit)
{
    const unsigned char *s;
    size_t n;
    if (cnode__rd_string(r, &s, &n) != 0)
        return -1;
    int printable = 1;
    for (size_t i = 0; i < n && printable; i++)
        printable = (s[i] >= 32 && s[i] <= 126) || cnode__insp_escape_char(s[i]);
    if (printable) {
        cnode__insp_string(o, s, n, '\'');
        return 0;
    }
    cnode__sb_put(o, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i >= (size_t)limit) {
            ellipsis(o, i);
            break;
        }
        cnode__sb_fmt(o, "%s%u", i ? ", " : "", s[i]);
    }
    cnode__sb_put(o, "]", 1);
    return 0;
}

static int
term(rd *r, cnode__sb *o, long limit)
{
    int tag = cnode__rd_tag(r);
    uint32_t n;
    if (is_atom_tag(tag)) {
        char name[1024];
        long len = rd_atom(r, name);
        if (len < 0)
            return -1;
        cnode__inspect_atom(o, name, (size_t)len);
        return 0;
    }
    switch (tag) {
    case T_SMALL_INT:
    case T_INT:
    case T_SMALL_BIG:
    case T_LARGE_BIG: {
        cnode__int v;
        int64_t x;
        if (cnode__rd_int(r, &v) != 0)
            return -1;
        if (cnode__int_small(&v, &x))
            cnode__sb_fmt(o, "%lld", (long long)x);
        else
            cnode__insp_big(o, v.mag, v.n, v.neg);
        return 0;
    }
    case T_NEW_FLOAT:
    case T_FLOAT: {
        double d;
        if (cnode__rd_float(r, &d) != 0)
            return -1;
        cnode__insp_float(o, d);
        return 0;
    }
    case T_SMALL_TUPLE:
    case T_LARGE_TUPLE:
        return cnode__rd_tuple(r, &n) != 0 ? -1 : tuple(r, o, n, limit);
    case T_NIL:
        r->pos++;
        cnode__sb_put(o, "[]", 2);
        return 0;
    case T_STRING:
        return string(r, o, limit);
    case T_LIST:
        return cnode__rd_list(r, &n) != 0 ? -1 : list(r, o, n, limit);
    case T_BINARY:
    case T_BIT_BINARY: {
        const unsigned char *d;
        size_t len;
        unsigned bits;
        if (cnode__rd_bits(r, &d, &len, &bits) != 0)
            return -1;
        return binary(o, d, len, bits, limit);
    }
    case T_MAP:
        return cnode__rd_map(r, &n) != 0 ? -1 : map(r, o, n, limit);
    case T_NEW_PID:
    case T_PID:
    case T_NEW_PORT:
    case T_PORT:
    case T_V4_PORT:
    case T_NEWER_REF:
    case T_NEW_REF:
    case T_REF:
        return ident(r, o);
    case T_NEW_FUN:
    case T_EXPORT:
        return fun(r, o);
    default:
        return -1;
    }
}

int
cnode__inspect_term(cnode__sb *s, const char *t, size_t len)
{
    rd r = cnode__rd_at(t, len);
    if (cnode__rd_skip(&r, NULL) != 0 || r.pos != len)
        return -1;
    r.pos = 0;
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
