/* The balancer's life cycle: algorithm names, the option checks with
 * EasyRpc's wording (seed-behaviour.md B2, B3), cnode_balancer_new and
 * cnode_balancer_free. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balancer/internal.h"

static atomic_ullong next_id = 1;

/* ---- names ---- */

static const struct {
    const char *name, *module;
    int algo;
} algo_names[] = {
    {"random", "Random", CNODE_LB_RANDOM},
    {"round_robin", "RoundRobin", CNODE_LB_ROUND_ROBIN},
    {"least_connections", "LeastConnections", CNODE_LB_LEAST_CONNECTIONS},
    {"power_of_two", "PowerOfTwo", CNODE_LB_POWER_OF_TWO},
    {"hash_ring", "HashRing", CNODE_LB_HASH_RING},
    {"weighted_round_robin", "WeightedRoundRobin", CNODE_LB_WEIGHTED_ROUND_ROBIN},
    {"call_direct", "CallDirect", CNODE_LB_CALL_DIRECT},
    {"easy_random", NULL, CNODE_LB_EASY_RANDOM},
    {"easy_round_robin", NULL, CNODE_LB_EASY_ROUND_ROBIN},
    {"easy_hash", NULL, CNODE_LB_EASY_HASH},
    {"sticky", NULL, CNODE_LB_STICKY},
    {"least_cpu", "LeastCpu", CNODE_LB_LEAST_CPU},
    {"custom", NULL, CNODE_LB_CUSTOM},
};
#define NALGOS (sizeof algo_names / sizeof algo_names[0])

int
cnode_balancer_algorithm_parse(const char *name, int *algorithm)
{
    if (!name || !algorithm)
        return CNODE_EINVAL;
    static const char prefix[] = "Elixir.RpcLoadBalancer.LoadBalancer.SelectionAlgorithm.";
    const char *mod = strncmp(name, prefix, sizeof prefix - 1) == 0 ? name + sizeof prefix - 1 : name;
    for (size_t i = 0; i < NALGOS; i++)
        if (strcmp(name, algo_names[i].name) == 0 || (algo_names[i].module && strcmp(mod, algo_names[i].module) == 0)) {
            *algorithm = algo_names[i].algo;
            return 0;
        }
    return CNODE_EINVAL;
}

const char *
cnode_balancer_algorithm_name(int algorithm)
{
    for (size_t i = 0; i < NALGOS; i++)
        if (algo_names[i].algo == algorithm)
            return algo_names[i].name;
    return "unknown";
}

/* ---- life cycle ---- */

void
cnode_balancer_free(cnode_balancer *b)
{
    if (!b)
        return;
    cnode__lb_cpu_stop(b);
    if (b->algo == CNODE_LB_CUSTOM && b->custom.destroy)
        b->custom.destroy(b->custom_state);
    for (int i = 0; i < CNODE__LB_NBUCKETS; i++) {
        cnode__nslot *s = atomic_load(&b->buckets[i]);
        while (s) {
            cnode__nslot *next = s->next;
            free(atomic_load(&s->points));
            free(s);
            s = next;
        }
    }
    for (size_t i = 0; i < b->nweights; i++)
        free(b->weights[i].node);
    free(b->weights);
    for (size_t i = 0; i < b->n_nodes; i++)
        free(b->nodes[i]);
    free(b->nodes);
    free(b->prov_node);
    if (b->prov_args.buff)
        ei_x_free(&b->prov_args);
    if (b->cpu_args.buff)
        ei_x_free(&b->cpu_args);
    cnode_filter_free(b->filter);
    free(b);
}

/* "[:random, :round_robin, ...]" */
static void
algo_list(char *out, size_t cap)
{
    cnode__sb s;
    cnode__sb_init(&s, out, cap);
    cnode__sb_put(&s, "[", 1);
    for (size_t i = 0; i < NALGOS; i++) {
        if (i)
            cnode__sb_put(&s, ", ", 2);
        cnode__inspect_atom(&s, algo_names[i].name, strlen(algo_names[i].name));
    }
    cnode__sb_put(&s, "]", 1);
}

