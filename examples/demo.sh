#!/bin/sh
# make demo: a private epmd, two BEAM nodes in a pg scope, and the C node as a
# full member of that cluster: ping, messages, calls into Erlang and Elixir,
# serving calls from BEAM, pg membership both ways, balanced calls; then three
# more BEAM members behind a balancer the C node calls without pause: one killed
# with kill -9 (removed at once, no failed call after), one frozen with SIGSTOP
# (suspect and skipped in about a second), then resumed (back in rotation).
# Each step checks that it did what its caption says: the demo exits non-zero,
# naming the step, if one did not. Every process started here is stopped by pid.
set -u
PORT=${DEMO_EPMD_PORT:-4399}
export ERL_EPMD_PORT=$PORT
COOKIE=demo_$$
HOST=$(hostname -s)
A=demo_a@$HOST
B=demo_b@$HOST
C=demo_c$$@$HOST
PIDS=""
STOPPED=""
TMP=$(mktemp -d)
STATUS=0
cleanup() {
    exec 3>&- 2>/dev/null
    for p in $STOPPED; do kill -CONT "$p" 2>/dev/null; done
    for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.3
    for p in $PIDS; do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
cn() { build/cnode --cookie "$COOKIE" "$@"; }
step() { printf '\n== %s\n' "$*"; }
# bad WHAT: the step did not do what its caption says
bad() { echo "DEMO STEP FAILED: $*"; STATUS=1; }
# expect FILE PATTERN WHAT: the step's output (FILE, also shown) has a line matching PATTERN
expect() { cat "$1"; grep -q -- "$2" "$1" || bad "$3"; }
wait_for() { # TRIES COMMAND...: every 0.1 s until it succeeds
    n=$1; shift; i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -gt "$n" ] && return 1
        sleep 0.1
    done
}
now_ms() { date +%s%3N; }
ecall() { erl_call -sname "$1" -c "$COOKIE" -e <<EOT
$2
EOT
}

epmd -port "$PORT" >/dev/null 2>&1 &
EPMD=$!
PIDS="$PIDS $EPMD"
wait_for 50 epmd -port "$PORT" -names && kill -0 "$EPMD" 2>/dev/null \
    || { echo "demo: no epmd of ours on port $PORT (taken? set DEMO_EPMD_PORT)"; exit 1; }
EX=$(elixir -e 'IO.write :code.lib_dir(:elixir)' 2>/dev/null)/ebin
JOIN='pg:start(demo), pg:join(demo, svc, spawn(fun() -> receive stop -> ok end end))'
# connect to A, retried (every 0.1 s, 30 s at most) while A is still starting
CONNECT_A="(fun R(0) -> false; R(N) -> net_kernel:connect_node('$A') =:= true orelse (timer:sleep(100) =:= ok andalso R(N - 1)) end)(300)"
erl -sname demo_a -setcookie "$COOKIE" -noshell -noinput -pa "$EX" \
    -eval "$JOIN, register(echo, spawn(fun L() -> receive {P, M} -> P ! {echoed, M}, L() end end))" >/dev/null 2>&1 &
PIDS="$PIDS $!"
erl -sname demo_b -setcookie "$COOKIE" -noshell -noinput \
    -eval "$JOIN, $CONNECT_A" >/dev/null 2>&1 &
PIDS="$PIDS $!"
wait_for 200 cn ping "$A" || { echo "demo: BEAM node $A did not start"; exit 1; }
wait_for 200 cn ping "$B" || { echo "demo: BEAM node $B did not start"; exit 1; }
echo_up() { ecall demo_a "is_pid(whereis(echo))." | grep -q true; }
svc_up() { test "$(cn members --scope demo --group svc "$A" | wc -l)" = 2; }
wait_for 100 echo_up || { echo "demo: the echo process did not start on $A"; exit 1; }
wait_for 100 svc_up || { echo "demo: demo/svc does not show both BEAM members: $(cn members --scope demo --group svc "$A" 2>&1 | tr '\n' ' ')"; exit 1; }

