/* EasyRpc in C: Elixir inspect/1 against golden text from Elixir 1.14,
 * EasyRpc's error text, every configuration check of seed-behaviour.md B2
 * and B3 (and the balancer's own option checks) with EasyRpc's exact
 * messages, DefRpc declarations and their stubs, static node lists and
 * providers, the observer, and the EasyRpc log lines of real calls between
 * two C nodes of this process, on a private epmd of its own. */
#include <CUnit/CUnit.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnode_balancer.h"
#include "cnode_term.h"
#include "tests/testutil.h"

/* term_to_binary hex, then Elixir 1.14's inspect/1 of the term (generated
 * with tests/data/gen_inspect_vectors.exs; pids, refs and local funs print
 * differently by design). */
static const struct {
    const char *hex, *text;
} inspect_vectors[] = {
    {"836101",
     "1"},
    {"8362fffffffb",
     "-5"},
    {"836e0d00d20a3f4eeee073c3f60fe98e01",
     "123456789012345678901234567890"},
    {"836e0901000000000000000040",
     "-1180591620717411303424"},
    {"83463ff0000000000000",
     "1.0"},
    {"83463fb999999999999a",
     "0.1"},
    {"83464059000000000000",
     "100.0"},
    {"834640f86a0000000000",
     "100000.0"},
    {"83463ee4f8b588e368f1",
     "1.0e-5"},
    {"83463f1a36e2eb1c432d",
     "0.0001"},
    {"8346405edd2f1a9fbe77",
     "123.456"},
    {"8346c2174876e8000000",
     "-25000000000.0"},
    {"83460000000000000000",
     "0.0"},
    {"836400026f6b",
     ":ok"},
    {"8364000b62403132372e302e302e31",
     ":\"b@127.0.0.1\""},
    {"836400076e3140686f7374",
     ":n1@host"},
    {"8364000a6170692d3140686f7374",
     ":\"api-1@host\""},
    {"83640010456c697869722e4d794170702e417069",
     "MyApp.Api"},
    {"8364000665726c616e67",
     ":erlang"},
    {"836400036e696c",
     "nil"},
    {"8364000474727565",
     "true"},
    {"8364000566616c7365",
     "false"},
    {"83640003466f6f",
     ":Foo"},
    {"83640004666f6f3f",
     ":foo?"},
    {"836400012b",
     ":+"},
    {"8364000a77697468207370616365",
     ":\"with space\""},
    {"8364000a456c697869722e666f6f",
     ":\"Elixir.foo\""},
    {"8364000671756f227465",
     ":\"quo\\\"te\""},
    {"83640003613162",
     ":a1b"},
    {"83640001e9",
     ":é"},
    {"836d0000000568656c6c6f",
     "\"hello\""},
    {"836d00000008610a62092271225c",
     "\"a\\nb\\t\\\"q\\\"\\\\\""},
    {"836d00000004237b787d",
     "\"\\#{x}\""},
    {"836d00000002c3a9",
     "\"é\""},
    {"836d00000002c801",
     "<<200, 1>>"},
    {"834d000000010320",
     "<<1::size(3)>>"},
    {"836d00000000",
     "\"\""},
    {"836d000013886161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "6161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161"
        "616161616161",
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\""
        " <> ..."},
    {"836a",
     "[]"},
    {"836b0003010203",
     "[1, 2, 3]"},
    {"836b0003616263",
     "'abc'"},
    {"836b0003610a62",
     "'a\\nb'"},
    {"836c0000000161016102",
     "[1 | 2]"},
    {"836c0000000268026400016161016802640003622d6361026a",
     "[a: 1, \"b-c\": 2]"},
    {"836c00000001680264000a456c697869722e466f6f61016a",
     "[{Foo, 1}]"},
    {"836c00000002680264000161610161026a",
     "[{:a, 1}, 2]"},
    {"836b003c0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e"
        "2f303132333435363738393a3b3c",
     "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, "
        "28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, ...]"},
    {"836c000000016b003c0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223242526272829"
        "2a2b2c2d2e2f303132333435363738393a3b3c6a",
     "[[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27,"
        " 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, ...]]"},
    {"836c000000046101610261036b003c0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223"
        "2425262728292a2b2c2d2e2f303132333435363738393a3b3c6a",
     "[1, 2, 3, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25"
        ", 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, ...]]"},
    {"83680261016b003c0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a"
        "2b2c2d2e2f303132333435363738393a3b3c",
     "{1, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, "
        "27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, ...]}"},
    {"836800",
     "{}"},
    {"83680261016400026f6b",
     "{1, :ok}"},
    {"836802640003676f746101",
     "{:got, 1}"},
    {"8368026400056572726f7268026400046572706364000774696d656f7574",
     "{:error, {:erpc, :timeout}}"},
    {"837400000000",
     "%{}"},
    {"837400000002640001616101640001626d0000000178",
     "%{a: 1, b: \"x\"}"},
    {"8374000000016d000000016b6101",
     "%{\"k\" => 1}"},
    {"83740000000261016102640001616103",
     "%{1 => 2, :a => 3}"},
    {"83740000000364000d5f5f657863657074696f6e5f5f6400047472756564000a5f5f7374727563745f5f640014456c697869"
        "722e417267756d656e744572726f726400076d6573736167656d00000009626164207468696e67",
     "%ArgumentError{message: \"bad thing\"}"},
    {"837400000003610161016102610261036103",
     "%{1 => 1, 2 => 2, 3 => 3}"},
    {"836c00000002680264000466696c656b00086c69622f722e657868026400046c696e6561036a",
     "[file: 'lib/r.ex', line: 3]"},
    {"836803640009657863657074696f6e640005756e6465666c000000016804640008456c697869722e526400056e6f66756e6b"
        "0001016a6a",
     "{:exception, :undef, [{R, :nofun, [1], []}]}"},
    {"836d0000003c0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c"
        "2d2e2f303132333435363738393a3b3c",
     "<<1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27,"
        " 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, ...>>"},
    {"83683c610161026103610461056106610761086109610a610b610c610d610e610f6110611161126113611461156116611761"
        "186119611a611b611c611d611e611f6120612161226123612461256126612761286129612a612b612c612d612e612f613061"
        "3161326133613461356136613761386139613a613b613c",
     "{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, "
        "28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, ...}"},
    {"837164000665726c616e676400046e6f64656100",
     "&:erlang.node/0"},
    {"837164000b456c697869722e456e756d6400036d61706102",
     "&Enum.map/2"},
    {"836c000000016c0000000261016c0000000261026b0001036a6a6a",
     "[[1, [2, [3]]]]"},
    {"836c0000000264000161640001626a",
     "[:a, :b]"},
    {"836c000000026b0001786d00000001796a",
     "['x', \"y\"]"},
    {"836c000000016d0000000201026a",
     "[<<1, 2>>]"},
    {"836c00000002620000010062000003e86a",
     "[256, 1000]"},
    {"836b000107",
     "'\\a'"},
    {"83464398d6c4a2bfaaf6",
     "4.474585263014373e17"},
    {"8346437b69b4ba630f35",
     "1.2345678901234568e17"},
    {"8364000125",
     ":%"},
    {"836400023a3a",
     ":\"::\""},
    {"836400035e5e5e",
     ":\"^^^\""},
    {"836400022d3e",
     ":->"},
    {"836c00000004680264000125610168026400023a3a610268026400032b2b2b6103680264000361406261046a",
     "[%: 1, \"::\": 2, +++: 3, a@b: 4]"},
    {"83640003618262",
     ":\"a\\x82b\""},
    {"837703cebb78",
     ":\"λx\""},
    {"837704cebbcebc",
     ":λμ"},
    {"837703e1a5a8",
     ":\"ᥨ\""},
    {"836c0000000268027703e1a5a861016802640002e94061026a",
     "[\"ᥨ\": 1, é@: 2]"},
    {"83770761efbbbfefbfbf",
     ":\"a\\uFEFF\\x{FFFF}\""},
    {"836d0000000461efbbbf",
     "\"a\\uFEFF\""},
    {"836c0000000568027702c8a061016802640001c9610268027704ce9bcebb6103680264000241e9610468027702c78561056a",
     "[\"Ƞ\": 1, É: 2, Λλ: 3, Aé: 4, \"ǅ\": 5]"},
};

/* ---- helpers ---- */

/* Term text into a fresh buffer with its 131. */
static ei_x_buff
term(const char *text)
{
    ei_x_buff x;
    ei_x_new_with_version(&x);
    cnode_error perr = {0};
    if (cnode_term_parse(text, &x, &perr) != 0)
        fprintf(stderr, "bad test term %s: %s\n", text, perr.message);
    return x;
}

static char *
inspect_x(const ei_x_buff *x)
{
    static char out[8192];
    if (cnode_rpc_inspect(x->buff, (size_t)x->index, out, sizeof out) != 0)
        snprintf(out, sizeof out, "<bad>");
    return out;
}

/* ---- inspect ---- */

