/* The erpc client: erpc:call/cast/send_request/multicall semantics over
 * spawn requests (protocol.md §5). Requests live in a table keyed by their
 * request id (which is also the monitor reference of the spawned process) and
 * in a deadline heap; all of that is under node->lock. Completions wake their
 * own waiter (one semaphore per request, posted after the completer lets go of
 * node->lock when it can) or are
 * handed to their callback after the loop lets go of node->lock. */
#include <errno.h>
#include <sched.h>
#include <semaphore.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/internal.h"
#include "cnode/terms.h"
#include "cnode_term.h"

enum { RQ_PENDING_CONN, RQ_SENT, RQ_SPAWNED, RQ_DONE };

struct cnode_req {
    sem_t wake; /* first: a pooled request keeps it initialised (reset clears what follows); its caller
                 * sleeps here (a semaphore: woken, it takes node->lock as any thread would) */
    cnode_node *node;
    struct cnode_req *hnext; /* table chain */
    struct cnode_req *dnext; /* callbacks to fire */
    size_t heap_idx;
    erlang_ref reqid;
    cnode__peer *peer;
    int state;
    int in_table;
    erlang_pid spawned;
    int status;
    ei_x_buff reply;
    cnode_error err;
    cnode_req_cb *cb;
    void *ud;
    struct timespec deadline;
    char mod[MAXATOMLEN], fun[MAXATOMLEN];
    int arity;
    char *frame; /* the spawn request, kept until it is written */
    size_t frame_len;
    unsigned timeout_ms;
    char res_ref[64]; /* Res as encoded, to match the reply */
    size_t res_len;
    cnode__conn *lead; /* cnode_call: the read token, taken before the request went out */
    ei_x_buff *out;    /* cnode_call: the caller's buffer, which a result is decoded straight into */
    int delivered;     /* ... and was */
    uint64_t wire_mark; /* held back for batching: on the wire once the peer's q_out reaches this (out.c) */
    int sleeping;       /* its caller sleeps on wake (node->lock) */
    int64_t greedy_until_ns; /* a reading caller may wait for others' spawn replies until then (req_want) */
    _Atomic int pins;   /* completers that will still post wake after letting go of node->lock */
    struct cnode_req *wnext; /* a completer's list of those */
};

/* Set by a completer that wakes waiters only after it let go of node->lock (the loop's turn, a
 * reading caller): a waiter woken under the lock would first block on it. */
static __thread int defer_wakes;
static __thread cnode_req *wake_head;

typedef struct cnode__erpc {
    cnode_proc *caller; /* the From of every spawn request */
    cnode_req **buckets;
    size_t nbuckets, count;
    cnode_req **heap;
    size_t nheap, capheap;
    cnode_req *done_head, *done_tail;
} erpc_state;

#define NO_HEAP ((size_t)-1)

/* ---- table ------------------------------------------------------------------------------ */

static size_t
ref_hash(const erlang_ref *r, size_t n)
{
    uint64_t h = (uint64_t)r->n[0] * 0x9E3779B97F4A7C15ull ^ (uint64_t)r->n[1] * 0xC2B2AE3D27D4EB4Full;
    return (size_t)(h >> 17) & (n - 1);
}

static int
table_grow(erpc_state *st)
{
    size_t nn = st->nbuckets ? st->nbuckets * 2 : 1024;
    cnode_req **nb = calloc(nn, sizeof *nb);
    if (!nb)
        return -1;
    for (size_t i = 0; i < st->nbuckets; i++) {
        cnode_req *r = st->buckets[i];
        while (r) {
            cnode_req *nx = r->hnext;
            size_t h = ref_hash(&r->reqid, nn);
            r->hnext = nb[h];
            nb[h] = r;
            r = nx;
        }
    }
    free(st->buckets);
    st->buckets = nb;
    st->nbuckets = nn;
    return 0;
}

static int
table_put(erpc_state *st, cnode_req *r)
{
    if (st->count + 1 > st->nbuckets && table_grow(st) != 0)
        return -1;
    size_t h = ref_hash(&r->reqid, st->nbuckets);
    r->hnext = st->buckets[h];
    st->buckets[h] = r;
    st->count++;
    r->in_table = 1;
    if (r->peer) {
        r->peer->inflight++;
        r->peer->loop_waits += r->cb != NULL;
    }
    return 0;
}

static cnode_req *
table_get(erpc_state *st, const erlang_ref *ref)
{
    if (!st->nbuckets)
        return NULL;
    for (cnode_req *r = st->buckets[ref_hash(ref, st->nbuckets)]; r; r = r->hnext)
        if (cnode__ref_eq(&r->reqid, ref))
            return r;
    return NULL;
}

static void
table_del(erpc_state *st, cnode_req *r)
{
    if (!r->in_table)
        return;
    if (r->peer) {
        r->peer->inflight--;
        r->peer->loop_waits -= r->cb != NULL;
    }
    for (cnode_req **pp = &st->buckets[ref_hash(&r->reqid, st->nbuckets)]; *pp; pp = &(*pp)->hnext)
        if (*pp == r) {
            *pp = r->hnext;
            st->count--;
            break;
        }
    r->in_table = 0;
}

/* ---- deadline heap ------------------------------------------------------------------------ */

