/* term/order.c: reading encoded terms for the text code (over the shared reader) and
 * Erlang's term order (map keys print sorted; the parser finds duplicate keys). */
#include "term/text.h"

/* ---- reading, through the shared reader (ei_glue/reader.h) --------------------------------------------------- */

/* Past one whole term, every rule checked. */
int
skip_term(rd *r)
{
    return cnode__rd_skip(r, NULL) == 0 ? 0 : -1;
}

/* LIST_EXT with no elements is just its tail. */
void
skip_empty_list_headers(rd *r)
{
    while (need(r, 5) && r->b[r->pos] == T_LIST && cnode__be32(r->b + r->pos + 1) == 0)
        r->pos += 5;
}

/* The atom at r->pos as code points; -1 if not an atom, not UTF-8 or too long. */
int
rd_atom(rd *r, atomtxt *a)
{
    cnode__atom at;
    if (cnode__rd_atom(r, &at) != 0)
        return -1;
    a->n = 0;
    for (size_t i = 0; i < at.n;) {
        uint32_t c = at.s[i];
        size_t k = at.latin1 ? 1 : cnode__utf8_get(at.s + i, at.n - i, &c);
        a->cp[a->n++] = c; /* the reader proved at most 255 characters */
        i += k;
    }
    return 0;
}

/* LI_TERM: an element at it->r.pos, the caller reads or skips it.
 * LI_BYTE: an element *byte of a STRING_EXT. LI_END: proper end, consumed.
 * LI_TAIL: an improper tail at it->r.pos. */
int
lit_next(lit *it, unsigned *byte)
{
    for (;;) {
        if (it->left > 0) {
            it->left--;
            if (!it->in_string)
                return LI_TERM;
            if (!need(&it->r, 1))
                return LI_BAD;
            *byte = it->r.b[it->r.pos++];
            return LI_BYTE;
        }
        if (it->in_string)
            return LI_END;
        if (!need(&it->r, 1))
            return LI_BAD;
        const unsigned char *p = it->r.b + it->r.pos;
        switch (p[0]) {
        case T_NIL:
            it->r.pos++;
            it->in_string = 1; /* ended: any further call says LI_END */
            return LI_END;
        case T_STRING:
            if (!need(&it->r, 3) || !need(&it->r, 3 + cnode__be16(p + 1)))
                return LI_BAD;
            it->left = cnode__be16(p + 1);
            it->in_string = 1;
            it->r.pos += 3;
            break;
        case T_LIST:
            if (!need(&it->r, 5))
                return LI_BAD;
            it->left = cnode__be32(p + 1);
            it->r.pos += 5;
            break;
        default:
            return LI_TAIL;
        }
    }
}

/* ---- term order (map keys print sorted; the parser finds duplicate keys) --------------------------------------- */

static int
term_class(const rd *r)
{
    if (!need(r, 1))
        return C_BAD;
    switch (r->b[r->pos]) {
    case T_SMALL_INT:
    case T_INT:
    case T_SMALL_BIG:
    case T_LARGE_BIG:
        return C_INT;
    case T_NEW_FLOAT:
    case T_FLOAT:
        return C_FLOAT;
    case T_ATOM:
    case T_SMALL_ATOM:
    case T_ATOM_UTF8:
    case T_SMALL_ATOM_UTF8:
        return C_ATOM;
    case T_REF:
    case T_NEW_REF:
    case T_NEWER_REF:
        return C_REF;
    case T_NEW_FUN:
    case T_FUN:
    case T_EXPORT:
        return C_FUN;
    case T_PORT:
    case T_NEW_PORT:
    case T_V4_PORT:
        return C_PORT;
    case T_PID:
    case T_NEW_PID:
        return C_PID;
    case T_SMALL_TUPLE:
    case T_LARGE_TUPLE:
        return C_TUPLE;
    case T_MAP:
        return C_MAP;
    case T_NIL:
        return C_NIL;
    case T_STRING:
        return need(r, 3) && cnode__be16(r->b + r->pos + 1) == 0 ? C_NIL : C_LIST;
    case T_LIST:
        return C_LIST;
    case T_BINARY:
    case T_BIT_BINARY:
        return C_BITS;
    default:
        return C_BAD;
    }
}

static int cmp_opd(opd *a, opd *b, unsigned depth);

static int
sgn(int64_t d)
{
    return d < 0 ? -1 : d > 0;
}

static int
cmp_ints(const cnode__int *a, const cnode__int *b)
{
    if (a->neg != b->neg)
        return a->neg ? -1 : 1;
    int m = 0;
    if (a->n != b->n)
        m = a->n < b->n ? -1 : 1;
    else
        for (size_t i = a->n; i-- > 0 && m == 0;)
            m = sgn((int64_t)a->mag[i] - (int64_t)b->mag[i]);
    return a->neg ? -m : m;
}

