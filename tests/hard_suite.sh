#!/bin/sh
# make chaos / partition / soak: runs <what>_SUITE alone under ASan (as make test runs it) and
# prints its summary line (build/<what>.line, written by the suite); exit status 1 if the
# suite did not pass. The common_test output is in build/<what>.log, its logs in build/ct-<what>/.
what=$1
root=$(pwd)
rm -f "build/$what.line"
mkdir -p "build/ct-$what"
ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0" \
CNODE_ROOT="$root" rebar3 ct --dir erlang_test_harness/test --suite "${what}_SUITE" --logdir "build/ct-$what" \
    --readable=false >"build/$what.log" 2>&1
rc=$?
grep -E '^%%%|Failed|failed|SKIPPED|skipped' "build/$what.log" | grep -v '^===> Running' | tail -n 8
if [ -s "build/$what.line" ]; then
    cat "build/$what.line"
else
    echo "$what: no summary line (see build/$what.log and build/ct-$what/)"
    rc=1
fi
exit $rc
