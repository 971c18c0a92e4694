/* cnode serve: serve the demo functions until SIGTERM or SIGINT, then stop
 * cleanly (running handlers finish, bounded by a grace period). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#define GRACE_MS 5000

int
cmd_serve(cli_opts *o)
{
    /* block the stop signals in every thread the library starts; this thread waits for them */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    cnode_node *node;
    int rc = cli_node_start(o, &node);
    if (rc)
        return rc;
    rc = cnode_demo_register(node);
    if (rc) {
        fprintf(stderr, "cnode: serve: cannot register cnode_demo: %s\n", cnode_strerror(rc));
        cnode_node_close(node);
        return EXIT_USAGE;
    }
    printf("serving cnode_demo on %s\n", cnode_node_name(node));
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    if (o->verbose)
        fprintf(stderr, "cnode: serve: %s, stopping\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    if (cnode_server_drain(node, GRACE_MS) != 0)
        fprintf(stderr, "cnode: serve: handlers still running after %d ms; stopping anyway\n", GRACE_MS);
    cnode_node_close(node);
    return EXIT_OK;
}
