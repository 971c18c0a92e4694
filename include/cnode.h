/* libcnode — a C node for Erlang/Elixir clusters.
 *
 * The whole public API. Every declaration states its contract:
 *  - threads: any thread may call any function unless its comment says not;
 *    each callback type names the thread it runs on;
 *  - pointers are "borrowed for the call" unless the comment says "kept until
 *    ..." or "yours, free with ...";
 *  - functions return 0 or a negative CNODE_E... code (cnode_strerror());
 *    details go to an optional cnode_error *; nothing is thread-local;
 *  - a call that fails never runs its callback; destructors accept NULL;
 *  - the library never prints, exits or aborts on bad input.
 * Terms are ei-encoded buffers (ei_x_buff, <ei.h>), built and read with ei
 * or with this API's builder, parser and printer.
 */
#ifndef CNODE_H
#define CNODE_H

#include <stddef.h>
#include <stdint.h>
#include <ei.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ------------------------------------------------------------ */
/* X(NAME, value, text). Codes are stable. */
#define CNODE_ERRNO_MAP(X)                                                                                                     \
    X(EINVAL, -1, "invalid argument")                                                                                          \
    X(ENOMEM, -2, "out of memory")                                                                                             \
    X(ENOCONNECTION, -3, "no connection to node")                                                                              \
    X(ETIMEOUT, -4, "timed out")                                                                                               \
    X(EEXCEPTION, -5, "remote exception")                                                                                      \
    X(ENOPROC, -6, "no such process")                                                                                          \
    X(EAUTH, -7, "handshake refused (cookie or flags)")                                                                        \
    X(ENAMETAKEN, -8, "node name already registered with epmd")                                                                \
    X(EEPMD, -9, "epmd unreachable or refused")                                                                                \
    X(ECLOSED, -10, "node or handle closed")                                                                                   \
    X(EAGAIN, -11, "not ready yet")                                                                                            \
    X(EBADMSG, -12, "malformed data")                                                                                          \
    X(ENOTSUP, -13, "not supported by the peer")                                                                               \
    X(EEXITED, -14, "process exited (exit signal)")                                                                            \
    X(ESYS, -15, "system call failed")                                                                                         \
    X(EUNAVAILABLE, -16, "service unavailable (no live member)")                                                               \
    X(ECONFIG, -17, "invalid configuration")                                                                                   \
    X(EVALIDATION, -18, "validation failed")                                                                                   \
    X(EEXIST, -19, "already exists")                                                                                           \
    X(ENOTFOUND, -20, "not found")

enum {
#define CNODE__ERRENUM(name, val, text) CNODE_##name = (val),
    CNODE_ERRNO_MAP(CNODE__ERRENUM)
#undef CNODE__ERRENUM
};

/* Static text for a CNODE_E... code; "unknown error" for anything else. */
const char *cnode_strerror(int code);

/* ---- error details --------------------------------------------------------- */
/* One struct for every failure. Zero it before first use (cnode_error e = {0});
 * functions that fail fill it when given one. Release with cnode_error_clear(),
 * which frees reason/stacktrace and leaves it zeroed and reusable. */
typedef struct cnode_error {
    int code;              /* CNODE_E... */
    char message[256];     /* human text */
    char node[256];        /* node involved, or "" */
    char module[256];      /* call details, or "" */
    char function[256];
    int arity;             /* -1 when not a call */
    int attempt;           /* 0-based attempt that failed */
    char exc_class[8];     /* CNODE_EEXCEPTION: "error", "throw" or "exit" */
    ei_x_buff reason;      /* CNODE_EEXCEPTION: the reason term, with 131 (buff NULL otherwise) */
    ei_x_buff stacktrace;  /* class "error" only: the stacktrace, with 131 */
    const char *type;      /* EasyRpc type: "rpc_error", "node_error", "timeout_error",
                              "config_error", "validation_error" (static), or NULL */
    const char *lb_code;   /* rpc_load_balancer code ("service_unavailable",
                              "request_timeout", "bad_request", "internal_server_error"
                              for a remote raise) or NULL (static) */
} cnode_error;
void cnode_error_clear(cnode_error *err);

/* ---- node ----------------------------------------------------------------- */
typedef struct cnode_node cnode_node; /* handle: until cnode_node_close() */
typedef struct cnode_proc cnode_proc; /* a C process: until cnode_proc_close() */

enum { CNODE_LOG_ERROR = 0, CNODE_LOG_WARNING = 1, CNODE_LOG_INFO = 2, CNODE_LOG_DEBUG = 3 };
/* Log hook. Runs on the thread that logs (often the I/O thread): keep it short,
 * never call back into the library. msg dies on return. */
