/* The C test node driven by the common_test suites; its interface is in
 * erlang_test_harness/TESTNODE.md. Written against include/cnode.h only, so
 * it also shows the public API in use. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnode.h"

typedef struct agent {
    struct agent *next;
    cnode_proc *p; /* NULL once exited; guarded by agents_lock */
    erlang_pid pid;
    erlang_pid owner;
    pthread_t thread;
} agent;

static cnode_node *node;
static cnode_proc *ctl;
static atomic_int stopping;
static pthread_mutex_t agents_lock = PTHREAD_MUTEX_INITIALIZER;
static agent *agents;
static pthread_mutex_t subs_lock = PTHREAD_MUTEX_INITIALIZER;
static erlang_pid subs[64];
static int nsubs;
static pthread_t bursts[64];
static int nbursts;
/* sinks: registered processes that never read (mailbox limit tests); ctl thread only */
static cnode_proc *sinks[64];
static int nsinks;

static void
send_x(const erlang_pid *to, ei_x_buff *x)
{
    cnode_send(ctl, to, x);
    ei_x_free(x);
}

static void
node_event(const char *name, int up)
{
    pthread_mutex_lock(&subs_lock);
    for (int i = 0; i < nsubs; i++) {
        ei_x_buff x;
        ei_x_new_with_version(&x);
        ei_x_encode_tuple_header(&x, 2);
        ei_x_encode_atom(&x, up ? "cnode_nodeup" : "cnode_nodedown");
        ei_x_encode_atom(&x, name);
        send_x(&subs[i], &x);
    }
    pthread_mutex_unlock(&subs_lock);
}

static void
on_up(const char *name, void *ud)
{
    (void)ud;
    node_event(name, 1);
}

static void
on_down(const char *name, const char *reason, void *ud)
{
    (void)ud;
    (void)reason;
    node_event(name, 0);
}

static void
log_cb(int level, const char *msg, void *ud)
{
    (void)ud;
    fprintf(stderr, "testnode: [%d] %s\n", level, msg);
}

/* ---- agents ---------------------------------------------------------------------- */

static agent *
find_agent(const erlang_pid *pid)
{
    for (agent *a = agents; a; a = a->next)
        if (ei_cmp_pids(&a->pid, (erlang_pid *)pid) == 0) /* ei_cmp_pids takes non-const */
            return a;
    return NULL;
}

static void
agent_message(agent *a, cnode_msg *m)
{
    const char *b = m->data.buff;
    int idx = 0, ver, arity;
    char atom[MAXATOMLEN_UTF8];
    erlang_pid from;
    ei_decode_version(b, &idx, &ver);
    if (ei_decode_tuple_header(b, &idx, &arity) == 0 && arity >= 2 && ei_decode_atom(b, &idx, atom) == 0) {
        if (arity == 3 && strcmp(atom, "echo") == 0 && ei_decode_pid(b, &idx, &from) == 0) {
            int start = idx;
            if (ei_skip_term(b, &idx) == 0) {
                ei_x_buff x;
                ei_x_new_with_version(&x);
                ei_x_append_buf(&x, b + start, idx - start);
                pthread_mutex_lock(&agents_lock);
                if (a->p)
                    cnode_send(a->p, &from, &x);
                pthread_mutex_unlock(&agents_lock);
                ei_x_free(&x);
            }
            return;
        }
        if (arity == 2 && strcmp(atom, "$testnode_exit") == 0) {
            ei_x_buff r;
            ei_x_new_with_version(&r);
            int s = idx;
            ei_skip_term(b, &idx);
            ei_x_append_buf(&r, b + s, idx - s);
            pthread_mutex_lock(&agents_lock);
            cnode_proc_exit(a->p, &r);
            a->p = NULL;
            pthread_mutex_unlock(&agents_lock);
            ei_x_free(&r);
            return;
        }
    }
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "cnode_msg");
    ei_x_encode_pid(&x, &a->pid);
    ei_x_append_buf(&x, b + 1, m->data.index - 1);
    send_x(&a->owner, &x);
}

