/* The version-6 handshake of both roles as a state machine over bytes
 * (protocol.md §2, OTP's dist_util.erl): the caller moves the bytes and
 * answers the questions only the runtime can (is that node connected, are we
 * dialling it), so every message can be fed split at any byte, truncated or
 * corrupted in a test, with no socket and no node. */
#include <string.h>

#include "ei_glue/glue.h"

enum {
    S_D_STATUS,       /* dial: send_name sent, status next */
    S_D_ALIVE_ANSWER, /* dial: `alive` read, waiting for the caller */
    S_D_CHALLENGE,
    S_D_ACK,
    S_A_NAME,        /* accept: send_name next */
    S_A_NAME_ANSWER, /* accept: waiting for the caller's status */
    S_A_ALIVE_REPLY, /* accept: `alive` sent, true/false next */
    S_A_REPLY,       /* accept: challenge sent, its reply next */
    S_A_PROVEN,      /* accept: cookie proven, waiting for the caller */
    S_UP,
    S_FAIL,
};

static int
fail(cnode__hs *hs, int kind, const char *why)
{
    hs->state = S_FAIL;
    hs->fail = kind;
    hs->why = why;
    return CNODE__HS_FAIL;
}

static int
verdict(const cnode__hs *hs)
{
    switch (hs->state) {
    case S_A_NAME_ANSWER:
        return CNODE__HS_NAME;
    case S_D_ALIVE_ANSWER:
        return CNODE__HS_ALIVE;
    case S_A_PROVEN:
        return CNODE__HS_PROVEN;
    case S_UP:
        return CNODE__HS_UP;
    case S_FAIL:
        return CNODE__HS_FAIL;
    default:
        return CNODE__HS_AGAIN;
    }
}

/* Queue n bytes that an encoder wrote into tmp (0: it did not fit: our bug, or a name too long). */
static int
emit(cnode__hs *hs, const char *tmp, size_t n)
{
    if (n == 0)
        return fail(hs, CNODE__HS_F_PROTOCOL, "handshake: cannot encode our message");
    char wide[CNODE__HS_OUT_MAX];
    if (hs->hdr == 4) { /* the encoders write a 2-byte length: widen it to 4 */
        if (n + 2 > sizeof wide)
            return fail(hs, CNODE__HS_F_PROTOCOL, "handshake: cannot encode our message");
        wide[0] = wide[1] = 0;
        memcpy(wide + 2, tmp, n);
        tmp = wide;
        n += 2;
    }
    if (hs->out_off) {
        memmove(hs->out, hs->out + hs->out_off, hs->out_len - hs->out_off);
        hs->out_len -= hs->out_off;
        hs->out_off = 0;
    }
    if (n > sizeof hs->out - hs->out_len)
        return fail(hs, CNODE__HS_F_PROTOCOL, "handshake: peer does not read what we send");
    memcpy(hs->out + hs->out_len, tmp, n);
    hs->out_len += n;
    return CNODE__HS_AGAIN;
}

static int
emit_status(cnode__hs *hs, const char *text)
{
    char b[32];
    return emit(hs, b, cnode__hs_status(b, sizeof b, text));
}

static int
emit_challenge(cnode__hs *hs)
{
    char b[CNODE__HS_OUT_MAX];
    return emit(hs, b, cnode__hs_challenge(b, sizeof b, hs->flags, hs->challenge, hs->creation, hs->name));
}

static void
init(cnode__hs *hs, int role, const char *name, uint64_t flags, uint32_t creation, const char *cookie, size_t cookie_len,
     uint32_t challenge)
{
    memset(hs, 0, sizeof *hs);
    hs->role = role;
    hs->name = name;
    hs->flags = flags;
    hs->creation = creation;
    hs->cookie = cookie;
    hs->cookie_len = cookie_len;
    hs->challenge = challenge;
    hs->hdr = 2;
}

void
cnode__hs_init_dial(cnode__hs *hs, const char *name, uint64_t flags, uint32_t creation, const char *cookie, size_t cookie_len,
                    const char *dialled, uint32_t challenge)
{
    init(hs, CNODE__HS_DIAL, name, flags, creation, cookie, cookie_len, challenge);
    hs->dialled = dialled;
    hs->state = S_D_STATUS;
    char b[CNODE__HS_OUT_MAX];
    emit(hs, b, cnode__hs_send_name(b, sizeof b, flags, creation, name));
}

