"""The stack configuration model: every `emqx-cluster:*` key, validated before any resource exists.

Pure Python (no Pulumi import): `__main__.py` reads the raw strings from the stack config and
hands them to :func:`parse_stack_config`, which returns a :class:`StackConfig` or raises a
:class:`ConfigError` whose lines each name the key, the bad value and what is allowed.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AliasGenerator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel, to_snake

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

# Keys the port plan owns: set from `ipLocalPortRange` and the plan's reserved ports.
PLAN_OWNED_SYSCTLS = ("net.ipv4.ip_local_port_range", "net.ipv4.ip_local_reserved_ports")

# EMQX 5 derives the Erlang distribution and cluster RPC ports from the trailing digits of the
# node's short name: 4370 + N and 5370 + N (EMQX docs, "Cluster security": "the port is
# 4370 + N where N is the number suffix of the node name"; `rpc.port_discovery = stateless`).
# N = 1000 would run distribution ports into RPC ports, so a one-host cluster stays below it.
MAX_NODES = 999

SYSCTL_KEY = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_-]+)+$")
SYSCTL_VALUE = re.compile(r"^[0-9A-Za-z ._:,/-]*$")
DOCKER_REF_PART = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*$")
DOCKER_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
SSH_DOCKER_HOST = re.compile(r"^ssh://([A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+(:\d{1,5})?$")
NGINX_DURATION = re.compile(r"^\d+(ms|s|m|h)?$")
SIZE = re.compile(r"^\d+[kmg]$")
LOAD_BALANCING = ("round_robin", "least_conn", "random", "hash_client_address")
# Docker platforms the broker image can be built for (`docker build --platform`).
IMAGE_PLATFORM = re.compile(r"^linux/(amd64|arm64|arm/v7|arm/v6|386|ppc64le|s390x|riscv64)$")

# The cookie goes into EMQX_NODE__COOKIE as a bare HOCON token. bin/emqx (v5.8.6, "Resolve Erlang
# cookie") compares that variable RAW with the cookie the running node booted with, which it
# reads back from the HOCON-parsed config with the double quotes stripped; any difference makes
# every `emqx ctl` (health check, join, leave, verify) die with "EMQX_NODE__COOKIE is different
# from the cookie used by <node>". So only values HOCON keeps unchanged as an unquoted string:
# a leading letter (a leading digit is lexed as a number) and no quote, `#`, `:`, `$` or space.
ERLANG_COOKIE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{15,254}$")
EMQX_DEFAULT_COOKIE = "emqxsecretcookie"  # bin/emqx EMQX_DEFAULT_ERLANG_COOKIE

# The dashboard password rule of EMQX 5.8 (apps/emqx_dashboard/src/emqx_dashboard_admin.erl,
# legal_password/2 and is_mixed_password/3): 8 to 64 ASCII characters from at least two of the
# groups letters, digits, specials. EMQX 5.8.6 does not apply it to `dashboard.default_password`
# at first boot (add_default_user/2 calls do_add_user/4 directly), but every later change
# (`emqx ctl admins passwd`, the API, the dashboard) must pass it: the stack's password meets the
# rule an operator will be held to, and is never one EMQX itself would refuse.
DASHBOARD_PASSWORD_GROUPS = (
    "0123456789",
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "!@#$%^&*()_+-=[]{}\"|;':,./<>?`~ ",
)

Port = Annotated[int, Field(ge=1, le=65535)]


class ConfigError(ValueError):
    """Raised for any invalid `emqx-cluster:*` key; the message lists every problem found."""


def _is_ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


class StackConfig(BaseModel):
    """Validated `emqx-cluster:*` configuration of one stack (see the README for every key)."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel),
        extra="forbid",
        frozen=True,
        populate_by_name=True,
    )

    # --- cluster shape -------------------------------------------------------------------
    nodes: int = Field(3, ge=1, le=MAX_NODES)
    waves: int = Field(2, ge=1)
    emqx_repository: str = "emqx/emqx"
    emqx_version: str = "5.8.6"
    image_platform: str = "linux/amd64"
    keep_image: bool = False
    # Open-files limit of each broker container; must not exceed the Docker daemon's own hard
    # limit (rootless Docker and some sandboxes cannot raise it): preflight compares them.
    broker_nofile_limit: int = Field(1048576, ge=1024, le=2097152)
    # Seconds a broker (SIGTERM: EMQX hands sessions over and stops) and Nginx (SIGQUIT: drains)
    # get to stop before Docker kills them, whenever a container is replaced or destroyed.
    broker_stop_grace_seconds: int = Field(60, ge=1, le=3600)
    lb_stop_grace_seconds: int = Field(10, ge=1, le=3600)

    # --- where things run ----------------------------------------------------------------
    docker_host: str = "unix:///var/run/docker.sock"
    ssh_host: str | None = None
    ssh_port: Port = 22
    ssh_user: str = "root"
    ssh_private_key: SecretStr | None = None
    ssh_host_key: str | None = None
    host_use_sudo: bool = False
    advertise_address: str = "127.0.0.1"
    data_dir: str = "/var/lib/emqx-cluster"
    purge_data: bool = False

    # --- port plan -----------------------------------------------------------------------
    mqtt_port_base: Port = 61001
    dashboard_port_base: Port = 62001
    ip_local_port_range: str = "1024 60999"

    # --- load balancer -------------------------------------------------------------------
    lb_port: Port = 8884
    lb_listen_address: str = "0.0.0.0"
    public_hostname: str | None = None
    nginx_version: str = "1.27"
    lb_balancing: str = "least_conn"
    lb_max_fails: int = Field(2, ge=1, le=100)
    lb_fail_timeout: str = "10s"
    lb_connect_timeout: str = "5s"
    lb_proxy_timeout_seconds: int = Field(300, ge=1)
    # Its nofile limit (2 x + 1024) must stay within fs.nr_open (2097152).
    lb_worker_connections: int = Field(65536, ge=1024, le=1048064)
    mqtt_keepalive_seconds: int = Field(60, ge=1, le=65535)

    # --- TLS -----------------------------------------------------------------------------
    tls_mode: Literal["self-signed", "provided"] = "provided"
    tls_certificate: SecretStr | None = None
    tls_private_key: SecretStr | None = None
    tls_dns_names: list[str] = Field(default_factory=lambda: ["localhost"])

    # --- host tuning ---------------------------------------------------------------------
    manage_sysctls: bool = True
    sysctls: dict[str, str | None] = Field(default_factory=dict)
    sysctl_drop_in: str = "/etc/sysctl.d/60-emqx-cluster.conf"

    # --- secrets -------------------------------------------------------------------------
    erlang_cookie: SecretStr | None = None
    dashboard_password: SecretStr | None = None

    # --- cluster formation ---------------------------------------------------------------
    join_timeout_seconds: int = Field(180, ge=5, le=3600)
    container_log_max_size: str = "50m"
    container_log_max_files: int = Field(5, ge=1, le=100)

    # ---------------------------------------------------------------------- field checks
    @field_validator("emqx_repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        if value not in ("emqx/emqx", "emqx/emqx-enterprise") and not DOCKER_REF_PART.match(value):
            raise ValueError("allowed: an image repository such as emqx/emqx or emqx/emqx-enterprise")
        return value

    @field_validator("emqx_version")
    @classmethod
    def _emqx_version(cls, value: str) -> str:
        if not re.match(r"^5\.\d+(\.\d+)?([-.][A-Za-z0-9.]+)?$", value):
            raise ValueError("allowed: an EMQX 5.x image tag such as 5.8.6 (this program configures EMQX 5)")
        return value

    @field_validator("image_platform")
    @classmethod
    def _image_platform(cls, value: str) -> str:
        if not IMAGE_PLATFORM.match(value):
            raise ValueError("allowed: the Docker host's platform, e.g. linux/amd64 or linux/arm64")
        return value

    @field_validator("nginx_version")
    @classmethod
    def _docker_tag(cls, value: str) -> str:
        if not DOCKER_TAG.match(value):
            raise ValueError("allowed: a Docker image tag such as 1.27 or 1.27-alpine")
        return value

    @field_validator("docker_host")
    @classmethod
    def _docker_host(cls, value: str) -> str:
        if value.startswith("unix:///") or SSH_DOCKER_HOST.match(value):
            return value
        raise ValueError("allowed: unix:///path/to/docker.sock or ssh://user@host[:port]")

    @field_validator("ssh_host")
    @classmethod
    def _ssh_host(cls, value: str | None) -> str | None:
        if value is not None and not (_is_ipv4(value) or HOSTNAME.match(value)):
            raise ValueError("allowed: an IPv4 address or a DNS name")
        return value

    @field_validator("ssh_user")
    @classmethod
    def _ssh_user(cls, value: str) -> str:
        if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", value):
            raise ValueError("allowed: a POSIX user name (lower case letters, digits, _ and -)")
        return value

    @field_validator("advertise_address")
    @classmethod
    def _advertise_address(cls, value: str) -> str:
        # EMQX node names must be long names (name@IP or name@FQDN), and every node also binds
        # its listeners to this address as `ip:port`, which EMQX only takes with an IP: so an
        # IPv4 address of this host, never a wildcard (clients could then bypass Nginx).
        if _is_ipv4(value):
            address = ipaddress.IPv4Address(value)
            if not (address.is_unspecified or address.is_multicast or value == "255.255.255.255"):
                return value
        raise ValueError("allowed: a unicast IPv4 address of the Docker host (nodes bind and advertise it)")

    @field_validator("lb_listen_address")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        if not _is_ipv4(value):
            raise ValueError("allowed: an IPv4 address to listen on, e.g. 0.0.0.0")
        return value

    @field_validator("public_hostname")
    @classmethod
    def _public_hostname(cls, value: str | None) -> str | None:
        if value is not None and not (_is_ipv4(value) or HOSTNAME.match(value)):
            raise ValueError("allowed: the DNS name or IPv4 address clients connect to")
        return value

    @field_validator("sysctl_drop_in")
    @classmethod
    def _drop_in(cls, value: str) -> str:
        # The script replaces this file and destroy deletes it, as root: only a drop-in of ours.
        if not re.match(r"^(/[A-Za-z0-9._-]+)+/[0-9]{2}-[A-Za-z0-9._-]+\.conf$", value) or "/../" in value:
            raise ValueError("allowed: an absolute path to a sysctl.d drop-in named NN-name.conf")
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not re.match(r"^/[A-Za-z0-9._/-]*$", value) or "/../" in f"{value}/" or value.strip("/") == "":
            raise ValueError("allowed: an absolute path of letters, digits, '.', '_', '-' and '/' (not '/', no '..')")
        return value.rstrip("/")

    @field_validator("ip_local_port_range")
    @classmethod
    def _port_range(cls, value: str) -> str:
        parts = value.split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError("allowed: two port numbers 'LOW HIGH', e.g. '1024 60999'")
        low, high = (int(p) for p in parts)
        if not 1024 <= low < high <= 65535:
            raise ValueError("allowed: 1024 <= LOW < HIGH <= 65535")
        return f"{low} {high}"

    @field_validator("lb_balancing")
    @classmethod
    def _balancing(cls, value: str) -> str:
        if value not in LOAD_BALANCING:
            raise ValueError(f"allowed: one of {', '.join(LOAD_BALANCING)}")
        return value

    @field_validator("lb_fail_timeout", "lb_connect_timeout")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not NGINX_DURATION.match(value) or int(re.sub(r"\D", "", value)) == 0:
            raise ValueError("allowed: a positive nginx duration such as 500ms, 10s, 1m")
        return value

    @field_validator("container_log_max_size")
    @classmethod
    def _size(cls, value: str) -> str:
        if not SIZE.match(value) or int(value[:-1]) == 0:
            raise ValueError("allowed: a positive size with unit k, m or g, e.g. 50m")
        return value

    @field_validator("tls_dns_names")
    @classmethod
    def _dns_names(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not HOSTNAME.match(name)]
        if bad or not value:
            raise ValueError("allowed: a non-empty list of DNS names for the self-signed certificate")
        return value

    @field_validator("sysctls", mode="before")
    @classmethod
    def _sysctl_numbers(cls, value: Any) -> Any:
        # YAML `net.core.somaxconn: 32768` reaches us as a JSON number: take it as its text.
        if isinstance(value, Mapping):
            return {
                key: str(setting) if isinstance(setting, int | float) and not isinstance(setting, bool) else setting
                for key, setting in value.items()
            }
        return value

    @field_validator("sysctls")
    @classmethod
    def _sysctls(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        for key, setting in value.items():
            if not SYSCTL_KEY.match(key):
                raise ValueError(f"key {key!r}: allowed: a sysctl name such as net.core.somaxconn")
            if key in PLAN_OWNED_SYSCTLS:
                raise ValueError(
                    f"key {key!r}: allowed: any sysctl except {', '.join(PLAN_OWNED_SYSCTLS)}, "
                    "which the port plan sets (use emqx-cluster:ipLocalPortRange)"
                )
            if setting is not None and (not SYSCTL_VALUE.match(str(setting)) or str(setting).strip() == ""):
                raise ValueError(
                    f"key {key!r} value {setting!r}: allowed: digits, letters, spaces and . _ : , / - "
                    "(or null to leave the key alone)"
                )
        return {key: None if setting is None else str(setting) for key, setting in value.items()}

    @field_validator("tls_certificate")
    @classmethod
    def _certificate(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and "-----BEGIN CERTIFICATE-----" not in value.get_secret_value():
            raise ValueError("allowed: a PEM certificate chain (-----BEGIN CERTIFICATE-----); value not shown")
        return value

    @field_validator("tls_private_key", "ssh_private_key")
    @classmethod
    def _private_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", value.get_secret_value()):
            raise ValueError("allowed: a PEM private key (-----BEGIN ... PRIVATE KEY-----); value not shown")
        return value

    @field_validator("erlang_cookie")
    @classmethod
    def _cookie(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        cookie = value.get_secret_value()
        if cookie == EMQX_DEFAULT_COOKIE:
            raise ValueError(f"allowed: any cookie but EMQX's public default {EMQX_DEFAULT_COOKIE!r}; value not shown")
        if not ERLANG_COOKIE.match(cookie):
            raise ValueError(
                "allowed: 16 to 255 characters from A-Z a-z 0-9 _ -, starting with a letter "
                "(EMQX compares the cookie as written with its HOCON-parsed value); value not shown"
            )
        return value

    @field_validator("dashboard_password")
    @classmethod
    def _dashboard_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        password = value.get_secret_value()
        if not 8 <= len(password) <= 64 or not password.isascii():
            raise ValueError("allowed: 8 to 64 ASCII characters (EMQX's dashboard password rule); value not shown")
        if sum(any(char in group for char in password) for group in DASHBOARD_PASSWORD_GROUPS) < 2:
            raise ValueError(
                "allowed: at least two kinds of characters from letters, digits and specials "
                "(EMQX's dashboard password rule); value not shown"
            )
        return value

    # ------------------------------------------------------------------ cross-key checks
    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        problems: list[str] = []
        if "waves" in self.model_fields_set and self.waves > self.nodes:
            problems.append(
                f"{NAMESPACE}:waves = {self.waves}: allowed: 1 to nodes ({self.nodes}); "
                "a wave is a non-empty group of nodes replaced together"
            )
        if self.docker_host.startswith("ssh://") and self.ssh_host is None:
            problems.append(
                f"{NAMESPACE}:sshHost = (unset): allowed: the Docker host's address; required because "
                f"dockerHost = {self.docker_host!r} is remote and host tuning, data dirs and cluster "
                "commands must run on that host"
            )
        if self.ssh_host is None and self.ssh_private_key is not None:
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

    # ------------------------------------------------------------------ derived values
    @property
    def effective_waves(self) -> int:
        """Waves actually used: the default of 2 shrinks to 1 for a single-node stack."""
        return min(self.waves, self.nodes)

    @property
    def port_range(self) -> tuple[int, int]:
        low, high = (int(part) for part in self.ip_local_port_range.split())
        return low, high

    @property
    def runs_remotely(self) -> bool:
        return self.ssh_host is not None

    @property
    def client_hostname(self) -> str:
        """The name clients put in their connection string (and the certificate should carry)."""
        return self.public_hostname or self.advertise_address

    @property
    def container_log_opts(self) -> dict[str, str]:
        """Docker json-file rotation for every container of the stack."""
        return {"max-size": self.container_log_max_size, "max-file": str(self.container_log_max_files)}

    def self_signed_subjects(self) -> tuple[list[str], list[str]]:
        """DNS names and IP addresses a self-signed certificate must carry for clients to verify it."""
        candidates = [*self.tls_dns_names, self.client_hostname, self.advertise_address]
        dns_names = list(dict.fromkeys(name for name in candidates if not _is_ipv4(name)))
        ip_addresses = list(dict.fromkeys(name for name in candidates if _is_ipv4(name)))
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


# Fields whose stack-config value is structured (YAML object/list, JSON in PULUMI_CONFIG).
_STRUCTURED = {"sysctls", "tls_dns_names"}
SECRET_KEYS = ("sshPrivateKey", "tlsCertificate", "tlsPrivateKey", "erlangCookie", "dashboardPassword")


def config_keys() -> list[str]:
    """Every stack-config key (camelCase, without namespace) the model accepts."""
    return [to_camel(name) for name in StackConfig.model_fields]


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
        shown = "(hidden: secret)" if key in SECRET_KEYS else repr(item.get("input"))
        if item["type"] == "extra_forbidden":
            close = ", ".join(config_keys())
            lines.append(f"{NAMESPACE}:{key} = {shown}: unknown key; allowed keys: {close}")
            continue
        if item["type"] in ("greater_than_equal", "less_than_equal", "int_parsing", "int_type", "bool_parsing"):
            allowed = _range_text(key)
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


def _range_text(key: str) -> str:
    field = StackConfig.model_fields.get(to_snake(key))
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
