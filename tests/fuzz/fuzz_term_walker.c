/* The bounded term walker (cnode__term_extent) on any bytes, with the default
 * limits and with small ones. Thin on purpose: the term reader is being
 * rewritten (issue 13); re-point this file at its entry point after that merge. */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *b = fz_dup(data, size);
    const char *why = NULL;
    ptrdiff_t n = cnode__term_extent(b, size, &cnode__term_limits_default, &why);
    FZ_CHECK(n == CNODE__NEED_MORE || (n == CNODE__MALFORMED && why) || (n > 0 && (size_t)n <= size));
    if (n > 0) {
        /* the extent does not depend on what follows it */
        FZ_CHECK(cnode__term_extent(b, (size_t)n, &cnode__term_limits_default, NULL) == n);
        /* tighter limits never accept more */
        cnode__term_limits small = {4, 64};
        ptrdiff_t m = cnode__term_extent(b, size, &small, NULL);
        FZ_CHECK(m == n || m == CNODE__MALFORMED);
    }
    free(b);
    return 0;
}