typedef void cnode_log_cb(int level, const char *msg, void *user_data);
/* Node up/down. Runs on the I/O thread; node_name and reason die on return. */
typedef void cnode_nodeup_cb(const char *node_name, void *user_data);
typedef void cnode_nodedown_cb(const char *node_name, const char *reason, void *user_data);

/* Limits on what peers and users can make the node hold. Every field: 0 means
 * the default given here. Each says what happens when it is reached; none of
 * them ever drops a frame while the connection stays up. Counters of each
 * outcome are read with cnode_node_stats(). */
typedef struct cnode_limits {
    /* Messages queued in one C process's mailbox (default 1,000,000). The
     * message that would pass it kills the process with reason `system_limit`
     * (as BEAM's max_heap_size kills a process): its links and monitors fire,
     * cnode_receive() returns CNODE_EEXITED. */
    size_t mailbox_len;
    /* Bytes queued for one peer's socket (default 1 MiB, BEAM's +zdbbl). A
     * message send (cnode_send, cnode_reg_send, calls, rex replies) past it
     * waits until the queue drains below, as a BEAM process is suspended on a
     * busy distribution port; it fails with CNODE_ETIMEOUT after send_timeout_ms.
     * On a node without an I/O thread the waiting sender runs the loop itself.
     * Callbacks the loop runs (nodeup/nodedown, erpc completions, pg changes)
     * and signals the runtime itself sends (links, monitors, ticks, pg) never
     * wait: their frames are queued;
     * a queue that reaches 64 times this limit takes the connection down
     * ("output queue overflow"), so nothing is lost in the middle of a stream. */
    size_t out_queue_bytes;
    unsigned send_timeout_ms;  /* default 5000 */
    /* Calls served at once, queued or running (default 65536). A call past it
     * is answered as BEAM answers when its spawn fails with system_limit: the
     * erpc spawn request gets a spawn reply with error system_limit (the caller
     * raises error {erpc, system_limit}), rpc and rex calls get {badrpc,
     * {'EXIT', system_limit}}; a cast past it is dropped and counted. */
    unsigned served_in_flight;
    /* Connections in the handshake (default 256 overall, 128 from one
     * address). At either bound the oldest one that has not sent its name yet
     * (from that address, at the per-address bound) is closed to make room;
     * if every one has, the new one is refused. */
    unsigned handshakes;
    unsigned handshakes_per_addr;
    unsigned handshake_ms;     /* time to finish a handshake (default 7000, net_setuptime) */
    /* Other nodes known at once, connected or named in a pid (default 65536).
     * Past it a connection from a new node is refused and a term naming one is
     * undecodable for us: the link that carried it goes down. A node's record
     * is freed (within about a second) once it is down and nothing refers to
     * it any more: no link, monitor, queued message, call or pending send. */
    unsigned peers;
    /* Bytes read from one connection in one loop turn before the others are
     * served (default 256 KiB): one fast peer cannot starve the rest. */
    unsigned read_budget;
} cnode_limits;

/* The distribution transport, named as BEAM's -proto_dist names it. Both ends of a
 * connection must use the same one (epmd does not say which a node runs).
 * The inet6 ones, as inet6_tcp_dist: host parts are resolved to IPv6 (AAAA)
 * addresses only, IPv6 literals are written without brackets (`app@fdaa::3`,
 * `c@::1`, as node() gives them on BEAM), the node registers with epmd at ::1
 * (127.0.0.1 if epmd does not listen on ::1) and listens on IPv6, taking IPv4
 * too where the host allows dual-stack sockets. The inet ones take no IPv6
 * literal: a name with one is refused (CNODE_EINVAL) and cannot be dialled. */
typedef enum cnode_proto_dist {
    CNODE_PROTO_DEFAULT = 0, /* inet_tcp (inet_tls once TLS options are given) */
    CNODE_PROTO_INET_TCP,    /* TCP over IPv4 */
    CNODE_PROTO_INET6_TCP,   /* TCP over IPv6 */
    CNODE_PROTO_INET_TLS,    /* TLS over IPv4 */
    CNODE_PROTO_INET6_TLS,   /* TLS over IPv6 */
} cnode_proto_dist;

