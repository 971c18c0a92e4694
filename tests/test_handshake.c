/* The handshake machine (ei_glue/handshake.c), both roles, without sockets:
 * whole handshakes fed at every split point and byte by byte, every
 * truncation, wrong tags, lengths and digests, alive/true/false, nok,
 * ok_simultaneous, the old 'n' form and names that are too long. The peer's
 * bytes are made with the ei_glue encoders; the digest of "secret" and
 * 3000000000 is the one protocol.md confirmed against OTP.
 * A second suite plays the same attacks over loopback against a live node
 * of this process (private epmd): bounds, eviction, timeouts, the log rate
 * limit, no peer record before the cookie, and a live link replaced only by
 * a connection that proved the cookie. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>

#include "cnode/internal.h"
#include "ei_glue/glue.h"
#include "tests/testutil.h"

#define ME "me@host"
#define THEM "them@host"
#define COOKIE "secret"
#define MY_CHALLENGE 3000000000u /* digest with COOKIE: 8d59c529b94478021bf57d2723731099 */
#define THEIR_CHALLENGE 12345u
#define THEIR_FLAGS 0xD07DF7FBCULL /* OTP 25, hidden */

/* A byte stream a test plays as the peer. */
typedef struct {
    char b[2048];
    size_t n;
} stream;

