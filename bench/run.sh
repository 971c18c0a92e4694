#!/bin/sh
# make bench: every figure next to its BEAM-to-BEAM (or stock ei) anchor
# measured in the same run, min/median/max over BENCH_REPS repetitions,
# written to bench/results.json with the ratio C/anchor, and printed as a table.
#
# Placements (taskset; a pinned BEAM node sees one CPU and runs 1 scheduler):
#   1cpu  both ends on the first allowed CPU (A)
#   2cpu  server on the second allowed CPU (B), client on the first (A)
# Throughput figures run in 2cpu only (64 in flight also in 1cpu). pg: 1cpu = nodes A, B and the C mirror
# (and member nodes) all on A; 2cpu = the observers (B, C mirror) on B, the
# joining node A and the member nodes on A.
#
# A private epmd (ERL_EPMD_PORT); every process started here, or by the pg
# orchestrator (listed in $TMP/pids), is stopped by pid: SIGTERM, SIGKILL
# after 5 s. Every foreground step runs under `timeout`.
set -u
ROOT=$(pwd)
REPS=${BENCH_REPS:-5}
N1=${BENCH_N:-20000}
N2=${BENCH_N_2CPU:-$((N1 / 2))} # sequential calls per run at 2cpu (each ~2x slower there)
WARM=${BENCH_WARMUP:-2000}
SECS=${BENCH_SECS:-3}
PG_JOINS=${BENCH_PG_JOINS:-200}
PG_KILLS=${BENCH_PG_KILLS:-10}
HUNG_CAP_MS=${BENCH_HUNG_CAP_MS:-20000}
PG_ERL_FLAGS=${BENCH_PG_ERL_FLAGS:-+sbwt none +sbwtdcpu none +sbwtdio none}
PORT=${BENCH_EPMD_PORT:-$((44000 + $$ % 1000))}
export ERL_EPMD_PORT=$PORT
TMP=$(mktemp -d)
export ERL_CRASH_DUMP=$TMP/erl_crash.dump
COOKIE=bench_$$
HOST=$(hostname -s)
HZ=$(getconf CLK_TCK)
RAW=$TMP/raw.txt
PIDFILE=$TMP/pids
: >"$RAW"
: >"$PIDFILE"
PIDS=""
STARTED=$(date +%s)

