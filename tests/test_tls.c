/* TLS distribution without sockets: the ssl_dist_optfile parser (cnode/tls_opts.c) on what
 * BEAM users write, including the [A | [B]] cons form, and on everything it must refuse; the
 * handshake machine with 4-byte framing (inside TLS, protocol.md §10), both roles talking to
 * each other. Live TLS against BEAM is erlang_test_harness/test/tls_SUITE.erl. */
#include <string.h>

#include "cnode/internal.h"
#include "ei_glue/glue.h"
#include "tests/testutil.h"

static int
parse(const char *text, cnode__tls_side *srv, cnode__tls_side *cli, char *why)
{
    cnode__tls_side_init(srv);
    cnode__tls_side_init(cli);
    why[0] = 0;
    return cnode__tls_optfile_parse(text, srv, cli, why, 300);
}

static void
test_optfile_as_beam_writes_it(void)
{
    cnode__tls_side s, c;
    char why[300];
    const char *text = "%% the cluster's file\n"
                       "[{server, [{fail_if_no_peer_cert, true} | [{certfile, \"/etc/n.pem\"},\n"
                       "           {keyfile, <<\"/etc/n.key\">>}, {cacertfile, \"/etc/ca.pem\"},\n"
                       "           {verify, verify_peer}, {versions, ['tlsv1.2', 'tlsv1.3']},\n"
                       "           {secure_renegotiate, true}, {reuse_sessions, true}, {depth, 3}]]},\n"
                       " {client, [{certfile, \"/etc/c.pem\"}, {verify, verify_none},\n"
                       "           {ciphers, [\"ECDHE-RSA-AES256-GCM-SHA384\", \"TLS_AES_256_GCM_SHA384\"]},\n"
                       "           {server_name_indication, disable}, {hibernate_after, 1000}]}].\n";
    CU_ASSERT_EQUAL_FATAL(parse(text, &s, &c, why), 0);
    CU_ASSERT_STRING_EQUAL(s.certfile, "/etc/n.pem");
    CU_ASSERT_STRING_EQUAL(s.keyfile, "/etc/n.key");
    CU_ASSERT_STRING_EQUAL(s.cafile, "/etc/ca.pem");
    CU_ASSERT_EQUAL(s.verify, CNODE_TLS_VERIFY_PEER);
    CU_ASSERT_EQUAL(s.fail_if_no_peer_cert, 1);
    CU_ASSERT_EQUAL(s.versions, CNODE_TLS_V1_2 | CNODE_TLS_V1_3);
    CU_ASSERT_EQUAL(s.depth, 3);
    CU_ASSERT_PTR_NULL(s.ciphers);
    CU_ASSERT_STRING_EQUAL(c.certfile, "/etc/c.pem");
    CU_ASSERT_PTR_NULL(c.keyfile);
    CU_ASSERT_EQUAL(c.verify, CNODE_TLS_VERIFY_NONE);
    CU_ASSERT_EQUAL(c.fail_if_no_peer_cert, -1);
    CU_ASSERT_STRING_EQUAL(c.ciphers, "ECDHE-RSA-AES256-GCM-SHA384:TLS_AES_256_GCM_SHA384");
    CU_ASSERT_EQUAL(c.sni_disable, 1);
    CU_ASSERT_EQUAL(c.versions, 0);
    cnode__tls_side_free(&s);
    cnode__tls_side_free(&c);
    /* one side only, a string of ciphers, a host for SNI; what is set replaces what was there */
    CU_ASSERT_EQUAL_FATAL(parse("[{client, [{ciphers, \"A:B\"}, {server_name_indication, \"h.example\"}]}]", &s, &c,
                                why),
                          0);
    CU_ASSERT_STRING_EQUAL(c.ciphers, "A:B");
    CU_ASSERT_STRING_EQUAL(c.sni, "h.example");
    CU_ASSERT_PTR_NULL(s.certfile);
    CU_ASSERT_EQUAL_FATAL(cnode__tls_optfile_parse("[{client, [{ciphers, \"C\"}]}].", &s, &c, why, sizeof why), 0);
    CU_ASSERT_STRING_EQUAL(c.ciphers, "C");
    cnode__tls_side_free(&s);
    cnode__tls_side_free(&c);
    CU_ASSERT_EQUAL(parse("[]", &s, &c, why), 0);
    cnode__tls_side_free(&s);
    cnode__tls_side_free(&c);
}

