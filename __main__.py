"""emqx-cluster: an EMQX cluster on one or several Docker hosts, each behind an Nginx TLS load balancer."""

import os
import signal
import sys
from types import FrameType

import pulumi
from pulumi.runtime.settings import get_monitor

from components import names
from components.args_config import stack_args
from components.config_loader import load_stack_config
from components.config_parse import ConfigError
from components.emqx_cluster import EmqxCluster
from provider import serve


def _stop_quietly(signum: int, frame: FrameType | None) -> None:
    """Exit at once, saying nothing: the engine has reported why it stopped the program.

    When a resource fails (or the user cancels), the engine cancels the program's run and the
    Python language host sends it SIGINT (the host ships with the Pulumi CLI, not with the SDK
    requirements.txt pins; sdk/python/cmd/pulumi-language-python main.go at v3.259.0, the newest
    tag read, and unchanged on master of 2026-08-21: `cmd.Cancel` signals os.Interrupt once the
    Cancel RPC fires or the Run request ends; the e2e toolchain's own host,
    scripts/e2e-toolchain.d/pulumi-language-python, does the same). Python's default turns that
    into a KeyboardInterrupt wherever the program is, often inside the SDK's handling of the
    monitor's shutdown (the pinned SDK, pulumi 3.272.0: runtime/resource.py formats a traceback
    for a debug log there); its pulumi-language-python-exec catches neither KeyboardInterrupt nor
    BaseException (only RunError and Exception), so the operator would read two Python
    tracebacks under the resource's own error. Exit code 32 tells the language host that the
    error was already shown (`Bail`).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(32)


def build_stack() -> None:
    """The stack-config program: `emqx-cluster:*` keys in, one cluster, its outputs exported."""
    signal.signal(signal.SIGINT, _stop_quietly)
    try:
        # The stack config, validated as the keys users write, handed over as the cluster's args.
        args = stack_args(load_stack_config())
    except ConfigError as error:
        # RunError: the engine prints the message alone, with "a clean exit rather than the usual
        # verbose unhandled error logic" (pulumi/errors.py), not a Python traceback.
        raise pulumi.RunError(str(error)) from None
    # Named `emqx` as since the first deployment: every resource keeps its URN (components/names.py).
    cluster = EmqxCluster(names.TOP, args)

    pulumi.export("endpoint", cluster.endpoint)
    pulumi.export("endpoints", cluster.endpoints)
    pulumi.export("dnsRoundRobin", cluster.dns_round_robin)
    pulumi.export("nodes", cluster.nodes)
    pulumi.export("dashboardUrls", cluster.dashboard_urls)
    pulumi.export("dashboards", cluster.dashboards)
    pulumi.export("tlsCertificate", cluster.tls_certificate)
    pulumi.export("dashboardPassword", cluster.dashboard_password)
    if cluster.mqtt_client is not None:
        pulumi.export("mqttClient", cluster.mqtt_client)
    pulumi.export("mqttAuthentication", cluster.mqtt_authentication)
    pulumi.export("capacity", cluster.capacity)
    pulumi.export("metrics", cluster.metrics)


# One folder, two entry points. As a program, the Python language host's exec script connects
# the SDK to the engine's resource monitor before it runs this file (pulumi-language-python-exec:
# `pulumi.runtime.configure(settings)`, then `runpy.run_path`; the stack tier's mocks set one
# too). As the component package's plugin (PulumiPlugin.yaml), the language host's RunPlugin
# runs `python <this folder> <engine address> ...` with no monitor: then serve the component.
if get_monitor() is None:
    serve()
else:
    build_stack()
