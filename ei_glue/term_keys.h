/* ei_glue/term_keys.h: fingerprints of map keys (term_keys.c). */
#ifndef CNODE_EI_GLUE_TERM_KEYS_H
#define CNODE_EI_GLUE_TERM_KEYS_H

#include <stddef.h>
#include <stdint.h>

/* A 64-bit fingerprint of the term at b[0, len) (bytes cnode__rd_skip has
 * passed) that is equal for terms BEAM holds equal as map keys, however
 * encoded. 0, or the reader's error. */
int cnode__key_fingerprint(const unsigned char *b, size_t len, uint64_t *out);

#endif
