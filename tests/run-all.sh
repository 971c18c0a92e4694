#!/bin/sh
# Runs the CUnit programs given as arguments and the common_test suites, all
# built with ASan/UBSan, then prints one line: "N passed, N failed".
# Any sanitizer report (in build/asan/logs) counts as a failure.
# Options: --unit-only, --ct-only.
unit=1 ct=1
case "$1" in --unit-only) ct=0; shift ;; --ct-only) unit=0; shift ;; esac
root=$(pwd)
logs="$root/build/asan/logs"
rm -rf "$logs"; mkdir -p "$logs"
ASAN_OPTIONS="detect_leaks=1:log_path=$logs/asan:strict_string_checks=1:detect_stack_use_after_return=1"
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan"
LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"
export ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
passed=0 failed=0

if [ $unit = 1 ]; then
    for t in "$@"; do
        out=$(timeout -k 5 300 "$t" 2>&1); rc=$?
        line=$(printf '%s\n' "$out" | awk '$1 == "tests" {print $4, $5; exit}')
        p=${line% *}; f=${line#* }
        [ -n "$line" ] || { p=0; f=0; }
        if [ $rc -ne 0 ] && [ "$f" = 0 ]; then f=1; fi
        passed=$((passed + p)); failed=$((failed + f))
        if [ "$f" != 0 ]; then
            printf '%s\n' "$out" | grep -v -E '^\s*Test: .*passed$' | tail -n 60
            echo "FAILED: $t (exit $rc)"
        else
            echo "ok: $t ($p tests)"
        fi
    done
fi

if [ $ct = 1 ]; then
    ctout="$root/build/asan/ct.log"
    CNODE_ROOT="$root" timeout -k 10 1500 rebar3 ct --readable=false >"$ctout" 2>&1; rc=$?
    p=$(grep -oE 'All [0-9]+ tests passed' "$ctout" | grep -oE '[0-9]+' | tail -n 1)
    if [ -z "$p" ]; then
        p=$(grep -oE 'Passed [0-9]+ tests' "$ctout" | grep -oE '[0-9]+' | tail -n 1)
    fi
    f=$(grep -oE 'Failed [0-9]+ tests' "$ctout" | grep -oE '[0-9]+' | tail -n 1)
    p=${p:-0}; f=${f:-0}
    if [ $rc -ne 0 ] && [ "$f" = 0 ]; then f=1; fi
    grep -E '^%%%|FAILED|failed|Error|error' "$ctout" | head -n 80
    echo "common_test: $p passed, $f failed (log: $ctout)"
    passed=$((passed + p)); failed=$((failed + f))
fi

n=$(ls "$logs" | wc -l)
if [ "$n" -gt 0 ]; then
    for f in "$logs"/*; do echo "== sanitizer report $f"; head -n 60 "$f"; done
    failed=$((failed + n))
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
