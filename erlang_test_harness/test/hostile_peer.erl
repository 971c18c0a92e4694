%%% A raw distribution peer written with gen_tcp, for playing the attacker
%%% against a node from outside (hostile_SUITE). Nothing here trusts the node
%%% under test: every read has a deadline, and every socket is closed by the
%%% process that opened it (or dies with it).
%%%
%%% Handshake (version 6, 'N' messages, 2-byte lengths): the steps are separate
%%% functions, so a test can stop after any of them, answer `alive` with `true`,
%%% or send a wrong digest. After the challenge ack a socket can be handed to
%%% an owner process (become/3) that reads the 4-byte frames, answers ticks and
%%% forwards every other frame, decoded, to its listener as
%%% {hostile_frame, Owner, Control, Payload | none}; it sends
%%% {hostile_closed, Owner} once when the node closes the connection.
%%%
%%% Deadlines are multiplied by $CNODE_TEST_TIME_SCALE when it is set (scale/0).
-module(hostile_peer).

-export([scale/0, ms/1, deadline/1, left/1, now_ms/0,
         node_bin/1, fake_pid/1, fake_pid/2, fake_ref/2,
         connect/2, connect/3, send2/2, recv2/2, send_name_msg/1, send_name_msg/2,
         recv_status/2, send_status/2, recv_challenge/2, send_reply/3, send_reply_digest/3,
         recv_ack/4, digest/2, handshake/3, handshake/4, await_close/2, drain_open/1,
         become/3, send/2, close/1, is_up/2, await_down/2, frame/2, frame/1,
         rex_call/5, rex_call_msg/4, rex_cast_msg/3, spawn_request_msg/4,
         await_frame/3, splice/3, placeholder/0,
         rss_kb/1, cpu_ticks/1, clk_tck/0, fd_count/1]).

