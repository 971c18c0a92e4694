%%% Helpers shared by every common_test suite of libcnode.
%%%
%%% Layout of a run
%%% ---------------
%%% rebar3 starts the common_test node without distribution, and an Erlang
%%% node's epmd port is fixed when it boots: erlexec turns $ERL_EPMD_PORT into
%%% the init argument -epmd_port, and erl_epmd only reads
%%% init:get_argument(epmd_port) (kernel 8.5, erl_epmd:get_epmd_port/0). So
%%% os:putenv("ERL_EPMD_PORT", P) followed by net_kernel:start/2 on the CT node
%%% would still register with the system epmd on 4369, not with ours.
%%%
%%% Therefore init_per_suite/2 (on the CT node)
%%%   1. starts a private epmd on a free loopback port (owned by a keeper
%%%      process on the CT node, stopped by OS pid in end_per_suite/1);
%%%   2. starts a "driver" BEAM node with OTP's peer module, controlled over
%%%      its stdio (the CT node needs no distribution), booted with
%%%      ERL_EPMD_PORT=P, -start_epmd false and the suite's code path;
%%%   3. starts cnode_harness_srv on the driver: it owns every OS process
%%%      (C test node, `cnode` CLI) and every extra BEAM peer a test starts,
%%%      keeps their output, and stops them all by OS pid / peer:stop in
%%%      cleanup/0 (called from end_per_testcase/2, even when a case fails).
%%% Each test body runs on the driver through run/2: what a body asserts is
%%% what a BEAM user on a node of the cluster sees.
%%%
%%% Every OS process is started through `setpriv --pdeathsig KILL` when
%%% setpriv exists, so nothing outlives a VM that dies abruptly; every wait
%%% has a deadline (wait_until/2 polls, nothing sleeps to synchronise).
%%%
%%% Deadlines, not speed: a deadline only bounds how long a case waits for
%%% something that must happen; no case asserts how fast it happened (speed
%%% belongs in `make bench`). CNODE_TEST_TIME_SCALE (a number >= 1, default 1)
%%% stretches every deadline for a slow machine: the timeouts given to the
%%% functions below (run/3, ctl/3, wait_until/2, wait_line/3, wait_exit/2,
%%% run_cli/2, the boot and stop limits) are scaled here; a suite scales its own
%%% `receive ... after` limits with ms/1.
-module(cnode_harness).
-behaviour(gen_server).

%% CT node side
-export([init_per_suite/2, end_per_suite/1, init_per_testcase/2, end_per_testcase/2,
         run/2, run/3]).
%% driver side, called over peer:call/5
-export([start_server/1, stop_server/0, cleanup/0, run_local/2]).
%% API for test bodies (they run on the driver)
-export([scale/0, ms/1, info/0, cookie/0, epmd_port/0, host/0, root/0, node_name/1, unique/1,
         testnode_bin/0, cnode_bin/0, prog_path/1,
         start_testnode/1, start_testnode/2, ctl/2, ctl/3, spawn_agent/2,
         start_serve/1, start_serve/2,
         start_cli/1, run_cli/1, run_cli/2,
         start_os/4, start_os/5, output/1, output_text/1, wait_line/3, wait_exit/2, os_pid/1,
         kill_os/2, os_alive/1,
         start_peer/1, start_peer/2, stop_peer/1, kill_peer/1,
         wait_until/2, wait_until/3, flush/0,
         capture_logs/0, stop_capture_logs/1, log/2,
         fake_handshake/3, frame/1, fake_pid/0, dist_port/1, await_close/2, recv_frame/2]).
%% gen_server
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-define(SRV, cnode_harness_srv).
-define(READY_TIMEOUT, 60000).      % ASan builds on a busy 2-core machine start slowly
-define(BOOT_TIMEOUT, 90000).       % a BEAM peer's boot
-define(DEFAULT_RUN_TIMEOUT, 150000).
-define(STOP_GRACE, 10000).         % a C program asked to stop has this long to exit 0
-define(CLEANUP_TIMEOUT, 60000).    % more than the stop grace plus the TERM and KILL waits

%%% ===================================================================
%%% CT node side
%%% ===================================================================

