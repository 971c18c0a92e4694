/* The server-side floor of an erpc call (issue 14): what any server, however lean, pays to
 * answer a BEAM node's erpc:call(Node, M, F, [X]) with X (what cnode_demo:echo/1 returns on
 * `cnode serve`). One thread; the name is registered with epmd (the socket kept open, as a node
 * keeps it) and connections are accepted on loopback with the project's own handshake machine
 * (ei_glue, pure wire code) over a blocking socket, advertising the flags our node does
 * (DFLAG_SPAWN among them: without it BEAM never sends the spawn request).
 * Per spawn request, {29,ReqId,From,GL,{erpc,execute_call,4},Opts} + [Res,M,F,[X|_]], the bytes
 * of ReqId, From, Res and X are located by walking the terms (the project's bounded walker, no
 * decoding) and copied into the two frames `cnode serve` writes for an erpc call:
 *   {31,ReqId,From,2,Pid}                                  the spawn reply (monitor requested)
 *   {28,Pid,From,ReqId} + {Res,return,X}                   the DOWN that carries the result
 * written, for all the requests that one read brought in, with one write(2). The pid is always
 * the same: BEAM keys the monitor by ReqId, and nothing else ever names the process. Every
 * spawn request is answered this way whatever it asks for (the bench sends only erpc calls of
 * echo/1). Also answered: ticks, and net_kernel's is_auth (net_adm:ping, which the bench
 * client runs first); every other frame (monitors of net_kernel, demonitors) is dropped.
 * No threads, locks, processes or allocation per call. Serves until killed; prints "ready"
 * once registered. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <ei.h>

#include "bench/bench_util.h"
#include "ei_glue/glue.h"

#define MAXCONN 16        /* the bench client, plus `cnode ping` and stragglers */
#define IN_CAP (1u << 20) /* a frame longer than this closes its connection */
#define IDLE_MS 100       /* a lone connection's read wakes this often to look for new ones */

typedef struct {
    int fd;
    char *in; /* IN_CAP bytes: [start, start + have) not yet taken */
    size_t start, have;
} conn;

static conn conns[MAXCONN];
static int nconn;
static struct {
    char *p;
    size_t len, cap;
} out; /* the replies of one read, written at once */

static const char *me, *cookie;
static uint32_t creation;
static char pid_b[320], return_b[16], yes_b[16], empty_b[8]; /* pre-encoded terms, no 131 */
static size_t pid_n, return_n, yes_n, empty_n;
static const cnode__term_limits lim = {.max_depth = 64, .max_elements = 1u << 16};

static int
out_room(size_t n)
{
    if (out.len + n <= out.cap)
        return 0;
    size_t cap = out.cap ? out.cap : 1 << 16;
    while (cap < out.len + n)
        cap *= 2;
    char *p = realloc(out.p, cap);
    if (!p)
        return -1;
    out.p = p;
    out.cap = cap;
    return 0;
}

static void
put(const void *p, size_t n)
{
    memcpy(out.p + out.len, p, n);
    out.len += n;
}

static void
put32(size_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
    put(b, 4);
}

/* The extent of the term at b[*i] (bounded by len), *i moved past it; 0, or -1. */
static int
skip(const char *b, size_t len, size_t *i, size_t *n)
{
    ptrdiff_t e = *i < len ? cnode__term_extent(b + *i, len - *i, &lim, NULL) : -1;
    if (e <= 0)
        return -1;
    if (n)
        *n = (size_t)e;
    *i += (size_t)e;
    return 0;
}

