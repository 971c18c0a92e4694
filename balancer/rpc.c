/* DefRpc in C: a remote function's declaration (module, function, arity,
 * EasyRpc's per-function options as term text), merged over the balancer's
 * options and run through the balancer's attempt loop; EasyRpc's error text
 * (Error.format/1 with Elixir-inspected details) and its four log lines
 * (seed-behaviour.md B2, B4-B6). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balancer/internal.h"
#include "cnode/internal.h"
#include "cnode_term.h"
#include "ei_glue/glue.h"

#define LOG_LINE_MAX 16384

/* ---- EasyRpc's text ---- */

void
cnode__rpc_mod_text(cnode__sb *s, const char *mod)
{
    cnode__inspect_atom(s, mod, strlen(mod));
}

/* Appends inspect/1 of a term given with or without its 131. */
static void
inspect_x(cnode__sb *s, const ei_x_buff *x)
{
    const char *p = x && x->buff ? x->buff : NULL;
    size_t len = p ? (size_t)x->index : 0;
    if (len && (unsigned char)p[0] == 131) {
        p++;
        len--;
    }
    if (!len || cnode__inspect_term(s, p, len) != 0)
        cnode__sb_str(s, "?");
}

/* {:exception, Reason, Stack} or {:exception, Reason} as a term, inspected
 * (so that inspect's limits apply as they do to ErlangError's original). */
static void
inspect_wrapped(cnode__sb *s, const cnode_error *err, int with_stack)
{
    ei_x_buff t;
    if (ei_x_new(&t) != 0) {
        cnode__sb_str(s, "?");
        return;
    }
    ei_x_encode_tuple_header(&t, with_stack ? 3 : 2);
    ei_x_encode_atom(&t, "exception");
    const ei_x_buff *parts[2] = {&err->reason, &err->stacktrace};
    for (int i = 0; i < (with_stack ? 2 : 1); i++) {
        const char *p = parts[i]->buff;
        int len = parts[i]->index;
        if (p && len > 0 && (unsigned char)p[0] == 131) {
            p++;
            len--;
        }
        if (p && len > 0)
            ei_x_append_buf(&t, p, len);
        else
            ei_x_encode_empty_list(&t);
    }
    if (cnode__inspect_term(s, t.buff, (size_t)t.index) != 0)
        cnode__sb_str(s, "?");
    ei_x_free(&t);
}

/* EasyRpc's message for err: ErlangError's "Erlang error: <original>" for
 * erpc failures, "Caught <kind>: <reason>" for exit and throw. */
static void
message_text(cnode__sb *s, const cnode_error *err)
{
    const char *erpc = NULL;
    switch (err->code) {
    case CNODE_ETIMEOUT:
        erpc = "timeout";
        break;
    case CNODE_ENOCONNECTION:
        erpc = "noconnection";
        break;
    case CNODE_ENOTSUP:
        erpc = "notsup";
        break;
    default:
        break;
    }
    if (erpc && err->node[0]) {
        cnode__sb_fmt(s, "Erlang error: {:erpc, :%s}", erpc);
    } else if (err->code == CNODE_EEXCEPTION && strcmp(err->exc_class, "error") == 0) {
        cnode__sb_str(s, "Erlang error: ");
        inspect_wrapped(s, err, 1);
    } else if (err->code == CNODE_EEXCEPTION && strcmp(err->exc_class, "exit") == 0) {
        cnode__sb_str(s, "Caught exit: ");
        inspect_wrapped(s, err, 0);
    } else if (err->code == CNODE_EEXCEPTION && strcmp(err->exc_class, "throw") == 0) {
        cnode__sb_str(s, "Caught throw: ");
        inspect_x(s, &err->reason);
    } else {
        cnode__sb_str(s, err->message[0] ? err->message : cnode_strerror(err->code));
    }
}

