/* C processes: pids, registered names, mailboxes, monitors, links and exit
 * signals, with Erlang's semantics. Everything here runs under node->lock. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "cnode/internal.h"
#include "cnode/terms.h"

/* ---- table -------------------------------------------------------------------------- */

static int
grow_table(cnode_node *node)
{
    size_t ncap = node->nprocs_cap ? node->nprocs_cap * 2 : 64;
    if (ncap > CNODE__MAX_PROCS)
        return CNODE_ENOMEM;
    cnode_proc **np = realloc(node->procs, ncap * sizeof *np);
    if (!np)
        return CNODE_ENOMEM;
    uint32_t *ns = realloc(node->serials, ncap * sizeof *ns);
    if (!ns) {
        node->procs = np;
        return CNODE_ENOMEM;
    }
    memset(np + node->nprocs_cap, 0, (ncap - node->nprocs_cap) * sizeof *np);
    memset(ns + node->nprocs_cap, 0, (ncap - node->nprocs_cap) * sizeof *ns);
    node->procs = np;
    node->serials = ns;
    node->nprocs_cap = ncap;
    return 0;
}

/* A free slot; slot 0 stays unused so no pid is <X.0.0>. */
static int
alloc_slot(cnode_node *node, uint32_t *num)
{
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = node->free_hint; i < node->nprocs_cap; i++)
            if (i > 0 && !node->procs[i]) {
                *num = (uint32_t)i;
                node->free_hint = (uint32_t)i + 1;
                return 0;
            }
        node->free_hint = 1;
        if (pass == 0 && node->nprocs_cap) {
            for (size_t i = 1; i < node->nprocs_cap; i++)
                if (!node->procs[i]) {
                    *num = (uint32_t)i;
                    node->free_hint = (uint32_t)i + 1;
                    return 0;
                }
        }
        int rc = grow_table(node);
        if (rc)
            return rc;
    }
    return CNODE_ENOMEM;
}

cnode_proc *
cnode__proc_by_name(cnode_node *node, const char *name)
{
    for (size_t i = 1; i < node->nprocs_cap; i++) {
        cnode_proc *p = node->procs[i];
        if (p && p->regname && p->state == PROC_ALIVE && strcmp(p->regname, name) == 0)
            return p;
    }
    return NULL;
}

int
cnode__proc_new_locked(cnode_node *node, const char *name, int sys, cnode_proc **out)
{
    if (name && (!*name || strlen(name) >= CNODE__NAME_MAX))
        return CNODE_EINVAL;
    if (name && (cnode__proc_by_name(node, name) || cnode__sys_name(name)))
        return CNODE_EEXIST;
    uint32_t num;
    int rc = alloc_slot(node, &num);
    if (rc)
        return rc;
    cnode_proc *p = calloc(1, sizeof *p);
    if (!p)
        return CNODE_ENOMEM;
    if (name && !(p->regname = strdup(name))) {
        free(p);
        return CNODE_ENOMEM;
    }
    p->node = node;
    p->num = num;
    p->serial = node->serials[num];
    p->sys = sys;
    p->wake_fd = -1;
    cnode__pid_make(&p->pid, node->name, num, p->serial, node->creation);
    cnode__cond_init(&p->cond);
    node->procs[num] = p;
    *out = p;
    return 0;
}

cnode_proc *
cnode__proc_by_pid(cnode_node *node, const erlang_pid *pid)
{
    if (strcmp(pid->node, node->name) != 0 || pid->creation != node->creation || pid->num >= node->nprocs_cap)
        return NULL;
    cnode_proc *p = node->procs[pid->num];
    return p && p->serial == pid->serial && p->state == PROC_ALIVE ? p : NULL;
}

int
cnode__pid_is_stale_local(cnode_node *node, const erlang_pid *pid)
{
    return strcmp(pid->node, node->name) == 0 && pid->creation != node->creation;
}

/* A queued message holds a reference on its sender's peer record. */
static void
msg_free(cnode__mbox_msg *m)
{
    if (m->has_from)
        cnode__peer_release(m->from.peer);
    free(m->data);
    free(m);
}

static void
mbox_free(cnode__mbox_msg *m)
{
    while (m) {
        cnode__mbox_msg *nx = m->next;
        msg_free(m);
        m = nx;
    }
}

/* Links, monitors and monitored-by entries hold a reference on the peer
 * record of the pid (or name) they name, taken when stored, dropped here. */
static void
link_put(const cnode__link *l)
{
    cnode__peer_release(l->pid.peer);
}

/* ---- monitor references --------------------------------------------------------------------- */

/* Keeps r in *m, its node borrowed from one of names (NULL ends them; each outlives the record)
 * when it is one of them, else copied. 0 or CNODE_ENOMEM. */
static int
mref_set(cnode__mref *m, const erlang_ref *r, const char *const *names)
{
    memset(m, 0, sizeof *m);
    m->len = r->len < 0 ? 0 : r->len > 5 ? 5 : r->len;
    memcpy(m->n, r->n, sizeof m->n);
    m->creation = r->creation;
    for (; *names; names++)
        if (strcmp(*names, r->node) == 0) {
            m->node = *names;
            return 0;
        }
    if (!(m->own = strdup(r->node)))
        return CNODE_ENOMEM;
    m->node = m->own;
    return 0;
}

static void
mref_get(const cnode__mref *m, erlang_ref *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->node, sizeof out->node, "%s", m->node);
    out->len = m->len;
    memcpy(out->n, m->n, sizeof out->n);
    out->creation = m->creation;
}

/* As cnode__ref_eq compares two erlang_refs. */
static int
mref_is(const cnode__mref *m, const erlang_ref *r)
{
    if (m->len != r->len || m->creation != r->creation || strcmp(m->node, r->node) != 0)
        return 0;
    for (int i = 0; i < m->len; i++)
        if (m->n[i] != r->n[i])
            return 0;
    return 1;
}

static int
mref_eq(const cnode__mref *a, const cnode__mref *b)
{
    if (a->len != b->len || a->creation != b->creation || strcmp(a->node, b->node) != 0)
        return 0;
    for (int i = 0; i < a->len; i++)
        if (a->n[i] != b->n[i])
            return 0;
    return 1;
}

static void
mon_put(const cnode__mon *m)
{
    cnode__peer_release(m->target.peer);
    cnode__peer_release(m->name_peer);
    free(m->ref.own);
}

static void
monby_put(const cnode__monby *mb)
{
    cnode__peer_release(mb->watcher.peer);
    free(mb->ref.own);
}

