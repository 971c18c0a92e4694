/* Differential, one direction: whatever the bounded walker accepts, ei skips
 * to the same extent. ei takes no buffer length, so it runs on a copy padded
 * with zeros; ei is no judge of validity (binary_to_term is: the property suite
 * checks the walker against BEAM), so only walker-accepted input is compared.
 *
 * No known gap is left: the reader's walk refuses FLOAT_EXT text that is no
 * number and funs whose fixed fields have the wrong types (what ei refused or
 * skipped short), so every disagreement fails the target. */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    char *b = fz_dup(data, size);
    ptrdiff_t n = cnode__term_extent(b, size, &cnode__term_limits_default, NULL);
    if (n > 0) {
        char *pad = calloc(1, size + 4096);
        memcpy(pad, b, size);
        int idx = 0;
        int rc = ei_skip_term(pad, &idx);
        if (rc != 0 || idx != n) {
            fprintf(stderr, "walker extent %td, ei_skip_term rc %d idx %d:", n, rc, idx);
            for (ptrdiff_t k = 0; k < n; k++)
                fprintf(stderr, "%02x", (unsigned char)b[k]);
            fprintf(stderr, "\n");
            if (!getenv("FZ_NOABORT"))
                abort();
        }
        free(pad);
    }
    free(b);
    return 0;
}
