/* Node life cycle: names, cookie, listen socket, epmd registration, peers,
 * the request queue into the I/O thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cnode/internal.h"

static pthread_once_t ei_once = PTHREAD_ONCE_INIT;
static int ei_init_rc;

static void
do_ei_init(void)
{
    ei_init_rc = ei_init();
}

static int
read_cookie_file(char *out, size_t cap)
{
    const char *home = getenv("HOME");
    if (!home)
        return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/.erlang.cookie", home);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = 0;
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' ' || out[n - 1] == '\t'))
        out[--n] = 0;
    return n > 0 ? 0 : -1;
}

static int
valid_alive(const char *s, size_t n)
{
    if (n == 0 || n >= CNODE__NAME_MAX / 2)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(c == '_' || c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return 0;
    }
    return 1;
}

static int
make_names(cnode_node *node, cnode_error *err)
{
    const char *name = node->opts.name;
    const char *at = strchr(name, '@');
    size_t alen = at ? (size_t)(at - name) : strlen(name);
    if (!valid_alive(name, alen)) {
        cnode__seterr(err, CNODE_EINVAL, NULL, "invalid node name '%s'", name);
        return CNODE_EINVAL;
    }
    memcpy(node->alive, name, alen);
    node->alive[alen] = 0;
    if (at) {
        if (!at[1] || strlen(at + 1) >= CNODE__NAME_MAX / 2 || strchr(at + 1, '@')) {
            cnode__seterr(err, CNODE_EINVAL, NULL, "invalid host in node name '%s'", name);
            return CNODE_EINVAL;
        }
        const char *bad = cnode__host_check(at + 1, cnode__node_family(node));
        if (bad) {
            cnode__seterr(err, CNODE_EINVAL, NULL, "invalid host in node name '%s': %s", name, bad);
            return CNODE_EINVAL;
        }
        snprintf(node->host, sizeof node->host, "%s", at + 1);
    } else {
        char h[CNODE__NAME_MAX];
        if (gethostname(h, sizeof h - 1) != 0) {
            cnode__seterr(err, CNODE_ESYS, NULL, "gethostname: %s", strerror(errno));
            return CNODE_ESYS;
        }
        h[sizeof h - 1] = 0;
        if (!node->opts.longnames) {
            char *dot = strchr(h, '.');
            if (dot)
                *dot = 0;
        } else if (!strchr(h, '.')) {
            struct addrinfo hints = {0}, *res = NULL;
            hints.ai_flags = AI_CANONNAME;
            hints.ai_family = cnode__node_family(node);
            if (getaddrinfo(h, NULL, &hints, &res) == 0 && res && res->ai_canonname && strchr(res->ai_canonname, '.'))
                snprintf(h, sizeof h, "%s", res->ai_canonname);
            if (res)
                freeaddrinfo(res);
        }
        snprintf(node->host, sizeof node->host, "%s", h);
    }
    if (!node->opts.longnames && strchr(node->host, '.')) {
        cnode__seterr(err, CNODE_EINVAL, NULL, "short node name with a dotted host '%s' (use longnames)", node->host);
        return CNODE_EINVAL;
    }
    snprintf(node->name, sizeof node->name, "%s@%s", node->alive, node->host);
    if (strlen(node->name) >= CNODE__NAME_MAX) {
        cnode__seterr(err, CNODE_EINVAL, NULL, "node name '%s' longer than 255 bytes", node->name);
        return CNODE_EINVAL;
    }
    return 0;
}

uint16_t
cnode__epmd_port(void)
{
    const char *s = getenv("ERL_EPMD_PORT");
    if (s && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (*end == 0 && v > 0 && v < 65536)
            return (uint16_t)v;
    }
    return 4369;
}

/* Blocking connect with a deadline; used only at start (epmd) and by callers' threads. */
int
cnode__connect_tmo(const cnode__sockaddr *sa, int timeout_ms)
{
    int fd = cnode__socket(sa->sa.sa_family);
    if (fd < 0)
        return -1;
    if (connect(fd, &sa->sa, cnode__sockaddr_len(sa)) != 0) {
        if (errno != EINPROGRESS) {
            close(fd);
            return -1;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (poll(&pfd, 1, timeout_ms) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            close(fd);
            errno = soerr ? soerr : ETIMEDOUT;
            return -1;
        }
    }
    return fd;
}

static int
io_full(int fd, char *buf, size_t len, int out, int timeout_ms)
{
    size_t done = 0;
    int64_t end = cnode__now_ms() + timeout_ms;
    while (done < len) {
        ssize_t n = out ? send(fd, buf + done, len - done, MSG_NOSIGNAL) : recv(fd, buf + done, len - done, 0);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n == 0)
            return (int)done;
        if (errno != EAGAIN && errno != EINTR)
            return -1;
        int left = (int)(end - cnode__now_ms());
        if (left <= 0)
            return -1;
        struct pollfd pfd = {.fd = fd, .events = out ? POLLOUT : POLLIN};
        poll(&pfd, 1, left);
    }
    return (int)done;
}

