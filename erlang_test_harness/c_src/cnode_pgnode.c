/* cnode_pgnode: a C node for pg_SUITE. It runs pg scopes and answers
 * questions about its mirror, so the suite can compare it with what
 * pg:get_members says on every BEAM node.
 *
 *   cnode_pgnode --sname NAME --cookie C [-v]     prints "READY name@host"
 *
 * A registered process `ctl` takes {call, From, Ref, Cmd} and answers
 * From ! {Ref, Reply}. Groups are atoms. Cmd:
 *   {scope_start, Scope}            ok | {error, Code}
 *   {scope_start, Scope, ProbeIntervalMs, ProbeTimeoutMs}
 *                                   the same with the liveness probe set (a case
 *                                   sets what it needs, 0 = the library default)
 *   {connect, Scope, Node}          ok | {error, Code}
 *   {wait_ready, Scope, Ms}         ok | {error, Code}
 *   spawn                           {ok, Pid}          a C process that only waits
 *   {join, Scope, Group, Pid}       ok | {error, Code}
 *   {leave, Scope, Group, Pid}      ok | {error, Code}
 *   {exit, Pid}                     ok                 the process exits (normal)
 *   {members, Scope, Group}         [Pid]              pg:get_members/2 of the mirror
 *   {local_members, Scope, Group}   [Pid]
 *   {all, Scope}                    [{Group, [Pid]}]   every group (any group term)
 *   {node_count, Scope, Group, Node} N
 *   {suspect, Scope, Node}          true | false
 *   {probe_rtt, Scope, Node}        microseconds (cnode_pg_probe_rtt_us), -1 if unknown
 *   {scope_node, Scope}             true if cnode_pg_scope_node is this program's node
 *   {events, Scope}                 [{Kind, Group, Node, [Pid]}] since the last ask; Kind is
 *                                   join | leave | nodedown | suspect | clear
 *   stop                            ok, then the program exits
 * The program also stops when stdin closes. */
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnode.h"

#define MAX_SCOPES 8
#define MAX_PROCS 1024

typedef struct ev {
    struct ev *next;
    int kind;
    char node[MAXATOMLEN_UTF8];
    size_t n, glen;
    erlang_pid *pids;
    char *group;
} ev;

typedef struct {
    cnode_pg_scope *scope;
    char name[MAXATOMLEN_UTF8];
    pthread_mutex_t lock;
    ev *head, *tail;
} scope_ent;

static cnode_node *node;
static cnode_proc *ctl;
static scope_ent scopes[MAX_SCOPES];
static int nscopes;
static cnode_proc *procs[MAX_PROCS];
static int nprocs;

static void
on_change(cnode_pg_scope *scope, int kind, uint64_t gen, const char *group, size_t glen, const char *nd, const erlang_pid *pids,
          size_t n, void *ud)
{
    (void)scope;
    (void)gen;
    scope_ent *s = ud;
    ev *e = calloc(1, sizeof *e);
    if (!e)
        return;
    e->kind = kind;
    snprintf(e->node, sizeof e->node, "%s", nd ? nd : "");
    e->n = n;
    e->glen = glen;
    e->pids = calloc(n ? n : 1, sizeof *e->pids);
    e->group = malloc(glen ? glen : 1);
    if (!e->pids || !e->group) {
        free(e->pids);
        free(e->group);
        free(e);
        return;
    }
    memcpy(e->pids, pids, n * sizeof *pids);
    memcpy(e->group, group, glen);
    pthread_mutex_lock(&s->lock);
    if (s->tail)
        s->tail->next = e;
    else
        s->head = e;
    s->tail = e;
    pthread_mutex_unlock(&s->lock);
}

static scope_ent *
scope_by_name(const char *name)
{
    for (int i = 0; i < nscopes; i++)
        if (strcmp(scopes[i].name, name) == 0)
            return &scopes[i];
    return NULL;
}

static cnode_proc *
proc_by_pid(const erlang_pid *p)
{
    for (int i = 0; i < nprocs; i++)
        if (procs[i] && ei_cmp_pids((erlang_pid *)cnode_proc_pid(procs[i]), (erlang_pid *)p) == 0)
            return procs[i];
    return NULL;
}

/* ei_x grows by a little at a time; under ASan every growth copies the whole
 * buffer, so a big reply is sized up front. */
static void
x_reserve(ei_x_buff *x, size_t n)
{
    char *zeros = calloc(1, n);
    int at = x->index;
    if (zeros && ei_x_append_buf(x, zeros, (int)n) == 0)
        x->index = at; /* the room stays allocated */
    free(zeros);
}

