/* EasyRpc's configuration in C: a wrapper's app config (WrapperConfig with
 * its NodeSelector, seed-behaviour.md B2-B3), checked in EasyRpc's order
 * with EasyRpc's messages, then turned into a balancer (static list or
 * provider, easy_* algorithm) and a table of functions.
 *
 * The text is parsed by cnode_term_parse, so every buffer decoded here is
 * one we encoded ourselves. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balancer/internal.h"
#include "cnode_term.h"

#define DASH "\xE2\x80\x94"

typedef struct {
    char remote[MAXATOMLEN]; /* the remote function */
    char name[MAXATOMLEN];   /* what callers ask for: :as, else :new_name, else remote */
    int arity;
    cnode__rpc_fopts o;
} fun_ent;

struct cnode_rpc_config {
    cnode_balancer *b;
    char module[MAXATOMLEN_UTF8];
    fun_ent *funs;
    size_t nfuns;
};

/* ---- small readers over our own encoding ---- */

static int
type_at(const char *buf, int idx, int *size)
{
    int type = 0, sz = 0;
    if (ei_get_type(buf, &idx, &type, &sz) != 0)
        return -1;
    if (size)
        *size = sz;
    return type;
}

static int
is_atom_type(int t)
{
    return t == ERL_ATOM_EXT || t == ERL_SMALL_ATOM_EXT || t == ERL_ATOM_UTF8_EXT || t == ERL_SMALL_ATOM_UTF8_EXT;
}

static int
is_int_type(int t)
{
    return t == ERL_SMALL_INTEGER_EXT || t == ERL_INTEGER_EXT || t == ERL_SMALL_BIG_EXT || t == ERL_LARGE_BIG_EXT;
}

/* Keyword.get(list, key): the index of the first {key, V}'s V, or -1. */
static int
kw_get(const char *buf, int idx, const char *key)
{
    int n;
    if (type_at(buf, idx, NULL) != ERL_LIST_EXT || ei_decode_list_header(buf, &idx, &n) != 0)
        return -1;
    for (int i = 0; i < n; i++) {
        int at = idx, ar;
        char k[MAXATOMLEN_UTF8];
        if (ei_decode_tuple_header(buf, &at, &ar) == 0 && ar == 2 && ei_decode_atom(buf, &at, k) == 0 && strcmp(k, key) == 0)
            return at;
        if (ei_skip_term(buf, &idx) != 0)
            return -1;
    }
    return -1;
}

static int
atom_at(const char *buf, int idx, char *out)
{
    return is_atom_type(type_at(buf, idx, NULL)) && ei_decode_atom(buf, &idx, out) == 0 ? 0 : -1;
}

static int
bool_at(const char *buf, int idx, int *out)
{
    char a[MAXATOMLEN_UTF8];
    if (atom_at(buf, idx, a) != 0)
        return -1;
    if (strcmp(a, "true") == 0)
        *out = 1;
    else if (strcmp(a, "false") == 0)
        *out = 0;
    else
        return -1;
    return 0;
}

static int
long_at(const char *buf, int idx, long long *out)
{
    return is_int_type(type_at(buf, idx, NULL)) && ei_decode_longlong(buf, &idx, out) == 0 ? 0 : -1;
}

/* config_error "<prefix><inspect term at idx, or nil if idx < 0>" */
static int
fail_term(cnode_error *err, const char *prefix, const char *buf, int idx)
{
    char msg[sizeof err->message];
    cnode__sb s;
    cnode__sb_init(&s, msg, sizeof msg);
    cnode__sb_str(&s, prefix);
    if (idx < 0)
        cnode__sb_str(&s, "nil");
    else
        cnode__inspect_at(&s, buf, idx);
    cnode__sb_finish(&s);
    return cnode__lb_fail(err, CNODE_ECONFIG, "%s", msg);
}

/* ---- NodeSelector ---- */

typedef struct {
    char **nodes;
    size_t n;
    char mod[MAXATOMLEN_UTF8], fun[MAXATOMLEN_UTF8];
    ei_x_buff args; /* the provider's arguments, with 131 */
    int strategy;   /* CNODE_LB_EASY_* */
    int sticky;
} selector;

static void
selector_free(selector *s)
{
    cnode_strv_free(s->nodes, s->n);
    s->nodes = NULL;
    s->n = 0;
    if (s->args.buff)
        ei_x_free(&s->args);
}

