#!/bin/bash
# bench/empty_rss.sh [RUNS] [NODES]: the resident memory of an empty watching node, as
# ../shared/acceptance/pg-scale measures it (VmRSS of `cnode members --watch` connected to NODES
# (10) BEAM nodes in scope `scale`, 2 s after start), RUNS (5) times, with where it goes per run:
# the binary, libc, ld.so, heap, other anonymous memory (thread stacks, libc's data), and the
# min/median/max. A private epmd on a free port; every process it starts is stopped by pid.
set -u
cd "$(dirname "$0")/.."
R=${1:-5} N=${2:-10}
PIDS=()
cleanup() { exec 2>/dev/null; for p in "${PIDS[@]}"; do kill "$p"; done; sleep 0.5; for p in "${PIDS[@]}"; do kill -9 "$p"; done; }
trap cleanup EXIT
make -s build/cnode || exit 1
export ERL_EPMD_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
epmd -port "$ERL_EPMD_PORT" >/dev/null 2>&1 & PIDS+=($!)
sleep 0.3
H=$(hostname -s) C=emptyrss$$
for i in $(seq 1 "$N") obs; do erl -sname er$i -setcookie $C -noshell -noinput >/dev/null 2>&1 & PIDS+=($!); done
for i in $(seq 1 "$N") obs; do
  for _ in $(seq 1 100); do erl_call -sname er$i -c $C -a 'erlang node []' >/dev/null 2>&1 && break; sleep 0.2; done
  erl_call -sname er$i -c $C -e <<<"net_kernel:connect_node('er1@$H'), {ok, _} = pg:start(scale), ok." >/dev/null
done
vals=()
for r in $(seq 1 "$R"); do
  build/cnode --cookie $C members --watch --connect "er1@$H" --scope scale >/dev/null 2>&1 &
  p=$!
  sleep 2
  vals+=($(awk '/VmRSS/ {print $2}' /proc/$p/status))
  python3 - "$p" <<'PY'
import collections, re, sys
rss, cur = collections.Counter(), None
for line in open('/proc/%s/smaps' % sys.argv[1]):
    if re.match(r'^[0-9a-f]+-[0-9a-f]+ ', line):
        f = line.split()
        name = f[5].split('/')[-1] if len(f) > 5 else 'anon'
        cur = 'binary' if name == 'cnode' else re.sub(r'\.so.*', '', name)
    elif line.startswith('Rss:'):
        rss[cur] += int(line.split()[1])
print(' '.join('%s %d' % kv for kv in sorted(rss.items()) if kv[1]), '| total %d kB' % sum(rss.values()))
PY
  kill "$p"; wait "$p" 2>/dev/null
done
printf '%s\n' "${vals[@]}" | sort -n | awk '{v[NR] = $1} END {printf "VmRSS: min %d median %d max %d kB (%d runs)\n", v[1], v[int((NR + 1) / 2)], v[NR], NR}'
