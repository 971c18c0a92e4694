/* The event loop: one epoll set per node holding the listen socket, the
 * epmd socket, the wake-up eventfd and every connection. Run by the node's
 * I/O thread, or by the application through cnode_poll(). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "cnode/internal.h"

#define HOUSEKEEPING_MS 100
#define SWEEP_EVERY 10 /* housekeeping turns between sweeps of idle peer records */

void
cnode__push_event(cnode_node *node, int up, const char *name, const char *reason)
{
    if ((up && !node->opts.on_nodeup) || (!up && !node->opts.on_nodedown))
        return;
    cnode__event *e = calloc(1, sizeof *e);
    if (!e)
        return;
    e->up = up;
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->reason, sizeof e->reason, "%s", reason ? reason : "");
    if (node->ev_tail)
        node->ev_tail->next = e;
    else
        node->ev_head = e;
    node->ev_tail = e;
}

/* Callbacks run without node->lock, so they may call the library. */
static void
fire_events(cnode_node *node)
{
    pthread_mutex_lock(&node->lock);
    cnode__event *e = node->ev_head;
    node->ev_head = node->ev_tail = NULL;
    pthread_mutex_unlock(&node->lock);
    while (e) {
        cnode__event *nx = e->next;
        if (e->up)
            node->opts.on_nodeup(e->name, node->opts.user_data);
        else
            node->opts.on_nodedown(e->name, e->reason, node->opts.user_data);
        free(e);
        e = nx;
    }
}

static void
handle_requests(cnode_node *node)
{
    uint64_t v;
    while (read(node->evfd, &v, sizeof v) > 0)
        ;
    cnode__resolve_poll(node);
    cnode__conn_pending(node);
    pthread_mutex_lock(&node->qlock);
    cnode__req *r = node->q_head;
    node->q_head = node->q_tail = NULL;
    pthread_mutex_unlock(&node->qlock);
    while (r) {
        cnode__req *nx = r->next;
        switch (r->kind) {
        case REQ_CONNECT:
            pthread_mutex_lock(&r->peer->wlock);
            r->peer->connect_req = 0; /* later sends may ask again */
            pthread_mutex_unlock(&r->peer->wlock);
            if (!r->peer->up && !r->peer->dialling && !atomic_load(&node->stopping))
                cnode__conn_start_outgoing(node, r->peer);
            else if (r->peer->up)
                cnode__mark_dirty(node, r->peer);
            break;
        case REQ_DISCONNECT:
            if (r->peer->up)
                cnode__conn_close(node, r->peer->up, "disconnect");
            break;
        case REQ_OVERFLOW:
            if (r->peer->up) {
                cnode__log(node, CNODE_LOG_ERROR, "dropping connection to %s: output queue overflow (over %zu bytes)",
                           r->peer->name, (size_t)64 * node->limits.out_queue_bytes);
                cnode__conn_close(node, r->peer->up, "output queue overflow");
            } else {
                pthread_mutex_lock(&r->peer->wlock);
                cnode__drop_output(r->peer);
                pthread_mutex_unlock(&r->peer->wlock);
            }
            break;
        case REQ_BAD_DATA:
            if (r->peer->up) {
                CNODE__STAT_ADD(node, bad_data_disconnects, 1);
                cnode__conn_close(node, r->peer->up, "undecodable data");
            }
            break;
        case REQ_STOP:
            node->stop_loop = 1;
            break;
        }
        cnode__peer_release(r->peer);
        free(r);
        r = nx;
    }
}

/* Write what the dirty peers queued, without node->lock. p->up and
 * p->dialling change only on the loop thread, which is this one. Peers are
 * taken off the list under qlock a batch at a time: once off it, a sender may
 * put one back (and reuse its dnext) at any moment. */
