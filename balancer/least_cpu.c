/* LeastCpu (seed-behaviour.md A6): readings from /proc/stat, the handler
 * that lets other nodes poll this one, the per-balancer poller thread, and
 * the pick, which only reads cached readings (never the network).
 *
 * A reading is stored per node in the balancer's slot table as a double's
 * bits and its monotonic time, both atomics: the poller writes, picks read,
 * no lock. A pick gives a member its reading while it is fresh (now - at <=
 * ttl), else 50.0, keeps every member within threshold of the lowest and
 * chooses one of those uniformly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "balancer/internal.h"
#include "cnode/internal.h"

#define DEFAULT_POLL_MS 5000
#define DEFAULT_TTL_MS 10000
#define DEFAULT_THRESHOLD 5.0
#define MISSING 50.0
#define REMOTE_TIMEOUT_MS 2000
#define STACK_VALUES 512

static const char default_cpu_mod[] = "Elixir.RpcLoadBalancer.LoadBalancer.NodeCpuCache";
static const char default_cpu_fun[] = "get_local_cpu";

/* ---- this machine's utilisation ---- */

static pthread_mutex_t util_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long last_busy, last_total;
static int have_last;
static double last_pct;

int
cnode_cpu_util(double *pct)
{
    if (!pct)
        return CNODE_EINVAL;
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return CNODE_ESYS;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 4)
        return CNODE_ESYS;
    /* user nice system idle iowait irq softirq steal; guest time is already in user */
    unsigned long long total = 0, idle = v[3] + v[4];
    for (int i = 0; i < 8; i++)
        total += v[i];
    unsigned long long busy = total - idle;
    pthread_mutex_lock(&util_lock);
    double p;
    if (!have_last)
        p = total ? 100.0 * (double)busy / (double)total : 0.0; /* since boot */
    else if (total > last_total && busy >= last_busy)
        p = 100.0 * (double)(busy - last_busy) / (double)(total - last_total);
    else
        p = last_pct; /* less than one tick since the last call */
    if (!have_last || total > last_total) {
        last_busy = busy;
        last_total = total;
    }
    have_last = 1;
    last_pct = p;
    pthread_mutex_unlock(&util_lock);
    *pct = p < 0 ? 0 : p > 100 ? 100 : p;
    return 0;
}

static void
cpu_handler(cnode_call_ctx *ctx, const cnode_args *args, void *user_data)
{
    (void)args;
    (void)user_data;
    double pct;
    ei_x_buff x;
    if (ei_x_new_with_version(&x) != 0)
        return;
    if (cnode_cpu_util(&pct) == 0) {
        ei_x_encode_double(&x, pct);
        cnode_reply(ctx, &x);
    } else {
        ei_x_encode_atom(&x, "no_proc_stat");
        cnode_raise(ctx, "error", &x); /* the poller then reads this node as 50.0 */
    }
    ei_x_free(&x);
}

int
cnode_balancer_serve_cpu(cnode_node *node, const char *mod, const char *fun, int arity)
{
    char m[MAXATOMLEN_UTF8];
    if (!node || arity < 0 || arity > 255 || cnode_module_atom(mod ? mod : default_cpu_mod, m, sizeof m) != 0)
        return CNODE_EINVAL;
    return cnode_register_function(node, m, fun ? fun : default_cpu_fun, arity, cpu_handler, NULL);
}

/* ---- readings ---- */

static void
store(cnode_balancer *b, const char *node, double pct, int64_t at)
{
    cnode__nslot *s = cnode__lb_slot(b, node, 1);
    if (!s)
        return;
    uint64_t bits;
    memcpy(&bits, &pct, sizeof bits);
    atomic_store(&s->cpu_bits, bits);
    atomic_store(&s->cpu_at_ms, at ? at : 1);
}

