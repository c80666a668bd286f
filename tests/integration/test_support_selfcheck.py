"""Self-checks of the integration test support: each fixture does what the real tests rely on."""

from __future__ import annotations

import errno
import itertools
import json
import shutil
import socket
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.emqx.fake_docker import DOCKER_SCRIPT, FakeDocker, container_id
from tests.support.netns import NetNamespace, host_sysctl
from tests.support.ports import free_port, listening_socket, wait_for_port
from tests.support.sshd import SshEndpoint

pytestmark = pytest.mark.integration

CTL = "/opt/emqx/bin/emqx"
N1, N2, N3 = "emqx1@127.0.0.1", "emqx2@127.0.0.1", "emqx3@127.0.0.1"


@pytest.fixture
def cluster3(fake_docker: FakeDocker) -> FakeDocker:
    """Three unjoined EMQX containers emqx1..3."""
    assert fake_docker.add_emqx_containers(3) == [N1, N2, N3]
    return fake_docker


def ctl(fd: FakeDocker, container: str, *args: str) -> subprocess.CompletedProcess[str]:
    return fd.run("exec", container, CTL, "ctl", *args)


# ----------------------------------------------------------------------------- fake docker


def test_fake_docker_join_texts_and_membership(cluster3: FakeDocker) -> None:
    joined = ctl(cluster3, "emqx2", "cluster", "join", N1)
    assert joined.returncode == 0
    assert joined.stdout.splitlines()[0] == "Join the cluster successfully."
    assert joined.stdout.splitlines()[1] == (
        "Cluster status: #{running_nodes => ['emqx1@127.0.0.1','emqx2@127.0.0.1'],"
    )
    assert cluster3.members(N1) == [N1, N2]

    again = ctl(cluster3, "emqx2", "cluster", "join", N1)
    assert (again.returncode, again.stdout) == (
        0,
        "Failed to join the cluster: {already_in_cluster,'emqx1@127.0.0.1'}\n",
    )
    itself = ctl(cluster3, "emqx3", "cluster", "join", N3)
    assert itself.stdout == "Ignore.\n"

    status = ctl(cluster3, "emqx1", "cluster", "status", "--json")
    assert status.returncode == 0
    assert len(status.stdout.splitlines()) > 3  # pretty-printed like EMQX
    assert json.loads(status.stdout) == {"running_nodes": [N1, N2], "stopped_nodes": []}

    assert ctl(cluster3, "emqx3", "status").stdout == "Node 'emqx3@127.0.0.1' 5.8.6 is started\n"
    assert cluster3.clusters() == [[N1, N2], [N3]]


def test_fake_docker_seed_down_stopped_and_unknown_containers(cluster3: FakeDocker) -> None:
    cluster3.set_running("emqx1", False)
    down = ctl(cluster3, "emqx2", "cluster", "join", N1)
    assert (down.returncode, down.stdout) == (
        0,
        "Failed to join the cluster: {node_down,'emqx1@127.0.0.1'}\n",
    )
    stopped = ctl(cluster3, "emqx1", "status")
    assert stopped.returncode == 1
    assert stopped.stderr == (f"Error response from daemon: container {container_id('emqx1')} is not running\n")
    missing = ctl(cluster3, "emqx9", "status")
    assert (missing.returncode, missing.stderr) == (
        1,
        "Error response from daemon: No such container: emqx9\n",
    )
    cluster3.set_knobs("emqx3", emqx_running=False)
    booting = ctl(cluster3, "emqx3", "status")
    # bin/nodetool prints this on standard_error; assert_node_alive hides stdout only.
    assert (booting.returncode, booting.stdout, booting.stderr) == (
        1,
        "",
        "Node 'emqx3@127.0.0.1' not responding to pings.\n",
    )


