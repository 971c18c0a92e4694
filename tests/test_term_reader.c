/* The bounded term reader (ei_glue/reader.h), once, for everything that reads
 * terms (walker, ~0p printer and parser, inspect, phash2): each rule on the
 * vectors of tests/data/term_reader.tsv, the verdicts terms_SUITE checks
 * against BEAM's binary_to_term. Every input sits at the end of a page whose
 * next page is unreadable, so a read past the end faults. */
#include <CUnit/CUnit.h>
#include <stdlib.h>
#include <string.h>

#include "ei_glue/reader.h"
#include "testutil.h"

typedef struct {
    char name[64], verdict[8];
    unsigned char *b;
    size_t len;
} vec;

static vec *vecs;
static size_t nvecs;

static int
hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int
load(void)
{
    char *text = tu_read_file("tests/data/term_reader.tsv", NULL);
    if (!text)
        return -1;
    size_t cap = 256;
    vecs = calloc(cap, sizeof *vecs);
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line && nvecs < cap; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            continue;
        vec *v = &vecs[nvecs];
        char *hex = malloc(strlen(line));
        if (sscanf(line, "%63s\t%7s\t%s", v->name, v->verdict, hex) != 3) {
            free(hex);
            continue;
        }
        v->len = strlen(hex) / 2;
        v->b = malloc(v->len + 1);
        for (size_t i = 0; i < v->len; i++)
            v->b[i] = (unsigned char)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
        free(hex);
        nvecs++;
    }
    free(text);
    return nvecs > 50 ? 0 : -1;
}

static int
unload(void)
{
    for (size_t i = 0; i < nvecs; i++)
        free(vecs[i].b);
    free(vecs);
    return 0;
}

/* The reader on b[0, n) at the end of a guard page: its return code; *end the cursor after. */
static int
skip_guarded(const unsigned char *b, size_t n, const cnode__term_limits *lim, size_t *end, const char **why)
{
    tu_guard g = tu_guard_copy(b, n);
    cnode__rd r = cnode__rd_at(g.p, n);
    int rc = cnode__rd_skip(&r, lim);
    *end = r.pos;
    *why = r.why;
    tu_guard_free(&g);
    return rc;
}

/* Every vector whose name starts with prefix has the verdict the file gives
 * (a "limit" one is refused); returns how many there were. */
static size_t
check(const char *prefix)
{
    size_t seen = 0;
    for (size_t i = 0; i < nvecs; i++) {
        vec *v = &vecs[i];
        if (strncmp(v->name, prefix, strlen(prefix)) != 0)
            continue;
        seen++;
        size_t end;
        const char *why;
        int rc = skip_guarded(v->b, v->len, NULL, &end, &why);
        int accept = strcmp(v->verdict, "accept") == 0;
        if (accept ? rc != 0 || end != v->len : rc == 0)
            fprintf(stderr, "vector %s: rc %d (%s), expected %s\n", v->name, rc, why ? why : "", v->verdict);
        CU_ASSERT(accept ? rc == 0 && end == v->len : rc != 0);
        if (!accept)
            CU_ASSERT(rc != 0 && end == 0); /* a refusal leaves the cursor where it was */
    }
    CU_ASSERT(seen > 0);
    return seen;
}

/* Every accepted vector cut at every byte: NEED_MORE, never a read past the end. */
static void
test_truncated_at_every_byte(void)
{
    size_t cuts = 0;
    for (size_t i = 0; i < nvecs; i++) {
        vec *v = &vecs[i];
        if (strcmp(v->verdict, "accept") != 0)
            continue;
        for (size_t k = 0; k < v->len; k++, cuts++) {
            size_t end;
            const char *why;
            int rc = skip_guarded(v->b, k, NULL, &end, &why);
            if (rc != (int)CNODE__NEED_MORE)
                fprintf(stderr, "vector %s cut at %zu: rc %d (%s)\n", v->name, k, rc, why ? why : "");
            CU_ASSERT_EQUAL(rc, (int)CNODE__NEED_MORE);
        }
    }
    CU_ASSERT(cuts > 1000);
}

static void
test_lengths_past_the_end(void)
{
    check("len_");
}

static void
test_depth_over_the_limit(void)
{
    check("depth_");
    /* the limit is the caller's: 1000 nested tuples pass the default, not a limit of 10 */
    unsigned char deep[2001];
    for (int i = 0; i < 1000; i++) {
        deep[2 * i] = T_SMALL_TUPLE;
        deep[2 * i + 1] = 1;
    }
    deep[2000] = T_NIL;
    size_t end;
    const char *why;
    CU_ASSERT_EQUAL(skip_guarded(deep, sizeof deep, NULL, &end, &why), 0);
    cnode__term_limits lim = {.max_depth = 10, .max_elements = 1 << 20};
    CU_ASSERT_EQUAL(skip_guarded(deep, sizeof deep, &lim, &end, &why), (int)CNODE__MALFORMED);
    CU_ASSERT(why && strstr(why, "deeper"));
}

static void
test_atoms_utf8(void)
{
    check("atom_");
}

