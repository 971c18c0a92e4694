#!/bin/bash
# issue 16: pg at cluster scale, each figure against a BEAM node observing the same scope.
# Called by run.sh (BENCH_ONLY containing pgscale): pg_scale.sh RAW COOKIE TMP PIDFILE REPS
# Figures (RAW lines as run.sh's emit writes them; placement "2cpu", the machine as it is):
#   pg_rss_empty            VmRSS of a watching `cnode members` with no members vs the observer (KiB; C <= 2560)
#   pg_rss_per_member_10k   RSS growth per member over the empty state at 10,000 members (bytes; <= 0.25x)
#   pg_rss_per_member_100k  the same at 100,000 members (<= 0.25x)
#   pg_rss_100k             whole RSS at 100,000 members (KiB; <= 0.15x)
#   pg_join_burst_1000      pg:join of 1,000 pids on one node until the mirror holds them all (ms), vs the observer
#   pg_join_p99_churn       join p99 (ms) of single joins on one node while every node churns, vs the observer
# Members are spread over BENCH_PGS_GROUPS groups on BENCH_PGS_NODES BEAM nodes (defaults 1000, 20).
set -u
RAW=$1 COOKIE=$2 TMP=$3 PIDFILE=$4 REPS=$5
NODES=${BENCH_PGS_NODES:-20}
GROUPS_N=${BENCH_PGS_GROUPS:-1000}
PROBES=${BENCH_PGS_PROBES:-200}
HOST=$(hostname -s)
SC=pgsb
emit() { # FIGURE REP C ANCHOR UNIT GOAL ANCHOR_NAME
    echo "$1 2cpu $2 c ${3:-nan} $5 $6 $7" >>"$RAW"
    echo "$1 2cpu $2 anchor ${4:-nan} $5 $6 $7" >>"$RAW"
}
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null; }
on() { timeout 120 erl_call -sname "$1" -c "$COOKIE" -e <<<"$2"; }
start_beam() { # NAME: a BEAM node in scope $SC, connected to the first one
    erl -sname "$1" -setcookie "$COOKIE" -noshell -noinput >/dev/null 2>&1 &
    echo $! >>"$PIDFILE"
    for _ in $(seq 1 100); do
        erl_call -sname "$1" -c "$COOKIE" -a 'erlang node []' >/dev/null 2>&1 && break
        sleep 0.2
    done
    on "$1" "{ok, _} = pg:start($SC), net_kernel:connect_node('${first}@$HOST'), ok." >/dev/null
}
# join_members NODE COUNT: COUNT processes of NODE joined over the groups, a list per group
join_members() {
    on "$1" "Gs = [list_to_atom(\"g\" ++ integer_to_list(I)) || I <- lists:seq(1, $GROUPS_N)], N = $2,
      lists:foreach(fun({I, G}) -> K = N div length(Gs) + (case I =< N rem length(Gs) of true -> 1; false -> 0 end),
          Ps = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, K)],
          K > 0 andalso pg:join($SC, G, Ps) end, lists:zip(lists:seq(1, length(Gs)), Gs)), ok." >/dev/null
}
total_on() { on "$1" "lists:sum([length(pg:get_members($SC, G)) || G <- pg:which_groups($SC)])." | sed 's/^{ok, *\(.*\)}$/\1/'; }
iso_ms() { # 2026-12-01T10:00:00.123Z -> ms since the epoch
    python3 -c 'import sys, datetime; print(int(datetime.datetime.strptime(sys.argv[1], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp() * 1000))' "$1"
}

