/* The handshake machine (ei_glue/handshake.c), both roles, without sockets:
 * whole handshakes fed at every split point and byte by byte, every
 * truncation, wrong tags, lengths and digests, alive/true/false, nok,
 * ok_simultaneous, the old 'n' form and names that are too long. The peer's
 * bytes are made with the ei_glue encoders; the digest of "secret" and
 * 3000000000 is the one protocol.md confirmed against OTP. */
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
}
