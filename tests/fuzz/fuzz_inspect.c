/* Elixir's inspect/1 (term/inspect.c over the term reader) on any bytes, into
 * a small bounded buffer and a large one: the same verdict either way, text
 * only for what the reader's walk accepts, never past the buffer. */
#include "fuzz.h"
#include "ei_glue/reader.h"
#include "term/inspect.h"

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
    if (r1 == 0) {
        cnode__rd rd = cnode__rd_at(b, size);
        FZ_CHECK(cnode__rd_skip(&rd, NULL) == 0 && rd.pos == size);
    }
    cnode__sb_finish(&s1);
    cnode__sb_finish(&s2);
    FZ_CHECK(strlen(small) < sizeof small && strlen(big) < sizeof big);
    free(b);
    return 0;
}