static void *
agent_main(void *arg)
{
    agent *a = arg;
    while (!atomic_load(&stopping)) {
        pthread_mutex_lock(&agents_lock);
        cnode_proc *p = a->p;
        pthread_mutex_unlock(&agents_lock);
        if (!p)
            break;
        cnode_msg m = {0};
        int rc = cnode_receive(p, 100, &m);
        if (rc == 0) {
            agent_message(a, &m);
            cnode_msg_free(&m);
        } else if (rc == CNODE_EEXITED) {
            ei_x_buff reason = {0};
            ei_x_new(&reason);
            cnode_proc_alive(p, &reason);
            ei_x_buff x;
            ei_x_new_with_version(&x);
            ei_x_encode_tuple_header(&x, 3);
            ei_x_encode_atom(&x, "cnode_exited");
            ei_x_encode_pid(&x, &a->pid);
            ei_x_append_buf(&x, reason.buff + 1, reason.index - 1);
            send_x(&a->owner, &x);
            ei_x_free(&reason);
            pthread_mutex_lock(&agents_lock);
            cnode_proc_close(a->p);
            a->p = NULL;
            pthread_mutex_unlock(&agents_lock);
            break;
        } else if (rc != CNODE_ETIMEOUT) {
            break;
        }
    }
    return NULL;
}

/* ---- commands ------------------------------------------------------------------------ */

typedef struct {
    erlang_pid from;
    erlang_pid dest;
    char name[MAXATOMLEN_UTF8], nodename[MAXATOMLEN_UTF8];
    int by_name;
    long count, bytes;
    erlang_pid agent;
} burst_args;

static void *
burst_main(void *arg)
{
    burst_args *ba = arg;
    long sent = 0;
    int rc = 0;
    ei_x_buff x;
    ei_x_new_with_version(&x);
    char *payload = calloc(1, (size_t)ba->bytes + 1);
    ei_x_encode_binary(&x, payload, ba->bytes);
    free(payload);
    for (; sent < ba->count && !atomic_load(&stopping); sent++) {
        pthread_mutex_lock(&agents_lock);
        agent *a = find_agent(&ba->agent);
        cnode_proc *p = a ? a->p : NULL;
        rc = !p ? CNODE_EEXITED
                : ba->by_name ? cnode_reg_send(p, ba->name, ba->nodename, &x) : cnode_send(p, &ba->dest, &x);
        pthread_mutex_unlock(&agents_lock);
        if (rc != 0)
            break;
    }
    ei_x_free(&x);
    ei_x_buff r;
    ei_x_new_with_version(&r);
    ei_x_encode_tuple_header(&r, 3);
    ei_x_encode_atom(&r, "burst_done");
    ei_x_encode_long(&r, sent);
    ei_x_encode_atom(&r, rc == 0 ? "ok" : "error");
    send_x(&ba->from, &r);
    free(ba);
    return NULL;
}

/* Destination: pid, {Name, Node} or Name. */
static int
decode_dest(const char *b, int *idx, erlang_pid *pid, char *name, char *nodename, int *by_name)
{
    int type, size, arity;
    ei_get_type(b, idx, &type, &size);
    *by_name = 0;
    if (type == ERL_PID_EXT || type == ERL_NEW_PID_EXT)
        return ei_decode_pid(b, idx, pid);
    *by_name = 1;
    nodename[0] = 0;
    if (type == ERL_ATOM_EXT)
        return ei_decode_atom(b, idx, name);
    if (ei_decode_tuple_header(b, idx, &arity) < 0 || arity != 2 || ei_decode_atom(b, idx, name) < 0 ||
        ei_decode_atom(b, idx, nodename) < 0)
        return -1;
    return 0;
}

static void
copy_term(const char *b, int *idx, ei_x_buff *out)
{
    int s = *idx;
    ei_x_new_with_version(out);
    if (ei_skip_term(b, idx) == 0)
        ei_x_append_buf(out, b + s, *idx - s);
}

