/* cnode call NODE MOD FUN ARGS / cnode cast NODE MOD FUN ARGS: erpc:call/5
 * and erpc:cast/4 from the command line. ARGS is Erlang term text of a list;
 * the result is printed as io_lib:format("~0p") prints it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cnode_term.h"

typedef struct {
    const char *target;
    char mod[MAXATOMLEN_UTF8];
    const char *fun;
    ei_x_buff args;
} call_args;

/* Checks and parses NODE MOD FUN ARGS; EXIT_OK or EXIT_USAGE (message printed). */
static int
parse_call(const cli_opts *o, const char *cmd, call_args *a)
{
    a->target = o->argv[0];
    a->fun = o->argv[2];
    if (!strchr(a->target, '@') || a->target[0] == '@') {
        fprintf(stderr, "cnode: %s: '%s' is not a node name (name@host)\n", cmd, a->target);
        return EXIT_USAGE;
    }
    if (cnode_module_atom(o->argv[1], a->mod, sizeof a->mod) != 0) {
        fprintf(stderr, "cnode: %s: bad module name '%s'\n", cmd, o->argv[1]);
        return EXIT_USAGE;
    }
    if (!*a->fun || strlen(a->fun) >= MAXATOMLEN) {
        fprintf(stderr, "cnode: %s: bad function name '%s'\n", cmd, a->fun);
        return EXIT_USAGE;
    }
    cnode_error perr = {0};
    if (ei_x_new_with_version(&a->args) != 0)
        return EXIT_USAGE;
    if (cnode_term_parse(o->argv[3], &a->args, &perr) != 0) {
        fprintf(stderr, "cnode: %s: bad ARGS: %s\n", cmd, perr.message);
        ei_x_free(&a->args);
        return EXIT_USAGE;
    }
    int idx = 1, type, size;
    if (ei_get_type(a->args.buff, &idx, &type, &size) != 0 ||
        (type != ERL_LIST_EXT && type != ERL_NIL_EXT && type != ERL_STRING_EXT)) {
        fprintf(stderr, "cnode: %s: ARGS must be a list, e.g. '[1, <<\"x\">>]'\n", cmd);
        ei_x_free(&a->args);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

static void
print_error(const cnode_error *err, int rc)
{
    char text[4096];
    if (cnode_error_format(err, text, sizeof text) < 0 || !text[0])
        snprintf(text, sizeof text, "%s", cnode_strerror(rc));
    fprintf(stderr, "%s\n", text);
    if (err->stacktrace.buff && err->stacktrace.index > 1) {
        char *st = NULL;
        cnode_term_print(err->stacktrace.buff, (size_t)err->stacktrace.index, &st, NULL);
        if (st)
            fprintf(stderr, "stacktrace: %s\n", st);
        free(st);
    }
}

int
cmd_call(cli_opts *o)
{
    call_args a;
    int rc = parse_call(o, "call", &a);
    if (rc != EXIT_OK)
        return rc;
    cnode_node *node;
    if ((rc = cli_node_start(o, &node)) != 0) {
        ei_x_free(&a.args);
        return rc;
    }
    ei_x_buff reply = {0};
    cnode_error err = {0};
    rc = cnode_call(node, a.target, a.mod, a.fun, &a.args, o->timeout_ms, &reply, &err);
    int status;
    if (rc == 0) {
        char *text = NULL;
        cnode_term_print(reply.buff, (size_t)reply.index, &text, NULL);
        if (text) {
            puts(text);
            status = EXIT_OK;
        } else {
            fprintf(stderr, "cnode: call: the result could not be printed\n");
            status = EXIT_USAGE;
        }
        free(text);
        ei_x_free(&reply);
    } else {
        print_error(&err, rc);
        status = cli_exit_code(rc);
    }
    fflush(stdout);
    cnode_error_clear(&err);
    ei_x_free(&a.args);
    cnode_node_close(node);
    return status;
}

int
cmd_cast(cli_opts *o)
{
    call_args a;
    int rc = parse_call(o, "cast", &a);
    if (rc != EXIT_OK)
        return rc;
    cnode_node *node;
    if ((rc = cli_node_start(o, &node)) != 0) {
        ei_x_free(&a.args);
        return rc;
    }
    cnode_error err = {0};
    /* A cast is fire and forget, but the command should not exit before the
     * request has left: connect first (erpc:cast to an unreachable node is a
     * silent no-op in Erlang; here it is reported, as the user asked for it). */
    rc = cnode_ping(node, a.target, o->timeout_ms, &err);
    if (rc == 0)
        rc = cnode_cast(node, a.target, a.mod, a.fun, &a.args);
    if (rc != 0) {
        if (!err.code)
            err.code = rc;
        print_error(&err, rc);
        rc = rc == CNODE_EEXCEPTION ? EXIT_NOCONN : cli_exit_code(rc);
    }
    cnode_error_clear(&err);
    ei_x_free(&a.args);
    cnode_node_close(node); /* flushes what is queued before closing */
    return rc;
}