static void
test_inspect_vectors(void)
{
    static unsigned char bin[20000];
    static char out[8192];
    int bad = 0;
    for (size_t i = 0; i < sizeof inspect_vectors / sizeof inspect_vectors[0]; i++) {
        long n = tu_unhex(inspect_vectors[i].hex, bin, sizeof bin);
        CU_ASSERT_FATAL(n > 0);
        int rc = cnode_rpc_inspect((const char *)bin, (size_t)n, out, sizeof out);
        if (rc != 0 || strcmp(out, inspect_vectors[i].text) != 0) {
            fprintf(stderr, "inspect %zu: want %.200s\n             got  %.200s\n", i, inspect_vectors[i].text, out);
            bad++;
        }
        /* every split of the input (each strict prefix, ending at a guard
         * page) is refused, never read past */
        for (long k = 0; k < n; k++) {
            tu_guard g = tu_guard_copy(bin, (size_t)k);
            int prc = cnode_rpc_inspect(g.p, (size_t)k, out, sizeof out);
            tu_guard_free(&g);
            if (prc != CNODE_EINVAL) {
                fprintf(stderr, "inspect %zu: prefix of %ld of %ld bytes gave %d\n", i, k, n, prc);
                bad++;
            }
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
}

static void
test_inspect_edges(void)
{
    char out[64];
    CU_ASSERT_EQUAL(cnode_rpc_inspect_atom("b@127.0.0.1", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, ":\"b@127.0.0.1\"");
    CU_ASSERT_EQUAL(cnode_rpc_inspect_atom("Elixir.MyApp.Api", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "MyApp.Api");
    CU_ASSERT_EQUAL(cnode_rpc_inspect_atom("n1@host", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, ":n1@host");
    CU_ASSERT_EQUAL(cnode_rpc_inspect_atom("x", out, 3), CNODE_EINVAL);
    /* atoms past ASCII as Elixir 1.14 prints them (asked of `elixir -e`):
       scripts (Han, Hiragana with Latin; Greek with Latin quoted), NFC
       (decomposed quoted unless upper case; reordered marks), U+00B5, Hangul */
    static const struct {
        const char *atom, *text;
    } uni[] = {
        {"\xE6\x97\xA5\xE6\x9C\xAC", ":\xE6\x97\xA5\xE6\x9C\xAC"},
        {"a\xE3\x81\x82", ":a\xE3\x81\x82"},
        {"\xCE\xBBx", ":\"\xCE\xBBx\""},
        {"\xC3\xA9\xCC\xA3", ":\"\xC3\xA9\xCC\xA3\""},
        {"\xC3\xA9\xE3\x82\x99", ":\xC3\xA9\xE3\x82\x99"},
        {"e\xCC\x81", ":\"e\xCC\x81\""},
        {"E\xCC\x81", ":E\xCC\x81"},
        {"Z1\xE3\x81\x82", ":Z1\xE3\x81\x82"},
        {"a\xD0\xB1", ":\"a\xD0\xB1\""},
        {"\xC2\xB5", ":\"\xC2\xB5\""},
        {"\xED\x95\x9C\xE1\x86\xA8", ":\"\xED\x95\x9C\xE1\x86\xA8\""},
        {"\xE1\x84\x92\xE1\x85\xA1", ":\"\xE1\x84\x92\xE1\x85\xA1\""},
    };
    for (size_t i = 0; i < sizeof uni / sizeof uni[0]; i++) {
        CU_ASSERT_EQUAL(cnode_rpc_inspect_atom(uni[i].atom, out, sizeof out), 0);
        CU_ASSERT_STRING_EQUAL(out, uni[i].text);
    }
    /* a text that does not fit ends in "..." within cap */
    ei_x_buff l = term("[1000, 2000, 3000, 4000, 5000, 6000, 7000]");
    char small[16];
    CU_ASSERT_EQUAL(cnode_rpc_inspect(l.buff, (size_t)l.index, small, sizeof small), 0);
    CU_ASSERT_STRING_EQUAL(small, "[1000, 2000,...");
    ei_x_free(&l);
    /* malformed and trailing bytes */
    static const char trailing[] = {(char)131, 97, 1, 97};
    CU_ASSERT_EQUAL(cnode_rpc_inspect(trailing, sizeof trailing, out, sizeof out), CNODE_EINVAL);
    CU_ASSERT_EQUAL(cnode_rpc_inspect(trailing, 0, out, sizeof out), CNODE_EINVAL);
}

/* ---- EasyRpc's error text ---- */

static void
test_error_format(void)
{
    char text[2048];
    cnode_error e = {0};
    e.code = CNODE_ECONFIG;
    e.type = "config_error";
    snprintf(e.message, sizeof e.message, "Node list cannot be empty");
    CU_ASSERT_EQUAL(cnode_rpc_error_format(&e, text, sizeof text), 0);
    CU_ASSERT_STRING_EQUAL(text, "[config_error] Node list cannot be empty");
    CU_ASSERT_EQUAL(cnode_error_format(&e, text, sizeof text), 0);
    CU_ASSERT_STRING_EQUAL(text, "[config_error] Node list cannot be empty");
    /* the DSL verifier's errors have no type */
    e.type = "";
    snprintf(e.message, sizeof e.message, "Config :nodes must be a non-empty list of node names");
    CU_ASSERT_EQUAL(cnode_rpc_error_format(&e, text, sizeof text), 0);
    CU_ASSERT_STRING_EQUAL(text, "[] Config :nodes must be a non-empty list of node names");

    /* seed-behaviour.md B5/B6: a remote ArgumentError, word for word (type aside) */
    memset(&e, 0, sizeof e);
    e.code = CNODE_EEXCEPTION;
    e.type = "rpc_error";
    snprintf(e.exc_class, sizeof e.exc_class, "error");
    e.reason = term("#{'__struct__' => 'Elixir.ArgumentError', '__exception__' => true, message => <<\"bad thing\">>}");
    e.stacktrace = term("[{'Elixir.R', boom, 1, [{file, \"lib/r.ex\"}, {line, 3}]}]");
    snprintf(e.node, sizeof e.node, "b@127.0.0.1");
    snprintf(e.module, sizeof e.module, "Elixir.R");
    snprintf(e.function, sizeof e.function, "boom");
    e.arity = 1;
    CU_ASSERT_EQUAL(cnode_rpc_error_format(&e, text, sizeof text), 0);
    CU_ASSERT_STRING_EQUAL(text, "[rpc_error] Erlang error: {:exception, %ArgumentError{message: \"bad thing\"}, [{R, :boom, 1, "
                                 "[file: 'lib/r.ex', line: 3]}]} | details: [exception: ErlangError, node: :\"b@127.0.0.1\", "
                                 "attempt: 0, module: R, function: :boom]");
    cnode_error_clear(&e);

    /* exit and throw: "Caught <kind>: ..." with kind and reason in the details */
    e.code = CNODE_EEXCEPTION;
    snprintf(e.exc_class, sizeof e.exc_class, "exit");
    e.reason = term("my_exit");
    snprintf(e.node, sizeof e.node, "b@127.0.0.1");
    snprintf(e.module, sizeof e.module, "Elixir.R");
    snprintf(e.function, sizeof e.function, "ex");
    e.type = "rpc_error";
    CU_ASSERT_EQUAL(cnode_rpc_error_format(&e, text, sizeof text), 0);
    CU_ASSERT_STRING_EQUAL(text, "[rpc_error] Caught exit: {:exception, :my_exit} | details: [node: :\"b@127.0.0.1\", kind: :exit, "
                                 "reason: {:exception, :my_exit}, attempt: 0, module: R, function: :ex]");
    snprintf(e.exc_class, sizeof e.exc_class, "throw");
    ei_x_free(&e.reason);
    e.reason = term("my_throw");
    e.attempt = 2;
    CU_ASSERT_EQUAL(cnode_rpc_error_format(&e, text, sizeof text), 0);
    CU_ASSERT_STRING_EQUAL(text, "[rpc_error] Caught throw: :my_throw | details: [node: :\"b@127.0.0.1\", kind: :throw, "
                                 "reason: :my_throw, attempt: 2, module: R, function: :ex]");
    cnode_error_clear(&e);

    /* timeouts keep EasyRpc's message; the type says what happened (EasyRpc: rpc_error) */
    e.code = CNODE_ETIMEOUT;
    snprintf(e.node, sizeof e.node, "b@127.0.0.1");
    snprintf(e.module, sizeof e.module, "Elixir.R");
    snprintf(e.function, sizeof e.function, "slow");
    CU_ASSERT_EQUAL(cnode_rpc_error_format(&e, text, sizeof text), 0);
    CU_ASSERT_STRING_EQUAL(text, "[timeout_error] Erlang error: {:erpc, :timeout} | details: [exception: ErlangError, node: "
                                 ":\"b@127.0.0.1\", attempt: 0, module: R, function: :slow]");
    /* cut at cap */
    CU_ASSERT_EQUAL(cnode_rpc_error_format(&e, text, 20), CNODE_ENOMEM);
    CU_ASSERT_EQUAL(strlen(text), 19);
    CU_ASSERT_EQUAL(cnode_rpc_error_format(NULL, text, sizeof text), CNODE_EINVAL);
}

/* ---- the balancer's option checks ---- */

static int
sel_fn(void *state, const cnode_balancer_pick *p)
{
    (void)state;
    (void)p;
    return 0;
}

typedef struct {
    const char *what;
    cnode_balancer_opts o;
    int code;
    const char *message;
} opt_row;

static void
test_option_checks(void)
{
    static const char *const none[] = {"a@h", NULL};
    static const char *const good[] = {"a@h", "b-1@h"};
    cnode_balancer_algo no_select = {NULL, NULL, NULL, NULL};
    (void)sel_fn;
    opt_row rows[] = {
        {"negative timeout", {.timeout_ms = -5}, CNODE_ECONFIG,
         "Invalid timeout \xE2\x80\x94 expected positive integer or :infinity, got: -5"},
        {"negative retry", {.retries = -1}, CNODE_ECONFIG, "Invalid retry \xE2\x80\x94 expected non-negative integer, got: -1"},
        {"negative sleep", {.sleep_before_retry_ms = -10}, CNODE_ECONFIG,
         "Invalid sleep_before_retry \xE2\x80\x94 expected non-negative integer (ms), got: -10"},
        {"negative wait", {.wait_members_ms = -1}, CNODE_ECONFIG,
         "Invalid wait_members_ms \xE2\x80\x94 expected non-negative integer (ms), got: -1"},
        {"unknown retry policy", {.retry_policy = 7}, CNODE_ECONFIG,
         "Invalid retry_policy \xE2\x80\x94 expected one of [:no_route, :node_errors, :all], got: 7"},
        {"error_handling not boolean", {.error_handling = 2}, CNODE_ECONFIG,
         "Invalid error_handling \xE2\x80\x94 expected boolean, got: 2"},
        {"sticky not boolean", {.sticky = 3}, CNODE_ECONFIG, "sticky_node must be a boolean, got: 3"},
        {"unknown algorithm", {.algorithm = 99}, CNODE_ECONFIG,
         "Invalid algorithm \xE2\x80\x94 expected one of [:random, :round_robin, :least_connections, :power_of_two, :hash_ring, "
         ":weighted_round_robin, :call_direct, :easy_random, :easy_round_robin, :easy_hash, :sticky, :least_cpu, :custom], got: 99"},
        {"unknown algorithm name", {.algorithm_name = "fastest"}, CNODE_ECONFIG,
         "Invalid algorithm \xE2\x80\x94 expected one of [:random, :round_robin, :least_connections, :power_of_two, :hash_ring, "
         ":weighted_round_robin, :call_direct, :easy_random, :easy_round_robin, :easy_hash, :sticky, :least_cpu, :custom], got: "
         ":fastest"},
        {"empty node list", {.nodes = good, .n_nodes = 0}, CNODE_ECONFIG, "Node list cannot be empty"},
        {"a node that is not an atom", {.nodes = none, .n_nodes = 2}, CNODE_ECONFIG, "All nodes must be atoms, got: [:a@h, nil]"},
        {"no list", {.n_nodes = 2}, CNODE_ECONFIG,
         "Invalid nodes config \xE2\x80\x94 expected list of atoms or {module, fun, args}, got: nil"},
        {"list and provider", {.nodes = good, .n_nodes = 2, .provider_module = "P", .provider_function = "f", .provider_node = "x@h"},
         CNODE_ECONFIG, "Cannot specify both :nodes and :nodes_provider \xE2\x80\x94 use one or the other"},
        {"provider without function", {.provider_module = "P", .provider_node = "x@h"}, CNODE_ECONFIG,
         "Invalid nodes config \xE2\x80\x94 expected list of atoms or {module, fun, args}, got: {:P, nil, []}"},
        {"provider with nowhere to run", {.provider_module = "P", .provider_function = "nodes"}, CNODE_ECONFIG,
         "Invalid nodes_provider \xE2\x80\x94 {P, nodes, _} needs provider_node (erpc) or provider_fn (local)"},
        {"call_direct without local", {.algorithm = CNODE_LB_CALL_DIRECT}, CNODE_ECONFIG,
         "Invalid call_direct \xE2\x80\x94 expected opts.local (the local function), got: nil"},
        {"custom without select", {.algorithm = CNODE_LB_CUSTOM, .custom = &no_select}, CNODE_ECONFIG,
         "Invalid custom algorithm \xE2\x80\x94 expected opts.custom with a select function, got: nil"},
        {"ring weight", {.ring_weight = 70000}, CNODE_ECONFIG, "Invalid ring_weight \xE2\x80\x94 expected 1..65536, got: 70000"},
        {"filter kind", {.filter = "x", .filter_kind = 5}, CNODE_ECONFIG,
         "Invalid filter_kind \xE2\x80\x94 expected 0 (substring) or 1 (regex), got: 5"},
        {"negative cpu threshold", {.algorithm = CNODE_LB_LEAST_CPU, .cpu_threshold = -1}, CNODE_ECONFIG,
         "Invalid cpu_threshold \xE2\x80\x94 expected a non-negative number, got: -1"},
        {"negative cpu ttl", {.algorithm = CNODE_LB_LEAST_CPU, .cpu_cache_ttl_ms = -1}, CNODE_ECONFIG,
         "Invalid cpu_cache_ttl \xE2\x80\x94 expected non-negative integer (ms), got: -1"},
        {"half a cpu MFA", {.algorithm = CNODE_LB_LEAST_CPU, .cpu_module = "m"}, CNODE_ECONFIG,
         "Invalid cpu MFA \xE2\x80\x94 expected both cpu_module and cpu_function, got: {m, nil}"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        cnode_balancer *b = (cnode_balancer *)&rows[i];
        cnode_error err = {0};
        int rc = cnode_balancer_new(NULL, NULL, "g", &rows[i].o, &b, &err);
        if (rc != rows[i].code || strcmp(err.message, rows[i].message) != 0)
            fprintf(stderr, "%s: rc %d, message %s\n", rows[i].what, rc, err.message);
        CU_ASSERT_EQUAL(rc, rows[i].code);
        CU_ASSERT_PTR_NULL(b);
        CU_ASSERT_STRING_EQUAL(err.message, rows[i].message);
        CU_ASSERT_STRING_EQUAL(err.type, "config_error");
        char text[600], want[600];
        snprintf(want, sizeof want, "[config_error] %s", rows[i].message);
        CU_ASSERT_EQUAL(cnode_error_format(&err, text, sizeof text), 0);
        CU_ASSERT_STRING_EQUAL(text, want);
        cnode_error_clear(&err);
    }
    /* a bad regex: config_error with PCRE2's reason */
    cnode_balancer_opts ro = {.filter = "a(", .filter_kind = CNODE_FILTER_REGEX};
    cnode_balancer *b;
    cnode_error err = {0};
    CU_ASSERT_EQUAL(cnode_balancer_new(NULL, NULL, "g", &ro, &b, &err), CNODE_ECONFIG);
    CU_ASSERT_STRING_EQUAL(err.type, "config_error");
    cnode_error_clear(&err);
    /* programming errors are validation_error */
    CU_ASSERT_EQUAL(cnode_balancer_new(NULL, NULL, "", NULL, &b, &err), CNODE_EINVAL);
    CU_ASSERT_STRING_EQUAL(err.type, "validation_error");
    cnode_error_clear(&err);
    /* names work, and infinity is a timeout */
    cnode_balancer_opts ok = {.algorithm_name = "LeastConnections", .timeout_ms = CNODE_LB_INFINITY, .nodes = good, .n_nodes = 2};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(NULL, NULL, "g", &ok, &b, &err), 0);
    char pickd[64];
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, pickd, sizeof pickd, &err), 0);
    CU_ASSERT_STRING_EQUAL(pickd, "a@h");
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, pickd, sizeof pickd, &err), 0);
    CU_ASSERT_STRING_EQUAL(pickd, "b-1@h");
    char names[4][CNODE_BALANCER_NODE_MAX];
    long counts[4];
    CU_ASSERT_EQUAL(cnode_balancer_counters(b, names, counts, 4), 2);
    CU_ASSERT_EQUAL(counts[0] + counts[1], 2);
    cnode_balancer_release(b, "a@h", 0);
    cnode_balancer_release(b, "b-1@h", 0);
    CU_ASSERT_EQUAL(cnode_balancer_in_flight(b, "a@h") + cnode_balancer_in_flight(b, "b-1@h"), 0);
    cnode_balancer_free(b);
}

/* ---- EasyRpc configuration (B2, B3) ---- */

typedef struct {
    const char *config; /* the keyword list, Erlang term text */
    const char *message;
} cfg_row;

#define NODES "{nodes, ['a@h', 'b@h']}, "
#define VALID_KEYS "[:new_name, :as, :retry, :timeout, :sleep_before_retry, :error_handling, :private]"

static void
test_config_rows(void)
{
    static const cfg_row rows[] = {
        /* NodeSelector (B3), checked first: nodes, strategy, sticky_node */
        {"[{nodes, []}, {module, m}]", "Node list cannot be empty"},
        {"[{nodes, ['a@h', 1]}, {module, m}]", "All nodes must be atoms, got: [:a@h, 1]"},
        {"[{nodes, [<<\"a@h\">>]}, {module, m}]", "All nodes must be atoms, got: [\"a@h\"]"},
        {"[{nodes, 42}, {module, m}]",
         "Invalid nodes config \xE2\x80\x94 expected list of atoms or {module, fun, args}, got: 42"},
        {"[{module, m}]", "Invalid nodes config \xE2\x80\x94 expected list of atoms or {module, fun, args}, got: nil"},
        {"[{nodes, {'Elixir.P', nodes}}, {module, m}]",
         "Invalid nodes config \xE2\x80\x94 expected list of atoms or {module, fun, args}, got: {P, :nodes}"},
        {"[{nodes, {'Elixir.P', nodes, x}}, {module, m}]",
         "Invalid nodes config \xE2\x80\x94 expected list of atoms or {module, fun, args}, got: {P, :nodes, :x}"},
        {"[" NODES "{select_mode, fastest}, {module, m}]",
         "Invalid strategy \xE2\x80\x94 expected one of [:random, :round_robin, :hash], got: :fastest"},
        {"[" NODES "{sticky_node, yes}, {module, m}]", "sticky_node must be a boolean, got: :yes"},
        {"[" NODES "{sticky_node, 1}, {select_mode, nope}]",
         "Invalid strategy \xE2\x80\x94 expected one of [:random, :round_robin, :hash], got: :nope"},
        /* WrapperConfig (B2): module, timeout, retry, sleep_before_retry, error_handling, functions */
        {"[" NODES "{timeout, 10}]", "Missing required :module key in options"},
        {"[" NODES "{module, nil}]", "Invalid module \xE2\x80\x94 expected a non-nil atom, got: nil"},
        {"[" NODES "{module, <<\"Api\">>}]", "Invalid module \xE2\x80\x94 expected a non-nil atom, got: \"Api\""},
        {"[" NODES "{module, m}, {timeout, -5}]",
         "Invalid timeout \xE2\x80\x94 expected positive integer or :infinity, got: -5"},
        {"[" NODES "{module, m}, {timeout, 0}]", "Invalid timeout \xE2\x80\x94 expected positive integer or :infinity, got: 0"},
        {"[" NODES "{module, m}, {timeout, forever}]",
         "Invalid timeout \xE2\x80\x94 expected positive integer or :infinity, got: :forever"},
        {"[" NODES "{module, m}, {timeout, 1.5}]",
         "Invalid timeout \xE2\x80\x94 expected positive integer or :infinity, got: 1.5"},
        {"[" NODES "{module, m}, {retry, -1}]", "Invalid retry \xE2\x80\x94 expected non-negative integer, got: -1"},
        {"[" NODES "{module, m}, {retry, two}]", "Invalid retry \xE2\x80\x94 expected non-negative integer, got: :two"},
        {"[" NODES "{module, m}, {sleep_before_retry, -1}]",
         "Invalid sleep_before_retry \xE2\x80\x94 expected non-negative integer (ms), got: -1"},
        {"[" NODES "{module, m}, {sleep_before_retry, 0.5}]",
         "Invalid sleep_before_retry \xE2\x80\x94 expected non-negative integer (ms), got: 0.5"},
        {"[" NODES "{module, m}, {error_handling, maybe}]", "Invalid error_handling \xE2\x80\x94 expected boolean, got: :maybe"},
        {"[" NODES "{module, m}, {functions, get}]", "Invalid functions \xE2\x80\x94 expected list, got: :get"},
        {"[" NODES "{module, m}, {functions, [get]}]",
         "Invalid function spec \xE2\x80\x94 expected {atom, arity} or {atom, arity, keyword}, got: :get"},
        {"[" NODES "{module, m}, {functions, [{get, -1}]}]",
         "Invalid function spec \xE2\x80\x94 expected {atom, arity} or {atom, arity, keyword}, got: {:get, -1}"},
        {"[" NODES "{module, m}, {functions, [{<<\"get\">>, 1}]}]",
         "Invalid function spec \xE2\x80\x94 expected {atom, arity} or {atom, arity, keyword}, got: {\"get\", 1}"},
        {"[" NODES "{module, m}, {functions, [{get, 1, 2, 3}]}]",
         "Invalid function spec \xE2\x80\x94 expected {atom, arity} or {atom, arity, keyword}, got: {:get, 1, 2, 3}"},
        {"[" NODES "{module, m}, {functions, [{get, 1, fast}]}]",
         "Invalid options for :get/1 \xE2\x80\x94 expected keyword list, got: :fast"},
        {"[" NODES "{module, m}, {functions, [{get, 1, [{speed, 1}]}]}]",
         "Unknown option :speed for :get/1 \xE2\x80\x94 valid: " VALID_KEYS},
        {"[" NODES "{module, m}, {functions, [{get, 1, [{retry_on, all}]}]}]",
         "Unknown option :retry_on for :get/1 \xE2\x80\x94 valid: " VALID_KEYS},
        {"[" NODES "{module, m}, {functions, [{get, 1, [{retry, -1}]}]}]", "Invalid value for :retry in :get/1: -1"},
        {"[" NODES "{module, m}, {functions, [{get, 1, [{timeout, 0}]}]}]", "Invalid value for :timeout in :get/1: 0"},
        {"[" NODES "{module, m}, {functions, [{get, 1, [{sleep_before_retry, -2}]}]}]",
         "Invalid value for :sleep_before_retry in :get/1: -2"},
        {"[" NODES "{module, m}, {functions, [{get, 1, [{error_handling, 1}]}]}]",
         "Invalid value for :error_handling in :get/1: 1"},
        {"[" NODES "{module, m}, {functions, [{get, 1, [{as, <<\"x\">>}]}]}]", "Invalid value for :as in :get/1: \"x\""},
        {"[" NODES "{module, m}, {functions, [{get, 1, [{private, 2}]}]}]", "Invalid value for :private in :get/1: 2"},
        /* ours: where {M, F, A} runs */
        {"[{nodes, {'Elixir.P', nodes, []}}, {module, m}]",
         "Invalid nodes_provider_node \xE2\x80\x94 {module, fun, args} runs on a node, expected a node atom, got: nil"},
        {"not_a_list", "Invalid config \xE2\x80\x94 expected keyword list, got: :not_a_list"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        cnode_rpc_config *cfg = (cnode_rpc_config *)&rows[i];
        cnode_error err = {0};
        int rc = cnode_rpc_config_parse(NULL, rows[i].config, &cfg, &err);
        if (rc != CNODE_ECONFIG || strcmp(err.message, rows[i].message) != 0)
            fprintf(stderr, "config row %zu: rc %d, message %s\n", i, rc, err.message);
        CU_ASSERT_EQUAL(rc, CNODE_ECONFIG);
        CU_ASSERT_PTR_NULL(cfg);
        CU_ASSERT_STRING_EQUAL(err.message, rows[i].message);
        CU_ASSERT_STRING_EQUAL(err.type, "config_error");
        char text[700], want[700];
        snprintf(want, sizeof want, "[config_error] %s", rows[i].message);
        CU_ASSERT_EQUAL(cnode_error_format(&err, text, sizeof text), 0);
        CU_ASSERT_STRING_EQUAL(text, want);
        CU_ASSERT_EQUAL(cnode_rpc_error_format(&err, text, sizeof text), 0);
        CU_ASSERT_STRING_EQUAL(text, want);
        cnode_error_clear(&err);
    }
    /* text that is not a term at all: validation_error */
    cnode_rpc_config *cfg;
    cnode_error err = {0};
    CU_ASSERT_EQUAL(cnode_rpc_config_parse(NULL, "[{nodes, ", &cfg, &err), CNODE_EINVAL);
    CU_ASSERT_STRING_EQUAL(err.type, "validation_error");
    cnode_error_clear(&err);
}

static void
test_config_load(void)
{
    static const char sys[] =
        "[{kernel, []}, {my_app, [{rpc, [{nodes, ['a@h', 'b@h', 'c@h']}, {select_mode, round_robin}, {module, 'Elixir.MyApp.Api'},"
        " {timeout, infinity}, {retry, 2}, {functions, [{get, 1}, {put, 2, [{as, store}, {retry, 0}]}, {del, 1, [{new_name, drop}]}]}]},"
        " {sel, [{nodes, ['x@h']}, {select_mode, hash}, {sticky_node, true}]},"
        " {nomod, [{nodes, ['x@h']}]}, {unset, nil}]}]";
    cnode_rpc_config *cfg = NULL;
    cnode_error err = {0};
    CU_ASSERT_EQUAL(cnode_rpc_config_load(NULL, sys, "my_app", "missing", &cfg, &err), CNODE_ECONFIG);
    CU_ASSERT_STRING_EQUAL(err.message, "WrapperConfig not found: :my_app.:missing");
    cnode_error_clear(&err);
    CU_ASSERT_EQUAL(cnode_rpc_config_load(NULL, sys, "other_app", "rpc", &cfg, &err), CNODE_ECONFIG);
    CU_ASSERT_STRING_EQUAL(err.message, "WrapperConfig not found: :other_app.:rpc");
    cnode_error_clear(&err);
    CU_ASSERT_EQUAL(cnode_rpc_config_load(NULL, sys, "my_app", "unset", &cfg, &err), CNODE_ECONFIG);
    CU_ASSERT_STRING_EQUAL(err.message, "WrapperConfig not found: :my_app.:unset");
    cnode_error_clear(&err);
    /* load_config! fetches :module with Keyword.fetch!: KeyError's text */
    CU_ASSERT_EQUAL(cnode_rpc_config_load(NULL, sys, "my_app", "nomod", &cfg, &err), CNODE_ECONFIG);
    CU_ASSERT_STRING_EQUAL(err.message, "key :module not found in: [nodes: [:x@h]]");
    cnode_error_clear(&err);
    cnode_balancer *sel = NULL;
    CU_ASSERT_EQUAL(cnode_rpc_selector_load(NULL, sys, "my_app", "gone", &sel, &err), CNODE_ECONFIG);
    CU_ASSERT_STRING_EQUAL(err.message, "NodeSelector config not found: :my_app.:gone");
    CU_ASSERT_STRING_EQUAL(err.type, "config_error");
    cnode_error_clear(&err);

    /* a selector alone: hash over the static list, EasyRpc's phash2(args, n) */
    CU_ASSERT_EQUAL_FATAL(cnode_rpc_selector_load(NULL, sys, "my_app", "sel", &sel, &err), 0);
    char pickd[64];
    CU_ASSERT_EQUAL(cnode_balancer_select(sel, NULL, NULL, pickd, sizeof pickd, &err), 0);
    CU_ASSERT_STRING_EQUAL(pickd, "x@h");
    cnode_balancer_release(sel, pickd, 0);
    cnode_balancer_free(sel);

    /* the wrapper: round robin over three nodes; names by :as and :new_name */
    CU_ASSERT_EQUAL_FATAL(cnode_rpc_config_load(NULL, sys, "my_app", "rpc", &cfg, &err), 0);
    cnode_balancer *b = cnode_rpc_config_balancer(cfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    char seen[3][64];
    for (int k = 0; k < 3; k++) {
        CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, seen[k], sizeof seen[k], &err), 0);
        cnode_balancer_release(b, seen[k], 0);
    }
    CU_ASSERT(strcmp(seen[0], seen[1]) != 0 && strcmp(seen[1], seen[2]) != 0 && strcmp(seen[0], seen[2]) != 0);
    ei_x_buff args = term("[1]"), reply;
    ei_x_new(&reply);
    /* "put" is generated as "store", "del" as "drop": the remote names are not callable */
    CU_ASSERT_EQUAL(cnode_rpc_config_call(cfg, "put", &args, &reply, &err), CNODE_ENOTFOUND);
    CU_ASSERT_STRING_EQUAL(err.type, "validation_error");
    CU_ASSERT_STRING_EQUAL(err.message, "function MyApp.Api.put/1 is not defined (not in the wrapper's functions)");
    cnode_error_clear(&err);
    CU_ASSERT_EQUAL(cnode_rpc_config_call(cfg, "del", &args, &reply, &err), CNODE_ENOTFOUND);
    cnode_error_clear(&err);
    CU_ASSERT_EQUAL(cnode_rpc_config_call(cfg, "get", NULL, &reply, &err), CNODE_ENOTFOUND); /* get/0 */
    cnode_error_clear(&err);
    ei_x_free(&args);
    ei_x_free(&reply);
    cnode_rpc_config_free(cfg);
    cnode_rpc_config_free(NULL);
}

/* ---- DefRpc ---- */

CNODE_DEFRPC(users_get, "MyApp.Users", "get", 1, "[{retry, 2}, {timeout, 1000}]")
CNODE_DEFRPC(users_all, "MyApp.Users", "all", 0, NULL)
CNODE_DEFRPC(kv_put, "kv", "put", 3, "[{error_handling, true}, {key_arg, 1}]")
CNODE_DEFRPC_LIST(wide, "m", "wide", 12, NULL)
CNODE_DEFRPC(bad_key, "m", "f", 1, "[{speed, 9}]")
CNODE_DEFRPC(bad_value, "m", "f", 2, "[{timeout, -5}]")

typedef struct {
    int calls;
    char mod[64], fun[64];
    char args[256];
    int fail_first; /* fail this many calls with next_rc */
    int next_rc;
} local_rec;

static int
local_fn(const char *mod, const char *fun, const ei_x_buff *args, ei_x_buff *reply, cnode_error *err, void *data)
{
    local_rec *r = data;
    r->calls++;
    snprintf(r->mod, sizeof r->mod, "%s", mod);
    snprintf(r->fun, sizeof r->fun, "%s", fun);
    if (cnode_rpc_inspect(args->buff, (size_t)args->index, r->args, sizeof r->args) != 0)
        snprintf(r->args, sizeof r->args, "?");
    if (r->fail_first > 0) {
        r->fail_first--;
        if (err) {
            cnode_error_clear(err);
            err->code = r->next_rc;
            snprintf(err->message, sizeof err->message, "local failure");
        }
        return r->next_rc;
    }
    ei_x_encode_tuple_header(reply, 2);
    ei_x_encode_atom(reply, "got");
    ei_x_encode_long(reply, r->calls);
    return 0;
}

static void
test_defrpc_checks(void)
{
    cnode_error err = {0};
    CU_ASSERT_EQUAL(cnode_rpc_def_check(&users_get_rpc, &err), 0);
    CU_ASSERT_EQUAL(cnode_rpc_def_check(&users_all_rpc, &err), 0);
    CU_ASSERT_EQUAL(cnode_rpc_def_check(&wide_rpc, &err), 0);
    CU_ASSERT_EQUAL(cnode_rpc_def_check(&bad_key_rpc, &err), CNODE_ECONFIG);
    CU_ASSERT_STRING_EQUAL(err.type, "config_error");
    CU_ASSERT_STRING_EQUAL(err.message, "Unknown option :speed for :f/1 \xE2\x80\x94 valid: [:new_name, :as, :retry, :timeout, "
                                        ":sleep_before_retry, :error_handling, :private, :retry_on, :enable_logging, :key_arg]");
    cnode_error_clear(&err);
    CU_ASSERT_EQUAL(cnode_rpc_def_check(&bad_value_rpc, &err), CNODE_ECONFIG);
    CU_ASSERT_STRING_EQUAL(err.message, "Invalid value for :timeout in :f/2: -5");
    cnode_error_clear(&err);
    static const struct {
        cnode_rpc_def def;
        const char *message;
    } rows[] = {
        {{NULL, "f", 1, NULL}, "Invalid module \xE2\x80\x94 expected a non-nil atom, got: nil"},
        {{"m", NULL, 1, NULL}, "Invalid function spec \xE2\x80\x94 expected {atom, arity} or {atom, arity, keyword}, got: {nil, 1}"},
        {{"m", "f", -1, NULL}, "Invalid function spec \xE2\x80\x94 expected {atom, arity} or {atom, arity, keyword}, got: {:f, -1}"},
        {{"m", "f", 1, "fast"}, "Invalid options for :f/1 \xE2\x80\x94 expected keyword list, got: :fast"},
        {{"m", "f", 1, "[{retry, -1}]"}, "Invalid value for :retry in :f/1: -1"},
        {{"m", "f", 1, "[{retry_on, sometimes}]"}, "Invalid value for :retry_on in :f/1: :sometimes"},
        {{"m", "f", 1, "[{key_arg, 0}]"}, "Invalid value for :key_arg in :f/1: 0"},
        {{"m", "f", 1, "[{enable_logging, 0}]"}, "Invalid value for :enable_logging in :f/1: 0"},
        {{"m", "f", 1, "[{retry, 1} | x]"}, "Invalid options for :f/1 \xE2\x80\x94 expected keyword list, got: [{:retry, 1} | :x]"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        CU_ASSERT_EQUAL(cnode_rpc_def_check(&rows[i].def, &err), CNODE_ECONFIG);
        if (strcmp(err.message, rows[i].message) != 0)
            fprintf(stderr, "def row %zu: %s\n", i, err.message);
        CU_ASSERT_STRING_EQUAL(err.message, rows[i].message);
        CU_ASSERT_STRING_EQUAL(err.type, "config_error");
        cnode_error_clear(&err);
    }
    CU_ASSERT_EQUAL(cnode_rpc_def_check(NULL, &err), CNODE_ECONFIG);
    cnode_error_clear(&err);
}

static void
test_defrpc_stubs(void)
{
    /* call_direct runs the stubs' calls locally: no network needed */
    local_rec rec = {0};
    cnode_balancer_opts o = {.algorithm = CNODE_LB_CALL_DIRECT, .local = local_fn, .local_data = &rec};
    cnode_balancer *b;
    cnode_error err = {0};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(NULL, NULL, "users", &o, &b, &err), 0);
    ei_x_buff id = term("1042"), reply;
    ei_x_new_with_version(&reply);
    CU_ASSERT_EQUAL(users_get_terms(b, &id, &reply, &err), 0);
    CU_ASSERT_STRING_EQUAL(rec.mod, "Elixir.MyApp.Users");
    CU_ASSERT_STRING_EQUAL(rec.fun, "get");
    CU_ASSERT_STRING_EQUAL(rec.args, "[1042]");
    CU_ASSERT_STRING_EQUAL(inspect_x(&reply), "{:got, 1}");
    /* the list form */
    ei_x_buff l = term("[1007]");
    reply.index = 1;
    CU_ASSERT_EQUAL(users_get(b, &l, &reply, &err), 0);
    CU_ASSERT_STRING_EQUAL(rec.args, "[1007]");
    CU_ASSERT_STRING_EQUAL(inspect_x(&reply), "{:got, 2}");
    /* arity 0, with NULL args */
    reply.index = 1;
    CU_ASSERT_EQUAL(users_all(b, NULL, &reply, &err), 0);
    CU_ASSERT_EQUAL(users_all_terms(b, &reply, &err), 0);
    CU_ASSERT_STRING_EQUAL(rec.args, "[]");
    CU_ASSERT_STRING_EQUAL(rec.fun, "all");
    /* three terms into one list */
    ei_x_buff k = term("<<\"k\">>"), v = term("#{a => 1}"), t = term("{1, 2}");
    CU_ASSERT_EQUAL(kv_put_terms(b, &k, &v, &t, &reply, &err), 0);
    CU_ASSERT_STRING_EQUAL(rec.mod, "kv");
    CU_ASSERT_STRING_EQUAL(rec.args, "[\"k\", %{a: 1}, {1, 2}]");
    /* cnode_rpc_callv itself: the terms in order into one list; argc other
     * than the arity is refused before anything is called */
    const ei_x_buff *const argv3[] = {&t, &k, &v};
    CU_ASSERT_EQUAL(cnode_rpc_callv(b, &kv_put_rpc, argv3, 3, &reply, &err), 0);
    CU_ASSERT_STRING_EQUAL(rec.args, "[{1, 2}, \"k\", %{a: 1}]");
    int calls_before = rec.calls;
    CU_ASSERT_NOT_EQUAL(cnode_rpc_callv(b, &kv_put_rpc, argv3, 2, &reply, &err), 0);
    cnode_error_clear(&err);
    CU_ASSERT_EQUAL(rec.calls, calls_before);
    /* the wrong number of arguments: validation_error, nothing called */
    int before = rec.calls;
    CU_ASSERT_EQUAL(users_get(b, &t, &reply, &err), CNODE_EVALIDATION);
    CU_ASSERT_STRING_EQUAL(err.type, "validation_error");
    CU_ASSERT_STRING_EQUAL(err.message, "Invalid arguments for :get/1 \xE2\x80\x94 expected a list of 1 argument(s), got: {1, 2}");
    cnode_error_clear(&err);
    ei_x_buff two = term("[1, 2]");
    CU_ASSERT_EQUAL(users_get(b, &two, &reply, &err), CNODE_EVALIDATION);
    cnode_error_clear(&err);
    ei_x_buff broken = {0};
    CU_ASSERT_EQUAL(users_get_terms(b, &broken, &reply, &err), CNODE_EVALIDATION);
    cnode_error_clear(&err);
    CU_ASSERT_EQUAL(bad_key_terms(b, &id, &reply, &err), CNODE_ECONFIG);
    cnode_error_clear(&err);
    CU_ASSERT_EQUAL(rec.calls, before);
    /* retry 2 (policy all): two failures, then the answer on the third attempt */
    rec.fail_first = 2;
    rec.next_rc = CNODE_EEXCEPTION;
    reply.index = 1;
    CU_ASSERT_EQUAL(users_get_terms(b, &id, &reply, &err), 0);
    CU_ASSERT_EQUAL(rec.calls, before + 3);
    /* ... and a third failure is returned with attempt 2 */
    rec.fail_first = 3;
    CU_ASSERT_EQUAL(users_get_terms(b, &id, &reply, &err), CNODE_EEXCEPTION);
    CU_ASSERT_EQUAL(err.attempt, 2);
    CU_ASSERT_STRING_EQUAL(err.module, "Elixir.MyApp.Users");
    CU_ASSERT_STRING_EQUAL(err.function, "get");
    CU_ASSERT_EQUAL(err.arity, 1);
    cnode_error_clear(&err);
    /* no retry declared: one attempt */
    rec.fail_first = 1;
    int c0 = rec.calls;
    CU_ASSERT_EQUAL(kv_put_terms(b, &k, &v, &t, &reply, &err), CNODE_EEXCEPTION);
    CU_ASSERT_EQUAL(rec.calls, c0 + 1);
    cnode_error_clear(&err);
    rec.fail_first = 0;
    ei_x_free(&id);
    ei_x_free(&l);
    ei_x_free(&k);
    ei_x_free(&v);
    ei_x_free(&t);
    ei_x_free(&two);
    ei_x_free(&reply);
    cnode_balancer_free(b);
}

/* ---- sources: static lists and providers ---- */

typedef struct {
    const char *answer; /* term text the provider returns */
    int rc;
    int calls;
} prov_state;

static int
prov_fn(const char *mod, const char *fun, const ei_x_buff *args, ei_x_buff *out, cnode_error *err, void *data)
{
    prov_state *p = data;
    p->calls++;
    (void)args;
    CU_ASSERT_STRING_EQUAL(mod, "Elixir.P");
    CU_ASSERT_STRING_EQUAL(fun, "nodes");
    if (p->rc) {
        if (err) {
            err->code = p->rc;
            snprintf(err->exc_class, sizeof err->exc_class, "error");
            ei_x_new_with_version(&err->reason);
            cnode_term_parse("#{'__struct__' => 'Elixir.RuntimeError', '__exception__' => true, message => <<\"provider down\">>}",
                             &err->reason, NULL);
        }
        return p->rc;
    }
    return cnode_term_parse(p->answer, out, NULL) == 0 ? 0 : CNODE_EINVAL;
}

static void
test_sources(void)
{
    /* a static list with easy_hash: EasyRpc's phash2(Args, n) over the list as given */
    static const char *const list[] = {"n1@host", "n2@host", "n3@host", "n2@host"};
    cnode_balancer_opts o = {.algorithm = CNODE_LB_EASY_HASH, .nodes = list, .n_nodes = 4};
    cnode_balancer *b;
    cnode_error err = {0};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(NULL, NULL, "sel", &o, &b, &err), 0);
    ei_x_buff args = term("[<<\"user123\">>]");
    char pickd[64];
    uint32_t h;
    CU_ASSERT_EQUAL(cnode_phash2(args.buff, (size_t)args.index, 4, &h), 0);
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, &args, pickd, sizeof pickd, &err), 0);
    CU_ASSERT_STRING_EQUAL(pickd, list[h]);
    cnode_balancer_release(b, pickd, 0);
    cnode_balancer_free(b);

    /* a filter applies to lists too; nothing left: the filter's message */
    o = (cnode_balancer_opts){.nodes = list, .n_nodes = 4, .filter = "n9"};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(NULL, NULL, "sel", &o, &b, &err), 0);
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, pickd, sizeof pickd, &err), CNODE_EUNAVAILABLE);
    CU_ASSERT_STRING_EQUAL(err.message, "no nodes in cluster found with that filter");
    cnode_error_clear(&err);
    cnode_balancer_free(b);

    /* a provider applied locally, on every pick */
    prov_state ps = {"['p1@h', 'p2@h']", 0, 0};
    o = (cnode_balancer_opts){.algorithm = CNODE_LB_EASY_ROUND_ROBIN, .provider_module = "P", .provider_function = "nodes",
                              .provider_fn = prov_fn, .provider_data = &ps};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(NULL, NULL, "sel", &o, &b, &err), 0);
    char first[64];
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, first, sizeof first, &err), 0);
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, pickd, sizeof pickd, &err), 0);
    CU_ASSERT(strcmp(first, pickd) != 0); /* round robin per thread */
    CU_ASSERT_EQUAL(ps.calls, 2);
    cnode_balancer_release(b, first, 0);
    cnode_balancer_release(b, pickd, 0);
    /* EasyRpc's checks of the answer */
    ps.answer = "[]";
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, pickd, sizeof pickd, &err), CNODE_EUNAVAILABLE);
    CU_ASSERT_STRING_EQUAL(err.type, "node_error");
    CU_ASSERT_STRING_EQUAL(err.message, "Dynamic node provider P.nodes/0 returned an empty list");
    char text[400];
    cnode_rpc_error_format(&err, text, sizeof text);
    CU_ASSERT_STRING_EQUAL(text, "[node_error] Dynamic node provider P.nodes/0 returned an empty list");
    cnode_error_clear(&err);
    ps.answer = "nope";
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, pickd, sizeof pickd, &err), CNODE_ECONFIG);
    CU_ASSERT_STRING_EQUAL(err.type, "config_error");
    CU_ASSERT_STRING_EQUAL(err.message, "Dynamic node provider P.nodes/0 must return a non-empty list of atoms, got: :nope");
    cnode_error_clear(&err);
    ps.answer = "[<<\"p1@h\">>]";
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, pickd, sizeof pickd, &err), CNODE_ECONFIG);
    CU_ASSERT_STRING_EQUAL(err.message, "Dynamic node provider P.nodes/0 must return a non-empty list of atoms, got: [\"p1@h\"]");
    cnode_error_clear(&err);
    /* a provider that raises: rpc_error with the exception's message */
    ps.rc = CNODE_EEXCEPTION;
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, pickd, sizeof pickd, &err), CNODE_EEXCEPTION);
    CU_ASSERT_STRING_EQUAL(err.type, "rpc_error");
    CU_ASSERT_STRING_EQUAL(err.message, "provider down");
    cnode_error_clear(&err);
    cnode_balancer_free(b);

    /* provider arguments count in its name: P.nodes/2 */
    ei_x_buff pargs = term("[backend, 3]");
    ps = (prov_state){"[]", 0, 0};
    o.provider_args = &pargs;
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(NULL, NULL, "sel", &o, &b, &err), 0);
    CU_ASSERT_EQUAL(cnode_balancer_select(b, NULL, NULL, pickd, sizeof pickd, &err), CNODE_EUNAVAILABLE);
    CU_ASSERT_STRING_EQUAL(err.message, "Dynamic node provider P.nodes/2 returned an empty list");
    cnode_error_clear(&err);
    cnode_balancer_free(b);
    ei_x_buff notlist = term("backend");
    o.provider_args = &notlist;
    CU_ASSERT_EQUAL(cnode_balancer_new(NULL, NULL, "sel", &o, &b, &err), CNODE_ECONFIG);
    cnode_error_clear(&err);
    ei_x_free(&notlist);
    ei_x_free(&pargs);
    ei_x_free(&args);
}

