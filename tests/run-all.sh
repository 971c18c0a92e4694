#!/bin/sh
# Runs the CUnit programs given as arguments and the common_test suites, all built with
# ASan/UBSan, and counts every outcome. The last line is "N passed, N failed, N skipped".
#
# What counts as what:
# - CUnit: each test that passed or failed; a test the registry did not run (a suite whose
#   set-up failed, an inactive test) is a failure. A program that aborted (a sanitizer report,
#   a crash, the timeout) is one failure, named after the test that was running: its
#   "Test: name ..." line had no result (stdout is unbuffered, see cunit_main.c), or the
#   innermost tests/test_*.c frame of the report names it. A sanitizer report of a program that
#   did finish (a leak at exit, a child process) is one failure more. A program that did not
#   build (make -q says it is out of date after `make -k test-build`) is one failure.
# - common_test: tests/ct_tally.escript reads common_test's own suite.log files: a skip the
#   suite did not plan ({skip, {planned, Why}} is planned) is a failure, every case of a suite
#   whose init_per_suite failed is a failure, a planned case with no result (the overall cap,
#   a crashed run) is a failure, a suite that does not compile is one failure. Sanitizer
#   reports go to each C program's stderr, which the harness reads: the case that started
#   the program fails, naming it.
# Every outcome is one line in build/asan/logs/results ("pass|fail|skip NAME [why]"); each
# failure and planned skip is printed with its reason.
#
# Options: --unit-only (CUnit and script checks), --ct-only, --results FILE (also write the result lines to FILE).
# CNODE_TEST_TIME_SCALE (default 1) stretches the time limits here, in the harness and in the
# CUnit programs, for a slow machine.
unit=1 ct=1 extra=""
while [ $# -gt 0 ]; do
    case "$1" in
        --unit-only) ct=0; shift ;;
        --ct-only) unit=0; shift ;;
        --results) extra=$2; shift 2 ;;
        *) break ;;
    esac
done
root=$(pwd)
logs="$root/build/asan/logs"
rm -rf "$logs"; mkdir -p "$logs"
results="$logs/results"
: >"$results"
scale=${CNODE_TEST_TIME_SCALE:-1}
scaled() { awk -v s="$scale" -v n="$1" 'BEGIN { v = int(n * s); print (v < n ? n : v) }'; }
asan_base="detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1"
ubsan_base="print_stacktrace=1:halt_on_error=1"
LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"
export LSAN_OPTIONS
record() { printf '%s\n' "$*" >>"$results"; }

# The innermost frame of a sanitizer report in tests/test_*.c: the CUnit test it came from
# (frames count up from the fault; the highest-numbered frame in a test file is the test).
culprit() {
    awk '/^ *#[0-9]+ .* in [A-Za-z_0-9]+ .*tests\/test_[a-z_0-9]+\.c:/ {
             for (i = 1; i <= NF; i++) if ($i == "in") { fn = $(i + 1); break } }
         END { print fn }' "$1"
}

