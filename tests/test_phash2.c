/* erlang:phash2 against the shared vectors (real OTP 25 results):
 * tests/data/vectors/phash2.tsv and tests/data/vectors/easy_rpc_hash.tsv,
 * plus pids, refs, ports and funs captured with the same OTP, odd but legal
 * encodings, and malformed input. */
#include <CUnit/CUnit.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cnode_balancer.h"
#include "tests/testutil.h"

#define PHASH2_TSV "tests/data/vectors/phash2.tsv"
#define EASY_HASH_TSV "tests/data/vectors/easy_rpc_hash.tsv"

/* Split line (modified in place) at tabs; returns the field count. */
static int
split_tabs(char *line, char **f, int max)
{
    int n = 0;
    f[n++] = line;
    for (char *p = line; *p && n < max; p++)
        if (*p == '\t') {
            *p = 0;
            f[n++] = p + 1;
        }
    return n;
}

/* Calls row(fields, n) for every data line of a TSV file; returns the row count. */
static int
each_row(const char *path, void (*row)(char **f, int n))
{
    char *text = tu_read_file(path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    int rows = 0;
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save); /* header */
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        char *f[20];
        int n = split_tabs(line, f, 20);
        row(f, n);
        rows++;
    }
    free(text);
    return rows;
}

static int row_failures;

static void
phash2_row(char **f, int n)
{
    CU_ASSERT_EQUAL_FATAL(n, 8);
    unsigned char etf[70000];
    long len = tu_unhex(f[3], etf, sizeof etf);
    CU_ASSERT_FATAL(len > 1);
    uint32_t p1, full, p7, pring;
    int rc = cnode_phash2((const char *)etf, (size_t)len, 0, &p1);
    rc |= cnode_phash2_full((const char *)etf, (size_t)len, &full);
    rc |= cnode_phash2((const char *)etf, (size_t)len, 7, &p7);
    rc |= cnode_phash2((const char *)etf, (size_t)len, 4294967295u, &pring);
    CU_ASSERT_EQUAL(rc, 0);
    int ok = rc == 0 && p1 == strtoul(f[4], NULL, 10) && full == strtoul(f[5], NULL, 10) && p7 == strtoul(f[6], NULL, 10) &&
             pring == strtoul(f[7], NULL, 10);
    /* the same term without its 131 */
    uint32_t nover;
    ok = ok && cnode_phash2_full((const char *)etf + 1, (size_t)len - 1, &nover) == 0 && nover == full;
    if (!ok) {
        row_failures++;
        fprintf(stderr, "phash2 row %s (%s) %s: got %u %u %u %u, want %s %s %s %s\n", f[0], f[1], f[2], p1, full, p7, pring, f[4],
                f[5], f[6], f[7]);
    }
}

static void
test_phash2_vectors(void)
{
    row_failures = 0;
    int rows = each_row(PHASH2_TSV, phash2_row);
    CU_ASSERT_EQUAL(rows, 321);
    CU_ASSERT_EQUAL(row_failures, 0);
}

static void
easy_row(char **f, int n)
{
    CU_ASSERT_EQUAL_FATAL(n, 8);
    unsigned char etf[70000];
    long len = tu_unhex(f[4], etf, sizeof etf);
    CU_ASSERT_FATAL(len > 1);
    uint32_t nodes = (uint32_t)strtoul(f[0], NULL, 10), full, idx;
    int rc = cnode_phash2_full((const char *)etf, (size_t)len, &full);
    rc |= cnode_phash2((const char *)etf, (size_t)len, nodes, &idx);
    /* the chosen node is n<index+1>@host */
    char want_node[32];
    snprintf(want_node, sizeof want_node, "n%u@host", idx + 1);
    if (rc || full != strtoul(f[5], NULL, 10) || idx != strtoul(f[6], NULL, 10) || strcmp(want_node, f[7]) != 0) {
        row_failures++;
        fprintf(stderr, "easy_rpc_hash n=%s args %s: got %u idx %u\n", f[0], f[3], full, idx);
    }
}

static void
test_easy_rpc_hash_vectors(void)
{
    row_failures = 0;
    int rows = each_row(EASY_HASH_TSV, easy_row);
    CU_ASSERT_EQUAL(rows, 520);
    CU_ASSERT_EQUAL(row_failures, 0);
}

static uint32_t
full_of_hex(const char *hex, int *rc)
{
    unsigned char b[512];
    long len = tu_unhex(hex, b, sizeof b);
    uint32_t h = 0;
    *rc = len > 0 ? cnode_phash2_full((const char *)b, (size_t)len, &h) : -100;
    return h;
}

/* Captured on OTP 25.2.3 with erlang:phash2(T, 4294967296), by
 * tests/data/gen_phash2_captured.escript (--check compares with this table). */
