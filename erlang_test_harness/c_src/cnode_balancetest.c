/* cnode_balancetest: the C side of balancer_SUITE. A C node with pg scopes
 * and balancers that makes calls, single or under load from several
 * threads, and reports the spread, the errors, where retries landed and the
 * in-flight counters.
 *
 *   cnode_balancetest --sname NAME --cookie C [-v]     prints "READY name@host"
 *
 * A registered process `ctl` takes {call, From, Ref, Cmd} and answers
 * From ! {Ref, Reply}. Cmd:
 *   {setup, Scope, Seed}              start scope Scope, connect to Seed, wait for the first sync
 *                                     -> ok | {error, Code}
 *   {balancer, Id, Group, Opts}       a balancer named Id (an atom) over Group of the scope;
 *                                     Opts: {algorithm, A}, {retries, N}, {retry_policy, P},
 *                                     {timeout, Ms}, {wait, Ms}, {sleep, Ms}, {nodes, [Node]},
 *                                     {provider, Node, M, F}, {cpu, M, F}, {poll, Ms},
 *                                     {error_handling, Bool}
 *                                     -> ok | {error, Code, Message}
 *   {call, Id, M, F, Args}            one call -> {ok, Node, Result} | {error, Code, Type, Message, Node, Ms}
 *   {calls, Id, N, M, F, Args}        N calls in a row -> {Spread, Errors}
 *   {load_start, Id, Threads, M, F, Args}  calls in a loop on Threads threads -> ok
 *   {load_stop, Id}                   -> {Spread, Errors, Retries, Late}
 *       Spread [{Node, Count}], Errors [{Code, Count}], Retries [{FailedNode, LandedNode}]
 *       (an attempt that failed and the node the next successful attempt used),
 *       Late: calls answered by the marked node more than 200 ms after the mark
 *   {mark, Node}                      note the time Node was killed -> ok
 *   {in_flight, Id}                   [{Node, Count}] for every node Id has counted
 *   {members, Scope, Group}           the distinct nodes of Group in the mirror
 *   {rpc, Id, M, F, Args, Options}    a DefRpc call (Options: term text) -> {Rc, [LogLine]}
 *   serve_cpu                         this node answers LeastCpu's default MFA -> ok
 *   {cpu_poll, Id}                    one poll round -> ok | {error, Code}
 *   {cpu, Id, Node}                   the reading a pick would use -> Float
 *   stop                              -> ok, then the program exits
 * It also stops when stdin closes or on SIGTERM. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cnode.h"
#include "cnode_balancer.h"

#define MAX_LB 16
#define MAX_SCOPES 4
#define MAX_THREADS 16
#define MAX_NODES 64
#define MAX_RETRIES 512
#define GRACE_MS 200

typedef struct {
    char name[CNODE_BALANCER_NODE_MAX];
    long count;
} count_ent;

typedef struct {
    char id[MAXATOMLEN_UTF8];
    cnode_balancer *b;
    pthread_mutex_t lock;
    count_ent spread[MAX_NODES];
    size_t nspread;
    struct {
        int code;
        long count;
    } errors[32];
    size_t nerrors;
    struct {
        char failed[CNODE_BALANCER_NODE_MAX], landed[CNODE_BALANCER_NODE_MAX];
    } retries[MAX_RETRIES];
    size_t nretries;
    long late;
    /* load */
    pthread_t threads[MAX_THREADS];
    int nthreads;
    atomic_int stop;
    char mod[MAXATOMLEN_UTF8], fun[MAXATOMLEN_UTF8];
    ei_x_buff args;
    char **node_list; /* {nodes, [...]} storage */
    size_t n_node_list;
    ei_x_buff prov_args;
} lb_ent;

