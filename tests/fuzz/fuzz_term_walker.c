/* The term reader's whole walk (cnode__rd_skip, ei_glue/term.c) on any bytes,
 * with the default limits and with small ones: the verdict is one of the three
 * codes, a refusal leaves the cursor where it was and names its rule, the
 * extent does not depend on what follows, tighter limits never accept more,
 * and cnode__term_extent (what every caller uses) says the same. */
#include "fuzz.h"
#include "ei_glue/reader.h"

static int
skip(const char *b, size_t n, const cnode__term_limits *lim, size_t *end, const char **why)
{
    cnode__rd r = cnode__rd_at(b, n);
    int rc = cnode__rd_skip(&r, lim);
    *end = r.pos;
    if (why)
        *why = r.why;
    return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *b = fz_dup(data, size);
    const char *why = NULL;
    size_t end;
    int rc = skip(b, size, NULL, &end, &why);
    FZ_CHECK(rc == 0 || rc == CNODE__NEED_MORE || rc == CNODE__MALFORMED);
    FZ_CHECK(rc == 0 ? end > 0 && end <= size : end == 0);
    if (rc == CNODE__MALFORMED)
        FZ_CHECK(why != NULL);
    ptrdiff_t n = cnode__term_extent(b, size, &cnode__term_limits_default, NULL);
    FZ_CHECK(rc == 0 ? n == (ptrdiff_t)end : n == rc);
    if (rc == 0) {
        /* the extent does not depend on what follows it */
        size_t e2;
        FZ_CHECK(skip(b, end, NULL, &e2, NULL) == 0 && e2 == end);
        /* a cut anywhere inside it is NEED_MORE (a few cuts: the truncation test does every byte) */
        for (size_t cut = end - 1; cut > 0 && cut + 8 >= end; cut--)
            FZ_CHECK(skip(b, cut, NULL, &e2, NULL) == CNODE__NEED_MORE);
        /* tighter limits never accept more */
        cnode__term_limits small = {4, 64};
        int m = skip(b, size, &small, &e2, NULL);
        FZ_CHECK((m == 0 && e2 == end) || m == CNODE__MALFORMED);
    }
    free(b);
    return 0;
}