/* {29,ReqId,From,GL,MFA,Opts} + [Res,M,F,A]: b is the body from 'p', at i the tuple's 2nd element. */
static int
spawn_request(const char *b, size_t len, size_t i)
{
    size_t ref, ref_n, from, from_n, res, res_n, x, x_n;
    ref = i;
    if (skip(b, len, &i, &ref_n) || (from = i, skip(b, len, &i, &from_n)) || skip(b, len, &i, NULL) || skip(b, len, &i, NULL) ||
        skip(b, len, &i, NULL))
        return -1;
    /* the payload: 131, LIST_EXT of 4, Res, M, F, A */
    if (i + 6 > len || (unsigned char)b[i] != 131 || (unsigned char)b[i + 1] != 108)
        return -1;
    i += 6;
    res = i;
    if (skip(b, len, &i, &res_n) || skip(b, len, &i, NULL) || skip(b, len, &i, NULL) || i >= len)
        return -1;
    x = i;
    if ((unsigned char)b[i] == 108 && i + 5 < len) { /* [X | _]: X */
        x += 5;
        if (skip(b, len, &x, &x_n))
            return -1;
        x -= x_n;
    } else if (skip(b, len, &x, &x_n)) { /* [] or a string: the arguments themselves */
        return -1;
    } else {
        x -= x_n;
    }
    size_t sr = 6 + ref_n + from_n + 2 + pid_n;                          /* p 131 {31,R,F,2,P} */
    size_t dn = 6 + pid_n + from_n + ref_n + 3 + res_n + return_n + x_n; /* p 131 {28,P,F,R} 131 {Res,return,X} */
    if (out_room(8 + sr + dn) != 0)
        return -1;
    put32(sr);
    put("\x70\x83\x68\x05\x61\x1f", 6);
    put(b + ref, ref_n);
    put(b + from, from_n);
    put("\x61\x02", 2);
    put(pid_b, pid_n);
    put32(dn);
    put("\x70\x83\x68\x04\x61\x1c", 6);
    put(pid_b, pid_n);
    put(b + from, from_n);
    put(b + ref, ref_n);
    put("\x83\x68\x03", 3);
    put(b + res, res_n);
    put(return_b, return_n);
    put(b + x, x_n);
    return 0;
}

/* {6,From,'',net_kernel} + {'$gen_call',{Pid,Tag},{is_auth,_}}: send {Tag,yes} to Pid (rare: ei decodes, bounded). */
static void
reg_send(const char *b, size_t len, size_t i)
{
    char name[MAXATOMLEN_UTF8];
    int idx, arity;
    size_t to = i, pay, end;
    if (skip(b, len, &i, NULL) || skip(b, len, &i, NULL) || (to = i, skip(b, len, &i, NULL)))
        return;
    idx = (int)to;
    if (ei_decode_atom(b, &idx, name) < 0 || strcmp(name, "net_kernel") != 0 || i >= len || (unsigned char)b[i] != 131)
        return;
    pay = end = i + 1;
    size_t pid, pid_n2, tag, tag_n;
    if (skip(b, len, &end, NULL)) /* the payload fits its frame before ei reads it */
        return;
    idx = (int)pay;
    if (ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 3 || ei_decode_atom(b, &idx, name) < 0 ||
        strcmp(name, "$gen_call") != 0 || ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 2)
        return;
    size_t k = (size_t)idx;
    pid = k;
    if (skip(b, len, &k, &pid_n2) || (tag = k, skip(b, len, &k, &tag_n)))
        return;
    idx = (int)k;
    if (ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 2 || ei_decode_atom(b, &idx, name) < 0 ||
        strcmp(name, "is_auth") != 0)
        return;
    /* SEND: {2,'',Pid} + {Tag,yes} */
    size_t n = 6 + empty_n + pid_n2 + 3 + tag_n + yes_n;
    if (out_room(4 + n) != 0)
        return;
    put32(n);
    put("\x70\x83\x68\x03\x61\x02", 6);
    put(empty_b, empty_n);
    put(b + pid, pid_n2);
    put("\x83\x68\x02", 3);
    put(b + tag, tag_n);
    put(yes_b, yes_n);
}

/* One frame's body (len > 0): 'p', 131, a tuple whose first element is the operation. */
static void
frame(const char *b, size_t len)
{
    if (len < 6 || (unsigned char)b[0] != 112 || (unsigned char)b[1] != 131 || (unsigned char)b[2] != 104 ||
        (unsigned char)b[4] != 97)
        return; /* not a control tuple of small arity with a small-integer operation: nothing we answer */
    if (b[5] == 29 && b[3] == 6 && spawn_request(b, len, 6) != 0)
        fprintf(stderr, "bench_floor_srv: a spawn request it could not read, dropped\n");
    else if (b[5] == 6 && b[3] == 4)
        reg_send(b, len, 6);
}