static int
cmp_atoms(const atomtxt *a, const atomtxt *b)
{
    for (unsigned i = 0; i < a->n && i < b->n; i++)
        if (a->cp[i] != b->cp[i])
            return a->cp[i] < b->cp[i] ? -1 : 1;
    return sgn((int64_t)a->n - (int64_t)b->n);
}

static int
cmp_bits(rd *a, rd *b)
{
    const unsigned char *da, *db;
    size_t na, nb;
    unsigned la, lb;
    if (cnode__rd_bits(a, &da, &na, &la) || cnode__rd_bits(b, &db, &nb, &lb))
        return 0;
    uint64_t ba = na ? (uint64_t)(na - 1) * 8 + la : 0, bb = nb ? (uint64_t)(nb - 1) * 8 + lb : 0;
    for (uint64_t i = 0; i < ba && i < bb; i++) {
        unsigned x = da[i / 8] >> (7 - i % 8) & 1, y = db[i / 8] >> (7 - i % 8) & 1;
        if (x != y)
            return x < y ? -1 : 1;
    }
    return ba == bb ? 0 : ba < bb ? -1 : 1;
}

/* The pairs of the MAP_EXT at r->pos, r past it; *out malloc'd (NULL if n is 0). */
int
map_pairs(rd *r, pair **out, size_t *n)
{
    *out = NULL;
    if (!need(r, 5) || r->b[r->pos] != T_MAP)
        return -1;
    size_t cnt = cnode__be32(r->b + r->pos + 1);
    r->pos += 5;
    *n = cnt;
    if (cnt == 0)
        return 0;
    if (cnt > (r->len - r->pos) / 2) /* each key and value takes a byte at least */
        return -1;
    pair *p = malloc(cnt * sizeof *p);
    if (!p)
        return -1;
    for (size_t i = 0; i < cnt; i++) {
        p[i].k = r->pos;
        if (skip_term(r))
            goto bad;
        p[i].v = r->pos;
        if (skip_term(r))
            goto bad;
    }
    *out = p;
    return 0;
bad:
    free(p);
    return -1;
}

/* Maps compare by size, then keys in key order, then values in that order. */
static int
cmp_maps(rd *a, rd *b, unsigned depth)
{
    pair *pa = NULL, *pb = NULL;
    size_t na = 0, nb = 0;
    int res = 0;
    if (map_pairs(a, &pa, &na) || map_pairs(b, &pb, &nb))
        goto done;
    if (na != nb) {
        res = na < nb ? -1 : 1;
        goto done;
    }
    if (sort_pairs(a->b, a->len, pa, na, depth) || sort_pairs(b->b, b->len, pb, nb, depth))
        goto done;
    for (int pass = 0; pass < 2 && res == 0; pass++) {
        for (size_t i = 0; i < na && res == 0; i++) {
            opd x = {{a->b, a->len, pass ? pa[i].v : pa[i].k}, 0, 0};
            opd y = {{b->b, b->len, pass ? pb[i].v : pb[i].k}, 0, 0};
            res = cmp_opd(&x, &y, depth + 1);
        }
    }
done:
    free(pa);
    free(pb);
    return res;
}

static int
cmp_lists(rd *a, rd *b, unsigned depth)
{
    lit ia = {*a, 0, 0}, ib = {*b, 0, 0};
    for (;;) {
        unsigned ba = 0, bb = 0;
        int ka = lit_next(&ia, &ba), kb = lit_next(&ib, &bb);
        if (ka == LI_BAD || kb == LI_BAD)
            return 0;
        int ea = ka == LI_TERM || ka == LI_BYTE, eb = kb == LI_TERM || kb == LI_BYTE;
        if (ea && eb) {
            opd x = {ia.r, ka == LI_BYTE, ba}, y = {ib.r, kb == LI_BYTE, bb};
            int c = cmp_opd(&x, &y, depth + 1);
            if (c)
                return c;
            if ((ka == LI_TERM && skip_term(&ia.r)) || (kb == LI_TERM && skip_term(&ib.r)))
                return 0;
            continue;
        }
        if (ka == LI_TAIL && kb == LI_TAIL) {
            opd x = {ia.r, 0, 0}, y = {ib.r, 0, 0};
            return cmp_opd(&x, &y, depth + 1);
        }
        /* one side ended (nil or a tail that is no list), the other goes on
           (a list) or ended too: decided by class alone */
        int ca = ea ? C_LIST : ka == LI_END ? C_NIL : term_class(&ia.r);
        int cb = eb ? C_LIST : kb == LI_END ? C_NIL : term_class(&ib.r);
        return sgn(ca - cb);
    }
}

