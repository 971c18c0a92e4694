/* ei_glue/reader.c: the leaves of the bounded term reader (reader.h); the
 * whole-term walk is in term.c. The rules are binary_to_term's in OTP 25
 * (erts/emulator/beam/external.c), checked against BEAM by
 * erlang_test_harness/test/terms_SUITE.erl. */
#include "ei_glue/reader.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(r, msg)                                                                                                               \
    do {                                                                                                                           \
        (r)->why = (msg);                                                                                                          \
        return (int)CNODE__MALFORMED;                                                                                              \
    } while (0)
#define NEED(r, n)                                                                                                                 \
    do {                                                                                                                           \
        if (!cnode__rd_need((r), (n)))                                                                                             \
            return (int)CNODE__NEED_MORE;                                                                                          \
    } while (0)

int
cnode__rd_u8(cnode__rd *r, uint32_t *v)
{
    NEED(r, 1);
    *v = r->b[r->pos++];
    return 0;
}

int
cnode__rd_u16(cnode__rd *r, uint32_t *v)
{
    NEED(r, 2);
    *v = cnode__be16(r->b + r->pos);
    r->pos += 2;
    return 0;
}

int
cnode__rd_u32(cnode__rd *r, uint32_t *v)
{
    NEED(r, 4);
    *v = cnode__be32(r->b + r->pos);
    r->pos += 4;
    return 0;
}

int
cnode__rd_bytes(cnode__rd *r, size_t n, const unsigned char **p)
{
    NEED(r, n);
    *p = r->b + r->pos;
    r->pos += n;
    return 0;
}

size_t
cnode__utf8_get(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    uint32_t c = s[0], min;
    size_t k;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        k = 2, min = 0x80, c &= 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        k = 3, min = 0x800, c &= 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        k = 4, min = 0x10000, c &= 0x07;
    } else {
        return 0;
    }
    if (n < k)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return k;
}

