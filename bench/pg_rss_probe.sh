#!/bin/bash
# bench/pg_rss_probe.sh [REPS] [NODES] [GROUPS]: the memory half of bench/pg_scale.sh, without the
# observer and the timings (RSS does not depend on the machine's load): VmRSS of a watching
# `cnode members --watch` (stdout to a file) empty, at 10,000 and at 100,000 members joined as
# pg_scale.sh joins them (NODES (20) BEAM nodes, GROUPS (1000) groups g1..), with the growth per
# member and, at each point, where the RSS is (heap, other anonymous memory, the binary, libc).
# The BEAM nodes are started once; between repetitions their members exit (the next watcher
# starts empty). PROBE_MALLOC_STATS=1 also asks the watcher for malloc_stats() through gdb (its
# stderr, in the temporary directory). A private epmd on a free port; every process it starts
# is stopped by pid. CNODE=path picks the binary (default build/cnode).
set -u
cd "$(dirname "$0")/.."
REPS=${1:-3} NODES=${2:-20} GROUPS_N=${3:-1000}
CNODE=${CNODE:-build/cnode}
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    exec 2>/dev/null
    for p in "${PIDS[@]}"; do kill "$p"; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p"; done
    rm -rf "$TMP"
}
trap cleanup EXIT
[ -x "$CNODE" ] || { echo "no $CNODE (make all)" >&2; exit 1; }
export ERL_EPMD_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
epmd -port "$ERL_EPMD_PORT" >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.3
H=$(hostname -s) C=pgrss$$ SC=pgsb
on() { timeout 120 erl_call -sname "$1" -c "$C" -e <<<"$2"; }
names=()
for i in $(seq 1 "$NODES"); do names+=("prb${i}_$$"); done
first=${names[0]}
for n in "${names[@]}"; do
    erl -sname "$n" -setcookie "$C" -noshell -noinput >/dev/null 2>&1 &
    PIDS+=($!)
done
for n in "${names[@]}"; do
    for _ in $(seq 1 150); do erl_call -sname "$n" -c "$C" -a 'erlang node []' >/dev/null 2>&1 && break; sleep 0.2; done
    on "$n" "{ok, _} = pg:start($SC), net_kernel:connect_node('${first}@$H'), persistent_term:put(prb, []), ok." >/dev/null
done
# join_members NODE COUNT: as pg_scale.sh (a list per group), the pids kept to stop them later
join_members() {
    on "$1" "Gs = [list_to_atom(\"g\" ++ integer_to_list(I)) || I <- lists:seq(1, $GROUPS_N)], N = $2,
      All = lists:append([begin K = N div length(Gs) + (case I =< N rem length(Gs) of true -> 1; false -> 0 end),
          Ps = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, K)],
          K > 0 andalso pg:join($SC, G, Ps), Ps end || {I, G} <- lists:zip(lists:seq(1, length(Gs)), Gs)]),
      persistent_term:put(prb, All ++ persistent_term:get(prb)), ok." >/dev/null
}
total_on() { on "$1" "lists:sum([length(pg:get_members($SC, G)) || G <- pg:which_groups($SC)])." | sed 's/^{ok, *\(.*\)}$/\1/'; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
split() { # where the RSS is, by mapping
    python3 - "$1" <<'PY'
import collections, re, sys
rss, cur = collections.Counter(), None
for line in open('/proc/%s/smaps' % sys.argv[1]):
    if re.match(r'^[0-9a-f]+-[0-9a-f]+ ', line):
        f = line.split()
        name = f[5].split('/')[-1] if len(f) > 5 else 'anon'
        cur = 'binary' if name == 'cnode' else re.sub(r'\.so.*', '', name).strip('[]')
    elif line.startswith('Rss:'):
        rss[cur] += int(line.split()[1])
print(' '.join('%s %d' % kv for kv in sorted(rss.items()) if kv[1] >= 8))
PY
}
mstats() {
    [ "${PROBE_MALLOC_STATS:-0}" = 1 ] || return 0
    echo "== $2" >>"$TMP/watch_err"
    gdb -batch -p "$1" -ex 'call (void)malloc_stats()' ${PROBE_GDB_PY:+-x "$PROBE_GDB_PY"} 2>/dev/null | grep -v '^\[\|^0x\|^Using\|^warning' >>"$TMP/watch_err"
}
for rep in $(seq 1 "$REPS"); do
    : >"$TMP/watch_err"
    nice -n 10 "$CNODE" --cookie "$C" members --watch --connect "$first@$H" --scope $SC >"$TMP/watch" 2>>"$TMP/watch_err" &
    w=$!
    PIDS+=($w)
    for _ in $(seq 1 100); do grep -q ' listed ' "$TMP/watch" && break; sleep 0.2; done
    sleep 2
    r0=$(rss $w)
    echo "rep $rep empty: $r0 KiB | $(split $w)"
    mstats $w empty
    have=0
    for step in 10000 100000; do
        per=$(((step - have) / NODES))
        for n in "${names[@]}"; do join_members "$n" "$per"; done
        have=$((have + per * NODES))
        for _ in $(seq 1 600); do
            [ "$(awk 'NF == 6 && $2 == "join"' "$TMP/watch" | wc -l)" -ge "$have" ] && break
            sleep 0.2
        done
        sleep 2
        r1=$(rss $w)
        echo "rep $rep $have: $r1 KiB, $(awk -v a="$r0" -v b="$r1" -v n="$have" 'BEGIN {printf "%.1f", (b - a) * 1024 / n}') bytes/member | $(split $w)"
        mstats $w "$have"
    done
    [ "${PROBE_MALLOC_STATS:-0}" = 1 ] && cat "$TMP/watch_err"
    kill "$w"
    wait "$w" 2>/dev/null
    for n in "${names[@]}"; do on "$n" "[P ! stop || P <- persistent_term:get(prb)], persistent_term:put(prb, []), ok." >/dev/null; done
    for _ in $(seq 1 300); do [ "$(total_on "$first")" = 0 ] && break; sleep 0.2; done
done
