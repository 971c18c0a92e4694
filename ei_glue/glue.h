/* ei_glue: pure wire code over ei. No I/O, no malloc, no globals.
 *
 * Decoder contract (picohttpparser/hiredis style): a decoder reads only
 * buf[0, len) and returns
 *   n > 0              n bytes consumed, *out filled (pointers borrow buf)
 *   CNODE__NEED_MORE   input ends early; *out untouched; call again with more
 *   CNODE__MALFORMED   the input can never be valid; *why (if non-NULL) names
 *                      the read that failed, as a static string
 * Encoders write into a caller-sized buffer and return the byte count, or 0
 * when cap is too small; or append to an ei_x_buff and return 0 / -1.
 */
#ifndef CNODE_EI_GLUE_H
#define CNODE_EI_GLUE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <ei.h>

#define CNODE__NEED_MORE ((ptrdiff_t)-1)
#define CNODE__MALFORMED ((ptrdiff_t)-2)

/* ---- distribution flags (protocol.md §3) ---------------------------- */
#define CNODE__DFLAG_PUBLISHED 0x1ULL
#define CNODE__DFLAG_ATOM_CACHE 0x2ULL
#define CNODE__DFLAG_EXTENDED_REFERENCES 0x4ULL
#define CNODE__DFLAG_DIST_MONITOR 0x8ULL
#define CNODE__DFLAG_FUN_TAGS 0x10ULL
#define CNODE__DFLAG_DIST_MONITOR_NAME 0x20ULL
#define CNODE__DFLAG_HIDDEN_ATOM_CACHE 0x40ULL
#define CNODE__DFLAG_NEW_FUN_TAGS 0x80ULL
#define CNODE__DFLAG_EXTENDED_PIDS_PORTS 0x100ULL
#define CNODE__DFLAG_EXPORT_PTR_TAG 0x200ULL
#define CNODE__DFLAG_BIT_BINARIES 0x400ULL
#define CNODE__DFLAG_NEW_FLOATS 0x800ULL
#define CNODE__DFLAG_UNICODE_IO 0x1000ULL
#define CNODE__DFLAG_DIST_HDR_ATOM_CACHE 0x2000ULL
#define CNODE__DFLAG_SMALL_ATOM_TAGS 0x4000ULL
#define CNODE__DFLAG_UTF8_ATOMS 0x10000ULL
#define CNODE__DFLAG_MAP_TAG 0x20000ULL
#define CNODE__DFLAG_BIG_CREATION 0x40000ULL
#define CNODE__DFLAG_SEND_SENDER 0x80000ULL
#define CNODE__DFLAG_BIG_SEQTRACE_LABELS 0x100000ULL
#define CNODE__DFLAG_EXIT_PAYLOAD 0x400000ULL
#define CNODE__DFLAG_FRAGMENTS 0x800000ULL
#define CNODE__DFLAG_HANDSHAKE_23 0x1000000ULL
#define CNODE__DFLAG_UNLINK_ID 0x2000000ULL
#define CNODE__DFLAG_MANDATORY_25_DIGEST 0x4000000ULL
#define CNODE__DFLAG_SPAWN (1ULL << 32)
#define CNODE__DFLAG_NAME_ME (1ULL << 33)
#define CNODE__DFLAG_V4_NC (1ULL << 34)
#define CNODE__DFLAG_ALIAS (1ULL << 35)

/* What OTP 25 requires of every peer (erts_internal:get_dflags()). */
#define CNODE__DFLAGS_MANDATORY_25 0x1070F94ULL
/* What we advertise, always (protocol.md §3, "recommended"): 0xD_075F_4FBC. */
#define CNODE__DFLAGS_OURS                                                                                                     \
    (CNODE__DFLAG_EXTENDED_REFERENCES | CNODE__DFLAG_DIST_MONITOR | CNODE__DFLAG_FUN_TAGS | CNODE__DFLAG_DIST_MONITOR_NAME |   \
     CNODE__DFLAG_NEW_FUN_TAGS | CNODE__DFLAG_EXTENDED_PIDS_PORTS | CNODE__DFLAG_EXPORT_PTR_TAG | CNODE__DFLAG_BIT_BINARIES |  \
     CNODE__DFLAG_NEW_FLOATS | CNODE__DFLAG_SMALL_ATOM_TAGS | CNODE__DFLAG_UTF8_ATOMS | CNODE__DFLAG_MAP_TAG |                 \
     CNODE__DFLAG_BIG_CREATION | CNODE__DFLAG_SEND_SENDER | CNODE__DFLAG_BIG_SEQTRACE_LABELS | CNODE__DFLAG_EXIT_PAYLOAD |     \
     CNODE__DFLAG_HANDSHAKE_23 | CNODE__DFLAG_UNLINK_ID | CNODE__DFLAG_MANDATORY_25_DIGEST | CNODE__DFLAG_SPAWN |              \
     CNODE__DFLAG_V4_NC | CNODE__DFLAG_ALIAS)

