/* Candidates from the balancer's node source (pg mirror, static list,
 * provider), picks with a bounded wait for members, and the attempt loop of
 * calls and casts: retries by policy, avoiding a node that could not take
 * the call, counters released on every outcome, the observer, and EasyRpc's
 * log lines for DefRpc calls (seed-behaviour.md A7-A9, B3-B4, B6). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "balancer/internal.h"
#include "ei_glue/reader.h"

#define STACK_CANDS 64
#define WAIT_POLL_MS 5
#define AVOID_MAX 8

typedef struct {
    const char **v; /* candidates */
    size_t n;
    const char **seen; /* every distinct node met, kept or not */
    size_t nseen;
    size_t members, suspect, filtered;
    char **owned; /* provider: the names, freed with the set */
    size_t nowned;
    const char *stack_v[STACK_CANDS], *stack_seen[STACK_CANDS];
} cands;

static void
cands_free(cands *c)
{
    if (c->v != c->stack_v)
        free((void *)c->v);
    if (c->seen != c->stack_seen)
        free((void *)c->seen);
    for (size_t i = 0; i < c->nowned; i++)
        free(c->owned[i]);
    free(c->owned);
    c->owned = NULL;
    c->nowned = 0;
}

static int
cands_alloc(cands *c, size_t n)
{
    memset(c, 0, offsetof(cands, stack_v));
    c->v = c->stack_v;
    c->seen = c->stack_seen;
    c->members = n;
    if (n > STACK_CANDS) {
        c->v = malloc(n * sizeof *c->v);
        c->seen = malloc(n * sizeof *c->seen);
        if (!c->v || !c->seen) {
            free((void *)c->v);
            free((void *)c->seen);
            c->v = c->stack_v;
            c->seen = c->stack_seen;
            return CNODE_ENOMEM;
        }
    }
    return 0;
}

static int
avoided(const char *node, const char *const *avoid, size_t navoid)
{
    for (size_t k = 0; k < navoid; k++)
        if (strcmp(node, avoid[k]) == 0)
            return 1;
    return 0;
}

/* Drop the nodes in avoid while at least one other candidate is left. */
static void
cands_avoid(cands *c, const char *const *avoid, size_t navoid)
{
    if (!navoid)
        return;
    size_t keep = 0;
    for (size_t i = 0; i < c->n; i++)
        keep += !avoided(c->v[i], avoid, navoid);
    if (keep == 0)
        return;
    size_t w = 0;
    for (size_t i = 0; i < c->n; i++)
        if (!avoided(c->v[i], avoid, navoid))
            c->v[w++] = c->v[i];
    c->n = w;
}

/* Distinct live member nodes in pg order that pass the filter, skipping
 * this node unless it can run calls locally. */
static int
cands_pg(cnode_balancer *b, const cnode_pg_snapshot *snap, cands *c)
{
    size_t n;
    const cnode_pg_member *m = cnode_pg_members(snap, b->group, &n);
    if (cands_alloc(c, n) != 0)
        return CNODE_ENOMEM;
    const char *self = b->node && !b->local ? cnode_node_name(b->node) : NULL;
    for (size_t i = 0; i < n; i++) {
        const char *name = m[i].node;
        int dup = 0;
        for (size_t k = 0; k < c->nseen && !dup; k++)
            dup = c->seen[k] == name || strcmp(c->seen[k], name) == 0;
        if (dup)
            continue;
        c->seen[c->nseen++] = name;
        if (self && strcmp(self, name) == 0)
            continue;
        if (cnode_pg_node_suspect(snap, name) == 1) {
            c->suspect++;
            continue;
        }
        if (!cnode__lb_filter_pass(b, name)) {
            c->filtered++;
            continue;
        }
        c->v[c->n++] = name;
    }
    return 0;
}

/* A list used as given (EasyRpc): order and duplicates kept, filter applied. */
static int
cands_list(cnode_balancer *b, const char *const *names, size_t n, cands *c)
{
    if (cands_alloc(c, n) != 0)
        return CNODE_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!cnode__lb_filter_pass(b, names[i])) {
            c->filtered++;
            continue;
        }
        c->v[c->n++] = names[i];
    }
    return 0;
}

