/* cnode balance [--connect NODE]... --scope S --group G [--algorithm A]
 *               [--key K] [--filter F] [--sticky] [-n N] MOD FUN ARGS
 *
 * Makes N calls of MOD:FUN(ARGS...) through a balancer over the live members
 * of pg group G in scope S and prints the spread, one `NODE COUNT` line per
 * node that answered, sorted by node name. ARGS and K are Erlang term text;
 * F is a substring, or a regex written ~r/.../. A failed call is counted
 * and the calls go on (a member dying mid-run shows as errors next to the
 * spread), except "no live member", which ends the run at once. After the
 * spread, each distinct error on stderr, once (`<lb_code>: ` and EasyRpc's
 * text, then ` (N times)` when it repeated); the exit code follows the last
 * error (5: service_unavailable). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cnode_balancer.h"
#include "cnode_term.h"

#define WAIT_MEMBERS_MS 250 /* a group still empty after discovery fails fast */

typedef struct {
    char name[CNODE_BALANCER_NODE_MAX];
    long count;
} spread_ent;

typedef struct {
    spread_ent *v;
    size_t n, cap;
} spread;

static int
spread_add(spread *s, const char *node)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].name, node) == 0) {
            s->v[i].count++;
            return 0;
        }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        spread_ent *nv = realloc(s->v, cap * sizeof *nv);
        if (!nv)
            return -1;
        s->v = nv;
        s->cap = cap;
    }
    snprintf(s->v[s->n].name, sizeof s->v[s->n].name, "%s", node);
    s->v[s->n++].count = 1;
    return 0;
}

static int
ent_cmp(const void *a, const void *b)
{
    return strcmp(((const spread_ent *)a)->name, ((const spread_ent *)b)->name);
}

static void
spread_print(spread *s)
{
    if (s->n == 0)
        return; /* s->v is NULL: qsort must not see it */
    qsort(s->v, s->n, sizeof *s->v, ent_cmp);
    for (size_t i = 0; i < s->n; i++)
        printf("%s %ld\n", s->v[i].name, s->v[i].count);
    fflush(stdout);
}

/* Term text into a fresh buffer with its 131; EXIT_OK or EXIT_USAGE (printed). */
static int
parse_term(const char *what, const char *text, ei_x_buff *out)
{
    cnode_error perr = {0};
    if (ei_x_new_with_version(out) != 0)
        return EXIT_USAGE;
    if (cnode_term_parse(text, out, &perr) != 0) {
        fprintf(stderr, "cnode: balance: bad %s: %s\n", what, perr.message);
        ei_x_free(out);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

typedef struct {
    char mod[MAXATOMLEN_UTF8];
    const char *fun;
    ei_x_buff args, key;
    int has_key;
    char *regex; /* --filter ~r/.../: the pattern, malloc'd */
    cnode_balancer_opts lb;
} balance_args;

static void
balance_args_free(balance_args *a)
{
    ei_x_free(&a->args);
    if (a->has_key)
        ei_x_free(&a->key);
    free(a->regex);
}

static int
parse_balance(const cli_opts *o, balance_args *a)
{
    memset(a, 0, sizeof *a);
    if (!o->scope || !o->group || !*o->scope || !*o->group) {
        fprintf(stderr, "cnode: balance: --scope SCOPE and --group GROUP are required\n");
        return EXIT_USAGE;
    }
    if (o->algorithm && cnode_balancer_algorithm_parse(o->algorithm, &a->lb.algorithm) != 0) {
        fprintf(stderr,
                "cnode: balance: unknown algorithm '%s' (random, round_robin, least_connections, power_of_two, "
                "hash_ring, weighted_round_robin, easy_random, easy_round_robin, easy_hash, sticky, least_cpu)\n",
                o->algorithm);
        return EXIT_USAGE;
    }
    if (a->lb.algorithm == CNODE_LB_CALL_DIRECT || a->lb.algorithm == CNODE_LB_CUSTOM) {
        fprintf(stderr, "cnode: balance: algorithm '%s' needs C code; not available here\n", o->algorithm);
        return EXIT_USAGE;
    }
    if (cnode_module_atom(o->argv[0], a->mod, sizeof a->mod) != 0) {
        fprintf(stderr, "cnode: balance: bad module name '%s'\n", o->argv[0]);
        return EXIT_USAGE;
    }
    a->fun = o->argv[1];
    if (!*a->fun || strlen(a->fun) >= MAXATOMLEN) {
        fprintf(stderr, "cnode: balance: bad function name '%s'\n", a->fun);
        return EXIT_USAGE;
    }
    if (parse_term("ARGS", o->argv[2], &a->args) != EXIT_OK)
        return EXIT_USAGE;
    int idx = 1, type, size;
    if (ei_get_type(a->args.buff, &idx, &type, &size) != 0 ||
        (type != ERL_LIST_EXT && type != ERL_NIL_EXT && type != ERL_STRING_EXT)) {
        fprintf(stderr, "cnode: balance: ARGS must be a list, e.g. '[1, <<\"x\">>]'\n");
        ei_x_free(&a->args);
        return EXIT_USAGE;
    }
    if (o->key) {
        if (parse_term("--key", o->key, &a->key) != EXIT_OK) {
            ei_x_free(&a->args);
            return EXIT_USAGE;
        }
        a->has_key = 1;
    }
    if (o->filter) {
        size_t fl = strlen(o->filter);
        if (fl >= 4 && strncmp(o->filter, "~r/", 3) == 0 && o->filter[fl - 1] == '/') {
            a->regex = strndup(o->filter + 3, fl - 4);
            if (!a->regex) {
                balance_args_free(a);
                return EXIT_USAGE;
            }
            a->lb.filter = a->regex;
            a->lb.filter_kind = CNODE_FILTER_REGEX;
        } else {
            a->lb.filter = o->filter;
        }
        cnode_filter *f;
        cnode_error err = {0};
        if (cnode_filter_new(a->lb.filter, a->lb.filter_kind, NULL, 0, &f, &err) != 0) {
            fprintf(stderr, "cnode: balance: %s\n", err.message);
            cnode_error_clear(&err);
            balance_args_free(a);
            return EXIT_USAGE;
        }
        cnode_filter_free(f);
    }
    a->lb.timeout_ms = (long)o->timeout_ms;
    a->lb.sticky = o->sticky;
    a->lb.wait_members_ms = WAIT_MEMBERS_MS;
    return EXIT_OK;
}

#define MAX_ERRORS 16 /* distinct error texts kept; more are counted in the last */

typedef struct {
    char text[1024];
    long count;
} error_ent;

typedef struct {
    error_ent v[MAX_ERRORS];
    size_t n;
} errors;

static void
errors_add(errors *e, const cnode_error *err, int rc)
{
    char text[4096], line[1024];
    if (cnode_error_format(err, text, sizeof text) != 0 || !text[0])
        snprintf(text, sizeof text, "%s", cnode_strerror(rc));
    if (err->lb_code)
        snprintf(line, sizeof line, "%s: %s", err->lb_code, text);
    else
        snprintf(line, sizeof line, "%s", text);
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->v[i].text, line) == 0) {
            e->v[i].count++;
            return;
        }
    if (e->n == MAX_ERRORS) {
        snprintf(e->v[MAX_ERRORS - 1].text, sizeof e->v[0].text, "(more distinct errors)");
        e->v[MAX_ERRORS - 1].count++;
        return;
    }
    snprintf(e->v[e->n].text, sizeof e->v[0].text, "%s", line);
    e->v[e->n++].count = 1;
}

