"""The host side: the declared sysctl, node-dir and preflight commands, run for real.

Every script is taken from the mocked program (tests/support/program.py), never copied:
- sysctls run inside a throwaway network namespace, restricted to the keys that really are
  per namespace on this kernel (probed below); host-global keys are only ever applied to a
  stand-in /proc/sys bind-mounted in a private mount namespace;
- over SSH, the declared remote.Command strings go through a real sshd as the non-root
  `emqxdeploy` user, with and without `sudo -n`.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.config import EMQX_TUNING_SYSCTLS
from components.render.host_scripts import EMQX_UID
from tests.support.netns import NetNamespace, host_sysctl, scratch_namespace
from tests.support.ports import listening_socket
from tests.support.program import REMOTE_COMMAND, ProgramRun, run_program
from tests.support.sshd import SshEndpoint
from tests.support.stackfiles import throwaway_config

pytestmark = pytest.mark.integration

PORT_RANGE = "net.ipv4.ip_local_port_range"
RESERVED = "net.ipv4.ip_local_reserved_ports"
DROP_IN_HEADER = "# Managed by emqx-cluster (Pulumi); removed by `pulumi destroy`."

# Non-default values put in place before the first apply, so "restored" means something.
PREVIOUS = {
    PORT_RANGE: "40000 50000",
    RESERVED: "7000-7002",
    "net.core.somaxconn": "1234",
    "net.ipv4.tcp_fin_timeout": "33",
    "net.ipv4.tcp_max_syn_backlog": "777",
    "net.ipv4.tcp_rmem": "4096 87380 6291456",
}


def normalized(value: str) -> str:
    """The kernel prints multi-value sysctls tab-separated; the drop-in uses spaces."""
    return " ".join(value.split())


def proc_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def parse_drop_in(text: str) -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, _, value = line.partition(" = ")
        settings[key] = value
    return settings


def parse_saved(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


# ------------------------------------------------------------------------ which keys are per netns


@dataclass(frozen=True)
class SysctlScope:
    """EMQX's tuning keys split by whether a network namespace has its own copy on this kernel."""

    per_netns: frozenset[str]
    host_global: dict[str, str]  # key -> why it cannot be tried in a namespace


def _probe_value(planned: str, current: str) -> str | None:
    """A value to write that differs from the namespace's current one, or None."""
    if normalized(planned) != normalized(current):
        return planned
    return str(int(planned) + 1) if planned.isdigit() else None


def _probe_key(ns: NetNamespace, key: str, planned: str) -> str | None:
    """None if `key` is per netns (a write there sticks and the host keeps its value), else why not."""
    if key.startswith("fs."):
        return "fs.* is not network-namespaced"
    path = proc_path(key)
    if ns.run(f"test -e {path}").returncode != 0:
        return "absent in a non-initial network namespace"
    current = ns.run(f"cat {path}").stdout
    value = _probe_value(planned, current)
    if value is None:
        return "no distinct value to probe with"
    host_before = host_sysctl(key)
    written = ns.run(f"printf '%s\\n' {shlex.quote(value)} > {path}")
    if host_sysctl(key) != host_before:
        Path(path).write_text(host_before + "\n")  # shared with the host after all: put it back
        return "shared with the host's namespace"
    if written.returncode != 0:
        if ns.run(f"test -w {path}").returncode == 0:
            return f"writable, but the planned value is refused here ({written.stderr.strip()})"
        return f"read-only in a network namespace ({written.stderr.strip()})"
    if normalized(ns.sysctl(key)) != normalized(value):
        return "a write in the namespace did not stick"
    return None


@pytest.fixture(scope="module")
def sysctl_scope() -> Iterator[SysctlScope]:
    """Try every EMQX tuning key in a scratch namespace (never writing fs.* at all)."""
    with scratch_namespace("emqx-probe") as ns:
        per_netns: set[str] = set()
        host_global: dict[str, str] = {}
        for key, planned in EMQX_TUNING_SYSCTLS.items():
            reason = _probe_key(ns, key, planned)
            if reason is None:
                per_netns.add(key)
            else:
                host_global[key] = reason
        for key in (PORT_RANGE, RESERVED):  # the plan's keys must be per netns for these tests
            assert _probe_key(ns, key, PREVIOUS[key]) is None, key
        yield SysctlScope(per_netns=frozenset(per_netns), host_global=host_global)


