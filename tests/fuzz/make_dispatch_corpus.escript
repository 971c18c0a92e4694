#!/usr/bin/env escript
%%! -noshell
%%% Seeds of fuzz_dispatch (tests/fuzz/corpus/fuzz_dispatch/): packet bodies a
%%% peer `peer@localhost` sends to the fuzzed node `fz@localhost`, made with
%%% BEAM's own term_to_binary: rex calls and casts, erpc spawn requests (call
%%% and cast), erpc replies, pg scope messages (discover, sync, join, leave,
%%% DOWN), links, monitors and exits. Run from the project root:
%%%   escript tests/fuzz/make_dispatch_corpus.escript
main(_) ->
    Dir = "tests/fuzz/corpus/fuzz_dispatch",
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    P = pid('peer@localhost', 77, 0, 3),
    P2 = pid('peer@localhost', 78, 0, 3),
    Me = pid('fz@localhost', 1, 0, 1),
    R = ref('peer@localhost', 3, [11, 12, 13]),
    Gl = pid('peer@localhost', 60, 0, 3),
    Seeds =
        [{rex_call, {6, P, '', rex}, {'$gen_call', {P, R}, {call, fz, echo, [hello], Gl}}},
         {rex_call_demo, {6, P, '', rex}, {'$gen_call', {P, R}, {call, cnode_demo, add, [1, 2], Gl}}},
         {rex_call_undef, {6, P, '', rex}, {'$gen_call', {P, R}, {call, nomod, nofun, [], Gl}}},
         {rex_cast, {6, P, '', rex}, {'$gen_cast', {cast, fz, echo, [1], Gl}}},
         {rex_features, {6, P, '', rex}, {features_request, P, R}},
         {erpc_call, {29, R, P, Gl, {erpc, execute_call, 4}, [monitor]}, [R, fz, echo, [<<"x">>]]},
         {erpc_call_opts, {29, R, P, Gl, {erpc, execute_call, 4}, [{reply, error_only}, monitor]},
          [R, cnode_demo, echo, [[1, 2, 3]]]},
         {erpc_cast, {29, R, P, Gl, {erpc, execute_cast, 3}, [{reply, no}]}, [fz, echo, [1]]},
         {erpc_other, {29, R, P, Gl, {lists, reverse, 1}, []}, [[1, 2]]},
         {spawn_reply, {31, R, Me, 0, P}, none},
         {alias_reply, {33, P, R}, {R, {response, 42}}},
         {pg_discover, {6, P, '', fzscope}, {discover, P}},
         {pg_discover3, {6, P, '', fzscope}, {discover, P, [x]}},
         {pg_sync, {6, P, '', fzscope}, {'$gen_cast', {sync, P, [{grp, [P2, P]}, {[other, grp], [P2]}]}}},
         {pg_join, {6, P, '', fzscope}, {join, P, grp, [P2]}},
         {pg_join_many, {6, P, '', fzscope}, {join, P, grp, [P2, P2, P]}},
         {pg_leave, {6, P, '', fzscope}, {leave, P, P2, [grp]}},
         {pg_down, {6, P, '', fzscope}, {'DOWN', R, process, P, noconnection}},
         {pg_reply, {6, P, '', fzscope}, {R, [a@b, 'peer@localhost']}},
         {send_me, {22, P, Me}, hello},
         {link, {1, P, Me}, none},
         {monitor, {19, P, Me, R}, none},
         {monitor_name, {19, P, fzscope, R}, none},
         {demonitor, {20, P, Me, R}, none},
         {exit2, {8, P, Me, kill}, none},
         {unlink_id, {35, 7, P, Me}, none},
         {group_leader, {7, P, Me}, none}],
    [file:write_file(filename:join(Dir, atom_to_list(Name)), packet(Ctl, Msg)) || {Name, Ctl, Msg} <- Seeds],
    ok.

packet(Ctl, none) -> [$p, term_to_binary(Ctl)];
packet(Ctl, Msg) -> [$p, term_to_binary(Ctl), term_to_binary(Msg)].

atom_ext(A) -> B = atom_to_binary(A, utf8), <<119, (byte_size(B)), B/binary>>.
pid(Node, Num, Ser, Cr) -> binary_to_term(<<131, 88, (atom_ext(Node))/binary, Num:32, Ser:32, Cr:32>>).
ref(Node, Cr, Ids) ->
    binary_to_term(<<131, 90, (length(Ids)):16, (atom_ext(Node))/binary, Cr:32, << <<I:32>> || I <- Ids >>/binary>>).
