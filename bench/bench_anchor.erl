%% BEAM side of `make bench`: the echo server both clients talk to, and the
%% BEAM client that measures the anchor figures.
-module(bench_anchor).
-export([server/0, client_rt/1]).

server() ->
    register(bench_echo, spawn(fun echo/0)),
    receive stop -> ok end.

echo() ->
    receive
        {P, M} when is_pid(P) -> P ! M, echo();
        _ -> echo()
    end.

%% client_rt([Server, N, Warmup]): microseconds per message round trip to
%% {bench_echo, Server}, printed as "rt_us <float>".
client_rt([ServerA, NA, WA]) ->
    Server = list_to_atom(atom_to_list(ServerA)),
    N = list_to_integer(atom_to_list(NA)),
    W = list_to_integer(atom_to_list(WA)),
    pong = net_adm:ping(Server),
    loop(Server, W),
    T0 = erlang:monotonic_time(nanosecond),
    loop(Server, N),
    T1 = erlang:monotonic_time(nanosecond),
    io:format("rt_us ~.3f~n", [(T1 - T0) / N / 1000]),
    halt(0).

loop(_, 0) -> ok;
loop(S, K) ->
    {bench_echo, S} ! {self(), ping},
    receive ping -> ok end,
    loop(S, K - 1).
