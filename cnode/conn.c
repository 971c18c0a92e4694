/* Connections, on the loop thread with node->lock held: the epmd lookup and
 * both sides of the version-6 handshake as non-blocking state machines,
 * simultaneous connect resolved as net_kernel does, reading and dispatching
 * frames once up, ticks and the net_ticktime timeout. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cnode/internal.h"

#define SETUP_MS 7000 /* net_setuptime */
#define HS_MAX 4096   /* largest handshake message we accept */

static void
set_events(cnode_node *node, cnode__conn *c, uint32_t ev)
{
    struct epoll_event e = {.events = ev | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(node->epfd, EPOLL_CTL_MOD, c->fd, &e);
}

static cnode__conn *
conn_new(cnode_node *node, int fd, int outgoing, uint32_t ev)
{
    cnode__conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = fd;
    c->outgoing = outgoing;
    cnode__deadline_after(&c->deadline, SETUP_MS);
    struct epoll_event e = {.events = ev | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(node->epfd, EPOLL_CTL_ADD, fd, &e) != 0) {
        free(c);
        return NULL;
    }
    c->next = node->conns;
    node->conns = c;
    return c;
}

static int
start_connect(const struct in_addr *addr, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = *addr};
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A failed attempt: waiters learn it, queued output is dropped (as Erlang drops
 * messages to an unreachable node). */
static void
dial_failed(cnode_node *node, cnode__peer *peer, const char *why)
{
    /* a cookie mismatch is the user's to fix: say it at warning level */
    cnode__log(node, strstr(why, "cookie") ? CNODE_LOG_WARNING : CNODE_LOG_INFO, "connection to %s failed: %s",
               peer->name, why);
    snprintf(peer->last_error, sizeof peer->last_error, "%s", why);
    peer->connect_failed++;
    if (!peer->up) {
        pthread_mutex_lock(&peer->wlock);
        cnode__drop_output(peer);
        pthread_mutex_unlock(&peer->wlock);
    }
    pthread_cond_broadcast(&peer->up_cond);
    for (int i = 0; i < node->npeerhooks; i++)
        node->peer_hooks[i](node, peer, -1, node->peer_hook_ud[i]);
}

/* Dial epmd on host's address: the first step of an outgoing connection. */
static const char *
dial_epmd(cnode_node *node, cnode__conn *c)
{
    int fd = start_connect(&c->addr, node->epmd_port);
    if (fd < 0)
        return "cannot reach epmd";
    struct epoll_event e = {.events = EPOLLOUT | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(node->epfd, EPOLL_CTL_ADD, fd, &e) != 0) {
        close(fd);
        return "cannot reach epmd";
    }
    c->fd = fd;
    c->state = CONN_EPMD_CONNECT;
    return NULL;
}

void
cnode__conn_start_outgoing(cnode_node *node, cnode__peer *peer)
{
    const char *at = strchr(peer->name, '@');
    if (!at) {
        dial_failed(node, peer, "cannot resolve host");
        return;
    }
    cnode__conn *c = calloc(1, sizeof *c);
    if (!c) {
        dial_failed(node, peer, "out of memory");
        return;
    }
    c->fd = -1;
    c->outgoing = 1;
    c->peer = peer;
    snprintf(c->host, sizeof c->host, "%s", at + 1);
    cnode__deadline_after(&c->deadline, SETUP_MS);
    int r = cnode__resolve(node, c->host, &c->addr);
    const char *why = r < 0 ? "cannot resolve host" : r == 0 ? dial_epmd(node, c) : NULL;
    if (why) {
        free(c);
        dial_failed(node, peer, why);
        return;
    }
    if (r == 1)
        c->state = CONN_RESOLVING; /* no socket yet: only the deadline and the answer move it */
    c->next = node->conns;
    node->conns = c;
    peer->dialling = c;
}

void
cnode__conn_resolved(cnode_node *node, const char *host, const struct in_addr *addr)
{
    for (cnode__conn *c = node->conns, *nx; c; c = nx) {
        nx = c->next;
        if (c->state != CONN_RESOLVING || strcmp(c->host, host) != 0)
            continue;
        const char *why = "cannot resolve host";
        if (addr) {
            c->addr = *addr;
            why = dial_epmd(node, c);
        }
        if (why)
            cnode__conn_close(node, c, why);
    }
}

void
cnode__conn_accept(cnode_node *node)
{
    for (;;) {
        int fd = accept4(node->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                cnode__accept_pause(node, errno);
            return;
        }
        if (atomic_load(&node->stopping)) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        cnode__conn *c = conn_new(node, fd, 0, EPOLLIN);
        if (!c) {
            close(fd);
            continue;
        }
        c->state = CONN_ACC_NAME_WAIT;
    }
}

/* Off the list of live connections and onto the list freed at the end of the
 * loop turn: a later event of the same epoll_wait batch may still point at it
 * (it then sees CONN_DEAD and is skipped). */
static void
conn_free(cnode_node *node, cnode__conn *c)
{
    for (cnode__conn **pp = &node->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    c->state = CONN_DEAD;
    c->peer = NULL;
    c->next = node->dead_conns;
    node->dead_conns = c;
}

void
cnode__conn_reap(cnode_node *node)
{
    cnode__conn *c = node->dead_conns;
    node->dead_conns = NULL;
    while (c) {
        cnode__conn *nx = c->next;
        free(c->ibuf);
        free(c->hbuf);
        free(c);
        c = nx;
    }
}

#define ACCEPT_PAUSE_MS 100

void
cnode__accept_pause(cnode_node *node, int err)
{
    if (node->accept_paused)
        return;
    epoll_ctl(node->epfd, EPOLL_CTL_DEL, node->listen_fd, NULL);
    node->accept_paused = 1;
    cnode__deadline_after(&node->accept_resume, ACCEPT_PAUSE_MS);
    CNODE__STAT_ADD(node, accept_pauses, 1);
    int64_t now = cnode__now_ms();
    if (now - node->accept_logged_ms >= 10000) {
        node->accept_logged_ms = now;
        cnode__log(node, CNODE_LOG_WARNING, "accept: %s; not accepting for %d ms", strerror(err), ACCEPT_PAUSE_MS);
    }
}

static void
accept_resume(cnode_node *node)
{
    if (!node->accept_paused || !cnode__past(&node->accept_resume))
        return;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &node->listen_fd};
    if (epoll_ctl(node->epfd, EPOLL_CTL_ADD, node->listen_fd, &ev) == 0 || errno == EEXIST)
        node->accept_paused = 0;
    else
        cnode__deadline_after(&node->accept_resume, ACCEPT_PAUSE_MS);
}

void
cnode__conn_close(cnode_node *node, cnode__conn *c, const char *reason)
{
    cnode__peer *peer = c->peer;
    if (c->state == CONN_RESOLVING) {
        /* no socket yet */
        if (peer && peer->dialling == c) {
            peer->dialling = NULL;
            if (reason)
                dial_failed(node, peer, strcmp(reason, "handshake timed out") == 0
                                            ? "cannot resolve host (timed out)" : reason);
        }
        conn_free(node, c);
        return;
    }
    epoll_ctl(node->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    if (peer && peer->up == c) {
        pthread_mutex_lock(&peer->wlock);
        peer->fd = -1;
        peer->epollout = 0;
        cnode__drop_output(peer);
        pthread_mutex_unlock(&peer->wlock);
        close(c->fd);
        peer->up = NULL;
        peer->generation++;
        cnode__log(node, CNODE_LOG_INFO, "nodedown %s: %s", peer->name, reason);
        cnode__peer_down(node, peer);
        cnode__push_event(node, 0, peer->name, reason);
        for (int i = 0; i < node->npeerhooks; i++)
            node->peer_hooks[i](node, peer, 0, node->peer_hook_ud[i]);
    } else {
        close(c->fd);
        if (peer && peer->dialling == c) {
            peer->dialling = NULL;
            if (reason)
                dial_failed(node, peer, reason);
        } else if (reason && c->state != CONN_UP) {
            cnode__log(node, CNODE_LOG_WARNING, "handshake with %s failed: %s", peer ? peer->name : "(unknown)",
                       reason);
        }
    }
    conn_free(node, c);
}

/* Write handshake/epmd bytes now; keep what the socket does not take. */
static int
hs_write(cnode_node *node, cnode__conn *c, const char *buf, size_t n)
{
    if (n == 0)
        return -1;
    if (!c->hbuf || c->hoff == c->hlen) {
        ssize_t w = send(c->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w == (ssize_t)n)
            return 0;
        if (w < 0 && errno != EAGAIN)
            return -1;
        if (w > 0) {
            buf += w;
            n -= (size_t)w;
        }
        c->hlen = c->hoff = 0;
    }
    char *nb = realloc(c->hbuf, c->hlen + n);
    if (!nb)
        return -1;
    c->hbuf = nb;
    memcpy(c->hbuf + c->hlen, buf, n);
    c->hlen += n;
    set_events(node, c, EPOLLIN | EPOLLOUT);
    return 0;
}

static int
hs_flush(cnode_node *node, cnode__conn *c)
{
    while (c->hoff < c->hlen) {
        ssize_t w = send(c->fd, c->hbuf + c->hoff, c->hlen - c->hoff, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0)
            return errno == EAGAIN ? 0 : -1;
        c->hoff += (size_t)w;
    }
    set_events(node, c, EPOLLIN);
    return 0;
}

/* Read what the socket has, at most max bytes: the count (> 0), 0 EOF, -1
 * error, -2 nothing now. */
static ssize_t
read_max(cnode__conn *c, size_t max)
{
    /* frames over max_frame are refused from their header, which bounds ilen */
    if (c->icap - c->ilen < 65536) {
        size_t ncap = c->icap * 2 > c->ilen + 65536 ? c->icap * 2 : c->ilen + 65536;
        char *nb = realloc(c->ibuf, ncap);
        if (!nb)
            return -1;
        c->ibuf = nb;
        c->icap = ncap;
    }
    size_t room = c->icap - c->ilen;
    ssize_t n;
    do
        n = recv(c->fd, c->ibuf + c->ilen, room < max ? room : max, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        c->ilen += (size_t)n;
        return n;
    }
    if (n == 0)
        return 0;
    return errno == EAGAIN ? -2 : -1;
}

/* Read what the socket has: 1 got bytes, 0 EOF, -1 error, 2 nothing now. */
static int
read_some(cnode_node *node, cnode__conn *c)
{
    (void)node; /* frames over max_frame are refused from their header, which bounds ilen */
    if (c->icap - c->ilen < 65536) {
        size_t ncap = c->icap * 2 > c->ilen + 65536 ? c->icap * 2 : c->ilen + 65536;
        char *nb = realloc(c->ibuf, ncap);
        if (!nb)
            return -1;
        c->ibuf = nb;
        c->icap = ncap;
    }
    ssize_t n = recv(c->fd, c->ibuf + c->ilen, c->icap - c->ilen, MSG_DONTWAIT);
    if (n > 0) {
        c->ilen += (size_t)n;
        return 1;
    }
    if (n == 0)
        return 0;
    return errno == EAGAIN || errno == EINTR ? 2 : -1;
}

static void
consume(cnode__conn *c, size_t n)
{
    memmove(c->ibuf, c->ibuf + n, c->ilen - n);
    c->ilen -= n;
}

static void
conn_up(cnode_node *node, cnode__conn *c)
{
    cnode__peer *peer = c->peer;
    c->state = CONN_UP;
    c->rd = 2;
    if (peer->dialling == c)
        peer->dialling = NULL;
    peer->up = c;
    peer->flags = node->flags & cnode__dflags_expand(c->peer_flags);
    peer->creation = c->peer_creation;
    clock_gettime(CLOCK_MONOTONIC, &peer->last_read);
    free(c->hbuf);
    c->hbuf = NULL;
    c->hlen = c->hoff = 0;
    pthread_mutex_lock(&peer->wlock);
    peer->fd = c->fd;
    peer->dirty = peer->oq_head != NULL;
    int dirty = peer->dirty;
    atomic_store(&peer->last_write_ms, cnode__now_ms());
    pthread_mutex_unlock(&peer->wlock);
    if (dirty)
        cnode__mark_dirty(node, peer);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    cnode__log(node, CNODE_LOG_INFO, "nodeup %s (%s, flags 0x%llx)", peer->name, c->outgoing ? "outgoing" : "incoming",
               (unsigned long long)peer->flags);
    pthread_cond_broadcast(&peer->up_cond);
    cnode__push_event(node, 1, peer->name, NULL);
    for (int i = 0; i < node->npeerhooks; i++)
        node->peer_hooks[i](node, peer, 1, node->peer_hook_ud[i]);
}

static uint32_t
random_u32(void)
{
    uint32_t v;
    if (getrandom(&v, sizeof v, 0) != sizeof v)
        v = (uint32_t)cnode__now_ms() * 2654435761u;
    return v;
}

/* ---- outgoing ----------------------------------------------------------------------- */

static const char *
epmd_step(cnode_node *node, cnode__conn *c, uint32_t events)
{
    if (c->state == CONN_EPMD_CONNECT) {
        if (!(events & EPOLLOUT))
            return (events & (EPOLLERR | EPOLLHUP)) ? "cannot reach epmd" : NULL;
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr)
            return "cannot reach epmd";
        char req[300];
        const char *at = strchr(c->peer->name, '@');
        char alive[CNODE__NAME_MAX];
        snprintf(alive, sizeof alive, "%.*s", (int)(at - c->peer->name), c->peer->name);
        if (hs_write(node, c, req, cnode__epmd_port_please2_req(req, sizeof req, alive)) != 0)
            return "epmd write failed";
        c->state = CONN_EPMD_READ;
        set_events(node, c, EPOLLIN);
        return NULL;
    }
    int r;
    while ((r = read_some(node, c)) == 1)
        if (c->ilen > 1024)
            return "epmd reply too long";
    if (r == -1)
        return "epmd read failed";
    cnode__epmd_port2_resp resp;
    const char *why = NULL;
    ptrdiff_t d = cnode__epmd_port2_resp_decode(c->ibuf, c->ilen, &resp, &why);
    if (d == CNODE__NEED_MORE)
        return r == 0 ? "epmd closed early" : NULL;
    if (d < 0)
        return "malformed epmd reply";
    if (resp.result != 0)
        return "node not registered with epmd";
    if (resp.highest < 6 || resp.lowest > 6)
        return "peer does not speak distribution version 6";
    /* epmd's part is done: dial the node itself on the same conn */
    int fd = start_connect(&c->addr, resp.port);
    if (fd < 0)
        return "cannot connect";
    epoll_ctl(node->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = fd;
    c->ilen = 0;
    c->port = resp.port;
    struct epoll_event e = {.events = EPOLLOUT | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(node->epfd, EPOLL_CTL_ADD, fd, &e) != 0)
        return "epoll failed";
    c->state = CONN_CONNECTING;
    return NULL;
}

/* One 2-byte framed handshake message from ibuf: 1 got it, 0 need more, -1 bad. */
static int
hs_frame(cnode__conn *c, cnode__frame *f, size_t *used)
{
    const char *why;
    ptrdiff_t n = cnode__frame_decode(c->ibuf, c->ilen, 2, HS_MAX, f, &why);
    if (n == CNODE__NEED_MORE)
        return 0;
    if (n < 0 || !f->body)
        return -1;
    *used = (size_t)n;
    return 1;
}

static const char *
out_step(cnode_node *node, cnode__conn *c, uint32_t events)
{
    if (c->state == CONN_CONNECTING) {
        if (!(events & EPOLLOUT))
            return (events & (EPOLLERR | EPOLLHUP)) ? "connection refused" : NULL;
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr)
            return "connection refused";
        char buf[600];
        if (hs_write(node, c, buf, cnode__hs_send_name(buf, sizeof buf, node->flags, node->creation, node->name)) != 0)
            return "write failed";
        c->state = CONN_SEND_NAME_SENT;
        if (c->hoff == c->hlen)
            set_events(node, c, EPOLLIN);
        return NULL;
    }
    if ((events & EPOLLOUT) && hs_flush(node, c) != 0)
        return "write failed";
    if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        return NULL;
    int r;
    while ((r = read_some(node, c)) == 1)
        if (c->ilen > HS_MAX * 2)
            return "handshake message too long";
    if (r == -1)
        return "read failed";
    for (;;) {
        cnode__frame f;
        size_t used;
        int h = hs_frame(c, &f, &used);
        if (h < 0)
            return "malformed handshake message";
        if (h == 0)
            return r == 0 ? "connection closed during handshake (wrong cookie?)" : NULL;
        const char *why = NULL;
        if (c->state == CONN_SEND_NAME_SENT) {
            const char *st;
            size_t sl;
            if (cnode__hs_status_decode(f.body, f.len, &st, &sl, &why) < 0)
                return "malformed status";
            if ((sl == 2 && !memcmp(st, "ok", 2)) || (sl == 15 && !memcmp(st, "ok_simultaneous", 15))) {
                c->state = CONN_CHALLENGE_WAIT;
            } else if (sl == 3 && !memcmp(st, "nok", 3)) {
                /* the peer is dialling us and wins; its connection will come up instead */
                consume(c, used);
                c->peer->dialling = NULL;
                c->peer = NULL;
                return "";
            } else if (sl == 5 && !memcmp(st, "alive", 5)) {
                char b[16];
                const char *ans = c->peer->up ? "false" : "true";
                if (hs_write(node, c, b, cnode__hs_status(b, sizeof b, ans)) != 0 || c->peer->up)
                    return "peer says a connection is alive";
                c->state = CONN_CHALLENGE_WAIT;
            } else {
                return "refused by peer (not_allowed)";
            }
        } else if (c->state == CONN_CHALLENGE_WAIT) {
            cnode__hs_name ch;
            if (cnode__hs_challenge_decode(f.body, f.len, &ch, &why) < 0)
                return "malformed challenge";
            if (ch.name_len != strlen(c->peer->name) || memcmp(ch.name, c->peer->name, ch.name_len) != 0)
                return "peer answered with another node name";
            if (!cnode__dflags_acceptable(ch.flags))
                return "peer lacks mandatory distribution flags";
            c->peer_flags = ch.flags;
            c->peer_creation = ch.creation;
            unsigned char dg[16];
            if (cnode__hs_digest(node->cookie, strlen(node->cookie), ch.challenge, dg) != 0)
                return "digest failed";
            c->our_challenge = random_u32();
            char b[32];
            if (hs_write(node, c, b, cnode__hs_challenge_reply(b, sizeof b, c->our_challenge, dg)) != 0)
                return "write failed";
            c->state = CONN_ACK_WAIT;
        } else if (c->state == CONN_ACK_WAIT) {
            unsigned char got[16], want[16];
            if (cnode__hs_challenge_ack_decode(f.body, f.len, got, &why) < 0)
                return "malformed challenge ack";
            if (cnode__hs_digest(node->cookie, strlen(node->cookie), c->our_challenge, want) != 0 ||
                memcmp(got, want, 16) != 0)
                return "challenge ack digest mismatch (wrong cookie)";
            consume(c, used);
            conn_up(node, c);
            return NULL; /* anything left in ibuf is frames: handled by the caller */
        }
        consume(c, used);
    }
}

/* ---- incoming ------------------------------------------------------------------------ */

static const char *
send_challenge(cnode_node *node, cnode__conn *c)
{
    c->our_challenge = random_u32();
    char b[600];
    size_t n = cnode__hs_challenge(b, sizeof b, node->flags, c->our_challenge, node->creation, node->name);
    if (hs_write(node, c, b, n) != 0)
        return "write failed";
    c->state = CONN_ACC_REPLY_WAIT;
    return NULL;
}

static const char *
acc_status(cnode_node *node, cnode__conn *c, const char *st)
{
    char b[32];
    return hs_write(node, c, b, cnode__hs_status(b, sizeof b, st)) != 0 ? "write failed" : NULL;
}

static const char *
in_step(cnode_node *node, cnode__conn *c, uint32_t events)
{
    if ((events & EPOLLOUT) && hs_flush(node, c) != 0)
        return "write failed";
    int r;
    while ((r = read_some(node, c)) == 1)
        if (c->ilen > HS_MAX * 2)
            return "handshake message too long";
    if (r == -1)
        return "read failed";
    for (;;) {
        cnode__frame f;
        size_t used;
        int h = hs_frame(c, &f, &used);
        if (h < 0)
            return "malformed handshake message";
        if (h == 0)
            return r == 0 ? "connection closed during handshake" : NULL;
        const char *why = NULL, *err;
        if (c->state == CONN_ACC_NAME_WAIT) {
            cnode__hs_name nm;
            if (f.len > 0 && f.body[0] == 'n') {
                acc_status(node, c, "not_allowed");
                return "peer uses the old 'n' handshake";
            }
            if (cnode__hs_send_name_decode(f.body, f.len, &nm, &why) < 0)
                return "malformed send_name";
            if (!cnode__dflags_acceptable(nm.flags)) {
                acc_status(node, c, "not_allowed");
                return "peer lacks mandatory distribution flags";
            }
            char name[CNODE__NAME_MAX];
            if (nm.name_len == 0 || nm.name_len >= sizeof name || !memchr(nm.name, '@', nm.name_len))
                return "bad peer name";
            memcpy(name, nm.name, nm.name_len);
            name[nm.name_len] = 0;
            if (cnode__is_local(node, name))
                return "peer claims our own name";
            c->peer = cnode__peer_get(node, name, 1);
            if (!c->peer)
                return "out of memory";
            c->peer_flags = nm.flags;
            c->peer_creation = nm.creation;
            consume(c, used);
            if (c->peer->up) {
                if ((err = acc_status(node, c, "alive")))
                    return err;
                c->state = CONN_ACC_ALIVE_WAIT;
                continue;
            }
            if (c->peer->dialling) {
                /* simultaneous connect: the greater name keeps its own attempt */
                if (strcmp(node->name, c->peer->name) > 0) {
                    acc_status(node, c, "nok");
                    c->peer = NULL;
                    return "";
                }
                cnode__conn *mine = c->peer->dialling;
                c->peer->dialling = NULL;
                mine->peer = NULL;
                cnode__conn_close(node, mine, NULL);
                if ((err = acc_status(node, c, "ok_simultaneous")))
                    return err;
            } else if ((err = acc_status(node, c, "ok"))) {
                return err;
            }
            if ((err = send_challenge(node, c)))
                return err;
            continue;
        }
        if (c->state == CONN_ACC_ALIVE_WAIT) {
            const char *st;
            size_t sl;
            if (cnode__hs_status_decode(f.body, f.len, &st, &sl, &why) < 0)
                return "malformed status";
            consume(c, used);
            if (!(sl == 4 && !memcmp(st, "true", 4))) {
                c->peer = NULL;
                return "";
            }
            if (c->peer->up)
                cnode__conn_close(node, c->peer->up, "replaced by a new connection");
            if ((err = send_challenge(node, c)))
                return err;
            continue;
        }
        if (c->state == CONN_ACC_REPLY_WAIT) {
            uint32_t their;
            unsigned char got[16], want[16];
            if (cnode__hs_challenge_reply_decode(f.body, f.len, &their, got, &why) < 0)
                return "malformed challenge reply";
            if (cnode__hs_digest(node->cookie, strlen(node->cookie), c->our_challenge, want) != 0 ||
                memcmp(got, want, 16) != 0) {
                cnode__log(node, CNODE_LOG_ERROR, "connection attempt from %s refused: wrong cookie", c->peer->name);
                c->peer = NULL;
                return "";
            }
            if (c->peer->up) {
                /* our own dial came up meanwhile; keep that one */
                c->peer = NULL;
                return "";
            }
            if (c->peer->dialling) {
                /* we started dialling after this handshake began: this one is further along */
                cnode__conn *mine = c->peer->dialling;
                c->peer->dialling = NULL;
                mine->peer = NULL;
                cnode__conn_close(node, mine, NULL);
            }
            unsigned char dg[16];
            char b[32];
            if (cnode__hs_digest(node->cookie, strlen(node->cookie), their, dg) != 0 ||
                hs_write(node, c, b, cnode__hs_challenge_ack(b, sizeof b, dg)) != 0)
                return "write failed";
            consume(c, used);
            conn_up(node, c);
            return NULL;
        }
        return "unexpected handshake state";
    }
}

/* ---- up: frames ------------------------------------------------------------------------ */

/* Loop thread, without node->lock: an up connection's bytes, at most
 * limits.read_budget a turn; level-triggered epoll brings the rest next turn,
 * after every other connection and the callers have had theirs. */
void
cnode__conn_fill(cnode_node *node, cnode__conn *c, uint32_t events)
{
    c->rd = 2;
    if (c->state != CONN_UP || !(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        return;
    size_t budget = node->limits.read_budget, got = 0;
    while (got < budget) {
        ssize_t n = read_max(c, budget - got);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        c->rd = n == -2 ? 2 : (int)n;
        break;
    }
    if (got) {
        clock_gettime(CLOCK_MONOTONIC, &c->peer->last_read);
        if (c->rd == 2 && got >= budget)
            c->rd = 1; /* more may wait */
    }
}

/* node->lock held: dispatch every whole frame in ibuf (what the fill read,
 * so at most a budget's worth), then act on what the fill saw. */
static const char *
read_frames(cnode_node *node, cnode__conn *c)
{
    size_t off = 0;
    while (off < c->ilen) {
        cnode__frame f;
        const char *why = NULL;
        ptrdiff_t n = cnode__frame_decode(c->ibuf + off, c->ilen - off, 4, node->max_frame, &f, &why);
        if (n == CNODE__NEED_MORE)
            break;
        if (n < 0) {
            cnode__log(node, CNODE_LOG_ERROR, "dropping connection to %s: bad frame (%s)", c->peer->name,
                       why ? why : "?");
            CNODE__STAT_ADD(node, bad_data_disconnects, 1);
            return "bad frame";
        }
        off += (size_t)n;
        if (!f.body)
            continue; /* tick */
        cnode__ctl msg;
        if (cnode__ctl_decode(f.body, f.len, &cnode__term_limits_default, &msg, &why) < 0) {
            cnode__log(node, CNODE_LOG_ERROR, "dropping connection to %s: malformed message (%s)", c->peer->name,
                       why ? why : "?");
            CNODE__STAT_ADD(node, bad_data_disconnects, 1);
            return "malformed message";
        }
        cnode__dispatch(node, c->peer, &msg);
        if (c->state != CONN_UP)
            return ""; /* the dispatch took this connection down */
    }
    if (off)
        consume(c, off);
    if (c->rd == 0)
        return "connection closed by peer";
    if (c->rd == -1)
        return "read error";
    return NULL;
}

void
cnode__conn_event(cnode_node *node, cnode__conn *c, uint32_t events)
{
    const char *err = NULL;
    switch (c->state) {
    case CONN_EPMD_CONNECT:
    case CONN_EPMD_READ:
        err = epmd_step(node, c, events);
        break;
    case CONN_CONNECTING:
    case CONN_SEND_NAME_SENT:
    case CONN_CHALLENGE_WAIT:
    case CONN_ACK_WAIT:
        err = out_step(node, c, events);
        if (!err && c->state == CONN_UP && c->ilen)
            err = read_frames(node, c);
        break;
    case CONN_ACC_NAME_WAIT:
    case CONN_ACC_ALIVE_WAIT:
    case CONN_ACC_REPLY_WAIT:
        err = in_step(node, c, events);
        if (!err && c->state == CONN_UP && c->ilen)
            err = read_frames(node, c);
        break;
    case CONN_UP:
        if (events & EPOLLOUT) {
            c->peer->dirty = 1;
            cnode__mark_dirty(node, c->peer);
        }
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            err = read_frames(node, c);
        break;
    case CONN_DEAD:
        return; /* closed earlier in this turn */
    }
    if (err && c->state != CONN_DEAD)
        cnode__conn_close(node, c, *err ? err : NULL);
}

/* Every HOUSEKEEPING_MS: handshake deadlines, ticks, tick timeouts. */
void
cnode__conn_housekeeping(cnode_node *node)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t now_ms = now.tv_sec * 1000 + now.tv_nsec / 1000000;
    accept_resume(node);
    cnode__conn *c = node->conns;
    while (c) {
        cnode__conn *nx = c->next;
        if (c->state != CONN_UP) {
            if (cnode__past(&c->deadline))
                cnode__conn_close(node, c, "handshake timed out");
        } else {
            cnode__peer *p = c->peer;
            int64_t last_read = p->last_read.tv_sec * 1000 + p->last_read.tv_nsec / 1000000;
            if (now_ms - last_read > (int64_t)node->ticktime_ms) {
                cnode__conn_close(node, c, "net_tick_timeout");
            } else if (now_ms - atomic_load(&p->last_write_ms) >= (int64_t)node->ticktime_ms / 4) {
                static const char tick[4] = {0, 0, 0, 0};
                cnode__send_frame(node, p, tick, sizeof tick, NULL, 0);
            }
        }
        c = nx;
    }
}