/* A peer's flags with MANDATORY_25_DIGEST expanded into the bits it stands for. */
uint64_t cnode__dflags_expand(uint64_t peer_flags);
/* 1 if (expanded) peer_flags carry every OTP 25 mandatory flag, else 0. */
int cnode__dflags_acceptable(uint64_t peer_flags);

/* ---- epmd (protocol.md §1) ------------------------------------------ */
/* Requests include their 2-byte length prefix. */
size_t cnode__epmd_alive2_req(char *buf, size_t cap, uint16_t port, const char *alive);
size_t cnode__epmd_port_please2_req(char *buf, size_t cap, const char *alive);
size_t cnode__epmd_names_req(char *buf, size_t cap);

typedef struct {
    int result;        /* 0 = ok */
    uint32_t creation; /* 32-bit creation (16-bit for the old 121 reply) */
} cnode__epmd_alive2_resp;
/* ALIVE2_X_RESP (118) or ALIVE2_RESP (121). */
ptrdiff_t cnode__epmd_alive2_resp_decode(const char *buf, size_t len, cnode__epmd_alive2_resp *out, const char **why);

typedef struct {
    int result; /* 0 = found; else not registered (port etc. unset) */
    uint16_t port;
    uint8_t node_type, proto;
    uint16_t highest, lowest;
    const char *name; /* borrowed, not NUL-terminated */
    size_t name_len;
} cnode__epmd_port2_resp;
/* PORT2_RESP (119): either `119, Result>0` (2 bytes) or the full entry. */
ptrdiff_t cnode__epmd_port2_resp_decode(const char *buf, size_t len, cnode__epmd_port2_resp *out, const char **why);

/* NAMES reply (complete: epmd closes after it): EpmdPort:32 then lines
 * "name N at port P\n". Calls cb once per line; returns 0, or -1 if malformed. */
typedef void cnode__epmd_names_cb(const char *name, size_t name_len, unsigned port, void *ud);
int cnode__epmd_names_decode(const char *buf, size_t len, cnode__epmd_names_cb *cb, void *ud, const char **why);

/* ---- handshake (protocol.md §2), version 6 / 'N' only ----------------- */
/* Encoders write the 2-byte length prefix too (plain TCP framing). */
size_t cnode__hs_send_name(char *buf, size_t cap, uint64_t flags, uint32_t creation, const char *name);
size_t cnode__hs_status(char *buf, size_t cap, const char *status); /* "ok", "nok", "alive", "true", ... */
size_t cnode__hs_challenge(char *buf, size_t cap, uint64_t flags, uint32_t challenge, uint32_t creation, const char *name);
size_t cnode__hs_challenge_reply(char *buf, size_t cap, uint32_t challenge, const unsigned char digest[16]);
size_t cnode__hs_challenge_ack(char *buf, size_t cap, const unsigned char digest[16]);

/* Decoders take one message body (after the length prefix, as returned by
 * cnode__frame_decode) and return its length (all of it) or MALFORMED. */
typedef struct {
    uint64_t flags;
    uint32_t creation;
    uint32_t challenge; /* challenge messages only */
    const char *name;   /* borrowed, not NUL-terminated; bytes after Name ignored */
    size_t name_len;
} cnode__hs_name;
ptrdiff_t cnode__hs_send_name_decode(const char *body, size_t len, cnode__hs_name *out, const char **why); /* 'N' */
ptrdiff_t cnode__hs_challenge_decode(const char *body, size_t len, cnode__hs_name *out, const char **why); /* 'N' */
/* 's' + text; *text borrows body. */
ptrdiff_t cnode__hs_status_decode(const char *body, size_t len, const char **text, size_t *text_len, const char **why);
ptrdiff_t cnode__hs_challenge_reply_decode(const char *body, size_t len, uint32_t *challenge, unsigned char digest[16],
                                           const char **why);
ptrdiff_t cnode__hs_challenge_ack_decode(const char *body, size_t len, unsigned char digest[16], const char **why);