static void
put(stream *s, const char *p, size_t n)
{
    CU_ASSERT_FATAL(n > 0 && s->n + n <= sizeof s->b);
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

static void
put_status(stream *s, const char *text)
{
    char b[64];
    put(s, b, cnode__hs_status(b, sizeof b, text));
}

static void
put_send_name(stream *s, uint64_t flags, const char *name)
{
    char b[600];
    put(s, b, cnode__hs_send_name(b, sizeof b, flags, 77, name));
}

static void
put_challenge(stream *s, uint64_t flags, const char *name)
{
    char b[600];
    put(s, b, cnode__hs_challenge(b, sizeof b, flags, THEIR_CHALLENGE, 77, name));
}

/* The reply a peer with cookie sends to our challenge. */
static void
put_reply(stream *s, const char *cookie)
{
    unsigned char dg[16];
    CU_ASSERT_FATAL(cnode__hs_digest(cookie, strlen(cookie), MY_CHALLENGE, dg) == 0);
    char b[32];
    put(s, b, cnode__hs_challenge_reply(b, sizeof b, THEIR_CHALLENGE, dg));
}

static void
put_ack(stream *s, const char *cookie)
{
    unsigned char dg[16];
    CU_ASSERT_FATAL(cnode__hs_digest(cookie, strlen(cookie), MY_CHALLENGE, dg) == 0);
    char b[32];
    put(s, b, cnode__hs_challenge_ack(b, sizeof b, dg));
}

/* A raw message: 2-byte length, then body. */
static void
put_raw(stream *s, const char *body, size_t n)
{
    char h[2] = {(char)(n >> 8), (char)n};
    put(s, h, 2);
    put(s, body, n);
}

static void
init_accept(cnode__hs *hs)
{
    cnode__hs_init_accept(hs, ME, CNODE__DFLAGS_OURS, 5, COOKIE, strlen(COOKIE), MY_CHALLENGE);
}

static void
init_dial(cnode__hs *hs)
{
    cnode__hs_init_dial(hs, ME, CNODE__DFLAGS_OURS, 5, COOKIE, strlen(COOKIE), THEM, MY_CHALLENGE);
}

/* What the caller answers: the runtime's decisions of one scenario. */
typedef struct {
    int name_status;   /* accept: answer to NAME */
    int have_live;     /* dial: answer to ALIVE */
    int proven_close;  /* accept: close at PROVEN instead of answering */
    int names, alives, provens;
    stream out;        /* everything the machine sent */
} script;

static void
drain(cnode__hs *hs, script *sc)
{
    const char *p;
    size_t n = cnode__hs_output(hs, &p);
    if (n) {
        put(&sc->out, p, n);
        cnode__hs_written(hs, n);
    }
    CU_ASSERT_EQUAL(cnode__hs_output(hs, &p), 0);
}

static int
answer(cnode__hs *hs, script *sc, int v)
{
    for (;;) {
        if (v == CNODE__HS_NAME) {
            sc->names++;
            v = cnode__hs_answer_name(hs, sc->name_status);
        } else if (v == CNODE__HS_ALIVE) {
            sc->alives++;
            v = cnode__hs_answer_alive(hs, sc->have_live);
        } else if (v == CNODE__HS_PROVEN) {
            sc->provens++;
            if (sc->proven_close)
                return v;
            v = cnode__hs_answer_proven(hs);
        } else {
            return v;
        }
    }
}

/* Feed in[0, n) in chunks: cuts[] are the chunk ends (ascending, < n), then the
 * rest. Returns the last verdict; *consumed gets the bytes taken. Checks the
 * machine never asks for more than it needs and never takes past a verdict. */
static int
feed(cnode__hs *hs, script *sc, const char *in, size_t n, const size_t *cuts, size_t ncuts, size_t *consumed)
{
    size_t off = 0;
    int v = CNODE__HS_AGAIN;
    drain(hs, sc);
    for (size_t k = 0; k <= ncuts && v == CNODE__HS_AGAIN; k++) {
        size_t end = k < ncuts ? cuts[k] : n;
        while (off < end && v == CNODE__HS_AGAIN) {
            size_t want = cnode__hs_want(hs), used = 0;
            CU_ASSERT(want > 0 && want <= 2 + CNODE__HS_BODY_MAX);
            v = cnode__hs_input(hs, in + off, end - off, &used);
            CU_ASSERT(used <= end - off);
            if (v == CNODE__HS_AGAIN)
                CU_ASSERT_EQUAL(used, end - off);
            off += used;
            v = answer(hs, sc, v);
            drain(hs, sc);
            if (used == 0 && v == CNODE__HS_AGAIN)
                break;
        }
    }
    if (consumed)
        *consumed = off;
    return v;
}

static int
feed_whole(cnode__hs *hs, script *sc, const stream *in, size_t *consumed)
{
    return feed(hs, sc, in->b, in->n, NULL, 0, consumed);
}

/* The messages the machine sent, one by one: 2-byte length prefixed bodies. */
static int
nth_msg(const stream *s, int i, const char **body, size_t *len)
{
    size_t off = 0;
    for (;;) {
        cnode__frame f;
        ptrdiff_t n = cnode__frame_decode(s->b + off, s->n - off, 2, 65535, &f, NULL);
        if (n <= 0 || !f.body)
            return 0;
        if (i-- == 0) {
            *body = f.body;
            *len = f.len;
            return 1;
        }
        off += (size_t)n;
    }
}

static int
msg_is_status(const stream *s, int i, const char *text)
{
    const char *b;
    size_t n;
    return nth_msg(s, i, &b, &n) && n == 1 + strlen(text) && b[0] == 's' && memcmp(b + 1, text, n - 1) == 0;
}

static int
count_msgs(const stream *s)
{
    const char *b;
    size_t n;
    int i = 0;
    while (nth_msg(s, i, &b, &n))
        i++;
    return i;
}

/* ---- accept ---------------------------------------------------------------------------- */

static void
accept_stream(stream *in)
{
    memset(in, 0, sizeof *in);
    put_send_name(in, THEIR_FLAGS, THEM);
    put_reply(in, COOKIE);
}

/* Our challenge as the peer sees it, and the ack with the digest of theirs. */
static void
check_accept_output(const script *sc, const char *first_status)
{
    CU_ASSERT(msg_is_status(&sc->out, 0, first_status));
    const char *b;
    size_t n;
    CU_ASSERT_FATAL(nth_msg(&sc->out, 1, &b, &n));
    cnode__hs_name ch;
    CU_ASSERT_FATAL(cnode__hs_challenge_decode(b, n, &ch, NULL) == (ptrdiff_t)n);
    CU_ASSERT_EQUAL(ch.challenge, MY_CHALLENGE);
    CU_ASSERT_EQUAL(ch.flags, CNODE__DFLAGS_OURS);
    CU_ASSERT_EQUAL(ch.creation, 5);
    CU_ASSERT(ch.name_len == strlen(ME) && memcmp(ch.name, ME, ch.name_len) == 0);
    CU_ASSERT_FATAL(nth_msg(&sc->out, 2, &b, &n));
    unsigned char want[16];
    cnode__hs_digest(COOKIE, strlen(COOKIE), THEIR_CHALLENGE, want);
    CU_ASSERT(n == 17 && b[0] == 'a' && memcmp(b + 1, want, 16) == 0);
    CU_ASSERT_EQUAL(count_msgs(&sc->out), 3);
}

static void
test_accept_whole(void)
{
    /* the reply's digest is protocol.md's confirmed example */
    stream in;
    accept_stream(&in);
    unsigned char golden[16];
    tu_unhex("8d59c529b94478021bf57d2723731099", golden, 16);
    CU_ASSERT(memcmp(in.b + in.n - 16, golden, 16) == 0);

    cnode__hs hs;
    init_accept(&hs);
    CU_ASSERT_EQUAL(hs.named, 0);
    script sc = {.name_status = CNODE__HS_ST_OK};
    size_t used;
    CU_ASSERT_EQUAL(feed_whole(&hs, &sc, &in, &used), CNODE__HS_UP);
    CU_ASSERT_EQUAL(used, in.n);
    CU_ASSERT_EQUAL(sc.names, 1);
    CU_ASSERT_EQUAL(sc.provens, 1);
    CU_ASSERT_STRING_EQUAL(hs.peer_name, THEM);
    CU_ASSERT_EQUAL(hs.peer_flags, THEIR_FLAGS);
    CU_ASSERT_EQUAL(hs.peer_creation, 77);
    CU_ASSERT_EQUAL(hs.named, 1);
    CU_ASSERT_EQUAL(hs.replacing, 0);
    CU_ASSERT_EQUAL(cnode__hs_want(&hs), 0);
    check_accept_output(&sc, "ok");
    /* done: more input is not taken */
    CU_ASSERT_EQUAL(cnode__hs_input(&hs, "x", 1, &used), CNODE__HS_UP);
    CU_ASSERT_EQUAL(used, 0);
}

static void
test_accept_every_split(void)
{
    stream in;
    accept_stream(&in);
    for (size_t cut = 1; cut < in.n; cut++) {
        cnode__hs hs;
        init_accept(&hs);
        script sc = {.name_status = CNODE__HS_ST_OK};
        size_t used;
        CU_ASSERT_EQUAL(feed(&hs, &sc, in.b, in.n, &cut, 1, &used), CNODE__HS_UP);
        CU_ASSERT_EQUAL(used, in.n);
        check_accept_output(&sc, "ok");
    }
    for (size_t a = 1; a < in.n; a += 3)
        for (size_t b = a + 1; b < in.n; b += 5) {
            size_t cuts[2] = {a, b};
            cnode__hs hs;
            init_accept(&hs);
            script sc = {.name_status = CNODE__HS_ST_OK};
            CU_ASSERT_EQUAL(feed(&hs, &sc, in.b, in.n, cuts, 2, NULL), CNODE__HS_UP);
        }
}

static void
test_accept_byte_by_byte(void)
{
    stream in;
    accept_stream(&in);
    size_t cuts[sizeof in.b];
    for (size_t i = 0; i + 1 < in.n; i++)
        cuts[i] = i + 1;
    cnode__hs hs;
    init_accept(&hs);
    script sc = {.name_status = CNODE__HS_ST_OK};
    size_t used;
    CU_ASSERT_EQUAL(feed(&hs, &sc, in.b, in.n, cuts, in.n - 1, &used), CNODE__HS_UP);
    CU_ASSERT_EQUAL(used, in.n);
    check_accept_output(&sc, "ok");
}

/* Every proper prefix of the peer's stream, then a close: a clean failure. */
static void
test_accept_truncated(void)
{
    stream in;
    accept_stream(&in);
    for (size_t cut = 0; cut < in.n; cut++) {
        cnode__hs hs;
        init_accept(&hs);
        script sc = {.name_status = CNODE__HS_ST_OK};
        tu_guard g = tu_guard_copy(in.b, cut);
        int v = feed(&hs, &sc, g.p, cut, NULL, 0, NULL);
        tu_guard_free(&g);
        CU_ASSERT_EQUAL(v, CNODE__HS_AGAIN);
        CU_ASSERT(cnode__hs_want(&hs) > 0);
        CU_ASSERT_EQUAL(cnode__hs_input(&hs, NULL, 0, NULL), CNODE__HS_FAIL);
        CU_ASSERT_EQUAL(hs.fail, CNODE__HS_F_CLOSED);
        CU_ASSERT_EQUAL(sc.provens, 0);
        /* named only once the whole send_name is in */
        CU_ASSERT_EQUAL(hs.named, cut >= 2 + 15 + strlen(THEM));
    }
}

static void
test_accept_ok_simultaneous(void)
{
    stream in;
    accept_stream(&in);
    cnode__hs hs;
    init_accept(&hs);
    script sc = {.name_status = CNODE__HS_ST_OK_SIMULTANEOUS};
    CU_ASSERT_EQUAL(feed_whole(&hs, &sc, &in, NULL), CNODE__HS_UP);
    check_accept_output(&sc, "ok_simultaneous");
}

static void
test_accept_nok_and_not_allowed(void)
{
    int st[2] = {CNODE__HS_ST_NOK, CNODE__HS_ST_NOT_ALLOWED};
    const char *text[2] = {"nok", "not_allowed"};
    for (int i = 0; i < 2; i++) {
        stream in;
        accept_stream(&in);
        cnode__hs hs;
        init_accept(&hs);
        script sc = {.name_status = st[i]};
        size_t used;
        CU_ASSERT_EQUAL(feed_whole(&hs, &sc, &in, &used), CNODE__HS_FAIL);
        CU_ASSERT_EQUAL(hs.fail, CNODE__HS_F_DECLINED);
        CU_ASSERT_EQUAL(used, 2 + 15 + strlen(THEM)); /* the reply is never read */
        CU_ASSERT(msg_is_status(&sc.out, 0, text[i]));
        CU_ASSERT_EQUAL(count_msgs(&sc.out), 1);
        CU_ASSERT_EQUAL(sc.provens, 0);
    }
}

/* alive: the peer's true leads to the challenge, and PROVEN only after the
 * right digest, marked as replacing; false or a wrong digest never reach it. */
static void
test_accept_alive(void)
{
    stream in = {0};
    put_send_name(&in, THEIR_FLAGS, THEM);
    put_status(&in, "true");
    put_reply(&in, COOKIE);
    cnode__hs hs;
    init_accept(&hs);
    script sc = {.name_status = CNODE__HS_ST_ALIVE, .proven_close = 1};
    size_t used;
    CU_ASSERT_EQUAL(feed_whole(&hs, &sc, &in, &used), CNODE__HS_PROVEN);
    CU_ASSERT_EQUAL(used, in.n);
    CU_ASSERT_EQUAL(hs.replacing, 1);
    CU_ASSERT(msg_is_status(&sc.out, 0, "alive"));
    CU_ASSERT_EQUAL(count_msgs(&sc.out), 2); /* alive, challenge; no ack until answered */
    /* while the answer is pending nothing more is taken and the verdict repeats */
    CU_ASSERT_EQUAL(cnode__hs_want(&hs), 0);
    CU_ASSERT_EQUAL(cnode__hs_input(&hs, "xx", 2, &used), CNODE__HS_PROVEN);
    CU_ASSERT_EQUAL(used, 0);
    CU_ASSERT_EQUAL(cnode__hs_answer_proven(&hs), CNODE__HS_UP);
    drain(&hs, &sc);
    CU_ASSERT_EQUAL(count_msgs(&sc.out), 3);

    /* true, then silence: the machine waits, never PROVEN */
    stream in2 = {0};
    put_send_name(&in2, THEIR_FLAGS, THEM);
    put_status(&in2, "true");
    init_accept(&hs);
    script sc2 = {.name_status = CNODE__HS_ST_ALIVE};
    CU_ASSERT_EQUAL(feed_whole(&hs, &sc2, &in2, NULL), CNODE__HS_AGAIN);
    CU_ASSERT_EQUAL(sc2.provens, 0);
    CU_ASSERT_EQUAL(hs.replacing, 1);

    /* true, then a wrong digest */
    stream in3 = {0};
    put_send_name(&in3, THEIR_FLAGS, THEM);
    put_status(&in3, "true");
    put_reply(&in3, "not the cookie");
    init_accept(&hs);
    script sc3 = {.name_status = CNODE__HS_ST_ALIVE};
    CU_ASSERT_EQUAL(feed_whole(&hs, &sc3, &in3, NULL), CNODE__HS_FAIL);
    CU_ASSERT_EQUAL(hs.fail, CNODE__HS_F_COOKIE);
    CU_ASSERT_EQUAL(sc3.provens, 0);
    CU_ASSERT_EQUAL(count_msgs(&sc3.out), 2); /* no ack */

    /* false: the peer keeps its connection */
    stream in4 = {0};
    put_send_name(&in4, THEIR_FLAGS, THEM);
    put_status(&in4, "false");
    init_accept(&hs);
    script sc4 = {.name_status = CNODE__HS_ST_ALIVE};
    CU_ASSERT_EQUAL(feed_whole(&hs, &sc4, &in4, NULL), CNODE__HS_FAIL);
    CU_ASSERT_EQUAL(hs.fail, CNODE__HS_F_DECLINED);
    CU_ASSERT_EQUAL(count_msgs(&sc4.out), 1);

    /* neither true nor false */
    stream in5 = {0};
    put_send_name(&in5, THEIR_FLAGS, THEM);
    put_status(&in5, "truee");
    init_accept(&hs);
    script sc5 = {.name_status = CNODE__HS_ST_ALIVE};
    CU_ASSERT_EQUAL(feed_whole(&hs, &sc5, &in5, NULL), CNODE__HS_FAIL);
    CU_ASSERT_EQUAL(hs.fail, CNODE__HS_F_PROTOCOL);
}

static void
test_accept_wrong_digest(void)
{
    stream in = {0};
    put_send_name(&in, THEIR_FLAGS, THEM);
    put_reply(&in, "secreT");
    cnode__hs hs;
    init_accept(&hs);
    script sc = {.name_status = CNODE__HS_ST_OK};
    CU_ASSERT_EQUAL(feed_whole(&hs, &sc, &in, NULL), CNODE__HS_FAIL);
    CU_ASSERT_EQUAL(hs.fail, CNODE__HS_F_COOKIE);
    CU_ASSERT_EQUAL(sc.provens, 0);
    CU_ASSERT_EQUAL(count_msgs(&sc.out), 2); /* ok, challenge; never an ack */
    /* answering PROVEN out of turn changes nothing */
    CU_ASSERT_EQUAL(cnode__hs_answer_proven(&hs), CNODE__HS_FAIL);
    drain(&hs, &sc);
    CU_ASSERT_EQUAL(count_msgs(&sc.out), 2);
}

/* One send_name-stage input and the failure it must end in (and whether a status is sent). */
static void
accept_fails(const stream *in, int kind, const char *status)
{
    cnode__hs hs;
    init_accept(&hs);
    script sc = {.name_status = CNODE__HS_ST_OK};
    CU_ASSERT_EQUAL(feed_whole(&hs, &sc, in, NULL), CNODE__HS_FAIL);
    CU_ASSERT_EQUAL(hs.fail, kind);
    CU_ASSERT_PTR_NOT_NULL(hs.why);
    CU_ASSERT_EQUAL(sc.names, 0);
    CU_ASSERT_EQUAL(hs.named, 0);
    if (status) {
        CU_ASSERT(msg_is_status(&sc.out, 0, status));
        CU_ASSERT_EQUAL(count_msgs(&sc.out), 1);
    } else {
        CU_ASSERT_EQUAL(sc.out.n, 0);
    }
}

static void
test_accept_bad_send_name(void)
{
    stream in = {0};
    /* old 'n' form: body 'n', Version:16, Flags:32, Name */
    put_raw(&in, "n\x00\x05\x00\x03\x7f\xbc" THEM, 7 + strlen(THEM));
    accept_fails(&in, CNODE__HS_F_OLD, "not_allowed");

    memset(&in, 0, sizeof in);
    put_raw(&in, "XYZ", 3); /* wrong tag */
    accept_fails(&in, CNODE__HS_F_PROTOCOL, NULL);

    memset(&in, 0, sizeof in);
    put_raw(&in, "N\0\0", 3); /* too short */
    accept_fails(&in, CNODE__HS_F_PROTOCOL, NULL);

    memset(&in, 0, sizeof in);
    put_send_name(&in, CNODE__DFLAGS_MANDATORY_25 & ~CNODE__DFLAG_BIG_CREATION, THEM);
    accept_fails(&in, CNODE__HS_F_FLAGS, "not_allowed");

    const char *bad_names[] = {"nohost", "two@at@host", "@host", "name@", ME};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        memset(&in, 0, sizeof in);
        put_send_name(&in, THEIR_FLAGS, bad_names[i]);
        accept_fails(&in, CNODE__HS_F_NAME, NULL);
    }
    /* a NUL inside the name: it would become another, shorter C string */
    memset(&in, 0, sizeof in);
    char body[64] = "N";
    uint64_t f = THEIR_FLAGS;
    for (int i = 0; i < 8; i++)
        body[1 + i] = (char)(f >> (56 - 8 * i));
    memcpy(body + 9, "\0\0\0\x4d\0\x09" "x@h\0stuvw", 6 + 9); /* "x@h" as a C string */
    put_raw(&in, body, 15 + 9);
    accept_fails(&in, CNODE__HS_F_NAME, NULL);
}

