/* libcnode — load balancing over pg members: erlang:phash2, the libring hash
 * ring, node filters, and the balancer (rpc_load_balancer's and EasyRpc's
 * selection algorithms, counters, retries), LeastCpu readings, and EasyRpc's
 * declarative wrappers (DefRpc) and configuration.
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

#include <limits.h>
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
/* Node i (0 <= i < count) in the order added; NULL out of range. */
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
 * names the offset and PCRE2's reason; or libpcre2-8.so.0, loaded by the
 * first regex filter, cannot be loaded). */
int cnode_filter_new(const char *pattern, int kind, const char *const *excluded, size_t nexcluded, cnode_filter **out,
                     cnode_error *err);
/* 1 if node passes the filter, else 0 (a regex that fails to run, e.g. on
 * its match limit, counts as no match). Allocation-free after warm-up. */
int cnode_filter_match(const cnode_filter *filter, const char *node);
/* Frees a filter (NULL-safe). */
void cnode_filter_free(cnode_filter *filter);

/* ---- the balancer ------------------------------------------------------------ */
/* Picks a live member and makes an erpc call to its node.
 *
 * Where the candidates come from (the node source), one of:
 *  - pg (the default): the distinct nodes of the members of `group` in the
 *    scope's mirror, in pg order (newest join first), minus nodes the
 *    liveness probe marks suspect, minus this node itself unless opts.local
 *    is set (a node cannot erpc itself: calls that pick this node run
 *    opts.local in the calling thread instead);
 *  - a static node list (opts.nodes; EasyRpc's `nodes: [...]`), used as
 *    given: order and duplicates kept, so that easy_hash's phash2(Args, n)
 *    sees EasyRpc's n;
 *  - a node provider (opts.provider_*; EasyRpc's `nodes: {M, F, A}`),
 *    called on every pick, so on every retry as in EasyRpc.
 * The filter (opts.filter, opts.excluded_node_patterns) applies to every
 * source. */
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
    CNODE_LB_LEAST_CPU,            /* rpc_load_balancer LeastCpu: random among the candidates whose
                                      cached CPU reading is within cpu_threshold of the lowest */
    CNODE_LB_CUSTOM,               /* opts.custom */
};
/* "random", "round_robin", "least_connections", "power_of_two", "hash_ring",
 * "weighted_round_robin", "call_direct", "easy_random", "easy_round_robin",
 * "easy_hash", "sticky", "least_cpu", "custom" (the seeds' module names such
 * as "RoundRobin" or
 * "Elixir.RpcLoadBalancer.LoadBalancer.SelectionAlgorithm.RoundRobin" are
 * accepted too). 0 or CNODE_EINVAL. */
int cnode_balancer_algorithm_parse(const char *name, int *algorithm);
/* The name cnode_balancer_algorithm_parse takes for an algorithm, "unknown" for any other value. */
const char *cnode_balancer_algorithm_name(int algorithm);

/* What an algorithm sees for one pick. Everything dies when select returns. */
typedef struct cnode_balancer_pick {
    const char *const *nodes; /* the candidates, n >= 1, in source order */
    size_t n;
    const char *key; /* routing key term (with or without 131), or NULL */
    size_t key_len;
    const char *args; /* the call's argument list term, or NULL (select without args) */
    size_t args_len;
} cnode_balancer_pick;

/* A user-defined algorithm (rpc_load_balancer's SelectionAlgorithm
 * behaviour; examples/custom_algorithm.c shows one). Only select is
 * required. select runs concurrently on every thread that calls through the
 * balancer, so its state must be thread-safe (atomics, or a lock of yours);
 * the others once each.
 *   init       at cnode_balancer_new, before any select: custom_data in,
 *              *state out for the others; non-zero fails cnode_balancer_new
 *              with CNODE_ECONFIG (destroy is then not called).
 *   select     the index of the chosen node in [0, pick->n), or a negative
 *              CNODE_E... (the pick fails with it; an index >= n is EINVAL).
 *   on_result  exactly once per successful select, when the caller is done
 *              with the node: status 0, or the call's error code
 *              (CNODE_ETIMEOUT, CNODE_ENOCONNECTION, ...). node dies on return.
 *   destroy    at cnode_balancer_free. */
