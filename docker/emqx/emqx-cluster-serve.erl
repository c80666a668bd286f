%% Evaluated by the node itself (`-eval file:script(...)`, the entrypoint's ERL_AFLAGS) once its
%% boot script has run, before init:get_status/0 says `started`: from then on the node serves MQTT
%% only while every one of its apps runs, on boot and through a join. On shutdown the
%% entrypoint's drain closes the listeners first (emqx-cluster-drain.erl; EMQX's own stop_apps/0
%% stops emqx_auth before the listeners, and with boot_modules [broker] the emqx app's prep_stop
%% leaves them to esockd's stop).
%%
%% Why: EMQX 5.8.6 opens its listeners when the `emqx` app starts (emqx_app.erl start/2,
%% maybe_start_listeners), before the apps that authenticate clients (emqx_machine_boot.erl:
%% BASIC_REBOOT_APPS start first, emqx_auth after). Until emqx_auth starts, the
%% `client.authenticate` hook is empty and a client is let in as anonymous
%% (emqx_access_control.erl authenticate/1: `ignore` -> {ok, ...}); then, until the authenticators
%% exist, every client is refused 0x87 (emqx_authn_chains.erl init/1 hook_deny,
%% authenticate_deny/2). Measured on the release here, per boot: some hundreds of CONNECTs with no
%% password or an unknown user accepted, then tens of valid ones refused. A join reboots the apps
%% the same way (ekka:callback start/stop, set by emqx_machine_boot.erl start_autocluster/0), and
%% so does a stop of the apps, in reverse: emqx_auth goes before the listeners.
%%
%% So the node boots with `-emqx boot_modules [broker]` (emqx_boot.erl: the emqx app then neither
%% starts nor stops the listeners: emqx_app.erl maybe_start_listeners/0, prep_stop/1), and this:
%%  - opens the listeners now, when every app runs (the boot script has started emqx_machine,
%%    whose post_boot/0 starts the apps, inside its supervisor's init);
%%  - replaces the reboot callbacks EMQX set (ekka 0.19.8 ekka.erl callback/2, exec_callback/1,
%%    run by mria on a join): close the listeners before the apps stop, open them once the apps
%%    are started again.
%% emqx_listeners:start/0 also adds the listeners' config handlers the emqx app would have added.
%% ERL_AFLAGS reaches every VM bin/emqx starts (its nodetool and hocon escripts too): only an
%% EMQX node (its emqx_machine_sup registered) does anything.
case whereis(emqx_machine_sup) of
    undefined ->
        not_an_emqx_node;
    _ ->
        %% Whatever fails here stops the node, exit status 1, as a failed EMQX boot does (the VM
        %% halts), instead of leaving it up with its listeners closed: init ignores what -eval
        %% returns and file:script/1 turns an exception into a return value, and mria runs the
        %% callbacks inside a catch (mria_lib.erl exec_callback/2). A listener that cannot start
        %% (its port taken) is one such failure: emqx_listeners.erl start_listener/3 has written
        %% "Failed to start listener <id> on <bind>: <reason>" to standard error first (?ELOG:
        %% io:format, which returns once written). Not init:stop/1: stopping every app in order
        %% took over a minute under load.
        Fail = fun(What, Class, Reason) ->
            io:format(standard_error, "emqx-cluster: ~s failed, the node stops: ~p:~p~n", [What, Class, Reason]),
            erlang:halt(1)
        end,
        Start = fun() ->
            try
                _ = emqx_machine_boot:ensure_apps_started(),
                ok = emqx_listeners:start()
            catch
                Class:Reason -> Fail("opening the listeners after the apps restarted", Class, Reason)
            end
        end,
        Stop = fun() ->
            _ = (catch emqx_listeners:stop()),
            emqx_machine_boot:stop_apps()
        end,
        try
            ok = ekka:callback(start, Start),
            ok = ekka:callback(stop, Stop),
            ok = emqx_listeners:start(),
            io:format("emqx-cluster: listeners open, the node serves (~p)~n", [init:get_status()]),
            serving
        catch
            Class:Reason -> Fail("opening the listeners", Class, Reason)
        end
end.
