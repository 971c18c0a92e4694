#!/usr/bin/env escript
%% -*- erlang -*-
%% Golden data for tests/test_term_text.c: one line per term,
%%   hex(term_to_binary(T)) TAB io_lib:format("~0p", [T])
%% with the printed characters encoded as UTF-8 (what cnode_term_print
%% returns). Run from the project root with OTP 25:
%%   escript tests/data/term_text_gen.escript > tests/data/term_text_golden.tsv
%% Pids, refs and ports here are this escript's own (node nonode@nohost);
%% the C test maps BEAM's node index 0 to that name, see cnode_term.h.
-mode(compile).

main(_) ->
    io:setopts([{encoding, unicode}]),
    [line(T) || T <- terms()],
    ok.

line(T) ->
    Hex = [io_lib:format("~2.16.0b", [B]) || <<B>> <= term_to_binary(T)],
    Text = io_lib:format("~0p", [T]),
    io:put_chars([Hex, $\t, Text, $\n]).

terms() ->
    Port = open_port({spawn, "true"}, []),
    Free = 42,
    atoms() ++ integers() ++ floats() ++ strings() ++ binaries() ++
    [%% lists
     [1, 2, 3], [a | b], [1, 2 | 3], [[]], [a, [b, [c]]], [{}], [1 | <<"x">>],
     [$a | b], ["abc", "def"], lists:seq(1, 300), [-1], [256, 65],
     %% tuples
     {}, {a}, {a, b}, {1, {2, {3}}}, {ok, "str"}, list_to_tuple(lists:seq(1, 300)),
     {error, {badarg, [{mod, 'fun', 2, [{file, "x.erl"}, {line, 10}]}]}},
     %% maps
     #{}, #{a => 1, b => 2}, #{b => 2, a => 1, 1 => x, 1.0 => y, "s" => z},
     #{1 => a, 1.0 => b, a => c, "s" => d, {t} => e, <<"b">> => f, [] => g, -1 => h,
       2.5 => i, 100000000000000000000 => j, -2.0 => k, 0 => l, {} => o, #{} => p},
     #{#{a => 1} => #{}, [1, 2] => [a], {1} => {1.0}, {1.0} => {1}},
     #{nested => #{deep => #{deeper => [1, 2, 3]}}},
     maps:from_list([{I, I * I} || I <- lists:seq(1, 40)]),
     maps:from_list([{list_to_atom("k" ++ integer_to_list(I)), I} || I <- lists:seq(1, 33)]),
     maps:from_list([{integer_to_list(I), <<I>>} || I <- lists:seq(1, 50)]),
     %% pids, refs, ports, funs
     self(), make_ref(), Port, {self(), [make_ref()]},
     fun lists:map/2, erlang:make_fun('Elixir.Foo', 'bar baz', 2),
     erlang:make_fun('and', 'end', 0), erlang:make_fun('é', 'a@b', 1),
     fun(X) -> X + 1 end, fun(Y) -> Y + Free end,
     #{self() => pid, make_ref() => ref, Port => port, fun lists:map/2 => 'fun', a => atom,
       1 => int, 2.0 => float, {t} => tuple, #{} => map, [] => nil, [x] => list, <<>> => bin},
     %% mixed
     {'Elixir.MyApp.Users', #{name => <<"Ann">>, age => 37, tags => ["a", "b"]}, [1.5, -2]},
     [{k, v}, #{}, <<>>, [], {}, "", 0.0, -0, 'A b']].

atoms() ->
    [a, 'A', 'Elixir.MyApp.Users', '', 'a b', 'and', 'maybe', 'else', 'é', 'éa', 'aÀ',
     '日本', 'a\nb', 'a\x{7f}b', 'a\x{1}b', 'a\'b', 'a\\b', true, false, '[]', 'a@b',
     '_x', hello_World9, 'ÿ', 'À', 'a÷', 'receive', 'ñandú', '\x{80}\x{9f}\x{a0}'].

integers() ->
    [0, 1, -1, 255, 256, -256, 2147483647, -2147483648, 2147483648,
     9223372036854775807, -9223372036854775808, 18446744073709551616,
     1 bsl 200, -pow(3, 300), 1000000, 1 bsl 2100].

floats() ->
    NegZero = binary_to_term(<<131, 70, 128, 0, 0, 0, 0, 0, 0, 0>>),
    [0.0, NegZero, 1.0, 0.1, 2.5, -1.5, 100.0, 1000.0, 1234.0, 0.0001, 0.00012,
     1.0e-10, 1.0e20, 1.0e15, 1.0e16, 123456789012345.6, 9007199254740992.0,
     9007199254740994.0, 4503599627370497.0, 1.2345678901234567e16, 5.0e-324,
     2.2250738585072014e-308, 1.7976931348623157e308, 3.141592653589793, -2.0e10,
     1.0e-3, 0.3, 1.0e23, 123.456e-7, 4.35, 0.1 + 0.2, 1.0e-5, 0.001234 | random_floats(40)].

%% Seeded, so the golden file is the same on every run.
random_floats(N) ->
    S0 = rand:seed_s(exsss, {1, 2, 3}),
    {L, _} = lists:mapfoldl(fun(I, S) ->
                                    {U, S1} = rand:uniform_real_s(S),
                                    {E, S2} = rand:uniform_s(60, S1),
                                    {(U - 0.5) * math:pow(10, E - 30 + I rem 7), S2}
                            end, S0, lists:seq(1, N)),
    L.

strings() ->
    ["abc", "", "hello\nworld\t\"q\" \\", "é", [1000], "\e\v\b\f\r", [127], "a\x{7f}",
     [0], "ÿ¡ ", lists:duplicate(70000, $x), [255, 256], "with space", "日本"].

binaries() ->
    [<<>>, <<"ABC">>, <<1, 2, 3>>, <<"é"/utf8>>, <<"日本"/utf8>>, <<"\"\\">>, <<"a\nb">>,
     <<1:3>>, <<"ab", 1:3>>, <<255, 0>>, binary:copy(<<"0123456789">>, 30), <<127>>,
     <<"tab\there">>, <<200, 201>>, <<"\e">>].

pow(_, 0) -> 1;
pow(B, N) -> B * pow(B, N - 1).
