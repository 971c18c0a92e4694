#!/bin/sh
# bench/report.png (and bench/report.md, the table README.md shows) from bench/results.json,
# with gnuplot (make deps installs it). `make bench` runs it after the run; `make bench-plot`
# runs it alone. plot.sh [RESULTS [OUT.png]]: the table goes beside OUT (OUT.md); only for the
# default OUT is the README's table replaced, between its bench-table markers.
set -u
RESULTS=${1:-bench/results.json}
OUT=${2:-bench/report.png}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
command -v gnuplot >/dev/null || { echo "bench/plot.sh: gnuplot is not installed (make deps)" >&2; exit 1; }
escript bench/plot.escript "$RESULTS" "$TMP" || exit 1
gnuplot -e "DIR='$TMP'; OUT='$OUT'" bench/report.gp || exit 1
cp "$TMP/table.md" "${OUT%.png}.md"
if [ "$OUT" = bench/report.png ] && grep -q '<!-- bench-table -->' README.md && grep -q '<!-- /bench-table -->' README.md; then
    awk -v t="$TMP/table.md" '
        /<!-- bench-table -->/ { print; while ((getline l < t) > 0) print l; skip = 1; next }
        /<!-- \/bench-table -->/ { skip = 0 }
        !skip' README.md >"$TMP/README.md" && cat "$TMP/README.md" >README.md
fi
echo "bench: wrote $OUT and ${OUT%.png}.md"
