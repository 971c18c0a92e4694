%%% The C node on IPv6 (`--proto-dist inet6_tcp`, names like c@::1) next to
%%% BEAM nodes started with `-proto_dist inet6_tcp -name x@::1`: ping, erpc and
%%% messages both ways, the C mirror of a BEAM pg group and a C member BEAM
%%% routes to, the dual-stack listener and its per-address handshake bound, and
%%% the inputs that must fail cleanly (no IPv6 on the host, a host with no AAAA
%%% record, an IPv4-only node, malformed literals). The tls_* cases run the same
%%% over inet6_tls (`-proto_dist inet6_tls -ssl_dist_optfile F`, `--proto-dist
%%% inet6_tls --ssl-dist-optfile F`), with certificates made by init_per_suite
%%% (tls_certs) and verification on both ways, plus a refusal and the host check.
%%%
%%% The host check over inet6_tls. OTP 25's inet_tls_dist dials with
%%% {server_name_indication, Host}, Host the node name's host part ("::1"), and
%%% ssl then checks that string as a DNS name only ({dns_id, "::1"} in
%%% public_key:pkix_verify_hostname): a certificate that names ::1 only as an IP
%%% address (IP:::1) is refused (hostname_check_failed), BEAM to BEAM too. A
%%% {server_name_indication, ...} in the optfile's client part does not help: ssl
%%% applies it before inet_tls_dist's own (the option waits for `versions`, and the
%%% waiting options are taken back in reverse). What works with verification on:
%%% a certificate whose subjectAltName has the literal as a DNS name next to the IP
%%% address (DNS:::1,IP:::1; the C node takes either entry), or a
%%% customize_hostname_check match_fun in BEAM's optfile (tls_host_check).
%%%
%%% The driver node runs inet_tcp and cannot talk to x@::1 nodes, so the IPv6
%%% BEAM nodes are peers controlled over standard_io (peer:call), stopped by
%%% each case. Skipped, with the reason, only when the machine has no ::1.
-module(ipv6_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([suite/0, all/0, init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).
-export([ping_both_ways/1, erpc_both_ways/1, message_echo/1, pg_mirror/1, pg_member_routed/1,
         dual_stack_listener/1, no_ipv6_on_host/1, unreachable_peers/1, malformed_names/1]).
-export([tls_ping_both_ways/1, tls_erpc_both_ways/1, tls_message_echo/1, tls_pg_mirror/1,
         tls_pg_member_routed/1, tls_untrusted_ca/1, tls_host_check/1]).
-export([beam_ctl/3, beam_echo/2, beam_pg_member/1, beam_pg_wait/3]).

-define(H, cnode_harness).
-define(S, ipv6_scope).

suite() ->
    [{timetrap, {seconds, ?H:ms(180000) div 1000}}].

all() ->
    [ping_both_ways, erpc_both_ways, message_echo, pg_mirror, pg_member_routed,
     dual_stack_listener, no_ipv6_on_host, unreachable_peers, malformed_names,
     tls_ping_both_ways, tls_erpc_both_ways, tls_message_echo, tls_pg_mirror, tls_pg_member_routed,
     tls_untrusted_ca, tls_host_check].

init_per_suite(Config) ->
    case gen_tcp:listen(0, [inet6, {ip, {0, 0, 0, 0, 0, 0, 0, 1}}]) of
        {ok, L} ->
            gen_tcp:close(L),
            make_certs(?H:init_per_suite(?MODULE, Config));
        {error, E} ->
            {skip, lists:flatten(io_lib:format("no IPv6 loopback (::1) on this machine: listen gave ~p", [E]))}
    end.

%% A CA, a node certificate naming ::1 as BEAM checks it and as OpenSSL does
%% (DNS:::1,IP:::1), one from a CA nobody trusts, ones naming ::1 as an IP address
%% only, as a DNS name only, and one naming another address (::2; ::1 as its CN
%% only); the optfiles (tls_certs), by key.
make_certs(Config) ->
    Dir = ?config(priv_dir, Config),
    tls_certs:ca(Dir, "ca", "ipv6-suite-ca"),
    tls_certs:ca(Dir, "evil", "evil-ca"),
    tls_certs:cert(Dir, "node6", "ca", 2, "DNS:::1,IP:::1", "ipv6-suite-node"),
    tls_certs:cert(Dir, "bad6", "evil", 2, "DNS:::1,IP:::1", "ipv6-suite-node"),
    tls_certs:cert(Dir, "iponly6", "ca", 2, "IP:::1", "ipv6-suite-node"),
    tls_certs:cert(Dir, "dnsonly6", "ca", 2, "DNS:::1", "ipv6-suite-node"),
    tls_certs:cert(Dir, "other6", "ca", 2, "DNS:::2,IP:::2", "::1"),
    Opt = fun(File, Cert, ClientText) -> tls_certs:optfile(Dir, File, {Cert, "ca"}, [], ClientText) end,
    [{tls6, #{good => Opt("node6.opt", "node6", ""),
              bad => Opt("bad6.opt", "bad6", ""),
              iponly => Opt("iponly6.opt", "iponly6", ""),
              dnsonly => Opt("dnsonly6.opt", "dnsonly6", ""),
              other => Opt("other6.opt", "other6", ""),
              %% what a BEAM user can write to accept IP:::1 for a node named x@::1
              iponly_fun => Opt("iponly6fun.opt", "iponly6",
                                "{customize_hostname_check,\n"
                                "   [{match_fun, fun({dns_id, Host}, {iPAddress, Ip}) when length(Ip) =:= 16 ->\n"
                                "                        inet:parse_ipv6strict_address(Host) =:=\n"
                                "                            {ok, list_to_tuple([A bsl 8 bor B || <<A, B>> <= list_to_binary(Ip)])};\n"
                                "                   (_, _) -> default\n"
                                "                end}]}")}} | Config].

end_per_suite(Config) -> ?H:end_per_suite(Config).
init_per_testcase(TC, Config) -> ?H:init_per_testcase(TC, Config).
end_per_testcase(TC, Config) -> ?H:end_per_testcase(TC, Config).

%%% ---- helpers (run on the driver) --------------------------------------

%% A BEAM node named Name@::1 on inet6_tcp, or inet6_tls with the optfile F
%% ({tls, F}), or inet_tcp listening on IPv4 loopback only (for the refusals),
%% on the private epmd, controlled over stdio. Fun gets its peer pid and node
%% name; the node stops afterwards.
with_beam(Proto, Fun) ->
    Info = ?H:info(),
    Name = ?H:unique(case Proto of inet6_tcp -> "v6b"; inet_tcp -> "v4b"; {tls, _} -> "v6tb" end),
    ProtoArgs = case Proto of
                    inet6_tcp -> ["-proto_dist", "inet6_tcp"];
                    {tls, F} -> ["-proto_dist", "inet6_tls", "-ssl_dist_optfile", F];
                    inet_tcp -> ["-kernel", "inet_dist_use_interface", "{127,0,0,1}"]
                end,
    Args = ["-setcookie", ?H:cookie(), "-start_epmd", "false", "-connect_all", "false"
            | ProtoArgs] ++ lists:append([["-pa", D] || D <- maps:get(code_dirs, Info)]),
    {ok, P, Node} = peer:start(#{name => Name, host => "::1", longnames => true,
                                 connection => standard_io, exec => maps:get(erl, Info), args => Args,
                                 env => [{"ERL_EPMD_PORT", integer_to_list(?H:epmd_port())}],
                                 wait_boot => ?H:ms(60000)}),
    try Fun(P, Node)
    after catch peer:stop(P)
    end.