/* validate_nodes_config!/1 */
static int
check_nodes(const char *buf, int at, selector *s, cnode_error *err)
{
    static const char invalid[] = "Invalid nodes config " DASH " expected list of atoms or {module, fun, args}, got: ";
    int size, type = at < 0 ? -1 : type_at(buf, at, &size);
    if (type == ERL_NIL_EXT)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Node list cannot be empty");
    if (type == ERL_LIST_EXT || type == ERL_STRING_EXT) {
        int idx = at, n;
        if (type == ERL_STRING_EXT || ei_decode_list_header(buf, &idx, &n) != 0)
            return fail_term(err, "All nodes must be atoms, got: ", buf, at);
        s->nodes = calloc((size_t)n, sizeof *s->nodes);
        if (!s->nodes)
            return cnode__lb_fail(err, CNODE_ENOMEM, "out of memory");
        for (int i = 0; i < n; i++) {
            char a[MAXATOMLEN_UTF8];
            if (atom_at(buf, idx, a) != 0 || strlen(a) >= CNODE_BALANCER_NODE_MAX)
                return fail_term(err, "All nodes must be atoms, got: ", buf, at);
            if (!(s->nodes[s->n] = strdup(a)))
                return cnode__lb_fail(err, CNODE_ENOMEM, "out of memory");
            s->n++;
            ei_skip_term(buf, &idx);
        }
        return 0;
    }
    if (type == ERL_SMALL_TUPLE_EXT && size == 3) {
        int idx = at, ar;
        ei_decode_tuple_header(buf, &idx, &ar);
        if (atom_at(buf, idx, s->mod) == 0 && ei_skip_term(buf, &idx) == 0 && atom_at(buf, idx, s->fun) == 0 &&
            ei_skip_term(buf, &idx) == 0) {
            int at_args = idx, t = type_at(buf, idx, NULL);
            if ((t == ERL_LIST_EXT || t == ERL_NIL_EXT || t == ERL_STRING_EXT) && ei_skip_term(buf, &idx) == 0) {
                if (ei_x_new_with_version(&s->args) != 0 || ei_x_append_buf(&s->args, buf + at_args, idx - at_args) != 0)
                    return cnode__lb_fail(err, CNODE_ENOMEM, "out of memory");
                return 0;
            }
        }
    }
    return fail_term(err, invalid, buf, at);
}

/* NodeSelector's checks in its order: nodes, strategy, sticky_node. */
static int
parse_selector(const char *buf, int cfg, selector *s, cnode_error *err)
{
    memset(s, 0, sizeof *s);
    int rc = check_nodes(buf, kw_get(buf, cfg, "nodes"), s, err);
    if (rc)
        return rc;
    s->strategy = CNODE_LB_EASY_RANDOM;
    int at = kw_get(buf, cfg, "select_mode");
    if (at >= 0) {
        char a[MAXATOMLEN_UTF8] = "";
        atom_at(buf, at, a);
        if (strcmp(a, "random") == 0)
            s->strategy = CNODE_LB_EASY_RANDOM;
        else if (strcmp(a, "round_robin") == 0)
            s->strategy = CNODE_LB_EASY_ROUND_ROBIN;
        else if (strcmp(a, "hash") == 0)
            s->strategy = CNODE_LB_EASY_HASH;
        else
            return fail_term(err, "Invalid strategy " DASH " expected one of [:random, :round_robin, :hash], got: ", buf, at);
    }
    at = kw_get(buf, cfg, "sticky_node");
    if (at >= 0 && bool_at(buf, at, &s->sticky) != 0)
        return fail_term(err, "sticky_node must be a boolean, got: ", buf, at);
    return 0;
}

/* ---- WrapperConfig ---- */

typedef struct {
    char module[MAXATOMLEN_UTF8];
    long timeout, retry, sleep;
    int error_handling;
    fun_ent *funs;
    size_t nfuns;
} wrapper;

