/* ei_glue/term.c: a bounded, non-recursive walker over one external term.
 * Everything the peer sends is walked before ei decodes it, so ei never
 * reads past a buffer, and depth and size are bounded. */
#include "ei_glue/glue.h"

#include <string.h>

/* The walker's own stack; max_depth above this is clamped to it. */
#define WALK_STACK 1024

const cnode__term_limits cnode__term_limits_default = {.max_depth = 1024, .max_elements = (size_t)1 << 24};

static uint32_t
rd32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#define FAIL(msg)                                                                                                      \
    do {                                                                                                               \
        if (why)                                                                                                       \
            *why = (msg);                                                                                              \
        return CNODE__MALFORMED;                                                                                       \
    } while (0)
#define NEED(n)                                                                                                        \
    do {                                                                                                               \
        if (len - pos < (size_t)(n))                                                                                   \
            return CNODE__NEED_MORE;                                                                                   \
    } while (0)

/* Characters in s[0, n) if it is valid UTF-8 as BEAM takes it for atoms
 * (shortest forms, no surrogates, at most U+10FFFF); (size_t)-1 if not. */
static size_t
utf8_chars(const unsigned char *s, size_t n)
{
    size_t i = 0, chars = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            chars++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return (size_t)-1;
        }
        if (n - i - 1 < k)
            return (size_t)-1;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return (size_t)-1;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return (size_t)-1;
        i += k + 1;
        chars++;
    }
    return chars;
}

/* An atom at buf[pos] (node names in pids, refs, ports; fun modules).
 * Returns the new position, or NEED_MORE / MALFORMED. */
static ptrdiff_t
atom_at(const unsigned char *b, size_t len, size_t pos, const char **why)
{
    if (pos >= len)
        return CNODE__NEED_MORE;
    size_t n;
    int utf8 = b[pos] == 118 || b[pos] == 119; /* else Latin-1: a byte a character */
    switch (b[pos]) {
    case 100: /* ATOM_EXT */
    case 118: /* ATOM_UTF8_EXT */
        if (len - pos < 3)
            return CNODE__NEED_MORE;
        n = (size_t)b[pos + 1] << 8 | b[pos + 2];
        pos += 3;
        break;
    case 115: /* SMALL_ATOM_EXT */
    case 119: /* SMALL_ATOM_UTF8_EXT */
        if (len - pos < 2)
            return CNODE__NEED_MORE;
        n = b[pos + 1];
        pos += 2;
        break;
    case 82:
        FAIL("term: atom cache reference (no atom cache was negotiated)");
    default:
        FAIL("term: expected an atom");
    }
    if (n > (utf8 ? 255 * 4 : 255))
        FAIL("term: atom longer than 255 characters");
    if (len - pos < n)
        return CNODE__NEED_MORE;
    size_t chars = utf8 ? utf8_chars(b + pos, n) : n;
    if (chars == (size_t)-1)
        FAIL("term: atom is not valid UTF-8");
    if (chars > 255)
        FAIL("term: atom longer than 255 characters");
    return (ptrdiff_t)(pos + n);
}

typedef struct {
    uint64_t left;  /* terms still to walk at this level */
    size_t end;     /* for NEW_FUN_EXT: where its Size says it ends; else 0 */
} level;

