#!/bin/sh
# `make test-repeat N=10`: runs the common_test suites N times (through run-all.sh --ct-only,
# so every outcome is counted the same way as in `make test`), then prints for every case how
# often it failed, and one last line: "repeat: N runs, N case failures".
# The logs of a run with a failure are kept in build/asan/repeat/run.I/.
n=${1:-10}
case "$n" in ''|*[!0-9]*) echo "usage: repeat.sh N" >&2; exit 2 ;; esac
root=$(pwd)
dir="$root/build/asan/repeat"
rm -rf "$dir"; mkdir -p "$dir"
i=1
while [ "$i" -le "$n" ]; do
    sh tests/run-all.sh --ct-only --results "$dir/results.$i" >"$dir/run.$i.out" 2>&1
    [ -f "$dir/results.$i" ] || echo "fail common_test:(run $i) run-all.sh wrote no results" >"$dir/results.$i"
    f=$(grep -c '^fail ' "$dir/results.$i")
    if [ "$f" != 0 ]; then
        mkdir -p "$dir/run.$i"
        cp -r build/asan/logs/ct build/asan/ct.log "$dir/run.$i/" 2>/dev/null
    fi
    echo "run $i/$n: $(tail -n 1 "$dir/run.$i.out")"
    i=$((i + 1))
done
# each failure with its reason, then the table, then the summary line
grep -h '^fail ' "$dir"/results.* | sed 's/^fail /FAILED: /' | sort | uniq -c | sort -rn | head -n 40
echo "per case: runs failed / runs"
cat "$dir"/results.* | awk '{ c = $2; if (!(c in fails)) fails[c] = 0; if ($1 == "fail") fails[c]++ }
    END { for (c in fails) print c, fails[c] }' | sort | awk -v n="$n" '
    { printf "%5d/%d  %s\n", $2, n, $1; total += $2 }
    END { printf "repeat: %d runs, %d case failures\n", n, total; exit total > 0 }'
