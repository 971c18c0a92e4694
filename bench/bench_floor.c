/* The client-side floors of issue 14's goals: what any client, however lean, pays for what the
 * goal measures, over one connection made with the project's own handshake machine (ei_glue,
 * pure wire code) and a blocking socket. After that: ei's encoders, once, and plain read/write.
 * No locks, no threads, no decoding beyond the frame lengths (and, at 64 in flight, one byte: the
 * control op, to tell a DOWN from a spawn reply); what came back is checked once, at the end.
 * Stock ei cannot be the transport: it does not advertise DFLAG_SPAWN, and a BEAM node then
 * answers a spawn request with nothing.
 *
 *   --mode lat   (default) a sequential erpc call. One pre-encoded spawn request (the control
 *                message and payload cnode_call sends: {29,ReqId,From,GL,{erpc,execute_call,4},
 *                [monitor]} + [Res,erlang,abs,[-1]]) written with one write(2); the client blocks
 *                in read(2) until the spawn reply and the DOWN that carries the result are both
 *                in. The reference and pid never change: the server does not care, and a fresh
 *                reference per call would only add client work. Prints "call_us <float>".
 *   --mode rt    the message round trip: one pre-encoded REG_SEND of {Self, ping} to bench_echo
 *                on the peer (what bench_rt sends through cnode_reg_send), then one read until
 *                the echoed frame is in. Prints "rt_us <float>".
 *   --mode tput  --windows W[,W...] --secs S [--server-pid PID]: W calls in flight from one
 *                thread, 0.5 s warm-up then an S s window each. Whatever slots are free are
 *                refilled with one write of as many spawn requests (each with its own reference:
 *                a counter patched into the pre-encoded bytes), and whatever the socket holds is
 *                taken with one big read; a DOWN ends a call. Prints "tput_async_W <calls/s>"
 *                and, with --server-pid, the server's and this process's CPU per call and CPUs
 *                busy over the window ("srvcpu_async_W" ...), the way bench_call reports them. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <ei.h>

#include "bench/bench_util.h"
#include "ei_glue/glue.h"

/* What has been read and not yet taken: frames at rbuf[in_start, in_start + in_have). Big enough
 * for one read to drain whatever 64 calls in flight leave in the socket. */
static char rbuf[1 << 18];
static size_t in_start, in_have;

