"""The kinds of value an `emqx-cluster:*` key can hold, each defined once with its check, and
what every config model shares (the namespace, the node limit, the models' settings).

In the style of data-safe-haven's `types/annotated_types.py`: a pydantic v2 `Annotated` type per
kind of value (a port, a unicast IPv4 address, an nginx duration, a PEM key, ...), so the model in
:mod:`components.config` only annotates its fields and a check is never written twice.

Every check raises ``ValueError("allowed: ...")``: ``config_parse._describe`` prints that text after
``emqx-cluster:<key> = <value>: `` (secrets: ``(hidden: secret)``), so the text says what is
allowed and never repeats a secret value. The sysctl overrides are the one exception: their
checks (``sysctl_problems``) write whole lines, one per key (``emqx-cluster:sysctls["<key>"] = ...``),
which ``HostTuningConfig`` raises. Pure Python: no Pulumi import.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasGenerator, BeforeValidator, ConfigDict, Field, SecretStr
from pydantic.alias_generators import to_camel

NAMESPACE = "emqx-cluster"
# A field's json_schema_extra flag: whether the stack must hold its value as a secret
# (config_parse.SECRET_KEYS), where its type does not say (a SecretStr is one unless False).
SECRET_IN_STACK = "secretInStack"
# The validation context's key for the paths whose values stand for Outputs (config_parse).
LATE_PATHS = "latePaths"


def repeated(values: Sequence[str]) -> list[str]:
    """The values listed more than once, sorted (for an "each once" refusal)."""
    return sorted({value for value in values if values.count(value) > 1})


# EMQX 5 derives the Erlang distribution and cluster RPC ports from the trailing digits of the
# node's short name: 4370 + N and 5370 + N (EMQX docs, "Cluster security": "the port is
# 4370 + N where N is the number suffix of the node name"; `rpc.port_discovery = stateless`).
# N = 1000 would run distribution ports into RPC ports, so a one-host cluster stays below it.
MAX_NODES = 999

# Every config model: keys in camelCase as users write them (snake_case from Python), unknown
# keys refused, values frozen once checked.
MODEL_CONFIG = ConfigDict(
    alias_generator=AliasGenerator(validation_alias=to_camel),
    extra="forbid",
    frozen=True,
    populate_by_name=True,
)


def is_ipv4(value: str) -> bool:
    """Whether `value` is a dotted-quad IPv4 address (host names and IPv6 are not)."""
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------- numbers


def matching(pattern: str, allowed: str) -> AfterValidator:
    """A check that the whole value matches `pattern`, refusing it with "allowed: <allowed>"."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"allowed: {allowed}")
        return value

    return AfterValidator(check)


Port = Annotated[int, Field(ge=1, le=65535)]


def _port_range(value: str) -> str:
    parts = value.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError("allowed: two port numbers 'LOW HIGH', e.g. '1024 60999'")
    low, high = (int(p) for p in parts)
    if not 1024 <= low < high <= 65535:
        raise ValueError("allowed: 1024 <= LOW < HIGH <= 65535")
    return f"{low} {high}"


# `net.ipv4.ip_local_port_range` as the kernel writes it: 'LOW HIGH', normalised to one space.
PortRange = Annotated[str, AfterValidator(_port_range)]


# ------------------------------------------------------------------------ names, addresses

HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def _hostname_or_ipv4(allowed: str) -> AfterValidator:
    """One check for 'a DNS name or an IPv4 address'; `allowed` words it for the key's use."""

    def check(value: str) -> str:
        if not (is_ipv4(value) or HOSTNAME.match(value)):
            raise ValueError(f"allowed: {allowed}")
        return value

    return AfterValidator(check)


# A host the deployer reaches (SSH).
Hostname = Annotated[str, _hostname_or_ipv4("an IPv4 address or a DNS name")]
# The host name clients put in their connection string.
PublicHostname = Annotated[str, _hostname_or_ipv4("the DNS name or IPv4 address clients connect to")]


def _dns_names(value: list[str]) -> list[str]:
    # One check over the whole list, so the refusal shows the list as the user wrote it.
    if not value or any(not HOSTNAME.match(name) for name in value):
        raise ValueError("allowed: a non-empty list of DNS names for the self-signed certificate")
    return value