/* "P.fun/0" as EasyRpc names a provider. */
static void
provider_name(const cnode_balancer *b, char *out, size_t cap)
{
    cnode__sb s;
    cnode__sb_init(&s, out, cap);
    cnode__rpc_mod_text(&s, b->prov_mod);
    cnode__sb_fmt(&s, ".%s/%d", b->prov_fun, b->prov_nargs);
    cnode__sb_finish(&s);
}

/* The Elixir exception's message if reason is %{__exception__: true, message: <<...>>}. */
static int
exception_message(const ei_x_buff *reason, char *out, size_t cap)
{
    if (!reason || !reason->buff)
        return 0;
    int idx = 0, ver, arity;
    if (ei_decode_version(reason->buff, &idx, &ver) != 0 || ei_decode_map_header(reason->buff, &idx, &arity) != 0)
        return 0;
    for (int i = 0; i < arity; i++) {
        char key[MAXATOMLEN_UTF8];
        int type, size;
        if (ei_decode_atom(reason->buff, &idx, key) == 0 && strcmp(key, "message") == 0 &&
            ei_get_type(reason->buff, &idx, &type, &size) == 0 && type == ERL_BINARY_EXT && (size_t)size < cap) {
            long len;
            if (ei_decode_binary(reason->buff, &idx, out, &len) != 0)
                return 0;
            out[len] = 0;
            return 1;
        }
        if (ei_skip_term(reason->buff, &idx) != 0)
            return 0;
    }
    return 0;
}

/* The provider's answer: a non-empty list of atoms (EasyRpc's check). */
static int
provider_result(cnode_balancer *b, const ei_x_buff *res, cands *c, cnode_error *err)
{
    char what[600], text[400];
    provider_name(b, what, sizeof what);
    const char *t = res->buff;
    int len = res->index, idx = 0, type, arity;
    if (len > 0 && (unsigned char)t[0] == 131)
        idx = 1;
    if (cnode_rpc_inspect(t, (size_t)len, text, sizeof text) != 0)
        snprintf(text, sizeof text, "?");
    if (ei_get_type(t, &idx, &type, &arity) != 0)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Dynamic node provider %s must return a non-empty list of atoms, got: %s", what,
                              text);
    if (type == ERL_NIL_EXT)
        return cnode__lb_fail(err, CNODE_EUNAVAILABLE, "Dynamic node provider %s returned an empty list", what);
    if (type != ERL_LIST_EXT || ei_decode_list_header(t, &idx, &arity) != 0 || arity <= 0)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Dynamic node provider %s must return a non-empty list of atoms, got: %s", what,
                              text);
    char **names = calloc((size_t)arity, sizeof *names);
    if (!names)
        return cnode__lb_fail(err, CNODE_ENOMEM, "out of memory");
    int rc = 0;
    size_t n = 0;
    for (int i = 0; i < arity && !rc; i++) {
        char atom[MAXATOMLEN_UTF8];
        if (ei_decode_atom(t, &idx, atom) != 0 || strlen(atom) >= CNODE_BALANCER_NODE_MAX) {
            /* EasyRpc lets erpc fail on it later ({erpc, badarg}); refused here at once */
            rc = cnode__lb_fail(err, CNODE_ECONFIG, "Dynamic node provider %s must return a non-empty list of atoms, got: %s", what,
                                text);
        } else if (!(names[n++] = strdup(atom))) {
            rc = cnode__lb_fail(err, CNODE_ENOMEM, "out of memory");
        }
    }
    if (!rc)
        rc = cands_list(b, (const char *const *)names, n, c);
    if (rc) {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        return rc;
    }
    c->owned = names;
    c->nowned = n;
    return 0;
}

/* EasyRpc applies {M, F, A} on every selection: here on provider_node by
 * erpc, or locally through provider_fn. */