static void
errors_print(const errors *e)
{
    for (size_t i = 0; i < e->n; i++) {
        if (e->v[i].count > 1)
            fprintf(stderr, "%s (%ld times)\n", e->v[i].text, e->v[i].count);
        else
            fprintf(stderr, "%s\n", e->v[i].text);
    }
}

/* Connect, discover, then the N calls. */
static int
run_calls(const cli_opts *o, cnode_node *node, balance_args *a)
{
    cnode_pg_scope *scope;
    cnode_pg_opts po = {.probe_timeout_ms = o->probe_timeout_ms};
    int rc = cnode_pg_scope_start(node, o->scope, &po, &scope);
    if (rc != 0) {
        fprintf(stderr, "cnode: balance: cannot start scope '%s': %s\n", o->scope, cnode_strerror(rc));
        return cli_exit_code(rc);
    }
    int reached = 0;
    for (int i = 0; i < o->nconnect; i++) {
        cnode_error err = {0};
        if (cnode_ping(node, o->connect[i], o->timeout_ms, &err) == 0)
            reached++;
        else
            fprintf(stderr, "cnode: balance: cannot reach %s: %s\n", o->connect[i],
                    err.message[0] ? err.message : cnode_strerror(err.code));
        cnode_error_clear(&err);
        cnode_pg_connect(scope, o->connect[i]);
    }
    if (o->nconnect && !reached)
        return EXIT_NOCONN;
    cnode_pg_wait_ready(scope, 0);
    cnode_balancer *b;
    cnode_error berr = {0};
    rc = cnode_balancer_new(node, scope, o->group, &a->lb, &b, &berr);
    if (rc != 0) {
        fprintf(stderr, "cnode: balance: cannot make the balancer: %s\n", berr.message[0] ? berr.message : cnode_strerror(rc));
        cnode_error_clear(&berr);
        return EXIT_USAGE;
    }
    spread s = {0};
    errors *errs = calloc(1, sizeof *errs);
    if (!errs) {
        cnode_balancer_free(b);
        return EXIT_USAGE;
    }
    int status = EXIT_OK;
    for (long k = 0; k < o->count; k++) {
        cnode_error err = {0};
        ei_x_buff reply;
        if (ei_x_new(&reply) != 0) {
            status = EXIT_USAGE;
            break;
        }
        char served[CNODE_BALANCER_NODE_MAX];
        rc = cnode_balancer_call(b, a->mod, a->fun, &a->args, a->has_key ? &a->key : NULL, &reply, served, sizeof served, &err);
        if (rc == 0 && o->verbose) {
            char *t = NULL;
            cnode_term_print(reply.buff, (size_t)reply.index, &t, NULL);
            fprintf(stderr, "cnode: balance: %s -> %s\n", served, t ? t : "?");
            free(t);
        }
        ei_x_free(&reply);
        if (rc != 0) {
            status = cli_exit_code(rc);
            errors_add(errs, &err, rc);
            cnode_error_clear(&err);
            if (rc == CNODE_EUNAVAILABLE)
                break; /* no live member: the next calls would say the same */
            continue;
        }
        cnode_error_clear(&err);
        if (spread_add(&s, served) != 0) {
            status = EXIT_USAGE;
            break;
        }
    }
    spread_print(&s);
    errors_print(errs);
    free(errs);
    free(s.v);
    cnode_balancer_free(b);
    return status;
}

int
cmd_balance(cli_opts *o)
{
    balance_args a;
    int rc = parse_balance(o, &a);
    if (rc != EXIT_OK)
        return rc;
    cnode_node *node;
    if ((rc = cli_node_start(o, &node)) != 0) {
        balance_args_free(&a);
        return rc;
    }
    rc = run_calls(o, node, &a);
    cnode_node_close(node);
    balance_args_free(&a);
    return rc;
}
