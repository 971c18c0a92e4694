/* defrpc: EasyRpc's DefRpc in C. One line per remote function declares
 * module, function, arity and options; CNODE_DEFRPC generates two stubs
 * that call through a balancer:
 *     name(b, args_list, &reply, &err)         the arguments as one encoded list
 *     name_terms(b, a1, ..., aN, &reply, &err) exactly N encoded terms
 * and logs each call in EasyRpc's format through the node's log hook:
 *     [EasyRpc] --> :erlang.abs/1 on :"a@host" [timeout: 1000ms, retry: 2]
 *     [EasyRpc] <-- :erlang.abs/1 on :"a@host" succeeded — result: 42
 *
 * The balancer is an EasyRpc node selector over a static list (--nodes) or a
 * pg group (--scope/--group with --connect), so this runs against any BEAM
 * node:
 *
 *   erl -sname a -setcookie secret
 *   build/examples/defrpc --cookie secret --nodes a@$(hostname -s)
 *   build/examples/defrpc --cookie secret --connect a@host --scope my_scope --group my_group
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode.h"
#include "cnode_balancer.h"
#include "cnode_term.h"

/* The declarations: what `defrpc :abs, args: 1, retry: 2, timeout: 1000` says. */
CNODE_DEFRPC(remote_node, "erlang", "node", 0, NULL)
CNODE_DEFRPC(remote_abs, "erlang", "abs", 1, "[{retry, 2}, {timeout, 1000}]")
CNODE_DEFRPC(remote_seq, "lists", "seq", 2, "[{error_handling, true}]")
CNODE_DEFRPC(remote_error, "erlang", "error", 1, "[{retry, 1}, {sleep_before_retry, 100}]")

static void
log_cb(int level, const char *msg, void *ud)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    (void)ud;
    fprintf(stderr, "[%s] %s\n", level >= 0 && level <= 3 ? names[level] : "?", msg);
}

static ei_x_buff
term(const char *text)
{
    ei_x_buff x;
    cnode_error perr = {0};
    ei_x_new_with_version(&x);
    if (cnode_term_parse(text, &x, &perr) != 0)
        fprintf(stderr, "defrpc: bad term %s: %s\n", text, perr.message);
    return x;
}

static void
show(const char *what, int rc, ei_x_buff *reply, cnode_error *err)
{
    if (rc == 0) {
        char *t = NULL;
        cnode_term_print(reply->buff, (size_t)reply->index, &t, NULL);
        printf("%s -> %s\n", what, t ? t : "?");
        free(t);
    } else {
        char text[2048];
        cnode_rpc_error_format(err, text, sizeof text);
        printf("%s -> error %s\n", what, text);
    }
    reply->index = 0;
    cnode_error_clear(err);
}

/* Split "a@h,b@h" in place. */
static size_t
split(char *s, const char **v, size_t max)
{
    size_t n = 0;
    for (char *t = strtok(s, ","); t && n < max; t = strtok(NULL, ","))
        v[n++] = t;
    return n;
}

int
main(int argc, char **argv)
{
    const char *sname = "defrpc_example", *cookie = NULL, *scope_name = NULL, *group = NULL, *connect = NULL;
    char *nodes_arg = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--sname"))
            sname = argv[i + 1];
        else if (!strcmp(argv[i], "--cookie"))
            cookie = argv[i + 1];
        else if (!strcmp(argv[i], "--nodes"))
            nodes_arg = argv[i + 1];
        else if (!strcmp(argv[i], "--scope"))
            scope_name = argv[i + 1];
        else if (!strcmp(argv[i], "--group"))
            group = argv[i + 1];
        else if (!strcmp(argv[i], "--connect"))
            connect = argv[i + 1];
    }
    if (!nodes_arg && !(scope_name && group && connect)) {
        fprintf(stderr, "usage: defrpc [--sname N] [--cookie C] (--nodes a@h,b@h | --connect a@h --scope S --group G)\n");
        return 2;
    }
    /* A declaration is checked when first called; check them all at start-up instead. */
    const cnode_rpc_def *defs[] = {&remote_node_rpc, &remote_abs_rpc, &remote_seq_rpc, &remote_error_rpc};
    cnode_error err = {0};
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++)
        if (cnode_rpc_def_check(defs[i], &err) != 0) {
            fprintf(stderr, "defrpc: %s\n", err.message);
            return 1;
        }

    cnode_node_opts no = {.name = sname, .cookie = cookie, .log = log_cb, .log_level = CNODE_LOG_DEBUG};
    cnode_node *node;
    if (cnode_node_new(&no, &node, &err) != 0) {
        fprintf(stderr, "defrpc: %s\n", err.message);
        return 1;
    }
    cnode_balancer *b = NULL;
    int rc;
    if (nodes_arg) {
        /* EasyRpc's NodeSelector: nodes: [...], select_mode: :round_robin */
        const char *nodes[32];
        size_t n = split(nodes_arg, nodes, 32);
        cnode_balancer_opts o = {.algorithm = CNODE_LB_EASY_ROUND_ROBIN, .nodes = nodes, .n_nodes = n, .timeout_ms = 5000};
        rc = cnode_balancer_new(node, NULL, "defrpc", &o, &b, &err);
    } else {
        /* the members of a pg group, as rpc_load_balancer sees them */
        cnode_pg_scope *scope;
        rc = cnode_pg_scope_start(node, scope_name, NULL, &scope);
        if (rc == 0) {
            cnode_ping(node, connect, 5000, NULL);
            cnode_pg_connect(scope, connect);
            cnode_pg_wait_ready(scope, 0);
            cnode_balancer_opts o = {.algorithm = CNODE_LB_ROUND_ROBIN, .wait_members_ms = 1000};
            rc = cnode_balancer_new(node, scope, group, &o, &b, &err);
        }
    }
    if (rc != 0) {
        fprintf(stderr, "defrpc: %s\n", err.message[0] ? err.message : cnode_strerror(rc));
        cnode_node_close(node);
        return 1;
    }

    ei_x_buff reply;
    ei_x_new(&reply);
    show("erlang:node()", remote_node_terms(b, &reply, &err), &reply, &err);
    ei_x_buff n = term("-42");
    show("erlang:abs(-42)", remote_abs_terms(b, &n, &reply, &err), &reply, &err);
    ei_x_buff args = term("[1, 5]");
    show("lists:seq(1, 5)", remote_seq(b, &args, &reply, &err), &reply, &err); /* the list form */
    ei_x_buff why = term("{oops, 1}");
    show("erlang:error({oops, 1})", remote_error_terms(b, &why, &reply, &err), &reply, &err);
    ei_x_free(&n);
    ei_x_free(&args);
    ei_x_free(&why);
    ei_x_free(&reply);
    cnode_balancer_free(b);
    cnode_node_close(node);
    return 0;
}
