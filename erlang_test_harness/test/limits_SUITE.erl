%%% The limits a peer can reach on a serving C node, seen from the BEAM side:
%%% served calls in flight (limits.served_in_flight), undecodable requests,
%%% and the mailbox of a C process (limits.mailbox_len).
%%%
%%% Deadlines are generous (the C nodes run under ASan on a shared machine)
%%% and scaled by the environment variable CNODE_TEST_TIME_SCALE if set; they
%%% bound waits, they do not measure speed.
-module(limits_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([suite/0, all/0, init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).
-export([flood/1, system_limit_shapes/1, undecodable_float/1, undef_spawn/1, mailbox_limit/1]).

-define(H, cnode_harness).

suite() ->
    [{timetrap, {minutes, 6}}].

all() ->
    [system_limit_shapes, undecodable_float, undef_spawn, flood, mailbox_limit].

init_per_suite(Config) -> ?H:init_per_suite(?MODULE, Config).
end_per_suite(Config) -> ?H:end_per_suite(Config).
init_per_testcase(TC, Config) -> ?H:init_per_testcase(TC, Config).
end_per_testcase(TC, Config) -> ?H:end_per_testcase(TC, Config).

%% A deadline in ms, scaled by CNODE_TEST_TIME_SCALE.
ms(Base) ->
    Scale = case os:getenv("CNODE_TEST_TIME_SCALE") of
                false -> 1.0;
                S -> try list_to_float(S) catch _:_ -> float(list_to_integer(S)) end
            end,
    round(Base * Scale).

%%% ---- served_in_flight -------------------------------------------------------

%% Past served_in_flight a call gets what a BEAM caller gets from a BEAM node
%% whose spawn fails with system_limit: erpc raises error {erpc, system_limit},
%% rpc and the rex protocol answer {badrpc, {'EXIT', system_limit}}, casts
%% return as usual. The reference shapes come from a real BEAM node whose
%% process table is full (+P 1024).
system_limit_shapes(Config) ->
    ?H:run(Config, fun() ->
        %% BEAM: fill the peer's process table, then call it
        #{node := B} = ?H:start_peer(?H:unique("full"), #{args => ["+P", "1024"]}),
        ok = erpc:call(B, fun() -> true = register(filler, spawn(fun() -> filler([]) end)), ok end),
        Filled = filler(B, fill),
        io:format("BEAM peer: process table full after ~b spawns~n", [Filled]),
        Want = shapes(B),
        filler(B, release),
        io:format("BEAM's shapes: ~p~n", [Want]),
        ?assertMatch({{error, {erpc, system_limit}}, {badrpc, {'EXIT', system_limit}},
                      {badrpc, {'EXIT', system_limit}}, ok, true}, Want),
        %% ours: two sleeps fill served_in_flight=2; requests on the same
        %% connection are handled in order, so the calls below find it full
        #{node := S} = ?H:start_serve(?H:unique("lim"), ["--limit", "served_in_flight=2"]),
        ?assertEqual(3, erpc:call(S, cnode_demo, add, [1, 2], ms(15000))),
        Sleeps = [erpc:send_request(S, cnode_demo, sleep, [ms(3000)]) || _ <- [1, 2]],
        Got = shapes(S),
        io:format("our shapes: ~p~n", [Got]),
        ?assertEqual(Want, Got),
        %% the admitted calls complete; then there is room again
        [?assertEqual(ok, erpc:receive_response(R, ms(30000))) || R <- Sleeps],
        ?assertEqual(3, erpc:call(S, cnode_demo, add, [1, 2], ms(15000))),
        ?assertEqual(3, rpc:call(S, cnode_demo, add, [1, 2], ms(15000)))
    end).

%% erpc:call, rpc:call, a rex gen_server call, erpc:cast, rpc:cast.
shapes(N) ->
    GL = group_leader(),
    {try erpc:call(N, erlang, node, [], ms(15000)) of V -> {value, V} catch C:R -> {C, R} end,
     rpc:call(N, erlang, node, [], ms(15000)),
     gen_server:call({rex, N}, {call, erlang, node, [], GL}, ms(15000)),
     erpc:cast(N, erlang, node, []),
     rpc:cast(N, erlang, node, [])}.

%% A process registered as `filler` on the +P 1024 peer: on `fill` it spawns
%% sleepers until spawn raises system_limit (asked by message, so no process
%% of ours frees a slot after the table is full), on `release` kills them.
filler(B, Cmd) ->
    {filler, B} ! {Cmd, self()},
    receive {filler, N} -> N after ms(30000) -> error({filler_timeout, Cmd}) end.

filler(Pids) ->
    receive
        {fill, From} ->
            More = fill(Pids),
            From ! {filler, length(More)},
            filler(More);
        {release, From} ->
            [exit(P, kill) || P <- Pids],
            From ! {filler, 0},
            filler([])
    end.

fill(Pids) ->
    try spawn(fun() -> receive stop -> ok end end) of
        P -> fill([P | Pids])
    catch error:system_limit -> Pids
    end.

%% 250,000 rex casts and 250,000 erpc spawn requests from a fake peer, as fast
%% as the socket takes them, at served_in_flight=64: pings and calls from
%% this node keep being answered while it runs (a call may be refused with
%% system_limit, never left unanswered), the node's RSS stays bounded, and
%% SIGTERM stops it promptly afterwards.
flood(Config) ->
    ?H:run(Config, fun() ->
        #{node := S} = H = serve_small_quarantine(?H:unique("fl"), ["--limit", "served_in_flight=64"]),
        ?assertEqual(3, erpc:call(S, cnode_demo, add, [1, 2], ms(15000))),
        Rss0 = rss_kb(H),
        Fake = ?H:unique("flooder"),
        {ok, Sock} = ?H:fake_handshake(?H:dist_port(S), Fake, ?H:cookie()),
        From = fake_pid(Fake),
        Me = self(),
        Reader = spawn_link(fun() -> drain(Sock, Me, <<>>, 0) end),
        ToRex = term_to_binary({6, From, '', rex}),
        Cast = ?H:frame([ToRex, term_to_binary({'$gen_cast', {cast, cnode_demo, echo, [1], From}})]),
        Spawn = ?H:frame([term_to_binary({29, make_ref(), From, From, {erpc, execute_call, 4}, [monitor]}),
                          term_to_binary([make_ref(), cnode_demo, echo, [1]])]),
        %% a last call on the same connection: its answer (or refusal) comes after the whole flood
        Last = ?H:frame([ToRex, term_to_binary({'$gen_call', {From, flood_end_marker},
                                                {call, cnode_demo, add, [1, 2], From}})]),
        T0 = erlang:monotonic_time(millisecond),
        spawn_link(fun() ->
                           [ok = gen_tcp:send(Sock, binary:copy(Cast, 5000)) || _ <- lists:seq(1, 50)],
                           [ok = gen_tcp:send(Sock, binary:copy(Spawn, 5000)) || _ <- lists:seq(1, 50)],
                           ok = gen_tcp:send(Sock, Last)
                   end),
        Probes = probe_until_done(S, H, []),
        io:format("flood handled in ~b ms; ~b probes meanwhile: ~p~n",
                  [erlang:monotonic_time(millisecond) - T0, length(Probes), Probes]),
        ?assert(length(Probes) >= 1),
        [?assertEqual(pong, Ping) || {Ping, _, _} <- Probes],
        [?assert(Call =:= 3 orelse Call =:= {error, {erpc, system_limit}}) || {_, Call, _} <- Probes],
        %% after the flood: served again
        ?H:wait_until(fun() -> (catch erpc:call(S, cnode_demo, add, [1, 2], ms(5000))) =:= 3 end, ms(60000)),
        Refused = ask_reader(Reader),
        io:format("system_limit in the answers to the flooder: ~b~n", [Refused]),
        ?assert(Refused > 0),
        RssMax = lists:max([Rss0 | [R || {_, _, R} <- Probes]] ++ [rss_kb(H)]),
        io:format("RSS ~b kB before, at most ~b kB during the flood~n", [Rss0, RssMax]),
        %% 64 jobs in flight hold little; 500,000 queued requests would hold hundreds of MB
        ?assert(RssMax - Rss0 < 96 * 1024),
        gen_tcp:close(Sock),
        T1 = erlang:monotonic_time(millisecond),
        ?H:kill_os(H, "TERM"),
        ?assertEqual(0, ?H:wait_exit(H, ms(5000))),
        io:format("SIGTERM to exit: ~b ms~n", [erlang:monotonic_time(millisecond) - T1])
    end).

%% `cnode serve` with ASan's quarantine of freed memory cut to 8 MB, so that
%% its RSS shows what the node holds rather than what ASan keeps back.
serve_small_quarantine(Name, Extra) ->
    Asan = case os:getenv("ASAN_OPTIONS") of
               false -> "quarantine_size_mb=8";
               "" -> "quarantine_size_mb=8";
               A -> A ++ ":quarantine_size_mb=8"
           end,
    H = ?H:start_os(serve, Name, os:find_executable("env"),
                    ["ASAN_OPTIONS=" ++ Asan, ?H:cnode_bin(), "serve", "--sname", Name, "--cookie", ?H:cookie()
                     | Extra]),
    {match, [NodeStr]} = ?H:wait_line(H, "^serving cnode_demo on (\\S+)", ms(60000)),
    H#{node => list_to_atom(NodeStr)}.

%% Every 200 ms until the flood's last call is answered: {Ping, Call, RssKb}.
probe_until_done(S, H, Acc) ->
    {PingMs, Ping} = took(fun() -> timed(fun() -> net_adm:ping(S) end, ms(10000)) end),
    {CallMs, Call} = took(fun() -> timed(fun() -> try erpc:call(S, cnode_demo, add, [1, 2], ms(10000))
                                                 catch C:R -> {C, R} end end, ms(11000)) end),
    io:format("probe: ping ~p in ~b ms, call ~p in ~b ms~n", [Ping, PingMs, Call, CallMs]),
    Probe = {Ping, Call, rss_kb(H)},
    receive flood_done -> lists:reverse([Probe | Acc])
    after 200 ->
        length(Acc) < ms(600) orelse error(flood_not_handled),
        probe_until_done(S, H, [Probe | Acc])
    end.

took(F) ->
    T0 = erlang:monotonic_time(millisecond),
    V = F(),
    {erlang:monotonic_time(millisecond) - T0, V}.

%% F() in its own process, or `no_answer` past T ms.
timed(F, T) ->
    Me = self(),
    Ref = make_ref(),
    {P, M} = spawn_monitor(fun() -> Me ! {Ref, F()} end),
    receive
        {Ref, V} -> erlang:demonitor(M, [flush]), V;
        {'DOWN', M, process, P, Why} -> {crashed, Why}
    after T -> exit(P, kill), no_answer
    end.

%% Reads what the node sends the flooder (spawn replies, DOWNs, ticks) so
%% its output queue never fills; counts system_limit refusals and tells
%% Owner when the answer to the last call (tagged flood_end_marker) arrives.
drain(Sock, Owner, Tail, N) ->
    receive
        {count, From} -> From ! {refused, N}, drain(Sock, Owner, Tail, N)
    after 0 ->
        case gen_tcp:recv(Sock, 0, 100) of
            {ok, Data} ->
                Seen = <<Tail/binary, Data/binary>>,
                binary:match(Seen, <<"flood_end_marker">>) =:= nomatch orelse (Owner ! flood_done),
                Keep = min(byte_size(Seen), 32),
                drain(Sock, Owner, binary:part(Seen, byte_size(Seen) - Keep, Keep),
                      N + length(binary:matches(Data, <<"system_limit">>)));
            {error, timeout} -> drain(Sock, Owner, Tail, N);
            {error, _} -> receive {count, From} -> From ! {refused, N} end
        end
    end.

ask_reader(Reader) ->
    Reader ! {count, self()},
    receive {refused, N} -> N after ms(10000) -> error(reader_timeout) end.

%%% ---- undecodable requests -----------------------------------------------------

%% A rex call and an erpc spawn request whose argument is a FLOAT_EXT with 31
%% bytes of text that is no number: the link goes down (as BEAM takes a link
%% down on undecodable data), never silence; the node keeps serving others.
undecodable_float(Config) ->
    ?H:run(Config, fun() ->
        #{node := S} = H = ?H:start_serve(?H:unique("bad"), ["-v"]),
        BadFloat = <<99, (binary:copy(<<"c">>, 31))/binary>>,
        Requests =
            [{rex_call, fun(From) ->
                                Msg = {'$gen_call', {From, make_ref()},
                                       {call, cnode_demo, echo, ['$bad$'], From}},
                                [term_to_binary({6, From, '', rex}), with_bad(Msg, BadFloat)]
                        end},
             {erpc_call, fun(From) ->
                                 [term_to_binary({29, make_ref(), From, From, {erpc, execute_call, 4}, [monitor]}),
                                  with_bad([make_ref(), cnode_demo, echo, ['$bad$']], BadFloat)]
                         end}],
        lists:foreach(
          fun({What, Make}) ->
                  Fake = ?H:unique("fake"),
                  {ok, Sock} = ?H:fake_handshake(?H:dist_port(S), Fake, ?H:cookie()),
                  ok = gen_tcp:send(Sock, ?H:frame(Make(fake_pid(Fake)))),
                  Outcome = first_answer(Sock, ms(2000)),
                  io:format("~p with a garbage FLOAT_EXT: ~p~n", [What, Outcome]),
                  ?assertEqual({What, closed}, {What, Outcome}),
                  gen_tcp:close(Sock),
                  ?assertEqual(3, erpc:call(S, cnode_demo, add, [1, 2], ms(15000)))
          end, Requests),
        %% the frame's term reader refuses the float as binary_to_term does
        ?H:wait_line(H, "dropping connection to fake.*FLOAT_EXT", ms(15000)),
        %% the term itself is never printed
        ?assertEqual(nomatch, string:find(?H:output_text(H), "ccccccccccccccccccccccccccccccc"))
    end).

%% Term T encoded with the atom '$bad$' replaced by the raw bytes Bad.
with_bad(T, Bad) ->
    B = term_to_binary(T, [{minor_version, 2}]), % atoms as SMALL_ATOM_UTF8_EXT
    Atom = <<119, 5, "$bad$">>,
    {_, _} = binary:match(B, Atom),
    binary:replace(B, Atom, Bad).

%% closed, {frame, F} for the first non-tick frame, or silent.
first_answer(Sock, T) ->
    case ?H:recv_frame(Sock, T) of
        {error, {error, closed}} -> closed;
        {error, {error, econnreset}} -> closed;
        {error, closed} -> closed;
        {error, {error, timeout}} -> silent;
        {error, timeout} -> silent;
        Other -> {frame, Other}
    end.

%% A spawn request for a function nobody registered gets what BEAM gives:
%% error {exception, undef, [{M, F, A, _} | _]} for erpc, {badrpc, {'EXIT',
%% {undef, [{M, F, A, _} | _]}}} for rpc; so does a malformed rex call.
undef_spawn(Config) ->
    ?H:run(Config, fun() ->
        #{node := S} = ?H:start_serve(?H:unique("undef")),
        Shape = fun(N) ->
                        E = try erpc:call(N, cnode_demo, nope, [1], ms(15000)) of V -> {value, V}
                            catch error:{exception, undef, [{M, F, A, _} | _]} -> {undef, M, F, A}
                            end,
                        R = case rpc:call(N, cnode_demo, nope, [1], ms(15000)) of
                                {badrpc, {'EXIT', {undef, [{M2, F2, A2, _} | _]}}} -> {undef, M2, F2, A2};
                                Other -> Other
                            end,
                        {E, R}
                end,
        Want = Shape(node()),
        ?assertEqual({{undef, cnode_demo, nope, [1]}, {undef, cnode_demo, nope, [1]}}, Want),
        ?assertEqual(Want, Shape(S)),
        %% a rex call whose module is no atom or whose arguments are no list:
        %% BEAM's rex answers apply/3's badarg, never silence
        GL = group_leader(),
        Bad = fun(N, Req) ->
                      case gen_server:call({rex, N}, Req, ms(15000)) of
                          {badrpc, {'EXIT', {badarg, [{erlang, apply, MFA, _} | _]}}} -> {badarg, MFA};
                          Other -> Other
                      end
              end,
        [?assertEqual(Bad(node(), Req), Bad(S, Req))
         || Req <- [{call, "m", f, [], GL}, {call, m, f, not_a_list, GL}, {block_call, m, f, [a | b], GL}]]
    end).

%%% ---- mailbox_len ----------------------------------------------------------------

%% One million small messages to a registered C process that never reads,
%% with mailbox_len=1000: the process dies with system_limit (a BEAM monitor
%% sees it, cnode_receive returns CNODE_EEXITED), the node's RSS stays
%% bounded and it keeps serving.
mailbox_limit(Config) ->
    ?H:run(Config, fun() ->
        Name = ?H:unique("mbox"),
        H = ?H:start_os(testnode, Name, ?H:testnode_bin(),
                        ["--sname", Name, "--cookie", ?H:cookie(), "--limit", "mailbox_len=1000"]),
        {match, [NodeStr]} = ?H:wait_line(H, "^READY (\\S+)", ms(60000)),
        T = list_to_atom(NodeStr),
        %% the harness stops it politely ({stop}) at the end of the case
        ok = gen_server:call(cnode_harness_srv, {set_node, maps:get(port, H), T}),
        {ok, Sink} = ?H:ctl(T, {sink, sink}),
        ?assertEqual({timeout, alive}, ?H:ctl(T, {sink_receive, Sink})),
        MRef = erlang:monitor(process, {sink, T}),
        Rss0 = rss_kb(H),
        T0 = erlang:monotonic_time(millisecond),
        Sender = spawn_link(fun() -> send_many({sink, T}, 1000000) end),
        Why = receive {'DOWN', MRef, process, _, R} -> R after ms(120000) -> error(no_down) end,
        ?assertEqual(system_limit, Why),
        T1 = erlang:monotonic_time(millisecond),
        MR = erlang:monitor(process, Sender),
        receive {'DOWN', MR, process, Sender, normal} -> ok after ms(240000) -> error(sender_stuck) end,
        io:format("DOWN after ~b ms, all sent after ~b ms; the C node used ~b ms of CPU~n",
                  [T1 - T0, erlang:monotonic_time(millisecond) - T0, cpu_ms(H)]),
        %% everything sent has been handled once a later request is answered
        ?assertMatch(#{mailbox_kills := 1}, ?H:ctl(T, {stats}, ms(60000))),
        Rss1 = rss_kb(H),
        io:format("RSS ~b kB before, ~b kB after 1,000,000 messages~n", [Rss0, Rss1]),
        ?assert(Rss1 - Rss0 < 48 * 1024),
        ?assertEqual({exited, system_limit}, ?H:ctl(T, {sink_receive, Sink})),
        %% keeps serving: a new sink under the same name, and a served call
        {ok, Sink2} = ?H:ctl(T, {sink, sink}),
        ?assertNotEqual(Sink, Sink2),
        ?assertEqual({timeout, alive}, ?H:ctl(T, {sink_receive, Sink2})),
        ?assertEqual(pong, net_adm:ping(T)),
        try erpc:call(T, cnode_test, raise, [throw, still_here], ms(15000)) of
            V -> error({no_throw, V})
        catch throw:still_here -> ok
        end
    end).

send_many(_, 0) -> ok;
send_many(Dest, N) -> Dest ! {m, N}, send_many(Dest, N - 1).

%%% ---- helpers ---------------------------------------------------------------------

fake_pid(Fake) ->
    Node = list_to_binary(Fake ++ "@" ++ ?H:host()),
    binary_to_term(<<131, 88, 119, (byte_size(Node)), Node/binary, 1:32, 0:32, 1:32>>).

cpu_ms(H) ->
    {ok, B} = file:read_file("/proc/" ++ integer_to_list(?H:os_pid(H)) ++ "/stat"),
    [_, After] = string:split(B, ")", trailing),
    F = string:lexemes(After, " "),
    (binary_to_integer(lists:nth(12, F)) + binary_to_integer(lists:nth(13, F))) * 10.

rss_kb(H) ->
    {ok, B} = file:read_file("/proc/" ++ integer_to_list(?H:os_pid(H)) ++ "/status"),
    {match, [Kb]} = re:run(B, "VmRSS:\\s+(\\d+)", [{capture, all_but_first, list}]),
    list_to_integer(Kb).
