/* term/print.c: cnode_term_print, an encoded term as io_lib:format("~0p", [T]). */
#include "term/text.h"

static int
printable_latin1(unsigned c)
{
    return (c >= 32 && c <= 126) || (c >= 160 && c <= 255) || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\b' ||
           c == '\f' || c == 27;
}

static int pr_term(sbuf *o, rd *r, unsigned depth);

/* A list element that is an integer, read as a character (or not). */
static int
element_char(rd *r, unsigned *c)
{
    cnode__int v;
    int64_t x;
    if (cnode__rd_int(r, &v) || !cnode__int_small(&v, &x) || x < 0 || x > 255)
        return 0;
    *c = (unsigned)x;
    return 1;
}

/* io_lib:printable_latin1_list/1 over the whole (flat, proper) list. */
static int
list_printable(const rd *r)
{
    lit it = {*r, 0, 0};
    unsigned c, count = 0;
    for (;;) {
        switch (lit_next(&it, &c)) {
        case LI_TERM:
            if (!need(&it.r, 1) || (it.r.b[it.r.pos] != T_SMALL_INT && it.r.b[it.r.pos] != T_INT &&
                                    it.r.b[it.r.pos] != T_SMALL_BIG && it.r.b[it.r.pos] != T_LARGE_BIG))
                return 0;
            if (!element_char(&it.r, &c))
                return 0;
            /* fall through */
        case LI_BYTE:
            if (!printable_latin1(c))
                return 0;
            count++;
            break;
        case LI_END:
            return count > 0;
        default:
            return 0;
        }
    }
}

static int
pr_list(sbuf *o, rd *r, unsigned depth)
{
    lit it = {*r, 0, 0};
    unsigned c;
    int k, first = 1;
    if (list_printable(r)) {
        sb_c(o, '"');
        while ((k = lit_next(&it, &c)) != LI_END) {
            if (k == LI_BAD || k == LI_TAIL || (k == LI_TERM && !element_char(&it.r, &c)))
                return -1;
            put_quoted_char(o, c, '"');
        }
        sb_c(o, '"');
        *r = it.r;
        return 0;
    }
    sb_c(o, '[');
    for (;;) {
        k = lit_next(&it, &c);
        if (k == LI_END)
            break;
        if (k == LI_BAD)
            return -1;
        if (!first || k == LI_TAIL)
            sb_c(o, k == LI_TAIL ? '|' : ',');
        first = 0;
        if (k == LI_BYTE)
            sb_u64(o, c);
        else if (pr_term(o, &it.r, depth + 1))
            return -1;
        if (k == LI_TAIL)
            break;
    }
    sb_c(o, ']');
    *r = it.r;
    return 0;
}

static int
pr_tuple(sbuf *o, rd *r, unsigned depth)
{
    const unsigned char *p = r->b + r->pos;
    size_t hdr = p[0] == T_SMALL_TUPLE ? 2 : 5;
    if (!need(r, hdr))
        return -1;
    size_t n = hdr == 2 ? p[1] : cnode__be32(p + 1);
    r->pos += hdr;
    sb_c(o, '{');
    for (size_t i = 0; i < n; i++) {
        if (i)
            sb_c(o, ',');
        if (pr_term(o, r, depth + 1))
            return -1;
    }
    sb_c(o, '}');
    return 0;
}

/* Up to 32 keys BEAM keeps a map sorted and prints it so; above that it
 * prints a hash-ordered map in the reverse of term_to_binary's order. */
