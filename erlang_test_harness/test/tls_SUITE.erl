%%% The C node in a cluster that runs the distribution over TLS (-proto_dist inet_tls with an
%%% -ssl_dist_optfile), both ways: BEAM nodes started here with inet_tls, C nodes (`cnode`, the
%%% test node) given the same optfile. Certificates are made by init_per_suite with the openssl
%%% command in priv_dir (tls_certs): a CA, a node certificate it signed (subjectAltName: this host,
%%% localhost, 127.0.0.1), one signed by a CA nobody trusts, an expired one, one naming another
%%% host. The TLS BEAM nodes are driven over their standard I/O (peer), since the driver node
%%% speaks plain TCP.
-module(tls_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([suite/0, all/0, init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).
-export([beam_to_c/1, c_to_beam/1, message_echo/1, pg_both_ways/1, tls13/1,
         untrusted_ca/1, expired/1, wrong_host/1, options/1, plain_meets_tls/1, silent_sockets/1]).

-define(H, cnode_harness).
-define(TMO, cnode_harness:ms(15000)).
-define(S, tls_scope).

suite() ->
    [{timetrap, {seconds, ?H:ms(180000) div 1000}}].

all() ->
    [beam_to_c, c_to_beam, message_echo, pg_both_ways, tls13,
     untrusted_ca, expired, wrong_host, options, plain_meets_tls, silent_sockets].

init_per_suite(Config) ->
    Config1 = ?H:init_per_suite(?MODULE, Config),
    Dir = ?config(priv_dir, Config1),
    Host = maps:get(host, ?config(cnode_info, Config1)),
    San = lists:flatten(io_lib:format("DNS:~s,DNS:localhost,IP:127.0.0.1", [Host])),
    tls_certs:ca(Dir, "ca", "tls-suite-ca"),
    tls_certs:ca(Dir, "evil", "evil-ca"),
    tls_certs:cert(Dir, "node", "ca", 2, San, Host),
    tls_certs:cert(Dir, "bad", "evil", 2, San, Host),
    tls_certs:cert(Dir, "expired", "ca", -1, San, Host),      % notAfter a day before notBefore: expired now
    tls_certs:cert(Dir, "other", "ca", 2, "DNS:other-host.invalid", "other-host.invalid"),
    Opts = fun(Name, Extra) ->
                   File = Name ++ lists:flatten([atom_to_list(K) || {K, _} <- Extra]) ++ ".opt",
                   tls_certs:optfile(Dir, File, {Name, "ca"}, Extra, "")
           end,
    Files = #{good => Opts("node", []),
              tls13 => Opts("node", [{versions, ['tlsv1.3']}]),
              bad => Opts("bad", []),
              bad13 => Opts("bad", [{versions, ['tlsv1.3']}]),
              expired => Opts("expired", []),
              other => Opts("other", []),
              pem => fun(P) -> filename:join(Dir, P) end},
    ok = file:write_file(filename:join(Dir, "password.opt"),
                         io_lib:format("[{server, [{certfile, ~p}, {password, \"secret\"}]}].~n",
                                       [filename:join(Dir, "node.pem")])),
    ok = file:write_file(filename:join(Dir, "unknown.opt"), "[{client, [{frobnicate, 1}]}].\n"),
    [{tls, Files#{password => filename:join(Dir, "password.opt"),
                  unknown => filename:join(Dir, "unknown.opt")}} | Config1].

end_per_suite(Config) -> ?H:end_per_suite(Config).
init_per_testcase(TC, Config) -> ?H:init_per_testcase(TC, Config).
end_per_testcase(TC, Config) -> ?H:end_per_testcase(TC, Config).

%%% ---- helpers -----------------------------------------------------------

opt(Config, Key) -> maps:get(Key, ?config(tls, Config)).

