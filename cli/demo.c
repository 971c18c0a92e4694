/* cli/demo.c: the demo service `cnode_demo`, registered by `cnode serve` (part of
 * the CLI, not of the library). */
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cnode.h"

static atomic_long cancelled_sleeps;

static void
demo_echo(cnode_call_ctx *ctx, const cnode_args *a, void *ud)
{
    (void)ud;
    int i = a->idx[0], j = i;
    ei_skip_term(a->buf, &j);
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_append_buf(&x, a->buf + i, j - i);
    cnode_reply(ctx, &x);
    ei_x_free(&x);
}

static void
raise_atom(cnode_call_ctx *ctx, const char *reason)
{
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_atom(&x, reason);
    cnode_raise(ctx, "error", &x);
    ei_x_free(&x);
}

/* A number argument: 1 integer (*i), 2 float (*d), 0 neither. */
static int
number(const cnode_args *a, int k, long long *i, double *d)
{
    int idx = a->idx[k];
    if (ei_decode_longlong(a->buf, &idx, i) == 0)
        return 1;
    idx = a->idx[k];
    return ei_decode_double(a->buf, &idx, d) == 0 ? 2 : 0;
}

static void
demo_add(cnode_call_ctx *ctx, const cnode_args *a, void *ud)
{
    (void)ud;
    long long x = 0, y = 0, r;
    double dx = 0, dy = 0;
    int tx = number(a, 0, &x, &dx), ty = number(a, 1, &y, &dy);
    ei_x_buff out;
    ei_x_new_with_version(&out);
    if (tx == 1 && ty == 1 && !__builtin_add_overflow(x, y, &r)) {
        ei_x_encode_longlong(&out, r);
        cnode_reply(ctx, &out);
    } else if (tx && ty && (tx == 2 || ty == 2)) {
        ei_x_encode_double(&out, (tx == 1 ? (double)x : dx) + (ty == 1 ? (double)y : dy));
        cnode_reply(ctx, &out);
    } else {
        /* non-numbers, or integers past 64 bits (no bignum arithmetic here) */
        raise_atom(ctx, "badarith");
    }
    ei_x_free(&out);
}

static void
demo_sleep(cnode_call_ctx *ctx, const cnode_args *a, void *ud)
{
    (void)ud;
    long ms;
    int i = a->idx[0];
    if (ei_decode_long(a->buf, &i, &ms) != 0 || ms < 0) {
        raise_atom(ctx, "badarg");
        return;
    }
    struct timespec step = {0, 10 * 1000000};
    for (long left = ms; left > 0; left -= 10) {
        if (cnode_call_cancelled(ctx)) {
            atomic_fetch_add(&cancelled_sleeps, 1);
            break;
        }
        if (left < 10)
            step.tv_nsec = left * 1000000;
        nanosleep(&step, NULL);
    }
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_atom(&x, "ok");
    cnode_reply(ctx, &x);
    ei_x_free(&x);
}

static void
demo_fail(cnode_call_ctx *ctx, const cnode_args *a, void *ud)
{
    (void)ud;
    int i = a->idx[0], j = i;
    ei_skip_term(a->buf, &j);
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_append_buf(&x, a->buf + i, j - i);
    cnode_raise(ctx, "error", &x);
    ei_x_free(&x);
}

static void
demo_info(cnode_call_ctx *ctx, const cnode_args *a, void *ud)
{
    (void)ud;
    (void)a;
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_map_header(&x, 3);
    ei_x_encode_atom(&x, "node");
    ei_x_encode_atom(&x, cnode_node_name(cnode_call_node(ctx)));
    ei_x_encode_atom(&x, "pid");
    if (cnode_call_self(ctx))
        ei_x_encode_pid(&x, cnode_call_self(ctx));
    else
        ei_x_encode_atom(&x, "undefined");
    ei_x_encode_atom(&x, "version");
    ei_x_encode_binary(&x, CNODE_VERSION, (long)strlen(CNODE_VERSION));
    cnode_reply(ctx, &x);
    ei_x_free(&x);
}

static void
demo_cancelled(cnode_call_ctx *ctx, const cnode_args *a, void *ud)
{
    (void)ud;
    (void)a;
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_long(&x, atomic_load(&cancelled_sleeps));
    cnode_reply(ctx, &x);
    ei_x_free(&x);
}

/* cnode_node_stats as a map of atoms to integers, for operators and tests. */
static void
demo_stats(cnode_call_ctx *ctx, const cnode_args *a, void *ud)
{
    (void)ud;
    (void)a;
    cnode_stats st;
    cnode_node_stats(cnode_call_node(ctx), &st);
    const struct {
        const char *k;
        uint64_t v;
    } f[] = {{"mailbox_kills", st.mailbox_kills},
             {"send_waits", st.send_waits},
             {"send_timeouts", st.send_timeouts},
             {"out_queue_overflows", st.out_queue_overflows},
             {"served_refused", st.served_refused},
             {"handshakes_evicted", st.handshakes_evicted},
             {"handshakes_refused", st.handshakes_refused},
             {"handshakes_timed_out", st.handshakes_timed_out},
             {"auth_failures", st.auth_failures},
             {"peers_refused", st.peers_refused},
             {"bad_data_disconnects", st.bad_data_disconnects},
             {"accept_pauses", st.accept_pauses},
             {"handshakes_now", st.handshakes_now},
             {"peers_now", st.peers_now},
             {"served_now", st.served_now}};
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_map_header(&x, (long)(sizeof f / sizeof f[0]));
    for (size_t k = 0; k < sizeof f / sizeof f[0]; k++) {
        ei_x_encode_atom(&x, f[k].k);
        ei_x_encode_ulonglong(&x, f[k].v);
    }
    cnode_reply(ctx, &x);
    ei_x_free(&x);
}

int
cli_demo_register(cnode_node *node)
{
    static const struct {
        const char *fun;
        int arity;
        cnode_handler *h;
    } fns[] = {{"echo", 1, demo_echo}, {"add", 2, demo_add},   {"sleep", 1, demo_sleep},
               {"fail", 1, demo_fail}, {"info", 0, demo_info}, {"cancelled", 0, demo_cancelled},
               {"stats", 0, demo_stats}};
    for (size_t k = 0; k < sizeof fns / sizeof fns[0]; k++) {
        int rc = cnode_register_function(node, "cnode_demo", fns[k].fun, fns[k].arity, fns[k].h, NULL);
        if (rc != 0 && rc != CNODE_EEXIST)
            return rc;
    }
    return 0;
}
