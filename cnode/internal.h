/* Runtime internals shared by the files of cnode/. Not installed.
 *
 * Locking (outermost first; never take an earlier lock while holding a later one):
 *   node->lock   processes, names, peers' state, links, monitors, mailboxes
 *   peer->wlock  the peer's output queue and socket writes
 *   node->qlock  the request queue to the I/O thread
 * The I/O thread owns connection set-up and epoll registration, and every
 * socket's reads except while a waiting caller holds an up connection's read
 * token (conn.c, cnode/README.md "Callers that read"). Any thread may write a frame straight to an up connection
 * whose queue is empty (peer->wlock); otherwise the frame is queued and the
 * I/O thread flushes it.
 */
#ifndef CNODE_INTERNAL_H
#define CNODE_INTERNAL_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#include "cnode.h"
#include "ei_glue/glue.h"

#define CNODE__NAME_MAX 256

typedef struct cnode__peer cnode__peer;
typedef struct cnode__conn cnode__conn;
typedef struct cnode__resolver cnode__resolver;
typedef struct cnode__tls cnode__tls;         /* tls.c: one connection's TLS session */
typedef struct cnode__tls_ctx cnode__tls_ctx; /* tls.c: a node's TLS configuration */

/* A socket address of either family (addr.c). */
typedef union {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} cnode__sockaddr;

/* A pid kept compactly: peer NULL means this node. */
typedef struct {
    cnode__peer *peer;
    uint32_t num, serial, creation;
} cnode__xpid;

/* An output frame owned by a queue. */
typedef struct cnode__obuf {
    struct cnode__obuf *next;
    size_t len, off;
    size_t cap; /* room in data: deferred frames are appended to the tail while it has some */
    char data[];
} cnode__obuf;

enum { CONN_RESOLVING, CONN_EPMD_CONNECT, CONN_EPMD_READ, CONN_CONNECTING, CONN_TLS, CONN_HANDSHAKE, CONN_UP, CONN_DEAD };

/* One socket: an epmd lookup, a handshake in either direction, or an up connection. */
struct cnode__conn {
    int fd;
    int state;
    int outgoing;          /* we dialled */
    cnode__peer *peer;     /* dial: the node dialled; accept: set only once the peer proved the cookie */
    char *ibuf;            /* input bytes not yet consumed */
    size_t ilen, icap;
    size_t ipeak;          /* the most ibuf held since the last housekeeping turn (icap: a caller read) */
    int iquiet;            /* housekeeping turns in a row with ipeak small (conn.c: ibuf_shrink) */
    char *hbuf;            /* epmd output not yet written */
    size_t hlen, hoff;
    cnode__hs *hs;         /* CONN_HANDSHAKE: the machine, holding the peer's name until it is proven */
    int hs_pollout;        /* EPOLLOUT armed for handshake output */
    struct in6_addr addr;  /* accept: the source address (cnode__addr_key: IPv4 as IPv4-mapped) */
    cnode__conn *hs_prev, *hs_next; /* accept, in the handshake: node->hs_head list, oldest first */
    char host[CNODE__NAME_MAX];
    cnode__sockaddr haddr;    /* outgoing: host's address (port 0), once resolved */
    uint16_t port;
    struct timespec deadline; /* handshake must finish by then */
    int rd;                   /* CONN_UP: what the last fill saw: 1 data, 2 nothing more, 0 EOF, -1 error */
    /* CONN_UP: the read token (cnode/README.md, "Callers that read"). Whoever holds it owns ibuf,
     * ilen, skip and the socket's input; a caller that holds it has the socket out of epoll's
     * read interest. Taken by a caller only under node->lock on an up connection. */
    _Atomic int rtoken;       /* RT_FREE, RT_LOOP or RT_CALLER */
    size_t skip;              /* ibuf's first skip bytes: whole frames a caller left for the loop */
    _Atomic int pending_in;   /* frames wait in ibuf for the loop (it looks at the next wake-up) */
    int io_tok;               /* loop thread: this turn's fill took the token */
    int rcvtimeo_ms;          /* SO_RCVTIMEO in force (token holder), 0 none */
    int lowat;                /* SO_RCVLOWAT in force (token holder); 1 whenever armed */
    int rearm_now;            /* the holder lets go with others' replies due: read interest back at once */
    int armed;                /* epoll has read interest (peer->wlock) */
    _Atomic int64_t released_ms; /* a caller let go of the token, leaving the socket unarmed (lazy) */
    int close_later;          /* closed while a caller read: the fd is closed at reap, after its release */
    cnode__tls *tls;          /* TLS nodes, from the TCP connect on (CONN_TLS); freed at reap */
    int tx_more;              /* loop thread: the transport holds input epoll cannot see (TLS buffers) */
    struct cnode__conn *next; /* node->conns */
};