static cnode_node *node;
static cnode_proc *ctl;
static int verbose;
static struct {
    char name[MAXATOMLEN_UTF8];
    cnode_pg_scope *scope;
} scopes[MAX_SCOPES];
static int nscopes;
static lb_ent lbs[MAX_LB];
static int nlbs;
static pthread_mutex_t mark_lock = PTHREAD_MUTEX_INITIALIZER;
static char mark_node[CNODE_BALANCER_NODE_MAX];
static int64_t mark_ms;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int capturing;
static char *captured[256];
static int ncaptured;
static _Thread_local char tl_failed[CNODE_BALANCER_NODE_MAX];

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
log_cb(int level, const char *msg, void *ud)
{
    (void)ud;
    if (strncmp(msg, "[EasyRpc]", 9) == 0) {
        pthread_mutex_lock(&log_lock);
        if (capturing && ncaptured < 256)
            captured[ncaptured++] = strdup(msg);
        pthread_mutex_unlock(&log_lock);
        return;
    }
    if (verbose || level <= CNODE_LOG_WARNING)
        fprintf(stderr, "balancetest: [%d] %s\n", level, msg);
}

/* ---- recording ---- */

static void
count_node(lb_ent *e, const char *n)
{
    for (size_t i = 0; i < e->nspread; i++)
        if (strcmp(e->spread[i].name, n) == 0) {
            e->spread[i].count++;
            return;
        }
    if (e->nspread < MAX_NODES) {
        snprintf(e->spread[e->nspread].name, CNODE_BALANCER_NODE_MAX, "%s", n);
        e->spread[e->nspread++].count = 1;
    }
}

static void
count_error(lb_ent *e, int code)
{
    for (size_t i = 0; i < e->nerrors; i++)
        if (e->errors[i].code == code) {
            e->errors[i].count++;
            return;
        }
    if (e->nerrors < 32) {
        e->errors[e->nerrors].code = code;
        e->errors[e->nerrors++].count = 1;
    }
}

/* Runs on the calling thread after every attempt. */
static void
observer(const cnode_balancer_event *ev, void *data)
{
    lb_ent *e = data;
    if (ev->status != 0 && !ev->last) {
        snprintf(tl_failed, sizeof tl_failed, "%s", ev->node);
        return;
    }
    if (ev->status == 0 && ev->attempt > 0) {
        pthread_mutex_lock(&e->lock);
        if (e->nretries < MAX_RETRIES) {
            snprintf(e->retries[e->nretries].failed, CNODE_BALANCER_NODE_MAX, "%s", tl_failed);
            snprintf(e->retries[e->nretries].landed, CNODE_BALANCER_NODE_MAX, "%s", ev->node);
            e->nretries++;
        }
        pthread_mutex_unlock(&e->lock);
    }
    tl_failed[0] = 0;
}

static void
record(lb_ent *e, int rc, const char *served)
{
    pthread_mutex_lock(&e->lock);
    if (rc == 0) {
        count_node(e, served);
        pthread_mutex_lock(&mark_lock);
        if (mark_node[0] && strcmp(mark_node, served) == 0 && now_ms() > mark_ms + GRACE_MS)
            e->late++;
        pthread_mutex_unlock(&mark_lock);
    } else {
        count_error(e, rc);
    }
    pthread_mutex_unlock(&e->lock);
}

static void
reset_stats(lb_ent *e)
{
    pthread_mutex_lock(&e->lock);
    e->nspread = e->nerrors = e->nretries = 0;
    e->late = 0;
    pthread_mutex_unlock(&e->lock);
}

/* ---- term helpers ---- */

static void
x_status(ei_x_buff *x, int rc)
{
    if (rc == 0) {
        ei_x_encode_atom(x, "ok");
    } else {
        ei_x_encode_tuple_header(x, 2);
        ei_x_encode_atom(x, "error");
        ei_x_encode_long(x, rc);
    }
}

static void
x_binary(ei_x_buff *x, const char *s)
{
    ei_x_encode_binary(x, s, (long)strlen(s));
}

/* The term at *idx copied as a standalone list (with 131) into out. */
static int
copy_term(const char *b, int *idx, ei_x_buff *out)
{
    int start = *idx;
    if (ei_skip_term(b, idx) != 0)
        return -1;
    ei_x_new_with_version(out);
    return ei_x_append_buf(out, b + start, *idx - start);
}