static int
epmd_register(cnode_node *node, cnode_error *err)
{
    /* As erl_epmd registers: at the loopback address of the transport's family
     * (::1 for inet6_*). If that fails, an inet6 node tries 127.0.0.1 as well:
     * epmd is one registry per host whatever family reaches it, and one bound
     * to IPv4 only (ERL_EPMD_ADDRESS=127.0.0.1, or an IPv4-only build) still
     * serves the peers that look the name up over IPv4 loopback. BEAM has no
     * such fallback and would fail to start there. */
    cnode__sockaddr sa;
    int family = cnode__node_family(node);
    cnode__sockaddr_loopback(family, node->epmd_port, &sa);
    int fd = cnode__connect_tmo(&sa, 3000);
    if (fd < 0 && family == AF_INET6) {
        cnode__sockaddr_loopback(AF_INET, node->epmd_port, &sa);
        fd = cnode__connect_tmo(&sa, 3000);
    }
    if (fd < 0) {
        cnode__seterr(err, CNODE_EEPMD, NULL, "cannot reach epmd on port %u: %s", node->epmd_port, strerror(errno));
        return CNODE_EEPMD;
    }
    char req[600];
    size_t n = cnode__epmd_alive2_req(req, sizeof req, node->port, node->alive);
    char resp[16];
    int got;
    if (n == 0 || io_full(fd, req, n, 1, 3000) != (int)n || (got = io_full(fd, resp, 1, 0, 3000)) != 1) {
        close(fd);
        cnode__seterr(err, CNODE_EEPMD, NULL, "epmd on port %u did not answer ALIVE2", node->epmd_port);
        return CNODE_EEPMD;
    }
    size_t want = (unsigned char)resp[0] == 121 ? 4 : 6;
    if (io_full(fd, resp + 1, want - 1, 0, 3000) != (int)want - 1) {
        close(fd);
        cnode__seterr(err, CNODE_EEPMD, NULL, "epmd closed during ALIVE2");
        return CNODE_EEPMD;
    }
    cnode__epmd_alive2_resp r;
    const char *why = NULL;
    if (cnode__epmd_alive2_resp_decode(resp, want, &r, &why) <= 0) {
        close(fd);
        cnode__seterr(err, CNODE_EEPMD, NULL, "bad ALIVE2 reply from epmd: %s", why ? why : "?");
        return CNODE_EEPMD;
    }
    if (r.result != 0) {
        close(fd);
        cnode__seterr(err, CNODE_ENAMETAKEN, node->name, "epmd refused '%s' (name taken?)", node->alive);
        return CNODE_ENAMETAKEN;
    }
    node->creation = r.creation;
    node->epmd_fd = fd;
    return 0;
}

/* The distribution's listen socket: IPv4 for inet_*, as inet_tcp_dist; for
 * inet6_* IPv6, dual-stack (IPV6_V6ONLY off, so IPv4 peers reach it too, as
 * ones of a mixed cluster may) where the host allows it. */