/* ---- the observer ---- */

typedef struct {
    int n;
    cnode_balancer_event ev[8];
    char nodes[8][64];
} obs_rec;

static void
observer(const cnode_balancer_event *ev, void *data)
{
    obs_rec *r = data;
    if (r->n < 8) {
        r->ev[r->n] = *ev;
        snprintf(r->nodes[r->n], sizeof r->nodes[r->n], "%s", ev->node);
        r->n++;
    }
}

static void
test_observer(void)
{
    local_rec rec = {.fail_first = 2, .next_rc = CNODE_ETIMEOUT};
    obs_rec obs = {0};
    cnode_balancer_opts o = {.algorithm = CNODE_LB_CALL_DIRECT, .local = local_fn, .local_data = &rec, .retries = 3,
                             .retry_policy = CNODE_LB_RETRY_ALL, .observer = observer, .observer_data = &obs};
    cnode_balancer *b;
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(NULL, NULL, "obs", &o, &b, NULL), 0);
    ei_x_buff args = term("[1]"), reply;
    ei_x_new_with_version(&reply);
    CU_ASSERT_EQUAL(cnode_balancer_call(b, "m", "f", &args, NULL, &reply, NULL, 0, NULL), 0);
    CU_ASSERT_EQUAL(obs.n, 3);
    CU_ASSERT_EQUAL(obs.ev[0].status, CNODE_ETIMEOUT);
    CU_ASSERT_EQUAL(obs.ev[0].attempt, 0);
    CU_ASSERT_EQUAL(obs.ev[0].last, 0);
    CU_ASSERT_EQUAL(obs.ev[2].status, 0);
    CU_ASSERT_EQUAL(obs.ev[2].attempt, 2);
    CU_ASSERT_EQUAL(obs.ev[2].last, 1);
    CU_ASSERT(obs.ev[2].duration_us >= 0);
    cnode_balancer_free(b);
    /* a pick that finds nobody is observed with node "" */
    static const char *const list[] = {"a@h"};
    obs.n = 0;
    o = (cnode_balancer_opts){.nodes = list, .n_nodes = 1, .filter = "zzz", .observer = observer, .observer_data = &obs};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(NULL, NULL, "obs", &o, &b, NULL), 0);
    CU_ASSERT_EQUAL(cnode_balancer_call(b, "m", "f", &args, NULL, &reply, NULL, 0, NULL), CNODE_EUNAVAILABLE);
    CU_ASSERT_EQUAL(obs.n, 1);
    CU_ASSERT_STRING_EQUAL(obs.nodes[0], "");
    CU_ASSERT_EQUAL(obs.ev[0].last, 1);
    cnode_balancer_free(b);
    ei_x_free(&args);
    ei_x_free(&reply);
}