/* One source address whose handshake failures were logged lately (conn.c). */
typedef struct {
    struct in6_addr addr; /* cnode__addr_key form */
    int cookie;        /* wrong cookies and other failures are logged apart */
    int64_t until_ms;  /* quiet until then */
    unsigned suppressed;
} cnode__hs_logslot;

/* Everything we know of one other node. Found by name under node->lock;
 * anything that keeps the pointer past node->lock (a stored pid, a link, a
 * monitor, a queued message or request, a connection, a call in flight, a
 * thread between unlock and send) holds a reference (cnode__peer_hold).
 * The loop frees a record that is down, idle and unreferenced
 * (cnode__peer_sweep), so names that come and go do not pile up. */
struct cnode__peer {
    char name[CNODE__NAME_MAX];
    _Atomic unsigned refs; /* holders, as above */
    cnode__peer *next;     /* node->peers, under node->lock */
    cnode__peer *hnext;    /* node->peer_tab bucket, under node->lock */
    uint32_t hash;
    cnode__peer *dnext;    /* node->dirty_head list, under node->qlock */
    int on_dirty;          /* on that list, under node->qlock */
    /* state, under node->lock */
    cnode__conn *up;       /* the up connection, or NULL */
    cnode__conn *dialling; /* our outgoing attempt, or NULL */
    int fd;                /* up->fd, or -1; readable without node->lock by writers holding wlock */
    cnode__conn *wconn;    /* up, as writers see it (with fd, under wlock): what cnode__tx_writev writes to */
    uint64_t flags;        /* flags in force */
    uint32_t creation;
    unsigned generation;   /* bumped at every nodedown */
    /* output, under wlock */
    pthread_mutex_t wlock;
    cnode__obuf *oq_head, *oq_tail;
    size_t oq_bytes;
    _Atomic int dirty;     /* queued output the I/O thread must flush */
    int connect_req;       /* a REQ_CONNECT is queued: senders do not queue another */
    int epollout;          /* EPOLLOUT armed */
    cnode__obuf *spare;    /* a written chunk kept for the next deferred frames (wlock) */
    uint64_t q_in;         /* bytes ever put in the queue (wlock) */
    _Atomic uint64_t q_out; /* ... and taken out of it (written or dropped; written under wlock) */
    _Atomic unsigned q_deferred; /* frames deferred into the queue since it was last empty (written under wlock) */
    int q_urgent;          /* the queue holds a frame that was not deferred: the loop writes it this turn (wlock) */
    int q_hold;            /* ... a frame held for a worker's reply (CNODE__DEFER_HOLD) (wlock) */
    int64_t defer_since_ms; /* when q_deferred left 0 (wlock) */
    /* timing, I/O thread only (last_write is atomic: writers stamp it) */
    struct timespec last_read;
    _Atomic int64_t last_write_ms;
    /* waiters for connect (ping), under node->lock */
    pthread_cond_t up_cond;
    pthread_cond_t room_cond; /* output queue fell below limits.out_queue_bytes (wlock) */
    int overflow;             /* queue passed the hard cap: the link is being taken down (wlock) */
    size_t spawn_reply_len; /* a spawn reply's frame as a reading caller last saw it (node->lock): see conn.c */
    _Atomic unsigned inflight; /* erpc requests to it in the table (changed under node->lock; out.c reads it) */
    unsigned unspawned;    /* of those, sent and not yet answered by a spawn reply (node->lock): see erpc.c req_want */
    unsigned loop_waits;   /* of those, the ones only a reader other than their caller completes: callbacks
                            * in flight, callers asleep (node->lock); a reading caller re-arms at once for them */
    int connect_failed;    /* bumped when an attempt fails */
    int tls_refused;       /* the last attempt failed in the TLS layer (node->lock) */
    char last_error[128]; /* why the last attempt failed (for cnode_error) */
};

typedef struct cnode__mbox_msg {
    struct cnode__mbox_msg *next;
    int has_from;
    cnode__xpid from;
    size_t len;
    char *data; /* with 131; handed to the receiver as its ei_x_buff */
} cnode__mbox_msg;

typedef struct {
    cnode__xpid pid;
    uint64_t unlink_id; /* 0: active; else unlinking, waiting for the ack */
} cnode__link;

/* A monitor's reference without erlang_ref's 1 KB node name buffer (a node keeps one or two per
 * monitored process: a pg scope, one per node of the cluster): the numbers, and the node as a
 * pointer to a name the record outlives (this node's, or the name of a peer the record holds),
 * or a copy it owns (own). */
typedef struct {
    const char *node;
    char *own;
    uint32_t n[5];
    uint32_t creation;
    int len;
} cnode__mref;