void
cnode__hs_init_accept(cnode__hs *hs, const char *name, uint64_t flags, uint32_t creation, const char *cookie, size_t cookie_len,
                      uint32_t challenge)
{
    init(hs, CNODE__HS_ACCEPT, name, flags, creation, cookie, cookie_len, challenge);
    hs->state = S_A_NAME;
}

/* As dist_util's is_name_ok for static names: exactly one '@', something on
 * each side. No NUL either: the name becomes a C string. */
static int
name_ok(const char *n, size_t len)
{
    if (len == 0 || len >= 256 || memchr(n, 0, len))
        return 0;
    const char *at = memchr(n, '@', len);
    if (!at || at == n || at == n + len - 1)
        return 0;
    return memchr(at + 1, '@', (size_t)(n + len - at - 1)) == NULL;
}

static int
status_is(const char *t, size_t tl, const char *want)
{
    return tl == strlen(want) && memcmp(t, want, tl) == 0;
}

/* Digests compared without an early exit. */
static int
digest_eq(const unsigned char *a, const unsigned char *b)
{
    unsigned d = 0;
    for (int i = 0; i < 16; i++)
        d |= (unsigned)(a[i] ^ b[i]);
    return d == 0;
}

static int
on_send_name(cnode__hs *hs, const char *body, size_t len)
{
    if (body[0] == 'n') {
        emit_status(hs, "not_allowed");
        return fail(hs, CNODE__HS_F_OLD, "peer uses the old 'n' handshake");
    }
    cnode__hs_name nm;
    if (cnode__hs_send_name_decode(body, len, &nm, NULL) < 0)
        return fail(hs, CNODE__HS_F_PROTOCOL, "malformed send_name");
    if (!name_ok(nm.name, nm.name_len))
        return fail(hs, CNODE__HS_F_NAME, "bad peer name");
    if (nm.name_len == strlen(hs->name) && memcmp(nm.name, hs->name, nm.name_len) == 0)
        return fail(hs, CNODE__HS_F_NAME, "peer claims our own name");
    if (!cnode__dflags_acceptable(nm.flags)) {
        emit_status(hs, "not_allowed");
        return fail(hs, CNODE__HS_F_FLAGS, "peer lacks mandatory distribution flags");
    }
    memcpy(hs->peer_name, nm.name, nm.name_len);
    hs->peer_name[nm.name_len] = 0;
    hs->peer_flags = nm.flags;
    hs->peer_creation = nm.creation;
    hs->named = 1;
    hs->state = S_A_NAME_ANSWER;
    return CNODE__HS_NAME;
}

static int
on_alive_reply(cnode__hs *hs, const char *body, size_t len)
{
    const char *t;
    size_t tl;
    if (cnode__hs_status_decode(body, len, &t, &tl, NULL) < 0)
        return fail(hs, CNODE__HS_F_PROTOCOL, "malformed status reply");
    if (status_is(t, tl, "false"))
        return fail(hs, CNODE__HS_F_DECLINED, "peer keeps its live connection");
    if (!status_is(t, tl, "true"))
        return fail(hs, CNODE__HS_F_PROTOCOL, "status reply is neither true nor false");
    hs->replacing = 1;
    hs->state = S_A_REPLY;
    return emit_challenge(hs);
}

static int
on_reply(cnode__hs *hs, const char *body, size_t len)
{
    unsigned char got[16], want[16];
    if (cnode__hs_challenge_reply_decode(body, len, &hs->peer_challenge, got, NULL) < 0)
        return fail(hs, CNODE__HS_F_PROTOCOL, "malformed challenge reply");
    if (cnode__hs_digest(hs->cookie, hs->cookie_len, hs->challenge, want) != 0)
        return fail(hs, CNODE__HS_F_PROTOCOL, "digest failed");
    if (!digest_eq(got, want))
        return fail(hs, CNODE__HS_F_COOKIE, "challenge reply digest mismatch (wrong cookie)");
    hs->state = S_A_PROVEN;
    return CNODE__HS_PROVEN;
}

