/* Serving BEAM: registered C functions called through erpc (spawn requests
 * for erpc:execute_call/execute_cast) and through the rex server (rpc's
 * gen_server protocol, erl_call and other ei clients). Requests are taken on
 * the I/O thread and run on a worker pool, so a slow handler never stalls the
 * loop; each erpc call gets a process whose exit carries the result, exactly
 * as erpc:execute_call does on a BEAM node.
 *
 * Bounds: at most limits.served_in_flight calls are queued or running; past
 * it a call is refused the way BEAM refuses a spawn that hits system_limit,
 * and a cast is dropped. A request ei cannot decode takes the link down, as
 * BEAM does with undecodable distribution data. Admitting and finishing a
 * job are O(1) under node->lock; answers are encoded outside it. */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnode/builtins.h"
#include "cnode/internal.h"
#include "cnode/terms.h"

enum { J_ERPC_CALL, J_ERPC_CAST, J_REX_GEN_CALL, J_REX_CALL, J_REX_CAST };

typedef struct fn {
    struct fn *next;
    char mod[MAXATOMLEN_UTF8], fun[MAXATOMLEN_UTF8];
    int arity;
    cnode_handler *h;
    void *ud;
} fn;

struct cnode_call_ctx {
    struct cnode_call_ctx *next;          /* the worker queue, under qlock */
    struct cnode_call_ctx *anext, *aprev; /* the active list, under node->lock */
    cnode_node *node;
    int kind;
    cnode_handler *h;
    void *ud;
    char *mod, *fun; /* in names[] */
    char *args;      /* 131 + the argument list */
    size_t args_len;
    int *idx;
    int n;
    cnode_proc *p;            /* erpc: the serving process */
    cnode__ctl *spawn_reply;  /* erpc: a spawn reply the loop left to the worker (send_carried) */
    cnode__peer *caller_peer; /* the peer the request came from */
    char res[64];             /* erpc: Res as encoded */
    size_t res_len;
    cnode__xpid reply_to; /* rex: compact (an erlang_pid is over 1 KiB); peer NULL: local */
    char *tag;            /* rex gen_call: the Tag term */
    size_t tag_len;
    _Atomic int cancelled;
    int answered;
    char cls[8];   /* "" for a return */
    ei_x_buff out; /* the value or the reason, no 131 */
    char names[];  /* mod\0fun\0 */
};
typedef struct cnode_call_ctx job;

typedef struct cnode__server {
    fn *fns;
    pthread_mutex_t qlock;
    pthread_cond_t idle;
    sem_t wake;           /* idle workers sleep here: posted once per worker taken off nidle */
    unsigned nidle;       /* workers asleep on wake, not yet posted (qlock) */
    job *q_head, *q_tail; /* waiting for a worker, under qlock */
    unsigned qlen;        /* jobs on that queue (qlock) */
    int running;          /* under qlock */
    _Atomic unsigned in_user; /* workers running a handler: raised under qlock as a job is taken */
    unsigned to_wake;     /* jobs the loop queued this turn: workers are woken once it lets go of its locks (qlock) */
    /* under node->lock */
    job *active;           /* queued or running, doubly linked: a job leaves in O(1) */
    unsigned in_flight;    /* jobs on the active list */
    int saturated;         /* in_flight reached the limit and we said so; cleared at half */
    cnode__peer *bad_peer; /* asked to disconnect for undecodable data; its link is going down */
    pthread_t *threads;
    unsigned nthreads;
    int stop, draining;
} server;

static server *
srv(cnode_node *node)
{
    return node->server;
}

/* ---- helpers ------------------------------------------------------------------------------- */

static fn *
find_fn(server *s, const char *mod, const char *fun, int arity)
{
    for (fn *f = s->fns; f; f = f->next)
        if (f->arity == arity && strcmp(f->mod, mod) == 0 && strcmp(f->fun, fun) == 0)
            return f;
    return NULL;
}

static int start_workers(cnode_node *node);

/* What a request names: a registered function, else one of the erlang built-ins every member
 * answers (builtins.c: node/0, nodes/0,1, ...), put in *tmp (starting the workers if none run
 * yet), else NULL (undef). node->lock held. */
static fn *
find_callable(cnode_node *node, const char *mod, const char *fun, int arity, fn *tmp)
{
    fn *f = find_fn(srv(node), mod, fun, arity);
    if (f || !(tmp->h = cnode__builtin(mod, fun, arity)) || start_workers(node) != 0)
        return f;
    tmp->ud = NULL;
    return tmp;
}

/* Split an encoded proper list (no 131) into argument offsets. */
static int
split_args(job *j, const char *list, size_t len)
{
    j->args = malloc(len + 1);
    if (!j->args)
        return -1;
    j->args[0] = (char)131;
    memcpy(j->args + 1, list, len);
    j->args_len = len + 1;
    int idx = 1, type, size, n = 0;
    if (ei_get_type(j->args, &idx, &type, &size) < 0)
        return -1;
    if (type == ERL_NIL_EXT) {
        j->n = 0;
        return 0;
    }
    if (type == ERL_STRING_EXT) {
        /* [1,2,3] as a string: re-encode as a list so each argument has an index */
        char *s = malloc((size_t)size + 1);
        if (!s || ei_decode_string(j->args, &idx, s) < 0) {
            free(s);
            return -1;
        }
        ei_x_buff x;
        ei_x_new_with_version(&x);
        ei_x_encode_list_header(&x, size);
        for (int i = 0; i < size; i++)
            ei_x_encode_long(&x, (unsigned char)s[i]);
        ei_x_encode_empty_list(&x);
        free(s);
        free(j->args);
        j->args = x.buff; /* ei allocates with malloc */
        j->args_len = (size_t)x.index;
        idx = 1;
    }
    if (ei_decode_list_header(j->args, &idx, &n) < 0 || n < 0 || !(j->idx = calloc((size_t)n + 1, sizeof *j->idx)))
        return -1;
    for (int i = 0; i < n; i++) {
        j->idx[i] = idx;
        if (ei_skip_term(j->args, &idx) < 0)
            return -1;
    }
    if (ei_get_type(j->args, &idx, &type, &size) < 0 || type != ERL_NIL_EXT)
        return -1;
    j->n = n;
    return 0;
}

