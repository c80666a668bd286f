"""nginx.conf for the MQTT load balancer, rendered from the plan with Jinja2.

The same renderer serves the container (official nginx image: stream module built in, files
under /etc/nginx) and the integration tests (Debian's nginx: stream module loaded by absolute
path, files in a temp dir), so the tests run the very text the container gets.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.capacity import node_connection_cap
from components.config import StackConfig, lb_nofile_limit
from components.plan import ClusterPlan, HostPlan
from components.render.templating import render

# Mozilla "intermediate" TLS 1.2 suites without DHE; TLS 1.3 suites are OpenSSL's defaults.
MODERN_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)

# Key exchange groups of Mozilla's "intermediate" profile (ssl-config.mozilla.org, guidelines
# 5.7: X25519, prime256v1, secp384r1); a scan flagged Debian nginx's default, which adds X448
# and secp521r1.
INTERMEDIATE_GROUPS = "X25519:prime256v1:secp384r1"

BALANCING_DIRECTIVES = {
    "round_robin": "",
    "least_conn": "least_conn",
    "random": "random two least_conn",
    "hash_client_address": "hash $remote_addr consistent",
}


UPSTREAM = "emqx_mqtt"


@dataclass(frozen=True)
class UpstreamGroup:
    """Every node, connected to from one source address (None: the routed one), for a share of
    the clients: each address is a port budget of its own, and each group caps each node at what
    one budget holds, so no address ever runs out of ports."""

    name: str
    source: str | None
    share: str


@dataclass(frozen=True)
class NginxSettings:
    """What the stack config decides about the load balancer."""

    listen_address: str
    listen_port: int
    upstreams: tuple[str, ...]
    # Over several hosts: the other hosts' nodes, used only while no local node takes clients.
    backups: tuple[str, ...] = ()
    balancing: str = "least_conn"
    max_fails: int = 2
    fail_timeout: str = "10s"
    connect_timeout: str = "5s"
    proxy_timeout_seconds: int = 300
    worker_connections: int = 65536
    worker_processes: int | None = None  # None: auto
    # Connections one node takes from each upstream group (capacity.node_connection_cap).
    max_conns: int = 0
    # Nginx's addresses toward the nodes (proxy_bind), one upstream group each; empty: one group
    # and the address the route picks.
    source_addresses: tuple[str, ...] = ()
    proxy_protocol: bool = True
    # With a client CA: how deep a client chain may be (None: clients present no certificate),
    # and whether a revocation list is checked too.
    client_verify_depth: int | None = None
    client_crl: bool = False
    # Session ticket key files (NginxRuntime.ticket_key_path), the issuing one first; 0: tickets off.
    ticket_keys: int = 0
    ciphers: str = MODERN_CIPHERS
    ecdh_curves: str = INTERMEDIATE_GROUPS
    # One buffer each way per proxied connection (Nginx's default: 16k).
    proxy_buffer_size: str = "4k"
    # Nginx's loopback metrics listener (metrics on), else none.
    metrics_port: int | None = None

    @property
    def balancing_directive(self) -> str:
        return BALANCING_DIRECTIVES[self.balancing]

    @property
    def upstream_groups(self) -> tuple[UpstreamGroup, ...]:
        """One group per source address, each given an equal share of the clients by
        `split_clients`: whole hundredths of a percent (ngx_stream_split_clients_module.c reads
        at most two decimals and refuses a sum above 100%), the remainder spread one hundredth
        each over the first groups, the last taking the rest (`*`)."""
        count = len(self.source_addresses)
        if not count:
            return (UpstreamGroup(UPSTREAM, None, "*"),)
        base, remainder = divmod(10000, count)
        return tuple(
            UpstreamGroup(
                f"{UPSTREAM}_{index + 1}",
                address,
                "*" if index == count - 1 else f"{(base + (index < remainder)) / 100:.2f}%",
            )
            for index, address in enumerate(self.source_addresses)
        )

    @property
    def worker_rlimit_nofile(self) -> int:
        return lb_nofile_limit(self.worker_connections)

    @property
    def next_upstream_tries(self) -> int:
        return len(self.upstreams) + len(self.backups)


@dataclass(frozen=True)
class NginxRuntime:
    """Where this nginx runs: file locations and whether the stream module must be loaded."""

    certificate_path: str
    private_key_path: str
    client_ca_path: str
    client_crl_path: str
    pid_path: str
    error_log: str
    access_log: str
    ticket_key_dir: str
    user: str | None = None
    stream_module_path: str | None = None

    def ticket_key_path(self, number: int) -> str:
        """Where the `number`th session ticket key (from 1) is."""
        return f"{self.ticket_key_dir}/ticket-{number}.key"


TLS_DIR = "/etc/nginx/tls"

# The official nginx image: stream is built in (no load_module); logs go to the container's
# stdout/stderr, which Docker rotates with the container's log options.
CONTAINER_RUNTIME = NginxRuntime(
    certificate_path=f"{TLS_DIR}/server.crt",
    private_key_path=f"{TLS_DIR}/server.key",
    client_ca_path=f"{TLS_DIR}/client-ca.pem",
    client_crl_path=f"{TLS_DIR}/client-crl.pem",
    pid_path="/var/run/nginx.pid",
    error_log="/dev/stderr",
    access_log="/dev/stdout",
    ticket_key_dir=TLS_DIR,
    user="nginx",
)


DEBIAN_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


def standalone_runtime(directory: str, certificate_path: str, private_key_path: str) -> NginxRuntime:
    """Debian's nginx outside a container: stream module by absolute path, pid, logs, the
    client CA / CRL files and the session ticket keys in `directory`."""
    return NginxRuntime(
        certificate_path=certificate_path,
        private_key_path=private_key_path,
        client_ca_path=f"{directory}/client-ca.pem",
        client_crl_path=f"{directory}/client-crl.pem",
        pid_path=f"{directory}/nginx.pid",
        error_log=f"{directory}/error.log",
        access_log=f"{directory}/access.log",
        ticket_key_dir=directory,
        stream_module_path=DEBIAN_STREAM_MODULE,
    )


def nginx_settings(config: StackConfig, plan: ClusterPlan, host: HostPlan | None = None) -> NginxSettings:
    """The load balancer settings of `host` (default: the first): every node of the cluster is an
    upstream, the host's own first; the other hosts' nodes are `backup` servers.

    Backup, not weights: with weights a share of the clients of every host would always cross to
    another host (more latency, and every host's link carries traffic for nothing); as backups,
    remote nodes take clients only while no local node does (ngx_stream_upstream_module:
    "backup: marks the server as a backup server. It will be passed connections when the primary
    servers are unavailable"), which is exactly the host-failure and local-rollout case.
    """
    local = host or plan.hosts[0]
    return NginxSettings(
        listen_address=config.lb.listen_address,
        listen_port=plan.lb_port,
        upstreams=tuple(node.mqtt_endpoint for node in local.nodes),
        backups=tuple(node.mqtt_endpoint for node in plan.nodes if node.host_label != local.label),
        balancing=config.lb.balancing,
        max_fails=config.lb.max_fails,
        fail_timeout=config.lb.fail_timeout,
        connect_timeout=config.lb.connect_timeout,
        proxy_timeout_seconds=config.lb.proxy_timeout_seconds,
        worker_connections=config.lb.worker_connections,
        worker_processes=config.lb.worker_processes,
        max_conns=node_connection_cap(config, plan, local),
        source_addresses=local.lb_source_addresses,
        proxy_protocol=plan.proxy_protocol,
        client_verify_depth=config.tls.client_verify_depth if config.tls.client_ca is not None else None,
        client_crl=config.tls.client_crl is not None,
        ticket_keys=len(config.tls.ticket_key_generations),
        metrics_port=local.lb_metrics_port,
    )


def render_nginx_conf(settings: NginxSettings, runtime: NginxRuntime = CONTAINER_RUNTIME) -> str:
    """Render nginx.conf text: one `stream` server terminating TLS, PROXY protocol upstream."""
    return render("nginx.conf.j2", settings=settings, runtime=runtime)
