# Helpers for the script checks (tests/check-*.sh) and the demo: a private epmd on a free
# loopback port (never 4369), BEAM nodes, and cleanup of every process started, by pid.
# Sourced by sh scripts run from the project root.
BL_HOST=$(hostname -s)
BL_COOKIE=${BL_COOKIE:-check_$$}
BL_PIDS=""
BL_TMP=$(mktemp -d)
BL_SCALE=${CNODE_TEST_TIME_SCALE:-1}
bl_cleanup() {
    for p in $BL_PIDS; do kill -TERM "$p" 2>/dev/null; done
    for p in $BL_PIDS; do
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$p" 2>/dev/null
    done
    [ -n "${BL_EPMD_PID:-}" ] && kill -KILL "$BL_EPMD_PID" 2>/dev/null
    rm -rf "$BL_TMP"
}
trap bl_cleanup EXIT
trap 'exit 1' INT TERM
bl_track() { BL_PIDS="$BL_PIDS $1"; }
# bl_wait SECONDS COMMAND...: retries COMMAND every 0.1 s until it succeeds (the time scales with
# CNODE_TEST_TIME_SCALE); 1 if it never does
bl_wait() {
    n=$(awk -v s="$BL_SCALE" -v n="$1" 'BEGIN { v = int(n * s * 10); print (v < n * 10 ? n * 10 : v) }'); shift
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -gt "$n" ] && return 1
        sleep 0.1
    done
}
# A private epmd on a free loopback port: a random port from 20000-59999, retried when taken.
bl_epmd() {
    for try in 1 2 3 4 5 6 7 8; do
        port=$(( (($$ * 7919 + try * 104729 + $(date +%N | sed 's/^0*//;s/^$/0/')) % 40000) + 20000 ))
        epmd -port "$port" -address 127.0.0.1 >/dev/null 2>&1 &
        pid=$!
        if bl_wait 3 epmd -port "$port" -names && kill -0 "$pid" 2>/dev/null; then
            BL_EPMD_PID=$pid
            ERL_EPMD_PORT=$port
            export ERL_EPMD_PORT
            return 0
        fi
        kill -KILL "$pid" 2>/dev/null
    done
    echo "no private epmd could be started"
    return 1
}
# bl_on NAME 'expr.': evaluates on BEAM node NAME, prints {ok, Value}
bl_on() { printf '%s\n' "$2" | erl_call -sname "$1" -c "$BL_COOKIE" -e 2>&1; }
bl_up() { erl_call -sname "$1" -c "$BL_COOKIE" -a 'erlang node []' >/dev/null 2>&1; }
# bl_beam NAME [erl args...]: starts a BEAM node and waits until it answers
bl_beam() {
    name=$1; shift
    erl -sname "$name" -setcookie "$BL_COOKIE" -noshell -noinput "$@" >"$BL_TMP/$name.log" 2>&1 &
    bl_track $!
    bl_wait 30 bl_up "$name" || { echo "BEAM node $name did not start: $(tail -n 1 "$BL_TMP/$name.log")"; return 1; }
}
# bl_is NAME 'expr.' VALUE: the expression evaluates to VALUE on NAME (for bl_wait: -eval runs
# after the node already answers erl_call)
bl_is() { [ "$(bl_on "$1" "$2")" = "{ok, $3}" ]; }
