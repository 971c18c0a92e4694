%%% `cnode serve` seen from the BEAM side: the C node serves the demo module
%%% cnode_demo (echo/1, add/2, sleep/1 in ms, fail/1 raises error, info/0,
%%% cancelled/0) to erpc, rpc, the rex protocol, erl_call and Elixir.
%%%
%%% cnode_demo can only raise class error (fail/1); the throw and exit shapes
%%% are checked against the C test node's cnode_test:raise/2, which raises with
%%% cnode_raise(ctx, Class, Reason), next to a BEAM callee doing the same.
-module(serve_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([suite/0, all/0, init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).
-export([erpc_call/1, erpc_cast/1, erpc_multicall/1, rpc_call_cast/1, rex_protocol/1,
         elixir_erpc/1, echo_all_types/1, exceptions/1, undef/1, caller_timeout/1,
         fast_calls_while_sleeping/1, garbage_to_rex/1, erl_call/1,
         killed_mid_call/1, sigterm_drains/1, raise_classes/1, bad_spawn_requests/1]).

-define(H, cnode_harness).
-define(TMO, cnode_harness:ms(15000)).   % scaled by CNODE_TEST_TIME_SCALE

suite() ->
    [{timetrap, {seconds, ?H:ms(240000) div 1000}}].

all() ->
    [erpc_call, erpc_cast, erpc_multicall, rpc_call_cast, rex_protocol,
     elixir_erpc, echo_all_types, exceptions, undef, caller_timeout,
     fast_calls_while_sleeping, garbage_to_rex, erl_call,
     killed_mid_call, sigterm_drains, raise_classes, bad_spawn_requests].

init_per_suite(Config) ->
    Ebin = string:trim(os:cmd("elixir -e 'IO.write :code.lib_dir(:elixir)' 2>/dev/null")) ++ "/ebin",
    Config1 = ?H:init_per_suite(?MODULE, Config),
    [{elixir_ebin, Ebin} | Config1].

end_per_suite(Config) -> ?H:end_per_suite(Config).
init_per_testcase(TC, Config) -> ?H:init_per_testcase(TC, Config).
end_per_testcase(TC, Config) -> ?H:end_per_testcase(TC, Config).

serve() ->
    #{node := S} = ?H:start_serve(?H:unique("s")),
    S.

%%% ---- erpc, rpc, rex ------------------------------------------------------

erpc_call(Config) ->
    ?H:run(Config, fun() ->
        S = serve(),
        ?assertEqual(3, erpc:call(S, cnode_demo, add, [1, 2])),
        ?assertEqual(3.5, erpc:call(S, cnode_demo, add, [1, 2.5])),
        ?assertEqual(-(1 bsl 62), erpc:call(S, cnode_demo, add, [-(1 bsl 61), -(1 bsl 61)])),
        ?assertEqual(hello, erpc:call(S, cnode_demo, echo, [hello], ?TMO)),
        ?assertEqual(ok, erpc:call(S, cnode_demo, sleep, [10])),
        Info = erpc:call(S, cnode_demo, info, []),
        ?assertMatch(#{node := S, pid := _, version := <<_/binary>>}, Info),
        #{pid := P} = Info,
        ?assert(is_pid(P)),
        ?assertEqual(S, node(P)),
        %% the serving node is hidden
        ?assert(lists:member(S, nodes(hidden))),
        ?assertNot(lists:member(S, nodes())),
        %% send_request / receive_response
        Reqs = [erpc:send_request(S, cnode_demo, add, [I, I]) || I <- lists:seq(1, 50)],
        ?assertEqual([2 * I || I <- lists:seq(1, 50)],
                     [erpc:receive_response(R, ?TMO) || R <- Reqs])
    end).

%% erpc:cast returns ok at once; the node runs it (an unknown function is
%% logged on the C side, as BEAM logs it), and keeps serving.
erpc_cast(Config) ->
    ?H:run(Config, fun() ->
        #{node := S} = H = ?H:start_serve(?H:unique("s"), ["-v"]),
        ?assertEqual(ok, erpc:cast(S, cnode_demo, echo, [x])),
        ?assertEqual(ok, erpc:cast(S, cnode_demo, no_such_fun, [1])),
        ?H:wait_line(H, "no_such_fun", ?TMO),
        ?assertEqual(ok, erpc:cast(S, cnode_demo, fail, [cast_failure])),
        ?assertEqual(3, erpc:call(S, cnode_demo, add, [1, 2]))
    end).

%% erpc:multicall over two C nodes, a BEAM node without cnode_demo and a
%% node that does not exist.
erpc_multicall(Config) ->
    ?H:run(Config, fun() ->
        S1 = serve(),
        S2 = serve(),
        Nobody = ?H:node_name(?H:unique("nobody")),
        R = erpc:multicall([S1, S2, node(), Nobody], cnode_demo, add, [2, 3], ?TMO),
        ?assertMatch([{ok, 5}, {ok, 5},
                      {error, {exception, undef, [{cnode_demo, add, [2, 3], _} | _]}},
                      {error, {erpc, noconnection}}], R),
        ?assertMatch([{ok, ok}, {ok, ok}], erpc:multicall([S1, S2], cnode_demo, sleep, [300], ?TMO)),
        ?assertMatch([{error, {exception, bad, [{cnode_demo, fail, [bad], _} | _]}},
                      {error, {exception, bad, _}}],
                     erpc:multicall([S1, S2], cnode_demo, fail, [bad], ?TMO)),
        ?assertEqual(ok, erpc:multicast([S1, S2], cnode_demo, echo, [x]))
    end).

rpc_call_cast(Config) ->
    ?H:run(Config, fun() ->
        S = serve(),
        S2 = serve(),
        ?assertEqual(3, rpc:call(S, cnode_demo, add, [1, 2])),
        ?assertEqual(3, rpc:call(S, cnode_demo, add, [1, 2], ?TMO)),
        ?assertEqual(3, rpc:block_call(S, cnode_demo, add, [1, 2])),
        ?assertEqual(true, rpc:cast(S, cnode_demo, echo, [x])),
        ?assertMatch({badrpc, {'EXIT', {oops, [{cnode_demo, fail, [oops], _} | _]}}},
                     rpc:call(S, cnode_demo, fail, [oops])),
        ?assertMatch({badrpc, {'EXIT', {undef, [{cnode_demo, nope, [1], _} | _]}}},
                     rpc:call(S, cnode_demo, nope, [1])),
        ?assertEqual({badrpc, timeout}, rpc:call(S, cnode_demo, sleep, [2000], 200)),
        Nobody = ?H:node_name(?H:unique("nobody")),
        ?assertEqual({badrpc, nodedown}, rpc:call(Nobody, cnode_demo, add, [1, 2])),
        ?assertEqual({[4, 4], [Nobody]}, rpc:multicall([S, S2, Nobody], cnode_demo, add, [2, 2])),
        ?assertEqual(abcast, rpc:eval_everywhere([S, S2], cnode_demo, echo, [x])),
        ?assertEqual(7, rpc:call(S, cnode_demo, add, [3, 4]))
    end).

%% The rex gen_server protocol itself (what erl_call and other ei clients
%% use): {call, M, F, A, GL} and {block_call, ...} answered, {cast, ...} run.
rex_protocol(Config) ->
    ?H:run(Config, fun() ->
        S = serve(),
        GL = group_leader(),
        ?assertEqual(3, gen_server:call({rex, S}, {call, cnode_demo, add, [1, 2], GL}, ?TMO)),
        ?assertEqual(<<"b">>, gen_server:call({rex, S}, {block_call, cnode_demo, echo, [<<"b">>], GL}, ?TMO)),
        ?assertMatch({badrpc, {'EXIT', {boom, [{cnode_demo, fail, [boom], _} | _]}}},
                     gen_server:call({rex, S}, {call, cnode_demo, fail, [boom], GL}, ?TMO)),
        ?assertMatch({badrpc, {'EXIT', {undef, [{no_mod, f, [], _} | _]}}},
                     gen_server:call({rex, S}, {call, no_mod, f, [], GL}, ?TMO)),
        ok = gen_server:cast({rex, S}, {cast, cnode_demo, echo, [x], GL}),
        ?assertEqual(2, gen_server:call({rex, S}, {call, cnode_demo, add, [1, 1], GL}, ?TMO))
    end).

%% Elixir's :erpc.call from an Elixir node.
elixir_erpc(Config) ->
    Ebin = ?config(elixir_ebin, Config),
    case filelib:is_regular(filename:join(Ebin, "elixir.app")) of
        false -> {skip, "elixir is not installed"};
        true ->
            ?H:run(Config, fun() ->
                S = serve(),
                #{node := E} = ?H:start_peer(?H:unique("ex"), #{args => ["-pa", Ebin]}),
                {ok, _} = erpc:call(E, application, ensure_all_started, [elixir]),
                Code = "node = :\"" ++ atom_to_list(S) ++ "\"\n"
                       "sum = :erpc.call(node, :cnode_demo, :add, [1, 2])\n"
                       "echo = :erpc.call(node, :cnode_demo, :echo, [%{list: [1, 2.5, \"bin\"], tuple: {:a, :b}}])\n"
                       "failure = try do\n"
                       "  :erpc.call(node, :cnode_demo, :fail, [:elixir_boom])\n"
                       "rescue\n"
                       "  e in ErlangError -> e.original\n"
                       "end\n"
                       "{sum, echo, failure}",
                {Value, _Binding} = erpc:call(E, 'Elixir.Code', eval_string, [list_to_binary(Code)], 60000),
                ?assertMatch({3, #{list := [1, 2.5, <<"bin">>], tuple := {a, b}},
                              {exception, elixir_boom, [{cnode_demo, fail, [elixir_boom], _} | _]}},
                             Value)
            end)
    end.

%% echo/1 gives back every term type exactly.
echo_all_types(Config) ->
    ?H:run(Config, fun() ->
        S = serve(),
        lists:foreach(
          fun({K, T}) ->
                  Got = erpc:call(S, cnode_demo, echo, [T], 60000),
                  Got =:= T orelse error({echo_differs, K, {sent, short(T)}, {got, short(Got)}})
          end, lists:zip(lists:seq(1, length(terms())), terms()))
    end).

terms() ->
    Captured = rand:uniform(1000),
    [0, -1, 255, 256, 1 bsl 27, -(1 bsl 27) - 1, 1 bsl 31, 1 bsl 63 - 1, -(1 bsl 63),
     1 bsl 63, 1 bsl 64, -(1 bsl 100), 12345678901234567890123456789, 1 bsl 2000,
     0.0, 1.5, -2.25e-300, 1.7976931348623157e308, 5.0e-324,
     atom, '', 'Quoted Atom', 'héllo', '日本語', '😀', list_to_atom(lists:duplicate(255, 16#1F600)),
     true, false,
     <<>>, <<1, 2, 3>>, <<"héllo"/utf8>>, <<1:3>>, <<"abc", 5:7>>, binary:copy(<<7>>, 70000),
     "", "abc", "ünï", [1, 2, 3], [a | b], [1, 2 | 3], [[]], lists:seq(1, 1000),
     lists:foldl(fun(_, A) -> [A] end, [], lists:seq(1, 500)),
     lists:foldl(fun(I, A) -> {I, A} end, nil, lists:seq(1, 500)),
     {}, {a}, {a, {b, [c]}}, list_to_tuple(lists:seq(1, 300)),
     #{}, #{a => 1, <<"k">> => [v]}, #{{x, y} => #{z => 1.0}},
     maps:from_list([{I, integer_to_list(I)} || I <- lists:seq(1, 100)]),
     self(), make_ref(), alias(), hd(erlang:ports()),
     fun() -> ok end, fun lists:map/2, fun(X) -> X + Captured end,
     rand:bytes(1 bsl 20)].

%% fail/1 raises class error: erpc error:{exception, R, Stack}, rpc
%% {badrpc, {'EXIT', {R, Stack}}}, with {cnode_demo, fail, [R], _} on top;
%% add/2 on non-numbers raises badarith.
exceptions(Config) ->
    ?H:run(Config, fun() ->
        S = serve(),
        Reasons = [boom, {complex, [1, 2], #{k => v}}, <<"bin">>, 42],
        lists:foreach(
          fun(R) ->
                  try erpc:call(S, cnode_demo, fail, [R]) of
                      V -> error({no_exception, V})
                  catch error:{exception, R, [{cnode_demo, fail, [R], Loc} | _]} ->
                          ?assert(is_list(Loc))
                  end,
                  ?assertMatch({badrpc, {'EXIT', {R, [{cnode_demo, fail, [R], _} | _]}}},
                               rpc:call(S, cnode_demo, fail, [R]))
          end, Reasons),
        try erpc:call(S, cnode_demo, add, [a, 1]) of
            V -> error({no_exception, V})
        catch error:{exception, badarith, [{cnode_demo, add, [a, 1], _} | _]} -> ok
        end,
        %% what a BEAM node gives for the same failure, for comparison
        try erpc:call(node(), erlang, error, [boom]) of
            V2 -> error({no_exception, V2})
        catch error:{exception, boom, [{erlang, error, [boom], _} | _]} -> ok
        end
    end).

%% Unknown function, wrong arity, unknown module: error:{exception, undef,
%% [{M, F, Args, _} | _]}, as on BEAM.
undef(Config) ->
    ?H:run(Config, fun() ->
        S = serve(),
        Cases = [{cnode_demo, nope, []}, {cnode_demo, add, [1, 2, 3]}, {cnode_demo, add, [1]},
                 {cnode_demo, info, [x]}, {no_such_module, f, [1]}],
        lists:foreach(
          fun({M, F, A}) ->
                  try erpc:call(S, M, F, A) of
                      V -> error({no_exception, {M, F, A}, V})
                  catch error:{exception, undef, [{M, F, A, _} | _]} -> ok
                  end
          end, Cases),
        %% BEAM's own shape, for comparison
        try erpc:call(node(), no_such_module, f, [1]) of
            V -> error({no_exception, V})
        catch error:{exception, undef, [{no_such_module, f, [1], _} | _]} -> ok
        end,
        ?assertEqual(3, erpc:call(S, cnode_demo, add, [1, 2]))
    end).

%% The caller gives up while sleep/1 runs: {erpc, timeout}, never before the
%% caller's 300 ms (how long after is not asserted); then, in that order, the
%% node answers the next call and the C handler sees the call cancelled.
caller_timeout(Config) ->
    ?H:run(Config, fun() ->
        S = serve(),
        Before = erpc:call(S, cnode_demo, cancelled, []),
        T0 = erlang:monotonic_time(millisecond),
        try erpc:call(S, cnode_demo, sleep, [5000], 300) of
            V -> error({no_timeout, V})
        catch error:{erpc, timeout} -> ok
        end,
        Elapsed = erlang:monotonic_time(millisecond) - T0,
        ct:log("timeout raised after ~p ms", [Elapsed]),
        ?assert(Elapsed >= 300),
        ?assertEqual(5, erpc:call(S, cnode_demo, add, [2, 3])),
        %% erpc kills the remote process on timeout: the sleeping handler stops early
        ?H:wait_until(fun() -> erpc:call(S, cnode_demo, cancelled, []) > Before end, 15000),
        ok
    end).

%% 1,000 fast calls from 16 BEAM processes all complete while one sleep/1
%% is running. The order of events is the point, not the clock: the sleep
%% (10 minutes) is running before the first fast call (a call ordered after
%% it on the same connection answered), still running after the last, and
%% then ends because the caller gave up (it counts as cancelled), not because
%% it finished.
fast_calls_while_sleeping(Config) ->
    ?H:run(Config, fun() ->
        S = serve(),
        ?assertEqual(2, erpc:call(S, cnode_demo, add, [1, 1])),
        Before = erpc:call(S, cnode_demo, cancelled, []),
        Sleep = erpc:send_request(S, cnode_demo, sleep, [600000]),
        ?assertEqual(4, erpc:call(S, cnode_demo, add, [2, 2])),
        T0 = erlang:monotonic_time(millisecond),
        Me = self(),
        Pids = [spawn_link(fun() ->
                                   Rs = [erpc:call(S, cnode_demo, add, [W, I], ?TMO)
                                         || I <- lists:seq(1, calls(W))],
                                   Me ! {done, self(), W, Rs}
                           end) || W <- lists:seq(1, 16)],
        lists:foreach(
          fun(P) ->
                  receive {done, P, W, Rs} ->
                          ?assertEqual([W + I || I <- lists:seq(1, calls(W))], Rs)
                  after ?H:ms(60000) -> error({worker_timeout, P})
                  end
          end, Pids),
        FastDone = erlang:monotonic_time(millisecond) - T0,
        ?assertEqual(1000, lists:sum([calls(W) || W <- lists:seq(1, 16)])),
        %% the sleep is still running when all fast calls are done
        ?assertEqual(no_response, erpc:wait_response(Sleep, 0)),
        io:format("1000 fast calls in ~b ms~n", [FastDone]),
        %% give up on it: erpc kills the call, the handler stops early
        try erpc:receive_response(Sleep, 0) of
            V -> error({sleep_finished, V})
        catch error:{erpc, timeout} -> ok
        end,
        ?H:wait_until(fun() -> erpc:call(S, cnode_demo, cancelled, []) > Before end, 15000)
    end).

%% 16 workers share 1,000 calls: 62 each, the first 8 one more.
calls(W) when W =< 8 -> 63;
calls(_) -> 62.

%% Garbage to rex and to other names: dropped; the node keeps serving. A
%% well-formed gen_call with a bad request gets no answer or an error term
%% ({badrpc, _}, as BEAM's rex answers {call, "m", f, [], GL}), never
%% anything else: a good call sent after the garbage is answered, and then
%% every answer to the garbage's calls is checked.
garbage_to_rex(Config) ->
    ?H:run(Config, fun() ->
        S = serve(),
        ?assertEqual(3, erpc:call(S, cnode_demo, add, [1, 2])),
        Refs = [make_ref() || _ <- lists:seq(1, 4)],
        [R1, R2, R3, R4] = Refs,
        Garbage = [garbage, {}, {'$gen_call'}, {'$gen_call', not_a_from, x},
                   {'$gen_call', {self(), R1}, not_a_request},
                   {'$gen_call', {self(), R2}, {call, "m", f, [], x}},
                   {'$gen_call', {self(), R3}, {call, m, f, not_a_list, x}},
                   {'$gen_cast', {cast, m, f, improper_args, x}},
                   {call, m, f, [], x}, {cast, x}, <<"binary">>, lists:seq(1, 1000),
                   {'$gen_call', {not_a_pid, make_ref()}, {call, cnode_demo, add, [1, 2], x}},
                   {'$gen_call', {self(), R4}, {call, cnode_demo, add, [1, a], group_leader()}}],
        [{rex, S} ! G || G <- Garbage],
        [{Name, S} ! G || Name <- [no_such_name, net_kernel, erpc], G <- Garbage],
        Good = make_ref(),
        {rex, S} ! {'$gen_call', {self(), Good}, {call, cnode_demo, add, [2, 2], group_leader()}},
        receive {Good, GoodReply} -> ?assertEqual(4, GoodReply) after ?TMO -> error(no_answer_after_garbage) end,
        ?assertEqual(3, erpc:call(S, cnode_demo, add, [1, 2])),
        ?assertEqual(3, rpc:call(S, cnode_demo, add, [1, 2])),
        ?assertEqual(pong, net_adm:ping(S)),
        %% add(1, a) is a call that raises: rex answers it, with badrpc
        receive {R4, Reply4} -> ?assertMatch({badrpc, {'EXIT', {badarith, _}}}, Reply4)
        after ?TMO -> error(no_badrpc_for_a_raising_call)
        end,
        Msgs = cnode_harness:flush(),
        Answers = [{R, Reply} || {R, Reply} <- Msgs, lists:member(R, Refs)],
        io:format("rex answered ~p~n", [Answers]),
        ?assertEqual([], [A || {_, Reply} = A <- Answers, not is_error_term(Reply)])
    end).

is_error_term({badrpc, _}) -> true;
is_error_term({error, _}) -> true;
is_error_term(_) -> false.

%% erl_call (an ei client, using rex) against the C node; it honours
%% ERL_EPMD_PORT.
erl_call(Config) ->
    ?H:run(Config, fun() ->
        S = serve(),
        [Name, _] = string:split(atom_to_list(S), "@"),
        Exe = erl_call_exe(),
        Run = fun(Args) ->
                      H = ?H:start_os(erl_call, "erl_call", Exe,
                                      ["-sname", Name, "-c", ?H:cookie() | Args]),
                      St = ?H:wait_exit(H, 60000),
                      %% erl_call prints with spaces after commas
                      {St, string:trim(re:replace(?H:output_text(H), ",\\s+", ",",
                                                  [global, {return, list}]))}
              end,
        ?assertEqual({0, "3"}, Run(["-a", "cnode_demo add [1,2]"])),
        ?assertEqual({0, "{hello,[1,2,3]}"}, Run(["-a", "cnode_demo echo [{hello,[1,2,3]}]"])),
        {_, Out} = Run(["-a", "cnode_demo fail [oops]"]),
        ?assertMatch({match, _}, re:run(Out, "badrpc.*oops")),
        {_, Out2} = Run(["-a", "cnode_demo nope []"]),
        ?assertMatch({match, _}, re:run(Out2, "badrpc.*undef"))
    end).

erl_call_exe() ->
    case os:find_executable("erl_call") of
        false ->
            [Dir | _] = filelib:wildcard(filename:join([code:root_dir(), "lib", "erl_interface-*", "bin"])),
            filename:join(Dir, "erl_call");
        E -> E
    end.

%% The C node is killed (SIGKILL) while a call runs: {erpc, noconnection}.
killed_mid_call(Config) ->
    ?H:run(Config, fun() ->
        #{node := S} = H = ?H:start_serve(?H:unique("s")),
        Req = erpc:send_request(S, cnode_demo, sleep, [10000]),
        %% ordered after the sleep request on the same connection: once this
        %% answers, the sleep is running on the C side
        ?assertEqual(3, erpc:call(S, cnode_demo, add, [1, 2])),
        T0 = erlang:monotonic_time(millisecond),
        ?H:kill_os(H, "KILL"),
        try erpc:receive_response(Req, ?TMO) of
            V -> error({no_exception, V})
        catch error:{erpc, noconnection} -> ok
        end,
        ct:log("noconnection ~p ms after the kill", [erlang:monotonic_time(millisecond) - T0]),
        ?assertEqual(137, ?H:wait_exit(H, ?TMO)),
        try erpc:call(S, cnode_demo, add, [1, 2], 5000) of
            V2 -> error({no_exception, V2})
        catch error:{erpc, noconnection} -> ok
        end
    end).

%% SIGTERM: a running call still completes, then the node exits 0.
sigterm_drains(Config) ->
    ?H:run(Config, fun() ->
        #{node := S} = H = ?H:start_serve(?H:unique("s")),
        Req = erpc:send_request(S, cnode_demo, sleep, [1000]),
        ?assertEqual(3, erpc:call(S, cnode_demo, add, [1, 2])),
        ?H:kill_os(H, "TERM"),
        ?assertEqual(ok, erpc:receive_response(Req, ?TMO)),
        ?assertEqual(0, ?H:wait_exit(H, ?TMO))
    end).

short(T) ->
    case erts_debug:flat_size(T) > 200 of
        true -> {large_term, erlang:phash2(T), erts_debug:flat_size(T)};
        false -> T
    end.

%% A C handler raising error, throw and exit: the BEAM caller sees exactly what
%% it sees when a BEAM callee raises the same (erpc and rpc shapes).
raise_classes(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("raiser")),
        Beam = fun(error, R) -> erlang:error(R);
                  (throw, R) -> throw(R);
                  (exit, R) -> exit(R)
               end,
        lists:foreach(
          fun({Class, R}) ->
                  Got = catch_class(fun() -> erpc:call(T, cnode_test, raise, [Class, R]) end),
                  Want = catch_class(fun() -> erpc:call(node(), erlang, apply, [Beam, [Class, R]]) end),
                  ?assertEqual(strip_stack(Want), strip_stack(Got)),
                  RpcGot = rpc:call(T, cnode_test, raise, [Class, R]),
                  RpcWant = rpc:call(node(), erlang, apply, [Beam, [Class, R]]),
                  ?assertEqual(strip_stack(RpcWant), strip_stack(RpcGot))
          end,
          [{C, R} || C <- [error, throw, exit], R <- [boom, {a, [1, 2], #{k => <<"v">>}}]]),
        %% the error class carries the callee in its stacktrace
        try erpc:call(T, cnode_test, raise, [error, boom]) of
            V -> error({no_exception, V})
        catch error:{exception, boom, [{cnode_test, raise, [error, boom], _} | _]} -> ok
        end
    end).

catch_class(F) ->
    try F() of V -> {value, V}
    catch C:R -> {C, R}
    end.

%% Stacktraces differ between callees (BEAM's names erlang:apply, ours the C
%% function): compare classes and reasons, and that a stack is there.
strip_stack({error, {exception, R, [_ | _]}}) -> {error, {exception, R, stack}};
strip_stack({badrpc, {'EXIT', {R, [{_, _, _, _} | _]}}}) -> {badrpc, {'EXIT', {R, stack}}};
strip_stack(X) -> X.

%% Spawn requests a BEAM node would never send, from a fake peer after a real
%% handshake: an argument "list" that is not a list, an improper one, and a
%% huge argument list. Each gets a spawn reply and then a DOWN, or is dropped
%% with a log line; the node keeps serving, and the fake peer's connection
%% stays up for well-formed traffic.
bad_spawn_requests(Config) ->
    ?H:run(Config, fun() ->
        #{node := S} = H = ?H:start_serve(?H:unique("srv"), ["-v"]),
        Fake = ?H:unique("fake"),
        {ok, Sock} = ?H:fake_handshake(?H:dist_port(S), Fake, ?H:cookie()),
        From = binary_to_term(<<131, 88, 119, (length(Fake ++ "@" ++ ?H:host())),
                                (list_to_binary(Fake ++ "@" ++ ?H:host()))/binary, 1:32, 0:32, 1:32>>),
        Req = fun(Args) ->
                      R = make_ref(),
                      Ctl = {29, R, From, From, {erpc, execute_call, 4}, [monitor]},
                      ok = gen_tcp:send(Sock, ?H:frame([term_to_binary(Ctl), term_to_binary(Args)])),
                      R
              end,
        %% not a list, improper: refused
        R1 = Req(not_a_list),
        R2 = Req([make_ref(), cnode_demo, echo | improper]),
        %% a huge argument list for echo/1: served
        Big = lists:seq(1, 200000),
        RR = make_ref(),
        R3 = Req([RR, cnode_demo, echo, [Big]]),
        %% 100,000 arguments: no such function
        R4 = Req([make_ref(), cnode_demo, echo, Big]),
        Frames = frames(Sock, []),
        Outs = [{R, outcome(Frames, R)} || R <- [R1, R2, R3, R4]],
        ct:log("outcomes: ~p", [[{R, trim(O)} || {R, O} <- Outs]]),
        {_, O3} = lists:keyfind(R3, 1, Outs),
        {down, {RR, return, Big}} = O3,
        {_, O4} = lists:keyfind(R4, 1, Outs),
        {down, {_, error, undef, _}} = O4,
        %% the two malformed ones are refused with a spawn reply, as BEAM's
        %% erpc refuses an argument list that is not a proper list
        ?assertEqual({error, badarg}, element(2, lists:keyfind(R1, 1, Outs))),
        ?assertEqual({error, badarg}, element(2, lists:keyfind(R2, 1, Outs))),
        %% the node keeps serving, and says why it refused
        ?assertEqual(3, erpc:call(S, cnode_demo, add, [1, 2])),
        gen_tcp:close(Sock),
        ?H:wait_line(H, "malformed erpc request from " ++ Fake ++ "@", ?TMO)
    end).

%% Every packet the C node sends the fake peer until it has been quiet for
%% 3 s (the requests are answered in any order: undef at once, echo later).
frames(Sock, Acc) ->
    case ?H:recv_frame(Sock, 3000) of
        {error, _} -> lists:reverse(Acc);
        F -> frames(Sock, [F | Acc])
    end.

%% What the C node answered spawn request R with: {down, Reason} after a spawn
%% reply with a pid, {error, Atom} for a refusing spawn reply, {dropped}.
outcome(Frames, R) ->
    Spawned = [P || {{31, R1, _, _, P}, none} <- Frames, R1 =:= R, is_pid(P)],
    Refused = [E || {{31, R1, _, _, E}, none} <- Frames, R1 =:= R, is_atom(E)],
    Down = [Why || {{21, _, _, R1, Why}, none} <- Frames, R1 =:= R]
        ++ [Why || {{28, _, _, R1}, Why} <- Frames, R1 =:= R],
    case {Spawned, Refused, Down} of
        {[_], [], [Why]} -> {down, Why};
        {[], [E], []} -> {error, E};
        {[], [], []} -> {dropped};
        Other -> {unexpected, Other}
    end.

trim({down, {Ref, return, L}}) when is_list(L) -> {down, {Ref, return, {list, length(L)}}};
trim(O) -> O.
