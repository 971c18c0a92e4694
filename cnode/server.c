/* Serving BEAM: registered C functions called through erpc (spawn requests
 * for erpc:execute_call/execute_cast) and through the rex server (rpc's
 * gen_server protocol, erl_call and other ei clients). Requests are taken on
 * the I/O thread and run on a worker pool, so a slow handler never stalls the
 * loop; each erpc call gets a process whose exit carries the result, exactly
 * as erpc:execute_call does on a BEAM node. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    struct cnode_call_ctx *next, *anext;
    cnode_node *node;
    int kind;
    cnode_handler *h;
    void *ud;
    char mod[MAXATOMLEN_UTF8], fun[MAXATOMLEN_UTF8];
    char *args; /* 131 + the argument list */
    size_t args_len;
    int *idx;
    int n;
    cnode_proc *p;           /* erpc: the serving process */
    cnode__peer *caller_peer;
    char res[64];            /* erpc: Res as encoded */
    size_t res_len;
    erlang_pid reply_to;     /* rex */
    char *tag;               /* rex gen_call: the Tag term */
    size_t tag_len;
    _Atomic int cancelled;
    int answered;
    char cls[8];             /* "" for a return */
    ei_x_buff out;           /* the value or the reason, no 131 */
};
typedef struct cnode_call_ctx job;

typedef struct cnode__server {
    fn *fns;
    pthread_mutex_t qlock;
    pthread_cond_t qcond, idle;
    job *q_head, *q_tail;
    job *active; /* queued or running, under node->lock */
    int running;
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

static void
job_free(job *j)
{
    free(j->args);
    free(j->idx);
    free(j->tag);
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

/* The serving process exits with erpc's result tuple (node->lock held). */
static void
erpc_exit(cnode_node *node, cnode_proc *p, const char *res, size_t rlen, const char *cls, const char *val, size_t vlen,
          const char *mod, const char *fun, const char *args, size_t alen)
{
    ei_x_buff x;
    if (ei_x_new(&x) != 0)
        return;
    int with_stack = strcmp(cls, "error") == 0;
    ei_x_encode_tuple_header(&x, with_stack ? 4 : 3);
    ei_x_append_buf(&x, res, (int)rlen);
    cnode__x_atom(&x, cls[0] ? cls : "return");
    ei_x_append_buf(&x, val, (int)vlen);
    if (with_stack)
        x_mfa_stack(&x, mod, fun, args, alen);
    p->job = NULL;
    cnode__proc_finish(p, x.buff, (size_t)x.index);
    (void)node;
    ei_x_free(&x);
}

/* rpc's shapes: V, a thrown T, {badrpc, {'EXIT', R}} or {badrpc, {'EXIT', {R, Stack}}}. */
static void
x_rpc_result(ei_x_buff *x, const job *j, const char *cls, const char *val, size_t vlen)
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
        x_mfa_stack(x, j->mod, j->fun, j->args + 1, j->args_len - 1);
    } else {
        ei_x_append_buf(x, val, (int)vlen);
    }
}

static void
rex_answer(cnode_node *node, const job *j, const char *cls, const char *val, size_t vlen)
{
    ei_x_buff x;
    if (ei_x_new_with_version(&x) != 0)
        return;
    ei_x_encode_tuple_header(&x, 2);
    if (j->kind == J_REX_GEN_CALL)
        ei_x_append_buf(&x, j->tag, (int)j->tag_len);
    else
        cnode__x_atom(&x, "rex");
    x_rpc_result(&x, j, cls, val, vlen);
    cnode__send_term(node, &j->reply_to, x.buff, (size_t)x.index);
    ei_x_free(&x);
}

/* A finished job (node->lock held): its answer goes out unless nobody waits. */
static void
finish(cnode_node *node, job *j)
{
    server *s = srv(node);
    for (job **pp = &s->active; *pp; pp = &(*pp)->anext)
        if (*pp == j) {
            *pp = j->anext;
            break;
        }
    if (!j->answered) {
        ei_x_new(&j->out);
        cnode__x_atom(&j->out, "ok");
        j->cls[0] = 0;
    }
    switch (j->kind) {
    case J_ERPC_CALL:
        erpc_exit(node, j->p, j->res, j->res_len, j->cls, j->out.buff, (size_t)j->out.index, j->mod, j->fun,
                  j->args + 1, j->args_len - 1);
        break;
    case J_ERPC_CAST: {
        char normal[16];
        j->p->job = NULL;
        cnode__proc_finish(j->p, normal, cnode__enc_atom(normal, "normal"));
        break;
    }
    case J_REX_GEN_CALL:
    case J_REX_CALL:
        if (!atomic_load(&j->cancelled))
            rex_answer(node, j, j->cls, j->out.buff, (size_t)j->out.index);
        break;
    default:
        break;
    }
}

/* ---- worker pool ------------------------------------------------------------------------------------ */

