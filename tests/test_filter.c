/* Node filters: the table of seed-behaviour.md A5, row by row, then the
 * corners (no '@', empty pattern, regex source in exclusions, bad regex,
 * many threads sharing one regex filter). */
#include <CUnit/CUnit.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cnode_balancer.h"
#include "tests/testutil.h"

typedef struct {
    const char *node, *filter;
    int kind;
    const char *excluded; /* one pattern or NULL */
    int want;
} row;

/* seed-behaviour.md A5, in its order */
static const row a5[] = {
    {"options_feed@host", "options_feed", CNODE_FILTER_SUBSTRING, NULL, 1},
    {"options_feed_1@host", "options_feed", CNODE_FILTER_SUBSTRING, NULL, 1},
    {"cfx_web@host", "options_feed", CNODE_FILTER_SUBSTRING, NULL, 0},
    {"options_feed@host", "^options_feed@", CNODE_FILTER_REGEX, NULL, 1},
    {"options_feed_kurt@localhost", "^options_feed@", CNODE_FILTER_REGEX, NULL, 0},
    {"options_feed_qa@host", "options_feed", CNODE_FILTER_SUBSTRING, "_qa", 0},
    {"options_feed_qa@host", "options_feed_qa", CNODE_FILTER_SUBSTRING, "_qa", 1},
    {"options_feed@host_qa", "options_feed", CNODE_FILTER_SUBSTRING, "_qa", 1},
};

/* corners, same rules */
static const row more[] = {
    {"options_feed@host", "", CNODE_FILTER_SUBSTRING, NULL, 1},              /* "" is in every name */
    {"noat_qa", "noat", CNODE_FILTER_SUBSTRING, "_qa", 0},                   /* no '@': the whole name is the short name */
    {"options_feed_qa@host", "feed", CNODE_FILTER_REGEX, "_qa", 0},          /* regex filter, pattern not in its source */
    {"options_feed_qa@host", "feed_qa$|_qa@", CNODE_FILTER_REGEX, "_qa", 1}, /* source text carries the pattern */
    {"api-1@host", "api-\\d+@", CNODE_FILTER_REGEX, NULL, 1},
    {"api-x@host", "api-\\d+@", CNODE_FILTER_REGEX, NULL, 0},
    {"Worker@host", "worker", CNODE_FILTER_SUBSTRING, NULL, 0}, /* case-sensitive, as String.contains? */
    {"Worker@host", "(?i)worker", CNODE_FILTER_REGEX, NULL, 1}, /* unless the regex says otherwise */
    {"a@b", "a@b", CNODE_FILTER_SUBSTRING, "", 1},              /* "" excluded: in every pattern too */
    {"caf\xc3\xa9@host", "caf.@", CNODE_FILTER_REGEX, NULL, 0}, /* no UTF mode: '.' is one byte */
    {"caf\xc3\xa9@host", "caf..@", CNODE_FILTER_REGEX, NULL, 1},
};

static void
check_rows(const row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const row *r = &rows[i];
        cnode_filter *f = NULL;
        const char *ex[1] = {r->excluded};
        cnode_error err = {0};
        CU_ASSERT_EQUAL_FATAL(cnode_filter_new(r->filter, r->kind, ex, r->excluded ? 1 : 0, &f, &err), 0);
        int got = cnode_filter_match(f, r->node);
        if (got != r->want)
            fprintf(stderr, "filter %s (%s) excluded %s on %s: got %d\n", r->filter, r->kind ? "regex" : "substring",
                    r->excluded ? r->excluded : "-", r->node, got);
        CU_ASSERT_EQUAL(got, r->want);
        cnode_filter_free(f);
    }
}

static void
test_a5_table(void)
{
    check_rows(a5, sizeof a5 / sizeof a5[0]);
}

static void
test_corners(void)
{
    check_rows(more, sizeof more / sizeof more[0]);
}

static void
test_several_excluded(void)
{
    const char *ex[] = {"_qa", "_staging", "_kurt"};
    cnode_filter *f;
    CU_ASSERT_EQUAL_FATAL(cnode_filter_new("options_feed", CNODE_FILTER_SUBSTRING, ex, 3, &f, NULL), 0);
    CU_ASSERT_EQUAL(cnode_filter_match(f, "options_feed@h"), 1);
    CU_ASSERT_EQUAL(cnode_filter_match(f, "options_feed_qa@h"), 0);
    CU_ASSERT_EQUAL(cnode_filter_match(f, "options_feed_staging@h"), 0);
    CU_ASSERT_EQUAL(cnode_filter_match(f, "options_feed_kurt@h"), 0);
    CU_ASSERT_EQUAL(cnode_filter_match(f, "options_feed@h_kurt"), 1);
    CU_ASSERT_EQUAL(cnode_filter_match(f, NULL), 0);
    cnode_filter_free(f);
    cnode_filter_free(NULL);
}

static void
test_bad_input(void)
{
    cnode_filter *f = NULL;
    cnode_error err = {0};
    CU_ASSERT_EQUAL(cnode_filter_new("a(b", CNODE_FILTER_REGEX, NULL, 0, &f, &err), CNODE_ECONFIG);
    CU_ASSERT_PTR_NULL(f);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "offset"));
    CU_ASSERT_STRING_EQUAL(err.type, "config_error");
    cnode_error_clear(&err);
    CU_ASSERT_EQUAL(cnode_filter_new(NULL, CNODE_FILTER_SUBSTRING, NULL, 0, &f, &err), CNODE_EINVAL);
    cnode_error_clear(&err);
    CU_ASSERT_EQUAL(cnode_filter_new("x", 7, NULL, 0, &f, NULL), CNODE_EINVAL);
    const char *ex[] = {NULL};
    CU_ASSERT_EQUAL(cnode_filter_new("x", CNODE_FILTER_SUBSTRING, ex, 1, &f, NULL), CNODE_EINVAL);
    CU_ASSERT_EQUAL(cnode_filter_new("x", CNODE_FILTER_SUBSTRING, NULL, 2, &f, NULL), CNODE_EINVAL);
}

static cnode_filter *shared;
static int thread_bad;

static void *
matcher(void *arg)
{
    long id = (long)arg;
    for (int i = 0; i < 2000; i++) {
        char node[64];
        snprintf(node, sizeof node, "%s_%ld_%d@host", i % 2 ? "api" : "web", id, i);
        if (cnode_filter_match(shared, node) != (i % 2))
            __atomic_add_fetch(&thread_bad, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void
test_threads_share_regex(void)
{
    CU_ASSERT_EQUAL_FATAL(cnode_filter_new("^api_\\d+_", CNODE_FILTER_REGEX, NULL, 0, &shared, NULL), 0);
    pthread_t t[16]; /* more threads than pooled match blocks */
    for (long i = 0; i < 16; i++)
        pthread_create(&t[i], NULL, matcher, (void *)i);
    for (int i = 0; i < 16; i++)
        pthread_join(t[i], NULL);
    CU_ASSERT_EQUAL(thread_bad, 0);
    cnode_filter_free(shared);
}

void
cnode_test_register(void)
{
    CU_pSuite s = CU_add_suite("filter", NULL, NULL);
    ADD_TEST(s, test_a5_table);
    ADD_TEST(s, test_corners);
    ADD_TEST(s, test_several_excluded);
    ADD_TEST(s, test_bad_input);
    ADD_TEST(s, test_threads_share_regex);
}
