#!/bin/sh
# make demo: a private epmd, one BEAM node with an echo process, and the C
# node pinging it and exchanging a message. Stops everything it started.
set -u
PORT=${DEMO_EPMD_PORT:-4399}
export ERL_EPMD_PORT=$PORT
COOKIE=demo_$$
HOST=$(hostname -s)
PIDS=""
cleanup() {
    for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.3
    for p in $PIDS; do kill -KILL "$p" 2>/dev/null; done
}
trap cleanup EXIT INT TERM
epmd -port "$PORT" >/dev/null 2>&1 &
PIDS="$PIDS $!"
erl -sname demo_a -setcookie "$COOKIE" -noshell -noinput \
    -eval "register(echo, spawn(fun L() -> receive {P, M} -> P ! {echoed, M}, L() end end))" >/dev/null 2>&1 &
PIDS="$PIDS $!"
i=0
until build/cnode --cookie "$COOKIE" ping "demo_a@$HOST" >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 50 ] && { echo "demo: BEAM node did not start"; exit 1; }
    sleep 0.2
done
echo "== cnode ping demo_a@$HOST"
build/cnode --cookie "$COOKIE" ping "demo_a@$HOST"
echo "== a C process sends {self(), hello} to echo on demo_a"
build/examples/hello --sname "demo_c$$" --cookie "$COOKIE" --peer "demo_a@$HOST" --to echo