/* One {fun, arity} or {fun, arity, opts}. */
static int
parse_fun(const char *buf, int at, fun_ent *f, cnode_error *err)
{
    static const char invalid[] = "Invalid function spec " DASH " expected {atom, arity} or {atom, arity, keyword}, got: ";
    int size, type = type_at(buf, at, &size), idx = at, ar;
    long long arity;
    if (type != ERL_SMALL_TUPLE_EXT || (size != 2 && size != 3) || ei_decode_tuple_header(buf, &idx, &ar) != 0 ||
        atom_at(buf, idx, f->remote) != 0 || strlen(f->remote) >= MAXATOMLEN || ei_skip_term(buf, &idx) != 0 ||
        long_at(buf, idx, &arity) != 0 || arity < 0 || arity > 255)
        return fail_term(err, invalid, buf, at);
    ei_skip_term(buf, &idx);
    f->arity = (int)arity;
    cnode__rpc_fopts_init(&f->o);
    if (size == 3) {
        int rc = cnode__rpc_parse_fun_opts(buf, idx, f->remote, f->arity, 1, &f->o, err);
        if (rc)
            return rc;
    }
    /* the generated name: :as, else :new_name, else the remote name */
    snprintf(f->name, sizeof f->name, "%s", f->o.as[0] ? f->o.as : f->o.new_name[0] ? f->o.new_name : f->remote);
    return 0;
}

/* WrapperConfig.validate!/1: module, timeout, retry, sleep_before_retry,
 * error_handling, functions. */
static int
parse_wrapper(const char *buf, int cfg, int from_app, wrapper *w, cnode_error *err)
{
    memset(w, 0, sizeof *w);
    int at = kw_get(buf, cfg, "module");
    if (at < 0) {
        if (!from_app)
            return cnode__lb_fail(err, CNODE_ECONFIG, "Missing required :module key in options");
        return fail_term(err, "key :module not found in: ", buf, cfg); /* load_config!'s Keyword.fetch! */
    }
    if (atom_at(buf, at, w->module) != 0 || strcmp(w->module, "nil") == 0)
        return fail_term(err, "Invalid module " DASH " expected a non-nil atom, got: ", buf, at);
    long long v;
    w->timeout = 5000;
    if ((at = kw_get(buf, cfg, "timeout")) >= 0) {
        char a[MAXATOMLEN_UTF8];
        if (atom_at(buf, at, a) == 0 && strcmp(a, "infinity") == 0)
            w->timeout = CNODE_LB_INFINITY;
        else if (long_at(buf, at, &v) == 0 && v > 0 && v <= 0x7fffffff)
            w->timeout = (long)v;
        else
            return fail_term(err, "Invalid timeout " DASH " expected positive integer or :infinity, got: ", buf, at);
    }
    if ((at = kw_get(buf, cfg, "retry")) >= 0) {
        if (long_at(buf, at, &v) != 0 || v < 0 || v > 1000000)
            return fail_term(err, "Invalid retry " DASH " expected non-negative integer, got: ", buf, at);
        w->retry = (long)v;
    }
    if ((at = kw_get(buf, cfg, "sleep_before_retry")) >= 0) {
        if (long_at(buf, at, &v) != 0 || v < 0 || v > 0x7fffffff)
            return fail_term(err, "Invalid sleep_before_retry " DASH " expected non-negative integer (ms), got: ", buf, at);
        w->sleep = (long)v;
    }
    if ((at = kw_get(buf, cfg, "error_handling")) >= 0 && bool_at(buf, at, &w->error_handling) != 0)
        return fail_term(err, "Invalid error_handling " DASH " expected boolean, got: ", buf, at);
    if ((at = kw_get(buf, cfg, "functions")) >= 0) {
        int type = type_at(buf, at, NULL), idx = at, n = 0;
        if (type == ERL_STRING_EXT) /* a list of small integers: the first one is a bad spec */
            return cnode__lb_fail(err, CNODE_ECONFIG,
                                  "Invalid function spec " DASH " expected {atom, arity} or {atom, arity, keyword}, got: %u",
                                  (unsigned char)buf[at + 3]);
        if ((type != ERL_LIST_EXT && type != ERL_NIL_EXT) || ei_decode_list_header(buf, &idx, &n) != 0)
            return fail_term(err, "Invalid functions " DASH " expected list, got: ", buf, at);
        w->funs = calloc(n ? (size_t)n : 1, sizeof *w->funs);
        if (!w->funs)
            return cnode__lb_fail(err, CNODE_ENOMEM, "out of memory");
        for (int i = 0; i < n; i++) {
            int rc = parse_fun(buf, idx, &w->funs[i], err);
            if (rc)
                return rc;
            w->nfuns++;
            ei_skip_term(buf, &idx);
        }
    }
    return 0;
}

/* ---- building ---- */