/* Returns 1 to stop. Writes the result term (no version) into res. */
static int
command(const char *b, int idx, const erlang_pid *from, ei_x_buff *res)
{
    int arity;
    char op[MAXATOMLEN_UTF8];
    if (ei_decode_tuple_header(b, &idx, &arity) < 0 || arity < 1 || ei_decode_atom(b, &idx, op) < 0)
        goto badarg;
    if (strcmp(op, "stop") == 0) {
        ei_x_encode_atom(res, "ok");
        return 1;
    }
    if (strcmp(op, "nodes") == 0) {
        char **v;
        size_t n;
        if (cnode_nodes(node, &v, &n) != 0)
            goto badarg;
        if (n)
            ei_x_encode_list_header(res, (long)n);
        for (size_t i = 0; i < n; i++)
            ei_x_encode_atom(res, v[i]);
        ei_x_encode_empty_list(res);
        cnode_strv_free(v, n);
        return 0;
    }
    if (strcmp(op, "ping") == 0 && arity == 2) {
        char peer[MAXATOMLEN_UTF8];
        if (ei_decode_atom(b, &idx, peer) < 0)
            goto badarg;
        ei_x_encode_atom(res, cnode_ping(node, peer, 5000, NULL) == 0 ? "pong" : "pang");
        return 0;
    }
    if (strcmp(op, "subscribe_nodes") == 0) {
        pthread_mutex_lock(&subs_lock);
        if (nsubs < 64)
            subs[nsubs++] = *from;
        pthread_mutex_unlock(&subs_lock);
        ei_x_encode_atom(res, "ok");
        return 0;
    }
    if (strcmp(op, "sink") == 0 && arity == 2) {
        char name[MAXATOMLEN_UTF8];
        if (ei_decode_atom(b, &idx, name) < 0 || nsinks >= 64)
            goto badarg;
        cnode_proc *p;
        int rc = cnode_proc_new(node, name, &p);
        if (rc != 0) {
            ei_x_encode_tuple_header(res, 2);
            ei_x_encode_atom(res, "error");
            ei_x_encode_atom(res, rc == CNODE_EEXIST ? "eexist" : "error");
            return 0;
        }
        sinks[nsinks++] = p;
        ei_x_encode_tuple_header(res, 2);
        ei_x_encode_atom(res, "ok");
        ei_x_encode_pid(res, cnode_proc_pid(p));
        return 0;
    }
    if (strcmp(op, "sink_receive") == 0 && arity == 2) {
        erlang_pid sp;
        if (ei_decode_pid(b, &idx, &sp) < 0)
            goto badarg;
        cnode_proc *p = NULL;
        for (int i = 0; i < nsinks; i++)
            if (!strcmp(cnode_proc_pid(sinks[i])->node, sp.node) && cnode_proc_pid(sinks[i])->num == sp.num &&
                cnode_proc_pid(sinks[i])->serial == sp.serial)
                p = sinks[i];
        if (!p)
            goto badarg;
        cnode_msg m = {0};
        int rc = cnode_receive(p, 0, &m);
        if (rc == 0)
            cnode_msg_free(&m);
        ei_x_buff reason;
        ei_x_new(&reason); /* cnode_proc_alive appends the reason with its 131 */
        int alive = cnode_proc_alive(p, &reason);
        ei_x_encode_tuple_header(res, 2);
        ei_x_encode_atom(res, rc == 0 ? "message" : rc == CNODE_EEXITED ? "exited" : rc == CNODE_ETIMEOUT ? "timeout" : "error");
        if (alive || reason.index <= 1)
            ei_x_encode_atom(res, "alive");
        else
            ei_x_append_buf(res, reason.buff + 1, reason.index - 1);
        ei_x_free(&reason);
        return 0;
    }
    if (strcmp(op, "stats") == 0) {
        cnode_stats st;
        if (cnode_node_stats(node, &st) != 0)
            goto badarg;
        const struct {
            const char *k;
            uint64_t v;
        } kv[] = {{"mailbox_kills", st.mailbox_kills},
                  {"served_refused", st.served_refused},
                  {"bad_data_disconnects", st.bad_data_disconnects},
                  {"served_now", st.served_now}};
        ei_x_encode_map_header(res, 4);
        for (int i = 0; i < 4; i++) {
            ei_x_encode_atom(res, kv[i].k);
            ei_x_encode_ulonglong(res, kv[i].v);
        }
        return 0;
    }
    if (strcmp(op, "spawn") == 0 && arity == 3) {
        char name[MAXATOMLEN_UTF8];
        erlang_pid owner;
        if (ei_decode_atom(b, &idx, name) < 0 || ei_decode_pid(b, &idx, &owner) < 0)
            goto badarg;
        agent *a = calloc(1, sizeof *a);
        if (!a || cnode_proc_new(node, strcmp(name, "undefined") ? name : NULL, &a->p) != 0) {
            free(a);
            ei_x_encode_tuple_header(res, 2);
            ei_x_encode_atom(res, "error");
            ei_x_encode_atom(res, "eexist");
            return 0;
        }
        a->pid = *cnode_proc_pid(a->p);
        a->owner = owner;
        pthread_mutex_lock(&agents_lock);
        a->next = agents;
        agents = a;
        pthread_mutex_unlock(&agents_lock);
        pthread_create(&a->thread, NULL, agent_main, a);
        ei_x_encode_tuple_header(res, 2);
        ei_x_encode_atom(res, "ok");
        ei_x_encode_pid(res, &a->pid);
        return 0;
    }
    /* the rest act on an agent */
    erlang_pid apid;
    if (arity < 2 || ei_decode_pid(b, &idx, &apid) < 0)
        goto badarg;
    pthread_mutex_lock(&agents_lock);
    agent *a = find_agent(&apid);
    cnode_proc *p = a ? a->p : NULL;
    int rc = 0;
    if (strcmp(op, "is_alive") == 0) {
        ei_x_encode_atom(res, p && cnode_proc_alive(p, NULL) ? "true" : "false");
        pthread_mutex_unlock(&agents_lock);
        return 0;
    }
    if (!p) {
        pthread_mutex_unlock(&agents_lock);
        ei_x_encode_tuple_header(res, 2);
        ei_x_encode_atom(res, "error");
        ei_x_encode_atom(res, "noproc");
        return 0;
    }
    if (strcmp(op, "monitor") == 0 && arity == 3) {
        erlang_pid t;
        char name[MAXATOMLEN_UTF8], nn[MAXATOMLEN_UTF8];
        int by_name;
        erlang_ref ref;
        if (decode_dest(b, &idx, &t, name, nn, &by_name) < 0)
            rc = CNODE_EINVAL;
        else
            rc = by_name ? cnode_monitor_name(p, name, nn[0] ? nn : NULL, &ref) : cnode_monitor(p, &t, &ref);
        if (rc == 0) {
            ei_x_encode_tuple_header(res, 2);
            ei_x_encode_atom(res, "ok");
            ei_x_encode_ref(res, &ref);
        }
    } else if (strcmp(op, "demonitor") == 0 && arity == 3) {
        erlang_ref ref;
        rc = ei_decode_ref(b, &idx, &ref) < 0 ? CNODE_EINVAL : cnode_demonitor(p, &ref);
    } else if ((strcmp(op, "link") == 0 || strcmp(op, "unlink") == 0) && arity == 3) {
        erlang_pid t;
        rc = ei_decode_pid(b, &idx, &t) < 0 ? CNODE_EINVAL : op[0] == 'l' ? cnode_link(p, &t) : cnode_unlink(p, &t);
    } else if (strcmp(op, "trap_exit") == 0 && arity == 3) {
        int on;
        rc = ei_decode_boolean(b, &idx, &on) < 0 ? CNODE_EINVAL : cnode_proc_trap_exit(p, on);
    } else if (strcmp(op, "exit") == 0 && arity == 3) {
        ei_x_buff m, r;
        copy_term(b, &idx, &r);
        ei_x_new_with_version(&m);
        ei_x_encode_tuple_header(&m, 2);
        ei_x_encode_atom(&m, "$testnode_exit");
        ei_x_append_buf(&m, r.buff + 1, r.index - 1);
        rc = cnode_send(ctl, &a->pid, &m);
        ei_x_free(&m);
        ei_x_free(&r);
    } else if (strcmp(op, "exit_signal") == 0 && arity == 4) {
        erlang_pid t;
        ei_x_buff r;
        if (ei_decode_pid(b, &idx, &t) < 0) {
            rc = CNODE_EINVAL;
        } else {
            copy_term(b, &idx, &r);
            rc = cnode_exit_signal(p, &t, &r);
            ei_x_free(&r);
        }
    } else if (strcmp(op, "send") == 0 && arity == 4) {
        erlang_pid t;
        char name[MAXATOMLEN_UTF8], nn[MAXATOMLEN_UTF8];
        int by_name;
        ei_x_buff msg;
        if (decode_dest(b, &idx, &t, name, nn, &by_name) < 0) {
            rc = CNODE_EINVAL;
        } else {
            copy_term(b, &idx, &msg);
            rc = by_name ? cnode_reg_send(p, name, nn[0] ? nn : NULL, &msg) : cnode_send(p, &t, &msg);
            ei_x_free(&msg);
        }
    } else if (strcmp(op, "burst") == 0 && arity == 5) {
        burst_args *ba = calloc(1, sizeof *ba);
        if (!ba || decode_dest(b, &idx, &ba->dest, ba->name, ba->nodename, &ba->by_name) < 0 ||
            ei_decode_long(b, &idx, &ba->count) < 0 || ei_decode_long(b, &idx, &ba->bytes) < 0 || nbursts >= 64) {
            free(ba);
            rc = CNODE_EINVAL;
        } else {
            ba->from = *from;
            ba->agent = apid;
            pthread_create(&bursts[nbursts++], NULL, burst_main, ba);
        }
    } else {
        rc = CNODE_EINVAL;
    }
    pthread_mutex_unlock(&agents_lock);
    if (res->index <= 1) {
        if (rc == 0) {
            ei_x_encode_atom(res, "ok");
        } else {
            ei_x_encode_tuple_header(res, 2);
            ei_x_encode_atom(res, "error");
            ei_x_encode_atom(res, rc == CNODE_EINVAL ? "badarg" : cnode_strerror(rc));
        }
    }
    return 0;
badarg:
    ei_x_encode_tuple_header(res, 2);
    ei_x_encode_atom(res, "error");
    ei_x_encode_atom(res, "badarg");
    return 0;
}

