#!/usr/bin/env escript
%%! -sname golden -setcookie golden
%% Regenerates tests/data/ctl_golden.tsv: every control message of
%% protocol.md §4 as a distributed OTP node encodes it (term_to_binary with
%% minor_version 2, as the dist encoder of OTP 25 writes for a UTF8_ATOMS peer: NEW_PID_EXT, NEWER_REFERENCE_EXT,
%% SMALL_ATOM_UTF8_EXT, 32-bit creation). One line per packet:
%%   name TAB op TAB hex(body)     body = 112 ++ Control ++ [Payload]
%% Run with a private epmd: ERL_EPMD_PORT=4499 epmd -daemon -port 4499; then
%%   ERL_EPMD_PORT=4499 escript tests/data/gen_ctl_golden.escript > tests/data/ctl_golden.tsv
main(_) ->
    F = self(),
    T = spawn(fun() -> receive _ -> ok end end),
    GL = group_leader(),
    R = make_ref(),
    A = erlang:monitor(process, T, [{alias, explicit_unalias}]),
    Tok = {0, label, 1, F, 0},
    Big = 16#FEDCBA9876543210,
    Cases = [
        {link, {1, F, T}, none},
        {send, {2, '', T}, hello},
        {exit, {3, F, T, because}, none},
        {unlink, {4, F, T}, none},
        {node_link, {5}, none},
        {reg_send, {6, F, '', echo}, {self_test, [1, 2, 3], <<"bin">>}},
        {group_leader, {7, GL, T}, none},
        {exit2, {8, F, T, kill}, none},
        {send_tt, {12, '', T, Tok}, hello},
        {exit_tt, {13, F, T, Tok, {shutdown, x}}, none},
        {reg_send_tt, {16, F, '', 'Elixir.MyApp.Users', Tok}, #{k => v}},
        {exit2_tt, {18, F, T, Tok, normal}, none},
        {monitor_p, {19, F, T, R}, none},
        {monitor_p_name, {19, F, net_kernel, R}, none},
        {demonitor_p, {20, F, T, R}, none},
        {demonitor_p_name, {20, F, rex, R}, none},
        {monitor_p_exit, {21, T, F, R, normal}, none},
        {monitor_p_exit_name, {21, logger, F, R, noproc}, none},
        {send_sender, {22, F, T}, {a, <<"b">>, 1.5, -12345678901234567890}},
        {send_sender_tt, {23, F, T, Tok}, "text"},
        {payload_exit, {24, F, T}, {badarith, [{m, f, 1, []}]}},
        {payload_exit_tt, {25, F, T, Tok}, killed},
        {payload_exit2, {26, F, T}, kill},
        {payload_exit2_tt, {27, F, T, Tok}, normal},
        {payload_monitor_p_exit, {28, T, F, R}, noconnection},
        {payload_monitor_p_exit_name, {28, rex, F, R}, noproc},
        {spawn_request, {29, R, F, GL, {erpc, execute_call, 4}, [monitor]}, [R, lists, seq, [1, 3]]},
        {spawn_request_tt, {30, R, F, GL, {erpc, execute_cast, 3}, [], Tok}, [erlang, node, []]},
        {spawn_reply, {31, R, F, 2, T}, none},
        {spawn_reply_error, {31, R, F, 0, notsup}, none},
        {spawn_reply_tt, {32, R, F, 3, T, Tok}, none},
        {alias_send, {33, F, A}, {[alias | R], yes}},
        {alias_send_tt, {34, F, A, Tok}, yes},
        {unlink_id, {35, 7, F, T}, none},
        {unlink_id_big, {35, Big, F, T}, none},
        {unlink_id_ack, {36, Big, T, F}, none}
    ],
    [io:format("~s\t~b\t~s~n", [Name, element(1, Ctl), hex(packet(Ctl, P))]) || {Name, Ctl, P} <- Cases],
    ok.

packet(Ctl, none) -> <<112, (term_to_binary(Ctl, [{minor_version, 2}]))/binary>>;
packet(Ctl, P) -> <<112, (term_to_binary(Ctl, [{minor_version, 2}]))/binary, (term_to_binary(P, [{minor_version, 2}]))/binary>>.

hex(B) -> [io_lib:format("~2.16.0b", [X]) || <<X>> <= B].
