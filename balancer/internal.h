/* Internals shared by the files of balancer/. Not installed.
 *
 *   balancer.c   the selection algorithms, per-node slots and counters
 *   lifecycle.c  names, option checks, cnode_balancer_new / _free
 *   view.c       per-thread prepared candidate sets (views) and merged hash rings
 *   route.c      node sources (pg, static list, provider), picks, calls, retries
 *   least_cpu.c  /proc/stat readings, the cpu handler, LeastCpu's poller and pick
 *   rpc.c        DefRpc: per-function options, EasyRpc's error text and log lines
 *   rpc_config.c EasyRpc's configuration: WrapperConfig and NodeSelector checks
 */
#ifndef CNODE_BALANCER_INTERNAL_H
#define CNODE_BALANCER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "cnode_balancer.h"
#include "term/inspect.h"

#define CNODE__LB_NBUCKETS 256
#define CNODE__LB_LINE 64 /* cache line */
#define CNODE__LB_TL_STICKY 8

/* Per-node state of one balancer: insert-only, read without locks. */
typedef struct cnode__nslot {
    struct cnode__nslot *next;
    uint64_t hash;   /* of the name */
    size_t len;      /* of the name */
    unsigned weight; /* weighted_round_robin: from opts.weights, else 1 */
    atomic_long in_flight;
    _Atomic(uint32_t *) points; /* hash_ring: this node's sorted points */
    _Atomic uint64_t cpu_bits;  /* least_cpu: the reading (a double's bits) */
    _Atomic int64_t cpu_at_ms;  /* least_cpu: when it was taken (monotonic), 0 = never */
    atomic_int filt;            /* the balancer's filter on this name: 0 not run yet, 1 passes, 2 fails */
    char name[];
} cnode__nslot;

typedef struct {
    char *node;
    unsigned weight;
} cnode__weight_ent;

enum { CNODE__SRC_PG = 0, CNODE__SRC_LIST, CNODE__SRC_PROVIDER };

struct cnode_balancer {
    cnode_node *node;
    cnode_pg_scope *scope;
    char group[CNODE_BALANCER_NODE_MAX];
    uint64_t id; /* never reused: keys the per-thread state */
    int algo;
    cnode_balancer_algo custom;
    void *custom_state;
    cnode_filter *filter;
    long timeout_ms, retries, sleep_ms, wait_ms;
    unsigned ring_weight;
    int retry_policy, otp, sticky, error_handling, no_rpc_log;
    cnode__weight_ent *weights;
    size_t nweights;
    cnode_balancer_local_fn *local;
    void *local_data;
    cnode_balancer_observer *observer;
    void *observer_data;
    /* written by every round-robin pick: a line of their own */
    _Alignas(CNODE__LB_LINE) atomic_ulong rr_cursor;
    atomic_ulong wrr_cursor;
    _Alignas(CNODE__LB_LINE) char after_cursors_;
    _Atomic(cnode__nslot *) buckets[CNODE__LB_NBUCKETS];

    /* node source */
    int source;
    char **nodes; /* CNODE__SRC_LIST */
    size_t n_nodes;
    char prov_mod[MAXATOMLEN_UTF8], prov_fun[MAXATOMLEN_UTF8];
    char *prov_node;
    ei_x_buff prov_args; /* with 131 */
    int prov_nargs;
    cnode_balancer_nodes_fn *prov_fn;
    void *prov_data;

    /* least_cpu */
    long poll_ms, jitter_ms, ttl_ms;
    double threshold;
    char cpu_mod[MAXATOMLEN_UTF8], cpu_fun[MAXATOMLEN_UTF8];
    ei_x_buff cpu_args; /* with 131 */
    cnode_balancer_cpu_fn *sampler;
    void *sampler_data;
    pthread_t poller;
    int has_poller;
    pthread_mutex_t poll_lock;
    pthread_cond_t poll_cond;
    int poll_stop; /* under poll_lock */
};

/* balancer.c */
cnode__nslot *cnode__lb_slot(cnode_balancer *b, const char *name, int create);
uint64_t cnode__lb_rand(void);
size_t cnode__lb_rand_below(size_t n);
int64_t cnode__lb_now_ms(void);
/* Pick among nodes (n >= 1) and count the pick in flight. */
int cnode__lb_choose(cnode_balancer *b, const char *const *nodes, size_t n, const char *key, size_t key_len, const char *args,
                     size_t args_len, size_t *index);
/* Fill err as a config_error (CNODE_ECONFIG) or validation_error (CNODE_EINVAL
 * / CNODE_EVALIDATION), the message printf-style. Returns code. */
