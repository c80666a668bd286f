"""The e2e images' base: a Debian minbase rootfs from debootstrap, cached as a tarball.

No container registry is reachable on the test machines, so nothing can be pulled. The base
is built from the machine's own apt mirror (the suite it runs), with every package the
images need, users and directories the official images have, then `docker import`-ed.

The tarball lives outside the repository in a versioned cache dir
(`${EMQX_E2E_CACHE:-$HOME/.cache/emqx-cluster-e2e}/rootfs-<suite>-<hash>.tar`): the hash
covers the suite, the package list and the set-up script, so a change to either builds a new
one. Building is idempotent (an existing tarball is reused), serialized by a lock file and
atomic (written to a temp name, renamed at the end).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "EMQX_E2E_CACHE"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SUITE = "bookworm"

# nginx + libnginx-mod-stream: the nginx image (Debian builds the stream module as a loadable
# module). For the real EMQX 5.8.6 release (../shared/emqx/README.md "Runs on"; EMQX's
# deploy/docker/Dockerfile installs `ca-certificates procps curl`): procps (`emqx ctl` calls
# ps), curl (the program's REST calls run curl inside a node), ca-certificates, libssl3 (the
# crypto NIF), libstdc++6 (the RocksDB NIF); bash and libtinfo6 come with minbase.
PACKAGES: tuple[str, ...] = (
    "nginx",
    "libnginx-mod-stream",
    "procps",
    "curl",
    "ca-certificates",
    "libssl3",
    "libstdc++6",
)

# Run in the chroot after debootstrap. Users as the official images have them: `emqx` 1000:1000
# (emqx/deploy/docker/Dockerfile: groupadd -r -g 1000 emqx; useradd -r -m -u 1000 -g emqx emqx)
# and `nginx` (the official nginx image's worker user, named by the rendered `user nginx;`).
SETUP_SCRIPT = """\
set -eu
groupadd -r -g 1000 emqx
useradd -r -m -u 1000 -g emqx -s /bin/bash emqx
groupadd -r nginx
useradd -r -g nginx -d /nonexistent -s /usr/sbin/nologin nginx
mkdir -p /etc/nginx/tls /var/cache/nginx /var/log/nginx
# Like the official nginx image: logs to the container's stdout/stderr.
ln -sf /dev/stdout /var/log/nginx/access.log
ln -sf /dev/stderr /var/log/nginx/error.log
rm -f /etc/nginx/sites-enabled/default
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*.log /var/log/apt/*
"""


@dataclass(frozen=True)
class AptSource:
    mirror: str
    suite: str


def cache_dir() -> Path:
    """The e2e cache dir (created), from $EMQX_E2E_CACHE or ~/.cache/emqx-cluster-e2e."""
    path = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "emqx-cluster-e2e")
    path.mkdir(parents=True, exist_ok=True)
    return path


def machine_apt_source() -> AptSource:
    """The Debian mirror and suite this machine's apt uses (deb822 or one-line sources)."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for file in files:
        if not file.is_file():
            continue
        text = file.read_text(errors="replace")
        if file.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, flags=re.MULTILINE))
                uris = fields.get("URIs", "").split()
                suites = fields.get("Suites", "").split()
                for uri in uris:
                    if uri.rstrip("/").endswith("/debian") and suites:
                        return AptSource(uri.rstrip("/"), suites[0])
        else:
            for line in text.splitlines():
                parts = re.sub(r"\[[^]]*\]", "", line).split()
                if len(parts) >= 3 and parts[0] == "deb" and parts[1].rstrip("/").endswith("/debian"):
                    return AptSource(parts[1].rstrip("/"), parts[2])
    return AptSource(DEFAULT_MIRROR, DEFAULT_SUITE)


def rootfs_key(suite: str, packages: tuple[str, ...] = PACKAGES, setup: str = SETUP_SCRIPT) -> str:
    digest = hashlib.sha256("\n".join([suite, *packages, setup]).encode()).hexdigest()
    return digest[:12]


def rootfs_path(source: AptSource | None = None) -> Path:
    source = source or machine_apt_source()
    return cache_dir() / f"rootfs-{source.suite}-{rootfs_key(source.suite)}.tar"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_rootfs(source: AptSource | None = None, log: Path | None = None) -> Path:
    """The cached rootfs tarball, built by debootstrap first if missing (needs root, ~1 min)."""
    source = source or machine_apt_source()
    target = rootfs_path(source)
    if target.exists():
        return target
    with _locked(target.with_suffix(".lock")):
        if target.exists():  # built by another process while we waited
            return target
        if shutil.which("debootstrap") is None:
            raise RuntimeError("debootstrap is not installed (apt-get install debootstrap)")
        work = Path(tempfile.mkdtemp(prefix="rootfs-build-", dir=target.parent))
        try:
            rootfs = work / "rootfs"
            started = time.monotonic()
            with (log or work / "debootstrap.log").open("ab") as out:
                subprocess.run(
                    [
                        "debootstrap",
                        "--variant=minbase",
                        "--include=" + ",".join(PACKAGES),
                        source.suite,
                        str(rootfs),
                        source.mirror,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=True,
                )
                subprocess.run(
                    ["chroot", str(rootfs), "/bin/sh", "-c", SETUP_SCRIPT],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=True,
                    env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
                )
                partial = work / "rootfs.tar"
                subprocess.run(
                    ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(partial), "."],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=True,
                )
                out.write(f"rootfs built in {time.monotonic() - started:.1f}s\n".encode())
            partial.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def built_rootfs() -> Path:
    """The cached rootfs tarball, which `scripts/install-test-deps` builds before any test runs
    (debootstrap needs the mirror; the e2e hosts reach nothing): a clear error naming that
    command when it is missing, never a build inside a test."""
    target = rootfs_path()
    if not target.exists():
        raise RuntimeError(f"the e2e base rootfs is not built ({target}): run scripts/install-test-deps")
    return target


if __name__ == "__main__":
    started = time.monotonic()
    path = ensure_rootfs()
    print(f"{path} ({path.stat().st_size // 2**20} MiB) in {time.monotonic() - started:.1f}s")
