/* erlang:phash2 (cnode_phash2_full, balancer/phash2.c over the term reader) on
 * any bytes: it reads only what it is given, hashes only what the reader's walk
 * accepts, and the ranged hash agrees with the full one. */
#include "fuzz.h"
#include "cnode_balancer.h"
#include "ei_glue/reader.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *b = fz_dup(data, size);
    uint32_t h = 0, r = 0;
    int rc = cnode_phash2_full(b, size, &h);
    size_t v = size > 0 && data[0] == 131;
    cnode__rd rd = cnode__rd_at(b + v, size - v);
    if (rc == 0) {
        FZ_CHECK(cnode__rd_skip(&rd, NULL) == 0);
        FZ_CHECK(cnode_phash2(b, size, 1000, &r) == 0 && r < 1000);
    }
    free(b);
    return 0;
}