/* TLS distribution (inet_tls_dist): TLS first, then the ordinary handshake inside it. Any
 * field set here (or proto_dist *_TLS) makes the node speak TLS on every connection, both
 * ways; a peer on plain TCP is refused, and so is every peer of a plain node that speaks TLS.
 * Files are read at cnode_node_new, which refuses (CNODE_ECONFIG, err->message says why)
 * a file it cannot read, a key that does not match, or an option it cannot honour.
 * OpenSSL (libssl.so.3) is loaded then, and only then: a plain node never maps it. */
enum { CNODE_TLS_VERIFY_DEFAULT = 0, CNODE_TLS_VERIFY_PEER = 1, CNODE_TLS_VERIFY_NONE = 2 };
enum { CNODE_TLS_V1_2 = 1, CNODE_TLS_V1_3 = 2 }; /* cnode_tls_opts.versions bits */
typedef struct cnode_tls_opts {
    const char *certfile; /* PEM: this node's certificate (and chain); required to accept */
    const char *keyfile;  /* PEM: its private key (unencrypted); NULL: in certfile */
    const char *cafile;   /* PEM: the CAs a peer's certificate must chain to */
    /* DEFAULT: PEER when cafile is given, else NONE. PEER: a dialled node's certificate must
     * chain to cafile and name the host we dialled (DNS or IP subjectAltName, or CN), and a
     * dialling node must present one that chains to cafile (fail_if_no_peer_cert). NONE: no
     * checks at all (the link is encrypted, not authenticated: only the cookie says who). */
    int verify;
    /* Dialling: the name sent as SNI and checked against the certificate. NULL: the host
     * part of the node name dialled (as inet_tls_dist does); "": no SNI and no host check
     * (OTP's {server_name_indication, disable}). */
    const char *server_name;
    unsigned versions;   /* CNODE_TLS_V1_2 | CNODE_TLS_V1_3; 0: TLS 1.2 only, as OTP 25 */
    const char *ciphers; /* OpenSSL cipher names, ':'-separated (TLS_* are TLS 1.3 suites); NULL: OpenSSL's */
    /* BEAM's -ssl_dist_optfile: one term [{server, Opts}, {client, Opts}] (either may be
     * left out). Opts: certfile, keyfile, cacertfile, verify (verify_peer | verify_none),
     * fail_if_no_peer_cert (server), versions ('tlsv1.2', 'tlsv1.3'), ciphers (a string of
     * OpenSSL names or a list of them), server_name_indication (client: a host or disable),
     * depth; accepted and without effect here: secure_renegotiate (renegotiation is always
     * off), reuse_sessions, hibernate_after, log_level. Anything else, verify_fun, password,
     * crl_check, crl_cache, dhfile among them, is refused. What the file sets wins over the
     * fields above, side by side. */
    const char *optfile;
} cnode_tls_opts;

typedef struct cnode_node_opts {
    const char *name;      /* "alive" or "alive@host"; required */
    int longnames;         /* 0: -sname (host = short host name), 1: -name */
    const char *cookie;    /* NULL: read $HOME/.erlang.cookie */
    unsigned ticktime_s;   /* net_ticktime; 0 means 60 */
    int no_io_thread;      /* 1: no I/O thread; the application drives the loop (cnode_poll) */
    unsigned max_frame;    /* largest accepted frame in bytes; 0 means 128 MiB, at most INT_MAX
                              (a larger frame takes the link down) */
    unsigned workers;      /* handler threads for served calls; 0 means one per CPU the process may run on */
    cnode_log_cb *log;     /* NULL: no logging */
    int log_level;         /* most verbose level passed to log */
    cnode_nodeup_cb *on_nodeup;
    cnode_nodedown_cb *on_nodedown;
    void *user_data;       /* passed to every callback above */
    cnode_limits limits;   /* zeroed: every default */
    cnode_proto_dist proto_dist; /* 0: inet_tcp, or inet_tls when tls has any field set */
    cnode_tls_opts tls;          /* zeroed: no TLS (unless proto_dist says TLS: then every default) */
} cnode_node_opts;

/* Creates a node: listens on every address of its transport's family (an
 * ephemeral port; see cnode_proto_dist), registers with epmd as a hidden node (ERL_EPMD_PORT honoured, the epmd socket held open
 * for the node's life) and, unless no_io_thread, starts its I/O thread.
 * opts: borrowed for the call. *out: yours, close with cnode_node_close().
 * Errors: CNODE_EINVAL (bad name: also an IPv6 literal in brackets, a malformed
 * one, or one on an inet transport), CNODE_ECONFIG (no cookie; TLS files or
 * options refused; OpenSSL not installed), CNODE_EEPMD, CNODE_ENAMETAKEN,
 * CNODE_ESYS (also: an inet6 transport on a host without IPv6, said in err),
 * CNODE_ENOTSUP (a transport not built), CNODE_ENOMEM. */