if [ $unit = 1 ]; then
    for t in "$@"; do
        name=$(basename "$t")
        if [ ! -x "$t" ] || ! ${MAKE:-make} -q --no-print-directory "$t" >/dev/null 2>&1; then
            record "fail $name:(build) did not build; see the make output above"
            echo "FAILED: $t did not build"
            continue
        fi
        dir="$logs/unit/$name"; mkdir -p "$dir"
        out=$(ASAN_OPTIONS="$asan_base:log_path=$dir/asan" UBSAN_OPTIONS="$ubsan_base:log_path=$dir/ubsan" \
              timeout -k 5 "$(scaled 300)" "$t" 2>&1); rc=$?
        before=$(wc -l <"$results")
        printf '%s\n' "$out" | awk -v n="$name" '
            /^  Test: .* \.\.\.passed$/ { print "pass " n ":" $2 }
            /^  Test: .* \.\.\.FAILED$/ { print "fail " n ":" $2 " assertion failed" }' >>"$results"
        summary=$(printf '%s\n' "$out" | awk '$1 == "tests" && NF == 6 {print $2, $3; exit}')
        reports=$(ls "$dir" 2>/dev/null)
        if [ -n "$summary" ]; then
            # tests the registry did not run (set-up failure, inactive): failures
            total=${summary% *}; ran=${summary#* }
            [ "$total" -gt "$ran" ] && record "fail $name:($((total - ran)) tests) not run: a suite set-up failed or a test is inactive"
            for r in $reports; do
                c=$(culprit "$dir/$r")
                record "fail $name:${c:-(exit)} sanitizer report $r: $(grep -m1 -E 'ERROR|runtime error' "$dir/$r")"
            done
            if [ $rc -ne 0 ] && [ "$(tail -n +$((before + 1)) "$results" | grep -c '^fail')" = 0 ]; then
                record "fail $name:(exit) exit status $rc with no failed test"
            fi
        else
            # aborted: one failure, named after the running test
            running=$(printf '%s\n' "$out" | awk '/^  Test: / && !/\.\.\.(passed|FAILED)$/ {t = $2} END {print t}')
            first=$(printf '%s\n' $reports | head -n 1)
            why="exit status $rc$( [ $rc = 124 ] && echo ' (timeout)')"
            if [ -n "$first" ]; then
                c=$(culprit "$dir/$first")
                running=${running:-$c}
                why="sanitizer report $first: $(grep -m1 -E 'ERROR|runtime error' "$dir/$first")"
            fi
            record "fail $name:${running:-(unknown test)} aborted: $why"
            for r in $reports; do
                [ "$r" = "$first" ] && continue
                record "fail $name:$(culprit "$dir/$r") sanitizer report $r"
            done
        fi
        nf=$(tail -n +$((before + 1)) "$results" | grep -c '^fail')
        np=$(tail -n +$((before + 1)) "$results" | grep -c '^pass')
        if [ "$nf" != 0 ]; then
            printf '%s\n' "$out" | grep -v -E '^\s*Test: .*passed$' | tail -n 60
            for r in $reports; do echo "== sanitizer report $dir/$r"; head -n 60 "$dir/$r"; done
            echo "FAILED: $t (exit $rc, $nf failed)"
        else
            echo "ok: $t ($np tests)"
        fi
    done
fi

# Script checks (tests/check-*.sh): the exported symbols, the documented API, the installed copy
# built out of tree, the demo, the Elixir and C pair. Each is one pass or one failure, named
# after the script, with its last line as the reason; its output is in build/asan/logs/checks/.
if [ $unit = 1 ]; then
    mkdir -p "$logs/checks"
    for c in tests/check-*.sh; do
        name=$(basename "$c" .sh)
        CNODE_TEST_TIME_SCALE="$scale" timeout -k 5 "$(scaled 240)" sh "$c" >"$logs/checks/$name.log" 2>&1; rc=$?
        if [ $rc = 0 ]; then
            record "pass $name:(script)"
            echo "ok: $c ($(tail -n 1 "$logs/checks/$name.log"))"
        else
            record "fail $name:(script) exit $rc$( [ $rc = 124 ] && echo ' (timeout)'): $(tail -n 1 "$logs/checks/$name.log" | cut -c1-200)"
            tail -n 30 "$logs/checks/$name.log"
            echo "FAILED: $c (exit $rc; log $logs/checks/$name.log)"
        fi
    done
fi

# libFuzzer targets (tests/fuzz/): FUZZ_TEST_SECONDS (default 10) each on the kept corpus, two at a
# time; one result per target, "fuzz:<target>". Not built (no clang): one planned skip.
if [ $unit = 1 ]; then
    fuzzers=$(ls build/fuzz/fuzz_* 2>/dev/null | grep -v '\.' )
    if [ -z "$fuzzers" ] && ! command -v "${FUZZ_CC:-clang-14}" >/dev/null 2>&1; then
        record "skip fuzz:(all) ${FUZZ_CC:-clang-14} is not installed"
    else
        for src in tests/fuzz/fuzz_*.c; do
            f="build/fuzz/$(basename "$src" .c)"
            if [ ! -x "$f" ] || ! ${MAKE:-make} -q --no-print-directory "$f" >/dev/null 2>&1; then
                record "fail fuzz:$(basename "$f") did not build"
                fuzzers=$(printf '%s\n' $fuzzers | grep -vx "$f")
            fi
        done
        if [ -n "$fuzzers" ]; then
            sh tests/fuzz/run.sh "${FUZZ_TEST_SECONDS:-10}" $fuzzers >"$logs/fuzz.out" 2>&1
            awk '/^fuzz [^ ]+: [0-9]+ execs, 0 crashes$/ { sub(":", "", $2); print "pass fuzz:" $2; next }
                 /^fuzz [^ ]+: / { t = $2; sub(":", "", t); print "fail fuzz:" t " " $0 " (reproducer in build/fuzz/artifacts/" t "/)" }' \
                "$logs/fuzz.out" >>"$results"
            grep -v '^  ' "$logs/fuzz.out" | sed 's/^/  /' | tr '\n' ';' | sed 's/;  /; /g'; echo
        fi
    fi
fi

if [ $ct = 1 ]; then
    ctout="$root/build/asan/ct.log"
    ctlogs="$logs/ct"; mkdir -p "$ctlogs"
    for src in erlang_test_harness/c_src/*.c; do
        p=$(basename "$src" .c)
        f="build/asan/progs/$p"
        if [ ! -x "$f" ] || ! ${MAKE:-make} -q --no-print-directory "$f" >/dev/null 2>&1; then
            record "fail $p:(build) did not build; the suites ran an old binary or none"
        fi
    done
    if [ ! -x build/asan/cnode ] || ! ${MAKE:-make} -q --no-print-directory build/asan/cnode >/dev/null 2>&1; then
        record "fail cnode:(build) did not build; the suites ran an old binary or none"
    fi
    # no log_path: a report goes to the program's stderr, which the harness reads
    ASAN_OPTIONS="$asan_base" UBSAN_OPTIONS="$ubsan_base" CNODE_ROOT="$root" CNODE_TEST_TIME_SCALE="$scale" \
        timeout -k 10 "$(scaled 1500)" rebar3 ct --dir erlang_test_harness/test --logdir "$ctlogs" \
        --readable=false >"$ctout" 2>&1
    rc=$?
    [ $rc = 124 ] && echo "common_test: the run hit its overall limit; cases with no result count as failed"
    before=$(wc -l <"$results")
    escript tests/ct_tally.escript erlang_test_harness/test "$ctlogs" >>"$results" 2>"$logs/ct_tally.err" \
        || record "fail common_test:(tally) could not read the results: $(head -c 300 "$logs/ct_tally.err")"
    nf=$(tail -n +$((before + 1)) "$results" | grep -c '^fail')
    np=$(tail -n +$((before + 1)) "$results" | grep -c '^pass')
    if [ "$nf" != 0 ]; then
        grep -E '^%%%|^===> |Error|error:' "$ctout" | head -n 40
    fi
    echo "common_test: $np passed, $nf failed (rebar3 exit $rc; output $ctout; logs $ctlogs)"
fi

# what did not pass, with its reason
grep -E '^(fail|skip) ' "$results" | sed -e 's/^fail /FAILED: /' -e 's/^skip /SKIPPED (planned): /'
[ -n "$extra" ] && cp "$results" "$extra"
passed=$(grep -c '^pass ' "$results")
failed=$(grep -c '^fail ' "$results")
skipped=$(grep -c '^skip ' "$results")
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
