/* The client-side floor of an erpc call (issue 14): what any client, however lean, pays to
 * make a BEAM node run erpc:execute_call/4. After ei_connect, one pre-encoded spawn request
 * (the same control message and payload cnode_call sends: {29,ReqId,From,GL,
 * {erpc,execute_call,4},[monitor]} + [Res,erlang,abs,[-1]]) is written with one write(2), and
 * the client blocks in read(2) until the spawn reply and the DOWN that carries the result are
 * both in. No locks, no threads, no decoding beyond the frame lengths and the DOWN's reason
 * (checked once, after the run, on the last call). The reference and pid never change: the
 * server does not care, and a fresh reference per call would only add client work.
 * Stock ei cannot be the transport: it does not advertise DFLAG_SPAWN, and a BEAM node then
 * answers a spawn request with nothing. So the connection is made with the project's own
 * handshake machine (ei_glue, pure wire code) over a blocking socket; everything after is ei's
 * encoders and plain read/write. Prints "call_us <float>". */
#include <errno.h>
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

#include "ei_glue/glue.h"

static int
write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads until two frames that are not ticks are in; the last frame is left at buf[*at, *at + *len). */
static size_t first_len; /* the first spawn reply's frame, length prefix included */
static int lowat = 1;     /* SO_RCVLOWAT now */
static long escapes;      /* waits that outlived 50 ms with SO_RCVLOWAT set */

static int
read_two(int fd, char *buf, size_t cap, size_t *at, size_t *len)
{
    static size_t have = 0; /* bytes of the next frames already read */
    static size_t start = 0;
    int frames = 0;
    for (;;) {
        while (have >= 4) {
            const unsigned char *h = (const unsigned char *)buf + start;
            size_t fl = ((size_t)h[0] << 24) | ((size_t)h[1] << 16) | ((size_t)h[2] << 8) | h[3];
            if (fl + 4 > cap)
                return -1;
            if (have < 4 + fl)
                break;
            if (fl) {
                if (!frames && !first_len)
                    first_len = 4 + fl;
                frames++;
                *at = start + 4;
                *len = fl;
            } else if (write_all(fd, "\0\0\0\0", 4) != 0) { /* a tick: answered */
                return -1;
            }
            start += 4 + fl;
            have -= 4 + fl;
            if (frames == 2)
                return 0;
        }
        if (start + have + 4096 > cap) {
            memmove(buf, buf + start, have);
            start = 0;
        }
        if (lowat > 1 && poll(&(struct pollfd){.fd = fd, .events = POLLIN}, 1, 50) == 0) {
            /* Linux may leave a reader with SO_RCVLOWAT asleep while less than it sits in the
             * queue (cnode_call's reader has the same 50 ms escape): wake for any byte */
            lowat = 1;
            setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
            escapes++;
        }
        ssize_t r = read(fd, buf + start + have, cap - start - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        have += (size_t)r;
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
    if (n && write_all(fd, req, n) == 0) {
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
            if (write_all(fd, p, n) != 0)
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
            if ((n = cnode__hs_output(&hs, &p)) && write_all(fd, p, n) != 0)
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

int
main(int argc, char **argv)
{
    const char *sname = "bench_floor", *cookie = NULL, *peer = NULL;
    long n = 20000, warm = 2000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--sname"))
            sname = argv[i + 1];
        else if (!strcmp(argv[i], "--cookie"))
            cookie = argv[i + 1];
        else if (!strcmp(argv[i], "--peer"))
            peer = argv[i + 1];
        else if (!strcmp(argv[i], "--n"))
            n = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup"))
            warm = atol(argv[i + 1]);
    }
    if (!peer || !cookie)
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
    /* the frame: length, pass-through, control message, payload */
    ei_x_buff f;
    ei_x_new(&f);
    ei_x_append_buf(&f, "\0\0\0\0\x70", 5);
    ei_x_encode_version(&f);
    ei_x_encode_tuple_header(&f, 6);
    ei_x_encode_long(&f, 29);
    ei_x_encode_ref(&f, &ref);
    ei_x_encode_pid(&f, &self);
    ei_x_encode_pid(&f, &self);
    ei_x_encode_tuple_header(&f, 3);
    ei_x_encode_atom(&f, "erpc");
    ei_x_encode_atom(&f, "execute_call");
    ei_x_encode_long(&f, 4);
    ei_x_encode_list_header(&f, 1);
    ei_x_encode_atom(&f, "monitor");
    ei_x_encode_empty_list(&f);
    ei_x_encode_version(&f);
    ei_x_encode_list_header(&f, 4);
    ei_x_encode_ref(&f, &ref);
    ei_x_encode_atom(&f, "erlang");
    ei_x_encode_atom(&f, "abs");
    ei_x_encode_list_header(&f, 1);
    ei_x_encode_long(&f, -1);
    ei_x_encode_empty_list(&f);
    ei_x_encode_empty_list(&f);
    unsigned flen = (unsigned)f.index - 4;
    f.buff[0] = (char)(flen >> 24);
    f.buff[1] = (char)(flen >> 16);
    f.buff[2] = (char)(flen >> 8);
    f.buff[3] = (char)flen;
    static char buf[1 << 16];
    size_t at = 0, len = 0;
    struct timespec t0 = {0}, t1;
    for (long i = 0; i < warm + n; i++) {
        if (i == warm)
            clock_gettime(CLOCK_MONOTONIC, &t0);
        if (i >= 1 && lowat != 2 * (int)first_len) {
            /* from the second call on the read wakes once for both frames, as cnode_call's does
             * (SO_RCVLOWAT of twice the spawn reply: the DOWN is longer, its size varies a little) */
            lowat = 2 * (int)first_len;
            setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
        }
        if (write_all(fd, f.buff, (size_t)f.index) != 0 || read_two(fd, buf, sizeof buf, &at, &len) != 0) {
            fprintf(stderr, "bench_floor: call %ld failed\n", i);
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* the last frame is the DOWN: 112, 131, the control tuple, 131, {Res, return, 1} */
    int idx = 1, ver, arity;
    long op = 0, v = 0;
    char atom[MAXATOMLEN];
    if (len < 2 || (unsigned char)buf[at] != 112 || ei_decode_version(buf + at, &idx, &ver) < 0 ||
        ei_decode_tuple_header(buf + at, &idx, &arity) < 0 || ei_decode_long(buf + at, &idx, &op) < 0 ||
        op != 28) {
        fprintf(stderr, "bench_floor: the last frame is not a DOWN with payload\n");
        return 1;
    }
    for (int k = 1; k < arity; k++)
        ei_skip_term(buf + at, &idx);
    if (ei_decode_version(buf + at, &idx, &ver) < 0 || ei_decode_tuple_header(buf + at, &idx, &arity) < 0 ||
        arity != 3 || ei_skip_term(buf + at, &idx) < 0 || ei_decode_atom(buf + at, &idx, atom) < 0 ||
        strcmp(atom, "return") || ei_decode_long(buf + at, &idx, &v) < 0 || v != 1) {
        fprintf(stderr, "bench_floor: the call did not return 1\n");
        return 1;
    }
    double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    printf("call_us %.3f\n", ns / (double)n / 1000.0);
    if (escapes)
        fprintf(stderr, "bench_floor: %ld waits outlived 50 ms and read with SO_RCVLOWAT 1 after\n", escapes);
    ei_x_free(&f);
    close(fd);
    return 0;
}