alive_any() {
    for p in "$@"; do kill -0 "$p" 2>/dev/null && return 0; done
    return 1
}
stop_pids() { # PID... : SIGTERM, then SIGKILL after 5 s
    [ $# -gt 0 ] || return 0
    for p in "$@"; do kill -TERM "$p" 2>/dev/null; done
    i=0
    while alive_any "$@" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    for p in "$@"; do kill -KILL "$p" 2>/dev/null; done
    for p in "$@"; do wait "$p" 2>/dev/null; done
    return 0
}
cleanup() {
    # shellcheck disable=SC2046
    stop_pids $PIDS $(cat "$PIDFILE" 2>/dev/null)
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CPUS=$(awk '/Cpus_allowed_list/ {print $2}' /proc/self/status)
A=$(echo "$CPUS" | tr ',-' '  ' | awk '{print $1}')
B=$(echo "$CPUS" | tr ',-' '  ' | awk '{print $2}')
[ -n "$B" ] || B=$A

erlc -o "$TMP" bench/bench_anchor.erl bench/bench_pick_anchor.erl || exit 1
epmd -port "$PORT" >/dev/null 2>&1 &
PIDS="$PIDS $!"
sleep 0.3

wait_up() { # NODE
    i=0
    until timeout 10 build/cnode --cookie "$COOKIE" ping "$1" >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -gt 50 ] && { echo "bench: $1 did not start" >&2; return 1; }
        sleep 0.2
    done
}

wait_name() { # NODE NAME: the node is up and NAME is registered there (ping alone can win the race
    # with the -eval that registers it, and the first message would then be lost)
    i=0
    until timeout 10 build/cnode --cookie "$COOKIE" call "$1" erlang whereis "[$2]" 2>/dev/null | grep -q '^<'; do
        i=$((i + 1)); [ $i -gt 50 ] && { echo "bench: $2 on $1 was not registered" >&2; return 1; }
        sleep 0.2
    done
}

# only PART: BENCH_ONLY (a comma list of calls, pg, tls, pgscale, pick; all by default) names PART
only() { case ",${BENCH_ONLY:-calls,pg,tls,pgscale,pick}," in *,"$1",*) return 0 ;; esac; return 1; }
# get KEY < output: the value on the line "KEY value"
get() { awk -v k="$1" '$1 == k {print $2; exit}'; }
# emit FIGURE PLACEMENT REP C ANCHOR UNIT GOAL ANCHOR_NAME
emit() {
    echo "$1 $2 $3 c ${4:-nan} $6 $7 $8" >>"$RAW"
    echo "$1 $2 $3 anchor ${5:-nan} $6 $7 $8" >>"$RAW"
}
# a BEAM client node pinned to CPU A: beam NAME FUNCTION ARGS...
beam() {
    name=$1 fun=$2
    shift 2
    taskset -c "$A" timeout 300 erl -sname "$name" -setcookie "$COOKIE" -noshell -noinput -pa "$TMP" \
        -run bench_anchor "$fun" "$@" 2>>"$TMP/client.log"
}
# the same on inet_tls with the optfile $TD/optfile (the tls part makes it)
beam_tls() {
    name=$1 fun=$2
    shift 2
    taskset -c "$A" timeout 300 erl -sname "$name" -setcookie "$COOKIE" -proto_dist inet_tls \
        -ssl_dist_optfile "$TD/optfile" -noshell -noinput -pa "$TMP" -run bench_anchor "$fun" "$@" 2>>"$TMP/client.log"
}
# pv PROG EVENT [SCALE]: a perf stat -x, count per call (times SCALE)
pv() { awk -F, -v e="$2" -v n="$N" -v s="${3:-1}" '$3 == e {printf "%.3f", $1 / n * s}' "$TMP/perf_$1" 2>/dev/null; }
c_prog() { # PROGRAM ARGS...: a C client pinned to CPU A
    prog=$1
    shift
    taskset -c "$A" timeout 300 "build/bench/$prog" --cookie "$COOKIE" "$@" 2>>"$TMP/client.log"
}

echo "bench: CPUs $CPUS (A=$A, B=$B), $REPS repetitions, epmd port $PORT" >&2

