/* pg internals shared by the files of pg/. */
#ifndef CNODE_PG_INTERNAL_H
#define CNODE_PG_INTERNAL_H

#include <stdatomic.h>

#include "cnode/internal.h"

/* A pid with its node interned (index into the scope's node table). */
typedef struct {
    uint32_t node;
    uint32_t num, serial, creation;
} pg_pid;

/* One group's ordered pid list, keyed by the encoded group term. */
typedef struct {
    char *key;
    size_t klen;
    pg_pid *v;
    size_t n, cap;
} pg_list;

/* What one peer scope process contributed (pg's RemoteMap). */
typedef struct pg_remote {
    struct pg_remote *next;
    erlang_pid spid;
    erlang_ref mref;
    int synced;
    int closing_wait; /* closing: a discover went out after our leaves; its sync is awaited */
    pg_list *groups;
    size_t ngroups, capgroups;
} pg_remote;

/* A local C process and its groups, newest first, duplicates kept. */
typedef struct pg_local {
    struct pg_local *next;
    pg_pid pid;
    erlang_ref mref;
    char **gkeys;
    size_t *glens;
    size_t ngroups, capgroups;
} pg_local;

/* Per node: name, discovery state, liveness probe. */
typedef struct {
    char name[CNODE__NAME_MAX];
    int synced, no_scope, scope_seen;
    int has_name_mon;
    erlang_ref name_mon;
    int nodes_out, nodes_answered;
    int connecting; /* we asked for a connection; until the peer hooks say how it went */
    int seed;       /* given to cnode_pg_connect: redialled while down, every watch interval */
    erlang_ref nodes_tag;
    int probe_out, suspect;
    erlang_ref probe_tag;
    int64_t probe_sent_ms, last_answer_ms;
    long rtt_us;
} pg_nodeinfo;
typedef pg_nodeinfo pg_node;

typedef struct pg_event {
    struct pg_event *next;
    struct cnode_pg_scope *scope;
    int kind;
    char node[CNODE__NAME_MAX];
    char *key;
    size_t klen;
    erlang_pid *pids;
    size_t n;
} pg_event;

/* Snapshot layout: one allocation. */
typedef struct {
    const char *key;
    size_t klen;
    const cnode_pg_member *m;
    size_t n;
} pg_sgroup;
typedef struct {
    char name[CNODE__NAME_MAX];
    int suspect;
} pg_snode;

struct cnode_pg_snapshot {
    _Atomic int refs;
    uint64_t gen; /* 1, 2, ... per scope, in publishing order */
    size_t ngroups;
    pg_sgroup *groups; /* sorted by (klen, bytes) */
    size_t nnodes;
    pg_snode *nodes;   /* nodes[0] is this node */
};

struct cnode_pg_scope {
    struct cnode_pg_scope *next;
    cnode_node *node;
    char name[MAXATOMLEN];
    cnode_pg_opts opts;
    cnode_proc *proc;
    pg_list *all; /* the mirror: every group in pg's order */
    size_t nall, capall;
    pg_remote *remotes;
    pg_local *locals;
    pg_nodeinfo *nodes;
    size_t nnodes, capnodes;
    _Atomic(cnode_pg_snapshot *) cur;
    atomic_int readers;
    _Atomic uint64_t gen; /* cur's gen, stored after cur */
    int dirty;
    pg_event *ev_head, *ev_tail;
    pthread_cond_t cond; /* discovery progress, with node->lock */
    int closing_waits;   /* remotes with closing_wait set */
    int64_t last_watch_ms;
};

void cnode__pg_publish(cnode_pg_scope *s);
void cnode__pg_local_exit(cnode_pg_scope *s, pg_local *l);
void cnode__pg_discover_node(cnode_pg_scope *s, cnode__peer *peer);
void cnode__pg_free_all(cnode_node *node);
#endif