/* Every refusal names the side and the option. */
static void
test_optfile_refusals(void)
{
    static const struct {
        const char *text, *why;
    } cases[] = {
        {"[{server, [{verify_fun, {x, []}}]}]", "{server, ...}: verify_fun cannot be honoured"},
        {"[{client, [{password, \"pw\"}]}]", "{client, ...}: password cannot be honoured"},
        {"[{server, [{crl_check, true}]}]", "crl_check cannot be honoured"},
        {"[{server, [{crl_cache, {ssl_crl_cache, {internal, []}}}]}]", "crl_cache cannot be honoured"},
        {"[{server, [{dhfile, \"dh.pem\"}]}]", "dhfile cannot be honoured"},
        {"[{server, [{frobnicate, 1}]}]", "unknown option frobnicate"},
        {"[{client, [{versions, ['tlsv1.1']}]}]", "'tlsv1.1' cannot be honoured"},
        {"[{client, [{versions, []}]}]", "versions: empty"},
        {"[{client, [{verify, verify_maybe}]}]", "verify_peer or verify_none"},
        {"[{client, [{fail_if_no_peer_cert, true}]}]", "fail_if_no_peer_cert is a server option"},
        {"[{server, [{server_name_indication, disable}]}]", "server_name_indication is a client option"},
        {"[{client, [{ciphers, [#{cipher => aes_128_gcm}]}]}]", "cipher maps cannot be honoured"},
        {"[{client, [{certfile, 42}]}]", "certfile: a string"},
        {"[{client, [{depth, -1}]}]", "depth: an integer"},
        {"[{client, [certfile]}]", "{Key, Value}"},
        {"[{both, []}]", "{server, Opts} or {client, Opts}"},
        {"[{server, [{certfile, \"a\"} | x]}]", "a list is expected"},
        {"{server, []}", "a list"},
        {"[{server, [", "not an Erlang term"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cnode__tls_side s, c;
        char why[300];
        int rc = parse(cases[i].text, &s, &c, why);
        CU_ASSERT_EQUAL(rc, -1);
        if (!strstr(why, cases[i].why))
            printf("\n  %s: got \"%s\", want \"%s\"\n", cases[i].text, why, cases[i].why);
        CU_ASSERT_PTR_NOT_NULL(strstr(why, cases[i].why));
        cnode__tls_side_free(&s);
        cnode__tls_side_free(&c);
    }
}

/* Move what one machine queued into the other, whole or byte by byte. */
static int
pump(cnode__hs *from, cnode__hs *to, int bytewise, int *v)
{
    const char *p;
    size_t n = cnode__hs_output(from, &p);
    int moved = 0;
    while (n > 0 && *v == CNODE__HS_AGAIN) {
        size_t want = cnode__hs_want(to), take = bytewise ? 1 : n < want ? n : want;
        if (want == 0)
            break;
        size_t used = 0;
        *v = cnode__hs_input(to, p, take, &used);
        cnode__hs_written(from, used);
        moved += used > 0;
        n = cnode__hs_output(from, &p);
    }
    return moved;
}

static void
handshake_packet4(int bytewise)
{
    cnode__hs d, a;
    cnode__hs_init_dial(&d, "c@h", CNODE__DFLAGS_OURS, 7, "ck", 2, "b@h", 1111);
    cnode__hs_use_packet4(&d);
    cnode__hs_init_accept(&a, "b@h", CNODE__DFLAGS_OURS, 9, "ck", 2, 2222);
    cnode__hs_use_packet4(&a);
    const char *p;
    size_t n = cnode__hs_output(&d, &p);
    /* send_name: 4-byte length, then 'N' */
    CU_ASSERT_FATAL(n > 5);
    CU_ASSERT(p[0] == 0 && p[1] == 0 && (size_t)(((unsigned char)p[2] << 8) | (unsigned char)p[3]) == n - 4);
    CU_ASSERT_EQUAL(p[4], 'N');
    CU_ASSERT_EQUAL(cnode__hs_want(&a), 4);
    int vd = CNODE__HS_AGAIN, va = CNODE__HS_AGAIN;
    for (int turns = 0; turns < 50 && !(vd == CNODE__HS_UP && va == CNODE__HS_UP); turns++) {
        pump(&d, &a, bytewise, &va);
        if (va == CNODE__HS_NAME) {
            CU_ASSERT_STRING_EQUAL(a.peer_name, "c@h");
            va = cnode__hs_answer_name(&a, CNODE__HS_ST_OK);
        }
        if (va == CNODE__HS_PROVEN)
            va = cnode__hs_answer_proven(&a);
        pump(&a, &d, bytewise, &vd);
        CU_ASSERT_NOT_EQUAL_FATAL(vd, CNODE__HS_FAIL);
        CU_ASSERT_NOT_EQUAL_FATAL(va, CNODE__HS_FAIL);
    }
    CU_ASSERT_EQUAL(vd, CNODE__HS_UP);
    CU_ASSERT_EQUAL(va, CNODE__HS_UP);
    CU_ASSERT_EQUAL(d.peer_creation, 9);
    CU_ASSERT_EQUAL(a.peer_creation, 7);
}

static void
test_handshake_packet4(void)
{
    handshake_packet4(0);
    handshake_packet4(1);
}

/* A 4-byte prefix is bounded as the 2-byte one is: a length past 320 is refused at its header. */
static void
test_handshake_packet4_bounds(void)
{
    cnode__hs a;
    cnode__hs_init_accept(&a, "b@h", CNODE__DFLAGS_OURS, 9, "ck", 2, 2222);
    cnode__hs_use_packet4(&a);
    static const char huge[4] = {0, 1, 0, 0}; /* 65536 */
    CU_ASSERT_EQUAL(cnode__hs_input(&a, huge, 4, NULL), CNODE__HS_FAIL);
    CU_ASSERT_EQUAL(a.fail, CNODE__HS_F_PROTOCOL);
    cnode__hs_init_accept(&a, "b@h", CNODE__DFLAGS_OURS, 9, "ck", 2, 2222);
    cnode__hs_use_packet4(&a);
    static const char empty[4] = {0, 0, 0, 0};
    CU_ASSERT_EQUAL(cnode__hs_input(&a, empty, 4, NULL), CNODE__HS_FAIL);
    /* a ClientHello read by a plain (2-byte) node: 0x1603 = 5635 bytes asked for, more than allowed */
    cnode__hs_init_accept(&a, "b@h", CNODE__DFLAGS_OURS, 9, "ck", 2, 2222);
    static const char hello[5] = {0x16, 0x03, 0x01, 0x02, 0x00};
    CU_ASSERT_EQUAL(cnode__hs_input(&a, hello, 5, NULL), CNODE__HS_FAIL);
}

/* Without OpenSSL in play: TLS options and proto_dist that cannot go together are refused at once. */
static void
test_node_opts_refused(void)
{
    cnode_node *n = NULL;
    cnode_error err = {0};
    cnode_node_opts o = {.name = "tlsopt", .cookie = "c", .proto_dist = CNODE_PROTO_INET_TCP};
    o.tls.certfile = "/nonexistent.pem";
    CU_ASSERT_EQUAL(cnode_node_new(&o, &n, &err), CNODE_ECONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "plain-TCP"));
    cnode_error_clear(&err);
    o.proto_dist = CNODE_PROTO_DEFAULT;
    o.tls.optfile = "/nonexistent.opt";
    CU_ASSERT_EQUAL(cnode_node_new(&o, &n, &err), CNODE_ECONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "cannot read /nonexistent.opt"));
    cnode_error_clear(&err);
    o.tls.optfile = NULL;
    CU_ASSERT_EQUAL(cnode_node_new(&o, &n, &err), CNODE_ECONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "/nonexistent.pem"));
    cnode_error_clear(&err);
    o.tls.certfile = NULL;
    o.proto_dist = CNODE_PROTO_INET_TLS; /* TLS with no certificate: cannot accept */
    CU_ASSERT_EQUAL(cnode_node_new(&o, &n, &err), CNODE_ECONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "certificate is needed"));
    cnode_error_clear(&err);
    o.proto_dist = (cnode_proto_dist)42;
    CU_ASSERT_EQUAL(cnode_node_new(&o, &n, &err), CNODE_EINVAL);
    cnode_error_clear(&err);
    CU_ASSERT_PTR_NULL(n);
}

void
cnode_test_register(void)
{
    CU_pSuite s = CU_add_suite("tls", NULL, NULL);
    CU_add_test(s, "optfile as BEAM writes it", test_optfile_as_beam_writes_it);
    CU_add_test(s, "optfile refusals", test_optfile_refusals);
    CU_add_test(s, "handshake with 4-byte framing", test_handshake_packet4);
    CU_add_test(s, "4-byte framing bounds", test_handshake_packet4_bounds);
    CU_add_test(s, "node options refused", test_node_opts_refused);
}
