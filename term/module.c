/* term/module.c: the one way a module name becomes an atom, for the client
 * (cnode_call and friends), the CLI and the balancer. */
#include "term/text.h"

/* An uppercase letter an Elixir alias starts with: A-Z, or À-Þ but × (UTF-8). */
static int
alias_start(const char *name)
{
    uint32_t c = 0;
    size_t k = cnode__utf8_get((const unsigned char *)name, strnlen(name, 4), &c);
    return k && ((c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7));
}

int
cnode_module_atom(const char *name, char *out, size_t cap)
{
    if (!name || !out || cap == 0 || !*name) {
        if (out && cap)
            out[0] = 0;
        return CNODE_EINVAL;
    }
    const char *prefix = alias_start(name) && strncmp(name, "Elixir.", 7) != 0 ? "Elixir." : "";
    size_t pl = strlen(prefix), n = strlen(name), chars = 0;
    for (size_t i = 0; i < n; i++)
        chars += ((unsigned char)name[i] & 0xC0) != 0x80;
    if (pl + n + 1 > cap || pl + chars > 255) { /* an atom has at most 255 characters */
        out[0] = 0;
        return CNODE_EINVAL;
    }
    memcpy(out, prefix, pl);
    memcpy(out + pl, name, n + 1);
    return 0;
}
