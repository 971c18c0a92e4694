/* cnode — command-line front end of libcnode. Options may appear anywhere
 * after the command name (getopt_long permutation); `--` ends them. */
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ei_glue/glue.h" /* the distribution flags the handshake advertises, for --version */

#ifndef CNODE_OTP_RELEASE
#define CNODE_OTP_RELEASE "unknown"
#endif
#ifndef CNODE_EI_VERSION
#define CNODE_EI_VERSION "unknown"
#endif

static void
usage(FILE *f)
{
    fprintf(f, "usage: cnode [GLOBAL OPTIONS] COMMAND [ARGS]\n"
               "\n"
               "commands:\n"
               "  ping NODE                      pong (exit 0) or pang (exit 1; 3 when TLS refused it)\n"
               "  call [--timeout MS] NODE MOD FUN ARGS\n"
               "                                 erpc:call: prints the result as ~0p prints it\n"
               "  cast NODE MOD FUN ARGS         erpc:cast (ARGS: Erlang term text of a list)\n"
               "  serve [--workers N] [--scope S --group G]\n"
               "                                 serve cnode_demo (echo/1 add/2 sleep/1 fail/1 info/0 stats/0)\n"
               "                                 until SIGTERM or SIGINT; with --scope/--group a member of\n"
               "                                 that pg group (leaves it first when stopping)\n"
               "  members --scope S [--group G] [--watch | --dump] [NODE...]\n"
               "                                 the pg mirror: SCOPE GROUP NODE PID per member;\n"
               "                                 --watch then prints one timestamped line per change\n"
               "                                 (after a line `TIME listed SCOPE N members`); --dump:\n"
               "                                 every member of the scope, lines sorted bytewise\n"
               "  balance --scope S --group G [--algorithm A] [--key K] [--filter F] [--sticky] [-n N] MOD FUN ARGS\n"
               "                                 N calls through a balancer: NODE COUNT per node, then each\n"
               "                                 distinct error with its count; no live member stops at once\n"
               "                                 (K: term text; F: a substring or ~r/REGEX/)\n"
               "\n"
               "global options (anywhere on the line):\n"
               "  --sname NAME | --name NAME@HOST  this node's name (default: a unique hidden name)\n"
               "  --cookie C                     cookie (default: $HOME/.erlang.cookie)\n"
               "  --connect NODE                 node to join the cluster through (repeatable)\n"
               "  --timeout MS                   per-operation timeout\n"
               "  --limit NAME=VALUE             a field of cnode_limits (repeatable), e.g.\n"
               "                                 served_in_flight=64, mailbox_len=1000\n"
               "  --proto-dist P                 the transport, as BEAM's -proto_dist: inet_tcp (default),\n"
               "                                 inet6_tcp, inet_tls, inet6_tls; inet6_* for IPv6 names\n"
               "                                 such as --name c@::1 or app@fdaa::3 (no brackets)\n"
               "  --probe-timeout MS             pg scopes (members, serve, balance): a node whose liveness\n"
               "                                 probe goes unanswered this long is suspect (default 1000)\n"
               "  --tls-cert F, --tls-key F      PEM certificate and key of this node (TLS options mean\n"
               "                                 inet_tls unless --proto-dist says otherwise)\n"
               "  --tls-ca F                     PEM CAs that peers' certificates must chain to\n"
               "  --tls-verify V                 peer (default with --tls-ca: the peer's certificate must\n"
               "                                 chain to the CAs and name the host dialled) or none\n"
               "  --ssl-dist-optfile F           BEAM's -ssl_dist_optfile: [{server,Opts},{client,Opts}]\n"
               "  -v                             log to stderr (repeat for more)\n"
               "  -h, --help                     this text; COMMAND --help: that command's\n"
               "  --version                      library version, OTP release, distribution flags\n"
               "\n"
               "exit codes: 0 ok, 1 pang or remote exception, 2 usage or bad input, 3 noconnection,\n"
               "            4 timeout, 5 service_unavailable\n");
}

void
cli_log(int level, const char *msg, void *ud)
{
    (void)ud;
    static const char *const names[] = {"error", "warning", "info", "debug"};
    fprintf(stderr, "cnode: %s: %s\n", names[level < 0 ? 0 : level > 3 ? 3 : level], msg);
}