%% A BEAM node on inet_tls with the optfile Key (driven over standard I/O); stopped by with/2.
beam(Config, Key) ->
    Name = ?H:unique("b"),
    Args = ["-setcookie", ?H:cookie(), "-start_epmd", "false", "-connect_all", "false",
            "-proto_dist", "inet_tls", "-ssl_dist_optfile", opt(Config, Key)]
        ++ lists:append([["-pa", D] || D <- maps:get(code_dirs, ?H:info())]),
    {ok, P, Node} = peer:start(#{name => Name, connection => standard_io, args => Args,
                                 env => [{"ERL_EPMD_PORT", integer_to_list(?H:epmd_port())}],
                                 wait_boot => ?H:ms(90000)}),
    {P, Node}.

%% Runs Fun with BEAM nodes started for Keys; stops them whatever happens.
with(Config, Keys, Fun) ->
    Bs = [beam(Config, K) || K <- Keys],
    try Fun(Bs)
    after [catch peer:stop(P) || {P, _} <- Bs]
    end.

on({P, _}, Fun) -> peer:call(P, erlang, apply, [Fun, []], ?H:ms(30000)).

serve(Config, Key) -> serve(Config, Key, []).
serve(Config, Key, Extra) ->
    ?H:start_serve(?H:unique("s"), ["-vv", "--ssl-dist-optfile", opt(Config, Key) | Extra]).

cli(Config, Key, Args) ->
    ?H:run_cli(["--cookie", ?H:cookie(), "--ssl-dist-optfile", opt(Config, Key) | Args]).

%% The C node S answers a TLS BEAM node (good certificate): it kept serving.
still_serving(Config, S) ->
    with(Config, [good], fun([B]) ->
        ?assertEqual(7, on(B, fun() -> erpc:call(S, cnode_demo, add, [3, 4], ?TMO) end))
    end).

%%% ---- cases -------------------------------------------------------------

%% A TLS BEAM node pings the C node and calls it with erpc and rpc.
beam_to_c(Config) ->
    ?H:run(Config, fun() ->
        #{node := S} = H = serve(Config, good),
        with(Config, [good], fun([B]) ->
            ?assertEqual(pong, on(B, fun() -> net_adm:ping(S) end)),
            ?assertEqual(3, on(B, fun() -> erpc:call(S, cnode_demo, add, [1, 2], ?TMO) end)),
            Big = lists:seq(1, 50000),   % several TLS records each way
            ?assertEqual(Big, on(B, fun() -> erpc:call(S, cnode_demo, echo, [Big], ?TMO) end)),
            ?assertEqual([2 * I || I <- lists:seq(1, 200)],
                         on(B, fun() ->
                                   Rs = [erpc:send_request(S, cnode_demo, add, [I, I]) || I <- lists:seq(1, 200)],
                                   [erpc:receive_response(R, ?TMO) || R <- Rs]
                               end)),
            ?assertEqual(hi, on(B, fun() -> rpc:call(S, cnode_demo, echo, [hi], ?TMO) end)),
            ?H:wait_line(H, "nodeup .*incoming, TLSv1.2 ", ?TMO)
        end)
    end).

%% The C node pings and calls a TLS BEAM node, through an optfile and through --tls-* options.
c_to_beam(Config) ->
    ?H:run(Config, fun() ->
        with(Config, [good], fun([{_, B}]) ->
            Bs = atom_to_list(B),
            ?assertEqual({0, "pong\n"}, cli(Config, good, ["ping", Bs])),
            ?assertEqual({0, "3\n"}, cli(Config, good, ["call", Bs, "erlang", "abs", "[-3]"])),
            Pem = opt(Config, pem),
            Flags = ["--tls-cert", Pem("node.pem"), "--tls-key", Pem("node.key"), "--tls-ca", Pem("ca.pem")],
            ?assertEqual({0, "pong\n"}, ?H:run_cli(["--cookie", ?H:cookie(), "ping", Bs | Flags])),
            Big = "[\"" ++ lists:duplicate(100000, $x) ++ "\"]",
            {0, Out} = ?H:run_cli(["--cookie", ?H:cookie(), "call", Bs, "erlang", "length", Big | Flags]),
            ?assertEqual("100000\n", Out)
        end)
    end).