/* {call, From, Ref, Cmd} -> From ! {Ref, Result}. Returns 1 to stop. */
static int
handle_ctl(cnode_msg *m)
{
    const char *b = m->data.buff;
    int idx = 0, ver, arity;
    char atom[MAXATOMLEN_UTF8];
    erlang_pid from;
    if (ei_decode_version(b, &idx, &ver) < 0 || ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 4 ||
        ei_decode_atom(b, &idx, atom) < 0 || strcmp(atom, "call") != 0 || ei_decode_pid(b, &idx, &from) < 0) {
        fprintf(stderr, "testnode: ignoring a message that is not {call, From, Ref, Cmd}\n");
        return 0;
    }
    int ref_start = idx;
    if (ei_skip_term(b, &idx) < 0)
        return 0;
    int ref_end = idx;
    ei_x_buff res;
    ei_x_new_with_version(&res);
    ei_x_encode_tuple_header(&res, 2);
    ei_x_append_buf(&res, b + ref_start, ref_end - ref_start);
    int before = res.index;
    ei_x_buff r2;
    ei_x_new(&r2);
    r2.index = 0;
    int stop = command(b, idx, &from, &r2);
    (void)before;
    ei_x_append_buf(&res, r2.buff, r2.index);
    ei_x_free(&r2);
    send_x(&from, &res);
    return stop;
}