static void
x_status(ei_x_buff *x, int rc)
{
    if (rc == 0) {
        ei_x_encode_atom(x, "ok");
    } else {
        ei_x_encode_tuple_header(x, 2);
        ei_x_encode_atom(x, "error");
        ei_x_encode_long(x, rc);
    }
}

static void x_reserve(ei_x_buff *x, size_t n);

static void
x_members(ei_x_buff *x, const cnode_pg_member *m, size_t n)
{
    x_reserve(x, (size_t)x->index + n * 80 + 16);
    if (n)
        ei_x_encode_list_header(x, (long)n);
    for (size_t i = 0; i < n; i++) {
        erlang_pid p;
        cnode_pg_member_pid(&m[i], &p);
        ei_x_encode_pid(x, &p);
    }
    ei_x_encode_empty_list(x);
}

/* One command; 1 when the program should stop. */
static int
command(const char *b, int idx, ei_x_buff *r)
{
    int arity = 0, type, size;
    char cmd[MAXATOMLEN_UTF8], a1[MAXATOMLEN_UTF8], a2[MAXATOMLEN_UTF8];
    if (ei_get_type(b, &idx, &type, &size) == 0 && (type == ERL_ATOM_EXT || type == ERL_SMALL_ATOM_UTF8_EXT ||
                                                    type == ERL_ATOM_UTF8_EXT || type == ERL_SMALL_ATOM_EXT)) {
        ei_decode_atom(b, &idx, cmd);
    } else if (ei_decode_tuple_header(b, &idx, &arity) < 0 || ei_decode_atom(b, &idx, cmd) < 0) {
        ei_x_encode_atom(r, "badarg");
        return 0;
    }
    if (strcmp(cmd, "stop") == 0) {
        ei_x_encode_atom(r, "ok");
        return 1;
    }
    if (strcmp(cmd, "spawn") == 0) {
        cnode_proc *p = NULL;
        int rc = nprocs < MAX_PROCS ? cnode_proc_new(node, NULL, &p) : CNODE_ENOMEM;
        if (rc != 0) {
            x_status(r, rc);
            return 0;
        }
        procs[nprocs++] = p;
        ei_x_encode_tuple_header(r, 2);
        ei_x_encode_atom(r, "ok");
        ei_x_encode_pid(r, cnode_proc_pid(p));
        return 0;
    }
    if (strcmp(cmd, "exit") == 0 && arity == 2) {
        erlang_pid pid;
        if (ei_decode_pid(b, &idx, &pid) < 0) {
            ei_x_encode_atom(r, "badarg");
            return 0;
        }
        for (int i = 0; i < nprocs; i++)
            if (procs[i] && ei_cmp_pids((erlang_pid *)cnode_proc_pid(procs[i]), &pid) == 0) {
                cnode_proc_exit(procs[i], NULL); /* frees the handle */
                procs[i] = NULL;
            }
        ei_x_encode_atom(r, "ok");
        return 0;
    }
    if (arity < 2 || ei_decode_atom(b, &idx, a1) < 0) {
        ei_x_encode_atom(r, "badarg");
        return 0;
    }
    if (strcmp(cmd, "scope_start") == 0) {
        if (nscopes >= MAX_SCOPES || scope_by_name(a1)) {
            x_status(r, CNODE_EEXIST);
            return 0;
        }
        scope_ent *s = &scopes[nscopes];
        snprintf(s->name, sizeof s->name, "%s", a1);
        pthread_mutex_init(&s->lock, NULL);
        cnode_pg_opts o = {.on_change = on_change, .user_data = s};
        long interval = 0, timeout = 0;
        if (arity == 4 && (ei_decode_long(b, &idx, &interval) < 0 || ei_decode_long(b, &idx, &timeout) < 0 ||
                           interval < 0 || timeout < 0)) {
            ei_x_encode_atom(r, "badarg");
            return 0;
        }
        o.probe_interval_ms = (unsigned)interval;
        o.probe_timeout_ms = (unsigned)timeout;
        int rc = cnode_pg_scope_start(node, a1, &o, &s->scope);
        if (rc == 0)
            nscopes++;
        x_status(r, rc);
        return 0;
    }
    scope_ent *s = scope_by_name(a1);
    if (!s) {
        x_status(r, CNODE_ENOTFOUND);
        return 0;
    }
    cnode_pg_snapshot *snap;
    if (strcmp(cmd, "connect") == 0 && arity == 3 && ei_decode_atom(b, &idx, a2) == 0) {
        x_status(r, cnode_pg_connect(s->scope, a2));
    } else if (strcmp(cmd, "wait_ready") == 0 && arity == 3) {
        long ms = 0;
        ei_decode_long(b, &idx, &ms);
        x_status(r, cnode_pg_wait_ready(s->scope, (unsigned)ms));
    } else if ((strcmp(cmd, "join") == 0 || strcmp(cmd, "leave") == 0) && arity == 4 &&
               ei_decode_atom(b, &idx, a2) == 0) {
        erlang_pid pid;
        cnode_proc *p = ei_decode_pid(b, &idx, &pid) == 0 ? proc_by_pid(&pid) : NULL;
        if (!p)
            x_status(r, CNODE_ENOTFOUND);
        else
            x_status(r, cmd[0] == 'j' ? cnode_pg_join(s->scope, a2, p) : cnode_pg_leave(s->scope, a2, p));
    } else if (strcmp(cmd, "members") == 0 && arity == 3 && ei_decode_atom(b, &idx, a2) == 0) {
        snap = cnode_pg_snapshot_get(s->scope);
        size_t n = 0;
        const cnode_pg_member *m = cnode_pg_members(snap, a2, &n);
        x_members(r, m, n);
        cnode_pg_snapshot_release(snap);
    } else if (strcmp(cmd, "local_members") == 0 && arity == 3 && ei_decode_atom(b, &idx, a2) == 0) {
        snap = cnode_pg_snapshot_get(s->scope);
        cnode_pg_member m[MAX_PROCS];
        size_t n = cnode_pg_local_members(snap, a2, m, MAX_PROCS);
        x_members(r, m, n < MAX_PROCS ? n : MAX_PROCS);
        cnode_pg_snapshot_release(snap);
    } else if (strcmp(cmd, "all") == 0) {
        snap = cnode_pg_snapshot_get(s->scope);
        size_t ng = cnode_pg_group_count(snap);
        if (ng)
            ei_x_encode_list_header(r, (long)ng);
        for (size_t i = 0; i < ng; i++) {
            size_t gl = 0, n = 0;
            const char *g = cnode_pg_group_at(snap, i, &gl);
            ei_x_encode_tuple_header(r, 2);
            ei_x_append_buf(r, g, (int)gl);
            x_members(r, cnode_pg_members_term(snap, g, gl, &n), n);
        }
        ei_x_encode_empty_list(r);
        cnode_pg_snapshot_release(snap);
    } else if (strcmp(cmd, "node_count") == 0 && arity == 4 && ei_decode_atom(b, &idx, a2) == 0) {
        char nd[MAXATOMLEN_UTF8];
        ei_decode_atom(b, &idx, nd);
        snap = cnode_pg_snapshot_get(s->scope);
        ei_x_encode_ulong(r, cnode_pg_node_count(snap, a2, nd));
        cnode_pg_snapshot_release(snap);
    } else if (strcmp(cmd, "suspect") == 0 && arity == 3 && ei_decode_atom(b, &idx, a2) == 0) {
        snap = cnode_pg_snapshot_get(s->scope);
        ei_x_encode_boolean(r, cnode_pg_node_suspect(snap, a2));
        cnode_pg_snapshot_release(snap);
    } else if (strcmp(cmd, "probe_rtt") == 0 && arity == 3 && ei_decode_atom(b, &idx, a2) == 0) {
        ei_x_encode_long(r, cnode_pg_probe_rtt_us(s->scope, a2));
    } else if (strcmp(cmd, "scope_node") == 0) {
        ei_x_encode_boolean(r, cnode_pg_scope_node(s->scope) == node);
    } else if (strcmp(cmd, "events") == 0) {
        static const char *const kinds[] = {"?", "join", "leave", "nodedown", "suspect", "clear"};
        pthread_mutex_lock(&s->lock);
        ev *e = s->head;
        s->head = s->tail = NULL;
        pthread_mutex_unlock(&s->lock);
        /* one proper list: a chain of one-cell lists nests as deep as it is long */
        long count = 0;
        size_t bytes = 16;
        for (ev *k = e; k; k = k->next) {
            count++;
            bytes += 64 + k->glen + k->n * 80;
        }
        x_reserve(r, bytes);
        if (count)
            ei_x_encode_list_header(r, count);
        while (e) {
            ev *nx = e->next;
            ei_x_encode_tuple_header(r, 4);
            ei_x_encode_atom(r, e->kind >= 1 && e->kind <= 5 ? kinds[e->kind] : "?");
            if (e->glen)
                ei_x_append_buf(r, e->group, (int)e->glen);
            else
                ei_x_encode_atom(r, "undefined");
            ei_x_encode_atom(r, e->node);
            if (e->n)
                ei_x_encode_list_header(r, (long)e->n);
            for (size_t i = 0; i < e->n; i++)
                ei_x_encode_pid(r, &e->pids[i]);
            ei_x_encode_empty_list(r);
            free(e->pids);
            free(e->group);
            free(e);
            e = nx;
        }
        ei_x_encode_empty_list(r);
    } else {
        ei_x_encode_atom(r, "badarg");
    }
    return 0;
}

