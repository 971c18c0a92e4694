/* epmd's PORT2_RESP decoder. */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fz_dup(data, size);
    cnode__epmd_port2_resp r;
    const char *why = NULL;
    ptrdiff_t n = cnode__epmd_port2_resp_decode(buf, size, &r, &why);
    FZ_CHECK(n == CNODE__NEED_MORE || (n == CNODE__MALFORMED && why) || (n > 0 && (size_t)n <= size));
    if (n > 0 && r.result == 0) {
        FZ_CHECK(r.name >= buf && r.name + r.name_len <= buf + n);
        volatile char sink = 0;
        for (size_t k = 0; k < r.name_len; k++)
            sink ^= r.name[k];
        (void)sink;
    }
    free(buf);
    return 0;
}
