/* Small shared helpers: logging, error details, clocks, term buffers. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/internal.h"

const char *
cnode_strerror(int code)
{
    switch (code) {
    case 0:
        return "ok";
#define CNODE__ERRTEXT(name, val, text)                                                                                        \
    case (val):                                                                                                                \
        return text;
        CNODE_ERRNO_MAP(CNODE__ERRTEXT)
#undef CNODE__ERRTEXT
    default:
        return "unknown error";
    }
}

void
cnode_error_clear(cnode_error *err)
{
    if (!err)
        return;
    if (err->reason.buff)
        ei_x_free(&err->reason);
    if (err->stacktrace.buff)
        ei_x_free(&err->stacktrace);
    memset(err, 0, sizeof *err);
}

/* The seeds' vocabulary for a code: EasyRpc's type (classified by what
 * happened, not by the exception module as EasyRpc does) and the
 * rpc_load_balancer code. */
void
cnode__error_classify(cnode_error *err)
{
    switch (err->code) {
    case CNODE_ETIMEOUT:
        err->type = "timeout_error";
        err->lb_code = "request_timeout";
        break;
    case CNODE_ENOCONNECTION:
    case CNODE_EAUTH:
    case CNODE_EEPMD:
    case CNODE_EUNAVAILABLE: /* no live member */
    case CNODE_ENOTSUP:      /* the node cannot take the request (no erpc spawn) */
        err->type = "node_error";
        err->lb_code = "service_unavailable";
        break;
    case CNODE_EEXCEPTION:
        /* the function ran and raised: the node is there (rpc_load_balancer
         * says service_unavailable, which reads as "no member") */
        err->type = "rpc_error";
        err->lb_code = "internal_server_error";
        break;
    case CNODE_ECONFIG:
        err->type = "config_error";
        err->lb_code = NULL;
        break;
    case CNODE_EVALIDATION:
    case CNODE_EINVAL:
    case CNODE_ENOTFOUND:
        err->type = "validation_error";
        err->lb_code = "bad_request";
        break;
    default:
        err->type = "rpc_error";
        err->lb_code = "service_unavailable";
        break;
    }
}

void
cnode__log(cnode_node *node, int level, const char *fmt, ...)
{
    if (!node || !node->opts.log || level > node->opts.log_level)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (cnode__log_defer_node == node) {
        /* the loop holds node->lock: the hook runs after it lets go */
        if (node->nlogq >= CNODE__LOGQ_MAX) {
            node->logq_dropped++;
            return;
        }
        size_t len = n < 0 ? 0 : (size_t)n >= sizeof buf ? sizeof buf - 1 : (size_t)n;
        cnode__logline *l = malloc(sizeof *l + len + 1);
        if (!l) {
            node->logq_dropped++;
            return;
        }
        l->next = NULL;
        l->level = level;
        memcpy(l->msg, buf, len + 1);
        if (node->logq_tail)
            node->logq_tail->next = l;
        else
            node->logq_head = l;
        node->logq_tail = l;
        node->nlogq++;
        return;
    }
    node->opts.log(level, buf, node->opts.user_data);
}

__thread cnode_node *cnode__log_defer_node;

void
cnode__log_flush(cnode_node *node)
{
    cnode__logline *l = node->logq_head;
    unsigned long dropped = node->logq_dropped;
    node->logq_head = node->logq_tail = NULL;
    node->nlogq = 0;
    node->logq_dropped = 0;
    while (l) {
        cnode__logline *nx = l->next;
        node->opts.log(l->level, l->msg, node->opts.user_data);
        free(l);
        l = nx;
    }
    if (dropped)
        cnode__log(node, CNODE_LOG_WARNING, "%lu log lines dropped (more than %d in one loop turn)", dropped,
                   CNODE__LOGQ_MAX);
}

void
cnode__seterr(cnode_error *err, int code, const char *node, const char *fmt, ...)
{
    if (!err)
        return;
    cnode_error_clear(err);
    err->code = code;
    err->arity = -1;
    cnode__error_classify(err);
    snprintf(err->node, sizeof err->node, "%s", node ? node : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

int64_t
cnode__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
cnode__deadline_after(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

int
cnode__past(const struct timespec *ts)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > ts->tv_sec || (now.tv_sec == ts->tv_sec && now.tv_nsec >= ts->tv_nsec);
}

/* A user's term buffer with or without its 131: the bytes after it, walked
 * to prove they hold exactly one term. */
int
cnode__strip_version(const ei_x_buff *b, const char **p, size_t *len)
{
    if (!b || !b->buff || b->index <= 0)
        return CNODE_EINVAL;
    const char *s = b->buff;
    size_t n = (size_t)b->index;
    if ((unsigned char)s[0] == 131) {
        s++;
        n--;
    }
    ptrdiff_t ext = cnode__term_extent(s, n, &cnode__term_limits_default, NULL);
    if (ext <= 0 || (size_t)ext != n)
        return CNODE_EINVAL;
    *p = s;
    *len = n;
    return 0;
}

void
cnode__cond_init(pthread_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

int
cnode__cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *deadline)
{
    if (!deadline) {
        pthread_cond_wait(c, m);
        return 0;
    }
    return pthread_cond_timedwait(c, m, deadline) != 0 && cnode__past(deadline);
}

int
cnode_error_format(const cnode_error *err, char *buf, size_t cap)
{
    if (!err || !buf || cap == 0)
        return CNODE_EINVAL;
    const char *type = err->type ? err->type : "rpc_error";
    int n = snprintf(buf, cap, "[%s] %s", type, err->message[0] ? err->message : cnode_strerror(err->code));
    char details[700] = "";
    size_t d = 0;
#define ADD(...) d += (size_t)snprintf(details + d, d < sizeof details ? sizeof details - d : 0, __VA_ARGS__)
    if (err->node[0])
        ADD("%snode: %s", d ? ", " : "", err->node);
    if (err->exc_class[0])
        ADD("%skind: %s", d ? ", " : "", err->exc_class);
    if (err->node[0] || err->module[0])
        ADD("%sattempt: %d", d ? ", " : "", err->attempt);
    if (err->module[0])
        ADD("%smodule: %s, function: %s", d ? ", " : "", err->module, err->function);
#undef ADD
    if (d && n >= 0 && (size_t)n < cap)
        n += snprintf(buf + n, cap - (size_t)n, " | details: [%s]", details);
    return n < 0 || (size_t)n >= cap ? CNODE_ENOMEM : 0;
}

/* Library threads take no signals: the application's handlers run on its own
 * threads, and a signal never interrupts the loop in the middle of a turn. */
int
cnode__thread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}