static void
x_spread(ei_x_buff *r, lb_ent *e)
{
    if (e->nspread)
        ei_x_encode_list_header(r, (long)e->nspread);
    for (size_t i = 0; i < e->nspread; i++) {
        ei_x_encode_tuple_header(r, 2);
        ei_x_encode_atom(r, e->spread[i].name);
        ei_x_encode_long(r, e->spread[i].count);
    }
    ei_x_encode_empty_list(r);
}

static void
x_errors(ei_x_buff *r, lb_ent *e)
{
    if (e->nerrors)
        ei_x_encode_list_header(r, (long)e->nerrors);
    for (size_t i = 0; i < e->nerrors; i++) {
        ei_x_encode_tuple_header(r, 2);
        ei_x_encode_long(r, e->errors[i].code);
        ei_x_encode_long(r, e->errors[i].count);
    }
    ei_x_encode_empty_list(r);
}

static lb_ent *
lb_by_id(const char *id)
{
    for (int i = 0; i < nlbs; i++)
        if (lbs[i].b && strcmp(lbs[i].id, id) == 0)
            return &lbs[i];
    return NULL;
}

static cnode_pg_scope *
scope_by_name(const char *name)
{
    for (int i = 0; i < nscopes; i++)
        if (strcmp(scopes[i].name, name) == 0)
            return scopes[i].scope;
    return NULL;
}

/* ---- commands ---- */

static void
cmd_setup(const char *b, int idx, ei_x_buff *r)
{
    char sc[MAXATOMLEN_UTF8], seed[MAXATOMLEN_UTF8];
    if (ei_decode_atom(b, &idx, sc) != 0 || ei_decode_atom(b, &idx, seed) != 0) {
        ei_x_encode_atom(r, "badarg");
        return;
    }
    cnode_pg_scope *s = scope_by_name(sc);
    int rc = 0;
    if (!s) {
        if (nscopes == MAX_SCOPES) {
            x_status(r, CNODE_ENOMEM);
            return;
        }
        rc = cnode_pg_scope_start(node, sc, NULL, &s);
        if (rc == 0) {
            snprintf(scopes[nscopes].name, sizeof scopes[nscopes].name, "%s", sc);
            scopes[nscopes++].scope = s;
        }
    }
    if (rc == 0)
        rc = cnode_ping(node, seed, 10000, NULL);
    if (rc == 0)
        rc = cnode_pg_connect(s, seed);
    if (rc == 0)
        rc = cnode_pg_wait_ready(s, 10000);
    x_status(r, rc);
}