/* " | details: [...]" when a call reached a node (EasyRpc's details list). */
static void
details_text(cnode__sb *s, const cnode_error *err)
{
    if (!err->node[0])
        return;
    int exited = err->code == CNODE_EEXCEPTION && strcmp(err->exc_class, "exit") == 0;
    int threw = err->code == CNODE_EEXCEPTION && strcmp(err->exc_class, "throw") == 0;
    int erlang_error = !exited && !threw &&
                       (err->code == CNODE_EEXCEPTION || err->code == CNODE_ETIMEOUT || err->code == CNODE_ENOCONNECTION ||
                        err->code == CNODE_ENOTSUP);
    cnode__sb_str(s, " | details: [");
    if (erlang_error)
        cnode__sb_str(s, "exception: ErlangError, ");
    cnode__sb_str(s, "node: ");
    cnode__inspect_atom(s, err->node, strlen(err->node));
    if (exited || threw) {
        cnode__sb_str(s, exited ? ", kind: :exit, reason: " : ", kind: :throw, reason: ");
        if (exited)
            inspect_wrapped(s, err, 0);
        else
            inspect_x(s, &err->reason);
    }
    cnode__sb_fmt(s, ", attempt: %d", err->attempt);
    if (err->module[0]) {
        cnode__sb_str(s, ", module: ");
        cnode__rpc_mod_text(s, err->module);
        cnode__sb_str(s, ", function: ");
        cnode__inspect_atom(s, err->function, strlen(err->function));
    }
    cnode__sb_str(s, "]");
}

static void
format_into(cnode__sb *s, const cnode_error *err)
{
    const char *type = err->type;
    cnode_error tmp;
    if (!type) {
        tmp.code = err->code;
        tmp.type = NULL;
        cnode__lb_classify(&tmp);
        type = tmp.type;
    }
    cnode__sb_fmt(s, "[%s] ", type);
    message_text(s, err);
    details_text(s, err);
}

int
cnode_rpc_error_format(const cnode_error *err, char *buf, size_t cap)
{
    if (!err || !buf || cap == 0)
        return CNODE_EINVAL;
    cnode__sb s;
    cnode__sb_init(&s, buf, cap);
    format_into(&s, err);
    int cut = s.cut;
    cnode__sb_finish(&s);
    return cut ? CNODE_ENOMEM : 0;
}

/* ---- log lines ---- */

static int
log_wanted(cnode_balancer *b, int level)
{
    cnode_node *n = b->node;
    return n && n->opts.log && level <= n->opts.log_level;
}

static void
log_emit(cnode_balancer *b, int level, cnode__sb *s)
{
    cnode__sb_finish(s);
    b->node->opts.log(level, s->p, b->node->opts.user_data);
}

/* "[EasyRpc] <mark> Mod.fun/1 on <node>" */
static void
log_head(cnode__sb *s, const char *mark, const char *mod, const char *fun, int arity, const char *node)
{
    cnode__sb_fmt(s, "[EasyRpc] %s ", mark);
    cnode__rpc_mod_text(s, mod);
    cnode__sb_fmt(s, ".%s/%d on ", fun, arity);
    if (node && *node)
        cnode__inspect_atom(s, node, strlen(node));
    else
        cnode__sb_str(s, ":unknown");
}

void
cnode__rpc_log_call(cnode_balancer *b, const cnode__lb_params *p, const char *mod, const char *fun, int arity, const char *node,
                    unsigned attempt)
{
    if (!log_wanted(b, CNODE_LOG_DEBUG))
        return;
    char *buf = malloc(LOG_LINE_MAX);
    if (!buf)
        return;
    cnode__sb s;
    cnode__sb_init(&s, buf, LOG_LINE_MAX);
    log_head(&s, "-->", mod, fun, arity, node);
    if (attempt > 0 && p->handled)
        cnode__sb_fmt(&s, " [attempt %u]", attempt + 1);
    if (p->timeout_ms == CNODE_LB_INFINITY)
        cnode__sb_fmt(&s, " [timeout: \xE2\x88\x9E, retry: %ld]", p->retries);
    else
        cnode__sb_fmt(&s, " [timeout: %ldms, retry: %ld]", p->timeout_ms, p->retries);
    log_emit(b, CNODE_LOG_DEBUG, &s);
    free(buf);
}

void
cnode__rpc_log_ok(cnode_balancer *b, const char *mod, const char *fun, int arity, const char *node, const ei_x_buff *reply,
                  size_t at)
{
    if (!log_wanted(b, CNODE_LOG_DEBUG))
        return;
    char *buf = malloc(LOG_LINE_MAX);
    if (!buf)
        return;
    cnode__sb s;
    cnode__sb_init(&s, buf, LOG_LINE_MAX);
    log_head(&s, "<--", mod, fun, arity, node);
    cnode__sb_str(&s, " succeeded \xE2\x80\x94 result: ");
    const char *t = reply && reply->buff ? reply->buff + at : NULL;
    size_t len = t ? (size_t)reply->index - at : 0;
    if (len && (unsigned char)t[0] == 131) {
        t++;
        len--;
    }
    if (!len || cnode__inspect_term(&s, t, len) != 0)
        cnode__sb_str(&s, ":ok");
    log_emit(b, CNODE_LOG_DEBUG, &s);
    free(buf);
}