static int
make_balancer(cnode_node *node, const char *buf, int cfg, const selector *s, const wrapper *w, const char *group,
              cnode_balancer **out, cnode_error *err)
{
    cnode_balancer_opts o = {.algorithm = s->strategy, .sticky = s->sticky};
    char prov_node[MAXATOMLEN_UTF8];
    if (s->n) {
        o.nodes = (const char *const *)s->nodes;
        o.n_nodes = s->n;
    } else {
        int at = kw_get(buf, cfg, "nodes_provider_node");
        if (at < 0 || atom_at(buf, at, prov_node) != 0)
            return fail_term(
                err, "Invalid nodes_provider_node " DASH " {module, fun, args} runs on a node, expected a node atom, got: ", buf,
                at);
        o.provider_module = s->mod;
        o.provider_function = s->fun;
        o.provider_args = &s->args;
        o.provider_node = prov_node;
    }
    if (w) {
        o.timeout_ms = w->timeout;
        o.retries = w->retry;
        o.retry_policy = CNODE_LB_RETRY_ALL; /* EasyRpc retries every error alike */
        o.sleep_before_retry_ms = w->sleep;
        o.error_handling = w->error_handling;
    } else {
        o.timeout_ms = 5000;
    }
    return cnode_balancer_new(node, NULL, group, &o, out, err);
}

static int
parse_text(const char *text, ei_x_buff *x, cnode_error *err)
{
    cnode_error perr = {0};
    if (!text || ei_x_new(x) != 0)
        return cnode__lb_fail(err, text ? CNODE_ENOMEM : CNODE_EINVAL, text ? "out of memory" : "config text required");
    if (cnode_term_parse(text, x, &perr) != 0) {
        ei_x_free(x);
        return cnode__lb_fail(err, CNODE_EINVAL, "config is not Erlang term text: %s", perr.message);
    }
    return 0;
}

/* WrapperConfig over the keyword list at buf[cfg]. */
static int
config_build(cnode_node *node, const char *buf, int cfg, int from_app, cnode_rpc_config **out, cnode_error *err)
{
    int t = type_at(buf, cfg, NULL);
    if (t != ERL_LIST_EXT && t != ERL_NIL_EXT)
        return fail_term(err, "Invalid config " DASH " expected keyword list, got: ", buf, cfg);
    selector s;
    wrapper w;
    memset(&w, 0, sizeof w);
    int rc = parse_selector(buf, cfg, &s, err);
    if (!rc)
        rc = parse_wrapper(buf, cfg, from_app, &w, err);
    cnode_rpc_config *c = NULL;
    if (!rc && !(c = calloc(1, sizeof *c)))
        rc = cnode__lb_fail(err, CNODE_ENOMEM, "out of memory");
    if (!rc)
        rc = make_balancer(node, buf, cfg, &s, &w, w.module, &c->b, err);
    selector_free(&s);
    if (rc) {
        free(w.funs);
        free(c);
        return rc;
    }
    snprintf(c->module, sizeof c->module, "%s", w.module);
    c->funs = w.funs;
    c->nfuns = w.nfuns;
    *out = c;
    return 0;
}

int
cnode_rpc_config_parse(cnode_node *node, const char *text, cnode_rpc_config **out, cnode_error *err)
{
    if (!out)
        return cnode__lb_fail(err, CNODE_EINVAL, "out required");
    *out = NULL;
    ei_x_buff x;
    int rc = parse_text(text, &x, err);
    if (rc)
        return rc;
    rc = config_build(node, x.buff, 0, 0, out, err);
    ei_x_free(&x);
    return rc;
}

/* {App, [{Name, Config}]} in sys.config text: the index of Config, or -1. */
static int
app_env(const char *buf, const char *app, const char *name)
{
    int idx = 0, n;
    if (type_at(buf, 0, NULL) != ERL_LIST_EXT || ei_decode_list_header(buf, &idx, &n) != 0)
        return -1;
    for (int i = 0; i < n; i++) {
        int at = idx, ar;
        char a[MAXATOMLEN_UTF8];
        if (ei_decode_tuple_header(buf, &at, &ar) == 0 && ar == 2 && ei_decode_atom(buf, &at, a) == 0 && strcmp(a, app) == 0) {
            int v = kw_get(buf, at, name);
            if (v >= 0 && type_at(buf, v, NULL) == ERL_ATOM_EXT) { /* nil: Application.get_env's "not set" */
                char nil[MAXATOMLEN_UTF8];
                if (atom_at(buf, v, nil) == 0 && strcmp(nil, "nil") == 0)
                    return -1;
            }
            return v;
        }
        if (ei_skip_term(buf, &idx) != 0)
            return -1;
    }
    return -1;
}

