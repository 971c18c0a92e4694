/* epmd's ALIVE2_X_RESP / ALIVE2_RESP decoder. */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fz_dup(data, size);
    cnode__epmd_alive2_resp r;
    const char *why = NULL;
    ptrdiff_t n = cnode__epmd_alive2_resp_decode(buf, size, &r, &why);
    FZ_CHECK(n == CNODE__NEED_MORE || (n == CNODE__MALFORMED && why) || (n > 0 && (size_t)n <= size));
    /* every prefix of a reply that decodes needs more: it never decodes to less */
    if (n > 0)
        for (size_t k = 0; k < (size_t)n; k++)
            FZ_CHECK(cnode__epmd_alive2_resp_decode(buf, k, &r, NULL) == CNODE__NEED_MORE);
    free(buf);
    return 0;
}
