/* libcnode — load balancing over pg members: erlang:phash2, the libring hash
 * ring, node filters, and the balancer (rpc_load_balancer's and EasyRpc's
 * selection algorithms, counters, retries).
 *
 * Contracts as in cnode.h: any thread may call anything unless the comment
 * says not; pointers are borrowed for the call unless the comment says "kept
 * until ..." or "yours, free with ..."; functions return 0 or a negative
 * CNODE_E... code; destructors accept NULL; nothing prints or aborts.
 * See shared/docs/seed-behaviour.md for the behaviour re-created here and the
 * project README for every deliberate difference.
 */
#ifndef CNODE_BALANCER_H
#define CNODE_BALANCER_H

#include <stddef.h>
#include <stdint.h>
#include <ei.h>

#include "cnode.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- erlang:phash2 -------------------------------------------------------- */
/* erlang:phash2/2 of one encoded term (buf[0, len), with or without its 131),
 * bit-exact with OTP 25 (erts make_hash2). range: 1 .. 2^32-1, or 0 for
 * phash2/1 (range 2^27). *out in [0, range). Reads only buf[0, len).
 * Errors: CNODE_EINVAL (buf NULL, truncated or malformed term, trailing
 * bytes, nesting deeper than 10000), CNODE_ENOTSUP (local funs: their hash
 * depends on the loaded code). Pure: no allocation, any thread. */
int cnode_phash2(const char *buf, size_t len, uint32_t range, uint32_t *out);
/* The full 32-bit hash H, i.e. erlang:phash2(T, 4294967296). Same contract. */
int cnode_phash2_full(const char *buf, size_t len, uint32_t *out);

/* ---- hash ring (libring 1.7, as rpc_load_balancer's HashRing uses it) ----- */
/* Range 2^32-1; node N with weight W owns the points phash2({N, i}, 2^32-1)
 * for i = 1..W (N an atom); on an exact collision the node added first keeps
 * the point. A key belongs to the node of the smallest point >= its hash,
 * else of the smallest point. Atom keys are first turned into
 * term_to_binary(Key), whose bytes depend on the cluster's OTP release:
 * OTP <= 25 writes Latin-1 atoms as ATOM_EXT, OTP >= 26 always UTF-8. */
#define CNODE_RING_RANGE 4294967295u
#define CNODE_RING_DEFAULT_WEIGHT 128
typedef struct cnode_ring cnode_ring; /* not thread-safe: one writer, or readers only */

/* An empty ring. otp_release: the peers' OTP major release (25 for <= 25,
 * 26 for >= 26; 0 means 25), used only for atom keys. *out: yours, free with
 * cnode_ring_free(). CNODE_EINVAL, CNODE_ENOMEM. */
int cnode_ring_new(int otp_release, cnode_ring **out);
void cnode_ring_free(cnode_ring *ring);
/* libring add_node/3: node is the atom's UTF-8 name (copied); weight 1..65536
 * virtual nodes. Adding a node already on the ring does nothing (0).
 * CNODE_EINVAL (empty or > 255 characters, weight 0), CNODE_ENOMEM. */
int cnode_ring_add(cnode_ring *ring, const char *node, unsigned weight);
/* libring remove_node/2: drops every point of node. 0 or CNODE_ENOTFOUND. */
int cnode_ring_remove(cnode_ring *ring, const char *node);
/* Nodes on the ring, and node i in the order they were added. */
size_t cnode_ring_node_count(const cnode_ring *ring);
const char *cnode_ring_node_at(const cnode_ring *ring, size_t i);
/* libring key_to_node/2. key: an encoded term (with or without 131).
 * *node: lives until the ring changes or is freed.
 * CNODE_EUNAVAILABLE (no nodes: {error, {invalid_ring, no_nodes}}), CNODE_EINVAL. */
int cnode_ring_key_to_node(const cnode_ring *ring, const char *key, size_t key_len, const char **node);
/* libring key_to_nodes/3, quirks included: atom keys are NOT converted, count
 * is capped at the node count, the walk does not wrap round the ring, and a
 * list cut short at the top of the ring comes back reversed. nodes: room for
 * count entries; *n set. Same errors. */