void
cnode__rpc_log_failed(cnode_balancer *b, const cnode__lb_params *p, const char *mod, const char *fun, int arity, const char *node,
                      unsigned attempt, int final, const cnode_error *err)
{
    int level = final ? CNODE_LOG_ERROR : CNODE_LOG_WARNING;
    if (!log_wanted(b, level))
        return;
    char *buf = malloc(LOG_LINE_MAX);
    if (!buf)
        return;
    cnode__sb s;
    cnode__sb_init(&s, buf, LOG_LINE_MAX);
    if (final) {
        log_head(&s, "!!!", mod, fun, arity, node);
        cnode__sb_fmt(&s, " failed permanently after %u attempt(s) \xE2\x80\x94 ", attempt + 1);
    } else {
        log_head(&s, "<<<", mod, fun, arity, node);
        cnode__sb_fmt(&s, " failed (attempt %u/%ld, %ld retries left) \xE2\x80\x94 ", attempt + 1, p->retries + 1,
                      p->retries - (long)attempt);
    }
    if (err) {
        format_into(&s, err);
    } else {
        cnode__sb_str(&s, "[rpc_error] failed");
    }
    log_emit(b, level, &s);
    free(buf);
}

/* ---- per-function options ---- */

void
cnode__rpc_fopts_init(cnode__rpc_fopts *o)
{
    memset(o, 0, sizeof *o);
    o->retry_on = -1;
    o->log = -1;
}

static const char *const fun_keys[] = {"new_name",       "as",      "retry",    "timeout",        "sleep_before_retry",
                                       "error_handling", "private", "retry_on", "enable_logging", "key_arg"};
#define N_EASY_KEYS 7 /* EasyRpc's own; the rest are libcnode's */
#define N_FUN_KEYS (sizeof fun_keys / sizeof fun_keys[0])

/* "[:new_name, :as, ...]" for the first n keys. */
static void
keys_text(cnode__sb *s, size_t n)
{
    cnode__sb_put(s, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            cnode__sb_put(s, ", ", 2);
        cnode__inspect_atom(s, fun_keys[i], strlen(fun_keys[i]));
    }
    cnode__sb_put(s, "]", 1);
}

/* ":get/1" */
static void
fun_text(cnode__sb *s, const char *fun, long arity)
{
    cnode__inspect_atom(s, fun, strlen(fun));
    cnode__sb_fmt(s, "/%ld", arity);
}

static int
fail_sb(cnode_error *err, cnode__sb *s)
{
    cnode__sb_finish(s);
    return cnode__lb_fail(err, CNODE_ECONFIG, "%s", s->p);
}

void
cnode__inspect_at(cnode__sb *s, const char *buf, int idx)
{
    int end = idx;
    if (ei_skip_term(buf, &end) != 0 || cnode__inspect_term(s, buf + idx, (size_t)(end - idx)) != 0)
        cnode__sb_str(s, "?");
}

static int
decode_bool(const char *buf, int *idx, int *out)
{
    char a[MAXATOMLEN_UTF8];
    int i = *idx;
    if (ei_decode_atom(buf, &i, a) != 0)
        return -1;
    if (strcmp(a, "true") == 0)
        *out = 1;
    else if (strcmp(a, "false") == 0)
        *out = 0;
    else
        return -1;
    *idx = i;
    return 0;
}

