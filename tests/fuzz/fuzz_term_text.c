/* The term text parser (cnode_term_parse, term/parse.c) on any text; what it
 * builds must pass the reader's walk, print, and parse back. */
#include "fuzz.h"
#include "cnode_term.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    ei_x_buff x;
    ei_x_new(&x);
    if (cnode_term_parse(text, &x, NULL) == 0) {
        FZ_CHECK(x.index > 0);
        FZ_CHECK(cnode__term_extent(x.buff, (size_t)x.index, &cnode__term_limits_default, NULL) == x.index);
        char *printed = NULL;
        FZ_CHECK(cnode_term_print(x.buff, (size_t)x.index, &printed, NULL) == 0);
        ei_x_buff y;
        ei_x_new(&y);
        FZ_CHECK(cnode_term_parse(printed, &y, NULL) == 0);
        ei_x_free(&y);
        free(printed);
    }
    ei_x_free(&x);
    free(text);
    return 0;
}
