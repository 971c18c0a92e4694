%%% The erpc client, seen from the BEAM side: `cnode call`/`cnode cast` and
%%% the C API (through erlang_test_harness/c_src/cnode_calltest.c) against
%%% real BEAM nodes, one of them running an Elixir module compiled here.
-module(erpc_client_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([all/0, init_per_suite/1, end_per_suite/1, init_per_testcase/2, end_per_testcase/2]).
-export([term_types/1, elixir_module/1, exceptions/1, timeout_fast/1, noconnection_fast/1,
         bad_input/1, cast_effect/1, inflight_10k/1, callbacks_10k/1, threads_8/1,
         late_reply_dropped/1, multicall/1, kill_with_1000_in_flight/1]).

-define(H, cnode_harness).

all() ->
    [term_types, elixir_module, exceptions, timeout_fast, noconnection_fast, bad_input,
     cast_effect, inflight_10k, callbacks_10k, threads_8, late_reply_dropped, multicall,
     kill_with_1000_in_flight].

init_per_suite(Config) ->
    Dir = ?config(priv_dir, Config),
    Ebin = string:trim(os:cmd("elixir -e 'IO.write :code.lib_dir(:elixir)'")) ++ "/ebin",
    Src = filename:join(Dir, "cnode_test_users.ex"),
    ok = file:write_file(Src,
        "defmodule CnodeTest.Users do\n"
        "  def get(id), do: %{id: id, name: \"user#{id}\"}\n"
        "  def boom(msg), do: raise(ArgumentError, msg)\n"
        "  def all(n), do: Enum.map(1..n, &get/1)\n"
        "end\n"),
    Out = os:cmd("cd " ++ Dir ++ " && elixirc -o " ++ Dir ++ " " ++ Src ++ " 2>&1; echo rc=$?"),
    ct:log("elixirc: ~s", [Out]),
    true = filelib:is_regular(filename:join(Dir, "Elixir.CnodeTest.Users.beam")),
    Config1 = ?H:init_per_suite(?MODULE, Config),
    [{elixir_args, ["-pa", Ebin, "-pa", Dir]} | Config1].

end_per_suite(Config) -> ?H:end_per_suite(Config).
init_per_testcase(TC, Config) -> ?H:init_per_testcase(TC, Config).
end_per_testcase(TC, Config) -> ?H:end_per_testcase(TC, Config).

%% A BEAM node with Elixir and the test module on its path.
beam(Config) ->
    Args = ?config(elixir_args, Config),
    ?H:start_peer(?H:unique("ec"), #{args => Args}).

call(Node, M, F, A) -> call(Node, M, F, A, []).
call(Node, M, F, A, Extra) ->
    ?H:run_cli(["--cookie", ?H:cookie()] ++ Extra ++ ["call", atom_to_list(Node), M, F, A]).

%% Every term type goes out as an argument and comes back as a result,
%% printed exactly as ~0p prints it.
term_types(Config) ->
    ?H:run(Config, fun() ->
        #{node := B} = beam(Config),
        Terms = [0, -1, 255, 256, -129, 2147483647, -2147483648, 1 bsl 64, -(1 bsl 100),
                 12345678901234567890123456789,
                 1.5, -0.0, 0.1, 1.0e-10, 1.0e20, 123456789.125,
                 atom, 'Quoted Atom', 'Elixir.MyApp.Users', '', true, 'élan',
                 <<>>, <<"ABC">>, <<1, 2, 3>>, <<"héllo"/utf8>>,
                 [], "abc", [1, 2, 3], [a | b], [[]], "with\nnewline",
                 {}, {a}, {a, {b, [c]}}, #{}, #{a => 1, <<"k">> => [v]},
                 #{{x, y} => #{z => 1.0}},
                 lists:seq(1, 300), list_to_binary(lists:duplicate(70000, $x)),
                 list_to_tuple(lists:seq(1, 300))],
        %% erlang:hd([T]) returns T: the argument list is [[T]]
        [begin
             %% characters: open_port passes them on as UTF-8
             Arg = lists:flatten(io_lib:format("~0tp", [[T]])),
             {0, Out} = call(B, "erlang", "hd", "[" ++ Arg ++ "]"),
             %% the CLI writes UTF-8; the port hands us its bytes
             Want = binary_to_list(unicode:characters_to_binary(io_lib:format("~0p~n", [T]))),
             Want =:= Out orelse ct:fail({printed, T, Out})
         end || T <- Terms],
        %% a large result: a 1 MB binary built remotely, printed as <<7,7,...>>
        {0, Big} = call(B, "binary", "copy", "[<<7>>, 1000000]"),
        2000004 = length(Big),
        "<<7,7,7," ++ _ = Big,
        ok
    end).

elixir_module(Config) ->
    ?H:run(Config, fun() ->
        #{node := B} = beam(Config),
        {0, "#{id => 7,name => <<\"user7\">>}\n"} = call(B, "Elixir.CnodeTest.Users", "get", "[7]"),
        %% the Elixir spelling of the module is accepted too
        {0, "#{id => 8,name => <<\"user8\">>}\n"} = call(B, "CnodeTest.Users", "get", "[8]"),
        {0, "<<\"ABC\">>\n"} = call(B, "Elixir.String", "upcase", "[<<\"abc\">>]"),
        {0, Many} = call(B, "CnodeTest.Users", "all", "[2000]"),
        true = length(Many) > 40000,
        %% an Elixir raise: class error, the exception struct as reason
        {1, Err} = call(B, "CnodeTest.Users", "boom", "[<<\"bad input\">>]"),
        match(Err, "Elixir.ArgumentError"),
        match(Err, "bad input"),
        ok
    end).

exceptions(Config) ->
    ?H:run(Config, fun() ->
        #{node := B} = beam(Config),
        {1, E1} = call(B, "erlang", "error", "[badarg]"),
        match(E1, "raised error: badarg"),
        match(E1, "stacktrace: ["),
        %% throw and exit carry no stacktrace, as in erpc
        {1, E2} = call(B, "erlang", "throw", "[{oops, 1}]"),
        match(E2, "raised throw: {oops,1}"),
        nomatch = string:find(E2, "stacktrace"),
        {1, E3} = call(B, "erlang", "exit", "[bye]"),
        match(E3, "raised exit: bye"),
        nomatch = string:find(E3, "stacktrace"),
        {1, E4} = call(B, "nosuch_module", "f", "[1]"),
        match(E4, "raised error: undef"),
        match(E4, "stacktrace: [{nosuch_module,f,[1],"),
        {1, E5} = call(B, "erlang", "/", "[1, 0]"),
        match(E5, "badarith"),
        ok
    end).

%% The CLI gives up after its --timeout: exit 4, "timeout". The remote call
%% sleeps a minute, so the only way to get exit 4 rather than 0 is that the
%% timeout fired first (the order of events; how long it took is only logged).
timeout_fast(Config) ->
    ?H:run(Config, fun() ->
        #{node := B} = beam(Config),
        T0 = erlang:monotonic_time(millisecond),
        {4, Err} = call(B, "timer", "sleep", "[60000]", ["--timeout", "300"]),
        Took = erlang:monotonic_time(millisecond) - T0,
        ct:log("timeout after ~p ms: ~s", [Took, Err]),
        match(Err, "timeout"),
        ok
    end).

noconnection_fast(Config) ->
    ?H:run(Config, fun() ->
        Missing = list_to_atom("nosuch@" ++ ?H:host()),
        {3, E1} = call(Missing, "erlang", "abs", "[-1]"),
        match(E1, "noconnection"),
        {3, _} = call('x@nosuch-host.invalid', "erlang", "abs", "[-1]"),
        ok
    end).

bad_input(Config) ->
    ?H:run(Config, fun() ->
        #{node := B} = beam(Config),
        [begin
             {2, E} = call(B, "erlang", "abs", A),
             ct:log("~s -> ~s", [A, E])
         end || A <- ["[-1", "notalist", "{1,2}", "[1,,2]", "<<\"x", "[a|]", ""]],
        {2, _} = call(nonode, "erlang", "abs", "[1]"),
        {2, _} = ?H:run_cli(["--cookie", ?H:cookie(), "call", atom_to_list(B), "erlang"]),
        ok
    end).

cast_effect(Config) ->
    ?H:run(Config, fun() ->
        #{node := B} = beam(Config),
        Self = self(),
        %% a registered process on B that forwards what it gets to us
        true = erpc:call(B, fun() ->
                                    register(cast_sink, spawn(fun() -> receive M -> Self ! {sink, M} end end))
                            end),
        {0, _} = ?H:run_cli(["--cookie", ?H:cookie(), "cast", atom_to_list(B), "erlang", "send",
                             "[cast_sink, {hello, <<\"cast\">>}]"]),
        receive {sink, {hello, <<"cast">>}} -> ok after ?H:ms(10000) -> ct:fail(no_cast) end
    end).

calltest(Config, Args) ->
    ?H:run(Config, fun() ->
        #{node := B} = beam(Config),
        Bin = ?H:prog_path("cnode_calltest"),
        H = ?H:start_os(calltest, "calltest", Bin, [?H:cookie(), atom_to_list(B) | Args]),
        Status = ?H:wait_exit(H, 120000),
        Out = ?H:output_text(H),
        ct:log("~s", [Out]),
        0 = Status,
        Out
    end).

inflight_10k(Config) ->
    "inflight sent=10000 good=10000" ++ _ = calltest(Config, ["inflight", "10000"]).

callbacks_10k(Config) ->
    "callback sent=10000 done=10000 good=10000" ++ _ = calltest(Config, ["callback", "10000"]).

threads_8(Config) ->
    "threads calls=80000 good=80000" ++ _ = calltest(Config, ["threads", "8", "10000"]).

%% The call times out (100 ms) while the remote still sleeps (400 ms): it
%% returns CNODE_ETIMEOUT (-4), so the timeout came first; the reply arrives
%% later and is dropped: the next call gets its own answer, and LSan (at the
%% program's exit) finds nothing left behind. How long the timeout took is
%% only logged (speed is for `make bench`).
late_reply_dropped(Config) ->
    Out = calltest(Config, ["late"]),
    {match, [Ms]} = re:run(Out, "late timeout=-4 next=0 ok after_ms=(\\d+)", [{capture, all_but_first, list}]),
    ct:log("the timed-out call returned after ~s ms", [Ms]).

kill_with_1000_in_flight(Config) ->
    ?H:run(Config, fun() ->
        #{node := B} = P = beam(Config),
        Bin = ?H:prog_path("cnode_calltest"),
        H = ?H:start_os(calltest, "killwait", Bin, [?H:cookie(), atom_to_list(B), "killwait", "1000"]),
        ?H:wait_line(H, "^SENT 1000", 60000),
        %% the spawn requests are out; give the BEAM node its processes, then kill it
        ?H:wait_until(fun() ->
                          try erpc:call(B, erlang, system_info, [process_count], 5000) > 1000
                          catch _:_ -> false end
                      end, 30000),
        ?H:kill_peer(P),
        0 = ?H:wait_exit(H, 60000),
        Out = ?H:output_text(H),
        ct:log("~s", [Out]),
        match(Out, "killwait sent=1000 noconnection=1000 other=0")
    end).

multicall(Config) ->
    ?H:run(Config, fun() ->
        #{node := B1} = beam(Config),
        #{node := B2} = beam(Config),
        Missing = "nosuch@" ++ ?H:host(),
        Bin = ?H:prog_path("cnode_calltest"),
        H = ?H:start_os(calltest, "multicall", Bin,
                        [?H:cookie(), atom_to_list(B1), "multicall", atom_to_list(B1),
                         atom_to_list(B2), Missing]),
        1 = ?H:wait_exit(H, 60000), % one node is missing
        Out = ?H:output_text(H),
        ct:log("~s", [Out]),
        match(Out, "multicall " ++ atom_to_list(B1) ++ " status=0 " ++ atom_to_list(B1)),
        match(Out, "multicall " ++ atom_to_list(B2) ++ " status=0 " ++ atom_to_list(B2)),
        match(Out, "multicall " ++ Missing ++ " status=-3"),
        ok
    end).

match(Text, Sub) ->
    case string:find(Text, Sub) of
        nomatch -> ct:fail({missing, Sub, Text});
        _ -> ok
    end.
