/* erlang:phash2/1,2 over the external term format, bit-exact with OTP 25's
 * make_hash2 (protocol.md §9). The term is walked straight from its encoding
 * with every read bounded by len, so no ei decoder ever sees unchecked bytes.
 *
 * Shape of the walk (what BEAM does on its heap, replayed on the encoding):
 * h starts at 0 and every term mixes into it depth-first, left to right.
 * Lists are one stream of cons cells whatever their encoding (LIST_EXT,
 * STRING_EXT, a list tail that is itself a LIST_EXT/STRING_EXT): runs of
 * integers 0..255 are packed four to a word across those boundaries. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ei_glue/tags.h"
#include "cnode_balancer.h"

#define HC 0x9e3779b9u
#define HCN(n) ((uint32_t)(HC * (uint32_t)(n)))
#define MAX_DEPTH 1024

#define MIX(a, b, c)                                                                                                               \
    do {                                                                                                                           \
        a -= b;                                                                                                                    \
        a -= c;                                                                                                                    \
        a ^= (c >> 13);                                                                                                            \
        b -= c;                                                                                                                    \
        b -= a;                                                                                                                    \
        b ^= (a << 8);                                                                                                             \
        c -= a;                                                                                                                    \
        c -= b;                                                                                                                    \
        c ^= (b >> 13);                                                                                                            \
        a -= b;                                                                                                                    \
        a -= c;                                                                                                                    \
        a ^= (c >> 12);                                                                                                            \
        b -= c;                                                                                                                    \
        b -= a;                                                                                                                    \
        b ^= (a << 16);                                                                                                            \
        c -= a;                                                                                                                    \
        c -= b;                                                                                                                    \
        c ^= (b >> 5);                                                                                                             \
        a -= b;                                                                                                                    \
        a -= c;                                                                                                                    \
        a ^= (c >> 3);                                                                                                             \
        b -= c;                                                                                                                    \
        b -= a;                                                                                                                    \
        b ^= (a << 10);                                                                                                            \
        c -= a;                                                                                                                    \
        c -= b;                                                                                                                    \
        c ^= (b >> 15);                                                                                                            \
    } while (0)

typedef struct {
    const unsigned char *p;
    size_t len, pos;
    unsigned depth;
} rd;

/* ---- mixing steps (UINT32_HASH_2 / UINT32_HASH / SINT32_HASH in erts) ---- */

static inline void
h2(uint32_t *h, uint32_t x, uint32_t y, uint32_t k)
{
    uint32_t a = k + x, b = k + y, c = *h;
    MIX(a, b, c);
    *h = c;
}

static inline void
h1(uint32_t *h, uint32_t x, uint32_t k)
{
    h2(h, x, 0, k);
}

static uint32_t
block_hash(const unsigned char *k, size_t length, uint32_t initval)
{
    uint32_t a = HC, b = HC, c = initval;
    size_t len = length;
    while (len >= 12) {
        a += (uint32_t)k[0] | (uint32_t)k[1] << 8 | (uint32_t)k[2] << 16 | (uint32_t)k[3] << 24;
        b += (uint32_t)k[4] | (uint32_t)k[5] << 8 | (uint32_t)k[6] << 16 | (uint32_t)k[7] << 24;
        c += (uint32_t)k[8] | (uint32_t)k[9] << 8 | (uint32_t)k[10] << 16 | (uint32_t)k[11] << 24;
        MIX(a, b, c);
        k += 12;
        len -= 12;
    }
    c += (uint32_t)length;
    switch (len) { /* every case falls through, as in lookup2 */
    case 11:
        c += (uint32_t)k[10] << 24;
        /* fall through */
    case 10:
        c += (uint32_t)k[9] << 16;
        /* fall through */
    case 9:
        c += (uint32_t)k[8] << 8;
        /* fall through */
    case 8:
        b += (uint32_t)k[7] << 24;
        /* fall through */
    case 7:
        b += (uint32_t)k[6] << 16;
        /* fall through */
    case 6:
        b += (uint32_t)k[5] << 8;
        /* fall through */
    case 5:
        b += k[4];
        /* fall through */
    case 4:
        a += (uint32_t)k[3] << 24;
        /* fall through */
    case 3:
        a += (uint32_t)k[2] << 16;
        /* fall through */
    case 2:
        a += (uint32_t)k[1] << 8;
        /* fall through */
    case 1:
        a += k[0];
        /* fall through */
    default:
        break;
    }
    MIX(a, b, c);
    return c;
}

