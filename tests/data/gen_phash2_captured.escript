#!/usr/bin/env escript
%%! -noshell
%%% Generates captured[] of tests/test_phash2.c: each term's external format
%%% (built here byte by byte: pids, refs and ports of another node, funs, and
%%% encodings BEAM never emits but ei and hand-made buffers may) and
%%% erlang:phash2(binary_to_term(Bytes), 4294967296) from this OTP.
%%%
%%%   escript tests/data/gen_phash2_captured.escript > rows.txt
%%%
%%% prints the C rows; paste them over the table (the committed table was made
%%% on OTP 25.2.3). Run with --check to compare with tests/test_phash2.c.
-mode(compile).

%% node x@y as SMALL_ATOM_UTF8_EXT
-define(NODE, 119, 3, "x@y").

rows() ->
    Pid = <<88, ?NODE, 70000:32, 5:32, 7:32>>,
    Pid2 = <<88, ?NODE, 16#12345678:32, 9:32, 7:32>>,
    Ref = <<90, 3:16, ?NODE, 7:32, 16#00000102:32, 16#03040506:32, 16#0708090A:32>>,
    [{"external pid x@y.70000.5", Pid},
     {"external pid id 0x12345678", Pid2},
     {"{Pid, a}", <<104, 2, Pid/binary, 119, 1, "a">>},
     {"[Pid]", <<108, 1:32, Pid2/binary, 106>>},
     {"newer ref", Ref},
     {"new port 42", <<89, ?NODE, 42:32, 7:32>>},
     {"v4 port 2^32+42", <<120, ?NODE, (1 bsl 32 + 42):64, 7:32>>},
     {"fun lists:map/2", <<113, 119, 5, "lists", 119, 3, "map", 97, 2>>},
     {"{fun erlang:node/0, 1}", <<104, 2, 113, 119, 6, "erlang", 119, 4, "node", 97, 0, 97, 1>>},
     {"#{Pid => Ref}", <<116, 1:32, Pid/binary, Ref/binary>>},
     {"<<1,2,3:5>>", <<77, 3:32, 5, 1, 2, (3 bsl 3)>>},
     {"[1|[2,3]] as LIST + STRING tail", <<108, 1:32, 97, 1, 107, 2:16, 2, 3>>},
     {"[1,2,3] with INTEGER_EXT elements", <<108, 3:32, 98, 1:32, 98, 2:32, 98, 3:32, 106>>},
     {"[1,2,3] with SMALL_BIG elements", <<108, 3:32, 110, 1, 0, 1, 110, 1, 0, 2, 110, 1, 0, 3, 106>>},
     {"[1|[2|[3]]] nested LIST tails", <<108, 1:32, 97, 1, 108, 1:32, 97, 2, 108, 1:32, 97, 3, 106>>},
     {"\"abc\" as STRING_EXT", <<107, 3:16, "abc">>},
     {"abc as ATOM_EXT (Latin-1)", <<100, 3:16, "abc">>},
     {"1.5 as FLOAT_EXT", float_ext(1.5)},
     {"0 as SMALL_BIG", <<110, 0, 0>>},
     {"-1 as INTEGER_EXT", <<98, -1:32/signed>>}].

main(Args) ->
    Rows = [{What, <<131, B/binary>>, erlang:phash2(binary_to_term(<<131, B/binary>>), 4294967296)}
            || {What, B} <- rows()],
    case Args of
        ["--check"] -> check(Rows);
        _ -> [io:format("    {~s, \"~s\", ~bu},~n", [c_string(W), hex(B), H]) || {W, B, H} <- Rows]
    end.

%% FLOAT_EXT: the "%.20e" text, NUL-padded to 31 bytes
float_ext(F) ->
    T = list_to_binary(float_to_list(F, [{scientific, 20}])),
    <<99, T/binary, 0:((31 - byte_size(T)) * 8)>>.

hex(B) -> [io_lib:format("~2.16.0B", [X]) || <<X>> <= B].

c_string(S) -> [$", [case C of $" -> "\\\""; _ -> C end || C <- S], $"].

%% Every row's hex and hash against the table in tests/test_phash2.c.
check(Rows) ->
    {ok, Src} = file:read_file("tests/test_phash2.c"),
    Joined = re:replace(Src, "\"\\s*\"|(?<=[0-9A-F]) (?=[0-9A-F])", "", [global, {return, binary}]),
    Flat = re:replace(Joined, ",\\s+", ", ", [global, {return, binary}]),
    Bad = [W || {W, B, H} <- Rows,
                binary:match(Flat, iolist_to_binary(["\"", hex(B), "\", ", integer_to_list(H), "u"])) =:= nomatch],
    case Bad of
        [] -> io:format("captured[]: all ~b rows match~n", [length(Rows)]);
        _ -> io:format("captured[]: rows that differ: ~p~n", [Bad]), halt(1)
    end.
