/* The erlang built-ins BEAM code calls on any member of a group for identity and health,
 * answered as a hidden BEAM node answers them: node/0, nodes/0,1, system_time/0,1,
 * monotonic_time/0,1 and is_alive/0, with badarg where BEAM raises it. The server finds
 * them after the registered functions (server.c, find_callable), so they run like any
 * served call, for erpc and rex callers alike; every other unregistered function stays undef.
 *
 * Facts carried over from OTP 25 (checked against a hidden BEAM node):
 * - On a hidden node every connection is hidden: nodes() and nodes(visible) are [],
 *   nodes(hidden) and nodes(connected) are the connected nodes. nodes(List) is the union of
 *   its kinds, each node once, connected nodes before this one; nodes(known) here is the
 *   connected nodes and this one (BEAM also lists nodes it once knew). A kind that is not
 *   visible, hidden, connected, this or known, or a list that is not proper, is badarg.
 * - The native and perf_counter units are nanoseconds (Linux). A unit is second, millisecond,
 *   microsecond, nanosecond, native, perf_counter, the deprecated seconds, milli_seconds,
 *   micro_seconds, nano_seconds, or a positive integer of parts per second (any size: the
 *   result may be a bignum); anything else is badarg. Conversion rounds down (towards minus
 *   infinity), as erlang:convert_time_unit/3 does.
 * - Monotonic time is the CLOCK_MONOTONIC reading shifted down by 2^59 ns, so that it is
 *   negative like BEAM's for the first 18 years of uptime; only differences mean anything. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode/builtins.h"

#define NS_PER_S 1000000000u
#define MONO_SHIFT (INT64_C(1) << 59)
#define UNIT_MAX_BYTES 4096 /* digits of an integer unit; more is refused (badarg), bounding the work */

static void
raise_badarg(cnode_call_ctx *ctx)
{
    ei_x_buff x;
    if (ei_x_new_with_version(&x) != 0)
        return; /* no answer: the caller sees `ok`; only out of memory gets here */
    ei_x_encode_atom(&x, "badarg");
    cnode_raise(ctx, "error", &x);
    ei_x_free(&x);
}

static void
reply_atom(cnode_call_ctx *ctx, const char *atom)
{
    ei_x_buff x;
    if (ei_x_new_with_version(&x) != 0)
        return;
    ei_x_encode_atom(&x, atom);
    cnode_reply(ctx, &x);
    ei_x_free(&x);
}

/* ---- erlang:node/0, is_alive/0, nodes/0,1 ------------------------------------------------------ */

static void
bi_node(cnode_call_ctx *ctx, const cnode_args *args, void *ud)
{
    (void)args, (void)ud;
    reply_atom(ctx, cnode_node_name(cnode_call_node(ctx)));
}

static void
bi_is_alive(cnode_call_ctx *ctx, const cnode_args *args, void *ud)
{
    (void)args, (void)ud;
    reply_atom(ctx, "true");
}

enum { K_CONNECTED = 1, K_THIS = 2 }; /* visible adds nothing on a hidden node */

/* One kind's bits, or -1 for a term that is no kind. */
static int
kind_of(const char *buf, int *idx)
{
    char a[MAXATOMLEN_UTF8];
    if (ei_decode_atom(buf, idx, a) < 0)
        return -1;
    if (!strcmp(a, "visible"))
        return 0;
    if (!strcmp(a, "hidden") || !strcmp(a, "connected"))
        return K_CONNECTED;
    if (!strcmp(a, "this"))
        return K_THIS;
    if (!strcmp(a, "known"))
        return K_CONNECTED | K_THIS;
    return -1;
}

static void
reply_nodes(cnode_call_ctx *ctx, int kinds)
{
    cnode_node *node = cnode_call_node(ctx);
    char **names = NULL;
    size_t n = 0;
    if ((kinds & K_CONNECTED) && cnode_nodes(node, &names, &n) != 0)
        n = 0, names = NULL;
    ei_x_buff x;
    if (ei_x_new_with_version(&x) == 0) {
        size_t len = n + ((kinds & K_THIS) ? 1 : 0);
        if (len)
            ei_x_encode_list_header(&x, (long)len);
        for (size_t i = 0; i < n; i++)
            ei_x_encode_atom(&x, names[i]);
        if (kinds & K_THIS)
            ei_x_encode_atom(&x, cnode_node_name(node));
        ei_x_encode_empty_list(&x);
        cnode_reply(ctx, &x);
        ei_x_free(&x);
    }
    cnode_strv_free(names, n);
}

