# Writes term/ident_tables.h, the Unicode tables of term/inspect_text.c:
#
#   elixir term/gen_unicode.exs > term/ident_tables.h
#
# The facts come from the Elixir and Erlang/OTP that run this script (the
# committed header names their versions), so that the C side decides as that
# Elixir's Kernel.inspect/1 does:
# - which code points an identifier may start with (ID_Start, upper-case
#   letters apart) or go on with (ID_Continue), and the set of scripts
#   (augmented, as a bit mask) each belongs to: String.Tokenizer's own tables,
#   read by calling the private lookups of a copy of the module compiled from
#   its debug_info (Elixir builds them from the Unicode files at its own build);
# - the NFC facts: full canonical decompositions (characters_to_nfd_list),
#   canonical combining classes (unicode_util:lookup/1), and the canonical
#   pairs that compose (from canonical decompositions, each checked with
#   characters_to_nfc_list, which drops the exclusions); Hangul is
#   arithmetic in C.
# Elixir's tokenizer calls unicode:characters_to_nfc_list/1 at run time, so the
# NFC facts are those of the OTP that runs Elixir.

mod = String.Tokenizer
{:ok, {_, [{:abstract_code, {:raw_abstract_v1, forms}}]}} =
  :beam_lib.chunks(:code.which(mod), [:abstract_code])

copy = :gen_unicode_tokenizer_copy

forms =
  Enum.map(forms, fn
    {:attribute, l, :module, _} -> {:attribute, l, :module, copy}
    {:attribute, l, :export, _} -> {:attribute, l, :compile, :export_all}
    f -> f
  end)

{:ok, ^copy, bin} = :compile.forms(forms, [:nowarn_export_all, :return_errors])
{:module, ^copy} = :code.load_binary(copy, ~c"gen_unicode_tokenizer_copy.beam", bin)

# The scriptset '_' and U+00B5 get (every script), and the sets of
# highly_restrictive? (Latin with Japanese, with Han+Bopomofo, with Korean).
{956, all} = copy.normalize_start(0xB5)

# The one literal list of three integers in highly_restrictive?'s body.
find_ints = fn
  {:cons, _, {:integer, _, a}, {:cons, _, {:integer, _, b}, {:cons, _, {:integer, _, c}, {nil, _}}}}, _ ->
    [[a, b, c]]

  t, self when is_tuple(t) ->
    t |> Tuple.to_list() |> Enum.flat_map(&self.(&1, self))

  l, self when is_list(l) ->
    Enum.flat_map(l, &self.(&1, self))

  _, _ ->
    []
end

[restrictive] =
  for {:function, _, :highly_restrictive?, 1, clauses} <- forms, do: hd(find_ints.(clauses, find_ints))

true = is_list(restrictive) and length(restrictive) == 3

surrogate? = fn c -> c >= 0xD800 and c <= 0xDFFF end

# kind: 1 start, 2 upper (starts an atom, not an identifier), 3 continue only
classify = fn c ->
  s = copy.unicode_start(c)
  u = copy.unicode_upper(c)
  k = copy.unicode_continue(c)

  cond do
    u != 0 and s != 0 and u != s -> raise "start and upper disagree at #{c}"
    u != 0 -> {2, u}
    s != 0 -> {1, s}
    k != 0 -> {3, k}
    true -> nil
  end
end

ranges = fn pairs ->
  pairs
  |> Enum.chunk_while(
    nil,
    fn
      {c, v}, nil -> {:cont, {c, c, v}}
      {c, v}, {lo, hi, v} when c == hi + 1 -> {:cont, {lo, c, v}}
      {c, v}, r -> {:cont, r, {c, c, v}}
    end,
    fn
      nil -> {:cont, nil}
      r -> {:cont, r, nil}
    end
  )
end

ident =
  for c <- 0..0x10FFFF, not surrogate?.(c), v = classify.(c), v != nil, do: {c, v}

sets = ident |> Enum.map(fn {_, {_, ss}} -> ss end) |> Enum.uniq() |> Enum.sort()
set_index = sets |> Enum.with_index() |> Map.new()
ident_ranges = ranges.(Enum.map(ident, fn {c, {k, ss}} -> {c, {k, Map.fetch!(set_index, ss)}} end))

nfc = fn l -> :unicode.characters_to_nfc_list(l) end
ident_cps = Enum.map(ident, &elem(&1, 0))