def test_fake_docker_leave_force_leave_hides_and_permanent_error(cluster3: FakeDocker) -> None:
    cluster3.form_cluster(N1, N2, N3)
    cluster3.set_knobs("emqx1", status_hides=[N3])
    hidden = json.loads(ctl(cluster3, "emqx1", "cluster", "status", "--json").stdout)
    assert hidden == {"running_nodes": [N1, N2], "stopped_nodes": [N3]}

    left = ctl(cluster3, "emqx3", "cluster", "leave")
    assert left.stdout.startswith("Leave the cluster successfully.\n")
    lonely = ctl(cluster3, "emqx3", "cluster", "leave")
    assert lonely.stdout == "Failed to leave the cluster: node_not_in_cluster\n"

    removed = ctl(cluster3, "emqx1", "cluster", "force-leave", N2)
    assert removed.stdout.startswith("Remove the node from cluster successfully.\n")
    not_member = ctl(cluster3, "emqx1", "cluster", "force-leave", N2)
    assert not_member.stdout == "Failed to remove the node from cluster: node_not_in_cluster\n"
    assert cluster3.clusters() == [[N1], [N2], [N3]]

    cluster3.set_knobs("emqx2", join_permanent_error="{cannot_join_to_replicant,'emqx1@127.0.0.1'}")
    for _ in range(2):
        out = ctl(cluster3, "emqx2", "cluster", "join", N1).stdout
        assert out == "Failed to join the cluster: {cannot_join_to_replicant,'emqx1@127.0.0.1'}\n"


