# Generates inspect_vectors[] of tests/test_balancer_rpc.c: for each term, its
# term_to_binary bytes (hex) and Elixir's inspect/1 of it, from the Elixir and
# OTP this runs on (the committed table: Elixir 1.14 on OTP 25).
#
#   elixir tests/data/gen_inspect_vectors.exs           prints the C rows
#   elixir tests/data/gen_inspect_vectors.exs --check   compares them with the table
#
# The terms are Erlang expressions (parsed and evaluated here), so that
# atoms, charlists and binaries are spelled exactly. Pids, refs and local funs
# are left out: they print differently from run to run by design.

terms = ~S"""
1
-5
123456789012345678901234567890
-1180591620717411303424
1.0
0.1
100.0
1.0e5
1.0e-5
0.0001
123.456
-2.5e10
0.0
ok
'b@127.0.0.1'
n1@host
'api-1@host'
'Elixir.MyApp.Api'
erlang
nil
true
false
'Foo'
'foo?'
'+'
'with space'
'Elixir.foo'
'quo"te'
a1b
'é'
<<"hello">>
<<"a\nb\t\"q\"\\">>
<<"#{x}">>
<<"é"/utf8>>
<<200,1>>
<<1:3>>
<<>>
binary:copy(<<"a">>, 5000)
[]
[1,2,3]
"abc"
"a\nb"
[1|2]
[{a,1},{'b-c',2}]
[{'Elixir.Foo',1}]
[{a,1},2]
lists:seq(1, 60)
[lists:seq(1, 60)]
[1,2,3,lists:seq(1, 60)]
{1,lists:seq(1, 60)}
{}
{1,ok}
{got,1}
{error,{erpc,timeout}}
#{}
#{a => 1,b => <<"x">>}
#{<<"k">> => 1}
#{1 => 2,a => 3}
#{'__exception__' => true,'__struct__' => 'Elixir.ArgumentError',message => <<"bad thing">>}
#{1 => 1,2 => 2,3 => 3}
[{file,"lib/r.ex"},{line,3}]
{exception,undef,[{'Elixir.R',nofun,[1],[]}]}
list_to_binary(lists:seq(1, 60))
list_to_tuple(lists:seq(1, 60))
fun erlang:node/0
fun 'Elixir.Enum':map/2
[[1,[2,[3]]]]
[a,b]
["x",<<"y">>]
[<<1,2>>]
[256,1000]
[7]
4.474585263014373e17
1.2345678901234568e17
'%'
'::'
'^^^'
'->'
[{'%',1},{'::',2},{'+++',3},{'a@b',4}]
list_to_atom([$a,16#82,$b])
list_to_atom([16#3bb,$x])
list_to_atom([16#3bb,16#3bc])
list_to_atom([16#1968])
[{list_to_atom([16#1968]),1},{list_to_atom([16#e9,$@]),2}]
list_to_atom([$a,16#FEFF,16#FFFF])
<<"a",16#EF,16#BB,16#BF>>
[{list_to_atom([16#220]),1},{list_to_atom([16#c9]),2},{list_to_atom([16#39b,16#3bb]),3},{list_to_atom([$A,16#e9]),4},{list_to_atom([16#1c5]),5}]
"""

eval = fn src ->
  {:ok, toks, _} = :erl_scan.string(String.to_charlist(src))
  {:ok, exprs} = :erl_parse.parse_exprs(toks ++ [{:dot, 1}])
  {:value, t, _} = :erl_eval.exprs(exprs, [])
  t
end

rows =
  for src <- String.split(terms, "\n", trim: true) do
    t = eval.(src)
    {Base.encode16(:erlang.term_to_binary(t), case: :lower), inspect(t)}
  end

escape = fn s -> s |> String.replace("\\", "\\\\") |> String.replace("\"", "\\\"") |> String.replace("\n", "\\n") end

# a C string literal in pieces of 100 bytes, one per line, the continuation
# lines indented by `indent`
pieces = fn text, indent ->
  n = byte_size(text)
  [p | more] = for i <- 0..div(max(n, 1) - 1, 100), do: binary_part(text, i * 100, min(100, n - i * 100))
  "\"#{p}\"" <> Enum.map_join(more, fn c -> "\n" <> indent <> "\"#{c}\"" end)
end

case System.argv() do
  ["--check"] ->
    # the table as C has it: string pieces joined, escapes undone
    src = File.read!("tests/test_balancer_rpc.c")
    [_, table] = Regex.run(~r/inspect_vectors\[\] = \{\n(.*?)\n\};/s, src)
    unescape = fn s ->
      Regex.replace(~r/\\(.)/, s, fn _, c -> if c == "n", do: "\n", else: if(c == "t", do: "\t", else: c) end)
    end
    pieces = fn text -> Regex.scan(~r/"((?:[^"\\]|\\.)*)"/, text) |> Enum.map(fn [_, p] -> p end) end
    committed =
      Regex.scan(~r/\{((?:\s*"[0-9a-f]*")+),\s*((?:\s*"(?:[^"\\]|\\.)*")+)\}/, table)
      |> Enum.map(fn [_, h, t] -> {Enum.join(pieces.(h)), unescape.(Enum.join(pieces.(t)))} end)
    bad = for {{g, c}, i} <- Enum.with_index(Enum.zip(rows, committed)), g != c, do: {i, g, c}
    cond do
      length(rows) != length(committed) ->
        IO.puts("inspect_vectors: #{length(committed)} rows in the table, #{length(rows)} generated")
        System.halt(1)
      bad != [] ->
        for {i, g, c} <- bad, do: IO.puts("row #{i}: generated #{inspect(g)}\n        table     #{inspect(c)}")
        System.halt(1)
      true ->
        IO.puts("inspect_vectors: all #{length(rows)} rows match")
    end

  _ ->
    for {hex, text} <- rows do
      IO.puts("    {" <> pieces.(hex, "        ") <> ",\n     " <> pieces.(escape.(text), "        ") <> "},")
    end
end