static int
on_status(cnode__hs *hs, const char *body, size_t len)
{
    const char *t;
    size_t tl;
    if (cnode__hs_status_decode(body, len, &t, &tl, NULL) < 0)
        return fail(hs, CNODE__HS_F_PROTOCOL, "malformed status");
    if (status_is(t, tl, "ok") || status_is(t, tl, "ok_simultaneous")) {
        hs->state = S_D_CHALLENGE;
        return CNODE__HS_AGAIN;
    }
    if (status_is(t, tl, "nok"))
        return fail(hs, CNODE__HS_F_NOK, "peer is dialling us and wins");
    if (status_is(t, tl, "alive")) {
        hs->state = S_D_ALIVE_ANSWER;
        return CNODE__HS_ALIVE;
    }
    if (status_is(t, tl, "not_allowed"))
        return fail(hs, CNODE__HS_F_REFUSED, "refused by peer (not_allowed)");
    return fail(hs, CNODE__HS_F_REFUSED, "refused by peer (unexpected status)");
}

static int
on_challenge(cnode__hs *hs, const char *body, size_t len)
{
    cnode__hs_name ch;
    if (cnode__hs_challenge_decode(body, len, &ch, NULL) < 0)
        return fail(hs, CNODE__HS_F_PROTOCOL, "malformed challenge");
    if (ch.name_len != strlen(hs->dialled) || memcmp(ch.name, hs->dialled, ch.name_len) != 0)
        return fail(hs, CNODE__HS_F_NAME, "peer answered with another node name");
    if (!cnode__dflags_acceptable(ch.flags))
        return fail(hs, CNODE__HS_F_FLAGS, "peer lacks mandatory distribution flags");
    memcpy(hs->peer_name, ch.name, ch.name_len);
    hs->peer_name[ch.name_len] = 0;
    hs->peer_flags = ch.flags;
    hs->peer_creation = ch.creation;
    unsigned char dg[16];
    if (cnode__hs_digest(hs->cookie, hs->cookie_len, ch.challenge, dg) != 0)
        return fail(hs, CNODE__HS_F_PROTOCOL, "digest failed");
    hs->state = S_D_ACK;
    char b[32];
    return emit(hs, b, cnode__hs_challenge_reply(b, sizeof b, hs->challenge, dg));
}

static int
on_ack(cnode__hs *hs, const char *body, size_t len)
{
    unsigned char got[16], want[16];
    if (cnode__hs_challenge_ack_decode(body, len, got, NULL) < 0)
        return fail(hs, CNODE__HS_F_PROTOCOL, "malformed challenge ack");
    if (cnode__hs_digest(hs->cookie, hs->cookie_len, hs->challenge, want) != 0)
        return fail(hs, CNODE__HS_F_PROTOCOL, "digest failed");
    if (!digest_eq(got, want))
        return fail(hs, CNODE__HS_F_COOKIE, "challenge ack digest mismatch (wrong cookie)");
    hs->state = S_UP;
    return CNODE__HS_UP;
}

static int
on_message(cnode__hs *hs, const char *body, size_t len)
{
    switch (hs->state) {
    case S_A_NAME:
        return on_send_name(hs, body, len);
    case S_A_ALIVE_REPLY:
        return on_alive_reply(hs, body, len);
    case S_A_REPLY:
        return on_reply(hs, body, len);
    case S_D_STATUS:
        return on_status(hs, body, len);
    case S_D_CHALLENGE:
        return on_challenge(hs, body, len);
    case S_D_ACK:
        return on_ack(hs, body, len);
    default:
        return fail(hs, CNODE__HS_F_PROTOCOL, "unexpected handshake state");
    }
}

/* The length prefix read so far; a 4-byte one over the bound reads as the bound plus one (refused). */
static size_t
msg_len(const cnode__hs *hs)
{
    if (hs->hdr == 2)
        return ((size_t)hs->in[0] << 8) | hs->in[1];
    if (hs->in[0] || hs->in[1])
        return CNODE__HS_BODY_MAX + 1;
    return ((size_t)hs->in[2] << 8) | hs->in[3];
}

void
cnode__hs_use_packet4(cnode__hs *hs)
{
    if (hs->hdr == 4)
        return;
    char q[CNODE__HS_OUT_MAX];
    size_t n = hs->out_len - hs->out_off;
    memcpy(q, hs->out + hs->out_off, n);
    hs->out_len = hs->out_off = 0;
    hs->hdr = 4;
    /* what init queued (send_name) is one whole message: queue it again, widened */
    if (n)
        emit(hs, q, n);
}