static int
cands_provider(cnode_balancer *b, cands *c, cnode_error *err)
{
    ei_x_buff res;
    if (ei_x_new(&res) != 0)
        return cnode__lb_fail(err, CNODE_ENOMEM, "out of memory");
    int rc;
    cnode_error perr = {0};
    if (b->prov_fn)
        rc = b->prov_fn(b->prov_mod, b->prov_fun, &b->prov_args, &res, &perr, b->prov_data);
    else
        rc = cnode_call(b->node, b->prov_node, b->prov_mod, b->prov_fun, &b->prov_args,
                        (unsigned)(b->timeout_ms > 60000 ? 60000 : b->timeout_ms), &res, &perr);
    if (rc == 0) {
        memset(c, 0, offsetof(cands, stack_v));
        c->v = c->stack_v;
        c->seen = c->stack_seen;
        rc = provider_result(b, &res, c, err);
    } else if (err) {
        /* the provider raised: its exception's message, as EasyRpc's wrap_exception keeps it */
        char msg[sizeof err->message];
        if (!exception_message(&perr.reason, msg, sizeof msg))
            snprintf(msg, sizeof msg, "%s", perr.message[0] ? perr.message : cnode_strerror(rc));
        cnode_error_clear(err);
        *err = perr;
        memset(&perr, 0, sizeof perr);
        err->code = rc;
        err->arity = -1;
        snprintf(err->message, sizeof err->message, "%s", msg);
        err->type = NULL;
        cnode__lb_classify(err);
    }
    cnode_error_clear(&perr);
    ei_x_free(&res);
    return rc;
}