for placement in 1cpu 2cpu; do
    if [ $placement = 1cpu ]; then SCPU=$A N=$N1; else SCPU=$B N=$N2; fi
    if only calls; then
        SRV=bsrv_${placement}_$$
        CSRV=csrv_${placement}_$$
        taskset -c "$SCPU" erl -sname "$SRV" -setcookie "$COOKIE" -noshell -noinput -pa "$TMP" \
            -eval 'bench_anchor:server()' >/dev/null 2>&1 &
        SPID=$!
        PIDS="$PIDS $SPID"
        taskset -c "$SCPU" build/cnode --sname "$CSRV" --cookie "$COOKIE" serve >/dev/null 2>>"$TMP/server.log" &
        CPID=$!
        PIDS="$PIDS $CPID"
        # the floor of serving an erpc call: the leanest server BEAM can call (bench_floor_srv)
        FSRV=fsrv_${placement}_$$
        taskset -c "$SCPU" build/bench/bench_floor_srv --sname "$FSRV" --cookie "$COOKIE" >/dev/null 2>>"$TMP/server.log" &
        FPID=$!
        PIDS="$PIDS $FPID"
        wait_name "$SRV@$HOST" bench_echo || exit 1
        wait_up "$CSRV@$HOST" || exit 1
        wait_up "$FSRV@$HOST" || exit 1
        S=$SRV@$HOST
        CS=$CSRV@$HOST
        FS=$FSRV@$HOST
        for rep in $(seq 1 "$REPS"); do
            t=${placement}_$$_$rep
            # issue 3: message round trip to a registered echo process
            c=$(c_prog bench_rt --sname "brt_$t" --peer "$S" --n "$N" --warmup "$WARM" | get rt_us)
            cp=$(c_prog bench_rt --poll --sname "brp_$t" --peer "$S" --n "$N" --warmup "$WARM" | get rt_us)
            a=$(beam "bbrt_$t" client_rt "$S" "$N" "$WARM" | get rt_us)
            emit roundtrip $placement "$rep" "$c" "$a" us_per_rt le0.7@1cpu,le1.0@2cpu beam_message_rt
            emit roundtrip_poll $placement "$rep" "$cp" "$a" us_per_rt le0.7@1cpu,le1.0@2cpu beam_message_rt
            # the floor of that round trip from any client (bench_floor --mode rt: one write of the
            # pre-encoded REG_SEND, one read of the echo), against BEAM, and bench_rt above it
            rf=$(c_prog bench_floor --mode rt --sname "bfr_$t" --peer "$S" --n "$N" --warmup "$WARM" | get rt_us)
            emit roundtrip_floor $placement "$rep" "$rf" "$a" us_per_rt - beam_message_rt
            emit roundtrip_vs_floor $placement "$rep" "$c" "$rf" us_per_rt - message_rt_floor_client
            # issue 4: sequential calls erlang:abs(-1): cnode_call, stock ei_rpc, BEAM erpc:call
            cc=$(c_prog bench_call --sname "bcl_$t" --peer "$S" --n "$N" --warmup "$WARM" | get call_us)
            ce=$(c_prog bench_ei --sname "bei_$t" --peer "$S" --n "$N" --warmup "$WARM" | get call_us)
            ca=$(beam "bbcl_$t" client_call "$S" erlang abs '[-1]' "$N" "$WARM" | get call_us)
            emit call_latency $placement "$rep" "$cc" "$ca" us_per_call le0.55@1cpu beam_erpc_call
            emit call_latency_vs_ei $placement "$rep" "$cc" "$ce" us_per_call - stock_ei_rpc
            emit ei_rpc_latency $placement "$rep" "$ce" "$ca" us_per_call - beam_erpc_call
            # the floor of an erpc call from any client (bench_floor: one write, one wake, one read;
            # no threads, locks or decoding), against BEAM, against ei_rpc, and cnode_call above it
            cf=$(c_prog bench_floor --sname "bfl_$t" --peer "$S" --n "$N" --warmup "$WARM" | get call_us)
            emit call_floor_latency $placement "$rep" "$cf" "$ca" us_per_call - beam_erpc_call
            emit call_floor_vs_ei $placement "$rep" "$cf" "$ce" us_per_call - stock_ei_rpc
            emit call_latency_vs_floor $placement "$rep" "$cc" "$cf" us_per_call - erpc_floor_client
            # issue 5: a BEAM client calling cnode_demo:echo/1 on `cnode serve`, vs the same on a BEAM node
            sc=$(beam "bbsc_$t" client_call "$CS" cnode_demo echo '[ping]' "$N" "$WARM" | get call_us)
            sa=$(beam "bbsa_$t" client_call "$S" bench_anchor echo '[ping]' "$N" "$WARM" | get call_us)
            emit served_latency $placement "$rep" "$sc" "$sa" us_per_call le0.8@1cpu beam_erpc_to_beam_echo
            # the same BEAM client against the served floor (one thread, one read and one write per
            # wake, reply frames copied from the request), against BEAM, and `cnode serve` above it
            sf=$(beam "bbsf_$t" client_call "$FS" cnode_demo echo '[ping]' "$N" "$WARM" | get call_us)
            emit served_floor_latency $placement "$rep" "$sf" "$sa" us_per_call - beam_erpc_to_beam_echo
            emit served_latency_vs_floor $placement "$rep" "$sc" "$sf" us_per_call - erpc_floor_server
            echo "bench: $placement rep $rep: rt C $c / poll $cp / BEAM $a us; call C $cc / ei $ce / BEAM $ca us;" \
                "served C $sc / BEAM $sa / floor $sf us; erpc floor $cf us; rt floor $rf us" >&2
            if [ $placement = 1cpu ] && [ "${BENCH_PERF:-1}" = 1 ] && command -v perf >/dev/null 2>&1; then
                # evidence: context switches, system calls and CPU per call of the calling
                # process, cnode_call vs stock ei_rpc (perf stat over N calls, no warm-up)
                for prog in bench_call bench_ei bench_floor; do
                    taskset -c "$A" timeout 120 perf stat -x, -e task-clock,context-switches,raw_syscalls:sys_enter \
                        -o "$TMP/perf_$prog" "build/bench/$prog" --cookie "$COOKIE" --sname "perf_${prog}_$t" \
                        --peer "$S" --n "$N" --warmup 0 >/dev/null 2>>"$TMP/client.log"
                done
                emit call_client_ctxsw $placement "$rep" "$(pv bench_call context-switches)" \
                    "$(pv bench_ei context-switches)" per_call - stock_ei_rpc_client
                emit call_client_syscalls $placement "$rep" "$(pv bench_call raw_syscalls:sys_enter)" \
                    "$(pv bench_ei raw_syscalls:sys_enter)" per_call - stock_ei_rpc_client
                emit call_client_cpu $placement "$rep" "$(pv bench_call task-clock 1000)" \
                    "$(pv bench_ei task-clock 1000)" client_cpu_us_per_call - stock_ei_rpc_client
                emit call_floor_client_cpu $placement "$rep" "$(pv bench_floor task-clock 1000)" \
                    "$(pv bench_ei task-clock 1000)" client_cpu_us_per_call - stock_ei_rpc_client
                emit call_floor_client_syscalls $placement "$rep" "$(pv bench_floor raw_syscalls:sys_enter)" \
                    "$(pv bench_ei raw_syscalls:sys_enter)" per_call - stock_ei_rpc_client
            fi
            if [ $placement = 1cpu ]; then
                # 64 in flight with client and server on one CPU, where the client's own cost shows
                c_prog bench_call --sname "bct1_$t" --peer "$S" --mode tput --secs "$SECS" --windows 64 \
                    --threads "" --server-pid "$SPID" >"$TMP/ct1.out"
                beam "bbct1_$t" client_tput "$S" erlang abs '[-1]' 64 "$SECS" "$SPID" "$HZ" >"$TMP/bt1.out"
                emit call_throughput_64 $placement "$rep" "$(get tput_async_64 <"$TMP/ct1.out")" \
                    "$(get tput_64 <"$TMP/bt1.out")" calls_per_s ge1.6@1cpu,ge1.0@2cpu beam_erpc_64_procs
                emit call_srvcpu_64 $placement "$rep" "$(get srvcpu_async_64 <"$TMP/ct1.out")" \
                    "$(get srvcpu_64 <"$TMP/bt1.out")" server_cpu_us_per_call - beam_erpc_64_procs
                # its floor: 64 spawn requests in flight from one thread, refilled with one write,
                # replies taken with big reads, nothing else (bench_floor --mode tput)
                c_prog bench_floor --mode tput --sname "bft1_$t" --peer "$S" --secs "$SECS" --windows 64 \
                    --server-pid "$SPID" >"$TMP/ft1.out"
                emit call_floor_throughput_64 $placement "$rep" "$(get tput_async_64 <"$TMP/ft1.out")" \
                    "$(get tput_64 <"$TMP/bt1.out")" calls_per_s - beam_erpc_64_procs
                emit call_floor_srvcpu_64 $placement "$rep" "$(get srvcpu_async_64 <"$TMP/ft1.out")" \
                    "$(get srvcpu_64 <"$TMP/bt1.out")" server_cpu_us_per_call - beam_erpc_64_procs
                echo "bench: 1cpu rep $rep: 64 in flight C $(get tput_async_64 <"$TMP/ct1.out")" \
                    "floor $(get tput_async_64 <"$TMP/ft1.out") BEAM $(get tput_64 <"$TMP/bt1.out") calls/s" >&2
            fi
            if [ $placement = 2cpu ]; then
                # throughput, closed loops of SECS s each after 0.5 s warm-up; server on B, client on A
                c_prog bench_call --sname "bct_$t" --peer "$S" --mode tput --secs "$SECS" --windows 1,8,64 \
                    --threads 8 --server-pid "$SPID" >"$TMP/ct.out"
                beam "bbct_$t" client_tput "$S" erlang abs '[-1]' 1,8,64 "$SECS" "$SPID" "$HZ" >"$TMP/bt.out"
                c_prog bench_floor --mode tput --sname "bft_$t" --peer "$S" --secs "$SECS" --windows 64 \
                    --server-pid "$SPID" >"$TMP/ft.out"
                emit call_floor_throughput_64 $placement "$rep" "$(get tput_async_64 <"$TMP/ft.out")" \
                    "$(get tput_64 <"$TMP/bt.out")" calls_per_s - beam_erpc_64_procs
                emit call_floor_srvcpu_64 $placement "$rep" "$(get srvcpu_async_64 <"$TMP/ft.out")" \
                    "$(get srvcpu_64 <"$TMP/bt.out")" server_cpu_us_per_call - beam_erpc_64_procs
                for k in 1 8 64; do
                    g=-
                    [ $k = 64 ] && g=ge1.6@1cpu,ge1.0@2cpu
                    emit call_throughput_$k $placement "$rep" "$(get tput_async_$k <"$TMP/ct.out")" \
                        "$(get tput_$k <"$TMP/bt.out")" calls_per_s $g beam_erpc_${k}_procs
                    emit call_srvcpu_$k $placement "$rep" "$(get srvcpu_async_$k <"$TMP/ct.out")" \
                        "$(get srvcpu_$k <"$TMP/bt.out")" server_cpu_us_per_call - beam_erpc_${k}_procs
                done
                # where the limit is: CPUs busy (1.0 = one whole CPU) in the server and in the client
                emit call_srvutil_64 $placement "$rep" "$(get srvcpu_util_async_64 <"$TMP/ct.out")" \
                    "$(get srvcpu_util_64 <"$TMP/bt.out")" cpus_busy - beam_erpc_64_procs
                emit call_cliutil_64 $placement "$rep" "$(get clicpu_util_async_64 <"$TMP/ct.out")" \
                    "$(get clicpu_util_64 <"$TMP/bt.out")" cpus_busy - beam_erpc_64_procs
                emit call_clicpu_64 $placement "$rep" "$(get clicpu_async_64 <"$TMP/ct.out")" \
                    "$(get clicpu_64 <"$TMP/bt.out")" client_cpu_us_per_call - beam_erpc_64_procs
                emit call_throughput_8_threads $placement "$rep" "$(get tput_threads_8 <"$TMP/ct.out")" \
                    "$(get tput_8 <"$TMP/bt.out")" calls_per_s - beam_erpc_8_procs
                emit call_srvcpu_8_threads $placement "$rep" "$(get srvcpu_threads_8 <"$TMP/ct.out")" \
                    "$(get srvcpu_8 <"$TMP/bt.out")" server_cpu_us_per_call - beam_erpc_8_procs
                beam "bbst_$t" client_tput "$CS" cnode_demo echo '[ping]' 64 "$SECS" "$CPID" "$HZ" >"$TMP/sc.out"
                beam "bbsb_$t" client_tput "$S" bench_anchor echo '[ping]' 64 "$SECS" "$SPID" "$HZ" >"$TMP/sb.out"
                emit served_throughput_64 $placement "$rep" "$(get tput_64 <"$TMP/sc.out")" \
                    "$(get tput_64 <"$TMP/sb.out")" calls_per_s ge1.5 beam_echo_64_procs
                emit served_srvcpu_64 $placement "$rep" "$(get srvcpu_64 <"$TMP/sc.out")" \
                    "$(get srvcpu_64 <"$TMP/sb.out")" server_cpu_us_per_call - beam_echo_64_procs
                emit served_srvutil_64 $placement "$rep" "$(get srvcpu_util_64 <"$TMP/sc.out")" \
                    "$(get srvcpu_util_64 <"$TMP/sb.out")" cpus_busy - beam_echo_64_procs
                emit served_cliutil_64 $placement "$rep" "$(get clicpu_util_64 <"$TMP/sc.out")" \
                    "$(get clicpu_util_64 <"$TMP/sb.out")" cpus_busy - beam_echo_64_procs
                beam "bbsft_$t" client_tput "$FS" cnode_demo echo '[ping]' 64 "$SECS" "$FPID" "$HZ" >"$TMP/sf.out"
                emit served_floor_throughput_64 $placement "$rep" "$(get tput_64 <"$TMP/sf.out")" \
                    "$(get tput_64 <"$TMP/sb.out")" calls_per_s - beam_echo_64_procs
                emit served_floor_srvcpu_64 $placement "$rep" "$(get srvcpu_64 <"$TMP/sf.out")" \
                    "$(get srvcpu_64 <"$TMP/sb.out")" server_cpu_us_per_call - beam_echo_64_procs
                echo "bench: 2cpu rep $rep: calls/s C async 1/8/64 $(get tput_async_1 <"$TMP/ct.out")" \
                    "$(get tput_async_8 <"$TMP/ct.out") $(get tput_async_64 <"$TMP/ct.out"), C 8 threads" \
                    "$(get tput_threads_8 <"$TMP/ct.out"); BEAM 1/8/64 $(get tput_1 <"$TMP/bt.out")" \
                    "$(get tput_8 <"$TMP/bt.out") $(get tput_64 <"$TMP/bt.out");" \
                    "floor 64 $(get tput_async_64 <"$TMP/ft.out"); served 64: C" \
                    "$(get tput_64 <"$TMP/sc.out") BEAM $(get tput_64 <"$TMP/sb.out") floor $(get tput_64 <"$TMP/sf.out")" >&2
            fi
        done
        stop_pids "$SPID" "$CPID" "$FPID"
    fi

    if only pg; then
        # issue 6: pg, orchestrated by node A (bench_anchor:pg_orch), per placement. The BEAM
        # nodes of the main session run without scheduler busy-waiting: they share a CPU with
        # the C mirror (and each other), and a spinning scheduler keeps that CPU for a whole
        # kernel time slice (ms), which is what a join latency would then measure. A second,
        # join-only session keeps BEAM's default flags (figures *_default_sbwt).
        if [ $placement = 1cpu ]; then OCPU=$A; MEM=$REPS; else OCPU=$B; MEM=0; fi
        for session in main default_sbwt; do
            if [ $session = main ]; then
                flags=$PG_ERL_FLAGS phases=all sfx=none log=$TMP/pg_$placement.log
            else
                flags= phases=join sfx=_default_sbwt log=$TMP/pg_${placement}_default.log
            fi
            ERL_AFLAGS=$flags taskset -c "$A" timeout 600 erl -sname "pga_${placement}_${session}_$$" -setcookie "$COOKIE" \
                -noshell -noinput -pa "$TMP" -run bench_anchor pg_orch $placement "$A" "$OCPU" "$COOKIE" \
                "$ROOT/build/bench/bench_pg" "$TMP" "$PIDFILE" "$REPS" "$PG_JOINS" "$PG_KILLS" "$HUNG_CAP_MS" "$MEM" \
                $phases $sfx >"$TMP/pg.out" 2>"$log"
            rc=$?
            grep '^RAW ' "$TMP/pg.out" | cut -c5- >>"$RAW"
            grep '^bench: ' "$log" >&2
            [ $rc = 0 ] || { echo "bench: pg $placement $session failed (exit $rc):" >&2; tail -20 "$log" >&2; }
            # shellcheck disable=SC2046
            stop_pids $(cat "$PIDFILE")
            : >"$PIDFILE"
        done
    fi