static int
open_listen(cnode_node *node, cnode_error *err)
{
    int family = cnode__node_family(node);
    int fd = cnode__socket(family);
    if (fd < 0 && family == AF_INET6 && (errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT)) {
        cnode__seterr(err, CNODE_ESYS, NULL, "IPv6 is not available on this host (socket: %s); the %s transport needs it",
                      strerror(errno), node->opts.proto_dist == CNODE_PROTO_INET6_TLS ? "inet6_tls" : "inet6_tcp");
        return CNODE_ESYS;
    }
    if (fd < 0) {
        cnode__seterr(err, CNODE_ESYS, NULL, "socket: %s", strerror(errno));
        return CNODE_ESYS;
    }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    cnode__sockaddr sa;
    memset(&sa, 0, sizeof sa);
    sa.sa.sa_family = (sa_family_t)family;
    if (family == AF_INET6) {
        sa.in6.sin6_addr = in6addr_any;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero); /* refused: IPv6 only, still fine */
    } else {
        sa.in.sin_addr.s_addr = htonl(INADDR_ANY);
    }
    socklen_t sl = sizeof sa;
    if (bind(fd, &sa.sa, cnode__sockaddr_len(&sa)) != 0 || listen(fd, 128) != 0 || getsockname(fd, &sa.sa, &sl) != 0) {
        cnode__seterr(err, CNODE_ESYS, NULL, "listen: %s", strerror(errno));
        close(fd);
        return CNODE_ESYS;
    }
    node->listen_fd = fd;
    node->port = cnode__sockaddr_port(&sa);
    return 0;
}

static void peer_free(cnode__peer *p);

static void
node_free(cnode_node *node)
{
    cnode__resolve_stop(node); /* the loop is gone: nobody asks any more */
    if (node->listen_fd >= 0)
        close(node->listen_fd);
    if (node->epmd_fd >= 0)
        close(node->epmd_fd);
    if (node->epfd >= 0)
        close(node->epfd);
    if (node->evfd >= 0)
        close(node->evfd);
    cnode__peer *p = node->peers;
    while (p) {
        cnode__peer *nx = p->next;
        peer_free(p);
        p = nx;
    }
    cnode__req *r = node->q_head;
    while (r) {
        cnode__req *nx = r->next;
        free(r);
        r = nx;
    }
    free(node->peer_tab);
    free(node->procs);
    cnode__tls_ctx_free(node->tls);
    pthread_mutex_destroy(&node->lock);
    pthread_mutex_destroy(&node->loop_lock);
    pthread_cond_destroy(&node->loop_cond);
    pthread_mutex_destroy(&node->qlock);
    free(node);
}

static void
limits_defaults(cnode_limits *l, const cnode_limits *in)
{
    *l = *in;
#define DEF(f, v)                                                                                                      \
    if (!l->f)                                                                                                         \
        l->f = (v);
    DEF(mailbox_len, 1000000)
    DEF(out_queue_bytes, (size_t)1 << 20)
    DEF(send_timeout_ms, 5000)
    DEF(served_in_flight, 65536)
    DEF(handshakes, 256)
    DEF(handshakes_per_addr, 128)
    DEF(handshake_ms, 7000)
    DEF(peers, 65536)
    DEF(read_budget, 256u << 10)
#undef DEF
}

int
cnode_node_stats(cnode_node *node, cnode_stats *out)
{
    if (!node || !out)
        return CNODE_EINVAL;
#define RD(f) out->f = atomic_load_explicit(&node->stats.f, memory_order_relaxed);
    RD(mailbox_kills) RD(send_waits) RD(send_timeouts) RD(out_queue_overflows) RD(served_refused)
    RD(handshakes_evicted) RD(handshakes_refused) RD(handshakes_timed_out) RD(auth_failures) RD(peers_refused)
    RD(bad_data_disconnects) RD(accept_pauses) RD(handshakes_now) RD(peers_now) RD(served_now) RD(caller_reads)
    RD(out_frames) RD(out_writes) RD(deferred_frames)
#undef RD
    return 0;
}

