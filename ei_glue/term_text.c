/* ei_glue/term_text.c: Erlang term text (include/cnode_term.h).
 *
 * cnode_term_print prints an external-format term as OTP 25's
 * io_lib:format("~0p", [T]) does (io_lib_pretty with line length 0, latin1
 * printable range); cnode_term_parse reads the term subset of Erlang syntax
 * into the external format, as term_to_binary/1 would write it except that
 * atoms are UTF-8 (as OTP 26 writes them).
 *
 * Bound before reading: the printer runs cnode__term_extent over the whole
 * input first, so depth, element counts and every length are proven to fit
 * before anything is printed; each read below is still checked, because the
 * walker checks no values (UTF-8, float bits, sizes of funs' parts).
 *
 * Unlike the rest of ei_glue this file allocates: the API returns a malloc'd
 * string, and maps are sorted through a scratch array. Its one global is a
 * lazily made "C" locale, so that floats never depend on setlocale().
 */
#include "cnode_term.h"
#include "ei_glue/glue.h"
#include "ei_glue/tags.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PARSE_MAX_DEPTH 1000
#define PRINT_MAX_DEPTH 1100   /* above the walker's 1024, so the walker decides */
#define MAX_INT_CHARS 65536    /* digits in one integer literal */
#define MAX_FLOAT_CHARS 1024   /* characters in one float literal */
#define MAX_SEGMENT_BITS 65536 /* Size in <<V:Size>> */
#define FLATMAP_MAX 32         /* maps up to this size print in key order */


/* ---- bytes and UTF-8 ------------------------------------------------------------------------------------------- */

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

static size_t
utf8_put(unsigned char *o, uint32_t c)
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

/* One UTF-8 sequence from s[0, n): its length, or 0 if truncated, overlong,
 * a surrogate or above U+10FFFF. */
static size_t
utf8_get(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    uint32_t c = s[0];
    size_t k;
    uint32_t min;
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

/* ---- output string --------------------------------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void
sb_put(sbuf *s, const void *d, size_t n)
{
    if (s->oom)
        return;
    if (s->cap - s->len <= n) {
        size_t nc = s->cap ? s->cap : 64;
        while (nc - s->len <= n) {
            if (nc > SIZE_MAX / 2) {
                s->oom = 1;
                return;
            }
            nc *= 2;
        }
        char *np = realloc(s->p, nc);
        if (!np) {
            s->oom = 1;
            return;
        }
        s->p = np;
        s->cap = nc;
    }
    memcpy(s->p + s->len, d, n);
    s->len += n;
}

static void
sb_c(sbuf *s, char c)
{
    sb_put(s, &c, 1);
}

static void
sb_s(sbuf *s, const char *z)
{
    sb_put(s, z, strlen(z));
}

/* A character of io_lib's output (a code point) as UTF-8. */
static void
sb_cp(sbuf *s, uint32_t c)
{
    unsigned char b[4];
    sb_put(s, b, utf8_put(b, c));
}

static void
sb_u64(sbuf *s, uint64_t v)
{
    char t[24];
    int n = snprintf(t, sizeof t, "%llu", (unsigned long long)v);
    sb_put(s, t, (size_t)n);
}

static void
sb_i64(sbuf *s, int64_t v)
{
    char t[24];
    int n = snprintf(t, sizeof t, "%lld", (long long)v);
    sb_put(s, t, (size_t)n);
}

/* ---- floats ---------------------------------------------------------------------------------------------------- */

static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;

static void
c_locale_init(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/* strtod in the "C" locale, whatever setlocale() the application made. */
static double
c_strtod(const char *s, char **end)
{
    pthread_once(&c_locale_once, c_locale_init);
    return c_locale ? strtod_l(s, end, c_locale) : strtod(s, end);
}

static int
reads_back(uint64_t m, int e10, double a)
{
    char t[48];
    snprintf(t, sizeof t, "%llue%d", (unsigned long long)m, e10);
    return c_strtod(t, NULL) == a;
}

/* The shortest m * 10^e10 that reads back as a (finite, > 0) and, among
 * those, the nearest: the digits Ryu gives float_to_list(F, [short]).
 * %.*e gives the nearest p-digit decimal; at a power of two the interval
 * that reads back is lopsided, so its neighbours are tried too. */
static void
shortest_digits(double a, uint64_t *mant, int *exp10)
{
    char t[64];
    for (int p = 1; p <= 17; p++) {
        snprintf(t, sizeof t, "%.*e", p - 1, a);
        uint64_t d = 0;
        const char *q = t;
        for (; *q && *q != 'e'; q++) /* the radix character is skipped, whatever the locale */
            if (*q >= '0' && *q <= '9')
                d = d * 10 + (uint64_t)(*q - '0');
        int e10 = (*q == 'e' ? atoi(q + 1) : 0) - (p - 1);
        uint64_t cand[3] = {d, d + 1, d - 1};
        for (int i = 0; i < (d > 0 ? 3 : 2); i++) {
            if (reads_back(cand[i], e10, a)) {
                uint64_t m = cand[i];
                while (m != 0 && m % 10 == 0) {
                    m /= 10;
                    e10++;
                }
                *mant = m;
                *exp10 = e10;
                return;
            }
        }
    }
    *mant = 0; /* not reached: 17 digits always read back */
    *exp10 = 0;
}

/* float_to_list(F, [short]) of OTP 25: Ryu's digits, fixed notation when it
 * is no longer than scientific (erts/emulator/ryu/to_chars.h). */
static void
put_float(sbuf *o, double v)
{
    if (signbit(v))
        sb_c(o, '-');
    double a = fabs(v);
    if (a == 0) {
        sb_s(o, "0.0");
        return;
    }
    uint64_t m;
    int re;
    shortest_digits(a, &m, &re);
    char dg[24];
    int ol = snprintf(dg, sizeof dg, "%llu", (unsigned long long)m);
    int se = re + ol - 1;
    int lower = -(ol + 2), upper = 1;
    if (ol == 1)
        lower = -4, upper = 2;
    else if (se >= 10)
        upper = 2;
    int fixed = lower <= re && re <= upper;
    if (fixed && ((m >= (1ULL << 53) && re == 0) || (m > (1ULL << 52) / 5 && re == 1) || (m > (1ULL << 51) / 25 && re == 2)))
        fixed = 0;
    if (fixed) {
        int whole = ol + re;
        if (re >= 0) {
            sb_put(o, dg, (size_t)ol);
            for (int i = 0; i < re; i++)
                sb_c(o, '0');
            sb_s(o, ".0");
        } else if (whole > 0) {
            sb_put(o, dg, (size_t)whole);
            sb_c(o, '.');
            sb_put(o, dg + whole, (size_t)(ol - whole));
        } else {
            sb_s(o, "0.");
            for (int i = 0; i < -whole; i++)
                sb_c(o, '0');
            sb_put(o, dg, (size_t)ol);
        }
        return;
    }
    sb_c(o, dg[0]);
    sb_c(o, '.');
    if (ol > 1)
        sb_put(o, dg + 1, (size_t)(ol - 1));
    else
        sb_c(o, '0');
    sb_c(o, 'e');
    sb_i64(o, se);
}

/* ---- reading encoded terms ------------------------------------------------------------------------------------- */

typedef struct {
    const unsigned char *b;
    size_t len, pos; /* pos <= len always */
} rd;

static int
need(const rd *r, size_t n)
{
    return r->len - r->pos >= n;
}

/* Past one whole term (the walker bounds it). */
static int
skip_term(rd *r)
{
    ptrdiff_t n = cnode__term_extent((const char *)r->b + r->pos, r->len - r->pos, NULL, NULL);
    if (n <= 0)
        return -1;
    r->pos += (size_t)n;
    return 0;
}

/* LIST_EXT with no elements is just its tail. */
static void
skip_empty_list_headers(rd *r)
{
    while (need(r, 5) && r->b[r->pos] == T_LIST && be32(r->b + r->pos + 1) == 0)
        r->pos += 5;
}

typedef struct {
    uint32_t cp[255];
    unsigned n;
} atomtxt;

/* The atom at r->pos as code points; -1 if not an atom, not UTF-8 or too long. */
static int
rd_atom(rd *r, atomtxt *a)
{
    if (!need(r, 1))
        return -1;
    unsigned tag = r->b[r->pos];
    size_t hdr, n;
    if (tag == T_ATOM || tag == T_ATOM_UTF8) {
        if (!need(r, 3))
            return -1;
        hdr = 3, n = be16(r->b + r->pos + 1);
    } else if (tag == T_SMALL_ATOM || tag == T_SMALL_ATOM_UTF8) {
        if (!need(r, 2))
            return -1;
        hdr = 2, n = r->b[r->pos + 1];
    } else {
        return -1;
    }
    if (!need(r, hdr + n))
        return -1;
    const unsigned char *s = r->b + r->pos + hdr;
    int utf8 = tag == T_ATOM_UTF8 || tag == T_SMALL_ATOM_UTF8;
    a->n = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c = s[i];
        size_t k = 1;
        if (utf8 && !(k = utf8_get(s + i, n - i, &c)))
            return -1;
        if (a->n == 255)
            return -1;
        a->cp[a->n++] = c;
        i += k;
    }
    r->pos += hdr + n;
    return 0;
}

/* An integer as sign and little-endian magnitude without high zero bytes. */
typedef struct {
    int neg;
    const unsigned char *mag; /* into the term, or into tmp */
    size_t n;
    unsigned char tmp[8];
} intval;

static void
intval_set(intval *v, int neg, uint64_t m)
{
    v->neg = neg && m != 0;
    v->n = 0;
    while (m) {
        v->tmp[v->n++] = (unsigned char)(m & 0xFF);
        m >>= 8;
    }
    v->mag = v->tmp;
}

static int
rd_int(rd *r, intval *v)
{
    if (!need(r, 1))
        return -1;
    const unsigned char *p = r->b + r->pos;
    switch (p[0]) {
    case T_SMALL_INT:
        if (!need(r, 2))
            return -1;
        intval_set(v, 0, p[1]);
        r->pos += 2;
        return 0;
    case T_INT: {
        if (!need(r, 5))
            return -1;
        int64_t s = (int32_t)be32(p + 1);
        intval_set(v, s < 0, (uint64_t)(s < 0 ? -s : s));
        r->pos += 5;
        return 0;
    }
    case T_SMALL_BIG:
    case T_LARGE_BIG: {
        size_t hdr = p[0] == T_SMALL_BIG ? 3 : 6;
        if (!need(r, hdr))
            return -1;
        size_t n = p[0] == T_SMALL_BIG ? p[1] : be32(p + 1);
        if (!need(r, hdr + n) || p[hdr - 1] > 1)
            return -1;
        v->mag = p + hdr;
        v->n = n;
        while (v->n && v->mag[v->n - 1] == 0)
            v->n--;
        v->neg = p[hdr - 1] && v->n;
        r->pos += hdr + n;
        return 0;
    }
    default:
        return -1;
    }
}

/* The value if it fits an int64_t. */
static int
int_small(const intval *v, int64_t *out)
{
    if (v->n > 8)
        return 0;
    uint64_t m = 0;
    for (size_t i = v->n; i-- > 0;)
        m = m << 8 | v->mag[i];
    if (!v->neg && m <= (uint64_t)INT64_MAX)
        *out = (int64_t)m;
    else if (v->neg && m <= (uint64_t)INT64_MAX)
        *out = -(int64_t)m;
    else if (v->neg && m == (uint64_t)INT64_MAX + 1)
        *out = INT64_MIN;
    else
        return 0;
    return 1;
}

static int
rd_float(rd *r, double *d)
{
    if (!need(r, 1))
        return -1;
    const unsigned char *p = r->b + r->pos;
    if (p[0] == T_NEW_FLOAT) {
        if (!need(r, 9))
            return -1;
        uint64_t bits = (uint64_t)be32(p + 1) << 32 | be32(p + 5);
        memcpy(d, &bits, sizeof *d);
        r->pos += 9;
    } else if (p[0] == T_FLOAT) {
        if (!need(r, 32))
            return -1;
        char t[32];
        memcpy(t, p + 1, 31);
        t[31] = 0;
        char *end;
        *d = c_strtod(t, &end);
        if (end == t)
            return -1;
        r->pos += 32;
    } else {
        return -1;
    }
    return isfinite(*d) ? 0 : -1; /* BEAM refuses NaN and infinities */
}

/* A list walked as Erlang sees it: LIST_EXT elements, then a tail that may
 * be another LIST_EXT or a STRING_EXT, as a C encoder may write. */
enum { LI_TERM, LI_BYTE, LI_END, LI_TAIL, LI_BAD };

typedef struct {
    rd r;
    int in_string;
    uint32_t left;
} lit;

/* LI_TERM: an element at it->r.pos, the caller reads or skips it.
 * LI_BYTE: an element *byte of a STRING_EXT. LI_END: proper end, consumed.
 * LI_TAIL: an improper tail at it->r.pos. */
static int
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
            if (!need(&it->r, 3) || !need(&it->r, 3 + be16(p + 1)))
                return LI_BAD;
            it->left = be16(p + 1);
            it->in_string = 1;
            it->r.pos += 3;
            break;
        case T_LIST:
            if (!need(&it->r, 5))
                return LI_BAD;
            it->left = be32(p + 1);
            it->r.pos += 5;
            break;
        default:
            return LI_TAIL;
        }
    }
}

