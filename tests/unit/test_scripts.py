"""Shell scripts run on the Docker host: valid POSIX sh, safely quoted, and doing what they say.

Scripts that touch Docker run against a fake `docker` on PATH; the sysctl scripts run against a
copy of /proc/sys in a temp dir (the only rewrite is that path prefix).
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.capacity import memory_budget
from components.config import StackConfig
from components.names import LB_CONTAINER
from components.plan import ClusterPlan, Listener
from components.preflight import memory_ceiling
from components.render.cluster_scripts import join_script, leave_script, verify_script
from components.render.host_scripts import (
    HostOperation,
    MemoryCheck,
    host_program,
    node_dirs_delete_script,
    node_dirs_script,
    preflight_script,
    shell_command,
    sysctl_apply_script,
    sysctl_restore_script,
)
from tests.support.ports import free_port
from tests.support.stackfiles import stack_raw, validate

with warnings.catch_warnings():
    # pulumi_command warns about its own deprecated CopyFile resource on import; not ours.
    warnings.simplefilter("ignore", DeprecationWarning)
    from components.host_tuning import host_sysctls

SH = "/bin/sh"

FAKE_DOCKER = r"""#!/bin/sh
# Fake docker CLI: logs its arguments, answers from FAKE_* variables.
printf '%s\n' "$*" >> "$FAKE_DOCKER_LOG"
case "$1" in
  info) exit "${FAKE_INFO_RC:-0}" ;;
  ps) printf '%s' "${FAKE_PS:-}"; exit 0 ;;
esac
case "$*" in
  *force-leave*) printf '%s\n' "${FAKE_FORCE_OUT:-}" ;;
  *"cluster status"*) printf '%s\n' "${FAKE_STATUS:-}" ;;
  *) printf '%s\n' "${FAKE_OUT:-}" ;;
esac
"""

FAKE_SUDO = r"""#!/bin/sh
# Fake sudo: insists on -n (never prompt), then runs the command as is.
[ "$1" = "-n" ] || { echo "sudo called without -n" >&2; exit 99; }
shift
exec "$@"
"""


@pytest.fixture(scope="module")
def dev() -> tuple[StackConfig, ClusterPlan]:
    return validate(stack_raw("dev"))


def all_scripts(config: StackConfig, plan: ClusterPlan) -> dict[str, str]:
    seed = plan.seed
    node = plan.nodes[-1]
    names = [n.node_name for n in plan.nodes]
    return {
        "sysctl-apply": sysctl_apply_script(host_sysctls(config, plan, plan.hosts[0]), config.tuning.drop_in),
        "sysctl-restore": sysctl_restore_script(config.tuning.drop_in),
        "preflight": preflight_script(plan.hosts[0].listeners, config.data_dir),
        "node-dirs": node_dirs_script(node.host_dir),
        "node-dirs-delete-keep": node_dirs_delete_script(node.host_dir, node.node_name, False, node.container_name),
        "node-dirs-delete-purge": node_dirs_delete_script(node.host_dir, node.node_name, True, node.container_name),
        "join": join_script(node.container_name, node.node_name, seed.node_name, config.join_timeout_seconds),
        "leave": leave_script(node.container_name, node.node_name, seed.container_name),
        "verify": verify_script(seed.container_name, names, config.join_timeout_seconds, "wave 1"),
    }


SCRIPT_NAMES = list(all_scripts(*validate(stack_raw("dev"))))


def run(script: str, env: dict[str, str] | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SH, "-c", script], capture_output=True, text=True, env=env, timeout=timeout, check=False)


@pytest.fixture
def fake_bin(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment whose PATH starts with the fake docker and sudo."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("docker", FAKE_DOCKER), ("sudo", FAKE_SUDO)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    yield {
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "FAKE_DOCKER_LOG": str(tmp_path / "docker.log"),
        "HOME": str(tmp_path),
    }


# ----------------------------------------------------------------------------- syntax and quoting


def run_as_sent(
    scripts: dict[str, str], operation: HostOperation, use_sudo: bool, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run `operation` as a host command does: its command line, the program on standard input."""
    return subprocess.run(
        [SH, "-c", shell_command(operation, use_sudo)],
        input=host_program(scripts),
        capture_output=True,
        text=True,
        env=env,
        timeout=20,
        check=False,
    )


