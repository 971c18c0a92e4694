/* term/module.c: module names as atoms. */
#include "term/text.h"

/* ---- Elixir module names --------------------------------------------------------------------------------------- */

int
cnode_term_module_name(const char *in, char *out, size_t cap)
{
    if (!in || !out || cap == 0)
        return -1;
    const unsigned char *u = (const unsigned char *)in;
    uint32_t c0 = 0;
    int keep = u[0] == 0 || u[0] == '\'' || strncmp(in, "Elixir.", 7) == 0 || (cnode__utf8_get(u, strnlen(in, 4), &c0) && io_lower(c0));
    const char *prefix = keep ? "" : "Elixir.";
    size_t pl = strlen(prefix), n = strlen(in);
    if (pl + n + 1 > cap) {
        out[0] = 0;
        return -1;
    }
    memcpy(out, prefix, pl);
    memcpy(out + pl, in, n + 1);
    return 0;
}