static void
free_proc(cnode_node *node, cnode_proc *p)
{
    node->procs[p->num] = NULL;
    node->serials[p->num] = p->serial + 1; /* a reused slot gives a new pid */
    mbox_free(p->mq_head);
    for (size_t i = 0; i < p->nmons; i++) {
        mon_put(&p->mons[i]);
        free(p->mons[i].name);
    }
    for (size_t i = 0; i < p->nlinks; i++)
        link_put(&p->links[i]);
    for (size_t i = 0; i < p->nmonby; i++)
        monby_put(&p->monby[i]);
    free(p->links);
    free(p->mons);
    free(p->monby);
    free(p->regname);
    ei_x_free(&p->exit_reason);
    pthread_cond_destroy(&p->cond);
    cnode__peer_release(p->last_peer);
    free(p);
}

/* ---- mailbox ------------------------------------------------------------------------ */

/* The process whose receiver this thread is while it reads a socket (receive below): what it
 * delivers to its own mailbox it sees without a wake-up. */
static _Thread_local cnode_proc *reading_self;

/* The eventfd a thread reading as a receiver also waits on: one per thread (not per process: a
 * node may have far more processes than descriptors), made on first need, closed when the
 * thread ends. */
static pthread_key_t wake_key;
static pthread_once_t wake_once = PTHREAD_ONCE_INIT;
static _Thread_local int thread_wake = -1;

static void
wake_close(void *v)
{
    close((int)(intptr_t)v - 1);
}

static void
wake_key_make(void)
{
    if (pthread_key_create(&wake_key, wake_close) != 0)
        wake_key = (pthread_key_t)-1;
}

static int
thread_wake_fd(void)
{
    if (thread_wake >= 0)
        return thread_wake;
    pthread_once(&wake_once, wake_key_make);
    if (wake_key == (pthread_key_t)-1)
        return -1;
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd >= 0 && pthread_setspecific(wake_key, (void *)(intptr_t)(fd + 1)) != 0) {
        close(fd);
        fd = -1;
    }
    return thread_wake = fd;
}

/* p's receiver reads a socket instead of sleeping on p->cond: wake it through its thread's eventfd. */
static void
kick(cnode_proc *p)
{
    if (p->leading && p != reading_self && p->wake_fd >= 0) {
        uint64_t one = 1;
        while (write(p->wake_fd, &one, sizeof one) < 0 && errno == EINTR)
            ;
    }
}

/* The message that would pass limits.mailbox_len ends the process with
 * reason system_limit, as BEAM's max_heap_size kills a process: its links and
 * monitors fire, its queued messages are freed (a dead process has no
 * mailbox), and cnode_receive() returns CNODE_EEXITED. */
static void
mailbox_kill(cnode_proc *p)
{
    cnode_node *node = p->node;
    mbox_free(p->mq_head);
    p->mq_head = p->mq_tail = NULL;
    p->mq_len = 0;
    CNODE__STAT_ADD(node, mailbox_kills, 1);
    cnode__log(node, CNODE_LOG_WARNING, "<%u.%u> killed with system_limit: %zu messages queued, the mailbox limit", p->num,
               p->serial, node->limits.mailbox_len);
    char r[16];
    cnode__proc_die(p, r, cnode__enc_atom(r, "system_limit")); /* may free p */
}

void
cnode__deliver(cnode_proc *p, const cnode__xpid *from, const char *data, size_t len)
{
    if (p->state != PROC_ALIVE)
        return;
    if (p->sys_handler) {
        p->sys_handler(p, from, data, len); /* handled on the loop thread: nothing queues */
        return;
    }
    if (p->mq_len >= p->node->limits.mailbox_len) {
        mailbox_kill(p);
        return;
    }
    cnode__mbox_msg *m = malloc(sizeof *m);
    char *d = malloc(len);
    if (!m || !d) {
        free(m);
        free(d);
        cnode__log(p->node, CNODE_LOG_ERROR, "out of memory: message to <%u.%u> dropped", p->num, p->serial);
        return;
    }
    memcpy(d, data, len);
    m->next = NULL;
    m->has_from = from != NULL;
    if (from) {
        m->from = *from;
        cnode__peer_hold(from->peer);
    }
    m->data = d;
    m->len = len;
    if (p->mq_tail)
        p->mq_tail->next = m;
    else
        p->mq_head = m;
    p->mq_tail = m;
    p->mq_len++;
    pthread_cond_signal(&p->cond);
    kick(p);
}

/* Deliver a term given without its 131. */
static void
deliver_raw(cnode_proc *p, const cnode__xpid *from, const char *term, size_t len)
{
    char *b = malloc(len + 1);
    if (!b)
        return;
    b[0] = (char)131;
    memcpy(b + 1, term, len);
    cnode__deliver(p, from, b, len + 1);
    free(b);
}

/* ---- signals to peers ---------------------------------------------------------------- */

static void
send_payload_ctl(cnode_node *node, cnode__peer *peer, cnode__ctl *c, const char *term, size_t len)
{
    ei_x_buff x;
    if (ei_x_new(&x) != 0)
        return;
    if (cnode__ctl_encode(&x, c, len + 1) == 0 && ei_x_append_buf(&x, "\x83", 1) == 0)
        cnode__send_frame(node, peer, x.buff, (size_t)x.index, term, len);
    ei_x_free(&x);
}

static void
pid_or_name(cnode__pid_or_name *o, const erlang_pid *pid, const char *name)
{
    memset(o, 0, sizeof *o);
    if (name) {
        o->is_name = 1;
        snprintf(o->name, sizeof o->name, "%s", name);
    } else {
        o->pid = *pid;
    }
}

/* ---- death ---------------------------------------------------------------------------- */

static void exit_signal_in(cnode_proc *p, const cnode__xpid *from, const char *reason, size_t rlen, int via_link);

static void
remove_monby(cnode_proc *p, const erlang_ref *ref)
{
    for (size_t i = 0; i < p->nmonby; i++)
        if (mref_is(&p->monby[i].ref, ref)) {
            monby_put(&p->monby[i]);
            p->monby[i] = p->monby[--p->nmonby];
            return;
        }
}

static void
remove_link(cnode_proc *p, const cnode__xpid *who)
{
    for (size_t i = 0; i < p->nlinks; i++)
        if (cnode__xpid_eq(&p->links[i].pid, who)) {
            link_put(&p->links[i]);
            p->links[i] = p->links[--p->nlinks];
            return;
        }
}

static void
deliver_down(cnode_proc *w, const cnode__mon *m, const char *reason, size_t rlen)
{
    cnode_node *node = w->node;
    ei_x_buff x;
    if (ei_x_new(&x) != 0)
        return;
    erlang_ref ref;
    mref_get(&m->ref, &ref);
    ei_x_encode_tuple_header(&x, 5);
    cnode__x_atom(&x, "DOWN");
    ei_x_encode_ref(&x, &ref);
    cnode__x_atom(&x, "process");
    if (m->by_name) {
        ei_x_encode_tuple_header(&x, 2);
        cnode__x_atom(&x, m->name);
        cnode__x_atom(&x, m->name_peer ? m->name_peer->name : node->name);
    } else {
        erlang_pid t;
        cnode__xpid_to_pid(node, &m->target, &t);
        ei_x_encode_pid(&x, &t);
    }
    ei_x_append_buf(&x, reason, (int)rlen);
    deliver_raw(w, NULL, x.buff, (size_t)x.index);
    ei_x_free(&x);
}