/* ---- two C nodes: real erpc calls and EasyRpc's log lines ---- */

static cnode_node *na, *nb; /* na serves module R, nb calls through balancers */
static char a_name[CNODE_BALANCER_NODE_MAX], a_text[300];
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[32768];
static size_t log_len;

static void
log_cb(int level, const char *msg, void *ud)
{
    (void)ud;
    if (strncmp(msg, "[EasyRpc]", 9) != 0)
        return;
    pthread_mutex_lock(&log_lock);
    int n = snprintf(log_buf + log_len, sizeof log_buf - log_len, "%d %s\n", level, msg);
    if (n > 0 && (size_t)n < sizeof log_buf - log_len)
        log_len += (size_t)n;
    pthread_mutex_unlock(&log_lock);
}

/* The lines logged since the last call, then forgets them. */
static char *
take_log(void)
{
    static char out[sizeof log_buf];
    pthread_mutex_lock(&log_lock);
    memcpy(out, log_buf, log_len + 1);
    log_len = 0;
    log_buf[0] = 0;
    pthread_mutex_unlock(&log_lock);
    return out;
}

static void
r_reply(cnode_call_ctx *ctx, const char *text)
{
    ei_x_buff x = term(text);
    cnode_reply(ctx, &x);
    ei_x_free(&x);
}

