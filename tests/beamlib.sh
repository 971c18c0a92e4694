# Helpers for the script checks (tests/check-*.sh) and the demo: a private epmd on a free
# loopback port (never 4369), BEAM nodes, and cleanup of every process started, by pid.
# Sourced by sh scripts run from the project root; its own variables start with _bl_ or BL_.
BL_HOST=$(hostname -s)
BL_COOKIE=${BL_COOKIE:-check_$$}
BL_PIDS=""
BL_TMP=$(mktemp -d)
BL_SCALE=${CNODE_TEST_TIME_SCALE:-1}
bl_cleanup() {
    for _bl_p in $BL_PIDS; do kill -TERM "$_bl_p" 2>/dev/null; done
    for _bl_p in $BL_PIDS; do
        _bl_i=0
        while kill -0 "$_bl_p" 2>/dev/null && [ $_bl_i -lt 20 ]; do sleep 0.1; _bl_i=$((_bl_i + 1)); done
        kill -KILL "$_bl_p" 2>/dev/null
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
    _bl_n=$(awk -v s="$BL_SCALE" -v n="$1" 'BEGIN { v = int(n * s * 10); print (v < n * 10 ? n * 10 : v) }'); shift
    _bl_i=0
    until "$@" >/dev/null 2>&1; do
        _bl_i=$((_bl_i + 1)); [ $_bl_i -gt "$_bl_n" ] && return 1
        sleep 0.1
    done
}
# A private epmd on a free loopback port: a random port from 20000-59999, retried when taken.
bl_epmd() {
    for _bl_try in 1 2 3 4 5 6 7 8; do
        _bl_port=$(( (($$ * 7919 + _bl_try * 104729 + $(date +%N | sed 's/^0*//;s/^$/0/')) % 40000) + 20000 ))
        epmd -port "$_bl_port" -address 127.0.0.1 >/dev/null 2>&1 &
        _bl_pid=$!
        if bl_wait 3 epmd -port "$_bl_port" -names && kill -0 "$_bl_pid" 2>/dev/null; then
            BL_EPMD_PID=$_bl_pid
            ERL_EPMD_PORT=$_bl_port
            export ERL_EPMD_PORT
            return 0
        fi
        kill -KILL "$_bl_pid" 2>/dev/null
    done
    echo "no private epmd could be started"
    return 1
}
# bl_on NAME 'expr.': evaluates on BEAM node NAME, prints {ok, Value}
bl_on() { printf '%s\n' "$2" | erl_call -sname "$1" -c "$BL_COOKIE" -e 2>&1; }
bl_up() { erl_call -sname "$1" -c "$BL_COOKIE" -a 'erlang node []' >/dev/null 2>&1; }
# bl_beam NAME [erl args...]: starts a BEAM node and waits until it answers
bl_beam() {
    _bl_name=$1; shift
    erl -sname "$_bl_name" -setcookie "$BL_COOKIE" -noshell -noinput "$@" >"$BL_TMP/$_bl_name.log" 2>&1 &
    bl_track $!
    bl_wait 30 bl_up "$_bl_name" || { echo "BEAM node $_bl_name did not start: $(tail -n 1 "$BL_TMP/$_bl_name.log")"; return 1; }
}
# bl_is NAME 'expr.' VALUE: the expression evaluates to VALUE on NAME (for bl_wait: -eval runs
# after the node already answers erl_call)
bl_is() { [ "$(bl_on "$1" "$2")" = "{ok, $3}" ]; }