# Full canonical decompositions (NFD) of the identifier code points that
# have one (Hangul syllables apart: arithmetic in C), and the combining
# classes of every code point these and the identifiers hold.
hangul_syllable? = fn c -> c >= 0xAC00 and c <= 0xD7A3 end

decomp =
  for c <- ident_cps, c > 0x7F, not hangul_syllable?.(c), d = :unicode.characters_to_nfd_list([c]), d != [c],
      do: {c, d}

# (the C side makes room for 4 code points a code point)
true = Enum.all?(decomp, fn {_, d} -> length(d) <= 4 end)

{decomp_rows, decomp_flat} =
  Enum.map_reduce(decomp, [], fn {c, d}, flat -> {{c, length(flat), length(d)}, flat ++ d} end)

ccc_cps = Enum.uniq(Enum.sort(ident_cps ++ decomp_flat))
ccc = for c <- ccc_cps, (cc = :unicode_util.lookup(c).ccc) != 0, do: {c, cc}

hangul? = fn c -> c >= 0xAC00 and c <= 0xD7A3 end

pairs =
  for x <- 0..0x10FFFF,
      not surrogate?.(x),
      not hangul?.(x),
      nfc.([x]) == [x],
      d = :unicode.characters_to_nfd_list([x]),
      length(d) >= 2,
      first = nfc.(Enum.drop(d, -1)),
      length(first) == 1,
      second = List.last(d),
      nfc.(first ++ [second]) == [x] do
    {hd(first), second, x}
  end
  |> Enum.sort_by(fn {f, s, _} -> {s, f} end)

hex = fn c -> "0x" <> String.pad_leading(Integer.to_string(c, 16), 4, "0") end

rows = fn items, per, fmt ->
  items
  |> Enum.map(fmt)
  |> Enum.chunk_every(per)
  |> Enum.map_join("\n", fn row -> "    " <> Enum.join(row, ", ") <> "," end)
end

IO.puts("""
/* GENERATED by `elixir term/gen_unicode.exs > term/ident_tables.h` with Elixir
 * #{System.version()} on Erlang/OTP #{System.otp_release()} (Unicode data of String.Tokenizer and of
 * unicode/unicode_util); do not edit. Included by term/inspect_text.c only.
 * All range tables are sorted by code point, for binary search. */
/* clang-format off */

/* Scriptsets (String.Tokenizer's augmented scripts as bits, Latin = 1) */
#define IDT_ALL_SCRIPTS #{all}ULL
static const uint64_t idt_restrictive[] = {#{Enum.map_join(restrictive, ", ", &"#{&1}ULL")}};
static const uint64_t idt_sets[] = {
#{rows.(sets, 4, &"#{&1}ULL")}
};

/* Identifier code points: kind 1 ID_Start, 2 upper case (starts an atom), 3 ID_Continue only; set indexes idt_sets */
static const struct idt_range {
    uint32_t lo, hi;
    uint8_t kind, set;
} idt_ident[] = {
#{rows.(ident_ranges, 3, fn {lo, hi, {k, s}} -> "{#{hex.(lo)}, #{hex.(hi)}, #{k}, #{s}}" end)}
};

/* Canonical decompositions (full) of identifier code points past ASCII: the
 * code point, where its decomposition starts in idt_decomp_cps, its length */
static const struct idt_decomp {
    uint32_t cp;
    uint16_t at;
    uint8_t len;
} idt_decomp[] = {
#{rows.(decomp_rows, 3, fn {c, at, len} -> "{#{hex.(c)}, #{at}, #{len}}" end)}
};
static const uint32_t idt_decomp_cps[] = {
#{rows.(decomp_flat, 8, hex)}
};

/* Canonical combining classes (non-zero) of identifier code points and of what they decompose to */
static const struct idt_ccc {
    uint32_t lo, hi;
    uint8_t ccc;
} idt_ccc[] = {
#{rows.(ranges.(ccc), 3, fn {lo, hi, cc} -> "{#{hex.(lo)}, #{hex.(hi)}, #{cc}}" end)}
};

/* Canonical pairs that NFC composes into one code point (Hangul apart), sorted by second then first */
static const struct idt_pair {
    uint32_t first, second, composite;
} idt_compose[] = {
#{rows.(pairs, 3, fn {f, s, x} -> "{#{hex.(f)}, #{hex.(s)}, #{hex.(x)}}" end)}
};
/* clang-format on */\
""")