static void
h_echo(cnode_call_ctx *ctx, const cnode_args *args, void *ud)
{
    (void)args;
    (void)ud;
    r_reply(ctx, "{got, 1}");
}

static void
h_raise(cnode_call_ctx *ctx, const cnode_args *args, void *ud)
{
    (void)args;
    const char *cls = ud;
    ei_x_buff r = term(strcmp(cls, "error") == 0 ? "#{'__struct__' => 'Elixir.ArgumentError', '__exception__' => true, "
                                                   "message => <<\"bad thing\">>}"
                       : strcmp(cls, "exit") == 0 ? "my_exit"
                                                  : "my_throw");
    cnode_raise(ctx, cls, &r);
    ei_x_free(&r);
}

static void
h_slow(cnode_call_ctx *ctx, const cnode_args *args, void *ud)
{
    (void)args;
    (void)ud;
    for (int i = 0; i < 300 && !cnode_call_cancelled(ctx); i++)
        usleep(10000);
    r_reply(ctx, "late");
}

static void
h_cpu(cnode_call_ctx *ctx, const cnode_args *args, void *ud)
{
    (void)args;
    (void)ud;
    r_reply(ctx, "7.25");
}

static cnode_node *
start_node(const char *prefix, int with_log)
{
    char name[64];
    snprintf(name, sizeof name, "%s_%d", prefix, (int)getpid());
    cnode_node_opts no = {.name = name, .cookie = "lbrpc_cookie"};
    if (with_log) {
        no.log = log_cb;
        no.log_level = CNODE_LOG_DEBUG;
    }
    cnode_node *n = NULL;
    cnode_error err = {0};
    int rc = cnode_node_new(&no, &n, &err);
    if (rc != 0)
        fprintf(stderr, "two-node suite: no node %s: %s\n", name, err.message[0] ? err.message : cnode_strerror(rc));
    cnode_error_clear(&err);
    return rc == 0 ? n : NULL;
}