static void
flush_dirty(cnode_node *node, int may_wait)
{
    cnode__peer *held[64]; /* batches still growing (out.c): back on the list after this turn */
    int nheld = 0;
    for (int batches = 0;; batches++) {
        cnode__peer *batch[64];
        int n = 0;
        pthread_mutex_lock(&node->qlock);
        if (batches == 64 && node->dirty_head) {
            /* senders keep marking: the rest next turn, after the others */
            pthread_mutex_unlock(&node->qlock);
            cnode__wake(node);
            break;
        }
        while (node->dirty_head && n < 64) {
            cnode__peer *p = node->dirty_head;
            node->dirty_head = p->dnext;
            p->on_dirty = 0;
            batch[n++] = p;
        }
        pthread_mutex_unlock(&node->qlock);
        if (!n)
            break;
        for (int i = 0; i < n; i++)
            if (batch[i]->up && cnode__flush_peer(node, batch[i], may_wait && nheld < 64))
                held[nheld++] = batch[i];
    }
    for (int i = 0; i < nheld; i++)
        cnode__mark_dirty(node, held[i]);
}

int
cnode__loop_once(cnode_node *node, int timeout_ms)
{
    struct epoll_event evs[64];
    int64_t now = cnode__now_ms();
    /* rounded up: in the millisecond before it, a rounded-down deadline gave epoll_wait a timeout
     * of 0 turn after turn (a spin of up to a millisecond every HOUSEKEEPING_MS) */
    int64_t next_hk = node->next_tick.tv_sec * 1000 + (node->next_tick.tv_nsec + 999999) / 1000000;
    int t = timeout_ms;
    if (next_hk - now < (int64_t)t || t < 0)
        t = next_hk > now ? (int)(next_hk - now) : 0;
    pthread_mutex_lock(&node->lock);
    int64_t dl = cnode__erpc_next_deadline(node);
    pthread_mutex_unlock(&node->lock);
    if (dl >= 0 && dl < t)
        t = (int)dl;
    int lz = cnode__conn_lazy(node); /* sockets callers left unarmed */
    if (lz >= 0 && lz < t)
        t = lz;
    int df = cnode__out_defer_tick(node); /* frames deferred for batching wait at most a tick */
    if (df >= 0 && df < t)
        t = df;
    if (node->tx_more)
        t = 0; /* a TLS session holds input already read off its socket */
    int n = epoll_wait(node->epfd, evs, 64, t);
    if (n < 0 && errno != EINTR)
        return CNODE_ESYS;
    n = cnode__conn_more(node, evs, n < 0 ? 0 : n, 64);
    cnode__loop_thread_node = node;
    /* reads from up connections happen here, before node->lock: a fast peer's
     * recv never holds up callers or other connections */
    for (int i = 0; i < n; i++) {
        void *ptr = evs[i].data.ptr;
        if (ptr != &node->listen_fd && ptr != &node->evfd && ptr != &node->epmd_fd)
            cnode__conn_fill(node, ptr, evs[i].events);
    }
    pthread_mutex_lock(&node->lock);
    cnode__log_defer_node = node;
    cnode__erpc_defer_wakes(1); /* callers whose replies this turn completes wake once we let go */
    for (int i = 0; i < n; i++) {
        void *ptr = evs[i].data.ptr;
        if (ptr == &node->listen_fd) {
            cnode__conn_accept(node);
        } else if (ptr == &node->evfd) {
            handle_requests(node);
        } else if (ptr == &node->epmd_fd) {
            char b[64];
            ssize_t r = recv(node->epmd_fd, b, sizeof b, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN)) {
                cnode__log(node, CNODE_LOG_ERROR, "epmd closed the registration socket; %s is no longer registered",
                           node->name);
                epoll_ctl(node->epfd, EPOLL_CTL_DEL, node->epmd_fd, NULL);
            }
        } else {
            cnode__conn_event(node, ptr, evs[i].events);
        }
    }
    cnode__erpc_expire(node);
    if (cnode__past(&node->next_tick)) {
        cnode__conn_housekeeping(node);
        if (++node->sweep_turns >= SWEEP_EVERY) {
            node->sweep_turns = 0;
            cnode__peer_sweep(node);
        }
        for (int i = 0; i < node->ntickhooks; i++)
            node->tick_hooks[i](node, node->tick_hook_ud[i]);
        cnode__deadline_after(&node->next_tick, HOUSEKEEPING_MS);
    }
    int nposthooks = node->nposthooks; /* hooks are added under node->lock */
    cnode__log_defer_node = NULL;
    pthread_mutex_unlock(&node->lock);
    cnode__erpc_defer_wakes(0);
    cnode__erpc_wake();
    cnode__conn_reap(node);
    cnode__conn_trim(node);
    cnode__log_flush(node);
    flush_dirty(node, 1);
    cnode__loop_thread_node = NULL;
    cnode__send_nowait = 1; /* user callbacks: a full queue must not stall the loop */
    fire_events(node);
    cnode__erpc_fire(node);
    for (int i = 0; i < nposthooks; i++)
        node->post_hooks[i](node, node->post_hook_ud[i]);
    cnode__send_nowait = 0;
    return n < 0 ? 0 : n;
}