/* Names of 255 bytes pass, 256 and 300 do not; lengths past the bound fail from the header alone. */
static void
test_accept_name_lengths(void)
{
    char name[400];
    memset(name, 'a', sizeof name);
    memcpy(name + 240, "@", 1);
    stream in = {0};
    name[255] = 0;
    put_send_name(&in, THEIR_FLAGS, name);
    cnode__hs hs;
    init_accept(&hs);
    script sc = {.name_status = CNODE__HS_ST_OK};
    CU_ASSERT_EQUAL(feed_whole(&hs, &sc, &in, NULL), CNODE__HS_AGAIN);
    CU_ASSERT_EQUAL(sc.names, 1);
    CU_ASSERT_EQUAL(strlen(hs.peer_name), 255);

    name[255] = 'a';
    name[256] = 0;
    memset(&in, 0, sizeof in);
    put_send_name(&in, THEIR_FLAGS, name);
    accept_fails(&in, CNODE__HS_F_NAME, NULL);

    /* 300 characters: the message is within the length bound, the name is not */
    name[256] = 'a';
    name[300] = 0;
    memset(&in, 0, sizeof in);
    char b[600];
    size_t n = cnode__hs_send_name(b, sizeof b, THEIR_FLAGS, 77, name);
    if (n > 2 + CNODE__HS_BODY_MAX) {
        put(&in, b, 2 + CNODE__HS_BODY_MAX); /* refused on its length alone */
        accept_fails(&in, CNODE__HS_F_PROTOCOL, NULL);
    } else {
        put(&in, b, n);
        accept_fails(&in, CNODE__HS_F_NAME, NULL);
    }

    /* lengths: 0, just past the bound, 0xFFFF, and HTTP: each fails after 2 bytes */
    const char *hdrs[] = {"\x00\x00", "\x01\x41", "\xff\xff", "GE"};
    for (size_t i = 0; i < 4; i++) {
        init_accept(&hs);
        size_t used;
        CU_ASSERT_EQUAL(cnode__hs_input(&hs, hdrs[i], 1, &used), CNODE__HS_AGAIN);
        CU_ASSERT_EQUAL(cnode__hs_input(&hs, hdrs[i] + 1, 1, &used), CNODE__HS_FAIL);
        CU_ASSERT_EQUAL(hs.fail, CNODE__HS_F_PROTOCOL);
        CU_ASSERT_EQUAL(cnode__hs_want(&hs), 0);
    }
    /* exactly the bound is a length we read */
    init_accept(&hs);
    CU_ASSERT_EQUAL(cnode__hs_input(&hs, "\x01\x40", 2, NULL), CNODE__HS_AGAIN);
    CU_ASSERT_EQUAL(cnode__hs_want(&hs), CNODE__HS_BODY_MAX);
}