static void
bi_nodes0(cnode_call_ctx *ctx, const cnode_args *args, void *ud)
{
    (void)args, (void)ud;
    reply_nodes(ctx, 0);
}

static void
bi_nodes1(cnode_call_ctx *ctx, const cnode_args *args, void *ud)
{
    (void)ud;
    int idx = args->idx[0], type, size, kinds = 0;
    if (ei_get_type(args->buf, &idx, &type, &size) < 0)
        return raise_badarg(ctx);
    if (type == ERL_ATOM_EXT || type == ERL_SMALL_ATOM_EXT || type == ERL_ATOM_UTF8_EXT || type == ERL_SMALL_ATOM_UTF8_EXT) {
        kinds = kind_of(args->buf, &idx);
    } else if (type == ERL_LIST_EXT || type == ERL_NIL_EXT) {
        int arity;
        if (ei_decode_list_header(args->buf, &idx, &arity) < 0)
            return raise_badarg(ctx);
        for (int i = 0; i < arity && kinds >= 0; i++) {
            int k = kind_of(args->buf, &idx);
            kinds = k < 0 ? -1 : kinds | k;
        }
        if (kinds >= 0 && arity > 0 && ei_decode_list_header(args->buf, &idx, &arity) < 0)
            kinds = -1; /* an improper tail */
    } else {
        kinds = -1;
    }
    if (kinds < 0)
        return raise_badarg(ctx);
    reply_nodes(ctx, kinds);
}

/* ---- erlang:system_time/0,1, monotonic_time/0,1 ---------------------------------------------- */

/* A non-negative integer as little-endian bytes. */
typedef struct {
    uint8_t *b;
    size_t n;
} mag;

static int
mag_from_u64(mag *m, uint64_t v)
{
    if (!(m->b = calloc(8, 1)))
        return -1;
    for (m->n = 0; m->n < 8; m->n++, v >>= 8)
        m->b[m->n] = (uint8_t)(v & 0xff);
    return 0;
}

/* The unit argument as parts per second; 0, or -1 when it is no unit (badarg). */
static int
unit_of(const char *buf, int idx, mag *unit)
{
    int type, size;
    unit->b = NULL;
    if (ei_get_type(buf, &idx, &type, &size) < 0)
        return -1;
    if (type == ERL_SMALL_INTEGER_EXT || type == ERL_INTEGER_EXT) {
        long v;
        if (ei_decode_long(buf, &idx, &v) < 0 || v <= 0)
            return -1;
        return mag_from_u64(unit, (uint64_t)v);
    }
    if (type == ERL_SMALL_BIG_EXT || type == ERL_LARGE_BIG_EXT) {
        /* tag, length (1 or 4 bytes), sign, digits little-endian; the server has checked
         * that the whole argument list decodes, so the digits are there */
        const uint8_t *p = (const uint8_t *)buf + idx + 1;
        size_t n = type == ERL_SMALL_BIG_EXT ? p[0] : ((size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3]);
        p += type == ERL_SMALL_BIG_EXT ? 1 : 4;
        if (*p++ != 0 || n == 0 || n > UNIT_MAX_BYTES)
            return -1; /* negative, or beyond what we convert */
        if (!(unit->b = malloc(n)))
            return -1;
        memcpy(unit->b, p, n);
        unit->n = n;
        return 0;
    }
    char a[MAXATOMLEN_UTF8];
    if (ei_decode_atom(buf, &idx, a) < 0)
        return -1;
    static const struct {
        const char *name;
        uint64_t per_second;
    } units[] = {
        {"second", 1},           {"millisecond", 1000},     {"microsecond", 1000000},  {"nanosecond", NS_PER_S},
        {"native", NS_PER_S},    {"perf_counter", NS_PER_S}, {"seconds", 1},           {"milli_seconds", 1000},
        {"micro_seconds", 1000000}, {"nano_seconds", NS_PER_S},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(a, units[i].name))
            return mag_from_u64(unit, units[i].per_second);
    return -1;
}

/* Appends t (nanoseconds, signed) converted to unit: floor(t * unit / 10^9), an integer of
 * any size. 0 or -1 (out of memory). */
