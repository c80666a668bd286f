"""A throwaway OpenSSH server on loopback, logging in as a non-root user with passwordless sudo.

It stands in for the remote host that pulumi-command's remote.Command talks to: that
provider sends one SSH "exec" request whose command string the remote user's login shell
interprets, which is exactly what `ssh user@host -- '<command>'` does with one argument.
So quoting, PATH, sudo and non-root behaviour of the rendered host scripts are tested for
real, not through a local `sh -c`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.ports import free_port, port_is_open
from tests.support.processes import run_captured, stop_process

SSHD = Path("/usr/sbin/sshd")
DEPLOY_USER = "emqxdeploy"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class SshEndpoint:
    """Where and how to log in; `private_key_pem` is OpenSSH-format ed25519 key text."""

    host: str
    port: int
    user: str
    private_key_pem: str
    known_hosts_line: str
    key_file: Path = field(repr=False)
    known_hosts_file: Path = field(repr=False)
    log_file: Path = field(repr=False)

    def ssh_argv(self, command: str) -> list[str]:
        """OpenSSH client argv sending `command` as the single exec-request string."""
        return [
            "ssh",
            "-F",
            "/dev/null",  # no user/system client config can change the behaviour
            "-p",
            str(self.port),
            "-i",
            str(self.key_file),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts_file}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            "-T",  # remote.Command requests no pty
            f"{self.user}@{self.host}",
            "--",
            command,
        ]

    def run(self, command: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run `command` on the server like remote.Command does; never raises on exit code.

        Exit code 255 is ssh's own failure (connect/auth), anything else the command's.
        """
        return run_captured(self.ssh_argv(command), input=stdin, timeout=timeout)


def ensure_user(user: str = DEPLOY_USER) -> pwd.struct_passwd:
    """Create `user` (bash login shell, home dir) if missing, and make it able to log in.

    useradd leaves the password field "!", which sshd without PAM treats as a locked
    account even for public-key logins; "*" means "no password" but not locked.
    """
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", user], check=True)
    shadow = Path("/etc/shadow").read_text().splitlines()
    entry = next((line.split(":") for line in shadow if line.startswith(user + ":")), None)
    if entry is not None and entry[1].startswith("!"):
        subprocess.run(["usermod", "-p", "*", user], check=True)
    return pwd.getpwnam(user)


@contextlib.contextmanager
def passwordless_sudo(user: str = DEPLOY_USER, tag: str = "") -> Iterator[Path]:
    """A /etc/sudoers.d drop-in granting `user` NOPASSWD sudo, removed on exit.

    `tag` ([A-Za-z0-9_-]) names a second drop-in for the same user, so two holders in one test
    run do not remove each other's.
    """
    # sudo ignores drop-ins whose name contains "." or ends in "~".
    path = Path("/etc/sudoers.d") / f"zz-emqx-test-{user}-{os.getpid()}{'-' + tag if tag else ''}"
    tmp = path.with_name(path.name + "~")  # ignored by sudo while being validated
    tmp.write_text(f"{user} ALL=(ALL:ALL) NOPASSWD: ALL\n")
    tmp.chmod(0o440)
    try:
        subprocess.run(["visudo", "-cqf", str(tmp)], check=True)
        tmp.rename(path)
        yield path
    finally:
        tmp.unlink(missing_ok=True)
        path.unlink(missing_ok=True)


def ssh_keys(directory: Path, comment: str) -> str:
    """A host key and a client key in `directory` (kept if there), the client's authorized.

    Returns the host public key as `<type> <base64>` (for known_hosts).
    """
    for key, role in (("ssh_host_ed25519_key", "host"), ("client_ed25519", "client")):
        if not (directory / key).exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{comment}-{role}", "-f", str(directory / key)],
                check=True,
                stdin=subprocess.DEVNULL,
            )
    (directory / "authorized_keys").write_text((directory / "client_ed25519.pub").read_text())
    (directory / "authorized_keys").chmod(0o644)
    return " ".join((directory / "ssh_host_ed25519_key.pub").read_text().split()[:2])


def sshd_config(workdir: Path, port: int, user: str, listen: str = LOOPBACK) -> str:
    """An sshd_config for `ssh_keys(workdir)`: public-key login for `user` only, on (listen, port)."""
    return "\n".join(
        [
            f"Port {port}",
            f"ListenAddress {listen}",
            f"HostKey {workdir / 'ssh_host_ed25519_key'}",
            f"PidFile {workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "HostbasedAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin no",
            f"AllowUsers {user}",
            "PrintMotd no",
            "PrintLastLog no",
            "MaxStartups 100:30:200",  # tests may open many connections at once
            "MaxSessions 50",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",  # remote.CopyToRemote uses SFTP
            "",
        ]
    )


def ssh_endpoint(directory: Path, host: str, port: int, user: str, host_pub: str, log_file: Path) -> SshEndpoint:
    """How to log in to the sshd of `ssh_keys(directory)` on (host, port); writes its known_hosts."""
    known = f"{host} {host_pub}" if port == 22 else f"[{host}]:{port} {host_pub}"
    (directory / "known_hosts").write_text(known + "\n")
    return SshEndpoint(
        host=host,
        port=port,
        user=user,
        private_key_pem=(directory / "client_ed25519").read_text(),
        known_hosts_line=known,
        key_file=directory / "client_ed25519",
        known_hosts_file=directory / "known_hosts",
        log_file=log_file,
    )


@contextlib.contextmanager
def running_sshd(user: str = DEPLOY_USER, attempts: int = 5) -> Iterator[SshEndpoint]:
    """Start sshd in the foreground for `user` (created if needed, given sudo); stop it after.

    Files live in a fresh /tmp dir made world-readable, because sshd reads the
    AuthorizedKeysFile with the user's privileges (pytest's tmp_path is 0700 root).
    """
    ensure_user(user)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
    workdir = Path(tempfile.mkdtemp(prefix="emqx-sshd-"))
    workdir.chmod(0o755)
    proc: subprocess.Popen[bytes] | None = None
    try:
        host_pub = ssh_keys(workdir, "emqx-test")
        log_file = workdir / "sshd.log"

        with passwordless_sudo(user):
            for _ in range(attempts):
                port = free_port(LOOPBACK)
                cfg = workdir / "sshd_config"
                cfg.write_text(sshd_config(workdir, port, user))
                subprocess.run([str(SSHD), "-t", "-f", str(cfg)], check=True)
                with log_file.open("ab") as log:
                    proc = subprocess.Popen(
                        [str(SSHD), "-D", "-e", "-f", str(cfg)],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                deadline = time.monotonic() + 15
                while proc.poll() is None and time.monotonic() < deadline:
                    if port_is_open(LOOPBACK, port):
                        break
                    time.sleep(0.05)
                if proc.poll() is None and port_is_open(LOOPBACK, port):
                    break
                stop_process(proc, grace=10)
                proc = None  # most likely lost the port race: try another port
            if proc is None:
                raise RuntimeError(f"sshd did not start; log:\n{log_file.read_text()}")

            yield ssh_endpoint(workdir, LOOPBACK, port, user, host_pub, log_file)
    finally:
        if proc is not None:
            stop_process(proc, grace=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[SshEndpoint]:
    """A real sshd on 127.0.0.1:<free port> for the non-root `emqxdeploy` user (NOPASSWD sudo)."""
    if not SSHD.exists():
        pytest.skip(f"{SSHD} is not installed (Debian package openssh-server)")
    with running_sshd() as endpoint:
        yield endpoint