step "cnode ping $A"
cn ping "$A" >"$TMP/out"; expect "$TMP/out" '^pong$' "ping did not answer pong"
step "a C process sends {self(), hello} to echo on $A and gets the answer"
build/examples/hello --sname "demo_h$$" --cookie "$COOKIE" --peer "$A" --to echo >"$TMP/out" 2>&1
expect "$TMP/out" 'echoed, hello' "hello got no echoed reply"
step "cnode call $A erlang abs '[-42]'   (erpc:call from C)"
cn call "$A" erlang abs '[-42]' >"$TMP/out" 2>&1; expect "$TMP/out" '^42$' "abs(-42) did not give 42"
step "cnode call $A String upcase '[<<\"elixir\">>]'   (an Elixir module)"
cn call "$A" String upcase '[<<"elixir">>]' >"$TMP/out" 2>&1
expect "$TMP/out" 'ELIXIR' "String.upcase did not answer"
step "cnode call $A erlang error '[badarg]'   (a remote exception, exit code 1)"
cn call "$A" erlang error '[badarg]' >"$TMP/out" 2>&1; rc=$?
echo "exit code $rc" >>"$TMP/out"
expect "$TMP/out" 'raised error: badarg' "the remote exception was not reported"
[ $rc = 1 ] || bad "a remote exception did not exit with code 1"
step "cnode serve: the C node joins pg group demo/csvc and serves cnode_demo"
build/cnode --cookie "$COOKIE" --sname "demo_c$$" serve --connect "$A" --scope demo --group csvc >/dev/null 2>&1 &
SERVE=$!
PIDS="$PIDS $SERVE"
wait_for 200 cn ping "$C" || bad "cnode serve did not start"
members_c() { ecall demo_a "[node(P) || P <- pg:get_members(demo, csvc)]." | grep -q "demo_c"; }
wait_for 100 members_c
step "BEAM ($A) sees the C member in pg:get_members(demo, csvc)"
ecall demo_a "pg:get_members(demo, csvc)." >"$TMP/out"; echo >>"$TMP/out"
expect "$TMP/out" "demo_c$$@" "BEAM does not see the C member"
step "BEAM ($A) calls the C node: erpc:call('$C', cnode_demo, add, [20, 22])"
ecall demo_a "erpc:call('$C', cnode_demo, add, [20, 22])." >"$TMP/out"; echo >>"$TMP/out"
expect "$TMP/out" '{ok, 42}' "the C node did not answer 42"
step "BEAM ($A) asks the C member who it is, as it asks any member: erpc:call('$C', erlang, node, [])"
ecall demo_a "erpc:call('$C', erlang, node, [])." >"$TMP/out"; echo >>"$TMP/out"
expect "$TMP/out" "demo_c$$@" "the C node did not answer erlang:node()"
step "cnode members --scope demo $A   (the C mirror of every group)"
cn members --scope demo "$A" >"$TMP/out"
expect "$TMP/out" "^demo csvc demo_c$$@" "the mirror does not list the C member"
step "cnode balance: 10 round-robin calls of erlang:node() over demo/svc"
cn balance --connect "$A" --scope demo --group svc --algorithm round_robin -n 10 erlang node '[]' >"$TMP/out" 2>&1
expect "$TMP/out" "^$A 5$" "round robin did not spread 5 and 5"
grep -q "^$B 5$" "$TMP/out" || bad "round robin did not spread 5 and 5"
step "stopping cnode serve: it leaves the group first"
kill -TERM "$SERVE"
gone() { ! members_c; }
if wait_for 100 gone; then ecall demo_a "pg:get_members(demo, csvc)."; echo; else bad "the C member did not leave"; fi

# ---- members that die and hang ------------------------------------------------------------
step "three more BEAM members of demo/fo; the C node calls erlang:node() on them through a round-robin balancer (4 threads, a call per ms each)"
for i in 1 2 3; do
    erl -sname "demo_m$i" -setcookie "$COOKIE" -noshell -noinput \
        -eval "pg:start(demo), pg:join(demo, fo, spawn(fun() -> receive stop -> ok end end)), $CONNECT_A" \
        >/dev/null 2>&1 &
    eval "M$i=\$!"
    PIDS="$PIDS $!"
done
fo_up() { test "$(cn members --scope demo --group fo "$A" | wc -l)" = 3; }
wait_for 300 fo_up || { bad "the three members did not join demo/fo"; exit 1; }
mkfifo "$TMP/fo.in"
build/examples/failover --sname "demo_f$$" --cookie "$COOKIE" --connect "$A" --scope demo --group fo \
    <"$TMP/fo.in" >"$TMP/fo.out" 2>&1 &