/* hashpjw over an atom's text as BEAM stores it (UTF-8), where a code point
 * below 256 counts as its Latin-1 byte. latin1: the text is Latin-1 already. */
static uint32_t
atom_hash(const unsigned char *p, size_t len, int latin1)
{
    uint32_t x = 0;
    while (len--) {
        unsigned v = *p++;
        if (!latin1 && len && (v & 0xFE) == 0xC2 && (*p & 0xC0) == 0x80) {
            v = ((v << 6) | (*p & 0x3F)) & 0xFF;
            p++;
            len--;
        }
        x = (x << 4) + v;
        uint32_t g = x & 0xF0000000u;
        if (g) {
            x ^= g >> 24;
            x ^= g;
        }
    }
    return x;
}

static void
mix_atom(uint32_t *h, uint32_t ah)
{
    if (*h == 0)
        *h = ah;
    else
        h1(h, ah, HCN(3));
}

static void
mix_nil(uint32_t *h)
{
    if (*h == 0)
        *h = 3468870702u;
    else
        h1(h, 2, HCN(2)); /* NIL_DEF */
}

/* An integer in [-2^27, 2^27). */
static void
mix_small(uint32_t *h, int32_t y)
{
    if (y < 0)
        h1(h, (uint32_t)-y, HC);
    h1(h, (uint32_t)y, HC);
}

/* A bignum: |n| as little-endian bytes (no high zero bytes), in 64-bit digits. */
static void
mix_big(uint32_t *h, const unsigned char *mag, size_t n, int neg)
{
    uint32_t k = neg ? HCN(10) : HCN(11);
    for (size_t i = 0; i < n; i += 8) {
        uint64_t d = 0;
        for (size_t j = 0; j < 8 && i + j < n; j++)
            d |= (uint64_t)mag[i + j] << (8 * j);
        h2(h, (uint32_t)d, (uint32_t)(d >> 32), k);
    }
}

/* An integer given as sign and little-endian magnitude bytes: BEAM keeps
 * values that fit 28 bits as smalls and hashes everything else as a bignum. */
static void
mix_integer(uint32_t *h, const unsigned char *mag, size_t n, int neg)
{
    while (n > 0 && mag[n - 1] == 0)
        n--;
    if (n <= 4) {
        uint32_t m = 0;
        for (size_t j = 0; j < n; j++)
            m |= (uint32_t)mag[j] << (8 * j);
        if (!neg && m < (1u << 27)) {
            mix_small(h, (int32_t)m);
            return;
        }
        if (neg && m <= (1u << 27)) {
            mix_small(h, -(int32_t)m);
            return;
        }
    }
    mix_big(h, mag, n, neg && n > 0);
}

static void
mix_int64(uint32_t *h, int64_t v)
{
    unsigned char mag[8];
    uint64_t m = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    for (int j = 0; j < 8; j++)
        mag[j] = (unsigned char)(m >> (8 * j));
    mix_integer(h, mag, 8, v < 0);
}

static void
mix_float(uint32_t *h, double d)
{
    if (d == 0.0)
        d = 0.0; /* -0.0 hashes as 0.0 */
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    h2(h, (uint32_t)(bits >> 32), (uint32_t)bits, HCN(12));
}

/* ---- bounded reads ---- */

static int
need(const rd *r, size_t n)
{
    return r->len - r->pos >= n;
}

static int
get8(rd *r, unsigned *v)
{
    if (!need(r, 1))
        return -1;
    *v = r->p[r->pos++];
    return 0;
}

static int
get16(rd *r, uint32_t *v)
{
    if (!need(r, 2))
        return -1;
    *v = (uint32_t)r->p[r->pos] << 8 | r->p[r->pos + 1];
    r->pos += 2;
    return 0;
}

static int
get32(rd *r, uint32_t *v)
{
    if (!need(r, 4))
        return -1;
    const unsigned char *s = r->p + r->pos;
    *v = (uint32_t)s[0] << 24 | (uint32_t)s[1] << 16 | (uint32_t)s[2] << 8 | s[3];
    r->pos += 4;
    return 0;
}

static int
getn(rd *r, size_t n, const unsigned char **s)
{
    if (!need(r, n))
        return -1;
    *s = r->p + r->pos;
    r->pos += n;
    return 0;
}

