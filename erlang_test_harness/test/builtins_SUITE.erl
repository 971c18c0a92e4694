%%% The erlang built-ins a C member answers like any member of a mixed group (cnode/builtins.c):
%%% node/0, nodes/0,1, system_time/0,1, monotonic_time/0,1 and is_alive/0, with BEAM's results
%%% and BEAM's badarg, through erpc and through rex (rpc); everything else unregistered stays
%%% undef. Shapes are compared with the same calls made to a BEAM node.
-module(builtins_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([suite/0, all/0, init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).
-export([identity/1, nodes_kinds/1, time_units/1, badarg_like_beam/1, others_stay_undef/1]).

-define(H, cnode_harness).

suite() ->
    [{timetrap, {seconds, ?H:ms(120000) div 1000}}].

all() ->
    [identity, nodes_kinds, time_units, badarg_like_beam, others_stay_undef].

init_per_suite(Config) -> ?H:init_per_suite(?MODULE, Config).
end_per_suite(Config) -> ?H:end_per_suite(Config).
init_per_testcase(TC, Config) -> ?H:init_per_testcase(TC, Config).
end_per_testcase(TC, Config) -> ?H:end_per_testcase(TC, Config).

serve() ->
    #{node := S} = ?H:start_serve(?H:unique("b")),
    S.

%% Through erpc and through rex (rpc:call), the same answer.
both(S, F, A) ->
    V = erpc:call(S, erlang, F, A),
    ?assertEqual(V, rpc:call(S, erlang, F, A)),
    V.

identity(Config) ->
    ?H:run(Config, fun() ->
        S = serve(),
        ?assertEqual(S, both(S, node, [])),
        ?assertEqual(true, both(S, is_alive, [])),
        %% erpc:multicall over the C node and this BEAM node: the pattern a mixed group uses
        ?assertEqual([{ok, S}, {ok, node()}], erpc:multicall([S, node()], erlang, node, [])),
        ?assertEqual([{ok, true}, {ok, true}], erpc:multicall([S, node()], erlang, is_alive, []))
    end).

%% A hidden node's answers: nothing visible, the caller among the connected (hidden) nodes.
nodes_kinds(Config) ->
    ?H:run(Config, fun() ->
        S = serve(),
        Me = node(),
        ?assertEqual([], both(S, nodes, [])),
        ?assertEqual([], both(S, nodes, [visible])),
        Hidden = both(S, nodes, [hidden]),
        ?assert(lists:member(Me, Hidden)),
        ?assertNot(lists:member(S, Hidden)),
        ?assertEqual(lists:sort(Hidden), lists:sort(both(S, nodes, [connected]))),
        ?assertEqual([S], both(S, nodes, [this])),
        ?assertEqual([], both(S, nodes, [[]])),
        ?assertEqual([S], both(S, nodes, [[this, this]])),
        Both = both(S, nodes, [[this, connected]]),
        ?assertEqual(S, lists:last(Both)),
        ?assertEqual(lists:sort([S | Hidden]), lists:sort(Both)),
        ?assertEqual(lists:sort(Both), lists:sort(both(S, nodes, [[connected, this, visible]]))),
        Known = both(S, nodes, [known]),
        ?assert(lists:member(S, Known) andalso lists:member(Me, Known))
    end).

time_units(Config) ->
    ?H:run(Config, fun() ->
        S = serve(),
        Near = fun(Unit, Slack) ->
                       Mine = erlang:system_time(Unit),
                       [begin
                            ?assert(is_integer(Theirs)),
                            ?assert(abs(Theirs - Mine) =< Slack, {Unit, Theirs, Mine})
                        end || Theirs <- [erpc:call(S, erlang, system_time, [Unit]),
                                          rpc:call(S, erlang, system_time, [Unit])]]
               end,
        %% the two clocks are the same machine's: a minute apart at most even under load
        Near(second, 60),
        Near(seconds, 60),
        Near(millisecond, 60000),
        Near(milli_seconds, 60000),
        Near(microsecond, 60000000),
        Near(micro_seconds, 60000000),
        Near(nanosecond, 60000000000),
        Near(nano_seconds, 60000000000),
        Near(native, 60000000000),
        Near(perf_counter, 60000000000),
        Near(3, 180),
        Near(1, 60),
        NowNs = erpc:call(S, erlang, system_time, []),
        ?assert(abs(NowNs - erlang:system_time(nanosecond)) =< 60000000000),
        %% a unit of any size: the result is a bignum, floor(ns * unit / 10^9)
        Big = 1000000000000000000000,
        B = rpc:call(S, erlang, system_time, [Big]),
        ?assert(abs(B div Big - erlang:system_time(second)) =< 60, {B, Big}),
        ?assertEqual(0, B rem 1000000000000),
        %% monotonic: native nanoseconds, never going back; other units rounded down
        M1 = erpc:call(S, erlang, monotonic_time, []),
        M2 = erpc:call(S, erlang, monotonic_time, [nanosecond]),
        M3 = rpc:call(S, erlang, monotonic_time, [native]),
        ?assert(M1 =< M2 andalso M2 =< M3, {M1, M2, M3}),
        MS = erpc:call(S, erlang, monotonic_time, [second]),
        M4 = erpc:call(S, erlang, monotonic_time, []),
        ?assert(floor_div(M3, 1000000000) =< MS andalso MS =< floor_div(M4, 1000000000), {M3, MS, M4}),
        MBig = erpc:call(S, erlang, monotonic_time, [Big]),
        ?assert(is_integer(MBig))
    end).

floor_div(A, B) when A >= 0 -> A div B;
floor_div(A, B) -> -((-A + B - 1) div B).

%% Bad units and kinds raise badarg, with the same shape as BEAM's own, by erpc and by rpc.
badarg_like_beam(Config) ->
    ?H:run(Config, fun() ->
        S = serve(),
        Bad = [{system_time, [foo]}, {system_time, [0]}, {system_time, [-1]}, {system_time, [1.0]},
               {system_time, [-(1 bsl 70)]}, {system_time, ["second"]}, {monotonic_time, [foo]},
               {monotonic_time, [{second}]}, {nodes, [foo]}, {nodes, [[foo]]}, {nodes, [[this | this]]},
               {nodes, [{this}]}, {nodes, ["this"]}, {nodes, [1]}],
        lists:foreach(
          fun({F, A}) ->
                  Beam = catch_erpc(node(), F, A),
                  ?assertMatch({error, {exception, badarg, [{erlang, F, A, _} | _]}}, Beam),
                  ?assertMatch({error, {exception, badarg, [{erlang, F, A, _} | _]}}, catch_erpc(S, F, A)),
                  ?assertMatch({badrpc, {'EXIT', {badarg, [{erlang, F, A, _} | _]}}}, rpc:call(node(), erlang, F, A)),
                  ?assertMatch({badrpc, {'EXIT', {badarg, [{erlang, F, A, _} | _]}}}, rpc:call(S, erlang, F, A))
          end, Bad),
        ?assertEqual(S, erpc:call(S, erlang, node, []))
    end).

catch_erpc(N, F, A) ->
    try erpc:call(N, erlang, F, A) of
        V -> {value, V}
    catch C:R -> {C, R}
    end.

others_stay_undef(Config) ->
    ?H:run(Config, fun() ->
        S = serve(),
        lists:foreach(
          fun({F, A}) ->
                  ?assertMatch({error, {exception, undef, [{erlang, F, A, _} | _]}}, catch_erpc(S, F, A)),
                  ?assertMatch({badrpc, {'EXIT', {undef, [{erlang, F, A, _} | _]}}}, rpc:call(S, erlang, F, A))
          end,
          [{halt, []}, {node, [self()]}, {nodes, [this, #{}]}, {system_info, [otp_release]},
           {time, []}, {processes, []}]),
        ?assertEqual(S, erpc:call(S, erlang, node, []))
    end).