static const struct {
    const char *what, *hex;
    uint32_t full;
} captured[] = {
    {"external pid x@y.70000.5", "83587703784079000111700000000500000007", 4050773389u},
    {"external pid id 0x12345678", "83587703784079123456780000000900000007", 1808255441u},
    {"{Pid, a}", "836802587703784079000111700000000500000007770161", 2784692431u},
    {"[Pid]", "836C000000015877037840791234567800000009000000076A", 3422921278u},
    {"newer ref", "835A000377037840790000000700000102030405060708090A", 2110012016u},
    {"new port 42", "835977037840790000002A00000007", 1545473616u},
    {"v4 port 2^32+42", "83787703784079000000010000002A00000007", 1284198716u},
    {"fun lists:map/2", "837177056C6973747377036D61706102", 840287883u},
    {"{fun erlang:node/0, 1}", "83680271770665726C616E6777046E6F646561006101", 191846746u},
    {"#{Pid => Ref}", "8374000000015877037840790001117000000005000000075A000377037840790000000700000102030405060708090A",
     1482537985u},
    {"<<1,2,3:5>>", "834D0000000305010218", 946117966u},
    /* [1,2,3] in shapes BEAM never emits but ei and hand-made buffers may */
    {"[1|[2,3]] as LIST + STRING tail", "836C0000000161016B00020203", 4186538188u},
    {"[1,2,3] with INTEGER_EXT elements",
     "836C00000003620000000162000000026200000003"
     "6A",
     4186538188u},
    {"[1,2,3] with SMALL_BIG elements", "836C000000036E0100016E0100026E0100036A", 4186538188u},
    {"[1|[2|[3]]] nested LIST tails",
     "836C0000000161016C0000000161026C000000016103"
     "6A",
     4186538188u},
    {"\"abc\" as STRING_EXT", "836B0003616263", 519996486u},
    {"abc as ATOM_EXT (Latin-1)", "836400036162 63", 26499u},
    {"1.5 as FLOAT_EXT", "8363312E3530303030303030303030303030303030303030652B30300000000000", 2023646235u},
    {"0 as SMALL_BIG", "836E0000", 3175731469u},
    {"-1 as INTEGER_EXT", "8362FFFFFFFF", 1117813597u},
};

static void
test_captured(void)
{
    for (size_t i = 0; i < sizeof captured / sizeof captured[0]; i++) {
        char hex[600];
        size_t k = 0;
        for (const char *p = captured[i].hex; *p && k < sizeof hex - 1; p++)
            if (*p != ' ')
                hex[k++] = *p;
        hex[k] = 0;
        int rc;
        uint32_t h = full_of_hex(hex, &rc);
        uint32_t want = captured[i].full;
        if (rc != 0 || h != want)
            fprintf(stderr, "captured %s: rc %d, got %u want %u\n", captured[i].what, rc, h, want);
        CU_ASSERT_EQUAL(rc, 0);
        CU_ASSERT_EQUAL(h, want);
    }
}

/* protocol.md §9 table, built with ei (no 131) rather than decoded. */
static void
test_ei_built(void)
{
    ei_x_buff x;
    uint32_t h;
    ei_x_new(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "node");
    ei_x_encode_long(&x, 1);
    CU_ASSERT_EQUAL(cnode_phash2(x.buff, (size_t)x.index, 0, &h), 0);
    CU_ASSERT_EQUAL(h, 56522318u);
    ei_x_free(&x);

    ei_x_new_with_version(&x);
    ei_x_encode_binary(&x, "key", 3);
    CU_ASSERT_EQUAL(cnode_phash2(x.buff, (size_t)x.index, 1000, &h), 0);
    CU_ASSERT_EQUAL(h, 669u);
    ei_x_free(&x);

    ei_x_new(&x);
    ei_x_encode_atom(&x, "abc");
    CU_ASSERT_EQUAL(cnode_phash2(x.buff, (size_t)x.index, 16, &h), 0);
    CU_ASSERT_EQUAL(h, 3u);
    ei_x_free(&x);

    ei_x_new(&x);
    ei_x_encode_long(&x, 0);
    CU_ASSERT_EQUAL(cnode_phash2(x.buff, (size_t)x.index, 7, &h), 0);
    CU_ASSERT_EQUAL(h, 1u);
    ei_x_free(&x);

    ei_x_new(&x);
    ei_x_encode_map_header(&x, 1);
    ei_x_encode_atom(&x, "a");
    ei_x_encode_long(&x, 1);
    CU_ASSERT_EQUAL(cnode_phash2(x.buff, (size_t)x.index, 0, &h), 0);
    CU_ASSERT_EQUAL(h, 59617982u);
    ei_x_free(&x);

    ei_x_new(&x);
    ei_x_encode_double(&x, 1.5);
    CU_ASSERT_EQUAL(cnode_phash2(x.buff, (size_t)x.index, 0, &h), 0);
    CU_ASSERT_EQUAL(h, 10380315u);
    ei_x_free(&x);
}