def netns_only_config(root: Path, scope: SysctlScope, **overrides: Any) -> dict[str, Any]:
    """A config whose sysctl overrides drop (null) every host-global key."""
    return throwaway_config(root, nodes=3, sysctls={key: None for key in scope.host_global}, **overrides)


def expected_settings(stack: ProgramRun, keys: frozenset[str] | set[str]) -> dict[str, str]:
    """The tuning values for `keys` plus the plan's port range and reserved ports (from components.plan)."""
    plan = stack.plan()
    assert plan.hosts[0].reserved_ports, "the test config must reserve ports, or the reserved-ports key is not set"
    return {
        **{key: value for key, value in EMQX_TUNING_SYSCTLS.items() if key in keys},
        PORT_RANGE: plan.port_range_sysctl,
        RESERVED: plan.hosts[0].reserved_ports_sysctl,
    }


# ------------------------------------------------------------------------------- in a netns


def test_sysctls_apply_idempotently_and_restore_in_a_network_namespace(
    netns: NetNamespace, sysctl_scope: SysctlScope, tmp_path: Path
) -> None:
    stack = run_program(netns_only_config(tmp_path, sysctl_scope))
    command = stack.commands["emqx-host-sysctls"]
    expected = expected_settings(stack, sysctl_scope.per_netns)
    plan = stack.plan()
    assert "net.core.somaxconn" in expected
    drop_in = Path(stack.stack_config().tuning.drop_in)
    saved = drop_in.with_name(drop_in.name + ".before")

    for key, value in PREVIOUS.items():
        if key in expected:
            netns.set_sysctl(key, value)
    before = {key: netns.sysctl(key) for key in expected}
    for key in PREVIOUS.keys() & expected.keys():
        assert normalized(before[key]) == normalized(PREVIOUS[key]) != normalized(expected[key])
    host_before = {key: host_sysctl(key) for key in expected}

    first = netns.run(command.script("create"))
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"applied {len(expected)} sysctl settings from {drop_in}\n"
    applied = {key: normalized(netns.sysctl(key)) for key in expected}
    assert applied == {key: normalized(value) for key, value in expected.items()}
    assert applied[PORT_RANGE] == plan.port_range_sysctl
    assert applied[RESERVED] == plan.hosts[0].reserved_ports_sysctl
    assert applied["net.core.somaxconn"] == "32768"

    drop_in_text = drop_in.read_text()
    assert drop_in_text.splitlines()[0] == DROP_IN_HEADER
    assert parse_drop_in(drop_in_text) == expected
    assert parse_saved(saved.read_text()) == before  # the kernel's own text, tabs included

    first_files = (drop_in.read_bytes(), saved.read_bytes())
    again = netns.run(command.script("create"))
    assert again.returncode == 0, again.stderr
    assert {key: normalized(netns.sysctl(key)) for key in expected} == applied
    assert (drop_in.read_bytes(), saved.read_bytes()) == first_files
    assert sorted(p.name for p in drop_in.parent.iterdir()) == sorted([drop_in.name, saved.name])

    restored = netns.run(command.script("delete"))
    assert restored.returncode == 0, restored.stderr
    assert {key: netns.sysctl(key) for key in expected} == before
    assert not drop_in.exists() and not saved.exists()
    assert list(drop_in.parent.iterdir()) == []

    assert {key: host_sysctl(key) for key in expected} == host_before


