#!/usr/bin/env escript
%%! -noshell
%%% Counts the outcome of every common_test case from common_test's own logs.
%%%
%%%   escript tests/ct_tally.escript TESTDIR LOGDIR
%%%
%%% The plan: every *_SUITE.erl in TESTDIR is compiled here (into memory) and
%%% its all() expanded through groups(), so a suite that does not compile, a
%%% suite whose init_per_suite crashed and a run cut short by a timeout are all
%%% counted case by case. The results: every suite.log under LOGDIR (written by
%%% the ct run given --logdir LOGDIR). One line per case on stdout:
%%%
%%%   pass Suite:case
%%%   fail Suite:case Why
%%%   skip Suite:case Why      (only a skip the suite planned: {skip, {planned, Why}})
%%%
%%% A suite that does not compile is one line "fail Suite:(compile) Why". A skip
%%% that was not planned (a missing tool, an auto_skip after a failed
%%% init_per_suite or init_per_testcase) is a failure; so is a planned case with
%%% no result, and a failed end_per_suite (one line, "Suite:end_per_suite").
-mode(compile).

main([TestDir, LogDir]) ->
    Plan = plan(TestDir),
    Results = results(LogDir),
    lists:foreach(fun(P) -> report(P, Results) end, Plan),
    %% results for cases the plan does not know (a group case, a renamed case)
    Known = [{S, C} || {S, Cs} <- Plan, is_list(Cs), C <- Cs],
    [emit(S, C, R) || {{S, C}, R} <- Results, not lists:member({S, C}, Known),
                      not lists:member(C, [init_per_suite, init_per_group, end_per_group,
                                           end_per_suite]) orelse bad_end(C, R)],
    halt(0);
main(_) ->
    io:format(standard_error, "usage: ct_tally.escript TESTDIR LOGDIR~n", []),
    halt(2).

report({Suite, {compile_error, Why}}, _) ->
    io:format("fail ~s:(compile) ~s~n", [Suite, oneline(Why)]);
report({Suite, Cases}, Results) ->
    lists:foreach(
      fun(C) ->
              case lists:keyfind({Suite, C}, 1, Results) of
                  {_, R} -> emit(Suite, C, R);
                  false -> io:format("fail ~s:~s did not run (no result in the common_test logs)~n",
                                     [Suite, C])
              end
      end, Cases).

bad_end(end_per_suite, R) -> lists:prefix("failed", R);
bad_end(end_per_group, R) -> lists:prefix("failed", R);
bad_end(_, _) -> false.

emit(S, C, "ok") -> io:format("pass ~s:~s~n", [S, C]);
emit(S, C, "skipped: {planned," ++ Why) -> io:format("skip ~s:~s ~s~n", [S, C, oneline(strip_brace(Why))]);
emit(S, C, "skipped: " ++ Why) -> io:format("fail ~s:~s unplanned skip: ~s~n", [S, C, oneline(Why)]);
emit(S, C, "auto_skipped: " ++ Why) -> io:format("fail ~s:~s not run: ~s~n", [S, C, oneline(Why)]);
emit(S, C, R) -> io:format("fail ~s:~s ~s~n", [S, C, oneline(R)]).

strip_brace(W) ->
    case lists:reverse(string:trim(W)) of
        "}" ++ Rest -> lists:reverse(Rest);
        _ -> W
    end.

oneline(S) ->
    Flat = re:replace(lists:flatten(S), "\\s+", " ", [global, {return, list}]),
    case length(Flat) > 300 of
        true -> lists:sublist(Flat, 300) ++ "...";
        false -> Flat
    end.

%%% ---- the plan ------------------------------------------------------------

plan(TestDir) ->
    Files = lists:sort(filelib:wildcard(filename:join(TestDir, "*_SUITE.erl"))),
    [plan_one(F, TestDir) || F <- Files].

plan_one(File, TestDir) ->
    Suite = filename:basename(File, ".erl"),
    case compile:file(File, [binary, return_errors, {i, TestDir}, {d, 'TEST'}]) of
        {ok, Mod, Bin} ->
            {module, Mod} = code:load_binary(Mod, File, Bin),
            try {Suite, lists:usort(expand(Mod, Mod:all(), []))}
            catch C:E -> {Suite, {compile_error, io_lib:format("all() raised ~p:~p", [C, E])}}
            end;
        {error, Errors, _} ->
            Msgs = [io_lib:format("~s:~p: ~s", [filename:basename(F), Loc, M:format_error(D)])
                    || {F, Es} <- Errors, {Loc, M, D} <- Es],
            {Suite, {compile_error, lists:join("; ", Msgs)}}
    end.

expand(Mod, Items, Seen) ->
    lists:append([expand_item(Mod, I, Seen) || I <- Items]).

expand_item(_, C, _) when is_atom(C) -> [C];
expand_item(_, {testcase, C, _}, _) -> [C];
expand_item(Mod, {group, G}, Seen) -> group(Mod, G, Seen);
expand_item(Mod, {group, G, _}, Seen) -> group(Mod, G, Seen);
expand_item(Mod, {group, G, _, _}, Seen) -> group(Mod, G, Seen);
expand_item(_, _, _) -> [].

group(Mod, G, Seen) ->
    case lists:member(G, Seen) of
        true -> [];
        false ->
            Groups = case erlang:function_exported(Mod, groups, 0) of
                         true -> Mod:groups();
                         false -> []
                     end,
            case lists:keyfind(G, 1, Groups) of
                {G, _Props, Items} -> expand(Mod, Items, [G | Seen]);
                {G, Items} -> expand(Mod, Items, [G | Seen]);
                false -> []
            end
    end.

%%% ---- the results -----------------------------------------------------------

%% [{{Suite, Case}, ResultText}] from every suite.log; the last result wins.
results(LogDir) ->
    Logs = lists:sort(filelib:wildcard(filename:join([LogDir, "ct_run.*", "*.logs", "run.*", "suite.log"]))),
    lists:foldl(fun(L, Acc) -> lists:foldl(fun({K, _} = KV, A) -> lists:keystore(K, 1, A, KV) end,
                                           Acc, parse(L)) end, [], Logs).

parse(File) ->
    {ok, Bin} = file:read_file(File),
    Lines = string:split(unicode:characters_to_list(Bin), "\n", all),
    parse(Lines, undefined, []).

parse([], _, Acc) -> lists:reverse(Acc);
parse(["=case" ++ Rest | Ls], _, Acc) ->
    Name = string:trim(Rest),
    Cur = case string:split(Name, ":") of
              [S, C] -> {S, list_to_atom(C)};
              _ -> undefined
          end,
    parse(Ls, Cur, Acc);
parse(["=result" ++ Rest | Ls], {_, _} = Cur, Acc) ->
    %% a result can run over several lines until the next "=" line
    {More, Ls1} = lists:splitwith(fun(L) -> not lists:prefix("=", L) end, Ls),
    R = string:trim(lists:flatten(lists:join(" ", [Rest | More]))),
    parse(Ls1, undefined, [{Cur, R} | Acc]);
parse([_ | Ls], Cur, Acc) ->
    parse(Ls, Cur, Acc).
