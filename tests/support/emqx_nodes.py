"""Real EMQX 5.8.6 nodes for the integration tier, each configured exactly as the program
configures its container, run without Docker.

`release_stack(directory, nodes=3, **keys)` is a throwaway single-host stack config (the dev
stack's, paths under `directory`, its MQTT, dashboard and LB ports free right now); hand the same
dict to `run_program` for the commands the program declares. `release_cluster(config)` then runs
its nodes: per node a hard-linked copy (`cp -al`) of the extracted release
(tests/support/emqx_release.py, never extracted here) with fresh data/ and log/ and the access
files the program's access-files command writes (users, API key, ACL; 0600, the node's user), owned
by RUN_USER, started with `bin/emqx foreground` and the environment the program renders for that
node's container (broker_env.broker_environment + with_secrets), the container's /opt/emqx paths
mapped onto the copy. Every node is stopped at the end, also when the test failed.

`ReleaseCluster.env()` puts a `docker` first on PATH (tests/support/emqx_docker.py) that maps
`docker exec <container> ...`, `docker inspect` and `docker ps` onto these nodes, so the
program's host scripts run unchanged against them.

A copy per node, not one release for all: bin/emqx finds the node a command is for in `ps -ef`
by its `-root <release dir>` (bin/emqx:481-499 at v5.8.6), and the node keeps its database under
that dir's data/. The nodes' distribution (4370 + N) and RPC (5370 + N) ports follow their names
on 127.0.0.1 (ekka, stateless gen_rpc), so one set of nodes runs at a time on this machine (a
lock), and a port held by something else fails the set-up naming it. Nodes a killed test run
left behind are stopped first (`reap_orphans`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.broker_image import BUILD_DIR
from components.config import StackConfig
from components.names import NODE_LABEL
from components.plan import DISTRIBUTION_PORT_BASE, RPC_PORT_BASE, ClusterPlan, NodePlan, plan_cluster
from components.render.access import (
    ACCESS_FILES,
    API_KEY_NAME,
    MqttUser,
    acl_file,
    api_keys_file,
    declared_user,
    generated_user,
    users_file,
)
from components.render.broker_env import broker_environment, with_secrets
from tests.support import emqx_docker
from tests.support.e2e.images import release_dir
from tests.support.emqx_release import extracted_release, run_user
from tests.support.ports import busy_ports, wait_until
from tests.support.processes import stop_process
from tests.support.stackfiles import parse_config, throwaway_config

COOKIE = "Release_Cookie_0123456789abcdef"  # a bare HOCON token, as the config model admits
# What HOCON would read as a comment, a string or a substitution unless with_secrets quotes it.
DASHBOARD_PASSWORD = 'Release-Dashboard#Pa55"word${x}'
API_SECRET = "ReleaseApiSecret0123456789"
SALT_KEY = "release-salt-key"
GENERATED_PASSWORD = "release-generated-client-password"
BOOT_TIMEOUT = 120.0
STOP_GRACE = 30.0
LOCK_PATH = Path(tempfile.gettempdir()) / "emqx-cluster-release-nodes.lock"

# The broker image's entrypoint (docker/emqx) and the one of EMQX's image it runs.
ENTRYPOINT = "emqx-cluster-entrypoint"
DOCKER_ENTRYPOINT = "/usr/bin/docker-entrypoint.sh"


def quiet_port_block(count: int, avoid: set[int]) -> int:
    """The first of `count` free consecutive ports below the kernel's ephemeral range, where no
    outgoing connection of another process takes one before the node listens on it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        base = random.randrange(10000, low - count)
        block = set(range(base, base + count))
        if not block & avoid and not busy_ports(block):
            return base
    raise RuntimeError(f"no block of {count} free ports below {low}")


def release_stack(directory: Path, nodes: int = 3, **keys: Any) -> dict[str, Any]:
    """The dev stack with `nodes` nodes in one wave, host paths under `directory`, MQTT and
    dashboard ports free now (and below the ephemeral range); `keys` (camelCase) on top."""
    mqtt = quiet_port_block(nodes, set())
    dashboard = quiet_port_block(nodes, set(range(mqtt, mqtt + nodes)))
    lb = quiet_port_block(1, set(range(mqtt, mqtt + nodes)) | set(range(dashboard, dashboard + nodes)))
    settings: dict[str, Any] = {
        "nodes": nodes,
        "waves": 1,
        "mqttPortBase": mqtt,
        "dashboardPortBase": dashboard,
        "lbPort": lb,
        **keys,
    }
    return throwaway_config(directory, **settings)