static void
deliver_exit_msg(cnode_proc *p, const cnode__xpid *from, const char *reason, size_t rlen)
{
    ei_x_buff x;
    if (ei_x_new(&x) != 0)
        return;
    erlang_pid fp;
    cnode__xpid_to_pid(p->node, from, &fp);
    ei_x_encode_tuple_header(&x, 3);
    cnode__x_atom(&x, "EXIT");
    ei_x_encode_pid(&x, &fp);
    ei_x_append_buf(&x, reason, (int)rlen);
    deliver_raw(p, from, x.buff, (size_t)x.index);
    ei_x_free(&x);
}

void
cnode__proc_die(cnode_proc *p, const char *reason, size_t rlen)
{
    cnode_node *node = p->node;
    if (p->state != PROC_ALIVE)
        return;
    p->state = PROC_DEAD;
    ei_x_free(&p->exit_reason);
    if (ei_x_new_with_version(&p->exit_reason) == 0)
        ei_x_append_buf(&p->exit_reason, reason, (int)rlen);
    pthread_cond_broadcast(&p->cond);
    kick(p);
    cnode__xpid self = {NULL, p->num, p->serial, node->creation};

    /* our own monitors end quietly */
    for (size_t i = 0; i < p->nmons; i++) {
        cnode__mon *m = &p->mons[i];
        cnode__peer *peer = m->by_name ? m->name_peer : m->target.peer;
        if (peer) {
            cnode__ctl c = {.op = CNODE__OP_DEMONITOR_P};
            pid_or_name(&c.from, &p->pid, NULL);
            if (m->by_name) {
                pid_or_name(&c.to, NULL, m->name);
            } else {
                cnode__xpid_to_pid(node, &m->target, &c.to.pid);
            }
            mref_get(&m->ref, &c.ref);
            if (peer->up)
                cnode__send_ctl(node, peer, &c, NULL, 0);
        } else {
            cnode_proc *t = m->by_name ? cnode__proc_by_name(node, m->name) : NULL;
            if (!m->by_name) {
                erlang_pid tp;
                cnode__xpid_to_pid(node, &m->target, &tp);
                t = cnode__proc_by_pid(node, &tp);
            }
            if (t) {
                erlang_ref r;
                mref_get(&m->ref, &r);
                remove_monby(t, &r);
            }
        }
        mon_put(m);
        free(m->name);
    }
    p->nmons = 0;

    /* watchers get DOWN */
    for (size_t i = 0; i < p->nmonby; i++) {
        cnode__monby *mb = &p->monby[i];
        if (mb->watcher.peer) {
            cnode__ctl c = {.op = CNODE__OP_PAYLOAD_MONITOR_P_EXIT};
            pid_or_name(&c.from, &p->pid, mb->by_name && p->regname ? p->regname : NULL);
            cnode__xpid_to_pid(node, &mb->watcher, &c.to.pid);
            mref_get(&mb->ref, &c.ref);
            if (mb->watcher.peer->up)
                send_payload_ctl(node, mb->watcher.peer, &c, reason, rlen);
            monby_put(mb);
        } else {
            erlang_pid wp;
            cnode__xpid_to_pid(node, &mb->watcher, &wp);
            cnode_proc *w = cnode__proc_by_pid(node, &wp);
            for (size_t j = 0; w && j < w->nmons; j++)
                if (mref_eq(&w->mons[j].ref, &mb->ref)) {
                    cnode__mon m = w->mons[j];
                    w->mons[j] = w->mons[--w->nmons];
                    deliver_down(w, &m, reason, rlen);
                    mon_put(&m);
                    free(m.name);
                    break;
                }
            monby_put(mb); /* holds no peer: frees a copied reference node */
        }
    }
    p->nmonby = 0;

    /* linked processes get an exit signal; unlinking links are already gone */
    cnode__link *links = p->links;
    size_t nlinks = p->nlinks;
    p->links = NULL;
    p->nlinks = p->caplinks = 0;
    for (size_t i = 0; i < nlinks; i++) {
        if (links[i].unlink_id) {
            link_put(&links[i]);
            continue;
        }
        if (links[i].pid.peer) {
            cnode__ctl c = {.op = CNODE__OP_PAYLOAD_EXIT};
            pid_or_name(&c.from, &p->pid, NULL);
            cnode__xpid_to_pid(node, &links[i].pid, &c.to.pid);
            if (links[i].pid.peer->up)
                send_payload_ctl(node, links[i].pid.peer, &c, reason, rlen);
            link_put(&links[i]);
        } else {
            erlang_pid lp;
            cnode__xpid_to_pid(node, &links[i].pid, &lp);
            cnode_proc *l = cnode__proc_by_pid(node, &lp);
            if (l)
                exit_signal_in(l, &self, reason, rlen, 1);
        }
    }
    free(links);
    free(p->regname);
    p->regname = NULL;
    if (p->closed)
        free_proc(node, p);
}

void
cnode__proc_finish(cnode_proc *p, const char *reason, size_t rlen)
{
    p->closed = 1;
    if (p->state == PROC_ALIVE)
        cnode__proc_die(p, reason, rlen);
    else
        free_proc(p->node, p);
}

/* An exit signal arriving at p (protocol: EXIT via a link, or exit/2). */
static void
exit_signal_in(cnode_proc *p, const cnode__xpid *from, const char *reason, size_t rlen, int via_link)
{
    if (p->state != PROC_ALIVE)
        return;
    if (via_link) {
        size_t i;
        for (i = 0; i < p->nlinks; i++)
            if (cnode__xpid_eq(&p->links[i].pid, from))
                break;
        if (i == p->nlinks || p->links[i].unlink_id)
            return; /* not linked (any more): OTP ignores it */
        link_put(&p->links[i]); /* from is the caller's: it stays valid */
        p->links[i] = p->links[--p->nlinks];
    } else if (cnode__term_is_atom(reason, rlen, "kill")) {
        char killed[16];
        size_t kl = cnode__enc_atom(killed, "killed");
        cnode__proc_die(p, killed, kl);
        return;
    }
    if (p->trap_exit) {
        deliver_exit_msg(p, from, reason, rlen);
        return;
    }
    if (cnode__term_is_atom(reason, rlen, "normal"))
        return;
    cnode__proc_die(p, reason, rlen);
}

void
cnode__signal_exit(cnode_proc *p, const cnode__xpid *from, const char *reason, size_t rlen, int via_link)
{
    exit_signal_in(p, from, reason, rlen, via_link);
}