/* ---- term order (map keys print sorted; the parser finds duplicate keys) --------------------------------------- */

/* number < atom < reference < fun < port < pid < tuple < map < nil < list <
 * bitstring; map keys compare exactly, so all integers sort before floats. */
enum { C_BAD, C_INT, C_FLOAT, C_ATOM, C_REF, C_FUN, C_PORT, C_PID, C_TUPLE, C_MAP, C_NIL, C_LIST, C_BITS };

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
        return need(r, 3) && be16(r->b + r->pos + 1) == 0 ? C_NIL : C_LIST;
    case T_LIST:
        return C_LIST;
    case T_BINARY:
    case T_BIT_BINARY:
        return C_BITS;
    default:
        return C_BAD;
    }
}

/* An operand: a term at r.pos, or a byte of a STRING_EXT (imm). */
typedef struct {
    rd r;
    int imm;
    unsigned v;
} opd;

static int cmp_opd(opd *a, opd *b, unsigned depth);

static int
sgn(int64_t d)
{
    return d < 0 ? -1 : d > 0;
}

static int
cmp_ints(const intval *a, const intval *b)
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

/* Bits of a binary or bitstring. */
static int
rd_bits(rd *r, const unsigned char **data, size_t *nbytes, unsigned *lastbits)
{
    const unsigned char *p = r->b + r->pos;
    size_t hdr = p[0] == T_BINARY ? 5 : 6;
    if (!need(r, hdr))
        return -1;
    size_t n = be32(p + 1);
    unsigned bits = p[0] == T_BINARY ? 8 : p[5];
    if (!need(r, hdr + n) || bits < 1 || bits > 8 || (n == 0 && bits != 8))
        return -1;
    *data = p + hdr;
    *nbytes = n;
    *lastbits = bits;
    r->pos += hdr + n;
    return 0;
}

static int
cmp_bits(rd *a, rd *b)
{
    const unsigned char *da, *db;
    size_t na, nb;
    unsigned la, lb;
    if (rd_bits(a, &da, &na, &la) || rd_bits(b, &db, &nb, &lb))
        return 0;
    uint64_t ba = na ? (uint64_t)(na - 1) * 8 + la : 0, bb = nb ? (uint64_t)(nb - 1) * 8 + lb : 0;
    for (uint64_t i = 0; i < ba && i < bb; i++) {
        unsigned x = da[i / 8] >> (7 - i % 8) & 1, y = db[i / 8] >> (7 - i % 8) & 1;
        if (x != y)
            return x < y ? -1 : 1;
    }
    return ba == bb ? 0 : ba < bb ? -1 : 1;
}

typedef struct {
    size_t k, v; /* positions of a key and its value */
} pair;

static int sort_pairs(const unsigned char *b, size_t len, pair *p, size_t n, unsigned depth);

