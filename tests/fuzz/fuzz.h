/* Shared by the libFuzzer targets of tests/fuzz/ (one target per file, each
 * built with clang -fsanitize=fuzzer,address,undefined by `make fuzz`).
 * A target returns 0 for every input: a finding is a sanitizer report, a
 * leak, a timeout or a failed FZ_CHECK (an invariant the decoder promised). */
#ifndef CNODE_FUZZ_H
#define CNODE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ei_glue/glue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(cond)                                                                                                 \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);                        \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

/* A malloc'd copy of data[0, size): ASan then sees any read past size. */
static inline char *
fz_dup(const uint8_t *data, size_t size)
{
    char *p = malloc(size ? size : 1);
    if (p && size)
        memcpy(p, data, size);
    return p;
}

#endif