void
cnode__proc_exit_all(cnode_node *node, const char *reason)
{
    char r[64];
    size_t rl = cnode__enc_atom(r, reason);
    for (size_t i = 1; i < node->nprocs_cap; i++)
        if (node->procs[i])
            cnode__proc_die(node->procs[i], r, rl);
}

void
cnode__proc_reap_all(cnode_node *node)
{
    for (size_t i = 1; i < node->nprocs_cap; i++)
        if (node->procs[i])
            free_proc(node, node->procs[i]);
    free(node->serials);
    node->serials = NULL;
}

/* The connection to peer is gone: monitors fire noconnection, links break. */
void
cnode__peer_down(cnode_node *node, cnode__peer *peer)
{
    char nc[32];
    size_t ncl = cnode__enc_atom(nc, "noconnection");
    for (size_t i = 1; i < node->nprocs_cap; i++) {
        cnode_proc *p = node->procs[i];
        if (p && p->last_peer == peer) { /* its receiver has no link to read any more */
            cnode__peer_release(peer);
            p->last_peer = NULL;
        }
        if (!p || p->state != PROC_ALIVE)
            continue;
        for (size_t j = 0; j < p->nmonby;)
            if (p->monby[j].watcher.peer == peer) {
                monby_put(&p->monby[j]);
                p->monby[j] = p->monby[--p->nmonby];
            } else {
                j++;
            }
        for (size_t j = 0; j < p->nmons;) {
            cnode__mon *m = &p->mons[j];
            if ((m->by_name ? m->name_peer : m->target.peer) == peer) {
                cnode__mon copy = *m;
                p->mons[j] = p->mons[--p->nmons];
                deliver_down(p, &copy, nc, ncl);
                mon_put(&copy);
                free(copy.name);
            } else {
                j++;
            }
        }
        for (size_t j = 0; j < p->nlinks && p->state == PROC_ALIVE;) {
            if (p->links[j].pid.peer == peer) {
                cnode__xpid who = p->links[j].pid;
                if (p->links[j].unlink_id) {
                    link_put(&p->links[j]);
                    p->links[j] = p->links[--p->nlinks];
                    continue;
                }
                exit_signal_in(p, &who, nc, ncl, 1); /* removes the link */
            } else {
                j++;
            }
        }
    }
}

/* ---- public ----------------------------------------------------------------------------- */

int
cnode_proc_new(cnode_node *node, const char *name, cnode_proc **out)
{
    if (!node || !out)
        return CNODE_EINVAL;
    pthread_mutex_lock(&node->lock);
    int rc = atomic_load(&node->stopping) ? CNODE_ECLOSED : cnode__proc_new_locked(node, name, 0, out);
    pthread_mutex_unlock(&node->lock);
    return rc;
}

const erlang_pid *
cnode_proc_pid(const cnode_proc *proc)
{
    return &proc->pid;
}

cnode_node *
cnode_proc_node(const cnode_proc *proc)
{
    return proc->node;
}

void
cnode_proc_exit(cnode_proc *proc, const ei_x_buff *reason)
{
    if (!proc)
        return;
    cnode_node *node = proc->node;
    const char *r;
    size_t rl;
    char normal[16];
    if (!reason || cnode__strip_version(reason, &r, &rl) != 0) {
        rl = cnode__enc_atom(normal, "normal");
        r = normal;
    }
    pthread_mutex_lock(&node->lock);
    proc->closed = 1;
    if (proc->state == PROC_ALIVE)
        cnode__proc_die(proc, r, rl); /* frees it: closed is set */
    else
        free_proc(node, proc);
    pthread_mutex_unlock(&node->lock);
}

void
cnode_proc_close(cnode_proc *proc)
{
    cnode_proc_exit(proc, NULL);
}

int
cnode_register(cnode_proc *proc, const char *name)
{
    if (!proc || !name || !*name || strlen(name) >= CNODE__NAME_MAX)
        return CNODE_EINVAL;
    cnode_node *node = proc->node;
    pthread_mutex_lock(&node->lock);
    int rc = 0;
    if (proc->state != PROC_ALIVE)
        rc = CNODE_EEXITED;
    else if (proc->regname || cnode__proc_by_name(node, name) || cnode__sys_name(name))
        rc = CNODE_EEXIST;
    else if (!(proc->regname = strdup(name)))
        rc = CNODE_ENOMEM;
    pthread_mutex_unlock(&node->lock);
    return rc;
}

int
cnode_unregister(cnode_node *node, const char *name)
{
    if (!node || !name)
        return CNODE_EINVAL;
    pthread_mutex_lock(&node->lock);
    cnode_proc *p = cnode__proc_by_name(node, name);
    if (p) {
        free(p->regname);
        p->regname = NULL;
    }
    pthread_mutex_unlock(&node->lock);
    return p ? 0 : CNODE_ENOTFOUND;
}

int
cnode_proc_trap_exit(cnode_proc *proc, int on)
{
    if (!proc)
        return CNODE_EINVAL;
    pthread_mutex_lock(&proc->node->lock);
    proc->trap_exit = on != 0;
    pthread_mutex_unlock(&proc->node->lock);
    return 0;
}

int
cnode_proc_alive(cnode_proc *proc, ei_x_buff *reason)
{
    if (!proc)
        return 0;
    pthread_mutex_lock(&proc->node->lock);
    int alive = proc->state == PROC_ALIVE;
    if (!alive && reason && proc->exit_reason.buff)
        ei_x_append_buf(reason, proc->exit_reason.buff, proc->exit_reason.index);
    pthread_mutex_unlock(&proc->node->lock);
    return alive;
}

/* ---- sending ------------------------------------------------------------------------------ */

