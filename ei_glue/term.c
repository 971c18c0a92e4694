/* ei_glue/term.c: the whole-term walk of the bounded reader (reader.h).
 * Everything the peer sends is walked before ei or any printer, parser or
 * hash reads it, so nothing reads past a buffer, depth and size are bounded,
 * and what passes is what BEAM's binary_to_term takes, with these
 * differences: compressed terms (tag 80) are refused; a NEW_FUN whose Size
 * disagrees with its contents, or whose Pid is not a pid, is refused (BEAM
 * ignores both; ei cannot read such a fun, and ei only ever sees what this
 * walk passed); depth and element counts have limits; duplicate map keys are
 * not looked for (BEAM refuses them). */
#include "ei_glue/reader.h"

/* The walker's own stack; max_depth above this is clamped to it. */
#define WALK_STACK 1024

const cnode__term_limits cnode__term_limits_default = {.max_depth = 1024, .max_elements = (size_t)1 << 24};

typedef struct {
    uint64_t left; /* terms still to walk at this level */
    size_t end;    /* for NEW_FUN_EXT: where its Size says it ends; else 0 */
} level;

#define FAIL(msg)                                                                                                                  \
    do {                                                                                                                           \
        r->why = (msg);                                                                                                            \
        return (int)CNODE__MALFORMED;                                                                                              \
    } while (0)

/* One term's own bytes at r (a leaf, or a container's header): *children gets
 * the terms that follow inside it, *fun_end where a NEW_FUN ends (or 0). */
static int
step(cnode__rd *r, uint64_t *children, size_t *fun_end)
{
    int tag = cnode__rd_tag(r), rc = 0;
    const unsigned char *s;
    size_t n;
    unsigned bits;
    uint32_t k;
    double d;
    cnode__int iv;
    cnode__atom a, f;
    cnode__ident id;
    cnode__fun fun;
    *children = 0;
    *fun_end = 0;
    switch (tag) {
    case -1:
        return (int)CNODE__NEED_MORE;
    case T_SMALL_INT:
    case T_INT:
    case T_SMALL_BIG:
    case T_LARGE_BIG:
        return cnode__rd_int(r, &iv);
    case T_NEW_FLOAT:
    case T_FLOAT:
        return cnode__rd_float(r, &d);
    case T_ATOM:
    case T_ATOM_UTF8:
    case T_SMALL_ATOM:
    case T_SMALL_ATOM_UTF8:
    case 82: /* ATOM_CACHE_REF: refused by cnode__rd_atom */
        return cnode__rd_atom(r, &a);
    case T_REF:
    case T_NEW_REF:
    case T_NEWER_REF:
    case T_PORT:
    case T_NEW_PORT:
    case T_V4_PORT:
    case T_PID:
    case T_NEW_PID:
        return cnode__rd_ident(r, &id);
    case T_BINARY:
    case T_BIT_BINARY:
        return cnode__rd_bits(r, &s, &n, &bits);
    case T_NIL:
        r->pos++;
        return 0;
    case T_STRING:
        return cnode__rd_string(r, &s, &n);
    case T_EXPORT:
        return cnode__rd_export(r, &a, &f, &k);
    case T_SMALL_TUPLE:
    case T_LARGE_TUPLE:
        rc = cnode__rd_tuple(r, &k);
        *children = k;
        return rc;
    case T_MAP:
        rc = cnode__rd_map(r, &k);
        *children = 2 * (uint64_t)k;
        return rc;
    case T_LIST: /* elements, then the tail */
        rc = cnode__rd_list(r, &k);
        *children = (uint64_t)k + 1;
        return rc;
    case T_NEW_FUN: { /* Size Arity Uniq Index NumFree Module OldIndex OldUniq Pid Free... */
        cnode__rd t = *r;
        if ((rc = cnode__rd_fun(&t, &fun)) != 0 || (rc = cnode__rd_atom(&t, &a)) != 0 || (rc = cnode__rd_int(&t, &iv)) != 0 ||
            (rc = cnode__rd_int(&t, &iv)) != 0 || (rc = cnode__rd_ident(&t, &id)) != 0) {
            r->why = t.why;
            return rc;
        }
        if (id.tag != T_PID && id.tag != T_NEW_PID)
            FAIL("term: fun whose Pid is not a pid (ei cannot read it)");
        *fun_end = r->pos + 1 + fun.size;
        *children = fun.num_free;
        *r = t;
        if (fun.num_free == 0 && r->pos != *fun_end)
            FAIL("term: fun size does not match its contents");
        return 0;
    }
    case T_FUN:
        FAIL("term: FUN_EXT is no longer read by BEAM");
    case 121:
        FAIL("term: LOCAL_EXT is never valid on the wire");
    default:
        FAIL("term: unknown tag");
    }
}

int
cnode__rd_skip(cnode__rd *r, const cnode__term_limits *lim)
{
    if (!lim)
        lim = &cnode__term_limits_default;
    unsigned maxd = lim->max_depth < WALK_STACK ? lim->max_depth : WALK_STACK;
    level st[WALK_STACK];
    unsigned depth = 0;
    size_t elements = 0, start = r->pos;
    for (;;) {
        if (++elements > lim->max_elements) {
            r->pos = start;
            FAIL("term: more elements than the limit allows");
        }
        uint64_t children;
        size_t fun_end;
        int rc = step(r, &children, &fun_end);
        if (rc != 0) {
            r->pos = start;
            return rc;
        }
        if (children > 0) {
            /* each child takes at least one byte: a count the bytes cannot hold is
               either a truncation or a lie; both end the same way for a caller
               holding a whole frame, but only the count limit is MALFORMED */
            if (children > lim->max_elements || depth >= maxd) {
                r->pos = start;
                FAIL(depth >= maxd ? "term: nested deeper than the limit allows" : "term: more elements than the limit allows");
            }
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
            if (st[depth].end && st[depth].end != r->pos) {
                r->pos = start;
                FAIL("term: fun size does not match its contents");
            }
        }
        if (depth == 0)
            return 0;
    }
}

ptrdiff_t
cnode__term_extent(const char *buf, size_t len, const cnode__term_limits *lim, const char **why)
{
    cnode__rd r = cnode__rd_at(buf, len);
    int rc = cnode__rd_skip(&r, lim);
    if (rc != 0) {
        if (why && rc == (int)CNODE__MALFORMED)
            *why = r.why;
        return rc;
    }
    return (ptrdiff_t)r.pos;
}
