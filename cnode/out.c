/* Frames to peers. A caller's thread writes straight to the socket when the
 * connection is up and nothing is queued (no hand-off on the hot path);
 * otherwise the frame is queued and the I/O thread flushes it, many frames
 * per sendmsg, at the end of its loop turn. Never write()/writev(): sendmsg
 * with MSG_NOSIGNAL keeps a dead peer from raising SIGPIPE in the user's
 * process.
 *
 * The queue is bounded as BEAM bounds a distribution port: a message sender
 * past limits.out_queue_bytes waits for room (BEAM suspends it on a busy
 * port); the runtime's own signals never wait, and a queue that still grows
 * past 64 times the limit takes the connection down. A frame is never dropped
 * while the connection stays up. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "cnode/internal.h"

__thread cnode_node *cnode__loop_thread_node;
__thread int cnode__send_nowait;

#define HARD_CAP_FACTOR 64

static void
enqueue_frame(cnode__peer *peer, cnode__obuf *o)
{
    if (peer->oq_tail)
        peer->oq_tail->next = o;
    else
        peer->oq_head = o;
    peer->oq_tail = o;
    peer->oq_bytes += o->len;
}

/* A queued copy of the pieces v[0..nv) less the skip bytes a partial write already sent. */
static cnode__obuf *
obuf_new(const struct iovec *v, int nv, size_t skip)
{
    size_t total = 0;
    for (int i = 0; i < nv; i++)
        total += v[i].iov_len;
    total -= skip;
    cnode__obuf *o = malloc(sizeof *o + total);
    if (!o)
        return NULL;
    o->next = NULL;
    o->len = total;
    o->off = 0;
    size_t at = 0;
    for (int i = 0; i < nv; i++) {
        size_t l = v[i].iov_len;
        const char *p = v[i].iov_base;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        memcpy(o->data + at, p + skip, l - skip);
        at += l - skip;
        skip = 0;
    }
    return o;
}

static void
wake_room(cnode_node *node, cnode__peer *peer)
{
    if (peer->oq_bytes < node->limits.out_queue_bytes)
        pthread_cond_broadcast(&peer->room_cond);
}

void
cnode__drop_output(cnode__peer *peer)
{
    cnode__obuf *o = peer->oq_head;
    while (o) {
        cnode__obuf *nx = o->next;
        free(o);
        o = nx;
    }
    peer->oq_head = peer->oq_tail = NULL;
    peer->oq_bytes = 0;
    peer->dirty = 0;
    peer->overflow = 0; /* the connection that overflowed is gone */
    pthread_cond_broadcast(&peer->room_cond);
}

void
cnode__mark_dirty(cnode_node *node, cnode__peer *peer)
{
    pthread_mutex_lock(&node->qlock);
    if (!peer->on_dirty) {
        peer->on_dirty = 1;
        peer->dnext = node->dirty_head;
        node->dirty_head = peer;
    }
    pthread_mutex_unlock(&node->qlock);
}

/* The frame is the pieces v[0..nv) (at most 4), written as they are: no copy unless it must wait in the queue. */
static int
send_frame(cnode_node *node, cnode__peer *peer, const struct iovec *v, int nv, int wait)
{
    size_t flen = 0;
    for (int i = 0; i < nv; i++)
        flen += v[i].iov_len;
    int on_loop = cnode__loop_thread_node == node;
    int need_connect = 0, need_wake = 0, overflow = 0;
    pthread_mutex_lock(&peer->wlock);
    if (wait && !on_loop && !cnode__send_nowait && peer->oq_bytes >= node->limits.out_queue_bytes) {
        CNODE__STAT_ADD(node, send_waits, 1);
        struct timespec dl;
        cnode__deadline_after(&dl, node->limits.send_timeout_ms);
        while (peer->oq_bytes >= node->limits.out_queue_bytes && !peer->overflow) {
            if (cnode__past(&dl)) {
                pthread_mutex_unlock(&peer->wlock);
                CNODE__STAT_ADD(node, send_timeouts, 1);
                return CNODE_ETIMEOUT;
            }
            if (node->has_io_thread) {
                cnode__cond_wait_until(&peer->room_cond, &peer->wlock, &dl);
            } else {
                /* application-driven: this thread runs the loop that drains the queue */
                pthread_mutex_unlock(&peer->wlock);
                cnode_poll(node, 10);
                pthread_mutex_lock(&peer->wlock);
            }
        }
    }
    if (peer->overflow) {
        /* the link is being taken down: what follows would arrive after a gap */
        pthread_mutex_unlock(&peer->wlock);
        return CNODE_ENOCONNECTION;
    }
    size_t skip = 0;
    if (peer->fd >= 0 && !peer->oq_head && !on_loop) {
        ssize_t n = cnode__tx_writev(peer->wconn, v, nv);
        if (n == (ssize_t)flen) {
            atomic_store(&peer->last_write_ms, cnode__now_ms());
            pthread_mutex_unlock(&peer->wlock);
            return 0;
        }
        if (n < 0 && errno != EAGAIN) {
            /* the connection is broken: the I/O thread sees it on read and
             * takes it down, so nothing after this frame is delivered either */
            pthread_mutex_unlock(&peer->wlock);
            return 0;
        }
        if (n > 0) {
            atomic_store(&peer->last_write_ms, cnode__now_ms());
            skip = (size_t)n;
        }
        need_wake = 1;
    }
    if (peer->oq_bytes > (size_t)HARD_CAP_FACTOR * node->limits.out_queue_bytes) {
        peer->overflow = 1;
        pthread_mutex_unlock(&peer->wlock);
        CNODE__STAT_ADD(node, out_queue_overflows, 1);
        cnode__enqueue_req(node, REQ_OVERFLOW, peer);
        return CNODE_ENOCONNECTION;
    }
    cnode__obuf *o = obuf_new(v, nv, skip);
    if (!o) {
        if (skip) {
            /* part of the frame is on the wire and the rest cannot be kept:
             * the stream is broken, so the link must go */
            peer->overflow = overflow = 1;
        }
        pthread_mutex_unlock(&peer->wlock);
        if (overflow)
            cnode__enqueue_req(node, REQ_OVERFLOW, peer);
        return CNODE_ENOMEM;
    }
    enqueue_frame(peer, o);
    if (peer->fd < 0) {
        /* one dial request queued at a time, however many frames wait for it */
        need_connect = !peer->connect_req;
        peer->connect_req = 1;
    } else if (!on_loop && !peer->dirty) {
        need_wake = 1; /* already dirty: whoever made it so has woken the loop */
    }
    peer->dirty = 1; /* the loop flushes dirty peers at the end of its turn */
    int mark = peer->fd >= 0 || on_loop; /* not up: conn_up marks it */
    pthread_mutex_unlock(&peer->wlock);
    if (mark)
        cnode__mark_dirty(node, peer);
    if (need_connect && cnode__enqueue_req(node, REQ_CONNECT, peer) != 0) {
        pthread_mutex_lock(&peer->wlock);
        peer->connect_req = 0;
        pthread_mutex_unlock(&peer->wlock);
    } else if (need_wake) {
        cnode__wake(node);
    }
    return 0;
}