/* An atom of any encoding; its hash in *ah (NULL: just skip it). */
static int
read_atom(rd *r, uint32_t *ah)
{
    unsigned tag;
    uint32_t n;
    const unsigned char *s;
    if (get8(r, &tag))
        return CNODE_EINVAL;
    switch (tag) {
    case T_ATOM:
    case T_ATOM_UTF8:
        if (get16(r, &n))
            return CNODE_EINVAL;
        break;
    case T_SMALL_ATOM:
    case T_SMALL_ATOM_UTF8: {
        unsigned b;
        if (get8(r, &b))
            return CNODE_EINVAL;
        n = b;
        break;
    }
    default:
        return CNODE_EINVAL;
    }
    if (getn(r, n, &s))
        return CNODE_EINVAL;
    if (ah)
        *ah = atom_hash(s, n, tag == T_ATOM || tag == T_SMALL_ATOM);
    return 0;
}

/* A bignum body after its tag: sign and magnitude. */
static int
read_big(rd *r, unsigned tag, const unsigned char **mag, size_t *n, int *neg)
{
    uint32_t len;
    unsigned sign;
    if (tag == T_SMALL_BIG) {
        unsigned b;
        if (get8(r, &b))
            return -1;
        len = b;
    } else if (get32(r, &len)) {
        return -1;
    }
    if (get8(r, &sign) || sign > 1 || getn(r, len, mag))
        return -1;
    *n = len;
    *neg = (int)sign;
    return 0;
}

/* If the next term is an integer in 0..255, consume it into *v and return 1. */
static int
take_byte(rd *r, unsigned *v)
{
    if (!need(r, 1))
        return 0;
    unsigned tag = r->p[r->pos];
    if (tag == T_SMALL_INT) {
        if (!need(r, 2))
            return 0;
        *v = r->p[r->pos + 1];
        r->pos += 2;
        return 1;
    }
    if (tag == T_INT) {
        if (!need(r, 5))
            return 0;
        const unsigned char *s = r->p + r->pos + 1;
        uint32_t x = (uint32_t)s[0] << 24 | (uint32_t)s[1] << 16 | (uint32_t)s[2] << 8 | s[3];
        if (x > 255)
            return 0;
        *v = x;
        r->pos += 5;
        return 1;
    }
    if (tag == T_SMALL_BIG || tag == T_LARGE_BIG) {
        rd save = *r;
        const unsigned char *mag;
        size_t n;
        int neg;
        r->pos++;
        if (read_big(r, tag, &mag, &n, &neg) == 0) {
            while (n > 0 && mag[n - 1] == 0)
                n--;
            if (n == 0 || (n == 1 && !neg)) {
                *v = n ? mag[0] : 0;
                return 1;
            }
        }
        *r = save;
    }
    return 0;
}

static int hash_term(rd *r, uint32_t *h);

/* A packed run of list bytes, as BEAM's string optimisation does. */
typedef struct {
    uint32_t sh;
    unsigned c;
} run;

static void
run_add(uint32_t *h, run *s, unsigned v)
{
    s->sh = (s->sh << 8) + v;
    if (s->c == 3) {
        h1(h, s->sh, HCN(4));
        s->c = 0;
        s->sh = 0;
    } else {
        s->c++;
    }
}

static void
run_flush(uint32_t *h, run *s)
{
    if (s->c > 0)
        h1(h, s->sh, HCN(4));
    s->c = 0;
    s->sh = 0;
}

/* A list whose tag (STRING_EXT or LIST_EXT) was just read. */
static int
hash_list(rd *r, uint32_t *h, unsigned tag)
{
    run s = {0, 0};
    for (;;) {
        if (tag == T_STRING) {
            uint32_t n;
            const unsigned char *b;
            if (get16(r, &n) || getn(r, n, &b))
                return CNODE_EINVAL;
            for (uint32_t i = 0; i < n; i++)
                run_add(h, &s, b[i]);
            run_flush(h, &s);
            mix_nil(h);
            return 0;
        }
        uint32_t n;
        if (get32(r, &n))
            return CNODE_EINVAL;
        for (uint32_t i = 0; i < n; i++) {
            unsigned v;
            if (take_byte(r, &v)) {
                run_add(h, &s, v);
            } else {
                run_flush(h, &s);
                int rc = hash_term(r, h);
                if (rc)
                    return rc;
            }
        }
        /* the tail: a list continues the same stream */
        if (!need(r, 1))
            return CNODE_EINVAL;
        tag = r->p[r->pos];
        if (tag == T_LIST || tag == T_STRING) {
            r->pos++;
            continue;
        }
        run_flush(h, &s);
        return hash_term(r, h);
    }
}