static int
list_length(const char *t, size_t len)
{
    (void)len;
    int idx = 0, type, size, n;
    if (ei_get_type(t, &idx, &type, &size) < 0)
        return -1;
    if (type == ERL_NIL_EXT)
        return 0;
    if (type == ERL_STRING_EXT)
        return size;
    if (type != ERL_LIST_EXT || ei_decode_list_header(t, &idx, &n) < 0)
        return -1;
    for (int i = 0; i < n; i++)
        if (ei_skip_term(t, &idx) < 0)
            return -1;
    if (ei_get_type(t, &idx, &type, &size) < 0 || type != ERL_NIL_EXT)
        return -1;
    return n;
}

/* A job with its names in one allocation (a queued job costs what it carries,
 * not two atom buffers of 1 KiB). */
static job *
job_new(const char *mod, const char *fun)
{
    size_t ml = strlen(mod) + 1, fl = strlen(fun) + 1;
    job *j = calloc(1, sizeof *j + ml + fl);
    if (!j)
        return NULL;
    j->mod = j->names;
    j->fun = j->names + ml;
    memcpy(j->mod, mod, ml);
    memcpy(j->fun, fun, fl);
    return j;
}

static void
job_free(job *j)
{
    if (!j)
        return;
    cnode__peer_release(j->caller_peer);
    cnode__peer_release(j->reply_to.peer);
    free(j->args);
    free(j->idx);
    free(j->tag);
    free(j->spawn_reply);
    if (j->out.buff)
        ei_x_free(&j->out);
    free(j);
}

/* [{M, F, Args, []}]: the stacktrace BEAM gives for undef and for our raises. */
static void
x_mfa_stack(ei_x_buff *x, const char *mod, const char *fun, const char *args, size_t alen)
{
    ei_x_encode_list_header(x, 1);
    ei_x_encode_tuple_header(x, 4);
    cnode__x_atom(x, mod);
    cnode__x_atom(x, fun);
    ei_x_append_buf(x, args, (int)alen);
    ei_x_encode_empty_list(x);
    ei_x_encode_empty_list(x);
}

/* ---- answers ----------------------------------------------------------------------------------- */

/* What erpc:execute_call exits with: {Res, return, V}, {Res, throw|exit, R}
 * or {Res, error, R, [{M, F, A, []}]}. No 131. 0 or -1. */
static int
x_erpc_reason(ei_x_buff *x, const char *res, size_t rlen, const char *cls, const char *val, size_t vlen, const char *mod,
              const char *fun, const char *args, size_t alen)
{
    if (ei_x_new(x) != 0)
        return -1;
    int with_stack = strcmp(cls, "error") == 0;
    ei_x_encode_tuple_header(x, with_stack ? 4 : 3);
    ei_x_append_buf(x, res, (int)rlen);
    cnode__x_atom(x, cls[0] ? cls : "return");
    ei_x_append_buf(x, val, (int)vlen);
    if (with_stack)
        x_mfa_stack(x, mod, fun, args, alen);
    return 0;
}

/* rpc's shapes: V, a thrown T, {badrpc, {'EXIT', R}} or {badrpc, {'EXIT', {R, Stack}}}. */
static void
x_rpc_result(ei_x_buff *x, const char *cls, const char *val, size_t vlen, const char *mod, const char *fun, const char *args,
             size_t alen)
{
    if (!cls[0] || strcmp(cls, "throw") == 0) {
        ei_x_append_buf(x, val, (int)vlen);
        return;
    }
    ei_x_encode_tuple_header(x, 2);
    cnode__x_atom(x, "badrpc");
    ei_x_encode_tuple_header(x, 2);
    cnode__x_atom(x, "EXIT");
    if (strcmp(cls, "error") == 0) {
        ei_x_encode_tuple_header(x, 2);
        ei_x_append_buf(x, val, (int)vlen);
        x_mfa_stack(x, mod, fun, args, alen);
    } else {
        ei_x_append_buf(x, val, (int)vlen);
    }
}

/* Who a rex answer goes to, and how it is wrapped. */
typedef struct {
    int kind; /* J_REX_GEN_CALL: {Tag, Result}; J_REX_CALL: {rex, Result} */
    const char *tag;
    size_t tag_len;
} rex_dest;

/* The whole answer message, with its 131. 0 or -1. */
static int
x_rex_answer(ei_x_buff *x, const rex_dest *d, const char *cls, const char *val, size_t vlen, const char *mod, const char *fun,
             const char *args, size_t alen)
{
    if (ei_x_new_with_version(x) != 0)
        return -1;
    ei_x_encode_tuple_header(x, 2);
    if (d->kind == J_REX_GEN_CALL)
        ei_x_append_buf(x, d->tag, (int)d->tag_len);
    else
        cnode__x_atom(x, "rex");
    x_rpc_result(x, cls, val, vlen, mod, fun, args, alen);
    return 0;
}

/* An answer given at once on the I/O thread (node->lock held): undef, refused. */
static void
rex_answer_now(cnode_node *node, const rex_dest *d, const erlang_pid *to, const char *cls, const char *atom, const char *mod,
               const char *fun, const char *args, size_t alen)
{
    char v[32];
    size_t vl = cnode__enc_atom(v, atom);
    ei_x_buff x;
    if (x_rex_answer(&x, d, cls, v, vl, mod, fun, args, alen) == 0)
        cnode__send_term(node, to, x.buff, (size_t)x.index);
    ei_x_free(&x);
}