%% Starts epmd, the driver node and the harness server. Returns Config with
%% cnode_driver (peer pid), cnode_driver_node, cnode_keeper and cnode_info.
init_per_suite(Suite, Config) ->
    Root = find_root(),
    filelib:is_regular(testnode_path(Root))
        orelse error({missing_binary, testnode_path(Root), "run `make test-build` first"}),
    Host = short_host(),
    Addr = host_addr(Host),
    Cookie = "cnodect" ++ integer_to_list(erlang:unique_integer([positive]))
        ++ "x" ++ integer_to_list(rand:uniform(1 bsl 40)),
    Dirs = lists:usort([filename:absname(filename:dirname(code:which(M)))
                        || M <- [?MODULE, Suite]]),
    Keeper = start_keeper(Addr),
    try
        {EpmdPort, EpmdOsPid} = keeper_call(Keeper, info),
        Info = #{root => Root, host => Host, addr => Addr, cookie => Cookie,
                 epmd_port => EpmdPort, epmd_os_pid => EpmdOsPid,
                 setpriv => find_setpriv(), code_dirs => Dirs, erl => erl_exe()},
        DrvName = "ctdrv" ++ integer_to_list(erlang:unique_integer([positive])),
        {ok, Drv, DrvNode} =
            peer:start(#{name => DrvName,
                         exec => erl_exe(),
                         connection => standard_io,
                         args => peer_args(Info, Cookie),
                         env => [{"ERL_EPMD_PORT", integer_to_list(EpmdPort)}],
                         wait_boot => ms(?BOOT_TIMEOUT)}),
        ok = peer:call(Drv, ?MODULE, start_server, [Info], ms(60000)),
        ct:log("cnode_harness: epmd port ~p (os pid ~p), driver ~p, cookie ~s, root ~s",
               [EpmdPort, EpmdOsPid, DrvNode, Cookie, Root]),
        [{cnode_driver, Drv}, {cnode_driver_node, DrvNode}, {cnode_keeper, Keeper},
         {cnode_info, Info} | Config]
    catch C:R:S ->
            keeper_call(Keeper, stop),
            erlang:raise(C, R, S)
    end.

end_per_suite(Config) ->
    Drv = proplists:get_value(cnode_driver, Config),
    Drv =:= undefined orelse
        begin
            _ = (catch peer:call(Drv, ?MODULE, stop_server, [], ms(2 * ?CLEANUP_TIMEOUT))),
            _ = (catch peer:stop(Drv))
        end,
    case proplists:get_value(cnode_keeper, Config) of
        undefined -> ok;
        Keeper -> keeper_call(Keeper, stop)
    end,
    ok.

init_per_testcase(_TC, Config) ->
    Config.

%% Stops every OS process and peer the case started, by pid; logs their output.
end_per_testcase(TC, Config) ->
    case proplists:get_value(cnode_driver, Config) of
        undefined -> ok;
        Drv ->
            case catch peer:call(Drv, ?MODULE, cleanup, [], ms(2 * ?CLEANUP_TIMEOUT)) of
                {ok, Report} ->
                    [ct:log("~p: ~s ~s (os pid ~p) exit ~p, ~p; output:~n~s",
                            [TC, Kind, Name, OsPid, Status, Verdict, Out])
                     || {Kind, Name, OsPid, Status, Out, Verdict} <- Report],
                    case [{Kind, Name, Verdict} || {Kind, Name, _, _, _, Verdict} <- Report,
                                                   Verdict =/= ok] of
                        [] -> ok;
                        Bad -> {fail, {c_process_problems, Bad}}
                    end;
                Other ->
                    ct:log("~p: cleanup failed: ~p", [TC, Other]),
                    {fail, {cleanup_failed, Other}}
            end
    end.

%% Runs Fun() in a fresh process on the driver node and returns its value, or
%% raises its exception here.
run(Config, Fun) ->
    run(Config, Fun, ?DEFAULT_RUN_TIMEOUT).
run(Config, Fun, Timeout0) ->
    Timeout = ms(Timeout0),
    Drv = proplists:get_value(cnode_driver, Config),
    peer:call(Drv, ?MODULE, run_local, [Fun, Timeout], Timeout + 30000).

%%% ---- the epmd keeper (a process on the CT node) ---------------------

start_keeper(Addr) ->
    Parent = self(),
    Ref = make_ref(),
    Pid = spawn(fun() -> keeper_init(Parent, Ref, Addr, 5) end),
    receive
        {Ref, ok} -> Pid;
        {Ref, {error, E}} -> error({epmd_start_failed, E})
    after 60000 ->
            exit(Pid, kill),
            error(epmd_start_timeout)
    end.

keeper_init(Parent, Ref, Addr, Tries) ->
    Port = free_port(),
    Addrs = lists:join(",", lists:usort(["127.0.0.1", inet:ntoa(Addr)])),
    {Exe, Args} = wrap(find_setpriv(), epmd_exe(),
                       ["-port", integer_to_list(Port), "-address", lists:flatten(Addrs)]),
    P = open_port({spawn_executable, Exe},
                  [{args, Args}, exit_status, stderr_to_stdout, binary, use_stdio]),
    {os_pid, OsPid} = erlang:port_info(P, os_pid),
    case wait_epmd(P, Port, now_ms() + 15000) of
        ok ->
            Parent ! {Ref, ok},
            keeper_loop(P, Port, OsPid, undefined);
        {error, E} when Tries > 1 ->
            kill_pid(OsPid, "KILL"),
            catch port_close(P),
            _ = E,
            keeper_init(Parent, Ref, Addr, Tries - 1);
        {error, E} ->
            kill_pid(OsPid, "KILL"),
            Parent ! {Ref, {error, E}}
    end.