static int
pr_map(sbuf *o, rd *r, unsigned depth)
{
    pair *p;
    size_t n;
    if (map_pairs(r, &p, &n))
        return -1;
    int res = 0;
    if (n <= FLATMAP_MAX) {
        res = sort_pairs(r->b, r->len, p, n, depth);
    } else {
        for (size_t i = 0; i < n / 2; i++) {
            pair t = p[i];
            p[i] = p[n - 1 - i];
            p[n - 1 - i] = t;
        }
    }
    sb_s(o, "#{");
    for (size_t i = 0; i < n && res == 0; i++) {
        rd k = {r->b, r->len, p[i].k}, v = {r->b, r->len, p[i].v};
        if (i)
            sb_c(o, ',');
        res = pr_term(o, &k, depth + 1);
        sb_s(o, " => ");
        if (res == 0)
            res = pr_term(o, &v, depth + 1);
    }
    sb_c(o, '}');
    free(p);
    return res;
}

static int
pr_bits(sbuf *o, rd *r)
{
    const unsigned char *d;
    size_t n;
    unsigned bits;
    if (cnode__rd_bits(r, &d, &n, &bits))
        return -1;
    size_t whole = bits == 8 ? n : n - 1;
    int printable = bits == 8 && n > 0;
    for (size_t i = 0; i < n && printable; i++)
        printable = printable_latin1(d[i]);
    if (printable) {
        sb_s(o, "<<\"");
        for (size_t i = 0; i < n; i++)
            put_quoted_char(o, d[i], '"');
        sb_s(o, "\">>");
        return 0;
    }
    sb_s(o, "<<");
    for (size_t i = 0; i < whole; i++) {
        if (i)
            sb_c(o, ',');
        sb_u64(o, d[i]);
    }
    if (bits != 8) {
        if (whole)
            sb_c(o, ',');
        sb_u64(o, (unsigned)d[n - 1] >> (8 - bits));
        sb_c(o, ':');
        sb_u64(o, bits);
    }
    sb_s(o, ">>");
    return 0;
}

/* <node@host.Id.Serial>, #Ref<node@host.Idn...Id0>, #Port<node@host.Id>: the
 * node's name stands where BEAM prints its local node index. */
static int
pr_ident(sbuf *o, rd *r)
{
    cnode__ident id;
    if (cnode__rd_ident(r, &id))
        return -1;
    int pid = id.tag == T_PID || id.tag == T_NEW_PID;
    int port = id.tag == T_PORT || id.tag == T_NEW_PORT || id.tag == T_V4_PORT;
    sb_s(o, pid ? "<" : port ? "#Port<" : "#Ref<");
    rd node = cnode__rd_at(id.node.s, id.node.n);
    for (size_t i = 0; i < node.len;) {
        uint32_t c = node.b[i];
        size_t k = id.node.latin1 ? 1 : cnode__utf8_get(node.b + i, node.len - i, &c);
        sb_cp(o, c);
        i += k;
    }
    if (pid) {
        sb_c(o, '.');
        sb_u64(o, id.words[0]);
        sb_c(o, '.');
        sb_u64(o, id.words[1]);
    } else if (port) {
        sb_c(o, '.');
        sb_u64(o, id.tag == T_V4_PORT ? (uint64_t)id.words[1] << 32 | id.words[0] : id.words[0]);
    } else {
        for (unsigned i = id.nwords; i-- > 0;) {
            sb_c(o, '.');
            sb_u64(o, id.words[i]);
        }
    }
    sb_c(o, '>');
    return 0;
}

static int
pr_small_int(sbuf *o, rd *r)
{
    cnode__int v;
    int64_t x;
    if (cnode__rd_int(r, &v) || !cnode__int_small(&v, &x))
        return -1;
    sb_i64(o, x);
    return 0;
}