int cnode_ring_key_to_nodes(const cnode_ring *ring, const char *key, size_t key_len, size_t count, const char **nodes, size_t *n);
/* The hash key_to_node compares with the points: phash2(Key, 2^32-1), atom
 * keys converted as above for otp_release. */
int cnode_ring_key_hash(const char *key, size_t key_len, int otp_release, uint32_t *hash);
/* The points of node: out[i-1] = phash2({node, i}, 2^32-1), i = 1..weight. */
int cnode_ring_vnode_points(const char *node, unsigned weight, uint32_t *out);

/* ---- node filters (rpc_load_balancer's NodeFilter) ------------------------ */
/* A node matches when the base match holds and it is not excluded:
 *  - SUBSTRING: pattern is a substring of the node name (the empty pattern
 *    matches every node); REGEX: pattern, a PCRE2 regex with Erlang's :re
 *    defaults (no UTF mode, unanchored unless it anchors itself), matches
 *    somewhere in the node name;
 *  - excluded: some excluded pattern is a substring of the node's short name
 *    (text before the first '@', the whole name without one) and is not a
 *    substring of the filter's pattern text (a regex's source, compared as
 *    plain text). */
enum { CNODE_FILTER_SUBSTRING = 0, CNODE_FILTER_REGEX = 1 };
typedef struct cnode_filter cnode_filter; /* immutable once made: any thread may match */

/* pattern and excluded (nexcluded strings, may be NULL when 0) are copied.
 * *out: yours, free with cnode_filter_free(). Errors: CNODE_EINVAL,
 * CNODE_ENOMEM, CNODE_ECONFIG (the regex does not compile; err->message
 * names the offset and PCRE2's reason). */
int cnode_filter_new(const char *pattern, int kind, const char *const *excluded, size_t nexcluded, cnode_filter **out,
                     cnode_error *err);
/* 1 if node passes the filter, else 0 (a regex that fails to run, e.g. on
 * its match limit, counts as no match). Allocation-free after warm-up. */
int cnode_filter_match(const cnode_filter *filter, const char *node);
void cnode_filter_free(cnode_filter *filter);

/* ---- the balancer ------------------------------------------------------------ */
/* Picks a live member of a pg group and makes an erpc call to its node.
 * Candidates, in pg order (newest join first), are the distinct nodes of
 * the group's members in the scope's mirror, minus nodes the liveness probe
 * marks suspect, minus nodes the filter rejects, minus this node itself
 * unless opts.local is set (a node cannot erpc itself: calls that pick this
 * node run opts.local in the calling thread instead). */
enum {
    CNODE_LB_RANDOM = 0,           /* uniform (rpc_load_balancer default) */
    CNODE_LB_ROUND_ROBIN,          /* one atomic cursor per balancer: cand[(v-1) mod n], v = 1, 2, ... */
    CNODE_LB_LEAST_CONNECTIONS,    /* first candidate with the fewest calls in flight */
    CNODE_LB_POWER_OF_TWO,         /* two distinct random candidates, the less loaded (first on a tie) */
    CNODE_LB_HASH_RING,            /* libring ring over the candidates, by key; no key: random */
    CNODE_LB_WEIGHTED_ROUND_ROBIN, /* each candidate repeated weight times in a block, own cursor */
    CNODE_LB_CALL_DIRECT,          /* no pg, no selection: opts.local runs in the calling thread */
    CNODE_LB_EASY_RANDOM,          /* EasyRpc :random */
    CNODE_LB_EASY_ROUND_ROBIN,     /* EasyRpc :round_robin: per thread, starts at a random index */
    CNODE_LB_EASY_HASH,            /* EasyRpc :hash: cand[phash2(Args, n)] */
    CNODE_LB_STICKY,               /* EasyRpc :random with sticky_node */
    CNODE_LB_CUSTOM,               /* opts.custom */
};
/* "random", "round_robin", "least_connections", "power_of_two", "hash_ring",
 * "weighted_round_robin", "call_direct", "easy_random", "easy_round_robin",
 * "easy_hash", "sticky", "custom" (the seeds' module names such as
 * "RoundRobin" or "Elixir.RpcLoadBalancer.LoadBalancer.SelectionAlgorithm.RoundRobin"
 * are accepted too). 0 or CNODE_EINVAL. */
