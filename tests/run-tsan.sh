#!/bin/sh
# `make tsan`: the CUnit programs given as arguments, built with
# ThreadSanitizer, then the common_test suites with the C programs they start
# built the same way (CNODE_SAN=tsan). Any TSan report is a failure. Ends with
# "N passed, N failed". CNODE_TSAN_CT=0 skips the common_test part.
root=$(pwd)
logs="$root/build/tsan/logs"
rm -rf "$logs"; mkdir -p "$logs"
# TSan runs the C code several times slower than the ASan build the time limits are set for (a
# pgscale_SUITE watch under TSan once took over a minute to catch up with 8,000 members of churn
# in the full run, 24 s alone): stretch every deadline, in CUnit and in the harness, by 3
CNODE_TEST_TIME_SCALE=${CNODE_TEST_TIME_SCALE:-3}
export CNODE_TEST_TIME_SCALE
TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:log_path=$logs/tsan:suppressions=$root/tests/tsan.supp"
export TSAN_OPTIONS
passed=0 failed=0
for t in "$@"; do
    out=$(timeout -k 5 600 "$t" 2>&1); rc=$?
    line=$(printf '%s\n' "$out" | awk '$1 == "tests" {print $4, $5; exit}')
    p=${line% *}; f=${line#* }
    [ -n "$line" ] || { p=0; f=1; }
    if [ $rc -ne 0 ] && [ "$f" = 0 ]; then f=1; fi
    n=$(ls "$logs" 2>/dev/null | wc -l)
    if [ "$n" -gt 0 ]; then
        for l in "$logs"/*; do echo "== TSan report from $t"; head -n 40 "$l"; done
        rm -f "$logs"/*
        f=$((f + 1))
    fi
    passed=$((passed + p)); failed=$((failed + f))
    echo "$( [ "$f" = 0 ] && echo ok || echo FAILED ): $t ($p passed, $f failed)"
done
if [ "${CNODE_TSAN_CT:-1}" = 1 ]; then
    ctout="$root/build/tsan/ct.log"
    CNODE_SAN=tsan CNODE_ROOT="$root" timeout -k 10 2400 rebar3 ct --readable=false >"$ctout" 2>&1; rc=$?
    p=$(grep -oE '(All|Passed) [0-9]+ tests' "$ctout" | grep -oE '[0-9]+' | tail -n 1)
    f=$(grep -oE 'Failed [0-9]+ tests' "$ctout" | grep -oE '[0-9]+' | tail -n 1)
    p=${p:-0}; f=${f:-0}
    if [ $rc -ne 0 ] && [ "$f" = 0 ]; then f=1; fi
    n=$(ls "$logs" 2>/dev/null | wc -l)
    if [ "$n" -gt 0 ]; then
        for l in "$logs"/*; do echo "== TSan report $l"; head -n 40 "$l"; done
        f=$((f + n))
    fi
    echo "common_test under TSan: $p passed, $f failed (log: $ctout)"
    passed=$((passed + p)); failed=$((failed + f))
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
