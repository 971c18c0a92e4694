#!/usr/bin/env escript
%% Reads raw lines "FIGURE PLACEMENT REP SIDE VALUE UNIT GOAL ANCHORNAME"
%% (SIDE c or anchor; VALUE a number, "nan" when missing, or ">X" when the
%% anchor hit a cap X) and writes bench/results.json and a table.
%% Ratios are per repetition (C / anchor of the same repetition), then
%% summarised as min/median/max. A capped anchor makes its ratio an upper
%% bound ("<"). GOAL: "-" or a comma list of leR / geR (ratio median) and
%% cleV (C median), each optionally "@placement"; "met" says whether the
%% median meets every goal that applies to the figure's placement.
main([Raw, Out, Commit, Machine | Rest]) ->
    {Load, Elapsed, Reps} = case Rest of
                                [L, E, R] -> {L, E, R};
                                _ -> {"", "0", "0"}
                            end,
    {ok, Bin} = file:read_file(Raw),
    Rows = [string:lexemes(L1, " ") || L1 <- string:lexemes(binary_to_list(Bin), "\n")],
    Good = [R1 || R1 <- Rows, length(R1) >= 8],
    Keys = order([{F, P} || [F, P | _] <- Good]),
    Figs = [figure(F, P, Good) || {F, P} <- Keys],
    Json = ["{\"commit\":\"", Commit, "\",\"otp\":\"", erlang:system_info(otp_release),
            "\",\"machine\":\"", Machine, "\",\"loadavg_end\":\"", Load, "\",\"elapsed_s\":", Elapsed,
            ",\"repetitions\":", Reps,
            ",\"placements\":{\"1cpu\":\"server and client pinned to the first allowed CPU\","
            "\"2cpu\":\"server pinned to the second allowed CPU, client to the first; pg: observers B and the C mirror on the second, joining node A and member nodes on the first\"},"
            "\"figures\":[\n", lists:join(",\n", [J || {J, _} <- Figs]), "\n]}\n"],
    ok = file:write_file(Out, Json),
    io:format("~-32s ~-5s ~29s ~29s ~22s ~-5s ~s~n",
              [figure, place, "c min/med/max", "anchor min/med/max", "ratio min/med/max", met, "goal / unit"]),
    [io:format("~s~n", [T]) || {_, T} <- Figs],
    ok.

