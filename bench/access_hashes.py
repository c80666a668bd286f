"""What authentication costs per connection, for each password hash EMQX's built-in database takes.

Two figures per algorithm (the parameters the program renders: sha256 with a prefix salt, pbkdf2
sha256 x PBKDF2_ITERATIONS, bcrypt with BCRYPT_ROUNDS):

  checks/s/core   password checks one core does, with the primitives EMQX calls (OpenSSL's
                  sha256 and PBKDF2 behind Erlang's crypto and Python's hashlib alike; bcrypt C
                  code in both): the ceiling authentication puts on new connections per core
  connects/s      MQTT CONNECT/CONNACK rounds through the stand-in's gate (which checks the
                  password as EMQX does) in front of mosquitto, `--clients` threads, against
                  the same path with no authenticator (anonymous)

A benchmark, not a test: it prints, it asserts nothing. The gate is one Python event loop (EMQX
spreads checks over every scheduler), so read the connect rates relative to `anonymous`, and
the checks/s/core as the absolute ceiling.

    .venv/bin/python -m bench.access_hashes --seconds 3 --clients 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import tempfile
import threading
import time
from pathlib import Path

from components.config_parse import parse_stack_config
from components.render.access import BCRYPT_ROUNDS, PBKDF2_ITERATIONS, declared_user, hash_password
from components.render.broker_env import access_environment
from tests.support.emqx import emqx58, emqx58_access, mqtt_gate
from tests.support.lb_stack import Mosquitto, mqtt_connect_packet, recv_up_to
from tests.support.ports import free_port

ALGORITHMS = ("sha256", "pbkdf2", "bcrypt")
USER, PASSWORD = "bench", "bench-password-0123456789"
ACCEPTED = b"\x20\x02\x00\x00"


def checks_per_second(algorithm: str, seconds: float) -> float:
    authenticator = node_access(algorithm).settings.authenticator
    assert authenticator is not None
    hashed, salt = hash_password(algorithm, PASSWORD, os.urandom(20))  # type: ignore[arg-type]
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        assert authenticator.algorithm.check(hashed, salt, PASSWORD)
        count += 1
    return count / (time.perf_counter() - started)


def node_access(algorithm: str | None) -> emqx58_access.NodeAccess:
    """What a node holds with this algorithm (None: no authenticator, anonymous)."""
    settings = {"tlsMode": "self-signed"}
    if algorithm is None:
        settings["allowAnonymous"] = "true"
    else:
        settings |= {
            "mqttPasswordHash": algorithm,
            "mqttClients": json.dumps([{"username": USER, "password": PASSWORD}]),
        }
    config = parse_stack_config(settings)
    values = emqx58.env_values(access_environment(config.access))[0]
    table = emqx58_access.UserDb()
    table.import_rows(
        [
            emqx58_access.UserRow.from_json(declared_user(c, config.access.password_hash, "k").as_json())
            for c in config.access.clients
        ],
        override=False,
    )
    return emqx58_access.NodeAccess(emqx58_access.access_settings(values), table)


def connects_per_second(port: int, clients: int, seconds: float) -> float:
    done = [0] * clients
    deadline = time.monotonic() + seconds

    def worker(slot: int) -> None:
        packet = mqtt_connect_packet(f"bench-{slot}", username=USER, password=PASSWORD)
        while time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(packet)
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
        broker = Mosquitto(Path(directory), port=free_port(), verbose_log=False)
        broker.start()
        try:
            for algorithm in (None, *ALGORITHMS):
                checks = checks_per_second(algorithm, args.seconds) if algorithm else float("inf")
                with mqtt_gate.running_gate(node_access(algorithm), broker.port) as port:
                    rate = connects_per_second(port, args.clients, args.seconds)
                storm = "-" if algorithm is None else f"{100_000 / checks:.0f} s"
                shown = "-" if algorithm is None else f"{checks:,.0f}"
                print(f"{algorithm or 'anonymous':<10} {shown:>14} {rate:>11,.0f} {storm:>21}")
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