static int
hash_map(rd *r, uint32_t *h)
{
    uint32_t n;
    if (get32(r, &n))
        return CNODE_EINVAL;
    h1(h, n, HCN(16));
    if (n == 0)
        return 0;
    /* pairs hash from 0 and combine by xor: key order does not matter */
    uint32_t x = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t ph = 0;
        int rc = hash_term(r, &ph);
        if (!rc)
            rc = hash_term(r, &ph);
        if (rc)
            return rc;
        x ^= ph;
    }
    h1(h, x, HCN(19));
    return 0;
}

static int
hash_binary(rd *r, uint32_t *h, unsigned tag)
{
    uint32_t len;
    unsigned bits = 8;
    const unsigned char *b;
    if (get32(r, &len) || (tag == T_BIT_BINARY && get8(r, &bits)) || getn(r, len, &b))
        return CNODE_EINVAL;
    if (bits > 8 || (bits == 0 && len > 0) || (bits < 8 && len == 0))
        return CNODE_EINVAL;
    size_t whole = bits == 8 || len == 0 ? len : len - 1;
    unsigned tail = bits == 8 ? 0 : bits;
    uint32_t con = HCN(13) + *h;
    if (whole == 0 && tail == 0) {
        *h = con;
        return 0;
    }
    *h = block_hash(b, whole, con);
    if (tail)
        h2(h, tail, (uint32_t)b[whole] >> (8 - tail), HCN(15));
    return 0;
}

/* Pids, ports and references: only their ID words count, not the node. */
static int
hash_ident(rd *r, uint32_t *h, unsigned tag)
{
    uint32_t w0, w1 = 0, n = 1, cr;
    unsigned c8;
    if (tag == T_NEW_REF || tag == T_NEWER_REF) {
        if (get16(r, &n) || n == 0 || n > 5)
            return CNODE_EINVAL;
    }
    if (read_atom(r, NULL))
        return CNODE_EINVAL;
    switch (tag) {
    case T_PID:
    case T_NEW_PID:
        if (get32(r, &w0) || get32(r, &w1) || (tag == T_PID ? get8(r, &c8) : get32(r, &cr)))
            return CNODE_EINVAL;
        h1(h, w0, HCN(5));
        return 0;
    case T_PORT:
    case T_NEW_PORT:
        if (get32(r, &w0) || (tag == T_PORT ? get8(r, &c8) : get32(r, &cr)))
            return CNODE_EINVAL;
        h2(h, w0, 0, HCN(6));
        return 0;
    case T_V4_PORT:
        if (get32(r, &w1) || get32(r, &w0) || get32(r, &cr))
            return CNODE_EINVAL;
        h2(h, w0, w1, HCN(6));
        return 0;
    case T_REF:
        if (get32(r, &w0) || get8(r, &c8))
            return CNODE_EINVAL;
        h1(h, w0, HCN(7));
        return 0;
    default: { /* NEW_REF, NEWER_REF: creation, then n ID words */
        const unsigned char *ids;
        if ((tag == T_NEW_REF ? get8(r, &c8) : get32(r, &cr)) || getn(r, (size_t)n * 4, &ids))
            return CNODE_EINVAL;
        w0 = (uint32_t)ids[0] << 24 | (uint32_t)ids[1] << 16 | (uint32_t)ids[2] << 8 | ids[3];
        h1(h, w0, HCN(7));
        return 0;
    }
    }
}

static int
hash_export(rd *r, uint32_t *h)
{
    uint32_t mh, fh;
    unsigned tag, arity;
    if (read_atom(r, &mh) || read_atom(r, &fh) || get8(r, &tag) || tag != T_SMALL_INT || get8(r, &arity))
        return CNODE_EINVAL;
    h2(h, arity, mh, HC);
    h1(h, fh, HCN(14));
    return 0;
}