%% First-seen order of figures, placements kept together per figure.
order(L) -> order(L, [], #{}).
order([], Acc, _) ->
    Rev = lists:reverse(Acc),
    Names = dedup([F || {F, _} <- Rev]),
    [{F, P} || F <- Names, {F1, P} <- Rev, F1 =:= F];
order([K | T], Acc, Seen) ->
    case maps:is_key(K, Seen) of
        true -> order(T, Acc, Seen);
        false -> order(T, [K | Acc], Seen#{K => true})
    end.

dedup(L) -> dedup(L, #{}).
dedup([], _) -> [];
dedup([H | T], S) ->
    case maps:is_key(H, S) of
        true -> dedup(T, S);
        false -> [H | dedup(T, S#{H => true})]
    end.

figure(F, P, Rows) ->
    Mine = [R || [F1, P1 | _] = R <- Rows, F1 =:= F, P1 =:= P],
    Reps = lists:usort([list_to_integer(Rep) || [_, _, Rep | _] <- Mine]),
    Val = fun(Side, Rep) ->
                  hd([value(V) || [_, _, R, S, V | _] <- Mine, list_to_integer(R) =:= Rep, S =:= Side] ++ [undefined])
          end,
    Cs = [Val("c", R) || R <- Reps],
    As = [Val("anchor", R) || R <- Reps],
    Ratios = [C / num(A) || {C, A} <- lists:zip(Cs, As), is_number(C), is_number(num(A)), num(A) > 0],
    Censored = lists:any(fun({gt, _}) -> true; (_) -> false end, As),
    [_, _, _, _, _, Unit, Goal, AName | _] = hd(Mine),
    CS = stats([X || X <- Cs, is_number(X)]),
    AS = stats([num(X) || X <- As, is_number(num(X))]),
    RS = stats(Ratios),
    Met = met(Goal, P, CS, RS, Censored),
    AGt = if Censored -> ">"; true -> "" end,
    RLt = if Censored -> "<"; true -> "" end,
    J = io_lib:format("{\"name\":\"~s\",\"placement\":\"~s\",\"unit\":\"~s\",\"c\":~s,"
                      "\"anchor\":~s,\"ratio\":~s,\"goal\":\"~s\",\"met\":~s,\"n\":~b}",
                      [F, P, Unit, jstats(CS, []),
                       jstats(AS, [{"name", "\"" ++ AName ++ "\""} | [{"capped", "true"} || Censored]]),
                       jstats(RS, [{"bound", "\"upper\""} || Censored]), Goal, Met, length(Ratios)]),
    T = io_lib:format("~-32s ~-5s ~29s ~29s ~22s ~-5s ~s",
                      [F, P, tstats(CS, ""), tstats(AS, AGt), tstats(RS, RLt), Met, Goal ++ " " ++ Unit]),
    {J, T}.

value("nan") -> undefined;
value([$> | V]) -> {gt, value(V)};
value(V) ->
    case string:to_float(V) of
        {Fl, ""} -> Fl;
        _ -> case string:to_integer(V) of
                 {I, ""} -> float(I);
                 _ -> undefined
             end
    end.

num({gt, X}) -> X;
num(X) -> X.

%% Goals apply to the median.
met("-", _, _, _, _) -> "null";
met(Goal, P, CS, RS, Censored) ->
    Checks = lists:filtermap(fun(G) -> check(G, P, CS, RS, Censored) end, string:lexemes(Goal, ",")),
    case Checks of
        [] -> "null";
        _ -> atom_to_list(lists:all(fun(X) -> X end, Checks))
    end.

check(G, P, CS, RS, Censored) ->
    {Spec, Where} = case string:split(G, "@") of
                        [S, W] -> {S, W};
                        [S] -> {S, P}
                    end,
    if
        Where =/= P -> false;
        true ->
            Med = fun(none) -> undefined; ({_, M, _}) -> M end,
            case Spec of
                "cle" ++ V -> {true, le(Med(CS), value(V))};
                "le" ++ V -> {true, le(Med(RS), value(V))};
                "ge" ++ _ when Censored -> {true, false};
                "ge" ++ V -> {true, ge(Med(RS), value(V))};
                _ -> false
            end
    end.

le(X, V) when is_number(X), is_number(V) -> X =< V;
le(_, _) -> false.
ge(X, V) when is_number(X), is_number(V) -> X >= V;
ge(_, _) -> false.

stats([]) -> none;
stats(L) ->
    S = lists:sort(L), N = length(S),
    Med = case N rem 2 of
              1 -> lists:nth((N + 1) div 2, S);
              0 -> (lists:nth(N div 2, S) + lists:nth(N div 2 + 1, S)) / 2
          end,
    {hd(S), Med, lists:last(S)}.

jstats(none, Extra) ->
    ["{", lists:join(",", [["\"", K, "\":", V] || {K, V} <- Extra] ++ ["\"min\":null,\"median\":null,\"max\":null"]), "}"];
jstats({Mi, Me, Ma}, Extra) ->
    ["{", lists:join(",", [["\"", K, "\":", V] || {K, V} <- Extra] ++
                         [io_lib:format("\"min\":~s,\"median\":~s,\"max\":~s", [jn(Mi), jn(Me), jn(Ma)])]), "}"].

jn(X) -> io_lib:format("~.4f", [float(X)]).

tstats(none, _) -> "-";
tstats({Mi, Me, Ma}, Pre) -> lists:flatten([Pre, short(Mi), "/", Pre, short(Me), "/", Pre, short(Ma)]).

short(X) when abs(X) >= 1000 -> integer_to_list(round(X));
short(X) when abs(X) >= 100 -> io_lib:format("~.1f", [X]);
short(X) when abs(X) >= 10 -> io_lib:format("~.2f", [X]);
short(X) -> io_lib:format("~.3f", [X]).