static double
slot_value(const cnode_balancer *b, cnode__nslot *s, int64_t now)
{
    if (!s)
        return MISSING;
    int64_t at = atomic_load(&s->cpu_at_ms);
    if (at == 0 || now - at > b->ttl_ms)
        return MISSING;
    uint64_t bits = atomic_load(&s->cpu_bits);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static double
value(cnode_balancer *b, const char *node, int64_t now)
{
    return slot_value(b, cnode__lb_slot(b, node, 0), now);
}

/* Candidate i's value: through its slot when the view has it. */
static double
cand_value(cnode_balancer *b, const cnode__lb_cands *c, size_t i, int64_t now)
{
    return c->slots ? slot_value(b, c->slots[i], now) : value(b, c->names[i], now);
}

int
cnode_balancer_cpu_set(cnode_balancer *b, const char *node, double pct)
{
    if (!b || !node || !*node || b->algo != CNODE_LB_LEAST_CPU || isnan(pct))
        return CNODE_EINVAL;
    store(b, node, pct, cnode__lb_now_ms());
    return 0;
}

double
cnode_balancer_cpu_get(cnode_balancer *b, const char *node)
{
    if (!b || !node)
        return MISSING;
    return value(b, node, cnode__lb_now_ms());
}

long
cnode__lb_pick_cpu(cnode_balancer *b, const cnode__lb_cands *c)
{
    size_t n = c->n;
    if (n == 1)
        return 0;
    int64_t now = cnode__lb_now_ms();
    double stack[STACK_VALUES], *v = n <= STACK_VALUES ? stack : NULL;
    double min = INFINITY;
    for (size_t i = 0; i < n; i++) {
        double x = cand_value(b, c, i, now);
        if (v)
            v[i] = x;
        if (x < min)
            min = x;
    }
    double limit = min + b->threshold;
    size_t eligible = 0;
    for (size_t i = 0; i < n; i++)
        eligible += (v ? v[i] : cand_value(b, c, i, now)) <= limit;
    if (eligible == 0)
        return (long)cnode__lb_rand_below(n); /* a reading changed between the passes */
    size_t k = cnode__lb_rand_below(eligible);
    for (size_t i = 0; i < n; i++)
        if ((v ? v[i] : cand_value(b, c, i, now)) <= limit && k-- == 0)
            return (long)i;
    return 0;
}

/* A number term (with 131) as a double. */
static int
number_of(const ei_x_buff *x, double *out)
{
    int idx = 0, ver, type, size;
    if (!x->buff || ei_decode_version(x->buff, &idx, &ver) != 0 || ei_get_type(x->buff, &idx, &type, &size) != 0)
        return -1;
    if (type == ERL_FLOAT_EXT || type == NEW_FLOAT_EXT)
        return ei_decode_double(x->buff, &idx, out);
    long long l;
    if (ei_decode_longlong(x->buff, &idx, &l) != 0)
        return -1;
    *out = (double)l;
    return 0;
}

int
cnode_balancer_cpu_poll(cnode_balancer *b)
{
    if (!b || b->algo != CNODE_LB_LEAST_CPU)
        return CNODE_EINVAL;
    const char *self = b->node ? cnode_node_name(b->node) : NULL;
    if (self) {
        double pct;
        int rc = b->sampler ? b->sampler(&pct, b->sampler_data) : cnode_cpu_util(&pct);
        store(b, self, rc == 0 && !isnan(pct) ? pct : MISSING, cnode__lb_now_ms());
    }
    if (!b->node)
        return 0;
    char **names;
    size_t n;
    int rc = cnode__lb_source_nodes(b, &names, &n, NULL);
    if (rc != 0)
        return rc;
    const char **targets = calloc(n ? n : 1, sizeof *targets);
    cnode_result *res = calloc(n ? n : 1, sizeof *res);
    size_t nt = 0;
    if (!targets || !res) {
        rc = CNODE_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (!self || strcmp(names[i], self) != 0)
            targets[nt++] = names[i];
    if (nt && cnode_multicall(b->node, targets, nt, b->cpu_mod, b->cpu_fun, &b->cpu_args, REMOTE_TIMEOUT_MS, res) == 0) {
        int64_t now = cnode__lb_now_ms();
        for (size_t i = 0; i < nt; i++) {
            double pct;
            if (res[i].status == 0 && number_of(&res[i].reply, &pct) == 0 && !isnan(pct))
                store(b, targets[i], pct, now);
            cnode_result_free(&res[i]);
        }
    }
out:
    free(targets);
    free(res);
    cnode_strv_free(names, n);
    return rc;
}

/* ---- the poller ---- */

static void
deadline_in(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *
poller_main(void *arg)
{
    cnode_balancer *b = arg;
    long wait = b->jitter_ms ? (long)cnode__lb_rand_below((size_t)b->jitter_ms + 1) : 0;
    pthread_mutex_lock(&b->poll_lock);
    while (!b->poll_stop) {
        struct timespec ts;
        deadline_in(&ts, wait);
        while (!b->poll_stop && pthread_cond_timedwait(&b->poll_cond, &b->poll_lock, &ts) == 0)
            ;
        if (b->poll_stop)
            break;
        pthread_mutex_unlock(&b->poll_lock);
        cnode_balancer_cpu_poll(b);
        pthread_mutex_lock(&b->poll_lock);
        wait = b->poll_ms;
    }
    pthread_mutex_unlock(&b->poll_lock);
    return NULL;
}

static int
copy_args(const ei_x_buff *src, ei_x_buff *dst)
{
    if (ei_x_new_with_version(dst) != 0)
        return CNODE_ENOMEM;
    if (!src)
        return ei_x_encode_empty_list(dst) == 0 ? 0 : CNODE_ENOMEM;
    const char *p = src->buff;
    int len = src->index;
    if (!p || len <= 0)
        return CNODE_EINVAL;
    if ((unsigned char)p[0] == 131) {
        p++;
        len--;
    }
    if (len <= 0 || ((unsigned char)p[0] != 106 && (unsigned char)p[0] != 107 && (unsigned char)p[0] != 108))
        return CNODE_EINVAL;
    return ei_x_append_buf(dst, p, len) == 0 ? 0 : CNODE_ENOMEM;
}

int
cnode__lb_cpu_start(cnode_balancer *b, const cnode_balancer_opts *o, cnode_error *err)
{
    if (o->cpu_threshold < 0 || isnan(o->cpu_threshold))
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid cpu_threshold — expected a non-negative number, got: %g",
                              o->cpu_threshold);
    if (o->cpu_cache_ttl_ms < 0)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid cpu_cache_ttl — expected non-negative integer (ms), got: %ld",
                              o->cpu_cache_ttl_ms);
    if (o->poll_startup_jitter_ms < 0)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid poll_startup_jitter — expected non-negative integer (ms), got: %ld",
                              o->poll_startup_jitter_ms);
    if (!o->cpu_module != !o->cpu_function)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid cpu MFA — expected both cpu_module and cpu_function, got: {%s, %s}",
                              o->cpu_module ? o->cpu_module : "nil", o->cpu_function ? o->cpu_function : "nil");
    b->poll_ms = o->poll_interval_ms ? o->poll_interval_ms : DEFAULT_POLL_MS;
    b->jitter_ms = o->poll_startup_jitter_ms;
    b->ttl_ms = o->cpu_cache_ttl_ms ? o->cpu_cache_ttl_ms : DEFAULT_TTL_MS;
    b->threshold = o->cpu_threshold ? o->cpu_threshold : DEFAULT_THRESHOLD;
    if (cnode_module_atom(o->cpu_module ? o->cpu_module : default_cpu_mod, b->cpu_mod, sizeof b->cpu_mod) != 0 ||
        strlen(o->cpu_function ? o->cpu_function : default_cpu_fun) >= sizeof b->cpu_fun)
        return cnode__lb_fail(err, CNODE_ECONFIG, "Invalid cpu MFA — module or function name too long");
    snprintf(b->cpu_fun, sizeof b->cpu_fun, "%s", o->cpu_function ? o->cpu_function : default_cpu_fun);
    int rc = copy_args(o->cpu_args, &b->cpu_args);
    if (rc)
        return cnode__lb_fail(err, rc == CNODE_ENOMEM ? rc : CNODE_ECONFIG, "Invalid cpu_args — expected an encoded list");
    b->sampler = o->cpu_sampler;
    b->sampler_data = o->cpu_sampler_data;
    if (o->poll_interval_ms < 0 || !b->node)
        return 0;
    pthread_mutex_init(&b->poll_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->poll_cond, &ca);
    pthread_condattr_destroy(&ca);
    if (cnode__thread_create(&b->poller, poller_main, b) != 0) {
        pthread_cond_destroy(&b->poll_cond);
        pthread_mutex_destroy(&b->poll_lock);
        return cnode__lb_fail(err, CNODE_ESYS, "cannot start the cpu poller thread");
    }
    b->has_poller = 1;
    return 0;
}

void
cnode__lb_cpu_stop(cnode_balancer *b)
{
    if (!b->has_poller)
        return;
    pthread_mutex_lock(&b->poll_lock);
    b->poll_stop = 1;
    pthread_cond_broadcast(&b->poll_cond);
    pthread_mutex_unlock(&b->poll_lock);
    pthread_join(b->poller, NULL);
    pthread_cond_destroy(&b->poll_cond);
    pthread_mutex_destroy(&b->poll_lock);
    b->has_poller = 0;
}
