"""EMQX 5 environment for one node: the whole per-node config, no `sed` on config files.

EMQX maps `EMQX_` + config path with `.` -> `__` onto its HOCON config and parses each value
as HOCON, so values containing `:` must be quoted (EMQX docs, "Configuration > Environment
variables"; emqx/rel/config/examples). Secrets (cookie, dashboard password) are added by the
Pulumi layer as secret outputs, never here.
"""

from __future__ import annotations

from components.config import StackConfig
from components.plan import ClusterPlan, NodePlan

COOKIE_VARIABLE = "EMQX_NODE__COOKIE"
DASHBOARD_PASSWORD_VARIABLE = "EMQX_DASHBOARD__DEFAULT_PASSWORD"

# Listeners the official config enables on fixed ports (8883, 8083, 8084): on one host network
# the second node could not bind them, and the load balancer only fronts the TCP listener.
_UNUSED_DEFAULT_LISTENERS = ("SSL", "WS", "WSS")


def hocon_string(value: str) -> str:
    """Quote a value for EMQX's HOCON env parsing ('127.0.0.1:61001' -> '"127.0.0.1:61001"')."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def broker_environment(node: NodePlan, plan: ClusterPlan, config: StackConfig) -> dict[str, str]:
    """Every non-secret EMQX setting of `node`, as container environment variables."""
    env = {
        # Long name, fixed for the life of the data dir (data/mnesia/<node name>).
        "EMQX_NODE__NAME": node.node_name,
        "EMQX_CLUSTER__DISCOVERY_STRATEGY": "manual",
        # The official image's entrypoint defaults this to `manual`, which puts every node's RPC
        # on 5369: on one host network the second node could not start. `stateless` = 5370 + N.
        "EMQX_RPC__PORT_DISCOVERY": "stateless",
        # Client listener: node address only (never 0.0.0.0), so nobody bypasses Nginx and
        # forges a PROXY header; proxy_protocol matches what Nginx sends (plan.proxy_protocol).
        "EMQX_LISTENERS__TCP__DEFAULT__BIND": hocon_string(node.mqtt_endpoint),
        "EMQX_LISTENERS__TCP__DEFAULT__PROXY_PROTOCOL": str(plan.proxy_protocol).lower(),
        "EMQX_LISTENERS__TCP__DEFAULT__PROXY_PROTOCOL_TIMEOUT": hocon_string("5s"),
        "EMQX_DASHBOARD__LISTENERS__HTTP__BIND": hocon_string(f"{node.address}:{node.ports.dashboard}"),
        # Bounded file logs in the per-node log dir, 10 x 50MB (EMQX 5.8 docs, "Logs
        # Configuration": log.file.rotation_count / rotation_size); the console log goes to
        # Docker's json-file driver, bounded by the container's log options.
        "EMQX_LOG__FILE__ENABLE": "true",
        "EMQX_LOG__FILE__ROTATION_COUNT": "10",
        "EMQX_LOG__FILE__ROTATION_SIZE": "50MB",
        "EMQX_LOG__CONSOLE__ENABLE": "true",
    }
    for listener in _UNUSED_DEFAULT_LISTENERS:
        env[f"EMQX_LISTENERS__{listener}__DEFAULT__ENABLE"] = "false"
    return env