typedef struct cnode_balancer_algo {
    int (*init)(void *custom_data, void **state);
    long (*select)(void *state, const cnode_balancer_pick *pick);
    void (*on_result)(void *state, const char *node, int status);
    void (*destroy)(void *state);
} cnode_balancer_algo;

/* call_direct's local function (rpc_load_balancer's apply(M, F, A)), also
 * used when this node is itself a member and gets picked. Runs in the
 * calling thread. Append the result (with 131) to reply and return 0, or
 * return a CNODE_E... code and fill err (may be NULL). reply is NULL for a
 * cast (the seed spawns; here it runs before cast returns). */
typedef int cnode_balancer_local_fn(const char *mod, const char *fun, const ei_x_buff *args, ei_x_buff *reply, cnode_error *err,
                                    void *local_data);

/* A node provider applied locally (EasyRpc's apply(M, F, A) on the calling
 * node): append the result term (with or without 131) to out and return 0,
 * or return a CNODE_E... code and fill err (may be NULL). Runs in the
 * calling thread on every pick; mod, fun, args are opts.provider_*. The
 * result is checked as EasyRpc checks it: a non-empty list of atoms. */
typedef int cnode_balancer_nodes_fn(const char *mod, const char *fun, const ei_x_buff *args, ei_x_buff *out, cnode_error *err,
                                    void *nodes_data);

/* Local CPU utilisation in percent (0.0 .. 100.0) for LeastCpu's poller;
 * return 0, or non-zero for "no reading" (the seed's 50.0 then). */
typedef int cnode_balancer_cpu_fn(double *pct, void *cpu_data);

/* One attempt of a call or cast through a balancer, as the observer sees it
 * (rpc_load_balancer's telemetry stop event, per attempt). All pointers die
 * when the observer returns. */
typedef struct cnode_balancer_event {
    const char *group;    /* the balancer's group */
    const char *module;   /* as called ("Elixir.MyApp.Api") */
    const char *function; /* "" for a bare select */
    const char *node;     /* the member tried, "" if none could be picked */
    int status;           /* 0, or this attempt's CNODE_E... code */
    unsigned attempt;     /* 0-based */
    int last;             /* 1 if no further attempt follows */
    int64_t duration_us;  /* pick and call of this attempt */
    uint64_t gen;         /* the pg snapshot generation the pick read, as cnode_balancer_picked.gen */
} cnode_balancer_event;
/* Runs on the calling thread after every attempt; keep it short, never call
 * back into this balancer. */
typedef void cnode_balancer_observer(const cnode_balancer_event *ev, void *observer_data);

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

/* erpc's `infinity` for opts.timeout_ms and cnode_rpc_opts timeouts. */
#define CNODE_LB_INFINITY LONG_MAX

/* Options of cnode_balancer_new. Zero means the default everywhere, so
 * `cnode_balancer_opts o = {.algorithm = CNODE_LB_ROUND_ROBIN};` is a valid
 * set. cnode_balancer_new checks them and names the first bad one in
 * err->message with EasyRpc's wording (type config_error), e.g.
 * "Invalid timeout — expected positive integer or :infinity, got: -5". */
