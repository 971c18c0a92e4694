/* Helpers shared by the CUnit programs (header-only, test code). */
#ifndef CNODE_TESTUTIL_H
#define CNODE_TESTUTIL_H
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ADD_TEST(suite, fn) CU_add_test((suite), #fn, (fn))

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
#endif
