"""The stack configuration model: every `emqx-cluster:*` key, checked before any resource exists.

Pure Python (no Pulumi import). :mod:`components.config_loader` reads the raw strings from
Pulumi and :mod:`components.config_parse` turns them into a :class:`StackConfig` (or one
ConfigError naming every bad key). Each kind of value (port, duration, PEM key, ...) and its
check is an `Annotated` type in :mod:`components.config_types`; this module assigns them to keys,
with defaults and bounds, groups the keys that belong together into sections (`SECTIONS`:
`single_host`, `lb`, `tls`, `tuning`, `access`, `monitoring`; users keep writing them flat, as
`lbPort`, `tlsMode` or `metricsPort`) and checks what involves several keys. The hosts' keys
and their resolution live in :mod:`components.config_hosts`: :attr:`StackConfig.cluster_hosts`
is the one list of Docker hosts every later step reads, a single-host stack included.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any, Self

from pydantic import BaseModel, Field, ValidationInfo, model_validator
from pydantic.alias_generators import to_camel, to_snake

from components.config_access import AccessConfig
from components.config_hosts import (
    SINGLE_HOST_KEYS,
    Host,
    HostConfig,
    SingleHostConfig,
    duplicate_hosts,
    placement_problems,
    resolve_hosts,
)
from components.config_types import (
    LATE_PATHS,
    MAX_NODES,
    MODEL_CONFIG,
    NAMESPACE,
    SECRET_IN_STACK,
    AbsolutePath,
    AlertmanagerTargets,
    BalancingMethod,
    DashboardPassword,
    DnsNames,
    DockerRepository,
    DockerTag,
    EmqxVersion,
    ErlangCookie,
    ImagePlatform,
    IPv4ListenAddress,
    NginxDuration,
    PemCertificate,
    PemCrl,
    PemPrivateKey,
    Port,
    PortRange,
    PrometheusDuration,
    PrometheusSize,
    PublicHostname,
    Size,
    SysctlDropInPath,
    SysctlMap,
    TlsMode,
    duration_seconds,
    is_ipv4,
    repeated,
    sysctl_problems,
)

# EMQX's OS tuning guide (docs.emqx.com/en/emqx/latest/performance/tune.html); its conntrack
# keys are left out because the module may not be loaded.
EMQX_TUNING_SYSCTLS: dict[str, str] = {
    "fs.file-max": "2097152",
    "fs.nr_open": "2097152",
    "net.core.somaxconn": "32768",
    "net.ipv4.tcp_max_syn_backlog": "16384",
    "net.core.netdev_max_backlog": "16384",
    "net.core.rmem_default": "262144",
    "net.core.wmem_default": "262144",
    "net.core.rmem_max": "16777216",
    "net.core.wmem_max": "16777216",
    "net.core.optmem_max": "16777216",
    "net.ipv4.tcp_rmem": "1024 4096 16777216",
    "net.ipv4.tcp_wmem": "1024 4096 16777216",
    "net.ipv4.tcp_max_tw_buckets": "1048576",
    "net.ipv4.tcp_fin_timeout": "15",
}

# ------------------------------------------------------------------------------ sections


class _Section(BaseModel):
    """Keys that belong together, each read from its flat stack-config key: every field names it
    as its `validation_alias`, which takes precedence over the camelCase alias generator."""

    model_config = MODEL_CONFIG


class LoadBalancerConfig(_Section):
    """Each host's Nginx: its TLS listener, how it spreads clients, its passive health and limits."""

    port: Port = Field(8884, validation_alias="lbPort")
    listen_address: IPv4ListenAddress = Field("0.0.0.0", validation_alias="lbListenAddress")
    public_hostname: PublicHostname | None = Field(None, validation_alias="publicHostname")
    nginx_version: DockerTag = Field("1.27", validation_alias="nginxVersion")
    balancing: BalancingMethod = Field("least_conn", validation_alias="lbBalancing")
    max_fails: int = Field(2, ge=1, le=100, validation_alias="lbMaxFails")
    fail_timeout: NginxDuration = Field("10s", validation_alias="lbFailTimeout")
    connect_timeout: NginxDuration = Field("5s", validation_alias="lbConnectTimeout")
    proxy_timeout_seconds: int = Field(300, ge=1, validation_alias="lbProxyTimeoutSeconds")
    # Its nofile limit (2 x + 1024) must stay within fs.nr_open (2097152).
    worker_connections: int = Field(65536, ge=1024, le=1048064, validation_alias="lbWorkerConnections")
    # Nginx worker processes; unset: `auto`, one per CPU of the host.
    worker_processes: int | None = Field(None, ge=1, le=1024, validation_alias="lbWorkerProcesses")
    # The client connections one host's load balancer must hold: refused at preview above the
    # ceiling the plan computes (components/capacity.py).
    expected_connections: int | None = Field(None, ge=1, validation_alias="expectedConnections")
    mqtt_keepalive_seconds: int = Field(60, ge=1, le=65535, validation_alias="mqttKeepaliveSeconds")
    # Seconds Nginx (SIGQUIT: it drains) gets to stop before Docker kills it.
    stop_grace_seconds: int = Field(10, ge=1, le=3600, validation_alias="lbStopGraceSeconds")

    def problems(self) -> list[str]:
        floor = self.mqtt_keepalive_seconds * 3 // 2
        if self.proxy_timeout_seconds > floor:
            return []
        return [
            f"{NAMESPACE}:lbProxyTimeoutSeconds = {self.proxy_timeout_seconds}: allowed: more than "
            f"1.5 x mqttKeepaliveSeconds ({self.mqtt_keepalive_seconds}) = {floor}, or nginx "
            "cuts idle clients before their keepalive ping"
        ]

    @property
    def nofile_limit(self) -> int:
        return lb_nofile_limit(self.worker_connections)

    @property
    def image(self) -> str:
        return f"nginx:{self.nginx_version}"


