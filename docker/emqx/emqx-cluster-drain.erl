%% Evaluated in the running node by `emqx eval` (bin/emqx, eval -> nodetool emqx_ctl eval_erl)
%% when its container is asked to stop, before EMQX's own shutdown: the node's MQTT clients move
%% to the other nodes while this one still holds their sessions, so a persistent session
%% (session expiry > 0) is taken over there with its queued and in-flight messages. EMQX's own
%% shutdown would drop them: prep_stop stops the listeners and with them every connection
%% process, which is the session (emqx_app.erl prep_stop/1, v5.8.6), and the open-source
%% edition has no node evacuation (apps/emqx_node_rebalance is BSL, not in this release) nor a
%% clustered durable session store (apps/emqx_ds_builtin_local/README.md: "cannot be used in a
%% clustered EMQX setup").
%%  1. Refuse new connections, keep the open ones: per esockd listener, its acceptors and listen
%%     socket go, its connection supervisor stays (esockd 5.13.0 esockd_listener_sup:init/1,
%%     children connection_sup, listener, acceptor_sup, starter; rest_for_one, and an explicit
%%     terminate_child restarts nothing). A client, or Nginx's proxy_next_upstream, then meets a
%%     refused connection here and goes to another node.
%%  2. Close each client's socket and nothing else: `{close, Reason}` (emqx_connection.erl
%%     handle_msg/2) -> sock_closed; a channel with a session expiry stays, disconnected, until
%%     its client reconnects elsewhere and takes it over (emqx_channel.erl handle_info/2
%%     sock_closed, maybe_shutdown/3), or it expires.
%%  3. Wait until every channel that was connected has ended (taken over, or no session to
%%     keep), at most BROKER_DRAIN_SECONDS (not EMQX_*: bin/emqx reads those as config).
Seconds = list_to_integer(os:getenv("BROKER_DRAIN_SECONDS", "20")),
Deadline = erlang:monotonic_time(millisecond) + Seconds * 1000,
lists:foreach(
    fun({Listener, _}) ->
        {Sup, _} = esockd_sup:listener_and_module(Listener),
        [supervisor:terminate_child(Sup, Child) || Child <- [starter, acceptor_sup, listener]]
    end,
    esockd:listeners()
),
Connected = [Pid || Pid <- emqx_cm:all_channels(), emqx_cm:is_channel_connected(Pid)],
[Pid ! {close, node_draining} || Pid <- Connected],
Wait = fun Loop() ->
    case [Pid || Pid <- Connected, is_process_alive(Pid)] of
        [] -> {drained, length(Connected)};
        Left ->
            case erlang:monotonic_time(millisecond) >= Deadline of
                true -> {timeout, length(Connected), length(Left)};
                false -> timer:sleep(200), Loop()
            end
    end
end,
Wait().
