"""The stack configuration model: every `emqx-cluster:*` key, validated before any resource exists.

Pure Python (no Pulumi import): `__main__.py` reads the raw strings from the stack config and
hands them to :func:`parse_stack_config`, which returns a :class:`StackConfig` or raises a
:class:`ConfigError` whose lines each name the key, the bad value and what is allowed.

Each kind of value (port, duration, PEM key, ...) and its check is an `Annotated` type in
:mod:`components.config_types`; this module only assigns them to keys, with defaults and
numeric bounds, and checks what involves several keys at once (:meth:`StackConfig._cross_checks`).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any, Self

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel, to_snake
from pydantic.fields import FieldInfo

# Re-exported: other modules and the tests know these from here.
from components.config_types import ERLANG_COOKIE as ERLANG_COOKIE
from components.config_types import LOAD_BALANCING as LOAD_BALANCING
from components.config_types import (
    AbsolutePath,
    BalancingMethod,
    DashboardPassword,
    DnsNames,
    DockerHost,
    DockerRepository,
    DockerTag,
    EmqxVersion,
    ErlangCookie,
    HostLabel,
    Hostname,
    ImagePlatform,
    IPv4ListenAddress,
    NginxDuration,
    PemCertificate,
    PemPrivateKey,
    Port,
    PortRange,
    PosixUser,
    PublicHostname,
    Size,
    SysctlDropInPath,
    SysctlMap,
    TlsMode,
    UnicastIPv4,
    is_ipv4,
)

NAMESPACE = "emqx-cluster"

# EMQX's OS tuning guide (docs.emqx.com/en/emqx/latest/performance/tune.html), as listed in
# the project issue; conntrack keys are left out because the module may not be loaded.
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

# EMQX 5 derives the Erlang distribution and cluster RPC ports from the trailing digits of the
# node's short name: 4370 + N and 5370 + N (EMQX docs, "Cluster security": "the port is
# 4370 + N where N is the number suffix of the node name"; `rpc.port_discovery = stateless`).
# N = 1000 would run distribution ports into RPC ports, so a one-host cluster stays below it.
MAX_NODES = 999


class ConfigError(ValueError):
    """Raised for any invalid `emqx-cluster:*` key; the message lists every problem found."""


_MODEL_CONFIG = ConfigDict(
    alias_generator=AliasGenerator(validation_alias=to_camel),
    extra="forbid",
    frozen=True,
    populate_by_name=True,
)

# The keys that describe the one Docker host of a single-host stack; a `hosts` list says the
# same per host, so a stack sets one or the other.
SINGLE_HOST_KEYS = ("advertiseAddress", "dockerHost", "sshHost", "sshPort", "sshUser", "sshHostKey", "hostUseSudo")


class HostConfig(BaseModel):
    """One Docker host of a several-host stack (an entry of `emqx-cluster:hosts`).

    Reached over SSH for its shell (host tuning, firewall, data dirs, cluster commands) with its
    own `sshPrivateKey` (set with `pulumi config set --secret --path 'hosts[i].sshPrivateKey'`),
    else the stack's, else the agent; its Docker engine by `dockerHost`, by default the same
    SSH login.
    """

    model_config = _MODEL_CONFIG

    name: HostLabel
    address: UnicastIPv4  # its nodes bind and advertise it: `emqx<i>@<address>`
    nodes: int | None = Field(None, ge=1, le=MAX_NODES)  # unset when `placement` places the nodes
    docker_host: DockerHost | None = None
    ssh_host: Hostname | None = None
    ssh_port: Port = 22
    ssh_user: PosixUser = "root"
    ssh_host_key: str | None = None
    ssh_private_key: PemPrivateKey | None = None
    use_sudo: bool = False

    @property
    def ssh_target(self) -> str:
        return self.ssh_host or self.address

    @property
    def engine(self) -> str:
        """The Docker engine's address: as configured, or the host's SSH login."""
        return self.docker_host or f"ssh://{self.ssh_user}@{self.ssh_target}:{self.ssh_port}"


class StackConfig(BaseModel):
    """Validated `emqx-cluster:*` configuration of one stack (see the README for every key)."""

    model_config = _MODEL_CONFIG

    # --- cluster shape -------------------------------------------------------------------
    nodes: int = Field(3, ge=1, le=MAX_NODES)
    waves: int = Field(2, ge=1)
    emqx_repository: DockerRepository = "emqx/emqx"
    emqx_version: EmqxVersion = "5.8.6"
    image_platform: ImagePlatform | None = None
    keep_image: bool = False
    # Open-files limit of each broker container; must not exceed the Docker daemon's own hard
    # limit (rootless Docker and some sandboxes cannot raise it): preflight compares them.
    broker_nofile_limit: int = Field(1048576, ge=1024, le=2097152)
    # Seconds a broker (SIGTERM: EMQX hands sessions over and stops) and Nginx (SIGQUIT: drains)
    # get to stop before Docker kills them, whenever a container is replaced or destroyed.
    broker_stop_grace_seconds: int = Field(60, ge=1, le=3600)
    lb_stop_grace_seconds: int = Field(10, ge=1, le=3600)

    # --- where things run ----------------------------------------------------------------
    # Several Docker hosts (each with its nodes and its own load balancer); unset: the one host
    # the single-host keys below describe.
    hosts: list[HostConfig] | None = Field(None, min_length=1)
    # Node short name -> host name, to place each node explicitly (instead of `nodes` per host).
    placement: dict[str, str] | None = None
    # Erlang distribution over TLS and gen_rpc over SSL with a cluster CA; default: on with
    # several hosts (cluster traffic crosses the network), off on one (it stays on the host).
    cluster_tls: bool | None = None
    # With several hosts: open the distribution and RPC ports to the cluster's hosts only.
    manage_firewall: bool = True
    docker_host: DockerHost = "unix:///var/run/docker.sock"
    ssh_host: Hostname | None = None
    ssh_port: Port = 22
    ssh_user: PosixUser = "root"
    ssh_private_key: PemPrivateKey | None = None
    ssh_host_key: str | None = None
    host_use_sudo: bool = False
    advertise_address: UnicastIPv4 = "127.0.0.1"
    data_dir: AbsolutePath = "/var/lib/emqx-cluster"
    purge_data: bool = False

    # --- port plan -----------------------------------------------------------------------
    mqtt_port_base: Port = 61001
    dashboard_port_base: Port = 62001
    ip_local_port_range: PortRange = "1024 60999"

    # --- load balancer -------------------------------------------------------------------
    lb_port: Port = 8884
    lb_listen_address: IPv4ListenAddress = "0.0.0.0"
    public_hostname: PublicHostname | None = None
    nginx_version: DockerTag = "1.27"
    lb_balancing: BalancingMethod = "least_conn"
    lb_max_fails: int = Field(2, ge=1, le=100)
    lb_fail_timeout: NginxDuration = "10s"
    lb_connect_timeout: NginxDuration = "5s"
    lb_proxy_timeout_seconds: int = Field(300, ge=1)
    # Its nofile limit (2 x + 1024) must stay within fs.nr_open (2097152).
    lb_worker_connections: int = Field(65536, ge=1024, le=1048064)
    mqtt_keepalive_seconds: int = Field(60, ge=1, le=65535)

    # --- TLS -----------------------------------------------------------------------------
    tls_mode: TlsMode = "provided"
    tls_certificate: PemCertificate | None = None
    tls_private_key: PemPrivateKey | None = None
    tls_dns_names: DnsNames = Field(default_factory=lambda: ["localhost"])

    # --- host tuning ---------------------------------------------------------------------
    manage_sysctls: bool = True
    sysctls: SysctlMap = Field(default_factory=dict)
    sysctl_drop_in: SysctlDropInPath = "/etc/sysctl.d/60-emqx-cluster.conf"

    # --- secrets -------------------------------------------------------------------------
    erlang_cookie: ErlangCookie | None = None
    dashboard_password: DashboardPassword | None = None

    # --- cluster formation ---------------------------------------------------------------
    join_timeout_seconds: int = Field(180, ge=5, le=3600)

    # --- container logs (Docker json-file rotation) ---------------------------------------
    container_log_max_size: Size = "50m"
    container_log_max_files: int = Field(5, ge=1, le=100)

    # ------------------------------------------------------------------ cross-key checks
    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        problems: list[str] = self._host_problems()
        if "waves" in self.model_fields_set and self.waves > self.node_count:
            problems.append(
                f"{NAMESPACE}:waves = {self.waves}: allowed: 1 to nodes ({self.node_count}); "
                "a wave is a non-empty group of nodes replaced together"
            )
        if self.docker_host.startswith("ssh://") and self.ssh_host is None:
            problems.append(
                f"{NAMESPACE}:sshHost = (unset): allowed: the Docker host's address; required because "
                f"dockerHost = {self.docker_host!r} is remote and host tuning, data dirs and cluster "
                "commands must run on that host"
            )
        if self.ssh_host is None and self.hosts is None and self.ssh_private_key is not None:
            problems.append(
                f"{NAMESPACE}:sshPrivateKey is set but sshHost = (unset): allowed: set sshHost too, or drop the key"
            )
        if self.tls_mode == "provided":
            missing = [
                key
                for key, value in (("tlsCertificate", self.tls_certificate), ("tlsPrivateKey", self.tls_private_key))
                if value is None
            ]
            if missing:
                problems.append(
                    f"{NAMESPACE}:{' and '.join(missing)} = (unset): allowed: PEM set with "
                    f"`pulumi config set --secret {missing[0]} < file.pem`, required because tlsMode = 'provided' "
                    "(use tlsMode: self-signed for a dev stack)"
                )
        elif self.tls_certificate is not None or self.tls_private_key is not None:
            problems.append(
                f"{NAMESPACE}:tlsMode = 'self-signed' while tlsCertificate/tlsPrivateKey are set: "
                "allowed: tlsMode: provided to use them, or remove them"
            )
        keepalive_floor = self.mqtt_keepalive_seconds * 3 // 2
        if self.lb_proxy_timeout_seconds <= keepalive_floor:
            problems.append(
                f"{NAMESPACE}:lbProxyTimeoutSeconds = {self.lb_proxy_timeout_seconds}: allowed: more than "
                f"1.5 x mqttKeepaliveSeconds ({self.mqtt_keepalive_seconds}) = {keepalive_floor}, or nginx "
                "cuts idle clients before their keepalive ping"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _host_problems(self) -> list[str]:
        """What makes `hosts` and `placement` unusable, each line naming the key and value."""
        if self.hosts is None:
            if self.placement is None:
                return []
            return [f"{NAMESPACE}:placement is set but hosts = (unset): allowed: a hosts list to place nodes on"]
        problems = [
            f"{NAMESPACE}:{key} = {getattr(self, to_snake(key))!r}: allowed: unset when hosts is set "
            f"(set it per host: hosts[].{_HOST_KEY_OF.get(key, key)})"
            for key in SINGLE_HOST_KEYS
            if to_snake(key) in self.model_fields_set
        ]
        # One machine listed twice would share its drop-in, firewall chains and container names.
        for key, label, value_of in (
            ("name", "names", lambda host: host.name),
            ("address", "addresses", lambda host: host.address),
            ("dockerHost", "Docker engines", lambda host: host.engine),
            ("sshHost", "SSH logins", lambda host: f"{host.ssh_target}:{host.ssh_port}"),
        ):
            values = [value_of(host) for host in self.hosts]
            problems.extend(
                f"{NAMESPACE}:hosts[{position}].{key} = {value!r}: allowed: {label} used once; "
                f"hosts[{values.index(value)}] has it already"
                for position, value in enumerate(values)
                if values.index(value) != position
            )
        if len(self.hosts) > 1:
            problems.extend(
                f"{NAMESPACE}:hosts[{position}].address = {host.address!r}: allowed with several hosts: an "
                "address the other hosts reach (not loopback)"
                for position, host in enumerate(self.hosts)
                if ipaddress.IPv4Address(host.address).is_loopback
            )
            if self.lb_listen_address != "0.0.0.0":
                problems.append(
                    f"{NAMESPACE}:lbListenAddress = {self.lb_listen_address!r}: allowed with several hosts: "
                    "0.0.0.0 (one value for every host's load balancer; an address of one host cannot be "
                    "bound on the others)"
                )
        if self.placement is None:
            problems.extend(
                f"{NAMESPACE}:hosts[{position}].nodes = (unset): allowed: a node count of 1 or more for "
                f"host {host.name!r}, or a placement map that puts nodes on it; a host with no nodes has nothing to run"
                for position, host in enumerate(self.hosts)
                if host.nodes is None
            )
        else:
            problems.extend(self._placement_problems(self.placement, self.hosts))
        if "nodes" in self.model_fields_set and self.nodes != self.node_count:
            problems.append(
                f"{NAMESPACE}:nodes = {self.nodes}: allowed: unset with hosts (or {self.node_count}, the nodes "
                "the hosts list places)"
            )
        if len(self.hosts) > 1 and self.lb_balancing in ("random", "hash_client_address"):
            problems.append(
                f"{NAMESPACE}:lbBalancing = {self.lb_balancing!r}: allowed with several hosts: round_robin or "
                "least_conn; each load balancer lists the other hosts' nodes as `backup`, which nginx's hash "
                "and random methods do not take (ngx_stream_upstream_module, `server ... backup`)"
            )
        return problems

    @staticmethod
    def _placement_problems(placement: Mapping[str, str], hosts: list[HostConfig]) -> list[str]:
        known = [host.name for host in hosts]
        problems = [
            f"{NAMESPACE}:hosts[{position}].nodes = {host.nodes}: allowed: unset when placement is set "
            "(placement says which nodes each host runs)"
            for position, host in enumerate(hosts)
            if host.nodes is not None
        ]
        problems.extend(
            f"{NAMESPACE}:placement.{node} = {host!r}: allowed: one of the hosts' names ({', '.join(known)})"
            for node, host in placement.items()
            if host not in known
        )
        problems.extend(
            f"{NAMESPACE}:placement.{node} = {host!r}: allowed: node names emqx1 to emqx{MAX_NODES} (the node's "
            "name and ports derive from its number; numbers may have gaps, e.g. after a host was removed)"
            for node, host in placement.items()
            if not 1 <= _node_number(node) <= MAX_NODES
        )
        problems.extend(
            f"{NAMESPACE}:placement: no node on host {name!r}: allowed: at least one node per host "
            "(or remove the host from hosts)"
            for name in known
            if name not in placement.values()
        )
        return problems

    # ------------------------------------------------------------------ derived values
    @property
    def node_count(self) -> int:
        """The cluster's size: `nodes` on one host, the placed nodes over several."""
        if self.hosts is None:
            return self.nodes
        if self.placement is not None:
            return len(self.placement)
        return sum(host.nodes or 0 for host in self.hosts)

    @property
    def several_hosts(self) -> bool:
        return self.hosts is not None and len(self.hosts) > 1

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
        return self.public_hostname or (self.hosts[0].address if self.hosts else self.advertise_address)

    @property
    def container_log_opts(self) -> dict[str, str]:
        """Docker json-file rotation for every container of the stack."""
        return {"max-size": self.container_log_max_size, "max-file": str(self.container_log_max_files)}

    def self_signed_subjects(self) -> tuple[list[str], list[str]]:
        """DNS names and IP addresses a self-signed certificate must carry for clients to verify it."""
        addresses = [host.address for host in self.hosts] if self.hosts else [self.advertise_address]
        candidates = [*self.tls_dns_names, self.client_hostname, *addresses]
        dns_names = list(dict.fromkeys(name for name in candidates if not is_ipv4(name)))
        ip_addresses = list(dict.fromkeys(name for name in candidates if is_ipv4(name)))
        return dns_names, ip_addresses

    @property
    def broker_image_base(self) -> str:
        return f"{self.emqx_repository}:{self.emqx_version}"

    @property
    def nginx_image(self) -> str:
        return f"nginx:{self.nginx_version}"

    def sysctl_settings(self) -> dict[str, str]:
        """EMQX's tuning values with the user's overrides; a null override drops a key."""
        merged: dict[str, str | None] = {**EMQX_TUNING_SYSCTLS, **self.sysctls}
        return {key: value for key, value in merged.items() if value is not None}


