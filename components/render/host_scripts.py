"""POSIX shell run on the Docker host: sysctl drop-in, preflight, node dirs.

The scripts are Jinja2 templates in ./templates (`*.sh.j2`); these functions compute the values
and render them. Every script is complete text (no environment variables: remote.Command sends
those with SSH Setenv, which sshd refuses without AcceptEnv), runs under /bin/sh, and is safe to
run twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from components.capacity import MemoryBudget
from components.config_types import NAMESPACE
from components.plan import Listener, port_ranges
from components.render.templating import render

# The official EMQX image runs as user `emqx`, UID/GID 1000 (emqx/deploy/docker/Dockerfile).
EMQX_UID = 1000


HostOperation = Literal["create", "update", "delete"]


def shell_command(operation: HostOperation, use_sudo: bool) -> str:
    """The command line of a host command: a shell that reads `host_program` from standard input
    and runs `operation`'s script, through `sudo -n` when the SSH user is not root.

    `-n` makes a missing sudo rule fail at once instead of hanging on a password prompt.
    """
    runner = "sudo -n sh -s" if use_sudo else "sh -s"
    return f"{runner} {operation}"


def host_program(scripts: Mapping[str, str]) -> str:
    """Every operation's script in one text for the command's standard input (see
    host-program.sh.j2); operations with the same script share one branch (`create|update)`),
    so a script, and a secret in it, is sent once."""
    branches: dict[str, list[str]] = {}
    for operation, script in scripts.items():
        branches.setdefault(script if script.endswith("\n") else f"{script}\n", []).append(operation)
    return render(
        "host-program.sh.j2",
        branches={"|".join(operations): script for script, operations in branches.items()},
        operations="|".join(scripts),
    )


def _proc_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def sysctl_apply_script(settings: Mapping[str, str], drop_in: str) -> str:
    """Persist `settings` in a sysctl.d drop-in and apply them now.

    Before the first change of a key, its current value is saved in `<drop_in>.before` (kept
    across re-runs), which is what the restore script puts back.
    """
    return render(
        "sysctl-apply.sh.j2",
        settings=settings,
        proc_paths={key: _proc_path(key) for key in settings},
        drop_in=drop_in,
        saved=f"{drop_in}.before",
    )


def sysctl_restore_script(drop_in: str) -> str:
    """Put back every value saved before the first apply, then remove the drop-in."""
    return render("sysctl-restore.sh.j2", drop_in=drop_in, saved=f"{drop_in}.before")


@dataclass(frozen=True)
class NofileClaim:
    """An open-files limit a container will ask Docker for, and the config key that sets it."""

    limit: int
    owner: str  # what asks for it, e.g. "the brokers"
    key: str  # the stack-config key to lower


@dataclass(frozen=True)
class MemoryCheck:
    """The host's memory bound to compute from its MemTotal, and the connections expected of it."""

    budget: MemoryBudget
    expected: int | None
    key: str = f"{NAMESPACE}:expectedConnections"


def preflight_script(
    claims: Sequence[Listener],
    data_dir: str,
    nofile: Sequence[NofileClaim] = (),
    memory: MemoryCheck | None = None,
    local_addresses: Sequence[str] = (),
    local_addresses_key: str = "",
) -> str:
    """Fail early, with every problem listed, when Docker, a port, a limit or the data dir is not usable.

    A port held while its own container runs is fine: that is a re-run, not a conflict. A
    container's nofile limit above the Docker daemon's own hard limit cannot be set (runc:
    "error setting rlimit type 7: operation not permitted", seen with rootless Docker and in
    sandboxes), so it is compared with every dockerd's hard limit from /proc/<pid>/limits.
    With `memory`, the host's memory bound is computed from its MemTotal, checked against the
    expected connections and printed; `local_addresses` must be addresses of the host.
    """
    return render(
        "preflight.sh.j2",
        claims=claims,
        nofile=nofile,
        data_dir=data_dir,
        memory=memory,
        local_addresses=local_addresses,
        local_addresses_key=local_addresses_key,
    )


def node_dirs_script(host_dir: str, subdirs: Sequence[str] = ("data", "log"), uid: int = EMQX_UID) -> str:
    """Create a container's host dirs, owned by its image's user (EMQX's `emqx` by default) so it
    can write them."""
    return render(
        "node-dirs.sh.j2",
        host_dir=host_dir,
        paths=[f"{host_dir}/{sub}" for sub in subdirs],
        owner=f"{uid}:{uid}",
    )


