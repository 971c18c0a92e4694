/* The cnode command: shared state of one invocation. */
#ifndef CNODE_CLI_H
#define CNODE_CLI_H
#include <pthread.h>

#include "cnode.h"

enum { EXIT_OK = 0, EXIT_PANG = 1, EXIT_USAGE = 2, EXIT_NOCONN = 3, EXIT_TIMEOUT = 4, EXIT_UNAVAILABLE = 5 };

typedef struct {
    const char *name;   /* --sname / --name value */
    int longnames;
    const char *cookie;
    int verbose;
    unsigned timeout_ms;
    int timeout_set;
    const char **connect; /* --connect NODE, repeatable */
    int nconnect;
    unsigned workers;     /* serve --workers N */
    const char *scope;    /* --scope S (pg commands, serve, balance) */
    const char *group;    /* --group G */
    const char *algorithm; /* balance --algorithm A */
    const char *key;      /* balance --key K (hash_ring) */
    const char *filter;   /* balance --filter SUBSTRING */
    long count;           /* balance -n N (default 1) */
    int watch;            /* members --watch */
    int dump;             /* members --dump */
    int sticky;           /* balance --sticky */
    unsigned probe_timeout_ms; /* --probe-timeout MS: pg's liveness probe (members, serve, balance); 0: the library's */
    cnode_limits limits;  /* --limit NAME=VALUE, repeatable; 0: the library's default */
    cnode_proto_dist proto_dist; /* --proto-dist inet_tcp|inet6_tcp|inet_tls|inet6_tls */
    cnode_tls_opts tls;   /* --tls-cert, --tls-key, --tls-ca, --tls-verify, --ssl-dist-optfile */
    int argc;             /* the command's positional arguments */
    char **argv;
} cli_opts;

/* Starts the node for a command (a unique hidden name unless --sname/--name). */
int cli_node_start(const cli_opts *o, cnode_node **node);
/* demo.c: the demo service `cnode_demo` that `cnode serve` registers: echo/1,
 * add/2, sleep/1 (ms, stops early when the caller gives up), fail/1 (raises
 * error:Reason), info/0 (#{node, version, pid}) and cancelled/0 (how many
 * sleeps saw their caller give up). */
int cli_demo_register(cnode_node *node);
/* Exit code for a library error code. */
int cli_exit_code(int rc);
void cli_log(int level, const char *msg, void *ud);

int cmd_ping(cli_opts *o);
int cmd_serve(cli_opts *o);
int cmd_call(cli_opts *o);
int cmd_cast(cli_opts *o);
int cmd_members(cli_opts *o);
int cmd_balance(cli_opts *o);
#endif
