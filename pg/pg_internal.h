/* pg internals shared by the files of pg/:
 *   mirror.c     interned nodes, the group index, copy-on-write member blocks, the changes
 *   snapshot.c   publication, reclamation by epochs, the readers' side
 *   proto.c      messages to and from peer scope processes
 *   local.c      this node's members: join, leave, exit
 *   discovery.c  discovery, the liveness probe, the loop's hooks, the public entry points
 * Everything here is guarded by node->lock except what readers touch (snapshots, blocks, interned names). */
#ifndef CNODE_PG_INTERNAL_H
#define CNODE_PG_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>

#include "cnode/internal.h"

/* One incarnation (name, creation) of a node, interned once per scope. A member's `node` points at `name`, so a
 * member is a pointer and two numbers; the creation is found from the pointer. Lives until the scope is freed. */
typedef struct pg_pnode {
    struct pg_pnode *next; /* the node's other incarnations */
    uint32_t creation;
    uint32_t node; /* index in s->nodes */
    char name[];
} pg_pnode;

/* A reference this node made (monitors, call tags), without ei's 1 KB node name: the node is always this one. */
typedef struct {
    uint32_t n[5];
    uint32_t creation;
    int len;
} pg_ref;

/* A peer scope process (pg's RemoteMap entry): one per node at a time. Its members are the mirror's members of
 * that node (pg scopes announce local pids only), so they are not stored a second time. */
typedef struct pg_remote {
    struct pg_remote *next;
    cnode_pg_member spid; /* interned */
    pg_ref mref;
    uint32_t node;
    int synced;
    int closing_wait; /* closing: a discover went out after our leaves; its sync is awaited */
} pg_remote;

/* Per node: name, discovery state, liveness probe. Individually allocated: pointers stay good. */
typedef struct pg_node {
    struct pg_node *hnext; /* name hash chain */
    uint32_t hash, ix;
    pg_pnode *pnodes;
    pg_remote *remote;
    int synced, no_scope, scope_seen;
    int has_name_mon;
    pg_ref name_mon;
    int nodes_out, nodes_answered;
    int connecting; /* we asked for a connection; until the peer hooks say how it went */
    int seed;       /* given to cnode_pg_connect: redialled while down, every watch interval */
    pg_ref nodes_tag;
    int probe_out, suspect;
    pg_ref probe_tag;
    int64_t probe_sent_ms, last_answer_ms;
    long rtt_us;
    char name[CNODE__NAME_MAX];
} pg_node;
typedef pg_node pg_nodeinfo;

/* One group's members in pg's order, with its key (the encoded group term). Published blocks are immutable and
 * shared by every snapshot from the one that first held them (gen born) to the one before dead_gen. */
typedef struct pg_block {
    struct pg_block *rnext; /* retired list */
    uint64_t dead_gen;
    cnode_pg_member *m;
    uint32_t n, cap;
    uint32_t klen;
    char key[]; /* klen bytes, then m[cap] from the next 8-byte boundary */
} pg_block;

/* A group of the mirror: its published block and, between a change and the next publication, a private draft. */
typedef struct pg_group {
    struct pg_group *hnext;
    struct pg_group *dnext; /* dirty list */
    uint32_t hash;
    int dirty;
    uint64_t mark; /* sync bookkeeping */
    pg_block *pub, *draft;
} pg_group;

/* A local C process and its groups, newest first, duplicates kept. */
typedef struct pg_local {
    struct pg_local *hnext;
    cnode_pg_member pid;
    pg_ref mref;
    char **gkeys;
    size_t *glens;
    size_t ngroups, capgroups;
} pg_local;

typedef struct pg_event {
    struct pg_event *next;
    struct cnode_pg_scope *scope;
    int kind;
    uint64_t gen;     /* the first snapshot that shows this change */
    const char *node; /* interned: lives with the scope */
    char *key;
    size_t klen;
    cnode_pg_member *m;
    size_t n;
} pg_event;

struct cnode_pg_snapshot {
    _Atomic int refs; /* readers, plus one for the scope until its grace period has passed */
    int retired, dropped;
    uint64_t epoch;                 /* reclamation epoch when it stopped being current */
    uint64_t gen;                   /* 1, 2, ... per scope, in publishing order */
    struct cnode_pg_snapshot *next; /* the scope's unfreed snapshots, oldest first */
    size_t ngroups;
    pg_block **groups; /* sorted by (klen, bytes) */
    const char *self;  /* members of this node point here */
    size_t nnodes;
    const char **names; /* names[0] is this node */
    unsigned char *suspect;
};

