#!/usr/bin/env escript
%% Reads bench/raw.txt lines "FIGURE PLACEMENT REP SIDE VALUE UNIT GOAL ANCHORNAME"
%% and writes bench/results.json and a table. Ratios are per repetition
%% (C / anchor of the same repetition), then summarised as min/median/max.
main([Raw, Out, Commit, Machine]) ->
    {ok, Bin} = file:read_file(Raw),
    Rows = [string:lexemes(L, " ") || L <- string:lexemes(binary_to_list(Bin), "\n")],
    Keys = lists:usort([{F, P} || [F, P | _] <- Rows]),
    Figs = [figure(F, P, Rows) || {F, P} <- Keys],
    Json = ["{\"commit\":\"", Commit, "\",\"otp\":\"", erlang:system_info(otp_release),
            "\",\"machine\":\"", Machine, "\",\"figures\":[", lists:join(",", [J || {J, _} <- Figs]), "]}\n"],
    ok = file:write_file(Out, Json),
    io:format("~-22s ~-8s ~-28s ~-28s ~-24s ~s~n", [figure, placement, "c min/med/max", "anchor min/med/max", "ratio min/med/max", goal]),
    [io:format("~s~n", [T]) || {_, T} <- Figs],
    ok.

figure(F, P, Rows) ->
    Mine = [R || [F1, P1 | _] = R <- Rows, F1 =:= F, P1 =:= P],
    Reps = lists:usort([Rep || [_, _, Rep | _] <- Mine]),
    Val = fun(Side, Rep) -> hd([list_to_float(V) || [_, _, R, S, V | _] <- Mine, R =:= Rep, S =:= Side] ++ [undefined]) end,
    Cs = [Val("c", R) || R <- Reps], As = [Val("anchor", R) || R <- Reps],
    Ratios = [C / A || {C, A} <- lists:zip(Cs, As), is_float(C), is_float(A), A > 0],
    [_, _, _, _, _, Unit, Goal, AName | _] = hd(Mine),
    S = fun(L) -> stats([X || X <- L, is_float(X)]) end,
    {CMin, CMed, CMax} = S(Cs), {AMin, AMed, AMax} = S(As), {RMin, RMed, RMax} = S(Ratios),
    J = io_lib:format("{\"name\":\"~s\",\"placement\":\"~s\",\"unit\":\"~s\",\"c\":{\"min\":~.3f,\"median\":~.3f,\"max\":~.3f},"
                      "\"anchor\":{\"name\":\"~s\",\"min\":~.3f,\"median\":~.3f,\"max\":~.3f},"
                      "\"ratio\":{\"min\":~.3f,\"median\":~.3f,\"max\":~.3f},\"goal\":\"~s\",\"n\":~b}",
                      [F, P, Unit, CMin, CMed, CMax, AName, AMin, AMed, AMax, RMin, RMed, RMax, Goal, length(Ratios)]),
    T = io_lib:format("~-22s ~-8s ~8.2f/~8.2f/~8.2f  ~8.2f/~8.2f/~8.2f  ~6.3f/~6.3f/~6.3f   ~s",
                      [F, P, CMin, CMed, CMax, AMin, AMed, AMax, RMin, RMed, RMax, Goal]),
    {J, T}.

stats([]) -> {0.0, 0.0, 0.0};
stats(L) ->
    S = lists:sort(L), N = length(S),
    Med = case N rem 2 of 1 -> lists:nth((N + 1) div 2, S); 0 -> (lists:nth(N div 2, S) + lists:nth(N div 2 + 1, S)) / 2 end,
    {hd(S), Med, lists:last(S)}.