def lb_nofile_limit(worker_connections: int) -> int:
    """Nginx's `worker_rlimit_nofile` and its container's nofile: two descriptors per proxied
    connection, plus headroom for logs and listeners."""
    return worker_connections * 2 + 1024


class TlsConfig(_Section):
    """The load balancers' certificate: provided (secrets) or self-signed."""

    mode: TlsMode = Field("provided", validation_alias="tlsMode")
    certificate: PemCertificate | None = Field(None, validation_alias="tlsCertificate")
    private_key: PemPrivateKey | None = Field(None, validation_alias="tlsPrivateKey")
    dns_names: DnsNames = Field(default_factory=lambda: ["localhost"], validation_alias="tlsDnsNames")
    # Clients must present a certificate signed by this CA (a public certificate, set plain or
    # secret): Nginx refuses any other in the TLS handshake, before a broker is touched.
    client_ca: PemCertificate | None = Field(
        None, validation_alias="tlsClientCa", json_schema_extra={SECRET_IN_STACK: False}
    )
    client_verify_depth: int = Field(2, ge=1, le=10, validation_alias="tlsClientVerifyDepth")
    client_crl: PemCrl | None = Field(None, validation_alias="tlsClientCrl")
    # TLS session tickets (components/tls.py): reconnecting clients resume, even on another host's
    # load balancer and after a restart; off: only each Nginx's session cache, lost on restart.
    session_tickets: bool = Field(True, validation_alias="tlsSessionTickets")
    # Raise by one to rotate the ticket key: the new key issues tickets, the previous one still
    # resumes those it issued; the one before that is deleted.
    ticket_key_generation: int = Field(1, ge=1, le=1000000, validation_alias="tlsTicketKeyGeneration")

    @property
    def ticket_key_generations(self) -> tuple[int, ...]:
        """The ticket keys' generations, the issuing one first, then the previous one (the tickets
        it issued still resume); none with tickets off."""
        if not self.session_tickets:
            return ()
        current = self.ticket_key_generation
        return tuple(generation for generation in (current, current - 1) if generation >= 1)

    def problems(self) -> list[str]:
        problems = []
        given = (("tlsCertificate", self.certificate), ("tlsPrivateKey", self.private_key))
        missing = [key for key, value in given if value is None]
        if self.mode == "provided" and missing:
            problems.append(
                f"{NAMESPACE}:{' and '.join(missing)} = (unset): allowed: PEM set with "
                f"`pulumi config set --secret {missing[0]} < file.pem`, required because tlsMode = 'provided' "
                "(use tlsMode: self-signed for a dev stack)"
            )
        if self.mode == "self-signed" and len(missing) < len(given):
            problems.append(
                f"{NAMESPACE}:tlsMode = 'self-signed' while tlsCertificate/tlsPrivateKey are set: "
                "allowed: tlsMode: provided to use them, or remove them"
            )
        if self.client_ca is None and ("client_verify_depth" in self.model_fields_set or self.client_crl):
            problems.append(
                f"{NAMESPACE}:tlsClientVerifyDepth/tlsClientCrl set while tlsClientCa = (unset): allowed: "
                "set tlsClientCa (the CA that signs client certificates) too, or remove them"
            )
        return problems