static pid_t epmd_pid;

static int
suite_nodes_init(void)
{
    if (tu_epmd_start(&epmd_pid) != 0) {
        fprintf(stderr, "two-node suite: cannot start a private epmd\n");
        return 1;
    }
    na = start_node("lbrpca", 0);
    nb = na ? start_node("lbrpcb", 1) : NULL;
    if (!na || !nb) {
        cnode_node_close(na);
        na = NULL;
        tu_epmd_stop(&epmd_pid);
        return 1;
    }
    snprintf(a_name, sizeof a_name, "%s", cnode_node_name(na));
    cnode_rpc_inspect_atom(a_name, a_text, sizeof a_text);
    cnode_register_function(na, "Elixir.R", "echo", 1, h_echo, NULL);
    cnode_register_function(na, "Elixir.R", "boom", 1, h_raise, "error");
    cnode_register_function(na, "Elixir.R", "ex", 1, h_raise, "exit");
    cnode_register_function(na, "Elixir.R", "th", 1, h_raise, "throw");
    cnode_register_function(na, "Elixir.R", "slow", 1, h_slow, NULL);
    cnode_register_function(na, "cpu", "fake", 0, h_cpu, NULL);
    cnode_balancer_serve_cpu(na, NULL, NULL, 0);
    return 0;
}

