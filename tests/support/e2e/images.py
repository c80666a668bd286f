"""The e2e hosts' images, built into a host's dockerd with no registry.

- base: the cached debootstrap rootfs (tests/support/e2e/rootfs.py), `docker import`-ed;
- `emqx/emqx:5.8.6`: the REAL EMQX 5.8.6, built from its source (the release, EMQX's own
  entrypoint and a Dockerfile laid out like the official image's, all from ../shared/emqx, or
  $EMQX_RELEASE_DIR), on the base above; `emqx/emqx:5.8.7`: the same release under the next
  tag (images/emqx-next/Dockerfile adds a label), so that an upgrade is an image change the
  program rolls out wave by wave. No other EMQX build exists here; the node still says 5.8.6.
- `nginx:<nginxVersion>`: Debian nginx + stream module, tagged as the stack references the
  official image (images/nginx/Dockerfile);
- `prom/prometheus:<prometheusVersion>`: Debian's prometheus binary, the machine's
  (images/prometheus/Dockerfile).

Builds use the classic builder (`DOCKER_BUILDKIT=0`), which builds FROM a local image offline,
with `--network none` (the host's engine has no bridge network; EMQX's Dockerfile only RUNs
chown and ln). Every image is labelled with a hash of its context and base, so an unchanged
image is not rebuilt when the data root is kept between runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from components.config import MonitoringConfig
from tests.support.e2e.host import E2eHost
from tests.support.e2e.rootfs import built_rootfs

REPO = Path(__file__).resolve().parents[3]
IMAGES_DIR = Path(__file__).parent / "images"
CONTEXT_LABEL = "io.emqx-cluster.e2e.context"
BASE_REPOSITORY = "emqx-cluster-e2e/base"
DEFAULT_EMQX_VERSIONS: tuple[str, ...] = ("5.8.6", "5.8.7")
DEFAULT_NGINX_VERSION = "1.27"
DEFAULT_EMQX_REPOSITORY = "emqx/emqx"
DEFAULT_PROMETHEUS_IMAGE = MonitoringConfig.model_validate({}).image
# Debian's prometheus (scripts/install-test-deps installs it on the machine).
PROMETHEUS_BINARY = Path("/usr/bin/prometheus")

# The real EMQX: ../shared/emqx beside the repository (every checkout and CI have it), or
# $EMQX_RELEASE_DIR.
RELEASE_DIR_ENV = "EMQX_RELEASE_DIR"
RELEASE_VERSION = "5.8.6"
RELEASE_FILES: tuple[str, ...] = ("Dockerfile", "docker-entrypoint.sh", "SHA256SUMS")


def release_dir() -> Path:
    """The folder of the real EMQX release; a clear error naming it when it is missing."""
    path = Path(os.environ.get(RELEASE_DIR_ENV) or REPO.parent / "shared" / "emqx")
    missing = [name for name in (*RELEASE_FILES, release_tarball_name()) if not (path / name).is_file()]
    if missing:
        raise RuntimeError(
            f"the real EMQX release is missing from {path} ({', '.join(missing)}): the e2e tier runs "
            f"EMQX {RELEASE_VERSION} built from source from ../shared/emqx (set ${RELEASE_DIR_ENV} to another copy)"
        )
    return path


def release_tarball_name() -> str:
    return f"emqx-{RELEASE_VERSION}-x86_64-otp26.tar.xz"


@dataclass(frozen=True)
class E2eImages:
    """Tags built into the host's engine."""

    base: str
    nginx: str
    emqx: dict[str, str]  # version -> tag, e.g. "5.8.6" -> "emqx/emqx:5.8.6"
    prometheus: str
    build_seconds: dict[str, float] = field(default_factory=dict, compare=False)

    def emqx_image(self, version: str) -> str:
        return self.emqx[version]


def _hash_tree(paths: Iterable[Path], extra: Sequence[str]) -> str:
    digest = hashlib.sha256("\0".join(extra).encode())
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts:
                continue
            digest.update(str(path.relative_to(root.parent)).encode() + b"\0")
            digest.update(path.read_bytes())
            digest.update(str(path.stat().st_mode & 0o111).encode())
    return digest.hexdigest()[:16]