/* The pairs of the MAP_EXT at r->pos, r past it; *out malloc'd (NULL if n is 0). */
static int
map_pairs(rd *r, pair **out, size_t *n)
{
    *out = NULL;
    if (!need(r, 5) || r->b[r->pos] != T_MAP)
        return -1;
    size_t cnt = be32(r->b + r->pos + 1);
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
    size_t na = ha == 2 ? p[1] : be32(p + 1), nb = hb == 2 ? q[1] : be32(q + 1);
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
        intval u, v;
        if (a->imm)
            intval_set(&u, 0, a->v);
        else if (rd_int(&x, &u))
            return 0;
        if (b->imm)
            intval_set(&v, 0, b->v);
        else if (rd_int(&y, &v))
            return 0;
        return cmp_ints(&u, &v);
    }
    case C_FLOAT: {
        double u, v;
        if (rd_float(&x, &u) || rd_float(&y, &v))
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

static int
cmp_at(const unsigned char *b, size_t len, size_t pa, size_t pb, unsigned depth)
{
    opd x = {{b, len, pa}, 0, 0}, y = {{b, len, pb}, 0, 0};
    return cmp_opd(&x, &y, depth);
}

/* Stable merge sort of pairs by key. */
static int
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

/* ---- printing -------------------------------------------------------------------------------------------------- */

static int
is_reserved(const atomtxt *a)
{
    static const char *const words[] = {"after", "and",  "andalso", "band",   "begin",   "bnot", "bor", "bsl",  "bsr",
                                        "bxor",  "case", "catch",   "cond",   "div",     "end",  "fun", "if",   "let",
                                        "not",   "of",   "or",      "orelse", "receive", "rem",  "try", "when", "xor"};
    if (a->n > 7)
        return 0;
    char s[8];
    for (unsigned i = 0; i < a->n; i++) {
        if (a->cp[i] > 127)
            return 0;
        s[i] = (char)a->cp[i];
    }
    s[a->n] = 0;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcmp(s, words[i]) == 0)
            return 1;
    return 0;
}

/* io_lib:quote_atom/2's letters: the first lower-case, the rest name chars. */
static int
io_lower(uint32_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 0xDF && c <= 0xFF && c != 0xF7);
}

static int
io_name_char(uint32_t c)
{
    return io_lower(c) || (c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7) || (c >= '0' && c <= '9') || c == '_' ||
           c == '@';
}

/* io_lib's string_char/4: one character inside quotes q. */
static void
put_quoted_char(sbuf *o, uint32_t c, char q)
{
    static const char esc[] = {
        ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't', ['\v'] = 'v', ['\b'] = 'b', ['\f'] = 'f', [27] = 'e', [127] = 'd'};
    if (c == (uint32_t)q || c == '\\') {
        sb_c(o, '\\');
        sb_c(o, (char)c);
    } else if (c >= ' ' && c <= '~') {
        sb_c(o, (char)c);
    } else if (c >= 0xA0 && c <= 0xFF) {
        sb_cp(o, c);
    } else if (c > 0xFF) {
        char t[16];
        snprintf(t, sizeof t, "\\x{%X}", (unsigned)c);
        sb_s(o, t);
    } else if (c < sizeof esc && esc[c]) {
        sb_c(o, '\\');
        sb_c(o, esc[c]);
    } else {
        char t[8];
        snprintf(t, sizeof t, "\\%03o", (unsigned)c);
        sb_s(o, t);
    }
}

/* io_lib:write_atom_as_latin1/1. */
static void
put_atom(sbuf *o, const atomtxt *a)
{
    int quote = a->n == 0 || !io_lower(a->cp[0]) || is_reserved(a);
    for (unsigned i = 1; i < a->n && !quote; i++)
        quote = !io_name_char(a->cp[i]);
    if (!quote) {
        for (unsigned i = 0; i < a->n; i++)
            sb_cp(o, a->cp[i]);
        return;
    }
    sb_c(o, '\'');
    for (unsigned i = 0; i < a->n; i++)
        put_quoted_char(o, a->cp[i], '\'');
    sb_c(o, '\'');
}

/* erts's print_atom_name (fun_to_list/1): it looks at UTF-8 bytes, and its
 * output reaches io_lib as one character per byte. */
static int
erts_lower(unsigned c)
{
    return (c >= 'a' && c <= 'z') || (c >= 223 && c <= 255 && c != 247);
}

static int
erts_alnum(unsigned c)
{
    return erts_lower(c) || (c >= 'A' && c <= 'Z') || (c >= 192 && c <= 222 && c != 215) || (c >= '0' && c <= '9');
}

static unsigned
erts_latin1_char(const unsigned char *s, size_t i, size_t n)
{
    unsigned c1 = s[i], c2 = i + 1 < n ? s[i + 1] : 0;
    if ((c1 & 0x80) == 0)
        return c1;
    if ((c1 & 0xE0) == 0xC0)
        return (c1 & 0x1F) << 6 | (c2 & 0x3F);
    if ((c1 & 0xC0) == 0x80)
        return 'a';
    return 0;
}

static void
put_erts_atom(sbuf *o, const atomtxt *a)
{
    unsigned char s[255 * 4];
    size_t n = 0;
    for (unsigned i = 0; i < a->n; i++)
        n += utf8_put(s + n, a->cp[i]);
    if (n == 0) {
        sb_s(o, "''");
        return;
    }
    int quote = !erts_lower(erts_latin1_char(s, 0, n));
    for (size_t i = 1; i < n && !quote; i++) {
        unsigned lc = erts_latin1_char(s, i, n);
        quote = !erts_alnum(lc) && lc != '_';
    }
    if (quote)
        sb_c(o, '\'');
    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        char t[8];
        switch (c) {
        case '\'':
            sb_s(o, "\\'");
            break;
        case '\\':
            sb_s(o, "\\\\");
            break;
        case '\n':
            sb_s(o, "\\n");
            break;
        case '\f':
            sb_s(o, "\\f");
            break;
        case '\t':
            sb_s(o, "\\t");
            break;
        case '\r':
            sb_s(o, "\\r");
            break;
        case '\b':
            sb_s(o, "\\b");
            break;
        case '\v':
            sb_s(o, "\\v");
            break;
        default:
            if (c < ' ') {
                snprintf(t, sizeof t, "\\%03o", c);
                sb_s(o, t);
            } else if (c >= 0x80) {
                size_t k = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
                if (c == 0xC2 && i + 1 < n && s[i + 1] < 0xA0) {
                    snprintf(t, sizeof t, "\\%03o", (unsigned)s[i + 1]);
                    sb_s(o, t);
                    i++;
                } else {
                    for (size_t j = 0; j < k && i < n; j++, i++)
                        sb_cp(o, s[i]);
                    i--;
                }
            } else {
                sb_c(o, (char)c);
            }
        }
    }
    if (quote)
        sb_c(o, '\'');
}

/* Decimal digits of a magnitude, by repeated division by 10^9. */
static int
put_bigint(sbuf *o, const intval *v)
{
    int64_t small;
    if (int_small(v, &small)) {
        sb_i64(o, small);
        return 0;
    }
    size_t nl = (v->n + 3) / 4, nc = 0;
    uint32_t *l = calloc(nl, sizeof *l), *ch = malloc((nl * 32 / 29 + 2) * sizeof *ch);
    if (!l || !ch) {
        free(l);
        free(ch);
        return -1;
    }
    for (size_t i = 0; i < v->n; i++)
        l[i / 4] |= (uint32_t)v->mag[i] << (8 * (i % 4));
    while (nl > 0) {
        uint64_t rem = 0;
        for (size_t i = nl; i-- > 0;) {
            uint64_t cur = rem << 32 | l[i];
            l[i] = (uint32_t)(cur / 1000000000u);
            rem = cur % 1000000000u;
        }
        ch[nc++] = (uint32_t)rem;
        while (nl > 0 && l[nl - 1] == 0)
            nl--;
    }
    if (v->neg)
        sb_c(o, '-');
    sb_u64(o, ch[nc - 1]);
    for (size_t i = nc - 1; i-- > 0;) {
        char t[12];
        snprintf(t, sizeof t, "%09u", (unsigned)ch[i]);
        sb_put(o, t, 9);
    }
    free(l);
    free(ch);
    return 0;
}

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
    intval v;
    int64_t x;
    if (rd_int(r, &v) || !int_small(&v, &x) || x < 0 || x > 255)
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
    size_t n = hdr == 2 ? p[1] : be32(p + 1);
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
    if (rd_bits(r, &d, &n, &bits))
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

/* A node name as it stands, where BEAM prints its local node index. */
static int
pr_node(sbuf *o, rd *r)
{
    atomtxt a;
    if (rd_atom(r, &a))
        return -1;
    for (unsigned i = 0; i < a.n; i++)
        sb_cp(o, a.cp[i]);
    return 0;
}

