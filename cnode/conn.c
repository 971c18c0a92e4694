/* Connections, on the loop thread with node->lock held: the epmd lookup, the
 * bytes of both sides of the version-6 handshake moved through the machine of
 * ei_glue/handshake.c (this file answers its questions: simultaneous connect
 * as net_kernel does, a live connection replaced only once the new one proved
 * the cookie, as dist_util does), the bounds on handshakes, reading and
 * dispatching frames once up, ticks and the net_ticktime timeout.
 *
 * Authentication first: an accepted connection creates nothing that outlives
 * its socket (peer record, interned name) before the challenge reply proved
 * the cookie; until then the peer's name lives in its cnode__hs. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cnode/internal.h"

#define HS_LOG_QUIET_MS 10000 /* one handshake failure logged per address and kind in this long */

static void
set_events(cnode_node *node, cnode__conn *c, uint32_t ev)
{
    struct epoll_event e = {.events = ev | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(node->epfd, EPOLL_CTL_MOD, c->fd, &e);
}

/* c->peer holds a reference on the record: a connection between its proof and
 * its nodeup, or a dead one not yet reaped, must not see its peer reclaimed. */
static void
conn_set_peer(cnode__conn *c, cnode__peer *p)
{
    cnode__peer_hold(p);
    cnode__peer_release(c->peer);
    c->peer = p;
}

static cnode__conn *
conn_new(cnode_node *node, int fd, int outgoing, uint32_t ev)
{
    cnode__conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = fd;
    c->outgoing = outgoing;
    cnode__deadline_after(&c->deadline, node->limits.handshake_ms);
    struct epoll_event e = {.events = ev | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(node->epfd, EPOLL_CTL_ADD, fd, &e) != 0) {
        free(c);
        return NULL;
    }
    c->next = node->conns;
    node->conns = c;
    return c;
}

/* A failed attempt: waiters learn it, queued output is dropped (as Erlang drops
 * messages to an unreachable node), and monitors and links of processes on
 * that node fire with noconnection, as BEAM's do when the connection cannot
 * be set up. */
static void
dial_failed(cnode_node *node, cnode__peer *peer, const char *why)
{
    /* a cookie mismatch is the user's to fix: say it at warning level */
    int tls = strncmp(why, "TLS", 3) == 0; /* a certificate, or a peer on the other transport */
    cnode__log(node, strstr(why, "cookie") || tls ? CNODE_LOG_WARNING : CNODE_LOG_INFO, "connection to %s failed: %s",
               peer->name, why);
    snprintf(peer->last_error, sizeof peer->last_error, "%s", why);
    peer->tls_refused = tls;
    peer->connect_failed++;
    if (!peer->up) {
        pthread_mutex_lock(&peer->wlock);
        cnode__drop_output(peer);
        pthread_mutex_unlock(&peer->wlock);
        cnode__peer_down(node, peer);
    }
    pthread_cond_broadcast(&peer->up_cond);
    for (int i = 0; i < node->npeerhooks; i++)
        node->peer_hooks[i](node, peer, -1, node->peer_hook_ud[i]);
}

/* Dial epmd on host's address: the first step of an outgoing connection. */
static const char *
dial_epmd(cnode_node *node, cnode__conn *c)
{
    cnode__sockaddr sa = c->haddr;
    cnode__sockaddr_set_port(&sa, node->epmd_port);
    int fd = cnode__dial(&sa);
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
    const char *bad = cnode__host_check(at + 1, cnode__node_family(node));
    if (bad) {
        char why[160];
        snprintf(why, sizeof why, "cannot resolve host (%s)", bad);
        dial_failed(node, peer, why);
        return;
    }
    cnode__conn *c = calloc(1, sizeof *c);
    if (!c) {
        dial_failed(node, peer, "out of memory");
        return;
    }
    c->fd = -1;
    c->outgoing = 1;
    snprintf(c->host, sizeof c->host, "%s", at + 1);
    cnode__deadline_after(&c->deadline, node->limits.handshake_ms);
    int r = cnode__resolve(node, c->host, &c->haddr);
    const char *why = r < 0 ? "cannot resolve host" : r == 0 ? dial_epmd(node, c) : NULL;
    if (why) {
        free(c);
        dial_failed(node, peer, why);
        return;
    }
    conn_set_peer(c, peer);
    if (r == 1)
        c->state = CONN_RESOLVING; /* no socket yet: only the deadline and the answer move it */
    c->next = node->conns;
    node->conns = c;
    peer->dialling = c;
}

void
cnode__conn_resolved(cnode_node *node, const char *host, const cnode__sockaddr *addr)
{
    for (cnode__conn *c = node->conns, *nx; c; c = nx) {
        nx = c->next;
        if (c->state != CONN_RESOLVING || strcmp(c->host, host) != 0)
            continue;
        const char *why = "cannot resolve host";
        if (addr) {
            c->haddr = *addr;
            why = dial_epmd(node, c);
        }
        if (why)
            cnode__conn_close(node, c, why);
    }
}

/* ---- bounds and logs of accepted handshakes --------------------------------------------- */


static uint32_t
random_u32(void)
{
    uint32_t v;
    if (getrandom(&v, sizeof v, 0) != sizeof v)
        v = (uint32_t)cnode__now_ms() * 2654435761u;
    return v;
}

static void
hs_track(cnode_node *node, cnode__conn *c)
{
    c->hs_prev = node->hs_tail;
    c->hs_next = NULL;
    if (node->hs_tail)
        node->hs_tail->hs_next = c;
    else
        node->hs_head = c;
    node->hs_tail = c;
    node->hs_count++;
    CNODE__STAT_ADD(node, handshakes_now, 1);
}

static void
hs_untrack(cnode_node *node, cnode__conn *c)
{
    if (c->outgoing || !(c->hs_prev || c->hs_next || node->hs_head == c))
        return;
    if (c->hs_prev)
        c->hs_prev->hs_next = c->hs_next;
    else
        node->hs_head = c->hs_next;
    if (c->hs_next)
        c->hs_next->hs_prev = c->hs_prev;
    else
        node->hs_tail = c->hs_prev;
    c->hs_prev = c->hs_next = NULL;
    node->hs_count--;
    CNODE__STAT_SUB(node, handshakes_now, 1);
}

static int
same_addr(const struct in6_addr *a, const struct in6_addr *b)
{
    return memcmp(a, b, sizeof *a) == 0;
}

/* Peer-supplied text made fit for a log line. */
static void
printable(char *out, size_t cap, const char *in)
{
    size_t i = 0;
    for (; in[i] && i + 1 < cap; i++)
        out[i] = in[i] >= 0x20 && in[i] < 0x7f ? in[i] : '?';
    out[i] = 0;
}

/* A failed incoming handshake, logged at most once per source address and
 * kind (wrong cookie, or anything else) every HS_LOG_QUIET_MS: a flood of bad
 * connections cannot flood the log. Never with the cookie. */
static void
hs_log(cnode_node *node, const cnode__conn *c, int level, int cookie, const char *what)
{
    int64_t now = cnode__now_ms();
    cnode__hs_logslot *slot = &node->hs_log[0];
    for (size_t i = 0; i < sizeof node->hs_log / sizeof node->hs_log[0]; i++) {
        cnode__hs_logslot *s = &node->hs_log[i];
        if (same_addr(&s->addr, &c->addr) && s->cookie == cookie && s->until_ms) {
            slot = s;
            break;
        }
        if (s->until_ms < slot->until_ms)
            slot = s;
    }
    if (same_addr(&slot->addr, &c->addr) && slot->cookie == cookie && now < slot->until_ms) {
        slot->suppressed++;
        return;
    }
    unsigned more = same_addr(&slot->addr, &c->addr) && slot->cookie == cookie ? slot->suppressed : 0;
    *slot = (cnode__hs_logslot){.addr = c->addr, .cookie = cookie, .until_ms = now + HS_LOG_QUIET_MS};
    char ip[INET6_ADDRSTRLEN], name[CNODE__NAME_MAX];
    cnode__addr_key_str(&c->addr, ip, sizeof ip);
    printable(name, sizeof name, c->hs && c->hs->named ? c->hs->peer_name : "-");
    if (more)
        cnode__log(node, level, "handshake from %s (%s) failed: %s (and %u more from there before)", ip, name, what,
                   more);
    else
        cnode__log(node, level, "handshake from %s (%s) failed: %s", ip, name, what);
}

/* Make room for one more accepted handshake from addr: 1 admitted, 0 refused.
 * At either bound the oldest one that has not sent its name (from addr, at
 * the per-address bound) is closed to make room: silent sockets cannot lock
 * out a node, even one on the same host as the attacker. */
static int
hs_admit(cnode_node *node, const struct in6_addr *addr)
{
    unsigned from_addr = 0;
    cnode__conn *silent = NULL, *silent_here = NULL;
    for (cnode__conn *c = node->hs_head; c; c = c->hs_next) {
        from_addr += same_addr(&c->addr, addr);
        if (!silent && !c->hs->named)
            silent = c; /* the oldest that has not sent its name */
        if (!silent_here && !c->hs->named && same_addr(&c->addr, addr))
            silent_here = c;
    }
    cnode__conn *evict = NULL;
    if (from_addr >= node->limits.handshakes_per_addr)
        evict = silent_here;
    else if (node->hs_count >= node->limits.handshakes)
        evict = silent;
    else
        return 1;
    if (!evict)
        return 0;
    cnode__conn_close(node, evict, NULL); /* freed at the end of the turn, like every close */
    CNODE__STAT_ADD(node, handshakes_evicted, 1);
    return 1;
}

void
cnode__conn_accept(cnode_node *node)
{
    for (;;) {
        cnode__sockaddr sa;
        memset(&sa, 0, sizeof sa);
        socklen_t sl = sizeof sa;
        int fd = accept4(node->listen_fd, &sa.sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
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
        struct in6_addr addr;
        cnode__addr_key(&sa, &addr);
        if (!hs_admit(node, &addr)) {
            CNODE__STAT_ADD(node, handshakes_refused, 1);
            cnode__conn tmp = {.addr = addr};
            hs_log(node, &tmp, CNODE_LOG_WARNING, 0, "too many connections in the handshake, refused");
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        cnode__hs *hs = malloc(sizeof *hs);
        cnode__conn *c = hs ? conn_new(node, fd, 0, EPOLLIN) : NULL;
        if (!c) {
            free(hs);
            close(fd);
            continue;
        }
        cnode__hs_init_accept(hs, node->name, node->flags, node->creation, node->cookie, strlen(node->cookie),
                              random_u32());
        c->hs = hs;
        c->addr = addr;
        c->state = CONN_HANDSHAKE;
        if (node->tls) {
            /* TLS first; the handshake inside it, 4-byte framed. Until the peer's name comes it is a
             * silent handshake to hs_admit, evicted first, and the deadline covers both. */
            cnode__hs_use_packet4(hs);
            c->state = CONN_TLS;
            if (cnode__tls_conn_new(node, c) != 0) {
                cnode__conn_close(node, c, NULL);
                continue;
            }
        }
        hs_track(node, c);
    }
}

static void
conn_free(cnode_node *node, cnode__conn *c)
{
    for (cnode__conn **pp = &node->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    hs_untrack(node, c);
    c->state = CONN_DEAD;
    conn_set_peer(c, NULL);
    c->next = node->dead_conns;
    node->dead_conns = c;
}

/* Free the connections closed this turn: off node->conns at once, their
 * memory kept until now, as a later event of the same epoll_wait batch may
 * still point at one (it then sees CONN_DEAD and is skipped). */
void
cnode__conn_reap(cnode_node *node)
{
    cnode__conn *c = node->dead_conns;
    node->dead_conns = NULL;
    while (c) {
        cnode__conn *nx = c->next;
        if (c->close_later && atomic_load(&c->rtoken) == RT_CALLER) {
            c->next = node->dead_conns; /* its caller has not let go yet: a later turn */
            node->dead_conns = c;
            c = nx;
            continue;
        }
        if (c->close_later)
            close(c->fd);
        cnode__tls_conn_free(c);
        free(c->hs);
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

/* The peer's side of closing c: a nodedown, or a failed dial. Writers stop
 * using the socket (peer->fd) before this returns; the socket is the caller's. */
static void
conn_detach(cnode_node *node, cnode__conn *c, const char *reason)
{
    cnode__peer *peer = c->peer;
    c->peer = NULL;
    if (peer && peer->up == c) {
        pthread_mutex_lock(&peer->wlock);
        peer->fd = -1;
        peer->wconn = NULL;
        peer->epollout = 0;
        cnode__drop_output(peer);
        pthread_mutex_unlock(&peer->wlock);
        peer->up = NULL;
        peer->generation++;
        cnode__log(node, CNODE_LOG_INFO, "nodedown %s: %s", peer->name, reason);
        cnode__peer_down(node, peer);
        cnode__push_event(node, 0, peer->name, reason);
        for (int i = 0; i < node->npeerhooks; i++)
            node->peer_hooks[i](node, peer, 0, node->peer_hook_ud[i]);
    } else if (peer && peer->dialling == c) {
        peer->dialling = NULL;
        if (reason)
            dial_failed(node, peer, reason);
    } else if (reason && c->state != CONN_UP) {
        cnode__log(node, CNODE_LOG_WARNING, "handshake with %s failed: %s", peer ? peer->name : "(unknown)", reason);
    }
    cnode__peer_release(peer); /* c's reference */
}

void
cnode__conn_close(cnode_node *node, cnode__conn *c, const char *reason)
{
    if (c->state == CONN_DEAD)
        return;
    if (c->state == CONN_RESOLVING) { /* no socket yet */
        conn_detach(node, c,
                    reason && strcmp(reason, "handshake timed out") == 0 ? "cannot resolve host (timed out)" : reason);
        conn_free(node, c);
        return;
    }
    epoll_ctl(node->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    conn_detach(node, c, reason);
    if (c->state == CONN_UP && atomic_load(&c->rtoken) == RT_CALLER) {
        /* a caller is in recv on it: wake it (close would not), keep the number until it lets go */
        shutdown(c->fd, SHUT_RDWR);
        c->close_later = 1;
    } else {
        close(c->fd);
    }
    conn_free(node, c);
}

/* Write epmd bytes now; keep what the socket does not take. */
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
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno == EAGAIN ? 0 : -1;
        c->hoff += (size_t)w;
    }
    set_events(node, c, EPOLLIN);
    return 0;
}

/* The least room a read asks for. Small, so that an idle link's buffer fits in one page next to
 * the others' (a pg observer keeps a link to every node of the cluster; 16 KB each cost a watching
 * node a page per link); under load the buffer doubles. */
#define IBUF_ROOM 2048

/* ... and a burst leaves it at whatever the burst needed (up to the read budget; 64 KB once a
 * caller has read): a link whose reads have held at most IBUF_ROOM / 2 bytes for IBUF_QUIET_TURNS
 * housekeeping turns in a row, no caller reading, goes back to IBUF_ROOM, and once IBUF_TRIM_BYTES
 * have been given back the free pages go back to the system (a watching pg observer's 20 links
 * held 850 KB after the members of 20 nodes joined; pg's probe keeps every link reading a little). */
#define IBUF_QUIET_TURNS 10
#define IBUF_TRIM_BYTES (64 * 1024)

/* Read what the socket has, at most max bytes: the count (> 0), 0 EOF, -1
 * error, -2 nothing now. *asked: how much the recv could have taken (NULL: not wanted). */
static ssize_t
read_max(cnode__conn *c, size_t max, size_t *asked)
{
    /* frames over max_frame are refused from their header, which bounds ilen. The buffer starts small (an idle
     * link should not hold 64 KB: a pg observer keeps one to every node of the cluster) and doubles under load. */
    if (c->icap - c->ilen < IBUF_ROOM) {
        size_t ncap = c->icap * 2 > c->ilen + IBUF_ROOM ? c->icap * 2 : c->ilen + IBUF_ROOM;
        char *nb = realloc(c->ibuf, ncap);
        if (!nb)
            return -1;
        c->ibuf = nb;
        c->icap = ncap;
    }
    size_t room = c->icap - c->ilen;
    ssize_t n;
    if (asked)
        *asked = room < max ? room : max;
    n = cnode__tx_recv(c, c->ibuf + c->ilen, room < max ? room : max);
    if (n > 0) {
        c->ilen += (size_t)n;
        if (c->ilen > c->ipeak)
            c->ipeak = c->ilen;
        return n;
    }
    if (n == 0)
        return 0;
    return errno == EAGAIN ? -2 : -1;
}

/* Read what the socket has: 1 got bytes, 0 EOF, -1 error, 2 nothing now. */
static int
read_some(cnode__conn *c)
{
    ssize_t n = read_max(c, SIZE_MAX, NULL);
    return n > 0 ? 1 : n == 0 ? 0 : n == -2 ? 2 : -1;
}

static void
consume(cnode__conn *c, size_t n)
{
    memmove(c->ibuf, c->ibuf + n, c->ilen - n);
    c->ilen -= n;
}

static void
conn_up(cnode_node *node, cnode__conn *c, uint64_t peer_flags, uint32_t peer_creation)
{
    cnode__peer *peer = c->peer;
    c->state = CONN_UP;
    c->rd = 2;
    if (peer->dialling == c)
        peer->dialling = NULL;
    peer->up = c;
    peer->flags = node->flags & cnode__dflags_expand(peer_flags);
    peer->creation = peer_creation;
    clock_gettime(CLOCK_MONOTONIC, &peer->last_read);
    free(c->hbuf);
    c->hbuf = NULL;
    c->hlen = c->hoff = 0;
    pthread_mutex_lock(&peer->wlock);
    peer->fd = c->fd;
    peer->wconn = c;
    peer->dirty = peer->oq_head != NULL;
    int dirty = peer->dirty;
    atomic_store(&peer->last_write_ms, cnode__now_ms());
    pthread_mutex_unlock(&peer->wlock);
    if (dirty)
        cnode__mark_dirty(node, peer);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* a caller holding the read token blocks in recv (bounded by SO_RCVTIMEO); every other
     * recv and send on this socket passes MSG_DONTWAIT */
    int fl = fcntl(c->fd, F_GETFL);
    if (fl >= 0)
        fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
    c->armed = 1;
    c->lowat = 1;
    set_events(node, c, EPOLLIN);
    char tx[96];
    cnode__log(node, CNODE_LOG_INFO, "nodeup %s (%s, %s, flags 0x%llx)", peer->name,
               c->outgoing ? "outgoing" : "incoming", cnode__tls_describe(c, tx, sizeof tx),
               (unsigned long long)peer->flags);
    /* the peer's first frames may already sit decrypted in the session: epoll will not say so */
    if (c->tls && cnode__tx_buffered(c))
        c->tx_more = node->tx_more = 1;
    pthread_cond_broadcast(&peer->up_cond);
    cnode__push_event(node, 1, peer->name, NULL);
    for (int i = 0; i < node->npeerhooks; i++)
        node->peer_hooks[i](node, peer, 1, node->peer_hook_ud[i]);
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
        if (c->hoff == c->hlen)
            set_events(node, c, EPOLLIN);
        return NULL;
    }
    if ((events & EPOLLOUT) && hs_flush(node, c) != 0)
        return "epmd write failed";
    int r;
    while ((r = read_some(c)) == 1)
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
    cnode__sockaddr sa = c->haddr;
    cnode__sockaddr_set_port(&sa, resp.port);
    int fd = cnode__dial(&sa);
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

/* ---- the handshake, both roles: bytes through cnode__hs ---------------------------------- */

/* Send what the machine has queued; EPOLLOUT stays armed while some is left. -1 on a socket error. */
static int
hs_send(cnode_node *node, cnode__conn *c)
{
    const char *p;
    size_t n;
    while ((n = cnode__hs_output(c->hs, &p)) > 0) {
        struct iovec v = {(void *)p, n};
        ssize_t w = cnode__tx_writev(c, &v, 1);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (w < 0)
            break;
        cnode__hs_written(c->hs, (size_t)w);
    }
    if ((n > 0) != c->hs_pollout) {
        c->hs_pollout = n > 0;
        set_events(node, c, EPOLLIN | (n ? EPOLLOUT : 0));
    }
    return 0;
}

static const char *hs_step(cnode_node *node, cnode__conn *c, uint32_t events);

/* Our dial's connection is ready for the handshake: start the machine, which queues send_name. */
static const char *
dial_hs_start(cnode_node *node, cnode__conn *c)
{
    c->hs = malloc(sizeof *c->hs);
    if (!c->hs)
        return "out of memory";
    cnode__hs_init_dial(c->hs, node->name, node->flags, node->creation, node->cookie, strlen(node->cookie),
                        c->peer->name, random_u32());
    if (c->tls)
        cnode__hs_use_packet4(c->hs); /* inet_tls_dist: {packet, 4} from the start */
    c->state = CONN_HANDSHAKE;
    return hs_send(node, c) != 0 ? "write failed" : NULL;
}

/* CONN_TLS: drive the TLS handshake; once done, the distribution handshake starts inside it
 * (the dialler speaks first; the acceptor reads what may already be there). */
static const char *
tls_phase(cnode_node *node, cnode__conn *c)
{
    int want_write = 0;
    int r = cnode__tls_step(c, &want_write);
    if (r < 0)
        return cnode__tx_error(c);
    if (r == 0) {
        if (want_write != c->hs_pollout) {
            c->hs_pollout = want_write;
            set_events(node, c, EPOLLIN | (want_write ? EPOLLOUT : 0));
        }
        return NULL;
    }
    if (c->outgoing)
        return dial_hs_start(node, c);
    c->state = CONN_HANDSHAKE;
    return hs_step(node, c, EPOLLIN);
}

/* Our dial's TCP connect completed: TLS first on a TLS node, else the handshake. */
static const char *
dial_connected(cnode_node *node, cnode__conn *c, uint32_t events)
{
    if (!(events & EPOLLOUT))
        return (events & (EPOLLERR | EPOLLHUP)) ? "connection refused" : NULL;
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr)
        return "connection refused";
    c->hs_pollout = 1; /* armed for the connect */
    if (node->tls) {
        if (cnode__tls_conn_new(node, c) != 0)
            return "TLS: cannot start a session";
        c->state = CONN_TLS;
        return tls_phase(node, c);
    }
    return dial_hs_start(node, c);
}

/* What net_kernel answers to a send_name: looked up, nothing created. */
static int
name_status(cnode_node *node, const char *name)
{
    cnode__peer *p = cnode__peer_get(node, name, 0);
    if (p && p->up)
        return CNODE__HS_ST_ALIVE;
    if (p && p->dialling) /* simultaneous connect: the greater name keeps its own attempt */
        return strcmp(node->name, name) > 0 ? CNODE__HS_ST_NOK : CNODE__HS_ST_OK_SIMULTANEOUS;
    return CNODE__HS_ST_OK;
}

/* The accepted peer proved the cookie: only now does it get a peer record, may
 * it replace a live connection of that name, and cancel our own dial. NULL to
 * go on, "" to close quietly, else why. */
static const char *
acc_proven(cnode_node *node, cnode__conn *c)
{
    cnode__peer *p = cnode__peer_get(node, c->hs->peer_name, 1);
    if (!p)
        return "no room for another peer";
    if (p->up && p->up != c) {
        if (!c->hs->replacing)
            return ""; /* another connection came up meanwhile (our dial, or a faster handshake): keep it */
        cnode__conn_close(node, p->up, "replaced by a new connection");
    }
    if (p->dialling) {
        /* ours lost the simultaneous connect, or started after this one: this one is further along */
        cnode__conn_close(node, p->dialling, NULL);
    }
    conn_set_peer(c, p);
    return NULL;
}

/* The machine failed: count, log, and tell cnode__conn_close how loud to be. */
static const char *
hs_failed(cnode_node *node, cnode__conn *c)
{
    const cnode__hs *hs = c->hs;
    if (hs->fail == CNODE__HS_F_COOKIE)
        CNODE__STAT_ADD(node, auth_failures, 1);
    if (c->outgoing) {
        if (hs->fail == CNODE__HS_F_NOK) {
            /* the peer is dialling us and wins; its connection will come up instead */
            c->peer->dialling = NULL;
            conn_set_peer(c, NULL);
            return "";
        }
        if (hs->fail == CNODE__HS_F_CLOSED)
            return "connection closed during handshake (wrong cookie?)";
        return hs->why;
    }
    switch (hs->fail) {
    case CNODE__HS_F_DECLINED: /* we said nok, or the peer kept its live connection: protocol as usual */
        break;
    case CNODE__HS_F_COOKIE:
        hs_log(node, c, CNODE_LOG_WARNING, 1, "wrong cookie");
        break;
    case CNODE__HS_F_CLOSED:
        hs_log(node, c, CNODE_LOG_INFO, 0, hs->why);
        break;
    default:
        hs_log(node, c, CNODE_LOG_WARNING, 0, hs->why);
        break;
    }
    return "";
}

/* Answer the machine's questions until it needs bytes again or is done. */
static const char *
hs_answer(cnode_node *node, cnode__conn *c, int *v)
{
    for (;;) {
        switch (*v) {
        case CNODE__HS_NAME:
            *v = cnode__hs_answer_name(c->hs, name_status(node, c->hs->peer_name));
            break;
        case CNODE__HS_ALIVE:
            *v = cnode__hs_answer_alive(c->hs, c->peer->up && c->peer->up != c);
            break;
        case CNODE__HS_PROVEN: {
            const char *err = acc_proven(node, c);
            if (err)
                return err;
            *v = cnode__hs_answer_proven(c->hs);
            break;
        }
        default:
            return NULL;
        }
    }
}

static const char *
hs_up(cnode_node *node, cnode__conn *c)
{
    if (c->outgoing && c->peer->up && c->peer->up != c) {
        /* an incoming one won meanwhile: keep it, and drop ours without a failure to report */
        c->peer->dialling = NULL;
        conn_set_peer(c, NULL);
        return "";
    }
    /* the ack must be out before any frame another thread may write straight to the socket */
    const char *p;
    if (hs_send(node, c) != 0 || cnode__hs_output(c->hs, &p) != 0)
        return "write failed";
    uint64_t flags = c->hs->peer_flags;
    uint32_t creation = c->hs->peer_creation;
    hs_untrack(node, c);
    free(c->hs);
    c->hs = NULL;
    c->hs_pollout = 0;
    conn_up(node, c, flags, creation);
    return NULL;
}

/* Read exactly what the machine takes (the peer's first frames stay in the
 * socket for read_frames), answer it, send what it queues. */
static const char *
hs_step(cnode_node *node, cnode__conn *c, uint32_t events)
{
    int v = CNODE__HS_AGAIN;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        for (;;) {
            char buf[4 + CNODE__HS_BODY_MAX];
            size_t want = cnode__hs_want(c->hs);
            if (want == 0)
                break;
            ssize_t n = cnode__tx_recv(c, buf, want);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (n < 0 && cnode__tx_error(c))
                return cnode__tx_error(c); /* e.g. TLS 1.3: the peer refused our certificate after its Finished */
            if (n < 0)
                n = 0; /* a reset is a close */
            v = cnode__hs_input(c->hs, buf, (size_t)n, NULL);
            const char *err = hs_answer(node, c, &v);
            if (err)
                return err;
            if (v != CNODE__HS_AGAIN)
                break;
        }
    }
    if (v == CNODE__HS_FAIL) {
        hs_send(node, c); /* a last status (not_allowed, nok, false), if the socket takes it */
        return hs_failed(node, c);
    }
    if (v == CNODE__HS_UP)
        return hs_up(node, c);
    return hs_send(node, c) != 0 ? "write failed" : NULL;
}

/* ---- up: frames ------------------------------------------------------------------------ */

/* Loop thread, without node->lock: an up connection's bytes, at most
 * limits.read_budget a turn; level-triggered epoll brings the rest next turn,
 * after every other connection and the callers have had theirs. */
void
cnode__conn_fill(cnode_node *node, cnode__conn *c, uint32_t events)
{
    c->rd = 2;
    c->io_tok = 0;
    if (c->state != CONN_UP || !(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        return;
    int expect = RT_FREE;
    if (!atomic_compare_exchange_strong(&c->rtoken, &expect, RT_LOOP)) {
        /* a caller reads: it took the socket out of our interest, or is about to; make sure,
         * so a level-triggered event does not spin this loop */
        pthread_mutex_lock(&c->peer->wlock);
        if (c->armed && atomic_load(&c->rtoken) == RT_CALLER) {
            c->armed = 0;
            cnode__conn_arm(node, c->peer, c, c->fd);
        }
        pthread_mutex_unlock(&c->peer->wlock);
        return;
    }
    c->io_tok = 1;
    size_t budget = node->limits.read_budget, got = 0;
    while (got < budget) {
        size_t asked = 0;
        ssize_t n = read_max(c, budget - got, &asked);
        if (n > 0) {
            got += (size_t)n;
            if ((size_t)n < asked && !c->tls && !(events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR))) {
                /* the socket had no more: level-triggered epoll brings what comes next, so no
                 * recv just to hear EAGAIN (after a hang-up, read on to the end of file). Not over
                 * TLS: a read gives one record, and what the session holds epoll cannot see */
                c->rd = 2;
                break;
            }
            continue;
        }
        c->rd = n == -2 ? 2 : (int)n;
        break;
    }
    if (got) {
        clock_gettime(CLOCK_MONOTONIC, &c->peer->last_read);
        if (c->rd == 2 && got >= budget) {
            c->rd = 1; /* more may wait */
            if (c->tls)
                c->tx_more = node->tx_more = 1; /* perhaps decrypted already, where epoll cannot see it */
        }
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
    c->skip = 0;
    atomic_store(&c->pending_in, 0);
    if (c->rd == 0)
        return "connection closed by peer";
    if (c->rd == -1)
        return cnode__tx_error(c) ? cnode__tx_error(c) : "read error"; /* TLS: the alert or the failure */
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
        err = dial_connected(node, c, events);
        break;
    case CONN_TLS:
        err = tls_phase(node, c);
        if (err && *err && !c->outgoing) {
            hs_log(node, c, CNODE_LOG_WARNING, 0, err); /* one line per address and 10 s, like every stranger */
            err = "";
        }
        break;
    case CONN_HANDSHAKE:
        /* the frames after the handshake are still in the socket: the next turn reads them */
        err = hs_step(node, c, events);
        if (err && *err && !c->outgoing) {
            /* socket errors of strangers: rate-limited too */
            hs_log(node, c, strncmp(err, "TLS", 3) == 0 ? CNODE_LOG_WARNING : CNODE_LOG_INFO, 0, err);
            err = "";
        }
        break;
    case CONN_UP:
        if (events & EPOLLOUT) {
            c->peer->dirty = 1;
            cnode__mark_dirty(node, c->peer);
        }
        if (c->io_tok) {
            c->io_tok = 0;
            err = read_frames(node, c);
            atomic_store(&c->rtoken, RT_FREE);
        }
        break;
    case CONN_DEAD:
        return; /* closed earlier in this turn */
    }
    if (err && c->state != CONN_DEAD)
        cnode__conn_close(node, c, *err ? err : NULL);
}

/* Housekeeping (loop thread, node->lock held, so no caller can take the read token meanwhile): a
 * quiet up link's grown read buffer back to IBUF_ROOM. ipeak and ilen are the token holder's. */
static void
ibuf_shrink(cnode_node *node, cnode__conn *c)
{
    int expect = RT_FREE;
    if (!atomic_compare_exchange_strong(&c->rtoken, &expect, RT_LOOP)) {
        c->iquiet = 0; /* a caller reads */
        return;
    }
    if (c->ipeak > IBUF_ROOM / 2 || c->icap <= IBUF_ROOM) {
        c->iquiet = 0;
    } else if (++c->iquiet >= IBUF_QUIET_TURNS && !c->ilen) {
        char *nb = realloc(c->ibuf, IBUF_ROOM);
        if (nb) {
            node->ibuf_freed += c->icap - IBUF_ROOM;
            c->ibuf = nb;
            c->icap = IBUF_ROOM;
        }
        c->iquiet = 0;
    }
    c->ipeak = 0;
    atomic_store(&c->rtoken, RT_FREE);
}

/* Every HOUSEKEEPING_MS: handshake deadlines, ticks, tick timeouts, idle read buffers. */
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
            /* a plain node reads a ClientHello as a 5635-byte handshake message and waits for it */
            const char *tmo = c->state == CONN_TLS && c->outgoing
                                  ? "TLS: no answer to the TLS handshake (does the peer run plain TCP?)"
                                  : "handshake timed out";
            if (!cnode__past(&c->deadline)) {
            } else if (c->outgoing) {
                cnode__conn_close(node, c, tmo);
            } else {
                CNODE__STAT_ADD(node, handshakes_timed_out, 1);
                hs_log(node, c, CNODE_LOG_INFO, 0, tmo);
                cnode__conn_close(node, c, NULL);
            }
        } else {
            cnode__peer *p = c->peer;
            int64_t last_read = p->last_read.tv_sec * 1000 + p->last_read.tv_nsec / 1000000;
            if (now_ms - last_read > (int64_t)node->ticktime_ms) {
                cnode__conn_close(node, c, "net_tick_timeout");
            } else if (now_ms - atomic_load(&p->last_write_ms) >= (int64_t)node->ticktime_ms / 4) {
                static const char tick[4] = {0, 0, 0, 0};
                cnode__send_frame(node, p, tick, sizeof tick, NULL, 0);
            }
            ibuf_shrink(node, c);
        }
        c = nx;
    }
}

/* Loop thread, after node->lock is let go (a trim walks the whole heap): once IBUF_TRIM_BYTES of
 * read buffers have been given back, their pages go back to the system. */
void
cnode__conn_trim(cnode_node *node)
{
#ifdef __GLIBC__
    if (node->ibuf_freed >= IBUF_TRIM_BYTES) {
        node->ibuf_freed = 0;
        malloc_trim(0); /* the buffers' pages sit between live blocks: only a trim gives them back */
    }
#else
    (void)node;
#endif
}

/* ---- callers that read (leader/follower) ------------------------------------------------ */

#define LEAD_SLICE_MS 1000 /* a caller's recv wakes at least this often to look at its deadline */
#define LEAD_YOUNG_MS 50   /* ... and, for the first this long of its wait, every LEAD_QUICK_MS */
#define LEAD_QUICK_MS 5

void
cnode__conn_arm(cnode_node *node, cnode__peer *peer, cnode__conn *c, int fd)
{
    if (peer->fd < 0 || peer->fd != fd)
        return; /* detached (wlock orders this): c may be gone, and fd is not a live registration */
    /* unarmed (a caller reads, or did lately): no read interest, and EPOLLONESHOT so a hang-up
     * (always reported) reaches the loop once instead of on every turn */
    uint32_t ev = c->armed ? EPOLLIN | EPOLLRDHUP : EPOLLONESHOT;
    if (peer->epollout)
        ev |= EPOLLOUT;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(node->epfd, EPOLL_CTL_MOD, fd, &e);
}

cnode__conn *
cnode__conn_take_locked(cnode_node *node, cnode__peer *peer)
{
    cnode__conn *c = peer ? peer->up : NULL;
    int expect = RT_FREE;
    if (!node->has_io_thread || !c || c->state != CONN_UP ||
        !atomic_compare_exchange_strong(&c->rtoken, &expect, RT_CALLER))
        return NULL;
    return c;
}

void
cnode__conn_disarm(cnode_node *node, cnode__peer *peer, cnode__conn *c)
{
    pthread_mutex_lock(&peer->wlock);
    if (c->armed) { /* not if a caller left it unarmed lately: then this costs nothing */
        c->armed = 0;
        cnode__conn_arm(node, peer, c, c->fd);
    }
    pthread_mutex_unlock(&peer->wlock);
}

static void
set_lowat(cnode__conn *c, int v)
{
    if (c->tls)
        return; /* the kernel counts ciphertext: a plaintext length means nothing to it */
    if (c->lowat != v && setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof v) == 0)
        c->lowat = v;
}