with_beam(Fun) -> with_beam(inet6_tcp, Fun).

%% The transport T of a case: tcp (inet6_tcp), or {tls, F} (inet6_tls, optfile F).
beam_proto(tcp) -> inet6_tcp;
beam_proto({tls, _} = T) -> T.

%% The C node's options for T.
c_proto(tcp) -> ["--proto-dist", "inet6_tcp"];
c_proto({tls, F}) -> ["--proto-dist", "inet6_tls", "--ssl-dist-optfile", F].

%% The optfile Key of init_per_suite's, as a transport.
tls(Config, Key) -> {tls, maps:get(Key, ?config(tls6, Config))}.

%% The CLI as an IPv6 node: {ExitStatus, Output}.
cli6(Args) -> cli6(tcp, Args).
cli6(T, Args) ->
    ?H:run_cli(["--name", ?H:unique("c6") ++ "@::1" | c_proto(T)] ++ ["--cookie", ?H:cookie() | Args], 30000).

%% `cnode serve` as an IPv6 node; the handle with its node name. Over TLS it
%% logs its connections (-vv), to tell which transport they took.
serve6(Extra) -> serve6(tcp, Extra).
serve6(T, Extra) ->
    Name = ?H:unique("s6"),
    Verbose = case T of tcp -> []; {tls, _} -> ["-vv"] end,
    H = ?H:start_os(serve, Name, ?H:cnode_bin(),
                    ["serve", "--name", Name ++ "@::1" | c_proto(T)] ++ ["--cookie", ?H:cookie() | Verbose ++ Extra]),
    {match, [NodeStr]} = ?H:wait_line(H, "^serving cnode_demo on (\\S+)", 60000),
    H#{node => list_to_atom(NodeStr), alive => Name}.

