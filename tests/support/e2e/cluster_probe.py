"""What a user checks on a deployed stack: container health, cluster status, MQTT through Nginx."""

from __future__ import annotations

import json
import math
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.support.e2e.host import E2eHost
from tests.support.e2e.stacks import PROBE_PASSWORD, PROBE_USERNAME
from tests.support.lb_stack import connect_mqtt

EMQX = "/opt/emqx/bin/emqx"
PROXY_EVENTS = "/tmp/emqx-standin/proxy-events.jsonl"  # the stand-in's PROXY listener log


def inspect(host: E2eHost, *names: str) -> dict[str, dict[str, Any]]:
    """`docker inspect` of the named containers that exist (name -> inspect document)."""
    if not names:
        return {}
    done = host.docker("inspect", *names, check=False)
    documents = json.loads(done.stdout or "[]")
    return {str(doc["Name"]).lstrip("/"): doc for doc in documents}


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


def proxied_sources(host: E2eHost, container: str) -> list[str]:
    """Client addresses the node's MQTT listener learnt from Nginx's PROXY headers."""
    done = host.docker("exec", container, "cat", PROXY_EVENTS, check=False)
    sources: list[str] = []
    for line in done.stdout.splitlines():
        event = json.loads(line)
        if event.get("event") == "proxied" and event.get("source"):
            sources.append(str(event["source"][0]))
    return sources


def client_context(ca_pem: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def round_trip(address: str, port: int, context: ssl.SSLContext, server_name: str | None = None) -> str:
    """Subscribe, publish QoS 1 and receive it through the TLS listener, as the probe client;
    returns the client id."""
    client_id = f"e2e-{uuid.uuid4().hex[:10]}"
    if server_name is not None:
        context.check_hostname = True
    session = connect_mqtt(
        address, port, client_id=client_id, tls_context=context, username=PROBE_USERNAME, password=PROBE_PASSWORD
    )
    try:
        topic = f"e2e/{client_id}"
        session.subscribe(topic, qos=1)
        session.publish(topic, b"hello through nginx", qos=1)
        message = session.receive(timeout=15)
        assert message.payload == b"hello through nginx"
    finally:
        session.close()
    return client_id


@dataclass
class RolloutWatch:
    """Polls node health and the load balancer while an update runs (a thread)."""

    host: E2eHost
    nodes: Sequence[str]
    lb_check: Callable[[], bool]
    interval: float = 0.5
    samples: list[tuple[float, dict[str, str], bool]] = field(default_factory=list)
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
            self.samples.append((time.monotonic(), states, self.lb_check()))
            self._stop.wait(self.interval)

    @property
    def most_down_at_once(self) -> int:
        return max((sum(1 for s in states.values() if s != "healthy") for _, states, _ in self.samples), default=0)

    @property
    def lb_failures(self) -> int:
        return sum(1 for _, _, ok in self.samples if not ok)


def most_allowed_down(nodes: int, waves: int) -> int:
    return math.ceil(nodes / waves)
