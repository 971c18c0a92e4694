%% BEAM side of `make bench`: the servers the C programs and the BEAM clients
%% talk to, the BEAM clients that measure the anchor figures, and the pg
%% orchestrator (node A) with its observer (node B) and member nodes.
%%
%% Every client prints "KEY VALUE" lines that bench/run.sh turns into raw
%% figure lines; the pg orchestrator prints "RAW ..." lines in report format.
-module(bench_anchor).
-export([server/0, echo/1, client_rt/1, client_call/1, client_tput/1]).
-export([pg_orch/1, pg_b/0, pg_member/1, idle/0]).

%% ---- servers ---------------------------------------------------------------------

server() ->
    register(bench_echo, spawn(fun echo_loop/0)),
    receive stop -> ok end.

echo_loop() ->
    receive
        {P, M} when is_pid(P) -> P ! M, echo_loop();
        _ -> echo_loop()
    end.

%% The anchor for cnode_demo:echo/1: the same function, on a BEAM node.
echo(X) -> X.

%% An idle node for the memory anchor: does nothing.
idle() -> receive stop -> ok end.

%% ---- message round trip (issue 3) -------------------------------------------------

%% client_rt([Server, N, Warmup]): microseconds per message round trip to
%% {bench_echo, Server}, printed as "rt_us <float>".
client_rt([ServerA, NA, WA]) ->
    Server = list_to_atom(s(ServerA)),
    N = int(NA),
    W = int(WA),
    pong = net_adm:ping(Server),
    rt_loop(Server, W),
    T0 = erlang:monotonic_time(nanosecond),
    rt_loop(Server, N),
    T1 = erlang:monotonic_time(nanosecond),
    io:format("rt_us ~.3f~n", [(T1 - T0) / N / 1000]),
    halt(0).

rt_loop(_, 0) -> ok;
rt_loop(S, K) ->
    {bench_echo, S} ! {self(), ping},
    receive ping -> ok end,
    rt_loop(S, K - 1).

%% ---- erpc latency and throughput (issues 4 and 5) --------------------------------

%% client_call([Server, Mod, Fun, ArgsText, N, Warmup]): sequential
%% erpc:call(Server, Mod, Fun, Args, 5000); prints "call_us <float>".
client_call([ServerA, MA0, FA0, ArgsA, NA, WA]) ->
    Server = list_to_atom(s(ServerA)),
    MA = list_to_atom(s(MA0)),
    FA = list_to_atom(s(FA0)),
    Args = parse(s(ArgsA)),
    N = int(NA),
    W = int(WA),
    pong = net_adm:ping(Server),
    Expect = erpc:call(Server, MA, FA, Args, 5000),
    call_loop(Server, MA, FA, Args, Expect, W),
    T0 = erlang:monotonic_time(nanosecond),
    call_loop(Server, MA, FA, Args, Expect, N),
    T1 = erlang:monotonic_time(nanosecond),
    io:format("call_us ~.3f~n", [(T1 - T0) / N / 1000]),
    halt(0).

call_loop(_, _, _, _, _, 0) -> ok;
call_loop(S, M, F, A, Expect, K) ->
    Expect = erpc:call(S, M, F, A, 5000),
    call_loop(S, M, F, A, Expect, K - 1).