DnsNames = Annotated[list[str], AfterValidator(_dns_names)]


def _unicast_ipv4(value: str) -> str:
    # EMQX node names must be long names (name@IP or name@FQDN), and every node also binds
    # its listeners to this address as `ip:port`, which EMQX only takes with an IP: so an
    # IPv4 address of this host, never a wildcard (clients could then bypass Nginx).
    if is_ipv4(value):
        address = ipaddress.IPv4Address(value)
        if not (address.is_unspecified or address.is_multicast or value == "255.255.255.255"):
            return value
    raise ValueError("allowed: a unicast IPv4 address of the Docker host (nodes bind and advertise it)")


UnicastIPv4 = Annotated[str, AfterValidator(_unicast_ipv4)]


def _source_ipv4(value: str) -> str:
    if is_ipv4(value):
        address = ipaddress.IPv4Address(value)
        if not (address.is_unspecified or address.is_multicast or value == "255.255.255.255"):
            return value
    raise ValueError("allowed: a unicast IPv4 address of the host for Nginx to connect to the nodes from")


# Addresses Nginx connects to the nodes from (proxy_bind): each one is a port budget of its own.
# One `split_clients` share per address, in hundredths of a percent: 64 keeps every share >= 1.5%.
MAX_SOURCE_ADDRESSES = 64
SourceAddresses = Annotated[list[Annotated[str, AfterValidator(_source_ipv4)]], Field(max_length=MAX_SOURCE_ADDRESSES)]


def _ipv4_listen_address(value: str) -> str:
    if not is_ipv4(value):
        raise ValueError("allowed: an IPv4 address to listen on, e.g. 0.0.0.0")
    return value


IPv4ListenAddress = Annotated[str, AfterValidator(_ipv4_listen_address)]


# A host's name in `hosts`: it names the host's Pulumi resources (`emqx-<name>-...`), so a DNS
# label kept short and lower case.
HostLabel = Annotated[
    str, matching(r"[a-z][a-z0-9-]{0,23}", "a short name: a lower-case letter, then a-z 0-9 - (24 at most)")
]


PosixUser = Annotated[
    str, matching(r"[a-z_][a-z0-9_-]{0,31}", "a POSIX user name (lower case letters, digits, _ and -)")
]

SSH_DOCKER_HOST = re.compile(r"^ssh://([A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+(:\d{1,5})?$")


def _docker_host(value: str) -> str:
    if value.startswith("unix:///") or SSH_DOCKER_HOST.match(value):
        return value
    raise ValueError("allowed: unix:///path/to/docker.sock or ssh://user@host[:port]")


# The Docker engine: a local socket, or `ssh://` (the docker provider then uses the ssh client).
DockerHost = Annotated[str, AfterValidator(_docker_host)]


# ------------------------------------------------------------------------------- paths


def _absolute_path(value: str) -> str:
    if not re.match(r"^/[A-Za-z0-9._/-]*$", value) or "/../" in f"{value}/" or value.strip("/") == "":
        raise ValueError("allowed: an absolute path of letters, digits, '.', '_', '-' and '/' (not '/', no '..')")
    return value.rstrip("/")


# A host directory the stack creates and may delete: never `/`, never climbing out with `..`.
AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]


def _sysctl_drop_in(value: str) -> str:
    # The script replaces this file and destroy deletes it, as root: only a drop-in of ours.
    if not re.match(r"^(/[A-Za-z0-9._-]+)+/[0-9]{2}-[A-Za-z0-9._-]+\.conf$", value) or "/../" in value:
        raise ValueError("allowed: an absolute path to a sysctl.d drop-in named NN-name.conf")
    return value


SysctlDropInPath = Annotated[str, AfterValidator(_sysctl_drop_in)]


# ------------------------------------------------------------------------------ images

DOCKER_REF_PART = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*$")


def _docker_repository(value: str) -> str:
    if value not in ("emqx/emqx", "emqx/emqx-enterprise") and not DOCKER_REF_PART.match(value):
        raise ValueError("allowed: an image repository such as emqx/emqx or emqx/emqx-enterprise")
    return value


DockerRepository = Annotated[str, AfterValidator(_docker_repository)]