struct cnode_pg_scope {
    struct cnode_pg_scope *next;
    cnode_node *node;
    char name[MAXATOMLEN];
    cnode_pg_opts opts;
    cnode_proc *proc;
    /* interned nodes: index and hash by name */
    pg_node **nodes;
    size_t nnodes, capnodes;
    pg_node **nhash;
    size_t nhcap;
    pg_pnode *self; /* this node's incarnation */
    /* the mirror: groups by key */
    pg_group **ghash;
    size_t ngroups, ghcap;
    pg_group *dirty_groups;
    int groups_changed; /* a group came or went since the last publication */
    uint64_t sync_seq;
    /* local members by pid */
    pg_local **lhash;
    size_t nlocals, lhcap;
    pg_remote *remotes;
    /* snapshots */
    _Atomic(cnode_pg_snapshot *) cur;
    _Atomic uint64_t gen; /* cur's gen, stored after cur */
    _Atomic uint64_t epoch;
    atomic_long readers[2]; /* readers between loading cur and taking their reference, by epoch parity */
    cnode_pg_snapshot *snaps, *snaps_tail;
    pg_block *retired, *retired_tail;
    size_t freed_bytes; /* since the last malloc_trim */
    int dirty;
    pg_event *ev_head, *ev_tail;
    pthread_cond_t cond; /* discovery progress, with node->lock */
    int closing_waits;   /* remotes with closing_wait set */
    int64_t last_watch_ms;
};

/* mirror.c */
uint32_t cnode__pg_hash(const void *p, size_t n);
int cnode__pg_rehash(void ***tab, size_t *cap, size_t count, size_t next_off, uint32_t (*hash_of)(const void *));
pg_node *cnode__pg_node(cnode_pg_scope *s, const char *name, int create);
const char *cnode__pg_intern_pid(cnode_pg_scope *s, const erlang_pid *p, cnode_pg_member *out);
uint32_t cnode__pg_member_node(const cnode_pg_member *m);
void cnode__pg_to_pid(const cnode_pg_member *m, erlang_pid *out);
void cnode__pg_ref_pack(const erlang_ref *r, pg_ref *out);
void cnode__pg_ref_unpack(const cnode_pg_scope *s, const pg_ref *r, erlang_ref *out);
int cnode__pg_ref_eq(const cnode_pg_scope *s, const pg_ref *a, const erlang_ref *b);
pg_group *cnode__pg_group(cnode_pg_scope *s, const char *k, size_t kl, int create);
const pg_block *cnode__pg_group_block(const pg_group *g);
pg_block *cnode__pg_block_resize(pg_block *b, size_t cap);
void cnode__pg_join(cnode_pg_scope *s, const char *k, size_t kl, const cnode_pg_member *p, size_t n);
void cnode__pg_leave(cnode_pg_scope *s, const char *k, size_t kl, const cnode_pg_member *p, size_t n);
void cnode__pg_drop_node(cnode_pg_scope *s, pg_group *g, uint32_t node, int kind);
void cnode__pg_drop_node_all(cnode_pg_scope *s, uint32_t node, uint64_t keep_mark, int kind);
void cnode__pg_event(cnode_pg_scope *s, int kind, const char *key, size_t kl, const char *node, const cnode_pg_member *p, size_t n);
/* snapshot.c */
void cnode__pg_publish(cnode_pg_scope *s);
void cnode__pg_reclaim(cnode_pg_scope *s);
void cnode__pg_trim(cnode_pg_scope *s);
void cnode__pg_mirror_free(cnode_pg_scope *s);
#define PG_FOREACH_GROUP(s, g)                                                                                                     \
    for (size_t pg_b_ = 0; pg_b_ < (s)->ghcap; pg_b_++)                                                                            \
        for (pg_group *g = (s)->ghash[pg_b_]; g; g = g->hnext)

/* proto.c */
void cnode__pg_scope_msg(cnode_proc *p, const cnode__xpid *from, const char *b, size_t len);
void cnode__pg_send_discover_pid(cnode_pg_scope *s, const erlang_pid *to);
void cnode__pg_discover_node(cnode_pg_scope *s, cnode__peer *peer);
void cnode__pg_broadcast_local(cnode_pg_scope *s, int join, const cnode_pg_member *p, const char *k, size_t kl, int nkeys,
                               const char *const *keys, const size_t *lens);

/* local.c */
pg_local *cnode__pg_local_find(cnode_pg_scope *s, const cnode_pg_member *m);
void cnode__pg_local_exit(cnode_pg_scope *s, pg_local *l);
int cnode__pg_local_join(cnode_pg_scope *s, const char *k, size_t kl, const erlang_pid *pid);
int cnode__pg_local_leave(cnode_pg_scope *s, const char *k, size_t kl, const erlang_pid *pid);
void cnode__pg_locals_free(cnode_pg_scope *s);
void cnode__pg_bad(cnode_pg_scope *s, const char *what);

/* discovery.c */
void cnode__pg_reply(cnode_pg_scope *s, const char *b, int idx, int arity);
void cnode__pg_free_all(cnode_node *node);
#endif