/* One {key, value}: 0, 1 (unknown key), or 2 (bad value). */
static int
fun_opt(const char *buf, int *idx, const char *key, cnode__rpc_fopts *o, size_t nkeys)
{
    size_t k = 0;
    while (k < nkeys && strcmp(fun_keys[k], key) != 0)
        k++;
    if (k == nkeys)
        return 1;
    int i = *idx, type, size, bv;
    long long v = 0;
    char a[MAXATOMLEN_UTF8];
    ei_get_type(buf, &i, &type, &size);
    int is_int = type == ERL_SMALL_INTEGER_EXT || type == ERL_INTEGER_EXT || type == ERL_SMALL_BIG_EXT || type == ERL_LARGE_BIG_EXT;
    if (is_int && ei_decode_longlong(buf, &i, &v) != 0)
        v = -1; /* too big for us: bad value */
    int ok = 0;
    switch (k) {
    case 0: /* new_name */
    case 1: /* as */
        ok = ei_decode_atom(buf, &i, a) == 0 && strlen(a) < MAXATOMLEN;
        if (ok)
            snprintf(k == 0 ? o->new_name : o->as, MAXATOMLEN, "%s", a);
        break;
    case 2: /* retry */
        ok = is_int && v >= 0 && v < 1000000;
        o->has_retry = ok;
        o->retry = (long)v;
        break;
    case 3: /* timeout */
        if (!is_int && ei_decode_atom(buf, &i, a) == 0 && strcmp(a, "infinity") == 0) {
            ok = o->has_timeout = 1;
            o->timeout = CNODE_LB_INFINITY;
        } else {
            ok = is_int && v > 0 && v <= 0x7fffffff;
            o->has_timeout = ok;
            o->timeout = (long)v;
        }
        break;
    case 4: /* sleep_before_retry */
        ok = is_int && v >= 0 && v <= 0x7fffffff;
        o->has_sleep = ok;
        o->sleep = (long)v;
        break;
    case 5: /* error_handling */
        ok = decode_bool(buf, &i, &bv) == 0;
        o->has_eh = ok;
        o->eh = bv;
        break;
    case 6: /* private */
        ok = decode_bool(buf, &i, &bv) == 0;
        break;
    case 7: /* retry_on */
        if (ei_decode_atom(buf, &i, a) == 0) {
            ok = 1;
            if (strcmp(a, "all") == 0)
                o->retry_on = CNODE_LB_RETRY_ALL;
            else if (strcmp(a, "node_errors") == 0)
                o->retry_on = CNODE_LB_RETRY_NODE_ERRORS;
            else if (strcmp(a, "no_route") == 0)
                o->retry_on = CNODE_LB_RETRY_NO_ROUTE;
            else
                ok = 0;
        }
        break;
    case 8: /* enable_logging */
        ok = decode_bool(buf, &i, &bv) == 0;
        o->log = bv;
        break;
    default: /* key_arg */
        ok = is_int && v >= 1 && v <= 65535;
        o->key_arg = (long)v;
        break;
    }
    if (!ok)
        return 2;
    *idx = i;
    return 0;
}

/* Options keyword list (buf at *idx) for fun/arity; nkeys: which keys are
 * valid (EasyRpc's 7, or all of ours). 0 or CNODE_ECONFIG. */
static int
parse_fun_opts(const char *buf, int idx, const char *fun, long arity, size_t nkeys, cnode__rpc_fopts *o, cnode_error *err)
{
    char msg[1024];
    cnode__sb s;
    cnode__sb_init(&s, msg, sizeof msg);
    cnode__rpc_fopts_init(o);
    int start = idx, n, type, size;
    /* Keyword.keyword?/1: a proper list of {atom, _} */
    int kw = ei_get_type(buf, &idx, &type, &size) == 0 && (type == ERL_NIL_EXT || type == ERL_LIST_EXT) &&
             ei_decode_list_header(buf, &idx, &n) == 0;
    for (int i = 0, j = idx; kw && i < n; i++) {
        int ar;
        char key[MAXATOMLEN_UTF8];
        kw =
            ei_decode_tuple_header(buf, &j, &ar) == 0 && ar == 2 && ei_decode_atom(buf, &j, key) == 0 && ei_skip_term(buf, &j) == 0;
        if (kw && i == n - 1)
            kw = ei_decode_list_header(buf, &j, &ar) == 0 && ar == 0;
    }
    if (!kw) {
        cnode__sb_str(&s, "Invalid options for ");
        fun_text(&s, fun, arity);
        cnode__sb_str(&s, " \xE2\x80\x94 expected keyword list, got: ");
        cnode__inspect_at(&s, buf, start);
        return fail_sb(err, &s);
    }
    for (int i = 0; i < n; i++) {
        int ar;
        char key[MAXATOMLEN_UTF8];
        ei_decode_tuple_header(buf, &idx, &ar);
        ei_decode_atom(buf, &idx, key);
        int vat = idx, rc = fun_opt(buf, &idx, key, o, nkeys);
        if (rc == 1) {
            cnode__sb_str(&s, "Unknown option ");
            cnode__inspect_atom(&s, key, strlen(key));
            cnode__sb_str(&s, " for ");
            fun_text(&s, fun, arity);
            cnode__sb_str(&s, " \xE2\x80\x94 valid: ");
            keys_text(&s, nkeys);
            return fail_sb(err, &s);
        }
        if (rc == 2) {
            cnode__sb_str(&s, "Invalid value for ");
            cnode__inspect_atom(&s, key, strlen(key));
            cnode__sb_str(&s, " in ");
            fun_text(&s, fun, arity);
            cnode__sb_str(&s, ": ");
            cnode__inspect_at(&s, buf, vat);
            return fail_sb(err, &s);
        }
    }
    return 0;
}