int
cnode_node_new(const cnode_node_opts *opts, cnode_node **out, cnode_error *err)
{
    if (!opts || !opts->name || !out) {
        cnode__seterr(err, CNODE_EINVAL, NULL, "cnode_node_new: missing options or name");
        return CNODE_EINVAL;
    }
    if (opts->proto_dist < CNODE_PROTO_DEFAULT || opts->proto_dist > CNODE_PROTO_INET6_TLS) {
        cnode__seterr(err, CNODE_EINVAL, NULL, "cnode_node_new: unknown proto_dist %d", (int)opts->proto_dist);
        return CNODE_EINVAL;
    }
    pthread_once(&ei_once, do_ei_init);
    if (ei_init_rc != 0) {
        cnode__seterr(err, CNODE_ESYS, NULL, "ei_init failed");
        return CNODE_ESYS;
    }
    cnode_node *node = calloc(1, sizeof *node);
    if (!node) {
        cnode__seterr(err, CNODE_ENOMEM, NULL, "out of memory");
        return CNODE_ENOMEM;
    }
    node->opts = *opts;
    node->opts.name = NULL; /* borrowed for the call only */
    node->opts.cookie = NULL;
    memset(&node->opts.tls, 0, sizeof node->opts.tls); /* read below, during this call only */
    node->listen_fd = node->epmd_fd = node->epfd = node->evfd = -1;
    pthread_mutex_init(&node->lock, NULL);
    pthread_mutex_init(&node->loop_lock, NULL);
    pthread_cond_init(&node->loop_cond, NULL);
    pthread_mutex_init(&node->qlock, NULL);
    node->flags = CNODE__DFLAGS_OURS;
    node->ticktime_ms = (opts->ticktime_s ? opts->ticktime_s : 60) * 1000u;
    node->max_frame = opts->max_frame ? opts->max_frame : (128u << 20);
    if (node->max_frame > INT_MAX) {
        cnode__seterr(err, CNODE_EINVAL, NULL, "max_frame %zu is over INT_MAX", node->max_frame);
        free(node);
        return CNODE_EINVAL;
    }
    limits_defaults(&node->limits, &opts->limits);
    node->epmd_port = cnode__epmd_port();
    uint32_t salt = 0;
    if (getrandom(&salt, sizeof salt, 0) != sizeof salt)
        salt = (uint32_t)getpid() ^ (uint32_t)cnode__now_ms();
    node->ref_salt = salt;
    atomic_init(&node->ref_counter, 1);

    cnode_node_opts tmp = *opts;
    node->opts.name = tmp.name; /* make_names reads it during this call only */
    int rc = make_names(node, err);
    node->opts.name = NULL;
    if (rc != 0)
        goto fail;
    if (opts->cookie) {
        if (strlen(opts->cookie) >= sizeof node->cookie || !*opts->cookie) {
            cnode__seterr(err, CNODE_ECONFIG, NULL, "cookie empty or longer than %zu bytes", sizeof node->cookie - 1);
            rc = CNODE_ECONFIG;
            goto fail;
        }
        snprintf(node->cookie, sizeof node->cookie, "%s", opts->cookie);
    } else if (read_cookie_file(node->cookie, sizeof node->cookie) != 0) {
        cnode__seterr(err, CNODE_ECONFIG, NULL, "no cookie given and $HOME/.erlang.cookie unreadable");
        rc = CNODE_ECONFIG;
        goto fail;
    }
    if ((rc = cnode__tls_setup(node, opts, err)) != 0)
        goto fail;
    node->epfd = epoll_create1(EPOLL_CLOEXEC);
    node->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (node->epfd < 0 || node->evfd < 0) {
        cnode__seterr(err, CNODE_ESYS, NULL, "epoll/eventfd: %s", strerror(errno));
        rc = CNODE_ESYS;
        goto fail;
    }
    if ((rc = open_listen(node, err)) != 0)
        goto fail;
    if ((rc = epmd_register(node, err)) != 0)
        goto fail;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &node->listen_fd};
    epoll_ctl(node->epfd, EPOLL_CTL_ADD, node->listen_fd, &ev);
    ev.data.ptr = &node->evfd;
    epoll_ctl(node->epfd, EPOLL_CTL_ADD, node->evfd, &ev);
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = &node->epmd_fd;
    epoll_ctl(node->epfd, EPOLL_CTL_ADD, node->epmd_fd, &ev);
    if ((rc = cnode__sys_start(node)) != 0 || (rc = cnode__erpc_start(node)) != 0 ||
        (rc = cnode__server_start(node)) != 0) {
        cnode__seterr(err, rc, NULL, "cannot start system processes");
        goto fail;
    }
    if (!opts->no_io_thread) {
        if (cnode__thread_create(&node->io_thread, cnode__io_main, node) != 0) {
            cnode__seterr(err, CNODE_ESYS, NULL, "pthread_create failed");
            rc = CNODE_ESYS;
            goto fail;
        }
        node->has_io_thread = 1;
    }
    cnode__log(node, CNODE_LOG_INFO, "node %s up on port %u, creation %u", node->name, node->port, node->creation);
    *out = node;
    return 0;
