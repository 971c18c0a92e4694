/* epmd's NAMES reply decoder: every name handed to the callback lies inside the input. */
#include "fuzz.h"

typedef struct {
    const char *buf;
    size_t len;
    size_t lines;
} names_ud;

static void
on_name(const char *name, size_t name_len, unsigned port, void *ud)
{
    names_ud *u = ud;
    FZ_CHECK(name >= u->buf && name + name_len <= u->buf + u->len);
    FZ_CHECK(port <= 65535);
    volatile char sink = 0;
    for (size_t k = 0; k < name_len; k++)
        sink ^= name[k];
    (void)sink;
    u->lines++;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fz_dup(data, size);
    names_ud u = {buf, size, 0};
    const char *why = NULL;
    int rc = cnode__epmd_names_decode(buf, size, on_name, &u, &why);
    FZ_CHECK(rc == 0 || (rc == -1 && why));
    free(buf);
    return 0;
}