/* What BEAM's rex answers a call whose module or function is no atom or whose
 * arguments are no proper list (apply/3 raises badarg): {badrpc, {'EXIT',
 * {badarg, [{erlang, apply, [M, F, A], []}]}}}. mfa: M, F and A as encoded. */
static void
rex_badarg(cnode_node *node, const rex_dest *d, const erlang_pid *to, const char *mfa, size_t len)
{
    char v[16];
    size_t vl = cnode__enc_atom(v, "badarg");
    ei_x_buff l, x = {0};
    if (ei_x_new(&l) != 0)
        return;
    ei_x_encode_list_header(&l, 3);
    ei_x_append_buf(&l, mfa, (int)len);
    ei_x_encode_empty_list(&l);
    if (x_rex_answer(&x, d, "error", v, vl, "erlang", "apply", l.buff, (size_t)l.index) == 0)
        cnode__send_term(node, to, x.buff, (size_t)x.index);
    ei_x_free(&l);
    if (x.buff)
        ei_x_free(&x);
}

/* ---- the active list and the limit (node->lock held) ------------------------------------------ */

/* 1 if one more served call would pass limits.served_in_flight: refused and counted. */
static int
over_limit(cnode_node *node, server *s)
{
    if (s->in_flight < node->limits.served_in_flight)
        return 0;
    CNODE__STAT_ADD(node, served_refused, 1);
    if (!s->saturated) {
        s->saturated = 1;
        cnode__log(node, CNODE_LOG_WARNING, "%u served calls in flight (the limit): refusing more with system_limit", s->in_flight);
    }
    return 1;
}

static void
activate(cnode_node *node, server *s, job *j)
{
    j->aprev = NULL;
    j->anext = s->active;
    if (s->active)
        s->active->aprev = j;
    s->active = j;
    s->in_flight++;
    CNODE__STAT_ADD(node, served_now, 1);
}

static void
deactivate(cnode_node *node, server *s, job *j)
{
    if (j->aprev)
        j->aprev->anext = j->anext;
    else
        s->active = j->anext;
    if (j->anext)
        j->anext->aprev = j->aprev;
    j->anext = j->aprev = NULL;
    s->in_flight--;
    CNODE__STAT_SUB(node, served_now, 1);
    if (s->saturated && s->in_flight <= node->limits.served_in_flight / 2) {
        s->saturated = 0;
        cnode__log(node, CNODE_LOG_INFO, "served calls back to %u in flight: accepting again", s->in_flight);
    }
}

/* ---- finishing a job (worker thread) -------------------------------------------------------------- */

/* The answer is encoded before node->lock is taken; under it only the job
 * leaves the active list and the serving process ends (erpc) or the
 * destination is looked up (rex); a rex answer to a remote caller is written
 * after the lock is let go. */
static void
complete(cnode_node *node, job *j)
{
    server *s = srv(node);
    if (!j->answered) {
        ei_x_new(&j->out);
        cnode__x_atom(&j->out, "ok");
        j->cls[0] = 0;
    }
    ei_x_buff x = {0};
    int have = 0;
    switch (j->kind) {
    case J_ERPC_CALL:
        have = x_erpc_reason(&x, j->res, j->res_len, j->cls, j->out.buff, (size_t)j->out.index, j->mod, j->fun, j->args + 1,
                             j->args_len - 1) == 0;
        break;
    case J_REX_GEN_CALL:
    case J_REX_CALL:
        if (!atomic_load(&j->cancelled)) {
            rex_dest d = {j->kind, j->tag, j->tag_len};
            have =
                x_rex_answer(&x, &d, j->cls, j->out.buff, (size_t)j->out.index, j->mod, j->fun, j->args + 1, j->args_len - 1) == 0;
        }
        break;
    default:
        break;
    }
    cnode__peer *peer = NULL;
    cnode__ctl c = {.op = CNODE__OP_SEND};
    pthread_mutex_lock(&node->lock);
    deactivate(node, s, j);
    if (j->kind == J_ERPC_CALL || j->kind == J_ERPC_CAST) {
        char fallback[16];
        size_t fl = cnode__enc_atom(fallback, j->kind == J_ERPC_CAST ? "normal" : "system_limit");
        j->p->job = NULL;
        cnode__proc_finish(j->p, have ? x.buff : fallback, have ? (size_t)x.index : fl);
    } else if (have && !atomic_load(&j->cancelled)) {
        cnode__xpid_to_pid(node, &j->reply_to, &c.to.pid);
        if (!j->reply_to.peer) {
            cnode_proc *p = cnode__proc_by_pid(node, &c.to.pid);
            if (p)
                cnode__deliver(p, NULL, x.buff, (size_t)x.index);
        } else {
            peer = j->reply_to.peer;
        }
    }
    pthread_mutex_unlock(&node->lock);
    if (peer) /* like cnode_send (waits for room in the peer's output queue); j holds the
               * record, writes need only its wlock */
        cnode__send_ctl_wait(node, peer, &c, x.buff, (size_t)x.index);
    if (x.buff)
        ei_x_free(&x);
}

/* ---- worker pool ------------------------------------------------------------------------------------ */

/* A worker's reply is queued while it holds node->lock (cnode__send_defer) and written once it
 * has let go of every lock, with what else is queued for that peer (the spawn reply, usually);
 * a worker that took a job with more queued behind it writes the replies of the run together
 * with the last one's, or before it sleeps (at most DEFER_RUN in a row; the loop's tick bounds
 * the wait), in one sendmsg per peer (out.c). */
#define DEFER_RUN 32

/* The spawn reply of j, if the loop left it to us (see serve_spawn), goes out before the handler
 * runs: held (mode CNODE__DEFER_HOLD) as the loop would have held it (out with the result when
 * the handler is quick, or at the loop's next tick when it is not), so the caller never waits for
 * the handler to get it. Not to a caller whose link went down meanwhile (cancelled): no dial
 * just for it. */