class MonitoringConfig(_Section):
    """Prometheus on every host (off by default), scraping its nodes and its Nginx, with alert
    rules rendered from the plan (components/monitoring.py). One name inside the program,
    monitoring; the stack keys and the output keep the name users set: `metrics`, `metrics*`."""

    enabled: bool = Field(False, validation_alias="metrics")
    prometheus_version: DockerTag = Field("v2.53.4", validation_alias="prometheusVersion")
    # Prometheus's web listener and API, which has no authentication: loopback until set.
    listen_address: IPv4ListenAddress = Field("127.0.0.1", validation_alias="metricsListenAddress")
    port: Port = Field(9090, validation_alias="metricsPort")
    # Nginx's own metrics (its active connections), always on loopback.
    lb_port: Port = Field(9113, validation_alias="lbMetricsPort")
    scrape_interval: PrometheusDuration = Field("15s", validation_alias="metricsScrapeInterval")
    retention: PrometheusDuration = Field("15d", validation_alias="metricsRetention")
    retention_size: PrometheusSize = Field("2GB", validation_alias="metricsRetentionSize")
    # Alert thresholds: a share of the host's connection ceiling (and of each node's cap), failed
    # authentications per minute on a node, a share of the node's host memory in use.
    alert_connections_share: float = Field(0.8, gt=0, le=1, validation_alias="alertConnectionsShare")
    alert_auth_failures_per_minute: float = Field(30, gt=0, validation_alias="alertAuthFailuresPerMinute")
    alert_memory_share: float = Field(0.9, gt=0, le=1, validation_alias="alertMemoryShare")
    # Where Prometheus sends the alerts that fire (Alertmanager's host:port); none: only its
    # /alerts page shows them.
    alertmanagers: AlertmanagerTargets = Field(default_factory=list, validation_alias="metricsAlertmanagers")

    @property
    def image(self) -> str:
        return f"prom/prometheus:{self.prometheus_version}"

    @property
    def opens_beyond_loopback(self) -> bool:
        """Prometheus on and listening where others reach it (only with adminNetworks, firewalled)."""
        return self.enabled and not ipaddress.IPv4Address(self.listen_address).is_loopback

    def problems(self) -> list[str]:
        problems = []
        if not self.enabled:
            given = sorted(section_keys(type(self), self.model_fields_set - {"enabled"}))
            if given:
                problems.append(
                    f"{NAMESPACE}:{', '.join(given)} set while metrics = false: allowed: set metrics: true, or "
                    "remove them"
                )
            return problems
        if self.port == self.lb_port:
            problems.append(
                f"{NAMESPACE}:lbMetricsPort = {self.lb_port}: allowed: a port other than metricsPort ({self.port}), "
                "both listen on the host"
            )
        if duration_seconds(self.scrape_interval) < 1:
            problems.append(
                f"{NAMESPACE}:metricsScrapeInterval = {self.scrape_interval!r}: allowed: 1s or more (a scrape "
                "must have time to finish)"
            )
        return problems