/* #Fun<Module.OldIndex.OldUniq>, as erts prints a local fun; fun M:F/A. */
static int
pr_fun(sbuf *o, rd *r)
{
    atomtxt m, f;
    if (r->b[r->pos] == T_EXPORT) {
        cnode__atom ma, fa;
        uint32_t arity;
        rd at = *r;
        at.pos++;
        if (cnode__rd_export(r, &ma, &fa, &arity) || rd_atom(&at, &m) || rd_atom(&at, &f))
            return -1;
        sb_s(o, "fun ");
        put_erts_atom(o, &m);
        sb_c(o, ':');
        put_erts_atom(o, &f);
        sb_c(o, '/');
        sb_u64(o, arity);
        return 0;
    }
    rd whole = *r;
    cnode__fun fun;
    if (skip_term(&whole) || cnode__rd_fun(r, &fun) || rd_atom(r, &m))
        return -1;
    sb_s(o, "#Fun<");
    unsigned char s[4];
    for (unsigned i = 0; i < m.n; i++) /* erts writes the name's bytes; io_lib sees each byte as a character */
        for (size_t j = 0, k = cnode__utf8_put(s, m.cp[i]); j < k; j++)
            sb_cp(o, s[j]);
    sb_c(o, '.');
    if (pr_small_int(o, r))
        return -1;
    sb_c(o, '.');
    if (pr_small_int(o, r))
        return -1;
    sb_c(o, '>');
    *r = whole;
    return 0;
}

static int
pr_term(sbuf *o, rd *r, unsigned depth)
{
    if (depth > PRINT_MAX_DEPTH)
        return -1;
    skip_empty_list_headers(r);
    if (!need(r, 1))
        return -1;
    switch (r->b[r->pos]) {
    case T_SMALL_INT:
    case T_INT:
    case T_SMALL_BIG:
    case T_LARGE_BIG: {
        cnode__int v;
        if (cnode__rd_int(r, &v))
            return -1;
        return put_bigint(o, &v);
    }
    case T_NEW_FLOAT:
    case T_FLOAT: {
        double d;
        if (cnode__rd_float(r, &d))
            return -1;
        put_float(o, d);
        return 0;
    }
    case T_ATOM:
    case T_SMALL_ATOM:
    case T_ATOM_UTF8:
    case T_SMALL_ATOM_UTF8: {
        atomtxt a;
        if (rd_atom(r, &a))
            return -1;
        put_atom(o, &a);
        return 0;
    }
    case T_SMALL_TUPLE:
    case T_LARGE_TUPLE:
        return pr_tuple(o, r, depth);
    case T_MAP:
        return pr_map(o, r, depth);
    case T_NIL:
        r->pos++;
        sb_s(o, "[]");
        return 0;
    case T_STRING:
    case T_LIST:
        return pr_list(o, r, depth);
    case T_BINARY:
    case T_BIT_BINARY:
        return pr_bits(o, r);
    case T_PID:
    case T_NEW_PID:
    case T_REF:
    case T_NEW_REF:
    case T_NEWER_REF:
    case T_PORT:
    case T_NEW_PORT:
    case T_V4_PORT:
        return pr_ident(o, r);
    case T_NEW_FUN:
    case T_EXPORT:
        return pr_fun(o, r);
    default:
        return -1;
    }
}

int
cnode_term_print(const char *buf, size_t len, char **out, cnode_error *err)
{
    if (!buf || !out)
        return term_fail(err, CNODE_EINVAL, "no term or no output pointer");
    *out = NULL;
    const unsigned char *b = (const unsigned char *)buf;
    if (len > 0 && b[0] == 131) {
        b++;
        len--;
    }
    rd all = cnode__rd_at(b, len);
    int rc = len == 0 ? (int)CNODE__NEED_MORE : cnode__rd_skip(&all, NULL);
    if (rc != 0)
        return term_fail(err, CNODE_EBADMSG, "%s", rc == (int)CNODE__NEED_MORE ? "term: ends early" : all.why);
    if (all.pos != len)
        return term_fail(err, CNODE_EBADMSG, "term: %zu bytes after the term", len - all.pos);
    sbuf o = {0};
    rd r = cnode__rd_at(b, len);
    int res = pr_term(&o, &r, 0);
    sb_c(&o, 0);
    if (res || r.pos != len || o.oom) {
        free(o.p);
        return o.oom ? term_fail(err, CNODE_ENOMEM, "out of memory printing the term")
                     : term_fail(err, CNODE_EBADMSG, "term: a part the printer cannot write");
    }
    *out = o.p;
    return 0;
}