static void
test_accept_garbage(void)
{
    static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    cnode__hs hs;
    init_accept(&hs);
    size_t used;
    CU_ASSERT_EQUAL(cnode__hs_input(&hs, http, sizeof http - 1, &used), CNODE__HS_FAIL);
    CU_ASSERT_EQUAL(used, 2);
    /* a send_name then a reply with the wrong tag or length */
    const char *bodies[] = {"a0123456789abcdef", "r0123456789abcdef0123", "r0123456789abcdef012345"};
    size_t lens[] = {17, 20, 22};
    for (int i = 0; i < 3; i++) {
        stream in = {0};
        put_send_name(&in, THEIR_FLAGS, THEM);
        put_raw(&in, bodies[i], lens[i]);
        init_accept(&hs);
        script sc = {.name_status = CNODE__HS_ST_OK};
        CU_ASSERT_EQUAL(feed_whole(&hs, &sc, &in, NULL), CNODE__HS_FAIL);
        CU_ASSERT_EQUAL(hs.fail, CNODE__HS_F_PROTOCOL);
        CU_ASSERT_EQUAL(sc.provens, 0);
    }
}

/* ---- dial ------------------------------------------------------------------------------ */

static void
dial_stream(stream *in, const char *status)
{
    memset(in, 0, sizeof *in);
    put_status(in, status);
    put_challenge(in, THEIR_FLAGS, THEM);
    put_ack(in, COOKIE);
}

static void
check_dial_output(const script *sc, int with_true)
{
    const char *b;
    size_t n;
    CU_ASSERT_FATAL(nth_msg(&sc->out, 0, &b, &n));
    cnode__hs_name nm;
    CU_ASSERT_FATAL(cnode__hs_send_name_decode(b, n, &nm, NULL) == (ptrdiff_t)n);
    CU_ASSERT_EQUAL(nm.flags, CNODE__DFLAGS_OURS);
    CU_ASSERT_EQUAL(nm.creation, 5);
    CU_ASSERT(nm.name_len == strlen(ME) && memcmp(nm.name, ME, nm.name_len) == 0);
    int i = 1;
    if (with_true)
        CU_ASSERT(msg_is_status(&sc->out, i++, "true"));
    CU_ASSERT_FATAL(nth_msg(&sc->out, i, &b, &n));
    uint32_t ch;
    unsigned char got[16], want[16];
    CU_ASSERT_FATAL(cnode__hs_challenge_reply_decode(b, n, &ch, got, NULL) == 21);
    CU_ASSERT_EQUAL(ch, MY_CHALLENGE);
    cnode__hs_digest(COOKIE, strlen(COOKIE), THEIR_CHALLENGE, want);
    CU_ASSERT(memcmp(got, want, 16) == 0);
    CU_ASSERT_EQUAL(count_msgs(&sc->out), i + 1);
}

static void
test_dial_whole_and_splits(void)
{
    const char *statuses[] = {"ok", "ok_simultaneous"};
    for (int s = 0; s < 2; s++) {
        stream in;
        dial_stream(&in, statuses[s]);
        for (size_t cut = 0; cut < in.n; cut++) {
            cnode__hs hs;
            init_dial(&hs);
            script sc = {0};
            size_t used;
            CU_ASSERT_EQUAL(feed(&hs, &sc, in.b, in.n, &cut, cut ? 1 : 0, &used), CNODE__HS_UP);
            CU_ASSERT_EQUAL(used, in.n);
            CU_ASSERT_STRING_EQUAL(hs.peer_name, THEM);
            CU_ASSERT_EQUAL(hs.peer_flags, THEIR_FLAGS);
            CU_ASSERT_EQUAL(hs.peer_creation, 77);
            check_dial_output(&sc, 0);
        }
        size_t cuts[sizeof in.b];
        for (size_t i = 0; i + 1 < in.n; i++)
            cuts[i] = i + 1;
        cnode__hs hs;
        init_dial(&hs);
        script sc = {0};
        CU_ASSERT_EQUAL(feed(&hs, &sc, in.b, in.n, cuts, in.n - 1, NULL), CNODE__HS_UP);
        check_dial_output(&sc, 0);
    }
}