/* MD5(cookie ++ decimal(challenge)) (cnode__md5). Always 0. */
int cnode__hs_digest(const char *cookie, size_t cookie_len, uint32_t challenge, unsigned char out[16]);
/* MD5 (RFC 1321), ei_glue/md5.c: init, update with the bytes, final. */
typedef struct {
    uint32_t h[4];
    uint64_t len;
    unsigned char buf[64];
    size_t n;
} cnode__md5_ctx;
void cnode__md5_init(cnode__md5_ctx *c);
void cnode__md5_update(cnode__md5_ctx *c, const void *data, size_t len);
void cnode__md5_final(cnode__md5_ctx *c, unsigned char out[16]);

/* ---- the handshake as a state machine (ei_glue/handshake.c) ---------------
 * Bytes in, bytes out, verdict: no sockets, no clock, no malloc, no locks.
 * The caller owns the transport and the runtime's answers:
 *   - cnode__hs_want() says how many bytes the machine takes now without
 *     reading past the current message (read exactly that: the bytes after the
 *     last handshake message are the peer's first frames, left in the socket);
 *   - cnode__hs_input() takes bytes (any split) and returns a verdict;
 *   - cnode__hs_output() / cnode__hs_written() hand out what must be sent;
 *   - verdicts NAME, ALIVE and PROVEN wait for the caller's answer
 *     (cnode__hs_answer_name / _alive / _proven) before any more input.
 * Nothing outlives the machine but what the caller copies out of it; the
 * peer's name stays in peer_name until the caller has seen it proven. */
#define CNODE__HS_BODY_MAX 320 /* longest message taken: a 255-byte name plus slack */
#define CNODE__HS_OUT_MAX 320  /* longest burst sent: status + challenge */

enum { CNODE__HS_DIAL, CNODE__HS_ACCEPT };

enum {
    CNODE__HS_AGAIN,  /* give it more input (and send its output) */
    CNODE__HS_NAME,   /* accept: send_name read (peer_name, peer_flags set): answer_name */
    CNODE__HS_ALIVE,  /* dial: status `alive`: answer_alive */
    CNODE__HS_PROVEN, /* accept: the challenge reply proved the cookie: answer_proven, or close */
    CNODE__HS_UP,     /* done: send the output, then 4-byte framing */
    CNODE__HS_FAIL,   /* fail and why set; send the output once if you can (a last status), close */
};

/* What the acceptor answers to a send_name (net_kernel's decision). */
enum { CNODE__HS_ST_OK, CNODE__HS_ST_OK_SIMULTANEOUS, CNODE__HS_ST_NOK, CNODE__HS_ST_ALIVE, CNODE__HS_ST_NOT_ALLOWED };

/* Why a handshake failed. */
enum {
    CNODE__HS_F_NONE,
    CNODE__HS_F_PROTOCOL, /* garbage, a bad length, an unexpected message */
    CNODE__HS_F_OLD,      /* the pre-OTP 23 'n' send_name (answered not_allowed) */
    CNODE__HS_F_NAME,     /* a name that is not alive@host, too long, ours, or not the node we dialled */
    CNODE__HS_F_FLAGS,    /* mandatory distribution flags missing */
    CNODE__HS_F_COOKIE,   /* wrong digest in the challenge reply or ack */
    CNODE__HS_F_REFUSED,  /* dial: the peer said not_allowed or something unknown */
    CNODE__HS_F_NOK,      /* dial: the peer said nok (its own attempt wins) */
    CNODE__HS_F_DECLINED, /* we answered nok/not_allowed, or the peer kept its live connection (false) */
    CNODE__HS_F_CLOSED,   /* cnode__hs_input() with len 0: the peer closed */
};

typedef struct {
    int role, state, fail;
    const char *why; /* static text when fail is set */
    /* ours, borrowed for the machine's life */
    const char *name, *cookie, *dialled;
    size_t cookie_len;
    uint64_t flags;
    uint32_t creation, challenge;
    /* theirs */
    char peer_name[256]; /* NUL-terminated once known */
    uint64_t peer_flags; /* as sent (MANDATORY_25_DIGEST not expanded) */
    uint32_t peer_creation;
    uint32_t peer_challenge; /* accept: the challenge in their reply, answered by our ack */
    int named;     /* accept: a whole send_name arrived */
    int replacing; /* accept: we said alive and the peer answered true */
    int hdr; /* length prefix: 2 (plain TCP), 4 (inside TLS, as inet_tls_dist's {packet,4}) */
    /* the message being read, its length prefix first */
    unsigned char in[4 + CNODE__HS_BODY_MAX];
    size_t in_len;
    char out[CNODE__HS_OUT_MAX];
    size_t out_len, out_off;
} cnode__hs;

