%%% pg, seen from the BEAM side: the C node (erlang_test_harness/c_src/
%%% cnode_pgnode.c) is a peer of OTP's pg scopes on real BEAM nodes. Its
%%% mirror is compared with pg:get_members/2 on every node; its members must
%%% show up in every node's pg.
-module(pg_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-export([all/0, init_per_suite/1, end_per_suite/1, init_per_testcase/2, end_per_testcase/2]).
-export([mirror_beam_joins/1, c_join_visible/1, kill9_removal/1, late_joiner_discovered/1,
         erl_call_with_serve/1, two_c_nodes_through_beam/1, two_scopes_and_double_join/1,
         many_members/1, reconnect_resync/1, suspect_on_sigstop/1, no_false_suspect/1,
         bad_input/1, serve_member_and_stop/1, cli_members_and_watch/1]).

-define(H, cnode_harness).
-define(S, pgs1).

all() ->
    [mirror_beam_joins, c_join_visible, kill9_removal, late_joiner_discovered,
     erl_call_with_serve, two_c_nodes_through_beam, two_scopes_and_double_join, many_members,
     reconnect_resync, suspect_on_sigstop, no_false_suspect, bad_input, serve_member_and_stop,
     cli_members_and_watch].

init_per_suite(Config) -> ?H:init_per_suite(?MODULE, Config).
end_per_suite(Config) -> ?H:end_per_suite(Config).
init_per_testcase(TC, Config) -> ?H:init_per_testcase(TC, Config).
end_per_testcase(TC, Config) -> ?H:end_per_testcase(TC, Config).

%%% ---- helpers (run on the driver) --------------------------------------

%% N BEAM nodes, all running scope ?S (and any extra scopes), meshed.
beams(N) -> beams(N, [?S]).
beams(N, Scopes) ->
    Hs = [?H:start_peer(?H:unique("pg")) || _ <- lists:seq(1, N)],
    Nodes = [Node || #{node := Node} <- Hs],
    [begin
         [{ok, _} = erpc:call(Node, pg, start, [Sc]) || Sc <- Scopes],
         [true = erpc:call(Node, net_kernel, connect_node, [Other]) || Other <- Nodes, Other =/= Node]
     end || Node <- Nodes],
    {Hs, Nodes}.

%% A process on Node joined to Group of Scope.
member(Node, Group) -> member(Node, ?S, Group).
member(Node, Scope, Group) ->
    P = erpc:call(Node, erlang, spawn, [timer, sleep, [infinity]]),
    ok = erpc:call(Node, pg, join, [Scope, Group, P]),
    P.

pgnode() ->
    Bin = ?H:prog_path("cnode_pgnode"),
    Name = ?H:unique("cpg"),
    H = ?H:start_os(pgnode, Name, Bin, ["--sname", Name, "--cookie", ?H:cookie(), "-v"]),
    {match, [NodeStr]} = ?H:wait_line(H, "^READY (\\S+)", 60000),
    H#{node => list_to_atom(NodeStr)}.

ctl(#{node := C}, Cmd) -> ?H:ctl(C, Cmd).

%% The C node joined to scope(s) through Seed, discovery finished. Probe:
%% default (the library's), or {IntervalMs, TimeoutMs} for the liveness probe,
%% which a case sets for what it checks (suspect_on_sigstop, no_false_suspect).
attach(C, Seed) -> attach(C, Seed, [?S]).
attach(C, Seed, Scopes) -> attach(C, Seed, Scopes, default).
attach(C, Seed, Scopes, Probe) ->
    Start = case Probe of
                default -> fun(Sc) -> {scope_start, Sc} end;
                {I, T} -> fun(Sc) -> {scope_start, Sc, I, T} end
            end,
    [ok = ctl(C, Start(Sc)) || Sc <- Scopes],
    [ok = ctl(C, {connect, Sc, Seed}) || Sc <- Scopes],
    [ok = ctl(C, {wait_ready, Sc, ?H:ms(10000)}) || Sc <- Scopes],
    true = ctl(C, {scope_node, hd(Scopes)}),
    ok.

mirror(C, Group) -> lists:sort(ctl(C, {members, ?S, Group})).
mirror(C, Scope, Group) -> lists:sort(ctl(C, {members, Scope, Group})).
beam_members(Node, Group) -> beam_members(Node, ?S, Group).
beam_members(Node, Scope, Group) -> lists:sort(erpc:call(Node, pg, get_members, [Scope, Group])).

%% Waits until the C mirror of Group equals Want (sorted).
await_mirror(C, Group, Want) -> await_mirror(C, ?S, Group, Want, 10000).
await_mirror(C, Scope, Group, Want, Ms) ->
    W = lists:sort(Want),
    try ?H:wait_until(fun() -> mirror(C, Scope, Group) =:= W end, Ms)
    catch error:{wait_until_timeout, _} ->
            ct:fail({mirror, Scope, Group, {want, W}, {got, mirror(C, Scope, Group)}})
    end.

await_beam(Nodes, Group, Pred) ->
    [?H:wait_until(fun() -> Pred(beam_members(N, Group)) end, 10000) || N <- Nodes],
    ok.

%%% ---- cases --------------------------------------------------------------

mirror_beam_joins(Config) ->
    ?H:run(Config, fun() ->
        {_, [A, B, D] = Nodes} = beams(3),
        Ps = [member(N, g) || N <- Nodes, _ <- [1, 2]],
        await_beam(Nodes, g, fun(M) -> length(M) =:= 6 end),
        C = pgnode(),
        attach(C, A),
        %% right after wait_ready, without waiting: discovery found B and D through A
        Want = lists:sort(Ps),
        Want = mirror(C, g),
        [Want = beam_members(N, g) || N <- Nodes],
        %% pg:leave on B and a member's exit on D
        [PB | _] = [P || P <- Ps, node(P) =:= B],
        ok = erpc:call(B, pg, leave, [?S, g, PB]),
        [PD | _] = [P || P <- Ps, node(P) =:= D],
        true = erpc:call(D, erlang, exit, [PD, kill]),
        await_mirror(C, g, Ps -- [PB, PD]),
        ok
    end).

c_join_visible(Config) ->
    ?H:run(Config, fun() ->
        {_, [A | _] = Nodes} = beams(3),
        C = pgnode(),
        attach(C, A),
        {ok, P} = ctl(C, spawn),
        ok = ctl(C, {join, ?S, cg, P}),
        await_beam(Nodes, cg, fun(M) -> M =:= [P] end),
        [P] = ctl(C, {local_members, ?S, cg}),
        ok = ctl(C, {leave, ?S, cg, P}),
        await_beam(Nodes, cg, fun(M) -> M =:= [] end),
        %% the process's exit leaves all its groups
        ok = ctl(C, {join, ?S, cg, P}),
        ok = ctl(C, {join, ?S, cg2, P}),
        await_beam(Nodes, cg2, fun(M) -> M =:= [P] end),
        ok = ctl(C, {exit, P}),
        await_beam(Nodes, cg, fun(M) -> M =:= [] end),
        await_beam(Nodes, cg2, fun(M) -> M =:= [] end),
        %% the C node stopping removes its members everywhere, leaving the
        %% groups before the connection goes: A sees the leave, then nodedown
        {ok, P2} = ctl(C, spawn),
        ok = ctl(C, {join, ?S, cg, P2}),
        await_beam(Nodes, cg, fun(M) -> M =:= [P2] end),
        Self = self(),
        CN = maps:get(node, C),
        _ = erpc:call(A, fun() ->
                                 W = spawn(fun() ->
                                                   ok = net_kernel:monitor_nodes(true, [{node_type, all}]),
                                                   {Ref, _} = pg:monitor(?S, cg),
                                                   Self ! {watching, self()},
                                                   watch_order(Self, Ref, CN)
                                           end),
                                 W
                         end),
        receive {watching, _} -> ok after ?H:ms(10000) -> ct:fail(no_watcher) end,
        ok = ctl(C, stop),
        await_beam(Nodes, cg, fun(M) -> M =:= [] end),
        receive
            {order, Order} -> [leave, nodedown] = Order
        after ?H:ms(10000) -> ct:fail(no_order)
        end,
        ok
    end).

kill9_removal(Config) ->
    ?H:run(Config, fun() ->
        {[_, HB | _], [A, B, D]} = beams(3),
        PA = member(A, g1),
        PBs = [member(B, g1), member(B, g2), member(B, g2)],
        PD = member(D, g2),
        C = pgnode(),
        attach(C, A),
        await_mirror(C, g1, [PA | [P || P <- PBs, lists:member(P, erpc:call(B, pg, get_members, [?S, g1]))]]),
        _ = ctl(C, {events, ?S}),
        %% order: B's members are in the mirror until the kill, gone after it
        ?assert(lists:member(B, [node(P) || P <- mirror(C, g2)])),
        T0 = erlang:monotonic_time(millisecond),
        ?H:kill_peer(HB),
        %% removed, eventually (the time is logged; its speed is a benchmark's)
        ?H:wait_until(fun() -> mirror(C, g1) =:= [PA] andalso mirror(C, g2) =:= [PD] end, 15000),
        ct:log("removed after ~p ms", [erlang:monotonic_time(millisecond) - T0]),
        %% the change callback fired once per group for B's members
        Evs = ?H:wait_until(fun() ->
                                    E = [Ev || {K, _, N, _} = Ev <- ctl(C, {events, ?S}),
                                               N =:= B, K =/= suspect, K =/= clear],
                                    E =/= [] andalso E
                            end, 5000),
        ct:log("events: ~p", [Evs]),
        [{nodedown, G1, B, _}, {nodedown, G2, B, _}] = lists:sort(Evs),
        [g1, g2] = lists:sort([G1, G2]),
        ok
    end).

late_joiner_discovered(Config) ->
    ?H:run(Config, fun() ->
        {_, [A]} = beams(1),
        C = pgnode(),
        attach(C, A),
        %% a node that joins later, connected only to A
        #{node := L} = ?H:start_peer(?H:unique("late")),
        {ok, _} = erpc:call(L, pg, start, [?S]),
        true = erpc:call(L, net_kernel, connect_node, [A]),
        P = member(L, lg),
        await_mirror(C, ?S, lg, [P], 10000),
        ok
    end).

erl_call_with_serve(Config) ->
    ?H:run(Config, fun() ->
        {_, [A]} = beams(1),
        Name = ?H:unique("cserve"),
        #{node := CS} = ?H:start_serve(Name, ["--connect", atom_to_list(A), "--scope", atom_to_list(?S),
                                               "--group", "svc"]),
        await_beam([A], svc, fun(M) -> [node(P) || P <- M] =:= [CS] end),
        ErlCall = erl_call(),
        H = ?H:start_os(erl_call, "erl_call", ErlCall,
                        ["-sname", Name, "-c", ?H:cookie(), "-a", "cnode_demo add [1,2]"]),
        0 = ?H:wait_exit(H, 30000),
        "3\n" = ?H:output_text(H),
        ok
    end).

erl_call() ->
    case os:find_executable("erl_call") of
        false ->
            [E | _] = filelib:wildcard(filename:join([code:root_dir(), "lib", "erl_interface-*", "bin", "erl_call"])),
            E;
        E -> E
    end.

two_c_nodes_through_beam(Config) ->
    ?H:run(Config, fun() ->
        {_, [A]} = beams(1),
        X = pgnode(),
        Y = pgnode(),
        attach(X, A),
        {ok, P} = ctl(X, spawn),
        ok = ctl(X, {join, ?S, xg, P}),
        attach(Y, A),
        %% Y learns of X through A's nodes(connected) and syncs with X directly
        await_mirror(Y, ?S, xg, [P], 10000),
        {ok, Q} = ctl(Y, spawn),
        ok = ctl(Y, {join, ?S, xg, Q}),
        await_mirror(X, ?S, xg, [P, Q], 10000),
        ok
    end).

two_scopes_and_double_join(Config) ->
    ?H:run(Config, fun() ->
        {_, [A, B]} = beams(2, [?S, pgs2]),
        P1 = member(A, ?S, g),
        P2 = member(B, pgs2, g),
        C = pgnode(),
        attach(C, A, [?S, pgs2]),
        await_mirror(C, ?S, g, [P1], 10000),
        await_mirror(C, pgs2, g, [P2], 10000),
        %% a C pid joined twice and left once stays a member once, everywhere
        {ok, P} = ctl(C, spawn),
        ok = ctl(C, {join, pgs2, g, P}),
        ok = ctl(C, {join, pgs2, g, P}),
        await_beam([A, B], g, fun(M) -> M =:= [P1] end), % scope pgs1 untouched
        [?H:wait_until(fun() -> beam_members(N, pgs2, g) =:= lists:sort([P, P, P2]) end, 10000)
         || N <- [A, B]],
        ok = ctl(C, {leave, pgs2, g, P}),
        [?H:wait_until(fun() -> beam_members(N, pgs2, g) =:= lists:sort([P, P2]) end, 10000)
         || N <- [A, B]],
        await_mirror(C, pgs2, g, [P, P2], 5000),
        %% the same for a BEAM pid
        ok = erpc:call(node(P1), pg, join, [?S, g, P1]),
        await_mirror(C, ?S, g, [P1, P1], 5000),
        ok = erpc:call(node(P1), pg, leave, [?S, g, P1]),
        await_mirror(C, ?S, g, [P1], 5000),
        await_mirror(C, pgs2, g, [P, P2], 5000),
        ok
    end).

many_members(Config) ->
    ?H:run(Config, fun() ->
        {_, [A | _] = Nodes} = beams(3),
        Groups = [list_to_atom("mg" ++ integer_to_list(I)) || I <- lists:seq(1, 100)],
        %% 10,000 members: each node joins its share in batches (pg:join with a list)
        [begin
             erpc:call(N, fun() ->
                                  [begin
                                       Ps = [spawn(timer, sleep, [infinity]) || _ <- lists:seq(1, 33 + Extra)],
                                       ok = pg:join(?S, G, Ps)
                                   end || G <- Groups]
                          end, 60000)
         end || {N, Extra} <- lists:zip(Nodes, [1, 0, 0])],
        Total = fun(N) -> lists:sum([length(erpc:call(N, pg, get_members, [?S, G])) || G <- Groups]) end,
        [?H:wait_until(fun() -> Total(N) =:= 10000 end, 30000) || N <- Nodes],
        C = pgnode(),
        attach(C, A),
        [begin
             Want = beam_members(A, G),
             await_mirror(C, ?S, G, Want, 20000),
             [Want = beam_members(N, G) || N <- Nodes]
         end || G <- Groups],
        ok
    end, 300000).

reconnect_resync(Config) ->
    ?H:run(Config, fun() ->
        {_, [A]} = beams(1),
        Ps = [member(A, rg) || _ <- [1, 2, 3]],
        C = #{node := CN} = pgnode(),
        attach(C, A),
        {ok, Q} = ctl(C, spawn),
        ok = ctl(C, {join, ?S, rg, Q}),
        await_beam([A], rg, fun(M) -> M =:= lists:sort([Q | Ps]) end),
        await_mirror(C, ?S, rg, [Q | Ps], 5000),
        %% A drops the connection; the C node redials its seed and both sides re-sync
        true = erpc:call(A, erlang, disconnect_node, [CN]),
        P4 = member(A, rg), % joined while the connection may be down
        await_mirror(C, ?S, rg, [Q, P4 | Ps], 15000),
        await_beam([A], rg, fun(M) -> M =:= lists:sort([Q, P4 | Ps]) end),
        %% still exact a moment later: no duplicates, no ghosts
        Final = lists:sort([Q, P4 | Ps]),
        Final = mirror(C, rg),
        ok
    end).

suspect_on_sigstop(Config) ->
    ?H:run(Config, fun() ->
        {[_, HB], [A, B]} = beams(2),
        PB = member(B, sg),
        C = pgnode(),
        %% a short probe: a stopped node is suspected well before the
        %% distribution tick gives it up
        attach(C, A, [?S], {100, 1000}),
        await_mirror(C, ?S, sg, [PB], 5000),
        %% the probe measured B's round trip
        ?H:wait_until(fun() -> ctl(C, {probe_rtt, ?S, B}) >= 0 end, 10000),
        ?assertEqual(-1, ctl(C, {probe_rtt, ?S, ?H:node_name(?H:unique("nobody"))})),
        ?H:wait_until(fun() -> not ctl(C, {suspect, ?S, B}) end, 10000),
        _ = ctl(C, {events, ?S}),
        OsPid = maps:get(os_pid, HB),
        ?H:kill_os(OsPid, "STOP"),
        try
            T0 = erlang:monotonic_time(millisecond),
            ?H:wait_until(fun() -> ctl(C, {suspect, ?S, B}) end, 15000),
            ct:log("suspect after ~p ms", [erlang:monotonic_time(millisecond) - T0]),
            %% OTP still lists the stopped node's member
            [PB] = beam_members(A, sg)
        after
            ?H:kill_os(OsPid, "CONT")
        end,
        ?H:wait_until(fun() -> not ctl(C, {suspect, ?S, B}) end, 15000),
        %% order: a suspect (while stopped) before the last event, a clear (after CONT)
        Kinds = [K || {K, _, N, _} <- ctl(C, {events, ?S}), N =:= B, K =:= suspect orelse K =:= clear],
        ct:log("suspect/clear events for ~p: ~p", [B, Kinds]),
        ?assertMatch([suspect | _], Kinds),
        ?assertEqual(clear, lists:last(Kinds)),
        ok
    end).

%% 30 s of healthy nodes under load (join/leave churn and mirror reads):
%% nobody is ever marked suspect. The probe timeout is the one a deployment
%% on a loaded machine would pick (3 s, stretched by CNODE_TEST_TIME_SCALE):
%% this case is about false alarms, not about how soon a real one is raised.
no_false_suspect(Config) ->
    ?H:run(Config, fun() ->
        {_, [A | _] = Nodes} = beams(3),
        C = pgnode(),
        attach(C, A, [?S], {200, ?H:ms(3000)}),
        _ = ctl(C, {events, ?S}),
        Churn = [spawn_link(fun() -> churn(N) end) || N <- Nodes],
        Deadline = erlang:monotonic_time(millisecond) + 30000,
        Loop = fun L() ->
                       _ = mirror(C, churn),
                       case erlang:monotonic_time(millisecond) < Deadline of
                           true -> L();
                           false -> ok
                       end
               end,
        Loop(),
        [begin unlink(P), exit(P, kill) end || P <- Churn],
        Bad = [E || {K, _, _, _} = E <- ctl(C, {events, ?S}), K =:= suspect],
        [] = Bad,
        ok
    end, 120000).

%% On A: which came first for the C node, its member's leave or its nodedown.
watch_order(To, Ref, CN) -> watch_order(To, Ref, CN, []).
watch_order(To, _Ref, _CN, Acc) when length(Acc) =:= 2 -> To ! {order, lists:reverse(Acc)};
watch_order(To, Ref, CN, Acc) ->
    receive
        {Ref, leave, cg, _} -> watch_order(To, Ref, CN, [leave | Acc]);
        {nodedown, CN, _} -> watch_order(To, Ref, CN, [nodedown | Acc]);
        _ -> watch_order(To, Ref, CN, Acc)
    after ?H:ms(20000) -> To ! {order, lists:reverse(Acc)}
    end.

churn(N) ->
    P = erpc:call(N, erlang, spawn, [timer, sleep, [infinity]]),
    ok = erpc:call(N, pg, join, [?S, churn, P]),
    ok = erpc:call(N, pg, leave, [?S, churn, P]),
    erpc:call(N, erlang, exit, [P, kill]),
    churn(N).

bad_input(Config) ->
    ?H:run(Config, fun() ->
        {_, [A]} = beams(1),
        P = member(A, bg),
        C = #{node := CN} = pgnode(),
        attach(C, A),
        await_mirror(C, ?S, bg, [P], 5000),
        Before = ctl(C, {all, ?S}),
        Scope = {?S, CN},
        Bad = [garbage, {join, self(), bg, notapid}, {join, self(), bg, [notapid]},
               {leave, self(), bg, 42}, {sync, self(), notalist}, {sync, self(), [{bg}]},
               {discover, notapid}, {join, notapid, bg, [self()]}, {'$gen_call', {self(), make_ref()}, what},
               {unknown_tag, 1, 2, 3}, {join, self(), bg}],
        [Scope ! M || M <- Bad],
        %% still answering, mirror unchanged, and the C node says why
        true = is_list(ctl(C, {all, ?S})),
        Before = ctl(C, {all, ?S}),
        ?H:wait_until(fun() -> string:find(?H:output_text(C), "malformed") =/= nomatch end, 5000),
        %% and it keeps working
        P2 = member(A, bg),
        await_mirror(C, ?S, bg, [P, P2], 5000),
        ok
    end).

%% `cnode serve --scope --group`: a member BEAM routes to; on SIGTERM it leaves
%% the group before it stops answering.
serve_member_and_stop(Config) ->
    ?H:run(Config, fun() ->
        {_, [A]} = beams(1),
        S = ?H:start_serve(?H:unique("csrv"), ["--connect", atom_to_list(A), "--scope", atom_to_list(?S),
                                                 "--group", "api"]),
        CS = maps:get(node, S),
        [M] = ?H:wait_until(fun() -> case beam_members(A, api) of [] -> false; L -> L end end, 10000),
        CS = node(M),
        3 = erpc:call(node(M), cnode_demo, add, [1, 2]),
        ?H:kill_os(S, "TERM"),
        await_beam([A], api, fun(L) -> L =:= [] end),
        0 = ?H:wait_exit(S, 30000),
        ok
    end).

%% `cnode members`: the listing after discovery (through a node given as an
%% argument), then with --watch one timestamped line per member per change.
cli_members_and_watch(Config) ->
    ?H:run(Config, fun() ->
        {[_, HB], [A, B]} = beams(2),
        PA = member(A, wg),
        PB = member(B, wg),
        {0, Out} = ?H:run_cli(["--cookie", ?H:cookie(), "members", "--scope", atom_to_list(?S),
                               "--group", "wg", atom_to_list(A)]),
        Lines = lists:sort(string:split(string:trim(Out), "\n", all)),
        Want = lists:sort([lists:flatten(io_lib:format("~s wg ~s ~s", [?S, node(P), pid_text(P)]))
                           || P <- [PA, PB]]),
        ?H:wait_until(fun() -> Lines =:= Want orelse ct:fail({listing, Lines, Want}) end, 1000),
        W = ?H:start_cli(["--cookie", ?H:cookie(), "members", "--watch", "--connect", atom_to_list(A),
                          "--scope", atom_to_list(?S), "--group", "wg"]),
        ?H:wait_line(W, "^" ++ atom_to_list(?S) ++ " wg " ++ atom_to_list(B), 30000),
        PB2 = member(B, wg),
        Ts = "^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z ",
        ?H:wait_line(W, Ts ++ "join " ++ atom_to_list(?S) ++ " wg " ++ atom_to_list(B) ++ " "
                     ++ re_quote(pid_text(PB2)) ++ "$", 10000),
        ?H:kill_peer(HB),
        [?H:wait_line(W, Ts ++ "nodedown " ++ atom_to_list(?S) ++ " wg " ++ atom_to_list(B) ++ " "
                      ++ re_quote(pid_text(P)) ++ "$", 10000) || P <- [PB, PB2]],
        ok
    end).

%% How the CLI prints a pid: <node.Num.Serial>
pid_text(P) ->
    [_, N, S] = string:split(string:trim(pid_to_list(P), both, "<>"), ".", all),
    lists:flatten(io_lib:format("<~s.~s.~s>", [node(P), N, S])).

re_quote(S) -> lists:flatten([case lists:member(C, ".<>") of true -> [$\\, C]; false -> C end || C <- S]).
