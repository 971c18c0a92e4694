/* ei_glue: flags, epmd, handshake, digest, frames, the term walker and every
 * control message, against bytes a real OTP 25 node produced
 * (tests/data/ctl_golden.tsv, made by tests/data/gen_ctl_golden.escript). */
#include "ei_glue/glue.h"
#include "tests/testutil.h"

/* ---- flags ------------------------------------------------------------------ */

/* OTP 25's DFLAG_* values (kernel/include/dist.hrl), spelled out here rather
 * than taken from glue.h, so that a change of either side shows. */
#define OTP_PUBLISHED 0x01ULL
#define OTP_EXTENDED_REFERENCES 0x04ULL
#define OTP_DIST_MONITOR 0x08ULL
#define OTP_FUN_TAGS 0x10ULL
#define OTP_NEW_FUN_TAGS 0x80ULL
#define OTP_EXTENDED_PIDS_PORTS 0x100ULL
#define OTP_EXPORT_PTR_TAG 0x200ULL
#define OTP_BIT_BINARIES 0x400ULL
#define OTP_NEW_FLOATS 0x800ULL
#define OTP_DIST_MONITOR_NAME 0x20ULL
#define OTP_SMALL_ATOM_TAGS 0x4000ULL
#define OTP_UTF8_ATOMS 0x10000ULL
#define OTP_MAP_TAG 0x20000ULL
#define OTP_BIG_CREATION 0x40000ULL
#define OTP_SEND_SENDER 0x80000ULL
#define OTP_BIG_SEQTRACE_LABELS 0x100000ULL
#define OTP_EXIT_PAYLOAD 0x400000ULL
#define OTP_HANDSHAKE_23 0x1000000ULL
#define OTP_UNLINK_ID 0x2000000ULL
#define OTP_MANDATORY_25_DIGEST 0x4000000ULL
#define OTP_SPAWN (0x1ULL << 32)
#define OTP_NAME_ME (0x2ULL << 32)
#define OTP_V4_NC (0x4ULL << 32)
#define OTP_ALIAS (0x8ULL << 32)

static void
test_flags_constant(void)
{
    /* the flags our handshake sends, read back from the message it writes:
     * OTP 25's mandatory set, monitors by name, spawn, alias, the v4 node
     * container, and nothing else (hidden: never published, no atom cache) */
    const uint64_t want = OTP_EXTENDED_REFERENCES | OTP_DIST_MONITOR | OTP_FUN_TAGS | OTP_NEW_FUN_TAGS |
                          OTP_EXTENDED_PIDS_PORTS | OTP_EXPORT_PTR_TAG | OTP_BIT_BINARIES | OTP_NEW_FLOATS |
                          OTP_DIST_MONITOR_NAME | OTP_SMALL_ATOM_TAGS | OTP_UTF8_ATOMS | OTP_MAP_TAG | OTP_BIG_CREATION |
                          OTP_SEND_SENDER | OTP_BIG_SEQTRACE_LABELS | OTP_EXIT_PAYLOAD | OTP_HANDSHAKE_23 |
                          OTP_UNLINK_ID | OTP_MANDATORY_25_DIGEST | OTP_SPAWN | OTP_V4_NC | OTP_ALIAS;
    char b[64];
    size_t n = cnode__hs_send_name(b, sizeof b, CNODE__DFLAGS_OURS, 1, "x@h");
    cnode__hs_name nm;
    CU_ASSERT_FATAL(n > 2);
    CU_ASSERT_EQUAL(cnode__hs_send_name_decode(b + 2, n - 2, &nm, NULL), (ptrdiff_t)(n - 2));
    CU_ASSERT_EQUAL(nm.flags, want);
    CU_ASSERT_EQUAL(nm.flags & (OTP_PUBLISHED | OTP_NAME_ME), 0);
    /* never published, never an atom cache, never fragments */
    CU_ASSERT_EQUAL(CNODE__DFLAGS_OURS & (CNODE__DFLAG_PUBLISHED | CNODE__DFLAG_ATOM_CACHE |
                                          CNODE__DFLAG_HIDDEN_ATOM_CACHE | CNODE__DFLAG_DIST_HDR_ATOM_CACHE |
                                          CNODE__DFLAG_FRAGMENTS | CNODE__DFLAG_NAME_ME),
                    0);
    CU_ASSERT((CNODE__DFLAGS_OURS & CNODE__DFLAG_SPAWN) != 0);
    CU_ASSERT((CNODE__DFLAGS_OURS & CNODE__DFLAG_DIST_MONITOR_NAME) != 0);
    CU_ASSERT((CNODE__DFLAGS_OURS & CNODE__DFLAG_ALIAS) != 0);
    CU_ASSERT_EQUAL(CNODE__DFLAGS_OURS & CNODE__DFLAGS_MANDATORY_25, CNODE__DFLAGS_MANDATORY_25);
}

static void
test_flags_acceptable(void)
{
    CU_ASSERT(cnode__dflags_acceptable(0xD07DF7FBCULL)); /* OTP 25, hidden */
    CU_ASSERT(cnode__dflags_acceptable(0xD07DF7FBDULL)); /* OTP 25, published */
    CU_ASSERT(cnode__dflags_acceptable(0x407074F9CULL)); /* ei 5.3 */
    CU_ASSERT(cnode__dflags_acceptable(CNODE__DFLAGS_OURS));
    /* the digest bit alone stands for every mandatory flag */
    CU_ASSERT(cnode__dflags_acceptable(CNODE__DFLAG_MANDATORY_25_DIGEST));
    CU_ASSERT_EQUAL(cnode__dflags_expand(CNODE__DFLAG_MANDATORY_25_DIGEST),
                    CNODE__DFLAG_MANDATORY_25_DIGEST | CNODE__DFLAGS_MANDATORY_25);
    CU_ASSERT_FALSE(cnode__dflags_acceptable(0));
    CU_ASSERT_FALSE(cnode__dflags_acceptable(CNODE__DFLAGS_MANDATORY_25 & ~CNODE__DFLAG_BIG_CREATION));
    CU_ASSERT_FALSE(cnode__dflags_acceptable(CNODE__DFLAGS_MANDATORY_25 & ~CNODE__DFLAG_HANDSHAKE_23));
}