/* The peer's first frames right behind its ack stay with the caller. */
static void
test_dial_leaves_frames(void)
{
    stream in;
    dial_stream(&in, "ok");
    put(&in, "\0\0\0\0\0\0\0\x05p", 9);
    cnode__hs hs;
    init_dial(&hs);
    script sc = {0};
    size_t used;
    CU_ASSERT_EQUAL(feed_whole(&hs, &sc, &in, &used), CNODE__HS_UP);
    CU_ASSERT_EQUAL(used, in.n - 9);
}

static void
test_dial_truncated(void)
{
    stream in;
    dial_stream(&in, "ok");
    for (size_t cut = 0; cut < in.n; cut++) {
        cnode__hs hs;
        init_dial(&hs);
        script sc = {0};
        tu_guard g = tu_guard_copy(in.b, cut);
        CU_ASSERT_EQUAL(feed(&hs, &sc, g.p, cut, NULL, 0, NULL), CNODE__HS_AGAIN);
        tu_guard_free(&g);
        CU_ASSERT_EQUAL(cnode__hs_input(&hs, "", 0, NULL), CNODE__HS_FAIL);
        CU_ASSERT_EQUAL(hs.fail, CNODE__HS_F_CLOSED);
    }
}

static void
test_dial_alive(void)
{
    stream in = {0};
    put_status(&in, "alive");
    put_challenge(&in, THEIR_FLAGS, THEM);
    put_ack(&in, COOKIE);
    cnode__hs hs;
    init_dial(&hs);
    script sc = {.have_live = 0};
    CU_ASSERT_EQUAL(feed_whole(&hs, &sc, &in, NULL), CNODE__HS_UP);
    CU_ASSERT_EQUAL(sc.alives, 1);
    check_dial_output(&sc, 1);

    init_dial(&hs);
    script sc2 = {.have_live = 1};
    size_t used;
    CU_ASSERT_EQUAL(feed_whole(&hs, &sc2, &in, &used), CNODE__HS_FAIL);
    CU_ASSERT_EQUAL(hs.fail, CNODE__HS_F_DECLINED);
    CU_ASSERT_EQUAL(used, 2 + 6);
    CU_ASSERT(msg_is_status(&sc2.out, 1, "false"));
}

static void
test_dial_refusals(void)
{
    struct {
        const char *status;
        int kind;
    } cases[] = {{"nok", CNODE__HS_F_NOK},
                 {"not_allowed", CNODE__HS_F_REFUSED},
                 {"named:", CNODE__HS_F_REFUSED},
                 {"okay", CNODE__HS_F_REFUSED},
                 {"", CNODE__HS_F_REFUSED}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        stream in = {0};
        put_raw(&in, "s", 1);
        if (*cases[i].status) {
            in.n = 0;
            put_status(&in, cases[i].status);
        }
        cnode__hs hs;
        init_dial(&hs);
        script sc = {0};
        CU_ASSERT_EQUAL(feed_whole(&hs, &sc, &in, NULL), CNODE__HS_FAIL);
        CU_ASSERT_EQUAL(hs.fail, cases[i].kind);
        CU_ASSERT_EQUAL(count_msgs(&sc.out), 1); /* send_name only */
    }
}

static void
test_dial_bad_challenge_and_ack(void)
{
    /* another node answers */
    stream in = {0};
    put_status(&in, "ok");
    put_challenge(&in, THEIR_FLAGS, "other@host");
    cnode__hs hs;
    init_dial(&hs);
    script sc = {0};
    CU_ASSERT_EQUAL(feed_whole(&hs, &sc, &in, NULL), CNODE__HS_FAIL);
    CU_ASSERT_EQUAL(hs.fail, CNODE__HS_F_NAME);
    CU_ASSERT_EQUAL(count_msgs(&sc.out), 1);

    /* mandatory flags missing */
    memset(&in, 0, sizeof in);
    put_status(&in, "ok");
    put_challenge(&in, CNODE__DFLAG_EXTENDED_REFERENCES, THEM);
    init_dial(&hs);
    script sc2 = {0};
    CU_ASSERT_EQUAL(feed_whole(&hs, &sc2, &in, NULL), CNODE__HS_FAIL);
    CU_ASSERT_EQUAL(hs.fail, CNODE__HS_F_FLAGS);

    /* wrong ack digest, and a wrong tag in the ack's place */
    memset(&in, 0, sizeof in);
    put_status(&in, "ok");
    put_challenge(&in, THEIR_FLAGS, THEM);
    put_ack(&in, "secreT");
    init_dial(&hs);
    script sc3 = {0};
    CU_ASSERT_EQUAL(feed_whole(&hs, &sc3, &in, NULL), CNODE__HS_FAIL);
    CU_ASSERT_EQUAL(hs.fail, CNODE__HS_F_COOKIE);

    memset(&in, 0, sizeof in);
    put_status(&in, "ok");
    put_challenge(&in, THEIR_FLAGS, THEM);
    put_raw(&in, "r0123456789abcdef", 17);
    init_dial(&hs);
    script sc4 = {0};
    CU_ASSERT_EQUAL(feed_whole(&hs, &sc4, &in, NULL), CNODE__HS_FAIL);
    CU_ASSERT_EQUAL(hs.fail, CNODE__HS_F_PROTOCOL);

    /* a challenge where the status belongs */
    memset(&in, 0, sizeof in);
    put_challenge(&in, THEIR_FLAGS, THEM);
    init_dial(&hs);
    script sc5 = {0};
    CU_ASSERT_EQUAL(feed_whole(&hs, &sc5, &in, NULL), CNODE__HS_FAIL);
    CU_ASSERT_EQUAL(hs.fail, CNODE__HS_F_PROTOCOL);
}

/* ---- both machines against each other ----------------------------------------------------- */

/* Pump bytes between a dialling and an accepting machine, `chunk` bytes at a time. */
static void
pair_run(size_t chunk, const char *dial_cookie, int name_status, int *dv, int *av)
{
    cnode__hs d, a;
    cnode__hs_init_dial(&d, ME, CNODE__DFLAGS_OURS, 5, dial_cookie, strlen(dial_cookie), THEM, 1111);
    cnode__hs_init_accept(&a, THEM, CNODE__DFLAGS_OURS, 6, COOKIE, strlen(COOKIE), 2222);
    script ds = {0}, as = {.name_status = name_status};
    *dv = *av = CNODE__HS_AGAIN;
    for (int turn = 0; turn < 100 && (*dv == CNODE__HS_AGAIN || *av == CNODE__HS_AGAIN); turn++) {
        const char *p;
        size_t n = cnode__hs_output(&d, &p);
        if (n && *av == CNODE__HS_AGAIN) {
            size_t k = n < chunk ? n : chunk, used;
            *av = answer(&a, &as, cnode__hs_input(&a, p, k, &used));
            cnode__hs_written(&d, used);
        }
        n = cnode__hs_output(&a, &p);
        if (n && *dv == CNODE__HS_AGAIN) {
            size_t k = n < chunk ? n : chunk, used;
            *dv = answer(&d, &ds, cnode__hs_input(&d, p, k, &used));
            cnode__hs_written(&a, used);
        }
        if (!cnode__hs_output(&d, &p) && !cnode__hs_output(&a, &p))
            break;
    }
    if (*dv == CNODE__HS_UP)
        CU_ASSERT_STRING_EQUAL(d.peer_name, THEM);
    if (*av == CNODE__HS_UP)
        CU_ASSERT_STRING_EQUAL(a.peer_name, ME);
}

