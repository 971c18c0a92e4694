%%% The balancer against real BEAM members: three peer nodes, each with a
%%% process in group `svc` of pg scope rpc_load_balancer (seed-behaviour.md
%%% A2), and the C driver (erlang_test_harness/c_src/cnode_balancetest.c)
%%% whose balancers call them, under load from several threads.
%%%
%%%  - round robin spreads exactly; random roughly evenly
%%%  - kill -9 of a member under load: no call fails (retries with the
%%%    node_errors policy land on live members), later calls go only to live
%%%    members, every in-flight counter is back to 0 at the end
%%%  - least_connections and power_of_two steer away from a member whose
%%%    calls are held open
%%%  - an empty group: service_unavailable at once
%%%  - DefRpc log lines in EasyRpc's format for real BEAM answers
%%%  - LeastCpu: the C node answers the CPU MFA; picks follow the readings
%%%  - EasyRpc selectors: a static node list and an MFA provider
-module(balancer_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([all/0, init_per_suite/1, end_per_suite/1, init_per_testcase/2, end_per_testcase/2]).
-export([round_robin_spread/1, kill9_under_load/1, least_connections_steers/1, power_of_two_steers/1,
         empty_group_unavailable/1, defrpc_log_lines/1, least_cpu/1, static_list_and_provider/1,
         cli_balance/1]).
%% called on the member nodes
-export([slow_on/2, fake_cpu/0, member_nodes/0]).

-define(H, cnode_harness).
-define(S, rpc_load_balancer).
-define(G, svc).
-define(RANGE, 4294967295). %% libring's hash range

all() ->
    [round_robin_spread, kill9_under_load, least_connections_steers, power_of_two_steers,
     empty_group_unavailable, defrpc_log_lines, least_cpu, static_list_and_provider, cli_balance].

init_per_suite(Config) -> ?H:init_per_suite(?MODULE, Config).
end_per_suite(Config) -> ?H:end_per_suite(Config).
init_per_testcase(TC, Config) -> ?H:init_per_testcase(TC, Config).
end_per_testcase(TC, Config) -> ?H:end_per_testcase(TC, Config).

%%% ---- functions the C balancer calls on the members ---------------------

%% Holds the call open for Ms on node Slow, answers at once elsewhere.
slow_on(Slow, Ms) ->
    case node() of
        Slow -> timer:sleep(Ms);
        _ -> ok
    end,
    node().

%% LeastCpu's MFA: the reading the test set for this node.
fake_cpu() -> persistent_term:get({?MODULE, cpu}, 50.0).

%% A node provider (EasyRpc's {M, F, A}): the list the test set.
member_nodes() -> persistent_term:get({?MODULE, nodes}, []).

%%% ---- helpers (run on the driver) ----------------------------------------

%% N BEAM nodes running scope ?S, meshed, each with one member in ?G.
beams(N) ->
    Hs = [?H:start_peer(?H:unique("lb")) || _ <- lists:seq(1, N)],
    Nodes = [Node || #{node := Node} <- Hs],
    [begin
         {ok, _} = erpc:call(Node, pg, start, [?S]),
         [true = erpc:call(Node, net_kernel, connect_node, [O]) || O <- Nodes, O =/= Node]
     end || Node <- Nodes],
    [member(Node, ?G) || Node <- Nodes],
    [?H:wait_until(fun() -> length(erpc:call(Node, pg, get_members, [?S, ?G])) =:= N end, 10000)
     || Node <- Nodes],
    {Hs, Nodes}.

member(Node, Group) ->
    P = erpc:call(Node, erlang, spawn, [timer, sleep, [infinity]]),
    ok = erpc:call(Node, pg, join, [?S, Group, P]),
    P.

%% The C driver, attached to the scope through Seed, seeing Want in ?G.
cnode(Seed, Want) ->
    Bin = ?H:prog_path("cnode_balancetest"),
    Name = ?H:unique("clb"),
    H = ?H:start_os(balancetest, Name, Bin, ["--sname", Name, "--cookie", ?H:cookie()]),
    {match, [NodeStr]} = ?H:wait_line(H, "^READY (\\S+)", 60000),
    C = H#{node => list_to_atom(NodeStr)},
    ok = ctl(C, {setup, ?S, Seed}),
    await_members(C, ?G, Want),
    C.

ctl(#{node := C}, Cmd) -> ?H:ctl(C, Cmd, 60000).

await_members(C, Group, Want) ->
    W = lists:sort(Want),
    try ?H:wait_until(fun() -> lists:sort(ctl(C, {members, ?S, Group})) =:= W end, 15000)
    catch error:{wait_until_timeout, _} ->
            ct:fail({members, Group, {want, W}, {got, ctl(C, {members, ?S, Group})}})
    end.

balancer(C, Id, Group, Opts) ->
    case ctl(C, {balancer, Id, Group, Opts}) of
        ok -> ok;
        Other -> ct:fail({balancer, Id, Opts, Other})
    end.

%% Every in-flight counter of balancer Id is 0.
counters_zero(C, Id) ->
    Counts = ctl(C, {in_flight, Id}),
    ct:log("in flight ~p: ~p", [Id, Counts]),
    [] = [NC || {_, N} = NC <- Counts, N =/= 0],
    ok.

count(Node, Spread) -> proplists:get_value(Node, Spread, 0).

%%% ---- cases --------------------------------------------------------------

round_robin_spread(Config) ->
    ?H:run(Config, fun() ->
        {_, [A | _] = Nodes} = beams(3),
        C = cnode(A, Nodes),
        balancer(C, rr, ?G, [{algorithm, round_robin}]),
        %% one call: the node that answered is the node the balancer reports
        {ok, Served, Served} = ctl(C, {call, rr, erlang, node, []}),
        true = lists:member(Served, Nodes),
        %% rpc_load_balancer's RoundRobin: exactly even over 300 calls
        {Spread, []} = ctl(C, {calls, rr, 300, erlang, node, []}),
        ct:log("round robin: ~p", [Spread]),
        [100, 100, 100] = [count(N, Spread) || N <- Nodes],
        %% random: every member gets a fair share
        balancer(C, rnd, ?G, [{algorithm, random}]),
        {RSpread, []} = ctl(C, {calls, rnd, 300, erlang, node, []}),
        ct:log("random: ~p", [RSpread]),
        [true = count(N, RSpread) > 50 || N <- Nodes],
        counters_zero(C, rr),
        counters_zero(C, rnd),
        ok
    end).

kill9_under_load(Config) ->
    ?H:run(Config, fun() ->
        {[_, HB, _], [A, B, D] = Nodes} = beams(3),
        C = cnode(A, Nodes),
        balancer(C, lb, ?G, [{algorithm, random}, {retries, 3}, {retry_policy, node_errors}, {timeout, 5000}]),
        %% calls to B are held open for 1 s, so that B dies with calls in flight
        ok = ctl(C, {load_start, lb, 4, ?MODULE, slow_on, [B, 1000]}),
        timer:sleep(2500),
        ?H:kill_peer(HB),
        ok = ctl(C, {mark, B}),
        T0 = erlang:monotonic_time(millisecond),
        await_members(C, ?G, [A, D]),
        ct:log("B left the mirror after ~p ms", [erlang:monotonic_time(millisecond) - T0]),
        timer:sleep(1500),
        {Spread, Errors, Retries, Late} = ctl(C, {load_stop, lb}),
        ct:log("spread ~p~nerrors ~p~nretries ~p~nlate ~p", [Spread, Errors, Retries, Late]),
        %% no call failed: the ones caught by the kill were retried ...
        [] = Errors,
        true = count(B, Spread) > 0 andalso count(A, Spread) > 0 andalso count(D, Spread) > 0,
        %% ... on another, live member
        true = length(Retries) >= 1,
        [] = [R || {_Failed, Landed} = R <- Retries, not lists:member(Landed, [A, D])],
        true = lists:member(B, [F || {F, _} <- Retries]),
        %% nothing answered for B after it died
        0 = Late,
        %% later calls go only to the live members
        {After, []} = ctl(C, {calls, lb, 200, ?MODULE, slow_on, [B, 1000]}),
        ct:log("after: ~p", [After]),
        0 = count(B, After),
        200 = count(A, After) + count(D, After),
        %% and every counter is back to 0, the dead node's too
        counters_zero(C, lb),
        ok
    end, 240000).

%% A member whose calls are held open for Ms gets few of the calls.
steers(Config, Algo) ->
    ?H:run(Config, fun() ->
        {_, [A, B, D] = Nodes} = beams(3),
        C = cnode(A, Nodes),
        balancer(C, s, ?G, [{algorithm, Algo}, {timeout, 10000}]),
        ok = ctl(C, {load_start, s, 4, ?MODULE, slow_on, [B, 1000]}),
        timer:sleep(3000),
        {Spread, [], _, _} = ctl(C, {load_stop, s}),
        Total = lists:sum([N || {_, N} <- Spread]),
        ct:log("~p: ~p of ~p calls to the slow node ~p; spread ~p", [Algo, count(B, Spread), Total, B, Spread]),
        true = count(A, Spread) > 0 andalso count(D, Spread) > 0,
        %% round robin would give it a third; here at most a few per second
        true = count(B, Spread) * 20 < Total,
        counters_zero(C, s),
        ok
    end).

least_connections_steers(Config) -> steers(Config, least_connections).
power_of_two_steers(Config) -> steers(Config, power_of_two).

empty_group_unavailable(Config) ->
    ?H:run(Config, fun() ->
        {_, [A | _] = Nodes} = beams(3),
        C = cnode(A, Nodes),
        %% a group nobody joined
        balancer(C, e, nobody, [{retries, 3}]),
        {error, -16, node_error, Text, '', Ms} = ctl(C, {call, e, erlang, node, []}),
        %% how soon is a benchmark's question: logged, not asserted
        ct:log("~s after ~p ms", [Text, Ms]),
        <<"[node_error] no members registered", _/binary>> = Text,
        %% a group whose only member leaves
        P = member(A, lonely),
        await_members(C, lonely, [A]),
        balancer(C, l, lonely, []),
        {ok, A, A} = ctl(C, {call, l, erlang, node, []}),
        ok = erpc:call(A, pg, leave, [?S, lonely, P]),
        await_members(C, lonely, []),
        {error, -16, node_error, _, '', Ms2} = ctl(C, {call, l, erlang, node, []}),
        ct:log("after the last member left: node_error after ~p ms", [Ms2]),
        counters_zero(C, l),
        ok
    end).

defrpc_log_lines(Config) ->
    ?H:run(Config, fun() ->
        {_, [A | _] = Nodes} = beams(3),
        C = cnode(A, Nodes),
        balancer(C, d, ?G, [{algorithm, round_robin}, {timeout, 5000}]),
        %% success: --> and <--
        {0, [Call, Ok]} = ctl(C, {rpc, d, erlang, abs, [-3], <<"[{retry, 1}]">>}),
        ct:log("~s~n~s", [Call, Ok]),
        {match, [N1]} = re:run(Call, "^\\[EasyRpc\\] --> :erlang\\.abs/1 on (:\\S+) \\[timeout: 5000ms, retry: 1\\]$",
                               [{capture, all_but_first, binary}, unicode]),
        Want = <<"[EasyRpc] <-- :erlang.abs/1 on ", N1/binary, " succeeded \xE2\x80\x94 result: 3">>,
        Want = Ok,
        %% a remote error, retried once on the next member: -->, <<<, --> [attempt 2], !!!
        {-5, Lines} = ctl(C, {rpc, d, erlang, error, [oops], <<"[{retry, 1}]">>}),
        ct:log("~s", [lists:join("\n", Lines)]),
        [L1, L2, L3, L4] = Lines,
        {match, [X]} = re:run(L1, "^\\[EasyRpc\\] --> :erlang\\.error/1 on (:\\S+) \\[timeout: 5000ms, retry: 1\\]$",
                              [{capture, all_but_first, binary}]),
        Retry = <<"[EasyRpc] <<< :erlang.error/1 on ", X/binary,
                  " failed (attempt 1/2, 1 retries left) \xE2\x80\x94 [rpc_error] Erlang error: {:exception, :oops, [{:erlang, :error, [:oops]">>,
        Retry = binary:part(L2, 0, byte_size(Retry)),
        {match, [Y]} = re:run(L3, "^\\[EasyRpc\\] --> :erlang\\.error/1 on (:\\S+) \\[attempt 2\\] \\[timeout: 5000ms, retry: 1\\]$",
                              [{capture, all_but_first, binary}]),
        true = X =/= Y, % round robin moved on
        Final = <<"[EasyRpc] !!! :erlang.error/1 on ", Y/binary,
                  " failed permanently after 2 attempt(s) \xE2\x80\x94 [rpc_error] Erlang error: {:exception, :oops, ">>,
        Final = binary:part(L4, 0, byte_size(Final)),
        {match, _} = re:run(L4, "\\| details: \\[exception: ErlangError, node: " ++ re_quote(Y) ++
                                ", attempt: 1, module: :erlang, function: :error\\]$", [unicode]),
        %% the node names are inspect/1 of the atoms
        true = lists:member(X, [iolist_to_binary(io_lib:format("~s", [inspect(N)])) || N <- Nodes]),
        ok
    end).

%% Elixir's inspect of a node atom, as the log lines print it.
inspect(Node) ->
    S = atom_to_list(Node),
    case re:run(S, "^[A-Za-z_][A-Za-z0-9_@]*[?!]?$") of
        {match, _} -> ":" ++ S;
        nomatch -> ":\"" ++ S ++ "\""
    end.

re_quote(B) ->
    re:replace(B, "[.^$|()\\[\\]{}*+?\\\\]", "\\\\&", [global, {return, list}]).

least_cpu(Config) ->
    ?H:run(Config, fun() ->
        {_, [A, B, D] = Nodes} = beams(3),
        C = #{node := CN} = cnode(A, Nodes),
        %% the C node answers LeastCpu's default MFA with its /proc/stat reading
        ok = ctl(C, serve_cpu),
        Cpu = erpc:call(CN, 'Elixir.RpcLoadBalancer.LoadBalancer.NodeCpuCache', get_local_cpu, [], 10000),
        ct:log("C node cpu: ~p", [Cpu]),
        true = is_float(Cpu) andalso Cpu >= 0.0 andalso Cpu =< 100.0,
        %% the members report through a configurable MFA
        Set = fun(Node, V) -> ok = erpc:call(Node, persistent_term, put, [{?MODULE, cpu}, V]) end,
        Set(A, 80.0), Set(B, 10.0), Set(D, 60.0),
        balancer(C, cpu, ?G, [{algorithm, least_cpu}, {cpu, ?MODULE, fake_cpu}, {poll, -1}]),
        50.0 = ctl(C, {cpu, cpu, B}), % no reading yet
        ok = ctl(C, {cpu_poll, cpu}),
        10.0 = ctl(C, {cpu, cpu, B}),
        {S1, []} = ctl(C, {calls, cpu, 60, erlang, node, []}),
        60 = count(B, S1),
        %% B gets busy: within 5 points of the lowest (D at 60) only D is left
        Set(B, 95.0),
        ok = ctl(C, {cpu_poll, cpu}),
        {S2, []} = ctl(C, {calls, cpu, 60, erlang, node, []}),
        ct:log("after B got busy: ~p", [S2]),
        60 = count(D, S2),
        %% A and D within the threshold: both get calls
        Set(A, 62.0),
        ok = ctl(C, {cpu_poll, cpu}),
        {S3, []} = ctl(C, {calls, cpu, 200, erlang, node, []}),
        true = count(A, S3) > 40 andalso count(D, S3) > 40 andalso count(B, S3) =:= 0,
        counters_zero(C, cpu),
        ok
    end).

static_list_and_provider(Config) ->
    ?H:run(Config, fun() ->
        {_, [A, B, D] = Nodes} = beams(3),
        C = cnode(A, Nodes),
        %% EasyRpc's static list, with a node that is not there: node_errors retries skip it
        Ghost = ?H:node_name(?H:unique("ghost")),
        balancer(C, st, static, [{algorithm, easy_round_robin}, {nodes, [A, Ghost, B]},
                                 {retries, 2}, {retry_policy, node_errors}]),
        {S1, []} = ctl(C, {calls, st, 30, erlang, node, []}),
        ct:log("static list: ~p", [S1]),
        0 = count(D, S1),
        30 = count(A, S1) + count(B, S1),
        %% EasyRpc's {M, F, A} provider, called (on A) on every pick
        ok = erpc:call(A, persistent_term, put, [{?MODULE, nodes}, [D]]),
        balancer(C, pr, provided, [{algorithm, easy_random}, {provider, A, ?MODULE, member_nodes}]),
        {S2, []} = ctl(C, {calls, pr, 20, erlang, node, []}),
        20 = count(D, S2),
        ok = erpc:call(A, persistent_term, put, [{?MODULE, nodes}, [B, D]]),
        {S3, []} = ctl(C, {calls, pr, 100, erlang, node, []}),
        true = count(B, S3) > 20 andalso count(D, S3) > 20,
        %% EasyRpc's checks of the provider's answer
        ok = erpc:call(A, persistent_term, put, [{?MODULE, nodes}, []]),
        {error, -16, node_error, Empty, '', _} = ctl(C, {call, pr, erlang, node, []}),
        <<"[node_error] Dynamic node provider :balancer_SUITE.member_nodes/0 returned an empty list">> = Empty,
        ok = erpc:call(A, persistent_term, put, [{?MODULE, nodes}, nope]),
        {error, -17, config_error, Bad, '', _} = ctl(C, {call, pr, erlang, node, []}),
        <<"[config_error] Dynamic node provider :balancer_SUITE.member_nodes/0 must return a non-empty list of atoms, got: :nope">> = Bad,
        counters_zero(C, st),
        counters_zero(C, pr),
        ok
    end).

%% `cnode balance` as a user runs it, a fresh CLI each time: it waits for
%% pg's initial sync, so round robin spreads exactly; every call with one
%% key goes to the node libring's ring (built here, as the seed builds it)
%% names for that key, atom keys included; --filter keeps the nodes a
%% substring or a ~r// regex names, and one that leaves nothing is
%% service_unavailable, exit 5, at once. A remote raise on every call is
%% counted, not fatal: one error line with its count, exit 1. Bad input:
%% exit 2 with a message, no call made.
cli_balance(Config) ->
    ?H:run(Config, fun() ->
        {_, [A, B, _] = Nodes} = beams(3),
        Base = ["--cookie", ?H:cookie(), "balance", "--connect", atom_to_list(A),
                "--scope", atom_to_list(?S), "--group", atom_to_list(?G)],
        Balance = fun(Opts, Call) ->
                          {Code, Out} = ?H:run_cli(Base ++ Opts ++ Call),
                          ct:log("balance ~p ~p -> ~p~n~s", [Opts, Call, Code, Out]),
                          {Code, spread_of(Out), Out}
                  end,
        Node = ["erlang", "node", "[]"],
        {0, RR, _} = Balance(["--algorithm", "round_robin", "-n", "30"], Node),
        [10, 10, 10] = [count(N, RR) || N <- Nodes],
        Members = erpc:call(A, pg, get_members, [?S, ?G]),
        InPgOrder = [node(P) || P <- Members],
        [begin
             Want = ring_node(InPgOrder, Key),
             {0, [{Want, 12}], _} = Balance(["--algorithm", "hash_ring", "--key", Text, "-n", "12"], Node)
         end || {Key, Text} <- [{"user-42", "\"user-42\""}, {<<"order-7">>, "<<\"order-7\">>"},
                                {user, "user"}, {{tenant, 3}, "{tenant, 3}"}]],
        {0, [{B, 6}], _} = Balance(["--filter", atom_to_list(B), "-n", "6"], Node),
        {0, [{B, 6}], _} = Balance(["--filter", "~r/^" ++ atom_to_list(B) ++ "$/", "-n", "6"], Node),
        {5, [], None} = Balance(["--filter", "~r/^nomatch$/", "-n", "100"], Node),
        {match, _} = re:run(None, "^service_unavailable: ", [multiline]),
        {1, [], Raised} = Balance(["-n", "3"], ["erlang", "binary_to_atom", "[1]"]),
        %% one line per distinct error (the node is in the text), with its count
        {match, Errs} = re:run(Raised, "^internal_server_error: \\[rpc_error\\] erlang.binary_to_atom/1 raised error: "
                               "badarg .*?(?: \\((\\d+) times\\))?$", [multiline, global, {capture, all_but_first, list}]),
        3 = lists:sum([case E of [[_ | _] = K] -> list_to_integer(K); _ -> 1 end || E <- Errs]),
        [{2, [], _} = Balance(Bad, Node)
         || Bad <- [["--algorithm", "bogus"], ["--key", "{unclosed"], ["--filter", "~r/(/"],
                    ["--algorithm", "call_direct"]]],
        {2, [], _} = Balance([], ["erlang", "node", "not_a_list"]),
        ok
    end).

%% The `NODE COUNT` lines of `cnode balance`.
spread_of(Out) ->
    case re:run(Out, "^(\\S+@\\S+) (\\d+)$", [multiline, global, {capture, all_but_first, list}]) of
        {match, Ms} -> [{list_to_atom(N), list_to_integer(C)} || [N, C] <- Ms];
        nomatch -> []
    end.

%% libring's key_to_node over a ring of Nodes added in that order, weight
%% 128: points phash2({Node, I}, Range), a tie keeps the first node; an atom
%% key is hashed as term_to_binary(Key) (this OTP's encoding); the first
%% point at or after the key's hash, else the smallest.
ring_node(Nodes, Key) ->
    Ring = lists:foldl(
             fun(N, R0) ->
                     lists:foldl(fun(I, R) ->
                                         H = erlang:phash2({N, I}, ?RANGE),
                                         case gb_trees:is_defined(H, R) of
                                             true -> R;
                                             false -> gb_trees:insert(H, N, R)
                                         end
                                 end, R0, lists:seq(1, 128))
             end, gb_trees:empty(), Nodes),
    K = case is_atom(Key) of
            true -> term_to_binary(Key);
            false -> Key
        end,
    case gb_trees:next(gb_trees:iterator_from(erlang:phash2(K, ?RANGE), Ring)) of
        {_, N, _} -> N;
        none -> element(2, gb_trees:smallest(Ring))
    end.