typedef struct {
    cnode__mref ref; /* made by this node (cnode_make_ref): node is this node's name */
    int by_name;
    cnode__xpid target;   /* by pid */
    char *name;           /* by name (malloc'd) */
    cnode__peer *name_peer; /* node of the name; NULL = local */
} cnode__mon;

typedef struct {
    cnode__mref ref; /* made by the watcher's node, as a rule */
    cnode__xpid watcher;
    int by_name; /* the watcher monitors our registered name */
} cnode__monby;

enum { PROC_ALIVE, PROC_DEAD };

struct cnode_proc {
    cnode_node *node;
    uint32_t num, serial;
    erlang_pid pid;
    char *regname;
    int state;
    int trap_exit;
    int closed;              /* the user released the handle */
    int sys;                 /* a system process of the runtime */
    ei_x_buff exit_reason;   /* when killed */
    cnode__mbox_msg *mq_head, *mq_tail;
    size_t mq_len;
    pthread_cond_t cond;
    cnode__link *links;
    size_t nlinks, caplinks;
    cnode__mon *mons;
    size_t nmons, capmons;
    cnode__monby *monby;
    size_t nmonby, capmonby;
    erlang_pid group_leader;
    int has_gl;
    /* system processes handle messages on the loop thread instead of queueing */
    void (*sys_handler)(cnode_proc *p, const cnode__xpid *from, const char *data, size_t len);
    void *job; /* server.c: the call this process serves */
    void *sys_ud; /* the owner of a system process's sys_handler (pg: its scope) */
    /* receivers that read (proc.c): the peer this process last sent to (held), whether a
     * receiver reads a socket for it, and the eventfd (its thread's) that wakes that reader */
    cnode__peer *last_peer;
    int wake_fd;
    int leading;
};

#define CNODE__MAX_PROCS ((size_t)1 << 24)

typedef struct cnode__req {
    struct cnode__req *next;
    int kind;
    cnode__peer *peer;
} cnode__req;
enum { REQ_CONNECT = 1, REQ_DISCONNECT, REQ_STOP, REQ_OVERFLOW, REQ_BAD_DATA };

enum { RT_FREE, RT_LOOP, RT_CALLER };

/* Hook for layers above the runtime (erpc client, server, pg): called on the
 * I/O thread with node->lock held for every control message the runtime does
 * not consume itself. Return 1 if consumed. */
typedef int cnode__ctl_hook(cnode_node *node, cnode__peer *peer, const cnode__ctl *c, void *ud);
typedef void cnode__peer_hook(cnode_node *node, cnode__peer *peer, int up, void *ud);

/* A user callback to run after the loop lets go of node->lock. */
typedef struct cnode__event {
    struct cnode__event *next;
    int up;
    char name[CNODE__NAME_MAX];
    char reason[64];
} cnode__event;

/* A log line held while the loop holds node->lock (loop thread only). */
typedef struct cnode__logline {
    struct cnode__logline *next;
    int level;
    char msg[];
} cnode__logline;
#define CNODE__LOGQ_MAX 1024

/* Counters behind cnode_node_stats(); any thread, relaxed atomics. */
typedef struct {
    _Atomic uint64_t mailbox_kills, send_waits, send_timeouts, out_queue_overflows, served_refused,
        handshakes_evicted, handshakes_refused, handshakes_timed_out, auth_failures, peers_refused,
        bad_data_disconnects, accept_pauses, handshakes_now, peers_now, served_now, caller_reads,
        out_frames, out_writes, deferred_frames;
} cnode__stats;
#define CNODE__STAT_ADD(node, field, n) atomic_fetch_add_explicit(&(node)->stats.field, (n), memory_order_relaxed)
#define CNODE__STAT_SUB(node, field, n) atomic_fetch_sub_explicit(&(node)->stats.field, (n), memory_order_relaxed)

struct cnode_node {
    cnode_node_opts opts;
    cnode_limits limits;  /* opts.limits with every default filled in */
    cnode__stats stats;
    char name[2 * CNODE__NAME_MAX + 2]; /* alive@host, checked to be < 256 bytes */
    char alive[CNODE__NAME_MAX];
    char host[CNODE__NAME_MAX];
    char cookie[1024];
    uint32_t creation;
    uint64_t flags;
    unsigned ticktime_ms;
    size_t max_frame;

    int listen_fd, epmd_fd, epfd, evfd;
    uint16_t port;
    uint16_t epmd_port;
    pthread_t io_thread;
    int has_io_thread;
    _Atomic int stopping;
    _Atomic int lazy_mode;       /* some up socket was left unarmed by a caller: the loop re-arms it soon */
    _Atomic int defer_mode;      /* out.c: 0 none, 1 the loop ticks every ms, 2 frames deferred since its last tick */