class HostTuningConfig(_Section):
    """The sysctl drop-in every host gets."""

    manage: bool = Field(True, validation_alias="manageSysctls")
    overrides: SysctlMap = Field(default_factory=dict, validation_alias="sysctls")
    drop_in: SysctlDropInPath = Field("/etc/sysctl.d/60-emqx-cluster.conf", validation_alias="sysctlDropIn")

    @model_validator(mode="after")
    def _overrides_apply(self) -> Self:
        """Refuse every override the drop-in cannot take (sysctl_problems), one line per key. Each
        line names its key as `emqx-cluster:sysctls["<key>"]`, so it is raised from the section,
        whose errors config_parse prints as they are (after the section's own fields check out)."""
        problems = sysctl_problems(self.overrides)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def settings(self) -> dict[str, str]:
        """EMQX's tuning values with the user's overrides; a null override drops a key."""
        merged: dict[str, str | None] = {**EMQX_TUNING_SYSCTLS, **self.overrides}
        return {key: value for key, value in merged.items() if value is not None}


def section_keys(section: type[BaseModel], fields: Iterable[str] | None = None) -> list[str]:
    """The flat stack-config keys a section reads (those of `fields`, if given)."""
    model = section.model_fields
    return [str(model[name].validation_alias or to_camel(name)) for name in (model if fields is None else fields)]


# ----------------------------------------------------------------------------- the stack


