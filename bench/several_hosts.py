"""Several hosts: how fast a client is back after its host is lost, and what three hosts'
load balancers carry compared with one.

Deploys the e2e tier's several-host stack (three hosts on one bridge, two nodes each; the EMQX
stand-in, whose MQTT engine is mosquitto per node) and prints:

- reconnect: a client connected through host c's listener pings every PING_INTERVAL s; host c
  is cut off; the time until the client notices (a ping unanswered for PING_TIMEOUT s) and until
  it has a new session through host a's listener;
- publish throughput (QoS 1) with every client on host a's listener, and with the clients
  spread over the three listeners.

A benchmark, not a test: it asserts nothing, and the figures depend on the machine.

    sudo .venv/bin/python -m bench.several_hosts --clients 6 --messages 3000
"""

from __future__ import annotations

import argparse
import ssl
import tempfile
import time
from contextlib import suppress
from pathlib import Path

from bench.lb_throughput import DISCONNECT, PINGREQ, PINGRESP, Route, e2e_toolchain, open_session, publish_rate
from tests.support.e2e.cluster_probe import client_context
from tests.support.e2e.host import E2eHost, link
from tests.support.e2e.pulumi_cli import PulumiProject
from tests.support.e2e.several_hosts import bridged_hosts, several_hosts_stack
from tests.support.lb_stack import recv_up_to

LB_PORT = 8884
PING_INTERVAL = 0.5
PING_TIMEOUT = 1.0


def route(name: str, host: E2eHost, context: ssl.SSLContext) -> Route:
    return Route(label=f"host {name}", host=host.address, port=LB_PORT, tls=context, brokers=2)


def reconnect_after_host_loss(hosts: dict[str, E2eHost], context: ssl.SSLContext) -> tuple[float, float]:
    """(seconds until the client noticed, seconds until its new session through host a)."""
    session = open_session(route("c", hosts["c"], context), "bench-roamer")
    session.settimeout(PING_TIMEOUT)
    link(hosts["c"], up=False)
    cut = time.perf_counter()
    try:
        while True:
            try:
                session.sendall(PINGREQ)
                if recv_up_to(session, 2) != PINGRESP:
                    break
            except (OSError, ssl.SSLError):
                break
            time.sleep(PING_INTERVAL)
        noticed = time.perf_counter() - cut
        session.close()
        fresh = open_session(route("a", hosts["a"], context), "bench-roamer")
        back = time.perf_counter() - cut
        with suppress(OSError):
            fresh.sendall(DISCONNECT)
        fresh.close()
    finally:
        link(hosts["c"], up=True)
    return noticed, back


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--messages", type=int, default=3000, help="per client")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bin_dir = e2e_toolchain()
    if bin_dir is None:
        return 1
    with bridged_hosts() as hosts, tempfile.TemporaryDirectory(prefix="bench-several-hosts-") as tmp:
        root = Path(tmp)
        assert hosts["a"].ssh is not None
        project = PulumiProject.create(root / "project", bin_dir, stack="bench")
        project.init_stack(several_hosts_stack(hosts, root), {"sshPrivateKey": hosts["a"].ssh.private_key_pem})
        try:
            up = project.up()
            print(f"pulumi up, 6 nodes on 3 hosts: {up.seconds:.1f}s")
            context = client_context(project.outputs()["tlsCertificate"])
            for round_ in range(1, args.rounds + 1):
                noticed, back = reconnect_after_host_loss(hosts, context)
                print(
                    f"host loss, round {round_}: noticed after {noticed:.2f}s "
                    f"(ping every {PING_INTERVAL}s, {PING_TIMEOUT}s timeout), "
                    f"new session through host a after {back:.2f}s"
                )
            one = [route("a", hosts["a"], context)]
            three = [route(name, host, context) for name, host in hosts.items()]
            print(f"{'listeners':>9} {'clients':>7} {'msgs/s (QoS 1)':>15}")
            for label, routes in (("1", one), ("3", three)):
                rates = [
                    publish_rate(routes, args.clients, args.messages, 1, 32, f"r{label}-{n}")
                    for n in range(args.rounds)
                ]
                print(f"{label:>9} {args.clients:>7} {max(rates):>15.0f}   (best of {args.rounds})")
        finally:
            project.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