def node_users(config: StackConfig) -> list[MqttUser]:
    """The users file's rows as the program renders them: declared clients, the generated one
    with GENERATED_PASSWORD."""
    access = config.access
    users = [declared_user(client, access.password_hash, SALT_KEY) for client in access.clients]
    if access.generated_client is not None:
        users.append(generated_user(access.generated_client, GENERATED_PASSWORD, access.password_hash, SALT_KEY))
    return users


@dataclass(frozen=True)
class DockerCall:
    """One `docker` command a script ran (emqx_docker's log): monotonic start and end."""

    argv: list[str]
    start: float
    end: float
    rc: int
    stdout: str
    stderr: str

    @property
    def exec_container(self) -> str | None:
        if self.argv[:1] != ["exec"]:
            return None
        return emqx_docker.split_exec(self.argv[1:])[1]

    @property
    def ctl_args(self) -> list[str]:
        """The `emqx ctl` arguments of a `docker exec`, e.g. ["cluster", "join", "emqx1@h"]; else []."""
        command = emqx_docker.split_exec(self.argv[1:])[2] if self.argv[:1] == ["exec"] else []
        if command[:1] and command[0].endswith("/emqx") and command[1:2] == ["ctl"]:
            return command[2:]
        return []


@dataclass
class ReleaseNode:
    """One node: its plan, its copy of the release and the environment it runs with."""

    plan: NodePlan
    root: Path
    env: dict[str, str]
    user: pwd.struct_passwd
    on_change: Any = None  # called after a start or stop (the docker shim's state)
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return self.plan.node_name

    @property
    def container(self) -> str:
        return self.plan.container_name

    @property
    def mqtt_address(self) -> tuple[str, int]:
        """Where its MQTT listener is (host, port)."""
        host, port = self.plan.mqtt_endpoint.rsplit(":", 1)
        return host, int(port)

    @property
    def console_log(self) -> Path:
        return self.root / "log" / "console.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _process_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return emqx_docker.process_env({"root": str(self.root), "env": self.env}, extra)

    def start(self, through_entrypoint: bool = False) -> None:
        """`bin/emqx foreground` as the node's user, in its own session: bin/emqx execs the VM
        (bin/emqx:1324), so the PID started is the node's, stopped by it. `through_entrypoint`:
        under the image's entrypoint (docker/emqx), as the container runs it; the PID is then
        the entrypoint's, alive as long as the node."""
        assert not self.running, f"{self.name} runs already"
        command = [str(self.root / "bin" / "emqx"), "foreground"]
        if through_entrypoint:
            command = ["bash", str(self.root / "bin" / ENTRYPOINT), *command]
        with self.console_log.open("ab") as console:
            self.process = subprocess.Popen(
                command,
                cwd=self.root,
                env=self._process_env(),
                user=self.user.pw_uid,
                group=self.user.pw_gid,
                extra_groups=[],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if self.on_change is not None:
            self.on_change()

    def status_page(self) -> str | None:
        """`GET /api/v5/status` on the node's dashboard listener (no credentials needed)."""
        try:
            with urllib.request.urlopen(f"http://{self.plan.dashboard_endpoint}/api/v5/status", timeout=5) as reply:
                return str(reply.read().decode())
        except (OSError, urllib.error.URLError):
            return None

    def wait_started(self, timeout: float = BOOT_TIMEOUT) -> float:
        """Until the node's `GET /api/v5/status` says `emqx is running` (200 once every app runs,
        503 before: emqx_mgmt_api_status.erl:105-113); the seconds it took."""
        started = time.monotonic()
        while True:
            page = self.status_page()
            if page is not None and "emqx is running" in page:
                return time.monotonic() - started
            if not self.running:
                raise RuntimeError(f"{self.name} exited while booting; console:\n{self.console_tail()}")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{self.name} not started after {timeout:.0f}s; console:\n{self.console_tail()}")
            time.sleep(0.2)

    def console_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.console_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no console log)"

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM (EMQX stops gracefully: emqx_machine_signal_handler.erl:46, then init:stop),
        SIGKILL after STOP_GRACE s; or `sig` = SIGKILL for a crash. The node's whole session
        goes with it."""
        if self.process is not None:
            stop_process(self.process, sig, STOP_GRACE, group=True)
        if self.on_change is not None:
            self.on_change()

    def reset_data(self) -> None:
        """An empty data dir again (the node stopped), as a purged one."""
        assert not self.running, f"{self.name} runs"
        _owned_dir(self.root / "data", self.user)

    def emqx(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """`bin/emqx <args>` as `docker exec <container> /opt/emqx/bin/emqx <args>` runs it."""
        return subprocess.run(
            [str(self.root / "bin" / "emqx"), *args],
            cwd=self.root,
            env=self._process_env(env),
            user=self.user.pw_uid,
            group=self.user.pw_gid,
            extra_groups=[],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ctl(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.emqx("ctl", *args, env=env)

    def cluster_status(self) -> dict[str, list[str]]:
        """`cluster status --json` as a dict (running_nodes, stopped_nodes)."""
        done = self.ctl("cluster", "status", "--json")
        assert done.returncode == 0, done
        status: dict[str, list[str]] = json.loads(done.stdout)
        return status

    def api(self, method: str, path: str, body: Any = None, *, secret: str = API_SECRET) -> tuple[int, str]:
        """A REST call with the program's API key (HTTP Basic); (status, body)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://{self.plan.dashboard_endpoint}{path}", data=data, method=method)
        request.add_header("Authorization", "Basic " + b64encode(f"{API_KEY_NAME}:{secret}".encode()).decode())
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()


