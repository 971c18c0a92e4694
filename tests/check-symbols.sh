#!/bin/sh
# The shared library exports exactly the public API: every cnode_* function declared in
# include/*.h, and ei's API (the ei_*/erl_* functions ei.h declares and libei.a defines, which
# the library carries whole). Anything else exported (a cnode__* internal, a helper) fails,
# and so does a declared function that is missing.
cd "$(dirname "$0")/.." || exit 1
so=${1:-build/libcnode.so}
EI_DIR=${EI_DIR:-$(ls -d /usr/lib/erlang/lib/erl_interface-* 2>/dev/null | tail -n 1)}
[ -f "$so" ] || { echo "check-symbols: $so not built"; exit 1; }
t=$(mktemp -d) || exit 1
trap 'rm -rf "$t"' EXIT
nm -D --defined-only "$so" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' | sort -u >"$t/exported"
awk -f tests/api-decls.awk include/*.h | awk '{ print $1 }' | sort -u >"$t/declared"
grep -ohE '\b(ei_[A-Za-z0-9_]+|erl_[A-Za-z0-9_]+|__erl_errno_place)\b' "$EI_DIR/include/ei.h" | sort -u >"$t/ei_h"
nm -g --defined-only "$EI_DIR/lib/libei.a" 2>/dev/null | awk 'NF == 3 { print $3 }' | sort -u | comm -12 - "$t/ei_h" >"$t/ei_api"
sort -u "$t/declared" "$t/ei_api" >"$t/allowed"
extra=$(comm -23 "$t/exported" "$t/allowed")
missing=$(comm -13 "$t/exported" "$t/allowed")
fail=0
[ -n "$extra" ] && { echo "exported but not public API: $(echo $extra | cut -c1-400)"; fail=1; }
[ -n "$missing" ] && { echo "public API not exported: $(echo $missing | cut -c1-400)"; fail=1; }
for s in cnode_node_new ei_x_new_with_version ei_x_format_wo_ver ei_x_free; do
    grep -qx "$s" "$t/exported" || { echo "not exported: $s"; fail=1; }
done
[ $fail = 0 ] || { echo "check-symbols: $so exports the wrong set"; exit 1; }
echo "check-symbols: $so exports $(grep -c '^cnode_' "$t/exported") cnode_* and $(grep -vc '^cnode_' "$t/exported") ei symbols, nothing else"
