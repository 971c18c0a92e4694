/* The frame reader (cnode__frame_decode): the first byte picks the header size
 * (2 in the handshake, 4 after it) and the frame limit; the rest is a stream
 * read frame after frame as conn.c reads its input buffer. */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int hdr = (data[0] & 1) ? 4 : 2;
    size_t max_len = (data[0] & 2) ? 64 : ((size_t)1 << 27);
    char *buf = fz_dup(data + 1, size - 1);
    size_t len = size - 1, pos = 0;
    while (pos < len) {
        cnode__frame f = {(const char *)1, 12345};
        const char *why = NULL;
        ptrdiff_t n = cnode__frame_decode(buf + pos, len - pos, hdr, max_len, &f, &why);
        if (n == CNODE__NEED_MORE) {
            FZ_CHECK(f.body == (const char *)1 && f.len == 12345); /* untouched */
            break;
        }
        if (n == CNODE__MALFORMED) {
            FZ_CHECK(why != NULL);
            break;
        }
        FZ_CHECK(n >= hdr && (size_t)n <= len - pos);
        FZ_CHECK(f.len <= max_len);
        if (f.body) {
            FZ_CHECK(f.body == buf + pos + hdr && f.len == (size_t)n - (size_t)hdr && f.len > 0);
        } else {
            FZ_CHECK(n == hdr && f.len == 0);
        }
        pos += (size_t)n;
    }
    free(buf);
    return 0;
}