static int
suite_nodes_clean(void)
{
    cnode_node_close(nb);
    cnode_node_close(na);
    nb = na = NULL;
    tu_epmd_stop(&epmd_pid);
    return 0;
}

CNODE_DEFRPC(r_echo, "R", "echo", 1, NULL)
CNODE_DEFRPC(r_boom, "R", "boom", 1, "[{retry, 1}]")
CNODE_DEFRPC(r_ex, "R", "ex", 1, NULL)
CNODE_DEFRPC(r_th, "R", "th", 1, "[{error_handling, true}]")
CNODE_DEFRPC(r_slow, "R", "slow", 1, "[{timeout, 100}, {error_handling, true}]")
CNODE_DEFRPC(r_quiet, "R", "echo", 1, "[{enable_logging, false}]")
CNODE_DEFRPC(r_echo_ne, "R", "echo", 1, "[{retry, 2}, {retry_on, node_errors}, {timeout, infinity}]")

/* Expected text with @A@ replaced by node A as inspect prints it. */
static char *
expect(const char *tmpl)
{
    static char out[8192];
    size_t o = 0;
    for (const char *p = tmpl; *p && o < sizeof out - 300;) {
        if (strncmp(p, "@A@", 3) == 0) {
            o += (size_t)snprintf(out + o, sizeof out - o, "%s", a_text);
            p += 3;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = 0;
    return out;
}

static void
test_rpc_log_lines(void)
{
    if (!na)
        return;
    const char *list[] = {a_name};
    cnode_balancer_opts o = {.nodes = list, .n_nodes = 1, .timeout_ms = 5000};
    cnode_balancer *b;
    cnode_error err = {0};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(nb, NULL, "r", &o, &b, &err), 0);
    ei_x_buff one = term("1"), reply;
    ei_x_new(&reply);
    take_log();

    /* bare path, success: --> and <-- */
    CU_ASSERT_EQUAL(r_echo_terms(b, &one, &reply, &err), 0);
    CU_ASSERT_STRING_EQUAL(inspect_x(&reply), "{:got, 1}");
    CU_ASSERT_STRING_EQUAL(take_log(), expect("3 [EasyRpc] --> R.echo/1 on @A@ [timeout: 5000ms, retry: 0]\n"
                                              "3 [EasyRpc] <-- R.echo/1 on @A@ succeeded \xE2\x80\x94 result: {:got, 1}\n"));

    /* handled path with one retry: -->, <<<, --> [attempt 2], !!! */
    reply.index = 0;
    CU_ASSERT_EQUAL(r_boom_terms(b, &one, &reply, &err), CNODE_EEXCEPTION);
    CU_ASSERT_EQUAL(err.attempt, 1);
    cnode_error_clear(&err);
    const char *boom = "[rpc_error] Erlang error: {:exception, %ArgumentError{message: \"bad thing\"}, [{R, :boom, [1], []}]} | "
                       "details: [exception: ErlangError, node: @A@, attempt: ";
    char want[4096];
    snprintf(want, sizeof want,
             "3 [EasyRpc] --> R.boom/1 on @A@ [timeout: 5000ms, retry: 1]\n"
             "1 [EasyRpc] <<< R.boom/1 on @A@ failed (attempt 1/2, 1 retries left) \xE2\x80\x94 %s0, module: R, function: :boom]\n"
             "3 [EasyRpc] --> R.boom/1 on @A@ [attempt 2] [timeout: 5000ms, retry: 1]\n"
             "0 [EasyRpc] !!! R.boom/1 on @A@ failed permanently after 2 attempt(s) \xE2\x80\x94 %s1, module: R, function: :boom]\n",
             boom, boom);
    CU_ASSERT_STRING_EQUAL(take_log(), expect(want));

    /* bare path, failure: erpc errors are not logged (EasyRpc), only the call */
    CU_ASSERT_EQUAL(r_ex_terms(b, &one, &reply, &err), CNODE_EEXCEPTION);
    CU_ASSERT_STRING_EQUAL(take_log(), expect("3 [EasyRpc] --> R.ex/1 on @A@ [timeout: 5000ms, retry: 0]\n"));
    char text[1024];
    cnode_rpc_error_format(&err, text, sizeof text);
    CU_ASSERT_STRING_EQUAL(text, expect("[rpc_error] Caught exit: {:exception, :my_exit} | details: [node: @A@, kind: :exit, "
                                        "reason: {:exception, :my_exit}, attempt: 0, module: R, function: :ex]"));
    cnode_error_clear(&err);

    /* error_handling: !!! after one attempt */
    CU_ASSERT_EQUAL(r_th_terms(b, &one, &reply, &err), CNODE_EEXCEPTION);
    cnode_error_clear(&err);
    CU_ASSERT_STRING_EQUAL(take_log(),
                           expect("3 [EasyRpc] --> R.th/1 on @A@ [timeout: 5000ms, retry: 0]\n"
                                  "0 [EasyRpc] !!! R.th/1 on @A@ failed permanently after 1 attempt(s) \xE2\x80\x94 [rpc_error] "
                                  "Caught throw: :my_throw | details: [node: @A@, kind: :throw, reason: :my_throw, attempt: 0, "
                                  "module: R, function: :th]\n"));

    /* a timeout: our type, EasyRpc's message */
    CU_ASSERT_EQUAL(r_slow_terms(b, &one, &reply, &err), CNODE_ETIMEOUT);
    CU_ASSERT_STRING_EQUAL(err.type, "timeout_error");
    cnode_error_clear(&err);
    CU_ASSERT_STRING_EQUAL(take_log(),
                           expect("3 [EasyRpc] --> R.slow/1 on @A@ [timeout: 100ms, retry: 0]\n"
                                  "0 [EasyRpc] !!! R.slow/1 on @A@ failed permanently after 1 attempt(s) \xE2\x80\x94 [timeout_error] "
                                  "Erlang error: {:erpc, :timeout} | details: [exception: ErlangError, node: @A@, attempt: 0, "
                                  "module: R, function: :slow]\n"));

    /* enable_logging false */
    CU_ASSERT_EQUAL(r_quiet_terms(b, &one, &reply, &err), 0);
    CU_ASSERT_STRING_EQUAL(take_log(), "");
    cnode_balancer_free(b);

    /* node_errors: a node that is not there, then a retry that lands on A */
    char ghost[300];
    snprintf(ghost, sizeof ghost, "ghost_%d@%s", (int)getpid(), strchr(a_name, '@') + 1);
    const char *two[] = {ghost, a_name};
    o = (cnode_balancer_opts){.algorithm = CNODE_LB_ROUND_ROBIN, .nodes = two, .n_nodes = 2};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(nb, NULL, "r", &o, &b, &err), 0);
    reply.index = 0;
    CU_ASSERT_EQUAL(r_echo_ne_terms(b, &one, &reply, &err), 0);
    char gtext[300];
    cnode_rpc_inspect_atom(ghost, gtext, sizeof gtext);
    snprintf(want, sizeof want,
             "3 [EasyRpc] --> R.echo/1 on %s [timeout: \xE2\x88\x9E, retry: 2]\n"
             "1 [EasyRpc] <<< R.echo/1 on %s failed (attempt 1/3, 2 retries left) \xE2\x80\x94 [node_error] Erlang error: "
             "{:erpc, :noconnection} | details: [exception: ErlangError, node: %s, attempt: 0, module: R, function: :echo]\n"
             "3 [EasyRpc] --> R.echo/1 on @A@ [attempt 2] [timeout: \xE2\x88\x9E, retry: 2]\n"
             "3 [EasyRpc] <-- R.echo/1 on @A@ succeeded \xE2\x80\x94 result: {:got, 1}\n",
             gtext, gtext, gtext);
    CU_ASSERT_STRING_EQUAL(take_log(), expect(want));
    CU_ASSERT_EQUAL(cnode_balancer_in_flight(b, ghost), 0);
    CU_ASSERT_EQUAL(cnode_balancer_in_flight(b, a_name), 0);
    cnode_balancer_free(b);

    /* a failed selection: !!! on :unknown, also on the bare path */
    prov_state ps = {"[]", 0, 0};
    o = (cnode_balancer_opts){.provider_module = "P", .provider_function = "nodes", .provider_fn = prov_fn, .provider_data = &ps};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(nb, NULL, "r", &o, &b, &err), 0);
    CU_ASSERT_EQUAL(r_echo_terms(b, &one, &reply, &err), CNODE_EUNAVAILABLE);
    cnode_error_clear(&err);
    CU_ASSERT_STRING_EQUAL(take_log(), "0 [EasyRpc] !!! R.echo/1 on :unknown failed permanently after 1 attempt(s) \xE2\x80\x94 "
                                       "[node_error] Dynamic node provider P.nodes/0 returned an empty list\n");
    /* a quiet balancer */
    cnode_balancer_free(b);
    o = (cnode_balancer_opts){.nodes = list, .n_nodes = 1, .no_rpc_log = 1};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(nb, NULL, "r", &o, &b, &err), 0);
    CU_ASSERT_EQUAL(r_echo_terms(b, &one, &reply, &err), 0);
    CU_ASSERT_STRING_EQUAL(take_log(), "");
    cnode_balancer_free(b);
    ei_x_free(&one);
    ei_x_free(&reply);
}