# A single-host key's name inside a `hosts` entry.
_HOST_KEY_OF = {"advertiseAddress": "address", "hostUseSudo": "useSudo"}


def _node_number(short_name: str) -> int:
    """N of `emqxN` (no leading zero), else 0."""
    digits = short_name.removeprefix("emqx")
    return int(digits) if short_name.startswith("emqx") and digits.isdigit() and not digits.startswith("0") else 0


# Fields whose stack-config value is structured (YAML object/list, JSON in PULUMI_CONFIG).
_STRUCTURED = {"sysctls", "tls_dns_names", "hosts", "placement"}
SECRET_KEYS = ("sshPrivateKey", "tlsCertificate", "tlsPrivateKey", "erlangCookie", "dashboardPassword")


def holds_secrets(key: str, text: str) -> bool:
    """Whether a structured key's value carries a secret (a host's SSH key): then the whole
    value must be a secret in the stack config."""
    if key != "hosts":
        return False
    try:
        hosts = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(hosts, list) and any(isinstance(host, dict) and "sshPrivateKey" in host for host in hosts)


def config_keys() -> list[str]:
    """Every stack-config key (camelCase, without namespace) the model accepts."""
    return [to_camel(name) for name in StackConfig.model_fields]


def host_config_keys() -> list[str]:
    """Every key a `hosts` entry accepts."""
    return [to_camel(name) for name in HostConfig.model_fields]