DockerTag = Annotated[
    str, matching(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", "a Docker image tag such as 1.27 or 1.27-alpine")
]


# A tag of the EMQX image; only 5.x, whose config and CLI this program writes.
EmqxVersion = Annotated[
    str,
    matching(
        r"5\.\d+(\.\d+)?([-.][A-Za-z0-9.]+)?", "an EMQX 5.x image tag such as 5.8.6 (this program configures EMQX 5)"
    ),
]


# Docker platforms the broker image can be built for (`docker build --platform`).
ImagePlatform = Annotated[
    str,
    matching(
        r"linux/(amd64|arm64|arm/v7|arm/v6|386|ppc64le|s390x|riscv64)",
        "the Docker host's platform, e.g. linux/amd64 or linux/arm64",
    ),
]


# ------------------------------------------------------------------------------- nginx

NGINX_DURATION = re.compile(r"^\d+(ms|s|m|h)?$")
LOAD_BALANCING = ("round_robin", "least_conn", "random", "hash_client_address")


def _nginx_duration(value: str) -> str:
    if not NGINX_DURATION.match(value) or int(re.sub(r"\D", "", value)) == 0:
        raise ValueError("allowed: a positive nginx duration such as 500ms, 10s, 1m")
    return value


NginxDuration = Annotated[str, AfterValidator(_nginx_duration)]


def _balancing_method(value: str) -> str:
    if value not in LOAD_BALANCING:
        raise ValueError(f"allowed: one of {', '.join(LOAD_BALANCING)}")
    return value


# A string check, not a Literal, so the refusal lists the methods in the README's words.
BalancingMethod = Annotated[str, AfterValidator(_balancing_method)]


# --------------------------------------------------------------------------------- TLS

TlsMode = Literal["self-signed", "provided"]


def _pem_certificate(value: SecretStr) -> SecretStr:
    if "-----BEGIN CERTIFICATE-----" not in value.get_secret_value():
        raise ValueError("allowed: a PEM certificate chain (-----BEGIN CERTIFICATE-----); value not shown")
    return value


PemCertificate = Annotated[SecretStr, AfterValidator(_pem_certificate)]


def _pem_crl(value: str) -> str:
    if "-----BEGIN X509 CRL-----" not in value:
        raise ValueError("allowed: a PEM certificate revocation list (-----BEGIN X509 CRL-----)")
    return value


PemCrl = Annotated[str, AfterValidator(_pem_crl)]


def _pem_private_key(value: SecretStr) -> SecretStr:
    if not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", value.get_secret_value()):
        raise ValueError("allowed: a PEM private key (-----BEGIN ... PRIVATE KEY-----); value not shown")
    return value


# The TLS key of Nginx and the SSH key of the deployer alike.
PemPrivateKey = Annotated[SecretStr, AfterValidator(_pem_private_key)]


# ----------------------------------------------------------------------------- sysctls

SYSCTL_KEY = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_-]+)+$")
SYSCTL_VALUE = re.compile(r"^[0-9A-Za-z ._:,/-]*$")
# Keys the port plan owns: set from `ipLocalPortRange` and the plan's reserved ports.
PLAN_OWNED_SYSCTLS = ("net.ipv4.ip_local_port_range", "net.ipv4.ip_local_reserved_ports")
# What a sysctls value means "leave this key alone" with, besides a YAML null. `pulumi config set
# --path 'emqx-cluster:sysctls["<key>"]' null` cannot store a YAML null: configSetCmd.Run
# (pulumi/pulumi pkg/cmd/pulumi/config/config.go) makes config.NewTypedValue(value, TypeUnknown),
# and Map.Set with a path (sdk/go/common/resource/config/map.go) takes it through
# Value.coerceObject (value.go), whose coerce (object.go) turns only "true"/"false" and base-10
# integers into YAML scalars: everything else, `null` included, is stored as a string (the stack
# file reads `"null"`, the program gets the JSON string "null"; checked with sdk v3.277.0). So the
# command users type, and the message below tells them to type, stores the string: take it to mean
# null, case-sensitively as YAML spells it. No sysctl has the text `null` as a meaningful value.
SYSCTL_NULL = "null"