static void
send_carried(cnode_node *node, job *j, int mode)
{
    if (!j->spawn_reply)
        return;
    if (!atomic_load(&j->cancelled)) {
        cnode__send_defer = mode;
        cnode__send_ctl(node, j->caller_peer, j->spawn_reply, NULL, 0);
        cnode__send_defer = 0;
    }
    free(j->spawn_reply);
    j->spawn_reply = NULL;
}

static void *
worker_main(void *arg)
{
    cnode_node *node = arg;
    server *s = srv(node);
    int run = 0, ran = 0;
    pthread_mutex_lock(&s->qlock);
    for (;;) {
        if (ran) { /* the job before: one qlock section ends it and takes the next */
            ran = 0;
            s->running--;
            if (!s->running && !s->q_head)
                pthread_cond_broadcast(&s->idle);
        }
        if (!s->q_head && run) {
            /* nothing more to do now: what this worker held back goes out before it sleeps */
            pthread_mutex_unlock(&s->qlock);
            cnode__out_flush_deferred();
            run = 0;
            pthread_mutex_lock(&s->qlock);
            continue;
        }
        while (!s->q_head && !s->stop) {
            /* a semaphore, not a condition: a woken worker takes qlock uncontended */
            s->nidle++;
            pthread_mutex_unlock(&s->qlock);
            while (sem_wait(&s->wake) != 0 && errno == EINTR)
                ;
            pthread_mutex_lock(&s->qlock);
        }
        job *j = s->q_head;
        if (s->stop || !j) {
            /* stopping: what is still queued is ended by cnode__server_stop, not run */
            pthread_mutex_unlock(&s->qlock);
            cnode__out_flush_deferred();
            return NULL;
        }
        s->q_head = j->next;
        if (!s->q_head)
            s->q_tail = NULL;
        s->qlen--;
        s->running++;
        atomic_fetch_add(&s->in_user, 1);
        ran = 1;
        int more = s->q_head != NULL && run < DEFER_RUN;
        pthread_mutex_unlock(&s->qlock);

        send_carried(node, j, CNODE__DEFER_HOLD);
        cnode_args a = {.buf = j->args, .n = j->n, .idx = j->idx};
        j->h(j, &a, j->ud);
        atomic_fetch_sub(&s->in_user, 1);
        cnode__send_defer = CNODE__DEFER_MINE;
        complete(node, j);
        cnode__send_defer = 0;
        job_free(j);
        run = more ? run + 1 : 0;
        if (!more)
            cnode__out_flush_deferred(); /* no lock held */
        pthread_mutex_lock(&s->qlock);
    }
}

static int
start_workers(cnode_node *node)
{
    server *s = srv(node);
    if (s->threads)
        return 0;
    /* one per CPU this process may run on (a process pinned to one CPU gets one worker, as a
     * BEAM node pinned there runs one scheduler) */
    cpu_set_t cpus;
    long ncpu = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = node->opts.workers ? node->opts.workers : (unsigned)(ncpu > 0 ? ncpu : 1);
    s->threads = calloc(n, sizeof *s->threads);
    if (!s->threads)
        return CNODE_ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&s->threads[i], NULL, worker_main, node) != 0)
            break;
        s->nthreads++;
    }
    return s->nthreads ? 0 : CNODE_ESYS;
}

/* node->lock held: would a job queued now be taken by a worker that runs no user code first? */
static int
taken_soon(server *s)
{
    pthread_mutex_lock(&s->qlock);
    int r = !s->stop && s->nthreads > atomic_load(&s->in_user) + s->qlen;
    pthread_mutex_unlock(&s->qlock);
    return r;
}

/* node->lock held. */
static void
submit(cnode_node *node, job *j, cnode__peer *from)
{
    server *s = srv(node);
    j->node = node;
    j->caller_peer = from;
    cnode__peer_hold(from);
    activate(node, s, j);
    pthread_mutex_lock(&s->qlock);
    j->next = NULL;
    if (s->q_tail)
        s->q_tail->next = j;
    else
        s->q_head = j;
    s->q_tail = j;
    s->qlen++;
    if (cnode__loop_thread_node == node) {
        /* woken after the loop lets go of node->lock (server_wake): a worker woken now would
         * first wait for the locks the loop holds */
        s->to_wake++;
        pthread_mutex_unlock(&s->qlock);
        return;
    }
    int post = s->nidle > 0;
    s->nidle -= (unsigned)post;
    pthread_mutex_unlock(&s->qlock);
    if (post)
        sem_post(&s->wake);
}

/* Loop post hook (no lock held): wake idle workers for the jobs of this turn, at most one each;
 * busy workers find the rest when they look at the queue again. */
static void
server_wake(cnode_node *node, void *ud)
{
    (void)node;
    server *s = ud;
    pthread_mutex_lock(&s->qlock);
    unsigned n = s->to_wake < s->nidle ? s->to_wake : s->nidle;
    s->to_wake = 0;
    s->nidle -= n;
    pthread_mutex_unlock(&s->qlock);
    while (n--)
        sem_post(&s->wake);
}

/* ---- erpc: spawn requests ---------------------------------------------------------------------------- */

static void
drop_msgs(cnode_proc *p, const cnode__xpid *from, const char *data, size_t len)
{
    (void)p;
    (void)from;
    (void)data;
    (void)len;
}

/* carry: where to leave the spawn reply for the worker if the peer's write lock is busy and a
 * worker will take the job without running other user code first (NULL: wait for the lock). */
