/* erlang:phash2/1,2 over the external term format, bit-exact with OTP 25's
 * make_hash2 (protocol.md §9). The term is first walked by the shared reader
 * (ei_glue/reader.h), which refuses what binary_to_term refuses; then hashed
 * straight from its encoding through the same reader's functions.
 *
 * Shape of the walk (what BEAM does on its heap, replayed on the encoding):
 * h starts at 0 and every term mixes into it depth-first, left to right.
 * Lists are one stream of cons cells whatever their encoding (LIST_EXT,
 * STRING_EXT, a list tail that is itself a LIST_EXT/STRING_EXT): runs of
 * integers 0..255 are packed four to a word across those boundaries. */
#include <string.h>

#include "ei_glue/reader.h"
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

/* The shared reader's cursor and this hash's recursion depth. */
typedef struct {
    cnode__rd r;
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
mix_float(uint32_t *h, double d)
{
    if (d == 0.0)
        d = 0.0; /* -0.0 hashes as 0.0 */
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    h2(h, (uint32_t)(bits >> 32), (uint32_t)bits, HCN(12));
}

/* ---- reads: the whole term was walked (cnode__rd_skip) before any of these ---- */

static int
read_atom(rd *r, uint32_t *ah)
{
    cnode__atom a;
    if (cnode__rd_atom(&r->r, &a))
        return CNODE_EINVAL;
    *ah = atom_hash(a.s, a.n, a.latin1);
    return 0;
}

/* If the next term is an integer in 0..255, consume it into *v and return 1. */
static int
take_byte(rd *r, unsigned *v)
{
    int tag = cnode__rd_tag(&r->r);
    if (tag != T_SMALL_INT && tag != T_INT && tag != T_SMALL_BIG && tag != T_LARGE_BIG)
        return 0;
    rd save = *r;
    cnode__int x;
    if (cnode__rd_int(&r->r, &x) == 0 && !x.neg && x.n <= 1) {
        *v = x.n ? x.mag[0] : 0;
        return 1;
    }
    *r = save;
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

/* A list at r: LIST_EXT or STRING_EXT, and tails that continue it. */
static int
hash_list(rd *r, uint32_t *h)
{
    run s = {0, 0};
    for (;;) {
        if (cnode__rd_tag(&r->r) == T_STRING) {
            const unsigned char *b;
            size_t n;
            if (cnode__rd_string(&r->r, &b, &n))
                return CNODE_EINVAL;
            for (size_t i = 0; i < n; i++)
                run_add(h, &s, b[i]);
            run_flush(h, &s);
            mix_nil(h);
            return 0;
        }
        uint32_t n;
        if (cnode__rd_list(&r->r, &n))
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
        int tag = cnode__rd_tag(&r->r);
        if (tag == T_LIST || tag == T_STRING)
            continue;
        run_flush(h, &s);
        return hash_term(r, h);
    }
}

static int
hash_map(rd *r, uint32_t *h)
{
    uint32_t n;
    if (cnode__rd_map(&r->r, &n))
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
hash_binary(rd *r, uint32_t *h)
{
    const unsigned char *b;
    size_t len;
    unsigned bits;
    if (cnode__rd_bits(&r->r, &b, &len, &bits))
        return CNODE_EINVAL;
    size_t whole = bits == 8 ? len : len - 1;
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
hash_ident(rd *r, uint32_t *h)
{
    cnode__ident id;
    if (cnode__rd_ident(&r->r, &id))
        return CNODE_EINVAL;
    switch (id.tag) {
    case T_PID:
    case T_NEW_PID:
        h1(h, id.words[0], HCN(5));
        return 0;
    case T_PORT:
    case T_NEW_PORT:
        h2(h, id.words[0], 0, HCN(6));
        return 0;
    case T_V4_PORT:
        h2(h, id.words[0], id.words[1], HCN(6));
        return 0;
    default: /* references: the first ID word */
        h1(h, id.words[0], HCN(7));
        return 0;
    }
}

static int
hash_export(rd *r, uint32_t *h)
{
    cnode__atom m, f;
    uint32_t arity;
    if (cnode__rd_export(&r->r, &m, &f, &arity))
        return CNODE_EINVAL;
    h2(h, arity, atom_hash(m.s, m.n, m.latin1), HC);
    h1(h, atom_hash(f.s, f.n, f.latin1), HCN(14));
    return 0;
}

static int
hash_number(rd *r, uint32_t *h, int tag)
{
    if (tag == T_NEW_FLOAT || tag == T_FLOAT) {
        double d;
        if (cnode__rd_float(&r->r, &d))
            return CNODE_EINVAL;
        mix_float(h, d);
        return 0;
    }
    cnode__int v;
    if (cnode__rd_int(&r->r, &v))
        return CNODE_EINVAL;
    mix_integer(h, v.mag, v.n, v.neg);
    return 0;
}

static int
hash_term(rd *r, uint32_t *h)
{
    int tag = cnode__rd_tag(&r->r);
    switch (tag) {
    case T_ATOM:
    case T_SMALL_ATOM:
    case T_ATOM_UTF8:
    case T_SMALL_ATOM_UTF8: {
        uint32_t ah;
        if (read_atom(r, &ah))
            return CNODE_EINVAL;
        mix_atom(h, ah);
        return 0;
    }
    case T_SMALL_INT:
    case T_INT:
    case T_SMALL_BIG:
    case T_LARGE_BIG:
    case T_NEW_FLOAT:
    case T_FLOAT:
        return hash_number(r, h, tag);
    case T_NIL:
        r->r.pos++;
        mix_nil(h);
        return 0;
    case T_BINARY:
    case T_BIT_BINARY:
        return hash_binary(r, h);
    case T_PID:
    case T_NEW_PID:
    case T_PORT:
    case T_NEW_PORT:
    case T_V4_PORT:
    case T_REF:
    case T_NEW_REF:
    case T_NEWER_REF:
        return hash_ident(r, h);
    case T_EXPORT:
        return hash_export(r, h);
    case T_NEW_FUN:
        return CNODE_ENOTSUP;
    default:
        break;
    }
    /* containers; the walk has bounded their depth, this bounds the recursion on its own */
    if (++r->depth > MAX_DEPTH)
        return CNODE_EINVAL;
    int rc;
    switch (tag) {
    case T_STRING:
    case T_LIST:
        rc = hash_list(r, h);
        break;
    case T_SMALL_TUPLE:
    case T_LARGE_TUPLE: {
        uint32_t n;
        rc = cnode__rd_tuple(&r->r, &n) ? CNODE_EINVAL : 0;
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
    rd r = {cnode__rd_at(buf, len), 0};
    if (len > 0 && r.r.b[0] == 131)
        r.r.pos = 1;
    rd all = r;
    if (cnode__rd_skip(&all.r, NULL) != 0 || all.r.pos != len)
        return CNODE_EINVAL; /* malformed, truncated, or bytes after the term */
    uint32_t h = 0;
    int rc = hash_term(&r, &h);
    if (rc)
        return rc;
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