static void
sleep_ms(long ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* The pick among c's candidates (n >= 1), minus avoided nodes while others are left; name into out. */
static int
pick_listed(cnode_balancer *b, cands *c, const char *key, size_t key_len, const char *args, size_t args_len,
            const char *const *avoid, size_t navoid, char *out, size_t cap)
{
    size_t i;
    cands_avoid(c, avoid, navoid);
    int rc = cnode__lb_choose(b, c->v, c->n, key, key_len, args, args_len, &i);
    if (!rc && strlen(c->v[i]) >= cap) {
        cnode_balancer_release(b, c->v[i], CNODE_EINVAL);
        rc = CNODE_EINVAL;
    } else if (!rc) {
        memcpy(out, c->v[i], strlen(c->v[i]) + 1);
    }
    return rc;
}

/* The calling thread's view of b's source (pg mirror or static list),
 * rebuilt when the source has changed since: a new pg snapshot. */
static int
current_view(cnode_balancer *b, cnode__lb_view **out)
{
    cnode__lb_view *v = cnode__lb_view_of(b);
    if (!v)
        return CNODE_ENOMEM;
    uint64_t gen = b->source == CNODE__SRC_LIST ? 1 : cnode_pg_generation(b->scope);
    if (v->bid != b->id || v->gen != gen) {
        cnode_pg_snapshot *snap = NULL;
        cands c;
        int rc;
        if (b->source == CNODE__SRC_LIST) {
            rc = cands_list(b, (const char *const *)b->nodes, b->n_nodes, &c);
        } else {
            snap = cnode_pg_snapshot_get(b->scope);
            gen = cnode_pg_snapshot_generation(snap);
            rc = cands_pg(b, snap, &c);
        }
        if (!rc) {
            size_t counts[3] = {c.members, c.suspect, c.filtered};
            rc = cnode__lb_view_fill(b, v, gen, c.v, c.n, counts);
        }
        cands_free(&c);
        cnode_pg_snapshot_release(snap);
        if (rc)
            return rc;
    }
    *out = v;
    return 0;
}

/* One pick from the view: avoided nodes (retries) take the slow path. */
static int
pick_view(cnode_balancer *b, cnode__lb_view *v, const char *key, size_t key_len, const char *args, size_t args_len,
          const char *const *avoid, size_t navoid, char *out, size_t cap)
{
    size_t i;
    if (navoid) {
        cands c;
        if (cands_alloc(&c, v->n) != 0)
            return CNODE_ENOMEM;
        memcpy((void *)c.v, v->names, v->n * sizeof *c.v);
        c.n = v->n;
        int rc = pick_listed(b, &c, key, key_len, args, args_len, avoid, navoid, out, cap);
        cands_free(&c);
        return rc;
    }
    int rc = cnode__lb_choose_view(b, v, key, key_len, args, args_len, &i);
    if (rc)
        return rc;
    size_t len = v->slots[i]->len;
    if (len >= cap) {
        cnode_balancer_release(b, v->names[i], CNODE_EINVAL);
        return CNODE_EINVAL;
    }
    memcpy(out, v->names[i], len + 1);
    return 0;
}

static int
pick_failed(int rc, cnode_error *err)
{
    if (rc == CNODE_EUNAVAILABLE)
        return cnode__lb_fail(err, rc, "no member with a weight above 0");
    return cnode__lb_fail(err, rc, "node selection failed: %s", cnode_strerror(rc));
}

static int
no_member(size_t members, size_t suspect, size_t filtered, cnode_error *err)
{
    if (members == 0)
        return cnode__lb_fail(err, CNODE_EUNAVAILABLE, "no members registered");
    if (filtered > 0 && suspect == 0)
        return cnode__lb_fail(err, CNODE_EUNAVAILABLE, "no nodes in cluster found with that filter");
    return cnode__lb_fail(err, CNODE_EUNAVAILABLE, "no live members (%zu suspect, %zu filtered out)", suspect, filtered);
}

/* Pick a candidate, waiting up to wait_ms for one (pg source); name into out, and into *gen the
 * generation of the pg snapshot the candidates came from (the view's: a pick never reads another), 0 for
 * other sources. */
static int
pick_member(cnode_balancer *b, const char *key, size_t key_len, const char *args, size_t args_len, const char *const *avoid,
            size_t navoid, char *out, size_t cap, uint64_t *gen, cnode_error *err)
{
    *gen = 0;
    if (b->source == CNODE__SRC_PG && !b->scope)
        return cnode__lb_fail(err, CNODE_EINVAL, "this balancer has no pg scope and no node list: use cnode_balancer_select_from");
    if (b->source == CNODE__SRC_PROVIDER) {
        /* a new list on every pick: no view */
        cands c;
        int rc = cands_provider(b, &c, err);
        if (rc)
            return rc; /* err filled: the provider's own error */
        if (c.n == 0) {
            size_t members = c.members, suspect = c.suspect, filtered = c.filtered;
            cands_free(&c);
            return no_member(members, suspect, filtered, err);
        }
        rc = pick_listed(b, &c, key, key_len, args, args_len, avoid, navoid, out, cap);
        cands_free(&c);
        return rc ? pick_failed(rc, err) : 0;
    }
    int64_t deadline = b->wait_ms ? cnode__lb_now_ms() + b->wait_ms : 0;
    for (;;) {
        cnode__lb_view *v;
        int rc = current_view(b, &v);
        if (rc)
            return cnode__lb_fail(err, rc, "out of memory");
        if (b->source == CNODE__SRC_PG)
            *gen = v->gen;
        if (v->n > 0) {
            rc = pick_view(b, v, key, key_len, args, args_len, avoid, navoid, out, cap);
            return rc ? pick_failed(rc, err) : 0;
        }
        if (b->source != CNODE__SRC_PG || cnode__lb_now_ms() >= deadline)
            return no_member(v->members, v->suspect, v->filtered, err);
        sleep_ms(WAIT_POLL_MS);
    }
}

static void
term_of(const ei_x_buff *x, const char **p, size_t *len)
{
    *p = x && x->buff && x->index > 0 ? x->buff : NULL;
    *len = *p ? (size_t)x->index : 0;
}

static int
select_gen(cnode_balancer *b, const ei_x_buff *key, const ei_x_buff *args, char *node, size_t cap, uint64_t *gen, cnode_error *err)
{
    *gen = 0;
    if (!b || !node || cap == 0)
        return cnode__lb_fail(err, CNODE_EINVAL, "balancer and node buffer required");
    const char *k, *a;
    size_t kl, al;
    term_of(key, &k, &kl);
    term_of(args, &a, &al);
    if (b->algo == CNODE_LB_CALL_DIRECT) {
        /* like CallDirect.choose_from_nodes: this node */
        const char *self = b->node ? cnode_node_name(b->node) : "";
        if (strlen(self) >= cap)
            return cnode__lb_fail(err, CNODE_EINVAL, "node buffer too small");
        memcpy(node, self, strlen(self) + 1);
        cnode__nslot *s = cnode__lb_slot(b, node, 1);
        if (!s)
            return cnode__lb_fail(err, CNODE_ENOMEM, "out of memory");
        atomic_fetch_add(&s->in_flight, 1);
        return 0;
    }
    return pick_member(b, k, kl, a, al, NULL, 0, node, cap, gen, err);
}

int
cnode_balancer_select(cnode_balancer *b, const ei_x_buff *key, const ei_x_buff *args, char *node, size_t cap, cnode_error *err)
{
    uint64_t gen;
    return select_gen(b, key, args, node, cap, &gen, err);
}

int
cnode_balancer_select_picked(cnode_balancer *b, const ei_x_buff *key, const ei_x_buff *args, cnode_balancer_picked *picked,
                             cnode_error *err)
{
    if (!picked)
        return cnode__lb_fail(err, CNODE_EINVAL, "picked required");
    picked->attempt = 0;
    int rc = select_gen(b, key, args, picked->node, sizeof picked->node, &picked->gen, err);
    if (rc)
        picked->node[0] = 0;
    return rc;
}

int
cnode__lb_source_nodes(cnode_balancer *b, char ***names, size_t *n, cnode_error *err)
{
    *names = NULL;
    *n = 0;
    cnode_pg_snapshot *snap = NULL;
    cands c;
    int rc;
    if (b->source == CNODE__SRC_LIST) {
        rc = cands_list(b, (const char *const *)b->nodes, b->n_nodes, &c);
    } else if (b->source == CNODE__SRC_PROVIDER) {
        rc = cands_provider(b, &c, err);
        if (rc)
            return rc;
    } else {
        if (!b->scope)
            return CNODE_EINVAL;
        snap = cnode_pg_snapshot_get(b->scope);
        rc = cands_pg(b, snap, &c);
    }
    if (!rc && c.n) {
        *names = calloc(c.n, sizeof **names);
        for (size_t i = 0; *names && i < c.n; i++) {
            int dup = 0;
            for (size_t k = 0; k < *n && !dup; k++)
                dup = strcmp((*names)[k], c.v[i]) == 0;
            if (!dup && ((*names)[*n] = strdup(c.v[i])) != NULL)
                (*n)++;
        }
        if (!*names)
            rc = CNODE_ENOMEM;
    }
    cands_free(&c);
    cnode_pg_snapshot_release(snap);
    return rc;
}

/* ---- calls ---- */

/* Elements of an encoded argument list, or -1 if it is not a list. */
static int
args_arity(const ei_x_buff *args)
{
    if (!args || !args->buff || args->index <= 0)
        return -1;
    cnode__rd r = cnode__rd_at(args->buff, (size_t)args->index);
    r.pos = r.b[0] == 131;
    uint32_t n;
    const unsigned char *s;
    size_t len;
    switch (cnode__rd_tag(&r)) {
    case T_NIL:
        return 0;
    case T_STRING:
        return cnode__rd_string(&r, &s, &len) == 0 ? (int)len : -1;
    case T_LIST:
        return cnode__rd_list(&r, &n) == 0 && n <= INT_MAX ? (int)n : -1;
    default:
        return -1;
    }
}

static int
should_retry(int policy, int rc)
{
    if (rc == CNODE_EUNAVAILABLE)
        return 1;
    if (policy == CNODE_LB_RETRY_ALL)
        return rc != CNODE_EINVAL && rc != CNODE_ENOMEM && rc != CNODE_ECLOSED;
    if (policy == CNODE_LB_RETRY_NODE_ERRORS)
        return rc == CNODE_ENOCONNECTION || rc == CNODE_ENOTSUP;
    return 0;
}

static void
fill_details(cnode_error *err, int rc, const char *mod, const char *fun, int arity, unsigned attempt, const char *node)
{
    if (!err)
        return;
    if (err->code == 0)
        err->code = rc;
    cnode__lb_classify(err);
    snprintf(err->module, sizeof err->module, "%s", mod);
    snprintf(err->function, sizeof err->function, "%s", fun);
    err->arity = arity;
    err->attempt = (int)attempt;
    if (node && *node && !err->node[0])
        snprintf(err->node, sizeof err->node, "%s", node);
}

static void
copy_out(char *dst, size_t cap, const char *src)
{
    if (dst && cap)
        snprintf(dst, cap, "%s", src);
}

static void
picked_clear(cnode_balancer_picked *picked)
{
    if (picked) {
        picked->node[0] = 0;
        picked->gen = 0;
        picked->attempt = 0;
    }
}

static int64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
cnode__lb_default_params(const cnode_balancer *b, cnode__lb_params *p)
{
    memset(p, 0, sizeof *p);
    p->timeout_ms = b->timeout_ms;
    p->retries = b->retries;
    p->policy = b->retry_policy;
    p->sleep_ms = b->sleep_ms;
    p->handled = b->error_handling || b->retries > 0;
}

/* One attempt: pick (unless call_direct) and call or cast. */
static int
attempt_once(cnode_balancer *b, const cnode__lb_params *p, int cast, const char *mod, const char *fun, int arity,
             const ei_x_buff *args, const char *const *avoid, size_t navoid, unsigned attempt, ei_x_buff *reply, char *target,
             uint64_t *gen, cnode_error *err)
{
    const char *a;
    size_t al;
    term_of(args, &a, &al);
    if (b->algo == CNODE_LB_CALL_DIRECT) {
        snprintf(target, CNODE_BALANCER_NODE_MAX, "%s", b->node ? cnode_node_name(b->node) : "");
        if (p->log)
            cnode__rpc_log_call(b, p, mod, fun, arity, target, attempt);
        return b->local(mod, fun, args, cast ? NULL : reply, err, b->local_data);
    }
    int rc = pick_member(b, p->key, p->key_len, a, al, avoid, navoid, target, CNODE_BALANCER_NODE_MAX, gen, err);
    if (rc != 0)
        return rc;
    if (p->log)
        cnode__rpc_log_call(b, p, mod, fun, arity, target, attempt);
    unsigned tmo = p->timeout_ms >= (long)UINT32_MAX ? UINT32_MAX : (unsigned)p->timeout_ms;
    if (b->local && b->node && strcmp(target, cnode_node_name(b->node)) == 0)
        rc = b->local(mod, fun, args, cast ? NULL : reply, err, b->local_data); /* this node is a member */
    else if (cast)
        rc = cnode_cast(b->node, target, mod, fun, args);
    else
        rc = cnode_call(b->node, target, mod, fun, args, tmo, reply, err);
    cnode_balancer_release(b, target, rc);
    return rc;
}

static void
observe(cnode_balancer *b, const char *mod, const char *fun, const char *node, int rc, unsigned attempt, int last, int64_t t0,
        uint64_t gen)
{
    if (!b->observer)
        return;
    cnode_balancer_event ev = {b->group, mod, fun, node, rc, attempt, last, now_us() - t0, gen};
    b->observer(&ev, b->observer_data);
}

int
cnode__lb_route(cnode_balancer *b, const cnode__lb_params *p, int cast, const char *mod, const char *fun, const ei_x_buff *args,
                ei_x_buff *reply, char *served_by, size_t cap, cnode_balancer_picked *picked, cnode_error *err)
{
    picked_clear(picked);
    if (!b || !mod || !fun || (!cast && !reply))
        return cnode__lb_fail(err, CNODE_EINVAL, "balancer, module, function and reply required");
    int arity = args_arity(args);
    if (arity < 0) {
        cnode__lb_fail(err, CNODE_EINVAL, "args must be an encoded list");
        fill_details(err, CNODE_EINVAL, mod, fun, -1, 0, NULL);
        return CNODE_EINVAL;
    }
    copy_out(served_by, cap, "");
    char avoid_buf[AVOID_MAX][CNODE_BALANCER_NODE_MAX];
    const char *avoid[AVOID_MAX];
    size_t navoid = 0;
    char target[CNODE_BALANCER_NODE_MAX];
    size_t reply_at = reply ? (size_t)reply->index : 0;
    for (unsigned attempt = 0;; attempt++) {
        if (err)
            cnode_error_clear(err);
        target[0] = 0;
        uint64_t gen = 0;
        int64_t t0 = now_us();
        if (reply)
            reply->index = (int)reply_at; /* a failed local attempt may have written */
        int rc = attempt_once(b, p, cast, mod, fun, arity, args, avoid, navoid, attempt, reply, target, &gen, err);
        copy_out(served_by, cap, target);
        if (picked) {
            memcpy(picked->node, target, sizeof target);
            picked->gen = gen;
            picked->attempt = attempt;
        }
        if (rc == 0) {
            if (err)
                cnode_error_clear(err);
            if (p->log)
                cnode__rpc_log_ok(b, mod, fun, arity, target, reply, reply_at);
            observe(b, mod, fun, target, 0, attempt, 1, t0, gen);
            return 0;
        }
        int again = (long)attempt < p->retries && should_retry(cast ? CNODE_LB_RETRY_NO_ROUTE : p->policy, rc);
        fill_details(err, rc, mod, fun, arity, attempt, target);
        observe(b, mod, fun, target, rc, attempt, !again, t0, gen);
        /* EasyRpc's bare path logs only a failed selection; the handled path every failure */
        if (p->log && (p->handled || !target[0]))
            cnode__rpc_log_failed(b, p, mod, fun, arity, target, attempt, !again, err);
        if (!again)
            return rc;
        if ((rc == CNODE_ENOCONNECTION || rc == CNODE_ENOTSUP) && target[0] && navoid < AVOID_MAX) {
            /* keep away from a node that could not take the call while others are left */
            memcpy(avoid_buf[navoid], target, sizeof target);
            avoid[navoid] = avoid_buf[navoid];
            navoid++;
            if (b->sticky)
                cnode_balancer_clear_sticky(b);
        }
        if (p->sleep_ms)
            sleep_ms(p->sleep_ms);
    }
}

int
cnode_balancer_call(cnode_balancer *b, const char *mod, const char *fun, const ei_x_buff *args, const ei_x_buff *key,
                    ei_x_buff *reply, char *served_by, size_t cap, cnode_error *err)
{
    if (!b)
        return cnode__lb_fail(err, CNODE_EINVAL, "balancer required");
    cnode__lb_params p;
    cnode__lb_default_params(b, &p);
    term_of(key, &p.key, &p.key_len);
    return cnode__lb_route(b, &p, 0, mod, fun, args, reply, served_by, cap, NULL, err);
}

int
cnode_balancer_cast(cnode_balancer *b, const char *mod, const char *fun, const ei_x_buff *args, const ei_x_buff *key,
                    char *served_by, size_t cap, cnode_error *err)
{
    if (!b)
        return cnode__lb_fail(err, CNODE_EINVAL, "balancer required");
    cnode__lb_params p;
    cnode__lb_default_params(b, &p);
    term_of(key, &p.key, &p.key_len);
    return cnode__lb_route(b, &p, 1, mod, fun, args, NULL, served_by, cap, NULL, err);
}

/* A call (cast 0) or cast (1) with the balancer's own parameters and key, the pick reported. */
static int
route_picked(cnode_balancer *b, int cast, const char *mod, const char *fun, const ei_x_buff *args, const ei_x_buff *key,
             ei_x_buff *reply, cnode_balancer_picked *picked, cnode_error *err)
{
    picked_clear(picked);
    if (!b)
        return cnode__lb_fail(err, CNODE_EINVAL, "balancer required");
    cnode__lb_params p;
    cnode__lb_default_params(b, &p);
    term_of(key, &p.key, &p.key_len);
    return cnode__lb_route(b, &p, cast, mod, fun, args, reply, NULL, 0, picked, err);
}

int
cnode_balancer_call_picked(cnode_balancer *b, const char *mod, const char *fun, const ei_x_buff *args, const ei_x_buff *key,
                           ei_x_buff *reply, cnode_balancer_picked *picked, cnode_error *err)
{
    return route_picked(b, 0, mod, fun, args, key, reply, picked, err);
}

int
cnode_balancer_cast_picked(cnode_balancer *b, const char *mod, const char *fun, const ei_x_buff *args, const ei_x_buff *key,
                           cnode_balancer_picked *picked, cnode_error *err)
{
    return route_picked(b, 1, mod, fun, args, key, NULL, picked, err);
}
