%%% Certificates and ssl_dist_optfiles for the TLS suites (tls_SUITE, ipv6_SUITE's inet6_tls
%%% cases), made with the openssl command in a directory (the suite's priv_dir): CAs,
%%% certificates one of them signs with a given subjectAltName, and optfiles as BEAM users
%%% write them for -ssl_dist_optfile, which the C nodes are given too.
-module(tls_certs).

-export([ca/3, cert/6, optfile/5]).

%% A self-signed CA: Dir/Name.pem and Dir/Name.key.
ca(Dir, Name, Cn) ->
    sh(Dir, io_lib:format("openssl req -x509 -newkey rsa:2048 -nodes -keyout ~s.key -out ~s.pem -days 2 -subj /CN=~s",
                          [Name, Name, Cn])).

%% Dir/Name.pem and Dir/Name.key, signed by the CA Ca, valid for Days (negative: expired now,
%% its notAfter before its notBefore), with subjectAltName San (e.g. "DNS:h,IP:::1").
cert(Dir, Name, Ca, Days, San, Cn) ->
    Ext = Name ++ ".ext",
    ok = file:write_file(filename:join(Dir, Ext), ["subjectAltName=", San, "\n"]),
    sh(Dir, io_lib:format("openssl req -newkey rsa:2048 -nodes -keyout ~s.key -out ~s.csr -subj /CN=~s",
                          [Name, Name, Cn])),
    sh(Dir, io_lib:format("openssl x509 -req -in ~s.csr -CA ~s.pem -CAkey ~s.key -CAcreateserial "
                          "-out ~s.pem -days ~b -extfile ~s", [Name, Ca, Ca, Name, Days, Ext])).

%% An optfile in Dir named File: the certificate Name with its key, the CA file Ca.pem,
%% verify_peer both ways (a client certificate required), Extra on both sides. ClientText is
%% Erlang text added to the client options as written (e.g. a fun: the file is evaluated as an
%% expression by BEAM's ssl_dist_sup), or "". The file's path.
optfile(Dir, File, {Name, Ca}, Extra, ClientText) ->
    F = fun(P) -> filename:join(Dir, P) end,
    O = [{certfile, F(Name ++ ".pem")}, {keyfile, F(Name ++ ".key")},
         {cacertfile, F(Ca ++ ".pem")}, {verify, verify_peer} | Extra],
    Client = lists:flatten(io_lib:format("~p", [O])),
    ClientAll = case ClientText of
                    "" -> Client;
                    _ -> lists:droplast(Client) ++ ",\n  " ++ ClientText ++ "]"
                end,
    Path = F(File),
    ok = file:write_file(Path, io_lib:format("[{server, ~p},~n {client, ~s}].~n",
                                             [[{fail_if_no_peer_cert, true} | O], ClientAll])),
    Path.

sh(Dir, Cmd) ->
    Out = os:cmd("cd '" ++ Dir ++ "' && " ++ lists:flatten(Cmd) ++ " 2>&1; echo \"rc=$?\""),
    lists:suffix("rc=0\n", Out) orelse ct:fail({openssl, lists:flatten(Cmd), Out}),
    ok.