done

# issue 18: calls over TLS (-proto_dist inet_tls), C -> BEAM against BEAM -> BEAM, both over TLS:
# sequential latency (1cpu, 2cpu) and 64 in flight (1cpu, 2cpu). Certificates made here.
if only tls; then
    TD=$TMP/tls
    mkdir -p "$TD"
    (
        cd "$TD" || exit 1
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca &&
            printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\n' "$HOST" >ext &&
            openssl req -newkey rsa:2048 -nodes -keyout node.key -out node.csr -subj "/CN=$HOST" &&
            openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out node.pem -days 2 -extfile ext
    ) >"$TMP/openssl.log" 2>&1 || { echo "bench: openssl could not make the TLS certificates" >&2; exit 1; }
    o="[{certfile,\"$TD/node.pem\"},{keyfile,\"$TD/node.key\"},{cacertfile,\"$TD/ca.pem\"},{verify,verify_peer}]"
    echo "[{server,[{fail_if_no_peer_cert,true}|$o]},{client,$o}]." >"$TD/optfile"
    TLS_ERL="-proto_dist inet_tls -ssl_dist_optfile $TD/optfile" # the server's (word-split on purpose)
    NT=${BENCH_TLS_N:-$((N1 / 2))}
    for placement in 1cpu 2cpu; do
        if [ $placement = 1cpu ]; then SCPU=$A; else SCPU=$B; fi
        SRV=btls_${placement}_$$
        S=$SRV@$HOST
        # shellcheck disable=SC2086
        taskset -c "$SCPU" erl -sname "$SRV" -setcookie "$COOKIE" $TLS_ERL -noshell -noinput -pa "$TMP" \
            -eval 'bench_anchor:server()' >/dev/null 2>&1 &
        SPID=$!
        PIDS="$PIDS $SPID"
        i=0
        until timeout 10 build/cnode --cookie "$COOKIE" --ssl-dist-optfile "$TD/optfile" ping "$S" >/dev/null 2>&1; do
            i=$((i + 1)); [ $i -gt 50 ] && { echo "bench: $S (TLS) did not start" >&2; exit 1; }
            sleep 0.2
        done
        for rep in $(seq 1 "$REPS"); do
            t=tls_${placement}_$$_$rep
            cc=$(c_prog bench_call --ssl-dist-optfile "$TD/optfile" --sname "btc_$t" --peer "$S" --n "$NT" \
                --warmup "$WARM" | get call_us)
            ca=$(beam_tls "bbtc_$t" client_call "$S" erlang abs '[-1]' "$NT" "$WARM" | get call_us)
            emit tls_call_latency $placement "$rep" "$cc" "$ca" us_per_call - beam_erpc_call_tls
            c_prog bench_call --ssl-dist-optfile "$TD/optfile" --sname "btt_$t" --peer "$S" --mode tput \
                --secs "$SECS" --windows 64 --threads "" --server-pid "$SPID" >"$TMP/tct.out"
            beam_tls "bbtt_$t" client_tput "$S" erlang abs '[-1]' 64 "$SECS" "$SPID" "$HZ" \
                >"$TMP/tbt.out"
            emit tls_call_throughput_64 $placement "$rep" "$(get tput_async_64 <"$TMP/tct.out")" \
                "$(get tput_64 <"$TMP/tbt.out")" calls_per_s - beam_erpc_64_procs_tls
            emit tls_call_srvcpu_64 $placement "$rep" "$(get srvcpu_async_64 <"$TMP/tct.out")" \
                "$(get srvcpu_64 <"$TMP/tbt.out")" server_cpu_us_per_call - beam_erpc_64_procs_tls
            echo "bench: TLS $placement rep $rep: call C $cc / BEAM $ca us; 64 in flight C" \
                "$(get tput_async_64 <"$TMP/tct.out") / BEAM $(get tput_64 <"$TMP/tbt.out") calls/s" >&2
        done
        stop_pids "$SPID"
    done