static int
send_msg(cnode_proc *from, const erlang_pid *to, const char *name, const char *nodename, const ei_x_buff *msg)
{
    if (!from || !msg || (!to && !name))
        return CNODE_EINVAL;
    const char *t;
    size_t tl;
    if (cnode__strip_version(msg, &t, &tl) != 0)
        return CNODE_EINVAL;
    cnode_node *node = from->node;
    if (name && (!*name || strlen(name) >= MAXATOMLEN))
        return CNODE_EINVAL;
    if (!nodename)
        nodename = to ? to->node : node->name;
    int local = cnode__is_local(node, nodename);
    pthread_mutex_lock(&node->lock);
    if (from->state != PROC_ALIVE) {
        pthread_mutex_unlock(&node->lock);
        return CNODE_EEXITED;
    }
    cnode__xpid self = {NULL, from->num, from->serial, node->creation};
    if (local) {
        cnode_proc *p = to ? cnode__proc_by_pid(node, to) : cnode__proc_by_name(node, name);
        if (p)
            deliver_raw(p, &self, t, tl);
        pthread_mutex_unlock(&node->lock);
        return 0; /* a message to a dead local process vanishes, as in Erlang */
    }
    cnode__peer *peer = cnode__peer_get(node, nodename, 1);
    uint64_t flags = peer && peer->up ? peer->flags : 0;
    cnode__peer_hold(peer); /* until the frame is written or queued */
    if (peer && from->last_peer != peer) { /* where this process's receiver reads (receive) */
        cnode__peer_release(from->last_peer);
        cnode__peer_hold(peer);
        from->last_peer = peer;
    }
    pthread_mutex_unlock(&node->lock);
    if (!peer)
        return CNODE_EINVAL;
    cnode__ctl c = {0};
    if (to) {
        /* before the handshake we cannot know SEND_SENDER: use plain SEND */
        c.op = (flags & CNODE__DFLAG_SEND_SENDER) ? CNODE__OP_SEND_SENDER : CNODE__OP_SEND;
        c.to.pid = *to;
    } else {
        c.op = CNODE__OP_REG_SEND;
        c.to.is_name = 1;
        snprintf(c.to.name, sizeof c.to.name, "%s", name);
    }
    c.from.pid = from->pid;
    ei_x_buff x;
    int rc = CNODE_ENOMEM;
    if (ei_x_new(&x) == 0) {
        rc = CNODE_EINVAL;
        if (cnode__ctl_encode(&x, &c, tl + 1) == 0 && ei_x_append_buf(&x, "\x83", 1) == 0)
            rc = cnode__send_frame_wait(node, peer, x.buff, (size_t)x.index, t, tl);
        ei_x_free(&x);
    }
    cnode__peer_release(peer);
    return rc;
}

int
cnode_send(cnode_proc *from, const erlang_pid *to, const ei_x_buff *msg)
{
    if (!to)
        return CNODE_EINVAL;
    return send_msg(from, to, NULL, NULL, msg);
}

int
cnode_reg_send(cnode_proc *from, const char *name, const char *node, const ei_x_buff *msg)
{
    if (!name)
        return CNODE_EINVAL;
    return send_msg(from, NULL, name, node, msg);
}

/* ---- receiving ------------------------------------------------------------------------------ */

void
cnode_msg_free(cnode_msg *msg)
{
    if (!msg)
        return;
    if (msg->data.buff)
        free(msg->data.buff);
    memset(msg, 0, sizeof *msg);
}

static int
matches_ref(const char *data, size_t len, const erlang_ref *ref)
{
    (void)len;
    int idx = 0, arity, ver;
    if (ei_decode_version(data, &idx, &ver) < 0 || ei_decode_tuple_header(data, &idx, &arity) < 0 || arity < 1)
        return 0;
    for (int k = 0; k < 2 && k < arity; k++) {
        int type, size;
        ei_get_type(data, &idx, &type, &size);
        if (type == ERL_NEW_REFERENCE_EXT || type == ERL_REFERENCE_EXT || type == ERL_NEWER_REFERENCE_EXT) {
            erlang_ref r;
            if (ei_decode_ref(data, &idx, &r) < 0)
                return 0;
            if (cnode__ref_eq(&r, ref))
                return 1;
            continue;
        }
        if (type == ERL_LIST_EXT && k == 0) { /* [alias|Ref] */
            int save = idx, n;
            char a[MAXATOMLEN_UTF8];
            erlang_ref r;
            if (ei_decode_list_header(data, &idx, &n) == 0 && n == 1 && ei_decode_atom(data, &idx, a) == 0 &&
                strcmp(a, "alias") == 0 && ei_decode_ref(data, &idx, &r) == 0 && cnode__ref_eq(&r, ref))
                return 1;
            idx = save;
        }
        if (ei_skip_term(data, &idx) < 0)
            return 0;
    }
    return 0;
}

/* ---- receivers that read (leader/follower) ---------------------------------------------------
 * In I/O-thread mode a receiver with an empty mailbox reads the link its message most likely
 * comes on (the peer this process last sent to, else the node's only link) when nobody else
 * reads it, as cnode_call's callers do (conn.c): plain messages to mailboxes without callbacks
 * (its own and others') and erpc replies it delivers itself; every other frame goes to the loop
 * unchanged, after which this receiver sleeps on its condition variable as before. */

int
cnode__proc_claim(cnode_node *node, const cnode__ctl *c)
{
    int sender = c->op == CNODE__OP_SEND_SENDER || c->op == CNODE__OP_SEND_SENDER_TT;
    if ((!sender && c->op != CNODE__OP_SEND && c->op != CNODE__OP_SEND_TT) || c->to.is_name || !c->msg)
        return 0;
    cnode_proc *p = cnode__proc_by_pid(node, &c->to.pid);
    /* the runtime's own processes (hooks, callbacks), the dead, and the mailbox limit's kill
     * follow the loop's rules there */
    if (!p || p->sys || p->sys_handler || p->state != PROC_ALIVE || p->mq_len >= node->limits.mailbox_len)
        return 0;
    cnode__xpid from = {0};
    if (!c->from.is_name && c->from.pid.node[0] && cnode__xpid_of(node, &c->from.pid, &from, 1) != 0)
        return 0; /* a sender over the peers limit: the loop drops the link */
    cnode__deliver(p, sender ? &from : NULL, c->msg, c->msg_len);
    return 1;
}

#define RX_RETRY_MS 1 /* a receiver finding the loop reading its link looks again after this */

typedef struct {
    cnode_proc *proc;
    const erlang_ref *ref;
} rx_wait;

/* node->lock held: where the list holds the first message receive takes (ref: the first that
 * carries it), with the message before it in *prev; NULL there if there is none. */
static cnode__mbox_msg **
mbox_find(cnode_proc *proc, const erlang_ref *ref, cnode__mbox_msg **prev)
{
    cnode__mbox_msg **pp = &proc->mq_head;
    *prev = NULL;
    while (*pp && ref && !matches_ref((*pp)->data, (*pp)->len, ref)) {
        *prev = *pp;
        pp = &(*pp)->next;
    }
    return pp;
}

static int
rx_ready(cnode_proc *proc, const erlang_ref *ref)
{
    cnode__mbox_msg *prev;
    return proc->state != PROC_ALIVE || *mbox_find(proc, ref, &prev) != NULL;
}

static int
rx_done(void *arg)
{
    rx_wait *w = arg;
    return rx_ready(w->proc, w->ref);
}

/* node->lock held: the peer whose link proc's receiver reads, or NULL. */
static cnode__peer *
rx_peer(cnode_node *node, cnode_proc *proc)
{
    if (proc->last_peer)
        return proc->last_peer;
    cnode__conn *one = NULL;
    for (cnode__conn *c = node->conns; c; c = c->next) {
        if (c->state != CONN_UP)
            continue;
        if (one)
            return NULL; /* several: no telling */
        one = c;
    }
    return one ? one->peer : NULL;
}