/* <node.Id.Serial>, #Ref<node.Idn...Id0>, #Port<node.Id>. */
static int
pr_ident(sbuf *o, rd *r)
{
    unsigned tag = r->b[r->pos];
    size_t words = 1, crlen;
    if (tag == T_NEW_REF || tag == T_NEWER_REF) {
        if (!need(r, 3))
            return -1;
        words = be16(r->b + r->pos + 1);
        r->pos += 3;
    } else {
        r->pos += 1;
    }
    sb_s(o, tag == T_PID || tag == T_NEW_PID ? "<" : tag == T_PORT || tag == T_NEW_PORT || tag == T_V4_PORT ? "#Port<" : "#Ref<");
    if (pr_node(o, r))
        return -1;
    const unsigned char *p = r->b + r->pos;
    switch (tag) {
    case T_PID:
    case T_NEW_PID:
        crlen = tag == T_PID ? 1 : 4;
        if (!need(r, 8 + crlen))
            return -1;
        sb_c(o, '.');
        sb_u64(o, be32(p));
        sb_c(o, '.');
        sb_u64(o, be32(p + 4));
        sb_c(o, '>');
        r->pos += 8 + crlen;
        return 0;
    case T_PORT:
    case T_NEW_PORT:
    case T_V4_PORT: {
        size_t idlen = tag == T_V4_PORT ? 8 : 4;
        crlen = tag == T_PORT ? 1 : 4;
        if (!need(r, idlen + crlen))
            return -1;
        uint64_t id = idlen == 8 ? (uint64_t)be32(p) << 32 | be32(p + 4) : be32(p);
        sb_c(o, '.');
        sb_u64(o, id);
        sb_c(o, '>');
        r->pos += idlen + crlen;
        return 0;
    }
    default: {
        crlen = tag == T_NEWER_REF ? 4 : 1;
        if (tag == T_REF) { /* Node ID Creation */
            if (!need(r, 5))
                return -1;
            sb_c(o, '.');
            sb_u64(o, be32(p));
            r->pos += 5;
        } else { /* Node Creation ID... */
            if (!need(r, crlen + 4 * words))
                return -1;
            for (size_t i = words; i-- > 0;) {
                sb_c(o, '.');
                sb_u64(o, be32(p + crlen + 4 * i));
            }
            r->pos += crlen + 4 * words;
        }
        sb_c(o, '>');
        return 0;
    }
    }
}

static int
pr_small_int(sbuf *o, rd *r)
{
    intval v;
    int64_t x;
    if (rd_int(r, &v) || !int_small(&v, &x))
        return -1;
    sb_i64(o, x);
    return 0;
}

/* #Fun<Module.OldIndex.OldUniq>, as erts prints a local fun; fun M:F/A. */
static int
pr_fun(sbuf *o, rd *r)
{
    const unsigned char *p = r->b + r->pos;
    atomtxt m, f;
    size_t end = 0;
    if (p[0] == T_EXPORT) {
        r->pos++;
        if (rd_atom(r, &m) || rd_atom(r, &f) || !need(r, 2) || r->b[r->pos] != T_SMALL_INT)
            return -1;
        sb_s(o, "fun ");
        put_erts_atom(o, &m);
        sb_c(o, ':');
        put_erts_atom(o, &f);
        sb_c(o, '/');
        sb_u64(o, r->b[r->pos + 1]);
        r->pos += 2;
        return 0;
    }
    rd whole = *r;
    if (skip_term(&whole))
        return -1;
    end = whole.pos;
    if (p[0] == T_NEW_FUN) { /* Size Arity Uniq Index NumFree Module OldIndex OldUniq Pid Free */
        if (!need(r, 30))
            return -1;
        r->pos += 30;
    } else { /* FUN_EXT: NumFree Pid Module Index Uniq Free */
        if (!need(r, 5))
            return -1;
        r->pos += 5;
        if (skip_term(r))
            return -1;
    }
    if (rd_atom(r, &m))
        return -1;
    sb_s(o, "#Fun<");
    unsigned char s[4];
    for (unsigned i = 0; i < m.n; i++) /* erts writes the name's bytes; io_lib sees each byte as a character */
        for (size_t j = 0, k = utf8_put(s, m.cp[i]); j < k; j++)
            sb_cp(o, s[j]);
    sb_c(o, '.');
    if (pr_small_int(o, r))
        return -1;
    sb_c(o, '.');
    if (pr_small_int(o, r))
        return -1;
    sb_c(o, '>');
    r->pos = end;
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
        intval v;
        if (rd_int(r, &v))
            return -1;
        return put_bigint(o, &v);
    }
    case T_NEW_FLOAT:
    case T_FLOAT: {
        double d;
        if (rd_float(r, &d))
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
    case T_FUN:
    case T_EXPORT:
        return pr_fun(o, r);
    default:
        return -1;
    }
}

char *
cnode_term_print(const char *buf, size_t len)
{
    if (!buf)
        return NULL;
    const unsigned char *b = (const unsigned char *)buf;
    if (len > 0 && b[0] == 131) {
        b++;
        len--;
    }
    if (len == 0 || cnode__term_extent((const char *)b, len, NULL, NULL) != (ptrdiff_t)len)
        return NULL;
    sbuf o = {0};
    rd r = {b, len, 0};
    int res = pr_term(&o, &r, 0);
    sb_c(&o, 0);
    if (res || r.pos != len || o.oom) {
        free(o.p);
        return NULL;
    }
    return o.p;
}

/* ---- parsing --------------------------------------------------------------------------------------------------- */

typedef struct {
    const unsigned char *s;
    size_t len, pos;
    ei_x_buff *x;
    char *err;
    size_t errcap;
    int failed;
    unsigned depth;
    va_list *ap; /* cnode_term_format: the arguments for its holes; NULL when parsing */
} ps;

__attribute__((format(printf, 3, 4))) static int
perr(ps *p, size_t at, const char *fmt, ...)
{
    if (p->failed)
        return -1;
    p->failed = 1;
    if (p->err && p->errcap) {
        int k = snprintf(p->err, p->errcap, "at offset %zu: ", at);
        if (k >= 0 && (size_t)k < p->errcap) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + k, p->errcap - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

static int
oom(ps *p)
{
    return perr(p, p->pos, "out of memory");
}

static int
peek(const ps *p, size_t ahead)
{
    return p->pos + ahead < p->len ? p->s[p->pos + ahead] : -1;
}

static void
skip_ws(ps *p)
{
    while (p->pos < p->len) {
        unsigned c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            p->pos++;
        } else if (c == '%') {
            while (p->pos < p->len && p->s[p->pos] != '\n')
                p->pos++;
        } else {
            break;
        }
    }
}

static int
put_bytes(ps *p, const void *d, size_t n)
{
    if (n > INT32_MAX || ei_x_append_buf(p->x, d, (int)n) < 0)
        return oom(p);
    return 0;
}

/* One source character (UTF-8) at p->pos. */
static int
get_char(ps *p, uint32_t *c)
{
    size_t k = utf8_get(p->s + p->pos, p->len - p->pos, c);
    if (!k)
        return perr(p, p->pos, "invalid UTF-8");
    p->pos += k;
    return 0;
}

static int
hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* An escape sequence after its backslash, as erl_scan reads it. */
static int
escape(ps *p, uint32_t *c)
{
    size_t at = p->pos - 1;
    int ch = peek(p, 0);
    if (ch < 0)
        return perr(p, at, "unterminated escape sequence");
    if (ch >= '0' && ch <= '7') {
        uint32_t v = 0;
        for (int i = 0; i < 3 && peek(p, 0) >= '0' && peek(p, 0) <= '7'; i++)
            v = v * 8 + (uint32_t)(p->s[p->pos++] - '0');
        *c = v;
        return 0;
    }
    if (ch == 'x') {
        p->pos++;
        uint32_t v = 0;
        if (peek(p, 0) == '{') {
            int digits = 0;
            p->pos++;
            while (hexval(peek(p, 0)) >= 0) {
                if (v > 0x10FFFF)
                    return perr(p, at, "character code in escape out of range");
                v = v * 16 + (uint32_t)hexval(p->s[p->pos++]);
                digits++;
            }
            if (peek(p, 0) != '}' || digits == 0)
                return perr(p, at, "bad \\x{...} escape");
            p->pos++;
        } else {
            if (hexval(peek(p, 0)) < 0 || hexval(peek(p, 1)) < 0)
                return perr(p, at, "bad \\xHH escape");
            v = (uint32_t)(hexval(peek(p, 0)) * 16 + hexval(peek(p, 1)));
            p->pos += 2;
        }
        if (v > 0x10FFFF)
            return perr(p, at, "character code in escape out of range");
        *c = v;
        return 0;
    }
    if (ch == '^') {
        int n = peek(p, 1);
        if (n < 0 || n > 127)
            return perr(p, at, "bad control escape");
        p->pos += 2;
        *c = n == '?' ? 127 : (uint32_t)n & 31;
        return 0;
    }
    static const char from[] = "nrtvbfesd", to[] = {'\n', '\r', '\t', '\v', '\b', '\f', 27, ' ', 127};
    const char *hit = strchr(from, ch);
    if (hit && ch) {
        p->pos++;
        *c = (unsigned char)to[hit - from];
        return 0;
    }
    return get_char(p, c); /* any other character stands for itself */
}

typedef struct {
    uint32_t *c;
    size_t n, cap;
} cpbuf;

static int
cp_push(ps *p, cpbuf *b, uint32_t c)
{
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 32;
        uint32_t *np = realloc(b->c, nc * sizeof *np);
        if (!np)
            return oom(p);
        b->c = np;
        b->cap = nc;
    }
    b->c[b->n++] = c;
    return 0;
}