%% Messages both ways between a BEAM process and a C process (the test node's agent echoes).
message_echo(Config) ->
    ?H:run(Config, fun() ->
        T = ?H:start_os(testnode, "t", ?H:testnode_bin(),
                        ["-v", "--sname", ?H:unique("t"), "--cookie", ?H:cookie(), "--ssl-dist-optfile", opt(Config, good)]),
        {match, [NodeStr]} = ?H:wait_line(T, "^READY (\\S+)", ?TMO),
        Tn = list_to_atom(NodeStr),
        with(Config, [good], fun([B]) ->
            Msgs = [hello, {1, <<"two">>, [3.0]}, lists:seq(1, 20000)],
            Got = on(B, fun() ->
                            Ref = make_ref(),
                            {ctl, Tn} ! {call, self(), Ref, {spawn, undefined, self()}},
                            {ok, A} = receive {Ref, R} -> R after 10000 -> timeout end,
                            Echoed = [begin A ! {echo, self(), M}, receive M -> M after 10000 -> timeout end end
                                      || M <- Msgs],
                            {ctl, Tn} ! {call, self(), Ref, {stop}}, % after the echoes, not in an operand
                            Echoed
                        end),
            ?assertEqual(Msgs, Got),
            ?assertEqual(0, ?H:wait_exit(T, ?TMO))
        end)
    end).

%% A C pg member that BEAM routes calls to, and the C mirror of a BEAM group, over TLS.
pg_both_ways(Config) ->
    ?H:run(Config, fun() ->
        #{node := S} = serve(Config, good, ["--scope", atom_to_list(?S), "--group", "cg"]),
        with(Config, [good], fun([{_, Bn} = B]) ->
            Member = on(B, fun() ->
                               {ok, _} = pg:start(?S),
                               Self = self(),
                               spawn(fun() -> pg:join(?S, bg, self()), Self ! joined, receive stop -> ok end end),
                               receive joined -> ok end,
                               pong = net_adm:ping(S),
                               ?H:wait_until(fun() -> pg:get_members(?S, cg) =/= [] end, 10000),
                               [P] = pg:get_members(?S, cg),
                               {node(P), erpc:call(node(P), cnode_demo, add, [2, 3], ?TMO),
                                pid_to_list(hd(pg:get_members(?S, bg)))}
                           end),
            {S, 5, "<0." ++ BgRest} = Member,   % printed as the CLI prints it: <node.N.S>
            Want = lists:flatten(io_lib:format("~s bg ~s <~s.~s", [?S, Bn, Bn, BgRest])),
            {0, Out} = cli(Config, good, ["members", "--scope", atom_to_list(?S), "--group", "bg",
                                          atom_to_list(Bn)]),
            ?assertEqual([Want], [L || L <- string:split(string:trim(Out), "\n", all), L =/= ""])
        end)
    end).

%% TLS 1.3 both sides ({versions, ['tlsv1.3']}): both ways.
tls13(Config) ->
    ?H:run(Config, fun() ->
        #{node := S} = H = serve(Config, tls13),
        with(Config, [tls13], fun([{_, Bn} = B]) ->
            ?assertEqual(3, on(B, fun() -> erpc:call(S, cnode_demo, add, [1, 2], ?TMO) end)),
            ?H:wait_line(H, "nodeup .*incoming, TLSv1.3 ", ?TMO),
            ?assertEqual({0, "pong\n"}, cli(Config, tls13, ["ping", atom_to_list(Bn)])),
            ?assertEqual({0, "3\n"}, cli(Config, tls13, ["call", atom_to_list(Bn), "erlang", "abs", "[-3]"])),
            %% TLS 1.3: the server judges the client's certificate after the client's handshake
            %% is done; the refusal comes as an alert on the first read, still exit 3, both ways
            {3, Out13} = cli(Config, bad13, ["ping", atom_to_list(Bn)]),
            ?assertMatch({match, _}, re:run(Out13, "TLS: refused by the peer: ")),
            with(Config, [bad13], fun([Bad]) ->
                ?assertEqual(pang, on(Bad, fun() -> net_adm:ping(S) end)),
                ?H:wait_line(H, "handshake from .* failed: TLS: peer certificate refused", ?TMO)
            end),
            %% a TLS 1.2-only C node and a TLS 1.3-only BEAM node do not agree
            {3, Out} = cli(Config, good, ["ping", atom_to_list(Bn)]),
            ?assertMatch({match, _}, re:run(Out, "TLS"))
        end)
    end).

%% A certificate from a CA the other side does not trust: refused both ways, with exit 3 from
%% the CLI (not 1 or 4: refused, not timed out) and one log line naming the reason.
untrusted_ca(Config) -> refused_both_ways(Config, bad, "unknown ca|unable to get local issuer").

%% An expired certificate: the same.
expired(Config) -> refused_both_ways(Config, expired, "expired").

refused_both_ways(Config, Key, Why) ->
    ?H:run(Config, fun() ->
        #{node := S} = H = serve(Config, good),
        with(Config, [good, Key], fun([{_, Bn}, Bad]) ->
            %% C with the bad certificate dials a good BEAM node: the BEAM node refuses it
            {3, Out} = cli(Config, Key, ["--timeout", "20000", "ping", atom_to_list(Bn)]),
            ?assertMatch({match, _}, re:run(Out, "pang")),
            ?assertMatch({match, _}, re:run(Out, "TLS: ")),
            %% a good C node dials the BEAM node with the bad certificate: the C node refuses it
            {3, Out2} = cli(Config, good, ["--timeout", "20000", "ping", atom_to_list(element(2, Bad))]),
            ?assertMatch({match, _}, re:run(Out2, "TLS: peer certificate refused: .*(" ++ Why ++ ")")),
            %% the BEAM node with the bad certificate dials the C node: refused, logged once
            ?assertEqual(pang, on(Bad, fun() -> net_adm:ping(S) end)),
            ?H:wait_line(H, "handshake from .* failed: TLS: peer certificate refused: .*(" ++ Why ++ ")", ?TMO),
            %% and a call from it fails the same way
            ?assertMatch({'EXIT', {{erpc, noconnection}, _}},
                         on(Bad, fun() -> catch erpc:call(S, cnode_demo, add, [1, 2], 5000) end))
        end),
        still_serving(Config, S)
    end).

%% A dialled node's certificate must name the host dialled: both ways.
wrong_host(Config) ->
    ?H:run(Config, fun() ->
        #{node := S} = serve(Config, good),
        with(Config, [other, good], fun([{_, On}, Good]) ->
            {3, Out} = cli(Config, good, ["ping", atom_to_list(On)]),
            ?assertMatch({match, _}, re:run(Out, "TLS: peer certificate refused: .*hostname mismatch")),
            %% a BEAM node checks the C node's host name the same way
            #{node := W} = serve(Config, other),
            ?assertEqual(pang, on(Good, fun() -> net_adm:ping(W) end)),
            ?assertEqual(pong, on(Good, fun() -> net_adm:ping(S) end)),
            %% without verification (none) the host is not checked: the link is encrypted only
            Pem = opt(Config, pem),
            ?assertEqual({0, "pong\n"},
                         ?H:run_cli(["--cookie", ?H:cookie(), "ping", atom_to_list(On), "--tls-verify", "none",
                                     "--tls-cert", Pem("node.pem"), "--tls-key", Pem("node.key")]))
        end)
    end).

%% Options that cannot be honoured are refused at start, naming the option; bad files too.
options(Config) ->
    ?H:run(Config, fun() ->
        Ping = fun(Args) -> ?H:run_cli(["--cookie", ?H:cookie() | Args] ++ ["ping", "x@localhost"]) end,
        {2, O1} = Ping(["--ssl-dist-optfile", opt(Config, password)]),
        ?assertMatch({match, _}, re:run(O1, "password cannot be honoured")),
        {2, O2} = Ping(["--ssl-dist-optfile", opt(Config, unknown)]),
        ?assertMatch({match, _}, re:run(O2, "unknown option frobnicate")),
        {2, O3} = Ping(["--ssl-dist-optfile", "/nonexistent.opt"]),
        ?assertMatch({match, _}, re:run(O3, "cannot read /nonexistent.opt")),
        Pem = opt(Config, pem),
        {2, O4} = Ping(["--tls-cert", Pem("node.pem"), "--tls-key", Pem("bad.key")]),
        ?assertMatch({match, _}, re:run(O4, "bad.key: .*mismatch")),
        {2, O5} = Ping(["--tls-cert", Pem("node.pem"), "--proto-dist", "inet_tcp"]),
        ?assertMatch({match, _}, re:run(O5, "plain-TCP")),
        {2, _} = Ping(["--tls-verify", "maybe"])
    end).

%% A plain-TCP node meets a TLS node, both ways: the attempt fails cleanly (a TLS C node says
%% so, exit 3) and the TLS C node keeps serving.
plain_meets_tls(Config) ->
    ?H:run(Config, fun() ->
        #{node := S} = H = serve(Config, good),
        #{node := Plain} = ?H:start_serve(?H:unique("p")),
        with(Config, [good], fun([{_, Bn}]) ->
            %% plain C dials TLS BEAM: pang (the C node cannot tell it from a closed connection)
            ?assertEqual({1, "pang\n"}, ?H:run_cli(["--cookie", ?H:cookie(), "ping", atom_to_list(Bn)])),
            %% TLS C dials the plain C node (and a plain BEAM node, the driver): refused, exit 3
            {3, Out} = cli(Config, good, ["ping", atom_to_list(Plain)]),
            ?assertMatch({match, _}, re:run(Out, "TLS: ")),
            %% a plain BEAM node reads the ClientHello as a long handshake message and waits for
            %% the rest: the TLS phase's deadline (handshake_ms) ends it, as TLS, not as a timeout
            {3, Out3} = cli(Config, good, ["--limit", "handshake_ms=1500", "--timeout", "20000",
                                           "ping", atom_to_list(node())]),
            ?assertMatch({match, _}, re:run(Out3, "plain TCP")),
            %% plain BEAM (the driver) dials the TLS C node: pang, one line there, and it serves on
            ?assertEqual(pang, net_adm:ping(S)),
            ?H:wait_line(H, "handshake from .* failed: TLS: .*plain TCP", ?TMO),
            %% the plain C node dialled by the TLS one logged its failure and serves on too
            ?assertEqual(pong, net_adm:ping(Plain))
        end),
        still_serving(Config, S)
    end).

%% Sockets that open TCP and never send a ClientHello are handshakes like any other: the
%% handshake bounds evict them to let a real peer in, and the handshake deadline closes them.
silent_sockets(Config) ->
    ?H:run(Config, fun() ->
        #{node := S} = H = serve(Config, good, ["--limit", "handshake_ms=1500", "--limit", "handshakes=2"]),
        Port = ?H:dist_port(S),
        Socks = [begin {ok, T} = gen_tcp:connect("127.0.0.1", Port, [binary, {active, false}]), T end
                 || _ <- [1, 2, 3]],
        with(Config, [good], fun([B]) ->
            ?assertEqual(pong, on(B, fun() -> net_adm:ping(S) end))
        end),
        [?assertEqual(closed, ?H:await_close(T, ?H:ms(10000))) || T <- Socks],
        ?H:wait_line(H, "handshake from 127.0.0.1 .* handshake timed out", ?TMO),
        still_serving(Config, S)
    end).