/* The token holder gives the socket back to epoll. wlock held. */
static void
rearm(cnode_node *node, cnode__peer *peer, cnode__conn *c, int fd)
{
    set_lowat(c, 1);
    c->armed = 1;
    cnode__conn_arm(node, peer, c, fd);
}

/* Letting go: with other replies due (or frames for the loop) the socket goes back to epoll at
 * once; otherwise it stays unarmed a little (LAZY_MS) and the loop re-arms it then, unless a
 * caller took it again: a thread calling in a loop pays no epoll_ctl per call. */
#define LAZY_MS 2

void
cnode__conn_release(cnode_node *node, cnode__peer *peer, cnode__conn *c)
{
    /* TLS: records the session decrypted and nobody read are the loop's too (conn_pending) */
    int fd = c->fd, pend = c->skip > 0 || (c->tls && cnode__tx_buffered(c));
    if (pend)
        atomic_store(&c->pending_in, 1);
    if (pend || c->rearm_now) {
        pthread_mutex_lock(&peer->wlock);
        if (peer->fd == fd) /* else closed under us: nothing to arm */
            rearm(node, peer, c, fd);
        atomic_store(&c->rtoken, RT_FREE); /* from here the loop may reap c */
        pthread_mutex_unlock(&peer->wlock);
    } else {
        atomic_store(&c->released_ms, cnode__now_ms());
        atomic_store(&c->rtoken, RT_FREE);
        if (atomic_exchange(&node->lazy_mode, 1) == 0)
            pend = 1; /* the loop sleeps long: tell it */
    }
    if (pend)
        cnode__wake(node);
}