fail:
    if (node->has_io_thread) {
        atomic_store(&node->stopping, 1);
        cnode__enqueue_req(node, REQ_STOP, NULL);
        pthread_join(node->io_thread, NULL);
    }
    cnode__server_stop(node);
    cnode__server_free(node);
    cnode__erpc_stop(node);
    cnode__proc_reap_all(node);
    node_free(node);
    return rc;
}

void
cnode_node_close(cnode_node *node)
{
    if (!node)
        return;
    for (int i = 0; i < node->npreclosehooks; i++)
        node->pre_close_hooks[i](node); /* e.g. pg: leave every group before anything stops */
    cnode__server_stop(node); /* running handlers finish while connections still work */
    atomic_store(&node->stopping, 1);
    if (node->has_io_thread) {
        cnode__enqueue_req(node, REQ_STOP, NULL);
        pthread_join(node->io_thread, NULL);
    } else {
        cnode__shutdown_io(node);
    }
    cnode__server_free(node);
    cnode__erpc_stop(node);
    for (int i = 0; i < node->nclosehooks; i++)
        node->close_hooks[i](node);
    cnode__proc_reap_all(node);
    node_free(node);
}

const char *
cnode_node_name(const cnode_node *node)
{
    return node ? node->name : "";
}

uint32_t
cnode_node_creation(const cnode_node *node)
{
    return node ? node->creation : 0;
}

/* ---- peers ---------------------------------------------------------------------- */

static uint32_t
name_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static int
peer_tab_grow(cnode_node *node)
{
    size_t n = node->peer_tab_size ? node->peer_tab_size * 2 : 64;
    cnode__peer **t = calloc(n, sizeof *t);
    if (!t)
        return -1;
    for (cnode__peer *p = node->peers; p; p = p->next) {
        p->hnext = t[p->hash & (n - 1)];
        t[p->hash & (n - 1)] = p;
    }
    free(node->peer_tab);
    node->peer_tab = t;
    node->peer_tab_size = n;
    return 0;
}

/* node->lock held. A new record only with create, a valid name and room
 * under limits.peers (else NULL, counted). */
