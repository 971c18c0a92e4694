#!/bin/sh
# make fuzz: runs each libFuzzer target given for SECONDS, two at a time (FUZZ_JOBS),
# on the kept corpus tests/fuzz/corpus/<target>/ (read only; what the run finds goes to
# build/fuzz/work/<target>/), and prints one line per target:
#   fuzz <target>: N execs, N crashes
# A crash, a leak, a timeout (-timeout, 10 s per input) or a target that did not run
# counts as a crash; the reproducer is kept in build/fuzz/artifacts/<target>/ and the
# target's log in build/fuzz/logs/<target>.log. Exit status 1 if any target crashed.
#   sh tests/fuzz/run.sh SECONDS build/fuzz/fuzz_x ...
secs=$1; shift
jobs=${FUZZ_JOBS:-2}
out=build/fuzz
mkdir -p "$out/logs"
one() {
    t=$(basename "$1")
    rm -rf "$out/artifacts/$t"; mkdir -p "$out/work/$t" "$out/artifacts/$t" "tests/fuzz/corpus/$t"
    ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
        timeout -k 5 $((secs + 60)) "$1" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
        -print_final_stats=1 -artifact_prefix="$out/artifacts/$t/" "$out/work/$t" "tests/fuzz/corpus/$t" \
        >"$out/logs/$t.log" 2>&1
    rc=$?
    execs=$(awk '/^stat::number_of_executed_units:/ {print $2}' "$out/logs/$t.log" | tail -n 1)
    crashes=$(ls "$out/artifacts/$t" | wc -l)
    [ $rc != 0 ] && [ "$crashes" = 0 ] && crashes=1
    printf 'fuzz %s: %s execs, %s crashes\n' "$t" "${execs:-0}" "$crashes" >"$out/logs/$t.line"
}
if [ "${1:-}" = "--one" ]; then
    one "$2"
    exit 0
fi
[ $# -gt 0 ] || { echo "fuzz: no targets built"; exit 1; }
export out secs
for t in "$@"; do rm -f "$out/logs/$(basename "$t").line"; done
printf '%s\n' "$@" | xargs -P "$jobs" -I{} sh "$0" "$secs" --one {}
bad=0
for t in "$@"; do
    n=$(basename "$t")
    line=$(cat "$out/logs/$n.line" 2>/dev/null || echo "fuzz $n: 0 execs, 1 crashes")
    echo "$line"
    case "$line" in
        *", 0 crashes") ;;
        *) bad=1
           echo "  log: $out/logs/$n.log; reproducer: $(ls "$out/artifacts/$n" 2>/dev/null | head -n 1)"
           grep -m 3 -E 'ERROR|runtime error|invariant failed|ei_skip_term' "$out/logs/$n.log" | sed 's/^/  /' ;;
    esac
done
exit $bad
