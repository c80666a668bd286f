"""The e2e HOST: a network namespace with its own dockerd and sshd, reached over a veth pair.

It plays the Docker host of a real `pulumi up`: the deployer (this machine) reaches it at
`address` over SSH (a non-root user with passwordless `sudo -n` and the namespace's docker
socket) and, for the docker provider, at the unix socket `docker_host`. Host-network
containers of its dockerd share the namespace: own loopback, own ports, own `net.*` sysctls
(global `fs.*` sysctls and the filesystem are the machine's).

Why `nsenter --net` and not `ip netns exec` for dockerd: the latter remounts /sys in a private
mount namespace and hides the cgroup mounts ("Devices cgroup isn't mounted").

Every step of `host_up` is recorded in a state file (`/run/emqxe2e/<name>/state.json`) before
it runs, so `host_down` undoes exactly what exists, idempotently, from the same process (a
pytest fixture) or another one (`python -m tests.support.e2e.host down`).

CLI: `python -m tests.support.e2e.host up [--name N] [--keep-data-root]` prints the host as
JSON (and writes `<state dir>/env` for shells); `down [NAME ...|--all]` tears hosts down.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.support.netns import NetNamespace, run_script
from tests.support.ports import WaitTimeoutError, port_is_open, wait_until
from tests.support.processes import run_captured
from tests.support.sshd import SSHD, SshEndpoint, ensure_user, ssh_endpoint, ssh_keys, sshd_config

STATE_ROOT = Path("/run/emqxe2e")
NETNS_DIR = Path("/var/run/netns")
NAME_PREFIX = "emqxe2e"
E2E_USER = "emqxe2e"
DOCKER_GROUP = "docker"
SUBNET_PREFIX = "10.231"  # 10.231.<n>.0/24 per host: .1 the machine side, .2 the host
# Hosts on a shared bridge (several hosts of one stack): 10.232.0.0/24, the machine's end of the
# bridge .1, hosts from .2; they reach each other directly, as hosts on one LAN.
BRIDGE_SUBNET = "10.232.0"
SSH_PORT = 22
LOG = logging.getLogger(__name__)
DOCKERD_FLAGS = ("--iptables=false", "--ip6tables=false", "--bridge=none")
# The machine's filesystem is every host's, except this dir: each host's sshd (and so every
# command the stack runs over SSH) sees its own `<state dir>/private` here, in a mount namespace
# of its own. Several hosts of one stack keep their sysctl drop-in here, as each would in /etc.
PRIVATE_DIR = STATE_ROOT / "private"


class HostError(RuntimeError):
    """The e2e host could not be brought up; its log files are named in the message."""


@dataclass(frozen=True)
class E2eHost:
    """A running e2e host. Serializable (`to_json`/`load`) so another process can tear it down."""

    name: str  # network namespace name (`ip netns`), also the state dir's name
    state_dir: Path
    address: str  # the host's address in the namespace (veth), e.g. 10.231.0.2
    gateway: str  # the machine's end of the veth, e.g. 10.231.0.1
    veth_host: str
    veth_ns: str
    docker_socket: Path
    data_root: Path
    exec_root: Path
    keep_data_root: bool
    dockerd_pid: int | None
    sshd_pid: int | None
    ssh: SshEndpoint | None
    sudoers_file: Path | None
    host_public_key: str | None = None  # "ssh-ed25519 AAAA..." (for sshHostKey)
    logs: dict[str, str] = field(default_factory=dict)
    bridge: str | None = None  # the machine's bridge the veth is a port of (several-host stacks)

    # --- what tests and the Pulumi stack config need ---------------------------------------

    @property
    def docker_host(self) -> str:
        """The docker provider's / CLI's DOCKER_HOST for this host's engine."""
        return f"unix://{self.docker_socket}"

    @property
    def ssh_docker_host(self) -> str:
        """`dockerHost` for the stack's ssh:// mode (the remote session's DOCKER_HOST is set)."""
        assert self.ssh is not None
        return f"ssh://{self.ssh.user}@{self.address}:{self.ssh.port}"

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.name

    @property
    def netns(self) -> NetNamespace:
        """The integration tier's helper (`ip netns exec`: fine for ip/sysctl, not for dockerd)."""
        return NetNamespace(self.name)

    def nsenter_argv(self, *argv: str) -> list[str]:
        """`argv` run inside the host's network namespace (mounts and cgroups stay the machine's)."""
        return ["nsenter", f"--net={self.netns_path}", *argv]

    def docker_argv(self, *argv: str) -> list[str]:
        return [docker_cli(), "-H", self.docker_host, *argv]

    def docker(
        self, *argv: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this host's engine; raises with stderr when `check` fails."""
        proc = run_captured(self.docker_argv(*argv), input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc

    def run_in_ns(self, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`sh -c script` inside the namespace via nsenter; never raises on exit code."""
        return run_script(self.nsenter_argv(), script, timeout)

    def env(self) -> dict[str, str]:
        """Shell variables describing the host (written to `<state_dir>/env` by the CLI)."""
        values = {
            "E2E_NETNS": self.name,
            "E2E_ADDRESS": self.address,
            "E2E_GATEWAY": self.gateway,
            "E2E_DOCKER_HOST": self.docker_host,
        }
        if self.ssh is not None:
            values |= {
                "E2E_SSH_HOST": self.ssh.host,
                "E2E_SSH_PORT": str(self.ssh.port),
                "E2E_SSH_USER": self.ssh.user,
                "E2E_SSH_KEY": str(self.ssh.key_file),
                "E2E_SSH_KNOWN_HOSTS": str(self.ssh.known_hosts_file),
                "E2E_SSH_HOST_KEY": self.host_public_key or "",
                "E2E_SSH_DOCKER_HOST": self.ssh_docker_host,
            }
        return values

    # --- persistence -----------------------------------------------------------------------

    def to_json(self) -> str:
        data = asdict(self)
        if self.ssh is not None:
            data["ssh"]["private_key_pem"] = None  # the key file is in the state dir
        return json.dumps(data, default=str, indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> E2eHost:
        ssh = data.get("ssh")
        endpoint = None
        if ssh:
            key_file = Path(ssh["key_file"])
            endpoint = SshEndpoint(
                host=ssh["host"],
                port=int(ssh["port"]),
                user=ssh["user"],
                private_key_pem=key_file.read_text() if key_file.exists() else "",
                known_hosts_line=ssh["known_hosts_line"],
                key_file=key_file,
                known_hosts_file=Path(ssh["known_hosts_file"]),
                log_file=Path(ssh["log_file"]),
            )
        return cls(
            name=data["name"],
            state_dir=Path(data["state_dir"]),
            address=data["address"],
            gateway=data["gateway"],
            veth_host=data["veth_host"],
            veth_ns=data["veth_ns"],
            docker_socket=Path(data["docker_socket"]),
            data_root=Path(data["data_root"]),
            exec_root=Path(data["exec_root"]),
            keep_data_root=bool(data["keep_data_root"]),
            dockerd_pid=data.get("dockerd_pid"),
            sshd_pid=data.get("sshd_pid"),
            ssh=endpoint,
            sudoers_file=Path(data["sudoers_file"]) if data.get("sudoers_file") else None,
            host_public_key=data.get("host_public_key"),
            logs=dict(data.get("logs") or {}),
            bridge=data.get("bridge"),
        )

    @classmethod
    def load(cls, name_or_state: str | Path) -> E2eHost:
        path = Path(name_or_state)
        if not path.name.endswith(".json"):
            path = STATE_ROOT / str(name_or_state) / "state.json"
        return cls.from_dict(json.loads(path.read_text()))

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_dir / "state.json.tmp"
        tmp.write_text(self.to_json())
        tmp.rename(self.state_dir / "state.json")


def docker_cli() -> str:
    """The docker CLI: Debian's (same release as the engine) if installed, else any on PATH."""
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and Path(candidate).exists():
            return candidate
    raise HostError("no docker CLI (apt-get install docker.io)")


def missing_requirements() -> list[str]:
    """What keeps an e2e host from starting here (empty when it can run)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not root (network namespaces, dockerd, a test user)")
    for tool, package in (
        ("dockerd", "docker.io"),
        ("debootstrap", "debootstrap"),
        ("nsenter", "util-linux"),
        ("ip", "iproute2"),
        ("ssh", "openssh-client"),
        ("visudo", "sudo"),
    ):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            problems.append(f"`{tool}` missing (Debian package {package})")
    if not SSHD.exists():
        problems.append(f"{SSHD} missing (Debian package openssh-server)")
    return problems


# --- up ----------------------------------------------------------------------------------


def _run(argv: Sequence[str], what: str, timeout: float = 60) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise HostError(f"{what} failed ({' '.join(argv)}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _used_subnets() -> set[str]:
    out = _run(["ip", "-4", "-o", "addr", "show"], "listing addresses")
    nets = set()
    for match in re.finditer(r"inet (\S+)", out):
        nets.add(str(ipaddress.ip_interface(match.group(1)).network))
    # Hosts that are up but whose veth is in another namespace still hold their subnet.
    for state in STATE_ROOT.glob("*/state.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            address = json.loads(state.read_text())["address"]
            nets.add(str(ipaddress.ip_interface(f"{address}/24").network))
    return nets


@contextlib.contextmanager
def _global_lock() -> Iterator[None]:
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    with (STATE_ROOT / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wait(predicate: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    try:
        wait_until(predicate, what, timeout=timeout, interval=0.1)
    except WaitTimeoutError:
        tail = ""
        if log is not None and log.exists():
            tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise HostError(f"{what} not ready after {timeout}s{tail}") from None


def host_up(
    name: str | None = None,
    *,
    data_root: Path | None = None,
    keep_data_root: bool = False,
    shared_data_root: bool = True,
    user: str = E2E_USER,
    ssh_port: int = SSH_PORT,
    bridge: str | None = None,
) -> E2eHost:
    """Bring a host up (namespace, veth, dockerd, sshd); on any failure tear down what exists.

    Data root: by default the cache's shared one (`<cache>/docker-data-root`, kept: the e2e
    images survive between runs, and deleting an image store costs ~8 s here) when no other host
    holds it, else a private one in the state dir (deleted on down). A host taking the shared
    root starts clean: leftover containers and every image that is not a cached e2e image are removed.
    `data_root` forces a given dir (kept only with `keep_data_root`); `shared_data_root=False`
    forces a private one. `bridge`: attach to that bridge of the machine (created on first use,
    deleted with its last host) in BRIDGE_SUBNET, instead of a /24 of its own.
    """
    problems = missing_requirements()
    if problems:
        raise HostError("e2e host unavailable: " + "; ".join(problems))
    name = name or f"{NAME_PREFIX}-{os.getpid()}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}", name):
        raise HostError(f"bad host name {name!r}")
    token = hashlib.sha1(name.encode()).hexdigest()[:8]
    state_dir = STATE_ROOT / name
    with _global_lock():
        if (state_dir / "state.json").exists() or (NETNS_DIR / name).exists():
            raise HostError(f"e2e host {name} exists already (tear it down: host down {name})")
        if bridge is None:
            used = _used_subnets()
            index = next((n for n in range(256) if f"{SUBNET_PREFIX}.{n}.0/24" not in used), None)
            if index is None:
                raise HostError(f"no free {SUBNET_PREFIX}.N.0/24 subnet")
            address, gateway = f"{SUBNET_PREFIX}.{index}.2", f"{SUBNET_PREFIX}.{index}.1"
        else:
            taken = _bridge_addresses()
            octet = next((n for n in range(2, 255) if f"{BRIDGE_SUBNET}.{n}" not in taken), None)
            if octet is None:
                raise HostError(f"no free address in {BRIDGE_SUBNET}.0/24")
            address, gateway = f"{BRIDGE_SUBNET}.{octet}", f"{BRIDGE_SUBNET}.1"
        state_dir.mkdir(parents=True, exist_ok=True)
        state_dir.chmod(0o755)
        if data_root is None and shared_data_root and _claim_shared_root(name):
            data_root, keep_data_root = shared_root(), True
        host = E2eHost(
            name=name,
            state_dir=state_dir,
            address=address,
            gateway=gateway,
            veth_host=f"e2e{token}h",
            veth_ns=f"e2e{token}n",
            docker_socket=state_dir / "docker.sock",
            data_root=data_root or state_dir / "data-root",
            exec_root=state_dir / "exec",
            keep_data_root=keep_data_root,
            dockerd_pid=None,
            sshd_pid=None,
            ssh=None,
            sudoers_file=None,
            logs={"dockerd": str(state_dir / "dockerd.log"), "sshd": str(state_dir / "sshd.log")},
            bridge=bridge,
        )
        host.save()  # from here on, host_down can clean up whatever exists
        try:
            _network_up(host)
        except BaseException:
            host_down(host)
            raise
    try:
        host = _dockerd_up(host)
        if host.data_root == shared_root():
            clean_engine(host)
        host = _sshd_up(host, user, ssh_port)
    except BaseException:
        host_down(host)
        raise
    return host


def shared_root() -> Path:
    from tests.support.e2e.rootfs import cache_dir

    return cache_dir() / "docker-data-root"


def _claim_shared_root(name: str) -> bool:
    """Take the shared data root for host `name` if it is free (or its holder is gone); under the global lock."""
    owner_file = shared_root().with_name("docker-data-root.owner")
    if owner_file.exists():
        holder = owner_file.read_text().strip()
        if holder != name and (STATE_ROOT / holder / "state.json").exists():
            return False
    owner_file.write_text(name + "\n")
    return True


def _release_shared_root(name: str) -> None:
    owner_file = shared_root().with_name("docker-data-root.owner")
    with contextlib.suppress(OSError):
        if owner_file.read_text().strip() == name:
            owner_file.unlink()


def clean_engine(host: E2eHost) -> None:
    """A fresh engine again, except for the cached e2e images: for a reused data root, and
    before each scenario module, so that one that failed half-way leaves nothing in the next's way."""
    from tests.support.e2e.images import CONTEXT_LABEL

    containers = host.docker("ps", "-aq").stdout.split()
    if containers:
        host.docker("rm", "-f", *containers, timeout=120)
    everything = set(host.docker("image", "ls", "-aq", "--no-trunc").stdout.split())
    cached = set(host.docker("image", "ls", "-aq", "--no-trunc", "--filter", f"label={CONTEXT_LABEL}").stdout.split())
    if everything - cached:
        host.docker("image", "rm", "-f", *sorted(everything - cached), check=False, timeout=120)
    host.docker("volume", "prune", "-f", check=False)


def _bridge_addresses() -> set[str]:
    """Addresses of the hosts that are up on a bridge (under the global lock)."""
    taken = set()
    for state in STATE_ROOT.glob("*/state.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            data = json.loads(state.read_text())
            if data.get("bridge"):
                taken.add(data["address"])
    return taken


def _network_up(host: E2eHost) -> None:
    _run(["ip", "netns", "add", host.name], "ip netns add")
    _run(
        ["ip", "link", "add", host.veth_host, "type", "veth", "peer", "name", host.veth_ns, "netns", host.name],
        "creating the veth pair",
    )
    if host.bridge is None:
        _run(["ip", "addr", "add", f"{host.gateway}/24", "dev", host.veth_host], "machine-side address")
    else:
        if not Path("/sys/class/net", host.bridge).exists():
            _run(["ip", "link", "add", "name", host.bridge, "type", "bridge"], "creating the bridge")
            _run(["ip", "addr", "add", f"{host.gateway}/24", "dev", host.bridge], "the bridge's address")
            _run(["ip", "link", "set", host.bridge, "up"], "bridge up")
        _run(["ip", "link", "set", host.veth_host, "master", host.bridge], "veth into the bridge")
    _run(["ip", "link", "set", host.veth_host, "up"], "machine-side link up")
    inside = [
        ["ip", "link", "set", "lo", "up"],
        ["ip", "addr", "add", f"{host.address}/24", "dev", host.veth_ns],
        ["ip", "link", "set", host.veth_ns, "up"],
        ["ip", "route", "add", "default", "via", host.gateway],
    ]
    for argv in inside:
        _run(host.nsenter_argv(*argv), "namespace network set-up")


def _dockerd_up(host: E2eHost) -> E2eHost:
    host.data_root.mkdir(parents=True, exist_ok=True)
    host.exec_root.mkdir(parents=True, exist_ok=True)
    pidfile = host.state_dir / "dockerd.pid"
    log = Path(host.logs["dockerd"])
    argv = host.nsenter_argv(
        "dockerd",
        *DOCKERD_FLAGS,
        f"--data-root={host.data_root}",
        f"--exec-root={host.exec_root}",
        f"--pidfile={pidfile}",
        f"--host=unix://{host.docker_socket}",
        f"--group={DOCKER_GROUP}",
        "--log-level=warn",
    )
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    # nsenter execs dockerd: the child's PID is dockerd's.
    host = _replace(host, dockerd_pid=proc.pid)
    host.save()

    def ready() -> bool:
        if proc.poll() is not None:
            raise HostError(
                f"dockerd exited with {proc.returncode}; log {log}:\n{log.read_text(errors='replace')[-3000:]}"
            )
        return host.docker("version", "--format", "{{.Server.Version}}", check=False, timeout=10).returncode == 0

    _wait(ready, 60, "dockerd", log)
    return host


def _sshd_up(host: E2eHost, user: str, port: int) -> E2eHost:
    ensure_user(user)
    _run(["usermod", "-aG", DOCKER_GROUP, user], f"adding {user} to the docker group")
    sudoers = Path("/etc/sudoers.d") / f"zz-{host.name}".replace(".", "-")
    host = _replace(host, sudoers_file=sudoers)
    host.save()
    # NOPASSWD sudo as the prod host has; env_keep so `sudo -n sh -s <operation>` (every host
    # command of the program) still talks to this host's engine, not /var/run/docker.sock.
    tmp = sudoers.with_name(sudoers.name + "~")  # ignored by sudo while being validated
    tmp.write_text(f'Defaults:{user} env_keep += "DOCKER_HOST"\n{user} ALL=(ALL:ALL) NOPASSWD: ALL\n')
    tmp.chmod(0o440)
    _run(["visudo", "-cqf", str(tmp)], "validating the sudoers drop-in")
    tmp.rename(sudoers)

    ssh_dir = host.state_dir / "ssh"
    ssh_dir.mkdir(mode=0o755, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
    host_pub = ssh_keys(ssh_dir, "emqx-e2e")
    # The integration tier's sshd config, listening on the veth address, with DOCKER_HOST set
    # for every session (remote.Command and the docker provider's `ssh ... docker system dial-stdio`).
    config = sshd_config(ssh_dir, port, user, listen=host.address)
    config += f"SetEnv DOCKER_HOST={host.docker_host}\n"
    (ssh_dir / "sshd_config").write_text(config)
    _run([str(SSHD), "-t", "-f", str(ssh_dir / "sshd_config")], "sshd -t")
    log = Path(host.logs["sshd"])
    private = host.state_dir / "private"
    private.mkdir(mode=0o755, exist_ok=True)
    PRIVATE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    sshd = f"exec {SSHD} -D -e -f {ssh_dir / 'sshd_config'}"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            host.nsenter_argv(
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                f"mount --bind {private} {PRIVATE_DIR} && {sshd}",
            ),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    endpoint = ssh_endpoint(ssh_dir, host.address, port, user, host_pub, log)
    host = _replace(host, sshd_pid=proc.pid, ssh=endpoint, host_public_key=host_pub)
    host.save()

    def ready() -> bool:
        if proc.poll() is not None:
            raise HostError(f"sshd exited with {proc.returncode}; log {log}:\n{log.read_text(errors='replace')}")
        return port_is_open(host.address, port)

    _wait(ready, 15, "sshd", log)
    return host


def link(host: E2eHost, up: bool) -> None:
    """Cut the host off the network (its end of the veth down) or connect it again."""
    _run(["ip", "link", "set", host.veth_host, "up" if up else "down"], "setting the host's link")


def engine_stop(host: E2eHost) -> None:
    """Stop the host's dockerd as a host shutdown would: it stops its containers first."""
    _stop_pid(host.dockerd_pid, 60)


def engine_start(host: E2eHost) -> E2eHost:
    """Start the host's dockerd again; containers with a restart policy come back with it."""
    return _dockerd_up(host)


def _replace(host: E2eHost, **changes: Any) -> E2eHost:
    data = asdict(host)
    data.update(changes)
    if isinstance(data.get("ssh"), dict):
        data["ssh"] = host.ssh
    return E2eHost(**data)


# --- down --------------------------------------------------------------------------------


def _netns_inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _pids_in_netns(inode: int) -> list[int]:
    """Every process whose network namespace is the host's: all of them are the host's own."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.stat(entry / "ns" / "net").st_ino == inode and int(entry.name) != os.getpid():
                pids.append(int(entry.name))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone; reap it if it is ours.
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _stop_pid(pid: int | None, timeout: float) -> None:
    if pid is None or not _alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _is_ours(pid: int | None, inode: int | None) -> bool:
    """A recorded PID is only signalled while it still lives in the host's namespace (no PID reuse accidents)."""
    if pid is None or inode is None:
        return False
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == inode
    except OSError:
        return False


def _unmount_under(*roots: Path) -> None:
    """Lazily unmount whatever dockerd left mounted below `roots` (deepest first)."""
    prefixes = [str(root.resolve()) + "/" for root in roots]
    mounts = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if any(point.startswith(prefix) or point + "/" == prefix for prefix in prefixes):
                mounts.append(point)
    for point in sorted(set(mounts), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def host_down(host: E2eHost | str | Path) -> None:
    """Stop and remove everything the host has; safe to call twice or on a half-built host."""
    if not isinstance(host, E2eHost):
        try:
            host = E2eHost.load(host)
        except FileNotFoundError:
            return
    started = time.monotonic()
    inode = _netns_inode(host.netns_path)
    # 1. Containers, while the engine still answers (quick: they are throwaway).
    LOG.debug("down %s: step 1 at %.1fs", host.name, time.monotonic() - started)
    if _is_ours(host.dockerd_pid, inode) and host.docker_socket.exists():
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            ids = host.docker("ps", "-aq", check=False, timeout=20).stdout.split()
            if ids:
                host.docker("rm", "-f", *ids, check=False, timeout=60)
    # 2. sshd and dockerd by their PIDs (dockerd stops its containerd).
    LOG.debug("down %s: step 2 at %.1fs", host.name, time.monotonic() - started)
    if _is_ours(host.sshd_pid, inode):
        _stop_pid(host.sshd_pid, 10)
    if _is_ours(host.dockerd_pid, inode):
        _stop_pid(host.dockerd_pid, 30)
    # 3. Whatever else still runs in the namespace (shims, container processes, ssh sessions).
    LOG.debug("down %s: step 3 at %.1fs", host.name, time.monotonic() - started)
    if inode is not None:
        # A container's PID 1 without a SIGTERM handler ignores it: short grace, then SIGKILL.
        for sig, grace in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
            pids = _pids_in_netns(inode)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while any(_alive(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.1)
    # 4. Network: the namespace (its veth end goes with it, and so does the pair).
    LOG.debug("down %s: step 4 at %.1fs", host.name, time.monotonic() - started)
    subprocess.run(["ip", "link", "del", host.veth_host], capture_output=True, check=False)
    if host.netns_path.exists():
        subprocess.run(["ip", "netns", "delete", host.name], capture_output=True, check=False)
    if host.bridge is not None:
        with _global_lock():
            ports = Path("/sys/class/net", host.bridge, "brif")
            if ports.exists() and not any(ports.iterdir()):
                subprocess.run(["ip", "link", "del", host.bridge], capture_output=True, check=False)
    # 5. Files: sudoers drop-in, mounts dockerd left, exec root, data root (unless kept).
    LOG.debug("down %s: step 5 at %.1fs", host.name, time.monotonic() - started)
    if host.sudoers_file is not None:
        host.sudoers_file.unlink(missing_ok=True)
        host.sudoers_file.with_name(host.sudoers_file.name + "~").unlink(missing_ok=True)
    _unmount_under(host.exec_root, host.data_root)
    doomed = (
        [host.exec_root, host.state_dir] if host.keep_data_root else [host.exec_root, host.data_root, host.state_dir]
    )
    # `rm -rf` (one-file-system: never through a mount left behind) is several times faster than
    # shutil.rmtree on an image store's tens of thousands of files.
    subprocess.run(["rm", "-rf", "--one-file-system", "--", *map(str, doomed)], capture_output=True, check=False)
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    if host.data_root == shared_root():
        _release_shared_root(host.name)
    LOG.debug("down %s: done in %.1fs", host.name, time.monotonic() - started)


@contextlib.contextmanager
def e2e_host(name: str | None = None, **kwargs: Any) -> Iterator[E2eHost]:
    """`host_up` ... `host_down` as a context manager (the pytest fixture's body)."""
    host = host_up(name, **kwargs)
    try:
        yield host
    finally:
        host_down(host)


def running_hosts() -> list[str]:
    return sorted(p.parent.name for p in STATE_ROOT.glob("*/state.json"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.e2e.host", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log the steps' timings")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="bring a host up and print it as JSON")
    up.add_argument("--name")
    up.add_argument("--data-root", type=Path, help="dockerd data root (default: in the state dir)")
    up.add_argument("--keep-data-root", action="store_true", help="keep the data root on down")
    up.add_argument("--private-data-root", action="store_true", help="never the cache's shared data root")
    up.add_argument("--images", action="store_true", help="also build the e2e images into it")
    down = sub.add_parser("down", help="tear hosts down (idempotent)")
    down.add_argument("names", nargs="*")
    down.add_argument("--all", action="store_true", help="every host with a state file")
    sub.add_parser("list", help="names of the hosts that are up")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="# %(message)s")

    if args.command == "up":
        started = time.monotonic()
        host = host_up(
            args.name,
            data_root=args.data_root,
            keep_data_root=args.keep_data_root,
            shared_data_root=not args.private_data_root,
        )
        print(f"# host up in {time.monotonic() - started:.1f}s", file=sys.stderr)
        env_file = host.state_dir / "env"
        env_file.write_text("".join(f"export {k}={json.dumps(v)}\n" for k, v in host.env().items()))
        if args.images:
            from tests.support.e2e.images import ensure_images

            started = time.monotonic()
            images = ensure_images(host)
            print(f"# images ready in {time.monotonic() - started:.1f}s: {images}", file=sys.stderr)
        print(host.to_json())
        print(f"# shell: . {env_file}", file=sys.stderr)
        return 0
    if args.command == "down":
        names = running_hosts() if args.all else args.names
        for name in names:
            started = time.monotonic()
            host_down(name)
            print(f"# {name} down in {time.monotonic() - started:.1f}s", file=sys.stderr)
        return 0
    print("\n".join(running_hosts()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