static void
test_float_text(void)
{
    check("float_");
    /* the value is BEAM's whatever the radix character */
    cnode__rd r = cnode__rd_at("c1,25\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 32);
    double d = 0;
    CU_ASSERT_EQUAL(cnode__rd_float(&r, &d), 0);
    CU_ASSERT_EQUAL(d, 1.25);
}

static void
test_new_float_nan(void)
{
    check("new_float_");
}

static void
test_identifiers(void)
{
    check("pid_");
    check("port_");
    check("ref_");
}

static void
test_other_rules(void)
{
    check("bit_binary_");
    check("big_");
    check("export_");
    check("fun_");
    check("local_ext");
    check("unknown_tag");
    check("compressed");
}

/* A map of n integer keys 0..n-1 (INTEGER_EXT), the last one replaced by
 * dup_of if dup_of >= 0 (as SMALL_INTEGER when it fits, so the duplicate is
 * equal by value, not by bytes); *len its size. */
static unsigned char *
big_map(uint32_t n, long dup_of, size_t *len)
{
    unsigned char *b = malloc(5 + (size_t)n * 6), *p = b;
    *p++ = 116;
    *p++ = (unsigned char)(n >> 24), *p++ = (unsigned char)(n >> 16), *p++ = (unsigned char)(n >> 8), *p++ = (unsigned char)n;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = i + 1 == n && dup_of >= 0 ? (uint32_t)dup_of : i;
        if (i + 1 == n && dup_of >= 0 && k < 256) {
            *p++ = 97, *p++ = (unsigned char)k;
        } else {
            *p++ = 98;
            *p++ = (unsigned char)(k >> 24), *p++ = (unsigned char)(k >> 16), *p++ = (unsigned char)(k >> 8), *p++ = (unsigned char)k;
        }
        *p++ = 106;
    }
    *len = (size_t)(p - b);
    return b;
}

static void
test_map_duplicate_keys(void)
{
    check("map_dup_");
    /* past the keys kept in the walk's frame (1024): 100000 keys, the heap's turn */
    size_t len, end;
    const char *why;
    unsigned char *b = big_map(100000, -1, &len);
    CU_ASSERT_EQUAL(skip_guarded(b, len, NULL, &end, &why), 0);
    CU_ASSERT_EQUAL(end, len);
    free(b);
    b = big_map(100000, 7, &len);
    CU_ASSERT_EQUAL(skip_guarded(b, len, NULL, &end, &why), (int)CNODE__MALFORMED);
    CU_ASSERT_PTR_NOT_NULL(why);
    if (why)
        CU_ASSERT_STRING_EQUAL(why, "term: map with a key twice");
    free(b);
    /* the same key in two sibling maps is no duplicate; in a map inside a key, it is */
    static const unsigned char sib[] = {108, 0, 0, 0, 2, 116, 0, 0, 0, 1, 97, 1, 106, 116, 0, 0, 0, 1, 97, 1, 106, 106};
    CU_ASSERT_EQUAL(skip_guarded(sib, sizeof sib, NULL, &end, &why), 0);
    static const unsigned char inkey[] = {116, 0, 0, 0, 1, 116, 0, 0, 0, 2, 97, 1, 106, 97, 1, 106, 106};
    CU_ASSERT_EQUAL(skip_guarded(inkey, sizeof inkey, NULL, &end, &why), (int)CNODE__MALFORMED);
    /* maps nested in keys: each level reads its key again, within a budget
       linear in the input; a 100 KB binary under 3 levels passes, under 200
       it is refused by that limit, not read 200 times */
    for (int levels = 3; levels <= 200; levels += 197) {
        size_t bin = 100000, n = (size_t)levels * 5 + 5 + bin + (size_t)levels * 2;
        unsigned char *m = malloc(n), *p = m;
        for (int i = 0; i < levels; i++)
            *p++ = 116, *p++ = 0, *p++ = 0, *p++ = 0, *p++ = 1;
        *p++ = 109, *p++ = 0, *p++ = (unsigned char)(bin >> 16), *p++ = (unsigned char)(bin >> 8), *p++ = (unsigned char)bin;
        memset(p, 'x', bin);
        p += bin;
        for (int i = 0; i < levels; i++)
            *p++ = 97, *p++ = 1;
        CU_ASSERT_EQUAL((size_t)(p - m), n);
        int rc = skip_guarded(m, n, NULL, &end, &why);
        if (levels == 3) {
            CU_ASSERT_EQUAL(rc, 0);
        } else {
            CU_ASSERT_EQUAL(rc, (int)CNODE__MALFORMED);
            CU_ASSERT(why && strstr(why, "nested in map keys") != NULL);
        }
        free(m);
    }
}

void
cnode_test_register(void)
{
    CU_pSuite s = CU_add_suite("term_reader", load, unload);
    ADD_TEST(s, test_truncated_at_every_byte);
    ADD_TEST(s, test_lengths_past_the_end);
    ADD_TEST(s, test_depth_over_the_limit);
    ADD_TEST(s, test_atoms_utf8);
    ADD_TEST(s, test_float_text);
    ADD_TEST(s, test_new_float_nan);
    ADD_TEST(s, test_identifiers);
    ADD_TEST(s, test_other_rules);
    ADD_TEST(s, test_map_duplicate_keys);
}