int cnode_balancer_algorithm_parse(const char *name, int *algorithm);
const char *cnode_balancer_algorithm_name(int algorithm);

/* What an algorithm sees for one pick. Everything dies when select returns. */
typedef struct cnode_balancer_pick {
    const char *const *nodes; /* the candidates, n >= 1, distinct, in pg order */
    size_t n;
    const char *key; /* routing key term (with or without 131), or NULL */
    size_t key_len;
    const char *args; /* the call's argument list term, or NULL (select without args) */
    size_t args_len;
} cnode_balancer_pick;

/* A user-defined algorithm (rpc_load_balancer's SelectionAlgorithm
 * behaviour). Only select is required. select runs concurrently on every
 * thread that calls through the balancer; the others once each. */
typedef struct cnode_balancer_algo {
    /* At cnode_balancer_new, before any select: *state for the others. */
    int (*init)(void *custom_data, void **state);
    /* The index of the chosen node in [0, pick->n), or a negative CNODE_E... */
    long (*select)(void *state, const cnode_balancer_pick *pick);
    /* Exactly once per successful select, when the caller is done with the
     * node: status 0, or the call's error code (CNODE_ETIMEOUT, ...). */
    void (*on_result)(void *state, const char *node, int status);
    /* At cnode_balancer_free. */
    void (*destroy)(void *state);
} cnode_balancer_algo;

/* call_direct's local function (rpc_load_balancer's apply(M, F, A)), also
 * used when this node is itself a member and gets picked. Runs in the
 * calling thread. Append the result (with 131) to reply and return 0, or
 * return a CNODE_E... code and fill err (may be NULL). reply is NULL for a
 * cast (the seed spawns; here it runs before cast returns). */
typedef int cnode_balancer_local_fn(const char *mod, const char *fun, const ei_x_buff *args, ei_x_buff *reply, cnode_error *err,
                                    void *local_data);

typedef struct cnode_balancer_weight {
    const char *node; /* node name */
    unsigned weight;  /* copies in the expanded list; 0 leaves the node out */
} cnode_balancer_weight;

/* Which failed attempts are tried again (up to opts.retries more attempts,
 * sleeping sleep_before_retry_ms between them). */
enum {
    CNODE_LB_RETRY_NO_ROUTE = 0,    /* only "no live member" (rpc_load_balancer) */
    CNODE_LB_RETRY_NODE_ERRORS = 1, /* also calls that never ran: noconnection, notsup; the failed node
                                      is avoided on the next attempts while others are left */
    CNODE_LB_RETRY_ALL = 2,         /* every error, timeouts and remote exceptions too (EasyRpc) */
};

typedef struct cnode_balancer_opts {
    int algorithm;                             /* CNODE_LB_...; 0 = random */
    const cnode_balancer_algo *custom;         /* CNODE_LB_CUSTOM: the vtable (copied) */
    void *custom_data;                         /* given to custom->init */
    const char *filter;                        /* node filter, NULL = none (copied) */
    int filter_kind;                           /* CNODE_FILTER_SUBSTRING or CNODE_FILTER_REGEX */
    const char *const *excluded_node_patterns; /* applied even without a filter (copied) */
    size_t n_excluded;
    unsigned timeout_ms;                  /* per erpc call; 0 = 10000 */
    unsigned retries;                     /* further attempts, see retry_policy; 0 = none */
    int retry_policy;                     /* CNODE_LB_RETRY_...; 0 = no route only */
    unsigned sleep_before_retry_ms;       /* between attempts; 0 = none */
    unsigned wait_members_ms;             /* no live member: poll the mirror this long first; 0 = fail at once */
    unsigned ring_weight;                 /* hash_ring: points per node, 0 = 128 */
    int otp_release;                      /* hash_ring: peers' OTP release for atom keys; 0 = 25 */
    const cnode_balancer_weight *weights; /* weighted_round_robin (copied); unlisted nodes weigh 1 */
    size_t n_weights;
    int sticky;                     /* EasyRpc sticky_node, any algorithm: per thread */
    cnode_balancer_local_fn *local; /* call_direct (required there) */
    void *local_data;
} cnode_balancer_opts;

