%%% Soak: mixed load for SOAK_SECONDS (default 30 here; `make soak` gives
%%% 600). Two BEAM nodes serve a pg group and call the C node back; the C
%%% node (c_src/cnode_hardtest.c, mode soak) calls them through a balancer on
%%% 8 threads, serves hardtest:echo/1, joins and leaves the group with short
%%% lived C processes and drops a connection now and then (reconnects). It
%%% prints its RSS every 10 s; after the warm-up (the first third of the run,
%%% at least 10 s) the RSS must stay flat (the last reading under load at most
%%% max(25 %, 16 MiB) above the warm-up's; ASan's quarantine is capped at 4 MiB for this
%%% program so that it does not read as growth), every in-flight counter ends
%%% at 0 and the program exits 0 with no LSan report.
%%% `make soak` prints "soak: N s, rss start N kB, warm N kB, end N kB, ..., LSan clean"
%%% (build/soak.line).
-module(soak_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([all/0, init_per_suite/1, end_per_suite/1, init_per_testcase/2, end_per_testcase/2]).
-export([mixed_load/1]).
%% called on the member nodes
-export([echo/1, caller/2]).

-define(H, cnode_harness).
-define(S, soak_scope).
-define(G, soak_svc).

all() -> [mixed_load].

init_per_suite(Config) -> ?H:init_per_suite(?MODULE, Config).
end_per_suite(Config) -> ?H:end_per_suite(Config).
init_per_testcase(TC, Config) -> ?H:init_per_testcase(TC, Config).
end_per_testcase(TC, Config) -> ?H:end_per_testcase(TC, Config).

echo(Id) -> {Id, node()}.

%% On a member: calls the C node's echo in a loop (counting in a persistent term);
%% a failure (the C node dropped the link a moment ago) is counted and the loop goes on.
caller(CNode, N) ->
    R = try erpc:call(CNode, hardtest, echo, [N], 5000) of
            N -> ok;
            _ -> bad
        catch _:_ -> failed
        end,
    K = {?MODULE, R},
    persistent_term:put(K, persistent_term:get(K, 0) + 1),
    receive stop -> ok after 5 -> caller(CNode, N + 1) end.

soak_seconds() ->
    case os:getenv("SOAK_SECONDS") of
        false -> 30;
        "" -> 30;
        V -> list_to_integer(V)
    end.

mixed_load(Config) ->
    Seconds = soak_seconds(),
    ?H:run(Config, fun() ->
        Hs = [?H:start_peer(?H:unique("soak")) || _ <- [1, 2]],
        Nodes = [N || #{node := N} <- Hs],
        [begin
             {ok, _} = erpc:call(N, pg, start, [?S]),
             [erpc:call(N, net_kernel, connect_node, [O]) || O <- Nodes, O =/= N],
             P = erpc:call(N, erlang, spawn, [timer, sleep, [infinity]]),
             ok = erpc:call(N, pg, join, [?S, ?G, P])
         end || N <- Nodes],
        CName = ?H:unique("csoak"),
        Asan = case os:getenv("ASAN_OPTIONS") of
                   false -> "";
                   A -> A ++ ":"
               end,
        C = ?H:start_os(hardtest, CName, "/usr/bin/env",
                        ["ASAN_OPTIONS=" ++ Asan ++ "quarantine_size_mb=4",
                         ?H:prog_path("cnode_hardtest"),
                         "soak", "--sname", CName, "--cookie", ?H:cookie(),
                         "--scope", atom_to_list(?S), "--group", atom_to_list(?G),
                         "--seeds", string:join([atom_to_list(N) || N <- Nodes], ","),
                         "--seconds", integer_to_list(Seconds),
                         "--mod", atom_to_list(?MODULE), "--fun", "echo"],
                        #{check_exit => true}),
        ?H:wait_line(C, "^READY", 60000),
        CNode = list_to_atom(CName ++ "@" ++ ?H:host()),
        Callers = [erpc:call(N, erlang, spawn, [?MODULE, caller, [CNode, 1]]) || N <- Nodes],
        {match, [Line]} = ?H:wait_line(C, "^(soak: .*)$", Seconds * 1000 + 120000),
        [P ! stop || P <- Callers],
        Served = [{N, [{R, erpc:call(N, persistent_term, get, [{?MODULE, R}, 0])} || R <- [ok, bad, failed]]}
                  || N <- Nodes],
        0 = ?H:wait_exit(C, 60000),
        Out = ?H:output_text(C),
        io:format("~s~ncalls from BEAM: ~p~n~s~n", [Line, Served, Out]),
        Rss = [{list_to_integer(T), list_to_integer(K)}
               || [T, K] <- element(2, re:run(Out, "^rss (\\d+) s (\\d+) kB", [multiline, global,
                                                                            {capture, all_but_first, list}]))],
        WarmAt = max(10, Seconds div 3),
        {_, Warm} = hd([TK || {T, _} = TK <- Rss, T >= WarmAt] ++ [lists:last(Rss)]),
        {_, Start} = hd(Rss),
        {_, End} = lists:last(Rss), %% the last reading under load (the line's "end" is after the threads stopped)
        io:format("rss: start ~p kB, warm-up (~p s) ~p kB, end ~p kB~n", [Start, WarmAt, Warm, End]),
        {match, [Inflight]} = ?H:wait_line(C, "^inflight (\\d+)", 1000),
        "0" = Inflight,
        0 = num(Line, "(\\d+) bad replies"),
        true = num(Line, "(\\d+) calls") > 0,
        true = num(Line, "(\\d+) served") > 0,
        [true = proplists:get_value(ok, S) > 0 andalso proplists:get_value(bad, S) =:= 0 || {_, S} <- Served],
        Flat = End =< Warm + max(Warm div 4, 16384),
        Summary = io_lib:format("soak: ~p s, rss start ~p kB, warm ~p kB, end ~p kB, ~p calls, ~p served, "
                                "~p errors, ~p calls from BEAM, LSan clean",
                                [Seconds, Start, Warm, End, num(Line, "(\\d+) calls"), num(Line, "(\\d+) served"),
                                 num(Line, "(\\d+) errors"),
                                 lists:sum([proplists:get_value(ok, S) || {_, S} <- Served])]),
        file:write_file(filename:join([?H:root(), "build", "soak.line"]),
                        [Summary, if Flat -> ""; true -> " (RSS NOT FLAT)" end, $\n]),
        true = Flat,
        ok
    end, Seconds * 1000 + 300000).

num(Line, Re) ->
    {match, [N]} = re:run(Line, Re, [{capture, all_but_first, list}]),
    list_to_integer(N).