int
cli_exit_code(int rc)
{
    switch (rc) {
    case 0:
        return EXIT_OK;
    case CNODE_EEXCEPTION:
        return EXIT_PANG;
    case CNODE_ENOCONNECTION:
    case CNODE_EAUTH:
    case CNODE_EEPMD:
        return EXIT_NOCONN;
    case CNODE_ETIMEOUT:
        return EXIT_TIMEOUT;
    case CNODE_EUNAVAILABLE:
        return EXIT_UNAVAILABLE;
    default:
        return EXIT_USAGE;
    }
}

int
cli_node_start(const cli_opts *o, cnode_node **node)
{
    char auto_name[64];
    cnode_node_opts no = {0};
    if (o->name) {
        no.name = o->name;
        no.longnames = o->longnames;
    } else {
        /* like erl_call: a name nobody else uses */
        unsigned r = (unsigned)getpid() * 2654435761u ^ (unsigned)rand();
        snprintf(auto_name, sizeof auto_name, "cnode_%d_%08x", (int)getpid(), r);
        no.name = auto_name;
    }
    no.cookie = o->cookie;
    no.workers = o->workers;
    no.limits = o->limits;
    no.proto_dist = o->proto_dist;
    no.tls = o->tls;
    no.log = o->verbose ? cli_log : NULL;
    no.log_level = o->verbose ? o->verbose : 0;
    cnode_error err = {0};
    int rc = cnode_node_new(&no, node, &err);
    if (rc != 0) {
        fprintf(stderr, "cnode: cannot start node: %s\n", err.message[0] ? err.message : cnode_strerror(rc));
        cnode_error_clear(&err);
        return rc == CNODE_EEPMD ? EXIT_NOCONN : EXIT_USAGE;
    }
    return 0;
}

/* --limit NAME=VALUE: one field of cnode_limits. 0 or -1. */
static int
set_limit(cnode_limits *l, const char *arg)
{
    static const struct {
        const char *name;
        size_t off;
        int is_size;
    } fields[] = {
        {"mailbox_len", offsetof(cnode_limits, mailbox_len), 1},
        {"out_queue_bytes", offsetof(cnode_limits, out_queue_bytes), 1},
        {"send_timeout_ms", offsetof(cnode_limits, send_timeout_ms), 0},
        {"served_in_flight", offsetof(cnode_limits, served_in_flight), 0},
        {"handshakes", offsetof(cnode_limits, handshakes), 0},
        {"handshakes_per_addr", offsetof(cnode_limits, handshakes_per_addr), 0},
        {"handshake_ms", offsetof(cnode_limits, handshake_ms), 0},
        {"peers", offsetof(cnode_limits, peers), 0},
        {"read_budget", offsetof(cnode_limits, read_budget), 0},
    };
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1])
        return -1;
    char *end;
    unsigned long long v = strtoull(eq + 1, &end, 10);
    if (*end || eq[1] == '-' || v == 0 || v > UINT_MAX)
        return -1;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (strlen(fields[i].name) == (size_t)(eq - arg) && !strncmp(fields[i].name, arg, (size_t)(eq - arg))) {
            char *f = (char *)l + fields[i].off;
            if (fields[i].is_size)
                *(size_t *)(void *)f = (size_t)v;
            else
                *(unsigned *)(void *)f = (unsigned)v;
            return 0;
        }
    return -1;
}