/* Dial: name is ours, dialled the node we dialled (both "alive@host", kept
 * until the end). challenge is our random challenge. send_name is queued. */
void cnode__hs_init_dial(cnode__hs *hs, const char *name, uint64_t flags, uint32_t creation, const char *cookie,
                         size_t cookie_len, const char *dialled, uint32_t challenge);
void cnode__hs_init_accept(cnode__hs *hs, const char *name, uint64_t flags, uint32_t creation, const char *cookie,
                           size_t cookie_len, uint32_t challenge);
/* 4-byte length prefixes both ways instead of 2 (the handshake inside TLS, protocol.md §10).
 * Call it right after init, before any input or output is taken. */
void cnode__hs_use_packet4(cnode__hs *hs);
/* Bytes the machine takes now (1..CNODE__HS_BODY_MAX + 4), 0 while it waits for an answer or is done. */
size_t cnode__hs_want(const cnode__hs *hs);
/* Feed buf[0, len); *used (may be NULL) gets the bytes taken: it stops after a
 * message that needs an answer or ends the handshake. len 0 means the peer
 * closed. While an answer is pending it takes nothing and repeats the verdict. */
int cnode__hs_input(cnode__hs *hs, const char *buf, size_t len, size_t *used);
int cnode__hs_answer_name(cnode__hs *hs, int status);
int cnode__hs_answer_alive(cnode__hs *hs, int have_live_connection);
int cnode__hs_answer_proven(cnode__hs *hs);
/* Bytes to send now: *p points at them (valid until the next call on hs). */
size_t cnode__hs_output(const cnode__hs *hs, const char **p);
void cnode__hs_written(cnode__hs *hs, size_t n);

/* ---- framing ------------------------------------------------------------ */
typedef struct {
    const char *body; /* borrowed from buf; NULL for a tick (zero length) */
    size_t len;
} cnode__frame;
/* One frame with a hdr-byte (2 or 4) big-endian length. A zero length is a
 * tick (out->body NULL, returns hdr). Longer than max_len: MALFORMED. */
ptrdiff_t cnode__frame_decode(const char *buf, size_t len, int hdr, size_t max_len, cnode__frame *out, const char **why);

/* ---- bounded term reader (run before any ei_decode_* on peer bytes) ---- */
typedef struct {
    unsigned max_depth;  /* nesting of tuples/lists/maps/funs, e.g. 1024 */
    size_t max_elements; /* total elements visited, e.g. 1<<24 */
} cnode__term_limits;
extern const cnode__term_limits cnode__term_limits_default;
/* Extent of one external term starting at buf[0] (a tag byte, no 131): the
 * term reader's whole walk (reader.h, term.c), which takes what OTP 25's
 * binary_to_term takes (less compressed terms and the limits) and refuses the
 * rest as MALFORMED with *why naming the rule; NEED_MORE when it ends early. */
ptrdiff_t cnode__term_extent(const char *buf, size_t len, const cnode__term_limits *lim, const char **why);

/* ---- control messages (protocol.md §4) ----------------------------------- */
enum {
    CNODE__OP_LINK = 1,
    CNODE__OP_SEND = 2,
    CNODE__OP_EXIT = 3,
    CNODE__OP_UNLINK = 4,
    CNODE__OP_NODE_LINK = 5,
    CNODE__OP_REG_SEND = 6,
    CNODE__OP_GROUP_LEADER = 7,
    CNODE__OP_EXIT2 = 8,
    CNODE__OP_SEND_TT = 12,
    CNODE__OP_EXIT_TT = 13,
    CNODE__OP_REG_SEND_TT = 16,
    CNODE__OP_EXIT2_TT = 18,
    CNODE__OP_MONITOR_P = 19,
    CNODE__OP_DEMONITOR_P = 20,
    CNODE__OP_MONITOR_P_EXIT = 21,
    CNODE__OP_SEND_SENDER = 22,
    CNODE__OP_SEND_SENDER_TT = 23,
    CNODE__OP_PAYLOAD_EXIT = 24,
    CNODE__OP_PAYLOAD_EXIT_TT = 25,
    CNODE__OP_PAYLOAD_EXIT2 = 26,
    CNODE__OP_PAYLOAD_EXIT2_TT = 27,
    CNODE__OP_PAYLOAD_MONITOR_P_EXIT = 28,
    CNODE__OP_SPAWN_REQUEST = 29,
    CNODE__OP_SPAWN_REQUEST_TT = 30,
    CNODE__OP_SPAWN_REPLY = 31,
    CNODE__OP_SPAWN_REPLY_TT = 32,
    CNODE__OP_ALIAS_SEND = 33,
    CNODE__OP_ALIAS_SEND_TT = 34,
    CNODE__OP_UNLINK_ID = 35,
    CNODE__OP_UNLINK_ID_ACK = 36,
};