int
cnode__send_frame(cnode_node *node, cnode__peer *peer, const char *hdr, size_t hlen, const char *payload, size_t plen)
{
    struct iovec v[2] = {{(void *)hdr, hlen}, {(void *)payload, plen}};
    return send_frame(node, peer, v, plen ? 2 : 1, 0);
}

int
cnode__send_frame_wait(cnode_node *node, cnode__peer *peer, const char *hdr, size_t hlen, const char *payload,
                       size_t plen)
{
    struct iovec v[2] = {{(void *)hdr, hlen}, {(void *)payload, plen}};
    return send_frame(node, peer, v, plen ? 2 : 1, 1);
}

int
cnode__send_iov_wait(cnode_node *node, cnode__peer *peer, const struct iovec *v, int nv)
{
    return send_frame(node, peer, v, nv, 1);
}

static int
send_ctl(cnode_node *node, cnode__peer *peer, const cnode__ctl *c, const char *payload, size_t plen, int wait)
{
    ei_x_buff x;
    if (ei_x_new(&x) != 0)
        return CNODE_ENOMEM;
    int rc = CNODE_EINVAL;
    if (cnode__ctl_encode(&x, c, plen) == 0)
        rc = wait ? cnode__send_frame_wait(node, peer, x.buff, (size_t)x.index, payload, plen)
                  : cnode__send_frame(node, peer, x.buff, (size_t)x.index, payload, plen);
    ei_x_free(&x);
    return rc;
}

int
cnode__send_ctl(cnode_node *node, cnode__peer *peer, const cnode__ctl *c, const char *payload, size_t plen)
{
    return send_ctl(node, peer, c, payload, plen, 0);
}

int
cnode__send_ctl_wait(cnode_node *node, cnode__peer *peer, const cnode__ctl *c, const char *payload, size_t plen)
{
    return send_ctl(node, peer, c, payload, plen, 1);
}

/* I/O thread: write what is queued; arm EPOLLOUT if the socket is full. */
void
cnode__flush_peer(cnode_node *node, cnode__peer *peer)
{
    cnode__conn *c = peer->up; /* changed only by the loop thread, which is us */
    pthread_mutex_lock(&peer->wlock);
    peer->dirty = 0;
    while (peer->fd >= 0 && peer->oq_head) {
        struct iovec iov[64];
        int n = 0;
        for (cnode__obuf *o = peer->oq_head; o && n < 64; o = o->next, n++) {
            iov[n].iov_base = o->data + o->off;
            iov[n].iov_len = o->len - o->off;
        }
        ssize_t w = cnode__tx_writev(peer->wconn, iov, n);
        if (w < 0) {
            if (errno != EAGAIN) /* the read side will see the error and close */
                cnode__drop_output(peer);
            break;
        }
        atomic_store(&peer->last_write_ms, cnode__now_ms());
        size_t left = (size_t)w;
        while (left && peer->oq_head) {
            cnode__obuf *o = peer->oq_head;
            size_t avail = o->len - o->off;
            if (left < avail) {
                o->off += left;
                left = 0;
                break;
            }
            left -= avail;
            peer->oq_head = o->next;
            if (!peer->oq_head)
                peer->oq_tail = NULL;
            peer->oq_bytes -= o->len;
            free(o);
        }
    }
    wake_room(node, peer);
    int want_out = peer->fd >= 0 && peer->oq_head != NULL;
    /* unarmed, the interest is EPOLLONESHOT: a fired EPOLLOUT must be asked for again */
    if (c && peer->fd >= 0 && (want_out != peer->epollout || (want_out && !c->armed))) {
        peer->epollout = want_out;
        cnode__conn_arm(node, peer, c, c->fd); /* keeps a reading caller's socket out of read interest */
    }
    pthread_mutex_unlock(&peer->wlock);
}