def test_a_value_the_kernel_refuses_undoes_this_run_and_names_the_key(
    netns: NetNamespace, sysctl_scope: SysctlScope, tmp_path: Path
) -> None:
    """A writable key whose value the kernel refuses (here an int overflow, EINVAL on any kernel)
    after other keys were written: those get their values back, no drop-in, the key named."""
    refused = "net.ipv4.tcp_fin_timeout"  # per netns, written after somaxconn and the others
    overrides = {**{key: None for key in sysctl_scope.host_global}, refused: "99999999999999999999"}
    stack = run_program(throwaway_config(tmp_path, nodes=3, sysctls=overrides))
    drop_in = Path(stack.stack_config().tuning.drop_in)
    netns.set_sysctl("net.core.somaxconn", "1234")
    before = {key: netns.sysctl(key) for key in ("net.core.somaxconn", refused)}

    result = netns.run(stack.commands["emqx-host-sysctls"].script("create"))

    assert result.returncode == 1
    headline, action = result.stderr.splitlines()[-2:]
    assert headline.startswith(f"sysctl {refused} = '99999999999999999999' refused by the kernel on "), headline
    assert headline.endswith("nothing changed.")
    assert action == f"Set another value for {refused} (or null to leave it alone) in emqx-cluster:sysctls."
    assert {key: netns.sysctl(key) for key in before} == before
    assert not drop_in.exists() and not Path(f"{drop_in}.tmp").exists()
    assert not Path(f"{drop_in}.before").exists() and not Path(f"{drop_in}.before.undo").exists()
    assert "(Invalid argument)" in headline  # the kernel's own reason (EINVAL), not the shell's


def test_a_refused_value_on_a_later_update_keeps_the_applied_tuning_and_saved_values(
    netns: NetNamespace, sysctl_scope: SysctlScope, tmp_path: Path
) -> None:
    """An update whose new value is refused leaves the host as the last good apply left it: the
    same drop-in, the same values saved for the destroy, the same values in the kernel."""
    left_alone = {key: None for key in sysctl_scope.host_global}
    good = run_program(throwaway_config(tmp_path, nodes=3, sysctls=left_alone))
    drop_in = Path(good.stack_config().tuning.drop_in)
    applied = netns.run(good.commands["emqx-host-sysctls"].script("create"))
    assert applied.returncode == 0, applied.stderr
    files = (drop_in.read_text(), Path(f"{drop_in}.before").read_text())
    somaxconn = netns.sysctl("net.core.somaxconn")

    refused = {**left_alone, "net.ipv4.tcp_fin_timeout": "99999999999999999999"}
    bad = run_program(throwaway_config(tmp_path, nodes=3, sysctls=refused))
    result = netns.run(bad.commands["emqx-host-sysctls"].script("create"))  # an update runs create

    assert result.returncode == 1 and "refused by the kernel" in result.stderr
    assert (drop_in.read_text(), Path(f"{drop_in}.before").read_text()) == files
    assert not Path(f"{drop_in}.before.undo").exists()
    assert netns.sysctl("net.core.somaxconn") == somaxconn
    restored = netns.run(good.commands["emqx-host-sysctls"].script("delete"))
    assert restored.returncode == 0, restored.stderr


def test_a_key_this_kernel_lacks_is_refused_before_anything_is_saved(
    netns: NetNamespace, sysctl_scope: SysctlScope, tmp_path: Path
) -> None:
    """A key the kernel does not have (say, conntrack without its module) must not be half-applied:
    restore could never put it back, and `pulumi destroy` would be stuck."""
    missing_key = "net.ipv4.emqx_cluster_no_such_key"
    overrides = {**{key: None for key in sysctl_scope.host_global}, missing_key: "1"}
    stack = run_program(throwaway_config(tmp_path, nodes=3, sysctls=overrides))
    drop_in = Path(stack.stack_config().tuning.drop_in)
    somaxconn = netns.sysctl("net.core.somaxconn")

    result = netns.run(stack.commands["emqx-host-sysctls"].script("create"))

    assert result.returncode == 1
    assert missing_key in result.stderr and "set them to null in emqx-cluster:sysctls" in result.stderr
    assert not drop_in.exists() and not drop_in.with_name(drop_in.name + ".before").exists()
    assert netns.sysctl("net.core.somaxconn") == somaxconn


