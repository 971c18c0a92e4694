/* ei_glue/wire.c: distribution flags, epmd requests and replies, the v6
 * handshake messages, the MD5 challenge digest and the length-prefixed frame
 * reader. Pure: no I/O, no allocation (the digest is ei_glue/md5.c's: a plain node loads no library for it). */
#include "ei_glue/glue.h"
#include "ei_glue/reader.h"

#include <string.h>
#include <stdio.h>

static void
put16(char *p, unsigned v)
{
    p[0] = (char)(v >> 8);
    p[1] = (char)v;
}
static void
put32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}
static void
put64(char *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}
/* Big-endian reads of the reader's (reader.h), on char buffers. */
static unsigned
get16(const char *p)
{
    return cnode__be16((const unsigned char *)p);
}
static uint32_t
get32(const char *p)
{
    return cnode__be32((const unsigned char *)p);
}
static uint64_t
get64(const char *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

#define FAIL(msg)                                                                                                      \
    do {                                                                                                               \
        if (why)                                                                                                       \
            *why = (msg);                                                                                              \
        return CNODE__MALFORMED;                                                                                       \
    } while (0)

/* ---- flags ----------------------------------------------------------------------------- */

uint64_t
cnode__dflags_expand(uint64_t f)
{
    return (f & CNODE__DFLAG_MANDATORY_25_DIGEST) ? (f | CNODE__DFLAGS_MANDATORY_25) : f;
}

int
cnode__dflags_acceptable(uint64_t f)
{
    return (cnode__dflags_expand(f) & CNODE__DFLAGS_MANDATORY_25) == CNODE__DFLAGS_MANDATORY_25;
}

/* ---- epmd ------------------------------------------------------------------------------- */

size_t
cnode__epmd_alive2_req(char *buf, size_t cap, uint16_t port, const char *alive)
{
    size_t n = strlen(alive);
    size_t body = 13 + n;
    if (n == 0 || n > 0xffff || 2 + body > cap)
        return 0;
    put16(buf, (unsigned)body);
    buf[2] = 120;
    put16(buf + 3, port);
    buf[5] = 72; /* hidden */
    buf[6] = 0;  /* tcp/ipv4 */
    put16(buf + 7, 6);
    put16(buf + 9, 6);
    put16(buf + 11, (unsigned)n);
    memcpy(buf + 13, alive, n);
    put16(buf + 13 + n, 0);
    return 2 + body;
}

size_t
cnode__epmd_port_please2_req(char *buf, size_t cap, const char *alive)
{
    size_t n = strlen(alive);
    if (n == 0 || n + 1 > 0xffff || 3 + n > cap)
        return 0;
    put16(buf, (unsigned)(n + 1));
    buf[2] = 122;
    memcpy(buf + 3, alive, n);
    return 3 + n;
}

size_t
cnode__epmd_names_req(char *buf, size_t cap)
{
    if (cap < 3)
        return 0;
    put16(buf, 1);
    buf[2] = 110;
    return 3;
}

ptrdiff_t
cnode__epmd_alive2_resp_decode(const char *buf, size_t len, cnode__epmd_alive2_resp *out, const char **why)
{
    if (len < 1)
        return CNODE__NEED_MORE;
    unsigned char t = (unsigned char)buf[0];
    if (t == 118) {
        if (len < 6)
            return CNODE__NEED_MORE;
        out->result = (unsigned char)buf[1];
        out->creation = get32(buf + 2);
        return 6;
    }
    if (t == 121) {
        if (len < 4)
            return CNODE__NEED_MORE;
        out->result = (unsigned char)buf[1];
        out->creation = get16(buf + 2);
        return 4;
    }
    FAIL("epmd: not an ALIVE2 reply");
}

ptrdiff_t
cnode__epmd_port2_resp_decode(const char *buf, size_t len, cnode__epmd_port2_resp *out, const char **why)
{
    if (len < 2)
        return CNODE__NEED_MORE;
    if ((unsigned char)buf[0] != 119)
        FAIL("epmd: not a PORT2 reply");
    if (buf[1] != 0) {
        memset(out, 0, sizeof *out);
        out->result = (unsigned char)buf[1];
        return 2;
    }
    if (len < 12)
        return CNODE__NEED_MORE;
    size_t nlen = get16(buf + 10);
    if (len < 12 + nlen + 2)
        return CNODE__NEED_MORE;
    size_t elen = get16(buf + 12 + nlen);
    if (len < 14 + nlen + elen)
        return CNODE__NEED_MORE;
    out->result = 0;
    out->port = (uint16_t)get16(buf + 2);
    out->node_type = (uint8_t)buf[4];
    out->proto = (uint8_t)buf[5];
    out->highest = (uint16_t)get16(buf + 6);
    out->lowest = (uint16_t)get16(buf + 8);
    out->name = buf + 12;
    out->name_len = nlen;
    return (ptrdiff_t)(14 + nlen + elen);
}

int
cnode__epmd_names_decode(const char *buf, size_t len, cnode__epmd_names_cb *cb, void *ud, const char **why)
{
    if (len < 4) {
        if (why)
            *why = "epmd: NAMES reply shorter than its port";
        return -1;
    }
    size_t i = 4;
    while (i < len) {
        const char *nl = memchr(buf + i, '\n', len - i);
        if (!nl) {
            if (why)
                *why = "epmd: NAMES line without newline";
            return -1;
        }
        size_t ll = (size_t)(nl - (buf + i));
        const char *l = buf + i;
        /* "name " NAME " at port " DIGITS */
        static const char pre[] = "name ", mid[] = " at port ";
        const char *at = NULL;
        for (size_t k = 5; k + sizeof mid - 1 <= ll; k++)
            if (memcmp(l + k, mid, sizeof mid - 1) == 0)
                at = l + k; /* the last one wins: a name cannot hold spaces anyway */
        if (ll < 5 || memcmp(l, pre, 5) != 0 || !at || at == l + 5) {
            if (why)
                *why = "epmd: malformed NAMES line";
            return -1;
        }
        const char *d = at + sizeof mid - 1;
        unsigned port = 0;
        if (d == nl) {
            if (why)
                *why = "epmd: NAMES line without port";
            return -1;
        }
        for (; d < nl; d++) {
            if (*d < '0' || *d > '9' || port > 65535) {
                if (why)
                    *why = "epmd: bad port in NAMES line";
                return -1;
            }
            port = port * 10 + (unsigned)(*d - '0');
        }
        if (port > 65535) {
            if (why)
                *why = "epmd: bad port in NAMES line";
            return -1;
        }
        cb(l + 5, (size_t)(at - (l + 5)), port, ud);
        i += ll + 1;
    }
    return 0;
}

/* ---- handshake -------------------------------------------------------------------------- */

size_t
cnode__hs_send_name(char *buf, size_t cap, uint64_t flags, uint32_t creation, const char *name)
{
    size_t n = strlen(name);
    size_t body = 1 + 8 + 4 + 2 + n;
    if (body > 0xffff || 2 + body > cap)
        return 0;
    put16(buf, (unsigned)body);
    buf[2] = 'N';
    put64(buf + 3, flags);
    put32(buf + 11, creation);
    put16(buf + 15, (unsigned)n);
    memcpy(buf + 17, name, n);
    return 2 + body;
}

size_t
cnode__hs_status(char *buf, size_t cap, const char *status)
{
    size_t n = strlen(status);
    if (1 + n > 0xffff || 3 + n > cap)
        return 0;
    put16(buf, (unsigned)(1 + n));
    buf[2] = 's';
    memcpy(buf + 3, status, n);
    return 3 + n;
}

size_t
cnode__hs_challenge(char *buf, size_t cap, uint64_t flags, uint32_t challenge, uint32_t creation, const char *name)
{
    size_t n = strlen(name);
    size_t body = 1 + 8 + 4 + 4 + 2 + n;
    if (body > 0xffff || 2 + body > cap)
        return 0;
    put16(buf, (unsigned)body);
    buf[2] = 'N';
    put64(buf + 3, flags);
    put32(buf + 11, challenge);
    put32(buf + 15, creation);
    put16(buf + 19, (unsigned)n);
    memcpy(buf + 21, name, n);
    return 2 + body;
}

size_t
cnode__hs_challenge_reply(char *buf, size_t cap, uint32_t challenge, const unsigned char digest[16])
{
    if (cap < 23)
        return 0;
    put16(buf, 21);
    buf[2] = 'r';
    put32(buf + 3, challenge);
    memcpy(buf + 7, digest, 16);
    return 23;
}

size_t
cnode__hs_challenge_ack(char *buf, size_t cap, const unsigned char digest[16])
{
    if (cap < 19)
        return 0;
    put16(buf, 17);
    buf[2] = 'a';
    memcpy(buf + 3, digest, 16);
    return 19;
}

ptrdiff_t
cnode__hs_send_name_decode(const char *body, size_t len, cnode__hs_name *out, const char **why)
{
    if (len < 1 || body[0] != 'N')
        FAIL("handshake: send_name is not an 'N' message");
    if (len < 15)
        FAIL("handshake: send_name too short");
    size_t n = get16(body + 13);
    if (15 + n > len)
        FAIL("handshake: send_name name runs past the message");
    if (n == 0)
        FAIL("handshake: send_name with an empty name");
    out->flags = get64(body + 1);
    out->creation = get32(body + 9);
    out->challenge = 0;
    out->name = body + 15;
    out->name_len = n;
    return (ptrdiff_t)len;
}

ptrdiff_t
cnode__hs_challenge_decode(const char *body, size_t len, cnode__hs_name *out, const char **why)
{
    if (len < 1 || body[0] != 'N')
        FAIL("handshake: challenge is not an 'N' message");
    if (len < 19)
        FAIL("handshake: challenge too short");
    size_t n = get16(body + 17);
    if (19 + n > len)
        FAIL("handshake: challenge name runs past the message");
    if (n == 0)
        FAIL("handshake: challenge with an empty name");
    out->flags = get64(body + 1);
    out->challenge = get32(body + 9);
    out->creation = get32(body + 13);
    out->name = body + 19;
    out->name_len = n;
    return (ptrdiff_t)len;
}

ptrdiff_t
cnode__hs_status_decode(const char *body, size_t len, const char **text, size_t *text_len, const char **why)
{
    if (len < 1 || body[0] != 's')
        FAIL("handshake: status is not an 's' message");
    *text = body + 1;
    *text_len = len - 1;
    return (ptrdiff_t)len;
}

ptrdiff_t
cnode__hs_challenge_reply_decode(const char *body, size_t len, uint32_t *challenge, unsigned char digest[16],
                                 const char **why)
{
    if (len < 1 || body[0] != 'r')
        FAIL("handshake: challenge reply is not an 'r' message");
    if (len != 21)
        FAIL("handshake: challenge reply has the wrong length");
    *challenge = get32(body + 1);
    memcpy(digest, body + 5, 16);
    return 21;
}

ptrdiff_t
cnode__hs_challenge_ack_decode(const char *body, size_t len, unsigned char digest[16], const char **why)
{
    if (len < 1 || body[0] != 'a')
        FAIL("handshake: challenge ack is not an 'a' message");
    if (len != 17)
        FAIL("handshake: challenge ack has the wrong length");
    memcpy(digest, body + 1, 16);
    return 17;
}

int
cnode__hs_digest(const char *cookie, size_t cookie_len, uint32_t challenge, unsigned char out[16])
{
    char dec[16];
    int dl = snprintf(dec, sizeof dec, "%u", (unsigned)challenge);
    cnode__md5_ctx ctx;
    cnode__md5_init(&ctx);
    cnode__md5_update(&ctx, cookie, cookie_len);
    cnode__md5_update(&ctx, dec, (size_t)dl);
    cnode__md5_final(&ctx, out);
    return 0;
}

/* ---- framing ---------------------------------------------------------------------------- */

ptrdiff_t
cnode__frame_decode(const char *buf, size_t len, int hdr, size_t max_len, cnode__frame *out, const char **why)
{
    if (hdr != 2 && hdr != 4)
        FAIL("frame: header size must be 2 or 4");
    if (len < (size_t)hdr)
        return CNODE__NEED_MORE;
    size_t n = hdr == 2 ? get16(buf) : get32(buf);
    if (n == 0) {
        out->body = NULL;
        out->len = 0;
        return hdr;
    }
    if (n > max_len)
        FAIL("frame: longer than the configured maximum");
    if (len - (size_t)hdr < n)
        return CNODE__NEED_MORE;
    out->body = buf + hdr;
    out->len = n;
    return (ptrdiff_t)(hdr + n);
}
