/* Node filters: substring or PCRE2 regex, with excluded_node_patterns
 * (seed-behaviour.md A5). Match data for regexes comes from a small
 * lock-free pool so that matching from many threads allocates nothing once
 * warm. libpcre2-8 is loaded (dlopen) by the first regex filter: a node that
 * never uses one does not map it. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <dlfcn.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode_balancer.h"

#define POOL 8

static struct {
    pcre2_code *(*compile)(PCRE2_SPTR, PCRE2_SIZE, uint32_t, int *, PCRE2_SIZE *, pcre2_compile_context *);
    void (*code_free)(pcre2_code *);
    int (*get_error_message)(int, PCRE2_UCHAR *, PCRE2_SIZE);
    pcre2_match_data *(*match_data_create)(uint32_t, pcre2_general_context *);
    void (*match_data_free)(pcre2_match_data *);
    int (*match)(const pcre2_code *, PCRE2_SPTR, PCRE2_SIZE, PCRE2_SIZE, uint32_t, pcre2_match_data *, pcre2_match_context *);
} px;
static int px_ok;
static pthread_once_t px_once = PTHREAD_ONCE_INIT;

/* The library stays loaded for the life of the process. */
static void
px_load(void)
{
    void *h = dlopen("libpcre2-8.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return;
    *(void **)&px.compile = dlsym(h, "pcre2_compile_8");
    *(void **)&px.code_free = dlsym(h, "pcre2_code_free_8");
    *(void **)&px.get_error_message = dlsym(h, "pcre2_get_error_message_8");
    *(void **)&px.match_data_create = dlsym(h, "pcre2_match_data_create_8");
    *(void **)&px.match_data_free = dlsym(h, "pcre2_match_data_free_8");
    *(void **)&px.match = dlsym(h, "pcre2_match_8");
    px_ok = px.compile && px.code_free && px.get_error_message && px.match_data_create && px.match_data_free && px.match;
}

struct cnode_filter {
    int kind;
    char *pattern;
    char **excluded;
    size_t nexcluded;
    pcre2_code *re;
    _Atomic(pcre2_match_data *) pool[POOL];
};

void
cnode_filter_free(cnode_filter *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->nexcluded; i++)
        free(f->excluded[i]);
    free(f->excluded);
    for (int i = 0; i < POOL; i++)
        if (atomic_load(&f->pool[i]))
            px.match_data_free(atomic_load(&f->pool[i]));
    if (f->re)
        px.code_free(f->re);
    free(f->pattern);
    free(f);
}

static int
fail(cnode_error *err, int code, const char *msg)
{
    if (err) {
        cnode_error_clear(err);
        err->code = code;
        err->arity = -1;
        err->type = code == CNODE_ECONFIG ? "config_error" : "validation_error";
        err->lb_code = code == CNODE_ECONFIG ? NULL : "bad_request";
        snprintf(err->message, sizeof err->message, "%s", msg);
    }
    return code;
}

int
cnode_filter_new(const char *pattern, int kind, const char *const *excluded, size_t nexcluded, cnode_filter **out, cnode_error *err)
{
    if (!pattern || !out || (kind != CNODE_FILTER_SUBSTRING && kind != CNODE_FILTER_REGEX) || (nexcluded && !excluded))
        return fail(err, CNODE_EINVAL, "invalid node filter");
    for (size_t i = 0; i < nexcluded; i++)
        if (!excluded[i])
            return fail(err, CNODE_EINVAL, "an excluded node pattern is NULL");
    cnode_filter *f = calloc(1, sizeof *f);
    if (!f)
        return CNODE_ENOMEM;
    f->kind = kind;
    f->pattern = strdup(pattern);
    f->excluded = nexcluded ? calloc(nexcluded, sizeof *f->excluded) : NULL;
    int rc = f->pattern && (f->excluded || !nexcluded) ? 0 : CNODE_ENOMEM;
    for (size_t i = 0; !rc && i < nexcluded; i++) {
        f->excluded[i] = strdup(excluded[i]);
        if (!f->excluded[i])
            rc = CNODE_ENOMEM;
        else
            f->nexcluded = i + 1;
    }
    if (!rc && kind == CNODE_FILTER_REGEX) {
        int ecode;
        PCRE2_SIZE eoff;
        pthread_once(&px_once, px_load);
        if (!px_ok) {
            cnode_filter_free(f);
            return fail(err, CNODE_ECONFIG, "regex node filters need libpcre2-8.so.0, which cannot be loaded");
        }
        f->re = px.compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &ecode, &eoff, NULL);
        if (!f->re) {
            PCRE2_UCHAR why[160];
            char msg[256];
            px.get_error_message(ecode, why, sizeof why);
            snprintf(msg, sizeof msg, "invalid node filter regex at offset %lu: %s", (unsigned long)eoff, (const char *)why);
            cnode_filter_free(f);
            return fail(err, CNODE_ECONFIG, msg);
        }
    }
    if (rc) {
        cnode_filter_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

static int
regex_match(const cnode_filter *f, const char *node)
{
    cnode_filter *m = (cnode_filter *)f; /* the pool is the only mutable part */
    pcre2_match_data *md = NULL;
    int slot = -1;
    for (int i = 0; i < POOL && !md; i++) {
        md = atomic_exchange(&m->pool[i], NULL);
        slot = i;
    }
    if (!md) {
        md = px.match_data_create(1, NULL);
        if (!md)
            return 0;
        slot = 0;
    }
    int rc = px.match(f->re, (PCRE2_SPTR)node, strlen(node), 0, 0, md, NULL);
    /* give it back, to its slot or any empty one; free it if the pool is full */
    for (int i = 0; i < POOL && md; i++) {
        pcre2_match_data *expected = NULL;
        if (atomic_compare_exchange_strong(&m->pool[(slot + i) % POOL], &expected, md))
            md = NULL;
    }
    if (md)
        px.match_data_free(md);
    return rc >= 0; /* 0: matched, ovector too small for the groups (we want none) */
}

int
cnode_filter_match(const cnode_filter *f, const char *node)
{
    if (!f || !node)
        return 0;
    int base = f->kind == CNODE_FILTER_SUBSTRING ? strstr(node, f->pattern) != NULL : regex_match(f, node);
    if (!base || f->nexcluded == 0)
        return base;
    const char *at = strchr(node, '@');
    size_t short_len = at ? (size_t)(at - node) : strlen(node);
    for (size_t i = 0; i < f->nexcluded; i++) {
        const char *p = f->excluded[i];
        size_t pl = strlen(p);
        if (strstr(f->pattern, p) != NULL)
            continue; /* the filter asks for it explicitly */
        for (size_t k = 0; k + pl <= short_len; k++)
            if (memcmp(node + k, p, pl) == 0)
                return 0;
    }
    return 1;
}
