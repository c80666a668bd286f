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
# Every metric family emqx_prometheus.erl (v5.8.6) declares in its *_metric_meta lists, by type
# (a few only with some listeners, editions or durable storage): the page has them all.
GAUGES = [
    "emqx_connections_count",
    "emqx_connections_max",
    "emqx_live_connections_count",
    "emqx_live_connections_max",
    "emqx_sessions_count",
    "emqx_sessions_max",
    "emqx_channels_count",
    "emqx_channels_max",
    "emqx_suboptions_count",
    "emqx_suboptions_max",
    "emqx_subscribers_count",
    "emqx_subscribers_max",
    "emqx_subscriptions_count",
    "emqx_subscriptions_max",
    "emqx_durable_subscriptions_count",
    "emqx_durable_subscriptions_max",
    "emqx_delayed_count",
    "emqx_delayed_max",
    "emqx_cluster_sessions_count",
    "emqx_cluster_sessions_max",
    "emqx_topics_max",
    "emqx_topics_count",
    "emqx_retained_count",
    "emqx_retained_max",
    "emqx_subscriptions_shared_count",
    "emqx_subscriptions_shared_max",
    "emqx_vm_cpu_use",
    "emqx_vm_cpu_idle",
    "emqx_vm_run_queue",
    "emqx_vm_process_messages_in_queues",
    "emqx_vm_total_memory",
    "emqx_vm_used_memory",
    "emqx_vm_mnesia_tm_mailbox_size",
    "emqx_vm_broker_pool_max_mailbox_size",
    "emqx_cluster_nodes_running",
    "emqx_cluster_nodes_stopped",
    "emqx_license_expiry_at",
    "emqx_cert_expiry_at",
    "emqx_conf_sync_txid",
    "emqx_mria_last_intercepted_trans",
    "emqx_mria_weight",
    "emqx_mria_replicants",
    "emqx_mria_server_mql",
    "emqx_mria_lag",
    "emqx_mria_bootstrap_time",
    "emqx_mria_bootstrap_num_keys",
    "emqx_mria_message_queue_len",
    "emqx_mria_replayq_len",
]
COUNTERS = [
    "emqx_bytes_received",
    "emqx_bytes_sent",
    "emqx_packets_received",
    "emqx_packets_sent",
    "emqx_packets_connect",
    "emqx_packets_connack_sent",
    "emqx_packets_connack_error",
    "emqx_packets_connack_auth_error",
    "emqx_packets_subscribe_received",
    "emqx_packets_subscribe_auth_error",
    "emqx_packets_subscribe_error",
    "emqx_packets_suback_sent",
    "emqx_packets_unsubscribe_received",
    "emqx_packets_unsubscribe_error",
    "emqx_packets_unsuback_sent",
    "emqx_packets_publish_received",
    "emqx_packets_publish_sent",
    "emqx_packets_publish_inuse",
    "emqx_packets_publish_error",
    "emqx_packets_publish_auth_error",
    "emqx_packets_publish_dropped",
    "emqx_packets_puback_received",
    "emqx_packets_puback_sent",
    "emqx_packets_puback_inuse",
    "emqx_packets_puback_missed",
    "emqx_packets_pubrec_received",
    "emqx_packets_pubrec_sent",
    "emqx_packets_pubrec_inuse",
    "emqx_packets_pubrec_missed",
    "emqx_packets_pubrel_received",
    "emqx_packets_pubrel_sent",
    "emqx_packets_pubrel_missed",
    "emqx_packets_pubcomp_received",
    "emqx_packets_pubcomp_sent",
    "emqx_packets_pubcomp_inuse",
    "emqx_packets_pubcomp_missed",
    "emqx_packets_pingreq_received",
    "emqx_packets_pingresp_sent",
    "emqx_packets_disconnect_received",
    "emqx_packets_disconnect_sent",
    "emqx_packets_auth_received",
    "emqx_packets_auth_sent",
    "emqx_messages_received",
    "emqx_messages_sent",
    "emqx_messages_qos0_received",
    "emqx_messages_qos0_sent",
    "emqx_messages_qos1_received",
    "emqx_messages_qos1_sent",
    "emqx_messages_qos2_received",
    "emqx_messages_qos2_sent",
    "emqx_messages_publish",
    "emqx_messages_dropped",
    "emqx_messages_dropped_expired",
    "emqx_messages_dropped_no_subscribers",
    "emqx_messages_forward",
    "emqx_messages_retained",
    "emqx_messages_delayed",
    "emqx_messages_delivered",
    "emqx_messages_acked",
    "emqx_delivery_dropped",
    "emqx_delivery_dropped_no_local",
    "emqx_delivery_dropped_too_large",
    "emqx_delivery_dropped_qos0_msg",
    "emqx_delivery_dropped_queue_full",
    "emqx_delivery_dropped_expired",
    "emqx_client_connect",
    "emqx_client_connack",
    "emqx_client_connected",
    "emqx_client_authenticate",
    "emqx_client_auth_anonymous",
    "emqx_client_authorize",
    "emqx_client_subscribe",
    "emqx_client_unsubscribe",
    "emqx_client_disconnected",
    "emqx_client_disconnected_reason",
    "emqx_session_created",
    "emqx_session_resumed",
    "emqx_session_takenover",
    "emqx_session_discarded",
    "emqx_session_terminated",
    "emqx_authorization_allow",
    "emqx_authorization_deny",
    "emqx_authorization_cache_hit",
    "emqx_authorization_cache_miss",
    "emqx_authorization_superuser",
    "emqx_authorization_nomatch",
    "emqx_authorization_matched_allow",
    "emqx_authorization_matched_deny",
    "emqx_authentication_success",
    "emqx_authentication_success_anonymous",
    "emqx_authentication_failure",
    "emqx_overload_protection_delay_ok",
    "emqx_overload_protection_delay_timeout",
    "emqx_overload_protection_hibernation",
    "emqx_overload_protection_gc",
    "emqx_overload_protection_new_conn",
]


def stats_text(values: Mapping[str, float]) -> str:
    """Every family in Prometheus text format, as `mode=node` renders them (no `node` label),
    `values` where given, else 0."""
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