/* The watcher threads outlive the node: they may ask only while it is open. */
static pthread_mutex_t stop_lock = PTHREAD_MUTEX_INITIALIZER;
static int closing;

static void
ask_stop(void)
{
    pthread_mutex_lock(&stop_lock);
    if (closing) {
        pthread_mutex_unlock(&stop_lock);
        return;
    }
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 4);
    ei_x_encode_atom(&x, "call");
    ei_x_encode_pid(&x, cnode_proc_pid(ctl));
    ei_x_encode_ref(&x, &(erlang_ref){.node = "", .len = 1});
    ei_x_encode_atom(&x, "stop");
    cnode_send(ctl, cnode_proc_pid(ctl), &x);
    ei_x_free(&x);
    pthread_mutex_unlock(&stop_lock);
}

static void *
stdin_watch(void *arg)
{
    (void)arg;
    char buf[256];
    while (read(0, buf, sizeof buf) > 0)
        ;
    ask_stop(); /* stdin closed */
    return NULL;
}

/* SIGTERM / SIGINT: stop as cleanly as the stop command */
static void *
signal_watch(void *arg)
{
    sigset_t *set = arg;
    int sig;
    if (sigwait(set, &sig) == 0)
        ask_stop();
    return NULL;
}

static void
log_cb(int level, const char *msg, void *ud)
{
    (void)ud;
    fprintf(stderr, "pgnode: [%d] %s\n", level, msg);
}