/* node->lock held, I/O-thread mode, mailbox empty: read peer's link until proc has what it waits
 * for, the deadline, or a frame for the loop. 1: done (look at the mailbox); 0: no link to read
 * (sleep); 2: the loop reads it now (sleep a little, until it let go, then look again); -1:
 * frames for the loop, the link failed or the deadline passed: follow for the rest of this
 * receive (the loop takes a failed link down once nobody reads it for 2 ms, and a receiver
 * trying again and again under traffic for others would only contend with the loop for it). */
static int
rx_lead(cnode_node *node, cnode_proc *proc, const erlang_ref *ref, const struct timespec *deadline)
{
    cnode__peer *peer = rx_peer(node, proc);
    if (!peer)
        return 0;
    int wake = thread_wake_fd();
    cnode__conn *c = wake >= 0 ? cnode__conn_take_locked(node, peer) : NULL;
    if (!c)
        return peer->up && atomic_load(&peer->up->rtoken) == RT_LOOP ? 2 : 0;
    rx_wait w = {proc, ref};
    proc->wake_fd = wake;
    proc->leading = 1; /* from here a delivery from elsewhere writes wake */
    cnode__peer_hold(peer);
    pthread_mutex_unlock(&node->lock);
    cnode__conn_disarm(node, peer, c);
    reading_self = proc;
    int ok = cnode__conn_lead_ex(node, peer, c, CNODE__LEAD_ERPC | CNODE__LEAD_MSGS, wake, rx_done, NULL, &w,
                                 deadline);
    reading_self = NULL;
    cnode__conn_release(node, peer, c); /* also on a timeout: the loop (or the next reader) goes on */
    pthread_mutex_lock(&node->lock);
    proc->leading = 0;
    proc->wake_fd = -1;
    cnode__peer_release(peer);
    return ok ? 1 : -1;
}

static int
receive(cnode_proc *proc, const erlang_ref *ref, int timeout_ms, cnode_msg *out)
{
    if (!proc || !out)
        return CNODE_EINVAL;
    cnode_node *node = proc->node;
    struct timespec dl;
    if (timeout_ms > 0)
        cnode__deadline_after(&dl, timeout_ms);
    int may_lead = 1;
    pthread_mutex_lock(&node->lock);
    for (;;) {
        cnode__mbox_msg *prev;
        cnode__mbox_msg **pp = mbox_find(proc, ref, &prev);
        if (*pp) {
            cnode__mbox_msg *m = *pp;
            *pp = m->next;
            if (proc->mq_tail == m)
                proc->mq_tail = prev;
            proc->mq_len--;
            pthread_mutex_unlock(&node->lock);
            memset(out, 0, sizeof *out);
            out->data.buff = m->data;
            out->data.buffsz = (int)m->len;
            out->data.index = (int)m->len;
            out->has_from = m->has_from;
            if (m->has_from)
                cnode__xpid_to_pid(node, &m->from, &out->from);
            m->data = NULL; /* the caller's now */
            msg_free(m);
            return 0;
        }
        if (proc->state != PROC_ALIVE) {
            pthread_mutex_unlock(&node->lock);
            return proc->closed ? CNODE_ECLOSED : CNODE_EEXITED;
        }
        if (timeout_ms == 0 || (timeout_ms > 0 && cnode__past(&dl))) {
            pthread_mutex_unlock(&node->lock);
            return CNODE_ETIMEOUT;
        }
        if (!node->has_io_thread) {
            /* app-driven mode: this thread runs the loop while it waits */
            pthread_mutex_unlock(&node->lock);
            int step = 20;
            if (timeout_ms > 0) {
                int64_t left = (dl.tv_sec * 1000 + dl.tv_nsec / 1000000) - cnode__now_ms();
                step = left < step ? (int)(left > 0 ? left : 0) : step;
            }
            cnode_poll(node, step);
            pthread_mutex_lock(&node->lock);
        } else {
            int led = may_lead ? rx_lead(node, proc, ref, timeout_ms > 0 ? &dl : NULL) : 0;
            if (led == -1)
                may_lead = 0;
            if (led == 1 || led == -1)
                continue;
            /* asleep: whoever reads the link this process expects from next should be the loop */
            cnode__peer *expect = proc->last_peer;
            cnode__peer_hold(expect);
            if (expect)
                expect->loop_waits++;
            struct timespec soon, *until = timeout_ms > 0 ? &dl : NULL;
            if (led == 2) { /* the loop lets go of the link within a turn: then read it ourselves */
                cnode__deadline_after(&soon, RX_RETRY_MS);
                if (!until || soon.tv_sec < dl.tv_sec || (soon.tv_sec == dl.tv_sec && soon.tv_nsec < dl.tv_nsec))
                    until = &soon;
            }
            cnode__cond_wait_until(&proc->cond, &node->lock, until);
            if (expect)
                expect->loop_waits--;
            cnode__peer_release(expect);
        }
    }
}

int
cnode_receive(cnode_proc *proc, int timeout_ms, cnode_msg *out)
{
    return receive(proc, NULL, timeout_ms, out);
}

int
cnode_receive_ref(cnode_proc *proc, const erlang_ref *ref, int timeout_ms, cnode_msg *out)
{
    if (!ref)
        return CNODE_EINVAL;
    return receive(proc, ref, timeout_ms, out);
}

/* ---- monitors, links ----------------------------------------------------------------------- */

static int
add_mon(cnode_proc *p, const cnode__mon *m)
{
    if (p->nmons == p->capmons) {
        size_t nc = p->capmons ? p->capmons * 2 : 4;
        cnode__mon *nm = realloc(p->mons, nc * sizeof *nm);
        if (!nm)
            return CNODE_ENOMEM;
        p->mons = nm;
        p->capmons = nc;
    }
    p->mons[p->nmons++] = *m;
    cnode__peer_hold(m->target.peer);
    cnode__peer_hold(m->name_peer);
    return 0;
}

int
cnode__add_monby(cnode_proc *p, const erlang_ref *ref, const cnode__xpid *watcher, int by_name)
{
    if (p->nmonby == p->capmonby) {
        size_t nc = p->capmonby ? p->capmonby * 2 : 4;
        cnode__monby *nm = realloc(p->monby, nc * sizeof *nm);
        if (!nm)
            return CNODE_ENOMEM;
        p->monby = nm;
        p->capmonby = nc;
    }
    const char *const names[] = {p->node->name, watcher->peer ? watcher->peer->name : NULL, NULL};
    int rc = mref_set(&p->monby[p->nmonby].ref, ref, names);
    if (rc != 0)
        return rc;
    p->monby[p->nmonby].watcher = *watcher;
    p->monby[p->nmonby].by_name = by_name;
    p->nmonby++;
    cnode__peer_hold(watcher->peer);
    return 0;
}