/* Quoted text up to the closing q (p->pos just after the opening one). */
static int
quoted(ps *p, char q, cpbuf *b, const char *what)
{
    size_t at = p->pos - 1;
    for (;;) {
        int ch = peek(p, 0);
        uint32_t c;
        if (ch < 0)
            return perr(p, p->len, "unterminated %s opened at offset %zu", what, at);
        if (ch == q) {
            p->pos++;
            return 0;
        }
        if (ch == '\\') {
            p->pos++;
            if (escape(p, &c))
                return -1;
        } else if (get_char(p, &c)) {
            return -1;
        }
        if (cp_push(p, b, c))
            return -1;
    }
}

/* "..." "..." (adjacent strings concatenate, as in Erlang). */
static int
strings(ps *p, cpbuf *b)
{
    do {
        p->pos++;
        if (quoted(p, '"', b, "string"))
            return -1;
        skip_ws(p);
    } while (peek(p, 0) == '"');
    return 0;
}

static int
put_atom_text(ps *p, size_t at, const unsigned char *u, size_t n, size_t chars)
{
    if (chars > 255)
        return perr(p, at, "atom longer than 255 characters");
    if (ei_x_encode_atom_len_as(p->x, (const char *)u, (int)n, ERLANG_UTF8, ERLANG_UTF8) < 0)
        return perr(p, at, "atom not encodable");
    return 0;
}

static int
bare_atom(ps *p)
{
    size_t at = p->pos, chars = 0;
    while (p->pos < p->len) {
        uint32_t c;
        size_t k = utf8_get(p->s + p->pos, p->len - p->pos, &c);
        if (!k || !io_name_char(c))
            break;
        p->pos += k;
        chars++;
    }
    atomtxt a = {.n = 0};
    for (size_t i = at; i < p->pos && i - at < 8; i++)
        a.cp[a.n++] = p->s[i];
    if (p->pos - at < 8 && is_reserved(&a))
        return perr(p, at, "'%.*s' is a reserved word; quote it to make an atom", (int)(p->pos - at), (const char *)p->s + at);
    return put_atom_text(p, at, p->s + at, p->pos - at, chars);
}

static int
quoted_atom(ps *p)
{
    size_t at = p->pos;
    cpbuf b = {0};
    p->pos++;
    int res = quoted(p, '\'', &b, "quoted atom");
    if (res == 0 && b.n > 255)
        res = perr(p, at, "atom longer than 255 characters");
    unsigned char u[255 * 4];
    size_t n = 0;
    for (size_t i = 0; res == 0 && i < b.n; i++) {
        if (b.c[i] >= 0xD800 && b.c[i] <= 0xDFFF)
            res = perr(p, at, "atom with a surrogate code point");
        else
            n += utf8_put(u + n, b.c[i]);
    }
    if (res == 0)
        res = put_atom_text(p, at, u, n, b.n);
    free(b.c);
    return res;
}

/* Integer encoding as term_to_binary writes it; mag little-endian. */
static int
put_int_mag(ps *p, int neg, const unsigned char *mag, size_t n)
{
    while (n > 0 && mag[n - 1] == 0)
        n--;
    if (n == 0)
        neg = 0;
    if (n <= 4) {
        uint32_t m = 0;
        for (size_t i = n; i-- > 0;)
            m = m << 8 | mag[i];
        unsigned char t[5];
        if (!neg && m <= 255) {
            t[0] = T_SMALL_INT, t[1] = (unsigned char)m;
            return put_bytes(p, t, 2);
        }
        if ((!neg && m <= INT32_MAX) || (neg && m <= (uint32_t)INT32_MAX + 1)) {
            uint32_t u = neg ? (uint32_t)(0u - m) : m;
            t[0] = T_INT, t[1] = (unsigned char)(u >> 24), t[2] = (unsigned char)(u >> 16), t[3] = (unsigned char)(u >> 8),
            t[4] = (unsigned char)u;
            return put_bytes(p, t, 5);
        }
    }
    unsigned char h[6];
    size_t hl;
    if (n <= 255) {
        h[0] = T_SMALL_BIG, h[1] = (unsigned char)n, h[2] = (unsigned char)neg, hl = 3;
    } else {
        h[0] = T_LARGE_BIG, h[1] = (unsigned char)(n >> 24), h[2] = (unsigned char)(n >> 16), h[3] = (unsigned char)(n >> 8),
        h[4] = (unsigned char)n, h[5] = (unsigned char)neg, hl = 6;
    }
    if (put_bytes(p, h, hl))
        return -1;
    return put_bytes(p, mag, n);
}

static int
put_int64(ps *p, int64_t v)
{
    uint64_t m = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    unsigned char mag[8];
    for (int i = 0; i < 8; i++)
        mag[i] = (unsigned char)(m >> (8 * i));
    return put_int_mag(p, v < 0, mag, 8);
}

/* A magnitude in little-endian 32-bit limbs. */
typedef struct {
    uint32_t *l;
    size_t n, cap;
} big;

static int
big_muladd(ps *p, big *b, uint32_t mul, uint32_t add)
{
    uint64_t carry = add;
    for (size_t i = 0; i < b->n; i++) {
        uint64_t t = (uint64_t)b->l[i] * mul + carry;
        b->l[i] = (uint32_t)t;
        carry = t >> 32;
    }
    if (carry) {
        if (b->n == b->cap) {
            size_t nc = b->cap ? b->cap * 2 : 4;
            uint32_t *np = realloc(b->l, nc * sizeof *np);
            if (!np)
                return oom(p);
            b->l = np;
            b->cap = nc;
        }
        b->l[b->n++] = (uint32_t)carry;
    }
    return 0;
}

static int
digit_in(int c, unsigned base)
{
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'z' ? c - 'a' + 10 : c >= 'A' && c <= 'Z' ? c - 'A' + 10 : -1;
    return v >= 0 && (unsigned)v < base ? v : -1;
}

/* Digits (with single '_' between digits) in base into b. */
static int
digits(ps *p, unsigned base, big *b)
{
    size_t at = p->pos;
    uint32_t chunk = 0, mul = 1;
    if (digit_in(peek(p, 0), base) < 0)
        return perr(p, at, "expected a digit in base %u", base);
    for (;;) {
        int d = digit_in(peek(p, 0), base);
        if (d < 0) {
            if (peek(p, 0) == '_' && digit_in(peek(p, 1), base) >= 0) {
                p->pos++;
                continue;
            }
            break;
        }
        if (p->pos - at > MAX_INT_CHARS)
            return perr(p, at, "integer literal longer than %d characters", MAX_INT_CHARS);
        p->pos++;
        chunk = chunk * base + (uint32_t)d;
        mul *= base;
        if (mul > UINT32_MAX / 36) {
            if (big_muladd(p, b, mul, chunk))
                return -1;
            chunk = 0, mul = 1;
        }
    }
    return mul > 1 ? big_muladd(p, b, mul, chunk) : 0;
}

static int
put_big(ps *p, int neg, const big *b)
{
    size_t n = b->n * 4;
    unsigned char *mag = malloc(n ? n : 1);
    if (!mag)
        return oom(p);
    for (size_t i = 0; i < n; i++)
        mag[i] = (unsigned char)(b->l[i / 4] >> (8 * (i % 4)));
    int res = put_int_mag(p, neg, mag, n);
    free(mag);
    return res;
}