-define(FLAGS, 16#D075F4FBC).      % the recommended flags (protocol.md §3)
-define(CREATION, 1).
-define(PLACEHOLDER, 'HOSTILE_PLACEHOLDER').

%%% ---- time ---------------------------------------------------------------

scale() ->
    case os:getenv("CNODE_TEST_TIME_SCALE") of
        false -> 1.0;
        "" -> 1.0;
        S ->
            try list_to_float(S)
            catch error:badarg -> float(list_to_integer(S))
            end
    end.

%% A duration in ms, scaled.
ms(T) -> round(T * scale()).

now_ms() -> erlang:monotonic_time(millisecond).
deadline(T) -> now_ms() + ms(T).
left(Deadline) -> max(0, Deadline - now_ms()).

%%% ---- names and terms ------------------------------------------------------

%% <<"Alive@host">> for a fake node.
node_bin(Alive) -> list_to_binary(Alive ++ "@" ++ cnode_harness:host()).

%% A pid or ref of a fake node, built from its external format (the node does
%% not exist on this side, so only binary_to_term can make them).
fake_pid(NodeBin) -> fake_pid(NodeBin, 1).
fake_pid(NodeBin, Id) ->
    binary_to_term(<<131, 88, 119, (byte_size(NodeBin)), NodeBin/binary, Id:32, 0:32, ?CREATION:32>>).

fake_ref(NodeBin, N) ->
    binary_to_term(<<131, 90, 3:16, 119, (byte_size(NodeBin)), NodeBin/binary, ?CREATION:32,
                     N:32, 0:32, 0:32>>).

%% An atom to encode in place of bytes no term_to_binary/1 can make
%% (splice/3 swaps them in).
placeholder() -> ?PLACEHOLDER.

%% The external format of Term with the placeholder atom replaced by Raw (the
%% encoding of a term the test makes by hand, valid or not).
splice(Term, Raw, Opts) ->
    Bin = term_to_binary(Term, [{minor_version, 2} | Opts]),   % atoms as SMALL_ATOM_UTF8_EXT
    A = atom_to_binary(?PLACEHOLDER),
    Enc = <<119, (byte_size(A)), A/binary>>,
    [_, _] = binary:split(Bin, Enc),   % exactly one placeholder
    binary:replace(Bin, Enc, Raw).

%%% ---- sockets before authentication (2-byte lengths, written by hand) ------

connect(Port, Timeout) -> connect(Port, any, Timeout).
connect(Port, Src, Timeout) ->
    Opts = [binary, {active, false}, {packet, raw}, {nodelay, true}]
        ++ case Src of any -> []; _ -> [{ip, Src}] end,
    gen_tcp:connect({127, 0, 0, 1}, Port, Opts, Timeout).

send2(S, Body) ->
    B = iolist_to_binary(Body),
    gen_tcp:send(S, <<(byte_size(B)):16, B/binary>>).

%% One handshake message: {ok, Body} | {error, closed | timeout | ...}.
recv2(S, Timeout) ->
    case gen_tcp:recv(S, 2, Timeout) of
        {ok, <<0:16>>} -> {ok, <<>>};
        {ok, <<Len:16>>} -> gen_tcp:recv(S, Len, Timeout);
        {error, econnreset} -> {error, closed};
        E -> E
    end.

send_name_msg(NodeBin) -> send_name_msg(NodeBin, ?FLAGS).
send_name_msg(NodeBin, Flags) ->
    <<$N, Flags:64, ?CREATION:32, (byte_size(NodeBin)):16, NodeBin/binary>>.

%% The node's status after our send_name: {ok, "ok" | "alive" | ...} or an error.
recv_status(S, Timeout) ->
    case recv2(S, Timeout) of
        {ok, <<$s, Status/binary>>} -> {ok, binary_to_list(Status)};
        {ok, Other} -> {error, {not_a_status, Other}};
        E -> E
    end.

send_status(S, Bool) -> send2(S, [$s, atom_to_list(Bool)]).

%% {ok, Challenge, NodeName} from the acceptor's 'N' challenge.
recv_challenge(S, Timeout) ->
    case recv2(S, Timeout) of
        {ok, <<$N, _Flags:64, Challenge:32, _Creation:32, NL:16, Name:NL/binary, _/binary>>} ->
            {ok, Challenge, Name};
        {ok, Other} -> {error, {not_a_challenge, Other}};
        E -> E
    end.

digest(Challenge, Cookie) -> erlang:md5([Cookie, integer_to_list(Challenge)]).

%% Our challenge reply with the digest the cookie gives; returns our challenge.
send_reply(S, Challenge, Cookie) -> send_reply_digest(S, digest(Challenge, Cookie), rand:uniform(1 bsl 32) - 1).
send_reply_digest(S, Digest, Mine) ->
    ok = send2(S, <<$r, Mine:32, Digest/binary>>),
    Mine.

recv_ack(S, Mine, Cookie, Timeout) ->
    Expected = digest(Mine, Cookie),
    case recv2(S, Timeout) of
        {ok, <<$a, Expected:16/binary>>} -> ok;
        {ok, Other} -> {error, {bad_ack, Other}};
        E -> E
    end.

%% The whole initiator side with the right cookie; `alive` answered `true`
%% when Opts has replace => true. {ok, Peer} (see become/3) or {error, Why}.
handshake(Port, Alive, Cookie) -> handshake(Port, Alive, Cookie, #{}).
handshake(Port, Alive, Cookie, Opts) ->
    T = ms(10000),
    NodeBin = node_bin(Alive),
    case connect(Port, maps:get(src, Opts, any), T) of
        {ok, S} ->
            R = handshake_steps(S, NodeBin, Cookie, maps:get(replace, Opts, false), T),
            case R of
                ok -> {ok, become(S, NodeBin, Opts)};
                Err -> gen_tcp:close(S), Err
            end;
        E -> E
    end.

handshake_steps(S, NodeBin, Cookie, Replace, T) ->
    ok = send2(S, send_name_msg(NodeBin)),
    case recv_status(S, T) of
        {ok, St} when St =:= "ok"; St =:= "ok_simultaneous" -> challenge_steps(S, Cookie, T);
        {ok, "alive"} when Replace -> ok = send_status(S, true), challenge_steps(S, Cookie, T);
        Other -> {error, {status, Other}}
    end.

challenge_steps(S, Cookie, T) ->
    case recv_challenge(S, T) of
        {ok, Challenge, _} ->
            Mine = send_reply(S, Challenge, Cookie),
            case recv_ack(S, Mine, Cookie, T) of
                ok -> ok;
                E -> {error, {ack, E}}
            end;
        E -> {error, {challenge, E}}
    end.

%% Reads and drops whatever the node sends until it closes the socket:
%% closed, or still_open at the deadline (an absolute monotonic time in ms).
await_close(S, Deadline) ->
    case gen_tcp:recv(S, 0, left(Deadline)) of
        {ok, _} -> await_close(S, Deadline);
        {error, timeout} -> still_open;
        {error, _} -> closed
    end.

%% Without waiting: open (the node has not closed it) or closed.
drain_open(S) ->
    case gen_tcp:recv(S, 0, 0) of
        {ok, _} -> drain_open(S);
        {error, timeout} -> open;
        {error, _} -> closed
    end.

%%% ---- an authenticated peer ------------------------------------------------

%% Hands an authenticated socket to an owner process (linked to the caller)
%% that answers ticks and forwards frames to the caller. Opts: forward (default
%% true; false drops every frame, for floods). Returns the peer:
%% #{owner, sock, node (binary), me (a pid of ours)}.
become(S, NodeBin, Opts) ->
    Listener = self(),
    Forward = maps:get(forward, Opts, true),
    Owner = spawn_link(fun() ->
                               receive {go, S} -> ok end,
                               ok = inet:setopts(S, [{active, 32}]),
                               owner_loop(S, Listener, Forward, <<>>, up)
                       end),
    ok = gen_tcp:controlling_process(S, Owner),
    Owner ! {go, S},
    #{owner => Owner, sock => S, node => NodeBin, me => fake_pid(NodeBin)}.

owner_loop(S, L, Fwd, Buf, State) ->
    receive
        {tcp, S, Data} ->
            Buf1 = frames(S, L, Fwd, <<Buf/binary, Data/binary>>),
            owner_loop(S, L, Fwd, Buf1, State);
        {tcp_passive, S} ->
            _ = inet:setopts(S, [{active, 32}]),
            owner_loop(S, L, Fwd, Buf, State);
        {tcp_closed, S} ->
            L ! {hostile_closed, self()},
            owner_loop(S, L, Fwd, <<>>, closed);
        {tcp_error, S, _} ->
            owner_loop(S, L, Fwd, Buf, State);
        {is_up, From, Ref} ->
            From ! {Ref, State =:= up},
            owner_loop(S, L, Fwd, Buf, State);
        {close, From, Ref} ->
            gen_tcp:close(S),
            From ! {Ref, ok}
    end.

frames(S, L, Fwd, <<0:32, Rest/binary>>) ->
    _ = gen_tcp:send(S, <<0:32>>),      % a tick: answer it
    frames(S, L, Fwd, Rest);
frames(S, L, Fwd, <<Len:32, Body:Len/binary, Rest/binary>>) ->
    Fwd andalso (L ! {hostile_frame, self(), decode(Body), payload(Body)}),
    frames(S, L, Fwd, Rest);
frames(_S, _L, _Fwd, Buf) ->
    Buf.

decode(<<112, Rest/binary>>) ->
    try binary_to_term(Rest) catch error:badarg -> {undecodable, Rest} end;
decode(Other) -> {not_a_p_frame, Other}.

payload(<<112, Rest/binary>>) ->
    try
        {_, Used} = binary_to_term(Rest, [used]),
        case binary:part(Rest, Used, byte_size(Rest) - Used) of
            <<>> -> none;
            P -> binary_to_term(P)
        end
    catch error:badarg -> undecodable
    end;
payload(_) -> none.

send(#{sock := S}, IoData) -> gen_tcp:send(S, IoData).

close(#{owner := O}) ->
    Ref = make_ref(),
    MRef = monitor(process, O),
    O ! {close, self(), Ref},
    receive
        {Ref, ok} -> demonitor(MRef, [flush]), ok;
        {'DOWN', MRef, _, _, _} -> ok
    after 10000 -> demonitor(MRef, [flush]), timeout
    end.

%% Whether the owner has seen the node close the connection (not yet: true).
is_up(#{owner := O}, Timeout) ->
    Ref = make_ref(),
    O ! {is_up, self(), Ref},
    receive {Ref, Up} -> Up after Timeout -> error({owner_silent, O}) end.

%% closed once the node closed the connection, still_open at the deadline.
await_down(#{owner := O}, Deadline) ->
    receive {hostile_closed, O} -> closed
    after left(Deadline) -> still_open
    end.

%% A distribution frame: 4-byte length, 'p', control [, payload].
frame(Ctl, Msg) -> frame([term_or_bin(Ctl), term_or_bin(Msg)]).
frame(Parts) ->
    B = iolist_to_binary([112 | Parts]),
    <<(byte_size(B)):32, B/binary>>.

term_or_bin(B) when is_binary(B) -> B;
term_or_bin(T) -> term_to_binary(T).

%% The first forwarded frame Match(Control, Payload) accepts (returns other
%% than false): {ok, Value}; closed if the connection closes first; timeout.
await_frame(#{owner := O}, Match, Deadline) ->
    receive
        {hostile_frame, O, Ctl, Payload} ->
            case Match(Ctl, Payload) of
                false -> await_frame(#{owner => O}, Match, Deadline);
                V -> {ok, V}
            end;
        {hostile_closed, O} -> closed
    after left(Deadline) -> timeout
    end.

%% A rex gen_call from this peer: {call, M, F, Args, GL}; Args may be a term
%% or the raw encoding of the argument list (binary). The frame and its ref.
rex_call_msg(#{node := N, me := Me}, M, F, Args) ->
    Ref = fake_ref(N, erlang:unique_integer([positive]) band 16#ffffffff),
    Msg = {'$gen_call', {Me, Ref}, {call, M, F, ?PLACEHOLDER, Me}},
    Raw = case Args of
              B when is_binary(B) -> B;
              T -> strip131(term_to_binary(T, [{minor_version, 2}]))
          end,
    Payload = splice(Msg, Raw, [{minor_version, 2}]),
    {frame(term_to_binary({6, Me, '', rex}), Payload), Ref}.

rex_cast_msg(#{me := Me}, M, F) ->
    fun(Args) -> frame({6, Me, '', rex}, {'$gen_cast', {cast, M, F, Args, Me}}) end.

%% {ok, Reply} | closed | timeout.
rex_call(Peer, M, F, Args, Timeout) ->
    {Frame, Ref} = rex_call_msg(Peer, M, F, Args),
    case send(Peer, Frame) of
        ok ->
            %% the reply is {Ref, V}; V may be false, so wrap it
            case await_frame(Peer, fun(_, {R, V}) when R =:= Ref -> {reply, V}; (_, _) -> false end,
                             now_ms() + Timeout) of
                {ok, {reply, V}} -> {ok, V};
                Other -> Other
            end;
        {error, _} -> closed
    end.

%% A spawn request {29, ReqId, Me, Me, {M, F, Arity}, Opts} with the argument
%% list Args (a term, or its raw encoding as a binary). The frame and ReqId.
spawn_request_msg(#{node := N, me := Me}, {M, F, Arity}, Args, Opts) ->
    ReqId = fake_ref(N, erlang:unique_integer([positive]) band 16#ffffffff),
    Ctl = {29, ReqId, Me, Me, {M, F, Arity}, Opts},
    Payload = case Args of
                  B when is_binary(B) -> <<131, B/binary>>;
                  T -> term_to_binary(T)
              end,
    {frame([term_to_binary(Ctl), Payload]), ReqId}.

strip131(<<131, Rest/binary>>) -> Rest.

%%% ---- what the node costs, from /proc ---------------------------------------

rss_kb(OsPid) ->
    {ok, B} = file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/status"),
    {match, [Kb]} = re:run(B, "VmRSS:\\s+(\\d+) kB", [{capture, all_but_first, list}]),
    list_to_integer(Kb).

%% utime + stime in clock ticks.
cpu_ticks(OsPid) ->
    {ok, B} = file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/stat"),
    [_, After] = string:split(B, ")", trailing),
    F = string:lexemes(After, " "),
    binary_to_integer(lists:nth(12, F)) + binary_to_integer(lists:nth(13, F)).

clk_tck() -> list_to_integer(string:trim(os:cmd("getconf CLK_TCK"))).

fd_count(OsPid) ->
    case file:list_dir("/proc/" ++ integer_to_list(OsPid) ++ "/fd") of
        {ok, L} -> length(L);
        _ -> 0
    end.