/* One read(2) appended to what is there (blocking); -1 on error or end of stream. */
static int
fill(int fd)
{
    if (!in_have)
        in_start = 0;
    else if (in_start + in_have + (1 << 16) > sizeof rbuf) {
        memmove(rbuf, rbuf + in_start, in_have);
        in_start = 0;
    }
    for (;;) {
        ssize_t r = read(fd, rbuf + in_start + in_have, sizeof rbuf - in_start - in_have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        in_have += (size_t)r;
        return 0;
    }
}

/* The next whole frame that is not a tick, already read: 1 and its body at rbuf[*at, *at + *len),
 * valid until the next fill; 0 if none is whole yet; -1 on error. Ticks are answered here. */
static int
next_frame(int fd, size_t *at, size_t *len)
{
    while (in_have >= 4) {
        const unsigned char *h = (const unsigned char *)rbuf + in_start;
        size_t fl = ((size_t)h[0] << 24) | ((size_t)h[1] << 16) | ((size_t)h[2] << 8) | h[3];
        if (fl + 4 > sizeof rbuf - (1 << 16))
            return -1;
        if (in_have < 4 + fl)
            return 0;
        in_start += 4 + fl;
        in_have -= 4 + fl;
        if (fl) {
            *at = in_start - fl;
            *len = fl;
            return 1;
        }
        if (bench_write_all(fd, "\0\0\0\0", 4) != 0) /* a tick: answered */
            return -1;
    }
    return 0;
}

static size_t first_len; /* the first frame of the run, length prefix included */
static int lowat = 1;    /* SO_RCVLOWAT now */
static long escapes;     /* waits that outlived 50 ms with SO_RCVLOWAT set */

/* Reads until want frames that are not ticks are in; the last is left at rbuf[*at, *at + *len). */
static int
read_frames(int fd, int want, size_t *at, size_t *len)
{
    int frames = 0;
    for (;;) {
        int r;
        while ((r = next_frame(fd, at, len)) == 1) {
            if (!first_len)
                first_len = 4 + *len;
            if (++frames == want)
                return 0;
        }
        if (r < 0)
            return -1;
        if (lowat > 1 && poll(&(struct pollfd){.fd = fd, .events = POLLIN}, 1, 50) == 0) {
            /* Linux may leave a reader with SO_RCVLOWAT asleep while less than it sits in the
             * queue (cnode_call's reader has the same 50 ms escape): wake for any byte */
            lowat = 1;
            setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
            escapes++;
        }
        if (fill(fd) != 0)
            return -1;
    }
}

static int
tcp_connect(const char *host, unsigned port)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%u", port);
    if (getaddrinfo(host, ps, &hints, &ai) != 0 || !ai)
        return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* The distribution port of alive@host from epmd (ERL_EPMD_PORT or 4369), or 0. */
static unsigned
port_please(const char *alive, const char *host)
{
    const char *ep = getenv("ERL_EPMD_PORT");
    int fd = tcp_connect(host, ep ? (unsigned)atoi(ep) : 4369);
    if (fd < 0)
        return 0;
    char req[300], resp[600];
    size_t n = cnode__epmd_port_please2_req(req, sizeof req, alive), got = 0;
    cnode__epmd_port2_resp out;
    unsigned port = 0;
    if (n && bench_write_all(fd, req, n) == 0) {
        ssize_t r;
        while (got < sizeof resp && (r = read(fd, resp + got, sizeof resp - got)) > 0)
            got += (size_t)r;
        if (cnode__epmd_port2_resp_decode(resp, got, &out, NULL) > 0 && out.result == 0)
            port = out.port;
    }
    close(fd);
    return port;
}

/* A connection to peer as name, handshake done: the socket, or -1. */
static int
dist_connect(const char *name, const char *cookie, const char *peer)
{
    char alive[256], host[256];
    const char *at = strchr(peer, '@');
    if (!at || (size_t)(at - peer) >= sizeof alive || strlen(at + 1) >= sizeof host)
        return -1;
    snprintf(alive, sizeof alive, "%.*s", (int)(at - peer), peer);
    snprintf(host, sizeof host, "%s", at + 1);
    unsigned port = port_please(alive, host);
    int fd = port ? tcp_connect(host, port) : -1;
    if (fd < 0)
        return -1;
    static cnode__hs hs;
    cnode__hs_init_dial(&hs, name, CNODE__DFLAGS_OURS, (uint32_t)getpid(), cookie, strlen(cookie), peer,
                        (uint32_t)getpid() * 2654435761u);
    for (;;) {
        const char *p;
        size_t n = cnode__hs_output(&hs, &p);
        if (n) {
            if (bench_write_all(fd, p, n) != 0)
                break;
            cnode__hs_written(&hs, n);
        }
        size_t want = cnode__hs_want(&hs);
        char in[4 + CNODE__HS_BODY_MAX];
        ssize_t r = want ? read(fd, in, want) : 0;
        if (want && r < 0)
            break;
        int v = cnode__hs_input(&hs, in, want ? (size_t)r : 0, NULL);
        if (v == CNODE__HS_ALIVE)
            v = cnode__hs_answer_alive(&hs, 0);
        if (v == CNODE__HS_UP) {
            if ((n = cnode__hs_output(&hs, &p)) && bench_write_all(fd, p, n) != 0)
                break;
            return fd;
        }
        if (v == CNODE__HS_FAIL) {
            fprintf(stderr, "bench_floor: handshake: %s\n", hs.why ? hs.why : "failed");
            break;
        }
    }
    close(fd);
    return -1;
}

/* Starts a frame: length (set by frame_end), pass-through, the control message's version. */
static void
frame_begin(ei_x_buff *f)
{
    ei_x_new(f);
    ei_x_append_buf(f, "\0\0\0\0\x70", 5);
    ei_x_encode_version(f);
}

static void
frame_end(ei_x_buff *f)
{
    unsigned flen = (unsigned)f->index - 4;
    f->buff[0] = (char)(flen >> 24);
    f->buff[1] = (char)(flen >> 16);
    f->buff[2] = (char)(flen >> 8);
    f->buff[3] = (char)flen;
}

/* The spawn request cnode_call sends for erlang:abs(-1), reference and Res both ref; refw[0] and
 * refw[1] get the offsets of the two references' second word (a NEWER_REFERENCE_EXT ends with its
 * words, big-endian), where run_tput writes a counter. */
static void
spawn_frame(ei_x_buff *f, const erlang_pid *self, const erlang_ref *ref, size_t refw[2])
{
    frame_begin(f);
    ei_x_encode_tuple_header(f, 6);
    ei_x_encode_long(f, CNODE__OP_SPAWN_REQUEST);
    ei_x_encode_ref(f, ref);
    refw[0] = (size_t)f->index - 8;
    ei_x_encode_pid(f, self);
    ei_x_encode_pid(f, self);
    ei_x_encode_tuple_header(f, 3);
    ei_x_encode_atom(f, "erpc");
    ei_x_encode_atom(f, "execute_call");
    ei_x_encode_long(f, 4);
    ei_x_encode_list_header(f, 1);
    ei_x_encode_atom(f, "monitor");
    ei_x_encode_empty_list(f);
    ei_x_encode_version(f);
    ei_x_encode_list_header(f, 4);
    ei_x_encode_ref(f, ref);
    refw[1] = (size_t)f->index - 8;
    ei_x_encode_atom(f, "erlang");
    ei_x_encode_atom(f, "abs");
    ei_x_encode_list_header(f, 1);
    ei_x_encode_long(f, -1);
    ei_x_encode_empty_list(f);
    ei_x_encode_empty_list(f);
    frame_end(f);
}

/* The control op of a frame body (112, 131, small tuple, arity, small integer, op), or -1 if it
 * does not start that way: the one byte run_tput looks at. */
static int
peek_op(const char *b, size_t len)
{
    const unsigned char *u = (const unsigned char *)b;
    return len >= 6 && u[0] == 112 && u[1] == 131 && u[2] == ERL_SMALL_TUPLE_EXT && u[4] == ERL_SMALL_INTEGER_EXT
               ? u[5]
               : -1;
}

/* Is the frame body b a DOWN whose payload is {Res, return, 1}? (checked once per run) */
static int
is_down_with_1(const char *b, size_t len)
{
    int idx = 1, ver, arity;
    long op = 0, v = 0;
    char atom[MAXATOMLEN];
    if (len < 2 || (unsigned char)b[0] != 112 || ei_decode_version(b, &idx, &ver) < 0 ||
        ei_decode_tuple_header(b, &idx, &arity) < 0 || ei_decode_long(b, &idx, &op) < 0 ||
        op != CNODE__OP_PAYLOAD_MONITOR_P_EXIT) {
        fprintf(stderr, "bench_floor: the last frame is not a DOWN with payload\n");
        return 0;
    }
    for (int k = 1; k < arity; k++)
        ei_skip_term(b, &idx);
    if (ei_decode_version(b, &idx, &ver) < 0 || ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 3 ||
        ei_skip_term(b, &idx) < 0 || ei_decode_atom(b, &idx, atom) < 0 || strcmp(atom, "return") ||
        ei_decode_long(b, &idx, &v) < 0 || v != 1) {
        fprintf(stderr, "bench_floor: the call did not return 1\n");
        return 0;
    }
    return 1;
}

/* Is the frame body b a message (SEND or SEND_SENDER) whose payload is the atom ping? */
static int
is_ping(const char *b, size_t len)
{
    int idx = 1, ver, arity;
    long op = 0;
    char atom[MAXATOMLEN];
    if (len < 2 || (unsigned char)b[0] != 112 || ei_decode_version(b, &idx, &ver) < 0 ||
        ei_decode_tuple_header(b, &idx, &arity) < 0 || ei_decode_long(b, &idx, &op) < 0 ||
        (op != CNODE__OP_SEND && op != CNODE__OP_SEND_SENDER)) {
        fprintf(stderr, "bench_floor: the last frame is not a message\n");
        return 0;
    }
    for (int k = 1; k < arity; k++)
        ei_skip_term(b, &idx);
    if (ei_decode_version(b, &idx, &ver) < 0 || ei_decode_atom(b, &idx, atom) < 0 || strcmp(atom, "ping")) {
        fprintf(stderr, "bench_floor: the echo did not send back ping\n");
        return 0;
    }
    return 1;
}

/* warm + n times: write the frame f, wait for `want` frames; the mean time of the last n in us,
 * or -1. The last frame is left at rbuf[*at, *at + *len) for the caller's check. */
static double
run_seq(int fd, const ei_x_buff *f, int want, long n, long warm, size_t *at, size_t *len)
{
    double t0 = bench_now_s();
    for (long i = 0; i < warm + n; i++) {
        if (i == warm)
            t0 = bench_now_s();
        if (want == 2 && i >= 1 && lowat != 2 * (int)first_len) {
            /* from the second call on the read wakes once for both frames, as cnode_call's does
             * (SO_RCVLOWAT of twice the spawn reply: the DOWN is longer, its size varies a little) */
            lowat = 2 * (int)first_len;
            setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
        }
        if (bench_write_all(fd, f->buff, (size_t)f->index) != 0 || read_frames(fd, want, at, len) != 0) {
            fprintf(stderr, "bench_floor: round %ld failed\n", i);
            return -1;
        }
    }
    return (bench_now_s() - t0) / (double)n * 1e6;
}

/* w calls in flight for 0.5 s of warm-up and secs of window, then drained; 0 or -1. */
static int
run_tput(int fd, const ei_x_buff *f, const size_t refw[2], int w, double secs, const char *spid)
{
    size_t fl = (size_t)f->index;
    char *out = malloc(fl * (size_t)w);
    if (!out)
        return -1;
    static uint32_t counter; /* the references of the whole run, each used once */
    long sent = 0, downs = 0, replies = 0, others = 0, c0 = 0, c1 = 0;
    int phase = 0, ok = 0; /* phase: 0 warm-up, 1 window, 2 draining */
    bench_ticks cpu0 = {{-1, -1}}, cpu1 = {{-1, -1}};
    double start = bench_now_s(), t0 = 0, t1 = 0;
    size_t last_at = 0, last_len = 0; /* the last DOWN read */
    for (;;) {
        int due = phase < 2 ? w - (int)(sent - downs) : 0;
        if (due > 0) {
            /* the free slots' requests, back to back, in one write: a copy of the template
             * each, with the counter in both references (the monitor's and Res) */
            for (int k = 0; k < due; k++) {
                char *p = out + (size_t)k * fl;
                memcpy(p, f->buff, fl);
                uint32_t c = ++counter;
                unsigned char be[4] = {(unsigned char)(c >> 24), (unsigned char)(c >> 16), (unsigned char)(c >> 8),
                                       (unsigned char)c};
                memcpy(p + refw[0], be, 4);
                memcpy(p + refw[1], be, 4);
            }
            if (bench_write_all(fd, out, fl * (size_t)due) != 0)
                break;
            sent += due;
        }
        if (phase == 2 && downs == sent) {
            /* drained: the last DOWN still lies where it was read (only fill moves the buffer) */
            ok = downs > 0 && is_down_with_1(rbuf + last_at, last_len);
            break;
        }
        if (fill(fd) != 0)
            break;
        size_t at, len;
        int r;
        while ((r = next_frame(fd, &at, &len)) == 1) {
            int op = peek_op(rbuf + at, len);
            if (op == CNODE__OP_PAYLOAD_MONITOR_P_EXIT) {
                downs++;
                last_at = at, last_len = len;
            } else if (op == CNODE__OP_SPAWN_REPLY) {
                replies++;
            } else {
                others++;
            }
        }
        if (r < 0)
            break;
        double t = bench_now_s();
        if (phase == 0 && t - start >= 0.5) {
            phase = 1;
            c0 = downs, cpu0 = bench_both_ticks(spid), t0 = t;
        } else if (phase == 1 && t - t0 >= secs) {
            phase = 2;
            c1 = downs, cpu1 = bench_both_ticks(spid), t1 = t;
        }
    }
    free(out);
    if (!ok || replies != sent || others) {
        fprintf(stderr, "bench_floor: %d in flight: %ld sent, %ld spawn replies, %ld DOWNs, %ld other frames%s\n", w,
                sent, replies, downs, others, ok ? "" : " (not drained, or the last call did not return 1)");
        return -1;
    }
    bench_print_window("async", w, c1 - c0, t1 - t0, cpu0, cpu1);
    return 0;
}

int
main(int argc, char **argv)
{
    const char *sname = "bench_floor", *cookie = NULL, *peer = NULL, *mode = "lat", *windows = "64", *spid = NULL;
    long n = 20000, warm = 2000;
    double secs = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--sname"))
            sname = v;
        else if (!strcmp(k, "--cookie"))
            cookie = v;
        else if (!strcmp(k, "--peer"))
            peer = v;
        else if (!strcmp(k, "--n"))
            n = atol(v);
        else if (!strcmp(k, "--warmup"))
            warm = atol(v);
        else if (!strcmp(k, "--mode"))
            mode = v;
        else if (!strcmp(k, "--windows"))
            windows = v;
        else if (!strcmp(k, "--secs"))
            secs = atof(v);
        else if (!strcmp(k, "--server-pid"))
            spid = v;
    }
    if (!peer || !cookie || n <= 0 || (strcmp(mode, "lat") && strcmp(mode, "rt") && strcmp(mode, "tput")))
        return 2;
    ei_init();
    char me[300], host[256];
    if (gethostname(host, sizeof host) != 0)
        return 1;
    host[strcspn(host, ".")] = 0;
    snprintf(me, sizeof me, "%s@%s", sname, host);
    int fd = dist_connect(me, cookie, peer);
    if (fd < 0) {
        fprintf(stderr, "bench_floor: cannot connect to %s\n", peer);
        return 1;
    }
    erlang_pid self;
    memset(&self, 0, sizeof self);
    snprintf(self.node, sizeof self.node, "%s", me);
    self.num = 1;
    self.creation = (unsigned)getpid();
    erlang_ref ref;
    memset(&ref, 0, sizeof ref);
    snprintf(ref.node, sizeof ref.node, "%s", me);
    ref.len = 3;
    ref.n[0] = 1;
    ref.n[1] = 2;
    ref.n[2] = 3;
    ref.creation = self.creation;
    ei_x_buff f;
    size_t at = 0, len = 0, refw[2];
    int rc = 0;
    if (!strcmp(mode, "rt")) {
        /* REG_SEND {6, Self, '', bench_echo} + {Self, ping}: the frame cnode_reg_send writes */
        frame_begin(&f);
        ei_x_encode_tuple_header(&f, 4);
        ei_x_encode_long(&f, CNODE__OP_REG_SEND);
        ei_x_encode_pid(&f, &self);
        ei_x_encode_atom(&f, "");
        ei_x_encode_atom(&f, "bench_echo");
        ei_x_encode_version(&f);
        ei_x_encode_tuple_header(&f, 2);
        ei_x_encode_pid(&f, &self);
        ei_x_encode_atom(&f, "ping");
        frame_end(&f);
        double us = run_seq(fd, &f, 1, n, warm, &at, &len);
        if (us < 0 || !is_ping(rbuf + at, len))
            rc = 1;
        else
            printf("rt_us %.3f\n", us);
    } else if (!strcmp(mode, "lat")) {
        spawn_frame(&f, &self, &ref, refw);
        double us = run_seq(fd, &f, 2, n, warm, &at, &len);
        if (us < 0 || !is_down_with_1(rbuf + at, len))
            rc = 1;
        else
            printf("call_us %.3f\n", us);
    } else {
        spawn_frame(&f, &self, &ref, refw);
        char list[256];
        snprintf(list, sizeof list, "%s", windows);
        for (char *s = strtok(list, ","); s && rc == 0; s = strtok(NULL, ","))
            if (atoi(s) < 1 || run_tput(fd, &f, refw, atoi(s), secs, spid) != 0)
                rc = 1;
    }
    if (escapes)
        fprintf(stderr, "bench_floor: %ld waits outlived 50 ms and read with SO_RCVLOWAT 1 after\n", escapes);
    ei_x_free(&f);
    close(fd);
    return rc;
}