/* int64 value of a magnitude, if it fits. */
static int
big_small(const big *b, int neg, int64_t *v)
{
    size_t n = b->n;
    while (n > 0 && b->l[n - 1] == 0)
        n--;
    if (n > 2)
        return 0;
    uint64_t m = n == 0 ? 0 : n == 1 ? b->l[0] : (uint64_t)b->l[1] << 32 | b->l[0];
    if (m <= (uint64_t)INT64_MAX)
        *v = neg ? -(int64_t)m : (int64_t)m;
    else if (neg && m == (uint64_t)INT64_MAX + 1)
        *v = INT64_MIN;
    else
        return 0;
    return 1;
}

/* A number (p->pos on its first digit). Integers go to *b (caller frees
 * b->l); a float sets *is_float and *f. */
static int
number(ps *p, big *b, int *is_float, double *f)
{
    size_t at = p->pos;
    *is_float = 0;
    if (digits(p, 10, b))
        return -1;
    if (peek(p, 0) == '#') {
        int64_t base;
        if (!big_small(b, 0, &base) || base < 2 || base > 36)
            return perr(p, at, "base must be 2..36");
        p->pos++;
        b->n = 0;
        return digits(p, (unsigned)base, b);
    }
    if (peek(p, 0) != '.' || peek(p, 1) < '0' || peek(p, 1) > '9')
        return 0;
    p->pos++;
    big ignore = {0};
    int res = digits(p, 10, &ignore);
    if (res == 0 && (peek(p, 0) == 'e' || peek(p, 0) == 'E')) {
        p->pos++;
        if (peek(p, 0) == '+' || peek(p, 0) == '-')
            p->pos++;
        res = digits(p, 10, &ignore);
    }
    free(ignore.l);
    if (res)
        return -1;
    if (p->pos - at > MAX_FLOAT_CHARS)
        return perr(p, at, "float literal too long");
    char t[MAX_FLOAT_CHARS + 1];
    size_t n = 0;
    for (size_t i = at; i < p->pos; i++)
        if (p->s[i] != '_')
            t[n++] = (char)p->s[i];
    t[n] = 0;
    *f = c_strtod(t, NULL);
    if (!isfinite(*f))
        return perr(p, at, "float out of range");
    *is_float = 1;
    return 0;
}

/* An integer or float, with an optional sign, or a $c character. For
 * binaries (int_only) floats are refused and the value must fit int64. */
static int
numeric(ps *p, int int_only, int64_t *ival)
{
    size_t at = p->pos;
    int neg = 0;
    if (peek(p, 0) == '-' || peek(p, 0) == '+') {
        neg = peek(p, 0) == '-';
        p->pos++;
        skip_ws(p);
        if (peek(p, 0) != '$' && (peek(p, 0) < '0' || peek(p, 0) > '9'))
            return perr(p, at, "expected a number after the sign");
    }
    if (peek(p, 0) == '$') {
        uint32_t c;
        p->pos++;
        if (peek(p, 0) < 0)
            return perr(p, at, "unterminated character literal");
        if (peek(p, 0) == '\\') {
            p->pos++;
            if (escape(p, &c))
                return -1;
        } else if (get_char(p, &c)) {
            return -1;
        }
        int64_t v = neg ? -(int64_t)c : (int64_t)c;
        if (int_only) {
            *ival = v;
            return 0;
        }
        return put_int64(p, v);
    }
    big b = {0};
    int is_float;
    double f;
    int res = number(p, &b, &is_float, &f);
    if (res == 0 && is_float) {
        if (int_only)
            res = perr(p, at, "floats are not supported in binaries");
        else if (ei_x_encode_double(p->x, neg ? -f : f) < 0)
            res = oom(p);
    } else if (res == 0 && int_only) {
        if (!big_small(&b, neg, ival))
            res = perr(p, at, "binary segment value too large");
    } else if (res == 0) {
        res = put_big(p, neg, &b);
    }
    free(b.l);
    return res;
}

static int value(ps *p);

/* Patch a 4-byte big-endian count at x->buff[at]. */
static void
patch32(ps *p, int at, uint32_t n)
{
    unsigned char *q = (unsigned char *)p->x->buff + at;
    q[0] = (unsigned char)(n >> 24), q[1] = (unsigned char)(n >> 16), q[2] = (unsigned char)(n >> 8), q[3] = (unsigned char)n;
}

static int
enter(ps *p)
{
    if (++p->depth > PARSE_MAX_DEPTH)
        return perr(p, p->pos, "nested deeper than %d levels", PARSE_MAX_DEPTH);
    p->pos++;
    skip_ws(p);
    return 0;
}

static int
list(ps *p)
{
    size_t at = p->pos;
    if (enter(p))
        return -1;
    if (peek(p, 0) == ']') {
        p->pos++;
        p->depth--;
        return ei_x_encode_empty_list(p->x) < 0 ? oom(p) : 0;
    }
    int h = p->x->index;
    static const unsigned char hdr[5] = {T_LIST, 0, 0, 0, 0};
    if (put_bytes(p, hdr, 5))
        return -1;
    uint32_t n = 0;
    int bytes_only = 1, tail = 0;
    for (;;) {
        int e = p->x->index;
        if (value(p))
            return -1;
        bytes_only &= p->x->buff[e] == (char)T_SMALL_INT;
        if (++n == UINT32_MAX)
            return perr(p, at, "list too long");
        skip_ws(p);
        int ch = peek(p, 0);
        if (ch == '|') {
            p->pos++;
            skip_ws(p);
            if (value(p))
                return -1;
            skip_ws(p);
            tail = 1;
            ch = peek(p, 0);
            if (ch != ']')
                return ch < 0 ? perr(p, p->len, "unterminated list opened at offset %zu", at)
                              : perr(p, p->pos, "expected ']' after the tail of the list");
        }
        if (ch == ']') {
            p->pos++;
            break;
        }
        if (ch < 0)
            return perr(p, p->len, "unterminated list opened at offset %zu", at);
        if (ch != ',')
            return perr(p, p->pos, "expected ',', '|' or ']' in the list");
        p->pos++;
        skip_ws(p);
    }
    if (!tail && ei_x_encode_empty_list(p->x) < 0)
        return oom(p);
    patch32(p, h + 1, n);
    if (!tail && bytes_only && n <= 0xFFFF) { /* a list of bytes is a STRING_EXT, as term_to_binary writes it */
        unsigned char *q = (unsigned char *)p->x->buff + h;
        q[0] = T_STRING, q[1] = (unsigned char)(n >> 8), q[2] = (unsigned char)n;
        for (uint32_t i = 0; i < n; i++)
            q[3 + i] = q[5 + 2 * i + 1];
        p->x->index = h + 3 + (int)n;
    }
    p->depth--;
    return 0;
}

static int
tuple(ps *p)
{
    size_t at = p->pos;
    if (enter(p))
        return -1;
    int h = p->x->index;
    static const unsigned char hdr[5] = {T_LARGE_TUPLE, 0, 0, 0, 0};
    if (put_bytes(p, hdr, 5))
        return -1;
    uint32_t n = 0;
    if (peek(p, 0) == '}') {
        p->pos++;
    } else {
        for (;;) {
            if (value(p))
                return -1;
            n++;
            skip_ws(p);
            int ch = peek(p, 0);
            if (ch == '}') {
                p->pos++;
                break;
            }
            if (ch < 0)
                return perr(p, p->len, "unterminated tuple opened at offset %zu", at);
            if (ch != ',')
                return perr(p, p->pos, "expected ',' or '}' in the tuple");
            p->pos++;
            skip_ws(p);
        }
    }
    if (n <= 255) { /* SMALL_TUPLE_EXT: drop three header bytes */
        char *q = p->x->buff + h;
        q[0] = (char)T_SMALL_TUPLE;
        q[1] = (char)n;
        memmove(q + 2, q + 5, (size_t)(p->x->index - h - 5));
        p->x->index -= 3;
    } else {
        patch32(p, h + 1, n);
    }
    p->depth--;
    return 0;
}

typedef struct {
    size_t at;     /* text offset of the key */
    int k, v, end; /* output offsets of the key, the value, the pair's end */
} mpair;

