/* The event loop: one epoll set per node holding the listen socket, the
 * epmd socket, the wake-up eventfd and every connection. Run by the node's
 * I/O thread, or by the application through cnode_poll(). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "cnode/internal.h"

#define HOUSEKEEPING_MS 100

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

/* An incoming handshake from peer is under way: it will bring the connection up. */
static int
accepting(cnode_node *node, const cnode__peer *peer)
{
    for (cnode__conn *c = node->conns; c; c = c->next)
        if (c->peer == peer && !c->outgoing && c->state != CONN_UP)
            return 1;
    return 0;
}

static void
handle_requests(cnode_node *node)
{
    uint64_t v;
    while (read(node->evfd, &v, sizeof v) > 0)
        ;
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
            if (!r->peer->up && !r->peer->dialling && !accepting(node, r->peer) && !atomic_load(&node->stopping))
                cnode__conn_start_outgoing(node, r->peer);
            else if (r->peer->up)
                r->peer->dirty = 1;
            break;
        case REQ_FLUSH:
            r->peer->dirty = 1;
            break;
        case REQ_DISCONNECT:
            if (r->peer->up)
                cnode__conn_close(node, r->peer->up, "disconnect");
            break;
        case REQ_STOP:
            node->stop_loop = 1;
            break;
        }
        free(r);
        r = nx;
    }
}

static void
flush_dirty(cnode_node *node)
{
    for (cnode__peer *p = node->peers; p; p = p->next) {
        /* dirty is read racily here; a writer that sets it also wakes us */
        if (p->dirty && p->up)
            cnode__flush_peer(node, p);
        else if (p->dirty && !p->up && !p->dialling)
            p->dirty = 0;
    }
}

int
cnode__loop_once(cnode_node *node, int timeout_ms)
{
    struct epoll_event evs[64];
    int64_t now = cnode__now_ms();
    int64_t next_hk = node->next_tick.tv_sec * 1000 + node->next_tick.tv_nsec / 1000000;
    int t = timeout_ms;
    if (next_hk - now < (int64_t)t || t < 0)
        t = next_hk > now ? (int)(next_hk - now) : 0;
    pthread_mutex_lock(&node->lock);
    int64_t dl = cnode__erpc_next_deadline(node);
    pthread_mutex_unlock(&node->lock);
    if (dl >= 0 && dl < t)
        t = (int)dl;
    int n = epoll_wait(node->epfd, evs, 64, t);
    if (n < 0 && errno != EINTR)
        return CNODE_ESYS;
    cnode__loop_thread_node = node;
    pthread_mutex_lock(&node->lock);
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
        for (int i = 0; i < node->ntickhooks; i++)
            node->tick_hooks[i](node, node->tick_hook_ud[i]);
        cnode__deadline_after(&node->next_tick, HOUSEKEEPING_MS);
    }
    pthread_mutex_unlock(&node->lock);
    flush_dirty(node);
    cnode__loop_thread_node = NULL;
    fire_events(node);
    cnode__erpc_fire(node);
    for (int i = 0; i < node->nposthooks; i++)
        node->post_hooks[i](node, node->post_hook_ud[i]);
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
void
cnode__shutdown_io(cnode_node *node)
{
    cnode__loop_thread_node = node;
    pthread_mutex_lock(&node->lock);
    cnode__proc_exit_all(node, "shutdown");
    pthread_mutex_unlock(&node->lock);
    flush_dirty(node);
    int64_t end = cnode__now_ms() + 500;
    for (;;) {
        int pending = 0;
        for (cnode__peer *p = node->peers; p; p = p->next)
            if (p->up && p->oq_head)
                pending = 1;
        if (!pending || cnode__now_ms() > end)
            break;
        struct epoll_event ev;
        epoll_wait(node->epfd, &ev, 1, 10);
        flush_dirty(node);
        for (cnode__peer *p = node->peers; p; p = p->next)
            if (p->up && p->oq_head)
                cnode__flush_peer(node, p);
    }
    pthread_mutex_lock(&node->lock);
    while (node->conns)
        cnode__conn_close(node, node->conns, "shutdown");
    pthread_mutex_unlock(&node->lock);
    cnode__loop_thread_node = NULL;
    fire_events(node);
}