int
cnode__conn_lazy(cnode_node *node)
{
    if (!atomic_load(&node->lazy_mode))
        return -1;
    atomic_store(&node->lazy_mode, 0); /* a caller letting go from now on sets it again */
    int64_t now = cnode__now_ms();
    int again = 0;
    for (cnode__conn *c = node->conns; c; c = c->next) {
        int expect = RT_FREE;
        if (c->state != CONN_UP)
            continue;
        if (!atomic_compare_exchange_strong(&c->rtoken, &expect, RT_LOOP)) {
            again |= expect == RT_CALLER; /* it lets go later; it may leave the socket unarmed */
            continue;
        }
        pthread_mutex_lock(&c->peer->wlock);
        if (!c->armed) {
            if (now - atomic_load(&c->released_ms) < LAZY_MS)
                again = 1;
            else
                rearm(node, c->peer, c, c->fd);
        }
        pthread_mutex_unlock(&c->peer->wlock);
        atomic_store(&c->rtoken, RT_FREE);
    }
    if (again)
        atomic_store(&node->lazy_mode, 1);
    return again ? LAZY_MS : -1;
}

/* node->lock held: complete the replies callers wait for among the whole frames after skip;
 * every other frame stays in ibuf, in order, for the loop. -1: stop reading (the connection
 * closed, or a frame the loop must judge). */