void *
cnode__io_main(void *arg)
{
    cnode_node *node = arg;
    while (!node->stop_loop)
        cnode__loop_once(node, -1);
    cnode__shutdown_io(node);
    return NULL;
}

int
cnode_poll(cnode_node *node, int timeout_ms)
{
    if (!node || node->has_io_thread)
        return CNODE_EINVAL;
    pthread_mutex_lock(&node->loop_lock);
    int rc = cnode__loop_once(node, timeout_ms);
    pthread_mutex_unlock(&node->loop_lock);
    pthread_cond_broadcast(&node->loop_cond);
    return rc;
}

/* Stop: every process exits with `shutdown`, the signals that makes are
 * flushed (bounded), then every connection closes. Loop thread only. */
/* Peers with output still queued on an up connection (loop thread). */
static int
pending_output(cnode_node *node)
{
    int pending = 0;
    pthread_mutex_lock(&node->lock);
    for (cnode__peer *p = node->peers; p; p = p->next) {
        pthread_mutex_lock(&p->wlock);
        if (p->up && p->oq_head) {
            pending = 1;
            pthread_mutex_unlock(&p->wlock);
            cnode__mark_dirty(node, p);
            continue;
        }
        pthread_mutex_unlock(&p->wlock);
    }
    pthread_mutex_unlock(&node->lock);
    return pending;
}

void
cnode__shutdown_io(cnode_node *node)
{
    cnode__loop_thread_node = node;
    pthread_mutex_lock(&node->lock);
    cnode__log_defer_node = node;
    cnode__proc_exit_all(node, "shutdown");
    cnode__log_defer_node = NULL;
    pthread_mutex_unlock(&node->lock);
    cnode__log_flush(node);
    flush_dirty(node, 0);
    int64_t end = cnode__now_ms() + 500;
    while (pending_output(node) && cnode__now_ms() <= end) {
        struct epoll_event ev;
        epoll_wait(node->epfd, &ev, 1, 10);
        flush_dirty(node, 0);
    }
    pthread_mutex_lock(&node->lock);
    cnode__log_defer_node = node;
    while (node->conns)
        cnode__conn_close(node, node->conns, "shutdown");
    cnode__log_defer_node = NULL;
    pthread_mutex_unlock(&node->lock);
    cnode__conn_reap(node);
    /* a caller still reading a closed connection was woken by its shutdown(2); it lets go at once */
    for (int i = 0; node->dead_conns && i < 5000; i++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
        cnode__conn_reap(node);
    }
    cnode__log_flush(node);
    cnode__loop_thread_node = NULL;
    cnode__send_nowait = 1;
    fire_events(node);
    cnode__send_nowait = 0;
}