    pthread_mutex_t lock;
    pthread_mutex_t loop_lock;   /* who runs the loop (poll mode) */
    pthread_cond_t loop_cond;
    cnode_proc **procs;          /* by num */
    uint32_t *serials;           /* next serial of each slot */
    size_t nprocs_cap;
    uint32_t free_hint;
    cnode__peer *peers;          /* every peer, under node->lock */
    cnode__peer **peer_tab;      /* the same by name hash, under node->lock */
    size_t peer_tab_size, npeers;
    int sweep_turns;             /* housekeeping turns since the last peer sweep (loop thread) */
    size_t ibuf_freed;           /* read-buffer bytes given back since the last malloc_trim (loop thread; conn.c) */
    cnode__peer *dirty_head;     /* peers with output to flush, under qlock */
    cnode__conn *conns;          /* I/O thread only */
    /* conn.c, I/O thread only: accepted connections in the handshake, oldest
     * first (limits.handshakes bounds hs_count), and the log rate limit */
    cnode__conn *hs_head, *hs_tail;
    unsigned hs_count;
    cnode__hs_logslot hs_log[16];
    _Atomic uint64_t ref_counter;
    uint32_t ref_salt;
    struct timespec next_tick;

    pthread_mutex_t qlock;
    cnode__req *q_head, *q_tail;

    cnode_proc *sys_gl;          /* group leader for requests we send */
    cnode__ctl_hook *ctl_hooks[4];
    void *ctl_hook_ud[4];
    cnode__peer_hook *peer_hooks[4];
    void *peer_hook_ud[4];
    int nhooks, npeerhooks;
    cnode__event *ev_head, *ev_tail; /* under node->lock */
    struct cnode__erpc *erpc;        /* erpc client state (erpc.c) */
    struct cnode__server *server;    /* registered functions, workers (server.c) */
    struct cnode_pg_scope *pg;       /* pg scopes (pg/) */
    /* periodic work of layers above, every housekeeping turn, node->lock held */
    void (*tick_hooks[4])(cnode_node *node, void *ud);
    void *tick_hook_ud[4];
    int ntickhooks;
    /* work after the loop lets go of node->lock (callbacks) */
    void (*post_hooks[4])(cnode_node *node, void *ud);
    void *post_hook_ud[4];
    int nposthooks;
    void (*close_hooks[4])(cnode_node *node); /* after the loop stopped */
    void (*pre_close_hooks[4])(cnode_node *node); /* first thing in close, the loop still running */
    int npreclosehooks;
    int nclosehooks;
    atomic_int pg_hooks;
    int stop_loop;                   /* loop thread only */
    /* loop thread only: */
    cnode__logline *logq_head, *logq_tail; /* log lines made under node->lock */
    int nlogq;
    unsigned long logq_dropped;
    cnode__conn *dead_conns;         /* closed this turn, freed at its end */
    cnode__resolver *resolver;       /* resolve.c; created by the loop thread */
    int accept_paused;               /* listen socket out of epoll (EMFILE) */
    struct timespec accept_resume;
    int64_t accept_logged_ms;
    cnode__tls_ctx *tls;             /* TLS node (tls.c), else NULL */
    int tx_more;                     /* loop thread: some connection has c->tx_more */
};

/* util.c */
/* While set to a node (by its loop, around node->lock), cnode__log keeps
 * that node's lines for cnode__log_flush, after the lock is let go. */