static void
test_pair(void)
{
    for (size_t chunk = 1; chunk <= 300; chunk = chunk < 8 ? chunk + 1 : chunk * 2) {
        int dv, av;
        pair_run(chunk, COOKIE, CNODE__HS_ST_OK, &dv, &av);
        CU_ASSERT_EQUAL(dv, CNODE__HS_UP);
        CU_ASSERT_EQUAL(av, CNODE__HS_UP);
        pair_run(chunk, "wrong", CNODE__HS_ST_OK, &dv, &av);
        CU_ASSERT_EQUAL(av, CNODE__HS_FAIL); /* the acceptor sees the wrong digest first */
        CU_ASSERT_EQUAL(dv, CNODE__HS_AGAIN);
        pair_run(chunk, COOKIE, CNODE__HS_ST_NOK, &dv, &av);
        CU_ASSERT_EQUAL(av, CNODE__HS_FAIL);
        CU_ASSERT_EQUAL(dv, CNODE__HS_FAIL);
    }
}


/* ---- live: a node of this process attacked over loopback ------------------------------------ */

#define LIVE_COOKIE "hs_live_cookie"

static pid_t live_epmd;
static cnode_node *victim, *friend_node;
static char victim_name[256], friend_name[256], host[256];
static unsigned victim_port;
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static int downs_of_friend, ups_of_friend, wrong_cookie_lines, lines_42, handshake_lines, cookie_leaks;

static void
live_log(int level, const char *msg, void *ud)
{
    (void)level;
    (void)ud;
    pthread_mutex_lock(&live_mu);
    if (strstr(msg, "wrong cookie"))
        wrong_cookie_lines++;
    if (strstr(msg, "127.0.0.42"))
        lines_42++;
    if (strstr(msg, "handshake from"))
        handshake_lines++;
    cookie_leaks += strstr(msg, LIVE_COOKIE) != NULL; /* never the cookie */
    pthread_mutex_unlock(&live_mu);
}

static void
live_up(const char *name, void *ud)
{
    (void)ud;
    pthread_mutex_lock(&live_mu);
    ups_of_friend += strcmp(name, friend_name) == 0;
    pthread_mutex_unlock(&live_mu);
}

static void
live_down(const char *name, const char *reason, void *ud)
{
    (void)reason;
    (void)ud;
    pthread_mutex_lock(&live_mu);
    downs_of_friend += strcmp(name, friend_name) == 0;
    pthread_mutex_unlock(&live_mu);
}

static int
live_count(const int *v)
{
    pthread_mutex_lock(&live_mu);
    int r = *v;
    pthread_mutex_unlock(&live_mu);
    return r;
}

static uint64_t
stat_of(size_t offset)
{
    cnode_stats st;
    cnode_node_stats(victim, &st);
    return *(uint64_t *)((char *)&st + offset);
}
#define STAT(f) stat_of(offsetof(cnode_stats, f))

/* Wait (up to 5 s, scaled) until the victim's counter reaches want; 1 if it did. */
static int
wait_stat(size_t offset, uint64_t want)
{
    for (long long end = tu_now_ms() + tu_ms(5000); tu_now_ms() < end; usleep(2000))
        if (stat_of(offset) == want)
            return 1;
    return stat_of(offset) == want;
}
#define WAIT_STAT(f, v) wait_stat(offsetof(cnode_stats, f), (v))

static unsigned
epmd_lookup(const char *alive)
{
    const char *ps = getenv("ERL_EPMD_PORT");
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(ps ? ps : "0"))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    char b[300];
    size_t n = cnode__epmd_port_please2_req(b, sizeof b, alive);
    unsigned port = 0;
    if (send(fd, b, n, 0) == (ssize_t)n) {
        size_t got = 0;
        ssize_t r;
        while (got < sizeof b && (r = recv(fd, b + got, sizeof b - got, 0)) > 0)
            got += (size_t)r;
        cnode__epmd_port2_resp resp;
        if (cnode__epmd_port2_resp_decode(b, got, &resp, NULL) > 0 && resp.result == 0)
            port = resp.port;
    }
    close(fd);
    return port;
}

/* A connection to the victim from 127.0.0.<src> (loopback takes any of them). */
static int
raw_connect(int src)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in me = {.sin_family = AF_INET};
    me.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)src);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)victim_port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 5};
    if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof me) != 0 ||
        connect(fd, (struct sockaddr *)&to, sizeof to) != 0) {
        CU_FAIL("raw connect");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* 1 once the victim closed fd (EOF or reset), within 5 s. */
static int
closed_by_peer(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (long long end = tu_now_ms() + tu_ms(5000); tu_now_ms() < end;) {
        if (poll(&p, 1, 100) == 1) {
            char c[512];
            ssize_t r = recv(fd, c, sizeof c, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN))
                return 1;
        }
    }
    return 0;
}

static int
still_open(int fd)
{
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
    return r > 0 || (r < 0 && errno == EAGAIN); /* unread bytes, or nothing yet; not EOF */
}

static void
send_all(int fd, const void *p, size_t n)
{
    CU_ASSERT(send(fd, p, n, MSG_NOSIGNAL) == (ssize_t)n);
}

static int
recv_exact(int fd, char *b, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, b + got, n - got, 0);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

/* One handshake message body into b (cap bytes): its length, or -1. */
static int
recv_msg(int fd, char *b, size_t cap)
{
    unsigned char h[2];
    if (recv_exact(fd, (char *)h, 2) != 0)
        return -1;
    size_t n = ((size_t)h[0] << 8) | h[1];
    if (n > cap || recv_exact(fd, b, n) != 0)
        return -1;
    return (int)n;
}

static void
raw_send_name(int fd, const char *name)
{
    char b[600];
    size_t n = cnode__hs_send_name(b, sizeof b, CNODE__DFLAGS_OURS, 99, name);
    send_all(fd, b, n);
}

static int
got_status(int fd, const char *want)
{
    char b[600];
    int n = recv_msg(fd, b, sizeof b);
    return n == (int)(1 + strlen(want)) && b[0] == 's' && memcmp(b + 1, want, (size_t)n - 1) == 0;
}

/* Read the victim's challenge and answer it with cookie's digest. */
static int
raw_reply(int fd, const char *cookie, uint32_t mine)
{
    char b[600];
    int n = recv_msg(fd, b, sizeof b);
    cnode__hs_name ch;
    if (n <= 0 || cnode__hs_challenge_decode(b, (size_t)n, &ch, NULL) < 0)
        return -1;
    unsigned char dg[16];
    cnode__hs_digest(cookie, strlen(cookie), ch.challenge, dg);
    n = (int)cnode__hs_challenge_reply(b, sizeof b, mine, dg);
    send_all(fd, b, (size_t)n);
    return 0;
}

static cnode__conn *
victim_link_to(const char *name)
{
    pthread_mutex_lock(&victim->lock);
    cnode__peer *p = cnode__peer_get(victim, name, 0);
    cnode__conn *c = p ? p->up : NULL;
    pthread_mutex_unlock(&victim->lock);
    return c;
}

