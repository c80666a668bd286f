"""The hosts' keys: a `hosts` entry, the single-host keys, and the one resolved list of hosts.

Pure Python. Users describe their Docker hosts two ways: a `hosts` list (with node counts or a
`placement` map), or, for a stack on one host, the single-host keys (`advertiseAddress`,
`dockerHost`, `sshHost`, ...). :func:`resolve_hosts` turns either into the same tuple of
:class:`Host`, the only shape later steps see; "single host" remains a naming matter (a host
without a name keeps the resource names it was first deployed with).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, Field, SecretStr

from components.config_types import (
    MAX_NODES,
    MODEL_CONFIG,
    NAMESPACE,
    DockerHost,
    HostLabel,
    Hostname,
    PemPrivateKey,
    Port,
    PosixUser,
    SourceAddresses,
    UnicastIPv4,
)


class _SshLoginConfig(BaseModel):
    """How the deployer logs in to a Docker host for its shell: the keys a `hosts` entry and a
    single-host stack share, under the same names."""

    model_config = MODEL_CONFIG

    ssh_host: Hostname | None = None
    ssh_port: Port = 22
    ssh_user: PosixUser = "root"
    ssh_host_key: str | None = None

    def login(self, host: str) -> SshLogin:
        """The SSH login to `host` with these keys."""
        return SshLogin(host, self.ssh_port, self.ssh_user, self.ssh_host_key)


class HostConfig(_SshLoginConfig):
    """One Docker host of a several-host stack (an entry of `emqx-cluster:hosts`).

    Reached over SSH for its shell (host tuning, firewall, data dirs, cluster commands) with its
    own `sshPrivateKey` (set with `pulumi config set --secret --path 'hosts[i].sshPrivateKey'`),
    else the stack's, else the agent; its Docker engine by `dockerHost`, by default the same
    SSH login.
    """

    name: HostLabel
    address: UnicastIPv4  # its nodes bind and advertise it: `emqx<i>@<address>`
    nodes: int | None = Field(None, ge=1, le=MAX_NODES)  # unset when `placement` places the nodes
    docker_host: DockerHost | None = None
    ssh_private_key: PemPrivateKey | None = None
    use_sudo: bool = False
    lb_source_addresses: SourceAddresses = Field(default_factory=list)

    @property
    def ssh_target(self) -> str:
        return self.ssh_host or self.address

    @property
    def engine(self) -> str:
        """The Docker engine's address: as configured, or the host's SSH login."""
        return self.docker_host or f"ssh://{self.ssh_user}@{self.ssh_target}:{self.ssh_port}"


# A single-host key -> the `hosts` entry key that says the same per host.
SINGLE_HOST_KEYS = {
    "advertiseAddress": "address",
    "dockerHost": "dockerHost",
    "sshHost": "sshHost",
    "sshPort": "sshPort",
    "sshUser": "sshUser",
    "sshHostKey": "sshHostKey",
    "hostUseSudo": "useSudo",
    "lbSourceAddresses": "lbSourceAddresses",
}


class SingleHostConfig(_SshLoginConfig):
    """The one Docker host of a stack without `hosts`: the deployer's own machine unless
    `sshHost` is set."""

    advertise_address: UnicastIPv4 = "127.0.0.1"
    docker_host: DockerHost = "unix:///var/run/docker.sock"
    host_use_sudo: bool = False
    # Addresses of this host Nginx connects to the nodes from; unset: the one the route picks.
    lb_source_addresses: SourceAddresses = Field(default_factory=list)


@dataclass(frozen=True)
class SshLogin:
    """Where the deployer logs in to run host commands."""

    host: str
    port: int
    user: str
    host_key: str | None


@dataclass(frozen=True)
class Host:
    """One Docker host as every step after the config reads it, from `hosts` or the single-host keys."""

    # None for the one host of a single-host stack: its resources keep the names they were first
    # deployed with (`emqx-docker`, `emqx-lb`, ...); a named host's are `emqx-<name>-...`.
    name: str | None
    address: str
    node_indexes: tuple[int, ...]
    docker_host: str
    ssh: SshLogin | None  # None: the deployer's own machine (local commands)
    use_sudo: bool
    ssh_private_key: SecretStr | None  # its own key, else the stack's; None: the SSH agent
    position: int | None  # its place in `hosts`; None for the single host
    # Nginx's addresses toward the nodes (proxy_bind), each a port budget; empty: the routed one.
    lb_source_addresses: tuple[str, ...]

    @property
    def label(self) -> str:
        """How outputs and messages name the host."""
        return self.name or self.address

    def config_key(self, key: str) -> str:
        """Where the user sets `key` (a `hosts` entry's key) for this host, for messages: the
        entry's `--path` (`hosts[<position>].<key>`), or the stack's own key on a single host."""
        if self.position is None:
            single = {per_host: single for single, per_host in SINGLE_HOST_KEYS.items()}
            return f"{NAMESPACE}:{single.get(key, key)}"
        return f"{NAMESPACE}:hosts[{self.position}].{key}"


def resolve_hosts(
    hosts: list[HostConfig] | None,
    placement: Mapping[str, str] | None,
    single: SingleHostConfig,
    nodes: int,
    stack_key: SecretStr | None,
) -> tuple[Host, ...]:
    """Every Docker host with its nodes, in config order: the single-host keys as one host, or
    `hosts` with their node counts numbered host after host, or the placement map. A host
    without its own SSH key takes the stack's (`stack_key`)."""
    if hosts is None:
        return (
            Host(
                name=None,
                address=single.advertise_address,
                node_indexes=tuple(range(1, nodes + 1)),
                docker_host=single.docker_host,
                ssh=single.login(single.ssh_host) if single.ssh_host is not None else None,
                use_sudo=single.host_use_sudo,
                ssh_private_key=stack_key,
                position=None,
                lb_source_addresses=tuple(single.lb_source_addresses),
            ),
        )
    resolved, first = [], 1
    for position, spec in enumerate(hosts):
        if placement is not None:
            placed = (node_number(node) for node, name in placement.items() if name == spec.name)
            indexes = tuple(sorted(index for index in placed if index))
        else:
            indexes = tuple(range(first, first + (spec.nodes or 0)))
            first += len(indexes)
        resolved.append(
            Host(
                name=spec.name,
                address=spec.address,
                node_indexes=indexes,
                docker_host=spec.engine,
                ssh=spec.login(spec.ssh_target),
                use_sudo=spec.use_sudo,
                ssh_private_key=spec.ssh_private_key or stack_key,
                position=position,
                lb_source_addresses=tuple(spec.lb_source_addresses),
            )
        )
    return tuple(resolved)


def duplicate_hosts(hosts: list[HostConfig]) -> list[str]:
    """One machine listed twice would share its drop-in, firewall chains and container names."""
    problems: list[str] = []
    for key, label, value_of in (
        ("name", "names", lambda host: host.name),
        ("address", "addresses", lambda host: host.address),
        ("dockerHost", "Docker engines", lambda host: host.engine),
        ("sshHost", "SSH logins", lambda host: f"{host.ssh_target}:{host.ssh_port}"),
    ):
        values = [value_of(host) for host in hosts]
        problems.extend(
            f"{NAMESPACE}:hosts[{position}].{key} = {value!r}: allowed: {label} used once; "
            f"hosts[{values.index(value)}] has it already"
            for position, value in enumerate(values)
            if values.index(value) != position
        )
    return problems


def placement_problems(placement: Mapping[str, str], hosts: list[HostConfig]) -> list[str]:
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
        if not 1 <= node_number(node) <= MAX_NODES
    )
    problems.extend(
        f"{NAMESPACE}:placement: no node on host {name!r}: allowed: at least one node per host "
        "(or remove the host from hosts)"
        for name in known
        if name not in placement.values()
    )
    return problems


def node_number(short_name: str) -> int:
    """N of `emqxN` (no leading zero), else 0."""
    digits = short_name.removeprefix("emqx")
    return int(digits) if short_name.startswith("emqx") and digits.isdigit() and not digits.startswith("0") else 0
