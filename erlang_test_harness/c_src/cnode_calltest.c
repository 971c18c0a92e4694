/* cnode_calltest: the erpc client's load and concurrency checks, driven by
 * erpc_client_SUITE. Each mode prints one result line and exits 0 only if
 * every answer was exactly the one asked for.
 *
 *   cnode_calltest COOKIE TARGET inflight N     N send_requests from one thread, then all answers
 *   cnode_calltest COOKIE TARGET callback N     N requests with completion callbacks
 *   cnode_calltest COOKIE TARGET threads T M    T threads, M blocking calls each
 *   cnode_calltest COOKIE TARGET late           a call that times out; its late reply is dropped
 *   cnode_calltest COOKIE TARGET killwait N     N long calls in flight; prints SENT, then counts
 *                                               the outcomes once the test has killed TARGET
 *   cnode_calltest COOKIE TARGET multicall NODE...  erlang:node() on every node
 *
 * Calls are erlang:abs(-K) with K unique per call, so a crossed answer shows. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cnode.h"

static cnode_node *node;
static const char *target;

static int
args_neg(ei_x_buff *x, long k)
{
    ei_x_new_with_version(x);
    ei_x_encode_list_header(x, 1);
    ei_x_encode_long(x, -k);
    return ei_x_encode_empty_list(x);
}

static int
reply_is(const ei_x_buff *r, long k)
{
    int idx = 0, v;
    long got;
    if (ei_decode_version(r->buff, &idx, &v) < 0 || ei_decode_long(r->buff, &idx, &got) < 0)
        return 0;
    return got == k;
}

static int
mode_inflight(long n)
{
    cnode_req **reqs = calloc((size_t)n, sizeof *reqs);
    if (!reqs)
        return 1;
    long sent = 0, good = 0;
    for (long k = 0; k < n; k++) {
        ei_x_buff a;
        args_neg(&a, k + 1);
        if (cnode_send_request(node, target, "erlang", "abs", &a, 60000, NULL, NULL, &reqs[k]) == 0)
            sent++;
        ei_x_free(&a);
    }
    for (long k = 0; k < n; k++) {
        if (!reqs[k])
            continue;
        ei_x_buff r;
        ei_x_new(&r);
        cnode_error err = {0};
        if (cnode_receive_response(reqs[k], -1, &r, &err) == 0 && reply_is(&r, k + 1))
            good++;
        cnode_error_clear(&err);
        ei_x_free(&r);
    }
    free(reqs);
    printf("inflight sent=%ld good=%ld\n", sent, good);
    return good == n ? 0 : 1;
}

static atomic_long cb_good, cb_done;
static void
on_done(cnode_req *req, int status, const ei_x_buff *reply, const cnode_error *err, void *ud)
{
    (void)req;
    (void)err;
    long k = (long)(intptr_t)ud;
    if (status == 0 && reply_is(reply, k))
        atomic_fetch_add(&cb_good, 1);
    atomic_fetch_add(&cb_done, 1);
}

static int
mode_callback(long n)
{
    long sent = 0;
    for (long k = 0; k < n; k++) {
        ei_x_buff a;
        cnode_req *req;
        args_neg(&a, k + 1);
        if (cnode_send_request(node, target, "erlang", "abs", &a, 60000, on_done, (void *)(intptr_t)(k + 1), &req) == 0)
            sent++;
        ei_x_free(&a);
    }
    /* wait with a deadline for every callback */
    for (int i = 0; i < 6000 && atomic_load(&cb_done) < sent; i++)
        usleep(10000);
    printf("callback sent=%ld done=%ld good=%ld\n", sent, atomic_load(&cb_done), atomic_load(&cb_good));
    return atomic_load(&cb_good) == n ? 0 : 1;
}

typedef struct {
    long base, m, good;
} thr;

static void *
thread_main(void *p)
{
    thr *t = p;
    for (long i = 0; i < t->m; i++) {
        ei_x_buff a, r;
        long k = t->base + i;
        args_neg(&a, k);
        ei_x_new(&r);
        cnode_error err = {0};
        if (cnode_call(node, target, "erlang", "abs", &a, 30000, &r, &err) == 0 && reply_is(&r, k))
            t->good++;
        cnode_error_clear(&err);
        ei_x_free(&a);
        ei_x_free(&r);
    }
    return NULL;
}

static int
mode_threads(long nt, long m)
{
    pthread_t tid[64];
    thr ts[64];
    if (nt < 1 || nt > 64)
        return 2;
    for (long i = 0; i < nt; i++) {
        ts[i] = (thr){.base = 1 + i * m, .m = m};
        pthread_create(&tid[i], NULL, thread_main, &ts[i]);
    }
    long good = 0;
    for (long i = 0; i < nt; i++) {
        pthread_join(tid[i], NULL);
        good += ts[i].good;
    }
    printf("threads calls=%ld good=%ld\n", nt * m, good);
    return good == nt * m ? 0 : 1;
}