cnode__peer *
cnode__peer_get(cnode_node *node, const char *name, int create)
{
    uint32_t h = name_hash(name);
    if (node->peer_tab)
        for (cnode__peer *p = node->peer_tab[h & (node->peer_tab_size - 1)]; p; p = p->hnext)
            if (p->hash == h && strcmp(p->name, name) == 0)
                return p;
    if (!create || strlen(name) >= CNODE__NAME_MAX || !strchr(name, '@'))
        return NULL;
    if (node->npeers >= node->limits.peers) {
        CNODE__STAT_ADD(node, peers_refused, 1);
        return NULL;
    }
    if (node->npeers >= node->peer_tab_size && peer_tab_grow(node) != 0)
        return NULL;
    cnode__peer *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    snprintf(p->name, sizeof p->name, "%s", name);
    p->hash = h;
    p->fd = -1;
    pthread_mutex_init(&p->wlock, NULL);
    cnode__cond_init(&p->up_cond);
    cnode__cond_init(&p->room_cond);
    p->next = node->peers;
    node->peers = p;
    p->hnext = node->peer_tab[h & (node->peer_tab_size - 1)];
    node->peer_tab[h & (node->peer_tab_size - 1)] = p;
    node->npeers++;
    CNODE__STAT_ADD(node, peers_now, 1);
    return p;
}

