/* Host names resolved off the loop thread. getaddrinfo can block for as long
 * as the resolver's timeouts (seconds, per attempt); the loop must not. Up to
 * RESOLVER_THREADS threads per node, started on need, take host names from a
 * queue (so one slow name does not hold up the others) and hand answers back
 * through the loop's wake-up; the loop keeps them in a small cache
 * (RESOLVE_TTL_MS) and moves on the dials that waited for them. Numeric
 * addresses never leave the loop. The family is the node's (A records for
 * inet_*, AAAA for inet6_*, as BEAM's inet:getaddr(Host, Family) in
 * inet_tcp_dist's address_please): an inet6 node does not fall back to an
 * IPv4 address, so a host with no AAAA record cannot be resolved. A dial
 * that waits longer than its handshake deadline fails as "cannot resolve
 * host (timed out)"; the late answer still fills the cache. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/internal.h"

#define RESOLVE_TTL_MS 5000
#define CACHE_SLOTS 64
#define RESOLVER_THREADS 4

typedef struct rjob {
    struct rjob *next;
    int ok;
    int family;
    cnode__sockaddr addr;
    char host[CNODE__NAME_MAX];
} rjob;

typedef struct {
    char host[CNODE__NAME_MAX];
    cnode__sockaddr addr;
    int64_t until_ms; /* 0: empty */
} centry;

struct cnode__resolver {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t threads[RESOLVER_THREADS];
    int nthreads, idle;        /* under lock */
    rjob *todo, *todo_tail;    /* asked, not taken yet (under lock) */
    rjob *busy;                /* being looked up (under lock) */
    rjob *done;                /* answered, for the loop (under lock) */
    int stop;                  /* under lock */
    centry cache[CACHE_SLOTS]; /* loop thread only */
};

static void
unlink_job(rjob **list, rjob *j)
{
    for (; *list; list = &(*list)->next)
        if (*list == j) {
            *list = j->next;
            return;
        }
}

static void *
resolver_main(void *arg)
{
    cnode_node *node = arg;
    cnode__resolver *r = node->resolver;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        r->idle++;
        while (!r->todo && !r->stop)
            pthread_cond_wait(&r->cond, &r->lock);
        r->idle--;
        if (r->stop)
            break;
        rjob *j = r->todo;
        r->todo = j->next;
        if (!r->todo)
            r->todo_tail = NULL;
        j->next = r->busy;
        r->busy = j;
        pthread_mutex_unlock(&r->lock);
        struct addrinfo hints = {0}, *res = NULL;
        hints.ai_family = j->family;
        hints.ai_socktype = SOCK_STREAM;
        int ok = getaddrinfo(j->host, NULL, &hints, &res) == 0 && res && res->ai_family == j->family &&
                 res->ai_addrlen <= sizeof(cnode__sockaddr);
        cnode__sockaddr a;
        memset(&a, 0, sizeof a);
        if (ok)
            memcpy(&a, res->ai_addr, res->ai_addrlen);
        if (res)
            freeaddrinfo(res);
        pthread_mutex_lock(&r->lock);
        j->ok = ok;
        j->addr = a;
        unlink_job(&r->busy, j);
        j->next = r->done;
        r->done = j;
        cnode__wake(node);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

static centry *
cache_slot(cnode__resolver *r, const char *host)
{
    uint32_t h = 2166136261u;
    for (const char *s = host; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return &r->cache[h % CACHE_SLOTS];
}

static int
asked(const rjob *j, const char *host)
{
    for (; j; j = j->next)
        if (strcmp(j->host, host) == 0)
            return 1;
    return 0;
}

int
cnode__resolve(cnode_node *node, const char *host, cnode__sockaddr *out)
{
    int family = cnode__node_family(node);
    if (cnode__sockaddr_literal(family, host, out))
        return 0;
    /* an address literal of the other family, or a malformed one, needs no resolver to fail */
    if (!*host || strlen(host) >= CNODE__NAME_MAX || cnode__host_check(host, family))
        return -1;
    cnode__resolver *r = node->resolver;
    if (!r) {
        if (!(r = calloc(1, sizeof *r)))
            return -1;
        pthread_mutex_init(&r->lock, NULL);
        pthread_cond_init(&r->cond, NULL);
        node->resolver = r;
    }
    centry *e = cache_slot(r, host);
    if (e->until_ms > cnode__now_ms() && strcmp(e->host, host) == 0) {
        *out = e->addr;
        return 0;
    }
    pthread_mutex_lock(&r->lock);
    if (asked(r->todo, host) || asked(r->busy, host) || asked(r->done, host)) {
        pthread_mutex_unlock(&r->lock);
        return 1; /* its answer will move this dial on too */
    }
    rjob *j = calloc(1, sizeof *j);
    if (!j) {
        pthread_mutex_unlock(&r->lock);
        return -1;
    }
    snprintf(j->host, sizeof j->host, "%s", host);
    j->family = family;
    if (r->idle == 0 && r->nthreads < RESOLVER_THREADS &&
        cnode__thread_create(&r->threads[r->nthreads], resolver_main, node) == 0)
        r->nthreads++;
    if (r->nthreads == 0) {
        pthread_mutex_unlock(&r->lock);
        free(j);
        return -1;
    }
    if (r->todo_tail)
        r->todo_tail->next = j;
    else
        r->todo = j;
    r->todo_tail = j;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return 1;
}

void
cnode__resolve_poll(cnode_node *node)
{
    cnode__resolver *r = node->resolver;
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    rjob *j = r->done;
    r->done = NULL;
    pthread_mutex_unlock(&r->lock);
    while (j) {
        rjob *nx = j->next;
        if (j->ok) {
            centry *e = cache_slot(r, j->host);
            snprintf(e->host, sizeof e->host, "%s", j->host);
            e->addr = j->addr;
            e->until_ms = cnode__now_ms() + RESOLVE_TTL_MS;
        }
        cnode__conn_resolved(node, j->host, j->ok ? &j->addr : NULL);
        free(j);
        j = nx;
    }
}

static void
free_jobs(rjob *j)
{
    while (j) {
        rjob *nx = j->next;
        free(j);
        j = nx;
    }
}

void
cnode__resolve_stop(cnode_node *node)
{
    cnode__resolver *r = node->resolver;
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stop = 1;
    pthread_cond_broadcast(&r->cond);
    int n = r->nthreads;
    pthread_mutex_unlock(&r->lock);
    for (int i = 0; i < n; i++)
        pthread_join(r->threads[i], NULL); /* each finishes the lookup it is in */
    free_jobs(r->todo);
    free_jobs(r->busy);
    free_jobs(r->done);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r);
    node->resolver = NULL;
}