# One integer as the kernel reads it: proc_dointvec and its kin parse with base 0, so 0x... is hex
# and a leading 0 octal (Linux 6.18: `010` into somaxconn sets 8), which nobody writing 010 means.
_SYSCTL_INTEGER = re.compile(r"^-?(?:0[xX][0-9a-fA-F]+|0|[1-9][0-9]*)$")
_SYSCTL_OCTAL = re.compile(r"(?:^|\s)-?0[0-9]")


@dataclass(frozen=True)
class SysctlShape:
    """What a sysctl's value must look like: `count` integers separated by spaces (None: one or
    more), or text from SYSCTL_VALUE's alphabet (`count` 0). `fields` name the integers, in the
    order the kernel takes them; `example` is a value Linux itself starts with."""

    count: int | None
    fields: str = ""
    unit: str = ""
    example: str = ""

    def accepts(self, value: str) -> bool:
        if not SYSCTL_VALUE.match(value) or not value.strip():
            return False
        if self.count == 0:
            return True
        parts = value.split()
        return all(_SYSCTL_INTEGER.match(part) for part in parts) and self.count in (None, len(parts))

    def allowed(self, value: str) -> str:
        """What is allowed, as the error for `value` says it."""
        if self.count == 0:
            return "text of digits, letters, spaces and . _ : , / -, not empty"
        if self.count == 1:
            text = "one integer"
        else:
            amount = "one or more integers" if self.count is None else f"{self.count} integers"
            text = f"{amount} separated by spaces ({', '.join(part for part in (self.fields, self.unit) if part)})"
        if _SYSCTL_OCTAL.search(value):
            text += ", without a leading 0 (the kernel reads 010 as octal 8)"
        return text + (f", e.g. {self.example!r} (Linux's default)" if self.example else "")

    @property
    def placeholder(self) -> str:
        """The value in the `pulumi config set` line an error suggests."""
        if self.count == 0:
            return "<value>"
        if self.count is None:
            return f"<{self.fields}> <{self.fields}> ..."
        if self.count == 1:
            return "<integer>"
        return " ".join(f"<{name}>" for name in self.fields.split())


# Sysctls that take several integers. The kernel takes a vector value short, keeping the values it
# had for the rest, and ignores any beyond its length (Linux 6.18: `4096 16384` into tcp_rmem
# leaves its max as it was; `300 400` into somaxconn sets 300): a wrong count would go unnoticed,
# so preview refuses it.
SYSCTL_VECTORS: dict[str, SysctlShape] = {
    "net.ipv4.tcp_rmem": SysctlShape(3, "min default max", "in bytes", "4096 131072 6291456"),
    "net.ipv4.tcp_wmem": SysctlShape(3, "min default max", "in bytes", "4096 16384 4194304"),
    "net.ipv4.tcp_mem": SysctlShape(3, "min pressure max", "in pages"),
    "net.ipv4.udp_mem": SysctlShape(3, "min pressure max", "in pages"),
    "net.sctp.sctp_mem": SysctlShape(3, "min pressure max", "in pages"),
    "net.sctp.sctp_rmem": SysctlShape(3, "min default max", "in bytes"),
    "net.sctp.sctp_wmem": SysctlShape(3, "min default max", "in bytes"),
    "net.ipv4.ping_group_range": SysctlShape(2, "low high", "group ids"),
    "kernel.sem": SysctlShape(4, "semmsl semmns semopm semmni"),
    "kernel.printk": SysctlShape(4, "console default minimum boot", "log levels"),
    "kernel.usermodehelper.bset": SysctlShape(2, "low high", "32-bit halves of a capability set"),
    "kernel.usermodehelper.inheritable": SysctlShape(2, "low high", "32-bit halves of a capability set"),
    "vm.lowmem_reserve_ratio": SysctlShape(None, "ratio", "one per memory zone"),
}
# Sysctls whose value is text (a name, a list, a bitmap, a path): only SYSCTL_VALUE's alphabet.
SYSCTL_TEXTS = frozenset(
    {
        "kernel.core_pattern",
        "kernel.domainname",
        "kernel.hostname",
        "kernel.hotplug",
        "kernel.modprobe",
        "kernel.poweroff_cmd",
        "kernel.printk_devkmsg",
        "kernel.seccomp.actions_logged",
        "kernel.watchdog_cpumask",
        "net.core.default_qdisc",
        "net.core.flow_limit_cpu_bitmap",
        "net.core.rps_default_mask",
        "net.ipv4.tcp_allowed_congestion_control",
        "net.ipv4.tcp_congestion_control",
        "net.ipv4.tcp_fastopen_key",
        "net.ipv6.icmp.ratemask",
        "net.mptcp.path_manager",
        "net.mptcp.scheduler",
        "vm.numa_zonelist_order",
    }
)
# Text sysctls that exist once per interface or protocol family.
_SYSCTL_TEXT_FAMILIES = re.compile(r"^(net\.ipv6\.conf\.[^.]+\.stable_secret|net\.netfilter\.nf_log\.[0-9]+)$")
_SYSCTL_ONE_INTEGER = SysctlShape(1)
_SYSCTL_TEXT = SysctlShape(0)