int
cnode__rpc_parse_fun_opts(const char *buf, int idx, const char *fun, long arity, int easy_only, cnode__rpc_fopts *o,
                          cnode_error *err)
{
    return parse_fun_opts(buf, idx, fun, arity, easy_only ? N_EASY_KEYS : N_FUN_KEYS, o, err);
}

/* The declaration's names and options; *o filled. */
static int
check_def(const cnode_rpc_def *def, char *mod, size_t mcap, cnode__rpc_fopts *o, cnode_error *err)
{
    if (!def || !def->module || !*def->module)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid module \xE2\x80\x94 expected a non-nil atom, got: nil");
    if (cnode_module_atom(def->module, mod, mcap) != 0 || strlen(mod) >= MAXATOMLEN)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid module \xE2\x80\x94 expected a non-nil atom, got: a name too long");
    if (!def->function || !*def->function || strlen(def->function) >= MAXATOMLEN || def->arity < 0 || def->arity > 255) {
        char msg[600];
        cnode__sb s;
        cnode__sb_init(&s, msg, sizeof msg);
        cnode__sb_str(&s, "Invalid function spec \xE2\x80\x94 expected {atom, arity} or {atom, arity, keyword}, got: {");
        if (def->function && *def->function)
            cnode__inspect_atom(&s, def->function, strlen(def->function));
        else
            cnode__sb_str(&s, "nil");
        cnode__sb_fmt(&s, ", %d}", def->arity);
        return fail_sb(err, &s);
    }
    cnode__rpc_fopts_init(o);
    if (!def->options || !*def->options)
        return 0;
    ei_x_buff x;
    cnode_error perr = {0};
    if (ei_x_new(&x) != 0)
        return cnode__lb_fail(err, CNODE_ENOMEM, "out of memory");
    int rc;
    if (cnode_term_parse(def->options, &x, &perr) != 0)
        rc = cnode__lb_fail(err, CNODE_ECONFIG, "Invalid options for :%s/%d \xE2\x80\x94 expected keyword list, got: %s (%s)",
                            def->function, def->arity, def->options, perr.message);
    else
        rc = parse_fun_opts(x.buff, 0, def->function, def->arity, N_FUN_KEYS, o, err);
    ei_x_free(&x);
    return rc;
}

int
cnode_rpc_def_check(const cnode_rpc_def *def, cnode_error *err)
{
    char mod[MAXATOMLEN_UTF8];
    cnode__rpc_fopts o;
    return check_def(def, mod, sizeof mod, &o, err);
}

/* Element k (0-based) of the list t (no 131, bounded): *p, *plen. */
static int
list_element(const char *t, size_t len, long k, const char **p, size_t *plen)
{
    int idx = 0, n;
    if ((unsigned char)t[0] != 108 || ei_decode_list_header(t, &idx, &n) != 0 || k >= n)
        return -1;
    for (long i = 0; i < k; i++)
        if (ei_skip_term(t, &idx) != 0)
            return -1;
    int end = idx;
    if (ei_skip_term(t, &end) != 0 || (size_t)end > len)
        return -1;
    *p = t + idx;
    *plen = (size_t)(end - idx);
    return 0;
}

