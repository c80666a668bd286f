"""Preflight: the declared check, run locally against real sockets and a fake docker.

The script is the one the mocked program declares for each config; ports are held with real
listening sockets on loopback, which the script finds in the kernel's /proc/net/tcp{,6}.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from components.plan import DISTRIBUTION_PORT_BASE, RPC_PORT_BASE
from components.preflight import memory_ceiling
from tests.support.emqx.fake_docker import FakeDocker
from tests.support.graph import RolloutGraph
from tests.support.ports import busy_ports, free_port, free_port_block, listening_socket
from tests.support.program import ProgramRun, run_program
from tests.support.stackfiles import throwaway_config

pytestmark = pytest.mark.integration

PREFLIGHT = "emqx-preflight-check"
NODES = 2
# nodes x (mqtt, dashboard, distribution, rpc) + the load balancer's TLS port
CLAIMED_PORTS = NODES * 4 + 1


def require_fixed_ports_free() -> None:
    """Distribution and RPC ports are fixed (4370 + N, 5370 + N): the checks below need them free."""
    fixed = [base + index for base in (DISTRIBUTION_PORT_BASE, RPC_PORT_BASE) for index in range(1, NODES + 1)]
    taken = busy_ports(fixed)
    if taken:
        pytest.skip(f"ports {taken} are in use on this host, so the preflight would (rightly) report them")


def preflight_stack(root: Path, *, held: set[int] | None = None, **overrides: Any) -> ProgramRun:
    """A 2-node stack on free ports (except those given in `overrides`), data dir under `root`."""
    require_fixed_ports_free()
    avoid = set(held or ())
    ports: dict[str, int] = {}
    for key in ("mqttPortBase", "dashboardPortBase"):
        ports[key] = free_port_block(NODES, avoid=avoid)
        avoid.update(range(ports[key], ports[key] + NODES))
    lb = free_port()
    while lb in avoid:
        lb = free_port()
    ports["lbPort"] = lb
    return run_program(throwaway_config(root, nodes=NODES, waves=1, **{**ports, **overrides}))


def run_preflight(stack: ProgramRun, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return stack.commands[PREFLIGHT].run_local("create", env)


def problems(stderr: str) -> list[str]:
    """The `  - ...` lines of a failed preflight."""
    return [line[4:] for line in stderr.splitlines() if line.startswith("  - ")]


# ---------------------------------------------------------------------------------- graph


def test_preflight_is_declared_before_every_broker_resource(tmp_path: Path) -> None:
    stack = run_program(throwaway_config(tmp_path, nodes=5, waves=2))
    broker_side = [
        res.name
        for res in stack.resources
        if res.custom
        and (
            res.node_name is not None
            or res.name.endswith(("-dirs", "-membership"))
            or (res.name.startswith("wave") and res.name.endswith("-verify"))
        )
    ]
    assert len(broker_side) == 5 + 5 + 4 + 2  # containers, dirs, memberships, gates
    graph = RolloutGraph(stack)
    for name in broker_side:
        assert graph.is_after(name, PREFLIGHT), f"{name} does not wait for the preflight"
    preflight = stack.named(PREFLIGHT)
    assert not {stack.named(name).urn for name in broker_side} & graph.ancestors(preflight.urn)
    # Re-checked on every plan change, not only on first creation.
    assert stack.commands[PREFLIGHT].operation_script("update") == stack.commands[PREFLIGHT].operation_script("create")


# --------------------------------------------------------------------------------- ports


def test_preflight_passes_when_docker_answers_and_every_port_is_free(fake_docker: FakeDocker, tmp_path: Path) -> None:
    stack = preflight_stack(tmp_path)
    data_dir = stack.stack_config().data_dir
    result = run_preflight(stack, fake_docker.env())
    assert result.returncode == 0, result.stderr
    passed, memory = result.stdout.splitlines()
    assert passed == f"preflight passed: docker answers, {CLAIMED_PORTS} ports free, {data_dir} writable"
    assert memory_ceiling(memory)[0] > 0  # this machine holds some connections: the capacity output reads it
    assert result.stderr == ""
    assert Path(data_dir).is_dir() and list(Path(data_dir).iterdir()) == []  # the probe file is gone
    assert [call.argv[0] for call in fake_docker.calls()] == ["info", "info"]  # no port listened: no `ps`


@pytest.mark.parametrize(
    ("key", "role"),
    [
        ("lbPort", "TLS listener of emqx-lb"),
        ("mqttPortBase", "mqtt of emqx1"),
        ("dashboardPortBase", "dashboard of emqx1"),
    ],
)
def test_a_port_in_use_fails_naming_the_port_and_its_role(
    fake_docker: FakeDocker, tmp_path: Path, key: str, role: str
) -> None:
    with listening_socket("127.0.0.1") as held:
        port = held.getsockname()[1]
        stack = preflight_stack(tmp_path, held={port}, **{key: port})
        result = run_preflight(stack, fake_docker.env())
    assert result.returncode == 1, result
    assert problems(result.stderr) == [f"port {port} ({role}) is already in use on this host"]
    assert result.stderr.startswith("emqx-cluster preflight failed on ")
    assert result.stdout == ""


def test_a_port_held_on_ipv6_loopback_is_found_too(fake_docker: FakeDocker, tmp_path: Path) -> None:
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here ({error})")
    with listening_socket("::1") as held:
        port = held.getsockname()[1]
        stack = preflight_stack(tmp_path, held={port}, lbPort=port)
        result = run_preflight(stack, fake_docker.env())
    assert result.returncode == 1, result
    assert problems(result.stderr) == [f"port {port} (TLS listener of emqx-lb) is already in use on this host"]


def test_a_port_held_by_the_nodes_own_running_container_is_not_a_conflict(
    fake_docker: FakeDocker, tmp_path: Path
) -> None:
    """A re-run: emqx1 is up and listening on its own MQTT port."""
    fake_docker.add_container("emqx1")
    with listening_socket("127.0.0.1") as held:
        port = held.getsockname()[1]
        stack = preflight_stack(tmp_path, held={port}, mqttPortBase=port)
        rerun = run_preflight(stack, fake_docker.env())
        assert rerun.returncode == 0, rerun.stderr
        ps = [call.argv for call in fake_docker.calls() if call.argv[0] == "ps"]
        assert ps and all("name=^emqx1$" in argv for argv in ps)

        fake_docker.set_running("emqx1", False)  # stopped: then something else holds the port
        stopped = run_preflight(stack, fake_docker.env())
    assert stopped.returncode == 1
    assert problems(stopped.stderr) == [f"port {port} (mqtt of emqx1) is already in use on this host"]


# -------------------------------------------------------------------------------- docker


def path_without_docker(directory: Path) -> str:
    """A PATH holding just the tools the script uses, and no docker."""
    directory.mkdir()
    for tool in ("sh", "awk", "cat", "mkdir", "rm", "hostname"):
        found = shutil.which(tool)
        assert found is not None, tool
        (directory / tool).symlink_to(found)
    return str(directory)


def test_missing_docker_cli_is_reported(tmp_path: Path) -> None:
    stack = preflight_stack(tmp_path)
    env = {**os.environ, "PATH": path_without_docker(tmp_path / "bin")}
    result = run_preflight(stack, env)
    assert result.returncode == 1, result
    assert problems(result.stderr) == ["docker: the docker CLI is not installed on this host"]


def test_docker_engine_not_answering_is_reported(fake_docker: FakeDocker, tmp_path: Path) -> None:
    fake_docker.set_daemon_down()
    result = run_preflight(preflight_stack(tmp_path), fake_docker.env())
    assert result.returncode == 1, result
    assert problems(result.stderr) == ["docker: the Docker engine does not answer (docker info failed)"]


# ------------------------------------------------------------------------------ data dir


def _file_in_the_way(root: Path) -> str:
    blocker = root / "blocker"
    blocker.write_text("not a directory\n")
    return str(blocker)


def _under_a_file(root: Path) -> str:
    return f"{_file_in_the_way(root)}/data"


@pytest.mark.parametrize(
    ("make_dir", "complaint"),
    [
        (lambda root: "/proc", "is not writable"),
        (lambda root: "/proc/emqx-cluster-preflight-test", "cannot be created"),
        (_file_in_the_way, "cannot be created"),
        (_under_a_file, "cannot be created"),
    ],
    ids=["read-only-proc", "under-proc", "file-in-the-way", "under-a-file"],
)
def test_an_unusable_data_dir_is_reported(
    fake_docker: FakeDocker, tmp_path: Path, make_dir: Callable[[Path], str], complaint: str
) -> None:
    data_dir = make_dir(tmp_path)
    result = run_preflight(preflight_stack(tmp_path, dataDir=data_dir), fake_docker.env())
    assert result.returncode == 1, result
    assert problems(result.stderr) == [f"data dir {data_dir} {complaint}"]


def test_every_problem_is_listed_in_one_run(fake_docker: FakeDocker, tmp_path: Path) -> None:
    fake_docker.set_daemon_down()
    with listening_socket("127.0.0.1") as held:
        port = held.getsockname()[1]
        stack = preflight_stack(tmp_path, held={port}, lbPort=port, dataDir="/proc")
        result = run_preflight(stack, fake_docker.env())
    assert result.returncode == 1
    assert problems(result.stderr) == [
        "docker: the Docker engine does not answer (docker info failed)",
        f"port {port} (TLS listener of emqx-lb) is already in use on this host",
        "data dir /proc is not writable",
    ]


@pytest.fixture
def daemon_with_hard_nofile(tmp_path: Path) -> Iterator[Callable[[int], None]]:
    """Start a process named `dockerd` whose hard open-files limit is `limit` (as on a host whose
    Docker daemon may not raise rlimits: rootless Docker, sandboxes)."""
    started: list[subprocess.Popen[bytes]] = []
    binary = tmp_path / "daemon-bin" / "dockerd"
    binary.parent.mkdir()
    shutil.copy("/bin/sleep", binary)

    def start(limit: int) -> None:
        process = subprocess.Popen(["sh", "-c", f'ulimit -Hn {limit} && exec "$0" 120', str(binary)])
        started.append(process)
        comm = Path(f"/proc/{process.pid}/comm")
        for _ in range(100):
            if comm.exists() and comm.read_text().strip() == "dockerd":
                return
            time.sleep(0.05)
        raise AssertionError("the stand-in dockerd did not start")

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_nofile_limits_above_the_docker_daemons_hard_limit_are_reported(
    fake_docker: FakeDocker, tmp_path: Path, daemon_with_hard_nofile: Callable[[int], None]
) -> None:
    daemon_with_hard_nofile(20000)
    defaults = preflight_stack(tmp_path / "default", brokerNofileLimit=1048576, lbWorkerConnections=65536)
    refused = run_preflight(defaults, fake_docker.env())
    assert refused.returncode == 1, refused
    found = problems(refused.stderr)
    assert any(
        "nofile limit 1048576 of the brokers exceeds the hard limit of the Docker daemon" in line
        and line.endswith("lower emqx-cluster:brokerNofileLimit")
        for line in found
    ), found
    # The defaults' load balancer (2 x 65536 + 1024) is over the limit too, and says which key sets it.
    assert any(line.endswith("lower emqx-cluster:lbWorkerConnections") for line in found), found

    within = preflight_stack(tmp_path / "within", brokerNofileLimit=19000, lbWorkerConnections=8192)
    accepted = run_preflight(within, fake_docker.env())
    assert accepted.returncode == 0, accepted.stderr


def test_an_engine_storing_images_in_containerd_is_reported(fake_docker: FakeDocker, tmp_path: Path) -> None:
    """The provider's image build needs the classic store: say so before anything is built."""
    stack = preflight_stack(tmp_path)
    assert run_preflight(stack, fake_docker.env()).returncode == 0
    fake_docker.set_image_store("containerd")
    refused = run_preflight(stack, fake_docker.env())
    assert refused.returncode == 1
    assert problems(refused.stderr) == [
        "docker: the engine stores images in containerd, where the broker image cannot be built: "
        'set "features": {"containerd-snapshotter": false} in daemon.json'
    ]
