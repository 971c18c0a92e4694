/* libcnode — a C node for Erlang/Elixir clusters.
 *
 * The whole public API. Every declaration states its contract:
 *  - threads: any thread may call any function unless its comment says not;
 *    each callback type names the thread it runs on;
 *  - pointers are "borrowed for the call" unless the comment says "kept until
 *    ..." or "yours, free with ...";
 *  - functions return 0 or a negative CNODE_E... code (cnode_strerror());
 *    details go to an optional cnode_error *; nothing is thread-local;
 *  - a call that fails never runs its callback; destructors accept NULL;
 *  - the library never prints, exits or aborts on bad input.
 * Terms are ei-encoded buffers (ei_x_buff, <ei.h>), built and read with ei
 * or with this API's builder, parser and printer.
 */
#ifndef CNODE_H
#define CNODE_H

#include <stddef.h>
#include <stdint.h>
#include <ei.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ------------------------------------------------------------ */
/* X(NAME, value, text). Codes are stable. */
#define CNODE_ERRNO_MAP(X)                                                                                                     \
    X(EINVAL, -1, "invalid argument")                                                                                          \
    X(ENOMEM, -2, "out of memory")                                                                                             \
    X(ENOCONNECTION, -3, "no connection to node")                                                                              \
    X(ETIMEOUT, -4, "timed out")                                                                                               \
    X(EEXCEPTION, -5, "remote exception")                                                                                      \
    X(ENOPROC, -6, "no such process")                                                                                          \
    X(EAUTH, -7, "handshake refused (cookie or flags)")                                                                        \
    X(ENAMETAKEN, -8, "node name already registered with epmd")                                                                \
    X(EEPMD, -9, "epmd unreachable or refused")                                                                                \
    X(ECLOSED, -10, "node or handle closed")                                                                                   \
    X(EAGAIN, -11, "not ready yet")                                                                                            \
    X(EBADMSG, -12, "malformed data")                                                                                          \
    X(ENOTSUP, -13, "not supported by the peer")                                                                               \
    X(EEXITED, -14, "process exited (exit signal)")                                                                            \
    X(ESYS, -15, "system call failed")                                                                                         \
    X(EUNAVAILABLE, -16, "service unavailable (no live member)")                                                               \
    X(ECONFIG, -17, "invalid configuration")                                                                                   \
    X(EVALIDATION, -18, "validation failed")                                                                                   \
    X(EEXIST, -19, "already exists")                                                                                           \
    X(ENOTFOUND, -20, "not found")

enum {
#define CNODE__ERRENUM(name, val, text) CNODE_##name = (val),
    CNODE_ERRNO_MAP(CNODE__ERRENUM)
#undef CNODE__ERRENUM
};

/* Static text for a CNODE_E... code; "unknown error" for anything else. */
const char *cnode_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
