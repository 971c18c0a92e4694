/* The stock erl_interface anchor for the call latency figure (issue 4), as
 * anchors.md measured it: ei_connect_init / ei_connect, then sequential
 * ei_rpc(erlang, abs, [-1]) with the result checked; N after a warm-up.
 * Uses only ei (no libcnode). Prints "call_us <float>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ei.h>

int
main(int argc, char **argv)
{
    const char *sname = "bench_ei", *cookie = NULL, *peer = NULL;
    long n = 20000, warm = 2000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--sname"))
            sname = argv[i + 1];
        else if (!strcmp(argv[i], "--cookie"))
            cookie = argv[i + 1];
        else if (!strcmp(argv[i], "--peer"))
            peer = argv[i + 1];
        else if (!strcmp(argv[i], "--n"))
            n = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup"))
            warm = atol(argv[i + 1]);
    }
    if (!peer || !cookie)
        return 2;
    ei_init();
    ei_cnode ec;
    if (ei_connect_init(&ec, sname, cookie, (unsigned)getpid()) < 0) {
        fprintf(stderr, "bench_ei: ei_connect_init failed\n");
        return 1;
    }
    int fd = ei_connect(&ec, (char *)peer);
    if (fd < 0) {
        fprintf(stderr, "bench_ei: ei_connect %s failed (%d)\n", peer, fd);
        return 1;
    }
    ei_x_buff a, x;
    ei_x_new(&a);
    ei_x_encode_list_header(&a, 1);
    ei_x_encode_long(&a, -1);
    ei_x_encode_empty_list(&a);
    ei_x_new(&x);
    struct timespec t0 = {0}, t1;
    for (long i = 0; i < warm + n; i++) {
        if (i == warm)
            clock_gettime(CLOCK_MONOTONIC, &t0);
        x.index = 0;
        int idx = 0, ver;
        long v = 0;
        /* ei_rpc leaves the reply without its version byte */
        if (ei_rpc(&ec, fd, "erlang", "abs", a.buff, a.index, &x) < 0 ||
            ((unsigned char)x.buff[0] == 131 && ei_decode_version(x.buff, &idx, &ver) < 0) ||
            ei_decode_long(x.buff, &idx, &v) < 0 || v != 1) {
            fprintf(stderr, "bench_ei: ei_rpc %ld failed\n", i);
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    printf("call_us %.3f\n", ns / (double)n / 1000.0);
    ei_x_free(&a);
    ei_x_free(&x);
    close(fd);
    return 0;
}
