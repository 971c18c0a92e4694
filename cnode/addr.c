/* Address families, in one place for every transport (plain TCP and TLS):
 * which family a node's proto_dist uses, host parts that are address
 * literals, the loopback address epmd listens on, sockets of the right
 * family, and the per-address key that the handshake bounds and logs use.
 * Nothing here knows more of a transport than its family: inet_* is IPv4,
 * inet6_* is IPv6, as BEAM's inet_tcp_dist and inet6_tcp_dist. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cnode/internal.h"

int
cnode__proto_family(cnode_proto_dist proto)
{
    return proto == CNODE_PROTO_INET6_TCP || proto == CNODE_PROTO_INET6_TLS ? AF_INET6 : AF_INET;
}

int
cnode__node_family(const cnode_node *node)
{
    return cnode__proto_family(node->opts.proto_dist);
}

socklen_t
cnode__sockaddr_len(const cnode__sockaddr *a)
{
    return a->sa.sa_family == AF_INET6 ? (socklen_t)sizeof a->in6 : (socklen_t)sizeof a->in;
}

void
cnode__sockaddr_set_port(cnode__sockaddr *a, uint16_t port)
{
    if (a->sa.sa_family == AF_INET6)
        a->in6.sin6_port = htons(port);
    else
        a->in.sin_port = htons(port);
}

uint16_t
cnode__sockaddr_port(const cnode__sockaddr *a)
{
    return ntohs(a->sa.sa_family == AF_INET6 ? a->in6.sin6_port : a->in.sin_port);
}

int
cnode__sockaddr_literal(int family, const char *host, cnode__sockaddr *out)
{
    memset(out, 0, sizeof *out);
    out->sa.sa_family = (sa_family_t)family;
    if (family == AF_INET6)
        return inet_pton(AF_INET6, host, &out->in6.sin6_addr) == 1;
    return inet_pton(AF_INET, host, &out->in.sin_addr) == 1;
}

void
cnode__sockaddr_loopback(int family, uint16_t port, cnode__sockaddr *out)
{
    memset(out, 0, sizeof *out);
    out->sa.sa_family = (sa_family_t)family;
    if (family == AF_INET6)
        out->in6.sin6_addr = in6addr_loopback;
    else
        out->in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cnode__sockaddr_set_port(out, port);
}

int
cnode__socket(int family)
{
    return socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
}

int
cnode__dial(const cnode__sockaddr *a)
{
    int fd = cnode__socket(a->sa.sa_family);
    if (fd < 0)
        return -1;
    if (connect(fd, &a->sa, cnode__sockaddr_len(a)) != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

void
cnode__addr_key(const cnode__sockaddr *a, struct in6_addr *key)
{
    memset(key, 0, sizeof *key);
    if (a->sa.sa_family == AF_INET6) {
        *key = a->in6.sin6_addr;
    } else if (a->sa.sa_family == AF_INET) {
        /* as the IPv4-mapped form a dual-stack listener reports, so both spellings are one source */
        key->s6_addr[10] = key->s6_addr[11] = 0xff;
        memcpy(&key->s6_addr[12], &a->in.sin_addr, 4);
    }
}

void
cnode__addr_key_str(const struct in6_addr *key, char *out, size_t cap)
{
    if (IN6_IS_ADDR_V4MAPPED(key)) /* an IPv4 peer, written as IPv4 people read it */
        inet_ntop(AF_INET, &key->s6_addr[12], out, (socklen_t)cap);
    else
        inet_ntop(AF_INET6, key, out, (socklen_t)cap);
}

const char *
cnode__host_check(const char *host, int family)
{
    if (strchr(host, '[') || strchr(host, ']'))
        return "IPv6 addresses go in node names without brackets, as BEAM writes them (name@::1)";
    if (!strchr(host, ':'))
        return NULL; /* a host name or an IPv4 address: any family may resolve it */
    struct in6_addr a;
    if (inet_pton(AF_INET6, host, &a) != 1)
        return "malformed IPv6 address";
    if (family != AF_INET6)
        return "an IPv6 address needs the inet6_tcp or inet6_tls transport: --proto-dist inet6_tcp";
    return NULL;
}