/* An encoded term borrowed from the packet: p points at the tag byte (no 131),
 * len is its extent. p == NULL means absent. */
typedef struct {
    const char *p;
    size_t len;
} cnode__term;

/* A pid, or a registered name where the protocol allows either. */
typedef struct {
    int is_name;           /* 1: name is set; 0: pid is set */
    erlang_pid pid;
    char name[MAXATOMLEN_UTF8];
} cnode__pid_or_name;

/* One decoded control message. Which fields are set depends on op; the
 * canonical layout of each op's control tuple is in protocol.md §4:
 *   LINK, UNLINK, GROUP_LEADER   from, to
 *   SEND(_TT)                    to (pid), [token]            + msg
 *   SEND_SENDER(_TT)             from, to (pid), [token]      + msg
 *   REG_SEND(_TT)                from, to (name), [token]     + msg
 *   EXIT, EXIT2 (+_TT)           from, to, [token], reason (in the tuple)
 *   PAYLOAD_EXIT*, PAYLOAD_EXIT2* from, to, [token]          + reason (payload)
 *   MONITOR_P, DEMONITOR_P       from (pid), to (pid or name), ref
 *   MONITOR_P_EXIT               from (pid or name), to, ref, reason
 *   PAYLOAD_MONITOR_P_EXIT       from (pid or name), to, ref  + reason (payload)
 *   SPAWN_REQUEST(_TT)           reqid(ref), from, group_leader, mod, fun, arity, opts, [token] + msg (arg list)
 *   SPAWN_REPLY(_TT)             reqid(ref), to, spawn_flags, result (pid or atom in to/from? see below), [token]
 *   ALIAS_SEND(_TT)              from, ref (alias), [token]   + msg
 *   UNLINK_ID, UNLINK_ID_ACK     id (raw term, small or big int), from, to
 * For SPAWN_REPLY the result is in `from`: a pid (is_name 0) or an error
 * atom (is_name 1). For EXIT-like ops `reason` is set whichever form carried it.
 * `msg` points at the payload *including* its 131 version byte. */
typedef struct {
    int op;
    cnode__pid_or_name from;
    cnode__pid_or_name to;
    erlang_ref ref;
    erlang_pid group_leader;
    cnode__term reason;
    cnode__term token;
    cnode__term id;
    cnode__term opts;
    char mod[MAXATOMLEN_UTF8];
    char fun[MAXATOMLEN_UTF8];
    long arity;
    unsigned long long spawn_flags;
    const char *msg; /* full external term incl. 131, borrowed; NULL if the op has none */
    size_t msg_len;
} cnode__ctl;

/* Decode one packet body, i.e. the bytes after the 4-byte length: 'p' (112),
 * the control term (131 ...) and, for ops that carry one, the payload term.
 * Every term is walked with lim before ei touches it; trailing bytes after
 * the payload, a missing payload, unknown ops, wrong arities or wrong types
 * are MALFORMED. Returns len on success. */
ptrdiff_t cnode__ctl_decode(const char *body, size_t len, const cnode__term_limits *lim, cnode__ctl *out, const char **why);

/* Append one packet to x: the 4-byte length (covering 'p', control and
 * payload_len more bytes the caller sends right after, e.g. from its own
 * buffer via an iovec), 'p', and the control term with its 131. Fields
 * are taken from c as listed above (reason/token/id/opts are raw encoded
 * terms without 131, copied as is). Returns 0, or -1 if c is inconsistent. */
int cnode__ctl_encode(ei_x_buff *x, const cnode__ctl *c, size_t payload_len);

/* ---- identifiers of this node --------------------------------------------- */
void cnode__pid_make(erlang_pid *out, const char *node, uint32_t num, uint32_t serial, uint32_t creation);
/* A NEWER_REFERENCE with 3 id words. */
void cnode__ref_make(erlang_ref *out, const char *node, uint32_t creation, const uint32_t id[3]);
int cnode__pid_eq(const erlang_pid *a, const erlang_pid *b);
int cnode__ref_eq(const erlang_ref *a, const erlang_ref *b);

#endif