static void *
stdin_main(void *arg)
{
    (void)arg;
    char buf[256];
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EINTR))
            break;
    }
    atomic_store(&stopping, 1);
    return NULL;
}

/* cnode_test:raise(Class, Reason): raises Reason with Class (error, throw or
 * exit), so the suites can check what a BEAM caller sees for each class. */
static void
raise_handler(cnode_call_ctx *ctx, const cnode_args *args, void *ud)
{
    (void)ud;
    char cls[MAXATOMLEN_UTF8];
    int i = args->idx[0];
    if (ei_decode_atom(args->buf, &i, cls) < 0) {
        ei_x_buff r;
        ei_x_new(&r);
        ei_x_encode_atom(&r, "badarg");
        cnode_raise(ctx, "error", &r);
        ei_x_free(&r);
        return;
    }
    int s = args->idx[1], e = s;
    ei_skip_term(args->buf, &e);
    ei_x_buff r;
    ei_x_new(&r);
    ei_x_append_buf(&r, args->buf + s, e - s);
    if (cnode_raise(ctx, cls, &r) != 0) {
        ei_x_free(&r);
        ei_x_new(&r);
        ei_x_encode_atom(&r, "badarg");
        cnode_raise(ctx, "error", &r);
    }
    ei_x_free(&r);
}

