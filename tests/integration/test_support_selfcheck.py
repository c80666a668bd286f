"""Self-checks of the integration test support: each fixture does what the real tests rely on."""

from __future__ import annotations

import errno
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.emqx_release import extracted_release, run_user
from tests.support.netns import NetNamespace, host_sysctl
from tests.support.ports import free_port, listening_socket, wait_for_port
from tests.support.sshd import SshEndpoint

pytestmark = pytest.mark.integration

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


# ------------------------------------------------------------------------------ EMQX release


def test_a_missing_release_fails_at_once_naming_the_command_that_prepares_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMQX_E2E_CACHE", str(tmp_path))  # an empty cache: nothing extracted
    with pytest.raises(RuntimeError, match=r"is not extracted .* run scripts/install-test-deps"):
        extracted_release()


def test_the_release_is_extracted_read_only_for_the_nodes_user() -> None:
    """The nodes run from hard-linked copies: the cache's files must stay root's, not writable by
    the nodes' user, or a node could write into every later node's release."""
    release = extracted_release()
    writable = subprocess.run(
        ["find", str(release), "-perm", "/o+w", "-print", "-quit"], capture_output=True, text=True, check=True
    )
    assert writable.stdout == ""
    assert release.stat().st_uid == 0 and (release / "bin" / "emqx").stat().st_uid == 0
    assert run_user().pw_uid != 0
