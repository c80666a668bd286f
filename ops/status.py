"""scripts/status <stack>: one line per node (running in the cluster, connections, uptime,
version) and one per host (its load balancer's ceiling from the `capacity` output, and its
active connections when the `metrics` output gives its Nginx metrics page: client connections
plus the request reading them).

Only `emqx ctl` in each node's container: `cluster status --json` on a running node (who is
in the cluster), then on every node `broker` (version, uptime) and `broker stats`
(live_connections.count). A node that does not answer reads "no" and "-".
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ops.emqx import (
    BrokerInfo,
    EmqxTextError,
    format_duration,
    lb_metrics_urls,
    nginx_active_connections,
    parse_broker,
    parse_broker_stats,
    parse_cluster_status_json,
    render_table,
)
from ops.stack import Node, OpsError, ctl, docker, nodes_of, run_script, running_node, stack_outputs

USAGE = "usage: scripts/status <stack>"
NODE_HEADERS = ("HOST", "NODE", "RUNNING", "CONNECTIONS", "UPTIME", "VERSION")
HOST_HEADERS = ("HOST", "LB CEILING", "DECIDED BY", "LB ACTIVE")


@dataclass(frozen=True)
class NodeReport:
    node: Node
    running: bool
    broker: BrokerInfo | None
    connections: int | None


def node_rows(reports: Sequence[NodeReport]) -> list[list[str]]:
    return [
        [
            r.node.host,
            r.node.name,
            "yes" if r.running else "no",
            "-" if r.connections is None else str(r.connections),
            "-" if r.broker is None else format_duration(r.broker.uptime_seconds),
            "-" if r.broker is None else r.broker.version,
        ]
        for r in reports
    ]


def host_rows(
    hosts: Sequence[str], capacity: Mapping[str, Any], active: Mapping[str, int | None] | None
) -> list[list[str]]:
    """Per host: the ceiling and its bound (`capacity` output), and Nginx's active connections
    ("-" without metrics, "?" when its page does not answer)."""
    rows = []
    for host in hosts:
        entry = capacity.get(host) if isinstance(capacity, Mapping) else None
        ceiling = str(entry.get("ceiling", "-")) if isinstance(entry, Mapping) else "-"
        decided = str(entry.get("decidedBy", "-")) if isinstance(entry, Mapping) else "-"
        if active is None or host not in active:
            lb = "-"
        else:
            count = active[host]
            lb = "?" if count is None else str(count)
        rows.append([host, ceiling, decided, lb])
    return rows


def report(node: Node, running: set[str]) -> NodeReport:
    broker: BrokerInfo | None = None
    connections: int | None = None
    code, text = ctl(node, "broker", timeout=30)
    if code == 0:
        try:
            broker = parse_broker(text)
        except EmqxTextError:
            broker = None
    # The exit code is not read: `broker(["stats"])` returns the list of its prints, not `ok`
    # (emqx_mgmt_cli.erl:81-85 at v5.8.6), and nodetool's `rpc_infinity` halts 1 on anything but
    # `ok` (bin/nodetool:142-152), so real EMQX prints every stat and exits 1. The parser refuses
    # a text without the live connections line, which is what a failed call prints.
    _, text = ctl(node, "broker", "stats", timeout=30)
    try:
        connections = parse_broker_stats(text)["live_connections.count"]
    except EmqxTextError:
        connections = None
    return NodeReport(node, node.name in running, broker, connections)


def lb_active(node: Node, url: str) -> int | None:
    """Nginx's active connections from its metrics page, which listens on its host's loopback:
    fetched with curl inside a node of that host (host network; the EMQX image has curl)."""
    done = docker(node, "exec", node.container, "curl", "-fsS", "--max-time", "5", url, timeout=30)
    if done.returncode != 0:
        return None
    return nginx_active_connections(done.stdout.decode("utf-8", "replace"))


def status(stack: str) -> str:
    outputs = stack_outputs(stack)
    nodes = nodes_of(outputs)
    seed, _ = running_node(nodes)
    code, text = ctl(seed, "cluster", "status", "--json", timeout=60)
    try:
        running, _ = parse_cluster_status_json(text)
    except EmqxTextError as exc:
        raise OpsError(f"emqx ctl cluster status --json on {seed.name} (exit {code}): {exc}") from exc
    reports = [report(node, set(running)) for node in nodes]
    hosts = list(dict.fromkeys(node.host for node in nodes))
    urls = lb_metrics_urls(outputs)
    # Through a node of that host that answered (else its first).
    on_host = {r.node.host: r.node for r in reversed(reports)} | {
        r.node.host: r.node for r in reversed(reports) if r.broker is not None
    }
    active = {host: lb_active(on_host[host], url) for host, url in urls.items() if host in on_host} if urls else None
    return (
        render_table(NODE_HEADERS, node_rows(reports))
        + "\n"
        + render_table(HOST_HEADERS, host_rows(hosts, outputs.get("capacity") or {}, active))
    )


def main(argv: list[str]) -> int:
    return run_script(argv, range(1, 2), USAGE, lambda args: sys.stdout.write(status(args[0])), "status failed")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