%% A node's port, asked of the private epmd over IPv4 (PORT_PLEASE2).
epmd_port_of(Alive) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, ?H:epmd_port(), [binary, {active, false}], 5000),
    ok = gen_tcp:send(S, <<(1 + length(Alive)):16, 122, (list_to_binary(Alive))/binary>>),
    {ok, <<119, 0, Port:16, _/binary>>} = gen_tcp:recv(S, 0, 5000),
    gen_tcp:close(S),
    Port.

%%% ---- run on the IPv6 BEAM node (peer:call) -----------------------------

%% {ctl, C} ! {call, ...}: the C test node's control process, from here.
beam_ctl(C, Cmd, Timeout) ->
    Ref = make_ref(),
    {ctl, C} ! {call, self(), Ref, Cmd},
    receive {Ref, R} -> R after Timeout -> {error, ctl_timeout}
    end.

%% A C agent echoes a term back to this BEAM process: C->BEAM and BEAM->C messages.
beam_echo(C, Term) ->
    {ok, Agent} = beam_ctl(C, {spawn, undefined, self()}, 15000),
    Agent ! {echo, self(), Term},
    receive Term -> {ok, node(Agent)} after 15000 -> {error, no_echo}
    end.

%% A process of this node joined to Group of scope ?S (started here if need be).
beam_pg_member(Group) ->
    case pg:start(?S) of
        {ok, _} -> ok;
        {error, {already_started, _}} -> ok
    end,
    P = spawn(fun() -> receive stop -> ok end end),
    ok = pg:join(?S, Group, P),
    P.

%% Waits up to Ms for Group's members to satisfy Pred; the members, or {timeout, Members}.
beam_pg_wait(Group, Pred, Ms) ->
    M = pg:get_members(?S, Group),
    case Pred(M) of
        true -> M;
        false when Ms =< 0 -> {timeout, M};
        false -> receive after 20 -> beam_pg_wait(Group, Pred, Ms - 20) end
    end.

%%% ---- cases -------------------------------------------------------------

ping_both_ways(Config) -> ping_both_ways(Config, tcp).
tls_ping_both_ways(Config) -> ping_both_ways(Config, tls(Config, good)).