int cnode_node_new(const cnode_node_opts *opts, cnode_node **out, cnode_error *err);
/* Stops the node: every live process exits with reason `shutdown`, every
 * connection closes, epmd forgets the name, the I/O thread is joined.
 * Handles of processes not yet closed are freed by it: close the ones you
 * want to close before, and touch none after. No other call may run
 * concurrently with or after this one. NULL is a no-op. */
void cnode_node_close(cnode_node *node);
/* What the limits did, counted since the node started, and what is held now. */
typedef struct cnode_stats {
    uint64_t mailbox_kills;        /* processes killed for a full mailbox */
    uint64_t send_waits;           /* sends that waited for a full output queue */
    uint64_t send_timeouts;        /* ... and gave up (CNODE_ETIMEOUT) */
    uint64_t out_queue_overflows;  /* connections taken down at 64 x out_queue_bytes */
    uint64_t served_refused;       /* served calls answered system_limit (casts dropped) */
    uint64_t handshakes_evicted;   /* silent handshakes closed to make room */
    uint64_t handshakes_refused;   /* over a handshake bound */
    uint64_t handshakes_timed_out;
    uint64_t auth_failures;        /* wrong cookie, either direction */
    uint64_t peers_refused;        /* over the peers bound */
    uint64_t bad_data_disconnects; /* links taken down for undecodable or oversized data */
    uint64_t accept_pauses;        /* accept paused on EMFILE/ENFILE */
    uint64_t handshakes_now;       /* connections in the handshake now */
    uint64_t peers_now;            /* peer records now */
    uint64_t served_now;           /* served calls queued or running now */
    uint64_t caller_reads;         /* frames a waiting caller or receiver read itself */
    uint64_t out_frames;           /* frames written to peers (or queued for them) */
    uint64_t out_writes;           /* sendmsg calls that wrote frames to peers: out_frames / out_writes per write */
    uint64_t deferred_frames;      /* frames held back to go out with others (calls in flight, batched replies) */
} cnode_stats;
/* Fills *out. CNODE_EINVAL on NULL. */
int cnode_node_stats(cnode_node *node, cnode_stats *out);
/* "alive@host"; lives as long as the node. */
const char *cnode_node_name(const cnode_node *node);
/* The creation number of this incarnation of the node (in its pids and refs); 0 for NULL. */
uint32_t cnode_node_creation(const cnode_node *node);
/* One turn of the event loop, for nodes made with no_io_thread: waits up to
 * timeout_ms (-1 forever) for I/O and handles it. Returns the number of events
 * handled, or a negative error. On a node with an I/O thread: CNODE_EINVAL. */
int cnode_poll(cnode_node *node, int timeout_ms);

/* Like net_adm:ping/1: connects if needed. 0 = pong; CNODE_ENOCONNECTION = pang
 * (unknown host, no epmd, not registered, refused, cookie), CNODE_ETIMEOUT;
 * CNODE_EAUTH: the TLS layer refused the connection (a certificate not trusted,
 * expired or naming another host, either side; the peer not speaking TLS, or
 * speaking it to a plain node); err->message names the reason. */
int cnode_ping(cnode_node *node, const char *peer, unsigned timeout_ms, cnode_error *err);
/* Connected nodes, like nodes(connected). *names: yours, free with
 * cnode_strv_free(*names, *count). */
int cnode_nodes(cnode_node *node, char ***names, size_t *count);
void cnode_strv_free(char **v, size_t count);
/* Drop the connection to peer (like erlang:disconnect_node/1). 0 or CNODE_ENOTFOUND. */
int cnode_disconnect(cnode_node *node, const char *peer);
/* Handshake flags in force with a connected peer (0 if not connected); lets
 * callers tell full nodes (spawn support) from ei-based clients. */
uint64_t cnode_peer_flags(cnode_node *node, const char *peer);
#define CNODE_PEER_SPAWN (1ULL << 32)

/* ---- processes --------------------------------------------------------------- */
/* A new C process with a pid and a mailbox; name: NULL, or a name to register.
 * *out: yours, cnode_proc_close() it. Errors: CNODE_EEXIST (name taken),
 * CNODE_ECLOSED, CNODE_ENOMEM, CNODE_EINVAL. */