static int
not_found(cnode_error *err, const char *what, const char *app, const char *name)
{
    char a[600], n[600];
    cnode_rpc_inspect_atom(app, a, sizeof a);
    cnode_rpc_inspect_atom(name, n, sizeof n);
    return cnode__lb_fail(err, CNODE_ECONFIG, "%s config not found: %s.%s", what, a, n);
}

int
cnode_rpc_config_load(cnode_node *node, const char *sys_config, const char *app, const char *name, cnode_rpc_config **out,
                      cnode_error *err)
{
    if (!out || !app || !name)
        return cnode__lb_fail(err, CNODE_EINVAL, "app, name and out required");
    *out = NULL;
    ei_x_buff x;
    int rc = parse_text(sys_config, &x, err);
    if (rc)
        return rc;
    int cfg = app_env(x.buff, app, name);
    if (cfg < 0) {
        char a[600], n[600];
        cnode_rpc_inspect_atom(app, a, sizeof a);
        cnode_rpc_inspect_atom(name, n, sizeof n);
        rc = cnode__lb_fail(err, CNODE_ECONFIG, "WrapperConfig not found: %s.%s", a, n);
    } else {
        rc = config_build(node, x.buff, cfg, 1, out, err);
    }
    ei_x_free(&x);
    return rc;
}

int
cnode_rpc_selector_load(cnode_node *node, const char *sys_config, const char *app, const char *name, cnode_balancer **out,
                        cnode_error *err)
{
    if (!out || !app || !name)
        return cnode__lb_fail(err, CNODE_EINVAL, "app, name and out required");
    *out = NULL;
    ei_x_buff x;
    int rc = parse_text(sys_config, &x, err);
    if (rc)
        return rc;
    int cfg = app_env(x.buff, app, name);
    if (cfg < 0) {
        rc = not_found(err, "NodeSelector", app, name);
    } else if (type_at(x.buff, cfg, NULL) != ERL_LIST_EXT && type_at(x.buff, cfg, NULL) != ERL_NIL_EXT) {
        rc = fail_term(err, "Invalid config " DASH " expected keyword list, got: ", x.buff, cfg);
    } else {
        selector s;
        rc = parse_selector(x.buff, cfg, &s, err);
        if (!rc)
            rc = make_balancer(node, x.buff, cfg, &s, NULL, name, out, err);
        selector_free(&s);
    }
    ei_x_free(&x);
    return rc;
}

cnode_balancer *
cnode_rpc_config_balancer(const cnode_rpc_config *cfg)
{
    return cfg ? cfg->b : NULL;
}

/* Elements of an argument list (with or without 131), or -1. */
static int
list_len(const ei_x_buff *args)
{
    if (!args || !args->buff || args->index <= 0)
        return -1;
    int idx = (unsigned char)args->buff[0] == 131, type, size;
    if (ei_get_type(args->buff, &idx, &type, &size) != 0 || (type != ERL_LIST_EXT && type != ERL_NIL_EXT && type != ERL_STRING_EXT))
        return -1;
    return size;
}

int
cnode_rpc_config_call(cnode_rpc_config *cfg, const char *name, const ei_x_buff *args, ei_x_buff *reply, cnode_error *err)
{
    if (!cfg || !name || !reply)
        return cnode__lb_fail(err, CNODE_EINVAL, "config, name and reply required");
    static const char nil[] = {(char)131, 106};
    ei_x_buff none = {(char *)nil, 2, 2};
    if (!args)
        args = &none;
    int n = list_len(args);
    for (size_t i = 0; i < cfg->nfuns; i++) {
        fun_ent *f = &cfg->funs[i];
        if (strcmp(f->name, name) == 0 && f->arity == n)
            return cnode__rpc_run(cfg->b, cfg->module, f->remote, f->arity, &f->o, args, reply, err);
    }
    char mod[600];
    cnode__sb s;
    cnode__sb_init(&s, mod, sizeof mod);
    cnode__rpc_mod_text(&s, cfg->module);
    cnode__sb_finish(&s);
    cnode__lb_fail(err, CNODE_ENOTFOUND, "function %s.%s/%d is not defined (not in the wrapper's functions)", mod, name, n);
    if (err)
        err->type = "validation_error";
    return CNODE_ENOTFOUND;
}

void
cnode_rpc_config_free(cnode_rpc_config *cfg)
{
    if (!cfg)
        return;
    cnode_balancer_free(cfg->b);
    free(cfg->funs);
    free(cfg);
}
