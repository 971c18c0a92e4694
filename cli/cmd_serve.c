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
    rc = cli_demo_register(node);
    if (rc) {
        fprintf(stderr, "cnode: serve: cannot register cnode_demo: %s\n", cnode_strerror(rc));
        cnode_node_close(node);
        return EXIT_USAGE;
    }
    cnode_pg_scope *scope = NULL;
    cnode_proc *member = NULL;
    if (o->group && !o->scope) {
        fprintf(stderr, "cnode: serve: --group needs --scope\n");
        cnode_node_close(node);
        return EXIT_USAGE;
    }
    if (o->scope) {
        cnode_pg_opts po = {.probe_timeout_ms = o->probe_timeout_ms};
        rc = cnode_pg_scope_start(node, o->scope, &po, &scope);
        if (rc != 0) {
            fprintf(stderr, "cnode: serve: cannot start scope '%s': %s\n", o->scope, cnode_strerror(rc));
            cnode_node_close(node);
            return cli_exit_code(rc);
        }
    }
    for (int i = 0; i < o->nconnect; i++) {
        cnode_error err = {0};
        if (cnode_ping(node, o->connect[i], o->timeout_ms, &err) != 0)
            fprintf(stderr, "cnode: serve: cannot reach %s yet: %s\n", o->connect[i],
                    err.message[0] ? err.message : cnode_strerror(err.code));
        if (scope)
            cnode_pg_connect(scope, o->connect[i]);
    }
    if (scope && o->group) {
        /* the group member: a process of this node that BEAM nodes route calls to */
        rc = cnode_proc_new(node, NULL, &member);
        if (rc == 0)
            rc = cnode_pg_join(scope, o->group, member);
        if (rc != 0) {
            fprintf(stderr, "cnode: serve: cannot join %s/%s: %s\n", o->scope, o->group, cnode_strerror(rc));
            cnode_node_close(node);
            return cli_exit_code(rc);
        }
    }
    if (scope)
        cnode_pg_wait_ready(scope, 0);
    printf("serving cnode_demo on %s\n", cnode_node_name(node));
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    if (o->verbose)
        fprintf(stderr, "cnode: serve: %s, stopping\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    if (member) {
        /* deregister first: leave the group, so nobody routes to us, then drain */
        cnode_pg_leave(scope, o->group, member);
        cnode_proc_close(member);
    }
    if (cnode_server_drain(node, GRACE_MS) != 0)
        fprintf(stderr, "cnode: serve: handlers still running after %d ms; stopping anyway\n", GRACE_MS);
    cnode_node_close(node);
    return EXIT_OK;
}