static void
reply_spawn(cnode_node *node, cnode__peer *peer, const cnode__ctl *c, cnode_proc *p, unsigned flags,
            cnode__ctl **carry)
{
    cnode__ctl r = {.op = CNODE__OP_SPAWN_REPLY, .ref = c->ref, .spawn_flags = flags};
    r.to.pid = c->from.pid;
    r.from.pid = p->pid;
    cnode__send_try = carry != NULL;
    int rc = cnode__send_ctl(node, peer, &r, NULL, 0);
    cnode__send_try = 0;
    if (rc == CNODE__SEND_BUSY && taken_soon(srv(node)) && (*carry = malloc(sizeof r)) != NULL)
        memcpy(*carry, &r, sizeof r);
    else if (rc == CNODE__SEND_BUSY)
        cnode__send_ctl(node, peer, &r, NULL, 0); /* wait for the lock after all */
    cnode__xpid from;
    if (cnode__xpid_of(node, &c->from.pid, &from, 1) != 0)
        return; /* no record of its node (limits.peers): no link or monitor can be kept */
    if (flags & 1)
        cnode__add_link(p, &from);
    if (flags & 2)
        cnode__add_monby(p, &c->ref, &from, 0);
}

/* A spawn that fails, answered as BEAM answers it: a spawn reply carrying the
 * error atom (the erpc caller raises error {erpc, Atom}). */
static void
refuse_spawn(cnode_node *node, cnode__peer *peer, const cnode__ctl *c, const char *why)
{
    cnode__ctl r = {.op = CNODE__OP_SPAWN_REPLY, .ref = c->ref};
    r.to.pid = c->from.pid;
    r.from.is_name = 1;
    snprintf(r.from.name, sizeof r.from.name, "%s", why);
    cnode__send_ctl(node, peer, &r, NULL, 0);
}

static unsigned
wanted_flags(const cnode__term *opts)
{
    unsigned f = 0;
    int idx = 0, n, arity;
    if (!opts->p || ei_decode_list_header(opts->p, &idx, &n) < 0)
        return 0;
    for (int i = 0; i < n; i++) {
        char a[MAXATOMLEN_UTF8];
        int save = idx;
        if (ei_decode_atom(opts->p, &idx, a) == 0) {
            f |= !strcmp(a, "link") ? 1u : !strcmp(a, "monitor") ? 2u : 0u;
            continue;
        }
        idx = save;
        if (ei_decode_tuple_header(opts->p, &idx, &arity) == 0 && arity == 2 && ei_decode_atom(opts->p, &idx, a) == 0 &&
            !strcmp(a, "monitor"))
            f |= 2u;
        idx = save;
        if (ei_skip_term(opts->p, &idx) < 0)
            break;
    }
    return f;
}

/* [Res, M, F, A] (call) or [M, F, A] (cast). 0 or -1. */
static int
parse_execute(const cnode__ctl *c, int cast, const char **res, size_t *rlen, char *mod, char *fun, const char **a, size_t *alen)
{
    const char *b = c->msg;
    int idx = 1, n;
    if (!b || ei_decode_list_header(b, &idx, &n) < 0 || n != (cast ? 3 : 4))
        return -1;
    if (!cast) {
        int s = idx;
        if (ei_skip_term(b, &idx) < 0)
            return -1;
        *res = b + s;
        *rlen = (size_t)(idx - s);
    }
    if (ei_decode_atom(b, &idx, mod) < 0 || ei_decode_atom(b, &idx, fun) < 0)
        return -1;
    int s = idx;
    if (ei_skip_term(b, &idx) < 0)
        return -1;
    *a = b + s;
    *alen = (size_t)(idx - s);
    return 0;
}

static int
serve_spawn(cnode_node *node, cnode__peer *peer, const cnode__ctl *c)
{
    server *s = srv(node);
    int cast;
    if (strcmp(c->mod, "erpc") == 0 && strcmp(c->fun, "execute_call") == 0 && c->arity == 4)
        cast = 0;
    else if (strcmp(c->mod, "erpc") == 0 && strcmp(c->fun, "execute_cast") == 0 && c->arity == 3)
        cast = 1;
    else
        return 0; /* the runtime answers like BEAM for a missing module */
    const char *res = NULL, *a;
    size_t rlen = 0, alen;
    char mod[MAXATOMLEN_UTF8], fun[MAXATOMLEN_UTF8];
    if (parse_execute(c, cast, &res, &rlen, mod, fun, &a, &alen) != 0 || rlen > 64) {
        cnode__log(node, CNODE_LOG_WARNING, "malformed erpc request from %s: refused with badarg", peer->name);
        refuse_spawn(node, peer, c, "badarg");
        return 1;
    }
    if (s->draining) {
        refuse_spawn(node, peer, c, "notsup");
        return 1;
    }
    if (over_limit(node, s)) {
        refuse_spawn(node, peer, c, "system_limit");
        return 1;
    }
    int n = list_length(a, alen);
    fn builtin;
    fn *f = n >= 0 ? find_callable(node, mod, fun, n, &builtin) : NULL;
    job *j = NULL;
    if (f && (!(j = job_new(mod, fun)) || split_args(j, a, alen) != 0)) {
        job_free(j);
        CNODE__STAT_ADD(node, served_refused, 1);
        refuse_spawn(node, peer, c, "system_limit"); /* out of memory */
        return 1;
    }
    cnode_proc *p;
    if (cnode__proc_new_locked(node, NULL, 1, &p) != 0) {
        job_free(j);
        refuse_spawn(node, peer, c, "system_limit");
        return 1;
    }
    p->sys_handler = drop_msgs;
    /* a worker will answer: its reply takes the spawn reply along (one sendmsg for both). If a
     * worker is writing to this peer right now, the loop does not wait for it: the worker that
     * takes this job sends the spawn reply before it runs the handler, so the reply is left to it
     * only when a worker will take the job without first finishing some other handler. */
    cnode__send_defer = f ? CNODE__DEFER_HOLD : 0;
    reply_spawn(node, peer, c, p, cast ? 0 : wanted_flags(&c->opts), f ? &j->spawn_reply : NULL);
    cnode__send_defer = 0;
    if (!f) {
        if (cast) {
            cnode__log(node, CNODE_LOG_WARNING, "erpc:cast from %s to %s:%s/%d: undef", peer->name, mod, fun, n);
            char normal[16];
            cnode__proc_finish(p, normal, cnode__enc_atom(normal, "normal"));
        } else {
            /* what erpc:execute_call gives for a missing function: error:undef with the MFA */
            char undef[16];
            size_t ul = cnode__enc_atom(undef, "undef");
            ei_x_buff x;
            if (x_erpc_reason(&x, res, rlen, "error", undef, ul, mod, fun, n >= 0 ? a : "\x6a", n >= 0 ? alen : 1) == 0)
                cnode__proc_finish(p, x.buff, (size_t)x.index);
            else
                cnode__proc_finish(p, undef, ul);
            ei_x_free(&x);
        }
        return 1;
    }
    j->kind = cast ? J_ERPC_CAST : J_ERPC_CALL;
    j->h = f->h;
    j->ud = f->ud;
    j->p = p;
    if (res) {
        memcpy(j->res, res, rlen);
        j->res_len = rlen;
    }
    p->job = j;
    submit(node, j, peer);
    return 1;
}

