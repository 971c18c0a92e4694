/* cnode ping NODE: pong (exit 0) or pang (exit 1), like net_adm:ping/1; pang with exit 3 when the
 * TLS layer refused the connection (a certificate, or a peer on the other transport). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

int
cmd_ping(cli_opts *o)
{
    const char *peer = o->argv[0];
    if (!strchr(peer, '@')) {
        fprintf(stderr, "cnode: ping: '%s' is not a node name (name@host)\n", peer);
        return EXIT_USAGE;
    }
    cnode_node *node;
    int rc = cli_node_start(o, &node);
    if (rc)
        return rc;
    cnode_error err = {0};
    rc = cnode_ping(node, peer, o->timeout_ms, &err);
    if (rc != 0 && (o->verbose || rc == CNODE_EAUTH))
        fprintf(stderr, "cnode: ping %s: %s\n", peer, err.message[0] ? err.message : cnode_strerror(rc));
    puts(rc == 0 ? "pong" : "pang");
    fflush(stdout);
    cnode_node_close(node);
    return rc == 0 ? EXIT_OK : rc == CNODE_EAUTH ? EXIT_NOCONN : EXIT_PANG;
}