static void
test_rpc_config_calls(void)
{
    if (!na)
        return;
    /* RpcWrapper: functions from configuration, names by :as */
    char cfgtext[1024];
    snprintf(cfgtext, sizeof cfgtext,
             "[{nodes, ['%s']}, {module, 'Elixir.R'}, {timeout, 2000}, {functions, [{echo, 1, [{as, hello}]}, {boom, 1}]}]", a_name);
    cnode_rpc_config *cfg;
    cnode_error err = {0};
    CU_ASSERT_EQUAL_FATAL(cnode_rpc_config_parse(nb, cfgtext, &cfg, &err), 0);
    ei_x_buff args = term("[1]"), reply;
    ei_x_new(&reply);
    take_log();
    CU_ASSERT_EQUAL(cnode_rpc_config_call(cfg, "hello", &args, &reply, &err), 0);
    CU_ASSERT_STRING_EQUAL(inspect_x(&reply), "{:got, 1}");
    CU_ASSERT_STRING_EQUAL(take_log(), expect("3 [EasyRpc] --> R.echo/1 on @A@ [timeout: 2000ms, retry: 0]\n"
                                              "3 [EasyRpc] <-- R.echo/1 on @A@ succeeded \xE2\x80\x94 result: {:got, 1}\n"));
    CU_ASSERT_EQUAL(cnode_rpc_config_call(cfg, "boom", &args, &reply, &err), CNODE_EEXCEPTION);
    CU_ASSERT_STRING_EQUAL(err.type, "rpc_error");
    cnode_error_clear(&err);
    take_log();
    cnode_rpc_config_free(cfg);
    ei_x_free(&args);
    ei_x_free(&reply);
}

static void
test_least_cpu_poll(void)
{
    if (!na)
        return;
    /* the C node answers the seed's MFA with its /proc/stat reading */
    ei_x_buff none = term("[]"), reply;
    ei_x_new(&reply);
    cnode_error err = {0};
    CU_ASSERT_EQUAL(cnode_call(nb, a_name, "Elixir.RpcLoadBalancer.LoadBalancer.NodeCpuCache", "get_local_cpu", &none, 5000, &reply,
                               &err),
                    0);
    int idx = 0, ver;
    double pct = -1;
    CU_ASSERT_EQUAL(ei_decode_version(reply.buff, &idx, &ver), 0);
    CU_ASSERT_EQUAL(ei_decode_double(reply.buff, &idx, &pct), 0);
    CU_ASSERT(pct >= 0 && pct <= 100);
    cnode_error_clear(&err);
    ei_x_free(&reply);
    /* a poll round through a configurable MFA */
    const char *list[] = {a_name};
    cnode_balancer_opts o = {.algorithm = CNODE_LB_LEAST_CPU, .nodes = list, .n_nodes = 1, .poll_interval_ms = -1,
                             .cpu_module = "cpu", .cpu_function = "fake"};
    cnode_balancer *b;
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(nb, NULL, "cpu", &o, &b, &err), 0);
    CU_ASSERT_EQUAL(cnode_balancer_cpu_get(b, a_name), 50.0);
    CU_ASSERT_EQUAL(cnode_balancer_cpu_poll(b), 0);
    CU_ASSERT_EQUAL(cnode_balancer_cpu_get(b, a_name), 7.25);
    double own = cnode_balancer_cpu_get(b, cnode_node_name(nb));
    CU_ASSERT(own >= 0 && own <= 100);
    cnode_balancer_free(b);
    /* the default MFA, polled by the poller thread */
    o = (cnode_balancer_opts){.algorithm = CNODE_LB_LEAST_CPU, .nodes = list, .n_nodes = 1, .poll_interval_ms = 20};
    CU_ASSERT_EQUAL_FATAL(cnode_balancer_new(nb, NULL, "cpu", &o, &b, &err), 0);
    int got = 0;
    for (int i = 0; i < 300 && !got; i++) {
        usleep(10000);
        double v = cnode_balancer_cpu_get(b, a_name);
        got = v != 50.0 && v >= 0 && v <= 100;
    }
    CU_ASSERT(got); /* (a machine at exactly 50.0% would fool this; it is a double) */
    cnode_balancer_free(b);
    ei_x_free(&none);
}

void
cnode_test_register(void)
{
    CU_pSuite s = CU_add_suite("easyrpc without a node", NULL, NULL);
    ADD_TEST(s, test_inspect_vectors);
    ADD_TEST(s, test_inspect_edges);
    ADD_TEST(s, test_error_format);
    ADD_TEST(s, test_option_checks);
    ADD_TEST(s, test_config_rows);
    ADD_TEST(s, test_config_load);
    ADD_TEST(s, test_defrpc_checks);
    ADD_TEST(s, test_defrpc_stubs);
    ADD_TEST(s, test_sources);
    ADD_TEST(s, test_observer);
    CU_pSuite n = CU_add_suite("easyrpc between two C nodes", suite_nodes_init, suite_nodes_clean);
    ADD_TEST(n, test_rpc_log_lines);
    ADD_TEST(n, test_rpc_config_calls);
    ADD_TEST(n, test_least_cpu_poll);
}