int
cnode__add_link(cnode_proc *p, const cnode__xpid *who)
{
    for (size_t i = 0; i < p->nlinks; i++)
        if (cnode__xpid_eq(&p->links[i].pid, who)) {
            p->links[i].unlink_id = 0;
            return 0;
        }
    if (p->nlinks == p->caplinks) {
        size_t nc = p->caplinks ? p->caplinks * 2 : 4;
        cnode__link *nl = realloc(p->links, nc * sizeof *nl);
        if (!nl)
            return CNODE_ENOMEM;
        p->links = nl;
        p->caplinks = nc;
    }
    p->links[p->nlinks].pid = *who;
    p->links[p->nlinks].unlink_id = 0;
    p->nlinks++;
    cnode__peer_hold(who->peer);
    return 0;
}

int
cnode__monitor_locked(cnode_proc *proc, const erlang_pid *target, const char *name, const char *nodename,
                      erlang_ref *ref)
{
    cnode_node *node = proc->node;
    if (!nodename)
        nodename = target ? target->node : node->name;
    if (proc->state != PROC_ALIVE)
        return CNODE_EEXITED;
    cnode_make_ref(node, ref);
    cnode__mon m = {.by_name = target == NULL};
    const char *const ours[] = {node->name, NULL};
    int rc = mref_set(&m.ref, ref, ours); /* borrows node->name: never fails */
    if (rc != 0)
        return rc;
    if (name && !(m.name = strdup(name)))
        return CNODE_ENOMEM;
    cnode__xpid self = {NULL, proc->num, proc->serial, node->creation};
    if (cnode__is_local(node, nodename)) {
        cnode_proc *t = target ? cnode__proc_by_pid(node, target) : cnode__proc_by_name(node, name);
        if (target)
            cnode__xpid_of(node, target, &m.target, 0);
        if (!t) {
            char r[16];
            deliver_down(proc, &m, r, cnode__enc_atom(r, "noproc"));
            free(m.name);
        } else if ((rc = add_mon(proc, &m)) == 0) {
            rc = cnode__add_monby(t, ref, &self, target == NULL);
        } else {
            free(m.name);
        }
        return rc;
    }
    cnode__peer *peer = cnode__peer_get(node, nodename, 1);
    if (!peer) {
        free(m.name);
        return CNODE_EINVAL;
    }
    if (target)
        cnode__xpid_of(node, target, &m.target, 1);
    m.name_peer = peer;
    if ((rc = add_mon(proc, &m)) != 0) {
        free(m.name);
        return rc;
    }
    cnode__ctl c = {.op = CNODE__OP_MONITOR_P, .ref = *ref};
    c.from.pid = proc->pid;
    pid_or_name(&c.to, target, target ? NULL : name);
    return cnode__send_ctl(node, peer, &c, NULL, 0);
}

static int
monitor(cnode_proc *proc, const erlang_pid *target, const char *name, const char *nodename, erlang_ref *ref)
{
    if (!proc || !ref || (!target && (!name || !*name || strlen(name) >= MAXATOMLEN)))
        return CNODE_EINVAL;
    pthread_mutex_lock(&proc->node->lock);
    int rc = cnode__monitor_locked(proc, target, name, nodename, ref);
    pthread_mutex_unlock(&proc->node->lock);
    return rc;
}

int
cnode_monitor(cnode_proc *proc, const erlang_pid *target, erlang_ref *ref)
{
    if (!target)
        return CNODE_EINVAL;
    return monitor(proc, target, NULL, NULL, ref);
}

int
cnode_monitor_name(cnode_proc *proc, const char *name, const char *node, erlang_ref *ref)
{
    return monitor(proc, NULL, name, node, ref);
}

int
cnode__demonitor_locked(cnode_proc *proc, const erlang_ref *ref)
{
    cnode_node *node = proc->node;
    size_t i;
    for (i = 0; i < proc->nmons; i++)
        if (mref_is(&proc->mons[i].ref, ref))
            break;
    if (i == proc->nmons)
        return CNODE_ENOTFOUND;
    cnode__mon m = proc->mons[i];
    proc->mons[i] = proc->mons[--proc->nmons];
    cnode__peer *peer = m.by_name ? m.name_peer : m.target.peer;
    cnode__ctl c = {.op = CNODE__OP_DEMONITOR_P, .ref = *ref};
    if (peer) {
        c.from.pid = proc->pid;
        if (m.by_name)
            pid_or_name(&c.to, NULL, m.name);
        else
            cnode__xpid_to_pid(node, &m.target, &c.to.pid);
    } else {
        cnode_proc *t = NULL;
        if (m.by_name) {
            t = cnode__proc_by_name(node, m.name);
        } else {
            erlang_pid tp;
            cnode__xpid_to_pid(node, &m.target, &tp);
            t = cnode__proc_by_pid(node, &tp);
        }
        if (t)
            remove_monby(t, ref);
    }
    /* [flush]: a DOWN already queued for this monitor goes too */
    cnode__mbox_msg **pp = &proc->mq_head, *prev = NULL;
    while (*pp) {
        if (matches_ref((*pp)->data, (*pp)->len, ref)) {
            cnode__mbox_msg *d = *pp;
            *pp = d->next;
            if (proc->mq_tail == d)
                proc->mq_tail = prev;
            proc->mq_len--;
            msg_free(d);
            continue;
        }
        prev = *pp;
        pp = &(*pp)->next;
    }
    free(m.name);
    if (peer && peer->up)
        cnode__send_ctl(node, peer, &c, NULL, 0);
    mon_put(&m);
    return 0;
}

int
cnode_demonitor(cnode_proc *proc, const erlang_ref *ref)
{
    if (!proc || !ref)
        return CNODE_EINVAL;
    pthread_mutex_lock(&proc->node->lock);
    int rc = cnode__demonitor_locked(proc, ref);
    pthread_mutex_unlock(&proc->node->lock);
    return rc;
}

void
cnode__reg_send_locked(cnode_proc *from, const char *name, cnode__peer *peer, const char *term, size_t len)
{
    cnode__ctl c = {.op = CNODE__OP_REG_SEND};
    c.from.pid = from->pid;
    c.to.is_name = 1;
    snprintf(c.to.name, sizeof c.to.name, "%s", name);
    cnode__send_ctl(from->node, peer, &c, term, len);
}