static int
lead_frames(cnode_node *node, cnode__peer *peer, cnode__conn *c, int got, unsigned claims)
{
    if (c->state != CONN_UP)
        return -1;
    if (got)
        clock_gettime(CLOCK_MONOTONIC, &peer->last_read);
    size_t off = c->skip, w = c->skip;
    int rc = 0;
    /* a message may only pass frames left for the loop if none of them is older: once one is
     * left (now or by an earlier reader), messages stay in order behind it */
    int held = c->skip > 0;
    while (off < c->ilen) {
        cnode__frame f;
        const char *why = NULL;
        ptrdiff_t n = cnode__frame_decode(c->ibuf + off, c->ilen - off, 4, node->max_frame, &f, &why);
        if (n == CNODE__NEED_MORE)
            break;
        cnode__ctl msg;
        if (n < 0 || (f.body && cnode__ctl_decode(f.body, f.len, &cnode__term_limits_default, &msg, &why) < 0)) {
            rc = -1; /* the loop drops the connection, in order */
            break;
        }
        if (!f.body || ((claims & CNODE__LEAD_ERPC) && cnode__erpc_claim(node, &msg)) ||
            ((claims & CNODE__LEAD_MSGS) && !held && cnode__proc_claim(node, &msg))) {
            if (f.body)
                CNODE__STAT_ADD(node, caller_reads, 1);
            if (f.body && (msg.op == CNODE__OP_SPAWN_REPLY || msg.op == CNODE__OP_SPAWN_REPLY_TT))
                peer->spawn_reply_len = (size_t)n;
            off += (size_t)n; /* a tick, or a reply now delivered */
            continue;
        }
        held = 1;
        if (w != off)
            memmove(c->ibuf + w, c->ibuf + off, (size_t)n);
        w += (size_t)n;
        off += (size_t)n;
    }
    if (w != off) {
        memmove(c->ibuf + w, c->ibuf + off, c->ilen - off);
        c->ilen -= off - w;
    }
    c->skip = w;
    if (rc < 0)
        c->skip = c->ilen; /* everything left is the loop's */
    return rc;
}