class StackConfig(BaseModel):
    """Validated `emqx-cluster:*` configuration of one stack (see the README for every key)."""

    model_config = MODEL_CONFIG

    # --- cluster shape -------------------------------------------------------------------
    nodes: int = Field(3, ge=1, le=MAX_NODES)
    waves: int = Field(2, ge=1)
    emqx_repository: DockerRepository = "emqx/emqx"
    emqx_version: EmqxVersion = "5.8.6"
    image_platform: ImagePlatform | None = None
    keep_image: bool = False
    # Open-files limit of each broker container; must not exceed the Docker daemon's own hard
    # limit (rootless Docker and some sandboxes cannot raise it): preflight compares them. Above
    # the 1024 EMQX keeps for itself (capacity.BROKER_RESERVED_FILES), or no client fits.
    broker_nofile_limit: int = Field(1048576, ge=1025, le=2097152)
    # Memory one idle client connection costs an EMQX node, in KiB; the host's memory bound
    # (components/capacity.py) uses it. bench/broker_memory.py on the real EMQX 5.8.6 release
    # (docs/capacity.md#measured): 31.4 KiB of beam.smp RSS per authenticated idle client (the
    # program's default; the VM's high-water mark; 31.2 to 31.4 over three runs), its highest
    # RSS figure. x 1.5, rounded up to 48, for what it does not exercise: subscriptions, queued
    # or in-flight messages, MQTT 5 properties, the official image's own OTP build, a node
    # fragmented by weeks of churn, and heaps EMQX has allocated but not touched yet
    # (erlang:memory total of awake clients: 35.3 KiB, up to 36.5 over three runs). Set it from your nodes' memory
    # divided by their connections.
    broker_memory_per_connection_kib: int = Field(48, ge=1, le=1048576)
    # Seconds a broker (SIGTERM: EMQX hands sessions over and stops) gets to stop before Docker
    # kills it, whenever a container is replaced or destroyed.
    broker_stop_grace_seconds: int = Field(60, ge=1, le=3600)

    # --- where things run ----------------------------------------------------------------
    # Several Docker hosts (each with its nodes and its own load balancer); unset: the one host
    # the single-host keys describe.
    hosts: list[HostConfig] | None = Field(None, min_length=1)
    single_host: SingleHostConfig
    # Node short name -> host name, to place each node explicitly (instead of `nodes` per host).
    placement: dict[str, str] | None = None
    # Erlang distribution over TLS and gen_rpc over SSL with a cluster CA; default: on with
    # several hosts (cluster traffic crosses the network), off on one (it stays on the host).
    cluster_tls: bool | None = None
    # With several hosts: open the distribution and RPC ports to the cluster's hosts only.
    manage_firewall: bool = True
    ssh_private_key: PemPrivateKey | None = None  # every host's, unless a host has its own
    data_dir: AbsolutePath = "/var/lib/emqx-cluster"
    purge_data: bool = False

    # --- port plan -----------------------------------------------------------------------
    mqtt_port_base: Port = 61001
    dashboard_port_base: Port = 62001
    ip_local_port_range: PortRange = "1024 60999"

    # --- sections ------------------------------------------------------------------------
    # Filled from the flat keys by `_into_sections` (each from {} when none of its keys is set).
    lb: LoadBalancerConfig
    tls: TlsConfig
    tuning: HostTuningConfig
    access: AccessConfig
    monitoring: MonitoringConfig

    # --- secrets -------------------------------------------------------------------------
    erlang_cookie: ErlangCookie | None = None
    dashboard_password: DashboardPassword | None = None

    # --- cluster formation ---------------------------------------------------------------
    join_timeout_seconds: int = Field(180, ge=5, le=3600)

    # --- container logs (Docker json-file rotation) ---------------------------------------
    container_log_max_size: Size = "50m"
    container_log_max_files: int = Field(5, ge=1, le=100)

    # ------------------------------------------------------------------ flat keys to sections
    @model_validator(mode="before")
    @classmethod
    def _into_sections(cls, values: Any) -> Any:
        """Users write every key flat (`lbPort`, `tlsMode`, `advertiseAddress`); each section reads
        its own (as the key, or its snake_case name from Python, e.g. `lb_port`)."""
        if not isinstance(values, Mapping):
            return values
        flat = dict(values)
        clashing = section_names_in(flat)
        if clashing:  # config_parse reports these with the rest; this guards direct construction
            raise ValueError(
                "\n".join(
                    f"{NAMESPACE}:{key}: unknown key; allowed keys: {', '.join(config_keys())}" for key in clashing
                )
            )
        for field, section in SECTIONS.items():
            keys = {name: key for key in section_keys(section) for name in (key, to_snake(key))}
            flat[field] = {keys[name]: flat.pop(name) for name in list(flat) if name in keys}
        return flat

    # ------------------------------------------------------------------ cross-key checks
    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Self:
        late: frozenset[str] = (info.context or {}).get(LATE_PATHS, frozenset())
        problems: list[str] = self._host_problems()
        if "waves" in self.model_fields_set and self.waves > self.node_count:
            problems.append(
                f"{NAMESPACE}:waves = {self.waves}: allowed: 1 to nodes ({self.node_count}); "
                "a wave is a non-empty group of nodes replaced together"
            )
        single = self.single_host
        if self.hosts is None and single.docker_host.startswith("ssh://") and single.ssh_host is None:
            problems.append(
                f"{NAMESPACE}:sshHost = (unset): allowed: the Docker host's address; required because "
                f"dockerHost = {single.docker_host!r} is remote and host tuning, data dirs and cluster "
                "commands must run on that host"
            )
        if single.ssh_host is None and self.hosts is None and self.ssh_private_key is not None:
            problems.append(
                f"{NAMESPACE}:sshPrivateKey is set but sshHost = (unset): allowed: set sshHost too, or drop the key"
            )
        problems.extend(
            [*self.tls.problems(), *self.lb.problems(), *self.access.problems(), *self.monitoring.problems()]
        )
        problems.extend(self._admin_problems())
        problems.extend(self._metrics_listener_problems())
        problems.extend(self._source_address_problems(late))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _admin_problems(self) -> list[str]:
        """An admin listener on a loopback address would be reachable from nowhere else."""
        if not self.access.admin_networks:
            return []
        return [
            f"{NAMESPACE}:adminNetworks = {self.access.admin_networks!r}: allowed only when the nodes' address is "
            f"reachable from those networks; {host.config_key('address')} = {host.address!r} is loopback "
            "(set a routable address, or reach the dashboards through the `dashboards` output's ssh tunnel)"
            for host in self.cluster_hosts
            if ipaddress.IPv4Address(host.address).is_loopback
        ]

    def _metrics_listener_problems(self) -> list[str]:
        """Prometheus's API has no authentication: beyond loopback, the firewall opens it to the
        admin networks only, so there must be some (and a firewall)."""
        metrics = self.monitoring
        if not metrics.opens_beyond_loopback:
            return []
        if self.access.admin_networks and self.manage_firewall:
            return []
        return [
            f"{NAMESPACE}:metricsListenAddress = {metrics.listen_address!r}: allowed: a loopback address, or "
            "adminNetworks set (with manageFirewall: true): Prometheus answers anyone who reaches it, so the "
            "host's firewall opens metricsPort to adminNetworks only (or reach it through the `metrics` "
            "output's ssh tunnel)"
        ]

    def _source_address_problems(self, late: frozenset[str]) -> list[str]:
        """Nginx reaches a node on loopback only from loopback (any of 127.0.0.0/8 is local), and a
        node on another host never from loopback; an address listed twice would be one budget. A
        host address given as an Output (in `late`) is judged once known, not its stand-in."""
        problems: list[str] = []
        for host in self.cluster_hosts:
            key = host.config_key("lbSourceAddresses")
            nodes_on_loopback = ipaddress.IPv4Address(host.address).is_loopback
            address_known = host.config_key("address").removeprefix(f"{NAMESPACE}:") not in late
            for address in host.lb_source_addresses if address_known else ():
                if ipaddress.IPv4Address(address).is_loopback != nodes_on_loopback:
                    scope = "a 127.0.0.0/8 address" if nodes_on_loopback else "an address of the host, not loopback"
                    problems.append(
                        f"{key} = {list(host.lb_source_addresses)!r}: {address!r} is not allowed: {scope}, as the "
                        f"nodes are on {host.address} ({host.config_key('address')})"
                    )
            twice = repeated(host.lb_source_addresses)
            if twice:
                problems.append(
                    f"{key} = {list(host.lb_source_addresses)!r}: allowed: each address once; repeated: {', '.join(twice)}"
                )
        return problems

    @property
    def opens_firewall(self) -> bool:
        """Whether each host gets the program's firewall: several hosts (cluster ports) or admin
        networks (admin ports), unless manageFirewall is false."""
        return self.manage_firewall and (self.several_hosts or bool(self.access.admin_networks))

    def _host_problems(self) -> list[str]:
        """What makes `hosts` and `placement` unusable, each line naming the key and value."""
        if self.hosts is None:
            if self.placement is None:
                return []
            return [f"{NAMESPACE}:placement is set but hosts = (unset): allowed: a hosts list to place nodes on"]
        problems = [
            f"{NAMESPACE}:{key} = {getattr(self.single_host, to_snake(key))!r}: allowed: unset when hosts is set "
            f"(set it per host: hosts[].{per_host})"
            for key, per_host in SINGLE_HOST_KEYS.items()
            if to_snake(key) in self.single_host.model_fields_set
        ]
        problems.extend(duplicate_hosts(self.hosts))
        if len(self.hosts) > 1:
            problems.extend(
                f"{NAMESPACE}:hosts[{position}].address = {host.address!r}: allowed with several hosts: an "
                "address the other hosts reach (not loopback)"
                for position, host in enumerate(self.hosts)
                if ipaddress.IPv4Address(host.address).is_loopback
            )
            if self.lb.listen_address != "0.0.0.0":
                problems.append(
                    f"{NAMESPACE}:lbListenAddress = {self.lb.listen_address!r}: allowed with several hosts: "
                    "0.0.0.0 (one value for every host's load balancer; an address of one host cannot be "
                    "bound on the others)"
                )
            if self.lb.balancing in ("random", "hash_client_address"):
                problems.append(
                    f"{NAMESPACE}:lbBalancing = {self.lb.balancing!r}: allowed with several hosts: round_robin or "
                    "least_conn; each load balancer lists the other hosts' nodes as `backup`, which nginx's hash "
                    "and random methods do not take (ngx_stream_upstream_module, `server ... backup`)"
                )
        if self.placement is None:
            problems.extend(
                f"{NAMESPACE}:hosts[{position}].nodes = (unset): allowed: a node count of 1 or more for "
                f"host {host.name!r}, or a placement map that puts nodes on it; a host with no nodes has nothing to run"
                for position, host in enumerate(self.hosts)
                if host.nodes is None
            )
        else:
            problems.extend(placement_problems(self.placement, self.hosts))
        if "nodes" in self.model_fields_set and self.nodes != self.node_count:
            problems.append(
                f"{NAMESPACE}:nodes = {self.nodes}: allowed: unset with hosts (or {self.node_count}, the nodes "
                "the hosts list places)"
            )
        return problems

    # ------------------------------------------------------------------ the hosts, resolved once
    @functools.cached_property
    def cluster_hosts(self) -> tuple[Host, ...]:
        """Every Docker host with its nodes, in config order (see config_hosts.resolve_hosts).
        Resolved on the first read: the model is frozen, so nothing changes under it (pydantic
        keeps a cached property out of the fields; a `model_copy(update=...)` would carry it over,
        and none is made of a StackConfig)."""
        return resolve_hosts(self.hosts, self.placement, self.single_host, self.nodes, self.ssh_private_key)

    # ------------------------------------------------------------------ derived values
    @property
    def node_count(self) -> int:
        return sum(len(host.node_indexes) for host in self.cluster_hosts)

    @property
    def several_hosts(self) -> bool:
        return len(self.cluster_hosts) > 1

    @property
    def encrypts_cluster_traffic(self) -> bool:
        return self.several_hosts if self.cluster_tls is None else self.cluster_tls

    @property
    def effective_waves(self) -> int:
        """Waves actually used: the default of 2 shrinks to 1 for a single-node stack."""
        return min(self.waves, self.node_count)

    @property
    def port_range(self) -> tuple[int, int]:
        low, high = (int(part) for part in self.ip_local_port_range.split())
        return low, high

    @property
    def client_hostname(self) -> str:
        """The name clients put in their connection string (and the certificate should carry)."""
        return self.lb.public_hostname or self.cluster_hosts[0].address

    @property
    def container_log_opts(self) -> dict[str, str]:
        """Docker json-file rotation for every container of the stack."""
        return {"max-size": self.container_log_max_size, "max-file": str(self.container_log_max_files)}

    def self_signed_subjects(self) -> tuple[list[str], list[str]]:
        """DNS names and IP addresses a self-signed certificate must carry for clients to verify it."""
        candidates = [*self.tls.dns_names, self.client_hostname, *(host.address for host in self.cluster_hosts)]
        dns_names = list(dict.fromkeys(name for name in candidates if not is_ipv4(name)))
        ip_addresses = list(dict.fromkeys(name for name in candidates if is_ipv4(name)))
        return dns_names, ip_addresses

    @property
    def broker_image_base(self) -> str:
        return f"{self.emqx_repository}:{self.emqx_version}"


SECTIONS: dict[str, type[BaseModel]] = {
    "single_host": SingleHostConfig,
    "lb": LoadBalancerConfig,
    "tls": TlsConfig,
    "tuning": HostTuningConfig,
    "access": AccessConfig,
    "monitoring": MonitoringConfig,
}


def config_keys() -> list[str]:
    """Every stack-config key (camelCase, without namespace) the model accepts."""
    top = [to_camel(name) for name in StackConfig.model_fields if name not in SECTIONS]
    return [*top, *(key for section in SECTIONS.values() for key in section_keys(section))]


def section_names_in(keys: Iterable[str]) -> list[str]:
    """Those of `keys` that name a section (`lb`, `singleHost`, ...): the model's own grouping,
    never a key of the stack file, so unknown keys there."""
    return [key for key in keys if to_snake(key) in SECTIONS]
