/* erlang:phash2 (cnode_phash2_full) on any bytes: it reads only what it is
 * given and hashes only what the walker accepts. Thin: re-point after the term
 * reader lands (issue 13). */
#include "fuzz.h"
#include "cnode_balancer.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *b = fz_dup(data, size);
    uint32_t h = 0, r = 0;
    int rc = cnode_phash2_full(b, size, &h);
    if (rc == 0) {
        FZ_CHECK(cnode_phash2(b, size, 1000, &r) == 0 && r < 1000);
    }
    free(b);
    return 0;
}