/* ---- rex ------------------------------------------------------------------------------------------------ */

/* {call|block_call|cast, M, F, A, GL} -> job, or an immediate answer. -1 if malformed. */
static int
rex_call(cnode_node *node, cnode__peer *peer, const char *b, int idx, int kind, const erlang_pid *to, const char *tag, size_t tlen)
{
    server *s = srv(node);
    int arity;
    char op[MAXATOMLEN_UTF8], mod[MAXATOMLEN_UTF8] = "", fun[MAXATOMLEN_UTF8] = "";
    if (ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 5 || ei_decode_atom(b, &idx, op) < 0 ||
        (strcmp(op, "call") != 0 && strcmp(op, "block_call") != 0 && strcmp(op, "cast") != 0))
        return -1;
    if (strcmp(op, "cast") == 0)
        kind = J_REX_CAST;
    int ms = idx;
    if (ei_skip_term(b, &idx) < 0)
        return -1;
    int fs = idx;
    if (ei_skip_term(b, &idx) < 0)
        return -1;
    int as = idx;
    if (ei_skip_term(b, &idx) < 0)
        return -1;
    size_t alen = (size_t)(idx - as);
    int mi = ms, fi = fs;
    int n = ei_decode_atom(b, &mi, mod) == 0 && ei_decode_atom(b, &fi, fun) == 0 ? list_length(b + as, alen) : -1;
    rex_dest d = {kind, tag, tlen};
    int refused = s->draining || over_limit(node, s);
    if (!refused && n < 0) {
        if (kind != J_REX_CAST && to)
            rex_badarg(node, &d, to, b + ms, (size_t)(idx - ms));
        return 0;
    }
    fn builtin;
    fn *f = n >= 0 && !refused ? find_callable(node, mod, fun, n, &builtin) : NULL;
    job *j = NULL;
    /* BEAM's rex spawns first (failing with system_limit, answered {badrpc,
     * {'EXIT', system_limit}}; a cast is dropped), then the process finds undef */
    const char *cls = "exit", *why = s->draining ? "shutting_down" : "system_limit";
    if (!refused && !f) {
        cls = "error";
        why = "undef";
    } else if (!refused) {
        if ((j = job_new(mod, fun)) != NULL && split_args(j, b + as, alen) == 0) {
            if (to && cnode__xpid_of(node, to, &j->reply_to, 1) == 0)
                cnode__peer_hold(j->reply_to.peer);
            if (to && !j->reply_to.peer && !cnode__is_local(node, to->node)) {
                job_free(j); /* no record for the caller's node: no way to answer */
                return 0;
            }
            if (tag && (j->tag = malloc(tlen)) != NULL) {
                memcpy(j->tag, tag, tlen);
                j->tag_len = tlen;
            }
            if (!tag || j->tag) {
                j->kind = kind;
                j->h = f->h;
                j->ud = f->ud;
                submit(node, j, peer);
                return 0;
            }
        }
        job_free(j); /* out of memory: refused as a failed spawn */
        CNODE__STAT_ADD(node, served_refused, 1);
    }
    if (kind != J_REX_CAST && to)
        rex_answer_now(node, &d, to, cls, why, mod, fun, b + as, alen);
    return 0;
}

