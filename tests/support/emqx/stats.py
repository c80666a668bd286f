"""EMQX 5.8's Prometheus stats endpoint as the metrics tests meet it: `GET
/api/v5/prometheus/stats` on the dashboard listener, Prometheus text, no authentication.

Checked in emqx/emqx v5.8.6: apps/emqx_prometheus/src/emqx_prometheus_api.erl serves the path
with `security => []` unless `prometheus.enable_basic_auth` (default false, emqx_prometheus_schema
.erl), `mode` defaults to `node` (an unknown value too), the reply is `text/plain` unless Accept
is exactly application/json; emqx_prometheus.erl names the metrics (gauges
emqx_connections_count, emqx_cluster_nodes_running/stopped, emqx_vm_total/used_memory; counters
without a `_total` suffix: emqx_messages_dropped, emqx_authentication_failure). `stats_text`
renders them; `StatsEndpoint` serves them for a node the integration tier does not run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATS_PATH = "/api/v5/prometheus/stats"
GAUGES = (
    "emqx_connections_count",
    "emqx_live_connections_count",
    "emqx_cluster_nodes_running",
    "emqx_cluster_nodes_stopped",
    "emqx_vm_total_memory",
    "emqx_vm_used_memory",
)
COUNTERS = (
    "emqx_messages_received",
    "emqx_messages_sent",
    "emqx_messages_dropped",
    "emqx_messages_dropped_no_subscribers",
    "emqx_authentication_failure",
)


def stats_text(values: Mapping[str, float]) -> str:
    """The metrics in Prometheus text format, as `mode=node` renders them (no `node` label)."""
    lines = []
    for kind, names in (("gauge", GAUGES), ("counter", COUNTERS)):
        for name in names:
            lines += [f"# TYPE {name} {kind}", f"{name} {values.get(name, 0):g}"]
    return "\n".join(lines) + "\n"


class StatsEndpoint:
    """One node's stats endpoint on `port` of loopback; `values` may change while it serves."""

    def __init__(self, port: int, values: Mapping[str, float]) -> None:
        self.values = dict(values)
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != STATS_PATH:
                    self.send_error(404)
                    return
                body = stats_text(endpoint.values).encode()
                self.send_response(200)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def serving(port: int, values: Mapping[str, float]) -> Iterator[StatsEndpoint]:
    endpoint = StatsEndpoint(port, values)
    endpoint.start()
    try:
        yield endpoint
    finally:
        endpoint.stop()