def test_fake_docker_transient_failures_seen_through_a_retrying_script(cluster3: FakeDocker, tmp_path: Path) -> None:
    """A shell retry loop finds `docker` on PATH and the log shows attempts and backoff."""
    cluster3.set_knobs("emqx2", join_failures_before_success=2)
    script = tmp_path / "join.sh"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            for attempt in 1 2 3 4 5; do
              out=$(docker exec emqx2 {CTL} ctl cluster join {N1})
              case "$out" in *"successfully"*|*already_in_cluster*) exit 0 ;; esac
              sleep 0.2
            done
            exit 1
            """
        )
    )
    script.chmod(0o755)
    proc = subprocess.run([str(script)], env=cluster3.env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

    joins = [c for c in cluster3.ctl_calls("emqx2") if c.ctl_args[:2] == ["cluster", "join"]]
    assert [c.stdout.splitlines()[0] for c in joins] == [
        "Failed to join the cluster: {node_down,'emqx1@127.0.0.1'}",
        "Failed to join the cluster: {node_down,'emqx1@127.0.0.1'}",
        "Join the cluster successfully.",
    ]
    gaps = [b.mono - a.mono for a, b in itertools.pairwise(joins)]
    assert all(g >= 0.2 for g in gaps), gaps
    assert cluster3.container("emqx2")["join_failures_before_success"] == 0
    assert cluster3.members(N1) == [N1, N2]


def test_fake_docker_ps_info_and_system_python(cluster3: FakeDocker) -> None:
    cluster3.set_running("emqx3", False)
    running = cluster3.run("ps", "--filter", "name=^emqx1$", "--filter", "status=running", "--quiet")
    assert running.stdout == container_id("emqx1")[:12] + "\n"
    assert cluster3.run("ps", "-q", "--filter", "name=^emqx3$", "--filter", "status=running").stdout == ""
    assert cluster3.run("info").returncode == 0

    cluster3.set_daemon_down()
    assert cluster3.run("info").returncode == 1
    cluster3.set_daemon_down(False)

    system_python = shutil.which("python3", path="/usr/bin:/bin")
    assert system_python is not None
    via_system = subprocess.run(
        [system_python, str(DOCKER_SCRIPT), "exec", "emqx1", CTL, "ctl", "status"],
        env=cluster3.env(),
        capture_output=True,
        text=True,
    )
    assert via_system.stdout == "Node 'emqx1@127.0.0.1' 5.8.6 is started\n", via_system.stderr
    assert [c.argv[0] for c in cluster3.calls()] == ["ps", "ps", "info", "info", "exec"]


# ----------------------------------------------------------------------------------- sshd


def test_sshd_runs_as_non_root_with_passwordless_sudo(sshd_server: SshEndpoint) -> None:
    who = sshd_server.run("id -un; id -u")
    assert who.returncode == 0, who.stderr
    name, uid = who.stdout.split()
    assert name == "emqxdeploy" and uid != "0"

    root = sshd_server.run("sudo -n id -u")
    assert (root.returncode, root.stdout.strip()) == (0, "0"), root.stderr


def test_sshd_command_string_goes_to_the_login_shell(sshd_server: SshEndpoint) -> None:
    quoted = sshd_server.run("""printf '%s|' "a  b" 'c"d' "$HOME" "$SHELL"; exit 3""")
    assert quoted.returncode == 3
    assert quoted.stdout == 'a  b|c"d|/home/emqxdeploy|/bin/bash|'
    assert sshd_server.run("cat; echo done", stdin="payload\n").stdout == "payload\ndone\n"
    assert sshd_server.run("-x").returncode not in (0, 255)  # reached the remote shell, not ssh options
    assert sshd_server.known_hosts_line.startswith(f"[127.0.0.1]:{sshd_server.port} ssh-ed25519 ")
    assert "PRIVATE KEY" in sshd_server.private_key_pem


@pytest.fixture
def shared_fake_docker() -> Iterator[FakeDocker]:
    """A fake docker world the SSH user can reach (tmp_path's base dir is 0700 root)."""
    root = Path(tempfile.mkdtemp(prefix="emqx-fake-docker-"))
    root.chmod(0o755)
    try:
        yield FakeDocker(root / "world", shared=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_fake_docker_over_ssh_with_and_without_sudo(sshd_server: SshEndpoint, shared_fake_docker: FakeDocker) -> None:
    fd = shared_fake_docker
    fd.add_emqx_containers(2)
    wrapper = fd.install_wrapper(fd.root / "wrapper-bin")
    plain = sshd_server.run(
        f"PATH={fd.bin_dir}:$PATH FAKE_DOCKER_STATE={fd.state_path} docker exec emqx2 {CTL} ctl cluster join {N1}"
    )
    assert plain.stdout.startswith("Join the cluster successfully.\n"), plain.stderr
    sudo = sshd_server.run(f"sudo -n {wrapper} exec emqx1 {CTL} ctl cluster status --json")
    assert json.loads(sudo.stdout)["running_nodes"] == [N1, N2], sudo.stderr
    uids = [c.uid for c in fd.calls()]
    assert uids[0] != 0 and uids[1] == 0


# ---------------------------------------------------------------------------------- netns


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("net.ipv4.ip_local_port_range", "20000\t29999"),
        ("net.ipv4.ip_local_reserved_ports", "18083,20000-20010"),
    ],
)
def test_netns_sysctl_writes_do_not_reach_the_host(netns: NetNamespace, key: str, value: str) -> None:
    before = host_sysctl(key)
    written = netns.run(f"sysctl -q -w {key}='{value}'")
    assert written.returncode == 0, written.stderr
    assert netns.sysctl(key) == value
    assert host_sysctl(key) == before != value


def test_netns_has_loopback_up(netns: NetNamespace) -> None:
    probe = netns.run("ip -o link show lo")
    assert "UP" in probe.stdout, probe.stdout + probe.stderr


# ---------------------------------------------------------------------------------- ports


def test_ports_listening_socket_blocks_bind_and_wait_for_port() -> None:
    port = free_port()
    with listening_socket("127.0.0.1", port) as sock:
        assert sock.getsockname()[1] == port
        wait_for_port("127.0.0.1", port, timeout=2)
        with socket.socket() as other, pytest.raises(OSError) as exc:
            other.bind(("127.0.0.1", port))
        assert exc.value.errno == errno.EADDRINUSE
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", port, timeout=0.3)