def node_dirs_delete_script(host_dir: str, node_name: str, purge: bool, container: str) -> str:
    """On delete, keep the data dir (the node's identity and sessions) unless purging was asked for.

    Even then, never while the node's container exists: a delete that is part of a replacement
    (`pulumi up --replace`) must not wipe a running node.
    """
    return render("node-dirs-delete.sh.j2", host_dir=host_dir, node_name=node_name, purge=purge, container=container)


def kept_dirs_delete_script(host_dir: str, kept: str, purge: bool, container: str) -> str:
    """The same for another container's host dir (Prometheus's data), `kept` saying what it holds."""
    return render("node-dirs-delete.sh.j2", host_dir=host_dir, kept=kept, purge=purge, container=container)


@dataclass(frozen=True)
class NodeFiles:
    """A node's private files (node_files_script writes them): the dir they are mounted at
    inside the container, read-only."""

    directory: str

    def path(self, name: str) -> str:
        return f"{self.directory}/{name}"


def file_bundle(files: Mapping[str, str]) -> str:
    """Several files as one text for node_files_script: `=== <name>` then the file."""
    return "".join(f"=== {name}\n{content.rstrip(chr(10))}\n" for name, content in files.items())


def node_files_script(directory: str, files: Sequence[str], bundle: str, what: str) -> str:
    """Write a node's private files (`what`: "cluster TLS", "access") from `bundle` (a
    file_bundle), readable by the image's user only.

    The script holds keys or password hashes: it reaches the host only as a secret on standard input.
    """
    return render(
        "node-files.sh.j2",
        directory=directory,
        files=list(files),
        bundle=bundle,
        what=what,
        owner=f"{EMQX_UID}:{EMQX_UID}",
    )


def node_files_delete_script(directory: str, container: str, mount_point: str) -> str:
    """Remove a node's private files once no container of its name mounts them at `mount_point`."""
    return render("node-files-delete.sh.j2", files_dir=directory, container=container, mount_point=mount_point)


FIREWALL_CHAIN = "EMQX-CLUSTER"
FIREWALL_PEERS_CHAIN = "EMQX-CLUSTER-PEERS"
FIREWALL_ADMIN_CHAIN = "EMQX-CLUSTER-ADMIN"
FIREWALL_CHAINS = (FIREWALL_CHAIN, FIREWALL_PEERS_CHAIN, FIREWALL_ADMIN_CHAIN)
FIREWALL_TABLE = "emqx_cluster"
# iptables' multiport match takes at most 15 ports, a range counting as two (iptables-extensions).
_MULTIPORT_RANGES = 7


def _opening(what: str, chain: str, ports: Sequence[int], sources: Sequence[str]) -> dict[str, object]:
    """One group of ports and the sources allowed to open connections to them, as the template
    writes it for iptables (multiport chunks, `low:high`) and for nft (`low-high`)."""
    ranges = port_ranges(ports)
    iptables = [f"{low}:{high}" if high > low else str(low) for low, high in ranges]
    return {
        "what": what,
        "chain": chain,
        "port_chunks": [
            iptables[start : start + _MULTIPORT_RANGES] for start in range(0, len(iptables), _MULTIPORT_RANGES)
        ],
        "nft_ports": ", ".join(f"{low}-{high}" if high > low else str(low) for low, high in ranges),
        "ports_text": ",".join(iptables),
        "sources": list(dict.fromkeys(sources)),
    }


def firewall_apply_script(
    ports: Sequence[int],
    peers: Sequence[str],
    admin_ports: Sequence[int] = (),
    admin_networks: Sequence[str] = (),
) -> str:
    """Allow `ports` (the host's distribution and RPC ports) from `peers` (every cluster host's
    address, this one's included) and, with admin networks, `admin_ports` (the nodes' HTTPS
    dashboards) from those networks; loopback always; reset every other connection to them."""
    openings = [_opening("cluster", FIREWALL_PEERS_CHAIN, ports, [f"{peer}/32" for peer in peers])]
    if admin_networks:
        openings.append(_opening("admin", FIREWALL_ADMIN_CHAIN, admin_ports, admin_networks))
    return render(
        "firewall-apply.sh.j2",
        chain=FIREWALL_CHAIN,
        chains=FIREWALL_CHAINS,
        table=FIREWALL_TABLE,
        openings=openings,
        fail_closed=bool(admin_networks),
    )


def firewall_remove_script() -> str:
    """Remove what firewall_apply_script put in place (iptables chains or the nftables table)."""
    return render(
        "firewall-remove.sh.j2",
        chain=FIREWALL_CHAIN,
        chains=FIREWALL_CHAINS,
        table=FIREWALL_TABLE,
    )