fi

# issue 16: pg at cluster scale (RSS against a BEAM observer, join burst, join p99 under churn)
if only pgscale; then
    bash bench/pg_scale.sh "$RAW" "$COOKIE" "$TMP" "$PIDFILE" "${BENCH_PGS_REPS:-1}"
    # shellcheck disable=SC2046
    stop_pids $(cat "$PIDFILE")
    : >"$PIDFILE"
fi

# issue 7: nanoseconds per balancer pick (no network). 1cpu: one thread on A;
# 2cpu: two threads sharing one balancer on A and B (a BEAM node with two
# schedulers for the anchor). Each repetition is one bench_pick run and one
# bench_pick_anchor run; the O(n) algorithms are also given per member.
PICK_ALGOS=random,round_robin,least_connections,power_of_two,hash_ring,weighted_round_robin,call_direct
PICK_ALGOS=$PICK_ALGOS,easy_random,easy_round_robin,easy_hash,sticky,least_cpu,custom
PICK_MEMBERS=3,30,300
PICK_PLACEMENTS="1cpu 2cpu"
only pick || PICK_PLACEMENTS=
for placement in $PICK_PLACEMENTS; do
    if [ $placement = 1cpu ]; then CPUSET=$A TH=1; else CPUSET=$A,$B TH=2; fi
    for rep in $(seq 1 "$REPS"); do
        taskset -c "$CPUSET" timeout 600 build/bench/bench_pick --reps 1 --threads $TH --members $PICK_MEMBERS \
            >"$TMP/pick_c.out" 2>>"$TMP/client.log"
        taskset -c "$CPUSET" timeout 600 erl -noshell -noinput -pa "$TMP" -run bench_pick_anchor main \
            $PICK_ALGOS $TH $PICK_MEMBERS "${BENCH_PICK_ANCHOR_N:-20000}" 1 >"$TMP/pick_a.out" 2>>"$TMP/client.log"
        for algo in $(echo $PICK_ALGOS | tr ',' ' '); do
            case $algo in
            hash_ring) goal=cle150@1cpu ;;
            least_connections | least_cpu) goal=- ;;
            *) goal=cle50@1cpu ;;
            esac
            for m in $(echo $PICK_MEMBERS | tr ',' ' '); do
                c=$(awk -v a="$algo" -v m="$m" '$1 == "pick" && $2 == a && $4 == m {print $5; exit}' "$TMP/pick_c.out")
                an=$(awk -v a="$algo" -v m="$m" '$1 == "pick" && $2 == a && $4 == m {print $5; exit}' "$TMP/pick_a.out")
                emit pick_${algo}_$m $placement "$rep" "$c" "$an" ns_per_pick $goal beam_seed_pick
                case $algo in
                least_connections | least_cpu)
                    [ "$m" = 300 ] && emit pick_${algo}_per_member $placement "$rep" \
                        "$(echo "$c" | awk -v m="$m" '{printf "%.2f", $1 / m}')" \
                        "$(echo "$an" | awk -v m="$m" '{printf "%.2f", $1 / m}')" ns_per_member - beam_seed_pick ;;
                esac
            done
        done
        echo "bench: pick $placement rep $rep:" \
            "$(awk '$4 == 3 {printf "%s %s; ", $2, $5}' "$TMP/pick_c.out")(3 members, ns; BEAM:" \
            "$(awk '$4 == 3 {printf "%s %s; ", $2, $5}' "$TMP/pick_a.out"))" >&2
    done
