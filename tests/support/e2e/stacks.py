"""Stack configs for the e2e host: the dev and prod stacks as users set them, fitted to these machines.

Fitted, not changed: sysctls that are not per network namespace are left alone (`null`); the machine's hard nofile limit is 20000, so the containers' limits stay below
it; data dir and sysctl drop-in live in the test's temp dir, because the host shares the
machine's filesystem.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

from tests.support.e2e.host import E2eHost
from tests.support.lb_stack import CONNACK_ACCEPTED, mqtt_connect_packet, recv_up_to
from tests.support.stackfiles import throwaway_settings

# Global, not per network namespace: fs.*, net.core.netdev_max_backlog (absent in a namespace
# other than the initial one) and the net.core socket buffer limits (read-only there). The
# program's apply refuses each by name; a user on such a host sets them to null, as here.
GLOBAL_SYSCTLS_LEFT_ALONE = dict.fromkeys(
    (
        "fs.file-max",
        "fs.nr_open",
        "net.core.netdev_max_backlog",
        "net.core.rmem_default",
        "net.core.wmem_default",
        "net.core.rmem_max",
        "net.core.wmem_max",
    )
)


# Per namespace, but this machine's kernel (6.18) refuses EMQX's tcp_rmem minimum of 1024 with
# EIO (it takes 4096, the kernel's own default minimum): the apply names the key, so a user sets
# another value, as here.
KERNEL_REFUSES = {"net.ipv4.tcp_rmem": "4096 4096 16777216"}

# Every e2e stack declares the probe client the checks connect as (its password a secret, as a
# user sets one), allowed everything under e2e/; any other client is refused, as in any stack.
PROBE_USERNAME = "e2e-probe"
PROBE_PASSWORD = "e2e-probe-password-7f3a9c"
PROBE_CLIENTS = [{"username": PROBE_USERNAME, "password": PROBE_PASSWORD}]
PROBE_ACL = [{"permission": "allow", "username": PROBE_USERNAME, "topics": ["e2e/#"]}]
# Pulumi.dev.yaml's generated client and its rule.
DEV_CLIENT = "dev-client"
DEV_ACL = [{"permission": "allow", "username": DEV_CLIENT, "topics": ["dev/#"]}]


# Keys the commits before MQTT access do not know (they refuse unknown keys).
ACCESS_KEYS = ("mqttGeneratedClient", "mqttAcl", "mqttClients", "adminNetworks")


def probe_secrets() -> dict[str, Any]:
    """The secrets every e2e stack is initialised with (init_stack's `secrets`)."""
    return {"mqttClients": PROBE_CLIENTS}


def before_access(config: dict[str, Any]) -> dict[str, Any]:
    """A stack's config as a commit before MQTT access takes it (anonymous clients then)."""
    return {key: value for key, value in config.items() if key not in ACCESS_KEYS}


def host_paths(root: Path) -> dict[str, Any]:
    return {
        **throwaway_settings(root),
        "sysctls": {**GLOBAL_SYSCTLS_LEFT_ALONE, **KERNEL_REFUSES},
        # Short grace periods keep the suite fast; the value reaching Docker is what is tested.
        # A node's drain gets half of its grace (render/broker_env.py): 5 s of a 10 s grace were
        # too few on a loaded machine (load average ~30: in an upgrade, 5 of 12 subscriber
        # reconnects came back without their session). A stop takes that long only while clients
        # are still moving (the drain ends when they have).
        "brokerStopGraceSeconds": 30,
        "lbStopGraceSeconds": 5,
        "joinTimeoutSeconds": 120,
    }


def dev_like(host: E2eHost, root: Path, **overrides: Any) -> dict[str, Any]:
    """Pulumi.dev.yaml on the e2e host: local engine socket, commands run in its namespace."""
    return {
        "nodes": 3,
        "waves": 2,
        "emqxRepository": "emqx/emqx",
        "emqxVersion": "5.8.6",
        "dockerHost": host.docker_host,
        "advertiseAddress": "127.0.0.1",
        "lbPort": 8884,
        # The dev stack listens on 127.0.0.1; here clients come from the machine over the veth.
        "lbListenAddress": "0.0.0.0",
        "publicHostname": host.address,
        "tlsMode": "self-signed",
        "tlsDnsNames": ["localhost"],
        "mqttGeneratedClient": DEV_CLIENT,
        "mqttAcl": [*DEV_ACL, *PROBE_ACL],
        **host_paths(root),
        **overrides,
    }


def prod_like(host: E2eHost, root: Path, **overrides: Any) -> dict[str, Any]:
    """Pulumi.prod.yaml on the e2e host: Docker over ssh://, commands over SSH with sudo -n."""
    assert host.ssh is not None
    return {
        "nodes": 2,
        "waves": 2,
        "emqxRepository": "emqx/emqx",
        "emqxVersion": "5.8.6",
        "dockerHost": host.ssh_docker_host,
        "sshHost": host.address,
        "sshPort": host.ssh.port,
        "sshUser": host.ssh.user,
        "sshHostKey": host.host_public_key,
        "hostUseSudo": True,
        "advertiseAddress": host.address,
        "lbPort": 8883,
        "lbListenAddress": host.address,
        "publicHostname": "mqtt.e2e.internal",
        "tlsMode": "provided",
        "purgeData": True,
        "mqttAcl": PROBE_ACL,
        **host_paths(root),
        **overrides,
    }


def lb_attempt(
    address: str,
    port: int,
    context: ssl.SSLContext,
    server_name: str,
    timeout: float = 5.0,
    client_id: str = "e2e-probe",
) -> str:
    """One TLS connection through Nginx with an MQTT CONNECT: "accepted" when some live node sent
    an accepting CONNACK, else what happened instead (what a failed rollout sample reports)."""
    try:
        with (
            socket.create_connection((address, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            tls.settimeout(timeout)
            tls.sendall(mqtt_connect_packet(client_id, username=PROBE_USERNAME, password=PROBE_PASSWORD))
            answer = recv_up_to(tls, 4)
    except (OSError, ssl.SSLError) as error:
        return f"{type(error).__name__}: {error}"
    if answer == CONNACK_ACCEPTED:
        return "accepted"
    return f"CONNACK {answer.hex()}" if answer else "closed before CONNACK"


def lb_answers(address: str, port: int, context: ssl.SSLContext, server_name: str, timeout: float = 5.0) -> bool:
    """One TLS connection through Nginx gets an accepting CONNACK from some live node (as the probe)."""
    return lb_attempt(address, port, context, server_name, timeout) == "accepted"
