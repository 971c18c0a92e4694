/* The erlang built-ins a C node answers like any member of a mixed group (builtins.c).
 * Not installed. */
#ifndef CNODE_BUILTINS_H
#define CNODE_BUILTINS_H

#include "cnode.h"

/* The handler of erlang:fun/arity when it is one of the built-ins BEAM code calls on any
 * member for identity and health (node/0, nodes/0,1, system_time/0,1, monotonic_time/0,1,
 * is_alive/0), else NULL: every other unregistered function stays undef. */
cnode_handler *cnode__builtin(const char *mod, const char *fun, int arity);

#endif