%% epmd is up when it answers a NAMES_REQ on its port.
wait_epmd(P, Port, Deadline) ->
    receive
        {P, {exit_status, S}} -> {error, {epmd_exited, S}}
    after 0 ->
            case epmd_names(Port) of
                ok -> ok;
                _ ->
                    case now_ms() > Deadline of
                        true -> {error, timeout};
                        false -> receive after 50 -> wait_epmd(P, Port, Deadline) end
                    end
            end
    end.

epmd_names(Port) ->
    case gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}], 1000) of
        {ok, S} ->
            ok = gen_tcp:send(S, <<1:16, 110>>),
            R = gen_tcp:recv(S, 4, 2000),
            gen_tcp:close(S),
            case R of
                {ok, <<Port:32>>} -> ok;
                Other -> {error, Other}
            end;
        E -> E
    end.

keeper_loop(P, Port, OsPid, Status) ->
    receive
        {From, Ref, info} ->
            From ! {Ref, {Port, OsPid}},
            keeper_loop(P, Port, OsPid, Status);
        {From, Ref, stop} ->
            Status =:= undefined andalso stop_port_process(P, OsPid, "TERM"),
            catch port_close(P),
            From ! {Ref, ok};
        {P, {exit_status, S}} ->
            keeper_loop(P, Port, OsPid, S);
        {P, _Data} ->
            keeper_loop(P, Port, OsPid, Status)
    end.

keeper_call(Keeper, Req) ->
    Ref = make_ref(),
    MRef = monitor(process, Keeper),
    Keeper ! {self(), Ref, Req},
    receive
        {Ref, R} -> demonitor(MRef, [flush]), R;
        {'DOWN', MRef, _, _, Why} -> {error, {keeper_down, Why}}
    after 30000 -> {error, keeper_timeout}
    end.

%% TERM, up to 5 s for the exit, then KILL and up to 5 s more.
stop_port_process(P, OsPid, FirstSig) ->
    kill_pid(OsPid, FirstSig),
    receive {P, {exit_status, _}} -> ok
    after 5000 ->
            kill_pid(OsPid, "KILL"),
            receive {P, {exit_status, _}} -> ok after 5000 -> ok end
    end.

%%% ===================================================================
%%% Driver side: the server
%%% ===================================================================

start_server(Info) ->
    {ok, _} = gen_server:start({local, ?SRV}, ?MODULE, Info, []),
    ok.

stop_server() ->
    _ = cleanup(),
    gen_server:stop(?SRV).

%% {ok, Report}: Report lists every OS process the case started.
cleanup() ->
    remove_log_handlers(),
    gen_server:call(?SRV, cleanup, ms(?CLEANUP_TIMEOUT) + 30000).

run_local(Fun, Timeout) ->
    {Pid, MRef} =
        spawn_monitor(fun() ->
                              R = try {ok, Fun()} catch C:E:S -> {C, E, S} end,
                              exit({cnode_harness_done, R})
                      end),
    receive
        {'DOWN', MRef, process, Pid, {cnode_harness_done, {ok, V}}} -> V;
        {'DOWN', MRef, process, Pid, {cnode_harness_done, {C, E, S}}} -> erlang:raise(C, E, S);
        {'DOWN', MRef, process, Pid, Other} -> error({test_body_died, Other})
    after Timeout ->
            exit(Pid, kill),
            error({test_body_timeout, Timeout})
    end.