typedef struct cnode_balancer_opts {
    int algorithm;                             /* CNODE_LB_...; 0 = random */
    const char *algorithm_name;                /* if set, parsed as cnode_balancer_algorithm_parse and wins */
    const cnode_balancer_algo *custom;         /* CNODE_LB_CUSTOM: the vtable (copied) */
    void *custom_data;                         /* given to custom->init */
    const char *filter;                        /* node filter, NULL = none (copied) */
    int filter_kind;                           /* CNODE_FILTER_SUBSTRING or CNODE_FILTER_REGEX */
    const char *const *excluded_node_patterns; /* applied even without a filter (copied) */
    size_t n_excluded;
    long timeout_ms;                      /* per erpc call, > 0 or CNODE_LB_INFINITY; 0 = 10000 */
    long retries;                         /* further attempts (>= 0), see retry_policy; 0 = none */
    int retry_policy;                     /* CNODE_LB_RETRY_...; 0 = no route only */
    long sleep_before_retry_ms;           /* between attempts (>= 0); 0 = none */
    long wait_members_ms;                 /* pg source, no live member: poll the mirror this long first
                                             (>= 0); 0 = fail at once */
    unsigned ring_weight;                 /* hash_ring: points per node, 0 = 128 */
    int otp_release;                      /* hash_ring: peers' OTP release for atom keys; 0 = 25 */
    const cnode_balancer_weight *weights; /* weighted_round_robin (copied); unlisted nodes weigh 1 */
    size_t n_weights;
    int sticky;                     /* EasyRpc sticky_node (0 or 1), any algorithm: per thread */
    cnode_balancer_local_fn *local; /* call_direct (required there) */
    void *local_data;

    /* node source (see above); at most one of nodes / provider_module */
    const char *const *nodes; /* static list, n_nodes >= 1 (copied) */
    size_t n_nodes;
    const char *provider_module;          /* provider: module (atom name, Elixir spelling allowed) */
    const char *provider_function;        /* provider: function */
    const ei_x_buff *provider_args;       /* provider: argument list, NULL = [] (copied) */
    const char *provider_node;            /* erpc the provider on this node ... */
    cnode_balancer_nodes_fn *provider_fn; /* ... or apply it here (one of the two is required) */
    void *provider_data;

    /* least_cpu (seed-behaviour.md A6 LeastCpu) */
    long poll_interval_ms;              /* poller period; 0 = 5000; < 0 = no poller thread
                                           (readings only from cnode_balancer_cpu_poll/_set) */
    long poll_startup_jitter_ms;        /* first poll after a random delay in [0, this]; 0 = none */
    long cpu_cache_ttl_ms;              /* older readings count as 50.0; 0 = 10000 */
    double cpu_threshold;               /* percentage points above the lowest; 0 = 5.0 */
    const char *cpu_module;             /* the MFA each member answers with its CPU (a number); */
    const char *cpu_function;           /* NULL = 'Elixir.RpcLoadBalancer.LoadBalancer.NodeCpuCache':get_local_cpu */
    const ei_x_buff *cpu_args;          /* NULL = [] (copied) */
    cnode_balancer_cpu_fn *cpu_sampler; /* this node's own reading; NULL = cnode_cpu_util */
    void *cpu_sampler_data;

    /* calls */
    cnode_balancer_observer *observer; /* NULL = none */
    void *observer_data;
    int error_handling; /* EasyRpc error_handling (0 or 1): DefRpc calls take the handled path */
    int no_rpc_log;     /* 1: DefRpc calls through this balancer do not log (EasyRpc enable_logging false) */
} cnode_balancer_opts;

typedef struct cnode_balancer cnode_balancer;
#define CNODE_BALANCER_NODE_MAX 256 /* room for any node name, NUL included */

/* What one pick chose and the pg snapshot it chose from (the *_picked
 * functions below; the observer's event carries the same gen per attempt).
 *   node     the member picked, "" if no pick was made (no live member, an
 *            error before the pick).
 *   gen      with the pg source: the generation (cnode_pg_snapshot_generation)
 *            of the snapshot whose member list the candidates were read from.
 *            A picked node is listed in that snapshot as a member of the
 *            group, not suspect there and passing the filter, even when newer
 *            snapshots have been published since (a pick never mixes
 *            generations, and a call never goes to a node its snapshot did
 *            not list). With no live member, the generation that had none.
 *            0 with a static list, a provider or call_direct (no snapshot).
 *   attempt  the 0-based attempt of the call or cast that made the pick
 *            (retries pick again); 0 for a select. */
typedef struct cnode_balancer_picked {
    char node[CNODE_BALANCER_NODE_MAX];
    uint64_t gen;
    unsigned attempt;
} cnode_balancer_picked;