@pytest.mark.parametrize("stack_name", ["dev", "prod"])
@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_every_script_is_valid_posix_sh_as_sent(stack_name: str, name: str) -> None:
    raw = stack_raw(stack_name)
    if stack_name == "prod":
        raw.update(tlsMode="self-signed")  # TLS material plays no part in the host scripts
    script = all_scripts(*validate(raw))[name]
    for text in (script, host_program({"create": script, "delete": script})):
        result = subprocess.run([SH, "-n"], input=text, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr


def test_the_command_line_names_only_the_operation() -> None:
    """What pulumi-command quotes in its error is a few words, never a script."""
    assert shell_command("create", use_sudo=False) == "sh -s create"
    assert shell_command("delete", use_sudo=True) == "sudo -n sh -s delete"


TRICKY = 'it\'s "quoted" $HOME `date` $(id) \\ back\\slash\n  and ; a second line & | > < *'


@pytest.mark.parametrize("use_sudo", [False, True])
def test_each_operation_runs_its_own_script_from_stdin(use_sudo: bool, fake_bin: dict[str, str]) -> None:
    scripts = {
        "create": f"set -eu\nprintf '%s' {shlex.quote(TRICKY)}\n",
        "update": "echo update\n",
        "delete": "echo delete\nexit 3\n",
    }
    created = run_as_sent(scripts, "create", use_sudo, fake_bin)
    assert (created.returncode, created.stdout) == (0, TRICKY), created.stderr
    assert run_as_sent(scripts, "update", use_sudo, fake_bin).stdout == "update\n"
    deleted = run_as_sent(scripts, "delete", use_sudo, fake_bin)
    assert (deleted.returncode, deleted.stdout) == (3, "delete\n")


def test_operations_with_one_script_share_one_branch(fake_bin: dict[str, str]) -> None:
    """A script, and a secret in it, is sent once: `create|update)`."""
    scripts = {"create": "echo apply SECRET-1\n", "update": "echo apply SECRET-1\n", "delete": "echo remove\n"}
    assert host_program(scripts).count("SECRET-1") == 1
    assert "create|update)\n" in host_program(scripts)
    outputs: list[tuple[HostOperation, str]] = [
        ("create", "apply SECRET-1\n"),
        ("update", "apply SECRET-1\n"),
        ("delete", "remove\n"),
    ]
    for operation, expected in outputs:
        assert run_as_sent(scripts, operation, False, fake_bin).stdout == expected


def test_an_undeclared_operation_fails_and_says_so(fake_bin: dict[str, str]) -> None:
    result = run_as_sent({"create": "echo create\n"}, "delete", False, fake_bin)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "usage: sh -s create" in result.stderr


def test_sudo_failure_is_not_hidden(fake_bin: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "bin" / "sudo").write_text("#!/bin/sh\necho 'sudo: a password is required' >&2\nexit 1\n")
    result = run_as_sent({"create": "echo never\n"}, "create", True, fake_bin)
    assert result.returncode != 0
    assert "never" not in result.stdout


# ----------------------------------------------------------------------------- preflight


def test_preflight_checks_every_planned_port_with_its_owner(dev: tuple[StackConfig, ClusterPlan]) -> None:
    config, plan = dev
    script = preflight_script(plan.hosts[0].listeners, config.data_dir)
    for node in plan.nodes:
        for role, port in node.ports.as_dict().items():
            assert f"if listening {port} && ! running {node.container_name}; then" in script
            assert f"port {port} ({role} of {node.container_name})" in script
    assert f"if listening {plan.lb_port} && ! running {LB_CONTAINER}; then" in script
    assert script.count("if listening ") == len(plan.hosts[0].ports())
    assert config.data_dir in script


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_preflight_fails_on_a_port_held_by_a_stranger(busy_port: int, fake_bin: dict[str, str], tmp_path: Path) -> None:
    other = free_port()
    claims = [Listener(busy_port, "emqx1", "mqtt"), Listener(other, "emqx1", "dashboard")]
    result = run(preflight_script(claims, str(tmp_path / "data")), env=fake_bin)
    assert result.returncode == 1
    assert f"port {busy_port} (mqtt of emqx1) is already in use" in result.stderr
    assert f"port {other} " not in result.stderr


def test_preflight_passes_when_the_port_is_held_by_its_own_running_container(
    busy_port: int, fake_bin: dict[str, str], tmp_path: Path
) -> None:
    claims = [Listener(busy_port, "emqx1", "mqtt")]
    result = run(preflight_script(claims, str(tmp_path / "data")), env={**fake_bin, "FAKE_PS": "0123456789ab\n"})
    assert result.returncode == 0, result.stderr
    assert "preflight passed" in result.stdout
    assert (tmp_path / "data").is_dir()
    assert not list((tmp_path / "data").iterdir())  # the write probe is removed


def test_preflight_lists_every_problem(busy_port: int, fake_bin: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    claims = [Listener(busy_port, "emqx-lb", "TLS listener")]
    result = run(preflight_script(claims, str(blocker / "data")), env={**fake_bin, "FAKE_INFO_RC": "1"})
    assert result.returncode == 1
    assert "docker info failed" in result.stderr
    assert f"port {busy_port} (TLS listener of emqx-lb)" in result.stderr
    assert f"data dir {blocker / 'data'} cannot be created" in result.stderr


def mem_total_kib() -> int:
    with open("/proc/meminfo") as meminfo:
        return next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))