@dataclass
class ReleaseCluster:
    config: StackConfig
    plan: ClusterPlan
    base: Path
    nodes: list[ReleaseNode] = field(default_factory=list)
    users: list[MqttUser] = field(default_factory=list)
    boot_seconds: dict[str, float] = field(default_factory=dict)
    # Who the seed listed when `arrange` stopped it (nothing changes membership while it is down).
    _listed_while_seed_down: set[str] | None = None
    _saving: threading.Lock = field(default_factory=threading.Lock)

    @property
    def bin_dir(self) -> Path:
        return self.base / "bin"

    @property
    def state_path(self) -> Path:
        return self.base / "containers.json"

    @property
    def log_path(self) -> Path:
        return self.base / "docker-calls.jsonl"

    def calls(self) -> list[DockerCall]:
        """Every `docker` command the scripts ran, in order."""
        if not self.log_path.exists():
            return []
        return [DockerCall(**json.loads(line)) for line in self.log_path.read_text().splitlines()]

    def ctl_calls(self, container: str | None = None) -> list[DockerCall]:
        """`docker exec <container> .../emqx ctl ...` calls, optionally into one container only."""
        return [c for c in self.calls() if c.ctl_args and (container is None or c.exec_container == container)]

    def clear_calls(self) -> None:
        self.log_path.unlink(missing_ok=True)

    def node(self, index: int) -> ReleaseNode:
        return self.nodes[index - 1]

    def by_container(self, container: str) -> ReleaseNode:
        return next(node for node in self.nodes if node.container == container)

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """`base` (default os.environ) with the nodes' `docker` first on PATH."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', os.defpath)}"
        return env

    def save_state(self) -> None:
        """The docker shim's view: containers, their copies, users, environments, PIDs."""
        with self._saving:  # nodes stop side by side, each saving
            state = {
                "log": str(self.log_path),
                "containers": {
                    node.container: {
                        "name": node.container,
                        "id": hashlib.sha256(str(node.root).encode()).hexdigest(),
                        "root": str(node.root),
                        "uid": node.user.pw_uid,
                        "gid": node.user.pw_gid,
                        "env": node.env,
                        "pid": node.process.pid if node.running and node.process is not None else None,
                        "labels": [NODE_LABEL, f"{NODE_LABEL}={node.name}"],
                    }
                    for node in self.nodes
                },
            }
            partial = self.state_path.with_suffix(".tmp")
            partial.write_text(json.dumps(state, indent=1))
            partial.replace(self.state_path)

    def start(self, *nodes: ReleaseNode) -> None:
        """Start `nodes` (default: every stopped one) side by side and wait until each runs."""
        chosen = list(nodes) or [node for node in self.nodes if not node.running]
        if self.node(1) in chosen:
            self._listed_while_seed_down = None
        for node in chosen:
            node.start()
        for node in chosen:
            self.boot_seconds[node.name] = node.wait_started()

    def arrange(self, members: Sequence[int] = (), stopped: Sequence[int] = ()) -> None:
        """Bring the nodes to a state: node 1 (the seed) with nodes `members` in its cluster, every
        other node alone; then nodes `stopped` stopped. Only what differs is changed (a `cluster
        join` or `leave`, a start or stop): a stopped node whose membership is already right stays
        down. A stopped node the seed no longer lists (forced out while down) starts from an empty
        data dir: with its old one it would still believe it is a member."""
        seed = self.node(1)
        if seed.running or 1 not in stopped or self._listed_while_seed_down is None:
            if not seed.running:
                self.start(seed)
            listed = {name for names in seed.cluster_status().values() for name in names}
        else:
            listed = self._listed_while_seed_down
        wrong = [n for n in self.nodes[1:] if (n.plan.index in members) != (n.name in listed)]
        down = [n for n in self.nodes if not n.running and (n in wrong or n.plan.index not in stopped)]
        for node in down:
            if node.name not in listed:
                node.reset_data()
        if down:
            self.start(*down)
        for node in wrong:
            if node.name in listed:
                done = node.ctl("cluster", "leave")
                assert "Leave the cluster successfully" in done.stdout, done
                listed.discard(node.name)
            else:
                done = node.ctl("cluster", "join", seed.name)
                assert "Join the cluster successfully" in done.stdout, done
                listed.add(node.name)
        self.stop(*(self.node(index) for index in stopped))
        self._listed_while_seed_down = listed if not seed.running else None

    def stop(self, *nodes: ReleaseNode) -> None:
        """Stop `nodes` side by side."""
        chosen = [node for node in nodes if node.process is not None]
        threads = [threading.Thread(target=node.stop) for node in chosen]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def listened_ports(ports: Sequence[int]) -> list[int]:
    """Which of `ports` something listens on (a closed connection's TIME_WAIT does not count:
    EMQX binds with SO_REUSEADDR)."""
    taken = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                taken.append(port)
    return taken


