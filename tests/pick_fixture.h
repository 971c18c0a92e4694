/* One balancer per algorithm over a static member list, set up the same way
 * by the pick benchmark (bench/bench_pick.c) and the pick-path test
 * (tests/test_pick_path.c), so that the test checks what the bench times:
 * weights 1, 2, 3, 1, 2, 3... for weighted_round_robin, the caller's custom
 * algorithm and call_direct function, a CPU reading per member for
 * least_cpu (i * 37 % 100), no LeastCpu poller. Header-only, test code. */
#ifndef CNODE_PICK_FIXTURE_H
#define CNODE_PICK_FIXTURE_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode_balancer.h"

/* 0 and *out, or the cnode_balancer_new error (err filled). */
static inline int
pf_balancer(int algo, const char *const *nodes, size_t n, const cnode_balancer_algo *custom,
            cnode_balancer_local_fn *local, cnode_balancer **out, cnode_error *err)
{
    cnode_balancer_weight *w = calloc(n ? n : 1, sizeof *w);
    if (!w)
        return CNODE_ENOMEM;
    for (size_t i = 0; i < n; i++)
        w[i] = (cnode_balancer_weight){nodes[i], 1 + (unsigned)(i % 3)};
    cnode_balancer_opts o = {.algorithm = algo, .poll_interval_ms = -1, .nodes = nodes, .n_nodes = n};
    if (algo == CNODE_LB_WEIGHTED_ROUND_ROBIN) {
        o.weights = w;
        o.n_weights = n;
    }
    if (algo == CNODE_LB_CUSTOM)
        o.custom = custom;
    if (algo == CNODE_LB_CALL_DIRECT)
        o.local = local;
    int rc = cnode_balancer_new(NULL, NULL, "pick", &o, out, err);
    free(w); /* the balancer keeps its own copy of the options */
    if (rc == 0 && algo == CNODE_LB_LEAST_CPU)
        for (size_t i = 0; i < n; i++)
            cnode_balancer_cpu_set(*out, nodes[i], (double)((i * 37) % 100));
    return rc;
}

/* The routing inputs both cycle through: keys[k] = <<"key-k">> (hash_ring),
 * args[k] = [<<"key-k">>] (easy_hash), k < n. Free with pf_inputs_free. */
static inline void
pf_inputs(ei_x_buff *keys, ei_x_buff *args, int n)
{
    for (int k = 0; k < n; k++) {
        char key[32];
        snprintf(key, sizeof key, "key-%d", k);
        ei_x_new_with_version(&keys[k]);
        ei_x_encode_binary(&keys[k], key, (long)strlen(key));
        ei_x_new_with_version(&args[k]);
        ei_x_encode_list_header(&args[k], 1);
        ei_x_encode_binary(&args[k], key, (long)strlen(key));
        ei_x_encode_empty_list(&args[k]);
    }
}

static inline void
pf_inputs_free(ei_x_buff *keys, ei_x_buff *args, int n)
{
    for (int k = 0; k < n; k++) {
        ei_x_free(&keys[k]);
        ei_x_free(&args[k]);
    }
}
#endif
