/* cnode/addr.c: the family of each transport, host parts that are address
 * literals (as BEAM writes them: name@::1, no brackets), the per-address key
 * the handshake bounds use and its text, and cnode_node_new refusing bad host
 * parts before it touches the network. */
#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <string.h>

#include "cnode.h"
#include "cnode/internal.h"
#include "tests/testutil.h"

static void
test_families(void)
{
    CU_ASSERT_EQUAL(cnode__proto_family(CNODE_PROTO_DEFAULT), AF_INET);
    CU_ASSERT_EQUAL(cnode__proto_family(CNODE_PROTO_INET_TCP), AF_INET);
    CU_ASSERT_EQUAL(cnode__proto_family(CNODE_PROTO_INET_TLS), AF_INET);
    CU_ASSERT_EQUAL(cnode__proto_family(CNODE_PROTO_INET6_TCP), AF_INET6);
    CU_ASSERT_EQUAL(cnode__proto_family(CNODE_PROTO_INET6_TLS), AF_INET6);
}

static void
test_host_check(void)
{
    /* host names and IPv4 addresses: fine on either family (the resolver decides) */
    static const char *const fine[] = {"localhost", "h", "app.internal", "127.0.0.1", "my-host.example.com"};
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        CU_ASSERT_PTR_NULL(cnode__host_check(fine[i], AF_INET));
        CU_ASSERT_PTR_NULL(cnode__host_check(fine[i], AF_INET6));
    }
    /* IPv6 literals, as BEAM's inet6_tcp_dist accepts them (inet_parse:ipv6strict_address) */
    static const char *const v6[] = {
        "::1", "fdaa::3", "fdaa:0:1:2::3", "::", "2001:db8::ff00:42:8329", "::ffff:127.0.0.1", "1:2:3:4:5:6:7:8"};
    for (size_t i = 0; i < sizeof v6 / sizeof v6[0]; i++) {
        CU_ASSERT_PTR_NULL(cnode__host_check(v6[i], AF_INET6));
        /* on an IPv4 transport an IPv6 literal can never be reached: said, not resolved */
        const char *why = cnode__host_check(v6[i], AF_INET);
        CU_ASSERT_PTR_NOT_NULL_FATAL(why);
        CU_ASSERT_PTR_NOT_NULL(strstr(why, "inet6_tcp"));
    }
    static const char *const malformed[] = {"::1::2", "fdaa:::3", "1:2:3:4:5:6:7:8:9", "fdaa::g", ":", "fe80::1%lo",
                                            "::1:",   "12345::"};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        const char *why = cnode__host_check(malformed[i], AF_INET6);
        CU_ASSERT_PTR_NOT_NULL_FATAL(why);
        CU_ASSERT_PTR_NOT_NULL(strstr(why, "malformed"));
    }
    static const char *const bracketed[] = {"[::1]", "[fdaa::3]", "[::1", "::1]"};
    for (size_t i = 0; i < sizeof bracketed / sizeof bracketed[0]; i++) {
        const char *why = cnode__host_check(bracketed[i], AF_INET6);
        CU_ASSERT_PTR_NOT_NULL_FATAL(why);
        CU_ASSERT_PTR_NOT_NULL(strstr(why, "brackets"));
    }
}