static int
serve_rex(cnode_node *node, cnode__peer *peer, const cnode__ctl *c)
{
    const char *b = c->msg;
    int idx = 1, arity, type, size;
    char a[MAXATOMLEN_UTF8];
    erlang_pid from;
    if (ei_decode_tuple_header(b, &idx, &arity) < 0)
        goto bad;
    int first = idx;
    if (arity == 3 && ei_decode_atom(b, &idx, a) == 0 && strcmp(a, "$gen_call") == 0) {
        int t2;
        if (ei_decode_tuple_header(b, &idx, &t2) < 0 || t2 != 2 || ei_decode_pid(b, &idx, &from) < 0)
            goto bad;
        int ts = idx;
        if (ei_skip_term(b, &idx) < 0 || rex_call(node, peer, b, idx, J_REX_GEN_CALL, &from, b + ts, (size_t)(idx - ts)) != 0)
            goto bad;
        return 1;
    }
    idx = first;
    if (arity == 2 && ei_decode_atom(b, &idx, a) == 0 && strcmp(a, "$gen_cast") == 0) {
        if (rex_call(node, peer, b, idx, J_REX_CAST, NULL, NULL, 0) != 0)
            goto bad;
        return 1;
    }
    idx = first;
    if (arity == 2 && ei_get_type(b, &idx, &type, &size) == 0 && ei_decode_pid(b, &idx, &from) == 0) {
        int rs = idx;
        if (ei_decode_atom(b, &idx, a) == 0 && strcmp(a, "features_request") == 0) {
            ei_x_buff x;
            ei_x_new_with_version(&x);
            ei_x_encode_tuple_header(&x, 3);
            cnode__x_atom(&x, "features_reply");
            cnode__x_atom(&x, node->name);
            ei_x_encode_list_header(&x, 1);
            cnode__x_atom(&x, "erpc");
            ei_x_encode_empty_list(&x);
            cnode__send_term(node, &from, x.buff, (size_t)x.index);
            ei_x_free(&x);
            return 1;
        }
        idx = rs;
        int t3;
        if (ei_decode_tuple_header(b, &idx, &t3) == 0 && t3 == 3 && ei_decode_atom(b, &idx, a) == 0 && strcmp(a, "sbcast") == 0) {
            char name[MAXATOMLEN_UTF8];
            if (ei_decode_atom(b, &idx, name) < 0)
                goto bad;
            int ms = idx;
            if (ei_skip_term(b, &idx) < 0)
                goto bad;
            cnode_proc *p = cnode__proc_by_name(node, name);
            char *m = malloc((size_t)(idx - ms) + 1);
            if (p && m) {
                m[0] = (char)131;
                memcpy(m + 1, b + ms, (size_t)(idx - ms));
                cnode__deliver(p, NULL, m, (size_t)(idx - ms) + 1);
            }
            free(m);
            ei_x_buff x;
            ei_x_new_with_version(&x);
            ei_x_encode_tuple_header(&x, 3);
            cnode__x_atom(&x, "rex");
            cnode__x_atom(&x, node->name);
            if (p) {
                cnode__x_atom(&x, node->name);
            } else {
                ei_x_encode_tuple_header(&x, 2);
                cnode__x_atom(&x, "nonexisting_name");
                cnode__x_atom(&x, name);
            }
            cnode__send_term(node, &from, x.buff, (size_t)x.index);
            ei_x_free(&x);
            return 1;
        }
        if (rex_call(node, peer, b, rs, J_REX_CALL, &from, NULL, 0) == 0)
            return 1;
    }
bad:
    /* decodable but not a request rex knows: rex ignores those too */
    cnode__log(node, CNODE_LOG_WARNING, "malformed message to rex from %s dropped", peer->name);
    return 1;
}

/* ---- hooks ------------------------------------------------------------------------------------------------ */

/* Data the walker let through that ei cannot decode: BEAM takes the link down
 * on undecodable distribution data, and so do we, once per link (the term is
 * not printed). Everything else the peer sends us until the link is down is
 * dropped. node->lock held. */
static int
bad_data(cnode_node *node, server *s, cnode__peer *peer, const char *what)
{
    if (s->bad_peer == peer)
        return 1;
    cnode__peer_hold(peer);
    cnode__peer_release(s->bad_peer);
    s->bad_peer = peer;
    CNODE__STAT_ADD(node, bad_data_disconnects, 1);
    cnode__log(node, CNODE_LOG_ERROR, "dropping connection to %s: undecodable %s", peer->name, what);
    cnode__enqueue_req(node, REQ_DISCONNECT, peer);
    return 1;
}

/* A payload (with its 131) holds a term; no payload passes. The frame's terms
 * were walked whole by the term reader (ei_glue/reader.h) before dispatch,
 * and it refuses all binary_to_term refuses, so ei reads them to their end. */
static int
payload_ok(const cnode__ctl *c)
{
    return !c->msg || c->msg_len > 1;
}

static int
server_ctl(cnode_node *node, cnode__peer *peer, const cnode__ctl *c, void *ud)
{
    server *s = ud;
    switch (c->op) {
    case CNODE__OP_SPAWN_REQUEST:
    case CNODE__OP_SPAWN_REQUEST_TT:
        if (peer == s->bad_peer)
            return 1;
        if (!payload_ok(c))
            return bad_data(node, s, peer, "spawn request");
        return serve_spawn(node, peer, c);
    case CNODE__OP_REG_SEND:
    case CNODE__OP_REG_SEND_TT:
        if (!c->to.is_name || strcmp(c->to.name, "rex") != 0)
            return 0;
        if (peer == s->bad_peer)
            return 1;
        if (!c->msg || !payload_ok(c))
            return bad_data(node, s, peer, "message to rex");
        return serve_rex(node, peer, c);
    case CNODE__OP_DEMONITOR_P:
        if (!c->to.is_name) {
            /* the caller gave up (erpc timeout): tell the handler */
            cnode_proc *p = cnode__proc_by_pid(node, &c->to.pid);
            if (p && p->job)
                atomic_store(&((job *)p->job)->cancelled, 1);
        }
        return 0; /* the runtime drops the monitor */
    default:
        return 0;
    }
}

static void
server_peer(cnode_node *node, cnode__peer *peer, int up, void *ud)
{
    server *s = ud;
    (void)node;
    if (up == 1)
        return;
    if (s->bad_peer == peer) {
        cnode__peer_release(peer);
        s->bad_peer = NULL;
    }
    for (job *j = s->active; j; j = j->anext)
        if (j->caller_peer == peer)
            atomic_store(&j->cancelled, 1);
}

int
cnode__server_start(cnode_node *node)
{
    server *s = calloc(1, sizeof *s);
    if (!s)
        return CNODE_ENOMEM;
    pthread_mutex_init(&s->qlock, NULL);
    sem_init(&s->wake, 0, 0);
    pthread_cond_init(&s->idle, NULL);
    node->server = s;
    cnode__add_ctl_hook(node, server_ctl, s);
    cnode__add_peer_hook(node, server_peer, s);
    cnode__add_post_hook(node, server_wake, s);
    return 0;
}

/* Running handlers finish; queued jobs are not started: their processes exit
 * with `shutdown` (as BEAM's do when the node stops), rex callers see the
 * node go down. */
