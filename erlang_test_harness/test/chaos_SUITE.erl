%%% Chaos: three BEAM nodes serving in a pg group, the C node
%%% (c_src/cnode_hardtest.c, mode chaos) calling them through a balancer with
%%% 64 calls in flight for CHAOS_SECONDS (default 20), while this suite kills
%%% a random member node with SIGKILL and restarts it under the same name, at
%%% random moments (seeded: CHAOS_SEED, else from the clock; the seed is
%%% printed and in the summary line). Counted by the C node: every call
%%% answered exactly once (ok or a structured error), no reply that belongs
%%% to another call, no call left unanswered, every in-flight counter back to
%%% 0; the harness fails the case on any sanitizer report (LSan at exit).
%%% And no call sent to a member from a pick made on a snapshot generation
%%% that no longer listed it: the C node keeps every attempt's pick (node and
%%% pg snapshot generation, from the balancer's observer) and every change of
%%% the group's membership with its generation (the pg change callback),
%%% replays that history in generation order and counts the picks whose node
%%% had no member at their generation ("stale", must be 0); the history must
%%% give the mirror's own membership at the end ("mismatches", 0), must hold
%%% the kills' removals, and picks must have been made after one, so the
%%% check ran where a stale pick could happen. The answering node must be the
%%% one cnode_balancer_call_picked reports ("misattributed", 0).
%%% `make chaos` runs this suite alone and prints the summary line
%%% "chaos: N calls, N ok, N errors, N unanswered, N duplicates, seed S",
%%% which the case also writes to build/chaos.line.
-module(chaos_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([all/0, init_per_suite/1, end_per_suite/1, init_per_testcase/2, end_per_testcase/2]).
-export([kill_and_restart_under_load/1]).
%% called on the member nodes
-export([echo/1]).

-define(H, cnode_harness).
-define(S, chaos_scope).
-define(G, chaos_svc).

all() -> [kill_and_restart_under_load].

init_per_suite(Config) -> ?H:init_per_suite(?MODULE, Config).
end_per_suite(Config) -> ?H:end_per_suite(Config).
init_per_testcase(TC, Config) -> ?H:init_per_testcase(TC, Config).
end_per_testcase(TC, Config) -> ?H:end_per_testcase(TC, Config).

%% What the C node calls: its own id back, and who answered.
echo(Id) -> {Id, node()}.

env_int(Name, Default) ->
    case os:getenv(Name) of
        false -> Default;
        "" -> Default;
        V -> list_to_integer(V)
    end.

%% A member node: scope started, meshed with the live ones (and the C node), one member in ?G.
setup(Node, Others) ->
    {ok, _} = erpc:call(Node, pg, start, [?S]),
    [erpc:call(Node, net_kernel, connect_node, [O]) || O <- Others, O =/= Node],
    P = erpc:call(Node, erlang, spawn, [timer, sleep, [infinity]]),
    ok = erpc:call(Node, pg, join, [?S, ?G, P]),
    ok.

start_member(Name, Others) ->
    %% the killed node's name may still be in epmd for a moment
    H = ?H:wait_until(fun() ->
                              try ?H:start_peer(Name)
                              catch _:_ -> false
                              end
                      end, 30000, 200),
    #{node := Node} = H,
    setup(Node, Others),
    H.

kill_and_restart_under_load(Config) ->
    Seconds = env_int("CHAOS_SECONDS", 20),
    Seed = env_int("CHAOS_SEED", erlang:system_time(millisecond) rem 1000000),
    io:format("chaos: seed ~p, ~p s~n", [Seed, Seconds]),
    ?H:run(Config, fun() ->
        rand:seed(exsss, {Seed, Seed, Seed}),
        Names = [?H:unique("chaos") || _ <- [1, 2, 3]],
        Nodes = [?H:node_name(N) || N <- Names],
        Hs0 = [begin
                   H = ?H:start_peer(N),
                   H
               end || N <- Names],
        [setup(Node, Nodes) || Node <- Nodes],
        CName = ?H:unique("cchaos"),
        C = ?H:start_os(hardtest, CName, ?H:prog_path("cnode_hardtest"),
                        ["chaos", "--sname", CName, "--cookie", ?H:cookie(),
                         "--scope", atom_to_list(?S), "--group", atom_to_list(?G),
                         "--seeds", string:join([atom_to_list(N) || N <- Nodes], ","),
                         "--seconds", integer_to_list(Seconds), "--inflight", "64",
                         "--mod", atom_to_list(?MODULE), "--fun", "echo",
                         "--seed", integer_to_list(Seed)],
                        #{check_exit => true}),
        ?H:wait_line(C, "^READY", 60000),
        CNode = list_to_atom(CName ++ "@" ++ ?H:host()),
        Deadline = erlang:monotonic_time(millisecond) + Seconds * 1000 - 1500,
        Kills = chaos_loop(maps:from_list(lists:zip(Names, Hs0)), Names, Nodes, CNode, Deadline, 0,
                           max(1, Seconds div 2)),
        io:format("chaos: ~p kills~n", [Kills]),
        {match, [Line]} = ?H:wait_line(C, "^(chaos: .*)$", Seconds * 1000 + 60000),
        io:format("~s~n~s~n", [Line, ?H:output_text(C)]),
        file:write_file(filename:join([?H:root(), "build", "chaos.line"]), [Line, $\n]),
        0 = ?H:wait_exit(C, 60000),
        {match, [Inflight]} = ?H:wait_line(C, "^inflight (\\d+)", 1000),
        {match, [PickLine]} = ?H:wait_line(C, "^(picks: .*)$", 1000),
        {match, PickFigures} =
            re:run(PickLine, "^picks: (\\d+) checked, (\\d+) stale, (\\d+) unpicked, (\\d+) misattributed, "
                             "(\\d+) removals, (\\d+) after a removal, (\\d+) events, (-?\\d+) mismatches",
                   [{capture, all_but_first, list}]),
        [Checked, Stale, _Unpicked, Misattributed, Removals, AfterRemoval, Events, Mismatches] =
            [list_to_integer(X) || X <- PickFigures],
        {match, [Calls, Ok, Errors, Unanswered, Dups]} =
            re:run(Line, "^chaos: (\\d+) calls, (\\d+) ok, (\\d+) errors, (\\d+) unanswered, (\\d+) duplicates",
                   [{capture, all_but_first, list}]),
        [NCalls, NOk, NErr, NUn, NDup, NIn] =
            [list_to_integer(X) || X <- [Calls, Ok, Errors, Unanswered, Dups, Inflight]],
        true = Kills > 0,
        true = NCalls > 0,
        true = NOk > 0,
        0 = NUn,
        0 = NDup,
        NCalls = NOk + NErr,
        0 = NIn,
        true = Checked >= NOk,
        0 = Stale,
        0 = Misattributed,
        0 = Mismatches,
        true = Events > 0,
        true = Removals > 0,
        true = AfterRemoval > 0,
        ok
    end, Seconds * 1000 + 240000).

%% Until Deadline: wait a random 0.5-2.5 s, kill -9 a random member, wait 0.2-1.2 s, restart it.
chaos_loop(_, _, _, _, _, Kills, MaxKills) when Kills >= MaxKills -> Kills;
chaos_loop(Hs, Names, Nodes, CNode, Deadline, Kills, MaxKills) ->
    Wait = 500 + rand:uniform(2000),
    case erlang:monotonic_time(millisecond) + Wait + 1200 > Deadline of
        true -> Kills;
        false ->
            timer:sleep(Wait),
            Name = lists:nth(rand:uniform(length(Names)), Names),
            ?H:kill_peer(maps:get(Name, Hs)),
            io:format("chaos: kill -9 ~s~n", [Name]),
            timer:sleep(200 + rand:uniform(1000)),
            H = start_member(Name, Nodes ++ [CNode]),
            chaos_loop(Hs#{Name := H}, Names, Nodes, CNode, Deadline, Kills + 1, MaxKills)
    end.