/* A balancer over group (an atom's name) of scope. node and scope: kept until
 * cnode_balancer_free; scope may be NULL with a static list or a provider
 * (and node too, unless the provider or the calls need the network), both
 * NULL for a balancer used only through cnode_balancer_select_from. group
 * names the balancer in logs and events when there is no scope. opts: NULL
 * for defaults; copied. With least_cpu and poll_interval_ms >= 0 a poller
 * thread starts (it stops in cnode_balancer_free). *out: yours, free with
 * cnode_balancer_free(). err: NULL, or the reason (cnode_error_clear it).
 * Errors: CNODE_EINVAL (NULL or empty group, out NULL; validation_error),
 * CNODE_ECONFIG (a bad option: config_error with EasyRpc's message, see
 * cnode_balancer_opts), CNODE_ENOMEM. */
int cnode_balancer_new(cnode_node *node, cnode_pg_scope *scope, const char *group, const cnode_balancer_opts *opts,
                       cnode_balancer **out, cnode_error *err);
/* No call may be running or start on b. NULL is a no-op. */
void cnode_balancer_free(cnode_balancer *b);

/* Like rpc_load_balancer's select_node: pick a live candidate now (no
 * retries, no call) and count it in flight. key/args: routing inputs, NULL
 * allowed. The name goes to node (cap bytes). Every successful select must
 * be paired with cnode_balancer_release(). Errors: CNODE_EUNAVAILABLE (no
 * live member, after wait_members_ms; err->lb_code "service_unavailable"),
 * CNODE_EINVAL, CNODE_ENOMEM, a provider's errors, or a custom algorithm's
 * code. */
int cnode_balancer_select(cnode_balancer *b, const ei_x_buff *key, const ei_x_buff *args, char *node, size_t cap, cnode_error *err);
/* cnode_balancer_select with the pick's record: picked (required) gets the
 * node and the snapshot generation it came from; release picked->node.
 * On an error picked->node is "" (gen as described above). */
int cnode_balancer_select_picked(cnode_balancer *b, const ei_x_buff *key, const ei_x_buff *args, cnode_balancer_picked *picked,
                                 cnode_error *err);
/* The pure core of select, over a node list of your own (no source, no
 * filter): *index into nodes, which must hold n names (none NULL). Counts
 * nodes[*index] in flight. Same release rule. No lock (custom algorithms
 * aside); no allocation once each node has been seen (hash_ring: once per
 * candidate set and thread, for its merged ring). */
int cnode_balancer_select_from(cnode_balancer *b, const char *const *nodes, size_t n, const ei_x_buff *key, const ei_x_buff *args,
                               size_t *index);
/* The caller is done with node: its in-flight count drops by one (never
 * below 0) and a custom algorithm hears status. */
void cnode_balancer_release(cnode_balancer *b, const char *node, int status);
/* Calls in flight to node through b (least_connections' counter). */
long cnode_balancer_in_flight(cnode_balancer *b, const char *node);
/* Every node b has counted so far (in flight now or not): names[i] and
 * counts[i] for the first max of them (either array may be NULL). Returns
 * how many there are, which may be more than max. */
size_t cnode_balancer_counters(cnode_balancer *b, char (*names)[CNODE_BALANCER_NODE_MAX], long *counts, size_t max);
/* rpc_load_balancer's drain, for an orderly stop before cnode_balancer_free:
 * wait until nothing is in flight through b (calls running, selects not yet
 * released: the sum of its counters), checking every 10 ms, at most
 * timeout_ms. It does not stop new calls: stop making them first (and, if
 * this node serves the group, leave it first, as the seed deregisters before
 * it drains). 0 when drained, CNODE_ETIMEOUT when calls are still running,
 * CNODE_EINVAL (b NULL). */
int cnode_balancer_drain(cnode_balancer *b, unsigned timeout_ms);