int cnode_proc_new(cnode_node *node, const char *name, cnode_proc **out);
/* The process's pid; lives as long as the handle. */
const erlang_pid *cnode_proc_pid(const cnode_proc *proc);
/* The node the process belongs to. */
cnode_node *cnode_proc_node(const cnode_proc *proc);
/* Exit the process with reason (an encoded term, with or without its 131;
 * NULL means `normal`): linked processes get an exit signal and monitors a
 * DOWN with that reason. Frees the handle. NULL proc is a no-op. */
void cnode_proc_exit(cnode_proc *proc, const ei_x_buff *reason);
/* cnode_proc_exit with `normal`. */
void cnode_proc_close(cnode_proc *proc);
/* Register / unregister a local name. CNODE_EEXIST, CNODE_ENOTFOUND. */
int cnode_register(cnode_proc *proc, const char *name);
/* Frees a registered name of this node (any process's). CNODE_ENOTFOUND if not registered. */
int cnode_unregister(cnode_node *node, const char *name);
/* process_flag(trap_exit, on): with it, exit signals arrive as
 * {'EXIT', From, Reason} messages; without it a non-normal exit signal (or
 * `kill`) kills the process: receive then returns CNODE_EEXITED. */
int cnode_proc_trap_exit(cnode_proc *proc, int on);
/* 1 if the process is alive; 0 if it died of an exit signal. The reason is
 * appended to reason (if non-NULL) in external format with its 131. */
int cnode_proc_alive(cnode_proc *proc, ei_x_buff *reason);

/* ---- messages ----------------------------------------------------------------- */
/* msg: an encoded term, with or without its 131 version byte; borrowed.
 * Sends are asynchronous like Erlang's: 0 means queued (a connection is made
 * on demand; messages to an unreachable node are dropped, as in Erlang).
 * Past limits.out_queue_bytes queued for that node the call waits for room,
 * as a BEAM sender is suspended on a busy distribution port.
 * Errors: CNODE_EINVAL (bad term or pid), CNODE_EEXITED (sender dead),
 * CNODE_ETIMEOUT (no room within limits.send_timeout_ms: not sent),
 * CNODE_ENOCONNECTION (the connection is being taken down), CNODE_ECLOSED,
 * CNODE_ENOMEM. */
int cnode_send(cnode_proc *from, const erlang_pid *to, const ei_x_buff *msg);
/* {name, node} ! msg; node NULL or this node's name: local. */
int cnode_reg_send(cnode_proc *from, const char *name, const char *node, const ei_x_buff *msg);

/* A received message. data: the term with its 131 version byte. */
typedef struct cnode_msg {
    ei_x_buff data;
    int has_from;   /* 1 if the sender's pid is known */
    erlang_pid from;
} cnode_msg;
/* Release a message's buffer (NULL-safe, idempotent). */
void cnode_msg_free(cnode_msg *msg);
/* Take the oldest message. timeout_ms: 0 polls, -1 waits forever.
 * 0: *out filled (yours, cnode_msg_free). CNODE_ETIMEOUT: nothing arrived.
 * CNODE_EEXITED: the process was killed by an exit signal.
 * Only one thread should receive on a process at a time. */
int cnode_receive(cnode_proc *proc, int timeout_ms, cnode_msg *out);
/* Selective receive: the oldest message that is a tuple whose first or second
 * element is ref (or [alias|ref]): {Ref, _}, {'DOWN', Ref, ...}. Other messages
 * stay queued in order. */
int cnode_receive_ref(cnode_proc *proc, const erlang_ref *ref, int timeout_ms, cnode_msg *out);

/* ---- monitors, links, exit signals ------------------------------------------------- */
/* erlang:monitor(process, Target). DOWN arrives as the message
 * {'DOWN', Ref, process, Target, Reason}: the process's exit reason, `noproc`
 * if it does not exist, `noconnection` if its node goes away. */
int cnode_monitor(cnode_proc *proc, const erlang_pid *target, erlang_ref *ref);
/* erlang:monitor(process, {Name, Node}); node NULL = this node. DOWN names {Name, Node}. */
int cnode_monitor_name(cnode_proc *proc, const char *name, const char *node, erlang_ref *ref);
/* erlang:demonitor(Ref, [flush]). CNODE_ENOTFOUND if not an active monitor of proc. */
int cnode_demonitor(cnode_proc *proc, const erlang_ref *ref);
/* link/1 and unlink/1 (unlink-id protocol). Linking to a dead pid gives
 * {'EXIT', Pid, noproc} (when trapping exits). */