ping_both_ways(Config, T) ->
    ?H:run(Config, fun() ->
        with_beam(beam_proto(T), fun(P, V) ->
            ?assertMatch({0, "pong" ++ _}, cli6(T, ["ping", atom_to_list(V)])),
            #{node := S} = H = serve6(T, []),
            ?assertEqual(pong, peer:call(P, net_adm, ping, [S], 15000)),
            [?H:wait_line(H, "nodeup \\S+ \\(incoming, TLSv1\\.2 ", 15000) || T =/= tcp],
            %% the C node's own name is the literal as given, as node() is on BEAM
            ?assertMatch("s6" ++ _, hd(string:split(atom_to_list(S), "@"))),
            ?assertEqual("::1", lists:last(string:split(atom_to_list(S), "@")))
        end)
    end).

erpc_both_ways(Config) -> erpc_both_ways(Config, tcp).
tls_erpc_both_ways(Config) -> erpc_both_ways(Config, tls(Config, good)).

erpc_both_ways(Config, T) ->
    ?H:run(Config, fun() ->
        with_beam(beam_proto(T), fun(P, V) ->
            ?assertEqual({0, "3\n"}, cli6(T, ["call", atom_to_list(V), "erlang", "abs", "[-3]"])),
            {0, Out} = cli6(T, ["call", atom_to_list(V), "erlang", "node", "[]"]),
            ?assertEqual("'" ++ atom_to_list(V) ++ "'\n", Out),
            #{node := S} = serve6(T, []),
            ?assertEqual(3, peer:call(P, erpc, call, [S, cnode_demo, add, [1, 2], 15000], 20000)),
            ?assertEqual({hello, [1, 2.5, <<"b">>]},
                         peer:call(P, erpc, call, [S, cnode_demo, echo, [{hello, [1, 2.5, <<"b">>]}], 15000], 20000)),
            %% the C node's name as it gives it: the literal, no brackets
            #{node := S} = peer:call(P, erpc, call, [S, cnode_demo, info, [], 15000], 20000),
            %% a term of several TLS records (16 KiB each) both ways
            Big = lists:seq(1, 20000),
            ?assertEqual(Big, peer:call(P, erpc, call, [S, cnode_demo, echo, [Big], 15000], 20000))
        end)
    end).

message_echo(Config) -> message_echo(Config, tcp).
tls_message_echo(Config) -> message_echo(Config, tls(Config, good)).