static int
mode_late(void)
{
    /* timer:sleep(400) with a 100 ms timeout, then a normal call after the
     * late reply has surely arrived: it must get its own answer */
    ei_x_buff a, r;
    ei_x_new_with_version(&a);
    ei_x_encode_list_header(&a, 1);
    ei_x_encode_long(&a, 400);
    ei_x_encode_empty_list(&a);
    ei_x_new(&r);
    cnode_error err = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc1 = cnode_call(node, target, "timer", "sleep", &a, 100, &r, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long took = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    cnode_error_clear(&err);
    ei_x_free(&a);
    ei_x_free(&r);
    /* the late reply is due 300 ms after the timeout; 600 ms (stretched by
     * CNODE_TEST_TIME_SCALE on a slow machine) lets it arrive first */
    const char *sc = getenv("CNODE_TEST_TIME_SCALE");
    double scale = sc ? atof(sc) : 1.0;
    long wait_ms = (long)(600 * (scale > 1.0 ? scale : 1.0));
    struct timespec ts = {wait_ms / 1000, (wait_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    args_neg(&a, 77);
    ei_x_new(&r);
    int rc2 = cnode_call(node, target, "erlang", "abs", &a, 5000, &r, &err);
    int ok = rc1 == CNODE_ETIMEOUT && rc2 == 0 && reply_is(&r, 77);
    cnode_error_clear(&err);
    ei_x_free(&a);
    ei_x_free(&r);
    printf("late timeout=%d next=%d %s after_ms=%ld\n", rc1, rc2, ok ? "ok" : "bad", took);
    return ok ? 0 : 1;
}

static int
mode_killwait(long n)
{
    cnode_req **reqs = calloc((size_t)n, sizeof *reqs);
    if (!reqs)
        return 1;
    long sent = 0, noconn = 0, other = 0;
    for (long k = 0; k < n; k++) {
        ei_x_buff a;
        ei_x_new_with_version(&a);
        ei_x_encode_list_header(&a, 1);
        ei_x_encode_long(&a, 60000);
        ei_x_encode_empty_list(&a);
        if (cnode_send_request(node, target, "timer", "sleep", &a, 90000, NULL, NULL, &reqs[k]) == 0)
            sent++;
        ei_x_free(&a);
    }
    printf("SENT %ld\n", sent);
    fflush(stdout);
    for (long k = 0; k < n; k++) {
        if (!reqs[k])
            continue;
        ei_x_buff r;
        ei_x_new(&r);
        cnode_error err = {0};
        int rc = cnode_receive_response(reqs[k], -1, &r, &err);
        if (rc == CNODE_ENOCONNECTION)
            noconn++;
        else
            other++;
        cnode_error_clear(&err);
        ei_x_free(&r);
    }
    free(reqs);
    printf("killwait sent=%ld noconnection=%ld other=%ld\n", sent, noconn, other);
    return noconn == n ? 0 : 1;
}

static int
mode_multicall(int n, char **nodes)
{
    cnode_result *res = calloc((size_t)n, sizeof *res);
    ei_x_buff a;
    ei_x_new_with_version(&a);
    ei_x_encode_empty_list(&a);
    int rc = cnode_multicall(node, (const char *const *)nodes, (size_t)n, "erlang", "node", &a, 5000, res);
    ei_x_free(&a);
    int good = 0;
    for (int i = 0; i < n; i++) {
        char got[MAXATOMLEN_UTF8] = "";
        int idx = 0, v;
        if (res[i].status == 0 && ei_decode_version(res[i].reply.buff, &idx, &v) == 0 &&
            ei_decode_atom(res[i].reply.buff, &idx, got) == 0 && strcmp(got, nodes[i]) == 0)
            good++;
        printf("multicall %s status=%d %s\n", nodes[i], res[i].status, got);
        cnode_result_free(&res[i]);
    }
    free(res);
    return rc == 0 && good == n ? 0 : 1;
}

int
main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: cnode_calltest COOKIE TARGET MODE ARGS...\n");
        return 2;
    }
    char name[64];
    snprintf(name, sizeof name, "calltest_%d", (int)getpid());
    cnode_node_opts o = {.name = name, .cookie = argv[1]};
    cnode_error err = {0};
    if (cnode_node_new(&o, &node, &err) != 0) {
        fprintf(stderr, "cnode_calltest: %s\n", err.message);
        return 2;
    }
    target = argv[2];
    const char *mode = argv[3];
    int rc = 2;
    if (strcmp(mode, "inflight") == 0 && argc == 5)
        rc = mode_inflight(atol(argv[4]));
    else if (strcmp(mode, "callback") == 0 && argc == 5)
        rc = mode_callback(atol(argv[4]));
    else if (strcmp(mode, "threads") == 0 && argc == 6)
        rc = mode_threads(atol(argv[4]), atol(argv[5]));
    else if (strcmp(mode, "late") == 0)
        rc = mode_late();
    else if (strcmp(mode, "killwait") == 0 && argc == 5)
        rc = mode_killwait(atol(argv[4]));
    else if (strcmp(mode, "multicall") == 0 && argc >= 5)
        rc = mode_multicall(argc - 4, argv + 4);
    fflush(stdout);
    cnode_node_close(node);
    return rc;
}