def parse_stack_config(raw: Mapping[str, str | None]) -> StackConfig:
    """Validate raw stack-config strings (key without namespace -> value as Pulumi gives it)."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, text in raw.items():
        if text is None:
            continue
        if to_snake(key) in _STRUCTURED:
            try:
                values[key] = json.loads(text)
            except json.JSONDecodeError:
                problems.append(f"{NAMESPACE}:{key} = {text!r}: allowed: a YAML map/list in the stack file")
                continue
        else:
            values[key] = text
    if not problems:
        try:
            return StackConfig.model_validate(values)
        except ValidationError as error:
            problems.extend(_describe(error))
    raise ConfigError("invalid stack configuration:\n  " + "\n  ".join(problems))


def _describe(error: ValidationError) -> list[str]:
    """Turn pydantic errors into 'namespace:key = value: allowed ...' lines, hiding secrets."""
    lines: list[str] = []
    for item in error.errors(include_url=False):
        location = [str(part) for part in item["loc"]]
        message = item["msg"].removeprefix("Value error, ")
        if not location:  # model-level checks already name their keys
            lines.extend(message.split("\n"))
            continue
        key = location[0]
        field = StackConfig.model_fields.get(to_snake(key))
        if key == "hosts" and len(location) > 2:  # hosts[<i>].<field>, its own value shown
            field = HostConfig.model_fields.get(to_snake(location[2]))
            key, location = f"hosts[{location[1]}].{location[2]}", location[2:]
        shown = repr(item.get("input"))
        if key in SECRET_KEYS or key.endswith(".sshPrivateKey") or "PRIVATE KEY" in shown:
            shown = "(hidden: secret)"
        if item["type"] == "extra_forbidden":
            close = ", ".join(host_config_keys() if key.startswith("hosts[") else config_keys())
            lines.append(f"{NAMESPACE}:{key} = {shown}: unknown key; allowed keys: {close}")
            continue
        if item["type"] in ("greater_than_equal", "less_than_equal", "int_parsing", "int_type", "bool_parsing"):
            allowed = _range_text(field)
            message = f"allowed: {allowed}" if allowed else message
        elif item["type"] == "literal_error":
            message = f"allowed: {item.get('ctx', {}).get('expected', message)}"
        elif not message.startswith("allowed"):
            # Type errors ("Input should be a valid list"): say where, and keep the contract's wording.
            where = f" (at {'.'.join(location[1:])})" if len(location) > 1 else ""
            message = f"allowed: {_TYPE_TEXT.get(item['type'], 'a value of the documented type')}{where}; {message}"
        lines.append(f"{NAMESPACE}:{key} = {shown}: {message}")
    return lines


_TYPE_TEXT = {
    "dict_type": "a YAML map in the stack file",
    "list_type": "a YAML list in the stack file",
    "string_type": "a string or a number",
}


def _range_text(field: FieldInfo | None) -> str:
    if field is None:
        return ""
    if field.annotation is bool:
        return "true or false"
    low = high = None
    for meta in field.metadata:
        low = getattr(meta, "ge", low)
        high = getattr(meta, "le", high)
    if low is None and high is None:
        return ""
    if high is None:
        return f"a whole number >= {low}"
    return f"a whole number from {low} to {high}"