int
main(int argc, char **argv)
{
    const char *name = NULL, *cookie = NULL;
    int verbose = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--sname") == 0 && i + 1 < argc)
            name = argv[++i];
        else if (strcmp(argv[i], "--cookie") == 0 && i + 1 < argc)
            cookie = argv[++i];
        else if (strcmp(argv[i], "-v") == 0)
            verbose = 1;
    }
    if (!name || !cookie) {
        fprintf(stderr, "usage: cnode_pgnode --sname NAME --cookie C [-v]\n");
        return 2;
    }
    static sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread starts */
    cnode_node_opts o = {.name = name, .cookie = cookie, .log = log_cb, .log_level = verbose ? 3 : 1};
    cnode_error err = {0};
    if (cnode_node_new(&o, &node, &err) != 0) {
        fprintf(stderr, "pgnode: %s\n", err.message);
        return 2;
    }
    if (cnode_proc_new(node, "ctl", &ctl) != 0) {
        cnode_node_close(node);
        return 2;
    }
    pthread_t watcher;
    pthread_create(&watcher, NULL, stdin_watch, NULL);
    pthread_detach(watcher);
    pthread_t sigthr;
    pthread_create(&sigthr, NULL, signal_watch, &set);
    pthread_detach(sigthr);
    printf("READY %s\n", cnode_node_name(node));
    fflush(stdout);
    for (int stop = 0; !stop;) {
        cnode_msg m;
        if (cnode_receive(ctl, -1, &m) != 0)
            break;
        const char *b = m.data.buff;
        int idx = 0, ver, arity;
        char tag[MAXATOMLEN_UTF8];
        erlang_pid from;
        if (ei_decode_version(b, &idx, &ver) == 0 && ei_decode_tuple_header(b, &idx, &arity) == 0 && arity == 4 &&
            ei_decode_atom(b, &idx, tag) == 0 && strcmp(tag, "call") == 0 && ei_decode_pid(b, &idx, &from) == 0) {
            int ref_at = idx;
            if (ei_skip_term(b, &idx) == 0) {
                ei_x_buff r;
                ei_x_new_with_version(&r);
                ei_x_encode_tuple_header(&r, 2);
                ei_x_append_buf(&r, b + ref_at, idx - ref_at);
                stop = command(b, idx, &r);
                int rc = cnode_send(ctl, &from, &r);
                if (rc != 0)
                    fprintf(stderr, "pgnode: reply not sent: %s\n", cnode_strerror(rc));
                ei_x_free(&r);
            }
        }
        cnode_msg_free(&m);
    }
    /* close the node with its processes still open: cnode_node_close leaves
       every pg group first (pg_SUITE checks the order), then frees them */
    pthread_mutex_lock(&stop_lock);
    closing = 1;
    pthread_mutex_unlock(&stop_lock);
    cnode_node_close(node);
    for (int i = 0; i < nscopes; i++) {
        ev *e = scopes[i].head;
        while (e) {
            ev *nx = e->next;
            free(e->pids);
            free(e->group);
            free(e);
            e = nx;
        }
        pthread_mutex_destroy(&scopes[i].lock);
    }
    return 0;
}