for rep in $(seq 1 "$REPS"); do
    first=pgsb${rep}_1_$$
    names=()
    for i in $(seq 1 "$NODES"); do names+=("pgsb${rep}_${i}_$$"); done
    for n in "${names[@]}"; do start_beam "$n"; done
    obs=pgsb${rep}_obs_$$
    start_beam "$obs"
    obs_pid=$(tail -n 1 "$PIDFILE")
    build/cnode --cookie "$COOKIE" members --watch --connect "$first@$HOST" --scope $SC >"$TMP/pgs_watch" 2>&1 &
    watch_pid=$!
    echo $watch_pid >>"$PIDFILE"
    for _ in $(seq 1 100); do grep -q ' listed ' "$TMP/pgs_watch" && break; sleep 0.2; done
    sleep 2
    c0=$(rss $watch_pid) b0=$(rss $obs_pid)
    emit pg_rss_empty "$rep" "$c0" "$b0" KiB cle2560 beam_observer_rss
    # 10,000 members, then 100,000 (the rest), RSS after each once the observer and the mirror hold them all
    for step in 10000 100000; do
        have=$(total_on "$obs")
        add=$((step - have))
        per=$((add / NODES))
        for n in "${names[@]}"; do join_members "$n" "$per"; done
        want=$((have + per * NODES))
        for _ in $(seq 1 300); do [ "$(total_on "$obs")" = "$want" ] && break; sleep 0.2; done
        for _ in $(seq 1 300); do
            [ "$(awk 'NF == 6 && $2 == "join"' "$TMP/pgs_watch" | wc -l)" -ge "$want" ] && break
            sleep 0.2
        done
        sleep 2
        c1=$(rss $watch_pid) b1=$(rss $obs_pid)
        k=$((step / 1000))k
        emit "pg_rss_per_member_$k" "$rep" "$(awk -v a="$c0" -v b="$c1" -v n="$want" 'BEGIN {printf "%.1f", (b - a) * 1024 / n}')" \
            "$(awk -v a="$b0" -v b="$b1" -v n="$want" 'BEGIN {printf "%.1f", (b - a) * 1024 / n}')" bytes le0.25 beam_observer_rss
    done
    emit pg_rss_100k "$rep" "$c1" "$b1" KiB le0.15 beam_observer_rss
    # a burst of 1,000 joins on one node: until the observer's pg, and the watching mirror, hold them all
    on "$obs" "Self = self(), spawn(fun() -> {_, []} = pg:monitor($SC, burst),
        (fun L(N) when N >= 1000 -> persistent_term:put(burst_done, os:system_time(millisecond));
             L(N) -> receive {_, join, burst, Ps} -> L(N + length(Ps)) end end)(0) end), ok." >/dev/null
    sleep 0.5
    t0=$(on "${names[0]}" "Ps = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, 1000)],
        T0 = os:system_time(millisecond), ok = pg:join($SC, burst, Ps), T0." | sed 's/^{ok, *\(.*\)}$/\1/')
    for _ in $(seq 1 300); do
        [ "$(awk 'NF == 6 && $2 == "join" && $4 == "burst"' "$TMP/pgs_watch" | wc -l)" -ge 1000 ] && break
        sleep 0.1
    done
    tc=$(iso_ms "$(awk 'NF == 6 && $2 == "join" && $4 == "burst" {t = $1} END {print t}' "$TMP/pgs_watch")")
    tb=$(on "$obs" "persistent_term:get(burst_done, undefined)." | sed 's/^{ok, *\(.*\)}$/\1/')
    emit pg_join_burst_1000 "$rep" $((tc - t0)) $((tb - t0)) ms le1.0 beam_observer_pg
    # join p99 under churn: every node joins, leaves and exits members of its groups at a bounded rate
    for n in "${names[@]}"; do
        on "$n" "spawn(fun() -> Gs = [list_to_atom(\"g\" ++ integer_to_list(I)) || I <- lists:seq(1, $GROUPS_N)],
            (fun L() -> G = lists:nth(rand:uniform(length(Gs)), Gs),
                P = spawn(fun() -> receive stop -> ok end end), pg:join($SC, G, P),
                timer:sleep(20), pg:leave($SC, G, P), P ! stop, L() end)() end), ok." >/dev/null
    done
    on "$obs" "P = spawn(fun() -> {_, _} = pg:monitor($SC, probe),
        (fun L(Acc) -> receive {_, join, probe, [Pid]} -> L([{Pid, os:system_time(microsecond)} | Acc]);
             {get, To} -> To ! {probes, Acc}, L(Acc); _ -> L(Acc) end end)([]) end),
        register(probe_obs, P), ok." >/dev/null
    on "${names[0]}" "Ps = [begin P = spawn(fun() -> receive stop -> ok end end), T = os:system_time(microsecond),
        pg:join($SC, probe, P), timer:sleep(50), {P, T} end || _ <- lists:seq(1, $PROBES)],
        file:write_file(\"$TMP/pgs_probe_t0\", [io_lib:format(\"~s ~b~n\", [erlang:pid_to_list(P), T]) || {P, T} <- Ps]), ok." >/dev/null
    sleep 2
    # the C side: watch lines of group probe; BEAM side: the observer's monitor times (joined on the pid's numbers)
    on "$obs" "probe_obs ! {get, self()}, receive {probes, Acc} -> file:write_file(\"$TMP/pgs_probe_b\",
        [io_lib:format(\"~s ~b~n\", [erlang:pid_to_list(P), T]) || {P, T} <- Acc]) after 5000 -> ok end, ok." >/dev/null
    python3 - "$TMP/pgs_watch" "$TMP/pgs_probe_t0" "$TMP/pgs_probe_b" >"$TMP/pgs_p99" <<'EOF'
import sys, datetime
def key(pid_text):  # <X.Num.Serial> -> (Num, Serial)
    f = pid_text.strip('<>').split('.')
    return f[-2], f[-1]
t0 = {key(l.split()[0]): int(l.split()[1]) for l in open(sys.argv[2]) if l.strip()}
b = {key(l.split()[0]): int(l.split()[1]) for l in open(sys.argv[3]) if l.strip()}
c = {}
for l in open(sys.argv[1]):
    f = l.split()
    if len(f) == 6 and f[1] == 'join' and f[3] == 'probe':
        t = datetime.datetime.strptime(f[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
        c.setdefault(key(f[5]), t.timestamp() * 1e6)
def p99(d):
    v = sorted((d[k] - t0[k]) / 1000 for k in t0 if k in d)
    return "%.2f" % v[min(len(v) - 1, int(len(v) * 0.99))] if v else "nan"
print(p99(c), p99(b))
EOF
    read -r pc pb <"$TMP/pgs_p99"
    emit pg_join_p99_churn "$rep" "$pc" "$pb" ms le1.0 beam_observer_pg
    echo "bench: pg scale rep $rep: empty $c0 vs $b0 KiB; 100k $c1 vs $b1 KiB; burst $((tc - t0)) vs $((tb - t0)) ms; join p99 under churn $pc vs $pb ms" >&2
    # shellcheck disable=SC2046
    for p in $(cat "$PIDFILE"); do kill -TERM "$p" 2>/dev/null; done
    sleep 1
    for p in $(cat "$PIDFILE"); do kill -KILL "$p" 2>/dev/null; done
    : >"$PIDFILE"
done