int
cnode_link(cnode_proc *proc, const erlang_pid *target)
{
    if (!proc || !target)
        return CNODE_EINVAL;
    cnode_node *node = proc->node;
    pthread_mutex_lock(&node->lock);
    if (proc->state != PROC_ALIVE) {
        pthread_mutex_unlock(&node->lock);
        return CNODE_EEXITED;
    }
    cnode__xpid self = {NULL, proc->num, proc->serial, node->creation}, t;
    int local = cnode__is_local(node, target->node);
    cnode__xpid_of(node, target, &t, 1);
    if (!local && !t.peer) {
        pthread_mutex_unlock(&node->lock);
        return CNODE_EINVAL;
    }
    int rc = 0;
    if (local) {
        cnode_proc *tp = cnode__proc_by_pid(node, target);
        if (!tp) {
            char r[16];
            size_t rl = cnode__enc_atom(r, "noproc");
            if (cnode__add_link(proc, &t) == 0)
                exit_signal_in(proc, &t, r, rl, 1);
        } else if ((rc = cnode__add_link(proc, &t)) == 0) {
            rc = cnode__add_link(tp, &self);
        }
        pthread_mutex_unlock(&node->lock);
        return rc;
    }
    rc = cnode__add_link(proc, &t);
    if (rc == 0)
        cnode__peer_hold(t.peer); /* the link may go (nodedown) before the send below */
    pthread_mutex_unlock(&node->lock);
    if (rc)
        return rc;
    cnode__ctl c = {.op = CNODE__OP_LINK};
    c.from.pid = proc->pid;
    c.to.pid = *target;
    rc = cnode__send_ctl(node, t.peer, &c, NULL, 0);
    cnode__peer_release(t.peer);
    return rc;
}

int
cnode_unlink(cnode_proc *proc, const erlang_pid *target)
{
    if (!proc || !target)
        return CNODE_EINVAL;
    cnode_node *node = proc->node;
    pthread_mutex_lock(&node->lock);
    cnode__xpid t;
    int local = cnode__is_local(node, target->node);
    if (cnode__xpid_of(node, target, &t, 0) != 0) {
        pthread_mutex_unlock(&node->lock);
        return 0; /* no record of its node, so no link to it (a link holds the record) */
    }
    size_t i;
    for (i = 0; i < proc->nlinks; i++)
        if (cnode__xpid_eq(&proc->links[i].pid, &t) && !proc->links[i].unlink_id)
            break;
    if (i == proc->nlinks) {
        pthread_mutex_unlock(&node->lock);
        return 0; /* unlink/1 of a non-linked pid is fine */
    }
    if (local) {
        link_put(&proc->links[i]);
        proc->links[i] = proc->links[--proc->nlinks];
        cnode_proc *tp = cnode__proc_by_pid(node, target);
        cnode__xpid self = {NULL, proc->num, proc->serial, node->creation};
        if (tp)
            remove_link(tp, &self);
        pthread_mutex_unlock(&node->lock);
        return 0;
    }
    uint64_t id = 0;
    while (id == 0)
        if (getrandom(&id, sizeof id, 0) != sizeof id)
            id = (uint64_t)cnode__now_ms() | 1;
    proc->links[i].unlink_id = id; /* exits from it are ignored until the ack */
    cnode__peer_hold(t.peer);         /* the link may go (nodedown) before the send below */
    pthread_mutex_unlock(&node->lock);
    char idb[16];
    int idx = 0;
    ei_encode_ulonglong(idb, &idx, (EI_ULONGLONG)id);
    cnode__ctl c = {.op = CNODE__OP_UNLINK_ID};
    c.id.p = idb;
    c.id.len = (size_t)idx;
    c.from.pid = proc->pid;
    c.to.pid = *target;
    int rc = cnode__send_ctl(node, t.peer, &c, NULL, 0);
    cnode__peer_release(t.peer);
    return rc;
}

int
cnode_exit_signal(cnode_proc *proc, const erlang_pid *target, const ei_x_buff *reason)
{
    if (!proc || !target)
        return CNODE_EINVAL;
    const char *r;
    size_t rl;
    char normal[16];
    if (!reason) {
        rl = cnode__enc_atom(normal, "normal");
        r = normal;
    } else if (cnode__strip_version(reason, &r, &rl) != 0) {
        return CNODE_EINVAL;
    }
    cnode_node *node = proc->node;
    pthread_mutex_lock(&node->lock);
    if (proc->state != PROC_ALIVE) {
        pthread_mutex_unlock(&node->lock);
        return CNODE_EEXITED;
    }
    cnode__xpid self = {NULL, proc->num, proc->serial, node->creation};
    if (cnode__is_local(node, target->node)) {
        cnode_proc *tp = cnode__proc_by_pid(node, target);
        if (tp)
            exit_signal_in(tp, &self, r, rl, 0);
        pthread_mutex_unlock(&node->lock);
        return 0;
    }
    cnode__peer *peer = cnode__peer_get(node, target->node, 1);
    cnode__peer_hold(peer);
    pthread_mutex_unlock(&node->lock);
    if (!peer)
        return CNODE_EINVAL;
    cnode__ctl c = {.op = CNODE__OP_PAYLOAD_EXIT2};
    c.from.pid = proc->pid;
    c.to.pid = *target;
    ei_x_buff x;
    if (ei_x_new(&x) != 0) {
        cnode__peer_release(peer);
        return CNODE_ENOMEM;
    }
    int rc = CNODE_EINVAL;
    if (cnode__ctl_encode(&x, &c, rl + 1) == 0 && ei_x_append_buf(&x, "\x83", 1) == 0)
        rc = cnode__send_frame(node, peer, x.buff, (size_t)x.index, r, rl);
    ei_x_free(&x);
    cnode__peer_release(peer);
    return rc;
}

/* ---- for dispatch ----------------------------------------------------------------------------- */

/* A monitor of p fired (MONITOR_P_EXIT): 1 if it was p's, and DOWN is delivered. */
int
cnode__monitor_fired(cnode_proc *p, const erlang_ref *ref, const char *reason, size_t rlen)
{
    for (size_t i = 0; i < p->nmons; i++)
        if (mref_is(&p->mons[i].ref, ref)) {
            cnode__mon m = p->mons[i];
            p->mons[i] = p->mons[--p->nmons];
            deliver_down(p, &m, reason, rlen);
            mon_put(&m);
            free(m.name);
            return 1;
        }
    return 0;
}

void
cnode__remove_monby(cnode_proc *p, const erlang_ref *ref)
{
    remove_monby(p, ref);
}

/* The peer unlinked (UNLINK_ID) or dropped a link (old UNLINK). A link we are
 * unlinking ourselves stays until our own ack arrives. */
void
cnode__peer_unlinked(cnode_proc *p, const cnode__xpid *who)
{
    for (size_t i = 0; i < p->nlinks; i++)
        if (cnode__xpid_eq(&p->links[i].pid, who) && !p->links[i].unlink_id) {
            link_put(&p->links[i]);
            p->links[i] = p->links[--p->nlinks];
            return;
        }
}

/* UNLINK_ID_ACK for our unlink with this id. */
void
cnode__unlink_acked(cnode_proc *p, const cnode__xpid *who, uint64_t id)
{
    for (size_t i = 0; i < p->nlinks; i++)
        if (cnode__xpid_eq(&p->links[i].pid, who) && p->links[i].unlink_id == id) {
            link_put(&p->links[i]);
            p->links[i] = p->links[--p->nlinks];
            return;
        }
}
