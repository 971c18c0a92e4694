/* C side of the round-trip figure: send {Self, ping} to {bench_echo, Peer}
 * and wait for `ping`, N times after a warm-up; prints "rt_us <float>".
 * --poll runs without an I/O thread (cnode_poll mode). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode.h"

int
main(int argc, char **argv)
{
    const char *sname = "bench_c", *cookie = NULL, *peer = NULL;
    long n = 20000, warm = 2000;
    int poll_mode = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--poll"))
            poll_mode = 1;
        else if (i + 1 < argc && !strcmp(argv[i], "--sname"))
            sname = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--cookie"))
            cookie = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--peer"))
            peer = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--n"))
            n = atol(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--warmup"))
            warm = atol(argv[++i]);
    }
    if (!peer)
        return 2;
    cnode_node_opts o = {.name = sname, .cookie = cookie, .no_io_thread = poll_mode};
    cnode_node *node;
    cnode_error err = {0};
    if (cnode_node_new(&o, &node, &err) != 0) {
        fprintf(stderr, "bench_rt: %s\n", err.message);
        return 1;
    }
    cnode_proc *self;
    cnode_proc_new(node, NULL, &self);
    if (cnode_ping(node, peer, 5000, &err) != 0) {
        fprintf(stderr, "bench_rt: cannot reach %s\n", peer);
        return 1;
    }
    ei_x_buff msg;
    ei_x_new_with_version(&msg);
    ei_x_format_wo_ver(&msg, "{~p,~a}", cnode_proc_pid(self), "ping");
    struct timespec t0, t1;
    for (long i = 0; i < warm + n; i++) {
        if (i == warm)
            clock_gettime(CLOCK_MONOTONIC, &t0);
        cnode_msg m = {0};
        if (cnode_reg_send(self, "bench_echo", peer, &msg) != 0 || cnode_receive(self, 5000, &m) != 0) {
            fprintf(stderr, "bench_rt: round trip %ld failed\n", i);
            return 1;
        }
        cnode_msg_free(&m);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    printf("rt_us %.3f\n", ns / (double)n / 1000.0);
    ei_x_free(&msg);
    cnode_proc_close(self);
    cnode_node_close(node);
    return 0;
}