/* The wake-up was written: reset it, and let the caller look (1: "nothing read, look again"). */
static ssize_t
lead_woken(int wake)
{
    uint64_t v;
    if (read(wake, &v, sizeof v) < 0 && errno != EAGAIN)
        return -1;
    return 1;
}

/* Blocking recv into ibuf until the deadline: > 0 bytes, 0 EOF, -1 error, -2 deadline. quick:
 * a short slice (the wait is young, and SO_RCVLOWAT may wait for more than comes). wake >= 0:
 * an eventfd that others write when the reader has something to look at besides this socket
 * (a receiver's mailbox): the wait polls both, and a wake returns 1 with nothing read. */
static ssize_t
lead_recv(cnode__conn *c, const struct timespec *deadline, int quick, int wake)
{
    for (;;) {
        int slice = quick ? LEAD_QUICK_MS : LEAD_SLICE_MS;
        if (deadline) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            int64_t us = (deadline->tv_sec - now.tv_sec) * 1000000 + (deadline->tv_nsec - now.tv_nsec) / 1000;
            if (us <= 0)
                return -2;
            if (us < (int64_t)slice * 1000)
                slice = (int)((us + 999) / 1000);
        }
        if (!c->tls && wake < 0 && c->rcvtimeo_ms != slice) {
            struct timeval tv = {.tv_sec = slice / 1000, .tv_usec = (slice % 1000) * 1000};
            if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
                return -1;
            c->rcvtimeo_ms = slice;
        }
        if (c->icap - c->ilen < 65536) {
            size_t ncap = c->icap * 2 > c->ilen + 65536 ? c->icap * 2 : c->ilen + 65536;
            char *nb = realloc(c->ibuf, ncap);
            if (!nb)
                return -1;
            c->ibuf = nb;
            c->icap = ncap;
        }
        c->ipeak = c->icap; /* a caller reads into it: not quiet */
        if (c->tls) {
            /* TLS: what the session holds first, then wait for the socket without any lock and read
             * again (tls->lock only around each non-blocking SSL_read; writers go on meanwhile) */
            ssize_t n = cnode__tx_recv(c, c->ibuf + c->ilen, c->icap - c->ilen);
            if (n > 0) {
                c->ilen += (size_t)n;
                return n;
            }
            if (n == 0 || errno != EAGAIN)
                return n == 0 ? 0 : -1;
            struct pollfd pf[2] = {{.fd = c->fd, .events = POLLIN}, {.fd = wake, .events = POLLIN}};
            int r = poll(pf, wake >= 0 ? 2 : 1, slice);
            if (r < 0 && errno != EINTR)
                return -1;
            if (r > 0 && wake >= 0 && (pf[1].revents & POLLIN))
                return lead_woken(wake);
            if (r == 0 && quick)
                return 1;
            continue; /* readable (perhaps only part of a record), or the slice passed: the deadline */
        }
        int flags = 0;
        if (wake >= 0) { /* a receiver: wait for the socket or its wake-up, then read without waiting */
            struct pollfd pf[2] = {{.fd = c->fd, .events = POLLIN}, {.fd = wake, .events = POLLIN}};
            int r = poll(pf, 2, slice);
            if (r < 0 && errno != EINTR)
                return -1;
            if (r > 0 && (pf[1].revents & POLLIN))
                return lead_woken(wake);
            if (r <= 0) {
                if (quick)
                    return 1;
                continue; /* the slice passed: the deadline */
            }
            flags = MSG_DONTWAIT;
        }
        /* plain: the one blocking read of a connection (not cnode__tx_recv, which never waits) */
        ssize_t n = recv(c->fd, c->ibuf + c->ilen, c->icap - c->ilen, flags);
        if (n > 0) {
            c->ilen += (size_t)n;
            return n;
        }
        if (n == 0)
            return 0;
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (quick)
            return 1; /* a quick slice passed: look again (SO_RCVLOWAT may drop to 1) */
    }
}