static void *
worker_main(void *arg)
{
    cnode_node *node = arg;
    server *s = srv(node);
    for (;;) {
        pthread_mutex_lock(&s->qlock);
        while (!s->q_head && !s->stop)
            pthread_cond_wait(&s->qcond, &s->qlock);
        job *j = s->q_head;
        if (!j) {
            pthread_mutex_unlock(&s->qlock);
            return NULL;
        }
        s->q_head = j->next;
        if (!s->q_head)
            s->q_tail = NULL;
        s->running++;
        pthread_mutex_unlock(&s->qlock);

        cnode_args a = {.buf = j->args, .n = j->n, .idx = j->idx};
        j->h(j, &a, j->ud);

        pthread_mutex_lock(&node->lock);
        finish(node, j);
        pthread_mutex_unlock(&node->lock);
        job_free(j);
        pthread_mutex_lock(&s->qlock);
        s->running--;
        if (!s->running && !s->q_head)
            pthread_cond_broadcast(&s->idle);
        pthread_mutex_unlock(&s->qlock);
    }
}

static int
start_workers(cnode_node *node)
{
    server *s = srv(node);
    if (s->threads)
        return 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
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

/* node->lock held. */
static void
submit(cnode_node *node, job *j)
{
    server *s = srv(node);
    j->anext = s->active;
    s->active = j;
    pthread_mutex_lock(&s->qlock);
    j->next = NULL;
    if (s->q_tail)
        s->q_tail->next = j;
    else
        s->q_head = j;
    s->q_tail = j;
    pthread_cond_signal(&s->qcond);
    pthread_mutex_unlock(&s->qlock);
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

static void
reply_spawn(cnode_node *node, cnode__peer *peer, const cnode__ctl *c, cnode_proc *p, unsigned flags)
{
    cnode__ctl r = {.op = CNODE__OP_SPAWN_REPLY, .ref = c->ref, .spawn_flags = flags};
    r.to.pid = c->from.pid;
    r.from.pid = p->pid;
    cnode__send_ctl(node, peer, &r, NULL, 0);
    cnode__xpid from;
    cnode__xpid_of(node, &c->from.pid, &from, 1);
    if (flags & 1)
        cnode__add_link(p, &from);
    if (flags & 2)
        cnode__add_monby(p, &c->ref, &from, 0);
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
parse_execute(const cnode__ctl *c, int cast, const char **res, size_t *rlen, char *mod, char *fun, const char **a,
              size_t *alen)
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
        cnode__ctl r = {.op = CNODE__OP_SPAWN_REPLY, .ref = c->ref};
        r.to.pid = c->from.pid;
        r.from.is_name = 1;
        strcpy(r.from.name, "badarg");
        cnode__send_ctl(node, peer, &r, NULL, 0);
        return 1;
    }
    cnode_proc *p;
    if (s->draining || cnode__proc_new_locked(node, NULL, 1, &p) != 0) {
        cnode__ctl r = {.op = CNODE__OP_SPAWN_REPLY, .ref = c->ref};
        r.to.pid = c->from.pid;
        r.from.is_name = 1;
        strcpy(r.from.name, s->draining ? "notsup" : "system_limit");
        cnode__send_ctl(node, peer, &r, NULL, 0);
        return 1;
    }
    p->sys_handler = drop_msgs;
    reply_spawn(node, peer, c, p, cast ? 0 : wanted_flags(&c->opts));
    int n = list_length(a, alen);
    fn *f = n >= 0 ? find_fn(s, mod, fun, n) : NULL;
    job *j = f ? calloc(1, sizeof *j) : NULL;
    if (j && split_args(j, a, alen) != 0) {
        job_free(j);
        j = NULL;
        f = NULL;
    }
    if (!f) {
        if (cast) {
            cnode__log(node, CNODE_LOG_WARNING, "erpc:cast from %s to %s:%s/%d: undef", peer->name, mod, fun, n);
            char normal[16];
            cnode__proc_finish(p, normal, cnode__enc_atom(normal, "normal"));
        } else {
            char undef[16];
            size_t ul = cnode__enc_atom(undef, "undef");
            /* what erpc:execute_call gives for a missing function: error:undef with the MFA */
            erpc_exit(node, p, res, rlen, "error", undef, ul, mod, fun, n >= 0 ? a : "\x6a", n >= 0 ? alen : 1);
        }
        free(j);
        return 1;
    }
    j->node = node;
    j->kind = cast ? J_ERPC_CAST : J_ERPC_CALL;
    j->h = f->h;
    j->ud = f->ud;
    snprintf(j->mod, sizeof j->mod, "%s", mod);
    snprintf(j->fun, sizeof j->fun, "%s", fun);
    j->p = p;
    j->caller_peer = peer;
    if (res) {
        memcpy(j->res, res, rlen);
        j->res_len = rlen;
    }
    p->job = j;
    submit(node, j);
    return 1;
}

/* ---- rex ------------------------------------------------------------------------------------------------ */

/* {call|block_call, M, F, A, GL} -> job, or an immediate answer. */
static int
rex_call(cnode_node *node, const char *b, int idx, int kind, const erlang_pid *to, const char *tag, size_t tlen)
{
    server *s = srv(node);
    int arity;
    char op[MAXATOMLEN_UTF8], mod[MAXATOMLEN_UTF8], fun[MAXATOMLEN_UTF8];
    if (ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 5 || ei_decode_atom(b, &idx, op) < 0 ||
        (strcmp(op, "call") != 0 && strcmp(op, "block_call") != 0 && strcmp(op, "cast") != 0) ||
        ei_decode_atom(b, &idx, mod) < 0 || ei_decode_atom(b, &idx, fun) < 0)
        return -1;
    int as = idx;
    if (ei_skip_term(b, &idx) < 0)
        return -1;
    size_t alen = (size_t)(idx - as);
    int n = list_length(b + as, alen);
    if (n < 0)
        return -1;
    job *j = calloc(1, sizeof *j);
    if (!j)
        return -1;
    j->node = node;
    j->kind = strcmp(op, "cast") == 0 ? J_REX_CAST : kind;
    snprintf(j->mod, sizeof j->mod, "%s", mod);
    snprintf(j->fun, sizeof j->fun, "%s", fun);
    if (to)
        j->reply_to = *to;
    if (tag && (j->tag = malloc(tlen)) != NULL) {
        memcpy(j->tag, tag, tlen);
        j->tag_len = tlen;
    }
    if (split_args(j, b + as, alen) != 0) {
        job_free(j);
        return -1;
    }
    fn *f = find_fn(s, mod, fun, n);
    if (!f || s->draining) {
        if (j->kind != J_REX_CAST) {
            ei_x_buff r;
            ei_x_new(&r);
            if (!f) {
                cnode__x_atom(&r, "undef");
                rex_answer(node, j, "error", r.buff, (size_t)r.index);
            } else {
                cnode__x_atom(&r, "shutting_down");
                rex_answer(node, j, "exit", r.buff, (size_t)r.index);
            }
            ei_x_free(&r);
        }
        job_free(j);
        return 0;
    }
    j->h = f->h;
    j->ud = f->ud;
    submit(node, j);
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
        if (ei_skip_term(b, &idx) < 0 || rex_call(node, b, idx, J_REX_GEN_CALL, &from, b + ts, (size_t)(idx - ts)) != 0)
            goto bad;
        return 1;
    }
    idx = first;
    if (arity == 2 && ei_decode_atom(b, &idx, a) == 0 && strcmp(a, "$gen_cast") == 0) {
        if (rex_call(node, b, idx, J_REX_CAST, NULL, NULL, 0) != 0)
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
        if (ei_decode_tuple_header(b, &idx, &t3) == 0 && t3 == 3 && ei_decode_atom(b, &idx, a) == 0 &&
            strcmp(a, "sbcast") == 0) {
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
        if (rex_call(node, b, rs, J_REX_CALL, &from, NULL, 0) == 0)
            return 1;
    }
bad:
    cnode__log(node, CNODE_LOG_WARNING, "malformed message to rex from %s dropped", peer->name);
    return 1;
}

/* ---- hooks ------------------------------------------------------------------------------------------------ */

static int
server_ctl(cnode_node *node, cnode__peer *peer, const cnode__ctl *c, void *ud)
{
    (void)ud;
    switch (c->op) {
    case CNODE__OP_SPAWN_REQUEST:
    case CNODE__OP_SPAWN_REQUEST_TT:
        return serve_spawn(node, peer, c);
    case CNODE__OP_REG_SEND:
    case CNODE__OP_REG_SEND_TT:
        if (c->to.is_name && strcmp(c->to.name, "rex") == 0)
            return serve_rex(node, peer, c);
        return 0;
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
    if (up == 1)
        return;
    for (job *j = s->active; j; j = j->anext)
        if (j->caller_peer == peer || (j->kind >= J_REX_GEN_CALL && cnode__peer_get(node, j->reply_to.node, 0) == peer))
            atomic_store(&j->cancelled, 1);
}

int
cnode__server_start(cnode_node *node)
{
    server *s = calloc(1, sizeof *s);
    if (!s)
        return CNODE_ENOMEM;
    pthread_mutex_init(&s->qlock, NULL);
    pthread_cond_init(&s->qcond, NULL);
    pthread_cond_init(&s->idle, NULL);
    node->server = s;
    cnode__add_ctl_hook(node, server_ctl, s);
    cnode__add_peer_hook(node, server_peer, s);
    return 0;
}

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
    pthread_cond_broadcast(&s->qcond);
    pthread_mutex_unlock(&s->qlock);
    for (unsigned i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i], NULL);
    s->nthreads = 0;
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
    pthread_cond_destroy(&s->qcond);
    pthread_cond_destroy(&s->idle);
    free(s);
    node->server = NULL;
}

/* ---- public --------------------------------------------------------------------------------------------------- */

int
cnode_register_function(cnode_node *node, const char *mod, const char *fun, int arity, cnode_handler *handler,
                        void *user_data)
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