ptrdiff_t
cnode__term_extent(const char *buf, size_t len, const cnode__term_limits *lim, const char **why)
{
    const unsigned char *b = (const unsigned char *)buf;
    if (!lim)
        lim = &cnode__term_limits_default;
    unsigned maxd = lim->max_depth < WALK_STACK ? lim->max_depth : WALK_STACK;
    level st[WALK_STACK];
    unsigned depth = 0;
    size_t pos = 0, elements = 0;
    for (;;) {
        if (++elements > lim->max_elements)
            FAIL("term: more elements than the limit allows");
        NEED(1);
        unsigned tag = b[pos];
        uint64_t children = 0;
        size_t fun_end = 0;
        ptrdiff_t r;
        switch (tag) {
        case 97: /* SMALL_INTEGER_EXT */
            NEED(2);
            pos += 2;
            break;
        case 98: /* INTEGER_EXT */
            NEED(5);
            pos += 5;
            break;
        case 70: /* NEW_FLOAT_EXT */
            NEED(9);
            pos += 9;
            break;
        case 99: /* FLOAT_EXT */
            NEED(32);
            pos += 32;
            break;
        case 100:
        case 118:
        case 115:
        case 119:
        case 82:
            if ((r = atom_at(b, len, pos, why)) < 0)
                return r;
            pos = (size_t)r;
            break;
        case 101: /* REFERENCE_EXT */
            if ((r = atom_at(b, len, pos + 1, why)) < 0)
                return r;
            pos = (size_t)r;
            NEED(5);
            pos += 5;
            break;
        case 114: /* NEW_REFERENCE_EXT */
        case 90: { /* NEWER_REFERENCE_EXT */
            NEED(3);
            size_t n = (size_t)b[pos + 1] << 8 | b[pos + 2];
            if (n < 1 || n > 5)
                FAIL("term: reference with a bad word count");
            if ((r = atom_at(b, len, pos + 3, why)) < 0)
                return r;
            pos = (size_t)r;
            NEED((tag == 90 ? 4 : 1) + 4 * n);
            pos += (tag == 90 ? 4 : 1) + 4 * n;
            break;
        }
        case 102: /* PORT_EXT */
        case 89:  /* NEW_PORT_EXT */
        case 120: /* V4_PORT_EXT */
            if ((r = atom_at(b, len, pos + 1, why)) < 0)
                return r;
            pos = (size_t)r;
            NEED(tag == 102 ? 5 : tag == 89 ? 8 : 12);
            pos += tag == 102 ? 5 : tag == 89 ? 8 : 12;
            break;
        case 103: /* PID_EXT */
        case 88:  /* NEW_PID_EXT */
            if ((r = atom_at(b, len, pos + 1, why)) < 0)
                return r;
            pos = (size_t)r;
            NEED(tag == 103 ? 9 : 12);
            pos += tag == 103 ? 9 : 12;
            break;
        case 104: /* SMALL_TUPLE_EXT */
            NEED(2);
            children = b[pos + 1];
            pos += 2;
            break;
        case 105: /* LARGE_TUPLE_EXT */
            NEED(5);
            children = rd32(b + pos + 1);
            pos += 5;
            break;
        case 116: /* MAP_EXT */
            NEED(5);
            children = 2 * (uint64_t)rd32(b + pos + 1);
            pos += 5;
            break;
        case 106: /* NIL_EXT */
            pos += 1;
            break;
        case 107: { /* STRING_EXT */
            NEED(3);
            size_t n = (size_t)b[pos + 1] << 8 | b[pos + 2];
            NEED(3 + n);
            pos += 3 + n;
            break;
        }
        case 108: /* LIST_EXT: elements, then the tail */
            NEED(5);
            children = (uint64_t)rd32(b + pos + 1) + 1;
            pos += 5;
            break;
        case 109: { /* BINARY_EXT */
            NEED(5);
            size_t n = rd32(b + pos + 1);
            NEED(5 + n);
            pos += 5 + n;
            break;
        }
        case 77: { /* BIT_BINARY_EXT */
            NEED(6);
            size_t n = rd32(b + pos + 1);
            unsigned bits = b[pos + 5];
            if (bits < 1 || bits > 8 || n == 0)
                FAIL("term: bit binary with bad trailing bits");
            NEED(6 + n);
            pos += 6 + n;
            break;
        }
        case 110: { /* SMALL_BIG_EXT */
            NEED(3);
            size_t n = b[pos + 1];
            if (b[pos + 2] > 1)
                FAIL("term: bignum with a bad sign byte");
            NEED(3 + n);
            pos += 3 + n;
            break;
        }
        case 111: { /* LARGE_BIG_EXT */
            NEED(6);
            size_t n = rd32(b + pos + 1);
            if (b[pos + 5] > 1)
                FAIL("term: bignum with a bad sign byte");
            NEED(6 + n);
            pos += 6 + n;
            break;
        }
        case 112: { /* NEW_FUN_EXT: Size Arity Uniq[16] Index NumFree Module OldIndex OldUniq Pid Free... */
            NEED(30);
            size_t sz = rd32(b + pos + 1);
            if (sz < 29)
                FAIL("term: fun with a bad size");
            fun_end = pos + 1 + sz;
            children = 4 + (uint64_t)rd32(b + pos + 26);
            pos += 30;
            break;
        }
        case 117: /* FUN_EXT (pre-R8): NumFree Pid Module Index Uniq Free... */
            NEED(5);
            children = 4 + (uint64_t)rd32(b + pos + 1);
            pos += 5;
            break;
        case 113: /* EXPORT_EXT: Module Function Arity */
            pos += 1;
            children = 3;
            break;
        case 121:
            FAIL("term: LOCAL_EXT is never valid on the wire");
        default:
            FAIL("term: unknown tag");
        }
        if (children > 0) {
            /* each child takes at least one byte: a count the bytes cannot hold is
               either a truncation or a lie; both end the same way for a caller
               holding a whole frame, but only the count limit is MALFORMED */
            if (children > lim->max_elements)
                FAIL("term: more elements than the limit allows");
            if (depth >= maxd)
                FAIL("term: nested deeper than the limit allows");
            st[depth].left = children;
            st[depth].end = fun_end;
            depth++;
            continue;
        }
        /* one term done: close every level that this completes */
        while (depth > 0) {
            if (--st[depth - 1].left > 0)
                break;
            depth--;
            if (st[depth].end && st[depth].end != pos)
                FAIL("term: fun size does not match its contents");
        }
        if (depth == 0)
            return (ptrdiff_t)pos;
    }
}