done

# the commit, read without running git
COMMIT=unknown
if [ -f .git/HEAD ]; then
    h=$(cat .git/HEAD)
    case $h in
    ref:*)
        r=${h#ref: }
        if [ -f ".git/$r" ]; then h=$(cat ".git/$r"); else h=$(awk -v r="$r" '$2 == r {print $1}' .git/packed-refs 2>/dev/null); fi ;;
    esac
    [ -n "$h" ] && COMMIT=$(echo "$h" | cut -c1-12)
fi
MACHINE="$(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - STARTED))
cp "$RAW" "$ROOT/bench/raw.txt" 2>/dev/null
escript bench/report.escript "$RAW" "$ROOT/bench/results.json" "$COMMIT" "$MACHINE" "$LOAD" "$ELAPSED" "$REPS"
# the picture and the README's table of the figures just written; a partial run (BENCH_ONLY) would
# leave only its own rows there, so it plots beside results.json instead and leaves both as they are
if [ -n "${BENCH_ONLY:-}" ]; then
    sh bench/plot.sh bench/results.json "$ROOT/build/bench-partial.png"
    echo "bench: partial run (BENCH_ONLY=$BENCH_ONLY): bench/report.png and the README's table left as they were"
else
    sh bench/plot.sh bench/results.json bench/report.png
fi