PIDS="$PIDS $!"
exec 3>"$TMP/fo.in"
nreports=0
# report: the failover program's counts since its last mark, as one line in $REPORT
report() {
    nreports=$((nreports + 1))
    echo report >&3
    have_report() { test "$(grep -c ' report ' "$TMP/fo.out")" -ge $nreports; }
    wait_for 100 have_report || { REPORT="(no report)"; return; }
    REPORT=$(grep ' report ' "$TMP/fo.out" | sed -n "${nreports}p" | cut -d' ' -f2-)
}
count() { echo "$REPORT" | tr ' ' '\n' | sed -n "s/^$1=//p"; } # count calls|failed|NODE
# event_ms EVENT NODE: the time of the first such line of the failover program
event_ms() { grep -m1 " $1 $2\$" "$TMP/fo.out" | cut -d' ' -f1; }
has_event() { grep -q " $1 $2\$" "$TMP/fo.out"; }
three_serving() { report; [ -n "$(count "demo_m1@$HOST")" ] && [ -n "$(count "demo_m2@$HOST")" ] && [ -n "$(count "demo_m3@$HOST")" ]; }
echo mark >&3
if wait_for 100 three_serving; then echo "all three answer: $REPORT"; else bad "the calls did not reach all three members"; fi
window() { echo mark >&3; sleep 1; report; } # the calls of the next second

step "kill -9 demo_m1 while the calls go on: removed from the mirror at once, no failed call after"
echo mark >&3
t0=$(now_ms)
kill -KILL "$M1"
if wait_for 100 has_event nodedown "demo_m1@$HOST"; then
    removed=$(( $(event_ms nodedown "demo_m1@$HOST") - t0 ))
    report
    echo "removed $removed ms after kill -9; between the kill and the removal: $REPORT"
    window
    echo "in the second after the removal: $REPORT"
    [ "$(count failed)" = 0 ] || bad "calls failed after demo_m1 was removed: $REPORT"
    [ -z "$(count "demo_m1@$HOST")" ] || bad "calls still went to the killed demo_m1"
    [ -n "$(count "demo_m2@$HOST")" ] && [ -n "$(count "demo_m3@$HOST")" ] || bad "the calls did not go on to demo_m2 and demo_m3"
    echo "=> demo_m1 removed in $removed ms; $(count calls) calls in the next second, $(count failed) failed"
else
    bad "demo_m1 was never removed after kill -9"
fi

step "kill -STOP demo_m2: frozen, its connection still open; the probe marks it suspect and the balancer skips it"
echo mark >&3
t0=$(now_ms)
kill -STOP "$M2"
STOPPED="$M2"
if wait_for 100 has_event suspect "demo_m2@$HOST"; then
    suspect=$(( $(event_ms suspect "demo_m2@$HOST") - t0 ))
    report
    echo "suspect $suspect ms after SIGSTOP (BEAM's pg drops it only at nodedown, after net_ticktime: 60 s by default);"
    echo "calls sent to it before that time out (1 s): $REPORT"
    window
    echo "calls sent in the second after: $REPORT"
    [ "$(count failed)" = 0 ] || bad "calls failed after demo_m2 was marked suspect: $REPORT"
    [ -z "$(count "demo_m2@$HOST")" ] || bad "calls still went to the frozen demo_m2"
    [ -n "$(count "demo_m3@$HOST")" ] || bad "the calls did not go on to demo_m3"
    [ "$suspect" -lt 3000 ] || bad "demo_m2 was marked suspect only after $suspect ms, not about a second"
    echo "=> demo_m2 skipped after $suspect ms; $(count calls) calls in the next second, $(count failed) failed"
else
    bad "frozen demo_m2 was never marked suspect"
fi

step "kill -CONT demo_m2: it answers the probe again and is back in rotation"
t0=$(now_ms)
kill -CONT "$M2"
STOPPED=""
if wait_for 100 has_event clear "demo_m2@$HOST"; then
    back=$(( $(event_ms clear "demo_m2@$HOST") - t0 ))
    window
    echo "cleared $back ms after SIGCONT; in the second after: $REPORT"
    [ -n "$(count "demo_m2@$HOST")" ] || bad "no call went to demo_m2 after it was cleared"
    [ "$(count failed)" = 0 ] || bad "calls failed after demo_m2 came back: $REPORT"
    echo "=> demo_m2 back after $back ms"
else
    bad "resumed demo_m2 was never cleared"
fi
echo quit >&3

echo
if [ $STATUS = 0 ]; then echo "demo done"; else echo "demo done, with failed steps (see DEMO STEP FAILED above)"; fi
exit $STATUS