void
cnode__peer_hold(cnode__peer *p)
{
    if (p)
        atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

void
cnode__peer_release(cnode__peer *p)
{
    /* release: whatever the holder did to the record happens before the sweep sees 0 */
    if (p)
        atomic_fetch_sub_explicit(&p->refs, 1, memory_order_release);
}

static void
peer_free(cnode__peer *p)
{
    cnode__drop_output(p);
    pthread_mutex_destroy(&p->wlock);
    pthread_cond_destroy(&p->up_cond);
    pthread_cond_destroy(&p->room_cond);
    free(p);
}

/* Is p down and idle: nothing queued, nothing asked of the loop, nobody
 * holding it? With node->lock held and no reference out, nobody can find p
 * except through the table, which needs node->lock. */
static int
peer_reclaimable(cnode_node *node, cnode__peer *p)
{
    if (p->up || p->dialling || atomic_load_explicit(&p->refs, memory_order_acquire) != 0)
        return 0;
    pthread_mutex_lock(&p->wlock);
    int busy = p->oq_head != NULL || p->connect_req;
    pthread_mutex_unlock(&p->wlock);
    pthread_mutex_lock(&node->qlock);
    busy = busy || p->on_dirty;
    pthread_mutex_unlock(&node->qlock);
    return !busy;
}

void
cnode__peer_sweep(cnode_node *node)
{
    for (cnode__peer **pp = &node->peers; *pp;) {
        cnode__peer *p = *pp;
        if (!peer_reclaimable(node, p)) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        for (cnode__peer **hp = &node->peer_tab[p->hash & (node->peer_tab_size - 1)]; *hp; hp = &(*hp)->hnext)
            if (*hp == p) {
                *hp = p->hnext;
                break;
            }
        node->npeers--;
        CNODE__STAT_SUB(node, peers_now, 1);
        peer_free(p);
    }
}

int
cnode__is_local(cnode_node *node, const char *nodename)
{
    return strcmp(node->name, nodename) == 0;
}

int
cnode__xpid_of(cnode_node *node, const erlang_pid *pid, cnode__xpid *out, int create_peer)
{
    int local = cnode__is_local(node, pid->node);
    out->peer = local ? NULL : cnode__peer_get(node, pid->node, create_peer);
    out->num = pid->num;
    out->serial = pid->serial;
    out->creation = pid->creation;
    return local || out->peer ? 0 : -1;
}

void
cnode__xpid_to_pid(cnode_node *node, const cnode__xpid *x, erlang_pid *out)
{
    cnode__pid_make(out, x->peer ? x->peer->name : node->name, x->num, x->serial, x->creation);
}

int
cnode__xpid_eq(const cnode__xpid *a, const cnode__xpid *b)
{
    return a->peer == b->peer && a->num == b->num && a->serial == b->serial && a->creation == b->creation;
}

void
cnode_make_ref(cnode_node *node, erlang_ref *out)
{
    uint64_t c = atomic_fetch_add(&node->ref_counter, 1);
    uint32_t id[3] = {(uint32_t)(c & 0x3ffff), (uint32_t)(c >> 18), node->ref_salt};
    cnode__ref_make(out, node->name, node->creation, id);
}

/* ---- the door into the I/O thread ---------------------------------------------------- */

void
cnode__wake(cnode_node *node)
{
    uint64_t one = 1;
    ssize_t n = write(node->evfd, &one, sizeof one);
    (void)n; /* EAGAIN means a wake-up is already pending */
}

int
cnode__enqueue_req(cnode_node *node, int kind, cnode__peer *peer)
{
    cnode__req *r = calloc(1, sizeof *r);
    if (!r)
        return CNODE_ENOMEM;
    r->kind = kind;
    r->peer = peer;
    cnode__peer_hold(peer);
    pthread_mutex_lock(&node->qlock);
    if (node->q_tail)
        node->q_tail->next = r;
    else
        node->q_head = r;
    node->q_tail = r;
    pthread_mutex_unlock(&node->qlock);
    cnode__wake(node);
    return 0;
}

/* One queued dial request per peer at most: a burst of sends to a node that
 * is down must not queue one request (and one dial) per message. */
void
cnode__request_connect(cnode_node *node, cnode__peer *peer)
{
    pthread_mutex_lock(&peer->wlock);
    int queue = !peer->connect_req;
    peer->connect_req = 1;
    pthread_mutex_unlock(&peer->wlock);
    if (queue && cnode__enqueue_req(node, REQ_CONNECT, peer) != 0) {
        pthread_mutex_lock(&peer->wlock);
        peer->connect_req = 0;
        pthread_mutex_unlock(&peer->wlock);
    }
}

void
cnode__add_ctl_hook(cnode_node *node, cnode__ctl_hook *hook, void *ud)
{
    pthread_mutex_lock(&node->lock);
    if (node->nhooks < 4) {
        node->ctl_hooks[node->nhooks] = hook;
        node->ctl_hook_ud[node->nhooks++] = ud;
    }
    pthread_mutex_unlock(&node->lock);
}

void
cnode__add_peer_hook(cnode_node *node, cnode__peer_hook *hook, void *ud)
{
    pthread_mutex_lock(&node->lock);
    if (node->npeerhooks < 4) {
        node->peer_hooks[node->npeerhooks] = hook;
        node->peer_hook_ud[node->npeerhooks++] = ud;
    }
    pthread_mutex_unlock(&node->lock);
}

void
cnode__add_tick_hook(cnode_node *node, void (*hook)(cnode_node *, void *), void *ud)
{
    pthread_mutex_lock(&node->lock);
    if (node->ntickhooks < 4) {
        node->tick_hooks[node->ntickhooks] = hook;
        node->tick_hook_ud[node->ntickhooks++] = ud;
    }
    pthread_mutex_unlock(&node->lock);
}

void
cnode__add_post_hook(cnode_node *node, void (*hook)(cnode_node *, void *), void *ud)
{
    pthread_mutex_lock(&node->lock);
    if (node->nposthooks < 4) {
        node->post_hooks[node->nposthooks] = hook;
        node->post_hook_ud[node->nposthooks++] = ud;
    }
    pthread_mutex_unlock(&node->lock);
}

void
cnode__add_close_hook(cnode_node *node, void (*hook)(cnode_node *))
{
    pthread_mutex_lock(&node->lock);
    if (node->nclosehooks < 4)
        node->close_hooks[node->nclosehooks++] = hook;
    pthread_mutex_unlock(&node->lock);
}

void
cnode__add_pre_close_hook(cnode_node *node, void (*hook)(cnode_node *))
{
    pthread_mutex_lock(&node->lock);
    if (node->npreclosehooks < 4)
        node->pre_close_hooks[node->npreclosehooks++] = hook;
    pthread_mutex_unlock(&node->lock);
}

/* ---- queries ------------------------------------------------------------------------- */

int
cnode_nodes(cnode_node *node, char ***names, size_t *count)
{
    if (!node || !names || !count)
        return CNODE_EINVAL;
    pthread_mutex_lock(&node->lock);
    size_t n = 0;
    for (cnode__peer *p = node->peers; p; p = p->next)
        if (p->up)
            n++;
    char **v = calloc(n + 1, sizeof *v);
    size_t i = 0;
    for (cnode__peer *p = node->peers; v && p; p = p->next)
        if (p->up && (v[i] = strdup(p->name)) != NULL)
            i++;
    pthread_mutex_unlock(&node->lock);
    if (!v)
        return CNODE_ENOMEM;
    *names = v;
    *count = i;
    return 0;
}

void
cnode_strv_free(char **v, size_t count)
{
    if (!v)
        return;
    for (size_t i = 0; i < count; i++)
        free(v[i]);
    free(v);
}

uint64_t
cnode_peer_flags(cnode_node *node, const char *peer)
{
    uint64_t f = 0;
    if (!node || !peer)
        return 0;
    pthread_mutex_lock(&node->lock);
    cnode__peer *p = cnode__peer_get(node, peer, 0);
    if (p && p->up)
        f = p->flags;
    pthread_mutex_unlock(&node->lock);
    return f;
}

int
cnode_disconnect(cnode_node *node, const char *peer)
{
    if (!node || !peer)
        return CNODE_EINVAL;
    pthread_mutex_lock(&node->lock);
    cnode__peer *p = cnode__peer_get(node, peer, 0);
    int up = p && p->up;
    int rc = up ? cnode__enqueue_req(node, REQ_DISCONNECT, p) : CNODE_ENOTFOUND;
    pthread_mutex_unlock(&node->lock);
    return rc;
}

/* Connects if needed and waits until up, failed or timed out. */
int
cnode_ping(cnode_node *node, const char *peer, unsigned timeout_ms, cnode_error *err)
{
    if (!node || !peer || !strchr(peer, '@')) {
        cnode__seterr(err, CNODE_EINVAL, peer, "invalid node name '%s'", peer ? peer : "(null)");
        return CNODE_EINVAL;
    }
    if (cnode__is_local(node, peer))
        return 0;
    pthread_mutex_lock(&node->lock);
    cnode__peer *p = cnode__peer_get(node, peer, 1);
    if (!p) {
        int full = node->npeers >= node->limits.peers && strlen(peer) < CNODE__NAME_MAX;
        pthread_mutex_unlock(&node->lock);
        if (full) {
            cnode__seterr(err, CNODE_ENOCONNECTION, peer, "cannot connect to %s: %u nodes known (limits.peers)", peer,
                          node->limits.peers);
            return CNODE_ENOCONNECTION;
        }
        cnode__seterr(err, CNODE_EINVAL, peer, "invalid node name '%s'", peer);
        return CNODE_EINVAL;
    }
    int rc = 0;
    cnode__peer_hold(p); /* the wait below lets go of node->lock */
    if (!p->up) {
        int failed0 = p->connect_failed;
        struct timespec dl;
        cnode__deadline_after(&dl, timeout_ms);
        pthread_mutex_unlock(&node->lock);
        cnode__request_connect(node, p);
        pthread_mutex_lock(&node->lock);
        while (!p->up && p->connect_failed == failed0 && !cnode__past(&dl)) {
            if (!node->has_io_thread) {
                pthread_mutex_unlock(&node->lock);
                cnode_poll(node, 20);
                pthread_mutex_lock(&node->lock);
            } else {
                cnode__cond_wait_until(&p->up_cond, &node->lock, &dl);
            }
        }
        if (!p->up)
            rc = p->connect_failed == failed0 ? CNODE_ETIMEOUT : p->tls_refused ? CNODE_EAUTH : CNODE_ENOCONNECTION;
    }
    char why[sizeof p->last_error];
    snprintf(why, sizeof why, "%s", p->last_error);
    cnode__peer_release(p);
    pthread_mutex_unlock(&node->lock);
    if (rc == CNODE_ENOCONNECTION || rc == CNODE_EAUTH)
        cnode__seterr(err, rc, peer, "cannot connect to %s%s%s", peer, why[0] ? ": " : "", why);
    else if (rc == CNODE_ETIMEOUT)
        cnode__seterr(err, rc, peer, "connecting to %s timed out after %u ms", peer, timeout_ms);
    return rc;
}