init(Info) ->
    process_flag(trap_exit, true),
    persistent_term:put({?MODULE, info}, Info),
    {ok, #{info => Info, procs => #{}, peers => #{}}}.

handle_call({start_os, Kind, Name, Exe, Args, Opts}, _From, #{info := Info, procs := Procs} = S) ->
    Env = [{"ERL_EPMD_PORT", integer_to_list(maps:get(epmd_port, Info))}],
    {Exe1, Args1} = wrap(maps:get(setpriv, Info), Exe, Args),
    try open_port({spawn_executable, Exe1},
                  [{args, Args1}, {env, Env}, exit_status, stderr_to_stdout, binary,
                   {line, 16384}, use_stdio]) of
        Port ->
            {os_pid, OsPid} = erlang:port_info(Port, os_pid),
            P = #{kind => Kind, name => Name, os_pid => OsPid, lines => [], partial => <<>>,
                  status => undefined, node => undefined,
                  check_exit => maps:get(check_exit, Opts, lists:member(Kind, [testnode, serve]))},
            {reply, {ok, Port, OsPid}, S#{procs := Procs#{Port => P}}}
    catch error:E ->
            {reply, {error, {open_port, Exe, E}}, S}
    end;
handle_call({set_node, Port, Node}, _From, #{procs := Procs} = S) ->
    case Procs of
        #{Port := P} -> {reply, ok, S#{procs := Procs#{Port := P#{node := Node}}}};
        _ -> {reply, ok, S}
    end;
handle_call({output, Port}, _From, #{procs := Procs} = S) ->
    case Procs of
        #{Port := #{lines := L, partial := Part, status := St}} ->
            Lines = lists:reverse(L) ++ [Part || Part =/= <<>>],
            {reply, {Lines, St}, S};
        _ -> {reply, {[], gone}, S}
    end;
handle_call({start_peer, Name, Opts}, _From, #{info := Info, peers := Peers} = S) ->
    Cookie = maps:get(cookie, Opts, maps:get(cookie, Info)),
    Args = peer_args(Info, Cookie) ++ maps:get(args, Opts, []),
    R = try
            {ok, Pid, Node} =
                peer:start(#{name => Name, exec => maps:get(erl, Info), args => Args,
                             env => [{"ERL_EPMD_PORT",
                                      integer_to_list(maps:get(epmd_port, Info))}],
                             wait_boot => ms(?BOOT_TIMEOUT)}),
            %% a node with another cookie cannot be asked its pid over distribution
            OsPid = case Cookie =:= maps:get(cookie, Info) of
                        true -> list_to_integer(erpc:call(Node, os, getpid, [], ms(30000)));
                        false -> undefined
                    end,
            {ok, #{peer => Pid, node => Node, os_pid => OsPid}}
        catch C:E -> {error, {C, E}}
        end,
    case R of
        {ok, #{peer := PPid} = H} -> {reply, R, S#{peers := Peers#{PPid => H}}};
        _ -> {reply, R, S}
    end;
handle_call({stop_peer, PPid}, _From, #{peers := Peers} = S) ->
    _ = stop_one_peer(maps:get(PPid, Peers, #{peer => PPid, os_pid => undefined})),
    {reply, ok, S#{peers := maps:remove(PPid, Peers)}};
handle_call(cleanup, _From, S) ->
    {Report, S1} = do_cleanup(S),
    {reply, {ok, Report}, S1};
handle_call(_Req, _From, S) ->
    {reply, {error, badarg}, S}.

handle_cast(_Msg, S) ->
    {noreply, S}.

handle_info({Port, {data, Data}}, S) when is_port(Port) ->
    {noreply, add_data(Port, Data, S)};
handle_info({Port, {exit_status, St}}, S) when is_port(Port) ->
    {noreply, set_status(Port, St, S)};
handle_info(_Other, S) ->
    {noreply, S}.

terminate(_Reason, S) ->
    _ = do_cleanup(S),
    ok.

add_data(Port, Data, #{procs := Procs} = S) ->
    case Procs of
        #{Port := #{lines := L, partial := Part} = P} ->
            P1 = case Data of
                     {eol, Bin} -> P#{lines := [<<Part/binary, Bin/binary>> | L], partial := <<>>};
                     {noeol, Bin} -> P#{partial := <<Part/binary, Bin/binary>>}
                 end,
            S#{procs := Procs#{Port := P1}};
        _ -> S
    end.

set_status(Port, St, #{procs := Procs} = S) ->
    case Procs of
        #{Port := P} -> S#{procs := Procs#{Port := P#{status := St}}};
        _ -> S
    end.

%% Polite stop first (the test node's {stop} command, SIGTERM for the CLI),
%% then SIGKILL; every port is closed and forgotten; every peer stopped.
do_cleanup(#{peers := Peers} = S00) ->
    %% a program in the middle of a sanitizer report finishes it first (its
    %% stack is symbolized: seconds on a loaded machine), so the report is whole
    #{procs := Procs} = S = await_reports(S00, now_ms() + ms(60000)),
    Live = [Port || {Port, #{status := undefined}} <- maps:to_list(Procs)],
    lists:foreach(fun(Port) -> polite_stop(maps:get(Port, Procs)) end, Live),
    S0 = await_exits(S, now_ms() + ms(?STOP_GRACE)),
    Live0 = [{Port, P} || {Port, #{status := undefined} = P} <- maps:to_list(maps:get(procs, S0))],
    lists:foreach(fun({_, #{os_pid := OsPid}}) -> kill_pid(OsPid, "TERM") end, Live0),
    S1 = await_exits(S0, now_ms() + ms(3000)),
    Live1 = [{Port, P} || {Port, #{status := undefined} = P} <- maps:to_list(maps:get(procs, S1))],
    lists:foreach(fun({_, #{os_pid := OsPid}}) -> kill_pid(OsPid, "KILL") end, Live1),
    S2 = await_exits(S1, now_ms() + ms(5000)),
    Killed = [Port || {Port, P} <- Live0, maps:get(kind, P) =:= testnode] ++ [Port || {Port, _} <- Live1],
    Report = [{Kind, Name, OsPid, St, tail_text(P),
               verdict(lists:member(Port, Live), lists:member(Port, Killed), St, P)}
              || {Port, #{kind := Kind, name := Name, os_pid := OsPid, status := St} = P}
                     <- maps:to_list(maps:get(procs, S2))],
    [catch port_close(Port) || Port <- maps:keys(maps:get(procs, S2))],
    lists:foreach(fun stop_one_peer/1, maps:values(Peers)),
    {Report, S2#{procs := #{}, peers := #{}}}.

polite_stop(#{kind := testnode, node := Node, os_pid := OsPid}) when Node =/= undefined ->
    %% {stop} lets the program shut down cleanly so LeakSanitizer runs;
    %% sending never blocks; SIGTERM too in case the node is unreachable
    {ctl, Node} ! {call, self(), make_ref(), {stop}},
    _ = OsPid,
    ok;
polite_stop(#{status := St}) when St =/= undefined ->
    ok;
polite_stop(#{os_pid := OsPid}) ->
    kill_pid(OsPid, "TERM").

await_exits(#{procs := Procs} = S, Deadline) ->
    case [P || {P, #{status := undefined}} <- maps:to_list(Procs)] of
        [] -> S;
        _ ->
            Left = max(0, Deadline - now_ms()),
            receive
                {Port, {exit_status, St}} when is_port(Port) ->
                    await_exits(set_status(Port, St, S), Deadline);
                {Port, {data, D}} when is_port(Port) ->
                    await_exits(add_data(Port, D, S), Deadline)
            after Left ->
                    %% a node we sent {stop} to that did not answer: TERM it
                    S
            end
    end.

%% Waits while a live program has begun a sanitizer report and not printed
%% its SUMMARY line yet, up to Deadline.
await_reports(#{procs := Procs} = S, Deadline) ->
    case [P || {P, #{status := undefined} = Pr} <- maps:to_list(Procs), report_pending(Pr)] of
        [] -> S;
        _ ->
            Left = max(0, Deadline - now_ms()),
            receive
                {Port, {exit_status, St}} when is_port(Port) ->
                    await_reports(set_status(Port, St, S), Deadline);
                {Port, {data, D}} when is_port(Port) ->
                    await_reports(add_data(Port, D, S), Deadline)
            after Left -> S
            end
    end.

report_pending(#{lines := L, partial := Part}) ->
    Lines = [Part | L],
    Has = fun(Re) -> lists:any(fun(Line) -> re:run(Line, Re) =/= nomatch end, Lines) end,
    Has("ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:") andalso not Has("^SUMMARY: ").

stop_one_peer(#{peer := PPid} = H) ->
    _ = (catch peer:stop(PPid)),
    case maps:get(os_pid, H, undefined) of
        undefined -> ok;
        OsPid -> os_alive(OsPid) andalso kill_pid(OsPid, "KILL")
    end,
    ok.

%% ok, or why the process's end is a failure: a sanitizer report in its
%% output, or (for one we stopped politely) an exit status other than 0.
verdict(WasLive, Killed, St, #{lines := L, partial := Part, kind := Kind, check_exit := Check}) ->
    Sanitizer = [Line || Line <- [Part | L],
                         re:run(Line, "ERROR: (Address|Leak|Thread|Memory)Sanitizer|"
                                      "runtime error:|SUMMARY: UndefinedBehaviorSanitizer") =/= nomatch],
    if
        Sanitizer =/= [] -> {sanitizer_report, hd(lists:reverse(Sanitizer))};
        Check, Killed -> {did_not_stop_when_asked, Kind};
        Check, WasLive, St =/= 0 -> {bad_exit_status_after_stop, St};
        true -> ok
    end.

tail_text(#{lines := L, partial := Part}) ->
    Lines = lists:reverse(lists:sublist(L, 200)) ++ [Part || Part =/= <<>>],
    [[Line, $\n] || Line <- Lines].

%%% ===================================================================
%%% API for test bodies (on the driver)
%%% ===================================================================

%% CNODE_TEST_TIME_SCALE: how much longer than usual every deadline is (>= 1).
scale() ->
    case os:getenv("CNODE_TEST_TIME_SCALE") of
        false -> 1;
        "" -> 1;
        Text ->
            V = try list_to_float(Text) catch error:badarg -> list_to_integer(Text) end,
            max(1, V)
    end.

%% A deadline of Ms milliseconds on this machine.
ms(infinity) -> infinity;
ms(Ms) when is_integer(Ms) -> round(Ms * scale()).

info() -> persistent_term:get({?MODULE, info}).
cookie() -> maps:get(cookie, info()).
epmd_port() -> maps:get(epmd_port, info()).
host() -> maps:get(host, info()).
root() -> maps:get(root, info()).
testnode_bin() -> testnode_path(root()).
cnode_bin() -> cnode_path(root()).

node_name(Name) -> list_to_atom(str(Name) ++ "@" ++ host()).

unique(Prefix) -> str(Prefix) ++ integer_to_list(erlang:unique_integer([positive])).

%% Starts the C test node; returns a handle #{node, port, os_pid, kind} once
%% it printed READY. Opts: cookie, ticktime (seconds), verbose (bool).
start_testnode(Name) -> start_testnode(Name, #{}).
start_testnode(Name, Opts) ->
    Args = ["--sname", str(Name), "--cookie", maps:get(cookie, Opts, cookie())]
        ++ case maps:get(ticktime, Opts, undefined) of
               undefined -> [];
               T -> ["--ticktime", integer_to_list(T)]
           end
        ++ case maps:get(verbose, Opts, false) of true -> ["-v"]; false -> [] end,
    H = start_os(testnode, str(Name), testnode_bin(), Args),
    {match, [NodeStr]} = wait_line(H, "^READY (\\S+)", ?READY_TIMEOUT),
    Node = list_to_atom(NodeStr),
    ok = gen_server:call(?SRV, {set_node, maps:get(port, H), Node}),
    H#{node => Node}.

%% {call, self(), Ref, Cmd} to the test node's ctl process; its answer.
ctl(Target, Cmd) -> ctl(Target, Cmd, 30000).
ctl(#{node := Node}, Cmd, Timeout) -> ctl(Node, Cmd, Timeout);
ctl(Node, Cmd, Timeout) when is_atom(Node) ->
    Ref = make_ref(),
    {ctl, Node} ! {call, self(), Ref, Cmd},
    receive {Ref, R} -> R
    after ms(Timeout) -> error({ctl_timeout, Node, Cmd})
    end.

%% An agent on the test node whose events go to Owner.
spawn_agent(Target, Owner) ->
    {ok, Pid} = ctl(Target, {spawn, undefined, Owner}),
    Pid.

%% `cnode serve` as a node named Name; the handle once it is serving.
start_serve(Name) -> start_serve(Name, []).
start_serve(Name, Extra) ->
    Args = ["serve", "--sname", str(Name), "--cookie", cookie() | Extra],
    H = start_os(serve, str(Name), cnode_bin(), Args),
    {match, [NodeStr]} = wait_line(H, "^serving cnode_demo on (\\S+)", ?READY_TIMEOUT),
    H#{node => list_to_atom(NodeStr)}.

%% The `cnode` CLI with Args, not waited for.
start_cli(Args) ->
    start_os(cli, string:join([str(A) || A <- Args], " "), cnode_bin(), [str(A) || A <- Args]).

%% Runs the CLI to its end: {ExitStatus, OutputText}.
run_cli(Args) -> run_cli(Args, 60000).
run_cli(Args, Timeout) ->
    H = start_cli(Args),
    Status = wait_exit(H, Timeout),
    {Status, output_text(H)}.

%% Starts Exe with Args (ERL_EPMD_PORT set), owned by the harness server.
%% Opts: check_exit (default: true for kinds testnode and serve) - when the
%% case ends with the process still running, cleanup stops it (the test
%% node's {stop} command, SIGTERM otherwise) and fails the case unless it
%% exits 0 within 10 s. A sanitizer report in the output always fails it.
start_os(Kind, Name, Exe, Args) -> start_os(Kind, Name, Exe, Args, #{}).
start_os(Kind, Name, Exe, Args, Opts) ->
    filelib:is_regular(Exe) orelse error({missing_binary, Exe, "run `make test-build` first"}),
    {ok, Port, OsPid} = gen_server:call(?SRV, {start_os, Kind, Name, Exe, Args, Opts}, 30000),
    #{kind => Kind, name => Name, port => Port, os_pid => OsPid}.

%% {Lines :: [binary()], ExitStatus | undefined}
output(#{port := Port}) -> gen_server:call(?SRV, {output, Port}, 30000).

output_text(H) ->
    {Lines, _} = output(H),
    binary_to_list(iolist_to_binary([[L, $\n] || L <- Lines])).

os_pid(#{os_pid := P}) -> P.

%% Waits for an output line matching Re: {match, Captures}. Fails at once if
%% the process exits first.
wait_line(H, Re, Timeout) ->
    wait_until(fun() ->
                       {Lines, St} = output(H),
                       case [M || L <- Lines,
                                  {match, _} = M <- [re:run(L, Re, [{capture, all_but_first, list}])]] of
                           [M | _] -> M;
                           [] when St =/= undefined ->
                               error({exited_before_line, Re, St, Lines});
                           [] -> false
                       end
               end, Timeout).

%% The exit status, waited for with a deadline.
wait_exit(H, Timeout) ->
    wait_until(fun() ->
                       case output(H) of
                           {_, undefined} -> false;
                           {_, St} -> St
                       end
               end, Timeout).

kill_os(#{os_pid := OsPid}, Sig) -> kill_os(OsPid, Sig);
kill_os(OsPid, Sig) when is_integer(OsPid) -> kill_pid(OsPid, Sig).

%% true while /proc/Pid exists and is not a zombie.
os_alive(#{os_pid := OsPid}) -> os_alive(OsPid);
os_alive(OsPid) ->
    case file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/stat") of
        {ok, Bin} ->
            %% "pid (comm) S ...": the state follows the last ')'
            [_, After] = string:split(Bin, ")", trailing),
            case string:trim(After, leading) of
                <<"Z", _/binary>> -> false;
                <<"X", _/binary>> -> false;
                _ -> true
            end;
        _ -> false
    end.

%% A BEAM peer node on the private epmd with the harness code path. Opts:
%% cookie, args. Returns #{peer, node, os_pid}.
start_peer(Name) -> start_peer(Name, #{}).
start_peer(Name, Opts) ->
    {ok, H} = gen_server:call(?SRV, {start_peer, str(Name), Opts}, ms(?BOOT_TIMEOUT) + 30000),
    H.

stop_peer(#{peer := PPid}) -> gen_server:call(?SRV, {stop_peer, PPid}, ms(60000)).

kill_peer(#{os_pid := OsPid}) when is_integer(OsPid) -> kill_pid(OsPid, "KILL").

%% Polls Fun every Interval ms until it returns something other than false;
%% returns that. Raises {wait_until_timeout, Timeout} past the deadline
%% (Timeout scaled by CNODE_TEST_TIME_SCALE).
wait_until(Fun, Timeout) -> wait_until(Fun, Timeout, 20).
wait_until(Fun, Timeout0, Interval) ->
    Timeout = ms(Timeout0),
    Deadline = now_ms() + Timeout,
    wait_until_loop(Fun, Deadline, Interval, Timeout).

wait_until_loop(Fun, Deadline, Interval, Timeout) ->
    case Fun() of
        false ->
            case now_ms() >= Deadline of
                true -> error({wait_until_timeout, Timeout});
                false ->
                    receive after Interval -> ok end,
                    wait_until_loop(Fun, Deadline, Interval, Timeout)
            end;
        V -> V
    end.

flush() ->
    receive M -> [M | flush()] after 0 -> [] end.

%% Logger events on this node go to the caller as
%% {cnode_harness_log, Level, Text} until stop_capture_logs(Id).
capture_logs() ->
    Id = list_to_atom(unique("cnode_harness_capture_")),
    ok = logger:add_handler(Id, ?MODULE, #{level => all, config => #{pid => self()}}),
    Id.

stop_capture_logs(Id) ->
    _ = logger:remove_handler(Id),
    ok.

%% logger handler callback
log(#{level := Level, msg := Msg} = Ev, #{config := #{pid := Pid}}) ->
    Text = try format_msg(Msg, Ev) catch _:_ -> io_lib:format("~p", [Msg]) end,
    Pid ! {cnode_harness_log, Level, lists:flatten(Text)},
    ok.

format_msg({string, S}, _) -> unicode:characters_to_list(S);
format_msg({report, R}, #{meta := #{report_cb := Cb}}) when is_function(Cb, 1) ->
    {F, A} = Cb(R), io_lib:format(F, A);
format_msg({report, R}, _) -> io_lib:format("~p", [R]);
format_msg({F, A}, _) -> io_lib:format(F, A).

remove_log_handlers() ->
    [logger:remove_handler(Id) || #{id := Id, module := ?MODULE} <- logger:get_handler_config()],
    ok.

%%% ===================================================================
%%% Internals

%%% ---- a fake distribution peer (for bad-input tests) --------------------

frame(Parts) ->
    Bin = iolist_to_binary([112 | Parts]),
    <<(byte_size(Bin)):32, Bin/binary>>.

fake_pid() ->
    list_to_pid("<0.99.0>").

%% The C node's distribution port, from our private epmd.
dist_port(Node) ->
    [Name, Host] = string:split(atom_to_list(Node), "@"),
    {port, Port, _} = erl_epmd:port_please(Name, Host),
    Port.

await_close(S, Timeout) ->
    case gen_tcp:recv(S, 0, Timeout) of
        {error, closed} -> closed;
        {error, econnreset} -> closed;
        {ok, _Data} -> await_close(S, Timeout);
        {error, timeout} -> still_open;
        Other -> Other
    end.

%% The initiator side of the version 6 handshake (OTP 23+ 'N' messages).
%% {ok, Socket} once the peer acked, or {error, Why}.
fake_handshake(Port, Name, Cookie) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}, {packet, 2}], 5000),
    Flags = 16#D075F4FBC,
    NodeName = list_to_binary(Name ++ "@" ++ host()),
    ok = gen_tcp:send(S, <<$N, Flags:64, 1:32, (byte_size(NodeName)):16, NodeName/binary>>),
    R = case gen_tcp:recv(S, 0, 15000) of
            {ok, <<$s, "ok">>} ->
                case gen_tcp:recv(S, 0, 15000) of
                    {ok, <<$N, _PeerFlags:64, Challenge:32, _Creation:32, NL:16, _Peer:NL/binary>>} ->
                        Mine = rand:uniform(1 bsl 31),
                        Digest = erlang:md5([Cookie, integer_to_list(Challenge)]),
                        ok = gen_tcp:send(S, <<$r, Mine:32, Digest/binary>>),
                        Expected = erlang:md5([Cookie, integer_to_list(Mine)]),
                        case gen_tcp:recv(S, 0, 15000) of
                            {ok, <<$a, Expected:16/binary>>} -> ok;
                            Other -> {error, {ack, Other}}
                        end;
                    Other -> {error, {challenge, Other}}
                end;
            Other -> {error, {status, Other}}
        end,
    case R of
        ok ->
            ok = inet:setopts(S, [{packet, raw}]),
            {ok, S};
        Err ->
            gen_tcp:close(S),
            Err
    end.

%% The next non-tick packet from a fake peer's socket (raw mode, 4-byte
%% lengths): {Control, Payload | none}, or {error, Why}.
recv_frame(S, Timeout) ->
    case gen_tcp:recv(S, 4, Timeout) of
        {ok, <<0:32>>} -> recv_frame(S, Timeout);
        {ok, <<Len:32>>} ->
            case gen_tcp:recv(S, Len, Timeout) of
                {ok, <<112, Rest/binary>>} ->
                    {Ctl, Used} = binary_to_term(Rest, [used]),
                    case binary:part(Rest, Used, byte_size(Rest) - Used) of
                        <<>> -> {Ctl, none};
                        P -> {Ctl, binary_to_term(P)}
                    end;
                Other -> {error, Other}
            end;
        Other -> {error, Other}
    end.

%%% ===================================================================

now_ms() -> erlang:monotonic_time(millisecond).

str(A) when is_atom(A) -> atom_to_list(A);
str(B) when is_binary(B) -> binary_to_list(B);
str(I) when is_integer(I) -> integer_to_list(I);
str(L) when is_list(L) -> L.

kill_pid(OsPid, Sig) when is_integer(OsPid), OsPid > 1 ->
    _ = os:cmd("kill -" ++ Sig ++ " " ++ integer_to_list(OsPid) ++ " 2>/dev/null"),
    ok;
kill_pid(_, _) -> ok.

%% setpriv --pdeathsig KILL: the child dies with the VM that started it.
wrap(false, Exe, Args) -> {Exe, Args};
wrap(SetPriv, Exe, Args) -> {SetPriv, ["--pdeathsig", "KILL", "--", Exe | Args]}.

find_setpriv() ->
    case os:find_executable("setpriv") of
        false -> false;
        P ->
            %% older util-linux lacks --pdeathsig
            case os:cmd(P ++ " --pdeathsig KILL -- true; echo rc=$?") of
                "rc=0\n" -> P;
                _ -> false
            end
    end.

peer_args(Info, Cookie) ->
    ["-setcookie", Cookie,
     "-start_epmd", "false",
     "-connect_all", "false",
     "-kernel", "inet_dist_use_interface", lists:flatten(io_lib:format("~w", [maps:get(addr, Info)]))]
        ++ lists:append([["-pa", D] || D <- maps:get(code_dirs, Info)]).

free_port() ->
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}, {reuseaddr, true}]),
    {ok, P} = inet:port(L),
    gen_tcp:close(L),
    P.

find_root() ->
    case os:getenv("CNODE_ROOT") of
        R when R =:= false; R =:= "" ->
            walk_up(filename:absname(filename:dirname(code:which(?MODULE))));
        R -> filename:absname(R)
    end.

walk_up(Dir) ->
    case filelib:is_regular(filename:join([Dir, "erlang_test_harness", "TESTNODE.md"])) of
        true -> Dir;
        false ->
            Up = filename:dirname(Dir),
            Up =:= Dir andalso error({cnode_root_not_found, "set CNODE_ROOT"}),
            walk_up(Up)
    end.

%% The C programs under test: the ASan build, or the one CNODE_SAN names
%% (`make tsan` runs the suites with CNODE_SAN=tsan).
san() -> case os:getenv("CNODE_SAN") of false -> "asan"; "" -> "asan"; S -> S end.
testnode_path(Root) -> filename:join([Root, "build", san(), "progs", "cnode_testnode"]).
cnode_path(Root) -> filename:join([Root, "build", san(), "cnode"]).
%% A harness program (erlang_test_harness/c_src/NAME.c) of the build under test.
prog_path(Name) -> filename:join([root(), "build", san(), "progs", Name]).

short_host() ->
    {ok, H} = inet:gethostname(),
    hd(string:split(H, ".")).

host_addr(Host) ->
    case inet:getaddr(Host, inet) of
        {ok, A} -> A;
        _ -> {127, 0, 0, 1}
    end.

erl_exe() ->
    case os:find_executable("erl") of
        false -> filename:join([code:root_dir(), "bin", "erl"]);
        E -> E
    end.

epmd_exe() ->
    case os:find_executable("epmd") of
        false -> filename:join([code:root_dir(), "erts-" ++ erlang:system_info(version), "bin", "epmd"]);
        E -> E
    end.