def _label(host: E2eHost, tag: str) -> str | None:
    proc = host.docker(
        "image", "inspect", "--format", f'{{{{index .Config.Labels "{CONTEXT_LABEL}"}}}}', tag, check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _build(host: E2eHost, context: Path, tag: str, key: str, build_args: dict[str, str]) -> None:
    argv = ["build", "--quiet", "--network", "none", "--tag", tag, "--label", f"{CONTEXT_LABEL}={key}"]
    for name, value in build_args.items():
        argv += ["--build-arg", f"{name}={value}"]
    proc = subprocess.run(
        [*host.docker_argv(*argv), str(context)],
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"docker build {tag} failed:\n{proc.stdout}\n{proc.stderr}")


def ensure_base(host: E2eHost) -> str:
    tarball = built_rootfs()
    tag = f"{BASE_REPOSITORY}:{tarball.stem.removeprefix('rootfs-')}"  # e.g. bookworm-<hash>
    if _label(host, tag) is None:
        host.docker("import", "--change", f"LABEL {CONTEXT_LABEL}={tarball.name}", str(tarball), tag, timeout=600)
    return tag


def emqx_key(base: str) -> str:
    """The real EMQX image's key: its Dockerfile, entrypoint and the release's checksum (the
    tarball is checked against SHA256SUMS before every build)."""
    return _hash_tree([release_dir() / name for name in RELEASE_FILES], [base])


def _verified_release(directory: Path) -> None:
    done = subprocess.run(
        ["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=directory, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the EMQX release in {directory} does not match its SHA256SUMS: {done.stdout}{done.stderr}")


def ensure_images(
    host: E2eHost,
    emqx_versions: Sequence[str] = DEFAULT_EMQX_VERSIONS,
    nginx_version: str = DEFAULT_NGINX_VERSION,
    emqx_repository: str = DEFAULT_EMQX_REPOSITORY,
) -> E2eImages:
    """Build (or reuse) the images in `host`'s engine; returns their tags."""
    seconds: dict[str, float] = {}
    started = time.monotonic()
    base = ensure_base(host)
    seconds["base"] = time.monotonic() - started

    nginx_tag = f"nginx:{nginx_version}"
    key = _hash_tree([IMAGES_DIR / "nginx"], [base])
    if _label(host, nginx_tag) != key:
        started = time.monotonic()
        _build(host, IMAGES_DIR / "nginx", nginx_tag, key, {"BASE_IMAGE": base})
        seconds["nginx"] = time.monotonic() - started

    with tempfile.TemporaryDirectory(prefix="prometheus-context-") as tmp:
        context = Path(tmp) / "prometheus"
        shutil.copytree(IMAGES_DIR / "prometheus", context)
        shutil.copy2(PROMETHEUS_BINARY, context / "prometheus")
        key = _hash_tree([context], [base])
        if _label(host, DEFAULT_PROMETHEUS_IMAGE) != key:
            started = time.monotonic()
            _build(host, context, DEFAULT_PROMETHEUS_IMAGE, key, {"BASE_IMAGE": base})
            seconds["prometheus"] = time.monotonic() - started

    emqx: dict[str, str] = {}
    real_tag = f"{emqx_repository}:{RELEASE_VERSION}"
    key = emqx_key(base)
    if _label(host, real_tag) != key:
        started = time.monotonic()
        directory = release_dir()
        _verified_release(directory)
        _build(host, directory, real_tag, key, {"BASE_IMAGE": base})
        seconds[f"emqx {RELEASE_VERSION}"] = time.monotonic() - started
    for version in emqx_versions:
        tag = f"{emqx_repository}:{version}"
        if version != RELEASE_VERSION:
            next_key = _hash_tree([IMAGES_DIR / "emqx-next"], [key, version])
            if _label(host, tag) != next_key:
                started = time.monotonic()
                _build(host, IMAGES_DIR / "emqx-next", tag, next_key, {"EMQX_IMAGE": real_tag, "TAG": version})
                seconds[f"emqx {version}"] = time.monotonic() - started
        emqx[version] = tag
    return E2eImages(base=base, nginx=nginx_tag, emqx=emqx, prometheus=DEFAULT_PROMETHEUS_IMAGE, build_seconds=seconds)
