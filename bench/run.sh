#!/bin/sh
# make bench: every figure next to its BEAM-to-BEAM anchor measured in the same
# run, in the one-CPU and two-CPU placements (both ends pinned with taskset).
# Private epmd; every process started here is stopped by pid. Writes
# bench/results.json and prints a table.
set -u
ROOT=$(pwd)
REPS=${BENCH_REPS:-5}
N=${BENCH_N:-20000}
WARM=${BENCH_WARMUP:-2000}
PORT=${BENCH_EPMD_PORT:-$((44000 + $$ % 1000))}
export ERL_EPMD_PORT=$PORT
COOKIE=bench_$$
HOST=$(hostname -s)
TMP=$(mktemp -d)
RAW=$TMP/raw.txt
: >"$RAW"
PIDS=""
cleanup() {
    for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.3
    for p in $PIDS; do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

CPUS=$(awk '/Cpus_allowed_list/ {print $2}' /proc/self/status)
A=$(echo "$CPUS" | tr ',-' '  ' | awk '{print $1}')
B=$(echo "$CPUS" | tr ',-' '  ' | awk '{print $2}')
[ -n "$B" ] || B=$A

erlc -o "$TMP" bench/bench_anchor.erl || exit 1
epmd -port "$PORT" >/dev/null 2>&1 &
PIDS="$PIDS $!"

wait_up() { # NODE
    i=0
    until timeout 10 build/cnode --cookie "$COOKIE" ping "$1" >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -gt 50 ] && { echo "bench: $1 did not start" >&2; return 1; }
        sleep 0.2
    done
}

value() { awk '$1 == "rt_us" {print $2}'; }

for placement in 1cpu 2cpu; do
    if [ $placement = 1cpu ]; then SCPU=$A; else SCPU=$B; fi
    SRV=bsrv_${placement}_$$
    taskset -c "$SCPU" erl -sname "$SRV" -setcookie "$COOKIE" -noshell -noinput -pa "$TMP" \
        -eval 'bench_anchor:server()' >/dev/null 2>&1 &
    SPID=$!
    PIDS="$PIDS $SPID"
    wait_up "$SRV@$HOST" || exit 1
    for rep in $(seq 1 "$REPS"); do
        c=$(taskset -c "$A" timeout 120 build/bench/bench_rt --sname "bc_$$_$rep" --cookie "$COOKIE" \
            --peer "$SRV@$HOST" --n "$N" --warmup "$WARM" | value)
        cp=$(taskset -c "$A" timeout 120 build/bench/bench_rt --poll --sname "bcp_$$_$rep" --cookie "$COOKIE" \
            --peer "$SRV@$HOST" --n "$N" --warmup "$WARM" | value)
        a=$(taskset -c "$A" timeout 120 erl -sname "bb_$$_$rep" -setcookie "$COOKIE" -noshell -noinput -pa "$TMP" \
            -run bench_anchor client_rt "$SRV@$HOST" "$N" "$WARM" | value)
        echo "roundtrip $placement $rep c ${c:-nan} us_per_rt le0.7@1cpu,le1.0@2cpu beam_message_rt" >>"$RAW"
        echo "roundtrip $placement $rep anchor ${a:-nan} us_per_rt le0.7@1cpu,le1.0@2cpu beam_message_rt" >>"$RAW"
        echo "roundtrip_poll $placement $rep c ${cp:-nan} us_per_rt le0.7@1cpu,le1.0@2cpu beam_message_rt" >>"$RAW"
        echo "roundtrip_poll $placement $rep anchor ${a:-nan} us_per_rt le0.7@1cpu,le1.0@2cpu beam_message_rt" >>"$RAW"
        echo "bench: $placement rep $rep: C ${c:-?} us, C poll ${cp:-?} us, BEAM ${a:-?} us" >&2
    done
    kill -TERM "$SPID" 2>/dev/null
done

grep -v ' nan ' "$RAW" >"$RAW.ok"
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
MACHINE="$(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
escript bench/report.escript "$RAW.ok" "$ROOT/bench/results.json" "$COMMIT" "$MACHINE"