size_t
cnode__utf8_put(unsigned char *o, uint32_t c)
{
    if (c < 0x80) {
        o[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (unsigned char)(0xC0 | c >> 6);
        o[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (unsigned char)(0xE0 | c >> 12);
        o[1] = (unsigned char)(0x80 | (c >> 6 & 0x3F));
        o[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | c >> 18);
    o[1] = (unsigned char)(0x80 | (c >> 12 & 0x3F));
    o[2] = (unsigned char)(0x80 | (c >> 6 & 0x3F));
    o[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

int
cnode__rd_atom(cnode__rd *r, cnode__atom *a)
{
    NEED(r, 1);
    unsigned tag = r->b[r->pos];
    size_t hdr, n;
    switch (tag) {
    case T_ATOM:
    case T_ATOM_UTF8:
        NEED(r, 3);
        hdr = 3, n = cnode__be16(r->b + r->pos + 1);
        break;
    case T_SMALL_ATOM:
    case T_SMALL_ATOM_UTF8:
        NEED(r, 2);
        hdr = 2, n = r->b[r->pos + 1];
        break;
    case 82:
        FAIL(r, "term: atom cache reference (no atom cache was negotiated)");
    default:
        FAIL(r, "term: expected an atom");
    }
    a->latin1 = tag == T_ATOM || tag == T_SMALL_ATOM;
    if (n > (a->latin1 ? 255u : 255u * 4))
        FAIL(r, "term: atom longer than 255 characters");
    NEED(r, hdr + n);
    a->s = r->b + r->pos + hdr;
    a->n = n;
    a->chars = n;
    if (!a->latin1) {
        a->chars = 0;
        for (size_t i = 0; i < n; a->chars++) {
            uint32_t cp;
            size_t k = cnode__utf8_get(a->s + i, n - i, &cp);
            if (!k)
                FAIL(r, "term: atom is not valid UTF-8");
            i += k;
        }
        if (a->chars > 255)
            FAIL(r, "term: atom longer than 255 characters");
    }
    r->pos += hdr + n;
    return 0;
}

void
cnode__int_set(cnode__int *v, int neg, uint64_t m)
{
    v->neg = neg && m != 0;
    v->n = 0;
    while (m) {
        v->tmp[v->n++] = (unsigned char)(m & 0xFF);
        m >>= 8;
    }
    v->mag = v->tmp;
}

int
cnode__rd_int(cnode__rd *r, cnode__int *v)
{
    NEED(r, 1);
    const unsigned char *p = r->b + r->pos;
    switch (p[0]) {
    case T_SMALL_INT:
        NEED(r, 2);
        cnode__int_set(v, 0, p[1]);
        r->pos += 2;
        return 0;
    case T_INT: {
        NEED(r, 5);
        int64_t s = (int32_t)cnode__be32(p + 1);
        cnode__int_set(v, s < 0, (uint64_t)(s < 0 ? -s : s));
        r->pos += 5;
        return 0;
    }
    case T_SMALL_BIG:
    case T_LARGE_BIG: {
        size_t hdr = p[0] == T_SMALL_BIG ? 3 : 6;
        NEED(r, hdr);
        size_t n = p[0] == T_SMALL_BIG ? p[1] : cnode__be32(p + 1);
        if (n > CNODE__BIG_BYTES_MAX)
            FAIL(r, "term: bignum larger than BEAM takes");
        NEED(r, hdr + n);
        v->mag = p + hdr;
        v->n = n;
        while (v->n && v->mag[v->n - 1] == 0)
            v->n--;
        v->neg = p[hdr - 1] != 0 && v->n; /* BEAM: any sign byte but 0 is negative */
        r->pos += hdr + n;
        return 0;
    }
    default:
        FAIL(r, "term: expected an integer");
    }
}

int
cnode__int_small(const cnode__int *v, int64_t *out)
{
    if (v->n > 8)
        return 0;
    uint64_t m = 0;
    for (size_t i = v->n; i-- > 0;)
        m = m << 8 | v->mag[i];
    if (m <= (uint64_t)INT64_MAX)
        *out = v->neg ? -(int64_t)m : (int64_t)m;
    else if (v->neg && m == (uint64_t)INT64_MAX + 1)
        *out = INT64_MIN;
    else
        return 0;
    return 1;
}

#define DIGIT(c) ((c) >= '0' && (c) <= '9')

/* An optional sign (if sign) and one digit or more at t[*i], *i past them; 0, or -1. */
static int
digits_at(const char *t, size_t *i, int sign)
{
    if (sign && (t[*i] == '+' || t[*i] == '-'))
        (*i)++;
    if (!DIGIT(t[*i]))
        return -1;
    while (DIGIT(t[*i]))
        (*i)++;
    return 0;
}

/* FLOAT_EXT's text as BEAM's sys_chars_to_double takes it: [+-]D+[.,]D+([eE][+-]?D+)?,
 * ending at a NUL within the 31 bytes, finite (an underflow to zero is taken).
 * strtod reads the radix of the locale: like BEAM, try the other radix
 * character when the first one stops short. */
static int
float_text(const unsigned char *p, double *d)
{
    char t[32];
    memcpy(t, p, 31);
    t[31] = 0;
    size_t n = strnlen(t, 31);
    if (n == 31)
        return -1; /* no NUL: BEAM would read on into the next term */
    size_t i = 0;
    if (digits_at(t, &i, 1) || (t[i] != '.' && t[i] != ','))
        return -1;
    size_t dp = i++;
    if (digits_at(t, &i, 0) || ((t[i] == 'e' || t[i] == 'E') && (i++, digits_at(t, &i, 1))) || i != n)
        return -1;
    char *end;
    *d = strtod(t, &end);
    if (end != t + n) {
        t[dp] = t[dp] == '.' ? ',' : '.';
        *d = strtod(t, &end);
        if (end != t + n)
            return -1;
    }
    return isfinite(*d) ? 0 : -1;
}

int
cnode__rd_float(cnode__rd *r, double *d)
{
    NEED(r, 1);
    const unsigned char *p = r->b + r->pos;
    if (p[0] == T_NEW_FLOAT) {
        NEED(r, 9);
        uint64_t bits = (uint64_t)cnode__be32(p + 1) << 32 | cnode__be32(p + 5);
        memcpy(d, &bits, sizeof *d);
        if (!isfinite(*d))
            FAIL(r, "term: NaN or infinite float");
        r->pos += 9;
        return 0;
    }
    if (p[0] != T_FLOAT)
        FAIL(r, "term: expected a float");
    NEED(r, 32);
    if (float_text(p + 1, d) != 0)
        FAIL(r, "term: FLOAT_EXT text is not a float BEAM reads");
    r->pos += 32;
    return 0;
}

int
cnode__rd_bits(cnode__rd *r, const unsigned char **data, size_t *nbytes, unsigned *lastbits)
{
    NEED(r, 1);
    const unsigned char *p = r->b + r->pos;
    if (p[0] != T_BINARY && p[0] != T_BIT_BINARY)
        FAIL(r, "term: expected a binary");
    size_t hdr = p[0] == T_BINARY ? 5 : 6;
    NEED(r, hdr);
    size_t n = cnode__be32(p + 1);
    unsigned bits = p[0] == T_BINARY ? 8 : p[5];
    if (p[0] == T_BIT_BINARY && (n == 0 ? bits != 0 : bits < 1 || bits > 8))
        FAIL(r, "term: bit binary with bad trailing bits");
    NEED(r, hdr + n);
    *data = p + hdr;
    *nbytes = n;
    *lastbits = n == 0 ? 8 : bits; /* the empty bitstring is the empty binary */
    r->pos += hdr + n;
    return 0;
}

/* BEAM's limits on the parts of identifiers (external.c, dec_pid/dec_ref). */
#define TINY_CREATION_MAX 3u
#define REF_NUM_MAX ((1u << 18) - 1)

int
cnode__rd_ident(cnode__rd *r, cnode__ident *id)
{
    cnode__rd s = *r;
    int rc;
    uint32_t tag, n = 1, x;
    if ((rc = cnode__rd_u8(&s, &tag)) != 0)
        return rc;
    id->tag = (int)tag;
    if (tag == T_NEW_REF || tag == T_NEWER_REF) {
        if ((rc = cnode__rd_u16(&s, &n)) != 0)
            return rc;
        if (n < 1 || n > 5) /* BEAM reads a first word even when the count is 0 */
            FAIL(r, "term: reference with a bad word count");
    } else if (tag != T_PID && tag != T_NEW_PID && tag != T_PORT && tag != T_NEW_PORT && tag != T_V4_PORT && tag != T_REF) {
        FAIL(r, "term: expected a pid, port or reference");
    }
    if ((rc = cnode__rd_atom(&s, &id->node)) != 0) {
        r->why = s.why;
        return rc;
    }
    int tiny = tag == T_PID || tag == T_PORT || tag == T_REF || tag == T_NEW_REF;
    id->nwords = tag == T_PID || tag == T_NEW_PID || tag == T_V4_PORT ? 2 : tag == T_NEW_REF || tag == T_NEWER_REF ? n : 1;
    int creation_first = tag == T_NEW_REF || tag == T_NEWER_REF;
    if (creation_first && (rc = tiny ? cnode__rd_u8(&s, &id->creation) : cnode__rd_u32(&s, &id->creation)) != 0)
        return rc;
    for (unsigned i = 0; i < id->nwords; i++)
        if ((rc = cnode__rd_u32(&s, &id->words[i])) != 0)
            return rc;
    if (!creation_first && (rc = tiny ? cnode__rd_u8(&s, &id->creation) : cnode__rd_u32(&s, &id->creation)) != 0)
        return rc;
    if (tag == T_V4_PORT) { /* ID is 64 bits, high word first: keep {low, high} */
        x = id->words[0];
        id->words[0] = id->words[1];
        id->words[1] = x;
    }
    if (tiny && id->creation > TINY_CREATION_MAX)
        FAIL(r, "term: creation of an old identifier over 3");
    if ((tag == T_REF || tag == T_NEW_REF) && id->nwords > 0 && id->words[0] > REF_NUM_MAX)
        FAIL(r, "term: reference's first word over 18 bits");
    *r = s;
    return 0;
}

int
cnode__rd_tuple(cnode__rd *r, uint32_t *arity)
{
    int t = cnode__rd_tag(r);
    if (t == T_SMALL_TUPLE) {
        NEED(r, 2);
        *arity = r->b[r->pos + 1];
        r->pos += 2;
        return 0;
    }
    if (t != T_LARGE_TUPLE)
        FAIL(r, t < 0 ? "term: ends early" : "term: expected a tuple");
    NEED(r, 5);
    *arity = cnode__be32(r->b + r->pos + 1);
    r->pos += 5;
    return 0;
}

static int
head32(cnode__rd *r, int want, uint32_t *n, const char *what)
{
    if (cnode__rd_tag(r) != want) {
        if (r->pos >= r->len)
            return (int)CNODE__NEED_MORE;
        FAIL(r, what);
    }
    NEED(r, 5);
    *n = cnode__be32(r->b + r->pos + 1);
    r->pos += 5;
    return 0;
}

int
cnode__rd_map(cnode__rd *r, uint32_t *pairs)
{
    return head32(r, T_MAP, pairs, "term: expected a map");
}

int
cnode__rd_list(cnode__rd *r, uint32_t *n)
{
    return head32(r, T_LIST, n, "term: expected a list");
}

int
cnode__rd_string(cnode__rd *r, const unsigned char **s, size_t *n)
{
    if (cnode__rd_tag(r) != T_STRING) {
        if (r->pos >= r->len)
            return (int)CNODE__NEED_MORE;
        FAIL(r, "term: expected a string");
    }
    NEED(r, 3);
    size_t k = cnode__be16(r->b + r->pos + 1);
    NEED(r, 3 + k);
    *s = r->b + r->pos + 3;
    *n = k;
    r->pos += 3 + k;
    return 0;
}

int
cnode__rd_fun(cnode__rd *r, cnode__fun *f)
{
    if (cnode__rd_tag(r) != T_NEW_FUN) {
        if (r->pos >= r->len)
            return (int)CNODE__NEED_MORE;
        FAIL(r, cnode__rd_tag(r) == T_FUN ? "term: FUN_EXT is no longer read by BEAM" : "term: expected a fun");
    }
    NEED(r, 30);
    const unsigned char *p = r->b + r->pos;
    f->size = cnode__be32(p + 1);
    f->arity = p[5];
    f->uniq = p + 6;
    f->index = cnode__be32(p + 22);
    f->num_free = cnode__be32(p + 26);
    if (f->size < 29)
        FAIL(r, "term: fun with a bad size");
    r->pos += 30;
    return 0;
}

int
cnode__rd_export(cnode__rd *r, cnode__atom *mod, cnode__atom *fun, uint32_t *arity)
{
    if (cnode__rd_tag(r) != T_EXPORT) {
        if (r->pos >= r->len)
            return (int)CNODE__NEED_MORE;
        FAIL(r, "term: expected an export fun");
    }
    cnode__rd s = *r;
    cnode__int a;
    int64_t v;
    int rc;
    s.pos++;
    if ((rc = cnode__rd_atom(&s, mod)) != 0 || (rc = cnode__rd_atom(&s, fun)) != 0 || (rc = cnode__rd_int(&s, &a)) != 0) {
        r->why = s.why;
        return rc;
    }
    /* OTP 25 takes any arity of 0..2^31-1 here (the VM's own limit of 255
       arguments is not checked by binary_to_term) */
    if (!cnode__int_small(&a, &v) || v < 0 || v > INT32_MAX)
        FAIL(r, "term: export's arity is not 0..2^31-1");
    *arity = (uint32_t)v;
    *r = s;
    return 0;
}