/* mod:fun(args) on a member picked by the algorithm, with erpc:call
 * semantics (cnode_call), retried per the options. args: an encoded list;
 * key: routing key or NULL. 0: the result (with 131) appended to reply.
 * served_by: NULL, or cap bytes that get the node that answered (on
 * success) or the node of the last attempt (on failure, "" if none).
 * Errors as cnode_call, plus CNODE_EUNAVAILABLE and the provider's. err gets
 * module, function, arity, the 0-based attempt and the node, with type and
 * lb_code set: timeout -> timeout_error/request_timeout, noconnection ->
 * node_error/service_unavailable, remote error/exit/throw -> rpc_error/
 * internal_server_error, no member -> node_error/service_unavailable. */
int cnode_balancer_call(cnode_balancer *b, const char *mod, const char *fun, const ei_x_buff *args, const ei_x_buff *key,
                        ei_x_buff *reply, char *served_by, size_t cap, cnode_error *err);
/* Like erpc:cast through the balancer: 0 once dispatched (the member is
 * released at once). Only "no live member" is retried. */
int cnode_balancer_cast(cnode_balancer *b, const char *mod, const char *fun, const ei_x_buff *args, const ei_x_buff *key,
                        char *served_by, size_t cap, cnode_error *err);

/* cnode_balancer_call with the pick's record in place of served_by: picked
 * (NULL allowed) gets the last attempt's pick, i.e. the node that answered
 * on success, and on failure the node of the last attempt ("" if it could
 * not pick one), with its snapshot generation and attempt number. Every
 * attempt's pick, retries included, reaches the observer (event gen). */
int cnode_balancer_call_picked(cnode_balancer *b, const char *mod, const char *fun, const ei_x_buff *args, const ei_x_buff *key,
                               ei_x_buff *reply, cnode_balancer_picked *picked, cnode_error *err);
/* cnode_balancer_cast with the pick's record (NULL allowed), as cnode_balancer_call_picked. */
int cnode_balancer_cast_picked(cnode_balancer *b, const char *mod, const char *fun, const ei_x_buff *args, const ei_x_buff *key,
                               cnode_balancer_picked *picked, cnode_error *err);

/* EasyRpc's clear_sticky_node/1 and reset_round_robin/1, for the calling thread. */
void cnode_balancer_clear_sticky(cnode_balancer *b);
/* reset_round_robin/1: the calling thread's round-robin position starts over. */
void cnode_balancer_reset_round_robin(cnode_balancer *b);

/* ---- LeastCpu: readings, and answering for this node ----------------------- */
/* This machine's CPU utilisation from /proc/stat: busy share of all jiffies
 * since the previous call in this process (any thread), or since boot on
 * the first call, in percent. 0, or CNODE_ESYS (no /proc/stat). Thread-safe. */
int cnode_cpu_util(double *pct);
/* Make mod:fun/arity answer with cnode_cpu_util() as a float, so this node
 * is a LeastCpu member other nodes can poll (their cpu MFA). mod/fun NULL:
 * the seed's 'Elixir.RpcLoadBalancer.LoadBalancer.NodeCpuCache':get_local_cpu;
 * the arguments, if any, are ignored (the seed passes the balancer name to
 * the arity-1 form). Errors as cnode_register_function. */
int cnode_balancer_serve_cpu(cnode_node *node, const char *mod, const char *fun, int arity);
/* One poll round now, in the calling thread: this node's own reading from
 * the sampler, then the cpu MFA on every other candidate (one multicall,
 * 2 s timeout); answers that are numbers are stored with the time of now.
 * 0, or CNODE_EINVAL (not least_cpu), or the source's error. */
int cnode_balancer_cpu_poll(cnode_balancer *b);
/* Store a reading for node as if polled now (tests, external pollers). */
int cnode_balancer_cpu_set(cnode_balancer *b, const char *node, double pct);
/* The value a pick would use for node now: its reading while fresh, else 50.0. */
double cnode_balancer_cpu_get(cnode_balancer *b, const char *node);