static int
live_init(void)
{
    if (tu_epmd_start(&live_epmd) != 0)
        return 1;
    char name[64];
    snprintf(name, sizeof name, "hsv_%d", (int)getpid());
    cnode_node_opts o = {.name = name, .cookie = LIVE_COOKIE, .log = live_log, .log_level = CNODE_LOG_DEBUG,
                         .on_nodeup = live_up, .on_nodedown = live_down};
    o.limits.handshakes = 4;
    o.limits.handshakes_per_addr = 2;
    o.limits.handshake_ms = 500;
    if (cnode_node_new(&o, &victim, NULL) != 0) {
        tu_epmd_stop(&live_epmd);
        return 1;
    }
    snprintf(name, sizeof name, "hsf_%d", (int)getpid());
    cnode_node_opts f = {.name = name, .cookie = LIVE_COOKIE};
    if (cnode_node_new(&f, &friend_node, NULL) != 0) {
        cnode_node_close(victim);
        tu_epmd_stop(&live_epmd);
        return 1;
    }
    snprintf(victim_name, sizeof victim_name, "%s", cnode_node_name(victim));
    snprintf(friend_name, sizeof friend_name, "%s", cnode_node_name(friend_node));
    snprintf(host, sizeof host, "%s", strchr(victim_name, '@') + 1);
    char alive[64];
    snprintf(alive, sizeof alive, "hsv_%d", (int)getpid());
    victim_port = epmd_lookup(alive);
    return victim_port ? 0 : 1;
}

static int
live_clean(void)
{
    cnode_node_close(friend_node);
    cnode_node_close(victim);
    victim = friend_node = NULL;
    tu_epmd_stop(&live_epmd);
    return 0;
}

/* Overall bound 4: a fifth connection evicts the oldest silent one; once all
 * four have sent their names, a new one is refused. */
static void
test_live_evict_then_refuse(void)
{
    uint64_t ev0 = STAT(handshakes_evicted), rf0 = STAT(handshakes_refused);
    int s[6];
    for (int i = 0; i < 4; i++) {
        s[i] = raw_connect(11 + i);
        CU_ASSERT(WAIT_STAT(handshakes_now, (uint64_t)i + 1));
    }
    s[4] = raw_connect(15);
    CU_ASSERT(WAIT_STAT(handshakes_evicted, ev0 + 1));
    CU_ASSERT(closed_by_peer(s[0]));
    CU_ASSERT(WAIT_STAT(handshakes_now, 4));
    for (int i = 1; i < 5; i++) {
        char nm[300];
        snprintf(nm, sizeof nm, "named%d@%s", i, host);
        raw_send_name(s[i], nm);
        CU_ASSERT(got_status(s[i], "ok"));
        CU_ASSERT(still_open(s[i]));
    }
    s[5] = raw_connect(16);
    CU_ASSERT(WAIT_STAT(handshakes_refused, rf0 + 1));
    CU_ASSERT(closed_by_peer(s[5]));
    CU_ASSERT_EQUAL(STAT(handshakes_evicted), ev0 + 1);
    for (int i = 1; i < 5; i++)
        CU_ASSERT(still_open(s[i]));
    for (int i = 0; i < 6; i++)
        close(s[i]);
    CU_ASSERT(WAIT_STAT(handshakes_now, 0));
}

/* Per-address bound 2: a third from one address evicts that address's oldest
 * silent one; once both have sent their names, a third is refused; another
 * address is not affected. */
static void
test_live_per_address(void)
{
    uint64_t rf0 = STAT(handshakes_refused), ev0 = STAT(handshakes_evicted);
    int a1 = raw_connect(21);
    CU_ASSERT(WAIT_STAT(handshakes_now, 1));
    int a2 = raw_connect(21);
    CU_ASSERT(WAIT_STAT(handshakes_now, 2));
    int a3 = raw_connect(21);
    CU_ASSERT(WAIT_STAT(handshakes_evicted, ev0 + 1));
    CU_ASSERT(closed_by_peer(a1));
    CU_ASSERT(WAIT_STAT(handshakes_now, 2));
    for (int i = 0; i < 2; i++) {
        char nm[300];
        snprintf(nm, sizeof nm, "peraddr%d@%s", i, host);
        raw_send_name(i ? a3 : a2, nm);
        CU_ASSERT(got_status(i ? a3 : a2, "ok"));
    }
    int a4 = raw_connect(21);
    CU_ASSERT(WAIT_STAT(handshakes_refused, rf0 + 1));
    CU_ASSERT(closed_by_peer(a4));
    int b1 = raw_connect(22);
    CU_ASSERT(WAIT_STAT(handshakes_now, 3));
    CU_ASSERT(still_open(a2) && still_open(a3) && still_open(b1));
    CU_ASSERT_EQUAL(STAT(handshakes_evicted), ev0 + 1);
    close(a1);
    close(a2);
    close(a3);
    close(a4);
    close(b1);
    CU_ASSERT(WAIT_STAT(handshakes_now, 0));
}

static void
test_live_timeout(void)
{
    uint64_t t0 = STAT(handshakes_timed_out);
    int s = raw_connect(31);
    raw_send_name(s, "slow@h");
    CU_ASSERT(got_status(s, "ok"));
    CU_ASSERT(closed_by_peer(s)); /* handshake_ms is 500 */
    CU_ASSERT(WAIT_STAT(handshakes_timed_out, t0 + 1));
    close(s);
    CU_ASSERT(WAIT_STAT(handshakes_now, 0));
}

/* Wrong cookies: counted each, logged once per address; garbage, the 'n'
 * form and long names: clean closes, logged once per address. */
static void
test_live_bad_peers_logged_once(void)
{
    uint64_t af0 = STAT(auth_failures);
    int w0 = live_count(&wrong_cookie_lines);
    for (int i = 0; i < 3; i++) {
        int s = raw_connect(41);
        char nm[300];
        snprintf(nm, sizeof nm, "guess%d@%s", i, host);
        raw_send_name(s, nm);
        CU_ASSERT(got_status(s, "ok"));
        CU_ASSERT(raw_reply(s, "not the cookie", 1) == 0);
        CU_ASSERT(closed_by_peer(s));
        close(s);
    }
    CU_ASSERT(WAIT_STAT(auth_failures, af0 + 3));
    CU_ASSERT_EQUAL(live_count(&wrong_cookie_lines), w0 + 1);

    int l0 = live_count(&lines_42);
    char longname[400];
    memset(longname, 'x', 300);
    memcpy(longname + 10, "@", 1);
    longname[300] = 0;
    for (int kind = 0; kind < 4; kind++) {
        int s = raw_connect(42);
        if (kind == 0)
            send_all(s, "GET / HTTP/1.1\r\n\r\n", 18);
        else if (kind == 1)
            send_all(s, "\x00\x10n\x00\x05\x00\x03\x7f\xbc" "a@b", 12);
        else if (kind == 2)
            raw_send_name(s, longname);
        else
            send_all(s, "\x00\x00", 2);
        CU_ASSERT(closed_by_peer(s));
        close(s);
    }
    CU_ASSERT(WAIT_STAT(handshakes_now, 0));
    CU_ASSERT_EQUAL(live_count(&lines_42), l0 + 1);
    CU_ASSERT_EQUAL(live_count(&cookie_leaks), 0);
    CU_ASSERT(cnode_ping(friend_node, victim_name, (unsigned)tu_ms(5000), NULL) == 0);
}