int
cnode__rpc_run(cnode_balancer *b, const char *mod, const char *fun, int arity, const cnode__rpc_fopts *o, const ei_x_buff *args,
               ei_x_buff *reply, cnode_error *err)
{
    const char *t = args->buff;
    size_t len = (size_t)args->index;
    if (len && (unsigned char)t[0] == 131) {
        t++;
        len--;
    }
    ptrdiff_t ext = len ? cnode__term_extent(t, len, &cnode__term_limits_default, NULL) : -1;
    int idx = 0, n = -1, type, size;
    if (ext == (ptrdiff_t)len && ei_get_type(t, &idx, &type, &size) == 0 &&
        (type == ERL_NIL_EXT || type == ERL_LIST_EXT || type == ERL_STRING_EXT))
        n = size;
    if (n != arity) {
        char msg[600];
        cnode__sb s;
        cnode__sb_init(&s, msg, sizeof msg);
        cnode__sb_str(&s, "Invalid arguments for ");
        fun_text(&s, fun, arity);
        cnode__sb_fmt(&s, " \xE2\x80\x94 expected a list of %d argument(s), got: ", arity);
        if (ext != (ptrdiff_t)len || cnode__inspect_term(&s, t, len) != 0)
            cnode__sb_str(&s, "a malformed term");
        cnode__sb_finish(&s);
        int rc = cnode__lb_fail(err, CNODE_EVALIDATION, "%s", msg);
        if (err) {
            snprintf(err->module, sizeof err->module, "%s", mod);
            snprintf(err->function, sizeof err->function, "%s", fun);
            err->arity = arity;
        }
        return rc;
    }
    cnode__lb_params p;
    cnode__lb_default_params(b, &p);
    if (o->has_timeout)
        p.timeout_ms = o->timeout;
    if (o->has_retry) {
        p.retries = o->retry;
        p.policy = o->retry_on >= 0 ? o->retry_on : CNODE_LB_RETRY_ALL;
    } else if (o->retry_on >= 0) {
        p.policy = o->retry_on;
    }
    if (o->has_sleep)
        p.sleep_ms = o->sleep;
    /* EasyRpc: a retry count > 0 forces the handled path */
    p.handled = p.retries > 0 ? 1 : o->has_eh ? o->eh : b->error_handling;
    p.log = !b->no_rpc_log && o->log != 0;
    if (o->key_arg && list_element(t, len, o->key_arg - 1, &p.key, &p.key_len) != 0)
        return cnode__lb_fail(err, CNODE_EVALIDATION, "key_arg %ld: no such argument term in the list", o->key_arg);
    return cnode__lb_route(b, &p, 0, mod, fun, args, reply, NULL, 0, NULL, err);
}

static int
run_def(cnode_balancer *b, const cnode_rpc_def *def, const ei_x_buff *args, ei_x_buff *reply, cnode_error *err)
{
    char mod[MAXATOMLEN_UTF8];
    cnode__rpc_fopts o;
    int rc = check_def(def, mod, sizeof mod, &o, err);
    return rc ? rc : cnode__rpc_run(b, mod, def->function, def->arity, &o, args, reply, err);
}

int
cnode_rpc_call(cnode_balancer *b, const cnode_rpc_def *def, const ei_x_buff *args, ei_x_buff *reply, cnode_error *err)
{
    if (!b || !reply)
        return cnode__lb_fail(err, CNODE_EINVAL, "balancer and reply required");
    static const char nil[] = {(char)131, 106};
    ei_x_buff none = {(char *)nil, 2, 2};
    return run_def(b, def, args ? args : &none, reply, err);
}

int
cnode_rpc_callv(cnode_balancer *b, const cnode_rpc_def *def, const ei_x_buff *const *argv, size_t argc, ei_x_buff *reply,
                cnode_error *err)
{
    if (!b || !reply || (argc && !argv))
        return cnode__lb_fail(err, CNODE_EINVAL, "balancer, reply and arguments required");
    ei_x_buff list;
    if (ei_x_new_with_version(&list) != 0)
        return cnode__lb_fail(err, CNODE_ENOMEM, "out of memory");
    int rc = 0;
    if (argc)
        ei_x_encode_list_header(&list, (long)argc);
    for (size_t i = 0; i < argc && !rc; i++) {
        const char *t = argv[i] && argv[i]->buff ? argv[i]->buff : NULL;
        size_t len = t ? (size_t)argv[i]->index : 0;
        if (len && (unsigned char)t[0] == 131) {
            t++;
            len--;
        }
        ptrdiff_t ext = len ? cnode__term_extent(t, len, &cnode__term_limits_default, NULL) : -1;
        if (ext != (ptrdiff_t)len)
            rc = cnode__lb_fail(err, CNODE_EVALIDATION, "argument %zu of %s/%d is not one encoded term", i + 1,
                                def && def->function ? def->function : "?", def ? def->arity : -1);
        else
            ei_x_append_buf(&list, t, (int)len);
    }
    ei_x_encode_empty_list(&list);
    if (!rc)
        rc = run_def(b, def, &list, reply, err);
    ei_x_free(&list);
    return rc;
}