def test_keys_read_only_in_this_namespace_are_refused_before_anything_is_saved(
    netns: NetNamespace, sysctl_scope: SysctlScope, tmp_path: Path
) -> None:
    """The default drop-in in a namespace whose global keys are read-only (a container host):
    refused by name, nothing saved, nothing written (found by the real engine in tests/e2e)."""
    read_only = sorted(key for key, why in sysctl_scope.host_global.items() if why.startswith("read-only"))
    if not read_only:
        pytest.skip("no EMQX tuning key is read-only in a network namespace on this kernel")
    absent = [key for key, why in sysctl_scope.host_global.items() if not why.startswith("read-only")]
    stack = run_program(throwaway_config(tmp_path, nodes=3, sysctls=dict.fromkeys(absent)))
    drop_in = Path(stack.stack_config().tuning.drop_in)
    somaxconn = netns.sysctl("net.core.somaxconn")

    result = netns.run(stack.commands["emqx-host-sysctls"].script("create"))

    assert result.returncode == 1
    assert "sysctl keys read-only on " in result.stderr and "set them to null in emqx-cluster:sysctls" in result.stderr
    assert all(key in result.stderr for key in read_only), result.stderr
    assert not drop_in.exists() and not drop_in.with_name(drop_in.name + ".before").exists()
    assert netns.sysctl("net.core.somaxconn") == somaxconn


def test_restore_skips_a_saved_key_that_is_read_only_here(
    netns: NetNamespace, sysctl_scope: SysctlScope, tmp_path: Path
) -> None:
    """A `.before` that lists a read-only key (left by an apply that then refused it) must not
    block `pulumi destroy`: the key is skipped by name, the others are restored."""
    read_only = sorted(key for key, why in sysctl_scope.host_global.items() if why.startswith("read-only"))
    if not read_only:
        pytest.skip("no EMQX tuning key is read-only in a network namespace on this kernel")
    stack = run_program(throwaway_config(tmp_path, nodes=3))
    drop_in = Path(stack.stack_config().tuning.drop_in)
    drop_in.parent.mkdir(parents=True)
    somaxconn = netns.sysctl("net.core.somaxconn")
    changed = str(int(somaxconn) + 7)
    netns.run(f"printf '%s\\n' {changed} > /proc/sys/net/core/somaxconn")
    drop_in.with_name(drop_in.name + ".before").write_text(
        f"{read_only[0]}={netns.sysctl(read_only[0])}\nnet.core.somaxconn={somaxconn}\n"
    )

    result = netns.run(stack.commands["emqx-host-sysctls"].script("delete"))

    assert result.returncode == 0, result.stderr
    assert f"skipped {read_only[0]}: read-only on this host" in result.stderr
    assert netns.sysctl("net.core.somaxconn") == somaxconn