/* 200 distinct names, each closed after its status: no peer record remains. */
static void
test_live_no_peer_before_cookie(void)
{
    for (int i = 0; i < 200; i++) {
        int s = raw_connect(51);
        char nm[300];
        snprintf(nm, sizeof nm, "stranger%d@%s", i, host);
        raw_send_name(s, nm);
        CU_ASSERT(got_status(s, "ok"));
        close(s);
    }
    CU_ASSERT(WAIT_STAT(handshakes_now, 0));
    pthread_mutex_lock(&victim->lock);
    int found = 0;
    for (int i = 0; i < 200; i++) {
        char nm[300];
        snprintf(nm, sizeof nm, "stranger%d@%s", i, host);
        found += cnode__peer_get(victim, nm, 0) != NULL;
    }
    pthread_mutex_unlock(&victim->lock);
    CU_ASSERT_EQUAL(found, 0);
}

/* alive/true from a stranger under a connected node's name: silence or a
 * wrong digest leave the link alone; the right digest replaces it. */
static void
test_live_takeover(void)
{
    CU_ASSERT_FATAL(cnode_ping(friend_node, victim_name, (unsigned)tu_ms(5000), NULL) == 0);
    cnode__conn *link = NULL;
    for (long long end = tu_now_ms() + tu_ms(5000); !link && tu_now_ms() < end; usleep(2000))
        link = victim_link_to(friend_name);
    CU_ASSERT_FATAL(link != NULL);
    int downs = live_count(&downs_of_friend);

    for (int variant = 0; variant < 3; variant++) {
        int s = raw_connect(61);
        raw_send_name(s, friend_name);
        CU_ASSERT(got_status(s, "alive"));
        send_all(s, "\x00\x05strue", 7);
        if (variant == 0) {
            close(s); /* silence, then gone */
        } else if (variant == 1) {
            CU_ASSERT(raw_reply(s, "not the cookie", 7) == 0);
            CU_ASSERT(closed_by_peer(s));
            close(s);
        } else {
            /* true, then nothing: held until handshake_ms */
            CU_ASSERT(closed_by_peer(s));
            close(s);
        }
        CU_ASSERT(WAIT_STAT(handshakes_now, 0));
        CU_ASSERT(victim_link_to(friend_name) == link);
        CU_ASSERT_EQUAL(live_count(&downs_of_friend), downs);
    }
    CU_ASSERT(cnode_ping(friend_node, victim_name, (unsigned)tu_ms(5000), NULL) == 0);

    /* the right digest: the old link goes, the new one is up */
    int s = raw_connect(62);
    raw_send_name(s, friend_name);
    CU_ASSERT(got_status(s, "alive"));
    send_all(s, "\x00\x05strue", 7);
    CU_ASSERT(raw_reply(s, LIVE_COOKIE, 4242) == 0);
    char b[64];
    unsigned char want[16];
    cnode__hs_digest(LIVE_COOKIE, strlen(LIVE_COOKIE), 4242, want);
    CU_ASSERT(recv_msg(s, b, sizeof b) == 17 && b[0] == 'a' && memcmp(b + 1, want, 16) == 0);
    for (long long end = tu_now_ms() + tu_ms(5000); live_count(&downs_of_friend) == downs && tu_now_ms() < end;)
        usleep(2000);
    CU_ASSERT_EQUAL(live_count(&downs_of_friend), downs + 1);
    cnode__conn *now_link = victim_link_to(friend_name);
    CU_ASSERT(now_link != NULL && now_link != link);
    close(s);
}

static cnode__conn *
link_of(cnode_node *n, const char *name)
{
    pthread_mutex_lock(&n->lock);
    cnode__peer *p = cnode__peer_get(n, name, 0);
    cnode__conn *c = p ? p->up : NULL;
    pthread_mutex_unlock(&n->lock);
    return c;
}

typedef struct {
    cnode_node *from;
    const char *to;
    pthread_barrier_t *go;
    int rc;
} pinger;

static void *
ping_main(void *arg)
{
    pinger *pg = arg;
    pthread_barrier_wait(pg->go);
    pg->rc = cnode_ping(pg->from, pg->to, (unsigned)tu_ms(5000), NULL);
    return NULL;
}

/* Both nodes dial each other at once, again and again: net_kernel's
 * tie-break (nok / ok_simultaneous, our dial cancelled only by a proven
 * incoming connection) leaves exactly one link, and both pings succeed. */
static void
test_live_simultaneous_connect(void)
{
    for (int round = 0; round < 20; round++) {
        if (link_of(victim, friend_name))
            cnode_disconnect(victim, friend_name);
        for (long long end = tu_now_ms() + tu_ms(5000);
             (link_of(victim, friend_name) || link_of(friend_node, victim_name)) && tu_now_ms() < end;)
            usleep(1000);
        CU_ASSERT_FATAL(!link_of(victim, friend_name) && !link_of(friend_node, victim_name));
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        pinger a = {victim, friend_name, &go, -1}, b = {friend_node, victim_name, &go, -1};
        pthread_t ta, tb;
        pthread_create(&ta, NULL, ping_main, &a);
        pthread_create(&tb, NULL, ping_main, &b);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&go);
        CU_ASSERT_EQUAL(a.rc, 0);
        CU_ASSERT_EQUAL(b.rc, 0);
        CU_ASSERT(link_of(victim, friend_name) != NULL);
        CU_ASSERT(link_of(friend_node, victim_name) != NULL);
    }
    CU_ASSERT(WAIT_STAT(handshakes_now, 0));
}

void
cnode_test_register(void)
{
    CU_pSuite s = CU_add_suite("handshake", NULL, NULL);
    ADD_TEST(s, test_accept_whole);
    ADD_TEST(s, test_accept_every_split);
    ADD_TEST(s, test_accept_byte_by_byte);
    ADD_TEST(s, test_accept_truncated);
    ADD_TEST(s, test_accept_ok_simultaneous);
    ADD_TEST(s, test_accept_nok_and_not_allowed);
    ADD_TEST(s, test_accept_alive);
    ADD_TEST(s, test_accept_wrong_digest);
    ADD_TEST(s, test_accept_bad_send_name);
    ADD_TEST(s, test_accept_name_lengths);
    ADD_TEST(s, test_accept_garbage);
    ADD_TEST(s, test_dial_whole_and_splits);
    ADD_TEST(s, test_dial_leaves_frames);
    ADD_TEST(s, test_dial_truncated);
    ADD_TEST(s, test_dial_alive);
    ADD_TEST(s, test_dial_refusals);
    ADD_TEST(s, test_dial_bad_challenge_and_ack);
    ADD_TEST(s, test_pair);

    CU_pSuite l = CU_add_suite("handshake_live", live_init, live_clean);
    ADD_TEST(l, test_live_evict_then_refuse);
    ADD_TEST(l, test_live_per_address);
    ADD_TEST(l, test_live_timeout);
    ADD_TEST(l, test_live_bad_peers_logged_once);
    ADD_TEST(l, test_live_no_peer_before_cookie);
    ADD_TEST(l, test_live_takeover);
    ADD_TEST(l, test_live_simultaneous_connect);
}
