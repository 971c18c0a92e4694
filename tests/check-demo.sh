#!/bin/sh
# make demo's script, checked: it exits 0 (each step checks its caption itself) and prints the
# key lines: the killed member removed with no failed call after, the frozen member skipped
# within about a second, then back. Run on a private epmd port.
cd "$(dirname "$0")/.." || exit 1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for try in 1 2 3; do # another port when the one drawn is taken
    port=$(( ($$ * 7919 + try * 104729 + $(date +%N | sed 's/^0*//;s/^$/0/')) % 30000 + 30000 ))
    DEMO_EPMD_PORT=$port timeout 120 sh examples/demo.sh >"$out" 2>&1
    rc=$?
    grep -q 'no epmd of ours' "$out" || break
done
cat "$out"
fail() { echo "check-demo: $*"; exit 1; }
[ $rc = 0 ] || fail "make demo's script exited $rc: $(grep -m1 'DEMO STEP FAILED' "$out" || tail -n 1 "$out")"
grep -q 'DEMO STEP FAILED' "$out" && fail "a step failed but the exit code was 0"
grep -q '^pong$' "$out" || fail "no pong"
grep -q '{ok, 42}' "$out" || fail "BEAM's call of the C node is missing"
grep -Eq '^=> demo_m1 removed in [0-9]+ ms; [1-9][0-9]* calls in the next second, 0 failed$' "$out" \
    || fail "no line saying the killed member was removed with 0 failed calls after"
grep -Eq '^=> demo_m2 skipped after [0-9]+ ms; [1-9][0-9]* calls in the next second, 0 failed$' "$out" \
    || fail "no line saying the frozen member was skipped"
grep -Eq '^=> demo_m2 back after [0-9]+ ms$' "$out" || fail "no line saying the resumed member is back"
tail -n 1 "$out" | grep -qx 'demo done' || fail "the demo did not finish"
echo "check-demo: demo exit 0; $(grep '^=> demo_m1' "$out" | cut -c4-); $(grep '^=> demo_m2 skipped' "$out" | cut -c4- | cut -d';' -f1)"