def test_default_settings_including_host_global_keys_run_against_a_stand_in_proc_sys(tmp_path: Path) -> None:
    """The full default drop-in, run for real, but with /proc/sys replaced in a private mount namespace.

    Global keys (fs.*, net.core.rmem_max, ...) are never written on this host: the script's
    writes land in plain files under tmp_path, which also shows what it would do to them.
    """
    if shutil.which("unshare") is None:
        pytest.skip("util-linux `unshare` is not installed: host-global keys are not executed anywhere")
    stack = run_program(throwaway_config(tmp_path, nodes=3))
    command = stack.commands["emqx-host-sysctls"]
    expected = expected_settings(stack, set(EMQX_TUNING_SYSCTLS))
    drop_in = Path(stack.stack_config().tuning.drop_in)

    stand_in = tmp_path / "proc-sys"
    host_values = {key: host_sysctl(key) for key in expected}
    for key, value in host_values.items():
        path = stand_in / key.replace(".", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")

    def in_stand_in(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "/bin/sh",
                "-c",
                'mount --bind "$1" /proc/sys && exec /bin/sh -c "$2"',
                "sh",
                str(stand_in),
                script,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    probe = in_stand_in("cat /proc/sys/fs/file-max")
    if probe.returncode != 0:
        pytest.skip(f"cannot bind-mount a stand-in /proc/sys here ({probe.stderr.strip()}); global keys not executed")
    assert probe.stdout.strip() == host_values["fs.file-max"]

    applied = in_stand_in(command.script("create"))
    assert applied.returncode == 0, applied.stderr
    assert drop_in.read_text().splitlines()[0] == DROP_IN_HEADER
    assert parse_drop_in(drop_in.read_text()) == expected
    assert list(parse_drop_in(drop_in.read_text())) == list(expected)  # EMQX's list, then the plan's keys
    written = {key: (stand_in / key.replace(".", "/")).read_text() for key in expected}
    assert written == {key: value + "\n" for key, value in expected.items()}
    saved = drop_in.with_name(drop_in.name + ".before")
    assert parse_saved(saved.read_text()) == host_values

    restored = in_stand_in(command.script("delete"))
    assert restored.returncode == 0, restored.stderr
    assert {key: (stand_in / key.replace(".", "/")).read_text() for key in expected} == {
        key: value + "\n" for key, value in host_values.items()
    }
    assert not drop_in.exists() and not saved.exists()
    assert {key: host_sysctl(key) for key in expected} == host_values  # the real host never changed


# --------------------------------------------------------------------------------- over SSH


@pytest.fixture
def ssh_root() -> Iterator[Path]:
    """A scratch dir the SSH user can traverse (pytest's tmp_path base is 0700 root)."""
    root = Path(tempfile.mkdtemp(prefix="emqx-ssh-host-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def host_key(endpoint: SshEndpoint) -> str:
    """`ssh-ed25519 AAAA...` from the endpoint's known_hosts line."""
    return " ".join(endpoint.known_hosts_line.split()[1:3])


def ssh_stack(endpoint: SshEndpoint, root: Path, *, use_sudo: bool = True, **overrides: Any) -> ProgramRun:
    """The prod stack pointed at the test sshd, its key given as a secret, paths under `root`."""
    config = throwaway_config(
        root,
        base="prod",
        sshHost=endpoint.host,
        sshPort=endpoint.port,
        sshUser=endpoint.user,
        sshHostKey=host_key(endpoint),
        hostUseSudo=use_sudo,
        dockerHost=f"ssh://{endpoint.user}@{endpoint.host}:{endpoint.port}",
        tlsMode="self-signed",  # the prod stack's certificate secrets are not what is tested here
        **overrides,
    )
    return run_program(config, secrets={"sshPrivateKey": endpoint.private_key_pem})


def test_every_host_command_is_a_remote_command_on_the_ssh_endpoint(sshd_server: SshEndpoint, ssh_root: Path) -> None:
    stack = ssh_stack(sshd_server, ssh_root)
    commands = stack.commands
    assert {"emqx-host-sysctls", "emqx-preflight-check", "emqx1-dirs", "emqx2-membership"} <= commands.keys()
    for name, command in commands.items():
        assert command.type == REMOTE_COMMAND, name
        assert command.connection is not None
        connection = dict(command.connection)
        assert (connection["host"], int(connection["port"]), connection["user"]) == (
            sshd_server.host,
            sshd_server.port,
            sshd_server.user,
        ), name
        assert connection["privateKey"] == sshd_server.private_key_pem
        assert connection["hostKey"] == host_key(sshd_server)
        assert "connection" in stack.named(name).secret_inputs, name
        assert command.environment is None, name  # SSH Setenv would need AcceptEnv on the host
        assert command.command_line("create") == "sudo -n sh -s create", name


def test_node_dirs_over_ssh_are_made_through_sudo_and_owned_by_the_emqx_user(
    sshd_server: SshEndpoint, ssh_root: Path
) -> None:
    stack = ssh_stack(sshd_server, ssh_root)
    dirs = stack.commands["emqx1-dirs"]
    host_dir = next(node.host_dir for node in stack.plan().nodes if node.short_name == "emqx1")
    assert sshd_server.run("id -u").stdout.strip() not in ("0", str(EMQX_UID))

    for _ in range(2):  # a re-run finds everything in place
        made = sshd_server.run(dirs.script("create"))
        assert made.returncode == 0, made.stderr
        assert made.stdout == f"node dirs ready under {host_dir}\n"
    for path in (Path(host_dir), Path(host_dir, "data"), Path(host_dir, "log")):
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (EMQX_UID, EMQX_UID), path

    kept = sshd_server.run(dirs.script("delete"))
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.startswith(f"kept {host_dir} (")
    assert Path(host_dir, "data").is_dir()


def test_failing_preflight_over_ssh_exits_1_with_its_message_on_stderr(
    sshd_server: SshEndpoint, ssh_root: Path
) -> None:
    with listening_socket("127.0.0.1") as held:
        port = held.getsockname()[1]
        stack = ssh_stack(sshd_server, ssh_root, lbPort=port)
        result = sshd_server.run(stack.commands["emqx-preflight-check"].script("create"))
    assert result.returncode == 1, result
    assert result.stderr.startswith("emqx-cluster preflight failed on ")
    assert f"  - port {port} (TLS listener of emqx-lb) is already in use on this host\n" in result.stderr
    assert "preflight passed" not in result.stdout


def test_sysctl_strings_over_ssh_apply_and_restore_in_a_network_namespace(
    sshd_server: SshEndpoint, ssh_root: Path, netns: NetNamespace, sysctl_scope: SysctlScope
) -> None:
    """The declared string, unchanged, as the login shell's command inside `ip netns exec`."""
    stack = ssh_stack(sshd_server, ssh_root, sysctls={key: None for key in sysctl_scope.host_global})
    command = stack.commands["emqx-host-sysctls"]
    plan = stack.plan()
    netns.set_sysctl(PORT_RANGE, PREVIOUS[PORT_RANGE])
    before = {key: netns.sysctl(key) for key in (PORT_RANGE, RESERVED)}

    def in_netns(script: str) -> subprocess.CompletedProcess[str]:
        return sshd_server.run(f"sudo -n ip netns exec {netns.name} sh -c {shlex.quote(script)}")

    applied = in_netns(command.script("create"))
    assert applied.returncode == 0, applied.stderr
    assert normalized(netns.sysctl(PORT_RANGE)) == plan.port_range_sysctl
    assert netns.sysctl(RESERVED) == plan.hosts[0].reserved_ports_sysctl
    restored = in_netns(command.script("delete"))
    assert restored.returncode == 0, restored.stderr
    assert {key: netns.sysctl(key) for key in (PORT_RANGE, RESERVED)} == before
    assert not Path(stack.stack_config().tuning.drop_in).exists()


def test_without_sudo_the_ssh_user_cannot_chown_node_dirs(sshd_server: SshEndpoint, ssh_root: Path) -> None:
    user = pwd.getpwnam(sshd_server.user)
    if user.pw_uid == EMQX_UID:
        pytest.skip(f"{sshd_server.user} has the emqx UID {EMQX_UID}: chown to it would succeed")
    owned = ssh_root / "deploy-owned"  # the user may create dirs here, so only chown can fail
    owned.mkdir()
    os.chown(owned, user.pw_uid, user.pw_gid)
    stack = ssh_stack(sshd_server, ssh_root, use_sudo=False, dataDir=str(owned / "data"))
    dirs = stack.commands["emqx1-dirs"]
    host_dir = owned / "data" / "emqx1"
    assert dirs.command_line("create") == "sh -s create"

    result = sshd_server.run(dirs.script("create"))
    assert result.returncode not in (0, 255), result  # 255 would be ssh itself failing
    assert f"chown: changing ownership of '{host_dir}': Operation not permitted" in result.stderr
    assert "node dirs ready" not in result.stdout
    assert host_dir.stat().st_uid == user.pw_uid != EMQX_UID
