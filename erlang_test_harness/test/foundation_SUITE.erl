%%% Issue 3, "Tests that must pass", asserted from the BEAM side: every body
%%% runs on the driver node (see cnode_harness) and talks to the C test node
%%% (TESTNODE.md) with ordinary Erlang messages, monitors, links and signals.
-module(foundation_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([suite/0, all/0, init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).
-export([cli_ping_beam/1, beam_ping_cnode/1, cnode_ping_beam/1, simultaneous_connect/1,
         wrong_cookie_beam_to_c/1, wrong_cookie_c_to_beam/1,
         send_by_name_and_pid/1, golden_terms_echo/1, c_sends_to_beam/1,
         large_messages/1, many_messages_in_order/1, burst_c_to_beam/1,
         beam_monitors_c/1, beam_monitors_c_by_name/1, c_monitors_beam/1,
         c_monitors_beam_by_name/1, c_demonitor/1,
         link_beam_to_c/1, link_c_to_beam/1, unlink_c_side/1, unlink_beam_side/1,
         exit_signals_beam_to_c/1, exit_signals_c_to_beam/1,
         c_node_killed/1, beam_node_killed/1, peer_killed_during_burst/1,
         garbage_tcp/1, wrong_cookie_fake_peer/1, fake_peer_bad_frames/1,
         spawn_unknown_mfa/1, erpc_unknown_module/1]).

-define(H, cnode_harness).
-define(TMO, cnode_harness:ms(15000)).   % scaled by CNODE_TEST_TIME_SCALE

suite() ->
    [{timetrap, {seconds, ?H:ms(240000) div 1000}}].

all() ->
    [cli_ping_beam, beam_ping_cnode, cnode_ping_beam, simultaneous_connect,
     wrong_cookie_beam_to_c, wrong_cookie_c_to_beam,
     send_by_name_and_pid, golden_terms_echo, c_sends_to_beam,
     large_messages, many_messages_in_order, burst_c_to_beam,
     beam_monitors_c, beam_monitors_c_by_name, c_monitors_beam,
     c_monitors_beam_by_name, c_demonitor,
     link_beam_to_c, link_c_to_beam, unlink_c_side, unlink_beam_side,
     exit_signals_beam_to_c, exit_signals_c_to_beam,
     c_node_killed, beam_node_killed, peer_killed_during_burst,
     garbage_tcp, wrong_cookie_fake_peer, fake_peer_bad_frames,
     spawn_unknown_mfa, erpc_unknown_module].

init_per_suite(Config) -> ?H:init_per_suite(?MODULE, Config).
end_per_suite(Config) -> ?H:end_per_suite(Config).
init_per_testcase(TC, Config) -> ?H:init_per_testcase(TC, Config).
end_per_testcase(TC, Config) -> ?H:end_per_testcase(TC, Config).

%%% ---- ping, connections, cookies -------------------------------------

%% `cnode ping` of a BEAM node: pong, exit 0; options anywhere; pang, exit 1.
cli_ping_beam(Config) ->
    ?H:run(Config, fun() ->
        Me = atom_to_list(node()),
        ?assertEqual({0, "pong\n"}, ?H:run_cli(["ping", Me, "--cookie", ?H:cookie()])),
        ?assertEqual({0, "pong\n"}, ?H:run_cli(["--cookie", ?H:cookie(), "ping", Me])),
        Nobody = atom_to_list(?H:node_name(?H:unique("nobody"))),
        ?assertEqual({1, "pang\n"}, ?H:run_cli(["ping", Nobody, "--cookie", ?H:cookie()]))
    end).

%% net_adm:ping of the C node: pong; it is a hidden node.
beam_ping_cnode(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        ?assertEqual(pong, net_adm:ping(T)),
        ?assertEqual(pong, net_adm:ping(T)),
        ?assert(lists:member(T, nodes(hidden))),
        ?assertNot(lists:member(T, nodes())),
        ?assert(lists:member(T, nodes(connected))),
        %% the C side sees us
        ?assert(lists:member(node(), ?H:ctl(T, {nodes})))
    end).

%% The C node pings a BEAM node it has no connection to (it connects): pong;
%% the BEAM node then has it in nodes(hidden). An unknown node: pang.
cnode_ping_beam(Config) ->
    ?H:run(Config, fun() ->
        #{node := B} = ?H:start_peer(?H:unique("b")),
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        ?assertNot(lists:member(T, erpc:call(B, erlang, nodes, [connected]))),
        ?assertEqual(pong, ?H:ctl(T, {ping, B})),
        ?assert(lists:member(T, erpc:call(B, erlang, nodes, [hidden]))),
        ?assertNot(lists:member(T, erpc:call(B, erlang, nodes, []))),
        ?assertEqual(pang, ?H:ctl(T, {ping, ?H:node_name(?H:unique("nobody"))})),
        %% and the connection it made carries messages
        Echo = ?H:spawn_agent(T, self()),
        Me = self(),
        ?assertEqual({hello, B},
                     erpc:call(B, fun() -> Echo ! {echo, self(), {hello, node()}},
                                           receive M -> M after ?TMO -> timeout end
                                  end)),
        _ = Me
    end).

%% Both sides connect at the same moment: both pings answer pong and one
%% working connection remains (each side lists the other exactly once).
simultaneous_connect(Config) ->
    ?H:run(Config, fun() ->
        #{node := B} = ?H:start_peer(?H:unique("b")),
        lists:foreach(
          fun(_) ->
                  #{node := T} = ?H:start_testnode(?H:unique("t")),
                  A = ?H:spawn_agent(T, self()),
                  Ref = make_ref(),
                  %% both commands leave at once; the C ping and the BEAM ping race
                  {ctl, T} ! {call, self(), Ref, {ping, B}},
                  ReqId = erpc:send_request(B, net_adm, ping, [T]),
                  ?assertEqual(pong, erpc:receive_response(ReqId, ?TMO)),
                  receive {Ref, R} -> ?assertEqual(pong, R) after ?TMO -> tmo(c_ping) end,
                  ?assertEqual([T], [N || N <- erpc:call(B, erlang, nodes, [hidden]), N =:= T]),
                  ?H:wait_until(fun() -> [N || N <- ?H:ctl(T, {nodes}), N =:= B] =:= [B] end, 5000),
                  ?assertEqual({ok, B},
                               erpc:call(B, fun() -> A ! {echo, self(), {ok, node()}},
                                                     receive M -> M after ?TMO -> timeout end
                                            end))
          end, lists:seq(1, 3))
    end).

%% A BEAM node using the wrong cookie for the C node: pang; the C node keeps
%% serving the node already connected, and the right cookie works after.
wrong_cookie_beam_to_c(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = TN = ?H:start_testnode(?H:unique("t")),
        A = ?H:spawn_agent(T, self()),
        A ! {echo, self(), before},
        receive before -> ok after ?TMO -> tmo(before) end,
        #{node := B} = ?H:start_peer(?H:unique("b")),
        ?assertEqual(pang, erpc:call(B, fun() -> erlang:set_cookie(T, wrong_cookie),
                                                 net_adm:ping(T) end)),
        ?assertNot(lists:member(T, erpc:call(B, erlang, nodes, [connected]))),
        %% still serving us
        A ! {echo, self(), still_here},
        receive still_here -> ok after ?TMO -> tmo(still_here) end,
        ?assert(?H:os_alive(TN)),
        %% and B with the right cookie
        Cookie = list_to_atom(?H:cookie()),
        ?assertEqual(pong, erpc:call(B, fun() -> erlang:set_cookie(T, Cookie),
                                                 net_adm:ping(T) end))
    end).

%% A C node using the wrong cookie: `cnode ping` says pang (exit 1) with a
%% clear error; the BEAM node logs the rejected connection; a C test node with
%% the wrong cookie for B gets pang for B and keeps serving the node it shares
%% a cookie with.
wrong_cookie_c_to_beam(Config) ->
    ?H:run(Config, fun() ->
        LogId = ?H:capture_logs(),
        Me = atom_to_list(node()),
        {1, Out} = ?H:run_cli(["ping", Me, "--cookie", "wrong_cookie", "-vvv"]),
        ?assertMatch({match, _}, re:run(Out, "^pang$", [multiline])),
        %% the reason is logged at info level; at -v the ping error only says
        %% "cannot connect to NODE" (cnode_error.message is generic)
        ?assertMatch({match, _}, re:run(Out, "cookie", [caseless])),
        Logged = ?H:wait_until(
                   fun() ->
                           receive {cnode_harness_log, _, Text} ->
                                   case re:run(Text, "rejected|[Cc]onnection attempt|challenge") of
                                       {match, _} -> Text;
                                       nomatch -> false
                                   end
                           after 0 -> false
                           end
                   end, ?TMO),
        ct_log("BEAM logged: ~s", [Logged]),
        ?H:stop_capture_logs(LogId),
        %% a test node whose cookie only we know
        Cookie2 = ?H:unique("other"),
        #{node := T} = ?H:start_testnode(?H:unique("t"), #{cookie => Cookie2}),
        true = erlang:set_cookie(T, list_to_atom(Cookie2)),
        #{node := B} = ?H:start_peer(?H:unique("b")),
        ?assertEqual(pang, ?H:ctl(T, {ping, B})),
        ?assertNot(lists:member(T, erpc:call(B, erlang, nodes, [connected]))),
        A = ?H:spawn_agent(T, self()),
        A ! {echo, self(), still_serving},
        receive still_serving -> ok after ?TMO -> tmo(still_serving) end
    end).

%%% ---- messages --------------------------------------------------------

%% To a registered C process by {Name, Node} and to its pid: exact echo.
send_by_name_and_pid(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        {ok, A} = ?H:ctl(T, {spawn, echo1, self()}),
        ?assertEqual(T, node(A)),
        {echo1, T} ! {echo, self(), {by_name, 1}},
        receive {by_name, 1} = M1 -> ?assertEqual({by_name, 1}, M1) after ?TMO -> tmo(by_name) end,
        A ! {echo, self(), {by_pid, 2}},
        receive {by_pid, 2} -> ok after ?TMO -> tmo(by_pid) end,
        %% a name that is taken
        ?assertEqual({error, eexist}, ?H:ctl(T, {spawn, echo1, self()})),
        %% anything else goes to the owner, wrapped
        A ! not_an_echo,
        receive {cnode_msg, A, not_an_echo} -> ok after ?TMO -> tmo(cnode_msg) end
    end).

%% Every term type comes back exactly as sent, by name and by pid.
golden_terms_echo(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        {ok, A} = ?H:ctl(T, {spawn, golden, self()}),
        Terms = golden_terms(A),
        lists:foreach(
          fun({K, Term}) ->
                  [begin
                       Dest ! {echo, self(), {K, Term}},
                       receive
                           {K, Got} ->
                               Term =:= Got orelse
                                   error({echo_differs, K, How,
                                          {sent, short(Term)}, {got, short(Got)}})
                       after ?TMO -> tmo({echo, K, How})
                       end
                   end || {How, Dest} <- [{pid, A}, {name, {golden, T}}]]
          end, lists:zip(lists:seq(1, length(Terms)), Terms))
    end).

golden_terms(CPid) ->
    Deep = fun(N, F) -> lists:foldl(fun(I, Acc) -> F(I, Acc) end, [], lists:seq(1, N)) end,
    Captured = rand:uniform(1000),
    {DeadPid, DMRef} = spawn_monitor(fun() -> ok end),
    receive {'DOWN', DMRef, _, _, _} -> ok end,
    [0, 1, -1, 255, 256, -256, 1 bsl 27 - 1, -(1 bsl 27), 1 bsl 31, -(1 bsl 31) - 1,
     1 bsl 32, 1 bsl 63 - 1, -(1 bsl 63), 1 bsl 63, 1 bsl 64, -(1 bsl 64),
     12345678901234567890123456789, -98765432109876543210987654321,
     1 bsl 1000, -(1 bsl 2040) + 7,
     0.0, 1.5, -2.25e-300, 1.7976931348623157e308, 5.0e-324, -3.141592653589793,
     atom, '', 'UPPER', 'with space', 'héllo', '日本語', '😀',
     list_to_atom(lists:duplicate(255, $a)), list_to_atom(lists:duplicate(255, 16#1F600)),
     true, false, undefined,
     <<>>, <<1, 2, 3>>, <<"bin">>, binary:copy(<<0>>, 1000), <<1:3>>, <<255, 1:1>>,
     <<"abc", 5:7>>, <<0:1>>,
     "", "string", "ünïcödé", [1, 2, 3], [256, 1000, -1], [a | b], [1, 2 | 3], [[]],
     [<<>> | <<>>], [1.0 | 2.0], [{}],
     Deep(1000, fun(_, Acc) -> [Acc] end),
     Deep(1000, fun(I, Acc) -> {I, Acc} end),
     Deep(200, fun(I, Acc) -> #{I => Acc} end),
     {}, {a}, {1, 2, 3}, list_to_tuple(lists:seq(1, 300)),
     #{}, #{a => 1}, maps:from_list([{I, I * I} || I <- lists:seq(1, 33)]),
     maps:from_list([{integer_to_binary(I), [I]} || I <- lists:seq(1, 500)]),
     #{#{k => v} => [1], {t} => <<"v">>, [] => #{}, 1.0 => 1},
     self(), DeadPid, CPid, make_ref(), alias(), erlang:make_ref(),
     hd(erlang:ports()),
     fun() -> ok end, fun lists:map/2, fun(X) -> X + Captured end, fun erlang:self/0,
     {[#{a => <<1:1>>}], "x", 1.0, [self() | make_ref()]},
     rand:bytes(1 bsl 20)].

%% The C node sends to a BEAM pid, to {Name, Node} and to its own local names.
c_sends_to_beam(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        A = ?H:spawn_agent(T, self()),
        ?assertEqual(ok, ?H:ctl(T, {send, A, self(), {to_pid, 1}})),
        receive {to_pid, 1} -> ok after ?TMO -> tmo(to_pid) end,
        Name = list_to_atom(?H:unique("rx")),
        register(Name, self()),
        ?assertEqual(ok, ?H:ctl(T, {send, A, {Name, node()}, {to_name, 2}})),
        receive {to_name, 2} -> ok after ?TMO -> tmo(to_name) end,
        %% a local name on the C node: that agent echoes to us
        {ok, _} = ?H:ctl(T, {spawn, local_echo, self()}),
        ?assertEqual(ok, ?H:ctl(T, {send, A, local_echo, {echo, self(), {local, 3}}})),
        receive {local, 3} -> ok after ?TMO -> tmo(local) end,
        %% an unknown remote name is silently dropped, as on BEAM
        ?assertEqual(ok, ?H:ctl(T, {send, A, {no_such_name, node()}, lost})),
        ?assertEqual(ok, ?H:ctl(T, {send, A, self(), after_lost})),
        receive after_lost -> ok after ?TMO -> tmo(after_lost) end,
        receive lost -> error(lost_delivered) after 0 -> ok end
    end).

%% 10 MB binaries and a large list, both directions.
large_messages(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        A = ?H:spawn_agent(T, self()),
        Big = rand:bytes(10 * 1024 * 1024),
        A ! {echo, self(), {big, Big}},
        receive {big, B1} -> ?assert(B1 =:= Big) after ?H:ms(60000) -> tmo(big) end,
        List = lists:seq(1, 300000),
        A ! {echo, self(), {list, List}},
        receive {list, L1} -> ?assert(L1 =:= List) after ?H:ms(60000) -> tmo(list) end,
        %% C -> BEAM: three 10 MB binaries
        Size = 10 * 1024 * 1024,
        ?assertEqual(ok, ?H:ctl(T, {burst, A, self(), 3, Size})),
        recv_burst(3, Size, 60000),
        %% the connection is still fine
        A ! {echo, self(), small},
        receive small -> ok after ?TMO -> tmo(small) end
    end).

%% 20,000 messages arrive in the order sent, through the C process and back.
many_messages_in_order(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        {ok, A} = ?H:ctl(T, {spawn, seq_echo, self()}),
        N = 20000,
        [A ! {echo, self(), {seq, I}} || I <- lists:seq(1, N div 2)],
        [{seq_echo, T} ! {echo, self(), {seq, I}} || I <- lists:seq(N div 2 + 1, N)],
        lists:foreach(fun(I) ->
                              receive {seq, J} -> ?assertEqual(I, J)
                              after ?H:ms(60000) -> tmo({seq, I})
                              end
                      end, lists:seq(1, N))
    end).

%% The C side sends as fast as it can: all 20,000 arrive, by pid and by name.
burst_c_to_beam(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        A = ?H:spawn_agent(T, self()),
        ?assertEqual(ok, ?H:ctl(T, {burst, A, self(), 20000, 64})),
        recv_burst(20000, 64, 60000),
        Name = list_to_atom(?H:unique("rx")),
        register(Name, self()),
        ?assertEqual(ok, ?H:ctl(T, {burst, A, {Name, node()}, 2000, 1000})),
        recv_burst(2000, 1000, 60000)
    end).

recv_burst(Count, Size, Timeout) ->
    recv_burst(Count, Size, Timeout, 0, false).
recv_burst(Count, _Size, _Timeout, Count, true) -> ok;
recv_burst(Count, Size, Timeout, Got, Done) ->
    receive
        Bin when is_binary(Bin), byte_size(Bin) =:= Size, Got < Count ->
            recv_burst(Count, Size, Timeout, Got + 1, Done);
        {burst_done, Sent, Status} when not Done ->
            ?assertEqual({Count, ok}, {Sent, Status}),
            recv_burst(Count, Size, Timeout, Got, true)
    after Timeout -> tmo({burst, Count, got, Got, done, Done})
    end.

%%% ---- monitors ---------------------------------------------------------

%% BEAM monitors a C pid: DOWN with the exit reason; noproc once it is gone.
beam_monitors_c(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        A = ?H:spawn_agent(T, self()),
        MRef = monitor(process, A),
        ?assertEqual(ok, ?H:ctl(T, {exit, A, {shutdown, because}})),
        receive {'DOWN', MRef, process, A, R} -> ?assertEqual({shutdown, because}, R)
        after ?TMO -> tmo(down) end,
        M2 = monitor(process, A),
        receive {'DOWN', M2, process, A, R2} -> ?assertEqual(noproc, R2)
        after ?TMO -> tmo(down_noproc) end,
        %% normal exit
        A2 = ?H:spawn_agent(T, self()),
        M3 = monitor(process, A2),
        ?assertEqual(ok, ?H:ctl(T, {exit, A2, normal})),
        receive {'DOWN', M3, process, A2, R3} -> ?assertEqual(normal, R3)
        after ?TMO -> tmo(down_normal) end
    end).

%% BEAM monitors {Name, CNode}: DOWN names {Name, Node}; noproc for no name.
beam_monitors_c_by_name(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        {ok, A} = ?H:ctl(T, {spawn, watched, self()}),
        MRef = monitor(process, {watched, T}),
        ?assertEqual(ok, ?H:ctl(T, {exit, A, gone})),
        receive {'DOWN', MRef, process, Item, R} -> ?assertEqual({{watched, T}, gone}, {Item, R})
        after ?TMO -> tmo(down) end,
        M2 = monitor(process, {nobody_here, T}),
        receive {'DOWN', M2, process, Item2, R2} ->
                ?assertEqual({{nobody_here, T}, noproc}, {Item2, R2})
        after ?TMO -> tmo(down_noproc) end
    end).

%% The C side monitors a BEAM pid: DOWN with the reason; noproc for a dead pid.
c_monitors_beam(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        A = ?H:spawn_agent(T, self()),
        P = spawn(fun() -> receive {die, R} -> exit(R) end end),
        {ok, MRef} = ?H:ctl(T, {monitor, A, P}),
        %% the monitor exists on the BEAM side before P dies
        ?H:wait_until(fun() -> monitored_by(P, A) end, ?TMO),
        P ! {die, {boom, 1}},
        receive {cnode_msg, A, {'DOWN', MRef, process, P, R}} -> ?assertEqual({boom, 1}, R)
        after ?TMO -> tmo(c_down) end,
        {ok, M2} = ?H:ctl(T, {monitor, A, P}),
        receive {cnode_msg, A, {'DOWN', M2, process, P, R2}} -> ?assertEqual(noproc, R2)
        after ?TMO -> tmo(c_down_noproc) end,
        %% a pid that never existed on this node
        Fake = list_to_pid("<0.32767.8191>"),
        {ok, M3} = ?H:ctl(T, {monitor, A, Fake}),
        receive {cnode_msg, A, {'DOWN', M3, process, Fake, R3}} -> ?assertEqual(noproc, R3)
        after ?TMO -> tmo(c_down_fake) end
    end).

%% The C side monitors {Name, BeamNode}: DOWN names {Name, Node}; noproc.
c_monitors_beam_by_name(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        A = ?H:spawn_agent(T, self()),
        Name = list_to_atom(?H:unique("target")),
        P = spawn(fun() -> receive {die, R} -> exit(R) end end),
        register(Name, P),
        Me = node(),
        {ok, MRef} = ?H:ctl(T, {monitor, A, {Name, Me}}),
        ?H:wait_until(fun() -> monitored_by(P, A) end, ?TMO),
        P ! {die, named_boom},
        receive {cnode_msg, A, {'DOWN', MRef, process, Item, R}} ->
                ?assertEqual({{Name, Me}, named_boom}, {Item, R})
        after ?TMO -> tmo(c_down_name) end,
        {ok, M2} = ?H:ctl(T, {monitor, A, {no_such_name, Me}}),
        receive {cnode_msg, A, {'DOWN', M2, process, Item2, R2}} ->
                ?assertEqual({{no_such_name, Me}, noproc}, {Item2, R2})
        after ?TMO -> tmo(c_down_name_noproc) end
    end).

%% demonitor: no DOWN comes after the target dies; the BEAM side forgets it.
c_demonitor(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        A = ?H:spawn_agent(T, self()),
        P = spawn(fun() -> receive {die, R} -> exit(R) end end),
        {ok, MRef} = ?H:ctl(T, {monitor, A, P}),
        ?H:wait_until(fun() -> monitored_by(P, A) end, ?TMO),
        ?assertEqual(ok, ?H:ctl(T, {demonitor, A, MRef})),
        ?H:wait_until(fun() -> not monitored_by(P, A) end, ?TMO),
        PM = monitor(process, P),
        P ! {die, unseen},
        receive {'DOWN', PM, process, P, unseen} -> ok after ?TMO -> tmo(p_down) end,
        %% a round trip through the agent orders everything before it
        A ! {echo, self(), sync},
        receive sync -> ok after ?TMO -> tmo(sync) end,
        receive {cnode_msg, A, {'DOWN', MRef, _, _, _}} = M -> error({down_after_demonitor, M})
        after 0 -> ok
        end
    end).

monitored_by(P, A) ->
    case process_info(P, monitored_by) of
        {monitored_by, L} -> lists:member(A, L);
        undefined -> false
    end.

linked(P, A) ->
    case process_info(P, links) of
        {links, L} -> lists:member(A, L);
        undefined -> false
    end.

%%% ---- links and exit signals -------------------------------------------

%% BEAM links to C pids: exit reasons propagate; normal does not kill; a
%% link to a dead C pid gives noproc.
link_beam_to_c(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        Me = self(),
        %% trapping
        A1 = ?H:spawn_agent(T, self()),
        L1 = spawn_link_helper(Me, true, fun() -> link(A1) end),
        ?H:wait_until(fun() -> linked(L1, A1) end, ?TMO),
        ?assertEqual(ok, ?H:ctl(T, {exit, A1, boom})),
        receive {helper, L1, {'EXIT', A1, R1}} -> ?assertEqual(boom, R1)
        after ?TMO -> tmo(exit_trapped) end,
        %% not trapping: the BEAM process dies with the reason
        A2 = ?H:spawn_agent(T, self()),
        L2 = spawn_link_helper(Me, false, fun() -> link(A2) end),
        M2 = monitor(process, L2),
        ?H:wait_until(fun() -> linked(L2, A2) end, ?TMO),
        ?assertEqual(ok, ?H:ctl(T, {exit, A2, {boom, 2}})),
        receive {'DOWN', M2, process, L2, R2} -> ?assertEqual({boom, 2}, R2)
        after ?TMO -> tmo(exit_killed) end,
        %% normal does not kill a non-trapping linked process
        A3 = ?H:spawn_agent(T, self()),
        L3 = spawn_link_helper(Me, false, fun() -> link(A3) end),
        ?H:wait_until(fun() -> linked(L3, A3) end, ?TMO),
        AM3 = monitor(process, A3),
        ?assertEqual(ok, ?H:ctl(T, {exit, A3, normal})),
        receive {'DOWN', AM3, process, A3, normal} -> ok after ?TMO -> tmo(a3_down) end,
        ?H:wait_until(fun() -> not linked(L3, A3) end, ?TMO),
        ?assert(is_process_alive(L3)),
        %% link to a C pid that is gone
        L4 = spawn_link_helper(Me, true, fun() -> link(A1) end),
        receive {helper, L4, {'EXIT', A1, R4}} -> ?assertEqual(noproc, R4)
        after ?TMO -> tmo(exit_noproc) end
    end).

%% The C side links to BEAM pids: a non-trapping C process dies with the
%% reason; a trapping one gets {'EXIT', P, R}; its own exit reaches P.
link_c_to_beam(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        Me = self(),
        %% not trapping
        A1 = ?H:spawn_agent(T, self()),
        P1 = spawn(fun() -> receive {die, R} -> exit(R) end end),
        ?assertEqual(ok, ?H:ctl(T, {link, A1, P1})),
        ?H:wait_until(fun() -> linked(P1, A1) end, ?TMO),
        P1 ! {die, boom},
        receive {cnode_exited, A1, R1} -> ?assertEqual(boom, R1) after ?TMO -> tmo(c_exited) end,
        ?assertEqual(false, ?H:ctl(T, {is_alive, A1})),
        %% trapping
        A2 = ?H:spawn_agent(T, self()),
        ?assertEqual(ok, ?H:ctl(T, {trap_exit, A2, true})),
        P2 = spawn(fun() -> receive {die, R} -> exit(R) end end),
        ?assertEqual(ok, ?H:ctl(T, {link, A2, P2})),
        ?H:wait_until(fun() -> linked(P2, A2) end, ?TMO),
        P2 ! {die, {trapped, 2}},
        receive {cnode_msg, A2, {'EXIT', P2, R2}} -> ?assertEqual({trapped, 2}, R2)
        after ?TMO -> tmo(c_exit_msg) end,
        ?assertEqual(true, ?H:ctl(T, {is_alive, A2})),
        %% the C process's own exit reaches a linked, trapping BEAM process
        P3 = spawn_link_helper(Me, true, fun() -> ok end),
        ?assertEqual(ok, ?H:ctl(T, {link, A2, P3})),
        ?H:wait_until(fun() -> linked(P3, A2) end, ?TMO),
        ?assertEqual(ok, ?H:ctl(T, {exit, A2, c_side_reason})),
        receive {helper, P3, {'EXIT', A2, R3}} -> ?assertEqual(c_side_reason, R3)
        after ?TMO -> tmo(beam_exit_msg) end,
        %% a link to a dead BEAM pid: noproc to the trapping C process
        A4 = ?H:spawn_agent(T, self()),
        ok = ?H:ctl(T, {trap_exit, A4, true}),
        ?assertEqual(ok, ?H:ctl(T, {link, A4, P1})),
        receive {cnode_msg, A4, {'EXIT', P1, R4}} -> ?assertEqual(noproc, R4)
        after ?TMO -> tmo(c_exit_noproc) end
    end).

%% The C side unlinks (UNLINK_ID): the BEAM side drops the link, and an exit
%% of the former partner no longer propagates; a new link works again.
unlink_c_side(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        A = ?H:spawn_agent(T, self()),
        P = spawn(fun() -> receive {die, R} -> exit(R) end end),
        ok = ?H:ctl(T, {link, A, P}),
        ?H:wait_until(fun() -> linked(P, A) end, ?TMO),
        ?assertEqual(ok, ?H:ctl(T, {unlink, A, P})),
        ?H:wait_until(fun() -> not linked(P, A) end, ?TMO),
        PM = monitor(process, P),
        P ! {die, should_not_propagate},
        receive {'DOWN', PM, process, P, _} -> ok after ?TMO -> tmo(p_down) end,
        A ! {echo, self(), sync},
        receive sync -> ok after ?TMO -> tmo(sync) end,
        ?assertEqual(true, ?H:ctl(T, {is_alive, A})),
        receive {cnode_exited, A, _} = E -> error({exited_after_unlink, E}) after 0 -> ok end,
        %% link, unlink, link again: the last link holds
        P2 = spawn(fun() -> receive {die, R} -> exit(R) end end),
        ok = ?H:ctl(T, {link, A, P2}),
        ok = ?H:ctl(T, {unlink, A, P2}),
        ok = ?H:ctl(T, {link, A, P2}),
        ?H:wait_until(fun() -> linked(P2, A) end, ?TMO),
        P2 ! {die, relinked},
        receive {cnode_exited, A, R2} -> ?assertEqual(relinked, R2) after ?TMO -> tmo(relinked) end
    end).

%% The BEAM side unlinks: a later exit of the C process does not propagate.
unlink_beam_side(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        Me = self(),
        A = ?H:spawn_agent(T, self()),
        Ctl = spawn_link_helper(Me, false, fun() -> link(A) end),
        ?H:wait_until(fun() -> linked(Ctl, A) end, ?TMO),
        helper_do(Ctl, fun() -> unlink(A) end),
        ?assertNot(linked(Ctl, A)),
        AM = monitor(process, A),
        ok = ?H:ctl(T, {exit, A, should_not_propagate}),
        receive {'DOWN', AM, process, A, should_not_propagate} -> ok after ?TMO -> tmo(a_down) end,
        %% a round trip to the C node after the exit: nothing is in flight
        ?assertEqual(false, ?H:ctl(T, {is_alive, A})),
        ?assert(is_process_alive(Ctl))
    end).

%% exit/2 from BEAM to C processes: normal ignored, a reason kills, trapping
%% turns it into a message, kill kills even a trapping process (killed).
exit_signals_beam_to_c(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        A1 = ?H:spawn_agent(T, self()),
        exit(A1, normal),
        A1 ! {echo, self(), sync1},
        receive sync1 -> ok after ?TMO -> tmo(sync1) end,
        ?assertEqual(true, ?H:ctl(T, {is_alive, A1})),
        M1 = monitor(process, A1),
        exit(A1, foo),
        receive {cnode_exited, A1, R1} -> ?assertEqual(foo, R1) after ?TMO -> tmo(exited_foo) end,
        receive {'DOWN', M1, process, A1, foo} -> ok after ?TMO -> tmo(down_foo) end,
        %% trapping
        A2 = ?H:spawn_agent(T, self()),
        ok = ?H:ctl(T, {trap_exit, A2, true}),
        Me = self(),
        exit(A2, bar),
        receive {cnode_msg, A2, {'EXIT', Me, R2}} -> ?assertEqual(bar, R2)
        after ?TMO -> tmo(trapped_bar) end,
        M2 = monitor(process, A2),
        exit(A2, kill),
        receive {cnode_exited, A2, R3} -> ?assertEqual(killed, R3) after ?TMO -> tmo(killed) end,
        receive {'DOWN', M2, process, A2, R4} -> ?assertEqual(killed, R4) after ?TMO -> tmo(down_killed) end,
        %% kill on a non-trapping process
        A3 = ?H:spawn_agent(T, self()),
        exit(A3, kill),
        receive {cnode_exited, A3, R5} -> ?assertEqual(killed, R5) after ?TMO -> tmo(killed3) end
    end).

%% exit/2 from a C process to BEAM processes, the same four cases.
exit_signals_c_to_beam(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        Me = self(),
        A = ?H:spawn_agent(T, self()),
        P1 = spawn(fun() -> receive _ -> ok end end),
        M1 = monitor(process, P1),
        ?assertEqual(ok, ?H:ctl(T, {exit_signal, A, P1, {bar, 1}})),
        receive {'DOWN', M1, process, P1, R1} -> ?assertEqual({bar, 1}, R1) after ?TMO -> tmo(p1) end,
        P2 = spawn_link_helper(Me, true, fun() -> ok end),
        ?assertEqual(ok, ?H:ctl(T, {exit_signal, A, P2, bar2})),
        receive {helper, P2, {'EXIT', A, R2}} -> ?assertEqual(bar2, R2) after ?TMO -> tmo(p2) end,
        M2 = monitor(process, P2),
        ?assertEqual(ok, ?H:ctl(T, {exit_signal, A, P2, kill})),
        receive {'DOWN', M2, process, P2, R3} -> ?assertEqual(killed, R3) after ?TMO -> tmo(p2k) end,
        P4 = spawn(fun() -> receive _ -> ok end end),
        ?assertEqual(ok, ?H:ctl(T, {exit_signal, A, P4, normal})),
        %% the signal is ordered before the C process's next message to us
        ok = ?H:ctl(T, {send, A, self(), after_normal}),
        receive after_normal -> ok after ?TMO -> tmo(after_normal) end,
        ?assert(is_process_alive(P4)),
        exit(P4, kill)
    end).

%% A helper process linked to Owner's helper set: optionally trapping, runs
%% Init, forwards every message it gets as {helper, self(), Msg}; runs funs
%% sent with helper_do/2.
spawn_link_helper(Owner, Trap, Init) ->
    Ref = make_ref(),
    P = spawn(fun() ->
                      process_flag(trap_exit, Trap),
                      Init(),
                      Owner ! {Ref, ready},
                      helper_loop(Owner)
              end),
    receive {Ref, ready} -> P after ?TMO -> tmo(helper_ready) end.

helper_loop(Owner) ->
    receive
        {helper_do, From, Ref, F} -> From ! {Ref, F()};
        M -> Owner ! {helper, self(), M}
    end,
    helper_loop(Owner).

helper_do(P, F) ->
    Ref = make_ref(),
    P ! {helper_do, self(), Ref, F},
    receive {Ref, R} -> R after ?TMO -> tmo(helper_do) end.

%%% ---- connection loss ---------------------------------------------------

%% kill -9 of the C node: nodedown, DOWN and EXIT with noconnection.
c_node_killed(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = TN = ?H:start_testnode(?H:unique("t")),
        Me = self(),
        A = ?H:spawn_agent(T, self()),
        MRef = monitor(process, A),
        L = spawn_link_helper(Me, true, fun() -> link(A) end),
        ?H:wait_until(fun() -> linked(L, A) end, ?TMO),
        true = monitor_node(T, true),
        T0 = erlang:monotonic_time(millisecond),
        ?H:kill_os(TN, "KILL"),
        receive {nodedown, T} -> ok after ?TMO -> tmo(nodedown) end,
        receive {'DOWN', MRef, process, A, R} -> ?assertEqual(noconnection, R)
        after ?TMO -> tmo(down) end,
        receive {helper, L, {'EXIT', A, R2}} -> ?assertEqual(noconnection, R2)
        after ?TMO -> tmo(exit) end,
        ct_log("nodedown, DOWN and EXIT ~b ms after kill -9",
               [erlang:monotonic_time(millisecond) - T0]),
        ?assertEqual(137, ?H:wait_exit(TN, ?TMO)),
        ?assertNot(lists:member(T, nodes(connected))),
        ?assertEqual(pang, net_adm:ping(T))
    end).

%% kill -9 of a BEAM node: the C side reports nodedown, its monitors get
%% DOWN noconnection and its links EXIT noconnection. Nothing of that before
%% the kill; all of it after (each under a deadline, no speed asserted: the
%% time is logged); the linked agent that does not trap exits is gone after
%% its exit was reported; B leaves the C node's node list.
beam_node_killed(Config) ->
    ?H:run(Config, fun() ->
        #{node := B} = BH = ?H:start_peer(?H:unique("b")),
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        ok = ?H:ctl(T, {subscribe_nodes}),
        P = erpc:call(B, erlang, spawn, [timer, sleep, [infinity]]),
        A1 = ?H:spawn_agent(T, self()),
        ok = ?H:ctl(T, {trap_exit, A1, true}),
        {ok, MRef} = ?H:ctl(T, {monitor, A1, P}),
        ok = ?H:ctl(T, {link, A1, P}),
        A2 = ?H:spawn_agent(T, self()),
        ok = ?H:ctl(T, {link, A2, P}),
        ?H:wait_until(fun() ->
                              {links, Ls} = erpc:call(B, erlang, process_info, [P, links]),
                              {monitored_by, Ms} = erpc:call(B, erlang, process_info, [P, monitored_by]),
                              lists:member(A1, Ls) andalso lists:member(A2, Ls)
                                  andalso lists:member(A1, Ms)
                      end, ?TMO),
        receive {cnode_nodeup, B} -> ok after ?TMO -> tmo(nodeup) end,
        Expect = [{cnode_nodedown, B},
                  {cnode_msg, A1, {'DOWN', MRef, process, P, noconnection}},
                  {cnode_msg, A1, {'EXIT', P, noconnection}},
                  {cnode_exited, A2, noconnection}],
        %% order: none of it before the kill
        [receive E -> error({before_kill, E}) after 0 -> ok end || E <- Expect],
        ?assert(?H:ctl(T, {is_alive, A2})),
        ?H:kill_peer(BH),
        T0 = erlang:monotonic_time(millisecond),
        Seen = [receive E -> {E, erlang:monotonic_time(millisecond) - T0}
                after ?TMO -> error({not_seen, E, cnode_harness:flush()})
                end || E <- Expect],
        ct_log("C side after kill -9 of ~p (ms): ~p", [B, [{element(1, E), Ms} || {E, Ms} <- Seen]]),
        %% order: the non-trapping agent reported its exit, so it is gone
        ?assertNot(?H:ctl(T, {is_alive, A2})),
        ?assert(?H:ctl(T, {is_alive, A1})),
        ?H:wait_until(fun() -> not lists:member(B, ?H:ctl(T, {nodes})) end, ?TMO)
    end).

%% The test node keeps default SIGPIPE handling: a BEAM peer killed during
%% a burst of writes to it does not kill it; the burst ends, the node serves.
%% The kill lands mid-burst, which the order of events proves: the sink had
%% received part of the burst, no more, when B died (its last count is below
%% the burst's), and burst_done came after the kill. The burst is at most
%% 200,000 x 1 kB = 200 MB, and the waits (30 + 60 + 15 s) fit the 150 s limit.
peer_killed_during_burst(Config) ->
    Count = 200000,
    ?H:run(Config, fun() ->
        #{node := B} = BH = ?H:start_peer(?H:unique("b")),
        #{node := T} = TN = ?H:start_testnode(?H:unique("t")),
        Me = self(),
        Sink = erpc:call(B, erlang, spawn, [fun() -> sink(Me, 0) end]),
        A = ?H:spawn_agent(T, self()),
        ok = ?H:ctl(T, {burst, A, Sink, Count, 1000}),
        N0 = receive {sink_got, Sink, N} when N >= 1000 -> N after ?H:ms(30000) -> tmo(sink) end,
        receive {burst_done, _, _} = Early -> error({burst_over_before_kill, Early}) after 0 -> ok end,
        ?H:kill_peer(BH),
        receive {burst_done, Sent, Status} ->
                %% the sink counts in thousands: its last count is what it had
                Got = lists:max([N0 | [K || {sink_got, S, K} <- cnode_harness:flush(), S =:= Sink]]),
                ct_log("sink had ~b messages when killed; the burst ended after ~b of ~b: ~p",
                       [Got, Sent, Count, Status]),
                ?assert(Got < Count),
                ?assert(Sent =< Count)
        after ?H:ms(60000) -> tmo(burst_done)
        end,
        ?assert(?H:os_alive(TN)),
        %% the I/O thread closes the connection on its own time: wait for it
        ?H:wait_until(fun() -> not lists:member(B, ?H:ctl(T, {nodes})) end, ?TMO),
        A ! {echo, self(), alive},
        receive alive -> ok after ?TMO -> tmo(alive) end
    end).

sink(Owner, N) ->
    receive _ ->
            N1 = N + 1,
            N1 rem 1000 =:= 0 andalso (Owner ! {sink_got, self(), N1}),
            sink(Owner, N1)
    end.

%%% ---- bad input -----------------------------------------------------------

%% Raw TCP clients sending garbage, truncated and oversized handshake data:
%% the C node drops every one of them and keeps serving. A client that sends
%% nothing, an empty message or part of one is dropped when its handshake
%% time runs out (handshake_ms, 7 s); the others at once. Each is awaited
%% under a deadline; the slow ones side by side.
garbage_tcp(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = TN = ?H:start_testnode(?H:unique("t")),
        A = ?H:spawn_agent(T, self()),
        Port = ?H:dist_port(T),
        Connect = fun(Bytes) ->
                          {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}], 5000),
                          _ = gen_tcp:send(S, Bytes),
                          S
                  end,
        Slow = [{What, Connect(Bytes)}
                || {What, Bytes} <- [{zero_length, <<0:16>>},
                                     {huge_length, <<16#FFFF:16, (rand:bytes(100))/binary>>},
                                     {nothing, <<>>}]],
        Cases = [{garbage, rand:bytes(4096)},
                 {bad_tag, <<10:16, $Z, 0:72>>},
                 {short_name_msg, <<5:16, $N, 1, 2, 3, 4>>},
                 {http, <<"GET / HTTP/1.1\r\nHost: x\r\n\r\n">>},
                 {megabyte, rand:bytes(1 bsl 20)}],
        lists:foreach(
          fun({What, Bytes}) ->
                  S = Connect(Bytes),
                  ?assertEqual({What, closed}, {What, ?H:await_close(S, ?TMO)}),
                  gen_tcp:close(S),
                  A ! {echo, self(), {still, What}},
                  receive {still, What} -> ok after ?TMO -> tmo({still, What}) end
          end, Cases),
        %% the slow ones: the handshake deadline (7 s) drops them
        [?assertEqual({What, closed}, {What, ?H:await_close(S, ?TMO)}) || {What, S} <- Slow],
        [gen_tcp:close(S) || {_, S} <- Slow],
        A ! {echo, self(), still_after_slow},
        receive still_after_slow -> ok after ?TMO -> tmo(still_after_slow) end,
        %% many connections at once, closed without a word
        Socks = [S || _ <- lists:seq(1, 50),
                      {ok, S} <- [gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}], 5000)]],
        [gen_tcp:close(S) || S <- Socks],
        ?assertEqual(pong, net_adm:ping(T)),
        ?assert(?H:os_alive(TN)),
        ?assert(lists:member(node(), ?H:ctl(T, {nodes})))
    end).

%% A fake peer doing the real handshake with a wrong cookie is refused (no
%% ack, connection closed); with the right cookie it is accepted.
wrong_cookie_fake_peer(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        A = ?H:spawn_agent(T, self()),
        Port = ?H:dist_port(T),
        ?assertMatch({error, _}, ?H:fake_handshake(Port, ?H:unique("fake"), "wrong_cookie")),
        {ok, S} = ?H:fake_handshake(Port, ?H:unique("fake"), ?H:cookie()),
        gen_tcp:close(S),
        A ! {echo, self(), still},
        receive still -> ok after ?TMO -> tmo(still) end
    end).

%% After a valid handshake, malformed, truncated and oversized frames: that
%% connection is dropped, the node keeps serving, and logs a reason.
fake_peer_bad_frames(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = TN = ?H:start_testnode(?H:unique("t")),
        A = ?H:spawn_agent(T, self()),
        Port = ?H:dist_port(T),
        Ctl = term_to_binary({6, ?H:fake_pid(), '', ctl}),          % REG_SEND to ctl
        Frames =
            [{bad_pass_through, <<3:32, 111, 1, 2>>},
             {truncated_term, <<6:32, 112, 131, 104, 9, 100, 0>>},
             {not_a_term, <<4:32, 112, 131, 255, 255>>},
             {oversized_length, <<16#7FFFFFF0:32, 112, (rand:bytes(1000))/binary>>},
             {unknown_control_op, ?H:frame([term_to_binary({999, x, y})])},
             {control_not_tuple, ?H:frame([term_to_binary(just_an_atom)])},
             {send_missing_message, ?H:frame([Ctl])},
             {send_garbage_message, ?H:frame([Ctl, <<131, 200, 1, 2, 3>>])},
             {send_truncated_message, ?H:frame([Ctl, binary:part(term_to_binary({a, lists:seq(1, 100)}), 0, 40)])},
             {huge_atom_in_control, ?H:frame([<<131, 104, 2, 97, 6, 118, 255, 255, 1, 2>>])}],
        lists:foreach(
          fun({What, Bytes}) ->
                  Fake = ?H:unique("fake"),
                  {ok, S} = ?H:fake_handshake(Port, Fake, ?H:cookie()),
                  ok = gen_tcp:send(S, <<0:32>>),                 % a tick is fine
                  _ = gen_tcp:send(S, Bytes),
                  ?assertEqual({What, closed}, {What, ?H:await_close(S, ?TMO)}),
                  gen_tcp:close(S),
                  %% the drop is logged with its reason
                  {match, [Reason]} = ?H:wait_line(TN, "dropping connection to " ++ Fake ++ "@\\S+: (.+)", ?TMO),
                  ct_log("~p: ~s", [What, Reason]),
                  A ! {echo, self(), {still, What}},
                  receive {still, What} -> ok after ?TMO -> tmo({still, What}) end
          end, Frames),
        %% a well-formed message from the fake peer still reaches ctl
        {ok, S2} = ?H:fake_handshake(Port, ?H:unique("fake"), ?H:cookie()),
        ok = gen_tcp:send(S2, ?H:frame([Ctl, term_to_binary(not_a_call)])),
        A ! {echo, self(), last},
        receive last -> ok after ?TMO -> tmo(last) end,
        gen_tcp:close(S2),
        ?assert(?H:os_alive(TN)),
        Out = ?H:output_text(TN),
        ct_log("test node output:~n~s", [Out])
    end).

%%% ---- spawn requests ----------------------------------------------------

%% spawn/4 of an unknown MFA on the C node: a pid on that node, which exits
%% with {undef, [{M, F, A, []}]} as on BEAM.
spawn_unknown_mfa(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        {P, MRef} = spawn_monitor(T, no_such_module, no_fun, [1, 2]),
        ?assertEqual(T, node(P)),
        receive {'DOWN', MRef, process, P, R} ->
                ct_log("spawned process exited with ~p", [R]),
                is_undef(R, no_such_module, no_fun, [1, 2]) orelse error({not_undef, R})
        after ?TMO -> tmo(spawn_down) end,
        Me = self(),
        L = spawn_link_helper(Me, true, fun() -> ok end),
        P2 = helper_do(L, fun() -> spawn_link(T, no_such_module, other, []) end),
        ?assertEqual(T, node(P2)),
        receive {helper, L, {'EXIT', P2, R2}} -> is_undef(R2, no_such_module, other, []) orelse error({not_undef, R2})
        after ?TMO -> tmo(spawn_link_exit) end,
        P3 = spawn(T, no_such_module, third, []),
        ?assert(is_pid(P3)),
        ?assertEqual(T, node(P3))
    end).

%% BEAM's shape for a spawned process whose function does not exist
is_undef({undef, [{M, F, A, _} | _]}, M, F, A) -> true;
is_undef(_, _, _, _) -> false.

%% erpc:call of an unregistered module raises {exception, undef, [{M,F,A,_}|_]}.
erpc_unknown_module(Config) ->
    ?H:run(Config, fun() ->
        #{node := T} = ?H:start_testnode(?H:unique("t")),
        try erpc:call(T, no_such_module, f, [1], ?TMO) of
            V -> error({unexpected_value, V})
        catch error:{exception, undef, [{no_such_module, f, [1], _} | _]} -> ok
        end,
        %% an erlang function the node does not serve stays undef (node/0 is one of the
        %% built-ins every member answers: builtins_SUITE)
        try erpc:call(T, erlang, halt, [], ?TMO) of
            V2 -> error({unexpected_value, V2})
        catch error:{exception, undef, [{erlang, halt, [], _} | _]} -> ok
        end,
        ?assertEqual(T, erpc:call(T, erlang, node, [], ?TMO)),
        %% the node is fine after
        ?assertEqual(pong, net_adm:ping(T))
    end).

%%% ---- helpers --------------------------------------------------------------

tmo(What) ->
    error({timeout, What, {mailbox, short(cnode_harness:flush())}}).

short(T) ->
    case erts_debug:flat_size(T) > 200 of
        true -> {large_term, erlang:phash2(T), erts_debug:flat_size(T)};
        false -> T
    end.

%% ct:log does not exist on the driver: io goes to the peer's origin.
ct_log(Fmt, Args) ->
    io:format(Fmt ++ "~n", Args).
