"""What authentication costs per connection, for each password hash EMQX's built-in database takes.

Two figures per algorithm (the parameters the program renders: sha256 with a prefix salt, pbkdf2
sha256 x PBKDF2_ITERATIONS, bcrypt with BCRYPT_ROUNDS):

  checks/s/core   password checks one core does, with the primitives EMQX calls (OpenSSL's
                  sha256 and PBKDF2 behind Erlang's crypto and Python's hashlib alike; bcrypt C
                  code in both): the ceiling authentication puts on new connections per core
  connects/s      MQTT CONNECT/CONNACK rounds against a real EMQX 5.8.6 node (the release run
                  without Docker, tests/support/emqx_nodes.py, with the program's environment
                  and users file; a PROXY header first, as Nginx sends), `--clients` threads,
                  against the same node with no authenticator (anonymous)

A benchmark, not a test: it prints, it asserts nothing. The node shares this machine's cores
with the connecting threads, so read the connect rates relative to `anonymous`, and the
checks/s/core as the absolute ceiling. Needs root (the node runs as its own user) and the
extracted release (scripts/install-test-deps).

    .venv/bin/python -m bench.access_hashes --seconds 3 --clients 8
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import socket
import tempfile
import threading
import time
from pathlib import Path

import bcrypt

from components.render.access import BCRYPT_ROUNDS, PBKDF2_ITERATIONS, hash_password
from tests.support.emqx_nodes import ReleaseNode, release_cluster, release_stack
from tests.support.lb_stack import mqtt_connect_packet, proxy_v1_header, recv_up_to

ALGORITHMS = ("sha256", "pbkdf2", "bcrypt")
USER, PASSWORD = "bench", "bench-password-0123456789"
ACCEPTED = b"\x20\x02\x00\x00"


def check(algorithm: str, hashed: str, salt: str, password: str) -> bool:
    """One password check with the primitive EMQX calls for it (emqx_passwd.erl check_pass/2)."""
    if algorithm == "bcrypt":
        return bcrypt.checkpw(password.encode(), hashed.encode())
    if algorithm == "pbkdf2":
        return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), PBKDF2_ITERATIONS).hex() == hashed
    return hashlib.sha256((salt + password).encode()).hexdigest() == hashed


def checks_per_second(algorithm: str, seconds: float) -> float:
    hashed, salt = hash_password(algorithm, PASSWORD, os.urandom(20))  # type: ignore[arg-type]
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        assert check(algorithm, hashed, salt, PASSWORD)
        count += 1
    return count / (time.perf_counter() - started)


def stack(directory: Path, algorithm: str | None) -> dict[str, object]:
    """A one-node stack with this algorithm and the bench's client (None: anonymous)."""
    if algorithm is None:
        config = release_stack(directory, nodes=1, allowAnonymous="true")
        del config["emqx-cluster:mqttGeneratedClient"]  # refused beside allowAnonymous
        return config
    clients = json.dumps([{"username": USER, "password": PASSWORD}])
    return release_stack(directory, nodes=1, mqttPasswordHash=algorithm, mqttClients=clients)


def connects_per_second(node: ReleaseNode, clients: int, seconds: float) -> float:
    done = [0] * clients
    deadline = time.monotonic() + seconds
    host, port = node.plan.mqtt_endpoint.rsplit(":", 1)

    def worker(slot: int) -> None:
        packet = mqtt_connect_packet(f"bench-{slot}", username=USER, password=PASSWORD)
        while time.monotonic() < deadline:
            with socket.create_connection((host, int(port)), timeout=30) as sock:
                sock.sendall(proxy_v1_header(sock) + packet)
                if recv_up_to(sock, 4) != ACCEPTED:
                    raise RuntimeError("refused")
                sock.sendall(b"\xe0\x00")
            done[slot] += 1

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"pbkdf2: sha256 x {PBKDF2_ITERATIONS}; bcrypt: {BCRYPT_ROUNDS} rounds; {args.clients} connecting threads")
    print(f"{'algorithm':<10} {'checks/s/core':>14} {'connects/s':>11} {'100k reconnects/core':>21}")
    with tempfile.TemporaryDirectory() as directory:
        for algorithm in (None, *ALGORITHMS):
            checks = checks_per_second(algorithm, args.seconds) if algorithm else float("inf")
            with release_cluster(stack(Path(directory) / (algorithm or "anonymous"), algorithm)) as cluster:
                rate = connects_per_second(cluster.node(1), args.clients, args.seconds)
            storm = "-" if algorithm is None else f"{100_000 / checks:.0f} s"
            shown = "-" if algorithm is None else f"{checks:,.0f}"
            print(f"{algorithm or 'anonymous':<10} {shown:>14} {rate:>11,.0f} {storm:>21}", flush=True)


if __name__ == "__main__":
    main()