int
cnode__conn_lead(cnode_node *node, cnode__peer *peer, cnode__conn *c, int (*done)(void *),
                 size_t (*want)(void *), void *arg, const struct timespec *deadline)
{
    return cnode__conn_lead_ex(node, peer, c, CNODE__LEAD_ERPC, -1, done, want, arg, deadline);
}

int
cnode__conn_lead_ex(cnode_node *node, cnode__peer *peer, cnode__conn *c, unsigned claims, int wake,
                    int (*done)(void *), size_t (*want)(void *), void *arg, const struct timespec *deadline)
{
    int64_t young_until = cnode__now_ms() + LEAD_YOUNG_MS;
    for (int got = 0;; got = 1) {
        pthread_mutex_lock(&node->lock);
        cnode__erpc_defer_wakes(1); /* the callers whose replies we complete wake once we let go */
        int rc = lead_frames(node, peer, c, got, claims);
        int fin = done(arg);
        size_t w = want && c->ilen == c->skip ? want(arg) : 0;
        /* replies that only another reader completes are due (callbacks, callers asleep): whoever
         * reads next is the loop; replies to callers that will come back and read (a window of
         * requests) leave the socket to them, the loop re-arms it after LAZY_MS otherwise */
        c->rearm_now = peer->loop_waits > 0;
        cnode__erpc_defer_wakes(0);
        pthread_mutex_unlock(&node->lock);
        cnode__erpc_wake();
        if (fin)
            return 1;
        if (rc < 0 || c->skip)
            return 0; /* frames for the loop: it gets them now, not when this call ends */
        if (cnode__out_should_flush(peer, 0)) { /* a batch held back goes out before this thread waits */
            cnode__out_flush_deferred();
            cnode__out_flush(node, peer);
        }
        int quick = cnode__now_ms() < young_until;
        /* while young, wake only once the whole reply can be there (SO_RCVLOWAT: the socket
         * is out of epoll's interest, the loop sets it back before it re-arms) */
        set_lowat(c, quick && w ? (int)w : 1);
        if (lead_recv(c, deadline, quick, wake) <= 0)
            return 0;
    }
}

