/* Each handshake message decoder on its own (wire.c): the first byte picks
 * send_name, challenge, status, challenge_reply or challenge_ack; the rest is
 * one message body as cnode__frame_decode hands it over. */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *b = fz_dup(data + 1, size - 1);
    size_t len = size - 1;
    const char *why = NULL;
    ptrdiff_t n;
    switch (data[0] % 5) {
    case 0:
    case 1: {
        cnode__hs_name nm;
        n = data[0] % 5 ? cnode__hs_challenge_decode(b, len, &nm, &why) : cnode__hs_send_name_decode(b, len, &nm, &why);
        if (n > 0)
            FZ_CHECK(nm.name > b && nm.name + nm.name_len <= b + len && nm.name_len > 0);
        break;
    }
    case 2: {
        const char *t;
        size_t tl;
        n = cnode__hs_status_decode(b, len, &t, &tl, &why);
        if (n > 0)
            FZ_CHECK(t == b + 1 && tl == len - 1);
        break;
    }
    case 3: {
        uint32_t ch;
        unsigned char dg[16];
        n = cnode__hs_challenge_reply_decode(b, len, &ch, dg, &why);
        break;
    }
    default: {
        unsigned char dg[16];
        n = cnode__hs_challenge_ack_decode(b, len, dg, &why);
        break;
    }
    }
    FZ_CHECK((n == CNODE__MALFORMED && why) || (n > 0 && (size_t)n == len));
    free(b);
    return 0;
}
