%%% Partitions in network namespaces made by the case: the C node
%%% (c_src/cnode_hardtest.c, mode partition) in one namespace, a BEAM node
%%% serving a pg group in another, joined by a veth pair; addresses exist
%%% only inside the namespaces (10.77.0.1 and .2), the nodes use -name
%%% n@address and each namespace has its own epmd. Net tick time 4 s on both.
%%%
%%% Phase "cut": the C node's end of the link goes down (ip link set down).
%%% The C node must declare the peer down within the tick time (5/4 of it
%%% plus slack), its pending calls to the peer end with noconnection, the
%%% peer's members leave the mirror, and the liveness probe marks the peer
%%% suspect before it is declared down. Meanwhile the BEAM node replaces its
%%% member (the old pid leaves, a new one joins). Heal: link up; the C node
%%% reconnects and pg resynchronises: the mirror lists exactly the peer's
%%% members (no ghost of the old pid, no duplicate).
%%% Phase "oneway": only the peer's packets are lost (a blackhole route to
%%% the C node in the peer's namespace: replies and ticks from the peer are
%%% dropped, ours still arrive); same checks, then heal again.
%%%
%%% Where namespaces cannot be made (not root, no CAP_NET_ADMIN) the case
%%% is a planned skip with the reason. `make partition` runs this suite
%%% alone and prints "partition: down in N ms, healed in N ms, N ghosts,
%%% N duplicates" (build/partition.line).
-module(partition_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([all/0, init_per_suite/1, end_per_suite/1, init_per_testcase/2, end_per_testcase/2]).
-export([cut_and_heal/1]).
%% runs on the BEAM node in its namespace
-export([beam_main/0]).

-define(H, cnode_harness).
-define(S, part_scope).
-define(G, part_svc).
-define(TICK, 4).
-define(C_ADDR, "10.77.0.1").
-define(B_ADDR, "10.77.0.2").

all() -> [cut_and_heal].

init_per_suite(Config) -> ?H:init_per_suite(?MODULE, Config).
end_per_suite(Config) -> ?H:end_per_suite(Config).
init_per_testcase(TC, Config) -> ?H:init_per_testcase(TC, Config).
end_per_testcase(TC, Config) ->
    R = ?H:end_per_testcase(TC, Config),
    %% the processes in them are gone (stopped by pid above): the namespaces go too
    [os:cmd("ip netns del " ++ Ns ++ " 2>/dev/null") || Ns <- namespaces()],
    R.

namespaces() ->
    Id = os:getpid(),
    ["cnh_c" ++ Id, "cnh_b" ++ Id].

%%% ---- the BEAM node ------------------------------------------------------

%% pg scope, one member; whenever a node goes down the member is replaced, so
%% that the C node's mirror must drop the old pid when it resynchronises.
beam_main() ->
    spawn(fun() ->
                  {ok, _} = pg:start(?S),
                  ok = net_kernel:monitor_nodes(true, [{node_type, all}]), %% the C node is hidden
                  M = new_member(),
                  io:format("beam ready ~p~n", [M]),
                  beam_loop(M)
          end).

new_member() ->
    P = spawn(timer, sleep, [infinity]),
    ok = pg:join(?S, ?G, P),
    P.

beam_loop(M) ->
    receive
        {nodedown, N, _} ->
            exit(M, kill),
            M2 = new_member(),
            io:format("beam: nodedown ~p, member ~p replaced by ~p~n", [N, M, M2]),
            beam_loop(M2);
        Other ->
            io:format("beam: ~p~n", [Other]),
            beam_loop(M)
    end.

%%% ---- helpers (driver) ---------------------------------------------------

sh(Cmd) ->
    R = os:cmd(Cmd ++ " 2>&1; echo \"rc=$?\""),
    case lists:reverse(string:split(string:trim(R), "\n", all)) of
        ["rc=0" | _] -> ok;
        [RC | Rest] -> {error, Cmd, RC, lists:reverse(Rest)}
    end.

ok(Cmd) ->
    case sh(Cmd) of
        ok -> ok;
        E -> ct:fail(E)
    end.

make_net() ->
    [NsC, NsB] = namespaces(),
    Id = os:getpid(),
    VC = "vhc" ++ Id, VB = "vhb" ++ Id,
    [os:cmd("ip netns del " ++ Ns ++ " 2>/dev/null") || Ns <- [NsC, NsB]],
    case sh("ip netns add " ++ NsC) of
        ok ->
            ok("ip netns add " ++ NsB),
            ok("ip link add " ++ VC ++ " type veth peer name " ++ VB),
            ok("ip link set " ++ VC ++ " netns " ++ NsC),
            ok("ip link set " ++ VB ++ " netns " ++ NsB),
            [begin
                 ok("ip -n " ++ Ns ++ " link set lo up"),
                 ok("ip -n " ++ Ns ++ " addr add " ++ A ++ "/24 dev " ++ V),
                 ok("ip -n " ++ Ns ++ " link set " ++ V ++ " up")
             end || {Ns, V, A} <- [{NsC, VC, ?C_ADDR}, {NsB, VB, ?B_ADDR}]],
            {ok, #{nsc => NsC, nsb => NsB, vc => VC, vb => VB}};
        {error, _, _, Out} ->
            {skip, "network namespaces not permitted here (ip netns add: " ++ string:join(Out, " ") ++ ")"}
    end.

in_ns(Kind, Name, Ns, Exe, Args) ->
    ?H:start_os(Kind, Name, os:find_executable("ip"), ["netns", "exec", Ns, Exe | Args], #{check_exit => false}).

control(File, Word) -> ok = file:write_file(File, Word).

num(Line, Re) ->
    {match, [N]} = re:run(Line, Re, [{capture, all_but_first, list}]),
    list_to_integer(N).

%% Checks one phase's lines; returns {DownMs, HealMs}.
check_phase(C, Label) ->
    {match, [Down]} = ?H:wait_line(C, "^(" ++ Label ++ ": down in .*)$", 1000),
    {match, [First]} = ?H:wait_line(C, "^" ++ Label ++ ": suspect first (\\d)", 1000),
    {match, [Calls]} = ?H:wait_line(C, "^(" ++ Label ++ ": calls .*)$", 1000),
    io:format("~s~n~s~n", [Down, Calls]),
    DownMs = num(Down, "down in (-?\\d+) ms"),
    true = DownMs >= 0,
    %% declared down within the tick time (BEAM: between 3/4 and 5/4 of it) plus 2 s of slack
    true = DownMs =< ?H:ms(?TICK * 1250 + 2000),
    true = num(Down, "left mirror in (-?\\d+) ms") >= 0,
    "1" = First,
    8 = num(Calls, "calls (\\d+) noconnection"),
    0 = num(Calls, "(\\d+) unanswered"),
    DownMs.

check_heal(C, Label) ->
    {match, [Heal]} = ?H:wait_line(C, "^(" ++ Label ++ ": healed in .*)$", 90000),
    io:format("~s~n", [Heal]),
    HealMs = num(Heal, "healed in (-?\\d+) ms"),
    true = HealMs >= 0,
    0 = num(Heal, "(\\d+) ghosts"),
    0 = num(Heal, "(\\d+) duplicates"),
    1 = num(Heal, "(\\d+) members"),
    HealMs.

cut_and_heal(Config) ->
    case make_net() of
        {skip, Why} ->
            io:format("~s~n", [Why]),
            file:write_file(filename:join([?H:root(), "build", "partition.line"]),
                            ["partition: skipped: ", Why, $\n]),
            {skip, {planned, Why}};
        {ok, Net} ->
            run(Config, Net)
    end.

run(Config, #{nsc := NsC, nsb := NsB, vc := VC}) ->
    ?H:run(Config, fun() ->
        Port = integer_to_list(?H:epmd_port()),
        Epmd = os:find_executable("epmd"),
        Cookie = ?H:cookie(),
        Control = filename:join([?H:root(), "build", "partition.control." ++ os:getpid()]),
        control(Control, "wait"),
        [in_ns(epmd, "epmd" ++ Ns, Ns, Epmd, ["-port", Port]) || Ns <- [NsC, NsB]],
        Dir = filename:dirname(code:which(?MODULE)),
        BNode = "b@" ++ ?B_ADDR,
        B = in_ns(beam, "b", NsB, os:find_executable("erl"),
                  ["-name", BNode, "-setcookie", Cookie, "-noshell", "-noinput",
                   "-kernel", "net_ticktime", integer_to_list(?TICK), "-pa", Dir,
                   "-eval", "partition_SUITE:beam_main()"]),
        ?H:wait_line(B, "^beam ready", 90000),
        C = in_ns(hardtest, "c", NsC, ?H:prog_path("cnode_hardtest"),
                  ["partition", "--name", "c@" ++ ?C_ADDR, "--cookie", Cookie,
                   "--scope", atom_to_list(?S), "--group", atom_to_list(?G), "--peer", BNode,
                   "--ticktime", integer_to_list(?TICK), "--control", Control]),
        ?H:wait_line(C, "^READY", 60000),
        ?H:wait_line(C, "^cut: pending 8", 10000),
        %% cut the link at our end
        ok("ip -n " ++ NsC ++ " link set " ++ VC ++ " down"),
        control(Control, "cut"),
        ?H:wait_line(C, "^cut: DOWN", 60000),
        D1 = check_phase(C, "cut"),
        ok("ip -n " ++ NsC ++ " link set " ++ VC ++ " up"),
        control(Control, "heal"),
        H1 = check_heal(C, "cut"),
        %% one-way: the peer's packets to us are lost
        ?H:wait_line(C, "^oneway: pending 8", 30000),
        ok("ip -n " ++ NsB ++ " route add blackhole " ++ ?C_ADDR ++ "/32"),
        control(Control, "oneway"),
        ?H:wait_line(C, "^oneway: DOWN", 60000),
        D2 = check_phase(C, "oneway"),
        ok("ip -n " ++ NsB ++ " route del blackhole " ++ ?C_ADDR ++ "/32"),
        control(Control, "heal2"),
        H2 = check_heal(C, "oneway"),
        {match, [Line]} = ?H:wait_line(C, "^(partition: .*)$", 10000),
        io:format("~s~ncut: down ~p ms, healed ~p ms; oneway: down ~p ms, healed ~p ms~n~s~n",
                  [Line, D1, H1, D2, H2, ?H:output_text(B)]),
        control(Control, "stop"),
        0 = ?H:wait_exit(C, 60000),
        file:delete(Control),
        file:write_file(filename:join([?H:root(), "build", "partition.line"]), [Line, $\n]),
        ok
    end, 300000).
