"""Three e2e hosts on one bridge, each with its own Docker engine and sshd, for several-host stacks.

Every host takes the same deploy key (the stack has one `sshPrivateKey`); the e2e images
are built into each engine. Probes run inside a host's namespace, so connections come from its
address: a cluster host's, or (from the machine) the bridge's own, which is no cluster host.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.support.bridge import station_in
from tests.support.e2e.host import PRIVATE_DIR, E2eHost, host_down, host_up
from tests.support.e2e.images import ensure_images
from tests.support.e2e.stacks import PROBE_ACL, host_paths

BRIDGE = "emqxe2e-br"
HOST_NAMES = ("a", "b", "c")


@contextlib.contextmanager
def bridged_hosts(names: Sequence[str] = HOST_NAMES) -> Iterator[dict[str, E2eHost]]:
    """Hosts named `names` on one bridge, the first one's deploy key authorized on all."""
    hosts: dict[str, E2eHost] = {}
    try:
        for name in names:
            hosts[name] = host_up(f"emqxe2e-{os.getpid()}-{name}", bridge=BRIDGE, shared_data_root=False)
        first = next(iter(hosts.values()))
        assert first.ssh is not None
        public_key = (first.ssh.key_file.parent / "client_ed25519.pub").read_text()
        for host in hosts.values():
            with (host.state_dir / "ssh" / "authorized_keys").open("a") as keys:
                keys.write(public_key)
            ensure_images(host, emqx_versions=("5.8.6",))
        yield hosts
    finally:
        for host in hosts.values():
            host_down(host)


def several_hosts_stack(hosts: dict[str, E2eHost], root: Path, nodes_per_host: int = 2) -> dict[str, Any]:
    """A stack over `hosts`: engines on their sockets, commands over SSH with sudo, two waves."""
    entries = []
    for name, host in hosts.items():
        assert host.ssh is not None
        entries.append(
            {
                "name": name,
                "address": host.address,
                "nodes": nodes_per_host,
                "dockerHost": host.docker_host,
                "sshPort": host.ssh.port,
                "sshUser": host.ssh.user,
                "sshHostKey": host.host_public_key,
                "useSudo": True,
            }
        )
    return {
        "hosts": entries,
        "waves": 2,
        "emqxRepository": "emqx/emqx",
        "emqxVersion": "5.8.6",
        "lbPort": 8884,
        "lbListenAddress": "0.0.0.0",
        "publicHostname": "mqtt.e2e.internal",
        "tlsMode": "self-signed",
        "tlsDnsNames": ["mqtt.e2e.internal"],
        "mqttAcl": PROBE_ACL,
        **host_paths(root),
        # Each host's own, like /etc/sysctl.d: the hosts share the machine's filesystem otherwise.
        "sysctlDropIn": str(PRIVATE_DIR / "sysctl.d" / "60-emqx-cluster.conf"),
    }


def probe(
    source: E2eHost | None,
    address: str,
    port: int,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
) -> dict[str, Any]:
    """Connect to address:port from `source`'s namespace (None: the machine), optionally with TLS
    verifying `ca` and presenting `cert`/`key`; what happened, as a dict."""
    try:
        if source is None:
            raw = socket.create_connection((address, port), timeout=5)
        else:
            with station_in(source.name, source.address, source.netns, str(source.netns_path)) as station:
                raw = station.connect(address, port, timeout=5)
    except OSError as exc:
        return {"connected": False, "error": type(exc).__name__}
    with raw:
        if ca is None:
            return {"connected": True}
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(ca)
        if cert is not None:
            context.load_cert_chain(cert, key)
        try:
            tls = context.wrap_socket(raw, suppress_ragged_eofs=False)  # a dropped handshake is an error
        except (ssl.SSLError, OSError, ValueError) as exc:
            return {"connected": True, "tls": False, "error": type(exc).__name__}
        peer: dict[str, Any] = tls.getpeercert() or {}
        subject = {name: value for ((name, value),) in peer["subject"]}
        # TLS 1.3: the server's verdict on the client certificate comes after the client's
        # handshake, on the first read: a refusal is a TLS alert (SSLError). An accepted client
        # meets the port's own protocol instead: Erlang's distribution waits for the dialler's
        # handshake (dist_util: the connecting side sends its name first), so the read times
        # out; gen_rpc drops a connection that sends it nothing it knows (EOF, with or without
        # close_notify, or a reset). None of these is a TLS refusal.
        tls.settimeout(3)
        try:
            tls.recv(1)
        except ssl.SSLEOFError:
            pass
        except ssl.SSLError as exc:
            return {"connected": True, "tls": False, "error": type(exc).__name__}
        except OSError:  # timeout, reset
            pass
        finally:
            with contextlib.suppress(OSError):
                tls.close()
    return {"connected": True, "tls": True, "peer": subject.get("commonName")}
