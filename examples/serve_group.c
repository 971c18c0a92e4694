/* serve_group: a C service as a member of a pg group, for BEAM callers. It serves a small
 * key-value module of its own,
 *     kv:put(Key, Value) -> ok
 *     kv:get(Key) -> Value, or raises error:{badkey, Key} when Key was never put
 * (keys and values are any terms), joins group G of scope rpc_load_balancer (the scope
 * rpc_load_balancer routes over) through a node of the cluster, and on SIGTERM or SIGINT
 * leaves the group before it stops, so callers never pick a member that is going away.
 *
 *   build/examples/serve_group --sname kv1 --cookie secret --connect app@host [--group kv]
 *
 * From Elixir (see examples/elixir/kv_client.exs):
 *   [pid | _] = :pg.get_members(:rpc_load_balancer, :kv)
 *   :erpc.call(node(pid), :kv, :put, ["k", 42])     # :ok
 *   :erpc.call(node(pid), :kv, :get, ["nope"])      # ** (ErlangError) ... {:badkey, "nope"}
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode.h"

/* The store: a list of encoded key/value pairs under a lock (handlers run on several
 * worker threads at once). Keys compare by their encoding, as BEAM's maps compare by value:
 * the same term always encodes the same way from one sender. */
typedef struct entry {
    struct entry *next;
    char *key, *val; /* encoded, no 131 */
    size_t klen, vlen;
} entry;

static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;
static entry *store;

/* Argument i of a call as [start, start + len) of args->buf. 0, or -1 if it does not decode. */
static int
arg_span(const cnode_args *args, int i, const char **start, size_t *len)
{
    int end = args->idx[i];
    if (ei_skip_term(args->buf, &end) < 0)
        return -1;
    *start = args->buf + args->idx[i];
    *len = (size_t)(end - args->idx[i]);
    return 0;
}

static entry *
find(const char *key, size_t klen)
{
    for (entry *e = store; e; e = e->next)
        if (e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
    return NULL;
}

static char *
copy(const char *p, size_t n)
{
    char *c = malloc(n ? n : 1);
    if (c)
        memcpy(c, p, n);
    return c;
}

/* raise error:Reason where Reason is {Tag, Term} (Term: encoded, no 131) */
static void
raise_tagged(cnode_call_ctx *ctx, const char *tag, const char *term, size_t len)
{
    ei_x_buff r;
    ei_x_new_with_version(&r);
    ei_x_encode_tuple_header(&r, 2);
    ei_x_encode_atom(&r, tag);
    ei_x_append_buf(&r, term, (int)len);
    cnode_raise(ctx, "error", &r);
    ei_x_free(&r);
}

static void
kv_put(cnode_call_ctx *ctx, const cnode_args *args, void *ud)
{
    (void)ud;
    const char *k, *v;
    size_t kl, vl;
    if (arg_span(args, 0, &k, &kl) != 0 || arg_span(args, 1, &v, &vl) != 0)
        return; /* the server checked the request decodes: not reached */
    char *vc = copy(v, vl);
    if (!vc) {
        ei_x_buff r;
        ei_x_new_with_version(&r);
        ei_x_encode_atom(&r, "enomem");
        cnode_raise(ctx, "error", &r);
        ei_x_free(&r);
        return;
    }
    pthread_mutex_lock(&store_lock);
    entry *e = find(k, kl);
    if (e) {
        free(e->val);
    } else if ((e = calloc(1, sizeof *e)) != NULL && (e->key = copy(k, kl)) != NULL) {
        e->klen = kl;
        e->next = store;
        store = e;
    } else {
        free(e);
        e = NULL;
    }
    if (e) {
        e->val = vc;
        e->vlen = vl;
    } else {
        free(vc);
    }
    pthread_mutex_unlock(&store_lock);
    /* returning without an answer replies `ok` */
}

static void
kv_get(cnode_call_ctx *ctx, const cnode_args *args, void *ud)
{
    (void)ud;
    const char *k;
    size_t kl;
    if (arg_span(args, 0, &k, &kl) != 0)
        return;
    ei_x_buff r;
    ei_x_new_with_version(&r);
    pthread_mutex_lock(&store_lock);
    entry *e = find(k, kl);
    if (e)
        ei_x_append_buf(&r, e->val, (int)e->vlen);
    pthread_mutex_unlock(&store_lock);
    if (e)
        cnode_reply(ctx, &r);
    else /* as maps:get/2 does for a missing key */
        raise_tagged(ctx, "badkey", k, kl);
    ei_x_free(&r);
}

int
main(int argc, char **argv)
{
    const char *sname = "kv", *cookie = NULL, *connect = NULL, *group = "kv";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--sname"))
            sname = argv[i + 1];
        else if (!strcmp(argv[i], "--cookie"))
            cookie = argv[i + 1];
        else if (!strcmp(argv[i], "--connect"))
            connect = argv[i + 1];
        else if (!strcmp(argv[i], "--group"))
            group = argv[i + 1];
    }
    if (!connect) {
        fprintf(stderr, "usage: serve_group --connect NODE [--group G] [--sname N] [--cookie C]\n");
        return 2;
    }
    /* SIGTERM and SIGINT are taken by sigwait below: blocked in every thread the node starts */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    cnode_node_opts no = {.name = sname, .cookie = cookie};
    cnode_node *node;
    cnode_error err = {0};
    if (cnode_node_new(&no, &node, &err) != 0) {
        fprintf(stderr, "serve_group: %s\n", err.message);
        return 1;
    }
    cnode_pg_scope *scope = NULL;
    cnode_proc *member = NULL;
    int rc = cnode_register_function(node, "kv", "put", 2, kv_put, NULL);
    if (rc == 0)
        rc = cnode_register_function(node, "kv", "get", 1, kv_get, NULL);
    if (rc == 0)
        rc = cnode_pg_scope_start(node, "rpc_load_balancer", NULL, &scope);
    if (rc == 0 && (rc = cnode_ping(node, connect, 10000, &err)) == 0) {
        cnode_pg_connect(scope, connect);
        cnode_pg_wait_ready(scope, 0);
        /* the member is a process of ours: callers see its pid in the group, and its node */
        rc = cnode_proc_new(node, NULL, &member);
        if (rc == 0)
            rc = cnode_pg_join(scope, group, member);
    }
    if (rc != 0) {
        fprintf(stderr, "serve_group: %s\n", err.message[0] ? err.message : cnode_strerror(rc));
        cnode_node_close(node);
        return 1;
    }
    printf("serve_group: %s serves kv:put/2 and kv:get/1 as a member of rpc_load_balancer/%s\n", cnode_node_name(node),
           group);
    fflush(stdout);

    int sig = 0;
    sigwait(&stop_signals, &sig);
    /* leave first: from here on nobody picks this node; then let running calls finish */
    cnode_pg_leave(scope, group, member);
    cnode_server_drain(node, 2000);
    printf("serve_group: left rpc_load_balancer/%s on %s, stopping\n", group, sig == SIGTERM ? "SIGTERM" : "SIGINT");
    fflush(stdout);
    cnode_proc_close(member);
    cnode_node_close(node);
    pthread_mutex_lock(&store_lock);
    while (store) {
        entry *e = store;
        store = e->next;
        free(e->key);
        free(e->val);
        free(e);
    }
    pthread_mutex_unlock(&store_lock);
    return 0;
}
