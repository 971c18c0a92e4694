/* ei_glue/term_keys.c: a fingerprint of a map key as BEAM compares keys.
 *
 * binary_to_term refuses a map with two equal keys, and equal keys can be
 * encoded differently: an atom as ATOM_EXT or SMALL_ATOM_UTF8_EXT, an integer
 * as SMALL_INTEGER, INTEGER or SMALL_BIG, a list as STRING_EXT or as LIST_EXT
 * cells (with a LIST_EXT tail or not), a tuple small or large, a float as text
 * or bits (and -0.0 equal to 0.0, as OTP 25 compares them), a bitstring with
 * other bits in its last byte, a map's pairs in any order (checked against
 * OTP 25: binary_to_term refuses each of these pairs as duplicates). The
 * fingerprint is a 64-bit hash of a canonical stream of the key's value:
 * equal keys always meet; two different keys meet with a chance of 2^-64 (and
 * their map is then refused). Called only on bytes cnode__rd_skip has passed;
 * an explicit stack, no recursion. */
#include "ei_glue/reader.h"
#include "ei_glue/term_keys.h"

#include <string.h>

#define HSTACK 1024

typedef struct {
    uint64_t left; /* children still to hash at this level */
    uint64_t saved, sum;
    unsigned char kind; /* 0 tuple or fun, 1 list (elements then the tail), 2 map */
} hlevel;

static uint64_t
mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static void
feed(uint64_t *h, uint64_t x)
{
    *h = mix(*h ^ x) + 0x9e3779b97f4a7c15ULL;
}

/* n bytes, their count first */
static void
feed_bytes(uint64_t *h, const unsigned char *s, size_t n)
{
    feed(h, n);
    uint64_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        acc = acc << 8 | s[i];
        if (i % 8 == 7)
            feed(h, acc), acc = 0;
    }
    if (n % 8)
        feed(h, acc);
}

/* an atom's text as UTF-8 whatever its encoding */
static void
feed_atom(uint64_t *h, const cnode__atom *a)
{
    feed(h, 'A');
    if (!a->latin1) {
        feed_bytes(h, a->s, a->n);
        return;
    }
    size_t n = a->n;
    for (size_t i = 0; i < a->n; i++)
        n += a->s[i] >= 0x80;
    feed(h, n);
    uint64_t acc = 0;
    size_t k = 0;
    for (size_t i = 0; i < a->n; i++) {
        unsigned char u[2] = {a->s[i], 0};
        size_t m = 1;
        if (a->s[i] >= 0x80)
            u[0] = (unsigned char)(0xC0 | a->s[i] >> 6), u[1] = (unsigned char)(0x80 | (a->s[i] & 0x3F)), m = 2;
        for (size_t j = 0; j < m; j++, k++) {
            acc = acc << 8 | u[j];
            if (k % 8 == 7)
                feed(h, acc), acc = 0;
        }
    }
    if (k % 8)
        feed(h, acc);
}

static void
feed_int(uint64_t *h, const cnode__int *v)
{
    feed(h, 'I');
    feed(h, (uint64_t)v->neg);
    feed_bytes(h, v->mag, v->n);
}

static void
feed_ident(uint64_t *h, const cnode__ident *id)
{
    int pid = id->tag == T_PID || id->tag == T_NEW_PID;
    int port = id->tag == T_PORT || id->tag == T_NEW_PORT || id->tag == T_V4_PORT;
    feed(h, pid ? 'P' : port ? 'O' : 'R');
    feed_atom(h, &id->node);
    unsigned nw = port ? 2 : id->nwords;
    feed(h, nw);
    for (unsigned i = 0; i < nw; i++)
        feed(h, i < id->nwords ? id->words[i] : 0);
    feed(h, id->creation);
}