int
main(int argc, char **argv)
{
    const char *sname = NULL, *cookie = NULL;
    int longnames = 0;
    cnode_proto_dist proto = CNODE_PROTO_DEFAULT;
    unsigned ticktime = 0;
    int verbose = 0;
    cnode_limits limits = {0};
    const char *optfile = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sname") && i + 1 < argc)
            sname = argv[++i];
        else if (!strcmp(argv[i], "--name") && i + 1 < argc)
            sname = argv[++i], longnames = 1;
        else if (!strcmp(argv[i], "--proto-dist") && i + 1 < argc && !strcmp(argv[i + 1], "inet6_tcp"))
            proto = CNODE_PROTO_INET6_TCP, i++;
        else if (!strcmp(argv[i], "--proto-dist") && i + 1 < argc && !strcmp(argv[i + 1], "inet6_tls"))
            proto = CNODE_PROTO_INET6_TLS, i++;
        else if (!strcmp(argv[i], "--cookie") && i + 1 < argc)
            cookie = argv[++i];
        else if (!strcmp(argv[i], "--ticktime") && i + 1 < argc)
            ticktime = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "-v"))
            verbose = 3;
        else if (!strcmp(argv[i], "--ssl-dist-optfile") && i + 1 < argc)
            optfile = argv[++i];
        else if (!strcmp(argv[i], "--limit") && i + 1 < argc && !strncmp(argv[i + 1], "mailbox_len=", 12))
            limits.mailbox_len = (size_t)strtoul(argv[++i] + 12, NULL, 10);
        else if (!strcmp(argv[i], "--limit") && i + 1 < argc && !strncmp(argv[i + 1], "served_in_flight=", 17))
            limits.served_in_flight = (unsigned)strtoul(argv[++i] + 17, NULL, 10);
        else {
            fprintf(stderr, "testnode: usage: cnode_testnode --sname NAME|--name N@H --cookie C [--proto-dist inet6_tcp|inet6_tls] "
                            "[--ticktime S] [--limit mailbox_len=N] [--limit served_in_flight=N] "
                            "[--ssl-dist-optfile F] [-v]\n");
            return 2;
        }
    }
    cnode_node_opts o = {.name = sname,
                         .longnames = longnames,
                         .proto_dist = proto,
                         .cookie = cookie,
                         .ticktime_s = ticktime,
                         .log = log_cb,
                         .log_level = verbose ? verbose : CNODE_LOG_WARNING,
                         .on_nodeup = on_up,
                         .on_nodedown = on_down,
                         .limits = limits,
                         .tls = {.optfile = optfile}};
    cnode_error err = {0};
    if (cnode_node_new(&o, &node, &err) != 0) {
        fprintf(stderr, "testnode: cannot start: %s\n", err.message);
        return 1;
    }
    if (cnode_proc_new(node, "ctl", &ctl) != 0) {
        fprintf(stderr, "testnode: cannot register ctl\n");
        cnode_node_close(node);
        return 1;
    }
    cnode_register_function(node, "cnode_test", "raise", 2, raise_handler, NULL);
    pthread_t in;
    pthread_create(&in, NULL, stdin_main, NULL);
    pthread_detach(in);
    printf("READY %s\n", cnode_node_name(node));
    fflush(stdout);
    while (!atomic_load(&stopping)) {
        cnode_msg m = {0};
        int rc = cnode_receive(ctl, 100, &m);
        if (rc == 0) {
            if (handle_ctl(&m))
                atomic_store(&stopping, 1);
            cnode_msg_free(&m);
        } else if (rc != CNODE_ETIMEOUT) {
            break;
        }
    }
    atomic_store(&stopping, 1);
    for (int i = 0; i < nbursts; i++)
        pthread_join(bursts[i], NULL);
    for (agent *a = agents; a; a = a->next)
        pthread_join(a->thread, NULL);
    while (agents) {
        agent *a = agents;
        agents = a->next;
        cnode_proc_close(a->p);
        free(a);
    }
    /* cnode_node_close() fires on_down for every open connection; node_event
     * must not send through ctl once it is closed */
    pthread_mutex_lock(&subs_lock);
    nsubs = 0;
    pthread_mutex_unlock(&subs_lock);
    for (int i = 0; i < nsinks; i++)
        cnode_proc_close(sinks[i]);
    cnode_proc_close(ctl);
    cnode_node_close(node);
    return 0;
}