/* Two equal keys make no map; BEAM's parse keeps the last, we refuse. */
static int
map_check(ps *p, mpair *mp, size_t n)
{
    if (n < 2)
        return 0;
    pair *keys = malloc(n * sizeof *keys);
    if (!keys)
        return oom(p);
    for (size_t i = 0; i < n; i++)
        keys[i].k = (size_t)mp[i].k, keys[i].v = i;
    const unsigned char *b = (const unsigned char *)p->x->buff;
    size_t len = (size_t)p->x->index;
    int res = sort_pairs(b, len, keys, n, 0) ? oom(p) : 0;
    for (size_t i = 1; i < n && res == 0; i++)
        if (cmp_at(b, len, keys[i - 1].k, keys[i].k, 0) == 0)
            res = perr(p, mp[keys[i].v > keys[i - 1].v ? keys[i].v : keys[i - 1].v].at, "duplicate map key");
    free(keys);
    return res;
}

/* Above 32 keys the printer shows pairs in the reverse of their encoding
 * (as BEAM does for its hash maps), so write them reversed: print(parse(T))
 * is T again. */
static int
map_reverse(ps *p, mpair *mp, size_t n, int body)
{
    size_t len = (size_t)(p->x->index - body);
    char *tmp = malloc(len ? len : 1);
    if (!tmp)
        return oom(p);
    size_t o = 0;
    for (size_t i = n; i-- > 0;) {
        size_t l = (size_t)(mp[i].end - mp[i].k);
        memcpy(tmp + o, p->x->buff + mp[i].k, l);
        o += l;
    }
    memcpy(p->x->buff + body, tmp, len);
    free(tmp);
    return 0;
}

static int
map(ps *p)
{
    size_t at = p->pos;
    p->pos++; /* '#' */
    if (enter(p))
        return -1;
    int h = p->x->index;
    static const unsigned char hdr[5] = {T_MAP, 0, 0, 0, 0};
    if (put_bytes(p, hdr, 5))
        return -1;
    mpair *mp = NULL;
    size_t n = 0, cap = 0;
    int res = 0;
    if (peek(p, 0) == '}') {
        p->pos++;
    } else {
        for (;;) {
            if (n == cap) {
                cap = cap ? cap * 2 : 8;
                mpair *np = realloc(mp, cap * sizeof *np);
                if (!np) {
                    res = oom(p);
                    break;
                }
                mp = np;
            }
            mp[n].at = p->pos;
            mp[n].k = p->x->index;
            if ((res = value(p)))
                break;
            skip_ws(p);
            if (peek(p, 0) != '=' || peek(p, 1) != '>') {
                res = peek(p, 0) < 0 ? perr(p, p->len, "unterminated map opened at offset %zu", at)
                                     : perr(p, p->pos, "expected '=>' in the map");
                break;
            }
            p->pos += 2;
            skip_ws(p);
            mp[n].v = p->x->index;
            if ((res = value(p)))
                break;
            mp[n++].end = p->x->index;
            skip_ws(p);
            int ch = peek(p, 0);
            if (ch == '}') {
                p->pos++;
                break;
            }
            if (ch != ',') {
                res = ch < 0 ? perr(p, p->len, "unterminated map opened at offset %zu", at)
                             : perr(p, p->pos, "expected ',' or '}' in the map");
                break;
            }
            p->pos++;
            skip_ws(p);
        }
    }
    if (res == 0)
        res = map_check(p, mp, n);
    if (res == 0 && n > FLATMAP_MAX)
        res = map_reverse(p, mp, n, h + 5);
    if (res == 0)
        patch32(p, h + 1, (uint32_t)n);
    free(mp);
    p->depth--;
    return res;
}

typedef struct {
    unsigned char *b;
    size_t bits, cap;
} bitbuf;

static int
bits_put(ps *p, bitbuf *bb, int64_t v, size_t size)
{
    if (bb->bits + size > (size_t)INT32_MAX)
        return perr(p, p->pos, "binary too large");
    size_t need_bytes = (bb->bits + size + 7) / 8;
    if (need_bytes > bb->cap) {
        size_t nc = bb->cap ? bb->cap : 64;
        while (nc < need_bytes)
            nc *= 2;
        unsigned char *np = realloc(bb->b, nc);
        if (!np)
            return oom(p);
        memset(np + bb->cap, 0, nc - bb->cap);
        bb->b = np;
        bb->cap = nc;
    }
    for (size_t i = size; i-- > 0;) {
        unsigned bit = i < 64 ? (unsigned)((uint64_t)v >> i & 1) : v < 0;
        if (bit)
            bb->b[bb->bits / 8] |= (unsigned char)(0x80 >> (bb->bits % 8));
        bb->bits++;
    }
    return 0;
}

/* One segment: "text" ["/utf8"] or Value [":" Size]. */
static int
segment(ps *p, bitbuf *bb, size_t open)
{
    size_t at = p->pos;
    if (peek(p, 0) == '"') {
        cpbuf s = {0};
        int res = strings(p, &s), utf8 = 0;
        if (res == 0 && peek(p, 0) == '/') {
            p->pos++;
            skip_ws(p);
            if (p->len - p->pos >= 4 && memcmp(p->s + p->pos, "utf8", 4) == 0 && digit_in(peek(p, 4), 36) < 0)
                p->pos += 4, utf8 = 1;
            else
                res = perr(p, p->pos, "only /utf8 is supported after a string in a binary");
        }
        for (size_t i = 0; res == 0 && i < s.n; i++) {
            unsigned char u[4];
            size_t k = utf8 ? utf8_put(u, s.c[i]) : (u[0] = (unsigned char)s.c[i], 1);
            for (size_t j = 0; j < k && res == 0; j++)
                res = bits_put(p, bb, u[j], 8);
        }
        free(s.c);
        return res;
    }
    int ch = peek(p, 0);
    if (ch != '-' && ch != '+' && ch != '$' && (ch < '0' || ch > '9'))
        return ch < 0 ? perr(p, p->len, "unterminated binary opened at offset %zu", open)
                      : perr(p, at, "expected an integer or a string in the binary");
    int64_t v;
    if (numeric(p, 1, &v))
        return -1;
    skip_ws(p);
    size_t size = 8;
    if (peek(p, 0) == ':') {
        p->pos++;
        skip_ws(p);
        big b = {0};
        int64_t sz = -1;
        int res = digits(p, 10, &b);
        if (res == 0 && (!big_small(&b, 0, &sz) || sz > MAX_SEGMENT_BITS))
            res = perr(p, at, "segment size above %d bits", MAX_SEGMENT_BITS);
        free(b.l);
        if (res)
            return -1;
        size = (size_t)sz;
    }
    return bits_put(p, bb, v, size);
}

static int
binary(ps *p)
{
    size_t at = p->pos;
    p->pos++; /* first '<' */
    if (enter(p))
        return -1;
    bitbuf bb = {0};
    int res = 0;
    if (peek(p, 0) == '>' && peek(p, 1) == '>') {
        p->pos += 2;
    } else {
        for (;;) {
            if ((res = segment(p, &bb, at)))
                break;
            skip_ws(p);
            int ch = peek(p, 0);
            if (ch == '>' && peek(p, 1) == '>') {
                p->pos += 2;
                break;
            }
            if (ch != ',') {
                res = ch < 0 ? perr(p, p->len, "unterminated binary opened at offset %zu", at)
                             : perr(p, p->pos, "expected ',' or '>>' in the binary");
                break;
            }
            p->pos++;
            skip_ws(p);
        }
    }
    if (res == 0) {
        static const char none[1];
        const char *d = bb.b ? (const char *)bb.b : none;
        int r = bb.bits % 8 ? ei_x_encode_bitstring(p->x, d, 0, bb.bits) : ei_x_encode_binary(p->x, d, (int)(bb.bits / 8));
        if (r < 0)
            res = oom(p);
    }
    free(bb.b);
    p->depth--;
    return res;
}

static int put_codepoints(ps *p, cpbuf *s, int res);

static int
string_term(ps *p)
{
    cpbuf s = {0};
    return put_codepoints(p, &s, strings(p, &s));
}

/* A string's code points as Erlang encodes the list; frees s->c. */
static int
put_codepoints(ps *p, cpbuf *sp, int res)
{
    cpbuf s = *sp;
    int latin1 = 1;
    for (size_t i = 0; i < s.n; i++)
        latin1 &= s.c[i] <= 255;
    if (res == 0 && latin1) {
        unsigned char *bytes = malloc(s.n ? s.n : 1);
        if (!bytes || s.n > INT32_MAX) {
            res = oom(p);
        } else {
            for (size_t i = 0; i < s.n; i++)
                bytes[i] = (unsigned char)s.c[i];
            if (ei_x_encode_string_len(p->x, (const char *)bytes, (int)s.n) < 0)
                res = oom(p);
        }
        free(bytes);
    } else if (res == 0) {
        if (s.n > INT32_MAX || ei_x_encode_list_header(p->x, (long)s.n) < 0)
            res = oom(p);
        for (size_t i = 0; i < s.n && res == 0; i++)
            res = put_int64(p, s.c[i]);
        if (res == 0 && ei_x_encode_empty_list(p->x) < 0)
            res = oom(p);
    }
    free(s.c);
    return res;
}