int cnode_link(cnode_proc *proc, const erlang_pid *target);
/* unlink/1: removes the link (unlink-id protocol); unlinking what is not linked is 0. */
int cnode_unlink(cnode_proc *proc, const erlang_pid *target);
/* exit(Target, Reason); reason: encoded term, NULL = normal. */
int cnode_exit_signal(cnode_proc *proc, const erlang_pid *target, const ei_x_buff *reason);
/* A fresh reference of this node. */
void cnode_make_ref(cnode_node *node, erlang_ref *out);

/* ---- calling BEAM: erpc semantics ------------------------------------------------------------ */
/* Module names are atoms as Erlang sees them ("Elixir.MyApp.Users"). args: an
 * encoded list term (with or without 131): the argument list. */

/* Like erpc:call/5: runs mod:fun(args...) on target in a fresh process (a spawn
 * request with a monitor) and waits up to timeout_ms. Any thread; blocks only
 * this thread. 0: the result term (with 131) is appended to *reply.
 *   CNODE_ETIMEOUT       no answer in time; the request is abandoned, a late reply dropped
 *   CNODE_ENOCONNECTION  target unreachable (unknown host, no epmd, not registered) or lost
 *   CNODE_EEXCEPTION     the callee raised: err->exc_class, err->reason, err->stacktrace
 *   CNODE_ENOTSUP        target cannot spawn (an ei-based node)
 *   CNODE_EINVAL         bad arguments (args not a list, names too long)
 * reply: yours, created by you (ei_x_new). err: NULL, or cnode_error_clear() it. */
int cnode_call(cnode_node *node, const char *target, const char *mod, const char *fun, const ei_x_buff *args,
               unsigned timeout_ms, ei_x_buff *reply, cnode_error *err);
/* Like erpc:cast/4: fire and forget. 0 once queued; CNODE_EINVAL on bad arguments. */
int cnode_cast(cnode_node *node, const char *target, const char *mod, const char *fun, const ei_x_buff *args);

typedef struct cnode_req cnode_req; /* one call in flight */
/* Completion callback: runs exactly once, on the I/O thread (keep it short; it
 * may call the library), never inside cnode_send_request(). reply and err die
 * on return; req is freed after it returns. status: 0 or a code as cnode_call. */
typedef void cnode_req_cb(cnode_req *req, int status, const ei_x_buff *reply, const cnode_error *err, void *user_data);
/* Like erpc:send_request/4. The request completes by itself after timeout_ms
 * with CNODE_ETIMEOUT. On 0, *req lives until its completion is taken: by cb if
 * set, else by cnode_receive_response(). On error cb never runs. */
int cnode_send_request(cnode_node *node, const char *target, const char *mod, const char *fun, const ei_x_buff *args,
                       unsigned timeout_ms, cnode_req_cb *cb, void *user_data, cnode_req **req);
/* Like erpc:receive_response/2 and wait_response/2. wait_ms: 0 polls, -1 waits.
 * Returns the call's status (as cnode_call) and frees req, or CNODE_EAGAIN if
 * it has not completed within wait_ms (req stays valid). Not for requests with
 * a callback (CNODE_EINVAL). */
int cnode_receive_response(cnode_req *req, int wait_ms, ei_x_buff *reply, cnode_error *err);
/* Like erpc:wait_response/2: the same as cnode_receive_response; CNODE_EAGAIN
 * is erpc's no_response (the request stays valid, wait again or abandon it). */
int cnode_wait_response(cnode_req *req, int wait_ms, ei_x_buff *reply, cnode_error *err);
/* Abandon a request without a callback (frees it); a late reply is dropped. */
void cnode_req_abandon(cnode_req *req);

/* One node's outcome in cnode_multicall. */
typedef struct cnode_result {
    int status;      /* 0 or a code as cnode_call */
    ei_x_buff reply; /* status 0: the value (with 131); free with cnode_result_free */
    cnode_error err;
} cnode_result;
/* Frees r->reply and r->err's details (NULL-safe); the struct itself stays the caller's. */
void cnode_result_free(cnode_result *r);
/* Like erpc:multicall/5: the call on every node at once; results[i] for
 * targets[i]. Returns 0 when every node was tried (each result has its status),
 * or CNODE_EINVAL. results: yours, n entries, cnode_result_free each. */
int cnode_multicall(cnode_node *node, const char *const *targets, size_t n, const char *mod, const char *fun,
                    const ei_x_buff *args, unsigned timeout_ms, cnode_result *results);

