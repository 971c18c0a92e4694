%%% Property tests with a generator written here (no dependencies): random
%%% terms made by BEAM go through the C node (c_src/cnode_hardtest.c, mode
%%% props) and must come back as BEAM says: echo (erpc round trip), print
%%% (io_lib:format("~0p")), parse (the C parser on BEAM's text gives the term
%%% back), phash2 (erlang:phash2(T, 2^32)) and inspect (Elixir's
%%% Kernel.inspect/1, where Elixir is installed; inspect_atoms: atoms only). And random byte strings
%%% (mutated encodings) are judged by BEAM's binary_to_term and by the C
%%% bounded walker, which must agree on every one.
%%%
%%% The walker (the bounded term reader, ei_glue/term.c) has NO known gap
%%% left: every class the walker got wrong before the reader landed (FLOAT_EXT
%%% text that is no number, infinities and NaN in NEW_FLOAT_EXT, funs with
%%% fields of the wrong type, maps with a key twice, sign bytes over 1, empty
%%% BIT_BINARY_EXT, references of no words) now agrees with binary_to_term, so
%%% any disagreement fails the case. Two classes are no gap and are counted
%%% apart (printed with their first bytes):
%%%   internal_tag    binary_to_term also takes the VM's internal tags 73-76
%%%                   (ATOM_INTERNAL_REF2/3, BINARY_INTERNAL_REF,
%%%                   BIT_BINARY_INTERNAL_REF: an atom by its index in the VM's
%%%                   atom table...), never valid from a peer; the walker
%%%                   rightly refuses them.
%%%   ref_zero_words  NEW_REFERENCE_EXT / NEWER_REFERENCE_EXT with a word count
%%%                   of 0: OTP 25 reads one id word anyway, even past the end
%%%                   of its input (`used` then exceeds the bytes given); the
%%%                   walker refuses the count (a rule of its own, the `limit`
%%%                   vector ref_newer_zero_words in tests/data/term_reader.tsv).
%%% Identifiers in the encodings name another node (BEAM refuses its own
%%% node's pids with out-of-range fields, which says nothing of the wire format).
%%%
%%% Inspect has NO known gap left: atoms of any script are left bare or
%%% quoted as Elixir 1.14's tokenizer decides (identifier ranges, scripts, NFC:
%%% term/ident_tables.h, made by term/gen_unicode.exs from Elixir's own tables),
%%% so any disagreement fails the case; inspect_atoms compares every code point
%%% of planes 0-3 and 14 as an atom (alone and after `a`), every decomposable
%%% one in NFD (marks also reversed) and pairs and triples of letters of many
%%% scripts with Elixir's answers.
%%%
%%% The seed is printed (PROPS_SEED sets it); PROPS_N scales the counts (default 1).
-module(props_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([all/0, init_per_suite/1, end_per_suite/1, init_per_testcase/2, end_per_testcase/2]).
-export([term/1]).
-export([echo/1, print/1, parse/1, phash2/1, inspect/1, inspect_atoms/1, walker_vs_binary_to_term/1]).

-define(H, cnode_harness).

all() -> [echo, print, parse, phash2, inspect, inspect_atoms, walker_vs_binary_to_term].

init_per_suite(Config) -> ?H:init_per_suite(?MODULE, Config).
end_per_suite(Config) -> ?H:end_per_suite(Config).
init_per_testcase(TC, Config) -> ?H:init_per_testcase(TC, Config).
end_per_testcase(TC, Config) -> ?H:end_per_testcase(TC, Config).

%%% ---- set-up -------------------------------------------------------------

cnode() ->
    Name = ?H:unique("cprops"),
    C = ?H:start_os(hardtest, Name, ?H:prog_path("cnode_hardtest"),
                    ["props", "--sname", Name, "--cookie", ?H:cookie(), "--scope", "props_scope",
                     "--group", "props_group"], #{check_exit => true}),
    ?H:wait_line(C, "^READY", 60000),
    list_to_atom(Name ++ "@" ++ ?H:host()).

seed() ->
    S = case os:getenv("PROPS_SEED") of
            false -> erlang:system_time(microsecond) rem 1000000007;
            V -> list_to_integer(V)
        end,
    io:format("props: seed ~p (PROPS_SEED=~p reruns it)~n", [S, S]),
    rand:seed(exsss, {S, S bxor 16#5bd1e995, 17}),
    S.

count(N) ->
    F = case os:getenv("PROPS_N") of
            false -> 1;
            V -> list_to_integer(V)
        end,
    N * F.

c(C, F, Arg) -> erpc:call(C, hardtest, F, [Arg], 10000).

%% Runs Check on Count terms made by Gen; fails with the first few failures.
forall(Name, Count, Gen, Check, List) ->
    put(next, List),
    forall(Name, Count, Gen, Check).

forall(Name, Count, Gen, Check) ->
    Fails = lists:foldl(fun(I, Acc) ->
                                I rem 250 =:= 0 andalso io:format("~s: ~p terms~n", [Name, I]),
                                T = Gen(),
                                case catch Check(T) of
                                    true -> Acc;
                                    Other -> [{T, Other} | Acc]
                                end
                        end, [], lists:seq(1, Count)),
    io:format("~s: ~p terms, ~p failures~n", [Name, Count, length(Fails)]),
    case Fails of
        [] -> ok;
        _ ->
            Text = safe({Name, length(Fails), lists:sublist(lists:reverse(Fails), 5)}),
            io:format("~s~n", [Text]),
            ct:fail(Text)
    end.

%% ~p text with every character past ASCII escaped (common_test's log device is not unicode).
safe(X) ->
    lists:flatten([if Ch > 126 -> io_lib:format("\\x{~.16b}", [Ch]); true -> Ch end
                   || Ch <- lists:flatten(io_lib:format("~tp", [X]))]).

%%% ---- the generator --------------------------------------------------------

%% Kinds: all (pids, refs, ports, funs too), print (no pids, refs, ports: the C
%% printer writes their node's name where io_lib writes a node table index), text (what has Erlang text that
%% parses back: no pids, refs, ports, funs), inspect (text, and no improper
%% lists, whose inspect text Elixir prints with a bar the C side also prints).
term(Kind) -> term(Kind, 3).

term(Kind, 0) -> leaf(Kind);
term(Kind, D) ->
    case rand:uniform(10) of
        N when N =< 5 -> leaf(Kind);
        6 -> list_to_tuple([term(Kind, D - 1) || _ <- lists:seq(1, rand:uniform(5) - 1)]);
        7 -> [term(Kind, D - 1) || _ <- lists:seq(1, rand:uniform(5) - 1)];
        8 when Kind =/= inspect -> [term(Kind, D - 1) | leaf(Kind)];
        8 -> [{atom(), term(Kind, D - 1)} || _ <- lists:seq(1, rand:uniform(3))]; %% a keyword list
        9 -> maps:from_list([{term(Kind, D - 1), term(Kind, D - 1)} || _ <- lists:seq(1, rand:uniform(5) - 1)]);
        10 -> leaf(Kind)
    end.

leaf(Kind) ->
    Ids = Kind =:= all orelse Kind =:= wire,  %% pids, refs, ports: BEAM prints a node index, C the node name
    Funs = Kind =:= all orelse Kind =:= print orelse Kind =:= wire,
    Foreign = Kind =:= wire,
    case rand:uniform(14) of
        1 -> rand:uniform(600) - 300;
        2 -> rand:uniform(1 bsl 32) - (1 bsl 31);
        3 -> (rand:uniform(2) * 2 - 3) * rand:uniform(1 bsl (32 + rand:uniform(300)));
        4 -> float();
        5 -> atom();
        6 -> rand_bytes(rand:uniform(12) - 1);
        7 -> printable_binary();
        8 when Kind =/= inspect -> <<(rand_bytes(rand:uniform(3)))/binary, (rand:uniform(127)):(rand:uniform(7))>>;
        9 -> [$a + rand:uniform(25) || _ <- lists:seq(1, rand:uniform(8))];
        10 -> [rand:uniform(16#10FFF) || _ <- lists:seq(1, rand:uniform(4))];
        11 when Foreign -> foreign(88, <<(rand:uniform(1 bsl 15)):32, 0:32, 3:32>>);
        12 when Foreign -> foreign(90, <<3:32, (rand:uniform(1 bsl 18)):32, 7:32, 9:32>>);
        13 when Foreign -> foreign(89, <<(rand:uniform(1 bsl 20)):32, 3:32>>);
        11 when Ids -> self();
        12 when Ids -> make_ref();
        13 when Ids -> hd(erlang:ports());
        14 when Funs -> fun erlang:node/0;
        _ -> lists:nth(rand:uniform(6), [[], {}, #{}, <<>>, true, nil])
    end.

%% A pid (88), reference (90, 3 words) or port (89) of node other@host.
foreign(90, <<Cr:32, Ids/binary>>) ->
    binary_to_term(<<131, 90, 3:16, 119, 10, "other@host", Cr:32, Ids/binary>>);
foreign(Tag, Rest) ->
    binary_to_term(<<131, Tag, 119, 10, "other@host", Rest/binary>>).

float() ->
    case rand:uniform(6) of
        1 -> float(rand:uniform(1000) - 500);
        2 -> 0.0;
        3 -> rand:uniform();
        4 -> (rand:uniform() - 0.5) * math:pow(10, rand:uniform(600) - 300);
        5 -> (rand:uniform() - 0.5) * math:pow(2, rand:uniform(2000) - 1000);
        6 -> <<F/float>> = <<(rand:uniform(16#7FE) bsl 52 + rand:uniform(1 bsl 52) - 1):64>>, F
    end.

atom() ->
    case rand:uniform(4) of
        1 -> lists:nth(rand:uniform(12), [a, ok, error, undefined, 'A', 'hello world', '', 'Elixir.Foo.Bar',
                                           'node@host', 'é', 'λx', '\n']);
        2 -> list_to_atom([$a + rand:uniform(25) | [$a + rand:uniform(25) || _ <- lists:seq(1, rand:uniform(10))]]);
        3 -> list_to_atom([rand:uniform(255) || _ <- lists:seq(1, rand:uniform(6))]);
        4 -> list_to_atom([rand:uniform(16#2FFF) || _ <- lists:seq(1, rand:uniform(4))])
    end.

rand_bytes(N) -> list_to_binary([rand:uniform(256) - 1 || _ <- lists:seq(1, N)]).
printable_binary() -> list_to_binary([$\s + rand:uniform(94) || _ <- lists:seq(1, rand:uniform(12))]).

%%% ---- terms through C --------------------------------------------------------

echo(Config) ->
    ?H:run(Config, fun() ->
        C = cnode(), seed(),
        forall("echo", count(2000), fun() -> term(all) end, fun(T) -> c(C, echo, T) =:= T end)
    end, 300000).

print(Config) ->
    ?H:run(Config, fun() ->
        C = cnode(), seed(),
        forall("print", count(2000), fun() -> term(print) end,
               fun(T) ->
                       Want = unicode:characters_to_binary(io_lib:format("~0p", [T])),
                       case c(C, print, term_to_binary(T)) of
                           Want -> true;
                           Got -> {beam, Want, c, Got}
                       end
               end)
    end, 300000).

parse(Config) ->
    ?H:run(Config, fun() ->
        C = cnode(), seed(),
        forall("parse", count(2000), fun() -> term(text) end,
               fun(T) ->
                       Text = unicode:characters_to_binary(io_lib:format("~0tp", [T])),
                       case c(C, parse, Text) of
                           T -> true;
                           Got -> {text, Text, c, Got}
                       end
               end)
    end, 300000).

phash2(Config) ->
    ?H:run(Config, fun() ->
        C = cnode(), seed(),
        forall("phash2", count(2000), fun() -> term(all) end,
               fun(T) ->
                       Want = erlang:phash2(T, 4294967296),
                       case c(C, phash2, term_to_binary(T)) of
                           Want -> true;
                           Got -> {beam, Want, c, Got}
                       end
               end)
    end, 300000).

inspect(Config) ->
    case os:find_executable("elixir") of
        false ->
            {skip, {planned, "Elixir is not installed: no Kernel.inspect/1 to compare with"}};
        Elixir ->
            ?H:run(Config, fun() ->
                C = cnode(), seed(),
                Terms = [term(inspect) || _ <- lists:seq(1, count(1000))],
                io:format("inspect: ~p terms made~n", [length(Terms)]),
                Want = elixir_inspect(Elixir, Terms),
                io:format("inspect: Elixir answered~n"),
                Pairs = lists:zip(Terms, Want),
                forall("inspect", length(Pairs), fun() -> Pair = get(next), put(next, tl(Pair)), hd(Pair) end,
                       fun({T, W}) ->
                               case c(C, inspect, term_to_binary(T)) of
                                   W -> true;
                                   Got -> {elixir, W, c, Got}
                               end
                       end, Pairs)
            end, 300000)
    end.

%% Elixir's Kernel.inspect/1 of every term, in one `elixir` run (its own VM: the
%% driver node is no Elixir node).
elixir_inspect(Elixir, Terms) ->
    Dir = filename:join([?H:root(), "build"]),
    In = filename:join(Dir, "props_inspect_in." ++ os:getpid()),
    Out = filename:join(Dir, "props_inspect_out." ++ os:getpid()),
    ok = file:write_file(In, term_to_binary(Terms)),
    Script = "[i, o] = System.argv(); "
             "ts = :erlang.binary_to_term(File.read!(i)); "
             "File.write!(o, :erlang.term_to_binary(Enum.map(ts, &inspect/1)))",
    Cmd = Elixir ++ " -e '" ++ Script ++ "' " ++ In ++ " " ++ Out ++ " 2>&1",
    R = os:cmd("timeout 120 " ++ Cmd ++ " </dev/null"),
    {ok, Bin} = case file:read_file(Out) of
                    {ok, _} = Ok -> Ok;
                    _ -> ct:fail({elixir_failed, R})
                end,
    file:delete(In),
    file:delete(Out),
    binary_to_term(Bin).

%% Every code point of the planes Unicode assigns letters in (0-3, 14) as a
%% one-letter atom and after `a`, every decomposable code point in its NFD
%% form (and with its marks swapped), and pairs and triples of letters of
%% many scripts (with `_`, digits, `@`, `?`): Elixir's inspect/1 of each
%% against the C side's, 50 atoms a list (inspect's limit) a call.
%% (Takes a few seconds: Elixir inspects 440000 atoms in one run.)
inspect_atoms(Config) ->
    case os:find_executable("elixir") of
        false ->
            {skip, {planned, "Elixir is not installed: no Kernel.inspect/1 to compare with"}};
        Elixir ->
            ?H:run(Config, fun() ->
                C = cnode(),
                Atoms = sample_atoms(),
                io:format("inspect_atoms: ~p atoms~n", [length(Atoms)]),
                Want = elixir_inspect(Elixir, Atoms),
                io:format("inspect_atoms: Elixir answered~n"),
                %% a list of atoms is inspected as its atoms joined by ", "
                Bad = [{A, W, Got} || L <- chunks(lists:zip(Atoms, Want), 50),
                                      c(C, inspect, term_to_binary([A || {A, _} <- L])) =/=
                                          iolist_to_binary(["[", lists:join(", ", [W || {_, W} <- L]), "]"]),
                                      {A, W} <- L,
                                      (Got = c(C, inspect, term_to_binary(A))) =/= W],
                io:format("inspect_atoms: ~p atoms differ~n", [length(Bad)]),
                Bad =:= [] orelse ct:fail(safe({inspect_atoms, length(Bad), lists:sublist(Bad, 30)}))
            end, 300000)
    end.

sample_atoms() ->
    Cps = [X || X <- lists:seq(16#80, 16#3134F) ++ lists:seq(16#E0000, 16#E01EF), X < 16#D800 orelse X > 16#DFFF],
    One = [[X] || X <- Cps] ++ [[$a, X] || X <- Cps],
    Nfd = lists:append([nfd_forms(X) || X <- Cps]),
    Letters = [$a, $Z, $_, $5, $@, $?, 16#E9, 16#C9, 16#B5, 16#B7, 16#3BB, 16#39B, 16#434, 16#5D0, 16#639, 16#660,
               16#6F0, 16#915, 16#966, 16#E01, 16#10D0, 16#1100, 16#1161, 16#11A8, 16#AC00, 16#3105, 16#3042,
               16#30AB, 16#30FC, 16#65E5, 16#FF76, 16#300, 16#301, 16#308, 16#323, 16#345, 16#3099, 16#20000,
               16#1D400, 16#2118, 16#212E],
    Pairs = [[X, Y] || X <- Letters, Y <- Letters],
    Small = [$a, $Z, $_, 16#3BB, 16#434, 16#65E5, 16#3042, 16#30AB, 16#AC00, 16#3105, 16#300, 16#323, 16#30FC, $@, $1],
    Triples = [[X, Y, Z] || X <- Small, Y <- Small, Z <- Small],
    lists:usort([list_to_atom(L) || L <- One ++ Nfd ++ Pairs ++ Triples]).

%% The NFD form of X and, with two marks or more, its marks in another order;
%% both as they are and after an `a`.
nfd_forms(X) ->
    case unicode:characters_to_nfd_list([X]) of
        [X] -> [];
        [B | Ms] = D ->
            Forms = [D, [B | lists:reverse(Ms)], [$a | D]],
            [F || F <- Forms, length(F) =< 255]
    end.

chunks([], _) -> [];
chunks(L, N) when length(L) =< N -> [L];
chunks(L, N) -> {H, T} = lists:split(N, L), [H | chunks(T, N)].

%%% ---- mutated encodings: binary_to_term against the walker -----------------------

walker_vs_binary_to_term(Config) ->
    ?H:run(Config, fun() ->
        C = cnode(), seed(),
        N = count(3000),
        R = lists:foldl(fun(_, Acc) -> judge(C, mutate(term_to_binary(term(wire))), Acc) end, #{}, lists:seq(1, N)),
        Known = maps:get(known, R, #{}),
        Unknown = maps:get(unknown, R, []),
        io:format("walker vs binary_to_term: ~p encodings, ~p valid, ~p invalid, ~p agree~n"
                  "no gaps, counted apart: ~p~n"
                  "first such cases (hex, no 131): ~p~n"
                  "other disagreements: ~p~n",
                  [N, maps:get(valid, R, 0), maps:get(invalid, R, 0), maps:get(agree, R, 0),
                   maps:to_list(Known), lists:reverse(maps:get(examples, R, [])), lists:sublist(Unknown, 10)]),
        %% the mutations reach both sides
        true = maps:get(valid, R, 0) > N div 10,
        true = maps:get(invalid, R, 0) > N div 10,
        case Unknown of
            [] -> ok;
            _ -> ct:fail(safe({walker_disagrees_with_binary_to_term, length(Unknown), lists:sublist(Unknown, 5)}))
        end
    end, 300000).

%% A random change of an encoding (131 kept): a byte set, a byte flipped, a cut,
%% a slice doubled, a length-like field set to an edge value.
mutate(<<131, B/binary>>) ->
    Sz = byte_size(B),
    M = case rand:uniform(6) of
            1 -> set_byte(B, rand:uniform(Sz) - 1, rand:uniform(256) - 1);
            2 -> P = rand:uniform(Sz) - 1, <<Pre:P/binary, X, Post/binary>> = B,
                 <<Pre/binary, (X bxor (1 bsl (rand:uniform(8) - 1))), Post/binary>>;
            3 -> binary:part(B, 0, rand:uniform(Sz) - 1);
            4 -> P = rand:uniform(Sz) - 1, L = rand:uniform(Sz - P),
                 <<Pre:P/binary, Slice:L/binary, Post/binary>> = B, <<Pre/binary, Slice/binary, Slice/binary, Post/binary>>;
            5 -> set_byte(B, rand:uniform(Sz) - 1, lists:nth(rand:uniform(6), [0, 1, 2, 127, 128, 255]));
            6 -> B %% unchanged: must be valid on both sides
        end,
    <<131, M/binary>>.

set_byte(B, P, V) -> <<Pre:P/binary, _, Post/binary>> = B, <<Pre/binary, V, Post/binary>>.

%% BEAM: the bytes it uses (all of a valid term) or invalid; C: the walker's extent.
judge(C, <<131, Body/binary>> = Bin, Acc) ->
    Beam = try binary_to_term(Bin, [used]) of
               {_, Used} -> Used - 1
           catch error:badarg -> invalid
           end,
    Walk = c(C, walk, Body),
    Acc1 = maps:update_with(case Beam of invalid -> invalid; _ -> valid end, fun(X) -> X + 1 end, 1, Acc),
    case {Beam, Walk} of
        {E, E} -> maps:update_with(agree, fun(X) -> X + 1 end, 1, Acc1);
        {invalid, W} when not is_integer(W) -> maps:update_with(agree, fun(X) -> X + 1 end, 1, Acc1);
        {invalid, W} when is_integer(W) ->
            gap(known_gap(fun(X) -> ext(C, X) end, binary:part(Body, 0, W), not_strict),
                {beam_refuses, hex(Body), walker, W}, Body, Acc1);
        {B, W} when is_integer(B), not is_integer(W) ->
            gap(known_gap(fun beam_ext/1, binary:part(Body, 0, B), over_strict),
                {walker_refuses, hex(Body), beam, B}, Body, Acc1);
        {B, W} ->
            unknown({beam, B, walker, W, hex(Body)}, Acc1)
    end.

unknown(Case, Acc) -> maps:update_with(unknown, fun(L) -> [Case | L] end, [Case], Acc).

gap([], Case, _, Acc) -> unknown(Case, Acc);
gap(Gaps, _, Body, Acc) ->
    K = lists:foldl(fun(G, KA) -> maps:update_with(G, fun(X) -> X + 1 end, 1, KA) end, maps:get(known, Acc, #{}),
                    lists:usort(Gaps)),
    Ex = maps:get(examples, Acc, []),
    Acc#{known => K, examples => case length(Ex) < 5 of
                                     true -> [{lists:usort(Gaps), hex(Body)} | Ex];
                                     false -> Ex
                                 end}.

hex(B) -> binary:encode_hex(B).

%% The classes of one direction (not_strict: the walker accepted B and BEAM
%% refused it; over_strict: the other way) that B (no 131) holds. None is left
%% where the walker takes what BEAM refuses; the other way only internal_tag and
%% ref_zero_words (see the head of this file). Ext gives the extent of a subterm: the
%% walker's where it accepted B, BEAM's (binary_to_term's `used`) where BEAM did.
known_gap(Ext, B, Dir) ->
    Gaps = try element(1, scan(Ext, B))
           catch _:_ -> [] %% bytes the scan cannot follow: no known class
           end,
    Mine = case Dir of
               not_strict -> [];
               over_strict -> [internal_tag, ref_zero_words]
           end,
    [G || G <- Gaps, lists:member(G, Mine)].

ext(C, B) ->
    case c(C, walk, B) of
        N when is_integer(N) -> N;
        _ -> byte_size(B)
    end.

beam_ext(B) ->
    try binary_to_term(<<131, B/binary>>, [used]) of
        {_, U} -> U - 1
    catch error:badarg -> byte_size(B)
    end.

%% {Classes, Extent} of the term at the start of B: an internal tag (also as
%% the atom of a pid, port, reference or export) or a reference of no words,
%% anywhere in its tuples, lists and maps.
scan(C, <<Tag, _/binary>> = B) ->
    N = C(B),
    T = binary:part(B, 0, N),
    case Tag of
        _ when Tag >= 73, Tag =< 76 -> {[internal_tag], N};
        _ when Tag =:= 90; Tag =:= 114 ->
            <<_, Words:16, Node, _/binary>> = T,
            {[ref_zero_words || Words =:= 0] ++ [internal_tag || internal(Node)], N};
        _ when Tag =:= 88; Tag =:= 89; Tag =:= 101; Tag =:= 102; Tag =:= 103; Tag =:= 120 ->
            <<_, Node, _/binary>> = T, {[internal_tag || internal(Node)], N}; %% the node's atom
        113 -> %% an export: its module and function atoms
            <<_, M, _/binary>> = T,
            F = case M of
                    _ when M =:= 100; M =:= 118 -> <<_, _, L:16, _:L/binary, X, _/binary>> = T, X;
                    _ when M =:= 115; M =:= 119 -> <<_, _, L, _:L/binary, X, _/binary>> = T, X;
                    _ -> 0
                end,
            {[internal_tag || internal(M) orelse internal(F)], N};
        104 -> <<_, A, _/binary>> = T, {kids(C, T, 2, A), N};
        105 -> <<_, A:32, _/binary>> = T, {kids(C, T, 5, A), N};
        108 -> <<_, A:32, _/binary>> = T, {kids(C, T, 5, A + 1), N};
        116 -> <<_, A:32, _/binary>> = T, {kids(C, T, 5, 2 * A), N};
        _ -> {[], N}
    end;
scan(_, <<>>) -> {[], 0}.

internal(Tag) -> Tag >= 73 andalso Tag =< 76.

subterms(_, _, P, 0) -> {[], P};
subterms(C, T, P, K) when P < byte_size(T) ->
    Rest = binary:part(T, P, byte_size(T) - P),
    N = C(Rest),
    {More, P2} = subterms(C, T, P + N, K - 1),
    {[binary:part(Rest, 0, N) | More], P2};
subterms(_, _, P, _) -> {[], P}.

kids(C, T, P, K) ->
    {Subs, _} = subterms(C, T, P, K),
    lists:append([element(1, scan(C, S)) || S <- Subs]).