static int
earlier(const cnode_req *a, const cnode_req *b)
{
    return a->deadline.tv_sec < b->deadline.tv_sec ||
           (a->deadline.tv_sec == b->deadline.tv_sec && a->deadline.tv_nsec < b->deadline.tv_nsec);
}

static int
earlier_ts(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void
heap_swap(erpc_state *st, size_t i, size_t j)
{
    cnode_req *t = st->heap[i];
    st->heap[i] = st->heap[j];
    st->heap[j] = t;
    st->heap[i]->heap_idx = i;
    st->heap[j]->heap_idx = j;
}

static void
heap_up(erpc_state *st, size_t i)
{
    while (i > 0 && earlier(st->heap[i], st->heap[(i - 1) / 2])) {
        heap_swap(st, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void
heap_down(erpc_state *st, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < st->nheap && earlier(st->heap[l], st->heap[m]))
            m = l;
        if (r < st->nheap && earlier(st->heap[r], st->heap[m]))
            m = r;
        if (m == i)
            return;
        heap_swap(st, i, m);
        i = m;
    }
}

static int
heap_push(erpc_state *st, cnode_req *r)
{
    if (st->nheap == st->capheap) {
        size_t nc = st->capheap ? st->capheap * 2 : 1024;
        cnode_req **nh = realloc(st->heap, nc * sizeof *nh);
        if (!nh)
            return -1;
        st->heap = nh;
        st->capheap = nc;
    }
    r->heap_idx = st->nheap;
    st->heap[st->nheap++] = r;
    heap_up(st, r->heap_idx);
    return 0;
}

static void
heap_del(erpc_state *st, cnode_req *r)
{
    size_t i = r->heap_idx;
    if (i == NO_HEAP)
        return;
    r->heap_idx = NO_HEAP;
    st->nheap--;
    if (i == st->nheap)
        return;
    st->heap[i] = st->heap[st->nheap];
    st->heap[i]->heap_idx = i;
    heap_down(st, i);
    heap_up(st, i);
}

/* ---- completion ------------------------------------------------------------------------------ */

/* ---- per thread: encoding buffers and a spare request ------------------------------------------ */

typedef struct {
    ei_x_buff pl, x;  /* a spawn request is encoded here (reused: no allocation per call) */
    int busy;         /* in use by a start() further up this thread's stack (poll mode re-enters) */
    cnode_req *spare; /* a pool of one: a thread that calls in a loop reuses its request */
} erpc_tls;

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void
req_destroy(cnode_req *r)
{
    sem_destroy(&r->wake);
    free(r);
}

static void
tls_free(void *p)
{
    erpc_tls *t = p;
    if (t->pl.buff)
        ei_x_free(&t->pl);
    if (t->x.buff)
        ei_x_free(&t->x);
    if (t->spare)
        req_destroy(t->spare);
    free(t);
}

static void
tls_init(void)
{
    if (pthread_key_create(&tls_key, tls_free) != 0)
        tls_key = (pthread_key_t)-1;
}

static erpc_tls *
tls_get(void)
{
    pthread_once(&tls_once, tls_init);
    if (tls_key == (pthread_key_t)-1)
        return NULL;
    erpc_tls *t = pthread_getspecific(tls_key);
    if (!t && (t = calloc(1, sizeof *t)) && pthread_setspecific(tls_key, t) != 0) {
        free(t);
        t = NULL;
    }
    return t;
}

static cnode_req *
req_alloc(void)
{
    erpc_tls *t = tls_get();
    cnode_req *r = t ? t->spare : NULL;
    if (r) {
        t->spare = NULL;
        memset((char *)r + offsetof(cnode_req, node), 0, sizeof *r - offsetof(cnode_req, node));
        return r;
    }
    if (!(r = calloc(1, sizeof *r)))
        return NULL;
    sem_init(&r->wake, 0, 0);
    return r;
}

static void
req_free(cnode_req *r)
{
    cnode__peer_release(r->peer); /* held from start() */
    if (r->reply.buff)
        ei_x_free(&r->reply);
    cnode_error_clear(&r->err);
    free(r->frame);
    erpc_tls *t = tls_get();
    if (t && !t->spare)
        t->spare = r;
    else
        req_destroy(r);
}

static void
set_details(cnode_req *r)
{
    snprintf(r->err.node, sizeof r->err.node, "%s", r->peer ? r->peer->name : "");
    snprintf(r->err.module, sizeof r->err.module, "%s", r->mod);
    snprintf(r->err.function, sizeof r->err.function, "%s", r->fun);
    r->err.arity = r->arity;
}

/* node->lock held. A caller asleep on r needs whoever reads next to be the loop if no caller reads. */
static void
set_sleeping(cnode_req *r, int on)
{
    if (r->sleeping == on)
        return;
    r->sleeping = on;
    if (r->peer)
        r->peer->loop_waits += on ? 1u : (unsigned)-1;
}

/* Moves r to state s (node->lock held), counting the peer's requests that wait for a spawn reply. */
static void
set_state(cnode_req *r, int s)
{
    if (r->state == RQ_SENT && s != RQ_SENT)
        r->peer->unspawned--;
    else if (r->state != RQ_SENT && s == RQ_SENT)
        r->peer->unspawned++;
    r->state = s;
}

/* Completes r (node->lock held). Abandoning a spawned call demonitors it, as
 * erpc does; the remote process is never killed. */
static void
complete(cnode_node *node, cnode_req *r, int status)
{
    erpc_state *st = node->erpc;
    if (r->state == RQ_DONE)
        return;
    if (status == CNODE_ETIMEOUT && r->state == RQ_SPAWNED && r->peer && r->peer->up) {
        cnode__ctl c = {.op = CNODE__OP_DEMONITOR_P, .ref = r->reqid};
        c.from.pid = *cnode_proc_pid(st->caller);
        c.to.pid = r->spawned;
        cnode__send_ctl(node, r->peer, &c, NULL, 0);
    }
    set_state(r, RQ_DONE);
    r->status = status;
    free(r->frame);
    r->frame = NULL;
    if (status != 0) {
        if (status != CNODE_EEXCEPTION) {
            cnode_error keep = r->err;
            memset(&r->err, 0, sizeof r->err);
            r->err.reason = keep.reason;
            r->err.stacktrace = keep.stacktrace;
            snprintf(r->err.message, sizeof r->err.message, "%s", keep.message);
        }
        r->err.code = status;
        cnode__error_classify(&r->err);
        set_details(r);
        if (!r->err.message[0]) {
            if (status == CNODE_ETIMEOUT)
                snprintf(r->err.message, sizeof r->err.message, "%s.%s/%d timed out after %u ms", r->mod, r->fun, r->arity,
                         r->timeout_ms);
            else if (status == CNODE_ENOCONNECTION)
                snprintf(r->err.message, sizeof r->err.message, "%s.%s/%d: noconnection (no connection to %s)", r->mod, r->fun,
                         r->arity, r->err.node);
            else
                snprintf(r->err.message, sizeof r->err.message, "%s.%s/%d: %s", r->mod, r->fun, r->arity,
                         cnode_strerror(status));
        }
    }
    table_del(st, r);
    heap_del(st, r);
    if (r->cb) {
        r->dnext = NULL;
        if (st->done_tail)
            st->done_tail->dnext = r;
        else
            st->done_head = r;
        st->done_tail = r;
    } else if (r->sleeping && defer_wakes) {
        set_sleeping(r, 0);
        atomic_fetch_add(&r->pins, 1); /* r stays while we hold it: its caller waits for 0 */
        r->wnext = wake_head;
        wake_head = r;
    } else if (r->sleeping) {
        set_sleeping(r, 0); /* one post per sleep */
        sem_post(&r->wake);
    }
}

void
cnode__erpc_defer_wakes(int on)
{
    defer_wakes = on;
}

/* node->lock not held: signal the waiters this thread completed while it held it. */
void
cnode__erpc_wake(void)
{
    cnode_req *r = wake_head;
    wake_head = NULL;
    while (r) {
        cnode_req *nx = r->wnext;
        sem_post(&r->wake);
        atomic_fetch_sub_explicit(&r->pins, 1, memory_order_release); /* from here its caller may free r */
        r = nx;
    }
}

/* After the loop let go of node->lock: run callbacks, free their requests. */
void
cnode__erpc_fire(cnode_node *node)
{
    erpc_state *st = node->erpc;
    if (!st)
        return;
    pthread_mutex_lock(&node->lock);
    cnode_req *r = st->done_head;
    st->done_head = st->done_tail = NULL;
    pthread_mutex_unlock(&node->lock);
    while (r) {
        cnode_req *nx = r->dnext;
        r->cb(r, r->status, r->status == 0 ? &r->reply : NULL, r->status ? &r->err : NULL, r->ud);
        req_free(r);
        r = nx;
    }
}

int64_t
cnode__erpc_next_deadline(cnode_node *node)
{
    erpc_state *st = node->erpc;
    if (!st || !st->nheap)
        return -1;
    const struct timespec *d = &st->heap[0]->deadline;
    int64_t ms = d->tv_sec * 1000 + d->tv_nsec / 1000000 - cnode__now_ms();
    return ms < 0 ? 0 : ms + 1;
}

void
cnode__erpc_expire(cnode_node *node)
{
    erpc_state *st = node->erpc;
    while (st && st->nheap && cnode__past(&st->heap[0]->deadline))
        complete(node, st->heap[0], CNODE_ETIMEOUT);
}

/* ---- results ------------------------------------------------------------------------------------ */

static void
copy_term(ei_x_buff *out, const char *p, size_t len)
{
    if (out->buff)
        ei_x_free(out);
    ei_x_new_with_version(out);
    ei_x_append_buf(out, p, (int)len);
}

#define PRINT_MAX 512 /* bytes of encoded reason printed into err->message */

static void
exception(cnode_req *r, const char *cls, const char *reason, size_t rlen, const char *stack, size_t slen)
{
    snprintf(r->err.exc_class, sizeof r->err.exc_class, "%s", cls);
    copy_term(&r->err.reason, reason, rlen);
    if (stack)
        copy_term(&r->err.stacktrace, stack, slen);
    /* node->lock is held: print only what fits the message anyway, so a
     * huge reason (a bignum prints in quadratic time) costs nothing here */
    char *text = NULL;
    if (rlen <= PRINT_MAX)
        cnode_term_print(r->err.reason.buff, (size_t)r->err.reason.index, &text, NULL);
    if (text)
        snprintf(r->err.message, sizeof r->err.message, "%s.%s/%d raised %s: %s", r->mod, r->fun, r->arity, cls, text);
    else
        snprintf(r->err.message, sizeof r->err.message, "%s.%s/%d raised %s (a reason of %zu bytes, in err->reason)",
                 r->mod, r->fun, r->arity, cls, rlen);
    free(text);
}

/* The DOWN reason of the spawned process (no 131), decoded as erpc's result/4 does. */
static void
finish(cnode_node *node, cnode_req *r, const char *t, size_t len)
{
    int idx = 0, arity;
    char a[MAXATOMLEN_UTF8];
    if (cnode__term_is_atom(t, len, "noconnection")) {
        complete(node, r, CNODE_ENOCONNECTION);
        return;
    }
    if (ei_decode_tuple_header(t, &idx, &arity) == 0 && (arity == 3 || arity == 4)) {
        int s = idx;
        if (ei_skip_term(t, &idx) == 0 && (size_t)(idx - s) == r->res_len && memcmp(t + s, r->res_ref, r->res_len) == 0 &&
            ei_decode_atom(t, &idx, a) == 0) {
            int vs = idx;
            if (ei_skip_term(t, &idx) == 0) {
                size_t vlen = (size_t)(idx - vs);
                if (arity == 3 && strcmp(a, "return") == 0) {
                    if (r->out && ei_x_append_buf(r->out, "\x83", 1) == 0 &&
                        ei_x_append_buf(r->out, t + vs, (int)vlen) == 0)
                        r->delivered = 1; /* its caller reads it once it sees RQ_DONE */
                    else
                        copy_term(&r->reply, t + vs, vlen);
                    complete(node, r, 0);
                    return;
                }
                if (arity == 3 && (strcmp(a, "throw") == 0 || strcmp(a, "exit") == 0 || strcmp(a, "error") == 0)) {
                    exception(r, a, t + vs, vlen, NULL, 0);
                    complete(node, r, CNODE_EEXCEPTION);
                    return;
                }
                int ss = idx;
                if (arity == 4 && strcmp(a, "error") == 0 && ei_skip_term(t, &idx) == 0) {
                    exception(r, "error", t + vs, vlen, t + ss, (size_t)(idx - ss));
                    complete(node, r, CNODE_EEXCEPTION);
                    return;
                }
            }
        }
    }
    /* anything else is how erpc reports a process that died on its own: exit({signal, R}) */
    ei_x_buff x;
    ei_x_new(&x);
    ei_x_encode_tuple_header(&x, 2);
    cnode__x_atom(&x, "signal");
    ei_x_append_buf(&x, t, (int)len);
    exception(r, "exit", x.buff, (size_t)x.index, NULL, 0);
    ei_x_free(&x);
    complete(node, r, CNODE_EEXCEPTION);
}

static int
is_caller(erpc_state *st, const cnode__pid_or_name *p)
{
    return !p->is_name && cnode__pid_eq(&p->pid, cnode_proc_pid(st->caller));
}

static int
erpc_ctl(cnode_node *node, cnode__peer *peer, const cnode__ctl *c, void *ud)
{
    erpc_state *st = ud;
    (void)peer;
    cnode_req *r;
    switch (c->op) {
    case CNODE__OP_SPAWN_REPLY:
    case CNODE__OP_SPAWN_REPLY_TT:
        if (!is_caller(st, &c->to))
            return 0;
        r = table_get(st, &c->ref);
        if (!r)
            return 1; /* late, or a cast's: dropped */
        if (c->from.is_name) {
            if (strcmp(c->from.name, "notsup") == 0) {
                complete(node, r, CNODE_ENOTSUP);
            } else {
                ei_x_buff x;
                ei_x_new(&x);
                ei_x_encode_tuple_header(&x, 2);
                cnode__x_atom(&x, "erpc");
                cnode__x_atom(&x, c->from.name);
                exception(r, "error", x.buff, (size_t)x.index, NULL, 0);
                ei_x_free(&x);
                complete(node, r, CNODE_EEXCEPTION);
            }
        } else {
            r->spawned = c->from.pid;
            set_state(r, RQ_SPAWNED);
        }
        return 1;
    case CNODE__OP_MONITOR_P_EXIT:
    case CNODE__OP_PAYLOAD_MONITOR_P_EXIT:
        if (!is_caller(st, &c->to))
            return 0;
        r = table_get(st, &c->ref);
        if (r)
            finish(node, r, c->reason.p, c->reason.len);
        return 1;
    case CNODE__OP_SEND:
    case CNODE__OP_SEND_TT:
    case CNODE__OP_SEND_SENDER:
    case CNODE__OP_SEND_SENDER_TT:
    case CNODE__OP_ALIAS_SEND:
    case CNODE__OP_ALIAS_SEND_TT:
        return is_caller(st, &c->to);
    default:
        return 0;
    }
}

int
cnode__erpc_claim(cnode_node *node, const cnode__ctl *c)
{
    erpc_state *st = node->erpc;
    switch (c->op) {
    case CNODE__OP_SPAWN_REPLY:
    case CNODE__OP_SPAWN_REPLY_TT:
    case CNODE__OP_MONITOR_P_EXIT:
    case CNODE__OP_PAYLOAD_MONITOR_P_EXIT:
        break;
    default:
        return 0;
    }
    if (!st || !is_caller(st, &c->to))
        return 0;
    cnode_req *r = table_get(st, &c->ref);
    if (!r || r->cb)
        return 0; /* late replies and callbacks are the loop's */
    return erpc_ctl(node, NULL, c, st);
}

static void
send_pending(cnode_node *node, cnode_req *r)
{
    if (!(r->peer->flags & CNODE__DFLAG_SPAWN)) {
        complete(node, r, CNODE_ENOTSUP);
        return;
    }
    set_state(r, RQ_SENT);
    cnode__send_frame(node, r->peer, r->frame, r->frame_len, NULL, 0);
    free(r->frame);
    r->frame = NULL;
}

/* Peer up: pending requests go out. Peer down or unreachable: noconnection. */
static void
erpc_peer(cnode_node *node, cnode__peer *peer, int up, void *ud)
{
    erpc_state *st = ud;
    for (size_t i = 0; i < st->nbuckets; i++) {
        cnode_req *r = st->buckets[i];
        while (r) {
            cnode_req *nx = r->hnext; /* complete() unlinks r */
            if (r->peer == peer) {
                if (up == 1 && r->state == RQ_PENDING_CONN)
                    send_pending(node, r);
                else if (up != 1 && (up == 0 || r->state == RQ_PENDING_CONN))
                    complete(node, r, CNODE_ENOCONNECTION);
            }
            r = nx;
        }
    }
}

int
cnode__erpc_start(cnode_node *node)
{
    erpc_state *st = calloc(1, sizeof *st);
    if (!st)
        return CNODE_ENOMEM;
    pthread_mutex_lock(&node->lock);
    int rc = cnode__proc_new_locked(node, NULL, 1, &st->caller);
    pthread_mutex_unlock(&node->lock);
    if (rc) {
        free(st);
        return rc;
    }
    node->erpc = st;
    cnode__add_ctl_hook(node, erpc_ctl, st);
    cnode__add_peer_hook(node, erpc_peer, st);
    return 0;
}

/* After the loop has stopped: fail what is left, free the state. */
void
cnode__erpc_stop(cnode_node *node)
{
    erpc_state *st = node->erpc;
    if (!st)
        return;
    pthread_mutex_lock(&node->lock);
    while (st->nheap)
        complete(node, st->heap[0], CNODE_ECLOSED);
    pthread_mutex_unlock(&node->lock);
    cnode__erpc_fire(node);
    free(st->buckets);
    free(st->heap);
    free(st);
    node->erpc = NULL;
}

/* ---- public ------------------------------------------------------------------------------------- */

static int
check_args(const ei_x_buff *args, const char **p, size_t *len, int *arity)
{
    if (cnode__strip_version(args, p, len) != 0)
        return CNODE_EINVAL;
    int idx = 0, type, size;
    if (ei_get_type(*p, &idx, &type, &size) < 0)
        return CNODE_EINVAL;
    if (type == ERL_NIL_EXT) {
        *arity = 0;
        return 0;
    }
    if (type == ERL_STRING_EXT) {
        *arity = size;
        return 0;
    }
    if (type != ERL_LIST_EXT || ei_decode_list_header(*p, &idx, arity) < 0)
        return CNODE_EINVAL;
    for (int i = 0; i < *arity; i++)
        if (ei_skip_term(*p, &idx) < 0)
            return CNODE_EINVAL;
    if (ei_get_type(*p, &idx, &type, &size) < 0 || type != ERL_NIL_EXT)
        return CNODE_EINVAL; /* improper list */
    return 0;
}

/* Encodes the spawn request for mod:fun(args) (execute_call) or a cast into x: everything but
 * the argument list's bytes (alen of them) and the tail of the payload list (NIL), which are
 * written as their own pieces (the arguments are never copied). pl: scratch. */
static int
build(cnode_node *node, cnode_req *r, ei_x_buff *pl, ei_x_buff *x, const char *mod, const char *fun, size_t alen,
      int cast)
{
    erpc_state *st = node->erpc;
    erlang_ref res;
    cnode_make_ref(node, &res);
    pl->index = 0;
    x->index = 0;
    int e = 0;
    e |= ei_x_encode_list_header(pl, cast ? 3 : 4);
    int rs = pl->index;
    if (!cast)
        e |= ei_x_encode_ref(pl, &res);
    r->res_len = (size_t)(pl->index - rs);
    memcpy(r->res_ref, pl->buff + rs, r->res_len);
    e |= cnode__x_atom(pl, mod);
    e |= cnode__x_atom(pl, fun);
    static const char monitor_opt[] = {108, 0, 0, 0, 1, 119, 7, 'm', 'o', 'n', 'i', 't', 'o', 'r', 106};
    static const char no_opts[] = {106};
    cnode__ctl c = {.op = CNODE__OP_SPAWN_REQUEST, .ref = r->reqid, .arity = cast ? 3 : 4};
    c.from.pid = *cnode_proc_pid(st->caller);
    c.group_leader = *cnode_proc_pid(node->sys_gl);
    strcpy(c.mod, "erpc");
    strcpy(c.fun, cast ? "execute_cast" : "execute_call");
    c.opts.p = cast ? no_opts : monitor_opt;
    c.opts.len = cast ? sizeof no_opts : sizeof monitor_opt;
    if (e || cnode__ctl_encode(x, &c, 1 + (size_t)pl->index + alen + 1) != 0 || ei_x_append_buf(x, "\x83", 1) != 0 ||
        ei_x_append_buf(x, pl->buff, pl->index) != 0)
        return CNODE_ENOMEM;
    return 0;
}

/* The frame in one piece, for requests that wait for their connection. */
static char *
frame_copy(const struct iovec *v, int nv, size_t *len)
{
    size_t n = 0;
    for (int i = 0; i < nv; i++)
        n += v[i].iov_len;
    char *f = malloc(n ? n : 1);
    if (!f)
        return NULL;
    size_t at = 0;
    for (int i = 0; i < nv; i++) {
        memcpy(f + at, v[i].iov_base, v[i].iov_len);
        at += v[i].iov_len;
    }
    *len = n;
    return f;
}

static int
start(cnode_node *node, const char *target, const char *mod, const char *fun, const ei_x_buff *args,
      unsigned timeout_ms, cnode_req_cb *cb, void *ud, int cast, int lead, ei_x_buff *reply_out, cnode_req **out)
{
    const char *a;
    size_t alen;
    int arity;
    if (!node || !target || !mod || !fun || !strchr(target, '@') || strlen(target) >= CNODE__NAME_MAX ||
        strlen(mod) >= MAXATOMLEN || strlen(fun) >= MAXATOMLEN || !*mod || !*fun || !node->erpc)
        return CNODE_EINVAL;
    if (check_args(args, &a, &alen, &arity) != 0)
        return CNODE_EINVAL;
    cnode_req *r = req_alloc();
    if (!r)
        return CNODE_ENOMEM;
    r->node = node;
    r->heap_idx = NO_HEAP;
    r->cb = cb;
    r->ud = ud;
    r->arity = arity;
    r->timeout_ms = timeout_ms;
    r->out = reply_out;
    snprintf(r->mod, sizeof r->mod, "%s", mod);
    snprintf(r->fun, sizeof r->fun, "%s", fun);
    cnode_make_ref(node, &r->reqid);
    cnode__deadline_after(&r->deadline, timeout_ms);
    /* this thread's buffers, unless a start() further up its stack is using them */
    erpc_tls *t = tls_get();
    ei_x_buff own_pl = {0}, own_x = {0}, *pl, *x;
    if (t && !t->busy) {
        pl = &t->pl;
        x = &t->x;
        t->busy = 1;
    } else {
        pl = &own_pl;
        x = &own_x;
        t = NULL;
    }
    int rc = (!pl->buff && ei_x_new(pl) != 0) || (!x->buff && ei_x_new(x) != 0) ? CNODE_ENOMEM
                                                                             : build(node, r, pl, x, mod, fun, alen, cast);
    struct iovec v[3] = {{x->buff, (size_t)x->index}, {(void *)a, alen}, {"\x6a", 1}};
    erpc_state *st = node->erpc;
    cnode__peer *peer = NULL;
    cnode__conn *lead_c = NULL;
    int need_connect = 0, send_now = 0, defer = 0;
    if (rc == 0) {
        pthread_mutex_lock(&node->lock);
        int local = cnode__is_local(node, target);
        if (atomic_load(&node->stopping)) {
            rc = CNODE_ECLOSED;
        } else if (!(r->peer = local ? NULL : cnode__peer_get(node, target, 1))) {
            rc = local ? CNODE_ENOTSUP : CNODE_EINVAL;
        } else {
            cnode__peer_hold(r->peer); /* r's reference, dropped by req_free */
            if (cast) {
                /* erpc:cast: no reply is awaited; a dead or spawn-less node swallows it */
                send_now = !r->peer->up || (r->peer->flags & CNODE__DFLAG_SPAWN);
                peer = r->peer;
            } else if (table_put(st, r) != 0 || heap_push(st, r) != 0) {
                table_del(st, r);
                rc = CNODE_ENOMEM;
            } else {
                if (!r->peer->up) {
                    r->state = RQ_PENDING_CONN;
                    need_connect = 1;
                    if (!(r->frame = frame_copy(v, 3, &r->frame_len)))
                        complete(node, r, CNODE_ENOMEM);
                } else if (!(r->peer->flags & CNODE__DFLAG_SPAWN)) {
                    complete(node, r, CNODE_ENOTSUP);
                } else {
                    set_state(r, RQ_SENT); /* the frame is ours to write: nobody else touches it once SENT */
                    send_now = 1;
                    /* the caller will read its own reply: take the socket before the request
                     * goes out, so the reply never wakes the loop */
                    if (lead)
                        r->lead = lead_c = cnode__conn_take_locked(node, r->peer);
                    /* others in flight to that peer: their replies bring this thread (or a reader)
                     * back soon, so the request goes out with the next ones in one sendmsg */
                    else
                        defer = node->has_io_thread && r->peer->inflight > 1;
                }
                *out = r; /* from the unlock on, r may complete and be freed (callbacks): not touched */
                peer = r->peer;
                cnode__peer_hold(peer); /* ... while the frame goes out */
            }
        }
        pthread_mutex_unlock(&node->lock);
    }
    if (rc == 0 && cast) {
        int src = send_now ? cnode__send_iov_wait(node, peer, v, 3) : 0;
        rc = src == CNODE_ETIMEOUT ? src : 0;
    } else if (rc == 0) {
        if (lead_c)
            cnode__conn_disarm(node, peer, lead_c);
        /* past the output queue's limit this waits, as an erpc caller is suspended on a busy
         * distribution port; if it gives up, the request ends by its own deadline */
        if (send_now) {
            int was = cnode__send_defer;
            cnode__send_defer = defer ? CNODE__DEFER_PEER : 0;
            cnode__send_iov_wait(node, peer, v, 3);
            cnode__send_defer = was;
            if (defer && !cb)
                r->wire_mark = cnode__defer_mark; /* r is this caller's until it takes the reply */
        }
        if (need_connect)
            cnode__request_connect(node, peer);
        cnode__peer_release(peer);
    }
    if (t)
        t->busy = 0;
    if (own_pl.buff)
        ei_x_free(&own_pl);
    if (own_x.buff)
        ei_x_free(&own_x);
    if (rc != 0 || cast)
        req_free(r);
    return rc;
}

int
cnode_send_request(cnode_node *node, const char *target, const char *mod, const char *fun, const ei_x_buff *args,
                   unsigned timeout_ms, cnode_req_cb *cb, void *user_data, cnode_req **req)
{
    cnode_req *r = NULL;
    if (!req && !cb)
        return CNODE_EINVAL;
    int rc = start(node, target, mod, fun, args, timeout_ms, cb, user_data, 0, 0, NULL, &r);
    if (rc == 0 && req)
        *req = cb ? NULL : r;
    if (rc == 0 && cb && !node->has_io_thread)
        cnode__erpc_fire(node); /* a completion found at once still goes through the callback path */
    return rc;
}

int
cnode_cast(cnode_node *node, const char *target, const char *mod, const char *fun, const ei_x_buff *args)
{
    cnode_req *r = NULL;
    return start(node, target, mod, fun, args, 0, NULL, NULL, 1, 0, NULL, &r);
}

static void
take(cnode_req *r, ei_x_buff *reply, cnode_error *err)
{
    if (r->status == 0 && reply && !r->delivered)
        ei_x_append_buf(reply, r->reply.buff, r->reply.index);
    if (r->status != 0 && err) {
        cnode_error_clear(err);
        *err = r->err;
        memset(&r->err, 0, sizeof r->err);
    }
}

static int
req_done(void *arg)
{
    return ((cnode_req *)arg)->state == RQ_DONE;
}

/* How many bytes a reading caller may wait for before it looks (SO_RCVLOWAT; node->lock held).
 * Its own reply: before the spawn reply, that reply and the result, which is longer than the
 * spawn reply (a DOWN carries the same pids and reference and a reason where the spawn reply has
 * its flags), so twice the spawn reply never asks for more than a successful call brings.
 * With other requests in flight to the peer, also their spawn replies: a node answers a spawn
 * request as it reads it, whatever the function then does, so those bytes come as soon as the
 * node has read what we already wrote. A window of calls then wakes once per batch of replies,
 * not once per frame: each wake-up and each read of a socket the node is writing into costs the
 * node's CPU too (it delivers into our socket and wakes us; perf: the peer's tcp_v4_rcv spinning
 * on our socket's lock). Counted in fours (each change of SO_RCVLOWAT is a system call) and at
 * most LOWAT_AHEAD. A node that is slow to read them costs the reader at most one short slice of its
 * wait (conn.c LEAD_QUICK_MS): after that, and at any time RQ_GREEDY_NS into a wait, it asks only for its own. */
#define LOWAT_AHEAD 16u
#define RQ_GREEDY_NS 1000000
static size_t
req_want(void *arg)
{
    cnode_req *r = arg;
    size_t srl = r->peer->spawn_reply_len;
    unsigned mine = r->state == RQ_SENT, others = r->peer->unspawned - mine;
    if (others > LOWAT_AHEAD)
        others = LOWAT_AHEAD;
    others &= ~3u;
    if (others) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
        if (!r->greedy_until_ns)
            r->greedy_until_ns = ns + RQ_GREEDY_NS;
        else if (ns > r->greedy_until_ns)
            others = 0;
    }
    if (!mine && !others)
        return 0;
    return (mine ? 2 * srl : 0) + others * srl;
}

int
cnode_receive_response(cnode_req *req, int wait_ms, ei_x_buff *reply, cnode_error *err)
{
    if (!req || req->cb)
        return CNODE_EINVAL;
    cnode_node *node = req->node;
    struct timespec dl;
    if (wait_ms > 0)
        cnode__deadline_after(&dl, wait_ms);
    cnode__conn *lead = req->lead; /* cnode_call took the read token in start() */
    int may_lead = 1, flushed = 0;
    req->lead = NULL;
    pthread_mutex_lock(&node->lock);
    while (req->state != RQ_DONE) {
        if (cnode__past(&req->deadline)) {
            complete(node, req, CNODE_ETIMEOUT);
            break;
        }
        if (wait_ms == 0 || (wait_ms > 0 && cnode__past(&dl))) {
            pthread_mutex_unlock(&node->lock);
            if (lead)
                cnode__conn_release(node, req->peer, lead);
            return CNODE_EAGAIN;
        }
        const struct timespec *until = &req->deadline;
        if (wait_ms > 0 && earlier_ts(&dl, until))
            until = &dl;
        if (!flushed && node->has_io_thread && cnode__out_should_flush(req->peer, req->wire_mark)) {
            /* about to block: what this thread held back for batching goes out first */
            flushed = 1;
            pthread_mutex_unlock(&node->lock);
            cnode__out_flush_deferred();
            cnode__out_flush(node, req->peer);
            pthread_mutex_lock(&node->lock);
            continue;
        }
        if (!node->has_io_thread) {
            pthread_mutex_unlock(&node->lock);
            cnode_poll(node, 20);
            pthread_mutex_lock(&node->lock);
            continue;
        }
        /* leader/follower: read the socket ourselves when nobody else does; otherwise whoever
         * reads (the loop or another caller) completes this request and posts its semaphore */
        int fresh = 0;
        if (!lead && may_lead && (req->state == RQ_SENT || req->state == RQ_SPAWNED)) {
            lead = cnode__conn_take_locked(node, req->peer);
            fresh = lead != NULL;
        }
        req->greedy_until_ns = 0;
        if (lead) {
            pthread_mutex_unlock(&node->lock);
            if (fresh)
                cnode__conn_disarm(node, req->peer, lead);
            if (!cnode__conn_lead(node, req->peer, lead, req_done, req_want, req, until))
                may_lead = 0; /* frames for the loop, or the link failed: follow from now on */
            cnode__conn_release(node, req->peer, lead);
            lead = NULL;
            pthread_mutex_lock(&node->lock);
            continue;
        }
        set_sleeping(req, 1);
        pthread_mutex_unlock(&node->lock);
        while (sem_clockwait(&req->wake, CLOCK_MONOTONIC, until) != 0 && errno == EINTR)
            ;
        pthread_mutex_lock(&node->lock);
        set_sleeping(req, 0);
    }
    pthread_mutex_unlock(&node->lock);
    while (atomic_load_explicit(&req->pins, memory_order_acquire)) /* a completer is about to post */
        sched_yield();
    while (sem_trywait(&req->wake) == 0) /* a post that came after a timed-out sleep: not for the next use */
        ;
    if (lead)
        cnode__conn_release(node, req->peer, lead);
    int status = req->status;
    take(req, reply, err);
    req_free(req);
    return status;
}

int
cnode_wait_response(cnode_req *req, int wait_ms, ei_x_buff *reply, cnode_error *err)
{
    return cnode_receive_response(req, wait_ms, reply, err);
}

void
cnode_req_abandon(cnode_req *req)
{
    if (!req || req->cb)
        return;
    cnode_node *node = req->node;
    pthread_mutex_lock(&node->lock);
    if (req->state != RQ_DONE)
        complete(node, req, CNODE_ETIMEOUT);
    pthread_mutex_unlock(&node->lock);
    req_free(req);
}

int
cnode_call(cnode_node *node, const char *target, const char *mod, const char *fun, const ei_x_buff *args,
           unsigned timeout_ms, ei_x_buff *reply, cnode_error *err)
{
    cnode_req *r = NULL;
    int rc = start(node, target, mod, fun, args, timeout_ms, NULL, NULL, 0, 1, reply, &r);
    if (rc != 0) {
        cnode__seterr(err, rc, target, "%s:%s: %s", mod ? mod : "?", fun ? fun : "?",
                      rc == CNODE_EINVAL ? "invalid arguments (target, names, or args not a proper list)"
                                         : cnode_strerror(rc));
        return rc;
    }
    return cnode_receive_response(r, -1, reply, err);
}

void
cnode_result_free(cnode_result *r)
{
    if (!r)
        return;
    if (r->reply.buff)
        ei_x_free(&r->reply);
    cnode_error_clear(&r->err);
    memset(r, 0, sizeof *r);
}

int
cnode_multicall(cnode_node *node, const char *const *targets, size_t n, const char *mod, const char *fun,
                const ei_x_buff *args, unsigned timeout_ms, cnode_result *results)
{
    if (!node || (!targets && n) || !results)
        return CNODE_EINVAL;
    cnode_req **reqs = calloc(n ? n : 1, sizeof *reqs);
    if (!reqs)
        return CNODE_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        memset(&results[i], 0, sizeof results[i]);
        results[i].status = start(node, targets[i], mod, fun, args, timeout_ms, NULL, NULL, 0, 0, NULL, &reqs[i]);
        if (results[i].status != 0) {
            cnode__seterr(&results[i].err, results[i].status, targets[i], "%s", cnode_strerror(results[i].status));
            reqs[i] = NULL;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!reqs[i])
            continue;
        ei_x_new(&results[i].reply);
        results[i].status = cnode_receive_response(reqs[i], -1, &results[i].reply, &results[i].err);
    }
    free(reqs);
    return 0;
}