static void
conn_close(int k)
{
    close(conns[k].fd);
    free(conns[k].in);
    conns[k] = conns[--nconn];
}

/* One read from connection k and the answers to every whole frame in: 0, 1 (nothing came
 * within IDLE_MS), or -1 (closed). */
static int
conn_input(int k)
{
    conn *c = &conns[k];
    if (c->start + c->have == IN_CAP) {
        memmove(c->in, c->in + c->start, c->have);
        c->start = 0;
    }
    ssize_t r = read(c->fd, c->in + c->start + c->have, IN_CAP - c->start - c->have);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 1;
    if (r < 0 && errno == EINTR)
        return 0;
    if (r <= 0)
        return -1;
    c->have += (size_t)r;
    out.len = 0;
    while (c->have >= 4) {
        const unsigned char *h = (const unsigned char *)c->in + c->start;
        size_t fl = ((size_t)h[0] << 24) | ((size_t)h[1] << 16) | ((size_t)h[2] << 8) | h[3];
        if (fl + 4 > IN_CAP)
            return -1;
        if (c->have < 4 + fl)
            break;
        if (!fl) { /* a tick: answered with one */
            if (out_room(4) != 0)
                return -1;
            put32(0);
        } else {
            frame(c->in + c->start + 4, fl);
        }
        c->start += 4 + fl;
        c->have -= 4 + fl;
    }
    if (!c->have)
        c->start = 0;
    return out.len && bench_write_all(c->fd, out.p, out.len) != 0 ? -1 : 0;
}

/* The accept side of the handshake on a fresh socket, blocking (a silent peer gives up after
 * the receive timeout): 0 once up, or -1. */
static int
handshake(int fd)
{
    cnode__hs hs;
    cnode__hs_init_accept(&hs, me, CNODE__DFLAGS_OURS, creation, cookie, strlen(cookie),
                          (uint32_t)getpid() * 2654435761u ^ (uint32_t)fd);
    for (;;) {
        const char *p;
        size_t n = cnode__hs_output(&hs, &p);
        if (n) {
            if (bench_write_all(fd, p, n) != 0)
                return -1;
            cnode__hs_written(&hs, n);
        }
        size_t want = cnode__hs_want(&hs);
        char in[4 + CNODE__HS_BODY_MAX];
        ssize_t r = want ? read(fd, in, want) : 0;
        if (want && r < 0 && errno == EINTR)
            continue;
        if (want && r < 0)
            return -1;
        int v = cnode__hs_input(&hs, in, want ? (size_t)r : 0, NULL);
        if (v == CNODE__HS_NAME)
            v = cnode__hs_answer_name(&hs, CNODE__HS_ST_OK);
        if (v == CNODE__HS_PROVEN)
            v = cnode__hs_answer_proven(&hs);
        if (v == CNODE__HS_UP)
            return (n = cnode__hs_output(&hs, &p)) && bench_write_all(fd, p, n) != 0 ? -1 : 0;
        if (v == CNODE__HS_FAIL) {
            if ((n = cnode__hs_output(&hs, &p)))
                (void)bench_write_all(fd, p, n);
            fprintf(stderr, "bench_floor_srv: handshake: %s\n", hs.why ? hs.why : "failed");
            return -1;
        }
    }
}

