/* cnode members --scope S [--group G] [--watch | --dump] [--connect NODE]... [NODE...]
 *
 * Joins the cluster through the given nodes and, after the discovery round,
 * prints the pg mirror, one member per line: `SCOPE GROUP NODE PID`, in pg's
 * member order (groups sorted). With --dump the lines of every group are
 * sorted bytewise instead (LC_ALL=C sort), to compare with another view.
 * With --watch it then prints a line that says the listing is complete and
 * one line per member per change as it happens (none that the listing
 * already showed: a change carries the generation of the first snapshot
 * that holds it), flushing after every line, until SIGTERM/SIGINT:
 *   2026-12-01T10:00:00.123Z listed SCOPE N members
 *   2026-12-01T10:00:00.123Z join|leave|nodedown SCOPE GROUP NODE PID
 *   2026-12-01T10:00:00.123Z suspect|clear SCOPE - NODE -
 * Groups and pids are printed as Erlang term text (~0p). */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cnode_term.h"

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static int live;        /* under out_lock: the listing is out, print changes */
static uint64_t listed; /* under out_lock: the listing's snapshot generation */

static char *
pid_text(const erlang_pid *p)
{
    ei_x_buff x;
    if (ei_x_new(&x) != 0)
        return NULL;
    char *t = NULL;
    if (ei_x_encode_pid(&x, p) == 0)
        cnode_term_print(x.buff, (size_t)x.index, &t, NULL);
    ei_x_free(&x);
    return t;
}

/* UTC, milliseconds: 2026-12-01T10:00:00.123Z */
static void
iso_now(char *buf, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void
on_change(cnode_pg_scope *scope, int event, uint64_t gen, const char *group, size_t glen, const char *node, const erlang_pid *pids,
          size_t n, void *ud)
{
    (void)ud;
    static const char *const names[] = {"?", "join", "leave", "nodedown", "suspect", "clear"};
    const char *what = event >= 1 && event <= 5 ? names[event] : "?";
    char when[40];
    iso_now(when, sizeof when);
    pthread_mutex_lock(&out_lock);
    if (!live || gen <= listed) { /* already in the listing */
        pthread_mutex_unlock(&out_lock);
        return;
    }
    if (event == CNODE_PG_SUSPECT || event == CNODE_PG_CLEAR) {
        printf("%s %s %s - %s -\n", when, what, cnode_pg_scope_name(scope), node);
    } else {
        char *g = NULL;
        cnode_term_print(group, glen, &g, NULL);
        for (size_t i = 0; i < n; i++) {
            char *p = pid_text(&pids[i]);
            printf("%s %s %s %s %s %s\n", when, what, cnode_pg_scope_name(scope), g ? g : "?",
                   pids[i].node, p ? p : "?");
            free(p);
        }
        free(g);
    }
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
}

/* Lines kept for --dump, sorted before printing. */
typedef struct {
    char **v;
    size_t n, cap;
} lines;

/* Prints (or, with out, keeps) the group's lines; returns how many members. */
static size_t
print_group(cnode_pg_scope *scope, const cnode_pg_snapshot *snap, const char *g, size_t gl, lines *out)
{
    size_t n = 0;
    const cnode_pg_member *m = cnode_pg_members_term(snap, g, gl, &n);
    char *gt = NULL;
    cnode_term_print(g, gl, &gt, NULL);
    for (size_t i = 0; i < n; i++) {
        erlang_pid pid;
        cnode_pg_member_pid(&m[i], &pid);
        char *pt = pid_text(&pid);
        char *line = NULL;
        if (!out) {
            printf("%s %s %s %s\n", cnode_pg_scope_name(scope), gt ? gt : "?", m[i].node, pt ? pt : "?");
        } else if (asprintf(&line, "%s %s %s %s", cnode_pg_scope_name(scope), gt ? gt : "?", m[i].node, pt ? pt : "?") >= 0) {
            if (out->n == out->cap) {
                size_t nc = out->cap ? out->cap * 2 : 1024;
                char **nv = realloc(out->v, nc * sizeof *nv);
                if (nv) {
                    out->v = nv;
                    out->cap = nc;
                }
            }
            if (out->n < out->cap)
                out->v[out->n++] = line;
            else
                free(line);
        }
        free(pt);
    }
    free(gt);
    return n;
}

static int
line_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b); /* bytewise: strcmp compares as unsigned char */
}