void
cnode__server_stop(cnode_node *node)
{
    server *s = srv(node);
    if (!s)
        return;
    pthread_mutex_lock(&node->lock);
    s->draining = 1;
    pthread_mutex_unlock(&node->lock);
    pthread_mutex_lock(&s->qlock);
    s->stop = 1;
    unsigned n = s->nidle;
    s->nidle = 0;
    pthread_mutex_unlock(&s->qlock);
    while (n--)
        sem_post(&s->wake);
    for (unsigned i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i], NULL);
    s->nthreads = 0;
    char shutdown[16];
    size_t sl = cnode__enc_atom(shutdown, "shutdown");
    pthread_mutex_lock(&node->lock);
    pthread_mutex_lock(&s->qlock);
    job *j = s->q_head;
    s->q_head = s->q_tail = NULL;
    s->qlen = 0;
    pthread_mutex_unlock(&s->qlock);
    while (j) {
        job *nx = j->next;
        deactivate(node, s, j);
        send_carried(node, j, 0); /* the caller hears of the process before it hears it ended */
        if (j->p) {
            j->p->job = NULL;
            cnode__proc_finish(j->p, shutdown, sl);
        }
        job_free(j);
        j = nx;
    }
    pthread_mutex_unlock(&node->lock);
}

/* After the I/O thread is gone: its hooks (server_peer, ...) no longer run. */
void
cnode__server_free(cnode_node *node)
{
    server *s = srv(node);
    if (!s)
        return;
    free(s->threads);
    fn *f = s->fns;
    while (f) {
        fn *nx = f->next;
        free(f);
        f = nx;
    }
    pthread_mutex_destroy(&s->qlock);
    sem_destroy(&s->wake);
    pthread_cond_destroy(&s->idle);
    free(s);
    node->server = NULL;
}

/* ---- public --------------------------------------------------------------------------------------------------- */

int
cnode_register_function(cnode_node *node, const char *mod, const char *fun, int arity, cnode_handler *handler, void *user_data)
{
    if (!node || !mod || !fun || !handler || arity < 0 || arity > 255 || !*mod || !*fun || strlen(mod) >= MAXATOMLEN ||
        strlen(fun) >= MAXATOMLEN)
        return CNODE_EINVAL;
    server *s = srv(node);
    pthread_mutex_lock(&node->lock);
    int rc = 0;
    if (find_fn(s, mod, fun, arity)) {
        rc = CNODE_EEXIST;
    } else {
        fn *f = calloc(1, sizeof *f);
        if (!f) {
            rc = CNODE_ENOMEM;
        } else {
            snprintf(f->mod, sizeof f->mod, "%s", mod);
            snprintf(f->fun, sizeof f->fun, "%s", fun);
            f->arity = arity;
            f->h = handler;
            f->ud = user_data;
            f->next = s->fns;
            s->fns = f;
            rc = start_workers(node);
        }
    }
    pthread_mutex_unlock(&node->lock);
    return rc;
}

int
cnode_unregister_function(cnode_node *node, const char *mod, const char *fun, int arity)
{
    if (!node || !mod || !fun)
        return CNODE_EINVAL;
    server *s = srv(node);
    pthread_mutex_lock(&node->lock);
    int rc = CNODE_ENOTFOUND;
    for (fn **pp = &s->fns; *pp; pp = &(*pp)->next)
        if ((*pp)->arity == arity && !strcmp((*pp)->mod, mod) && !strcmp((*pp)->fun, fun)) {
            fn *f = *pp;
            *pp = f->next;
            free(f);
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&node->lock);
    return rc;
}

static int
answer(cnode_call_ctx *ctx, const char *cls, const ei_x_buff *term)
{
    const char *t;
    size_t tl;
    if (!ctx || ctx->answered)
        return CNODE_EINVAL;
    if (cnode__strip_version(term, &t, &tl) != 0)
        return CNODE_EINVAL;
    if (ei_x_new(&ctx->out) != 0)
        return CNODE_ENOMEM;
    ei_x_append_buf(&ctx->out, t, (int)tl);
    snprintf(ctx->cls, sizeof ctx->cls, "%s", cls);
    ctx->answered = 1;
    return 0;
}

int
cnode_reply(cnode_call_ctx *ctx, const ei_x_buff *term)
{
    return answer(ctx, "", term);
}

int
cnode_raise(cnode_call_ctx *ctx, const char *cls, const ei_x_buff *reason)
{
    if (!cls || (strcmp(cls, "error") != 0 && strcmp(cls, "throw") != 0 && strcmp(cls, "exit") != 0))
        return CNODE_EINVAL;
    return answer(ctx, cls, reason);
}

int
cnode_call_cancelled(const cnode_call_ctx *ctx)
{
    return ctx ? atomic_load(&((cnode_call_ctx *)ctx)->cancelled) : 1;
}

cnode_node *
cnode_call_node(const cnode_call_ctx *ctx)
{
    return ctx ? ctx->node : NULL;
}

const erlang_pid *
cnode_call_self(const cnode_call_ctx *ctx)
{
    return ctx && ctx->p ? &ctx->p->pid : NULL;
}

int
cnode_server_drain(cnode_node *node, unsigned grace_ms)
{
    if (!node)
        return CNODE_EINVAL;
    server *s = srv(node);
    pthread_mutex_lock(&node->lock);
    s->draining = 1;
    pthread_mutex_unlock(&node->lock);
    struct timespec dl;
    cnode__deadline_after(&dl, grace_ms);
    pthread_mutex_lock(&s->qlock);
    int timed_out = 0;
    while ((s->running || s->q_head) && !timed_out) {
        struct timespec rt;
        clock_gettime(CLOCK_REALTIME, &rt);
        rt.tv_nsec += 50 * 1000000;
        if (rt.tv_nsec >= 1000000000) {
            rt.tv_sec++;
            rt.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s->idle, &s->qlock, &rt);
        timed_out = cnode__past(&dl);
    }
    pthread_mutex_unlock(&s->qlock);
    return timed_out ? CNODE_ETIMEOUT : 0;
}