/* Module name as an atom, the one rule the client, the CLI and the balancer
 * use: an Elixir alias (a name starting with an uppercase letter, A-Z or
 * À-Þ but ×, in UTF-8) gets "Elixir." in front ("MyApp.Users" ->
 * "Elixir.MyApp.Users"); every other name ("lists", "Elixir.String", "_x") is
 * kept. Returns 0, or CNODE_EINVAL for an empty name or a result that does not
 * fit in cap or has over 255 characters (out is then "" when cap > 0). */
int cnode_module_atom(const char *name, char *out, size_t cap);
/* ---- serving BEAM: registered C functions ------------------------------------------------------ */
/* A call being served. Valid only inside the handler. */
typedef struct cnode_call_ctx cnode_call_ctx;
/* The arguments: buf holds the argument list with its 131; idx[i] is the ei
 * index of argument i, so `int i = args->idx[0]; ei_decode_long(args->buf, &i, &v)`. */
typedef struct cnode_args {
    const char *buf;
    int n;
    const int *idx;
} cnode_args;
/* Runs on a worker thread (never the I/O thread). It answers with exactly one of
 * cnode_reply / cnode_raise; returning without either answers the atom `ok`.
 * It may block; it may poll cnode_call_cancelled(). */
typedef void cnode_handler(cnode_call_ctx *ctx, const cnode_args *args, void *user_data);
/* Makes mod:fun/arity callable from BEAM (erpc:call/cast/send_request/multicall,
 * rpc:call/cast, and the rex server for erl_call and older clients). Only
 * registered functions are callable; anything else raises undef as on BEAM.
 * CNODE_EEXIST if already registered. user_data: kept until unregistered. */
int cnode_register_function(cnode_node *node, const char *mod, const char *fun, int arity, cnode_handler *handler,
                            void *user_data);
/* Removes a function registered with cnode_register_function: later calls raise undef.
 * CNODE_ENOTFOUND if it is not registered, CNODE_EINVAL on NULL. */
int cnode_unregister_function(cnode_node *node, const char *mod, const char *fun, int arity);
/* The result term (with or without 131); borrowed. CNODE_EINVAL if already answered. */
int cnode_reply(cnode_call_ctx *ctx, const ei_x_buff *term);
/* Raise: cls "error", "throw" or "exit", reason a term (with or without 131);
 * class error gets a stacktrace [{Mod, Fun, Args, []}] as a BEAM function would. */
int cnode_raise(cnode_call_ctx *ctx, const char *cls, const ei_x_buff *reason);
/* 1 once the caller gave up (erpc timeout: demonitor) or its node went down;
 * the result will be discarded. */
int cnode_call_cancelled(const cnode_call_ctx *ctx);
/* The node this call is served on. */
cnode_node *cnode_call_node(const cnode_call_ctx *ctx);
/* The pid of the process serving an erpc call (as self() in the callee), or
 * NULL for calls through rex. Valid inside the handler. */
const erlang_pid *cnode_call_self(const cnode_call_ctx *ctx);

/* Stop accepting calls and wait up to grace_ms for running handlers. */
int cnode_server_drain(cnode_node *node, unsigned grace_ms);

/* ---- pg: scopes, membership mirror ------------------------------------------------------------- */
typedef struct cnode_pg_scope cnode_pg_scope; /* until the node closes */

/* A member in a snapshot, kept compact: 16 bytes. node: the member's node
 * name, interned once per scope with the node's creation (it lives until the
 * node closes); the creation is not stored per member: cnode_pg_member_pid
 * finds it from the node pointer, so it only works on members read from a
 * snapshot. */
typedef struct cnode_pg_member {
    const char *node;
    uint32_t num, serial;
} cnode_pg_member;
/* The member's pid as ei's struct (with its creation). */
void cnode_pg_member_pid(const cnode_pg_member *m, erlang_pid *out);

enum { CNODE_PG_JOIN = 1, CNODE_PG_LEAVE = 2, CNODE_PG_NODEDOWN = 3, CNODE_PG_SUSPECT = 4, CNODE_PG_CLEAR = 5 };
/* Membership change: runs on the I/O thread after the change is visible to
 * readers; gen is the generation of the first snapshot that shows it (a
 * listing made from a snapshot of generation G already holds every change
 * with gen <= G); group is the encoded group term (no 131); pids/n the
 * members concerned, at most 32 a call (one change of more members comes in
 * several calls with the same gen); node for SUSPECT/CLEAR, with n == 0.
 * All die on return. */
typedef void cnode_pg_cb(cnode_pg_scope *scope, int event, uint64_t gen, const char *group, size_t group_len,
                         const char *node, const erlang_pid *pids, size_t n, void *user_data);