int
cnode__key_fingerprint(const unsigned char *b, size_t len, uint64_t *out)
{
    hlevel st[HSTACK];
    unsigned depth = 0;
    uint64_t cur = 0x6a09e667f3bcc908ULL;
    cnode__rd r = cnode__rd_at(b, len);
    for (;;) {
        if (depth > 0) {
            hlevel *t = &st[depth - 1];
            if (t->kind == 1 && t->left > 1)
                feed(&cur, 'C'); /* a cons cell before each element; the tail is itself */
            if (t->kind == 2 && t->left % 2 == 0)
                cur = 0x510e527fade682d1ULL; /* each pair on its own, summed: order does not count */
        }
        uint64_t children = 0;
        unsigned char kind = 0;
        int rc = 0, tag = cnode__rd_tag(&r);
        switch (tag) {
        case T_SMALL_INT:
        case T_INT:
        case T_SMALL_BIG:
        case T_LARGE_BIG: {
            cnode__int v;
            if ((rc = cnode__rd_int(&r, &v)) == 0)
                feed_int(&cur, &v);
            break;
        }
        case T_NEW_FLOAT:
        case T_FLOAT: {
            double d;
            if ((rc = cnode__rd_float(&r, &d)) == 0) {
                uint64_t bits;
                if (d == 0)
                    d = 0.0; /* -0.0 =:= 0.0 in OTP 25 */
                memcpy(&bits, &d, sizeof bits);
                feed(&cur, 'D');
                feed(&cur, bits);
            }
            break;
        }
        case T_ATOM:
        case T_ATOM_UTF8:
        case T_SMALL_ATOM:
        case T_SMALL_ATOM_UTF8: {
            cnode__atom a;
            if ((rc = cnode__rd_atom(&r, &a)) == 0)
                feed_atom(&cur, &a);
            break;
        }
        case T_REF:
        case T_NEW_REF:
        case T_NEWER_REF:
        case T_PORT:
        case T_NEW_PORT:
        case T_V4_PORT:
        case T_PID:
        case T_NEW_PID: {
            cnode__ident id;
            if ((rc = cnode__rd_ident(&r, &id)) == 0)
                feed_ident(&cur, &id);
            break;
        }
        case T_BINARY:
        case T_BIT_BINARY: {
            const unsigned char *s;
            size_t n;
            unsigned bits;
            if ((rc = cnode__rd_bits(&r, &s, &n, &bits)) == 0) {
                feed(&cur, 'B');
                feed(&cur, n ? (uint64_t)(n - 1) * 8 + bits : 0);
                if (n) {
                    feed_bytes(&cur, s, n - 1);
                    feed(&cur, (unsigned char)(s[n - 1] & (0xFF00u >> bits)));
                }
            }
            break;
        }
        case T_NIL:
            r.pos++;
            feed(&cur, 'N');
            break;
        case T_STRING: {
            const unsigned char *s;
            size_t n;
            if ((rc = cnode__rd_string(&r, &s, &n)) == 0) {
                for (size_t i = 0; i < n; i++) {
                    cnode__int v;
                    cnode__int_set(&v, 0, s[i]);
                    feed(&cur, 'C');
                    feed_int(&cur, &v);
                }
                feed(&cur, 'N');
            }
            break;
        }
        case T_EXPORT: {
            cnode__atom m, f;
            uint32_t ar;
            if ((rc = cnode__rd_export(&r, &m, &f, &ar)) == 0) {
                feed(&cur, 'E');
                feed_atom(&cur, &m);
                feed_atom(&cur, &f);
                feed(&cur, ar);
            }
            break;
        }
        case T_SMALL_TUPLE:
        case T_LARGE_TUPLE: {
            uint32_t k;
            if ((rc = cnode__rd_tuple(&r, &k)) == 0) {
                feed(&cur, 'T');
                feed(&cur, k);
                children = k;
            }
            break;
        }
        case T_LIST: {
            uint32_t k;
            if ((rc = cnode__rd_list(&r, &k)) == 0)
                children = (uint64_t)k + 1, kind = 1;
            break;
        }
        case T_MAP: {
            uint32_t k;
            if ((rc = cnode__rd_map(&r, &k)) == 0)
                children = 2 * (uint64_t)k, kind = 2;
            break;
        }
        case T_NEW_FUN: {
            cnode__fun fn;
            cnode__atom m;
            cnode__int oi, ou;
            cnode__ident pid;
            if ((rc = cnode__rd_fun(&r, &fn)) == 0 && (rc = cnode__rd_atom(&r, &m)) == 0 && (rc = cnode__rd_int(&r, &oi)) == 0 &&
                (rc = cnode__rd_int(&r, &ou)) == 0 && (rc = cnode__rd_ident(&r, &pid)) == 0) {
                feed(&cur, 'F');
                feed(&cur, fn.arity);
                feed_bytes(&cur, fn.uniq, 16);
                feed(&cur, fn.index);
                feed(&cur, fn.num_free);
                feed_atom(&cur, &m);
                feed_int(&cur, &oi);
                feed_int(&cur, &ou);
                feed_ident(&cur, &pid);
                children = fn.num_free;
            }
            break;
        }
        default:
            rc = (int)CNODE__MALFORMED;
        }
        if (rc != 0)
            return rc;
        if (children > 0) {
            if (depth >= HSTACK)
                return (int)CNODE__MALFORMED;
            if (kind == 2) {
                feed(&cur, 'M');
                feed(&cur, children / 2);
            }
            st[depth].left = children;
            st[depth].kind = kind;
            st[depth].saved = cur;
            st[depth].sum = 0;
            depth++;
            continue;
        }
        if (kind == 2) { /* an empty map */
            feed(&cur, 'M');
            feed(&cur, 0);
            feed(&cur, 0);
        }
        /* one term done: close every level that this completes */
        while (depth > 0) {
            hlevel *t = &st[depth - 1];
            t->left--;
            if (t->kind == 2 && t->left % 2 == 0) {
                t->sum += mix(cur); /* a pair done */
                cur = t->saved;
            }
            if (t->left > 0)
                break;
            if (t->kind == 2)
                feed(&cur, t->sum);
            depth--;
        }
        if (depth == 0) {
            *out = mix(cur);
            return 0;
        }
    }
}