void
cnode__conn_pending(cnode_node *node)
{
    int again = 1;
    while (again) {
        again = 0;
        for (cnode__conn *c = node->conns; c; c = c->next) {
            int expect = RT_FREE;
            if (c->state != CONN_UP || !atomic_load(&c->pending_in) ||
                !atomic_compare_exchange_strong(&c->rtoken, &expect, RT_LOOP))
                continue;
            c->rd = 2;
            const char *err = read_frames(node, c);
            if (!err && c->tls && cnode__tx_buffered(c))
                c->tx_more = node->tx_more = 1; /* a reading caller left decrypted records */
            atomic_store(&c->rtoken, RT_FREE);
            if (err && c->state != CONN_DEAD)
                cnode__conn_close(node, c, *err ? err : NULL);
            again = 1; /* the list may have changed under the dispatch: start over */
            break;
        }
    }
}

int
cnode__conn_more(cnode_node *node, struct epoll_event *evs, int n, int cap)
{
    if (!node->tx_more)
        return n;
    node->tx_more = 0;
    for (cnode__conn *c = node->conns; c; c = c->next) {
        if (!c->tx_more)
            continue;
        int seen = 0;
        for (int i = 0; i < n && !seen; i++)
            seen = evs[i].data.ptr == c;
        if (!seen && n == cap) {
            node->tx_more = 1; /* no room this turn: the next one */
            continue;
        }
        c->tx_more = 0;
        if (!seen)
            evs[n++] = (struct epoll_event){.events = EPOLLIN, .data.ptr = c};
    }
    return n;
}
