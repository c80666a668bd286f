"""The real EMQX 5.8.6 release for the integration tier, extracted once into the versioned cache.

`python -m tests.support.emqx_release` (run by `scripts/install-test-deps`, as root) checks the
tarball against its SHA256SUMS, extracts it into
`${EMQX_E2E_CACHE:-~/.cache/emqx-cluster-e2e}/emqx-release-<checksum>/emqx` (a temporary dir in
the cache, renamed when complete: idempotent and atomic) and creates RUN_USER, the non-root
user the nodes run as. The release is the one the e2e tier builds its image from
(tests/support/e2e/images.py release_dir(): ../shared/emqx beside the repository, or
$EMQX_RELEASE_DIR).

A test never extracts: `extracted_release()` fails at once naming that command when the release
or the user is missing. tests/support/emqx_nodes.py runs nodes from it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.e2e.images import RELEASE_VERSION, release_dir, release_tarball_name
from tests.support.e2e.rootfs import cache_dir

PREPARE_COMMAND = "scripts/install-test-deps"
# The user every node runs as (bin/emqx refuses nothing as root, but the image runs EMQX as its
# `emqx` user, and a node's files belong to it: the program's node-dirs script chowns them).
RUN_USER = "emqxrun"


def release_checksum() -> str:
    """The tarball's SHA-256 as SHA256SUMS records it (the cache key)."""
    name = release_tarball_name()
    for line in (release_dir() / "SHA256SUMS").read_text().splitlines():
        digest, _, file = line.partition("  ")
        if file.strip().lstrip("*") == name:
            return digest.strip()
    raise RuntimeError(f"{release_dir() / 'SHA256SUMS'} has no line for {name}")


def release_path() -> Path:
    """Where the extracted release (its `emqx` folder: bin/, etc/, lib/, erts-*) is cached."""
    return cache_dir() / f"emqx-release-{release_checksum()[:12]}" / "emqx"


def _verify(tarball: Path, expected: str) -> None:
    digest = hashlib.sha256()
    with tarball.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise RuntimeError(f"{tarball} does not match its SHA256SUMS ({digest.hexdigest()} != {expected})")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def extract_release() -> Path:
    """The cached release, extracted first if missing (~15 s, 114 MB). Files stay root's and
    read-only to everyone else: each node runs from a hard-linked copy, which must never write
    into the cache (only its fresh data/ and log/ belong to RUN_USER)."""
    target = release_path()
    if (target / "bin" / "emqx").is_file():
        return target
    top = target.parent
    with _locked(top.with_name(top.name + ".lock")):
        if (target / "bin" / "emqx").is_file():
            return target
        tarball = release_dir() / release_tarball_name()
        _verify(tarball, release_checksum())
        work = Path(tempfile.mkdtemp(prefix=f".{top.name}-", dir=top.parent))
        try:
            subprocess.run(["tar", "-xJf", str(tarball), "-C", str(work)], check=True, stdin=subprocess.DEVNULL)
            subprocess.run(["chmod", "-R", "u+w,go+rX,go-w", str(work)], check=True)
            work.chmod(0o755)
            shutil.rmtree(top, ignore_errors=True)  # an unfinished folder never gets a bin/emqx
            work.rename(top)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def ensure_run_user() -> pwd.struct_passwd:
    """RUN_USER, created (a system user, no login shell) when missing."""
    try:
        return pwd.getpwnam(RUN_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", RUN_USER],
            check=True,
        )
        return pwd.getpwnam(RUN_USER)


def run_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(RUN_USER)
    except KeyError:
        raise RuntimeError(f"the user {RUN_USER} that runs the EMQX nodes is missing: run {PREPARE_COMMAND}") from None


def extracted_release() -> Path:
    """The extracted release: a clear error naming the command that prepares it when it is
    missing (a test never extracts it)."""
    target = release_path()
    if not (target / "bin" / "emqx").is_file():
        raise RuntimeError(f"the EMQX {RELEASE_VERSION} release is not extracted ({target}): run {PREPARE_COMMAND}")
    run_user()
    return target


if __name__ == "__main__":
    started = time.monotonic()
    path = extract_release()
    user = ensure_run_user()
    print(f"EMQX {RELEASE_VERSION} at {path}, run as {user.pw_name} ({time.monotonic() - started:.1f}s)")
    sys.exit(0)