static void
test_malformed(void)
{
    static const char *bad[] = {
        "",                          /* nothing */
        "83",                        /* version only */
        "836C000000",                /* truncated list length */
        "836C00000002610161",        /* list missing an element and tail */
        "836D00000005616263",        /* binary shorter than its length */
        "8368026101",                /* tuple missing an element */
        "8374000000026101610261 03", /* map missing a value */
        "836101 61",                 /* trailing bytes */
        "8352 00",                   /* atom cache ref */
        "83FF",                      /* unknown tag */
        "834D0000000009AB",          /* bitstring with 9 bits */
        "836E0102",                  /* big: bad sign byte */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char hex[64];
        size_t k = 0;
        for (const char *p = bad[i]; *p; p++)
            if (*p != ' ')
                hex[k++] = *p;
        hex[k] = 0;
        unsigned char b[64];
        long len = tu_unhex(hex, b, sizeof b);
        uint32_t h = 12345;
        tu_guard g = tu_guard_copy(b, len > 0 ? (size_t)len : 0);
        int rc = cnode_phash2_full(g.p, len > 0 ? (size_t)len : 0, &h);
        tu_guard_free(&g);
        if (rc != CNODE_EINVAL)
            fprintf(stderr, "malformed %s: rc %d\n", bad[i], rc);
        CU_ASSERT_EQUAL(rc, CNODE_EINVAL);
        CU_ASSERT_EQUAL(h, 12345u);
    }
    uint32_t h;
    CU_ASSERT_EQUAL(cnode_phash2_full(NULL, 3, &h), CNODE_EINVAL);
    /* a local fun (whole: fun_new_ok of tests/data/term_reader.tsv) cannot be
       hashed without the code it belongs to */
    unsigned char fun[] = {
        131, 112, 0, 0, 0, 59, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 1,
        109, 97, 0, 98, 0, 0, 0, 0, 88, 100, 0, 3, 97, 64, 98, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1
    };
    CU_ASSERT_EQUAL(cnode_phash2_full((const char *)fun, sizeof fun, &h), CNODE_ENOTSUP);
}

/* Every vector, cut at every byte, read from a buffer that ends at a guard
 * page: never a read past the end, always CNODE_EINVAL. */
static void
cut_row(char **f, int n)
{
    (void)n;
    unsigned char etf[70000];
    long len = tu_unhex(f[3], etf, sizeof etf);
    if (len < 0) {
        row_failures++;
        fprintf(stderr, "row %s: bad hex\n", f[0]);
        return;
    }
    for (long cut = 0; cut < len; cut++) {
        tu_guard g = tu_guard_copy(etf, (size_t)cut);
        uint32_t h;
        int rc = cnode_phash2_full(g.p, (size_t)cut, &h);
        tu_guard_free(&g);
        if (rc != CNODE_EINVAL) {
            row_failures++;
            fprintf(stderr, "row %s cut at %ld: rc %d\n", f[0], cut, rc);
            return;
        }
    }
}

static void
test_truncated(void)
{
    row_failures = 0;
    each_row(PHASH2_TSV, cut_row);
    CU_ASSERT_EQUAL(row_failures, 0);
}

static void
test_deep_nesting(void)
{
    /* 2000 nested 1-tuples: refused, not a stack overflow */
    size_t depth = 2000, len = 1 + depth * 2 + 2;
    char *b = malloc(len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    b[0] = (char)131;
    for (size_t i = 0; i < depth; i++) {
        b[1 + 2 * i] = 104;
        b[2 + 2 * i] = 1;
    }
    b[len - 2] = 97;
    b[len - 1] = 1;
    uint32_t h;
    CU_ASSERT_EQUAL(cnode_phash2_full(b, len, &h), CNODE_EINVAL);
    /* 1000 levels are fine */
    CU_ASSERT_EQUAL(cnode_phash2_full(b + 2001, len - 2001, &h), 0);
    free(b);
}

void
cnode_test_register(void)
{
    CU_pSuite s = CU_add_suite("phash2", NULL, NULL);
    ADD_TEST(s, test_phash2_vectors);
    ADD_TEST(s, test_easy_rpc_hash_vectors);
    ADD_TEST(s, test_captured);
    ADD_TEST(s, test_ei_built);
    ADD_TEST(s, test_malformed);
    ADD_TEST(s, test_truncated);
    ADD_TEST(s, test_deep_nesting);
}