/* ---- EasyRpc: inspect and error text ----------------------------------------- */
/* Elixir's inspect/1 of an encoded term (with or without 131), as EasyRpc's
 * log lines and messages print values: :atom, :"quoted@atom", Elixir.Mod as
 * Mod, nil/true/false, "binary", 'charlist' (Elixir 1.14), [key: value]
 * keyword lists, %{a: 1} / %{"k" => v} maps, %Mod{...} structs, {tuples},
 * and inspect's default limits: 50 elements per collection, printable
 * binaries cut after 4096 bytes. Pids, ports and refs carry the node name
 * (#PID<node@host.85.0>) where BEAM prints its node table index. Writes
 * a NUL-terminated text into out (cut at cap with "..." if it does not fit).
 * 0, or CNODE_EINVAL (malformed term, cap < 4). */
int cnode_rpc_inspect(const char *buf, size_t len, char *out, size_t cap);
/* inspect/1 of an atom given by name: :foo, :"b@127.0.0.1", MyApp.Api, nil. */
int cnode_rpc_inspect_atom(const char *name, char *out, size_t cap);
/* EasyRpc.Error.format/1 of err: "[<type>] <message>" plus
 * " | details: [node: :\"b@h\", attempt: 0, module: R, function: :boom]"
 * when err names a node or a call, with the values inspected as Elixir
 * does. The message of a call error is EasyRpc's: "Erlang error:
 * {:erpc, :timeout}", "Erlang error: {:exception, <reason>, <stack>}",
 * "Caught exit: {:exception, <reason>}", "Caught throw: <value>"; other
 * errors keep err->message. An error without type prints "[] ..." (the
 * DSL verifier's errors). 0, or CNODE_ENOMEM if it was cut at cap. */
int cnode_rpc_error_format(const cnode_error *err, char *buf, size_t cap);

/* ---- EasyRpc: declarative wrappers (DefRpc) ------------------------------------ */
/* One remote function: module, function, arity and options, the C form of
 * `defrpc :name, args: N, retry: 2, timeout: 1000`. options: NULL, or
 * Erlang term text of a keyword list with EasyRpc's function options
 *     retry              integer >= 0: further attempts (forces error_handling)
 *     timeout            integer > 0 (ms) or infinity
 *     sleep_before_retry integer >= 0 (ms)
 *     error_handling     true | false
 *     new_name, as, private   accepted for config compatibility, unused in C
 * and these of libcnode's:
 *     retry_on           all (EasyRpc's, the default) | node_errors | no_route:
 *                        which errors the def's retry count applies to
 *     enable_logging     true | false (EasyRpc's DSL option)
 *     key_arg            N >= 1: argument N is the hash_ring routing key
 * Keys left out take the balancer's value (its timeout, retries,
 * retry_policy, sleep_before_retry, error_handling). A bad option is a
 * config_error with EasyRpc's text: "Unknown option :x for :get/1 — valid:
 * [...]", "Invalid value for :retry in :get/1: -1".
 * module may use Elixir spelling ("MyApp.Users" is 'Elixir.MyApp.Users'). */
typedef struct cnode_rpc_def {
    const char *module;
    const char *function;
    int arity;
    const char *options;
} cnode_rpc_def;

/* EasyRpc's RpcCall.execute through b: pick a node (again on every
 * attempt), call, log. Bare path (error_handling false, no retries): one
 * attempt. Handled path: up to retry + 1 attempts for the errors retry_on
 * names, sleeping sleep_before_retry between them. Any thread; blocks.
 * args: an encoded list of exactly def->arity elements (with or without
 * 131), NULL for arity 0. 0: the result (with 131) appended to reply, as
 * the handled path's {:ok, value} without the tuple. Errors as
 * cnode_balancer_call, plus CNODE_ECONFIG (bad def: config_error) and
 * CNODE_EVALIDATION (args not a list of arity elements: validation_error).
 * Log lines (through the node's log hook, the calling thread, unless the
 * balancer has no_rpc_log or the def enable_logging false), EasyRpc's B6:
 *   debug   [EasyRpc] --> Mod.fun/1 on :"b@h" [attempt 2] [timeout: 500ms, retry: 1]
 *   debug   [EasyRpc] <-- Mod.fun/1 on :"b@h" succeeded — result: {:got, 1}
 *   warning [EasyRpc] <<< Mod.fun/1 on :"b@h" failed (attempt 1/2, 1 retries left) — [rpc_error] ...
 *   error   [EasyRpc] !!! Mod.fun/1 on :unknown failed permanently after 1 attempt(s) — [node_error] ...
 * (the errors as cnode_rpc_error_format). */
