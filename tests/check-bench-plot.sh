#!/bin/sh
# bench/plot.sh draws the report from the bench/results.json in the tree (no benchmark runs):
# a PNG with both placements, and the table the README shows.
cd "$(dirname "$0")/.." || exit 1
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail() { echo "check-bench-plot: $*"; exit 1; }
sh bench/plot.sh bench/results.json "$t/report.png" >"$t/log" 2>&1 || fail "plot.sh failed: $(tail -n 1 "$t/log")"
[ "$(head -c 8 "$t/report.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "no PNG written"
[ "$(wc -c <"$t/report.png")" -gt 10000 ] || fail "the PNG is nearly empty"
grep -q '^| `call_latency` | 1cpu |' "$t/report.md" || fail "the table lacks call_latency at 1cpu"
grep -q '^| `pick_\*`' "$t/report.md" || fail "the table lacks the pick summary"
n=$(grep -c '^| `' "$t/report.md")
echo "check-bench-plot: PNG of $(wc -c <"$t/report.png") bytes, table of $n rows"