/* The argument list term: copied with its 131 into dst; its length or -1. */
static int
copy_list(const ei_x_buff *src, ei_x_buff *dst)
{
    if (ei_x_new_with_version(dst) != 0)
        return -2;
    if (!src) {
        ei_x_encode_empty_list(dst);
        return 0;
    }
    const char *p = src->buff;
    int len = src->index;
    if (!p || len <= 0)
        return -1;
    if ((unsigned char)p[0] == 131) {
        p++;
        len--;
    }
    if (len <= 0 || ((unsigned char)p[0] != 106 && (unsigned char)p[0] != 107 && (unsigned char)p[0] != 108))
        return -1;
    if (ei_x_append_buf(dst, p, len) != 0)
        return -2;
    int idx = 1, arity = 0, type;
    if (ei_get_type(dst->buff, &idx, &type, &arity) != 0)
        return -1;
    return arity;
}

/* inspect of a C node list, NULL as nil: [:"a@h", nil] */
static void
node_list_text(const char *const *nodes, size_t n, char *out, size_t cap)
{
    cnode__sb s;
    cnode__sb_init(&s, out, cap);
    cnode__sb_put(&s, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            cnode__sb_put(&s, ", ", 2);
        if (!nodes[i])
            cnode__sb_str(&s, "nil");
        else
            cnode__inspect_atom(&s, nodes[i], strlen(nodes[i]));
    }
    cnode__sb_put(&s, "]", 1);
    cnode__sb_finish(&s);
}

static int
check_numbers(const cnode_balancer_opts *o, cnode_error *err)
{
    if (o->timeout_ms < 0)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid timeout — expected positive integer or :infinity, got: %ld",
                              o->timeout_ms);
    if (o->retries < 0)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid retry — expected non-negative integer, got: %ld", o->retries);
    if (o->sleep_before_retry_ms < 0)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid sleep_before_retry — expected non-negative integer (ms), got: %ld",
                              o->sleep_before_retry_ms);
    if (o->wait_members_ms < 0)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid wait_members_ms — expected non-negative integer (ms), got: %ld",
                              o->wait_members_ms);
    if (o->retry_policy < CNODE_LB_RETRY_NO_ROUTE || o->retry_policy > CNODE_LB_RETRY_ALL)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid retry_policy — expected one of [:no_route, :node_errors, :all], got: %d",
                              o->retry_policy);
    if (o->error_handling != 0 && o->error_handling != 1)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid error_handling — expected boolean, got: %d", o->error_handling);
    if (o->sticky != 0 && o->sticky != 1)
        return cnode__lb_fail(err, CNODE_ECONFIG, "sticky_node must be a boolean, got: %d", o->sticky);
    if (o->filter_kind != CNODE_FILTER_SUBSTRING && o->filter_kind != CNODE_FILTER_REGEX)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid filter_kind — expected 0 (substring) or 1 (regex), got: %d",
                              o->filter_kind);
    if (o->ring_weight > 65536)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid ring_weight — expected 1..65536, got: %u", o->ring_weight);
    if (o->n_excluded && !o->excluded_node_patterns)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid excluded_node_patterns — expected %zu strings, got: nil", o->n_excluded);
    if (o->n_weights && !o->weights)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid weights — expected %zu {node, weight} entries, got: nil", o->n_weights);
    for (size_t i = 0; i < o->n_weights; i++)
        if (!o->weights[i].node || !*o->weights[i].node)
            return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid weights — entry %zu has no node", i);
    return 0;
}