static int
hash_number(rd *r, uint32_t *h, unsigned tag)
{
    switch (tag) {
    case T_SMALL_INT: {
        unsigned v;
        if (get8(r, &v))
            return CNODE_EINVAL;
        mix_small(h, (int32_t)v);
        return 0;
    }
    case T_INT: {
        uint32_t v;
        if (get32(r, &v))
            return CNODE_EINVAL;
        mix_int64(h, (int32_t)v);
        return 0;
    }
    case T_SMALL_BIG:
    case T_LARGE_BIG: {
        const unsigned char *mag;
        size_t n;
        int neg;
        if (read_big(r, tag, &mag, &n, &neg))
            return CNODE_EINVAL;
        mix_integer(h, mag, n, neg);
        return 0;
    }
    case T_NEW_FLOAT: {
        const unsigned char *s;
        if (getn(r, 8, &s))
            return CNODE_EINVAL;
        uint64_t bits = 0;
        for (int j = 0; j < 8; j++)
            bits = bits << 8 | s[j];
        double d;
        memcpy(&d, &bits, sizeof d);
        mix_float(h, d);
        return 0;
    }
    default: { /* FLOAT_EXT: 31 bytes of "%.20e" text */
        const unsigned char *s;
        char txt[32];
        if (getn(r, 31, &s))
            return CNODE_EINVAL;
        memcpy(txt, s, 31);
        txt[31] = 0;
        char *end;
        double d = strtod(txt, &end);
        if (end == txt || !isfinite(d))
            return CNODE_EINVAL;
        mix_float(h, d);
        return 0;
    }
    }
}

static int
hash_term(rd *r, uint32_t *h)
{
    unsigned tag;
    if (!need(r, 1))
        return CNODE_EINVAL;
    tag = r->p[r->pos];
    if (tag == T_ATOM || tag == T_SMALL_ATOM || tag == T_ATOM_UTF8 || tag == T_SMALL_ATOM_UTF8) {
        uint32_t ah;
        if (read_atom(r, &ah))
            return CNODE_EINVAL;
        mix_atom(h, ah);
        return 0;
    }
    r->pos++;
    switch (tag) {
    case T_SMALL_INT:
    case T_INT:
    case T_SMALL_BIG:
    case T_LARGE_BIG:
    case T_NEW_FLOAT:
    case T_FLOAT:
        return hash_number(r, h, tag);
    case T_NIL:
        mix_nil(h);
        return 0;
    case T_BINARY:
    case T_BIT_BINARY:
        return hash_binary(r, h, tag);
    case T_PID:
    case T_NEW_PID:
    case T_PORT:
    case T_NEW_PORT:
    case T_V4_PORT:
    case T_REF:
    case T_NEW_REF:
    case T_NEWER_REF:
        return hash_ident(r, h, tag);
    case T_EXPORT:
        return hash_export(r, h);
    case T_NEW_FUN:
    case T_FUN:
        return CNODE_ENOTSUP;
    default:
        break;
    }
    /* containers */
    if (++r->depth > MAX_DEPTH)
        return CNODE_EINVAL;
    int rc;
    switch (tag) {
    case T_STRING:
    case T_LIST:
        rc = hash_list(r, h, tag);
        break;
    case T_SMALL_TUPLE:
    case T_LARGE_TUPLE: {
        uint32_t n;
        if (tag == T_SMALL_TUPLE) {
            unsigned b;
            rc = get8(r, &b) ? CNODE_EINVAL : 0;
            n = b;
        } else {
            rc = get32(r, &n) ? CNODE_EINVAL : 0;
        }
        if (rc)
            break;
        h1(h, n, HCN(9));
        for (uint32_t i = 0; i < n && !rc; i++)
            rc = hash_term(r, h);
        break;
    }
    case T_MAP:
        rc = hash_map(r, h);
        break;
    default:
        rc = CNODE_EINVAL;
        break;
    }
    r->depth--;
    return rc;
}

int
cnode_phash2_full(const char *buf, size_t len, uint32_t *out)
{
    if (!buf || !out)
        return CNODE_EINVAL;
    rd r = {(const unsigned char *)buf, len, 0, 0};
    if (len > 0 && r.p[0] == 131)
        r.pos = 1;
    uint32_t h = 0;
    int rc = hash_term(&r, &h);
    if (rc)
        return rc;
    if (r.pos != len)
        return CNODE_EINVAL;
    *out = h;
    return 0;
}

int
cnode_phash2(const char *buf, size_t len, uint32_t range, uint32_t *out)
{
    uint32_t h;
    int rc = cnode_phash2_full(buf, len, &h);
    if (rc)
        return rc;
    *out = range == 0 ? (h & ((1u << 27) - 1)) : h % range;
    return 0;
}