%% client_tput([Server, Mod, Fun, ArgsText, "1,8,64", Secs, ServerOsPid, Hz]):
%% closed loop with P client processes (each: erpc:call, then the next),
%% 0.5 s warm-up, then a Secs-second window. For each P prints
%% "tput_P <calls/s>", "srvcpu_P <server CPU us per call>" (utime+stime of
%% the server's OS process over the window, from /proc/PID/stat) and
%% "srvcpu_util_P <CPUs busy>", and the same for this client ("clicpu_").
client_tput([ServerA, MA0, FA0, ArgsA, PsA, SecsA, SPidA, HzA]) ->
    Server = list_to_atom(s(ServerA)),
    MA = list_to_atom(s(MA0)),
    FA = list_to_atom(s(FA0)),
    Args = parse(s(ArgsA)),
    Ps = [list_to_integer(P) || P <- string:lexemes(s(PsA), ",")],
    Secs = list_to_integer(s(SecsA)),
    SPid = s(SPidA),
    Hz = int(HzA),
    pong = net_adm:ping(Server),
    _ = erpc:call(Server, MA, FA, Args, 5000),
    [tput(Server, MA, FA, Args, P, Secs, SPid, Hz) || P <- Ps],
    halt(0).

tput(S, M, F, A, P, Secs, SPid, Hz) ->
    C = counters:new(1, [write_concurrency]),
    Stop = atomics:new(1, []),
    Ws = [spawn_monitor(fun() -> worker(S, M, F, A, C, Stop) end) || _ <- lists:seq(1, P)],
    timer:sleep(500),
    Me = os:getpid(),
    C0 = counters:get(C, 1), U0 = cpu_ticks(SPid), M0 = cpu_ticks(Me), T0 = erlang:monotonic_time(microsecond),
    timer:sleep(round(Secs * 1000)),
    C1 = counters:get(C, 1), U1 = cpu_ticks(SPid), M1 = cpu_ticks(Me), T1 = erlang:monotonic_time(microsecond),
    atomics:put(Stop, 1, 1),
    [receive {'DOWN', R, process, _, _} -> ok after 10000 -> ok end || {_, R} <- Ws],
    Calls = C1 - C0,
    io:format("tput_~b ~.1f~n", [P, Calls / ((T1 - T0) / 1.0e6)]),
    Secs1 = (T1 - T0) / 1.0e6,
    [io:format("~s~b ~.3f~n~sutil_~b ~.3f~n", [K, P, (X1 - X0) * (1.0e6 / Hz) / Calls, K, P, (X1 - X0) / Hz / Secs1])
     || {K, X0, X1} <- [{"srvcpu_", U0, U1}, {"clicpu_", M0, M1}], is_integer(X0), is_integer(X1), Calls > 0],
    ok.

worker(S, M, F, A, C, Stop) ->
    case atomics:get(Stop, 1) of
        0 ->
            _ = erpc:call(S, M, F, A, 5000),
            counters:add(C, 1, 1),
            worker(S, M, F, A, C, Stop);
        _ -> ok
    end.

%% utime + stime of an OS process, in clock ticks; undefined if unreadable.
cpu_ticks(OsPid) ->
    case file:read_file("/proc/" ++ OsPid ++ "/stat") of
        {ok, B} ->
            [_, Rest] = string:split(binary_to_list(B), ")", trailing),
            F = string:lexemes(Rest, " "),
            list_to_integer(lists:nth(12, F)) + list_to_integer(lists:nth(13, F));
        _ -> undefined
    end.

%% ---- pg (issue 6) -------------------------------------------------------------------
%% Node A (this orchestrator) starts B (a BEAM observer) and the C mirror
%% (build/bench/bench_pg), both pinned to ObsCpu, and member nodes pinned to
%% JoinCpu, all with os:cmd in the background; every OS pid goes to PidFile
%% (bench/run.sh kills whatever is left) and is stopped here by pid.
%% Time stamps compared across nodes are CLOCK_REALTIME of this one host
%% (os:system_time/1 here and on B; clock_gettime(CLOCK_REALTIME) in C;
%% bash's $EPOCHREALTIME, taken just before kill(2), for kills).

-record(cfg, {pl, jcpu, ocpu, cookie, benchpg, tmp, pidfile, reps, joins, kills, cap_ms, mem_reps, host,
              suffix = "", b, c, cpid, bpid}).

%% Phases: "all" (join, kill, hung, memory) or "join"; Suffix is appended to
%% the join figures' names (a second session with other BEAM flags).
pg_orch([Pl, JCpu, OCpu, Cookie, BenchPg, Tmp, PidFile, Reps, Joins, Kills, CapMs, MemReps, Phases, Suffix]) ->
    register(pg_orch, self()),
    {ok, _} = pg:start(bench_scope),
    [_, Host] = string:split(atom_to_list(node()), "@"),
    Cfg0 = #cfg{pl = s(Pl), jcpu = s(JCpu), ocpu = s(OCpu), cookie = s(Cookie), benchpg = s(BenchPg), tmp = s(Tmp),
                pidfile = s(PidFile), reps = int(Reps), joins = int(Joins), kills = int(Kills), cap_ms = int(CapMs),
                mem_reps = int(MemReps), host = Host, suffix = case s(Suffix) of "none" -> ""; X -> X end},
    P = Cfg0#cfg.pl,
    B = list_to_atom("pgb_" ++ P ++ "_" ++ os:getpid() ++ "@" ++ Host),
    BPid = start_erl(Cfg0, Cfg0#cfg.ocpu, B, "bench_anchor:pg_b()"),
    wait_ping(B, 100),
    watch_b(B, 40),
    CName = "pgc_" ++ P ++ "_" ++ os:getpid(),
    {CNode, CPid} = start_c(Cfg0, CName, [atom_to_list(node()), atom_to_list(B)], true),
    Cfg = Cfg0#cfg{b = B, c = CNode, cpid = CPid, bpid = BPid},
    log("pg ~s: A ~s, B ~s, C ~s", [P, node(), B, CNode]),
    join_phase(Cfg),
    case s(Phases) of
        "all" ->
            Tally1 = kill_phase(Cfg, #{}),
            _ = hung_phase(Cfg, Tally1),
            stop_pid(CPid), %% before the memory phase: its fresh mirrors would be new nodes for this one
            mem_phase(Cfg);
        _ ->
            stop_pid(CPid)
    end,
    stop_pid(BPid),
    io:format("DONE~n"),
    halt(0).

%% pg_b registers itself only once its node is up: ask until it answers.
watch_b(_, 0) -> exit(b_not_watching);
watch_b(B, K) ->
    {pg_b, B} ! {watch, self()},
    receive b_watching -> ok after 500 -> watch_b(B, K - 1) end.

%% (a) pg:join on A, one fresh process at a time; time until B's pg:monitor
%% event and until the C mirror's change callback. Leaves are timed too.
%% Single-process events of group g are stamped and kept by B and by the C
%% mirror (nothing is sent while the measurement runs, so on one CPU neither
%% observer's report delays the other); A paces joins and leaves 2 ms apart
%% and collects the stamps after each repetition.
join_phase(#cfg{reps = Reps, joins = N, pl = Pl, suffix = Sfx} = Cfg) ->
    sync_check(Cfg, 50),
    _ = join_batch(Cfg, 20),
    lists:foreach(
      fun(Rep) ->
              Rs = join_batch(Cfg, N),
              Get = fun(K) -> [V || R <- Rs, {K1, V} <- R, K1 =:= K, is_integer(V)] end,
              [JC, JB, LC, LB] = [Get(K) || K <- [jc, jb, lc, lb]],
              Miss = N - lists:min([length(L) || L <- [JC, JB, LC, LB]]),
              Miss > 0 andalso log("pg ~s rep ~b: ~b events missing", [Pl, Rep, Miss]),
              raw("pg_join_p50" ++ Sfx, Pl, Rep, pct(JC, 50), pct(JB, 50), "us", "-", "beam_pg_monitor_on_B"),
              raw("pg_join_p99" ++ Sfx, Pl, Rep, pct(JC, 99), pct(JB, 99), "us", if Sfx =:= "" -> "le1.0"; true -> "-" end,
                  "beam_pg_monitor_on_B"),
              raw("pg_leave_p50" ++ Sfx, Pl, Rep, pct(LC, 50), pct(LB, 50), "us", "-", "beam_pg_monitor_on_B"),
              raw("pg_leave_p99" ++ Sfx, Pl, Rep, pct(LC, 99), pct(LB, 99), "us", "-", "beam_pg_monitor_on_B"),
              log("pg ~s~s rep ~b: join p50 C ~p B ~p, p99 C ~p B ~p; leave p50 C ~p B ~p (us)",
                  [Pl, Sfx, Rep, pct(JC, 50), pct(JB, 50), pct(JC, 99), pct(JB, 99), pct(LC, 50), pct(LB, 50)])
      end, lists:seq(1, Reps)).

%% Until both observers have seen a join from A (scopes discovered).
sync_check(_, 0) -> exit(pg_observers_not_in_sync);
sync_check(Cfg, K) ->
    [{P, _, _}] = join_leave(1),
    {Cs, Bs} = collect(Cfg),
    case lists:keymember(P, 2, Cs) andalso lists:keymember(P, 2, Bs) of
        true -> ok;
        false -> timer:sleep(200), sync_check(Cfg, K - 1)
    end.

join_batch(Cfg, N) ->
    _ = collect(Cfg),
    Js = join_leave(N),
    timer:sleep(20),
    {Cs, Bs} = collect(Cfg),
    At = fun(Kind, P, L) -> hd([T || {K, P1, T} <- L, K =:= Kind, P1 =:= P] ++ [undefined]) end,
    [[{jb, sub(At(join, P, Bs), T0)}, {jc, sub(At(join, P, Cs), T0)},
      {lb, sub(At(leave, P, Bs), T1)}, {lc, sub(At(leave, P, Cs), T1)}] || {P, T0, T1} <- Js].

join_leave(N) ->
    [begin
         P = spawn(fun() -> receive stop -> ok end end),
         T0 = os:system_time(microsecond),
         ok = pg:join(bench_scope, g, P),
         timer:sleep(2),
         T1 = os:system_time(microsecond),
         ok = pg:leave(bench_scope, g, P),
         timer:sleep(2),
         P ! stop,
         {P, T0, T1}
     end || _ <- lists:seq(1, N)].

%% The stamps B and the C mirror kept since the last collect: [{Kind, Pid, Us}].
collect(#cfg{b = B, c = CNode}) ->
    Cs = try erpc:call(CNode, bench_pg, stamps, [], 10000) catch _:_ -> [] end,
    {pg_b, B} ! {stamps, self()},
    Bs = receive {b_stamps, L} -> L after 10000 -> [] end,
    {Cs, Bs}.

%% Member nodes come from a pool of ?POOL names that are reused (a node
%% restarted under the same name): the pg mirror of this libcnode version
%% writes through a stale pointer when its table of known nodes grows past 8
%% entries (pg/pg.c `&s->nodes[intern_node(...)]`, intern_node reallocs), and
%% the mirror process dies. Self, A, B and 5 members stay within 8.
-define(POOL, 5).

%% (b) member nodes (10 pids each in group g) killed with kill -9, one at a
%% time; time from just before kill(2) until B's pg and the C mirror drop
%% the node's members. Per repetition Kills kills, in batches of ?POOL.
kill_phase(#cfg{reps = Reps, kills = K, pl = Pl} = Cfg, Tally) ->
    lists:foldl(
      fun(Rep, T0) ->
              {Rs, T2} = kill_batches(Cfg, K, [], T0),
              Cs = [C || {C, _} <- Rs, is_integer(C)], Bs = [B || {_, B} <- Rs, is_integer(B)],
              (length(Cs) < K orelse length(Bs) < K) andalso log("pg ~s kill rep ~b: ~p", [Pl, Rep, Rs]),
              raw("pg_kill_removal_p50", Pl, Rep, pct(Cs, 50), pct(Bs, 50), "us", "-", "beam_pg_drop_on_B"),
              raw("pg_kill_removal_p99", Pl, Rep, pct(Cs, 99), pct(Bs, 99), "us", "le1.0", "beam_pg_drop_on_B"),
              log("pg ~s kill rep ~b: p50 C ~p B ~p, p99 C ~p B ~p us",
                  [Pl, Rep, pct(Cs, 50), pct(Bs, 50), pct(Cs, 99), pct(Bs, 99)]),
              T2
      end, Tally, lists:seq(1, Reps)).

kill_batches(_, 0, Acc, Tally) -> {lists:reverse(Acc), Tally};
kill_batches(Cfg, K, Acc, Tally) ->
    Names = [member_name(Cfg, I) || I <- lists:seq(1, min(K, ?POOL))],
    {Ms, T1} = start_members(Cfg, Names, Tally),
    {Rs, T2} = lists:mapfoldl(fun({M, OsPid}, TA) -> kill_one(Cfg, M, OsPid, TA) end, T1, Ms),
    kill_batches(Cfg, K - length(Names), lists:reverse(Rs, Acc), T2).

kill_one(#cfg{c = CNode}, M, OsPid, Tally) ->
    timer:sleep(50),
    T0 = stamp_kill("-9", OsPid),
    {Tc, Tb, Tally1} = wait_drop(CNode, M, undefined, undefined, Tally, erlang:monotonic_time(millisecond) + 10000),
    wait_gone(OsPid, 50),
    {{sub(Tc, T0), sub(Tb, T0)}, Tally1}.

%% Wait until both sides dropped node M: C by a nodedown (or leave) event
%% for M in group g, B when its tally of M's members reaches 0.
wait_drop(_, _, Tc, Tb, Tally, _) when Tc =/= undefined, Tb =/= undefined -> {Tc, Tb, Tally};
wait_drop(CNode, M, Tc, Tb, Tally, Deadline) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {c_ev, CNode, Kind, g, M, _, T} when Kind =:= nodedown; Kind =:= leave ->
            wait_drop(CNode, M, first(Tc, T), Tb, Tally, Deadline);
        {b_ev, leave, [P | _] = Ps, T} when node(P) =:= M ->
            N = maps:get(M, Tally, 0) - length(Ps),
            Tb1 = if N =< 0 -> first(Tb, T); true -> Tb end,
            wait_drop(CNode, M, Tc, Tb1, Tally#{M => N}, Deadline)
    after Left -> {Tc, Tb, Tally}
    end.

%% (c) Reps member nodes stopped with SIGSTOP (all at once, each its own
%% repetition): time until the C mirror marks the node suspect, and until B's
%% pg drops its members (capped at CapMs).
hung_phase(#cfg{reps = Reps, pl = Pl, cap_ms = Cap, c = CNode} = Cfg, Tally) ->
    Names = [member_name(Cfg, I) || I <- lists:seq(1, min(Reps, ?POOL))],
    {Ms, T1} = start_members(Cfg, Names, Tally),
    Stops = [{M, OsPid, stamp_kill("-STOP", OsPid)} || {M, OsPid} <- Ms],
    Deadline = erlang:monotonic_time(millisecond) + Cap + 500,
    {Got, T2} = hung_wait(CNode, [M || {M, _} <- Ms], #{}, T1, Deadline),
    lists:foldl(
      fun({M, _OsPid, T0}, Rep) ->
              C = sub(maps:get({c, M}, Got, undefined), T0),
              B = sub(maps:get({b, M}, Got, undefined), T0),
              CMs = if is_integer(C) -> C / 1000; true -> nan end,
              BMs = if is_integer(B), B =< Cap * 1000 -> B / 1000; true -> {gt, Cap} end,
              raw("hung_node_exclusion", Pl, Rep, CMs, BMs, "ms", "cle1200", "beam_pg_drop_on_B_cap" ++ integer_to_list(Cap div 1000) ++ "s"),
              log("pg ~s hung ~b: C suspect ~p ms, B ~p", [Pl, Rep, CMs, BMs]),
              Rep + 1
      end, 1, Stops),
    [begin stamp_kill("-CONT", OsPid), stamp_kill("-9", OsPid) end || {_, OsPid, _} <- Stops],
    T3 = lists:foldl(fun({M, OsPid, _}, TA) ->
                             {_, _, TB} = wait_drop(CNode, M, undefined, undefined, TA, erlang:monotonic_time(millisecond) + 5000),
                             wait_gone(OsPid, 50),
                             TB
                     end, T2, Stops),
    T3.

hung_wait(CNode, Ms, Got, Tally, Deadline) ->
    AllC = lists:all(fun(M) -> maps:is_key({c, M}, Got) end, Ms),
    AllB = lists:all(fun(M) -> maps:is_key({b, M}, Got) end, Ms),
    Left = Deadline - erlang:monotonic_time(millisecond),
    if
        AllC andalso AllB; Left =< 0 -> {Got, Tally};
        true ->
            receive
                {c_ev, CNode, suspect, _, M, _, T} ->
                    hung_wait(CNode, Ms, maps:put({c, M}, maps:get({c, M}, Got, T), Got), Tally, Deadline);
                {b_ev, leave, [P | _] = Ps, T} ->
                    M = node(P),
                    N = maps:get(M, Tally, 0) - length(Ps),
                    Got1 = if N =< 0 -> maps:put({b, M}, maps:get({b, M}, Got, T), Got); true -> Got end,
                    hung_wait(CNode, Ms, Got1, Tally#{M => N}, Deadline)
            after Left -> {Got, Tally}
            end
    end.

%% (d) memory: a fresh C mirror while A's scope holds 10,000 members (10
%% groups of 1,000, joined 100 at a time), against a fresh idle BEAM node.
mem_phase(#cfg{mem_reps = 0}) -> ok;
mem_phase(#cfg{mem_reps = Reps, pl = Pl} = Cfg) ->
    lists:foreach(
      fun(Rep) ->
              Idle = list_to_atom("idle_" ++ Pl ++ "_" ++ os:getpid() ++ "_" ++ integer_to_list(Rep) ++ "@" ++ Cfg#cfg.host),
              IdleT0 = erlang:monotonic_time(millisecond),
              IdlePid = start_erl(Cfg, Cfg#cfg.ocpu, Idle, "bench_anchor:idle()"),
              CName = "pgm_" ++ Pl ++ "_" ++ os:getpid() ++ "_" ++ integer_to_list(Rep),
              {CNode, CPid} = start_c(Cfg, CName, [atom_to_list(node())], false),
              timer:sleep(300),
              RssC0 = rss(CPid),
              Procs = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, 10000)],
              join_chunks(Procs, 0),
              Seen = count_joins(CNode, 0, 10000, erlang:monotonic_time(millisecond) + 60000),
              timer:sleep(1000),
              RssC = rss(CPid),
              Wait = 2000 - (erlang:monotonic_time(millisecond) - IdleT0),
              Wait > 0 andalso timer:sleep(Wait),
              RssB = rss(IdlePid),
              Seen < 10000 andalso log("pg mem rep ~b: C mirror saw only ~b joins", [Rep, Seen]),
              V = if Seen >= 10000 -> RssC; true -> nan end,
              raw("rss_10k_members", Pl, Rep, V, RssB, "KiB", "le0.1", "idle_beam_node_rss"),
              raw("rss_cnode_empty", Pl, Rep, RssC0, RssB, "KiB", "-", "idle_beam_node_rss"),
              log("pg mem rep ~b: C mirror ~p KiB (~p KiB before joins), idle BEAM ~p KiB", [Rep, RssC, RssC0, RssB]),
              [exit(P, kill) || P <- Procs],
              stop_pid(CPid),
              stop_pid(IdlePid),
              flush_c(CNode)
      end, lists:seq(1, Reps)).

join_chunks([], _) -> ok;
join_chunks(Ps, I) ->
    {H, T} = lists:split(min(100, length(Ps)), Ps),
    ok = pg:join(bench_scope, {m, I div 10}, H),
    join_chunks(T, I + 1).

count_joins(_, N, Want, _) when N >= Want -> N;
count_joins(CNode, N, Want, Deadline) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {c_ev, CNode, join, _, _, Ps, _} -> count_joins(CNode, N + cnt(Ps), Want, Deadline)
    after Left -> N
    end.

flush_c(CNode) ->
    receive {c_ev, CNode, _, _, _, _, _} -> flush_c(CNode) after 0 -> ok end.

rss(OsPid) ->
    case file:read_file("/proc/" ++ OsPid ++ "/status") of
        {ok, B} ->
            case re:run(B, "VmRSS:\\s+(\\d+)", [{capture, all_but_first, list}]) of
                {match, [V]} -> list_to_integer(V);
                _ -> nan
            end;
        _ -> nan
    end.

%% ---- pg helpers --------------------------------------------------------------------

member_name(#cfg{pl = Pl}, I) ->
    list_to_atom(lists:flatten(io_lib:format("m_~s_~s_~b", [Pl, os:getpid(), I]))).

%% Start member nodes in parallel; wait until each has announced itself and
%% both B and the C mirror list its 10 members.
start_members(#cfg{host = Host, c = CNode, b = B} = Cfg, Names, Tally) ->
    Full = [list_to_atom(atom_to_list(N) ++ "@" ++ Host) || N <- Names],
    Eval = fun(_) -> lists:flatten(io_lib:format("bench_anchor:pg_member(['~s','~s','~s'])", [node(), B, CNode])) end,
    _ = [start_erl(Cfg, Cfg#cfg.jcpu, M, Eval(M)) || M <- Full],
    Ups = [receive {member_up, M, OsPid} -> {M, OsPid} after 30000 -> exit({member_not_up, M}) end || M <- Full],
    T1 = wait_members(CNode, Full, Tally, #{}, erlang:monotonic_time(millisecond) + 20000),
    {Ups, T1}.

wait_members(CNode, Ms, Tally, CT, Deadline) ->
    Done = lists:all(fun(M) -> maps:get(M, Tally, 0) >= 10 andalso maps:get(M, CT, 0) >= 10 end, Ms),
    Left = Deadline - erlang:monotonic_time(millisecond),
    if
        Done -> Tally;
        Left =< 0 -> log("pg: members not all seen: B ~p C ~p", [Tally, CT]), Tally;
        true ->
            receive
                {b_ev, join, [P | _] = Ps, _} ->
                    wait_members(CNode, Ms, maps:update_with(node(P), fun(V) -> V + length(Ps) end, length(Ps), Tally), CT, Deadline);
                {c_ev, CNode, join, g, M, Ps, _} ->
                    wait_members(CNode, Ms, Tally, maps:update_with(M, fun(V) -> V + cnt(Ps) end, cnt(Ps), CT), Deadline)
            after Left -> wait_members(CNode, Ms, Tally, CT, Deadline)
            end
    end.

%% A member node: joins 10 fresh processes to g, announces itself to A.
pg_member([A, B, C]) ->
    {ok, _} = pg:start(bench_scope),
    [net_adm:ping(N) || N <- [A, B, C]],
    Ps = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, 10)],
    ok = pg:join(bench_scope, g, Ps),
    {pg_orch, A} ! {member_up, node(), os:getpid()},
    receive stop -> ok end.

%% Node B: the BEAM observer. Stamps every pg:monitor event of group g and
%% forwards it to the orchestrator (after checking pg's table agrees).
pg_b() ->
    {ok, _} = pg:start(bench_scope),
    register(pg_b, self()),
    receive {watch, Orch} -> ok end,
    {Ref, _} = pg:monitor(bench_scope, g),
    Orch ! b_watching,
    b_loop(Ref, Orch, []).

%% Single-process events are kept (see join_phase), the rest forwarded at once.
b_loop(Ref, Orch, Buf) ->
    receive
        {Ref, Kind, g, Pids} ->
            T = os:system_time(microsecond),
            Members = pg:get_members(bench_scope, g),
            Ok = case Kind of
                     join -> lists:all(fun(P) -> lists:member(P, Members) end, Pids);
                     leave -> true
                 end,
            Ok orelse io:format(standard_error, "pg_b: event before table~n", []),
            case Pids of
                [P] -> b_loop(Ref, Orch, [{Kind, P, T} | Buf]);
                _ -> Orch ! {b_ev, Kind, Pids, T}, b_loop(Ref, Orch, Buf)
            end;
        {stamps, From} ->
            From ! {b_stamps, lists:reverse(Buf)},
            b_loop(Ref, Orch, []);
        stop -> ok;
        _ -> b_loop(Ref, Orch, Buf)
    end.

start_c(#cfg{benchpg = Prog, cookie = Cookie, pidfile = PF, ocpu = Cpu}, Name, Connect, Stamps) ->
    Cmd = lists:flatten(["taskset -c ", Cpu, " ", Prog, " --sname ", Name, " --cookie ", Cookie,
                         [" --stamps 1" || Stamps],
                         [[" --connect ", N] || N <- Connect], " --report ", atom_to_list(node()),
                         " >/dev/null 2>>", PF, ".log & echo $!"]),
    OsPid = string:trim(os:cmd(Cmd)),
    ok = file:write_file(PF, [OsPid, "\n"], [append]),
    receive {c_hello, CNode, _} -> {CNode, OsPid}
    after 20000 -> exit({c_not_up, Name})
    end.

start_erl(#cfg{cookie = Cookie, tmp = Tmp, pidfile = PF}, Cpu, Node, Eval) ->
    [Name, _] = string:split(atom_to_list(Node), "@"),
    Cmd = lists:flatten(["taskset -c ", Cpu, " erl -sname ", Name, " -setcookie ", Cookie,
                         " -noshell -noinput -pa ", Tmp, " -eval \"", Eval, "\" >/dev/null 2>>", PF, ".log & echo $!"]),
    OsPid = string:trim(os:cmd(Cmd)),
    ok = file:write_file(PF, [OsPid, "\n"], [append]),
    OsPid.

stop_pid(OsPid) ->
    _ = os:cmd("kill -TERM " ++ OsPid ++ " 2>/dev/null"),
    wait_gone(OsPid, 50),
    _ = os:cmd("kill -KILL " ++ OsPid ++ " 2>/dev/null"),
    ok.

wait_gone(_, 0) -> ok;
wait_gone(OsPid, K) ->
    case filelib:is_file("/proc/" ++ OsPid) of
        true -> timer:sleep(100), wait_gone(OsPid, K - 1);
        false -> ok
    end.

%% Send a signal; returns bash's $EPOCHREALTIME taken just before kill(2), in us.
stamp_kill(Sig, OsPid) ->
    Out = os:cmd("LC_ALL=C bash -c 't=$EPOCHREALTIME; kill " ++ Sig ++ " " ++ OsPid ++ "; echo $t'"),
    case string:split(string:trim(Out), ".") of
        [S, U] -> list_to_integer(S) * 1000000 + list_to_integer(string:slice(U ++ "000000", 0, 6));
        _ -> undefined
    end.

wait_ping(N, 0) -> exit({no_pong, N});
wait_ping(N, K) ->
    case net_adm:ping(N) of
        pong -> ok;
        pang -> timer:sleep(200), wait_ping(N, K - 1)
    end.

%% ---- small helpers -------------------------------------------------------------------

raw(Fig, Pl, Rep, C, A, Unit, Goal, AName) ->
    io:format("RAW ~s ~s ~b c ~s ~s ~s ~s~n", [Fig, Pl, Rep, num(C), Unit, Goal, AName]),
    io:format("RAW ~s ~s ~b anchor ~s ~s ~s ~s~n", [Fig, Pl, Rep, num(A), Unit, Goal, AName]).

num(X) when is_integer(X) -> io_lib:format("~.3f", [float(X)]);
num(X) when is_float(X) -> io_lib:format("~.3f", [X]);
num({gt, Cap}) -> io_lib:format(">~.3f", [float(Cap)]);
num(_) -> "nan".

%% Nearest-rank percentile of a list of integers; nan when empty.
pct([], _) -> nan;
pct(L, P) ->
    S = lists:sort(L),
    N = length(S),
    lists:nth(max(1, min(N, ceil(P * N / 100))), S).

sub(T, T0) when is_integer(T), is_integer(T0) -> T - T0;
sub(_, _) -> undefined.

first(undefined, T) -> T;
first(T, _) -> T.

cnt(Ps) when is_list(Ps) -> length(Ps);
cnt(N) when is_integer(N) -> N.

int(A) when is_atom(A) -> list_to_integer(atom_to_list(A));
int(L) when is_list(L) -> list_to_integer(L).

s(A) when is_atom(A) -> atom_to_list(A);
s(L) -> L.

parse(Text) ->
    {ok, Toks, _} = erl_scan:string(Text ++ "."),
    {ok, Term} = erl_parse:parse_term(Toks),
    Term.

log(Fmt, Args) -> io:format(standard_error, "bench: " ++ Fmt ++ "~n", Args).