static void
test_literals(void)
{
    cnode__sockaddr a;
    CU_ASSERT_EQUAL(cnode__sockaddr_literal(AF_INET6, "fdaa::3", &a), 1);
    CU_ASSERT_EQUAL(a.sa.sa_family, AF_INET6);
    CU_ASSERT_EQUAL(a.in6.sin6_addr.s6_addr[0], 0xfd);
    CU_ASSERT_EQUAL(a.in6.sin6_addr.s6_addr[1], 0xaa);
    CU_ASSERT_EQUAL(a.in6.sin6_addr.s6_addr[15], 3);
    CU_ASSERT_EQUAL(cnode__sockaddr_len(&a), sizeof(struct sockaddr_in6));
    cnode__sockaddr_set_port(&a, 4369);
    CU_ASSERT_EQUAL(cnode__sockaddr_port(&a), 4369);
    /* a literal of the other family is not one of this family: it goes to the resolver, which refuses it */
    CU_ASSERT_EQUAL(cnode__sockaddr_literal(AF_INET6, "127.0.0.1", &a), 0);
    CU_ASSERT_EQUAL(cnode__sockaddr_literal(AF_INET, "::1", &a), 0);
    CU_ASSERT_EQUAL(cnode__sockaddr_literal(AF_INET6, "localhost", &a), 0);
    CU_ASSERT_EQUAL(cnode__sockaddr_literal(AF_INET, "10.1.2.3", &a), 1);
    CU_ASSERT_EQUAL(a.sa.sa_family, AF_INET);
    CU_ASSERT_EQUAL(cnode__sockaddr_len(&a), sizeof(struct sockaddr_in));
    cnode__sockaddr_set_port(&a, 9);
    CU_ASSERT_EQUAL(cnode__sockaddr_port(&a), 9);
    cnode__sockaddr_loopback(AF_INET6, 7, &a);
    CU_ASSERT(IN6_IS_ADDR_LOOPBACK(&a.in6.sin6_addr));
    CU_ASSERT_EQUAL(cnode__sockaddr_port(&a), 7);
    cnode__sockaddr_loopback(AF_INET, 7, &a);
    CU_ASSERT_EQUAL(a.in.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
}

/* One source, one key: an IPv4 peer is the same source whether a dual-stack
 * listener saw it as ::ffff:a.b.c.d or an IPv4 one as a.b.c.d. */
static void
test_keys(void)
{
    cnode__sockaddr v4, mapped, v6, other;
    struct in6_addr k4, km, k6, ko;
    char s[INET6_ADDRSTRLEN];
    cnode__sockaddr_literal(AF_INET, "127.0.0.1", &v4);
    cnode__sockaddr_literal(AF_INET6, "::ffff:127.0.0.1", &mapped);
    cnode__sockaddr_literal(AF_INET6, "fdaa::3", &v6);
    cnode__sockaddr_literal(AF_INET6, "fdaa::4", &other);
    cnode__addr_key(&v4, &k4);
    cnode__addr_key(&mapped, &km);
    cnode__addr_key(&v6, &k6);
    cnode__addr_key(&other, &ko);
    CU_ASSERT_EQUAL(memcmp(&k4, &km, sizeof k4), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(&k6, &ko, sizeof k6), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(&k4, &k6, sizeof k4), 0);
    cnode__addr_key_str(&k4, s, sizeof s);
    CU_ASSERT_STRING_EQUAL(s, "127.0.0.1");
    cnode__addr_key_str(&km, s, sizeof s);
    CU_ASSERT_STRING_EQUAL(s, "127.0.0.1");
    cnode__addr_key_str(&k6, s, sizeof s);
    CU_ASSERT_STRING_EQUAL(s, "fdaa::3");
    cnode__sockaddr_literal(AF_INET6, "2001:db8:0:0:1:0:0:1", &v6);
    cnode__addr_key(&v6, &k6);
    cnode__addr_key_str(&k6, s, sizeof s);
    CU_ASSERT_STRING_EQUAL(s, "2001:db8::1:0:0:1"); /* RFC 5952 form, as inet:ntoa writes it */
}

/* cnode_node_new refuses a bad host part with the reason, before any socket or epmd. */
static void
test_node_names(void)
{
    static const struct {
        const char *name;
        cnode_proto_dist proto;
        const char *says;
    } bad[] = {
        {"c@[::1]", CNODE_PROTO_INET6_TCP, "brackets"},     {"c@::1::2", CNODE_PROTO_INET6_TCP, "malformed"},
        {"c@fdaa:::3", CNODE_PROTO_INET6_TCP, "malformed"}, {"c@::1", CNODE_PROTO_DEFAULT, "inet6_tcp"},
        {"c@fdaa::3", CNODE_PROTO_INET_TCP, "inet6_tcp"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cnode_node_opts o = {0};
        o.name = bad[i].name;
        o.longnames = 1;
        o.cookie = "secret";
        o.proto_dist = bad[i].proto;
        o.no_io_thread = 1;
        cnode_node *n = NULL;
        cnode_error err = {0};
        CU_ASSERT_EQUAL(cnode_node_new(&o, &n, &err), CNODE_EINVAL);
        CU_ASSERT_PTR_NULL(n);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.message, bad[i].says));
        cnode_error_clear(&err);
    }
}

void
cnode_test_register(void)
{
    CU_pSuite s = CU_add_suite("addr", NULL, NULL);
    ADD_TEST(s, test_families);
    ADD_TEST(s, test_host_check);
    ADD_TEST(s, test_literals);
    ADD_TEST(s, test_keys);
    ADD_TEST(s, test_node_names);
}
