"""What a user checks on a deployed stack: container health, cluster status, MQTT through Nginx."""

from __future__ import annotations

import json
import math
import queue
import re
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.e2e.host import E2eHost
from tests.support.e2e.images import REPO
from tests.support.e2e.stacks import PROBE_PASSWORD, PROBE_USERNAME
from tests.support.lb_stack import MqttSession, connect_mqtt
from tests.support.serve_probe import counts_from_json

EMQX = "/opt/emqx/bin/emqx"
# `emqx ctl clients list`: one `Client(<id>, username=..., peername=<ip>:<port>, ...)` line per
# channel of the local node (emqx_mgmt_cli.erl print({client, ...}) and format(peername, ...)).
PEERNAME = re.compile(r"^Client\((?P<client>[^,]*), username=[^,]*, peername=(?P<ip>.+):\d+, ", re.MULTILINE)


def inspect(host: E2eHost, *names: str) -> dict[str, dict[str, Any]]:
    """`docker inspect` of the named containers that exist (name -> inspect document)."""
    if not names:
        return {}
    done = host.docker("inspect", *names, check=False)
    documents = json.loads(done.stdout or "[]")
    return {str(doc["Name"]).lstrip("/"): doc for doc in documents}


@contextmanager
def listener_probe(host: E2eHost, container: str) -> Iterator[Counter[tuple[str, str]]]:
    """The node's own MQTT listener (on the host's loopback: its BIND in the container's
    environment) probed from inside the host's namespace while the block runs
    (tests/support/serve_probe.py); the counts fill the yielded Counter at its end."""
    env = inspect(host, container)[container]["Config"]["Env"]
    bind = next(item.split("=", 1)[1] for item in env if item.startswith("EMQX_LISTENERS__TCP__DEFAULT__BIND="))
    address, port = bind.strip('"').rsplit(":", 1)
    argv = [sys.executable, "-m", "tests.support.serve_probe", address, port, PROBE_USERNAME, PROBE_PASSWORD]
    probe = subprocess.Popen(
        host.nsenter_argv(*argv),
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    counts: Counter[tuple[str, str]] = Counter()
    try:
        yield counts
    finally:
        out, err = probe.communicate("", timeout=60)
        if probe.returncode != 0:
            raise AssertionError(f"the listener probe failed ({probe.returncode}): {err}")
        counts.update(counts_from_json(out))


def container_names(host: E2eHost, label: str = "io.emqx-cluster.node") -> list[str]:
    out = host.docker("ps", "--all", "--filter", f"label={label}", "--format", "{{.Names}}").stdout
    return sorted(out.split())


def health(host: E2eHost, *names: str) -> dict[str, str]:
    """name -> 'healthy' / 'starting' / 'unhealthy' / 'exited' / 'missing'."""
    documents = inspect(host, *names)
    states: dict[str, str] = {}
    for name in names:
        doc = documents.get(name)
        if doc is None:
            states[name] = "missing"
        elif not doc["State"]["Running"]:
            states[name] = str(doc["State"]["Status"])
        else:
            states[name] = str(doc["State"].get("Health", {}).get("Status", "running"))
    return states


def cluster_status(host: E2eHost, container: str) -> dict[str, list[str]]:
    """`emqx ctl cluster status --json` as the node answers it (running_nodes, stopped_nodes)."""
    done = host.docker("exec", container, EMQX, "ctl", "cluster", "status", "--json", check=False)
    if done.returncode != 0:
        raise AssertionError(f"cluster status on {container} failed ({done.returncode}): {done.stderr}")
    status = json.loads(done.stdout)
    return {key: sorted(status.get(key, [])) for key in ("running_nodes", "stopped_nodes")}


def client_peers(host: E2eHost, container: str) -> dict[str, str]:
    """Client id -> the address EMQX took as the client's for the node's connected clients: with
    PROXY protocol, the source Nginx read, not Nginx's own. The exit code is not read: `clients
    list` returns its prints, not `ok`, so nodetool exits 1 after printing them all."""
    done = host.docker("exec", container, EMQX, "ctl", "clients", "list", check=False)
    return {match["client"]: match["ip"] for match in PEERNAME.finditer(done.stdout)}


def peers_through_lb(host: E2eHost, nodes: Sequence[str], address: str, port: int, context: ssl.SSLContext) -> set[str]:
    """The addresses the nodes see for a client held open through the load balancer."""
    client_id = f"e2e-peer-{uuid.uuid4().hex[:10]}"
    session = connect_mqtt(
        address, port, client_id=client_id, tls_context=context, username=PROBE_USERNAME, password=PROBE_PASSWORD
    )
    try:
        return {peers[client_id] for node in nodes if client_id in (peers := client_peers(host, node))}
    finally:
        session.close()


def delivered_across_nodes(
    edges: Sequence[tuple[E2eHost, Sequence[str]]], port: int, context: ssl.SSLContext, attempts: int = 30
) -> dict[str, bool]:
    """Node -> whether its subscriber got a message that a client on ANOTHER node published.
    `edges`: each host with the nodes its load balancer sends clients to. Subscribers connect
    through each host's load balancer until every node holds one (EMQX's `clients list` names
    the node), then a publisher on the first host's first reachable node sends one QoS 1
    message. Only a real cluster routes it (EMQX's route table, replicated by mria, and gen_rpc
    forwarding)."""
    sessions: list[MqttSession] = []

    def connect(host: E2eHost, nodes: Sequence[str], prefix: str) -> tuple[MqttSession, str | None]:
        client_id = f"e2e-{prefix}-{uuid.uuid4().hex[:8]}"
        session = connect_mqtt(
            host.address,
            port,
            client_id=client_id,
            tls_context=context,
            username=PROBE_USERNAME,
            password=PROBE_PASSWORD,
        )
        sessions.append(session)
        return session, next((node for node in nodes if client_id in client_peers(host, node)), None)

    topic = f"e2e/cross/{uuid.uuid4().hex[:8]}"
    expected = [node for _, nodes in edges for node in nodes]
    try:
        subscribers: dict[str, MqttSession] = {}
        for host, nodes in edges:
            for _ in range(attempts):
                if all(node in subscribers for node in nodes):
                    break
                session, where = connect(host, nodes, "sub")
                if where is not None and where not in subscribers:
                    session.subscribe(topic, qos=1)
                    subscribers[where] = session
        assert sorted(subscribers) == sorted(expected), f"subscribers on {sorted(subscribers)} only"
        publisher, on = connect(*edges[0], "pub")
        assert on is not None, "the publisher is on no node"
        publisher.publish(topic, b"across the cluster", qos=1)
        got: dict[str, bool] = {}
        for node, subscriber in subscribers.items():
            try:
                got[node] = subscriber.receive(timeout=15).payload == b"across the cluster"
            except queue.Empty:
                got[node] = False
        return got
    finally:
        for session in sessions:
            session.close()


def client_context(ca_pem: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def round_trip(
    address: str,
    port: int,
    context: ssl.SSLContext,
    server_name: str | None = None,
    *,
    username: str = PROBE_USERNAME,
    password: str = PROBE_PASSWORD,
    topic: str | None = None,
) -> str:
    """Subscribe, publish QoS 1 and receive it through the TLS listener, as the probe client (or
    `username`, on a `topic` its rules allow); returns the client id."""
    client_id = f"e2e-{uuid.uuid4().hex[:10]}"
    if server_name is not None:
        context.check_hostname = True
    session = connect_mqtt(
        address, port, client_id=client_id, tls_context=context, username=username, password=password
    )
    try:
        topic = topic or f"e2e/{client_id}"
        session.subscribe(topic, qos=1)
        session.publish(topic, b"hello through nginx", qos=1)
        message = session.receive(timeout=15)
        assert message.payload == b"hello through nginx"
    finally:
        session.close()
    return client_id


@dataclass
class RolloutWatch:
    """Polls node health and the load balancer while an update runs (a thread).

    `lb_attempt` answers "accepted" or what happened instead (stacks.lb_attempt)."""

    host: E2eHost
    nodes: Sequence[str]
    lb_attempt: Callable[[], str]
    interval: float = 0.5
    samples: list[tuple[float, dict[str, str], str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RolloutWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            states = health(self.host, *self.nodes)
            self.samples.append((time.monotonic(), states, self.lb_attempt()))
            self._stop.wait(self.interval)

    @property
    def most_down_at_once(self) -> int:
        return max((sum(1 for s in states.values() if s != "healthy") for _, states, _ in self.samples), default=0)

    @property
    def lb_failures(self) -> list[tuple[dict[str, str], str]]:
        """The node states and the load balancer's answer of each sample it did not accept."""
        return [(states, outcome) for _, states, outcome in self.samples if outcome != "accepted"]


def most_allowed_down(nodes: int, waves: int) -> int:
    return math.ceil(nodes / waves)