typedef struct cnode_balancer cnode_balancer;
#define CNODE_BALANCER_NODE_MAX 256 /* room for any node name, NUL included */

/* A balancer over group (an atom's name) of scope. node and scope: kept until
 * cnode_balancer_free; both may be NULL for a balancer used only through
 * cnode_balancer_select_from. opts: NULL for defaults; copied. *out: yours,
 * free with cnode_balancer_free(). Errors: CNODE_EINVAL, CNODE_ENOMEM,
 * CNODE_ECONFIG (bad regex, call_direct without local, custom without select,
 * custom init failing). */
int cnode_balancer_new(cnode_node *node, cnode_pg_scope *scope, const char *group, const cnode_balancer_opts *opts,
                       cnode_balancer **out);
/* No call may be running or start on b. NULL is a no-op. */
void cnode_balancer_free(cnode_balancer *b);

/* Like rpc_load_balancer's select_node: pick a live candidate now (no
 * retries, no call) and count it in flight. key/args: routing inputs, NULL
 * allowed. The name goes to node (cap bytes). Every successful select must
 * be paired with cnode_balancer_release(). Errors: CNODE_EUNAVAILABLE (no
 * live member, after wait_members_ms; err->lb_code "service_unavailable"),
 * CNODE_EINVAL, CNODE_ENOMEM, or a custom algorithm's code. */
int cnode_balancer_select(cnode_balancer *b, const ei_x_buff *key, const ei_x_buff *args, char *node, size_t cap, cnode_error *err);
/* The pure core of select, over a node list of your own (no pg): *index
 * into nodes. Counts nodes[*index] in flight. Same release rule. */
int cnode_balancer_select_from(cnode_balancer *b, const char *const *nodes, size_t n, const ei_x_buff *key, const ei_x_buff *args,
                               size_t *index);
/* The caller is done with node: its in-flight count drops by one (never
 * below 0) and a custom algorithm hears status. */
void cnode_balancer_release(cnode_balancer *b, const char *node, int status);
/* Calls in flight to node through b (least_connections' counter). */
long cnode_balancer_in_flight(cnode_balancer *b, const char *node);

/* mod:fun(args) on a member picked by the algorithm, with erpc:call
 * semantics (cnode_call), retried per the options. args: an encoded list;
 * key: routing key or NULL. 0: the result (with 131) appended to reply.
 * served_by: NULL, or cap bytes that get the node that answered (on
 * success) or the node of the last attempt (on failure, "" if none).
 * Errors as cnode_call, plus CNODE_EUNAVAILABLE. err gets module, function,
 * arity, the 0-based attempt and the node, with type and lb_code set:
 * timeout -> timeout_error/request_timeout, noconnection -> node_error/
 * service_unavailable, remote error/exit/throw -> rpc_error/
 * service_unavailable, no member -> node_error/service_unavailable. */
int cnode_balancer_call(cnode_balancer *b, const char *mod, const char *fun, const ei_x_buff *args, const ei_x_buff *key,
                        ei_x_buff *reply, char *served_by, size_t cap, cnode_error *err);
/* Like erpc:cast through the balancer: 0 once dispatched (the member is
 * released at once). Only "no live member" is retried. */
int cnode_balancer_cast(cnode_balancer *b, const char *mod, const char *fun, const ei_x_buff *args, const ei_x_buff *key,
                        char *served_by, size_t cap, cnode_error *err);

/* EasyRpc's clear_sticky_node/1 and reset_round_robin/1, for the calling thread. */
void cnode_balancer_clear_sticky(cnode_balancer *b);
void cnode_balancer_reset_round_robin(cnode_balancer *b);

#ifdef __cplusplus
}
#endif
#endif
