/* Frames to peers. A caller's thread writes straight to the socket when the
 * connection is up and nothing is queued (no hand-off on the hot path);
 * otherwise the frame is queued and the I/O thread flushes it, many frames
 * per sendmsg, at the end of its loop turn. Never write()/writev(): sendmsg
 * with MSG_NOSIGNAL keeps a dead peer from raising SIGPIPE in the user's
 * process. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "cnode/internal.h"

__thread cnode_node *cnode__loop_thread_node;

#define OQ_MAX_BYTES ((size_t)256 << 20)

static int
enqueue(cnode__peer *peer, const char *a, size_t alen, const char *b, size_t blen, size_t skip)
{
    size_t total = alen + blen - skip;
    if (peer->oq_bytes + total > OQ_MAX_BYTES)
        return CNODE_ENOMEM;
    cnode__obuf *o = malloc(sizeof *o + total);
    if (!o)
        return CNODE_ENOMEM;
    o->next = NULL;
    o->len = total;
    o->off = 0;
    /* copy what the partial write left: skip bytes of a||b are gone */
    if (skip < alen) {
        memcpy(o->data, a + skip, alen - skip);
        if (blen)
            memcpy(o->data + alen - skip, b, blen);
    } else {
        memcpy(o->data, b + (skip - alen), total);
    }
    if (peer->oq_tail)
        peer->oq_tail->next = o;
    else
        peer->oq_head = o;
    peer->oq_tail = o;
    peer->oq_bytes += total;
    return 0;
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
}

int
cnode__send_frame(cnode_node *node, cnode__peer *peer, const char *hdr, size_t hlen, const char *payload, size_t plen)
{
    int rc = 0, need_connect = 0, need_wake = 0;
    pthread_mutex_lock(&peer->wlock);
    if (peer->fd >= 0 && !peer->oq_head && cnode__loop_thread_node != node) {
        struct iovec iov[2] = {{(void *)hdr, hlen}, {(void *)payload, plen}};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = plen ? 2 : 1};
        ssize_t n = sendmsg(peer->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == (ssize_t)(hlen + plen)) {
            atomic_store(&peer->last_write_ms, cnode__now_ms());
            pthread_mutex_unlock(&peer->wlock);
            return 0;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            /* the I/O thread sees the error on read and closes; drop this frame as Erlang would */
            pthread_mutex_unlock(&peer->wlock);
            return 0;
        }
        if (n > 0)
            atomic_store(&peer->last_write_ms, cnode__now_ms());
        rc = enqueue(peer, hdr, hlen, payload, plen, n > 0 ? (size_t)n : 0);
        need_wake = 1;
    } else {
        rc = enqueue(peer, hdr, hlen, payload, plen, 0);
        if (peer->fd < 0) {
            /* one dial request queued at a time, however many frames wait for it */
            need_connect = !peer->connect_req;
            peer->connect_req = 1;
        } else if (cnode__loop_thread_node != node && !peer->dirty) {
            need_wake = 1; /* already dirty: whoever made it so has woken the loop */
        }
    }
    if (rc == 0) {
        peer->dirty = 1; /* the loop flushes dirty peers at the end of its turn */
    } else {
        if (need_connect)
            peer->connect_req = 0;
        need_wake = need_connect = 0;
    }
    pthread_mutex_unlock(&peer->wlock);
    if (need_connect && cnode__enqueue_req(node, REQ_CONNECT, peer) != 0) {
        pthread_mutex_lock(&peer->wlock);
        peer->connect_req = 0;
        pthread_mutex_unlock(&peer->wlock);
    } else if (need_wake)
        cnode__enqueue_req(node, REQ_FLUSH, peer);
    return rc;
}

int
cnode__send_ctl(cnode_node *node, cnode__peer *peer, const cnode__ctl *c, const char *payload, size_t plen)
{
    ei_x_buff x;
    if (ei_x_new(&x) != 0)
        return CNODE_ENOMEM;
    int rc = CNODE_EINVAL;
    if (cnode__ctl_encode(&x, c, plen) == 0)
        rc = cnode__send_frame(node, peer, x.buff, (size_t)x.index, payload, plen);
    ei_x_free(&x);
    return rc;
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
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(peer->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
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
    int want_out = peer->fd >= 0 && peer->oq_head != NULL;
    if (c && peer->fd >= 0 && want_out != peer->epollout) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (want_out ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(node->epfd, EPOLL_CTL_MOD, peer->fd, &ev);
        peer->epollout = want_out;
    }
    pthread_mutex_unlock(&peer->wlock);
}
