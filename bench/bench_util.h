/* Small helpers the bench programs share: whole writes, a monotonic clock, and the CPU time of a
 * window (this process's and the server's, from /proc/PID/stat) printed in the lines run.sh reads
 * ("tput_W_K", "srvcpu_W_K", "srvcpu_util_W_K", "clicpu_..."). Header-only: each program is one
 * file built on its own. */
#ifndef CNODE_BENCH_UTIL_H
#define CNODE_BENCH_UTIL_H

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Writes all n bytes (a blocking socket), 0 or -1. */
static inline int
bench_write_all(int fd, const char *p, size_t n)
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

static inline double
bench_now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* utime + stime of pid in clock ticks, or -1. */
static inline long
bench_cpu_ticks(const char *pid)
{
    if (!pid)
        return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    long ut = 0, st = 0;
    /* fields after the command: state(3) ... utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &ut, &st) != 2)
        return -1;
    return ut + st;
}

/* CPU ticks of the server (0) and of this process (1) at a window's edge. */
typedef struct {
    long t[2];
} bench_ticks;

static inline bench_ticks
bench_both_ticks(const char *spid)
{
    char me[32];
    snprintf(me, sizeof me, "%ld", (long)getpid());
    return (bench_ticks){{bench_cpu_ticks(spid), bench_cpu_ticks(me)}};
}

/* A window's lines: calls per second, and per side CPU per call (µs) and CPUs busy. */
static inline void
bench_print_window(const char *what, int k, long calls, double secs, bench_ticks a, bench_ticks b)
{
    printf("tput_%s_%d %.1f\n", what, k, (double)calls / secs);
    static const char *side[] = {"srvcpu", "clicpu"};
    double hz = (double)sysconf(_SC_CLK_TCK);
    for (int i = 0; i < 2; i++)
        if (a.t[i] >= 0 && b.t[i] >= 0 && calls > 0) {
            printf("%s_%s_%d %.3f\n", side[i], what, k, (double)(b.t[i] - a.t[i]) * (1e6 / hz) / (double)calls);
            printf("%s_util_%s_%d %.3f\n", side[i], what, k, (double)(b.t[i] - a.t[i]) / hz / secs);
        }
    fflush(stdout);
}

#endif