static int
check_source(const cnode_balancer_opts *o, cnode_error *err)
{
    int prov = o->provider_module || o->provider_function || o->provider_node || o->provider_fn;
    if (o->nodes && prov)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Cannot specify both :nodes and :nodes_provider — use one or the other");
    if (o->nodes || o->n_nodes) {
        if (!o->nodes)
            return cnode__lb_fail(err, CNODE_ECONFIG,
                                  "Invalid nodes config — expected list of atoms or {module, fun, args}, got: nil");
        if (o->n_nodes == 0)
            return cnode__lb_fail(err, CNODE_ECONFIG, "Node list cannot be empty");
        for (size_t i = 0; i < o->n_nodes; i++)
            if (!o->nodes[i] || !*o->nodes[i] || strlen(o->nodes[i]) >= CNODE_BALANCER_NODE_MAX) {
                char text[200];
                node_list_text(o->nodes, o->n_nodes, text, sizeof text);
                return cnode__lb_fail(err, CNODE_ECONFIG, "All nodes must be atoms, got: %s", text);
            }
    }
    if (prov) {
        if (!o->provider_module || !*o->provider_module || !o->provider_function || !*o->provider_function) {
            char m[300] = "nil", f[300] = "nil";
            if (o->provider_module)
                cnode_rpc_inspect_atom(o->provider_module, m, sizeof m);
            if (o->provider_function)
                cnode_rpc_inspect_atom(o->provider_function, f, sizeof f);
            return cnode__lb_fail(err, CNODE_ECONFIG,
                                  "Invalid nodes config — expected list of atoms or {module, fun, args}, got: {%s, %s, []}", m, f);
        }
        if (!o->provider_node && !o->provider_fn)
            return cnode__lb_fail(err, CNODE_ECONFIG,
                                  "Invalid nodes_provider — {%s, %s, _} needs provider_node (erpc) or provider_fn (local)",
                                  o->provider_module, o->provider_function);
    }
    return 0;
}

static int
check_algorithm(const cnode_balancer_opts *o, int *algo, cnode_error *err)
{
    char list[400];
    *algo = o->algorithm;
    if (o->algorithm_name && cnode_balancer_algorithm_parse(o->algorithm_name, algo) != 0) {
        char got[300];
        algo_list(list, sizeof list);
        cnode_rpc_inspect_atom(o->algorithm_name, got, sizeof got);
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid algorithm — expected one of %s, got: %s", list, got);
    }
    if (*algo < CNODE_LB_RANDOM || *algo > CNODE_LB_CUSTOM) {
        algo_list(list, sizeof list);
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid algorithm — expected one of %s, got: %d", list, *algo);
    }
    if (*algo == CNODE_LB_CALL_DIRECT && !o->local)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid call_direct — expected opts.local (the local function), got: nil");
    if (*algo == CNODE_LB_CUSTOM && (!o->custom || !o->custom->select))
        return cnode__lb_fail(err, CNODE_ECONFIG,
                              "Invalid custom algorithm — expected opts.custom with a select function, got: nil");
    return 0;
}

static int
copy_source(cnode_balancer *b, const cnode_balancer_opts *o, cnode_error *err)
{
    if (o->nodes) {
        b->source = CNODE__SRC_LIST;
        b->nodes = calloc(o->n_nodes, sizeof *b->nodes);
        if (!b->nodes)
            return cnode__lb_fail(err, CNODE_ENOMEM, "out of memory");
        for (size_t i = 0; i < o->n_nodes; i++) {
            if (!(b->nodes[i] = strdup(o->nodes[i])))
                return cnode__lb_fail(err, CNODE_ENOMEM, "out of memory");
            b->n_nodes = i + 1;
        }
    } else if (o->provider_module) {
        b->source = CNODE__SRC_PROVIDER;
        if (cnode_module_atom(o->provider_module, b->prov_mod, sizeof b->prov_mod) != 0 ||
            strlen(o->provider_function) >= sizeof b->prov_fun)
            return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid nodes_provider — module or function name too long");
        snprintf(b->prov_fun, sizeof b->prov_fun, "%s", o->provider_function);
        int n = copy_list(o->provider_args, &b->prov_args);
        if (n == -2)
            return cnode__lb_fail(err, CNODE_ENOMEM, "out of memory");
        if (n < 0)
            return cnode__lb_fail(
                err, CNODE_ECONFIG,
                "Invalid nodes config — expected list of atoms or {module, fun, args}, got: args that are not a list");
        b->prov_nargs = n;
        if (o->provider_node && !(b->prov_node = strdup(o->provider_node)))
            return cnode__lb_fail(err, CNODE_ENOMEM, "out of memory");
        b->prov_fn = o->provider_fn;
        b->prov_data = o->provider_data;
    }
    return 0;
}