int cnode_rpc_call(cnode_balancer *b, const cnode_rpc_def *def, const ei_x_buff *args, ei_x_buff *reply, cnode_error *err);
/* The same with the arguments as argc separate terms (each with or without
 * 131), NULL-free; argc must equal def->arity. */
int cnode_rpc_callv(cnode_balancer *b, const cnode_rpc_def *def, const ei_x_buff *const *argv, size_t argc, ei_x_buff *reply,
                    cnode_error *err);
/* Check def's names and options now (DefRpc checks at compile time; call
 * this at start-up). 0 or CNODE_ECONFIG with the config_error in err. */
int cnode_rpc_def_check(const cnode_rpc_def *def, cnode_error *err);

/* CNODE_DEFRPC(name, "Mod", "fun", arity, options) declares, in one line:
 *   static const cnode_rpc_def name##_rpc;   the declaration above
 *   int name(cnode_balancer *b, const ei_x_buff *args, ei_x_buff *reply, cnode_error *err);
 *       the stub: cnode_rpc_call with args as one encoded list;
 *   int name##_terms(cnode_balancer *b, const ei_x_buff *a1, ..., const ei_x_buff *aN,
 *                    ei_x_buff *reply, cnode_error *err);
 *       the typed stub: exactly `arity` arguments, each one encoded term,
 *       so the compiler checks the count.
 * All static (one translation unit, like DefRpc's module); arity must be a
 * literal 0 .. 8 (CNODE_DEFRPC_LIST makes only the list stub, any arity).
 * The stubs are what DefRpc generates: they call through whatever balancer
 * you give them, a pg group or an EasyRpc node selector (static list or
 * provider, easy_* algorithms). Example (examples/defrpc.c):
 *     CNODE_DEFRPC(users_get, "MyApp.Users", "get", 1, "[{retry, 2}, {timeout, 1000}]")
 *     ...
 *     rc = users_get_terms(b, &id, &reply, &err);
 */