static int
cmp_tuples(rd *a, rd *b, unsigned depth)
{
    const unsigned char *p = a->b + a->pos, *q = b->b + b->pos;
    size_t ha = p[0] == T_SMALL_TUPLE ? 2 : 5, hb = q[0] == T_SMALL_TUPLE ? 2 : 5;
    if (!need(a, ha) || !need(b, hb))
        return 0;
    size_t na = ha == 2 ? p[1] : cnode__be32(p + 1), nb = hb == 2 ? q[1] : cnode__be32(q + 1);
    if (na != nb)
        return na < nb ? -1 : 1;
    a->pos += ha;
    b->pos += hb;
    for (size_t i = 0; i < na; i++) {
        opd x = {*a, 0, 0}, y = {*b, 0, 0};
        int c = cmp_opd(&x, &y, depth + 1);
        if (c)
            return c;
        if (skip_term(a) || skip_term(b))
            return 0;
    }
    return 0;
}

/* Pids, ports and refs: node name, then the rest of the encoding bytewise.
 * Funs: the encoding bytewise. Consistent, not BEAM's order within a type. */
static int
cmp_opaque(rd *a, rd *b, int cls)
{
    if (cls != C_FUN) {
        rd x = *a, y = *b;
        size_t skip_a = a->b[a->pos] == T_NEWER_REF || a->b[a->pos] == T_NEW_REF ? 3 : 1;
        size_t skip_b = b->b[b->pos] == T_NEWER_REF || b->b[b->pos] == T_NEW_REF ? 3 : 1;
        atomtxt na, nb;
        if (!need(a, skip_a) || !need(b, skip_b))
            return 0;
        x.pos += skip_a;
        y.pos += skip_b;
        if (rd_atom(&x, &na) || rd_atom(&y, &nb))
            return 0;
        int c = cmp_atoms(&na, &nb);
        if (c)
            return c;
    }
    rd ea = *a, eb = *b;
    if (skip_term(&ea) || skip_term(&eb))
        return 0;
    size_t la = ea.pos - a->pos, lb = eb.pos - b->pos;
    int c = memcmp(a->b + a->pos, b->b + b->pos, la < lb ? la : lb);
    return c ? sgn(c) : sgn((int64_t)la - (int64_t)lb);
}

/* -1, 0, 1; reads only, never moves a or b. Unreadable compares equal. */
static int
cmp_opd(opd *a, opd *b, unsigned depth)
{
    if (depth > PRINT_MAX_DEPTH)
        return 0;
    if (!a->imm)
        skip_empty_list_headers(&a->r);
    if (!b->imm)
        skip_empty_list_headers(&b->r);
    int ca = a->imm ? C_INT : term_class(&a->r), cb = b->imm ? C_INT : term_class(&b->r);
    if (ca != cb)
        return sgn(ca - cb);
    rd x = a->r, y = b->r;
    switch (ca) {
    case C_INT: {
        cnode__int u, v;
        if (a->imm)
            cnode__int_set(&u, 0, a->v);
        else if (cnode__rd_int(&x, &u))
            return 0;
        if (b->imm)
            cnode__int_set(&v, 0, b->v);
        else if (cnode__rd_int(&y, &v))
            return 0;
        return cmp_ints(&u, &v);
    }
    case C_FLOAT: {
        double u, v;
        if (cnode__rd_float(&x, &u) || cnode__rd_float(&y, &v))
            return 0;
        return u < v ? -1 : u > v;
    }
    case C_ATOM: {
        atomtxt u, v;
        if (rd_atom(&x, &u) || rd_atom(&y, &v))
            return 0;
        return cmp_atoms(&u, &v);
    }
    case C_TUPLE:
        return cmp_tuples(&x, &y, depth);
    case C_MAP:
        return cmp_maps(&x, &y, depth);
    case C_LIST:
        return cmp_lists(&x, &y, depth);
    case C_BITS:
        return cmp_bits(&x, &y);
    case C_NIL:
    case C_BAD:
        return 0;
    default:
        return cmp_opaque(&x, &y, ca);
    }
}

int
cmp_at(const unsigned char *b, size_t len, size_t pa, size_t pb, unsigned depth)
{
    opd x = {{b, len, pa}, 0, 0}, y = {{b, len, pb}, 0, 0};
    return cmp_opd(&x, &y, depth);
}

/* Stable merge sort of pairs by key. */
int
sort_pairs(const unsigned char *b, size_t len, pair *p, size_t n, unsigned depth)
{
    if (n < 2)
        return 0;
    pair *tmp = malloc(n * sizeof *tmp);
    if (!tmp)
        return -1;
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = cmp_at(b, len, p[j].k, p[i].k, depth + 1) < 0 ? p[j++] : p[i++];
            while (i < mid)
                tmp[k++] = p[i++];
            while (j < hi)
                tmp[k++] = p[j++];
        }
        memcpy(p, tmp, n * sizeof *p);
    }
    free(tmp);
    return 0;
}