BASE_PREFIX = "emqx-release-nodes-"


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _orphaned(base: Path) -> bool:
    """Whether the test process that made `base` is gone (killed before its teardown ran): its
    recorded PID is dead, or, without the record, every node of it is init's child now."""
    try:
        owner = int((base / "owner").read_text())
    except (OSError, ValueError):
        try:
            pids = [c["pid"] for c in json.loads((base / "containers.json").read_text())["containers"].values()]
        except (OSError, ValueError, KeyError):
            return False
        parents = [_parent(pid) for pid in pids if pid]
        return bool(parents) and all(parent in (1, None) for parent in parents)
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def reap_orphans() -> list[int]:
    """Nodes a killed test run left behind: their sessions (each node leads its own, started by
    `ReleaseNode.start`) get SIGKILL by the PIDs recorded in their `containers.json`, once each
    is checked to run from that copy, and the copies go, so their ports are free again. The
    PIDs it stopped."""
    stopped = []
    for base in Path(tempfile.gettempdir()).glob(BASE_PREFIX + "*"):
        if not _orphaned(base):
            continue
        try:
            containers = json.loads((base / "containers.json").read_text())["containers"].values()
        except (OSError, ValueError, KeyError):
            containers = []
        for container in containers:
            pid = container.get("pid")
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes() if pid else b""
            except OSError:
                continue
            if f" {base}/".encode() in command.replace(b"\0", b" "):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                stopped.append(pid)
        shutil.rmtree(base, ignore_errors=True)
    return stopped


_lock_depth = 0


@contextlib.contextmanager
def _one_set_of_nodes() -> Iterator[None]:
    """One set of release nodes on this machine at a time (their ports follow their names)."""
    global _lock_depth
    if _lock_depth:
        raise RuntimeError("a set of release nodes runs already in this process: their ports would collide")
    with LOCK_PATH.open("a") as handle:
        os.chmod(LOCK_PATH, 0o666)
        fcntl.flock(handle, fcntl.LOCK_EX)
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1


def _copy_release(release: Path, root: Path) -> None:
    """A hard-linked copy (the same file system: instant), else a plain one."""
    linked = subprocess.run(["cp", "-al", str(release), str(root)], capture_output=True, check=False)
    if linked.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["cp", "-a", str(release), str(root)], check=True)


def _owned_dir(path: Path, user: pwd.struct_passwd, mode: int = 0o755) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=mode)
    path.chmod(mode)
    os.chown(path, user.pw_uid, user.pw_gid)


def container_env(env: Mapping[str, str], root: Path) -> dict[str, str]:
    """The container's environment with its /opt/emqx paths (access files, cluster TLS) mapped
    onto the node's copy."""
    home = emqx_docker.CONTAINER_HOME
    return {key: value.replace(home + "/", f"{root}/") for key, value in env.items()}