/* Balancer options from a proplist. */
static int
parse_opts(const char *b, int idx, lb_ent *e, cnode_balancer_opts *o, char *pnode, char *pmod, char *pfun, char *cmod, char *cfun,
           char *algo)
{
    int n;
    if (ei_decode_list_header(b, &idx, &n) != 0)
        return -1;
    for (int i = 0; i < n; i++) {
        int ar;
        char key[MAXATOMLEN_UTF8];
        long v;
        if (ei_decode_tuple_header(b, &idx, &ar) != 0 || ei_decode_atom(b, &idx, key) != 0)
            return -1;
        if (strcmp(key, "algorithm") == 0) {
            if (ei_decode_atom(b, &idx, algo) != 0)
                return -1;
            o->algorithm_name = algo;
        } else if (strcmp(key, "retry_policy") == 0) {
            char p[MAXATOMLEN_UTF8];
            if (ei_decode_atom(b, &idx, p) != 0)
                return -1;
            o->retry_policy = strcmp(p, "all") == 0 ? CNODE_LB_RETRY_ALL
                              : strcmp(p, "node_errors") == 0 ? CNODE_LB_RETRY_NODE_ERRORS
                                                               : CNODE_LB_RETRY_NO_ROUTE;
        } else if (strcmp(key, "nodes") == 0) {
            int nn;
            if (ei_decode_list_header(b, &idx, &nn) != 0 || nn <= 0)
                return -1;
            e->node_list = calloc((size_t)nn, sizeof *e->node_list);
            for (int k = 0; k < nn; k++) {
                char a[MAXATOMLEN_UTF8];
                if (ei_decode_atom(b, &idx, a) != 0)
                    return -1;
                e->node_list[e->n_node_list++] = strdup(a);
            }
            ei_skip_term(b, &idx); /* [] */
            o->nodes = (const char *const *)e->node_list;
            o->n_nodes = e->n_node_list;
        } else if (strcmp(key, "provider") == 0) {
            if (ei_decode_atom(b, &idx, pnode) != 0 || ei_decode_atom(b, &idx, pmod) != 0 || ei_decode_atom(b, &idx, pfun) != 0)
                return -1;
            o->provider_node = pnode;
            o->provider_module = pmod;
            o->provider_function = pfun;
        } else if (strcmp(key, "cpu") == 0) {
            if (ei_decode_atom(b, &idx, cmod) != 0 || ei_decode_atom(b, &idx, cfun) != 0)
                return -1;
            o->cpu_module = cmod;
            o->cpu_function = cfun;
        } else if (strcmp(key, "error_handling") == 0) {
            int bv;
            if (ei_decode_boolean(b, &idx, &bv) != 0)
                return -1;
            o->error_handling = bv;
        } else if (ei_decode_long(b, &idx, &v) == 0) {
            if (strcmp(key, "retries") == 0)
                o->retries = v;
            else if (strcmp(key, "timeout") == 0)
                o->timeout_ms = v;
            else if (strcmp(key, "wait") == 0)
                o->wait_members_ms = v;
            else if (strcmp(key, "sleep") == 0)
                o->sleep_before_retry_ms = v;
            else if (strcmp(key, "poll") == 0)
                o->poll_interval_ms = v;
            else
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

static void
free_ent(lb_ent *e)
{
    cnode_balancer_free(e->b);
    e->b = NULL;
    for (size_t i = 0; i < e->n_node_list; i++)
        free(e->node_list[i]);
    free(e->node_list);
    e->node_list = NULL;
    e->n_node_list = 0;
    if (e->args.buff)
        ei_x_free(&e->args);
    pthread_mutex_destroy(&e->lock);
}

static void
cmd_balancer(const char *b, int idx, ei_x_buff *r)
{
    char id[MAXATOMLEN_UTF8], group[MAXATOMLEN_UTF8];
    if (ei_decode_atom(b, &idx, id) != 0 || ei_decode_atom(b, &idx, group) != 0 || nlbs == MAX_LB || lb_by_id(id)) {
        ei_x_encode_atom(r, "badarg");
        return;
    }
    lb_ent *e = &lbs[nlbs];
    memset(e, 0, sizeof *e);
    pthread_mutex_init(&e->lock, NULL);
    snprintf(e->id, sizeof e->id, "%s", id);
    static char pnode[MAXATOMLEN_UTF8], pmod[MAXATOMLEN_UTF8], pfun[MAXATOMLEN_UTF8], cmod[MAXATOMLEN_UTF8], cfun[MAXATOMLEN_UTF8],
        algo[MAXATOMLEN_UTF8];
    cnode_balancer_opts o = {.observer = observer, .observer_data = e};
    if (parse_opts(b, idx, e, &o, pnode, pmod, pfun, cmod, cfun, algo) != 0) {
        free_ent(e);
        ei_x_encode_atom(r, "badarg");
        return;
    }
    cnode_error err = {0};
    int rc = cnode_balancer_new(node, nscopes ? scopes[0].scope : NULL, group, &o, &e->b, &err);
    if (rc != 0) {
        ei_x_encode_tuple_header(r, 3);
        ei_x_encode_atom(r, "error");
        ei_x_encode_long(r, rc);
        x_binary(r, err.message);
        cnode_error_clear(&err);
        free_ent(e);
        return;
    }
    nlbs++;
    ei_x_encode_atom(r, "ok");
}

/* Id, M, F, Args at idx. */
static lb_ent *
decode_call(const char *b, int *idx, char *mod, char *fun, ei_x_buff *args)
{
    char id[MAXATOMLEN_UTF8];
    if (ei_decode_atom(b, idx, id) != 0)
        return NULL;
    lb_ent *e = lb_by_id(id);
    if (!e || ei_decode_atom(b, idx, mod) != 0 || ei_decode_atom(b, idx, fun) != 0 || copy_term(b, idx, args) != 0)
        return NULL;
    return e;
}

static void
cmd_call(const char *b, int idx, ei_x_buff *r)
{
    char mod[MAXATOMLEN_UTF8], fun[MAXATOMLEN_UTF8];
    ei_x_buff args = {0};
    lb_ent *e = decode_call(b, &idx, mod, fun, &args);
    if (!e) {
        if (args.buff)
            ei_x_free(&args);
        ei_x_encode_atom(r, "badarg");
        return;
    }
    ei_x_buff reply;
    ei_x_new(&reply);
    cnode_error err = {0};
    char served[CNODE_BALANCER_NODE_MAX];
    int64_t t0 = now_ms();
    int rc = cnode_balancer_call(e->b, mod, fun, &args, NULL, &reply, served, sizeof served, &err);
    long took = (long)(now_ms() - t0);
    if (rc == 0) {
        ei_x_encode_tuple_header(r, 3);
        ei_x_encode_atom(r, "ok");
        ei_x_encode_atom(r, served);
        ei_x_append_buf(r, reply.buff + 1, reply.index - 1); /* without its 131 */
    } else {
        char text[2048];
        cnode_rpc_error_format(&err, text, sizeof text); /* EasyRpc's text */
        ei_x_encode_tuple_header(r, 6);
        ei_x_encode_atom(r, "error");
        ei_x_encode_long(r, rc);
        ei_x_encode_atom(r, err.type ? err.type : "undefined");
        x_binary(r, text);
        ei_x_encode_atom(r, served);
        ei_x_encode_long(r, took);
    }
    cnode_error_clear(&err);
    ei_x_free(&reply);
    ei_x_free(&args);
}

static int
one_call(lb_ent *e, const char *mod, const char *fun, const ei_x_buff *args)
{
    ei_x_buff reply;
    ei_x_new(&reply);
    char served[CNODE_BALANCER_NODE_MAX];
    int rc = cnode_balancer_call(e->b, mod, fun, args, NULL, &reply, served, sizeof served, NULL);
    ei_x_free(&reply);
    record(e, rc, served);
    return rc;
}

static void
cmd_calls(const char *b, int idx, ei_x_buff *r)
{
    char id[MAXATOMLEN_UTF8], mod[MAXATOMLEN_UTF8], fun[MAXATOMLEN_UTF8];
    long n;
    ei_x_buff args = {0};
    lb_ent *e = NULL;
    if (ei_decode_atom(b, &idx, id) == 0 && (e = lb_by_id(id)) && ei_decode_long(b, &idx, &n) == 0 &&
        ei_decode_atom(b, &idx, mod) == 0 && ei_decode_atom(b, &idx, fun) == 0 && copy_term(b, &idx, &args) == 0) {
        reset_stats(e);
        for (long k = 0; k < n; k++)
            one_call(e, mod, fun, &args);
        ei_x_encode_tuple_header(r, 2);
        x_spread(r, e);
        x_errors(r, e);
    } else {
        ei_x_encode_atom(r, "badarg");
    }
    if (args.buff)
        ei_x_free(&args);
}

static void *
load_main(void *arg)
{
    lb_ent *e = arg;
    while (!atomic_load(&e->stop))
        one_call(e, e->mod, e->fun, &e->args);
    return NULL;
}

static void
cmd_load_start(const char *b, int idx, ei_x_buff *r)
{
    char id[MAXATOMLEN_UTF8];
    long threads;
    lb_ent *e = NULL;
    if (ei_decode_atom(b, &idx, id) != 0 || !(e = lb_by_id(id)) || e->nthreads || ei_decode_long(b, &idx, &threads) != 0 ||
        threads < 1 || threads > MAX_THREADS || ei_decode_atom(b, &idx, e->mod) != 0 || ei_decode_atom(b, &idx, e->fun) != 0 ||
        copy_term(b, &idx, &e->args) != 0) {
        ei_x_encode_atom(r, "badarg");
        return;
    }
    reset_stats(e);
    atomic_store(&e->stop, 0);
    for (long k = 0; k < threads; k++)
        if (pthread_create(&e->threads[k], NULL, load_main, e) == 0)
            e->nthreads++;
    ei_x_encode_atom(r, "ok");
}

static void
stop_load(lb_ent *e)
{
    atomic_store(&e->stop, 1);
    for (int k = 0; k < e->nthreads; k++)
        pthread_join(e->threads[k], NULL);
    e->nthreads = 0;
}

static void
cmd_load_stop(const char *b, int idx, ei_x_buff *r)
{
    char id[MAXATOMLEN_UTF8];
    lb_ent *e = NULL;
    if (ei_decode_atom(b, &idx, id) != 0 || !(e = lb_by_id(id))) {
        ei_x_encode_atom(r, "badarg");
        return;
    }
    stop_load(e);
    ei_x_encode_tuple_header(r, 4);
    x_spread(r, e);
    x_errors(r, e);
    if (e->nretries)
        ei_x_encode_list_header(r, (long)e->nretries);
    for (size_t i = 0; i < e->nretries; i++) {
        ei_x_encode_tuple_header(r, 2);
        ei_x_encode_atom(r, e->retries[i].failed);
        ei_x_encode_atom(r, e->retries[i].landed);
    }
    ei_x_encode_empty_list(r);
    ei_x_encode_long(r, e->late);
}

static void
cmd_in_flight(const char *b, int idx, ei_x_buff *r)
{
    char id[MAXATOMLEN_UTF8];
    lb_ent *e = NULL;
    if (ei_decode_atom(b, &idx, id) != 0 || !(e = lb_by_id(id))) {
        ei_x_encode_atom(r, "badarg");
        return;
    }
    static char names[MAX_NODES][CNODE_BALANCER_NODE_MAX];
    long counts[MAX_NODES];
    size_t n = cnode_balancer_counters(e->b, names, counts, MAX_NODES);
    if (n > MAX_NODES)
        n = MAX_NODES;
    if (n)
        ei_x_encode_list_header(r, (long)n);
    for (size_t i = 0; i < n; i++) {
        ei_x_encode_tuple_header(r, 2);
        ei_x_encode_atom(r, names[i]);
        ei_x_encode_long(r, counts[i]);
    }
    ei_x_encode_empty_list(r);
}

static void
cmd_members(const char *b, int idx, ei_x_buff *r)
{
    char sc[MAXATOMLEN_UTF8], group[MAXATOMLEN_UTF8];
    cnode_pg_scope *s;
    if (ei_decode_atom(b, &idx, sc) != 0 || ei_decode_atom(b, &idx, group) != 0 || !(s = scope_by_name(sc))) {
        ei_x_encode_atom(r, "badarg");
        return;
    }
    cnode_pg_snapshot *snap = cnode_pg_snapshot_get(s);
    size_t n;
    const cnode_pg_member *m = cnode_pg_members(snap, group, &n);
    const char *seen[MAX_NODES];
    size_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        int dup = 0;
        for (size_t k = 0; k < ns && !dup; k++)
            dup = strcmp(seen[k], m[i].node) == 0;
        if (!dup && ns < MAX_NODES && cnode_pg_node_suspect(snap, m[i].node) != 1)
            seen[ns++] = m[i].node;
    }
    if (ns)
        ei_x_encode_list_header(r, (long)ns);
    for (size_t i = 0; i < ns; i++)
        ei_x_encode_atom(r, seen[i]);
    ei_x_encode_empty_list(r);
    cnode_pg_snapshot_release(snap);
}

static void
cmd_rpc(const char *b, int idx, ei_x_buff *r)
{
    char mod[MAXATOMLEN_UTF8], fun[MAXATOMLEN_UTF8], opts[1024];
    ei_x_buff args = {0};
    lb_ent *e = decode_call(b, &idx, mod, fun, &args);
    long olen;
    int type, size;
    if (!e || ei_get_type(b, &idx, &type, &size) != 0 || size >= (int)sizeof opts || ei_decode_binary(b, &idx, opts, &olen) != 0) {
        if (args.buff)
            ei_x_free(&args);
        ei_x_encode_atom(r, "badarg");
        return;
    }
    opts[olen] = 0;
    int aidx = 1, arity = 0;
    ei_get_type(args.buff, &aidx, &type, &arity);
    cnode_rpc_def def = {mod, fun, arity, olen ? opts : NULL};
    ei_x_buff reply;
    ei_x_new(&reply);
    cnode_error err = {0};
    pthread_mutex_lock(&log_lock);
    capturing = 1;
    pthread_mutex_unlock(&log_lock);
    int rc = cnode_rpc_call(e->b, &def, &args, &reply, &err);
    pthread_mutex_lock(&log_lock);
    capturing = 0;
    ei_x_encode_tuple_header(r, 2);
    ei_x_encode_long(r, rc);
    if (ncaptured)
        ei_x_encode_list_header(r, ncaptured);
    for (int i = 0; i < ncaptured; i++) {
        x_binary(r, captured[i]);
        free(captured[i]);
    }
    ncaptured = 0;
    ei_x_encode_empty_list(r);
    pthread_mutex_unlock(&log_lock);
    cnode_error_clear(&err);
    ei_x_free(&reply);
    ei_x_free(&args);
}

/* One command; 1 when the program should stop. */
static int
command(const char *b, int idx, ei_x_buff *r)
{
    int arity = 0, type, size;
    char cmd[MAXATOMLEN_UTF8];
    if (ei_get_type(b, &idx, &type, &size) == 0 && type == ERL_ATOM_EXT) {
        ei_decode_atom(b, &idx, cmd);
    } else if (ei_decode_tuple_header(b, &idx, &arity) < 0 || ei_decode_atom(b, &idx, cmd) < 0) {
        ei_x_encode_atom(r, "badarg");
        return 0;
    }
    if (strcmp(cmd, "stop") == 0) {
        ei_x_encode_atom(r, "ok");
        return 1;
    }
    if (strcmp(cmd, "serve_cpu") == 0) {
        x_status(r, cnode_balancer_serve_cpu(node, NULL, NULL, 0));
    } else if (strcmp(cmd, "setup") == 0 && arity == 3) {
        cmd_setup(b, idx, r);
    } else if (strcmp(cmd, "balancer") == 0 && arity == 4) {
        cmd_balancer(b, idx, r);
    } else if (strcmp(cmd, "call") == 0 && arity == 5) {
        cmd_call(b, idx, r);
    } else if (strcmp(cmd, "calls") == 0 && arity == 6) {
        cmd_calls(b, idx, r);
    } else if (strcmp(cmd, "load_start") == 0 && arity == 6) {
        cmd_load_start(b, idx, r);
    } else if (strcmp(cmd, "load_stop") == 0 && arity == 2) {
        cmd_load_stop(b, idx, r);
    } else if (strcmp(cmd, "in_flight") == 0 && arity == 2) {
        cmd_in_flight(b, idx, r);
    } else if (strcmp(cmd, "members") == 0 && arity == 3) {
        cmd_members(b, idx, r);
    } else if (strcmp(cmd, "rpc") == 0 && arity == 6) {
        cmd_rpc(b, idx, r);
    } else if (strcmp(cmd, "mark") == 0 && arity == 2) {
        char nd[MAXATOMLEN_UTF8];
        ei_decode_atom(b, &idx, nd);
        pthread_mutex_lock(&mark_lock);
        snprintf(mark_node, sizeof mark_node, "%s", nd);
        mark_ms = now_ms();
        pthread_mutex_unlock(&mark_lock);
        ei_x_encode_atom(r, "ok");
    } else if ((strcmp(cmd, "cpu_poll") == 0 && arity == 2) || (strcmp(cmd, "cpu") == 0 && arity == 3)) {
        char id[MAXATOMLEN_UTF8], nd[MAXATOMLEN_UTF8];
        lb_ent *e = ei_decode_atom(b, &idx, id) == 0 ? lb_by_id(id) : NULL;
        if (!e)
            ei_x_encode_atom(r, "badarg");
        else if (arity == 2)
            x_status(r, cnode_balancer_cpu_poll(e->b));
        else if (ei_decode_atom(b, &idx, nd) == 0)
            ei_x_encode_double(r, cnode_balancer_cpu_get(e->b, nd));
        else
            ei_x_encode_atom(r, "badarg");
    } else {
        ei_x_encode_atom(r, "badarg");
    }
    return 0;
}

/* The watcher threads outlive the node: they may ask only while it is open. */
static pthread_mutex_t stop_lock = PTHREAD_MUTEX_INITIALIZER;
static int closing;

static void
ask_stop(void)
{
    pthread_mutex_lock(&stop_lock);
    if (closing) {
        pthread_mutex_unlock(&stop_lock);
        return;
    }
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 4);
    ei_x_encode_atom(&x, "call");
    ei_x_encode_pid(&x, cnode_proc_pid(ctl));
    ei_x_encode_ref(&x, &(erlang_ref){.node = "", .len = 1});
    ei_x_encode_atom(&x, "stop");
    cnode_send(ctl, cnode_proc_pid(ctl), &x);
    ei_x_free(&x);
    pthread_mutex_unlock(&stop_lock);
}

static void *
stdin_watch(void *arg)
{
    (void)arg;
    char buf[256];
    while (read(0, buf, sizeof buf) > 0)
        ;
    ask_stop();
    return NULL;
}

static void *
signal_watch(void *arg)
{
    sigset_t *set = arg;
    int sig;
    if (sigwait(set, &sig) == 0)
        ask_stop();
    return NULL;
}

int
main(int argc, char **argv)
{
    const char *name = NULL, *cookie = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--sname") == 0 && i + 1 < argc)
            name = argv[++i];
        else if (strcmp(argv[i], "--cookie") == 0 && i + 1 < argc)
            cookie = argv[++i];
        else if (strcmp(argv[i], "-v") == 0)
            verbose = 1;
    }
    if (!name || !cookie) {
        fprintf(stderr, "usage: cnode_balancetest --sname NAME --cookie C [-v]\n");
        return 2;
    }
    static sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread starts */
    cnode_node_opts o = {.name = name, .cookie = cookie, .log = log_cb, .log_level = CNODE_LOG_DEBUG};
    cnode_error err = {0};
    if (cnode_node_new(&o, &node, &err) != 0) {
        fprintf(stderr, "balancetest: %s\n", err.message);
        return 2;
    }
    if (cnode_proc_new(node, "ctl", &ctl) != 0) {
        cnode_node_close(node);
        return 2;
    }
    pthread_t watcher, sigthr;
    pthread_create(&watcher, NULL, stdin_watch, NULL);
    pthread_detach(watcher);
    pthread_create(&sigthr, NULL, signal_watch, &set);
    pthread_detach(sigthr);
    printf("READY %s\n", cnode_node_name(node));
    fflush(stdout);
    for (int stop = 0; !stop;) {
        cnode_msg m;
        if (cnode_receive(ctl, -1, &m) != 0)
            break;
        const char *b = m.data.buff;
        int idx = 0, ver, arity;
        erlang_pid from;
        char tag[MAXATOMLEN_UTF8];
        if (ei_decode_version(b, &idx, &ver) == 0 && ei_decode_tuple_header(b, &idx, &arity) == 0 && arity == 4 &&
            ei_decode_atom(b, &idx, tag) == 0 && strcmp(tag, "call") == 0 && ei_decode_pid(b, &idx, &from) == 0) {
            int ref_at = idx;
            if (ei_skip_term(b, &idx) == 0) {
                ei_x_buff r;
                ei_x_new_with_version(&r);
                ei_x_encode_tuple_header(&r, 2);
                ei_x_append_buf(&r, b + ref_at, idx - ref_at);
                stop = command(b, idx, &r);
                cnode_send(ctl, &from, &r);
                ei_x_free(&r);
            }
        }
        cnode_msg_free(&m);
    }
    for (int i = 0; i < nlbs; i++) {
        stop_load(&lbs[i]);
        free_ent(&lbs[i]);
    }
    pthread_mutex_lock(&stop_lock);
    closing = 1;
    pthread_mutex_unlock(&stop_lock);
    cnode_proc_close(ctl);
    cnode_node_close(node); /* flushes what is still queued (the last reply) before it closes */
    return 0;
}