/* UTF-8 text as code points; 0, or -1 if it is not valid UTF-8. */
static int
utf8_cps(ps *p, const char *text, cpbuf *out)
{
    const unsigned char *u = (const unsigned char *)text;
    size_t n = strlen(text);
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t k = utf8_get(u + i, n - i, &c);
        if (!k || cp_push(p, out, c) != 0)
            return -1;
        i += k;
    }
    return 0;
}

/* A hole of cnode_term_format at p->pos: "~X", filled from the next argument. */
static int
hole(ps *p)
{
    size_t at = p->pos;
    int d = peek(p, 1);
    if (!p->ap)
        return perr(p, at, "unexpected character '~'");
    p->pos += d < 0 ? 1 : 2;
    switch (d) {
    case 'i':
        return put_int64(p, (int64_t)va_arg(*p->ap, long));
    case 'l':
        return put_int64(p, (int64_t)va_arg(*p->ap, long long));
    case 'u': {
        uint64_t m = (uint64_t)va_arg(*p->ap, unsigned long);
        unsigned char mag[8];
        for (int i = 0; i < 8; i++)
            mag[i] = (unsigned char)(m >> (8 * i));
        return put_int_mag(p, 0, mag, 8);
    }
    case 'f': {
        double f = va_arg(*p->ap, double);
        if (!isfinite(f))
            return perr(p, at, "~f: NaN and infinities are not Erlang floats");
        return ei_x_encode_double(p->x, f) < 0 ? oom(p) : 0;
    }
    case 'a': {
        const char *a = va_arg(*p->ap, const char *);
        cpbuf b = {0};
        if (!a || utf8_cps(p, a, &b) != 0) {
            free(b.c);
            return p->failed ? -1 : perr(p, at, "~a: not an atom name (NULL or invalid UTF-8)");
        }
        size_t chars = b.n;
        free(b.c);
        return put_atom_text(p, at, (const unsigned char *)a, strlen(a), chars);
    }
    case 's': {
        const char *t = va_arg(*p->ap, const char *);
        cpbuf b = {0};
        if (!t || utf8_cps(p, t, &b) != 0) {
            free(b.c);
            return p->failed ? -1 : perr(p, at, "~s: not a string (NULL or invalid UTF-8)");
        }
        return put_codepoints(p, &b, 0);
    }
    case 'b': {
        const char *t = va_arg(*p->ap, const char *);
        if (!t)
            return perr(p, at, "~b: NULL");
        return ei_x_encode_binary(p->x, t, (long)strlen(t)) < 0 ? oom(p) : 0;
    }
    case 'B': {
        const void *b = va_arg(*p->ap, const void *);
        size_t n = va_arg(*p->ap, size_t);
        if ((!b && n) || n > INT32_MAX)
            return perr(p, at, "~B: NULL data or a size above 2 GiB");
        return ei_x_encode_binary(p->x, n ? b : "", (long)n) < 0 ? oom(p) : 0;
    }
    case 'p': {
        const erlang_pid *pid = va_arg(*p->ap, const erlang_pid *);
        if (!pid || !pid->node[0])
            return perr(p, at, "~p: NULL or a pid without a node");
        return ei_x_encode_pid(p->x, pid) < 0 ? oom(p) : 0;
    }
    case 'r': {
        const erlang_ref *ref = va_arg(*p->ap, const erlang_ref *);
        if (!ref || !ref->node[0] || ref->len < 1 || ref->len > 5)
            return perr(p, at, "~r: NULL or a malformed reference");
        return ei_x_encode_ref(p->x, ref) < 0 ? oom(p) : 0;
    }
    case 't': {
        const char *b = va_arg(*p->ap, const char *);
        size_t n = va_arg(*p->ap, size_t);
        if (b && n && (unsigned char)b[0] == 131)
            b++, n--;
        if (!b || !n || cnode__term_extent(b, n, NULL, NULL) != (ptrdiff_t)n || n > INT32_MAX)
            return perr(p, at, "~t: not exactly one well-formed encoded term");
        return ei_x_append_buf(p->x, b, (int)n) < 0 ? oom(p) : 0;
    }
    default:
        return perr(p, at, "unknown hole '~%c' (one of ~i ~u ~l ~f ~a ~s ~b ~B ~p ~r ~t)", d < 0 ? ' ' : d);
    }
}

static int
value(ps *p)
{
    int ch = peek(p, 0);
    if (ch < 0)
        return perr(p, p->pos, "unexpected end of text, expected a term");
    if (ch == '~')
        return hole(p);
    if ((ch >= '0' && ch <= '9') || ch == '-' || ch == '+' || ch == '$')
        return numeric(p, 0, NULL);
    switch (ch) {
    case '\'':
        return quoted_atom(p);
    case '"':
        return string_term(p);
    case '[':
        return list(p);
    case '{':
        return tuple(p);
    case '#':
        if (peek(p, 1) == '{')
            return map(p);
        break;
    case '<':
        if (peek(p, 1) == '<')
            return binary(p);
        break;
    default:
        break;
    }
    uint32_t c;
    size_t k = utf8_get(p->s + p->pos, p->len - p->pos, &c);
    if (!k)
        return perr(p, p->pos, "invalid UTF-8");
    if (io_lower(c))
        return bare_atom(p);
    if ((c >= 'A' && c <= 'Z') || c == '_' || (c >= 0xC0 && c <= 0xDE && c != 0xD7))
        return perr(p, p->pos, "variables are not terms (quote the atom: '%.*s')", (int)k, (const char *)p->s + p->pos);
    if (c >= 0x21 && c <= 0x7E)
        return perr(p, p->pos, "unexpected character '%c'", (char)c);
    return perr(p, p->pos, "unexpected character U+%04X", (unsigned)c);
}

static int parse_all(ps *p);

int
cnode_term_parse(const char *text, ei_x_buff *out, char *err, size_t errcap)
{
    if (err && errcap)
        err[0] = 0;
    ps p = {(const unsigned char *)text, text ? strlen(text) : 0, 0, out, err, errcap, 0, 0, NULL};
    return parse_all(&p);
}

int
cnode_term_format(ei_x_buff *out, char *err, size_t errcap, const char *fmt, ...)
{
    if (err && errcap)
        err[0] = 0;
    va_list ap;
    va_start(ap, fmt);
    ps p = {(const unsigned char *)fmt, fmt ? strlen(fmt) : 0, 0, out, err, errcap, 0, 0, &ap};
    int rc = parse_all(&p);
    va_end(ap);
    return rc;
}

static int
parse_all(ps *p0)
{
    ps p = *p0;
    const char *text = (const char *)p.s;
    ei_x_buff *out = p.x;
    if (!text || !out || !out->buff)
        return perr(&p, 0, "no text or no output buffer");
    int start = out->index;
    skip_ws(&p);
    if (value(&p) == 0) {
        skip_ws(&p);
        if (peek(&p, 0) == '.') {
            p.pos++;
            skip_ws(&p);
        }
        if (p.pos != p.len)
            perr(&p, p.pos, "unexpected text after the term");
    }
    if (p.failed) {
        out->index = start;
        return -1;
    }
    return 0;
}

/* ---- Elixir module names --------------------------------------------------------------------------------------- */

int
cnode_term_module_name(const char *in, char *out, size_t cap)
{
    if (!in || !out || cap == 0)
        return -1;
    const unsigned char *u = (const unsigned char *)in;
    uint32_t c0 = 0;
    int keep = u[0] == 0 || u[0] == '\'' || strncmp(in, "Elixir.", 7) == 0 || (utf8_get(u, strnlen(in, 4), &c0) && io_lower(c0));
    const char *prefix = keep ? "" : "Elixir.";
    size_t pl = strlen(prefix), n = strlen(in);
    if (pl + n + 1 > cap) {
        out[0] = 0;
        return -1;
    }
    memcpy(out, prefix, pl);
    memcpy(out + pl, in, n + 1);
    return 0;
}
