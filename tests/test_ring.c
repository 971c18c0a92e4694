/* The libring hash ring against libring 1.7.0's own answers:
 * tests/data/vectors/libring_key_to_node.tsv (key_to_node on OTP <= 25 and
 * >= 26, key_to_nodes/3, removal) and tests/data/vectors/libring_vnode_points.tsv. */
#include <CUnit/CUnit.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cnode_balancer.h"
#include "tests/testutil.h"

#define KEY_TSV "tests/data/vectors/libring_key_to_node.tsv"
#define POINTS_TSV "tests/data/vectors/libring_vnode_points.tsv"

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

static void
test_vnode_points(void)
{
    char *text = tu_read_file(POINTS_TSV, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    int rows = 0, bad = 0;
    char cur[64] = "";
    uint32_t pts[CNODE_RING_DEFAULT_WEIGHT];
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        char *f[4];
        CU_ASSERT_EQUAL_FATAL(split_tabs(line, f, 4), 3);
        if (strcmp(cur, f[0]) != 0) {
            snprintf(cur, sizeof cur, "%s", f[0]);
            CU_ASSERT_EQUAL_FATAL(cnode_ring_vnode_points(cur, CNODE_RING_DEFAULT_WEIGHT, pts), 0);
        }
        unsigned long i = strtoul(f[1], NULL, 10);
        CU_ASSERT_FATAL(i >= 1 && i <= CNODE_RING_DEFAULT_WEIGHT);
        if (pts[i - 1] != strtoul(f[2], NULL, 10)) {
            bad++;
            fprintf(stderr, "%s vnode %lu: got %u want %s\n", f[0], i, pts[i - 1], f[2]);
        }
        rows++;
    }
    free(text);
    CU_ASSERT_EQUAL(rows, 1280);
    CU_ASSERT_EQUAL(bad, 0);
}

typedef struct {
    char nodes[512];
    cnode_ring *r25, *r26, *after25, *after26;
} rings;

static void
rings_free(rings *g)
{
    cnode_ring_free(g->r25);
    cnode_ring_free(g->r26);
    cnode_ring_free(g->after25);
    cnode_ring_free(g->after26);
    memset(g, 0, sizeof *g);
}

/* Build the rings for a node list the way rpc_load_balancer does: add in
 * order, weight 128; "after" rings lose `removed` with remove_node (25) and
 * by rebuilding from the shorter list (26), which must agree. */
static void
rings_build(rings *g, const char *nodes, const char *removed)
{
    rings_free(g);
    snprintf(g->nodes, sizeof g->nodes, "%s", nodes);
    CU_ASSERT_EQUAL_FATAL(cnode_ring_new(25, &g->r25), 0);
    CU_ASSERT_EQUAL_FATAL(cnode_ring_new(26, &g->r26), 0);
    CU_ASSERT_EQUAL_FATAL(cnode_ring_new(25, &g->after25), 0);
    CU_ASSERT_EQUAL_FATAL(cnode_ring_new(26, &g->after26), 0);
    char copy[512];
    snprintf(copy, sizeof copy, "%s", nodes);
    char *save = NULL;
    for (char *n = strtok_r(copy, ",", &save); n; n = strtok_r(NULL, ",", &save)) {
        CU_ASSERT_EQUAL(cnode_ring_add(g->r25, n, CNODE_RING_DEFAULT_WEIGHT), 0);
        CU_ASSERT_EQUAL(cnode_ring_add(g->r26, n, CNODE_RING_DEFAULT_WEIGHT), 0);
        CU_ASSERT_EQUAL(cnode_ring_add(g->after25, n, CNODE_RING_DEFAULT_WEIGHT), 0);
        if (!*removed || strcmp(n, removed) != 0)
            CU_ASSERT_EQUAL(cnode_ring_add(g->after26, n, CNODE_RING_DEFAULT_WEIGHT), 0);
    }
    if (*removed)
        CU_ASSERT_EQUAL(cnode_ring_remove(g->after25, removed), 0);
}

static void
test_key_to_node(void)
{
    char *text = tu_read_file(KEY_TSV, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    rings g = {0};
    int rows = 0, bad = 0, atom_differs = 0, moved = 0;
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        char *f[20];
        int nf = split_tabs(line, f, 20);
        CU_ASSERT_EQUAL_FATAL(nf, 16);
        if (strcmp(g.nodes, f[1]) != 0)
            rings_build(&g, f[1], f[11]);
        unsigned char key[1024];
        long klen = tu_unhex(f[5], key, sizeof key);
        CU_ASSERT_FATAL(klen > 1);
        const char *k = (const char *)key;
        uint32_t h25, h26;
        const char *n25 = NULL, *n26 = NULL, *a25 = NULL, *a26 = NULL, *reps[3];
        size_t nrep = 0;
        int rc = cnode_ring_key_hash(k, (size_t)klen, 25, &h25) | cnode_ring_key_hash(k, (size_t)klen, 26, &h26) |
                 cnode_ring_key_to_node(g.r25, k, (size_t)klen, &n25) | cnode_ring_key_to_node(g.r26, k, (size_t)klen, &n26) |
                 cnode_ring_key_to_nodes(g.r25, k, (size_t)klen, 3, reps, &nrep);
        char replist[256] = "";
        for (size_t i = 0; i < nrep; i++)
            snprintf(replist + strlen(replist), sizeof replist - strlen(replist), "%s%s", i ? "," : "", reps[i]);
        int ok = rc == 0 && h25 == strtoul(f[6], NULL, 10) && strcmp(n25, f[7]) == 0 && h26 == strtoul(f[8], NULL, 10) &&
                 strcmp(n26, f[9]) == 0 && strcmp(replist, f[10]) == 0;
        if (ok && *f[11]) {
            ok = cnode_ring_key_to_node(g.after25, k, (size_t)klen, &a25) == 0 &&
                 cnode_ring_key_to_node(g.after26, k, (size_t)klen, &a26) == 0 && strcmp(a25, f[12]) == 0 &&
                 strcmp(a26, f[14]) == 0 && (strcmp(a25, n25) != 0) == (strcmp(f[13], "true") == 0) &&
                 (strcmp(a26, n26) != 0) == (strcmp(f[15], "true") == 0);
            /* a key moves if and only if the removed node owned it */
            ok = ok && (strcmp(a25, n25) != 0) == (strcmp(n25, f[11]) == 0);
            moved += strcmp(f[13], "true") == 0;
        }
        atom_differs += strcmp(f[7], f[9]) != 0;
        if (!ok) {
            bad++;
            if (bad < 10)
                fprintf(stderr, "ring %s key %s: rc %d h %u/%u node %s/%s reps %s\n", f[0], f[4], rc, h25, h26, n25 ? n25 : "-",
                        n26 ? n26 : "-", replist);
        }
        rows++;
    }
    rings_free(&g);
    free(text);
    CU_ASSERT_EQUAL(rows, 2510);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(atom_differs, 281); /* seed-behaviour.md, Part C 1 */
    CU_ASSERT(moved > 0);
}

