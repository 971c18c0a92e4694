/* Every control message (ei_glue/ctl.c): cnode__ctl_decode on any packet body
 * ('p', the control tuple with its 131, the payload), and for what decodes, the
 * round trip: cnode__ctl_encode of the decoded fields decodes again to the same
 * op and the same payload. The mutator
 * is structure-aware (ctl_mutator.h: LLVMFuzzerCustomMutator). */
#include "ctl_mutator.h"

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);
size_t
LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    return ctl_mutate(data, size, max_size, seed);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *b = fz_dup(data, size);
    cnode__ctl c;
    if (decode(b, size, &c) > 0) {
        if (c.msg)
            FZ_CHECK(c.msg > b && c.msg + c.msg_len == b + size && (unsigned char)c.msg[0] == 131);
        /* round trip where the encoder can say it (a raw field it needs is present) */
        size_t elen = 0;
        char *e = encode(&c, c.msg, c.msg_len, &elen);
        if (e) {
            cnode__ctl d;
            FZ_CHECK(decode(e, elen, &d) > 0);
            FZ_CHECK(d.op == c.op && d.msg_len == c.msg_len);
            FZ_CHECK(d.msg_len == 0 || memcmp(d.msg, c.msg, c.msg_len) == 0);
            FZ_CHECK(cnode__pid_eq(&d.from.pid, &c.from.pid) && cnode__pid_eq(&d.to.pid, &c.to.pid));
            FZ_CHECK(d.to.is_name == c.to.is_name && strcmp(d.to.name, c.to.name) == 0);
            free(e);
        }
    }
    free(b);
    return 0;
}
