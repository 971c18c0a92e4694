#!/bin/bash
# bench/hot_syms.sh [NODES]: remakes cli/hot.syms, the functions build/cnode links together
# (Makefile, cli/link-order.sh): runs `cnode members --watch` under callgrind for 6 s in a
# cluster of NODES (10) BEAM nodes in one pg scope (a private epmd on a free port) and keeps
# every function of the binary that ran. Needs valgrind; every process it starts is stopped by pid.
set -u
cd "$(dirname "$0")/.."
N=${1:-10}
T=$(mktemp -d)
PIDS=()
cleanup() { exec 2>/dev/null; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; sleep 0.3; for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
make -s build/cnode || exit 1
export ERL_EPMD_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
epmd -port "$ERL_EPMD_PORT" >/dev/null 2>&1 & PIDS+=($!)
sleep 0.3
H=$(hostname -s) C=hotsyms$$
for i in $(seq 1 "$N"); do erl -sname hs$i -setcookie $C -noshell -noinput >/dev/null 2>&1 & PIDS+=($!); done
for i in $(seq 1 "$N"); do
  for _ in $(seq 1 100); do erl_call -sname hs$i -c $C -a 'erlang node []' >/dev/null 2>&1 && break; sleep 0.2; done
  erl_call -sname hs$i -c $C -e <<<"net_kernel:connect_node('hs1@$H'), {ok, _} = pg:start(scale), ok." >/dev/null
done
valgrind --tool=callgrind --callgrind-out-file="$T/cg" build/cnode --cookie $C members --watch --connect "hs1@$H" \
  --scope scale >/dev/null 2>&1 & vp=$!
PIDS+=($vp)
sleep 6
kill -TERM "$vp"; wait "$vp"
# callgrind names each object and function once, as (c)ob=(id) NAME / (c)fn=(id) NAME, then by id alone
names=$(python3 - "$T/cg" <<'PY'
import re, sys
obs, fns, out, ob = {}, {}, set(), None
for line in open(sys.argv[1]):
    m = re.match(r'^(c?)(ob|fn)=\((\d+)\)(?: (.*))?$', line.rstrip('\n'))
    if not m:
        continue
    called, kind, i, name = m.groups()
    table = obs if kind == 'ob' else fns
    if name:
        table[i] = name  # a name is given once, on whichever line first names the id (cob=/cfn= too)
    if called:
        continue
    if kind == 'ob':
        ob = obs.get(i)
    elif ob and ob.endswith('build/cnode'):
        n = re.split(r"[.']", fns.get(i, ''))[0]
        if n and not n.startswith(('0x', '(')):
            out.add(n)
print('\n'.join(sorted(out)))
PY
)
[ -n "$names" ] || { echo "hot_syms: no function of build/cnode in the profile" >&2; exit 1; }
{ sed -n '/^#/p' cli/hot.syms; printf '%s\n' _init _start main $names | sort -u; } >"$T/hot" && mv "$T/hot" cli/hot.syms
echo "cli/hot.syms: $(grep -vc '^#' cli/hot.syms) functions"