static void
accept_one(int lfd)
{
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        return;
    int one = 1;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char *in = nconn < MAXCONN ? malloc(IN_CAP) : NULL;
    if (!in || handshake(fd) != 0) {
        free(in);
        close(fd);
        return;
    }
    /* from now on a read wakes every IDLE_MS when nothing comes, so that a lone connection's
     * blocking read (the fast path: one system call per wake) still lets new ones in */
    tv = (struct timeval){.tv_usec = IDLE_MS * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    conns[nconn++] = (conn){.fd = fd, .in = in};
}

/* Registers alive at port with epmd (ERL_EPMD_PORT or 4369) on loopback: the socket, kept open
 * as the registration, with *cr the creation; or -1. */
static int
epmd_register(const char *alive, unsigned port, uint32_t *cr)
{
    const char *ep = getenv("ERL_EPMD_PORT");
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)(ep ? atoi(ep) : 4369)), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    char req[600], resp[8];
    size_t n = cnode__epmd_alive2_req(req, sizeof req, (uint16_t)port, alive), got = 0;
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || !n || bench_write_all(fd, req, n) != 0) {
        close(fd);
        return -1;
    }
    cnode__epmd_alive2_resp r;
    ptrdiff_t d = CNODE__NEED_MORE;
    while (d == CNODE__NEED_MORE && got < sizeof resp) {
        ssize_t k = read(fd, resp + got, 1); /* byte by byte: nothing after the reply is ours to take */
        if (k <= 0)
            break;
        got++;
        d = cnode__epmd_alive2_resp_decode(resp, got, &r, NULL);
    }
    if (d <= 0 || r.result != 0) {
        close(fd);
        return -1;
    }
    *cr = r.creation;
    return fd;
}

static int
encode_consts(void)
{
    erlang_pid pid;
    int i = 0;
    cnode__pid_make(&pid, me, 1, 0, creation);
    if (ei_encode_pid(NULL, &i, &pid) < 0 || (size_t)i > sizeof pid_b) /* sized first: ei writes unchecked */
        return -1;
    i = 0;
    ei_encode_pid(pid_b, &i, &pid);
    pid_n = (size_t)i;
    i = 0;
    ei_encode_atom(return_b, &i, "return");
    return_n = (size_t)i;
    i = 0;
    ei_encode_atom(yes_b, &i, "yes");
    yes_n = (size_t)i;
    i = 0;
    ei_encode_atom(empty_b, &i, "");
    empty_n = (size_t)i;
    return 0;
}

int
main(int argc, char **argv)
{
    const char *sname = "bench_floor_srv";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--sname"))
            sname = argv[i + 1];
        else if (!strcmp(argv[i], "--cookie"))
            cookie = argv[i + 1];
    }
    if (!cookie || strlen(sname) > 200)
        return 2;
    signal(SIGPIPE, SIG_IGN); /* a peer that closed costs its connection (EPIPE), not the process */
    ei_init();
    char name[300], host[256];
    if (gethostname(host, sizeof host) != 0)
        return 1;
    host[strcspn(host, ".")] = 0;
    snprintf(name, sizeof name, "%s@%s", sname, host);
    if (strlen(name) > 255) /* longer is no atom, so no node name */
        return 2;
    me = name;
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 16) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("bench_floor_srv: listen");
        return 1;
    }
    int efd = epmd_register(sname, ntohs(sa.sin_port), &creation);
    if (efd < 0 || encode_consts() != 0) {
        fprintf(stderr, "bench_floor_srv: epmd did not register %s\n", sname);
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    struct pollfd pf[MAXCONN + 1];
    unsigned wakes = 0;
    for (;;) {
        if (nconn == 1) {
            /* the fast path: one blocking read per wake. New connections are looked for when the
             * read times out, or every 1024 wakes under load (the bench's clients come one after
             * another, but a ping must not wait for a busy client to finish) */
            int k = conn_input(0);
            if (k < 0)
                conn_close(0);
            else if ((k == 1 || (++wakes & 1023) == 0) && poll(&(struct pollfd){.fd = lfd, .events = POLLIN}, 1, 0) == 1)
                accept_one(lfd);
            continue;
        }
        pf[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
        for (int k = 0; k < nconn; k++)
            pf[k + 1] = (struct pollfd){.fd = conns[k].fd, .events = POLLIN};
        int n0 = nconn;
        if (poll(pf, (nfds_t)n0 + 1, -1) < 0 && errno != EINTR)
            break;
        for (int k = n0 - 1; k >= 0; k--) /* from the end: conn_close moves the last one into k */
            if (pf[k + 1].revents && conn_input(k) < 0)
                conn_close(k);
        if (pf[0].revents & POLLIN)
            accept_one(lfd);
    }
    while (nconn)
        conn_close(0);
    free(out.p);
    close(efd);
    close(lfd);
    return 1;
}