int
cmd_members(cli_opts *o)
{
    if (!o->scope) {
        fprintf(stderr, "cnode: members: --scope SCOPE is required\n");
        return EXIT_USAGE;
    }
    ei_x_buff gkey = {0};
    if (o->group) {
        /* the group as pg holds it: an atom */
        if (ei_x_new(&gkey) != 0 || ei_x_encode_atom_len_as(&gkey, o->group, (int)strlen(o->group), ERLANG_UTF8,
                                                            ERLANG_UTF8) != 0) {
            fprintf(stderr, "cnode: members: bad group name '%s'\n", o->group);
            ei_x_free(&gkey);
            return EXIT_USAGE;
        }
    }
#ifdef __GLIBC__
    /* an observer: one malloc arena is enough (each thread's own arena would keep pages of its own) */
    mallopt(M_ARENA_MAX, 1);
#endif
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (o->watch)
        pthread_sigmask(SIG_BLOCK, &set, NULL);
    cnode_node *node;
    int rc = cli_node_start(o, &node);
    if (rc) {
        ei_x_free(&gkey);
        return rc;
    }
    cnode_pg_opts po = {.probe_timeout_ms = o->probe_timeout_ms};
    if (o->watch)
        po.on_change = on_change;
    cnode_pg_scope *scope;
    rc = cnode_pg_scope_start(node, o->scope, &po, &scope);
    if (rc != 0) {
        fprintf(stderr, "cnode: members: cannot start scope '%s': %s\n", o->scope, cnode_strerror(rc));
        cnode_node_close(node);
        ei_x_free(&gkey);
        return cli_exit_code(rc);
    }
    int reached = 0, tried = 0;
    for (int i = 0; i < o->nconnect + o->argc; i++) {
        const char *peer = i < o->nconnect ? o->connect[i] : o->argv[i - o->nconnect];
        cnode_error err = {0};
        tried++;
        if (!strchr(peer, '@')) {
            fprintf(stderr, "cnode: members: '%s' is not a node name (name@host)\n", peer);
            continue;
        }
        if (cnode_ping(node, peer, o->timeout_ms, &err) == 0)
            reached++;
        else
            fprintf(stderr, "cnode: members: cannot reach %s: %s\n", peer,
                    err.message[0] ? err.message : cnode_strerror(err.code));
        cnode_pg_connect(scope, peer);
    }
    if (tried && !reached) {
        cnode_node_close(node);
        ei_x_free(&gkey);
        return EXIT_NOCONN;
    }
    cnode_pg_wait_ready(scope, 0);
    pthread_mutex_lock(&out_lock);
    cnode_pg_snapshot *snap = cnode_pg_snapshot_get(scope);
    lines dump = {0};
    size_t total = 0;
    if (o->group) {
        total = print_group(scope, snap, gkey.buff, (size_t)gkey.index, o->dump ? &dump : NULL);
    } else {
        size_t ng = cnode_pg_group_count(snap);
        for (size_t i = 0; i < ng; i++) {
            size_t gl;
            const char *g = cnode_pg_group_at(snap, i, &gl);
            total += print_group(scope, snap, g, gl, o->dump ? &dump : NULL);
        }
    }
    if (o->dump) {
        qsort(dump.v, dump.n, sizeof *dump.v, line_cmp);
        for (size_t i = 0; i < dump.n; i++) {
            puts(dump.v[i]);
            free(dump.v[i]);
        }
        free(dump.v);
    }
    listed = cnode_pg_snapshot_generation(snap);
    cnode_pg_snapshot_release(snap);
    if (o->watch) {
        char when[40];
        iso_now(when, sizeof when);
        printf("%s listed %s %zu members\n", when, o->scope, total);
    }
    fflush(stdout);
    live = 1; /* changes with a generation above the listing's are printed from now on */
    pthread_mutex_unlock(&out_lock);
    if (o->watch) {
        int sig = 0;
        sigwait(&set, &sig);
    }
    cnode_node_close(node);
    ei_x_free(&gkey);
    return EXIT_OK;
}