def sysctl_shape(key: str) -> SysctlShape:
    """What `key`'s value must look like: the vectors and texts above by name, one integer otherwise
    (most sysctls, and every key EMQX's tuning sets apart from tcp_rmem and tcp_wmem)."""
    if key in SYSCTL_VECTORS:
        return SYSCTL_VECTORS[key]
    if key in SYSCTL_TEXTS or _SYSCTL_TEXT_FAMILIES.match(key):
        return _SYSCTL_TEXT
    return _SYSCTL_ONE_INTEGER


def sysctl_config_path(key: str) -> str:
    """The `pulumi config set --path` key of one sysctl override, as error lines name it."""
    return f'{NAMESPACE}:sysctls["{key}"]'


def _config_set(key: str, value: str) -> str:
    return f"`pulumi config set --path '{sysctl_config_path(key)}' {value}`"


def _sysctl_text(value: Any) -> Any:
    """A value as the program takes it: None (or the string "null") leaves the key alone; a YAML
    number or boolean, or anything else, is taken as the text it was written as, for the checks
    in sysctl_problems to accept or name."""
    if value is None or value == SYSCTL_NULL:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _sysctl_values(value: Any) -> Any:
    # YAML `net.core.somaxconn: 32768` reaches us as a JSON number: take it as its text.
    if isinstance(value, Mapping):
        return {key: _sysctl_text(setting) for key, setting in value.items()}
    return value


def sysctl_problems(overrides: Mapping[str, str | None]) -> list[str]:
    """One full error line per override that cannot be applied, each naming the key as `pulumi
    config set --path` takes it, the value, what is allowed and a command that fixes it. Keys and
    values are written into a script run as root: a strict alphabet, no shell syntax."""
    problems: list[str] = []
    for key, setting in overrides.items():
        shown = f"{sysctl_config_path(key)} = {SYSCTL_NULL if setting is None else repr(setting)}"
        quotable = not re.search(r"[\"'\\\s\]]", key)
        if not SYSCTL_KEY.match(key):
            remove = (
                f"with `pulumi config rm --path '{sysctl_config_path(key)}'`"
                if quotable
                else f"from {NAMESPACE}:sysctls in Pulumi.<stack>.yaml"
            )
            problems.append(
                f"{shown}: allowed: a sysctl name as `sysctl -a` lists it, such as net.core.somaxconn "
                f"(lower-case letters, digits, _ and -, in dot-separated parts); remove this one {remove}"
            )
        elif key in PLAN_OWNED_SYSCTLS:
            problems.append(
                f"{shown}: allowed: any sysctl except {' and '.join(PLAN_OWNED_SYSCTLS)}, which the port "
                f"plan sets from emqx-cluster:ipLocalPortRange; remove this one with "
                f"`pulumi config rm --path '{sysctl_config_path(key)}'` and set the range with "
                "`pulumi config set ipLocalPortRange '<low> <high>'`"
            )
        elif setting is not None and not (shape := sysctl_shape(key)).accepts(setting):
            problems.append(
                f"{shown}: allowed: {shape.allowed(setting)}; set it with {_config_set(key, repr(shape.placeholder))}, "
                f"or leave the key alone with {_config_set(key, SYSCTL_NULL)}"
            )
    return problems


