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
__thread int cnode__send_defer;
__thread int cnode__send_try;
__thread uint64_t cnode__defer_mark;

#define HARD_CAP_FACTOR 64
#define DEFER_CHUNK 16384 /* deferred frames are copied into chunks this big (one kept per peer) */
#define DEFER_PEERS 8     /* peers one thread may have deferred frames for */
#define WRITE_IOV 1024    /* IOV_MAX on Linux: pieces per sendmsg */

/* The peers this thread deferred frames to since it last flushed, each held. */
static __thread cnode__peer *deferred[DEFER_PEERS];
static __thread cnode_node *deferred_node[DEFER_PEERS];
static __thread int ndeferred;

static void
enqueue_frame(cnode__peer *peer, cnode__obuf *o)
{
    if (peer->oq_tail)
        peer->oq_tail->next = o;
    else
        peer->oq_head = o;
    peer->oq_tail = o;
    peer->oq_bytes += o->len;
    peer->q_in += o->len;
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
    o->cap = total;
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

/* wlock held: the frame v[0..nv) (flen bytes) at the end of the queue, in the tail chunk when it
 * has room (a deferred frame costs a copy, no allocation once the peer has a chunk). */
static int
append_frame(cnode__peer *peer, const struct iovec *v, int nv, size_t flen)
{
    cnode__obuf *t = peer->oq_tail;
    if (!t || t->cap - t->len < flen) {
        if (flen <= DEFER_CHUNK && peer->spare) {
            t = peer->spare;
            peer->spare = NULL;
        } else if (!(t = malloc(sizeof *t + (flen > DEFER_CHUNK ? flen : DEFER_CHUNK)))) {
            return -1;
        } else {
            t->cap = flen > DEFER_CHUNK ? flen : DEFER_CHUNK;
        }
        t->next = NULL;
        t->len = t->off = 0;
        enqueue_frame(peer, t);
    }
    for (int i = 0; i < nv; i++) {
        memcpy(t->data + t->len, v[i].iov_base, v[i].iov_len);
        t->len += v[i].iov_len;
    }
    peer->oq_bytes += flen;
    peer->q_in += flen;
    return 0;
}

/* wlock held: n bytes of the queue went out. */
static void
consume(cnode__peer *peer, size_t n)
{
    atomic_store(&peer->q_out, atomic_load(&peer->q_out) + n);
    while (n && peer->oq_head) {
        cnode__obuf *o = peer->oq_head;
        size_t avail = o->len - o->off;
        if (n < avail) {
            o->off += n;
            return;
        }
        n -= avail;
        peer->oq_head = o->next;
        if (!peer->oq_head)
            peer->oq_tail = NULL;
        peer->oq_bytes -= o->len;
        if (o->cap == DEFER_CHUNK && !peer->spare)
            peer->spare = o;
        else
            free(o);
    }
}

/* The one place frames meet a peer's socket (wlock held, peer->fd >= 0): what is queued, oldest
 * first, then the frame v[0..nv) that is not (nv may be 0), in sendmsg's of up to IOV_MAX pieces
 * until all is written or the socket is full. Consumes what went out of the queue. Returns how
 * many bytes of v went out (all, part or none), or -1 if the socket failed (not EAGAIN): the read
 * side sees the failure and takes the connection down, so nothing after is delivered either. */
static ssize_t
write_out(cnode_node *node, cnode__peer *peer, const struct iovec *v, int nv)
{
    size_t vlen = 0, vsent = 0;
    for (int i = 0; i < nv; i++)
        vlen += v[i].iov_len;
    for (;;) {
        struct iovec iov[WRITE_IOV];
        int n = 0;
        size_t qb = 0, total;
        cnode__obuf *o = peer->oq_head;
        for (; o && n < WRITE_IOV - nv; o = o->next) {
            if (o->len == o->off)
                continue;
            iov[n].iov_base = o->data + o->off;
            iov[n].iov_len = o->len - o->off;
            qb += iov[n++].iov_len;
        }
        total = qb;
        if (!o) { /* the whole queue is in: the frame follows it */
            size_t skip = vsent;
            for (int i = 0; i < nv; i++) {
                size_t l = v[i].iov_len;
                if (skip >= l) {
                    skip -= l;
                    continue;
                }
                iov[n].iov_base = (char *)v[i].iov_base + skip;
                iov[n].iov_len = l - skip;
                total += iov[n++].iov_len;
                skip = 0;
            }
        }
        if (!n)
            break;
        ssize_t w = cnode__tx_writev(peer->wconn, iov, n); /* sendmsg, or TLS records */
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        atomic_store(&peer->last_write_ms, cnode__now_ms());
        CNODE__STAT_ADD(node, out_writes, 1);
        consume(peer, (size_t)w < qb ? (size_t)w : qb);
        if ((size_t)w > qb)
            vsent += (size_t)w - qb;
        if ((size_t)w < total)
            break; /* the socket is full */
        if (!o && vsent == vlen)
            break;
    }
    if (!peer->oq_head) {
        peer->dirty = 0; /* nothing left for the loop (the dirty list may still name the peer) */
        atomic_store(&peer->q_deferred, 0);
        peer->q_urgent = peer->q_hold = 0;
    }
    return (ssize_t)vsent;
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
    free(peer->spare);
    peer->spare = NULL;
    atomic_store(&peer->q_out, peer->q_in); /* gone: nobody waits for these to be written */
    atomic_store(&peer->q_deferred, 0);
    peer->q_urgent = peer->q_hold = 0;
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

/* wlock held: peer joins this thread's deferred list (held). -1: the list is full. */
static int
defer_note(cnode_node *node, cnode__peer *peer)
{
    for (int i = 0; i < ndeferred; i++)
        if (deferred[i] == peer)
            return 0;
    if (ndeferred == DEFER_PEERS)
        return -1;
    cnode__peer_hold(peer);
    deferred[ndeferred] = peer;
    deferred_node[ndeferred++] = node;
    return 0;
}

void
cnode__out_flush(cnode_node *node, cnode__peer *peer)
{
    if (!atomic_load(&peer->dirty))
        return; /* nothing queued, or what is queued waits for EPOLLOUT (the loop's) */
    int wake = 0;
    pthread_mutex_lock(&peer->wlock);
    if (peer->fd >= 0 && peer->oq_head && !peer->epollout) {
        wake = write_out(node, peer, NULL, 0) < 0 || peer->oq_head; /* the loop takes it from here */
        wake_room(node, peer);
    }
    pthread_mutex_unlock(&peer->wlock);
    if (wake)
        cnode__wake(node);
}

#define DEFER_MAX_MS 1 /* a deferred frame waits at most this long past a millisecond tick */

/* Deferred frames are worth a write: half of what is in flight to peer waits in the queue (the
 * peer has the other half to answer meanwhile), or the oldest has waited DEFER_MAX_MS. */
static int
batch_ready(cnode__peer *peer, int64_t since_ms)
{
    unsigned q = atomic_load(&peer->q_deferred);
    return q == 0 || (!peer->q_hold && (uint64_t)q * 2 >= atomic_load(&peer->inflight)) ||
           cnode__now_ms() - since_ms >= DEFER_MAX_MS;
}

int
cnode__out_should_flush(cnode__peer *peer, uint64_t mark)
{
    if (!atomic_load(&peer->dirty))
        return 0;
    if (mark && atomic_load(&peer->q_out) < mark)
        return 1;
    pthread_mutex_lock(&peer->wlock);
    int r = peer->q_urgent || batch_ready(peer, peer->defer_since_ms);
    pthread_mutex_unlock(&peer->wlock);
    return r;
}

void
cnode__out_flush_deferred(void)
{
    while (ndeferred > 0) {
        int i = --ndeferred;
        cnode__out_flush(deferred_node[i], deferred[i]);
        cnode__peer_release(deferred[i]);
    }
}

int
cnode__out_defer_tick(cnode_node *node)
{
    int v = atomic_load(&node->defer_mode);
    if (v == 0)
        return -1;
    if (v == 2 || !atomic_compare_exchange_strong(&node->defer_mode, &v, 0)) {
        v = 2;
        atomic_compare_exchange_strong(&node->defer_mode, &v, 1);
        return 1; /* frames were deferred since the last tick: the next one in a millisecond */
    }
    return -1; /* none since: sleep; the next deferral wakes the loop */
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
    if (cnode__send_try) {
        if (pthread_mutex_trylock(&peer->wlock) != 0)
            return CNODE__SEND_BUSY; /* the caller has the frame sent later (server.c) */
    } else {
        pthread_mutex_lock(&peer->wlock);
    }
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
    CNODE__STAT_ADD(node, out_frames, 1);
    cnode__defer_mark = 0;
    if (cnode__send_defer && (!on_loop || cnode__send_defer == CNODE__DEFER_HOLD) && node->has_io_thread &&
        peer->fd >= 0 && peer->oq_bytes + flen <= node->limits.out_queue_bytes &&
        (cnode__send_defer != CNODE__DEFER_MINE || defer_note(node, peer) == 0) &&
        append_frame(peer, v, nv, flen) == 0) {
        /* batched: out with the next write to this peer, or when this thread blocks, or at the
         * loop's next turn (the dirty list; a loop asleep is woken once, then ticks while
         * frames keep being deferred) */
        int mark = !peer->dirty;
        peer->dirty = 1;
        if (atomic_load(&peer->q_deferred) == 0)
            peer->defer_since_ms = cnode__now_ms();
        atomic_store(&peer->q_deferred, atomic_load(&peer->q_deferred) + 1);
        if (cnode__send_defer == CNODE__DEFER_HOLD)
            peer->q_hold = 1;
        cnode__defer_mark = peer->q_in;
        pthread_mutex_unlock(&peer->wlock);
        CNODE__STAT_ADD(node, deferred_frames, 1);
        if (mark)
            cnode__mark_dirty(node, peer);
        if (atomic_exchange(&node->defer_mode, 2) == 0 && !on_loop)
            cnode__wake(node); /* the loop itself looks at defer_mode before it sleeps */
        return 0;
    }
    size_t skip = 0;
    /* whatever is queued goes first, in the same sendmsg, unless the socket was full (EPOLLOUT) */
    if (peer->fd >= 0 && !on_loop && (!peer->oq_head || !peer->epollout)) {
        ssize_t n = write_out(node, peer, v, nv);
        if (n == (ssize_t)flen) {
            wake_room(node, peer);
            pthread_mutex_unlock(&peer->wlock);
            return 0;
        }
        if (n < 0) {
            /* the connection is broken: the I/O thread sees it on read and
             * takes it down, so nothing after this frame is delivered either */
            pthread_mutex_unlock(&peer->wlock);
            return 0;
        }
        skip = (size_t)n;
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
    peer->q_urgent = 1;
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

/* I/O thread: write what is queued; arm EPOLLOUT if the socket is full. may_wait: a batch of
 * deferred frames that is still growing may stay (1 returned: the caller puts the peer back on
 * the dirty list after this turn). */
int
cnode__flush_peer(cnode_node *node, cnode__peer *peer, int may_wait)
{
    cnode__conn *c = peer->up; /* changed only by the loop thread, which is us */
    if (may_wait && pthread_mutex_trylock(&peer->wlock) != 0) {
        /* another thread is writing to peer (a worker's reply, which takes the queue along): the
         * loop does not sleep on it but looks again at a later turn (the tick) */
        atomic_store(&node->defer_mode, 2);
        return 1;
    }
    if (!may_wait)
        pthread_mutex_lock(&peer->wlock);
    if (may_wait && peer->fd >= 0 && peer->oq_head && !peer->q_urgent && !peer->epollout &&
        !batch_ready(peer, peer->defer_since_ms)) {
        /* only frames held back for a batch that is still growing: a later turn (the tick keeps
         * the loop turning every millisecond while this lasts) */
        pthread_mutex_unlock(&peer->wlock);
        atomic_store(&node->defer_mode, 2);
        return 1;
    }
    peer->dirty = 0;
    if (peer->fd >= 0 && peer->oq_head && write_out(node, peer, NULL, 0) < 0)
        cnode__drop_output(peer); /* the read side will see the error and close */
    peer->dirty = 0; /* what is left waits for EPOLLOUT */
    wake_room(node, peer);
    int want_out = peer->fd >= 0 && peer->oq_head != NULL;
    /* unarmed, the interest is EPOLLONESHOT: a fired EPOLLOUT must be asked for again */
    if (c && peer->fd >= 0 && (want_out != peer->epollout || (want_out && !c->armed))) {
        peer->epollout = want_out;
        cnode__conn_arm(node, peer, c, c->fd); /* keeps a reading caller's socket out of read interest */
    }
    pthread_mutex_unlock(&peer->wlock);
    return 0;
}