/* ---- epmd ------------------------------------------------------------------ */

static void
test_epmd_alive2(void)
{
    /* protocol.md §1: hidden `cnode` on port 5555 */
    unsigned char want[64];
    long wn = tu_unhex("001278" "15b3" "48" "00" "0006" "0006" "0005" "636e6f6465" "0000", want, sizeof want);
    char buf[64];
    size_t n = cnode__epmd_alive2_req(buf, sizeof buf, 5555, "cnode");
    CU_ASSERT_EQUAL(n, (size_t)wn);
    CU_ASSERT(memcmp(buf, want, n) == 0);
    CU_ASSERT_EQUAL(cnode__epmd_alive2_req(buf, 10, 5555, "cnode"), 0);
    CU_ASSERT_EQUAL(cnode__epmd_alive2_req(buf, sizeof buf, 5555, ""), 0);

    const char x[] = {118, 0, 0x6b, 0x04, 0x3e, 0x6b};
    cnode__epmd_alive2_resp r;
    for (size_t i = 0; i < sizeof x; i++)
        CU_ASSERT_EQUAL(cnode__epmd_alive2_resp_decode(x, i, &r, NULL), CNODE__NEED_MORE);
    CU_ASSERT_EQUAL(cnode__epmd_alive2_resp_decode(x, sizeof x, &r, NULL), 6);
    CU_ASSERT_EQUAL(r.result, 0);
    CU_ASSERT_EQUAL(r.creation, 0x6b043e6bu);
    const char old[] = {121, 1, 0, 3};
    CU_ASSERT_EQUAL(cnode__epmd_alive2_resp_decode(old, 4, &r, NULL), 4);
    CU_ASSERT_EQUAL(r.result, 1);
    CU_ASSERT_EQUAL(r.creation, 3);
    const char *why = NULL;
    CU_ASSERT_EQUAL(cnode__epmd_alive2_resp_decode("HTTP/1.1", 8, &r, &why), CNODE__MALFORMED);
    CU_ASSERT_PTR_NOT_NULL(why);
}

static void
test_epmd_port2(void)
{
    char req[32];
    size_t n = cnode__epmd_port_please2_req(req, sizeof req, "bar");
    CU_ASSERT_EQUAL(n, 6);
    CU_ASSERT(memcmp(req, "\x00\x04\x7a" "bar", 6) == 0);
    /* an entry as OTP 25.2.3 registers it: highest 6, lowest 5 */
    unsigned char e[64];
    long en = tu_unhex("77" "00" "a1b2" "4d" "00" "0006" "0005" "0003" "626172" "0000", e, sizeof e);
    cnode__epmd_port2_resp r;
    for (long i = 0; i < en; i++) {
        tu_guard g = tu_guard_copy(e, (size_t)i);
        CU_ASSERT_EQUAL(cnode__epmd_port2_resp_decode(g.p, (size_t)i, &r, NULL), CNODE__NEED_MORE);
        tu_guard_free(&g);
    }
    CU_ASSERT_EQUAL(cnode__epmd_port2_resp_decode((char *)e, (size_t)en, &r, NULL), en);
    CU_ASSERT_EQUAL(r.result, 0);
    CU_ASSERT_EQUAL(r.port, 0xa1b2);
    CU_ASSERT_EQUAL(r.node_type, 77);
    CU_ASSERT_EQUAL(r.highest, 6);
    CU_ASSERT_EQUAL(r.lowest, 5);
    CU_ASSERT_EQUAL(r.name_len, 3);
    CU_ASSERT(memcmp(r.name, "bar", 3) == 0);
    CU_ASSERT_EQUAL(cnode__epmd_port2_resp_decode("\x77\x01", 2, &r, NULL), 2);
    CU_ASSERT_EQUAL(r.result, 1);
    CU_ASSERT_EQUAL(cnode__epmd_port2_resp_decode("\x78\x00", 2, &r, NULL), CNODE__MALFORMED);
    CU_ASSERT_EQUAL(cnode__epmd_names_req(req, sizeof req), 3);
    CU_ASSERT(memcmp(req, "\x00\x01\x6e", 3) == 0);
}

typedef struct {
    int n;
    char names[4][16];
    unsigned ports[4];
} names_acc;
static void
names_cb(const char *name, size_t len, unsigned port, void *ud)
{
    names_acc *a = ud;
    if (a->n < 4 && len < 16) {
        memcpy(a->names[a->n], name, len);
        a->names[a->n][len] = 0;
        a->ports[a->n] = port;
    }
    a->n++;
}

static void
test_epmd_names(void)
{
    const char ok[] = "\x00\x00\x11\x11name a at port 4001\nname bar_b at port 33211\n";
    names_acc a = {0};
    CU_ASSERT_EQUAL(cnode__epmd_names_decode(ok, sizeof ok - 1, names_cb, &a, NULL), 0);
    CU_ASSERT_EQUAL(a.n, 2);
    CU_ASSERT_STRING_EQUAL(a.names[0], "a");
    CU_ASSERT_EQUAL(a.ports[0], 4001);
    CU_ASSERT_STRING_EQUAL(a.names[1], "bar_b");
    CU_ASSERT_EQUAL(a.ports[1], 33211);
    static const char *const bad[] = {"\x00\x00\x11\x11name a at port 4001",     /* no newline */
                                      "\x00\x00\x11\x11name a at port\n",        /* no port */
                                      "\x00\x00\x11\x11name a at port 99999\n",  /* port too big */
                                      "\x00\x00\x11\x11nome a at port 1\n",      /* not a name line */
                                      "\x00\x00\x11\x11name a at port 1x\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = NULL;
        CU_ASSERT_EQUAL(cnode__epmd_names_decode(bad[i], strlen(bad[i] + 4) + 4, names_cb, &a, &why), -1);
        CU_ASSERT_PTR_NOT_NULL(why);
    }
    CU_ASSERT_EQUAL(cnode__epmd_names_decode("\x00\x00", 2, names_cb, &a, NULL), -1);
}

