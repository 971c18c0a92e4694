#!/bin/sh
# make demo: a private epmd, two BEAM nodes in a pg scope, and the C node as a
# full member of that cluster: ping, messages, calls into Erlang and Elixir,
# serving calls from BEAM, pg membership both ways, balanced calls.
# Every process started here is stopped by pid.
set -u
PORT=${DEMO_EPMD_PORT:-4399}
export ERL_EPMD_PORT=$PORT
COOKIE=demo_$$
HOST=$(hostname -s)
A=demo_a@$HOST
B=demo_b@$HOST
C=demo_c$$@$HOST
PIDS=""
cleanup() {
    for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.3
    for p in $PIDS; do kill -KILL "$p" 2>/dev/null; done
}
trap cleanup EXIT INT TERM
cn() { build/cnode --cookie "$COOKIE" "$@"; }
step() { printf '\n== %s\n' "$*"; }
wait_for() { # TRIES COMMAND...: every 0.2 s until it succeeds
    n=$1; shift; i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -gt "$n" ] && return 1
        sleep 0.2
    done
}

epmd -port "$PORT" >/dev/null 2>&1 &
PIDS="$PIDS $!"
EX=$(elixir -e 'IO.write :code.lib_dir(:elixir)' 2>/dev/null)/ebin
JOIN='pg:start(demo), pg:join(demo, svc, spawn(fun() -> receive stop -> ok end end))'
erl -sname demo_a -setcookie "$COOKIE" -noshell -noinput -pa "$EX" \
    -eval "$JOIN, register(echo, spawn(fun L() -> receive {P, M} -> P ! {echoed, M}, L() end end))" >/dev/null 2>&1 &
PIDS="$PIDS $!"
erl -sname demo_b -setcookie "$COOKIE" -noshell -noinput \
    -eval "$JOIN, net_kernel:connect_node('$A')" >/dev/null 2>&1 &
PIDS="$PIDS $!"
wait_for 100 cn ping "$A" || { echo "demo: BEAM node $A did not start"; exit 1; }
wait_for 100 cn ping "$B" || { echo "demo: BEAM node $B did not start"; exit 1; }

step "cnode ping $A"
cn ping "$A"
step "a C process sends {self(), hello} to echo on $A and gets the answer"
build/examples/hello --sname "demo_h$$" --cookie "$COOKIE" --peer "$A" --to echo
step "cnode call $A erlang abs '[-42]'   (erpc:call from C)"
cn call "$A" erlang abs '[-42]'
step "cnode call $A String upcase '[<<\"elixir\">>]'   (an Elixir module)"
cn call "$A" String upcase '[<<"elixir">>]'
step "cnode call $A erlang error '[badarg]'   (a remote exception, exit code 1)"
cn call "$A" erlang error '[badarg]'; echo "exit code $?"
step "cnode serve: the C node joins pg group demo/csvc and serves cnode_demo"
build/cnode --cookie "$COOKIE" --sname "demo_c$$" serve --connect "$A" --scope demo --group csvc >/dev/null 2>&1 &
SERVE=$!
PIDS="$PIDS $SERVE"
wait_for 100 cn ping "$C" || { echo "demo: cnode serve did not start"; exit 1; }
ecall() { erl_call -sname "$1" -c "$COOKIE" -e <<EOT
$2
EOT
}
members_c() { ecall demo_a "[node(P) || P <- pg:get_members(demo, csvc)]." | grep -q "demo_c"; }
wait_for 50 members_c
step "BEAM ($A) sees the C member in pg:get_members(demo, csvc)"
ecall demo_a "pg:get_members(demo, csvc)."; echo
step "BEAM ($A) calls the C node: erpc:call('$C', cnode_demo, add, [20, 22])"
ecall demo_a "erpc:call('$C', cnode_demo, add, [20, 22])."; echo
step "cnode members --scope demo $A   (the C mirror of every group)"
cn members --scope demo "$A"
step "cnode balance: 10 round-robin calls of erlang:node() over demo/svc"
cn balance --connect "$A" --scope demo --group svc --algorithm round_robin -n 10 erlang node '[]'
step "stopping cnode serve: it leaves the group first"
kill -TERM "$SERVE"
gone() { ! members_c; }
wait_for 50 gone && ecall demo_a "pg:get_members(demo, csvc)." && echo
echo
echo "demo done"