typedef struct cnode_pg_opts {
    unsigned discover_interval_ms; /* ask peers for nodes(connected); 0 means 1000 */
    unsigned probe_interval_ms;    /* liveness probe; 0 means 200 */
    unsigned probe_timeout_ms;     /* suspect after; 0 means 1000 */
    cnode_pg_cb *on_change;
    void *user_data;
} cnode_pg_opts;

/* Join scope `name` (an atom) as a peer of OTP's pg scope processes. opts may
 * be NULL. Any thread. CNODE_EEXIST if this node already runs that scope. */
int cnode_pg_scope_start(cnode_node *node, const char *name, const cnode_pg_opts *opts, cnode_pg_scope **out);
/* Connect to node and take part in discovery through it (--connect). */
int cnode_pg_connect(cnode_pg_scope *scope, const char *node);
/* One discovery round: sync with every connected node's scope, learn their
 * node lists, connect to and sync with every node listed, until nothing new
 * turns up or timeout_ms passes (0 means 3000). 0, or CNODE_ETIMEOUT. */
int cnode_pg_wait_ready(cnode_pg_scope *scope, unsigned timeout_ms);
/* pg:join/3 and pg:leave/3 for a C process of this node (join twice, member twice). */
int cnode_pg_join(cnode_pg_scope *scope, const char *group, const cnode_proc *proc);
/* pg:leave/3: one membership of proc less. CNODE_ENOTFOUND if proc is not a member of group. */
int cnode_pg_leave(cnode_pg_scope *scope, const char *group, const cnode_proc *proc);

/* An immutable view of every group of a scope, read without locks. */
typedef struct cnode_pg_snapshot cnode_pg_snapshot;
/* Any thread; lock-free (a few atomic operations). Release it, and release
 * every snapshot before the node closes (its blocks belong to the scope). */
cnode_pg_snapshot *cnode_pg_snapshot_get(cnode_pg_scope *scope);
/* Releases a snapshot from cnode_pg_snapshot_get (NULL-safe); its pointers die with it. */
void cnode_pg_snapshot_release(cnode_pg_snapshot *snap);
/* A number that grows with every snapshot the scope publishes (each one
 * after any change of membership or liveness): equal numbers mean the same
 * snapshot, so views derived from one can be kept while it stays current.
 * cnode_pg_generation is the current snapshot's (one atomic load; it may lag
 * a publication by a few instructions), 0 for NULL. */
uint64_t cnode_pg_snapshot_generation(const cnode_pg_snapshot *snap);
uint64_t cnode_pg_generation(cnode_pg_scope *scope);
/* Members of group (an atom's name) in pg's order (pg:get_members/2); *n set.
 * Local: only this node's (pg:get_local_members/2). Pointers live with snap. */
const cnode_pg_member *cnode_pg_members(const cnode_pg_snapshot *snap, const char *group, size_t *n);
/* cnode_pg_members with the group as its encoded term (group[0..glen), no 131): any term. */
const cnode_pg_member *cnode_pg_members_term(const cnode_pg_snapshot *snap, const char *group, size_t glen, size_t *n);
/* pg:get_local_members/2: copies up to cap of this node's members to out and returns
 * how many there are (more than cap: out holds the first cap). */
size_t cnode_pg_local_members(const cnode_pg_snapshot *snap, const char *group, cnode_pg_member *out, size_t cap);
/* Group i (0 <= i < count) as an encoded term (no 131). */
size_t cnode_pg_group_count(const cnode_pg_snapshot *snap);
/* Group i's encoded term (no 131), its length in *len; NULL when i >= count. */
const char *cnode_pg_group_at(const cnode_pg_snapshot *snap, size_t i, size_t *len);
/* 1 if node is marked suspect by the liveness probe (see cnode_pg_opts). */
int cnode_pg_node_suspect(const cnode_pg_snapshot *snap, const char *node);
/* Members per node in group. */
size_t cnode_pg_node_count(const cnode_pg_snapshot *snap, const char *group, const char *node);
/* Probe round trip of a peer in microseconds, or -1 if unknown. */
long cnode_pg_probe_rtt_us(cnode_pg_scope *scope, const char *node);
/* The node the scope runs on (NULL for NULL). */
cnode_node *cnode_pg_scope_node(const cnode_pg_scope *scope);
/* The scope's name (its registered name, e.g. "pg"); "" for NULL. */
const char *cnode_pg_scope_name(const cnode_pg_scope *scope);

/* EasyRpc's text form: "[type] message" or "[type] message | details: [...]". */
int cnode_error_format(const cnode_error *err, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