/* ---- handshake -------------------------------------------------------------- */

static void
test_digest(void)
{
    unsigned char d[16], want[16];
    CU_ASSERT_EQUAL(cnode__hs_digest("secret", 6, 3000000000u, d), 0);
    tu_unhex("8d59c529b94478021bf57d2723731099", want, 16);
    CU_ASSERT(memcmp(d, want, 16) == 0);
    CU_ASSERT_EQUAL(cnode__hs_digest("secreT", 6, 3000000000u, d), 0);
    CU_ASSERT(memcmp(d, want, 16) != 0);
}

/* md5 of in[0, n) fed in pieces of step bytes, compared with a hex digest */
static int
md5_is(const void *in, size_t n, size_t step, const char *hex)
{
    unsigned char d[16], want[16];
    cnode__md5_ctx c;
    cnode__md5_init(&c);
    for (size_t off = 0; off < n; off += step)
        cnode__md5_update(&c, (const char *)in + off, n - off < step ? n - off : step);
    cnode__md5_final(&c, d);
    tu_unhex(hex, want, 16);
    return memcmp(d, want, 16) == 0;
}

static void
test_md5_vectors(void)
{
    /* RFC 1321's test suite */
    static const struct {
        const char *in, *hex;
    } v[] = {
        {"", "d41d8cd98f00b204e9800998ecf8427e"},
        {"a", "0cc175b9c0f1b6a831c399e269772661"},
        {"abc", "900150983cd24fb0d6963f7d28e17f72"},
        {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
        {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"},
        {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
         "57edf4a22be3c955ac49da2e2107b67a"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        CU_ASSERT(md5_is(v[i].in, strlen(v[i].in), 1000, v[i].hex));
        CU_ASSERT(md5_is(v[i].in, strlen(v[i].in), 1, v[i].hex));
        CU_ASSERT(md5_is(v[i].in, strlen(v[i].in), 7, v[i].hex));
    }
    /* lengths around the padding's edges (one block or two), bytes i % 251 (Python's hashlib) */
    static const struct {
        size_t n;
        const char *hex;
    } e[] = {{55, "6912ee65fff2d9f9ce2508cddf8bcda0"},  {56, "51fdd1acda72405dfdfa03fcb85896d7"},
             {63, "48a6295221902e8e0938f773a7185e72"},  {64, "b2d3f56bc197fd985d5965079b5e7148"},
             {65, "8bd7053801c768420faf816fadba971c"},  {119, "1c772251899a7ff007400b888d6b2042"},
             {120, "b7ba1efc6022e9ed272f00b8831e26e6"}, {128, "37eff01866ba3f538421b30b7cbefcac"}};
    unsigned char b[128];
    for (size_t i = 0; i < sizeof b; i++)
        b[i] = (unsigned char)(i % 251);
    for (size_t i = 0; i < sizeof e / sizeof e[0]; i++) {
        CU_ASSERT(md5_is(b, e[i].n, 128, e[i].hex));
        CU_ASSERT(md5_is(b, e[i].n, 3, e[i].hex));
    }
    /* a million 'a' (RFC 1321's appendix); the longest cookie the node takes */
    char *m = malloc(1000000);
    CU_ASSERT_FATAL(m != NULL);
    memset(m, 'a', 1000000);
    CU_ASSERT(md5_is(m, 1000000, 4096, "7707d6ae4e027c70eea2a935c2296f21"));
    free(m);
    char cookie[1023];
    memset(cookie, 'k', sizeof cookie);
    unsigned char d[16], want[16];
    CU_ASSERT_EQUAL(cnode__hs_digest(cookie, sizeof cookie, 4294967295u, d), 0);
    tu_unhex("4a4885d911e114d53d7134b8a745242d", want, 16);
    CU_ASSERT(memcmp(d, want, 16) == 0);
}

static void
test_handshake_roundtrip(void)
{
    char b[300];
    const char *why;
    size_t n = cnode__hs_send_name(b, sizeof b, CNODE__DFLAGS_OURS, 0x6b043e6b, "c1@host");
    CU_ASSERT_EQUAL(n, 2 + 15 + 7);
    cnode__frame f;
    CU_ASSERT_EQUAL(cnode__frame_decode(b, n, 2, 65535, &f, NULL), (ptrdiff_t)n);
    cnode__hs_name nm;
    CU_ASSERT_EQUAL(cnode__hs_send_name_decode(f.body, f.len, &nm, NULL), (ptrdiff_t)f.len);
    CU_ASSERT_EQUAL(nm.flags, CNODE__DFLAGS_OURS);
    CU_ASSERT_EQUAL(nm.creation, 0x6b043e6bu);
    CU_ASSERT(nm.name_len == 7 && memcmp(nm.name, "c1@host", 7) == 0);
    /* every truncation of the body is malformed (a body is a whole frame) */
    for (size_t i = 0; i < f.len; i++) {
        tu_guard g = tu_guard_copy(f.body, i);
        why = NULL;
        CU_ASSERT_EQUAL(cnode__hs_send_name_decode(g.p, i, &nm, &why), CNODE__MALFORMED);
        CU_ASSERT_PTR_NOT_NULL(why);
        tu_guard_free(&g);
    }
    /* the old 'n' form is refused */
    char old[24];
    memcpy(old, f.body, f.len);
    old[0] = 'n';
    CU_ASSERT_EQUAL(cnode__hs_send_name_decode(old, f.len, &nm, NULL), CNODE__MALFORMED);

    n = cnode__hs_challenge(b, sizeof b, 0xD07DF7FBCULL, 3000000000u, 7, "a@h");
    CU_ASSERT_EQUAL(cnode__frame_decode(b, n, 2, 65535, &f, NULL), (ptrdiff_t)n);
    CU_ASSERT_EQUAL(cnode__hs_challenge_decode(f.body, f.len, &nm, NULL), (ptrdiff_t)f.len);
    CU_ASSERT_EQUAL(nm.flags, 0xD07DF7FBCULL);
    CU_ASSERT_EQUAL(nm.challenge, 3000000000u);
    CU_ASSERT_EQUAL(nm.creation, 7);
    CU_ASSERT(nm.name_len == 3 && memcmp(nm.name, "a@h", 3) == 0);
    for (size_t i = 0; i < f.len; i++)
        CU_ASSERT_EQUAL(cnode__hs_challenge_decode(f.body, i, &nm, NULL), CNODE__MALFORMED);

    n = cnode__hs_status(b, sizeof b, "ok_simultaneous");
    CU_ASSERT_EQUAL(cnode__frame_decode(b, n, 2, 65535, &f, NULL), (ptrdiff_t)n);
    const char *t;
    size_t tl;
    CU_ASSERT_EQUAL(cnode__hs_status_decode(f.body, f.len, &t, &tl, NULL), (ptrdiff_t)f.len);
    CU_ASSERT(tl == 15 && memcmp(t, "ok_simultaneous", 15) == 0);
    CU_ASSERT_EQUAL(cnode__hs_status_decode("r", 1, &t, &tl, NULL), CNODE__MALFORMED);

    unsigned char dg[16], got[16];
    cnode__hs_digest("c", 1, 42, dg);
    n = cnode__hs_challenge_reply(b, sizeof b, 99, dg);
    CU_ASSERT_EQUAL(n, 23);
    uint32_t ch;
    CU_ASSERT_EQUAL(cnode__hs_challenge_reply_decode(b + 2, 21, &ch, got, NULL), 21);
    CU_ASSERT_EQUAL(ch, 99);
    CU_ASSERT(memcmp(got, dg, 16) == 0);
    CU_ASSERT_EQUAL(cnode__hs_challenge_reply_decode(b + 2, 20, &ch, got, NULL), CNODE__MALFORMED);
    n = cnode__hs_challenge_ack(b, sizeof b, dg);
    CU_ASSERT_EQUAL(n, 19);
    CU_ASSERT_EQUAL(cnode__hs_challenge_ack_decode(b + 2, 17, got, NULL), 17);
    CU_ASSERT_EQUAL(cnode__hs_challenge_ack_decode(b + 2, 18, got, NULL), CNODE__MALFORMED);
    CU_ASSERT_EQUAL(cnode__hs_challenge_ack(b, 18, dg), 0);
}

/* ---- every decoder: guard-page truncation, wrong tags ------------------------- */

/* One decoder under one signature: the result for body[0, len). */
typedef ptrdiff_t body_dec(const char *body, size_t len);

static ptrdiff_t
dec_send_name(const char *b, size_t n)
{
    cnode__hs_name nm;
    return cnode__hs_send_name_decode(b, n, &nm, NULL);
}
static ptrdiff_t
dec_challenge(const char *b, size_t n)
{
    cnode__hs_name nm;
    return cnode__hs_challenge_decode(b, n, &nm, NULL);
}
static ptrdiff_t
dec_status(const char *b, size_t n)
{
    const char *t;
    size_t tl;
    return cnode__hs_status_decode(b, n, &t, &tl, NULL);
}
static ptrdiff_t
dec_reply(const char *b, size_t n)
{
    uint32_t ch;
    unsigned char d[16];
    return cnode__hs_challenge_reply_decode(b, n, &ch, d, NULL);
}
static ptrdiff_t
dec_ack(const char *b, size_t n)
{
    unsigned char d[16];
    return cnode__hs_challenge_ack_decode(b, n, d, NULL);
}
static ptrdiff_t
dec_alive2(const char *b, size_t n)
{
    cnode__epmd_alive2_resp r;
    return cnode__epmd_alive2_resp_decode(b, n, &r, NULL);
}
static ptrdiff_t
dec_port2(const char *b, size_t n)
{
    cnode__epmd_port2_resp r;
    return cnode__epmd_port2_resp_decode(b, n, &r, NULL);
}

/* The whole message, read from a buffer ending at a guard page, decodes to its
 * length; every strict prefix (also at the guard page, so an over-read faults)
 * gives `cut`; the message with any other first byte than the valid ones
 * (ok_tags, NUL-terminated) is MALFORMED. Returns the number of mismatches. */
static int
check_decoder(const char *what, body_dec *dec, const void *msg, size_t len, ptrdiff_t cut, const char *ok_tags)
{
    int bad = 0;
    tu_guard g = tu_guard_copy(msg, len);
    ptrdiff_t rc = dec(g.p, len);
    if (rc != (ptrdiff_t)len) {
        fprintf(stderr, "%s: whole message gave %td, want %zu\n", what, rc, len);
        bad++;
    }
    tu_guard_free(&g);
    for (size_t i = 0; i < len; i++) {
        g = tu_guard_copy(msg, i);
        rc = dec(g.p, i);
        tu_guard_free(&g);
        if (rc != cut) {
            fprintf(stderr, "%s: prefix of %zu bytes gave %td, want %td\n", what, i, rc, cut);
            bad++;
        }
    }
    unsigned char *w = malloc(len);
    for (int t = 0; t < 256; t++) {
        if (strchr(ok_tags, t) && t != 0)
            continue;
        memcpy(w, msg, len);
        w[0] = (unsigned char)t;
        g = tu_guard_copy(w, len);
        rc = dec(g.p, len);
        tu_guard_free(&g);
        if (rc != CNODE__MALFORMED) {
            fprintf(stderr, "%s: first byte %d gave %td, want MALFORMED\n", what, t, rc);
            bad++;
        }
    }
    free(w);
    return bad;
}

static void
test_decoders_truncated_and_wrong_tag(void)
{
    char b[300];
    cnode__frame f;
    unsigned char dg[16];
    cnode__hs_digest("c", 1, 42, dg);
    /* handshake bodies: a body is a whole frame, so every prefix is malformed */
    size_t n = cnode__hs_send_name(b, sizeof b, CNODE__DFLAGS_OURS, 0x6b043e6b, "c1@host");
    CU_ASSERT_FATAL(cnode__frame_decode(b, n, 2, 65535, &f, NULL) == (ptrdiff_t)n);
    CU_ASSERT_EQUAL(check_decoder("send_name", dec_send_name, f.body, f.len, CNODE__MALFORMED, "N"), 0);
    n = cnode__hs_challenge(b, sizeof b, 0xD07DF7FBCULL, 3000000000u, 7, "a@h");
    CU_ASSERT_FATAL(cnode__frame_decode(b, n, 2, 65535, &f, NULL) == (ptrdiff_t)n);
    CU_ASSERT_EQUAL(check_decoder("challenge", dec_challenge, f.body, f.len, CNODE__MALFORMED, "N"), 0);
    n = cnode__hs_challenge_reply(b, sizeof b, 99, dg);
    CU_ASSERT_FATAL(cnode__frame_decode(b, n, 2, 65535, &f, NULL) == (ptrdiff_t)n);
    CU_ASSERT_EQUAL(check_decoder("challenge_reply", dec_reply, f.body, f.len, CNODE__MALFORMED, "r"), 0);
    n = cnode__hs_challenge_ack(b, sizeof b, dg);
    CU_ASSERT_FATAL(cnode__frame_decode(b, n, 2, 65535, &f, NULL) == (ptrdiff_t)n);
    CU_ASSERT_EQUAL(check_decoder("challenge_ack", dec_ack, f.body, f.len, CNODE__MALFORMED, "a"), 0);
    /* status: a prefix of "sok" is "so", a status of its own; what matters is
     * that no prefix is read past its end (the guard page) and the tag */
    n = cnode__hs_status(b, sizeof b, "ok");
    CU_ASSERT_FATAL(cnode__frame_decode(b, n, 2, 65535, &f, NULL) == (ptrdiff_t)n);
    for (size_t i = 0; i <= f.len; i++) {
        tu_guard g = tu_guard_copy(f.body, i);
        const char *t = NULL;
        size_t tl = 99;
        ptrdiff_t rc = cnode__hs_status_decode(g.p, i, &t, &tl, NULL);
        if (i == 0)
            CU_ASSERT_EQUAL(rc, CNODE__MALFORMED);
        if (rc >= 0) {
            CU_ASSERT_EQUAL(rc, (ptrdiff_t)i);
            CU_ASSERT(tl == i - 1 && t == g.p + 1);
        }
        tu_guard_free(&g);
    }
    int bad = 0;
    for (int t = 0; t < 256; t++) {
        if (t == 's')
            continue;
        char w[3] = {(char)t, 'o', 'k'};
        tu_guard g = tu_guard_copy(w, sizeof w);
        bad += dec_status(g.p, sizeof w) != CNODE__MALFORMED;
        tu_guard_free(&g);
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* epmd replies come from a stream: a prefix needs more */
    const char x[] = {118, 0, 0x6b, 0x04, 0x3e, 0x6b};
    CU_ASSERT_EQUAL(check_decoder("alive2_x_resp", dec_alive2, x, sizeof x, CNODE__NEED_MORE, "vy"), 0);
    const char old[] = {121, 0, 0, 3};
    CU_ASSERT_EQUAL(check_decoder("alive2_resp", dec_alive2, old, sizeof old, CNODE__NEED_MORE, "vy"), 0);
    unsigned char e[64];
    long en = tu_unhex("77" "00" "a1b2" "4d" "00" "0006" "0005" "0003" "626172" "0000", e, sizeof e);
    CU_ASSERT_EQUAL(check_decoder("port2_resp", dec_port2, e, (size_t)en, CNODE__NEED_MORE, "w"), 0);
    CU_ASSERT_EQUAL(check_decoder("port2_resp error", dec_port2, "\x77\x01", 2, CNODE__NEED_MORE, "w"), 0);
}

/* ---- frames ------------------------------------------------------------------- */

static void
test_frames(void)
{
    cnode__frame f;
    const char *why = NULL;
    CU_ASSERT_EQUAL(cnode__frame_decode("\0\0\0\0", 4, 4, 100, &f, NULL), 4);
    CU_ASSERT_PTR_NULL(f.body);
    CU_ASSERT_EQUAL(cnode__frame_decode("\0\0", 2, 2, 100, &f, NULL), 2);
    CU_ASSERT_PTR_NULL(f.body);
    const char pkt[] = "\0\0\0\3pab";
    for (size_t i = 0; i < 7; i++)
        CU_ASSERT_EQUAL(cnode__frame_decode(pkt, i, 4, 100, &f, NULL), CNODE__NEED_MORE);
    CU_ASSERT_EQUAL(cnode__frame_decode(pkt, 8, 4, 100, &f, NULL), 7);
    CU_ASSERT(f.len == 3 && memcmp(f.body, "pab", 3) == 0);
    CU_ASSERT_EQUAL(cnode__frame_decode(pkt, 8, 4, 2, &f, &why), CNODE__MALFORMED);
    CU_ASSERT_PTR_NOT_NULL(why);
    CU_ASSERT_EQUAL(cnode__frame_decode("\xff\xff\xff\xff", 4, 4, 1 << 20, &f, NULL), CNODE__MALFORMED);
    CU_ASSERT_EQUAL(cnode__frame_decode(pkt, 8, 3, 100, &f, NULL), CNODE__MALFORMED);
}

/* ---- term walker ----------------------------------------------------------------- */

static void
test_term_extent(void)
{
    ei_x_buff x;
    ei_x_new(&x);
    ei_x_format_wo_ver(&x, "{~a,[~i,~f,~s],~b,{}}", "atom", 42, 1.5, "str", "bin");
    long big = 1L << 62;
    ei_x_encode_long(&x, big); /* a second term after it: the extent must stop at the first */
    int one = 0;
    ei_skip_term(x.buff, &one);
    CU_ASSERT_EQUAL(cnode__term_extent(x.buff, (size_t)x.index, NULL, NULL), one);
    for (int i = 0; i < one; i++) {
        tu_guard g = tu_guard_copy(x.buff, (size_t)i);
        CU_ASSERT_EQUAL(cnode__term_extent(g.p, (size_t)i, NULL, NULL), CNODE__NEED_MORE);
        tu_guard_free(&g);
    }
    ei_x_free(&x);

    /* depth: 2000 nested one-tuples */
    char deep[4001];
    for (int i = 0; i < 2000; i++) {
        deep[2 * i] = 104;
        deep[2 * i + 1] = 1;
    }
    deep[4000] = 106;
    const char *why = NULL;
    CU_ASSERT_EQUAL(cnode__term_extent(deep, sizeof deep, NULL, &why), CNODE__MALFORMED);
    CU_ASSERT_PTR_NOT_NULL(why);
    /* 1000 deep passes the default limit, not a limit of 10 */
    char *d1000 = deep + 2000;
    CU_ASSERT_EQUAL(cnode__term_extent(d1000, 2001, NULL, NULL), 2001);
    cnode__term_limits lim = {.max_depth = 10, .max_elements = 1 << 20};
    CU_ASSERT_EQUAL(cnode__term_extent(d1000, 2001, &lim, NULL), CNODE__MALFORMED);
    lim.max_depth = 1024;
    lim.max_elements = 100;
    CU_ASSERT_EQUAL(cnode__term_extent(d1000, 2001, &lim, NULL), CNODE__MALFORMED);
    /* element count lies: a list of 2^32-1 elements in 10 bytes */
    const char lie[] = {108, (char)0xff, (char)0xff, (char)0xff, (char)0xff, 106, 106, 106, 106, 106};
    CU_ASSERT_EQUAL(cnode__term_extent(lie, sizeof lie, NULL, NULL), CNODE__MALFORMED);
    /* refused tags */
    CU_ASSERT_EQUAL(cnode__term_extent("\x52\x01", 2, NULL, NULL), CNODE__MALFORMED); /* atom cache ref */
    CU_ASSERT_EQUAL(cnode__term_extent("\x79\x00", 2, NULL, NULL), CNODE__MALFORMED); /* LOCAL_EXT */
    CU_ASSERT_EQUAL(cnode__term_extent("\x01", 1, NULL, NULL), CNODE__MALFORMED);
    /* BEAM reads any sign byte but 0 as negative (terms_SUITE checks it) */
    CU_ASSERT_EQUAL(cnode__term_extent("\x6e\x01\x07\x01", 4, NULL, NULL), 4);
    CU_ASSERT_EQUAL(cnode__term_extent("\x4d\x00\x00\x00\x01\x00\x01", 7, NULL, NULL), CNODE__MALFORMED);
    /* a pid whose node is not an atom */
    CU_ASSERT_EQUAL(cnode__term_extent("\x58\x61\x01", 3, NULL, NULL), CNODE__MALFORMED);
}

/* ---- control messages ----------------------------------------------------------- */

typedef struct {
    char name[48];
    int op;
    unsigned char *b;
    size_t len;
} golden;

static golden *
load_golden(size_t *n)
{
    char *text = tu_read_file("tests/data/ctl_golden.tsv", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    size_t cap = 64, k = 0;
    golden *g = calloc(cap, sizeof *g);
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line && k < cap; line = strtok_r(NULL, "\n", &save)) {
        char hex[8192];
        if (sscanf(line, "%47s\t%d\t%8191s", g[k].name, &g[k].op, hex) != 3)
            continue;
        g[k].b = malloc(strlen(hex) / 2 + 1);
        long bn = tu_unhex(hex, g[k].b, strlen(hex) / 2 + 1);
        CU_ASSERT_FATAL(bn > 0);
        g[k].len = (size_t)bn;
        k++;
    }
    free(text);
    *n = k;
    return g;
}

static void
free_golden(golden *g, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(g[i].b);
    free(g);
}

/* decode BEAM's bytes, re-encode them with ours, compare byte for byte */
static void
test_ctl_golden(void)
{
    size_t n;
    golden *g = load_golden(&n);
    CU_ASSERT_EQUAL(n, 36);
    for (size_t i = 0; i < n; i++) {
        tu_guard gd = tu_guard_copy(g[i].b, g[i].len);
        cnode__ctl c;
        const char *why = NULL;
        ptrdiff_t r = cnode__ctl_decode(gd.p, g[i].len, NULL, &c, &why);
        if (r != (ptrdiff_t)g[i].len)
            fprintf(stderr, "\n%s: decode %td (%s)\n", g[i].name, r, why ? why : "");
        CU_ASSERT_EQUAL(r, (ptrdiff_t)g[i].len);
        CU_ASSERT_EQUAL(c.op, g[i].op);
        if (r > 0) {
            ei_x_buff x;
            ei_x_new(&x);
            size_t pl = c.msg ? c.msg_len : 0;
            CU_ASSERT_EQUAL(cnode__ctl_encode(&x, &c, pl), 0);
            CU_ASSERT_EQUAL((size_t)x.index + pl, 4 + g[i].len);
            if (pl)
                ei_x_append_buf(&x, c.msg, (int)pl);
            unsigned char *o = (unsigned char *)x.buff;
            uint32_t framelen = (uint32_t)o[0] << 24 | (uint32_t)o[1] << 16 | (uint32_t)o[2] << 8 | o[3];
            CU_ASSERT_EQUAL(framelen, g[i].len);
            int same = (size_t)x.index == g[i].len + 4 && memcmp(x.buff + 4, g[i].b, g[i].len) == 0;
            if (!same)
                fprintf(stderr, "\n%s: re-encoding differs from BEAM's bytes\n", g[i].name);
            CU_ASSERT(same);
            ei_x_free(&x);
        }
        /* every truncation: malformed, never a read past the end */
        for (size_t k = 0; k < g[i].len; k++) {
            tu_guard t = tu_guard_copy(g[i].b, k);
            CU_ASSERT_EQUAL(cnode__ctl_decode(t.p, k, NULL, &c, NULL), CNODE__MALFORMED);
            tu_guard_free(&t);
        }
        tu_guard_free(&gd);
    }
    free_golden(g, n);
}

static golden *
find(golden *g, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(g[i].name, name) == 0)
            return &g[i];
    CU_FAIL_FATAL("golden case missing");
    return NULL;
}

static void
test_ctl_fields(void)
{
    size_t n;
    golden *g = load_golden(&n);
    cnode__ctl c;
    golden *e = find(g, n, "reg_send");
    CU_ASSERT_EQUAL(cnode__ctl_decode((char *)e->b, e->len, NULL, &c, NULL), (ptrdiff_t)e->len);
    CU_ASSERT(c.to.is_name && strcmp(c.to.name, "echo") == 0);
    CU_ASSERT_FALSE(c.from.is_name);
    CU_ASSERT_PTR_NOT_NULL(c.msg);
    CU_ASSERT_EQUAL((unsigned char)c.msg[0], 131);

    e = find(g, n, "reg_send_tt");
    CU_ASSERT_EQUAL(cnode__ctl_decode((char *)e->b, e->len, NULL, &c, NULL), (ptrdiff_t)e->len);
    CU_ASSERT_STRING_EQUAL(c.to.name, "Elixir.MyApp.Users");
    CU_ASSERT_PTR_NOT_NULL(c.token.p);

    e = find(g, n, "exit");
    CU_ASSERT_EQUAL(cnode__ctl_decode((char *)e->b, e->len, NULL, &c, NULL), (ptrdiff_t)e->len);
    CU_ASSERT(c.reason.len == 9 && memcmp(c.reason.p, "\x77\x07" "because", 9) == 0);
    CU_ASSERT_PTR_NULL(c.msg);

    e = find(g, n, "payload_exit2");
    CU_ASSERT_EQUAL(cnode__ctl_decode((char *)e->b, e->len, NULL, &c, NULL), (ptrdiff_t)e->len);
    CU_ASSERT(c.reason.len == 6 && memcmp(c.reason.p, "\x77\x04" "kill", 6) == 0);

    e = find(g, n, "monitor_p_name");
    CU_ASSERT_EQUAL(cnode__ctl_decode((char *)e->b, e->len, NULL, &c, NULL), (ptrdiff_t)e->len);
    CU_ASSERT(c.to.is_name && strcmp(c.to.name, "net_kernel") == 0);
    CU_ASSERT_EQUAL(c.ref.len, 3);

    e = find(g, n, "payload_monitor_p_exit_name");
    CU_ASSERT_EQUAL(cnode__ctl_decode((char *)e->b, e->len, NULL, &c, NULL), (ptrdiff_t)e->len);
    CU_ASSERT(c.from.is_name && strcmp(c.from.name, "rex") == 0);
    CU_ASSERT(c.reason.len == 8 && memcmp(c.reason.p, "\x77\x06" "noproc", 8) == 0);

    e = find(g, n, "spawn_request");
    CU_ASSERT_EQUAL(cnode__ctl_decode((char *)e->b, e->len, NULL, &c, NULL), (ptrdiff_t)e->len);
    CU_ASSERT_STRING_EQUAL(c.mod, "erpc");
    CU_ASSERT_STRING_EQUAL(c.fun, "execute_call");
    CU_ASSERT_EQUAL(c.arity, 4);
    CU_ASSERT_PTR_NOT_NULL(c.opts.p);
    CU_ASSERT_PTR_NULL(c.token.p);

    e = find(g, n, "spawn_reply_error");
    CU_ASSERT_EQUAL(cnode__ctl_decode((char *)e->b, e->len, NULL, &c, NULL), (ptrdiff_t)e->len);
    CU_ASSERT(c.from.is_name && strcmp(c.from.name, "notsup") == 0);
    CU_ASSERT_EQUAL(c.spawn_flags, 0);
    e = find(g, n, "spawn_reply_tt");
    CU_ASSERT_EQUAL(cnode__ctl_decode((char *)e->b, e->len, NULL, &c, NULL), (ptrdiff_t)e->len);
    CU_ASSERT_FALSE(c.from.is_name);
    CU_ASSERT_EQUAL(c.spawn_flags, 3);

    e = find(g, n, "unlink_id_big");
    CU_ASSERT_EQUAL(cnode__ctl_decode((char *)e->b, e->len, NULL, &c, NULL), (ptrdiff_t)e->len);
    EI_ULONGLONG id = 0;
    int idx = 0;
    CU_ASSERT_EQUAL(ei_decode_ulonglong(c.id.p, &idx, &id), 0);
    CU_ASSERT_EQUAL(id, 0xFEDCBA9876543210ULL);
    free_golden(g, n);
}

static void
test_ctl_bad(void)
{
    size_t n;
    golden *g = load_golden(&n);
    cnode__ctl c;
    const char *why;
    unsigned char b[1024];
    /* trailing garbage after the payload, payload on an op that has none, missing payload */
    golden *e = find(g, n, "send");
    memcpy(b, e->b, e->len);
    b[e->len] = 106;
    why = NULL;
    CU_ASSERT_EQUAL(cnode__ctl_decode((char *)b, e->len + 1, NULL, &c, &why), CNODE__MALFORMED);
    CU_ASSERT_PTR_NOT_NULL(why);
    e = find(g, n, "link");
    memcpy(b, e->b, e->len);
    memcpy(b + e->len, "\x83\x6a", 2);
    CU_ASSERT_EQUAL(cnode__ctl_decode((char *)b, e->len + 2, NULL, &c, NULL), CNODE__MALFORMED);
    /* not 'p'; control without 131; unknown op 99; op as atom; wrong arity */
    CU_ASSERT_EQUAL(cnode__ctl_decode("q\x83\x68\x01\x61\x05", 6, NULL, &c, NULL), CNODE__MALFORMED);
    CU_ASSERT_EQUAL(cnode__ctl_decode("p\x68\x01\x61\x05", 5, NULL, &c, NULL), CNODE__MALFORMED);
    CU_ASSERT_EQUAL(cnode__ctl_decode("p\x83\x68\x01\x61\x63", 6, NULL, &c, NULL), CNODE__MALFORMED);
    CU_ASSERT_EQUAL(cnode__ctl_decode("p\x83\x68\x01\x77\x01x", 7, NULL, &c, NULL), CNODE__MALFORMED);
    CU_ASSERT_EQUAL(cnode__ctl_decode("p\x83\x68\x02\x61\x05\x6a", 7, NULL, &c, NULL), CNODE__MALFORMED);
    CU_ASSERT_EQUAL(cnode__ctl_decode("p\x83\x6a", 3, NULL, &c, NULL), CNODE__MALFORMED);
    /* NODE_LINK is well-formed here; what to do with it is the runtime's business */
    CU_ASSERT_EQUAL(cnode__ctl_decode("p\x83\x68\x01\x61\x05", 6, NULL, &c, NULL), 6);
    /* every single-byte corruption of every golden packet: no crash, no over-read */
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < g[i].len; k++) {
            static const unsigned char vals[] = {0, 1, 0x61, 0x68, 0x6a, 0x6c, 0x77, 0x83, 0xff};
            for (size_t v = 0; v < sizeof vals; v++) {
                memcpy(b, g[i].b, g[i].len);
                b[k] = vals[v];
                tu_guard t = tu_guard_copy(b, g[i].len);
                ptrdiff_t r = cnode__ctl_decode(t.p, g[i].len, NULL, &c, NULL);
                CU_ASSERT(r == (ptrdiff_t)g[i].len || r == CNODE__MALFORMED);
                tu_guard_free(&t);
            }
        }
    }
    /* inconsistent encodes */
    ei_x_buff x;
    ei_x_new(&x);
    cnode__ctl bad = {.op = 99};
    CU_ASSERT_EQUAL(cnode__ctl_encode(&x, &bad, 0), -1);
    cnode__ctl snd = {.op = CNODE__OP_SEND};
    CU_ASSERT_EQUAL(cnode__ctl_encode(&x, &snd, 0), -1); /* SEND needs a payload */
    cnode__ctl ex = {.op = CNODE__OP_EXIT};
    CU_ASSERT_EQUAL(cnode__ctl_encode(&x, &ex, 0), -1); /* EXIT needs its reason */
    cnode__ctl rs = {.op = CNODE__OP_REG_SEND};
    CU_ASSERT_EQUAL(cnode__ctl_encode(&x, &rs, 3), -1); /* REG_SEND needs a name */
    CU_ASSERT_EQUAL(x.index, 0);
    ei_x_free(&x);
    free_golden(g, n);
}

static void
test_ids(void)
{
    erlang_pid a, b;
    cnode__pid_make(&a, "c1@host", 5, 0, 0x6b043e6b);
    cnode__pid_make(&b, "c1@host", 5, 0, 0x6b043e6b);
    CU_ASSERT(cnode__pid_eq(&a, &b));
    b.creation++;
    CU_ASSERT_FALSE(cnode__pid_eq(&a, &b));
    ei_x_buff x;
    ei_x_new(&x);
    ei_x_encode_pid(&x, &a);
    CU_ASSERT_EQUAL((unsigned char)x.buff[0], 88); /* NEW_PID_EXT */
    CU_ASSERT_EQUAL((unsigned char)x.buff[1], 119);
    ei_x_free(&x);
    uint32_t id[3] = {1, 2, 3};
    erlang_ref r, s;
    cnode__ref_make(&r, "c1@host", 9, id);
    cnode__ref_make(&s, "c1@host", 9, id);
    CU_ASSERT(cnode__ref_eq(&r, &s));
    s.n[2] = 4;
    CU_ASSERT_FALSE(cnode__ref_eq(&r, &s));
    ei_x_new(&x);
    ei_x_encode_ref(&x, &r);
    CU_ASSERT_EQUAL((unsigned char)x.buff[0], 90); /* NEWER_REFERENCE_EXT */
    CU_ASSERT_EQUAL((unsigned char)x.buff[2], 3);
    ei_x_free(&x);
}

void
cnode_test_register(void)
{
    CU_pSuite s = CU_add_suite("ei_glue", NULL, NULL);
    ADD_TEST(s, test_flags_constant);
    ADD_TEST(s, test_flags_acceptable);
    ADD_TEST(s, test_epmd_alive2);
    ADD_TEST(s, test_epmd_port2);
    ADD_TEST(s, test_epmd_names);
    ADD_TEST(s, test_digest);
    ADD_TEST(s, test_md5_vectors);
    ADD_TEST(s, test_handshake_roundtrip);
    ADD_TEST(s, test_decoders_truncated_and_wrong_tag);
    ADD_TEST(s, test_frames);
    ADD_TEST(s, test_term_extent);
    ADD_TEST(s, test_ctl_golden);
    ADD_TEST(s, test_ctl_fields);
    ADD_TEST(s, test_ctl_bad);
    ADD_TEST(s, test_ids);
}
