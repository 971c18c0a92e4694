/* C side of the "calling BEAM from C" figures (issue 4): erlang:abs(-1) on
 * --peer through cnode_call / cnode_send_request.
 *
 *   --mode lat    sequential cnode_call, N after a warm-up, every reply
 *                 checked; prints "call_us <float>".
 *   --mode tput   closed loops, 0.5 s warm-up then a --secs window each:
 *                 for W in --windows: one thread keeps W requests in flight
 *                 (cnode_send_request, then cnode_receive_response of the
 *                 oldest and a new request in its slot);
 *                 for T in --threads: T threads, each a blocking cnode_call
 *                 loop. Prints "tput_async_W <calls/s>" / "tput_threads_T ..."
 *                 and, with --server-pid, "srvcpu_async_W <us>": the server
 *                 process's utime+stime over the window per completed call,
 *                 "srvcpu_util_async_W <CPUs busy>", and the same for this
 *                 process ("clicpu_").
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "cnode.h"

static const char *peer;
static cnode_node *node;
static ei_x_buff args;
static atomic_long done_calls;
static atomic_int stop_flag;
static atomic_long failures;

static int
check_reply(const ei_x_buff *r)
{
    int idx = 0, ver;
    long v;
    return ei_decode_version(r->buff, &idx, &ver) == 0 && ei_decode_long(r->buff, &idx, &v) == 0 && v == 1 ? 0 : -1;
}

static int
one_call(ei_x_buff *reply)
{
    reply->index = 0;
    cnode_error err = {0};
    int rc = cnode_call(node, peer, "erlang", "abs", &args, 5000, reply, &err);
    cnode_error_clear(&err);
    return rc == 0 ? check_reply(reply) : rc;
}

/* One thread, w requests in flight. */
static int
run_async(int w, double secs, const char *spid)
{
    cnode_req **slot = calloc((size_t)w, sizeof *slot);
    ei_x_buff reply;
    ei_x_new(&reply);
    for (int i = 0; i < w; i++)
        if (cnode_send_request(node, peer, "erlang", "abs", &args, 5000, NULL, NULL, &slot[i]) != 0)
            return -1;
    double start = bench_now_s(), t0 = 0, t1 = 0;
    long count = 0, c0 = 0, c1 = 0;
    bench_ticks cpu0 = {{-1, -1}}, cpu1 = {{-1, -1}};
    int phase = 0; /* 0 warm-up, 1 window, 2 draining */
    for (long i = 0;; i++) {
        int k = (int)(i % w);
        if (!slot[k]) {
            int left = 0;
            for (int j = 0; j < w; j++)
                left |= slot[j] != NULL;
            if (!left)
                break;
            continue;
        }
        reply.index = 0;
        cnode_error err = {0};
        int rc = cnode_receive_response(slot[k], 5000, &reply, &err);
        cnode_error_clear(&err);
        slot[k] = NULL;
        if (rc != 0 || check_reply(&reply) != 0) {
            fprintf(stderr, "bench_call: async call failed: %s\n", cnode_strerror(rc));
            atomic_fetch_add(&failures, 1);
        }
        count++;
        double t = bench_now_s();
        if (phase == 0 && t - start >= 0.5) {
            phase = 1;
            c0 = count, cpu0 = bench_both_ticks(spid), t0 = t;
        } else if (phase == 1 && t - t0 >= secs) {
            phase = 2;
            c1 = count, cpu1 = bench_both_ticks(spid), t1 = t;
        }
        if (phase < 2 && cnode_send_request(node, peer, "erlang", "abs", &args, 5000, NULL, NULL, &slot[k]) != 0)
            return -1;
    }
    bench_print_window("async", w, c1 - c0, t1 - t0, cpu0, cpu1);
    ei_x_free(&reply);
    free(slot);
    return 0;
}

static void *
blocking_worker(void *arg)
{
    (void)arg;
    ei_x_buff reply;
    ei_x_new(&reply);
    while (!atomic_load(&stop_flag)) {
        if (one_call(&reply) != 0)
            atomic_fetch_add(&failures, 1);
        atomic_fetch_add(&done_calls, 1);
    }
    ei_x_free(&reply);
    return NULL;
}

