/* Node filters: substring or PCRE2 regex, with excluded_node_patterns
 * (seed-behaviour.md A5). Match data for regexes comes from a small
 * lock-free pool so that matching from many threads allocates nothing once
 * warm. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode_balancer.h"

#define POOL 8

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
        pcre2_match_data_free(atomic_load(&f->pool[i]));
    pcre2_code_free(f->re);
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
        f->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &ecode, &eoff, NULL);
        if (!f->re) {
            PCRE2_UCHAR why[160];
            char msg[256];
            pcre2_get_error_message(ecode, why, sizeof why);
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
        md = pcre2_match_data_create(1, NULL);
        if (!md)
            return 0;
        slot = 0;
    }
    int rc = pcre2_match(f->re, (PCRE2_SPTR)node, strlen(node), 0, 0, md, NULL);
    /* give it back, to its slot or any empty one; free it if the pool is full */
    for (int i = 0; i < POOL && md; i++) {
        pcre2_match_data *expected = NULL;
        if (atomic_compare_exchange_strong(&m->pool[(slot + i) % POOL], &expected, md))
            md = NULL;
    }
    pcre2_match_data_free(md);
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