/* cnode --version: what a bug report needs. The flags are the ones every handshake offers. */
static void
version(void)
{
    static const struct {
        uint64_t bit;
        const char *name;
    } names[] = {
        {CNODE__DFLAG_EXTENDED_REFERENCES, "EXTENDED_REFERENCES"},
        {CNODE__DFLAG_DIST_MONITOR, "DIST_MONITOR"},
        {CNODE__DFLAG_FUN_TAGS, "FUN_TAGS"},
        {CNODE__DFLAG_DIST_MONITOR_NAME, "DIST_MONITOR_NAME"},
        {CNODE__DFLAG_NEW_FUN_TAGS, "NEW_FUN_TAGS"},
        {CNODE__DFLAG_EXTENDED_PIDS_PORTS, "EXTENDED_PIDS_PORTS"},
        {CNODE__DFLAG_EXPORT_PTR_TAG, "EXPORT_PTR_TAG"},
        {CNODE__DFLAG_BIT_BINARIES, "BIT_BINARIES"},
        {CNODE__DFLAG_NEW_FLOATS, "NEW_FLOATS"},
        {CNODE__DFLAG_SMALL_ATOM_TAGS, "SMALL_ATOM_TAGS"},
        {CNODE__DFLAG_UTF8_ATOMS, "UTF8_ATOMS"},
        {CNODE__DFLAG_MAP_TAG, "MAP_TAG"},
        {CNODE__DFLAG_BIG_CREATION, "BIG_CREATION"},
        {CNODE__DFLAG_SEND_SENDER, "SEND_SENDER"},
        {CNODE__DFLAG_BIG_SEQTRACE_LABELS, "BIG_SEQTRACE_LABELS"},
        {CNODE__DFLAG_EXIT_PAYLOAD, "EXIT_PAYLOAD"},
        {CNODE__DFLAG_FRAGMENTS, "FRAGMENTS"},
        {CNODE__DFLAG_HANDSHAKE_23, "HANDSHAKE_23"},
        {CNODE__DFLAG_UNLINK_ID, "UNLINK_ID"},
        {CNODE__DFLAG_MANDATORY_25_DIGEST, "MANDATORY_25_DIGEST"},
        {CNODE__DFLAG_SPAWN, "SPAWN"},
        {CNODE__DFLAG_NAME_ME, "NAME_ME"},
        {CNODE__DFLAG_V4_NC, "V4_NC"},
        {CNODE__DFLAG_ALIAS, "ALIAS"},
    };
    uint64_t flags = CNODE__DFLAGS_OURS, named = 0;
    printf("cnode %s (libcnode %s)\n", CNODE_VERSION, CNODE_VERSION);
    printf("OTP: built against erl_interface %s and tested with OTP %s; peers must be OTP 25 or later\n",
           CNODE_EI_VERSION, CNODE_OTP_RELEASE);
    printf("distribution flags advertised: 0x%llx (hidden node)\n ", (unsigned long long)flags);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (flags & names[i].bit) {
            printf(" %s", names[i].name);
            named |= names[i].bit;
        }
    if (flags & ~named)
        printf(" 0x%llx", (unsigned long long)(flags & ~named));
    printf("\n");
}

typedef struct {
    const char *name;
    int (*run)(cli_opts *o);
    int min_args, max_args;
    const char *help; /* cnode COMMAND --help */
} command;

