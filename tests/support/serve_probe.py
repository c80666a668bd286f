"""What a node's MQTT listener answers while it boots, joins or restarts: CONNECTs over and over
(a declared client, one with no credentials, one of an unknown user; each with the PROXY line
Nginx sends) and a count of the answers, until stopped.

A node that serves too early lets the second and third in (CONNACK 0) or refuses the first with
0x87 (5 in MQTT 3.1.1): docker/emqx/emqx-cluster-serve.erl says when EMQX 5.8.6 does either.
One that serves right only refuses connections until it answers every one as a booted node does.

Used in-process by the integration tier and, in an e2e host's network namespace (where the
nodes' listeners are, on its loopback), as `python -m tests.support.serve_probe <host> <port>
<username> <password>`, which probes until its standard input closes and prints the counts as JSON.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.support.lb_stack import raw_mqtt_connect

ACCEPTED = "20020000"  # CONNACK, return code 0
BAD_CREDENTIALS = "20020004"
NOT_AUTHORIZED = "20020005"
KINDS = ("declared", "anonymous", "unknown")


def attempt(host: str, port: int, username: str | None, password: str | None) -> str:
    """One CONNECT: the CONNACK's hex, "closed" when the node closed first, or the socket error."""
    client_id = f"probe-{uuid.uuid4().hex[:8]}"
    try:
        reply = raw_mqtt_connect(
            host, port, client_id, proxy_protocol=True, username=username, password=password, timeout=3
        )
    except OSError as error:
        return type(error).__name__
    return reply.hex() or "closed"


@dataclass
class ServeProbe:
    """Counts of (kind, answer) for the CONNECTs made so far."""

    host: str
    port: int
    username: str
    password: str
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def credentials(self, kind: str) -> tuple[str | None, str | None]:
        return {
            "declared": (self.username, self.password),
            "anonymous": (None, None),
            "unknown": (f"unknown-{uuid.uuid4().hex[:6]}", "any-password-at-all"),
        }[kind]

    def run(self, kind: str, stop: threading.Event) -> None:
        while not stop.is_set():
            self.counts[(kind, attempt(self.host, self.port, *self.credentials(kind)))] += 1
            time.sleep(0.02)


def wrong_answers(counts: Counter[tuple[str, str]]) -> dict[str, int]:
    """What a node that serves right never answers: a stranger let in, the declared client refused."""
    wrong = {
        "anonymous accepted": counts[("anonymous", ACCEPTED)],
        "unknown user accepted": counts[("unknown", ACCEPTED)],
        "declared client refused 5": counts[("declared", NOT_AUTHORIZED)],
        "declared client refused 4": counts[("declared", BAD_CREDENTIALS)],
    }
    return {what: count for what, count in wrong.items() if count}


def counts_from_json(text: str) -> Counter[tuple[str, str]]:
    """The counts `main` printed."""
    return Counter({(kind, answer): count for kind, answer, count in json.loads(text)})


@contextmanager
def serve_probe(host: str, port: int, username: str, password: str) -> Iterator[ServeProbe]:
    """Probe the listener at host:port from three threads until the block ends."""
    probe = ServeProbe(host, port, username, password)
    stop = threading.Event()
    threads = [threading.Thread(target=probe.run, args=(kind, stop), daemon=True) for kind in KINDS]
    for thread in threads:
        thread.start()
    try:
        yield probe
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)


def main(argv: list[str]) -> int:
    """Probe until standard input closes, then print the counts."""
    host, port, username, password = argv
    with serve_probe(host, int(port), username, password) as probe:
        sys.stdin.read()
    print(json.dumps([[kind, answer, count] for (kind, answer), count in sorted(probe.counts.items())]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