static void
test_ring_edges(void)
{
    cnode_ring *r;
    const char *node;
    const char *reps[4];
    size_t n;
    unsigned char key[] = {131, 109, 0, 0, 0, 1, 'x'};
    CU_ASSERT_EQUAL_FATAL(cnode_ring_new(0, &r), 0);
    CU_ASSERT_EQUAL(cnode_ring_key_to_node(r, (const char *)key, sizeof key, &node), CNODE_EUNAVAILABLE);
    CU_ASSERT_EQUAL(cnode_ring_key_to_nodes(r, (const char *)key, sizeof key, 2, reps, &n), CNODE_EUNAVAILABLE);
    CU_ASSERT_EQUAL(cnode_ring_add(r, "", 128), CNODE_EINVAL);
    CU_ASSERT_EQUAL(cnode_ring_add(r, "a@h", 0), CNODE_EINVAL);
    CU_ASSERT_EQUAL(cnode_ring_add(r, "a@h", 128), 0);
    CU_ASSERT_EQUAL(cnode_ring_add(r, "a@h", 5), 0); /* already there: nothing changes */
    CU_ASSERT_EQUAL(cnode_ring_node_count(r), 1);
    CU_ASSERT_EQUAL(cnode_ring_key_to_node(r, (const char *)key, sizeof key, &node), 0);
    CU_ASSERT_STRING_EQUAL(node, "a@h");
    CU_ASSERT_EQUAL(cnode_ring_add(r, "b@h", 300), 0); /* weights past 255 use INTEGER_EXT in the vnode key */
    CU_ASSERT_EQUAL(cnode_ring_key_to_nodes(r, (const char *)key, sizeof key, 9, reps, &n), 0);
    CU_ASSERT(n >= 1 && n <= 2);
    CU_ASSERT_EQUAL(cnode_ring_remove(r, "zz@h"), CNODE_ENOTFOUND);
    CU_ASSERT_EQUAL(cnode_ring_remove(r, "a@h"), 0);
    CU_ASSERT_EQUAL(cnode_ring_key_to_node(r, (const char *)key, sizeof key, &node), 0);
    CU_ASSERT_STRING_EQUAL(node, "b@h");
    CU_ASSERT_STRING_EQUAL(cnode_ring_node_at(r, 0), "b@h");
    /* malformed key */
    CU_ASSERT_EQUAL(cnode_ring_key_to_node(r, (const char *)key, sizeof key - 1, &node), CNODE_EINVAL);
    cnode_ring_free(r);
    cnode_ring_free(NULL);

    /* atom keys: OTP 25 hashes <<131,100,0,3,"foo">>, OTP 26 <<131,119,3,"foo">> */
    unsigned char foo_utf8[] = {131, 119, 3, 'f', 'o', 'o'};
    unsigned char foo_latin1[] = {131, 100, 0, 3, 'f', 'o', 'o'};
    unsigned char bin25[] = {131, 109, 0, 0, 0, 7, 131, 100, 0, 3, 'f', 'o', 'o'};
    unsigned char bin26[] = {131, 109, 0, 0, 0, 6, 131, 119, 3, 'f', 'o', 'o'};
    uint32_t a, b, c, d;
    CU_ASSERT_EQUAL(cnode_ring_key_hash((const char *)foo_utf8, sizeof foo_utf8, 25, &a), 0);
    CU_ASSERT_EQUAL(cnode_ring_key_hash((const char *)foo_latin1, sizeof foo_latin1, 25, &b), 0);
    CU_ASSERT_EQUAL(cnode_phash2((const char *)bin25, sizeof bin25, CNODE_RING_RANGE, &c), 0);
    CU_ASSERT_EQUAL(a, b);
    CU_ASSERT_EQUAL(a, c);
    CU_ASSERT_EQUAL(cnode_ring_key_hash((const char *)foo_latin1, sizeof foo_latin1, 26, &b), 0);
    CU_ASSERT_EQUAL(cnode_phash2((const char *)bin26, sizeof bin26, CNODE_RING_RANGE, &d), 0);
    CU_ASSERT_EQUAL(b, d);
    CU_ASSERT_NOT_EQUAL(a, b);
}

void
cnode_test_register(void)
{
    CU_pSuite s = CU_add_suite("ring", NULL, NULL);
    ADD_TEST(s, test_vnode_points);
    ADD_TEST(s, test_key_to_node);
    ADD_TEST(s, test_ring_edges);
}
