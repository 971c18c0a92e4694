%% The anchor of bench_pick: the same picks made on BEAM the way the seed
%% libraries make them (seed-behaviour.md A6, B3), over a prepared list of
%% member node atoms, in a loop of P processes, nanoseconds per pick. Left
%% out, and paid by the seed on every pick: pg:get_members/2 and the
%% dedup into a node list (the C figure includes its equivalent, the check
%% that its prepared view is still current).
%%
%%   erl -noshell -run bench_pick_anchor main ALGOS THREADS MEMBERS N REPS
%% ALGOS, THREADS, MEMBERS: comma lists. One line per figure, as bench_pick:
%%     pick ALGO THREADS MEMBERS NS_PER_PICK
%% the median over REPS runs of the processes' mean.
%%
%% Per algorithm: random and easy_random are Enum.random/1 (lists:nth of
%% rand:uniform); round_robin adds to a :counters cursor and reads it back,
%% resetting past 10,000,000; weighted_round_robin does the same on its own
%% cursor and indexes the expanded list, after comparing the member list
%% with the one the expansion was cached for; least_connections scans a
%% :counters slot per member (every member holds one call, as in
%% bench_pick) and adds/subtracts on the chosen one; power_of_two reads two
%% distinct random members' slots; hash_ring is libring's key_to_node
%% (phash2(Key, 2^32-1), gb_trees:iterator_from/next, else smallest) after
%% the seed's check that the cached ring's node set equals the members as a
%% set; easy_round_robin and sticky keep their state in the process
%% dictionary; easy_hash is lists:nth(phash2(Args, N) + 1); least_cpu reads
%% each member's cached reading, keeps those within 5.0 of the lowest and
%% picks one at random; call_direct is node(); custom is an atomics round
%% robin.
-module(bench_pick_anchor).
-export([main/1]).

-define(RANGE, 4294967295).
-define(NKEYS, 1024).

main([AlgosA, ThreadsA, MembersA, NA, RepsA]) ->
    Algos = [list_to_atom(A) || A <- string:lexemes(AlgosA, ",")],
    Threads = [list_to_integer(T) || T <- string:lexemes(ThreadsA, ",")],
    Members = [list_to_integer(M) || M <- string:lexemes(MembersA, ",")],
    N = list_to_integer(NA),
    Reps = list_to_integer(RepsA),
    Keys = list_to_tuple([list_to_binary("key-" ++ integer_to_list(K)) || K <- lists:seq(0, ?NKEYS - 1)]),
    Args = list_to_tuple([[element(K, Keys)] || K <- lists:seq(1, ?NKEYS)]),
    [begin
         Ns = lists:sort([run(Algo, T, M, N, Keys, Args) || _ <- lists:seq(1, Reps)]),
         io:format("pick ~s ~b ~b ~.1f~n", [Algo, T, M, lists:nth(Reps div 2 + 1, Ns)])
     end
     || Algo <- Algos, T <- Threads, M <- Members],
    halt(0).

nodes_of(M) ->
    [list_to_atom(lists:flatten(io_lib:format("member~3..0b@benchhost", [I]))) || I <- lists:seq(0, M - 1)].

%% One run: T processes, each N picks; the mean of their ns per pick.
run(Algo, T, M, N, Keys, Args) ->
    Nodes = nodes_of(M),
    Shared = shared(Algo, Nodes),
    Parent = self(),
    Go = make_ref(),
    Pids = [spawn_link(fun() ->
                               Pick = picker(Algo, Nodes, Shared, Keys, Args),
                               loop(Pick, 2000), %% warm-up
                               receive Go -> ok end,
                               T0 = erlang:monotonic_time(nanosecond),
                               loop(Pick, N),
                               Parent ! {self(), (erlang:monotonic_time(nanosecond) - T0) / N}
                       end)
            || _ <- lists:seq(1, T)],
    [P ! Go || P <- Pids],
    Ns = [receive {P, V} -> V end || P <- Pids],
    lists:sum(Ns) / T.

loop(_, 0) -> ok;
loop(Pick, K) ->
    _ = Pick(K),
    loop(Pick, K - 1).

%% State shared by the processes of one run, as the seed shares it per balancer.
shared(Algo, Nodes) when Algo =:= least_connections; Algo =:= power_of_two ->
    C = counters:new(length(Nodes), [write_concurrency]),
    [counters:add(C, I, 1) || I <- lists:seq(1, length(Nodes))], %% one call held on every member
    {C, maps:from_list(lists:zip(Nodes, lists:seq(1, length(Nodes))))};
shared(hash_ring, Nodes) ->
    Ring = lists:foldl(fun(Node, R) -> add_node(Node, 128, R) end, gb_trees:empty(), Nodes),
    {Ring, lists:sort(Nodes)};
shared(weighted_round_robin, Nodes) ->
    Weights = maps:from_list([{Node, 1 + (I rem 3)} || {Node, I} <- lists:zip(Nodes, lists:seq(0, length(Nodes) - 1))]),
    Expanded = lists:append([lists:duplicate(maps:get(Node, Weights, 1), Node) || Node <- Nodes]),
    {counters:new(1, []), Nodes, Expanded, length(Expanded)};
