/* Small term helpers for the runtime. */
#include <string.h>

#include "cnode/terms.h"

int
cnode__x_atom(ei_x_buff *x, const char *name)
{
    return ei_x_encode_atom_len_as(x, name, (int)strlen(name), ERLANG_UTF8, ERLANG_UTF8);
}

size_t
cnode__enc_atom(char *buf, const char *name)
{
    size_t n = strlen(name);
    buf[0] = 119; /* SMALL_ATOM_UTF8_EXT */
    buf[1] = (char)n;
    memcpy(buf + 2, name, n);
    return n + 2;
}

int
cnode__term_is_atom(const char *term, size_t len, const char *name)
{
    size_t n = strlen(name);
    if (len < 2)
        return 0;
    unsigned char tag = (unsigned char)term[0];
    if (tag == 119 || tag == 115)
        return len == n + 2 && (unsigned char)term[1] == n && memcmp(term + 2, name, n) == 0;
    if ((tag == 118 || tag == 100) && len >= 3)
        return len == n + 3 && (((unsigned char)term[1] << 8) | (unsigned char)term[2]) == (int)n &&
               memcmp(term + 3, name, n) == 0;
    return 0;
}