# `key: value` overrides of the tuning values; `key: null` (or the string "null") leaves that key
# alone. HostTuningConfig refuses, with sysctl_problems, what cannot be applied.
SysctlMap = Annotated[dict[str, str | None], BeforeValidator(_sysctl_values)]


# ----------------------------------------------------------------------------- secrets

# The cookie goes into EMQX_NODE__COOKIE as a bare HOCON token. bin/emqx (v5.8.6, "Resolve Erlang
# cookie") compares that variable RAW with the cookie the running node booted with, which it
# reads back from the HOCON-parsed config with the double quotes stripped; any difference makes
# every `emqx ctl` (health check, join, leave, verify) die with "EMQX_NODE__COOKIE is different
# from the cookie used by <node>". So only values HOCON keeps unchanged as an unquoted string:
# a leading letter (a leading digit is lexed as a number) and no quote, `#`, `:`, `$` or space.
ERLANG_COOKIE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{15,254}$")
EMQX_DEFAULT_COOKIE = "emqxsecretcookie"  # bin/emqx EMQX_DEFAULT_ERLANG_COOKIE


def _erlang_cookie(value: SecretStr) -> SecretStr:
    cookie = value.get_secret_value()
    if cookie == EMQX_DEFAULT_COOKIE:
        raise ValueError(f"allowed: any cookie but EMQX's public default {EMQX_DEFAULT_COOKIE!r}; value not shown")
    if not ERLANG_COOKIE.match(cookie):
        raise ValueError(
            "allowed: 16 to 255 characters from A-Z a-z 0-9 _ -, starting with a letter "
            "(EMQX compares the cookie as written with its HOCON-parsed value); value not shown"
        )
    return value


ErlangCookie = Annotated[SecretStr, AfterValidator(_erlang_cookie)]

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


def _dashboard_password(value: SecretStr) -> SecretStr:
    password = value.get_secret_value()
    if not 8 <= len(password) <= 64 or not password.isascii():
        raise ValueError("allowed: 8 to 64 ASCII characters (EMQX's dashboard password rule); value not shown")
    if sum(any(char in group for char in password) for group in DASHBOARD_PASSWORD_GROUPS) < 2:
        raise ValueError(
            "allowed: at least two kinds of characters from letters, digits and specials "
            "(EMQX's dashboard password rule); value not shown"
        )
    return value


DashboardPassword = Annotated[SecretStr, AfterValidator(_dashboard_password)]


# ---------------------------------------------------------------------- docker logging

SIZE = re.compile(r"^\d+[kmg]$")


def _size(value: str) -> str:
    if not SIZE.match(value) or int(value[:-1]) == 0:
        raise ValueError("allowed: a positive size with unit k, m or g, e.g. 50m")
    return value


# A Docker log-driver size such as `50m` (json-file `max-size`).
Size = Annotated[str, AfterValidator(_size)]


# ------------------------------------------------------------------------------ prometheus

# A Prometheus duration of one unit (`--storage.tsdb.retention.time`, `scrape_interval`):
# prometheus/common model.ParseDuration also takes compound ones (1h30m); one unit is enough here.
PrometheusDuration = Annotated[
    str, matching(r"[1-9][0-9]*(ms|s|m|h|d|w|y)", "a positive Prometheus duration such as 15s, 1m, 15d")
]
# `--storage.tsdb.retention.size`: Prometheus's units (prometheus/common units.ParseBase2Bytes).
PrometheusSize = Annotated[str, matching(r"[1-9][0-9]*(KB|MB|GB|TB|PB)", "a positive size such as 512MB or 2GB")]

# Seconds per unit of a Prometheus duration.
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def duration_seconds(duration: str) -> float:
    """A one-unit Prometheus duration (`15s`, `500ms`) in seconds."""
    number = duration.rstrip("msdhwy")
    return int(number) * DURATION_UNITS[duration[len(number) :]]


# Where Prometheus sends its alerts: Alertmanagers as host:port.
AlertmanagerTargets = list[
    Annotated[
        str, matching(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?:[1-9][0-9]{0,4}", "host:port, e.g. 10.0.0.5:9093")
    ]
]