def test_preflight_prints_the_memory_bound_of_this_host_for_the_capacity_output(
    dev: tuple[StackConfig, ClusterPlan], fake_bin: dict[str, str], tmp_path: Path
) -> None:
    config, plan = dev
    budget = memory_budget(config, plan.hosts[0])
    result = run(preflight_script([], str(tmp_path / "data"), memory=MemoryCheck(budget, None)), env=fake_bin)
    assert result.returncode == 0, result.stderr
    total = mem_total_kib()
    assert memory_ceiling(result.stdout) == ((total - budget.reserved_kib) // budget.kib_per_connection, total)


def test_preflight_refuses_more_expected_connections_than_the_memory_holds(
    dev: tuple[StackConfig, ClusterPlan], fake_bin: dict[str, str], tmp_path: Path
) -> None:
    config, plan = dev
    budget = memory_budget(config, plan.hosts[0])
    ceiling = (mem_total_kib() - budget.reserved_kib) // budget.kib_per_connection
    fits = run(preflight_script([], str(tmp_path / "data"), memory=MemoryCheck(budget, ceiling)), env=fake_bin)
    assert fits.returncode == 0, fits.stderr
    over = run(preflight_script([], str(tmp_path / "data"), memory=MemoryCheck(budget, ceiling + 1)), env=fake_bin)
    assert over.returncode == 1
    assert (
        f"emqx-cluster:expectedConnections = {ceiling + 1}: allowed: at most {ceiling} on this host: memory decides"
        in (over.stderr)
    )
    assert "brokerMemoryPerConnectionKib" in over.stderr


def test_preflight_fails_naming_memtotal_when_it_cannot_be_read(
    dev: tuple[StackConfig, ClusterPlan], fake_bin: dict[str, str], tmp_path: Path
) -> None:
    """No guessed bound (an empty MemTotal would compute a negative one): the preflight fails
    and says what it could not read. /proc/meminfo without MemTotal, in a mount namespace."""
    config, plan = dev
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemFree: 1024 kB\n")
    script = tmp_path / "preflight.sh"
    budget = memory_budget(config, plan.hosts[0])
    script.write_text(preflight_script([], str(tmp_path / "data"), memory=MemoryCheck(budget, None)))
    result = subprocess.run(
        ["unshare", "--mount", SH, "-c", f"mount --bind {meminfo} /proc/meminfo && exec {SH} {script}"],
        capture_output=True,
        text=True,
        env=fake_bin,
        timeout=20,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "memory: MemTotal cannot be read from /proc/meminfo" in result.stderr
    assert "memory ceiling" not in result.stdout


def test_preflight_refuses_a_source_address_that_is_not_the_hosts(fake_bin: dict[str, str], tmp_path: Path) -> None:
    key = "emqx-cluster:hosts[0].lbSourceAddresses"
    own = run(
        preflight_script([], str(tmp_path / "data"), local_addresses=["127.0.0.1"], local_addresses_key=key),
        env=fake_bin,
    )
    assert own.returncode == 0, own.stderr
    stranger = "198.51.100.77"  # TEST-NET-2: documentation only (this sandbox's own is in TEST-NET-1)
    result = run(
        preflight_script([], str(tmp_path / "data"), local_addresses=[stranger, "127.0.0.1"], local_addresses_key=key),
        env=fake_bin,
    )
    assert result.returncode == 1
    assert f"{key} lists {stranger}, which is not an address of this host" in result.stderr
    assert "127.0.0.1, which" not in result.stderr


# ----------------------------------------------------------------------------- sysctl


def test_sysctl_script_sets_tuning_and_port_plan_keys(dev: tuple[StackConfig, ClusterPlan]) -> None:
    config, plan = dev
    settings = host_sysctls(config, plan, plan.hosts[0])
    assert settings["net.ipv4.ip_local_port_range"] == "1024 60999"
    assert settings["net.ipv4.ip_local_reserved_ports"] == "4371-4373,5371-5373,8884"
    script = sysctl_apply_script(settings, config.tuning.drop_in)
    for key, value in settings.items():
        assert f"\n{key} = {value}\n" in script
        proc_file = "/proc/sys/" + key.replace(".", "/")
        assert f"set_value {shlex.quote(key)} {shlex.quote(proc_file)} {shlex.quote(value)}\n" in script
    assert "/proc/sys/net/ipv4/ip_local_reserved_ports" in script
    assert shlex.quote(config.tuning.drop_in) in script


def sandboxed(script: str, root: Path) -> str:
    return script.replace("/proc/sys/", f"{root}/proc/sys/")


def test_sysctl_apply_and_restore_round_trip(dev: tuple[StackConfig, ClusterPlan], tmp_path: Path) -> None:
    config, plan = dev
    settings = host_sysctls(config, plan, plan.hosts[0])
    before: dict[str, str] = {}
    for key in settings:
        path = tmp_path / "proc" / "sys" / key.replace(".", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        before[key] = f"old {key}"
        path.write_text(before[key] + "\n")
    drop_in = tmp_path / "etc" / "sysctl.d" / "60-emqx-cluster.conf"

    def current() -> dict[str, str]:
        return {key: (tmp_path / "proc/sys" / key.replace(".", "/")).read_text().strip() for key in settings}

    apply = sandboxed(sysctl_apply_script(settings, str(drop_in)), tmp_path)
    for _ in range(2):  # idempotent: a second run must not overwrite the saved originals
        result = run(apply)
        assert result.returncode == 0, result.stderr
        assert current() == settings
    written = dict(
        line.split(" = ", 1) for line in drop_in.read_text().splitlines() if line and not line.startswith("#")
    )
    assert written == settings

    result = run(sandboxed(sysctl_restore_script(str(drop_in)), tmp_path))
    assert result.returncode == 0, result.stderr
    assert current() == before
    assert not drop_in.exists()
    assert not Path(f"{drop_in}.before").exists()


# ----------------------------------------------------------------------------- node dirs


def test_node_dirs_delete_keeps_data_unless_purging(tmp_path: Path, fake_bin: dict[str, str]) -> None:
    host_dir = tmp_path / "emqx1"
    (host_dir / "data").mkdir(parents=True)
    result = run(node_dirs_delete_script(str(host_dir), "emqx1@127.0.0.1", False, "emqx1"), fake_bin)
    assert result.returncode == 0
    assert host_dir.is_dir()
    assert "purgeData" in result.stdout
    # A delete that is part of a replacement: the container still exists, the data stays.
    purge = node_dirs_delete_script(str(host_dir), "emqx1@127.0.0.1", True, "emqx1")
    result = run(purge, {**fake_bin, "FAKE_PS": "0123456789ab\n"})
    assert result.returncode == 0
    assert host_dir.is_dir()
    assert "still exists" in result.stdout
    result = run(purge, fake_bin)
    assert result.returncode == 0
    assert not host_dir.exists()


# ----------------------------------------------------------------------------- cluster scripts


def test_join_succeeds_and_treats_already_joined_as_success(fake_bin: dict[str, str]) -> None:
    script = join_script("emqx2", "emqx2@127.0.0.1", "emqx1@127.0.0.1", timeout_seconds=5)
    joined = run(script, env={**fake_bin, "FAKE_OUT": "Join the cluster successfully."})
    assert joined.returncode == 0, joined.stderr
    assert "emqx2@127.0.0.1 joined emqx1@127.0.0.1" in joined.stdout
    log = Path(fake_bin["FAKE_DOCKER_LOG"]).read_text()
    assert "exec emqx2 /opt/emqx/bin/emqx ctl cluster join emqx1@127.0.0.1" in log
    already = run(script, env={**fake_bin, "FAKE_OUT": "Failed to join the cluster: {already_in_cluster,x}"})
    assert already.returncode == 0, already.stderr


def test_join_gives_up_at_the_deadline_with_the_last_error(fake_bin: dict[str, str]) -> None:
    script = join_script("emqx2", "emqx2@127.0.0.1", "emqx1@127.0.0.1", timeout_seconds=0)
    result = run(script, env={**fake_bin, "FAKE_OUT": "Failed to join the cluster: {node_down,'emqx1@127.0.0.1'}"})
    assert result.returncode == 1
    assert "could not join" in result.stderr
    assert "node_down" in result.stderr


def test_verify_requires_every_expected_node_running(fake_bin: dict[str, str]) -> None:
    expected = ["emqx1@127.0.0.1", "emqx2@127.0.0.1"]
    all_running = '{"running_nodes":["emqx1@127.0.0.1","emqx2@127.0.0.1"],"stopped_nodes":[]}'
    ok = run(verify_script("emqx1", expected, 5, "wave 1"), env={**fake_bin, "FAKE_STATUS": all_running})
    assert ok.returncode == 0, ok.stderr
    assert "all 2 expected nodes are running" in ok.stdout

    one_stopped = '{"running_nodes":["emqx1@127.0.0.1"],"stopped_nodes":["emqx2@127.0.0.1"]}'
    failed = run(verify_script("emqx1", expected, 0, "wave 1"), env={**fake_bin, "FAKE_STATUS": one_stopped})
    assert failed.returncode == 1
    assert "not running: emqx2@127.0.0.1" in failed.stderr


def test_verify_does_not_match_a_node_name_prefix(fake_bin: dict[str, str]) -> None:
    """emqx1@... must not count as running because emqx10@... or emqx1@...0 is."""
    status = '{"running_nodes":["emqx10@127.0.0.1","emqx1@127.0.0.10"],"stopped_nodes":[]}'
    result = run(verify_script("emqx10", ["emqx1@127.0.0.1"], 0, "wave 1"), env={**fake_bin, "FAKE_STATUS": status})
    assert result.returncode == 1


def test_leave_falls_back_to_force_leave_from_the_seed(fake_bin: dict[str, str]) -> None:
    script = leave_script("emqx3", "emqx3@127.0.0.1", "emqx1")
    left = run(script, env={**fake_bin, "FAKE_OUT": "Leave the cluster successfully."})
    assert left.returncode == 0
    assert "left the cluster" in left.stdout
    forced = run(
        script,
        env={
            **fake_bin,
            "FAKE_OUT": "Error: No such container: emqx3",
            "FAKE_FORCE_OUT": "Remove the node from cluster successfully.",
        },
    )
    assert forced.returncode == 0, forced.stderr
    assert "force-leave" in forced.stdout
    assert (
        "exec emqx1 /opt/emqx/bin/emqx ctl cluster force-leave emqx3@127.0.0.1"
        in Path(fake_bin["FAKE_DOCKER_LOG"]).read_text()
    )
    stuck = run(script, env={**fake_bin, "FAKE_OUT": "timeout", "FAKE_FORCE_OUT": "timeout"})
    assert stuck.returncode == 1
    # The seed does not list it (never joined, or evicted already): nothing left to remove.
    gone = run(
        script,
        env={
            **fake_bin,
            "FAKE_OUT": "Error: No such container: emqx3",
            "FAKE_FORCE_OUT": "Failed to remove the node from cluster: node_not_in_cluster",
        },
    )
    assert gone.returncode == 0, gone.stderr
    assert "emqx3@127.0.0.1 was not in the cluster" in gone.stdout


def test_leave_with_the_seed_on_another_host_leaves_a_down_node_to_its_eviction(fake_bin: dict[str, str]) -> None:
    """Over several hosts the seed's container is not here: a node that cannot leave is forced
    out later by its eviction on the seed's host, so nothing is forced from this host."""
    script = leave_script("emqx5", "emqx5@10.0.0.13", None)
    left = run(script, env={**fake_bin, "FAKE_OUT": "Leave the cluster successfully."})
    assert left.returncode == 0 and "left the cluster" in left.stdout
    down = run(script, env={**fake_bin, "FAKE_OUT": "Error: No such container: emqx5"})
    assert down.returncode == 0, down.stderr
    assert "its eviction on the seed's host forces it out" in down.stdout
    assert "force-leave" not in Path(fake_bin["FAKE_DOCKER_LOG"]).read_text()