extern __thread cnode_node *cnode__log_defer_node;
void cnode__log_flush(cnode_node *node);
void cnode__log(cnode_node *node, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void cnode__seterr(cnode_error *err, int code, const char *node, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int64_t cnode__now_ms(void);
void cnode__error_classify(cnode_error *err);
void cnode__deadline_after(struct timespec *ts, int64_t ms);
int cnode__past(const struct timespec *ts);
int cnode__strip_version(const ei_x_buff *b, const char **p, size_t *len);
void cnode__cond_init(pthread_cond_t *c);
/* Wait until signalled or the CLOCK_MONOTONIC deadline (NULL: forever); 1 if the deadline passed. */
int cnode__cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *deadline);
uint16_t cnode__epmd_port(void);
/* pthread_create with every signal blocked in the new thread. */
int cnode__thread_create(pthread_t *t, void *(*fn)(void *), void *arg);
int cnode__connect_tmo(const cnode__sockaddr *sa, int timeout_ms);

/* node.c */
cnode__peer *cnode__peer_get(cnode_node *node, const char *name, int create);
/* A reference keeps the record from being reclaimed (NULL is ignored). Take
 * it under node->lock, or from a pointer already held; drop it anywhere. */
void cnode__peer_hold(cnode__peer *p);
void cnode__peer_release(cnode__peer *p);
/* Free the records that are down, idle and unreferenced. Loop thread, node->lock held. */
void cnode__peer_sweep(cnode_node *node);
/* -1 if pid is remote and its node's record could not be had (unknown and
 * create_peer 0, or over limits.peers): out->peer is then NULL, which would
 * read as local, so callers must check. */
int cnode__xpid_of(cnode_node *node, const erlang_pid *pid, cnode__xpid *out, int create_peer);
void cnode__xpid_to_pid(cnode_node *node, const cnode__xpid *x, erlang_pid *out);
int cnode__xpid_eq(const cnode__xpid *a, const cnode__xpid *b);
int cnode__is_local(cnode_node *node, const char *nodename);
void cnode__wake(cnode_node *node);
/* The request holds a reference on peer until the loop has handled it. */
int cnode__enqueue_req(cnode_node *node, int kind, cnode__peer *peer);
/* Ask the I/O thread to dial peer, unless a request is already queued. */
void cnode__request_connect(cnode_node *node, cnode__peer *peer);
void cnode__add_ctl_hook(cnode_node *node, cnode__ctl_hook *hook, void *ud);
void cnode__add_peer_hook(cnode_node *node, cnode__peer_hook *hook, void *ud);
void cnode__add_tick_hook(cnode_node *node, void (*hook)(cnode_node *, void *), void *ud);
void cnode__add_post_hook(cnode_node *node, void (*hook)(cnode_node *, void *), void *ud);
void cnode__add_close_hook(cnode_node *node, void (*hook)(cnode_node *));
void cnode__add_pre_close_hook(cnode_node *node, void (*hook)(cnode_node *));

/* out.c: frames to a peer. cnode__send_frame never waits (signals, replies of
 * the runtime); cnode__send_frame_wait is for messages and calls: past
 * limits.out_queue_bytes it waits for room (never on the loop thread, never
 * with node->lock held) and gives CNODE_ETIMEOUT after limits.send_timeout_ms. */
int cnode__send_frame(cnode_node *node, cnode__peer *peer, const char *hdr, size_t hlen, const char *payload, size_t plen);
int cnode__send_frame_wait(cnode_node *node, cnode__peer *peer, const char *hdr, size_t hlen, const char *payload,
                           size_t plen);
/* send_frame_wait of a frame in pieces (at most 4), written with one sendmsg as they are (zero-copy). */
int cnode__send_iov_wait(cnode_node *node, cnode__peer *peer, const struct iovec *v, int nv);
/* Put peer on the list the loop flushes at the end of its turn. */
void cnode__mark_dirty(cnode_node *node, cnode__peer *peer);
int cnode__send_ctl(cnode_node *node, cnode__peer *peer, const cnode__ctl *c, const char *payload, size_t plen);
int cnode__send_ctl_wait(cnode_node *node, cnode__peer *peer, const cnode__ctl *c, const char *payload, size_t plen);
int cnode__flush_peer(cnode_node *node, cnode__peer *peer, int may_wait);
void cnode__drop_output(cnode__peer *peer);

/* The node whose loop this thread is running now (NULL elsewhere). */
extern __thread cnode_node *cnode__loop_thread_node;
/* Set while the loop runs user callbacks: their sends never wait for room. */
extern __thread int cnode__send_nowait;
/* Set by a thread that will send more frames soon: its frames to an up peer are queued without a
 * syscall and go out, many per sendmsg, with the next write to that peer by any thread, when a
 * caller blocks for a reply from it (cnode__out_should_flush), or at the loop's next turn (about
 * a millisecond at most). CNODE__DEFER_MINE (workers, whose thread outlives no node): the thread
 * also keeps the peers in a list and calls cnode__out_flush_deferred before it sleeps.
 * CNODE__DEFER_PEER (erpc requests with others in flight): no list (an application thread may
 * outlive the node). CNODE__DEFER_HOLD (the loop's spawn reply to a call a worker will answer):
 * held until a write to the peer takes it along (the worker's reply, usually) or it is a tick
 * old, so a quick call's spawn reply and result go out in one sendmsg. */
enum { CNODE__DEFER_MINE = 1, CNODE__DEFER_PEER = 2, CNODE__DEFER_HOLD = 3 };
extern __thread int cnode__send_defer;
/* Set by the loop for a spawn reply a worker can carry instead: if another thread holds the peer's
 * write lock (a worker inside sendmsg, preempted there at one CPU), the frame is not sent and
 * CNODE__SEND_BUSY is returned, so the loop never sleeps on that lock (server.c). */
extern __thread int cnode__send_try;
#define CNODE__SEND_BUSY 1
/* After a deferred send: the peer's q_in once the frame was queued (it is on the wire once q_out
 * reaches it); 0 after a send that was not deferred. */
extern __thread uint64_t cnode__defer_mark;
/* Write what this thread deferred (any thread but the loop). */
void cnode__out_flush_deferred(void);
/* Before this thread blocks for a reply from peer (mark: its request's cnode__defer_mark, or 0):
 * should it flush first? Yes when its own request is still queued, or when the batch is ready:
 * half of what is in flight to peer waits in the queue, or the oldest waited a millisecond;
 * otherwise the peer still has plenty to answer and the batch grows (the loop's tick bounds it). */
int cnode__out_should_flush(cnode__peer *peer, uint64_t mark);
/* Write what is queued for peer, if its socket takes it (any thread but the loop). */
void cnode__out_flush(cnode_node *node, cnode__peer *peer);
/* Loop thread, before it sleeps: how long it may sleep while deferred frames wait (-1: no bound). */
int cnode__out_defer_tick(cnode_node *node);

/* addr.c: the address family of a transport, in one place for TCP and TLS */
int cnode__proto_family(cnode_proto_dist proto); /* AF_INET6 for inet6_*, else AF_INET */
int cnode__node_family(const cnode_node *node);
socklen_t cnode__sockaddr_len(const cnode__sockaddr *a);
void cnode__sockaddr_set_port(cnode__sockaddr *a, uint16_t port);
uint16_t cnode__sockaddr_port(const cnode__sockaddr *a);
/* 1: host is a numeric address of family (*out set, port 0); 0: it is not */
int cnode__sockaddr_literal(int family, const char *host, cnode__sockaddr *out);
void cnode__sockaddr_loopback(int family, uint16_t port, cnode__sockaddr *out);
/* A non-blocking, close-on-exec stream socket of family; -1 with errno */
int cnode__socket(int family);
/* A socket of a's family with its connect to a started (non-blocking): fd, or -1 with errno */
int cnode__dial(const cnode__sockaddr *a);
/* The source address as the per-address bounds and logs key it: IPv4 as IPv4-mapped IPv6 */
void cnode__addr_key(const cnode__sockaddr *a, struct in6_addr *key);
/* The key as text (IPv4-mapped ones as dotted quads); cap >= INET6_ADDRSTRLEN */
void cnode__addr_key_str(const struct in6_addr *key, char *out, size_t cap);
/* A node name's host part for a node of family: NULL if fine, else why not (brackets, a
 * malformed IPv6 literal, an IPv6 literal on an IPv4 transport). Host names pass. */
const char *cnode__host_check(const char *host, int family);

/* resolve.c: host names off the loop thread (loop thread only, but stop) */
/* 0: *out is the address now; 1: asked, cnode__conn_resolved follows; -1: cannot */
int cnode__resolve(cnode_node *node, const char *host, cnode__sockaddr *out);
/* Answers that came in: cache them, move waiting dials on (node->lock held). */
void cnode__resolve_poll(cnode_node *node);
/* After the loop stopped: ends the resolver thread. */
void cnode__resolve_stop(cnode_node *node);

/* loop.c */
int cnode__loop_once(cnode_node *node, int timeout_ms);
void *cnode__io_main(void *arg);

/* conn.c */
void cnode__conn_start_outgoing(cnode_node *node, cnode__peer *peer);
void cnode__conn_accept(cnode_node *node);
void cnode__conn_event(cnode_node *node, cnode__conn *c, uint32_t events);
void cnode__conn_close(cnode_node *node, cnode__conn *c, const char *reason);
void cnode__conn_housekeeping(cnode_node *node);
void cnode__conn_trim(cnode_node *node); /* loop thread, no lock held: malloc_trim after read buffers shrank */
/* Callers that read (leader/follower). Under node->lock: take peer's up connection's read token
 * for this caller (NULL if down or held). Then, without node->lock, cnode__conn_disarm takes the
 * socket out of epoll's read interest, cnode__conn_lead reads and completes replies (claim
 * hooks, node->lock taken per batch) until done(arg) (checked under node->lock) or the deadline,
 * and cnode__conn_release gives the token back. */
cnode__conn *cnode__conn_take_locked(cnode_node *node, cnode__peer *peer);
void cnode__conn_disarm(cnode_node *node, cnode__peer *peer, cnode__conn *c);
/* 1: done(arg) became true; 0: stopped (deadline, EOF, error, frames for the loop) */
int cnode__conn_lead(cnode_node *node, cnode__peer *peer, cnode__conn *c, int (*done)(void *),
                     size_t (*want)(void *), void *arg, const struct timespec *deadline);
void cnode__conn_release(cnode_node *node, cnode__peer *peer, cnode__conn *c);
/* The same reader, saying what it completes besides ticks: CNODE__LEAD_ERPC, replies erpc callers
 * wait for (cnode__erpc_claim); CNODE__LEAD_MSGS, messages to mailboxes without callbacks
 * (cnode__proc_claim), never past an older frame left for the loop. wake >= 0: an eventfd the
 * reader also waits on (see cnode__conn_lead_ex in conn.c). cnode__conn_lead is ERPC, no wake. */
enum { CNODE__LEAD_ERPC = 1, CNODE__LEAD_MSGS = 2 };
int cnode__conn_lead_ex(cnode_node *node, cnode__peer *peer, cnode__conn *c, unsigned claims, int wake,
                        int (*done)(void *), size_t (*want)(void *), void *arg, const struct timespec *deadline);
/* node->lock held, on a reading caller's thread: deliver c if it is a plain message by pid to a live
 * local process's mailbox that is not one of the runtime's own (the ctl hooks only ever take
 * messages to those) and has no callback; 0: the loop's to dispatch. */
int cnode__proc_claim(cnode_node *node, const cnode__ctl *c);
/* Loop thread, node->lock held: dispatch frames callers left in connections' buffers. */
void cnode__conn_pending(cnode_node *node);
/* Loop thread, no lock: re-arm the sockets callers left unarmed a while ago; ms until the next look, or -1. */
int cnode__conn_lazy(cnode_node *node);
/* wlock held: set the up socket's epoll interest from the read token and peer->epollout; nothing
 * if fd (c's, read while c was certainly alive) is no longer peer's. */
void cnode__conn_arm(cnode_node *node, cnode__peer *peer, cnode__conn *c, int fd);
/* resolve.c's answer for host (NULL addr: no address): dials waiting for it go on */
void cnode__conn_resolved(cnode_node *node, const char *host, const cnode__sockaddr *addr);
/* Without node->lock: read what an up connection has, up to limits.read_budget. */
void cnode__conn_fill(cnode_node *node, cnode__conn *c, uint32_t events);
/* Free the connections closed this turn (loop thread, end of turn). */
void cnode__conn_reap(cnode_node *node);
/* accept failed for want of descriptors: stop polling the listen socket a while */
void cnode__accept_pause(cnode_node *node, int err);
void cnode__push_event(cnode_node *node, int up, const char *name, const char *reason);

/* Add an event for each connection whose transport holds input epoll cannot report (c->tx_more),
 * after the n in evs (at most cap); the new n. Loop thread. */
int cnode__conn_more(cnode_node *node, struct epoll_event *evs, int n, int cap);

/* tls.c: the transport. Every read and write of a distribution connection's socket goes
 * through these two (epmd's do not): plain, recv/sendmsg with MSG_DONTWAIT (and MSG_NOSIGNAL);
 * TLS, SSL_read/SSL_write under the connection's own lock (one SSL object is never used by two
 * threads at once). Like recv/sendmsg: bytes, 0 at EOF (recv), or -1 with errno (EAGAIN when
 * it would block; EPROTO for a TLS failure, named by cnode__tx_error). */
ssize_t cnode__tx_recv(cnode__conn *c, void *buf, size_t len);
ssize_t cnode__tx_writev(cnode__conn *c, const struct iovec *iov, int iovcnt);
/* TLS: decrypted bytes wait in the session (a read stopped short of them): epoll will not tell. */
int cnode__tx_buffered(cnode__conn *c);
/* Why the TLS session failed ("TLS: ..."), or NULL. Valid until the connection is freed. */
const char *cnode__tx_error(const cnode__conn *c);
/* Node set-up: opts' TLS fields and optfile into node->tls (OpenSSL loaded now). 0, or
 * CNODE_ECONFIG / CNODE_ENOMEM with err filled. */
int cnode__tls_setup(cnode_node *node, const cnode_node_opts *opts, cnode_error *err);
void cnode__tls_ctx_free(cnode__tls_ctx *t);
/* A TLS session on c->fd, client (c->outgoing: SNI and host check from c->host) or server. 0 or -1. */
int cnode__tls_conn_new(cnode_node *node, cnode__conn *c);
void cnode__tls_conn_free(cnode__conn *c);
/* Drive the TLS handshake: 1 done, 0 again (*want_write: wait for EPOLLOUT too), -1 failed
 * (cnode__tx_error says why). Loop thread. */
int cnode__tls_step(cnode__conn *c, int *want_write);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" (static or the session's) for the nodeup log line. */
const char *cnode__tls_describe(cnode__conn *c, char *buf, size_t cap);

/* tls_opts.c: the options of one side (server: accepting, client: dialling), from
 * cnode_tls_opts and the ssl_dist_optfile. Strings are malloc'd. */
typedef struct {
    char *certfile, *keyfile, *cafile, *ciphers, *sni;
    int verify;               /* -1 unset, else CNODE_TLS_VERIFY_PEER / _NONE */
    int fail_if_no_peer_cert; /* -1 unset, 0, 1 */
    int sni_disable;          /* client: server_name_indication disable */
    unsigned versions;        /* CNODE_TLS_V1_* bits; 0 unset */
    int depth;                /* -1 unset */
} cnode__tls_side;
void cnode__tls_side_init(cnode__tls_side *s);
void cnode__tls_side_free(cnode__tls_side *s);
/* Parse ssl_dist_optfile text into the two sides (fields it sets replace theirs). 0, or -1
 * with why ("{server, ...}: verify_fun cannot be honoured (...)"). */
int cnode__tls_optfile_parse(const char *text, cnode__tls_side *server, cnode__tls_side *client, char *why,
                             size_t cap);

/* proc.c (node->lock held unless noted) */
cnode_proc *cnode__proc_by_pid(cnode_node *node, const erlang_pid *pid);
cnode_proc *cnode__proc_by_name(cnode_node *node, const char *name);
int cnode__proc_new_locked(cnode_node *node, const char *name, int sys, cnode_proc **out);
void cnode__deliver(cnode_proc *p, const cnode__xpid *from, const char *data, size_t len);
void cnode__proc_die(cnode_proc *p, const char *reason, size_t rlen); /* reason without 131 */
/* The runtime is done with a system process: it dies with reason (if alive) and is freed. */
void cnode__proc_finish(cnode_proc *p, const char *reason, size_t rlen);
void cnode__peer_down(cnode_node *node, cnode__peer *peer);
int cnode__pid_is_stale_local(cnode_node *node, const erlang_pid *pid);
void cnode__signal_exit(cnode_proc *p, const cnode__xpid *from, const char *reason, size_t rlen, int via_link);
int cnode__add_monby(cnode_proc *p, const erlang_ref *ref, const cnode__xpid *watcher, int by_name);
int cnode__add_link(cnode_proc *p, const cnode__xpid *who);
/* erlang:monitor/2 from proc, node->lock held. name: NULL for a pid monitor. */
int cnode__monitor_locked(cnode_proc *proc, const erlang_pid *target, const char *name, const char *nodename,
                          erlang_ref *ref);
int cnode__demonitor_locked(cnode_proc *proc, const erlang_ref *ref);
/* Send a term (with 131) from proc to {name, node}, node->lock held. */
void cnode__reg_send_locked(cnode_proc *from, const char *name, cnode__peer *peer, const char *term, size_t len);
void cnode__proc_exit_all(cnode_node *node, const char *reason);
int cnode__monitor_fired(cnode_proc *p, const erlang_ref *ref, const char *reason, size_t rlen);
void cnode__remove_monby(cnode_proc *p, const erlang_ref *ref);
void cnode__peer_unlinked(cnode_proc *p, const cnode__xpid *who);
void cnode__unlink_acked(cnode_proc *p, const cnode__xpid *who, uint64_t id);
/* Send a term (with its 131) from the runtime itself, with no sender pid. */
void cnode__send_term(cnode_node *node, const erlang_pid *to, const char *term, size_t len);
void cnode__proc_reap_all(cnode_node *node);
void cnode__shutdown_io(cnode_node *node);

/* dispatch.c: I/O thread, node->lock held */
void cnode__dispatch(cnode_node *node, cnode__peer *peer, const cnode__ctl *c);

/* erpc.c: the erpc client; loop thread */
int cnode__erpc_start(cnode_node *node);
void cnode__erpc_stop(cnode_node *node);
/* ms until the next request deadline, or -1; and expiring those past it */
int64_t cnode__erpc_next_deadline(cnode_node *node);
void cnode__erpc_expire(cnode_node *node);
void cnode__erpc_fire(cnode_node *node);
/* node->lock held, any thread: complete the call c answers if a caller waits for it (no callback); 1 if taken. */
/* A completer that defers waking waiters until it let go of node->lock (set around the locked
 * part), then wakes them (cnode__erpc_wake, no lock held). */
void cnode__erpc_defer_wakes(int on);
void cnode__erpc_wake(void);
int cnode__erpc_claim(cnode_node *node, const cnode__ctl *c);

/* server.c */
int cnode__server_start(cnode_node *node);
void cnode__server_stop(cnode_node *node);
void cnode__server_free(cnode_node *node);

/* sys.c */
int cnode__sys_start(cnode_node *node);
int cnode__sys_reg_send(cnode_node *node, cnode__peer *peer, const cnode__ctl *c);
int cnode__sys_name(const char *name);

#endif