static int
copy_weights(cnode_balancer *b, const cnode_balancer_opts *o, cnode_error *err)
{
    if (!o->n_weights)
        return 0;
    b->weights = calloc(o->n_weights, sizeof *b->weights);
    if (!b->weights)
        return cnode__lb_fail(err, CNODE_ENOMEM, "out of memory");
    for (size_t i = 0; i < o->n_weights; i++) {
        if (!(b->weights[i].node = strdup(o->weights[i].node)))
            return cnode__lb_fail(err, CNODE_ENOMEM, "out of memory");
        b->weights[i].weight = o->weights[i].weight;
        b->nweights = i + 1;
    }
    return 0;
}

int
cnode_balancer_new(cnode_node *node, cnode_pg_scope *scope, const char *group, const cnode_balancer_opts *opts,
                   cnode_balancer **out, cnode_error *err)
{
    static const cnode_balancer_opts defaults = {0};
    if (!opts)
        opts = &defaults;
    if (out)
        *out = NULL;
    if (!group || !out || !*group || strlen(group) >= CNODE_BALANCER_NODE_MAX)
        return cnode__lb_fail(err, CNODE_EINVAL, "group must be an atom's name of 1..255 bytes, and out not NULL");
    int algo, rc;
    if ((rc = check_algorithm(opts, &algo, err)) != 0 || (rc = check_numbers(opts, err)) != 0 ||
        (rc = check_source(opts, err)) != 0)
        return rc;
    cnode_balancer *b = aligned_alloc(_Alignof(cnode_balancer), sizeof *b); /* sizeof is a multiple of the alignment */
    if (!b)
        return cnode__lb_fail(err, CNODE_ENOMEM, "out of memory");
    memset(b, 0, sizeof *b);
    b->node = node;
    b->scope = scope;
    snprintf(b->group, sizeof b->group, "%s", group);
    b->id = atomic_fetch_add(&next_id, 1);
    b->algo = algo;
    b->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 10000;
    b->retries = opts->retries;
    b->retry_policy = opts->retry_policy;
    b->sleep_ms = opts->sleep_before_retry_ms;
    b->wait_ms = opts->wait_members_ms;
    b->ring_weight = opts->ring_weight ? opts->ring_weight : CNODE_RING_DEFAULT_WEIGHT;
    b->otp = opts->otp_release ? opts->otp_release : 25;
    b->sticky = opts->sticky || algo == CNODE_LB_STICKY;
    b->error_handling = opts->error_handling;
    b->no_rpc_log = opts->no_rpc_log;
    b->local = opts->local;
    b->local_data = opts->local_data;
    b->observer = opts->observer;
    b->observer_data = opts->observer_data;
    rc = copy_source(b, opts, err);
    if (!rc && (opts->filter || opts->n_excluded))
        rc = cnode_filter_new(opts->filter ? opts->filter : "", opts->filter ? opts->filter_kind : CNODE_FILTER_SUBSTRING,
                              opts->excluded_node_patterns, opts->n_excluded, &b->filter, err);
    if (!rc)
        rc = copy_weights(b, opts, err);
    if (!rc && algo == CNODE_LB_LEAST_CPU)
        rc = cnode__lb_cpu_start(b, opts, err);
    if (!rc && algo == CNODE_LB_CUSTOM) {
        b->custom = *opts->custom;
        int irc = b->custom.init ? b->custom.init(opts->custom_data, &b->custom_state) : 0;
        if (irc != 0) {
            b->custom.destroy = NULL; /* init failed: nothing to destroy */
            rc = cnode__lb_fail(err, CNODE_ECONFIG, "custom algorithm init failed: %s", cnode_strerror(irc));
        }
    }
    if (rc) {
        cnode__lb_classify(err);
        cnode_balancer_free(b);
        return rc;
    }
    *out = b;
    return 0;
}
