/* ei_glue/term.c: the whole-term walk of the bounded reader (reader.h).
 * Everything the peer sends is walked before ei or any printer, parser or
 * hash reads it, so nothing reads past a buffer, depth and size are bounded,
 * and what passes is what BEAM's binary_to_term takes, with these
 * differences: compressed terms (tag 80) are refused; a NEW_FUN whose Size
 * disagrees with its contents, or whose Pid is not a pid, is refused (BEAM
 * ignores both; ei cannot read such a fun, and ei only ever sees what this
 * walk passed); depth and element counts have limits. Duplicate map keys are
 * refused as BEAM refuses them: each key's fingerprint (term_keys.c: equal for
 * equal values however encoded) is kept on a stack shared by the open maps,
 * and a map's are sorted and compared when it closes, O(k log k) for k keys.
 * The stack lives in this frame up to KEYS_LOCAL keys; past that (a map of
 * more than KEYS_LOCAL keys, or many open at once) it moves to the heap, 8
 * bytes a key, freed before return: the one allocation in ei_glue/. A key
 * holding a map is read again for each map around it: the bytes read for
 * keys have a budget of 8 times the input plus 64 KB (a limit of our own:
 * BEAM takes such terms). */
#include "ei_glue/reader.h"
#include "ei_glue/term_keys.h"

#include <stdlib.h>
#include <string.h>

/* The walker's own stack; max_depth above this is clamped to it. */
#define WALK_STACK 1024
/* Key fingerprints kept in the walk's frame before the heap is used. */
#define KEYS_LOCAL 1024

const cnode__term_limits cnode__term_limits_default = {.max_depth = 1024, .max_elements = (size_t)1 << 24};

typedef struct {
    uint64_t left; /* terms still to walk at this level */
    size_t end;    /* for NEW_FUN_EXT: where its Size says it ends; else 0 */
    size_t kstart; /* for a map: where its current key starts */
    size_t kbase;  /* for a map: its first key fingerprint on the key stack */
    int map;
} level;

/* The fingerprints of the keys of the open maps, innermost last. */
typedef struct {
    uint64_t *v, local[KEYS_LOCAL];
    size_t n, cap;
} keystack;

static int
keys_push(keystack *k, uint64_t fp)
{
    if (k->n == k->cap) {
        size_t cap = k->cap * 2;
        uint64_t *v = k->v == k->local ? malloc(cap * sizeof *v) : realloc(k->v, cap * sizeof *v);
        if (!v)
            return -1;
        if (k->v == k->local)
            memcpy(v, k->local, k->n * sizeof *v);
        k->v = v;
        k->cap = cap;
    }
    k->v[k->n++] = fp;
    return 0;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* 1 if two of v[0, n) are equal (sorts them). */
static int
has_dup(uint64_t *v, size_t n)
{
    if (n < 2)
        return 0;
    if (n == 2)
        return v[0] == v[1];
    qsort(v, n, sizeof *v, cmp_u64);
    for (size_t i = 1; i < n; i++)
        if (v[i] == v[i - 1])
            return 1;
    return 0;
}

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

/* One term at the cursor (the walk under cnode__rd_skip); keys: the key stack. */
static int
walk(cnode__rd *r, const cnode__term_limits *lim, keystack *keys)
{
    unsigned maxd = lim->max_depth < WALK_STACK ? lim->max_depth : WALK_STACK;
    level st[WALK_STACK];
    unsigned depth = 0;
    size_t elements = 0;
    /* Bytes fingerprinted: a key inside a key inside a key... is read again at
       each level, so a budget linear in the input keeps the cost O(len) (the
       keys of ordinary terms take one pass, a map nested in a key two) */
    uint64_t hashed = 0, budget = 8 * (uint64_t)(r->len - r->pos) + 65536;
    for (;;) {
        if (++elements > lim->max_elements)
            FAIL("term: more elements than the limit allows");
        if (depth > 0 && st[depth - 1].map && st[depth - 1].left % 2 == 0)
            st[depth - 1].kstart = r->pos; /* a key starts */
        uint64_t children;
        size_t fun_end;
        int tag = cnode__rd_tag(r);
        int rc = step(r, &children, &fun_end);
        if (rc != 0)
            return rc;
        if (children > 0) {
            /* each child takes at least one byte: a count the bytes cannot hold is
               either a truncation or a lie; both end the same way for a caller
               holding a whole frame, but only the count limit is MALFORMED */
            if (children > lim->max_elements || depth >= maxd)
                FAIL(depth >= maxd ? "term: nested deeper than the limit allows" : "term: more elements than the limit allows");
            st[depth].left = children;
            st[depth].end = fun_end;
            st[depth].map = tag == T_MAP;
            st[depth].kbase = keys->n;
            depth++;
            continue;
        }
        /* one term done: close every level that this completes */
        while (depth > 0) {
            level *t = &st[depth - 1];
            if (t->map && t->left % 2 == 0) { /* a key done */
                uint64_t fp;
                if ((hashed += r->pos - t->kstart) > budget)
                    FAIL("term: map keys nested in map keys past what the key check reads");
                if ((rc = cnode__key_fingerprint(r->b + t->kstart, r->pos - t->kstart, &fp)) != 0)
                    FAIL("term: map key unreadable"); /* cannot happen: the walk passed it */
                if (keys_push(keys, fp) != 0)
                    FAIL("term: no memory to check a map's keys");
            }
            if (--t->left > 0)
                break;
            depth--;
            if (t->end && t->end != r->pos)
                FAIL("term: fun size does not match its contents");
            if (t->map) {
                if (has_dup(keys->v + t->kbase, keys->n - t->kbase))
                    FAIL("term: map with a key twice");
                keys->n = t->kbase;
            }
        }
        if (depth == 0)
            return 0;
    }
}

int
cnode__rd_skip(cnode__rd *r, const cnode__term_limits *lim)
{
    if (!lim)
        lim = &cnode__term_limits_default;
    size_t start = r->pos;
    keystack keys;
    keys.v = keys.local;
    keys.n = 0;
    keys.cap = KEYS_LOCAL;
    int rc = walk(r, lim, &keys);
    if (keys.v != keys.local)
        free(keys.v);
    if (rc != 0)
        r->pos = start;
    return rc;
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
