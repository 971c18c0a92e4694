/* Elixir's inspect/1 (balancer/inspect.c) on any bytes, into a small bounded
 * buffer and a large one. Thin: re-point after the term/ move (issue 13). */
#include "fuzz.h"
#include "balancer/internal.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *b = fz_dup(data, size);
    char small[24], big[8192];
    cnode__sb s1, s2;
    cnode__sb_init(&s1, small, sizeof small);
    cnode__sb_init(&s2, big, sizeof big);
    int r1 = cnode__inspect_term(&s1, b, size);
    int r2 = cnode__inspect_term(&s2, b, size);
    FZ_CHECK(r1 == r2);
    cnode__sb_finish(&s1);
    cnode__sb_finish(&s2);
    FZ_CHECK(strlen(small) < sizeof small && strlen(big) < sizeof big);
    free(b);
    return 0;
}
