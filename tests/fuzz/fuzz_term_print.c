/* The printer (cnode_term_print, term/print.c over the term reader) on any
 * term the reader's walk accepts, and on the rest (it must refuse them). */
#include "fuzz.h"
#include "cnode_term.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *b = fz_dup(data, size);
    size_t v = size > 0 && data[0] == 131; /* the printer takes the version byte or not */
    ptrdiff_t n = cnode__term_extent(b + v, size - v, &cnode__term_limits_default, NULL);
    char *s = NULL;
    int rc = cnode_term_print(b, size, &s, NULL);
    FZ_CHECK((rc == 0) == (s != NULL));
    if (n != (ptrdiff_t)(size - v))
        FZ_CHECK(rc != 0);
    if (s)
        FZ_CHECK(strlen(s) > 0);
    free(s);
    free(b);
    return 0;
}