#define GLOBAL_HINT "\nglobal options (--sname, --cookie, --connect, --timeout, --limit, -v): see cnode --help\n"
static const command commands[] = {
    {"ping", cmd_ping, 1, 1,
     "usage: cnode ping NODE\n"
     "  Connects to NODE as net_adm:ping/1 does and prints pong (exit 0) or pang (exit 1;\n"
     "  exit 3 when the TLS layer refused the connection, with the reason on stderr).\n"
     "  --timeout MS bounds the attempt (default 5000); -v says why on pang.\n" GLOBAL_HINT},
    {"serve", cmd_serve, 0, 0,
     "usage: cnode serve [--workers N] [--scope S [--group G]] [--connect NODE]...\n"
     "  Serves cnode_demo (echo/1, add/2, sleep/1, fail/1, info/0) to erpc, rpc and erl_call\n"
     "  callers until SIGTERM or SIGINT; running handlers then finish within a grace period.\n"
     "  --workers N   handler threads (default: the library's)\n"
     "  --scope S     run pg scope S; with --group G, join group G as a member (left first when\n"
     "                stopping); --connect NODE joins the cluster through NODE\n" GLOBAL_HINT},
    {"call", cmd_call, 4, 4,
     "usage: cnode call [--timeout MS] NODE MOD FUN ARGS\n"
     "  erpc:call(NODE, MOD, FUN, ARGS): ARGS is Erlang term text of a list, e.g. '[1, <<\"x\">>]';\n"
     "  MOD may be an Elixir module (String). Prints the result as io_lib:format(\"~0p\") does.\n"
     "  Exit 0 ok, 1 remote exception (printed), 3 noconnection, 4 timeout.\n" GLOBAL_HINT},
    {"cast", cmd_cast, 4, 4,
     "usage: cnode cast NODE MOD FUN ARGS\n"
     "  erpc:cast(NODE, MOD, FUN, ARGS): sends the call and returns without waiting for it.\n"
     "  ARGS is Erlang term text of a list.\n" GLOBAL_HINT},
    {"members", cmd_members, 0, 1000,
     "usage: cnode members --scope S [--group G] [--watch] [--connect NODE]... [NODE...]\n"
     "  Joins the cluster through the NODEs and prints the pg mirror after discovery, one member\n"
     "  per line: SCOPE GROUP NODE PID. --group G: only that group. --watch: then one timestamped\n"
     "  line per change (join, leave, nodedown, suspect, clear) until SIGTERM or SIGINT.\n"
     "  --probe-timeout MS: a node is suspect after its liveness probe goes unanswered this long\n"
     "  (default 1000).\n" GLOBAL_HINT},
    {"balance", cmd_balance, 3, 3,
     "usage: cnode balance --scope S --group G [--algorithm A] [--key K] [--filter F] [--sticky] [-n N]\n"
     "                     [--connect NODE]... MOD FUN ARGS\n"
     "  N calls (default 1) of MOD:FUN(ARGS) through a balancer over the live members of group G\n"
     "  of scope S; prints NODE COUNT per node that answered, then each distinct error with its\n"
     "  count on stderr. \"no live member\" ends the run at once (exit 5).\n"
     "  --algorithm   random, round_robin, least_connections, power_of_two, hash_ring,\n"
     "                weighted_round_robin, least_cpu, easy_random, easy_round_robin, easy_hash,\n"
     "                sticky (default: the balancer's)\n"
     "  --key K       hash_ring key (Erlang term text)   --filter F  a substring or ~r/REGEX/\n"
     "  --sticky      EasyRpc's sticky_node: keep calling the node chosen first while it lives\n" GLOBAL_HINT},
};

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"sname", required_argument, NULL, 's'},   {"name", required_argument, NULL, 'm'},
        {"cookie", required_argument, NULL, 'c'},  {"connect", required_argument, NULL, 'C'},
        {"timeout", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        {"workers", required_argument, NULL, 'w'}, {"scope", required_argument, NULL, 'S'},
        {"group", required_argument, NULL, 'G'},   {"algorithm", required_argument, NULL, 'A'},
        {"key", required_argument, NULL, 'K'},     {"filter", required_argument, NULL, 'F'},
        {"count", required_argument, NULL, 'N'},   {"watch", no_argument, NULL, 'W'},
        {"sticky", no_argument, NULL, 'Y'},        {"dump", no_argument, NULL, 'D'},
        {"limit", required_argument, NULL, 'L'},
        {"version", no_argument, NULL, 'V'},
        {"proto-dist", required_argument, NULL, 'P'},
        {"probe-timeout", required_argument, NULL, 'T'},
        {"tls-cert", required_argument, NULL, 1},  {"tls-key", required_argument, NULL, 2},
        {"tls-ca", required_argument, NULL, 3},    {"tls-verify", required_argument, NULL, 4},
        {"ssl-dist-optfile", required_argument, NULL, 5},
        {NULL, 0, NULL, 0},
    };
    cli_opts o = {0};
    o.timeout_ms = 5000;
    o.count = 1;
    o.connect = calloc((size_t)argc + 1, sizeof *o.connect);
    if (!o.connect)
        return EXIT_USAGE;
    int c;
    optind = 1;
    opterr = 0;
    int status = -1, help = 0;
    while ((c = getopt_long(argc, argv, "vhn:", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            o.name = optarg;
            o.longnames = 0;
            break;
        case 'm':
            o.name = optarg;
            o.longnames = 1;
            break;
        case 'c':
            o.cookie = optarg;
            break;
        case 'C':
            o.connect[o.nconnect++] = optarg;
            break;
        case 't': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*optarg == 0 || *end || v <= 0 || v > 86400000) {
                fprintf(stderr, "cnode: --timeout takes milliseconds (1..86400000), not '%s'\n", optarg);
                status = EXIT_USAGE;
            }
            o.timeout_ms = (unsigned)v;
            o.timeout_set = 1;
            break;
        }
        case 'T': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*optarg == 0 || *end || v <= 0 || v > 86400000) {
                fprintf(stderr, "cnode: --probe-timeout takes milliseconds (1..86400000), not '%s'\n", optarg);
                status = EXIT_USAGE;
            }
            o.probe_timeout_ms = (unsigned)v;
            break;
        }
        case 'w': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*optarg == 0 || *end || v <= 0 || v > 1024) {
                fprintf(stderr, "cnode: --workers takes a count (1..1024), not '%s'\n", optarg);
                status = EXIT_USAGE;
            }
            o.workers = (unsigned)v;
            break;
        }
        case 'P': {
            static const char *const protos[] = {"inet_tcp", "inet6_tcp", "inet_tls", "inet6_tls"};
            size_t i = 0;
            while (i < 4 && strcmp(optarg, protos[i]) != 0)
                i++;
            if (i == 4) {
                fprintf(stderr, "cnode: --proto-dist takes inet_tcp, inet6_tcp, inet_tls or inet6_tls, not '%s'\n", optarg);
                status = EXIT_USAGE;
            }
            o.proto_dist = i < 4 ? (cnode_proto_dist)(CNODE_PROTO_INET_TCP + i) : CNODE_PROTO_DEFAULT;
            break;
        }
        case 1:
            o.tls.certfile = optarg;
            break;
        case 2:
            o.tls.keyfile = optarg;
            break;
        case 3:
            o.tls.cafile = optarg;
            break;
        case 4:
            if (strcmp(optarg, "peer") == 0 || strcmp(optarg, "verify_peer") == 0) {
                o.tls.verify = CNODE_TLS_VERIFY_PEER;
            } else if (strcmp(optarg, "none") == 0 || strcmp(optarg, "verify_none") == 0) {
                o.tls.verify = CNODE_TLS_VERIFY_NONE;
            } else {
                fprintf(stderr, "cnode: --tls-verify takes peer or none, not '%s'\n", optarg);
                status = EXIT_USAGE;
            }
            break;
        case 5:
            o.tls.optfile = optarg;
            break;
        case 'S':
            o.scope = optarg;
            break;
        case 'G':
            o.group = optarg;
            break;
        case 'A':
            o.algorithm = optarg;
            break;
        case 'K':
            o.key = optarg;
            break;
        case 'F':
            o.filter = optarg;
            break;
        case 'W':
            o.watch = 1;
            break;
        case 'D':
            o.dump = 1;
            break;
        case 'L':
            if (set_limit(&o.limits, optarg) != 0) {
                fprintf(stderr, "cnode: --limit takes NAME=VALUE (a cnode_limits field, 1..%u), not '%s'\n", UINT_MAX, optarg);
                status = EXIT_USAGE;
            }
            break;
        case 'Y':
            o.sticky = 1;
            break;
        case 'n':
        case 'N': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*optarg == 0 || *end || v <= 0 || v > 100000000) {
                fprintf(stderr, "cnode: -n takes a count (1..100000000), not '%s'\n", optarg);
                status = EXIT_USAGE;
            }
            o.count = v;
            break;
        }
        case 'v':
            o.verbose++;
            break;
        case 'h':
            help = 1; /* global, or the command's when one is named (options come in any order) */
            break;
        case 'V':
            version();
            status = EXIT_OK;
            break;
        default:
            fprintf(stderr, "cnode: unknown or incomplete option '%s'\n", argv[optind - 1]);
            status = EXIT_USAGE;
            break;
        }
        if (status >= 0)
            break;
    }
    if (status < 0 && help) {
        const command *found = NULL;
        for (size_t i = 0; optind < argc && i < sizeof commands / sizeof commands[0]; i++)
            if (strcmp(commands[i].name, argv[optind]) == 0)
                found = &commands[i];
        if (found)
            fputs(found->help, stdout);
        else
            usage(stdout);
        status = EXIT_OK;
    }
    if (status < 0) {
        if (optind >= argc) {
            usage(stderr);
            status = EXIT_USAGE;
        } else {
            const char *cmd = argv[optind];
            const command *found = NULL;
            for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
                if (strcmp(commands[i].name, cmd) == 0)
                    found = &commands[i];
            o.argc = argc - optind - 1;
            o.argv = argv + optind + 1;
            if (!found) {
                fprintf(stderr, "cnode: unknown command '%s' (see cnode --help)\n", cmd);
                status = EXIT_USAGE;
            } else if (o.argc < found->min_args || o.argc > found->max_args) {
                fprintf(stderr, "cnode: %s: wrong number of arguments (see cnode --help)\n", cmd);
                status = EXIT_USAGE;
            } else {
                status = found->run(&o);
            }
        }
    }
    free(o.connect);
    return status;
}