static int
encode_converted(ei_x_buff *x, int64_t t, const mag *unit)
{
    int neg = t < 0;
    uint64_t a = neg ? (uint64_t)0 - (uint64_t)t : (uint64_t)t;
    size_t pn = unit->n + 9;
    uint8_t *p = calloc(pn, 1);
    if (!p)
        return -1;
    /* p = unit * a, a byte of a at a time */
    for (size_t j = 0; j < 8; j++) {
        uint32_t aj = (uint32_t)(a >> (8 * j)) & 0xff, carry = 0;
        if (!aj)
            continue;
        size_t i;
        for (i = 0; i < unit->n; i++) {
            uint32_t v = p[i + j] + unit->b[i] * aj + carry;
            p[i + j] = (uint8_t)v;
            carry = v >> 8;
        }
        for (i += j; carry && i < pn; i++) {
            uint32_t v = p[i] + carry;
            p[i] = (uint8_t)v;
            carry = v >> 8;
        }
    }
    /* p /= 10^9, from the top byte down */
    uint64_t r = 0;
    for (size_t i = pn; i-- > 0;) {
        r = r * 256 + p[i];
        p[i] = (uint8_t)(r / NS_PER_S);
        r %= NS_PER_S;
    }
    if (neg && r) /* towards minus infinity: one more in magnitude */
        for (size_t i = 0; i < pn && ++p[i] == 0; i++)
            ;
    size_t n = pn;
    while (n > 0 && p[n - 1] == 0)
        n--;
    int rc = 0;
    if (n <= 8 && !(n == 8 && (p[7] & 0x80))) {
        uint64_t v = 0;
        for (size_t i = n; i-- > 0;)
            v = v << 8 | p[i];
        rc = ei_x_encode_longlong(x, neg ? -(long long)v : (long long)v);
    } else {
        /* a bignum, written as term_to_binary writes one */
        uint8_t h[6];
        size_t hl;
        if (n <= 255) {
            h[0] = ERL_SMALL_BIG_EXT, h[1] = (uint8_t)n, h[2] = (uint8_t)neg, hl = 3;
        } else {
            h[0] = ERL_LARGE_BIG_EXT, h[1] = (uint8_t)(n >> 24), h[2] = (uint8_t)(n >> 16), h[3] = (uint8_t)(n >> 8);
            h[4] = (uint8_t)n, h[5] = (uint8_t)neg, hl = 6;
        }
        rc = ei_x_append_buf(x, (const char *)h, (int)hl) < 0 || ei_x_append_buf(x, (const char *)p, (int)n) < 0 ? -1 : 0;
    }
    free(p);
    return rc;
}

static int64_t
now_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static void
reply_time(cnode_call_ctx *ctx, const cnode_args *args, int64_t t)
{
    mag unit;
    if (args->n == 0 ? mag_from_u64(&unit, NS_PER_S) != 0 : unit_of(args->buf, args->idx[0], &unit) != 0) {
        free(unit.b);
        return raise_badarg(ctx);
    }
    ei_x_buff x;
    if (ei_x_new_with_version(&x) == 0) {
        if (encode_converted(&x, t, &unit) == 0)
            cnode_reply(ctx, &x);
        ei_x_free(&x);
    }
    free(unit.b);
}

static void
bi_system_time(cnode_call_ctx *ctx, const cnode_args *args, void *ud)
{
    (void)ud;
    reply_time(ctx, args, now_ns(CLOCK_REALTIME));
}

static void
bi_monotonic_time(cnode_call_ctx *ctx, const cnode_args *args, void *ud)
{
    (void)ud;
    reply_time(ctx, args, now_ns(CLOCK_MONOTONIC) - MONO_SHIFT);
}

/* ---- lookup ----------------------------------------------------------------------------------------- */

cnode_handler *
cnode__builtin(const char *mod, const char *fun, int arity)
{
    static const struct {
        const char *fun;
        int arity;
        cnode_handler *h;
    } table[] = {
        {"node", 0, bi_node},
        {"nodes", 0, bi_nodes0},
        {"nodes", 1, bi_nodes1},
        {"system_time", 0, bi_system_time},
        {"system_time", 1, bi_system_time},
        {"monotonic_time", 0, bi_monotonic_time},
        {"monotonic_time", 1, bi_monotonic_time},
        {"is_alive", 0, bi_is_alive},
    };
    if (!mod || !fun || strcmp(mod, "erlang") != 0)
        return NULL;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].arity == arity && !strcmp(table[i].fun, fun))
            return table[i].h;
    return NULL;
}
