#!/bin/sh
# Every public function declared in include/*.h has its comment (tests/api-decls.awk says what
# counts). Fails naming each undocumented declaration.
cd "$(dirname "$0")/.." || exit 1
decls=$(awk -f tests/api-decls.awk include/*.h) || exit 1
n=$(printf '%s\n' "$decls" | grep -c ' documented ')
bad=$(printf '%s\n' "$decls" | grep ' undocumented ')
[ "$n" -gt 50 ] || { echo "check-api-docs: only $n declarations found in include/: the parser lost them"; exit 1; }
if [ -n "$bad" ]; then
    printf '%s\n' "$bad" | sed 's/^/undocumented: /'
    echo "check-api-docs: $(printf '%s\n' "$bad" | wc -l) public functions without a comment"
    exit 1
fi
echo "check-api-docs: $n public functions, each documented"