int cnode__lb_fail(cnode_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* EasyRpc/libcnode type and rpc_load_balancer code for err->code, unless set. */
void cnode__lb_classify(cnode_error *err);

/* The candidates of one pick: names, and their slots when known (a view). */
typedef struct {
    const char *const *names;
    cnode__nslot *const *slots; /* NULL: looked up by name */
    size_t n;
} cnode__lb_cands;

/* balancer.c: the filter's verdict on name (cached in its slot). */
int cnode__lb_filter_pass(cnode_balancer *b, const char *name);

/* view.c: a balancer's candidate set for one source generation, ready for
 * picking; one per balancer and thread (see view.c). */
/* A point of a hash ring and the node that owns it (an index: into the
 * ring's nodes in ring.c, into the candidates in a view). */
typedef struct {
    uint32_t point;
    uint32_t owner;
} cnode__ring_pt;
/* ring.c: index of the first of pts[0, n) (sorted by point) at or above h; n if none. */
size_t cnode__ring_lower_bound(const cnode__ring_pt *pts, size_t n, uint32_t h);
typedef struct {
    uint64_t bid, gen; /* bid 0: empty */
    size_t n;
    const char **names; /* slots[i]->name */
    cnode__nslot **slots;
    uint64_t *cumw; /* weighted_round_robin: running sums of the weights */
    uint64_t total_weight;
    cnode__ring_pt *ring; /* hash_ring: merged at the first keyed pick */
    size_t nring;
    size_t members, suspect, filtered; /* what the source had (for "no member" errors) */
    size_t sticky_at;                  /* where this thread's sticky node was last found */
} cnode__lb_view;
/* The calling thread's view entry for b: b's own, or a free or reused one
 * (then bid != b->id). NULL: out of memory. */
cnode__lb_view *cnode__lb_view_of(cnode_balancer *b);
/* Rebuild v for b from the candidates names[0, n) of source generation gen;
 * counts: members, suspect, filtered out. 0 or CNODE_ENOMEM (v left empty). */
int cnode__lb_view_fill(cnode_balancer *b, cnode__lb_view *v, uint64_t gen, const char *const *names, size_t n,
                        const size_t counts[3]);
/* hash_ring's owner of key among the view's candidates (n >= 1). */
long cnode__lb_view_ring(cnode_balancer *b, cnode__lb_view *v, const char *key, size_t key_len);
/* The same over a caller's list (select_from): a merged ring cached per thread. */
long cnode__lb_pick_ring(cnode_balancer *b, const char *const *nodes, size_t n, const char *key, size_t key_len);
/* Pick among the view's candidates (n >= 1) and count the pick in flight. */
int cnode__lb_choose_view(cnode_balancer *b, cnode__lb_view *v, const char *key, size_t key_len, const char *args, size_t args_len,
                          size_t *index);

/* least_cpu.c */
long cnode__lb_pick_cpu(cnode_balancer *b, const cnode__lb_cands *c);
int cnode__lb_cpu_start(cnode_balancer *b, const cnode_balancer_opts *o, cnode_error *err);
void cnode__lb_cpu_stop(cnode_balancer *b);

/* route.c: the attempt loop, with the per-call settings DefRpc merges. */
typedef struct {
    long timeout_ms; /* > 0 or CNODE_LB_INFINITY */
    long retries;
    int policy;
    long sleep_ms;
    int handled; /* EasyRpc's handled path: logs <<< and !!! for call errors */
    int log;     /* EasyRpc's log lines at all */
    const char *key;
    size_t key_len;
} cnode__lb_params;
/* picked: NULL, or the last attempt's pick (node, snapshot generation, attempt). */
int cnode__lb_route(cnode_balancer *b, const cnode__lb_params *p, int cast, const char *mod, const char *fun, const ei_x_buff *args,
                    ei_x_buff *reply, char *served_by, size_t cap, cnode_balancer_picked *picked, cnode_error *err);
void cnode__lb_default_params(const cnode_balancer *b, cnode__lb_params *p);
/* The distinct candidate nodes the source gives now (no filter for lists),
 * for LeastCpu's poller: *names yours (cnode_strv_free), may be 0. */
int cnode__lb_source_nodes(cnode_balancer *b, char ***names, size_t *n, cnode_error *err);

/* rpc.c: EasyRpc's log lines. */
void cnode__rpc_log_call(cnode_balancer *b, const cnode__lb_params *p, const char *mod, const char *fun, int arity,
                         const char *node, unsigned attempt);
void cnode__rpc_log_ok(cnode_balancer *b, const char *mod, const char *fun, int arity, const char *node, const ei_x_buff *reply,
                       size_t at);
void cnode__rpc_log_failed(cnode_balancer *b, const cnode__lb_params *p, const char *mod, const char *fun, int arity,
                           const char *node, unsigned attempt, int final, const cnode_error *err);
/* Module as EasyRpc prints it (inspect(module)): MyApp.Api, :erlang. */
void cnode__rpc_mod_text(cnode__sb *s, const char *mod);

/* rpc.c: EasyRpc's per-function options (WrapperConfig functions, DefRpc). */
typedef struct {
    int has_retry, has_timeout, has_sleep, has_eh;
    long retry, timeout, sleep;
    int eh;
    int retry_on;                              /* -1: not given */
    int log;                                   /* -1: not given */
    long key_arg;                              /* 0: none */
    char as[MAXATOMLEN], new_name[MAXATOMLEN]; /* "" when not given */
} cnode__rpc_fopts;
void cnode__rpc_fopts_init(cnode__rpc_fopts *o);
/* The keyword list at buf[idx] (ei-decodable, bounded) for fun/arity.
 * easy_only: only EasyRpc's seven keys are valid (WrapperConfig), else
 * libcnode's too (DefRpc). 0 or CNODE_ECONFIG with EasyRpc's message. */
int cnode__rpc_parse_fun_opts(const char *buf, int idx, const char *fun, long arity, int easy_only, cnode__rpc_fopts *o,
                              cnode_error *err);
/* mod_atom:fun(args) through b with o merged over b's options. */
int cnode__rpc_run(cnode_balancer *b, const char *mod_atom, const char *fun, int arity, const cnode__rpc_fopts *o,
                   const ei_x_buff *args, ei_x_buff *reply, cnode_error *err);
/* inspect/1 of the term at buf[idx] (ei-decodable, bounded). */
void cnode__inspect_at(cnode__sb *s, const char *buf, int idx);

#endif