static int
run_threads(int n, double secs, const char *spid)
{
    pthread_t *th = calloc((size_t)n, sizeof *th);
    atomic_store(&stop_flag, 0);
    atomic_store(&done_calls, 0);
    for (int i = 0; i < n; i++)
        pthread_create(&th[i], NULL, blocking_worker, NULL);
    usleep(500000);
    long c0 = atomic_load(&done_calls);
    bench_ticks cpu0 = bench_both_ticks(spid);
    double t0 = bench_now_s();
    usleep((useconds_t)(secs * 1e6));
    long c1 = atomic_load(&done_calls);
    bench_ticks cpu1 = bench_both_ticks(spid);
    double t1 = bench_now_s();
    atomic_store(&stop_flag, 1);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    free(th);
    bench_print_window("threads", n, c1 - c0, t1 - t0, cpu0, cpu1);
    return 0;
}

int
main(int argc, char **argv)
{
    const char *sname = "bench_call", *cookie = NULL, *mode = "lat", *windows = "1,8,64", *threads = "8", *spid = NULL;
    const char *optfile = NULL; /* --ssl-dist-optfile: the same over TLS */
    long n = 20000, warm = 2000;
    double secs = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--sname"))
            sname = v;
        else if (!strcmp(k, "--cookie"))
            cookie = v;
        else if (!strcmp(k, "--peer"))
            peer = v;
        else if (!strcmp(k, "--mode"))
            mode = v;
        else if (!strcmp(k, "--n"))
            n = atol(v);
        else if (!strcmp(k, "--warmup"))
            warm = atol(v);
        else if (!strcmp(k, "--windows"))
            windows = v;
        else if (!strcmp(k, "--threads"))
            threads = v;
        else if (!strcmp(k, "--secs"))
            secs = atof(v);
        else if (!strcmp(k, "--server-pid"))
            spid = v;
        else if (!strcmp(k, "--ssl-dist-optfile"))
            optfile = v;
    }
    if (!peer)
        return 2;
    cnode_node_opts o = {.name = sname, .cookie = cookie, .tls = {.optfile = optfile}};
    cnode_error err = {0};
    if (cnode_node_new(&o, &node, &err) != 0) {
        fprintf(stderr, "bench_call: %s\n", err.message);
        return 1;
    }
    if (cnode_ping(node, peer, 5000, &err) != 0) {
        fprintf(stderr, "bench_call: cannot reach %s\n", peer);
        return 1;
    }
    ei_x_new(&args);
    ei_x_encode_list_header(&args, 1);
    ei_x_encode_long(&args, -1);
    ei_x_encode_empty_list(&args);
    ei_x_buff reply;
    ei_x_new(&reply);
    if (one_call(&reply) != 0) {
        fprintf(stderr, "bench_call: erlang:abs(-1) on %s did not return 1\n", peer);
        return 1;
    }
    int rc = 0;
    if (!strcmp(mode, "lat")) {
        double t0 = 0;
        for (long i = 0; i < warm + n; i++) {
            if (i == warm)
                t0 = bench_now_s();
            if (one_call(&reply) != 0) {
                fprintf(stderr, "bench_call: call %ld failed\n", i);
                return 1;
            }
        }
        printf("call_us %.3f\n", (bench_now_s() - t0) / (double)n * 1e6);
    } else {
        char list[256];
        snprintf(list, sizeof list, "%s", windows);
        for (char *s = strtok(list, ","); s && rc == 0; s = strtok(NULL, ","))
            rc = run_async(atoi(s), secs, spid);
        snprintf(list, sizeof list, "%s", threads);
        for (char *s = strtok(list, ","); s && rc == 0; s = strtok(NULL, ","))
            rc = run_threads(atoi(s), secs, spid);
    }
    if (atomic_load(&failures))
        fprintf(stderr, "bench_call: %ld calls failed\n", atomic_load(&failures));
    ei_x_free(&reply);
    ei_x_free(&args);
    cnode_node_close(node);
    return rc == 0 && !atomic_load(&failures) ? 0 : 1;
}