#define CNODE_DEFRPC_LIST(name, mod, fun, arity, options)                                                                          \
    static const cnode_rpc_def name##_rpc = {(mod), (fun), (arity), (options)};                                                    \
    static inline int name(cnode_balancer *b_, const ei_x_buff *args_, ei_x_buff *reply_, cnode_error *err_)                       \
    {                                                                                                                              \
        return cnode_rpc_call(b_, &name##_rpc, args_, reply_, err_);                                                               \
    }
#define CNODE_DEFRPC(name, mod, fun, arity, options)                                                                               \
    CNODE_DEFRPC_LIST(name, mod, fun, arity, options)                                                                              \
    static inline int name##_terms(cnode_balancer *b_ CNODE__RPC_PARAMS_##arity, ei_x_buff *reply_, cnode_error *err_)             \
    {                                                                                                                              \
        const ei_x_buff *const argv_[] = {CNODE__RPC_ARGV_##arity};                                                                \
        return cnode_rpc_callv(b_, &name##_rpc, argv_, (size_t)(arity), reply_, err_);                                             \
    }
#define CNODE__RPC_PARAMS_0
#define CNODE__RPC_PARAMS_1 , const ei_x_buff *a1_
#define CNODE__RPC_PARAMS_2 CNODE__RPC_PARAMS_1, const ei_x_buff *a2_
#define CNODE__RPC_PARAMS_3 CNODE__RPC_PARAMS_2, const ei_x_buff *a3_
#define CNODE__RPC_PARAMS_4 CNODE__RPC_PARAMS_3, const ei_x_buff *a4_
#define CNODE__RPC_PARAMS_5 CNODE__RPC_PARAMS_4, const ei_x_buff *a5_
#define CNODE__RPC_PARAMS_6 CNODE__RPC_PARAMS_5, const ei_x_buff *a6_
#define CNODE__RPC_PARAMS_7 CNODE__RPC_PARAMS_6, const ei_x_buff *a7_
#define CNODE__RPC_PARAMS_8 CNODE__RPC_PARAMS_7, const ei_x_buff *a8_
#define CNODE__RPC_ARGV_0 NULL
#define CNODE__RPC_ARGV_1 a1_
#define CNODE__RPC_ARGV_2 CNODE__RPC_ARGV_1, a2_
#define CNODE__RPC_ARGV_3 CNODE__RPC_ARGV_2, a3_
#define CNODE__RPC_ARGV_4 CNODE__RPC_ARGV_3, a4_
#define CNODE__RPC_ARGV_5 CNODE__RPC_ARGV_4, a5_
#define CNODE__RPC_ARGV_6 CNODE__RPC_ARGV_5, a6_
#define CNODE__RPC_ARGV_7 CNODE__RPC_ARGV_6, a7_
#define CNODE__RPC_ARGV_8 CNODE__RPC_ARGV_7, a8_

/* ---- EasyRpc: wrappers from configuration (RpcWrapper, NodeSelector) --------- */
/* EasyRpc's app configuration for one wrapper, as Erlang term text (the
 * value of `config :my_app, :name, ...`):
 *   [{nodes, ['a@h', 'b@h']} | {nodes, {Mod, Fun, Args}},
 *    {select_mode, random | round_robin | hash}, {sticky_node, Bool},
 *    {module, Mod}, {timeout, Ms | infinity}, {retry, N},
 *    {sleep_before_retry, Ms}, {error_handling, Bool},
 *    {functions, [{Fun, Arity} | {Fun, Arity, Opts}]},
 *    {nodes_provider_node, Node}]     (ours: where {Mod, Fun, Args} runs)
 * checked in EasyRpc's order with EasyRpc's messages (seed-behaviour.md B2,
 * B3): NodeSelector (nodes, strategy, sticky), then the wrapper (module,
 * timeout, retry, sleep_before_retry, error_handling, functions). The
 * selector becomes a balancer with a static list or a provider and the
 * easy_random / easy_round_robin / easy_hash algorithm; the wrapper's
 * timeout, retry (policy all), sleep and error_handling become its options.
 * node: the calling node (kept until free). *out: yours, free with
 * cnode_rpc_config_free(). Errors: CNODE_ECONFIG (config_error, EasyRpc's
 * message), CNODE_EINVAL (text that is not a term: validation_error),
 * CNODE_ENOMEM. */
typedef struct cnode_rpc_config cnode_rpc_config;
/* WrapperConfig text to a wrapper (see above). */
int cnode_rpc_config_parse(cnode_node *node, const char *text, cnode_rpc_config **out, cnode_error *err);
/* WrapperConfig.load_config!(app, name) over an application environment
 * written as sys.config text: [{App, [{Name, Config}, ...]}, ...]. A missing
 * entry gives "WrapperConfig not found: :app.:name". */
int cnode_rpc_config_load(cnode_node *node, const char *sys_config, const char *app, const char *name, cnode_rpc_config **out,
                          cnode_error *err);
/* NodeSelector.load_config!(app, name): only the selector keys, as a
 * balancer (yours, cnode_balancer_free). "NodeSelector config not found:
 * :app.:name" when missing. */
int cnode_rpc_selector_load(cnode_node *node, const char *sys_config, const char *app, const char *name, cnode_balancer **out,
                            cnode_error *err);
/* The wrapper's balancer (lives with cfg). */
cnode_balancer *cnode_rpc_config_balancer(const cnode_rpc_config *cfg);
/* Call the function the wrapper generates under `name` (its :as, else
 * :new_name, else the remote name) with the function's options merged over
 * the wrapper's, as cnode_rpc_call. CNODE_ENOTFOUND (validation_error) if
 * the wrapper has no such function of that arity. */
int cnode_rpc_config_call(cnode_rpc_config *cfg, const char *name, const ei_x_buff *args, ei_x_buff *reply, cnode_error *err);
/* Frees a wrapper and its balancer (NULL-safe). */
void cnode_rpc_config_free(cnode_rpc_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
