#!/usr/bin/env python3
# Writes tests/data/term_reader.tsv: the term reader's vectors (one external term each, no 131) and
# the verdict BEAM's binary_to_term gives, which terms_SUITE checks on every run. Run from the project root.
import struct
def atom(s, tag=118):
    b = s if isinstance(s, bytes) else s.encode()
    if tag in (115, 119): return bytes([tag, len(b)]) + b
    return bytes([tag]) + struct.pack('>H', len(b)) + b
def flt(text):
    t = text if isinstance(text, bytes) else text.encode()
    return bytes([99]) + t + bytes(31 - len(t))
def nf(bits): return bytes([70]) + struct.pack('>Q', bits)
N = atom('a@b', 100)
P = bytes([88]) + N + struct.pack('>III', 1, 0, 1)
def fun(numfree, rest, size=None, mod=atom('m',100), oi=bytes([97,0]), ou=bytes([98,0,0,0,0]), pid=P):
    body = bytes([0]) + bytes(16) + struct.pack('>II', 0, numfree) + mod + oi + ou + pid + rest
    sz = 4 + len(body) if size is None else size
    return bytes([112]) + struct.pack('>I', sz) + body
V = [
 ("small_int", "accept", bytes([97, 5])),
 ("tuple_of_three", "accept", bytes([104,3,97,1,100,0,1])+b"a"+bytes([106])),
 ("list_improper", "accept", bytes([108,0,0,0,1,97,1,97,2])),
 ("list_string_tail", "accept", bytes([108,0,0,0,1,97,1,107,0,1,5])),
 ("map_two", "accept", bytes([116,0,0,0,2,97,1,97,2,97,3,97,4])),
 ("binary", "accept", bytes([109,0,0,0,2,1,2])),
 ("len_binary_past_end", "refuse", bytes([109,0,0,0,9,1,2])),
 ("len_string_past_end", "refuse", bytes([107,0,9,1,2])),
 ("len_atom_past_end", "refuse", bytes([118,0,9])+b"ab"),
 ("len_tuple_past_end", "refuse", bytes([104,3,97,1])),
 ("len_list_past_end", "refuse", bytes([108,0,0,0,3,97,1,106])),
 ("len_map_past_end", "refuse", bytes([116,0,0,0,2,97,1,97,2])),
 ("len_big_past_end", "refuse", bytes([111,0,0,0,9,0,1])),
 ("len_list_huge", "refuse", bytes([108,255,255,255,255,106,106,106,106,106])),
 ("atom_utf8_ok", "accept", atom(b"\xc3\xa9t\xc3\xa9")),
 ("atom_utf8_overlong", "refuse", atom(b"\xc0\x80")),
 ("atom_utf8_surrogate", "refuse", atom(b"\xed\xa0\x80")),
 ("atom_utf8_above_max", "refuse", atom(b"\xf4\x90\x80\x80")),
 ("atom_utf8_truncated_seq", "refuse", atom(b"a\xc3")),
 ("atom_utf8_lone_continuation", "refuse", atom(b"\x80", 119)),
 ("atom_utf8_256_chars", "refuse", atom(b"a"*256)),
 ("atom_utf8_255_two_byte_chars", "accept", atom(b"\xc3\xa9"*255)),
 ("atom_latin1_256", "refuse", atom(b"a"*256, 100)),
 ("atom_latin1_high_bytes", "accept", atom(b"\xe9\xff", 100)),
 ("atom_cache_ref", "refuse", bytes([82,0])),
 ("float_ok", "accept", flt("1.50000000000000000000e+00")),
 ("float_comma_radix", "accept", flt("1,5")),
 ("float_plus_sign", "accept", flt("+1.5")),
 ("float_underflow_to_zero", "accept", flt("1.0e-400")),
 ("float_garbage_after_nul", "accept", bytes([99])+b"1.5\0abc"+bytes(24)),
 ("float_nan_text", "refuse", flt("nan")),
 ("float_no_dot", "refuse", flt("1e5")),
 ("float_overflow", "refuse", flt("1.0e400")),
 ("float_leading_space", "refuse", flt(" 1.5")),
 ("float_trailing_garbage", "refuse", flt("1.5x")),
 ("float_no_fraction", "refuse", flt("1.")),
 ("float_empty_exponent", "refuse", flt("1.5e")),
 ("float_hex", "refuse", flt("0x1.8p0")),
 ("float_no_nul", "refuse", bytes([104,2,99])+b"1"*29+b".0"+bytes([97,1])),
 ("float_empty", "refuse", flt("")),
 ("new_float_ok", "accept", nf(0x3FF8000000000000)),
 ("new_float_neg_zero", "accept", nf(0x8000000000000000)),
 ("new_float_denormal", "accept", nf(1)),
 ("new_float_nan", "refuse", nf(0x7FF8000000000000)),
 ("new_float_nan_signalling", "refuse", nf(0x7FF0000000000001)),
 ("new_float_inf", "refuse", nf(0x7FF0000000000000)),
 ("new_float_neg_inf", "refuse", nf(0xFFF0000000000000)),
 ("bit_binary_empty", "accept", bytes([77,0,0,0,0,0])),
 ("bit_binary_empty_8", "refuse", bytes([77,0,0,0,0,8])),
 ("bit_binary_zero_bits", "refuse", bytes([77,0,0,0,1,0,5])),
 ("bit_binary_nine_bits", "refuse", bytes([77,0,0,0,1,9,5])),
 ("bit_binary_three_bits", "accept", bytes([77,0,0,0,1,3,0xe0])),
 ("big_sign_two", "accept", bytes([110,1,2,5])),
 ("big_empty", "accept", bytes([110,0,0])),
 ("big_high_zeros", "accept", bytes([110,2,0,5,0])),
 ("pid_new", "accept", P),
 ("pid_node_not_atom", "refuse", bytes([88,97,1])+bytes(12)),
 ("pid_old_creation_3", "accept", bytes([103])+N+bytes(8)+bytes([3])),
 ("pid_old_creation_4", "refuse", bytes([103])+N+bytes(8)+bytes([4])),
 ("port_old_creation_4", "refuse", bytes([102])+N+bytes([0,0,0,1,4])),
 ("port_v4", "accept", bytes([120])+N+bytes([255]*8)+bytes([0,0,0,1])),
 ("ref_old_id_19_bits", "refuse", bytes([101])+N+bytes([0,4,0,0,0])),
 ("ref_new_id_19_bits", "refuse", bytes([114,0,1])+N+bytes([0,0,4,0,0])),
 ("ref_new_creation_4", "refuse", bytes([114,0,1])+N+bytes([4,0,0,0,1])),
 ("ref_newer_five_words", "accept", bytes([90,0,5])+N+bytes(4+20)),
 ("ref_newer_six_words", "refuse", bytes([90,0,6])+N+bytes(4+24)),
 ("ref_newer_big_first_word", "accept", bytes([90,0,1])+N+bytes(4)+bytes([255]*4)),
 ("export_ok", "accept", bytes([113])+atom('m',100)+atom('f',100)+bytes([97,2])),
 ("export_integer_arity", "accept", bytes([113])+atom('m',100)+atom('f',100)+bytes([98,0,0,0,1])),
 ("export_negative_arity", "refuse", bytes([113])+atom('m',100)+atom('f',100)+bytes([98,255,255,255,255])),
 ("export_module_not_atom", "refuse", bytes([113,97,1])+atom('f',100)+bytes([97,1])),
 ("fun_new_ok", "accept", fun(0, b"")),
 ("fun_new_one_free", "accept", fun(1, bytes([97,1]))),
 ("fun_new_pid_any_term", "limit", fun(0, b"", pid=bytes([97,1]))),
 ("fun_new_size_mismatch", "limit", bytes([104,2]) + fun(0, b"", size=len(fun(0, b""))) + bytes([97,1])),
 ("fun_new_index_not_int", "refuse", fun(0, b"", oi=atom('x',100))),
 ("fun_new_module_not_atom", "refuse", fun(0, b"", mod=bytes([97,0]))),
 ("fun_old", "refuse", bytes([117,0,0,0,0])+P+atom('m',100)+bytes([97,1,97,1])),
 ("local_ext", "refuse", bytes([121,0])),
 ("unknown_tag", "refuse", bytes([1])),
 ("compressed", "limit", bytes.fromhex("50000000CB789CCB6638C13E4C0000187506AC")),
 ("depth_over_limit", "limit", bytes([104,1])*1100 + bytes([106])),
]
def mp(*pairs): return bytes([116]) + struct.pack('>I', len(pairs)) + b"".join(k + v for k, v in pairs)
NIL = bytes([106])
I1 = bytes([97, 1])
V += [
 # a map with a key twice: BEAM compares keys by value, so equal keys encoded differently are duplicates too
 ("map_dup_same_bytes", "refuse", mp((I1, I1), (I1, NIL))),
 ("map_dup_atom_encodings", "refuse", mp((atom('a', 100), I1), (atom('a', 119), I1))),
 ("map_dup_latin1_utf8_atom", "refuse", mp((atom(b"\xe9", 100), I1), (atom("\u00e9", 118), I1))),
 ("map_dup_int_encodings", "refuse", mp((I1, I1), (bytes([98,0,0,0,1]), I1), )),
 ("map_dup_small_big", "refuse", mp((bytes([98,0,0,1,0]), I1), (bytes([110,2,0,0,1]), I1))),
 ("map_dup_string_list", "refuse", mp((bytes([107,0,2,1,2]), I1), (bytes([108,0,0,0,2,97,1,97,2,106]), I1))),
 ("map_dup_list_cells", "refuse", mp((bytes([108,0,0,0,2,97,1,97,2,106]), I1), (bytes([108,0,0,0,1,97,1,108,0,0,0,1,97,2,106,106]), I1))),
 ("map_dup_tuple_sizes", "refuse", mp((bytes([104,1,97,1]), I1), (bytes([105,0,0,0,1,97,1]), I1))),
 ("map_dup_float_text_bits", "refuse", mp((flt("1.5"), I1), (nf(0x3FF8000000000000), I1))),
 ("map_dup_float_zero_sign", "refuse", mp((nf(0), I1), (nf(1 << 63), I1))),
 ("map_dup_bits_unused", "refuse", mp((bytes([77,0,0,0,1,4,0xff]), I1), (bytes([77,0,0,0,1,4,0xf0]), I1))),
 ("map_dup_bits_binary", "refuse", mp((bytes([77,0,0,0,1,8,0xff]), I1), (bytes([109,0,0,0,1,0xff]), I1))),
 ("map_dup_map_key_order", "refuse", mp((mp((I1, NIL), (bytes([97,2]), NIL)), I1), (mp((bytes([97,2]), NIL), (I1, NIL)), I1))),
 ("map_dup_inner_map", "refuse", mp((I1, mp((I1, I1), (I1, I1))))),
 ("map_dup_pid_encodings", "refuse", mp((bytes([103]) + N + struct.pack('>IIB', 1, 0, 1), I1), (bytes([88]) + N + struct.pack('>III', 1, 0, 1), I1))),
 ("map_dup_not_int_float", "accept", mp((I1, I1), (nf(0x3FF0000000000000), I1))),
 ("map_dup_not_bits_length", "accept", mp((bytes([77,0,0,0,1,4,0xf0]), I1), (bytes([77,0,0,0,1,5,0xf0]), I1))),
 ("map_dup_not_key_value_swap", "accept", mp((I1, bytes([97,2])), (bytes([97,2]), I1))),
 ("map_dup_not_pairs_sum", "accept", mp((mp((I1, I1), (bytes([97,2]), bytes([97,2]))), I1), (mp((I1, bytes([97,2])), (bytes([97,2]), I1)), I1))),
 ("map_dup_not_nested_same_key", "accept", mp((I1, mp((I1, I1))), (bytes([97,2]), mp((I1, I1))))),
 # OTP 25 takes an export's arity up to 2^31-1, in any integer encoding
 ("export_arity_large", "accept", bytes([113]) + atom('m', 100) + atom('f', 100) + bytes([98,0x09,0x93,0x3e,0x7a])),
 ("export_arity_2_31", "refuse", bytes([113]) + atom('m', 100) + atom('f', 100) + bytes([98,0x80,0,0,0])),
 ("export_arity_small_big", "accept", bytes([113]) + atom('m', 100) + atom('f', 100) + bytes([110,1,0,5])),
 # OTP 25 reads one id word of a reference whose count is 0 (past the end of the input if it must); the reader refuses the count
 ("ref_newer_zero_words", "limit", bytes([90,0,0]) + atom('a@b', 100) + bytes([0,0,0,0, 0,0,0,7])),
 ("map_dup_not_string_longer", "accept", mp((bytes([107,0,2,1,2]), I1), (bytes([108,0,0,0,2,97,1,97,2,97,3]), I1))),
]
with open('tests/data/term_reader.tsv','w') as f:
    f.write("# name\tverdict\thex (one external term, no 131): accept/refuse as BEAM's binary_to_term, or limit (BEAM takes it, the reader refuses it by a rule of its own: depth, compressed terms, a fun ei cannot read)\n")
    for n, v, b in V:
        f.write(f"{n}\t{v}\t{b.hex()}\n")
