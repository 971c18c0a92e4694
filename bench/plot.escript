#!/usr/bin/env escript
%% bench/results.json -> what bench/report.gp plots, and the README's table.
%%   escript bench/plot.escript RESULTS.json OUTDIR
%% writes OUTDIR/plot_1cpu.dat and OUTDIR/plot_2cpu.dat (one line per figure, in one order for
%% both placements so the two panels line up: index, name, ratio min, median, max, the goal as
%% a ratio or NaN, met 1/0/NaN) and OUTDIR/table.md (the figures that have a goal; the pick
%% figures summed up per placement). A goal on the C value (cleV) is drawn as the ratio it
%% means against that figure's anchor median (V / anchor). Reads only the figure lines that
%% bench/report.escript writes, one per line.
main([Json, Out]) ->
    {ok, Bin} = file:read_file(Json),
    Lines = string:split(binary_to_list(Bin), "\n", all),
    Figs = [F || L <- Lines, F <- [parse(L)], F =/= skip],
    Names = dedup([maps:get(name, F) || F <- Figs]),
    Index = maps:from_list(lists:zip(Names, lists:seq(0, length(Names) - 1))),
    [write_dat(filename:join(Out, "plot_" ++ P ++ ".dat"), P, Figs, Index) || P <- ["1cpu", "2cpu"]],
    Run = io_lib:format("Run of commit ~s on ~s, ~s repetitions, OTP ~s.~n~n",
                        [str(binary_to_list(Bin), "\"commit\":\"([^\"]*)\""),
                         str(binary_to_list(Bin), "\"machine\":\"([^\"]*)\""),
                         str(binary_to_list(Bin), "\"repetitions\":([0-9]+)"),
                         str(binary_to_list(Bin), "\"otp\":\"([^\"]*)\"")]),
    ok = file:write_file(filename:join(Out, "table.md"), [Run, table(Figs)]),
    io:format("plot: ~p figures~n", [length(Names)]);
main(_) ->
    io:format(standard_error, "usage: plot.escript RESULTS.json OUTDIR~n", []),
    halt(2).

parse(L) ->
    case re:run(L, "^\\{\"name\":\"([^\"]+)\",\"placement\":\"([^\"]+)\",\"unit\":\"([^\"]*)\"", [{capture, all_but_first, list}]) of
        {match, [Name, Place, Unit]} ->
            #{name => Name, place => Place, unit => Unit,
              c => stat(L, "\"c\":\\{"), anchor => stat(L, "\"anchor\":\\{[^}]*?"),
              ratio => stat(L, "\"ratio\":\\{[^}]*?"), bound => bound(L),
              goal => str(L, "\"goal\":\"([^\"]*)\""), met => str(L, "\"met\":([a-z]+)")};
        nomatch ->
            skip
    end.

stat(L, Prefix) ->
    case re:run(L, Prefix ++ "\"min\":([-0-9.e]+),\"median\":([-0-9.e]+),\"max\":([-0-9.e]+)",
                [{capture, all_but_first, list}]) of
        {match, [Mi, Me, Ma]} -> {num(Mi), num(Me), num(Ma)};
        nomatch -> undefined
    end.

bound(L) ->
    case re:run(L, "\"ratio\":\\{\"bound\":\"([a-z]+)\"", [{capture, all_but_first, list}]) of
        {match, [B]} -> B;
        nomatch -> ""
    end.

str(L, Re) ->
    case re:run(L, Re, [{capture, all_but_first, list}]) of
        {match, [S]} -> S;
        nomatch -> ""
    end.

num(S) ->
    case string:to_float(S) of
        {F, []} -> F;
        _ -> float(list_to_integer(S))
    end.

dedup(L) -> dedup(L, #{}).
dedup([], _) -> [];
dedup([H | T], S) ->
    case maps:is_key(H, S) of
        true -> dedup(T, S);
        false -> [H | dedup(T, S#{H => true})]
    end.

%% The goal that applies at placement P, as a ratio ("NaN": none). For several, the first.
goal_ratio(#{goal := G, place := P, anchor := A}) ->
    Parts = [string:split(X, "@") || X <- string:lexemes(G, ","), X =/= "-"],
    Applying = [Spec || [Spec | At] <- Parts, At =:= [] orelse At =:= [P]],
    case Applying of
        [] -> nan;
        [Spec | _] ->
            case Spec of
                "cle" ++ V -> case A of {_, Med, _} when Med > 0 -> num(V) / Med; _ -> nan end;
                "le" ++ V -> num(V);
                "ge" ++ V -> num(V);
                _ -> nan
            end
    end.

write_dat(File, P, Figs, Index) ->
    Rows = [begin
                {Mi, Me, Ma} = R,
                io_lib:format("~b ~s ~s ~s ~s ~s ~s~n",
                              [maps:get(N, Index), N, f(Mi), f(Me), f(Ma), f(goal_ratio(F)),
                               case Met of "true" -> "1"; "false" -> "0"; _ -> "NaN" end])
            end || #{name := N, place := P1, ratio := R, met := Met} = F <- Figs, P1 =:= P, R =/= undefined],
    ok = file:write_file(File, ["# index name ratio_min ratio_median ratio_max goal_ratio met\n" | Rows]).

f(nan) -> "NaN";
f(X) when is_float(X) -> float_to_list(X, [{decimals, 4}]);
f(X) -> integer_to_list(X).

table(Figs) ->
    Goal = [F || #{goal := G} = F <- Figs, G =/= "-", G =/= ""],
    {Pick, Other} = lists:partition(fun(#{name := N}) -> lists:prefix("pick_", N) end, Goal),
    Head = ["| figure | placement | C median | anchor median | ratio median | goal | met |\n",
            "|---|---|---|---|---|---|---|\n"],
    Row = fun(#{name := N, place := P, unit := U, c := C, anchor := A, ratio := R, bound := B, goal := G, met := M}) ->
                  io_lib:format("| `~s` | ~s | ~s ~s | ~s | ~s~s | ~s | ~s |~n",
                                [N, P, med(C), U, med(A), case B of "upper" -> "< "; _ -> "" end, med(R), G, met(M)])
          end,
    PickRows = [begin
                    Mine = [F || #{place := P1} = F <- Pick, P1 =:= P],
                    Met = length([x || #{met := "true"} <- Mine]),
                    Cs = [Me || #{c := {_, Me, _}} <- Mine],
                    Judged = length([x || #{met := M} <- Mine, M =:= "true" orelse M =:= "false"]),
                    io_lib:format("| `pick_*` (~b figures) | ~s | ~s-~s ns | | | 1cpu: C <= 50 ns (hash_ring 150) | ~s |~n",
                                  [length(Mine), P, f(lists:min(Cs)), f(lists:max(Cs)),
                                   case Judged of 0 -> "-"; _ -> io_lib:format("~b of ~b", [Met, Judged]) end])
                end || P <- ["1cpu", "2cpu"], [x || #{place := P1} <- Pick, P1 =:= P] =/= []],
    [Head, [Row(F) || F <- Other], PickRows].

med({_, Me, _}) -> f(Me);
med(_) -> "-".

met("true") -> "yes";
met("false") -> "**no**";
met(_) -> "-".