def add_image_files(root: Path) -> None:
    """What the broker image adds to EMQX's (docker/emqx/Dockerfile COPYs every file there but the
    Dockerfile into /opt/emqx/bin), with the container's paths mapped onto the node's copy: /opt/emqx,
    and EMQX's own entrypoint, /usr/bin/docker-entrypoint.sh in the image, run from ../shared/emqx."""
    home = emqx_docker.CONTAINER_HOME
    for source in sorted(BUILD_DIR.iterdir()):
        if source.name == "Dockerfile":
            continue
        text = source.read_text().replace(DOCKER_ENTRYPOINT, f"bash {release_dir() / Path(DOCKER_ENTRYPOINT).name}")
        target = root / "bin" / source.name
        target.write_text(text.replace(home + "/", f"{root}/"))
        target.chmod(source.stat().st_mode & 0o777)


def prepare_node(
    release: Path, base: Path, node: NodePlan, cluster: ReleaseCluster, overrides: Mapping[str, str]
) -> ReleaseNode:
    user = run_user()
    root = base / node.container_name
    _copy_release(release, root)
    add_image_files(root)
    for directory in ("data", "log"):  # the program's node dirs: empty, the broker's user's
        _owned_dir(root / directory, user)
    access = root / "etc" / "access"
    _owned_dir(access, user, 0o700)
    files = {
        ACCESS_FILES.users: users_file(cluster.users),
        ACCESS_FILES.api_keys: api_keys_file(API_SECRET),
        ACCESS_FILES.acl: acl_file(cluster.config.access.acl),
    }
    for name, content in files.items():
        (access / name).write_text(content)
        (access / name).chmod(0o600)
        os.chown(access / name, user.pw_uid, user.pw_gid)
    public = broker_environment(node, cluster.plan, cluster.config)
    env = container_env({**with_secrets(public, COOKIE, DASHBOARD_PASSWORD), **overrides}, root)
    return ReleaseNode(node, root, env, user, on_change=cluster.save_state)


def _docker_wrapper(cluster: ReleaseCluster) -> None:
    cluster.bin_dir.mkdir()
    docker = cluster.bin_dir / "docker"
    docker.write_text(
        f'#!/bin/sh\nexec {sys.executable} -B {Path(emqx_docker.__file__).resolve()} {cluster.state_path} "$@"\n'
    )
    docker.chmod(0o755)


@contextlib.contextmanager
def release_cluster(
    config: Mapping[str, Any],
    *,
    start: bool = True,
    env: Mapping[str, str] | None = None,
    node_env: Mapping[int, Mapping[str, str]] | None = None,
) -> Iterator[ReleaseCluster]:
    """The stack's nodes (a `release_stack` config), started side by side unless `start` is
    False; `env` is added to every node's environment, `node_env[index]` to one node's."""
    release = extracted_release()
    parsed = parse_config(config)
    plan = plan_cluster(parsed)
    with _one_set_of_nodes():
        reap_orphans()
        fixed = [base + node.index for base in (DISTRIBUTION_PORT_BASE, RPC_PORT_BASE) for node in plan.nodes]
        taken = listened_ports(
            [*fixed, *(port for node in plan.nodes for port in (node.ports.mqtt, node.ports.dashboard))]
        )
        if taken:
            raise RuntimeError(f"ports {taken} are in use on this machine: the EMQX nodes need them")
        base = Path(tempfile.mkdtemp(prefix=BASE_PREFIX))
        base.chmod(0o755)  # RUN_USER reaches its copy through it
        (base / "owner").write_text(str(os.getpid()))
        cluster = ReleaseCluster(parsed, plan, base, users=node_users(parsed))
        try:
            _docker_wrapper(cluster)
            for node in plan.nodes:
                overrides = {**(env or {}), **(node_env or {}).get(node.index, {})}
                cluster.nodes.append(prepare_node(release, base, node, cluster, overrides))
            cluster.save_state()
            if start:
                cluster.start()
            yield cluster
        finally:
            cluster.stop(*cluster.nodes)
            shutil.rmtree(base, ignore_errors=True)
            # A connection the nodes closed first lingers in TIME_WAIT on their fixed ports for a
            # minute, which a plain bind (a later test's "is this port free?") counts as taken.
            with contextlib.suppress(AssertionError):
                wait_until(lambda: not busy_ports(fixed), "the nodes' ports released", timeout=75, interval=1)