shared(least_cpu, Nodes) ->
    Now = erlang:monotonic_time(millisecond),
    maps:from_list([{Node, {float((I * 37) rem 100), Now}} || {Node, I} <- lists:zip(Nodes, lists:seq(0, length(Nodes) - 1))]);
shared(Algo, _) when Algo =:= round_robin; Algo =:= custom ->
    counters:new(1, []);
shared(_, _) ->
    none.

%% libring add_node/3: points phash2({Node, I}, Range) for I = 1..W; the first node keeps a point.
add_node(Node, W, R) ->
    lists:foldl(fun(I, Acc) ->
                        H = erlang:phash2({Node, I}, ?RANGE),
                        case gb_trees:is_defined(H, Acc) of
                            true -> Acc;
                            false -> gb_trees:insert(H, Node, Acc)
                        end
                end, R, lists:seq(1, W)).

picker(random, Nodes, _, _, _) -> fun(_) -> random(Nodes) end;
picker(easy_random, Nodes, _, _, _) -> fun(_) -> random(Nodes) end;
picker(round_robin, Nodes, C, _, _) ->
    L = length(Nodes),
    fun(_) -> lists:nth((cursor(C) - 1) rem L + 1, Nodes) end;
picker(custom, Nodes, C, _, _) ->
    L = length(Nodes),
    fun(_) -> lists:nth((cursor(C) - 1) rem L + 1, Nodes) end;
picker(weighted_round_robin, Nodes, {C, Cached, Expanded, Len}, _, _) ->
    fun(_) ->
            Nodes =:= Cached orelse error(rebuild),
            lists:nth((cursor(C) - 1) rem Len + 1, Expanded)
    end;
picker(least_connections, Nodes, {C, Index}, _, _) ->
    fun(_) ->
            [First | Rest] = Nodes,
            Node = least(Rest, C, Index, First, counters:get(C, maps:get(First, Index))),
            I = maps:get(Node, Index),
            counters:add(C, I, 1),
            counters:sub(C, I, 1), %% release
            Node
    end;
picker(power_of_two, Nodes, {C, Index}, _, _) ->
    L = length(Nodes),
    fun(_) ->
            I = rand:uniform(L),
            J0 = rand:uniform(L - 1),
            J = if J0 >= I -> J0 + 1; true -> J0 end,
            A = lists:nth(I, Nodes),
            B = lists:nth(J, Nodes),
            Node = case counters:get(C, maps:get(A, Index)) =< counters:get(C, maps:get(B, Index)) of
                       true -> A;
                       false -> B
                   end,
            X = maps:get(Node, Index),
            counters:add(C, X, 1),
            counters:sub(C, X, 1),
            Node
    end;
picker(hash_ring, Nodes, {Ring, Set}, Keys, _) ->
    fun(K) ->
            lists:usort(Nodes) =:= Set orelse error(rebuild),
            H = erlang:phash2(element(K band (?NKEYS - 1) + 1, Keys), ?RANGE),
            case gb_trees:next(gb_trees:iterator_from(H, Ring)) of
                {_, Node, _} -> Node;
                none -> element(2, gb_trees:smallest(Ring))
            end
    end;
picker(easy_round_robin, Nodes, _, _, _) ->
    L = length(Nodes),
    fun(_) ->
            I = case get(rr) of
                    undefined -> rand:uniform(L) - 1;
                    V when V >= L -> 0;
                    V -> V
                end,
            put(rr, (I + 1) rem L),
            lists:nth(I + 1, Nodes)
    end;
picker(easy_hash, Nodes, _, _, Args) ->
    L = length(Nodes),
    fun(K) -> lists:nth(erlang:phash2(element(K band (?NKEYS - 1) + 1, Args), L) + 1, Nodes) end;
picker(sticky, Nodes, _, _, _) ->
    fun(_) ->
            case get(sticky) of
                undefined -> put(sticky, random(Nodes));
                Node -> Node
            end
    end;
picker(least_cpu, Nodes, Cache, _, _) ->
    fun(_) ->
            Now = erlang:monotonic_time(millisecond),
            Vals = [{Node, cpu(maps:get(Node, Cache, undefined), Now)} || Node <- Nodes],
            Min = lists:min([V || {_, V} <- Vals]),
            random([Node || {Node, V} <- Vals, V =< Min + 5.0])
    end;
picker(call_direct, _, _, _, _) -> fun(_) -> node() end.

random(L) -> lists:nth(rand:uniform(length(L)), L).

%% The seed's cursor: add 1, read back, reset past 10,000,000.
cursor(C) ->
    counters:add(C, 1, 1),
    V = counters:get(C, 1),
    V > 10000000 andalso counters:put(C, 1, 0),
    V.

least([], _, _, Best, _) -> Best;
least([Node | Rest], C, Index, Best, BestCount) ->
    case counters:get(C, maps:get(Node, Index)) of
        Count when Count < BestCount -> least(Rest, C, Index, Node, Count);
        _ -> least(Rest, C, Index, Best, BestCount)
    end.

cpu({V, At}, Now) when Now - At =< 10000 -> V;
cpu(_, _) -> 50.0.
