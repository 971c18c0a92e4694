/* Helpers shared by the CUnit programs (header-only, test code). */
#ifndef CNODE_TESTUTIL_H
#define CNODE_TESTUTIL_H
#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ADD_TEST(suite, fn) CU_add_test((suite), #fn, (fn))

/* CNODE_TEST_TIME_SCALE (a number >= 1, default 1) stretches every deadline a
 * test waits under, for a slow machine (the same knob as the common_test
 * harness). Deadlines only bound a wait for something that must happen; no
 * test asserts how fast it happened (speed belongs in `make bench`). */
static inline double
tu_time_scale(void)
{
    const char *s = getenv("CNODE_TEST_TIME_SCALE");
    double v = s ? atof(s) : 1.0;
    return v > 1.0 ? v : 1.0;
}

/* A deadline of ms milliseconds on this machine. */
static inline long
tu_ms(long ms)
{
    return (long)((double)ms * tu_time_scale());
}

/* Monotonic milliseconds. */
static inline long long
tu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Hex text to bytes; returns the byte count or -1. */
static inline long
tu_unhex(const char *hex, unsigned char *out, size_t cap)
{
    size_t n = strlen(hex), i;
    if (n % 2 || n / 2 > cap)
        return -1;
    for (i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    return (long)(n / 2);
}

/* Whole file into a malloc'd NUL-terminated buffer (free it); NULL if missing. */
static inline char *
tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[n] = 0;
        if (len)
            *len = (size_t)n;
    }
    return b;
}

/* A copy of data[0, len) that ends exactly at a PROT_NONE page, so any read
 * past the end faults. Free with tu_guard_free(). */
typedef struct {
    void *map;
    size_t maplen;
    char *p;
} tu_guard;

static inline tu_guard
tu_guard_copy(const void *data, size_t len)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (len + pg - 1) / pg * pg;
    tu_guard g = {0};
    g.maplen = body + pg;
    g.map = mmap(NULL, g.maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g.map == MAP_FAILED) {
        g.map = NULL;
        return g;
    }
    mprotect((char *)g.map + body, pg, PROT_NONE);
    g.p = (char *)g.map + body - len;
    if (len)
        memcpy(g.p, data, len);
    return g;
}

static inline void
tu_guard_free(tu_guard *g)
{
    if (g->map)
        munmap(g->map, g->maplen);
    g->map = NULL;
}

/* 1 if something accepts TCP connections on 127.0.0.1:port. */
static inline int
tu_port_open(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* Stop the epmd tu_epmd_start started: SIGTERM, SIGKILL after 2 s, reaped. */
static inline void
tu_epmd_stop(pid_t *pid)
{
    if (*pid <= 0)
        return;
    kill(*pid, SIGTERM);
    for (int i = 0; i < 40; i++) {
        if (waitpid(*pid, NULL, WNOHANG) == *pid) {
            *pid = 0;
            return;
        }
        usleep(50000);
    }
    kill(*pid, SIGKILL);
    waitpid(*pid, NULL, 0);
    *pid = 0;
}

/* A private epmd for this test program (never the machine's on 4369): on a
 * free loopback port, ERL_EPMD_PORT set to it for the nodes made here; its
 * pid in *pid for tu_epmd_stop. 0, or -1 (no epmd binary, no port). */
static inline int
tu_epmd_start(pid_t *pid)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t sl = sizeof sa;
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
            if (fd >= 0)
                close(fd);
            return -1;
        }
        close(fd); /* a free port now; epmd takes it below (or another try) */
        unsigned port = ntohs(sa.sin_port);
        char ps[16];
        snprintf(ps, sizeof ps, "%u", port);
        *pid = fork();
        if (*pid < 0)
            return -1;
        if (*pid == 0) {
            int dn = open("/dev/null", O_WRONLY);
            if (dn >= 0) {
                dup2(dn, 1);
                dup2(dn, 2);
            }
            execlp("epmd", "epmd", "-port", ps, "-address", "127.0.0.1", (char *)NULL);
            _exit(127);
        }
        for (int i = 0; i < 100; i++) { /* up to 5 s */
            if (tu_port_open(port)) {
                setenv("ERL_EPMD_PORT", ps, 1);
                return 0;
            }
            if (waitpid(*pid, NULL, WNOHANG) == *pid) {
                *pid = 0; /* it exited: no binary, or the port was taken */
                break;
            }
            usleep(50000);
        }
        tu_epmd_stop(pid);
    }
    return -1;
}
#endif