size_t
cnode__hs_want(const cnode__hs *hs)
{
    size_t h = (size_t)hs->hdr;
    if (verdict(hs) != CNODE__HS_AGAIN)
        return 0;
    if (hs->in_len < h)
        return h - hs->in_len;
    return h + msg_len(hs) - hs->in_len;
}

int
cnode__hs_input(cnode__hs *hs, const char *buf, size_t len, size_t *used)
{
    size_t u = 0;
    int v = verdict(hs);
    if (v == CNODE__HS_AGAIN && len == 0)
        v = fail(hs, CNODE__HS_F_CLOSED,
                 hs->in_len ? "connection closed in the middle of a handshake message" : "connection closed during handshake");
    while (v == CNODE__HS_AGAIN && u < len) {
        size_t take = cnode__hs_want(hs);
        if (take > len - u)
            take = len - u;
        memcpy(hs->in + hs->in_len, buf + u, take);
        hs->in_len += take;
        u += take;
        size_t h = (size_t)hs->hdr;
        if (hs->in_len < h)
            continue;
        size_t n = msg_len(hs);
        if (n == 0 || n > CNODE__HS_BODY_MAX) {
            v = fail(hs, CNODE__HS_F_PROTOCOL, n ? "handshake message too long" : "empty handshake message");
            break;
        }
        if (hs->in_len == h + n) {
            hs->in_len = 0;
            v = on_message(hs, (const char *)hs->in + h, n);
        }
    }
    if (used)
        *used = u;
    return v;
}

int
cnode__hs_answer_name(cnode__hs *hs, int status)
{
    if (hs->state != S_A_NAME_ANSWER)
        return verdict(hs);
    switch (status) {
    case CNODE__HS_ST_OK:
    case CNODE__HS_ST_OK_SIMULTANEOUS:
        hs->state = S_A_REPLY;
        if (emit_status(hs, status == CNODE__HS_ST_OK ? "ok" : "ok_simultaneous") != CNODE__HS_AGAIN)
            return CNODE__HS_FAIL;
        return emit_challenge(hs);
    case CNODE__HS_ST_ALIVE:
        hs->state = S_A_ALIVE_REPLY;
        return emit_status(hs, "alive");
    case CNODE__HS_ST_NOK:
        emit_status(hs, "nok");
        return fail(hs, CNODE__HS_F_DECLINED, "simultaneous connect: our own attempt wins");
    default:
        emit_status(hs, "not_allowed");
        return fail(hs, CNODE__HS_F_DECLINED, "not allowed");
    }
}

int
cnode__hs_answer_alive(cnode__hs *hs, int have_live_connection)
{
    if (hs->state != S_D_ALIVE_ANSWER)
        return verdict(hs);
    if (have_live_connection) {
        emit_status(hs, "false");
        return fail(hs, CNODE__HS_F_DECLINED, "peer says a connection is alive");
    }
    hs->state = S_D_CHALLENGE;
    return emit_status(hs, "true");
}

int
cnode__hs_answer_proven(cnode__hs *hs)
{
    if (hs->state != S_A_PROVEN)
        return verdict(hs);
    unsigned char dg[16];
    if (cnode__hs_digest(hs->cookie, hs->cookie_len, hs->peer_challenge, dg) != 0)
        return fail(hs, CNODE__HS_F_PROTOCOL, "digest failed");
    char b[32];
    if (emit(hs, b, cnode__hs_challenge_ack(b, sizeof b, dg)) != CNODE__HS_AGAIN)
        return CNODE__HS_FAIL;
    hs->state = S_UP;
    return CNODE__HS_UP;
}

size_t
cnode__hs_output(const cnode__hs *hs, const char **p)
{
    *p = hs->out + hs->out_off;
    return hs->out_len - hs->out_off;
}

void
cnode__hs_written(cnode__hs *hs, size_t n)
{
    if (n > hs->out_len - hs->out_off)
        n = hs->out_len - hs->out_off;
    hs->out_off += n;
    if (hs->out_off == hs->out_len)
        hs->out_off = hs->out_len = 0;
}