message_echo(Config, T) ->
    ?H:run(Config, fun() ->
        with_beam(beam_proto(T), fun(P, _V) ->
            Name = ?H:unique("t6"),
            H = ?H:start_os(testnode, Name, ?H:testnode_bin(),
                            ["--name", Name ++ "@::1" | c_proto(T)] ++ ["--cookie", ?H:cookie()]),
            {match, [CStr]} = ?H:wait_line(H, "^READY (\\S+)", 60000),
            C = list_to_atom(CStr),
            Term = {msg, self(), make_ref(), lists:seq(1, 100), <<0:8000>>, #{k => "v"}},
            ?assertEqual({ok, C}, peer:call(P, ?MODULE, beam_echo, [C, Term], 40000)),
            ?assertEqual(ok, peer:call(P, ?MODULE, beam_ctl, [C, {stop}, 15000], 20000)),
            ?assertEqual(0, ?H:wait_exit(H, 15000))
        end)
    end).

%% The C mirror of a BEAM group: `cnode members` through the IPv6 node lists its member.
pg_mirror(Config) -> pg_mirror(Config, tcp).
tls_pg_mirror(Config) -> pg_mirror(Config, tls(Config, good)).

pg_mirror(Config, T) ->
    ?H:run(Config, fun() ->
        with_beam(beam_proto(T), fun(P, V) ->
            M = peer:call(P, ?MODULE, beam_pg_member, [mg], 15000),
            {0, Out} = cli6(T, ["members", "--scope", atom_to_list(?S), "--group", "mg", atom_to_list(V)]),
            [Line] = string:split(string:trim(Out), "\n", all),
            [Scope, Group, Node, PidText] = string:split(Line, " ", all),
            ?assertEqual({atom_to_list(?S), "mg", atom_to_list(V)}, {Scope, Group, Node}),
            [_, N, Ser] = string:split(string:trim(pid_to_list(M), both, "<>"), ".", all),
            ?assertEqual(lists:flatten(io_lib:format("<~s.~s.~s>", [V, N, Ser])), PidText)
        end)
    end).

%% A C member BEAM routes to: `cnode serve --scope --group` joins through the
%% IPv6 node, BEAM finds it with pg:get_members and calls it; it leaves on SIGTERM.
pg_member_routed(Config) -> pg_member_routed(Config, tcp).
tls_pg_member_routed(Config) -> pg_member_routed(Config, tls(Config, good)).

pg_member_routed(Config, T) ->
    ?H:run(Config, fun() ->
        with_beam(beam_proto(T), fun(P, V) ->
            _ = peer:call(P, ?MODULE, beam_pg_member, [other], 15000), % scope started
            S = serve6(T, ["--connect", atom_to_list(V), "--scope", atom_to_list(?S), "--group", "api"]),
            CS = maps:get(node, S),
            NonEmpty = fun(L) -> L =/= [] end,
            [M] = peer:call(P, ?MODULE, beam_pg_wait, [api, NonEmpty, ?H:ms(10000)], ?H:ms(15000)),
            ?assertEqual(CS, node(M)),
            ?assertEqual(3, peer:call(P, erpc, call, [node(M), cnode_demo, add, [1, 2], 15000], 20000)),
            ?H:kill_os(S, "TERM"),
            ?assertEqual([], peer:call(P, ?MODULE, beam_pg_wait, [api, fun(L) -> L =:= [] end, ?H:ms(10000)],
                                       ?H:ms(15000))),
            ?assertEqual(0, ?H:wait_exit(S, 30000))
        end)
    end).

%% The inet6 listener takes IPv4 too (dual-stack); handshake failures are logged
%% with the source address in its family's form; the per-address handshake
%% bound tells ::1 from 127.0.0.1.
dual_stack_listener(Config) ->
    ?H:run(Config, fun() ->
        S = serve6(["-vvv", "--limit", "handshakes_per_addr=2"]),
        Port = epmd_port_of(maps:get(alive, S)),
        Opts = [binary, {active, false}],
        %% two silent IPv4 sockets, then three silent IPv6 ones: the third from ::1
        %% evicts the oldest from ::1 and leaves the IPv4 ones alone
        {ok, A1} = gen_tcp:connect({127, 0, 0, 1}, Port, Opts, 5000),
        {ok, A2} = gen_tcp:connect({127, 0, 0, 1}, Port, Opts, 5000),
        Six = [begin
                   {ok, X} = gen_tcp:connect({0, 0, 0, 0, 0, 0, 0, 1}, Port, [inet6 | Opts], 5000),
                   X
               end || _ <- [1, 2, 3]],
        ?assertEqual(closed, ?H:await_close(hd(Six), ?H:ms(10000))),
        [?assertEqual(still_open, ?H:await_close(X, 0)) || X <- [A1, A2 | tl(Six)]],
        %% a bad name from each family: one log line per source, each address as its family writes it
        [ok = gen_tcp:send(X, <<0, 3, "xyz">>) || X <- [A1, hd(tl(Six))]],
        ?H:wait_line(S, "handshake from 127\\.0\\.0\\.1 \\(-\\) failed", 10000),
        ?H:wait_line(S, "handshake from ::1 \\(-\\) failed", 10000),
        [gen_tcp:close(X) || X <- [A1, A2 | Six]],
        %% and it still serves
        ?assertMatch({0, "pong" ++ _}, cli6(["ping", atom_to_list(maps:get(node, S))]))
    end).

%% socket(AF_INET6) failing (IPv6 disabled in the kernel) is said at start, exit 2.
no_ipv6_on_host(Config) ->
    Dir = ?config(priv_dir, Config),
    Src = filename:join(Dir, "noinet6.c"),
    So = filename:join(Dir, "noinet6.so"),
    ok = file:write_file(Src,
        "#define _GNU_SOURCE\n#include <dlfcn.h>\n#include <errno.h>\n#include <sys/socket.h>\n"
        "int socket(int d, int t, int p) {\n"
        "    static int (*real)(int, int, int);\n"
        "    if (d == AF_INET6) { errno = EAFNOSUPPORT; return -1; }\n"
        "    if (!real) real = (int (*)(int, int, int))dlsym(RTLD_NEXT, \"socket\");\n"
        "    return real(d, t, p);\n}\n"),
    "ok\n" = os:cmd("cc -shared -fPIC -o " ++ So ++ " " ++ Src ++ " -ldl && echo ok"),
    ?H:run(Config, fun() ->
        Asan = case os:getenv("ASAN_OPTIONS") of false -> ""; "" -> ""; A -> A ++ ":" end,
        %% the shim is not the first library: ASan's link-order check would refuse to start
        H = ?H:start_os(cli, "noinet6", "/usr/bin/env",
                        ["LD_PRELOAD=" ++ So, "ASAN_OPTIONS=" ++ Asan ++ "verify_asan_link_order=0",
                         ?H:cnode_bin(), "--name", "c@::1", "--proto-dist", "inet6_tcp", "--cookie", ?H:cookie(),
                         "ping", "x@::1"]),
        ?assertEqual(2, ?H:wait_exit(H, 30000)),
        Out = ?H:output_text(H),
        ?assertNotEqual(nomatch, string:find(Out, "IPv6 is not available on this host")),
        %% the plain IPv4 transport does not need IPv6
        H4 = ?H:start_os(cli, "noinet6v4", "/usr/bin/env",
                         ["LD_PRELOAD=" ++ So, "ASAN_OPTIONS=" ++ Asan ++ "verify_asan_link_order=0",
                          ?H:cnode_bin(), "--cookie", ?H:cookie(), "ping", "nobody@127.0.0.1"]),
        ?assertEqual(1, ?H:wait_exit(H4, 30000))
    end).

%% pang and exit 1, promptly, with the reason (-v prints it): a host with no AAAA record, an
%% inet_tcp node (IPv4 only) dialled over IPv6, an IPv6 node dialled by an
%% IPv4 node.
unreachable_peers(Config) ->
    ?H:run(Config, fun() ->
        %% a name with an A record and no AAAA one where this machine has one (an IPv4 literal else)
        NoAAAA = hd([H || H <- ["localhost", ?H:host()], element(1, inet:getaddr(H, inet)) =:= ok,
                          element(1, inet:getaddr(H, inet6)) =:= error] ++ ["127.0.0.1"]),
        ct:log("host with no AAAA record: ~s", [NoAAAA]),
        {1, Out1} = cli6(["-v", "ping", "nobody@" ++ NoAAAA]),
        ?assertNotEqual(nomatch, string:find(Out1, "cannot resolve host")),
        with_beam(inet_tcp, fun(_P, W) ->
            {1, Out2} = cli6(["-v", "ping", atom_to_list(W)]),
            ?assertNotEqual(nomatch, string:find(Out2, "pang")),
            ?assertNotEqual(nomatch, string:find(Out2, "connection refused"))
        end),
        with_beam(fun(_P, V) ->
            {1, Out3} = ?H:run_cli(["-v", "--cookie", ?H:cookie(), "ping", atom_to_list(V)], 30000),
            ?assertNotEqual(nomatch, string:find(Out3, "needs the inet6_tcp"))
        end)
    end).

%% Host parts the C node refuses to take as its name (exit 2, the reason) or to dial (exit 1).
malformed_names(Config) ->
    ?H:run(Config, fun() ->
        Bad = [{["--name", "c@[::1]", "--proto-dist", "inet6_tcp"], "brackets"},
               {["--name", "c@::1::2", "--proto-dist", "inet6_tcp"], "malformed IPv6 address"},
               {["--name", "c@fdaa:::3", "--proto-dist", "inet6_tcp"], "malformed IPv6 address"},
               {["--name", "c@::1"], "needs the inet6_tcp"}],
        [begin
             {St, Out} = ?H:run_cli(Args ++ ["--cookie", ?H:cookie(), "ping", "x@::1"], 30000),
             ?assertEqual({2, true}, {St, string:find(Out, Says) =/= nomatch}, Out)
         end || {Args, Says} <- Bad],
        [begin
             {St, Out} = cli6(["-v", "ping", Peer]),
             ?assertEqual({1, true}, {St, string:find(Out, "cannot resolve host (malformed IPv6") =/= nomatch}, Out)
         end || Peer <- ["x@::1::2", "x@fdaa:::3", "x@1:2:3:4:5:6:7:8:9"]]
    end).

%% A certificate from a CA the other side does not trust, over inet6_tls: refused
%% both ways, exit 3 from the CLI (refused, not 4: timed out) and one log line
%% naming the reason; the C node serves on.
tls_untrusted_ca(Config) ->
    Why = "(unknown ca|unable to get local issuer)",
    ?H:run(Config, fun() ->
        #{node := S} = H = serve6(tls(Config, good), []),
        with_beam(tls(Config, good), fun(P, V) ->
            %% a C node with the untrusted certificate dials a good BEAM node: BEAM refuses it
            {3, Out} = cli6(tls(Config, bad), ["--timeout", "20000", "ping", atom_to_list(V)]),
            ?assertMatch({match, _}, re:run(Out, "pang")),
            ?assertMatch({match, _}, re:run(Out, "TLS: refused by the peer: .*unknown ca")),
            with_beam(tls(Config, bad), fun(Pb, Vb) ->
                %% a good C node dials the BEAM node with the untrusted certificate: refused here
                {3, Out2} = cli6(tls(Config, good), ["--timeout", "20000", "ping", atom_to_list(Vb)]),
                ?assertMatch({match, _}, re:run(Out2, "TLS: peer certificate refused: .*" ++ Why)),
                %% that BEAM node dials the C node: refused there, one line
                ?assertEqual(pang, peer:call(Pb, net_adm, ping, [S], 20000)),
                ?H:wait_line(H, "handshake from ::1 .* failed: TLS: peer certificate refused: .*" ++ Why, 15000)
            end),
            ?assertEqual(3, peer:call(P, erpc, call, [S, cnode_demo, add, [1, 2], 15000], 20000))
        end)
    end).

%% The host check for nodes named by an IPv6 literal (see the top of this file):
%% BEAM refuses a C node whose certificate names ::1 as an IP address only, and
%% takes it with the match_fun in its optfile; the C node takes such a
%% certificate from BEAM (OpenSSL matches the literal against the IP entry), and
%% one naming ::1 as a DNS name only, as BEAM does (tls.c, literal_cb), and
%% refuses one naming another address.
tls_host_check(Config) ->
    ?H:run(Config, fun() ->
        #{node := S} = H = serve6(tls(Config, iponly), []),
        with_beam(tls(Config, good), fun(P, _V) ->
            ?assertEqual(pang, peer:call(P, net_adm, ping, [S], 20000)),
            %% BEAM's refusal (its alert), not the C node's
            ?H:wait_line(H, "handshake from ::1 .* failed: TLS: refused by the peer: ", 15000)
        end),
        with_beam(tls(Config, iponly_fun), fun(P, V) ->
            ?assertEqual(pong, peer:call(P, net_adm, ping, [S], 20000)),
            ?assertMatch({0, "pong" ++ _}, cli6(tls(Config, iponly), ["ping", atom_to_list(V)]))
        end),
        with_beam(tls(Config, dnsonly), fun(_P, V) ->
            ?assertMatch({0, "pong" ++ _}, cli6(tls(Config, good), ["ping", atom_to_list(V)]))
        end),
        with_beam(tls(Config, other), fun(_P, V) ->
            {3, Out} = cli6(tls(Config, good), ["--timeout", "20000", "ping", atom_to_list(V)]),
            ?assertMatch({match, _}, re:run(Out, "TLS: peer certificate refused: IP address mismatch"))
        end)
    end).
