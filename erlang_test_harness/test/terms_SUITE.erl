%%% The bounded term reader (ei_glue/reader.h) against BEAM: every vector of
%%% tests/data/term_reader.tsv is handed to binary_to_term/2 here and to the
%%% reader in C (build/<san>/progs/cnode_termcheck); they must agree with each
%%% other and with the verdict written in the file. A vector marked "limit" is
%%% one BEAM takes and the reader refuses by a limit of its own (depth,
%%% compressed terms): BEAM must take it and the reader refuse it.
-module(terms_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([suite/0, all/0, init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).
-export([binary_to_term_agrees/1]).

-define(H, cnode_harness).

suite() -> [{timetrap, {minutes, 3}}].
all() -> [binary_to_term_agrees].

init_per_suite(Config) -> ?H:init_per_suite(?MODULE, Config).
end_per_suite(Config) -> ?H:end_per_suite(Config).
init_per_testcase(TC, Config) -> ?H:init_per_testcase(TC, Config).
end_per_testcase(TC, Config) -> ?H:end_per_testcase(TC, Config).

binary_to_term_agrees(Config) ->
    ?H:run(Config, fun() ->
        Tsv = filename:join([?H:root(), "tests", "data", "term_reader.tsv"]),
        Vectors = vectors(Tsv),
        ?assert(length(Vectors) > 50),
        H = ?H:start_os(termcheck, "termcheck", ?H:prog_path("cnode_termcheck"), [Tsv]),
        0 = ?H:wait_exit(H, ?H:ms(60000)),
        {Lines, _} = ?H:output(H),
        C = maps:from_list([list_to_tuple(binary:split(L, <<" ">>)) || L <- Lines, L =/= <<"done">>]),
        ?assertEqual(<<"done">>, lists:last(Lines)),
        Bad = [{Name, Want, {beam, beam(Bin)}, {c, maps:get(Name, C, missing)}}
               || {Name, Want, Bin} <- Vectors, not agree(Want, beam(Bin), maps:get(Name, C, missing))],
        io:format("~b vectors; disagreements: ~p~n", [length(Vectors), Bad]),
        ?assertEqual([], Bad)
    end).

agree(<<"limit">>, Beam, C) -> Beam =:= <<"accept">> andalso C =:= <<"refuse">>;
agree(Want, Beam, C) -> Beam =:= Want andalso C =:= Want.

%% BEAM takes the bytes if binary_to_term reads one term that uses all of them.
beam(Bin) ->
    try binary_to_term(<<131, Bin/binary>>, [used]) of
        {_, Used} when Used =:= byte_size(Bin) + 1 -> <<"accept">>;
        _ -> <<"refuse">>
    catch error:badarg -> <<"refuse">>
    end.

vectors(Tsv) ->
    {ok, Text} = file:read_file(Tsv),
    [begin
         [Name, Want, Hex] = binary:split(L, <<"\t">>, [global]),
         {Name, Want, binary:decode_hex(Hex)}
     end || L <- binary:split(Text, <<"\n">>, [global]), L =/= <<>>, binary:first(L) =/= $#].
