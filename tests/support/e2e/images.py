"""Stand-in images built into an e2e host's dockerd, with no registry.

- base: the cached debootstrap rootfs (tests/support/e2e/rootfs.py), `docker import`-ed;
- `nginx:<nginxVersion>`: Debian nginx + stream module, tagged as the stack references the
  official image (images/nginx/Dockerfile);
- `emqx/emqx:<version>` for each version: the EMQX stand-in (images/emqx/Dockerfile,
  emqx_standin.py + helper files copied in at build time);
- `prom/prometheus:<prometheusVersion>`: Debian's prometheus binary, the machine's
  (images/prometheus/Dockerfile).

Builds use the classic builder (`DOCKER_BUILDKIT=0`), which builds FROM a local image offline;
the Dockerfiles only COPY (no RUN: the host's engine has no bridge network). Every image is
labelled with a hash of its context and base, so an unchanged image is not rebuilt when the
data root is kept between runs.
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

from components.config import MetricsConfig
from tests.support.e2e.host import E2eHost
from tests.support.e2e.rootfs import ensure_rootfs

REPO = Path(__file__).resolve().parents[3]
IMAGES_DIR = Path(__file__).parent / "images"
CONTEXT_LABEL = "io.emqx-cluster.e2e.context"
BASE_REPOSITORY = "emqx-cluster-e2e/base"
DEFAULT_EMQX_VERSIONS: tuple[str, ...] = ("5.8.6", "5.8.7")
DEFAULT_NGINX_VERSION = "1.27"
DEFAULT_EMQX_REPOSITORY = "emqx/emqx"
DEFAULT_PROMETHEUS_IMAGE = MetricsConfig.model_validate({}).image
# Debian's prometheus (scripts/install-test-deps installs it on the machine).
PROMETHEUS_BINARY = Path("/usr/bin/prometheus")

# Files of this repository copied into the EMQX stand-in, at the same package paths, so the
# daemon imports them exactly as the tests do (PYTHONPATH=/opt/emqx/standin in the image).
STANDIN_SOURCES: tuple[str, ...] = (
    "tests/support/e2e/emqx_standin.py",
    "tests/support/emqx/emqx58.py",
    "tests/support/emqx/proxy_shim.py",
    "tests/support/emqx/emqx58_access.py",
    "tests/support/emqx/mqtt_gate.py",
)
STANDIN_PACKAGES: tuple[str, ...] = (
    "tests",
    "tests/support",
    "tests/support/e2e",
    "tests/support/emqx",
)


@dataclass(frozen=True)
class StandInImages:
    """Tags built into the host's engine."""

    base: str
    nginx: str
    emqx: dict[str, str]  # version -> tag, e.g. "5.8.6" -> "emqx/emqx:5.8.6"
    prometheus: str
    build_seconds: dict[str, float] = field(default_factory=dict, compare=False)

    def emqx_image(self, version: str) -> str:
        return self.emqx[version]


def vendored_python() -> list[Path]:
    """The installed pure-Python `proxy-protocol` package and its one dependency, for the shim."""
    import proxyprotocol  # the test venv has both (requirements-dev.txt)
    import typing_extensions

    return [Path(proxyprotocol.__file__).parent, Path(typing_extensions.__file__)]


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
    argv = ["build", "--quiet", "--tag", tag, "--label", f"{CONTEXT_LABEL}={key}"]
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
    tarball = ensure_rootfs()
    tag = f"{BASE_REPOSITORY}:{tarball.stem.removeprefix('rootfs-')}"  # e.g. bookworm-<hash>
    if _label(host, tag) is None:
        host.docker("import", "--change", f"LABEL {CONTEXT_LABEL}={tarball.name}", str(tarball), tag, timeout=600)
    return tag


def emqx_context(directory: Path) -> Path:
    """Assemble the EMQX stand-in's build context in `directory` (returned)."""
    context = directory / "emqx"
    shutil.copytree(IMAGES_DIR / "emqx", context)
    standin = context / "standin"
    standin.mkdir()
    for package in STANDIN_PACKAGES:
        (standin / package).mkdir(parents=True, exist_ok=True)
        (standin / package / "__init__.py").write_text("")
    for source in STANDIN_SOURCES:
        path = REPO / source
        if not path.exists():
            raise RuntimeError(f"{source} is missing: the EMQX stand-in needs it")
        shutil.copy2(path, standin / source)
    for path in vendored_python():
        if path.is_dir():
            shutil.copytree(path, standin / path.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, standin / path.name)
    return context


def ensure_images(
    host: E2eHost,
    emqx_versions: Sequence[str] = DEFAULT_EMQX_VERSIONS,
    nginx_version: str = DEFAULT_NGINX_VERSION,
    emqx_repository: str = DEFAULT_EMQX_REPOSITORY,
) -> StandInImages:
    """Build (or reuse) the stand-in images in `host`'s engine; returns their tags."""
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

    with tempfile.TemporaryDirectory(prefix="prometheus-standin-context-") as tmp:
        context = Path(tmp) / "prometheus"
        shutil.copytree(IMAGES_DIR / "prometheus", context)
        shutil.copy2(PROMETHEUS_BINARY, context / "prometheus")
        key = _hash_tree([context], [base])
        if _label(host, DEFAULT_PROMETHEUS_IMAGE) != key:
            started = time.monotonic()
            _build(host, context, DEFAULT_PROMETHEUS_IMAGE, key, {"BASE_IMAGE": base})
            seconds["prometheus"] = time.monotonic() - started

    emqx: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="emqx-standin-context-") as tmp:
        context = emqx_context(Path(tmp))
        for version in emqx_versions:
            tag = f"{emqx_repository}:{version}"
            key = _hash_tree([context], [base, version])
            if _label(host, tag) != key:
                started = time.monotonic()
                _build(host, context, tag, key, {"BASE_IMAGE": base, "EMQX_VERSION": version})
                seconds[f"emqx {version}"] = time.monotonic() - started
            emqx[version] = tag
    return StandInImages(
        base=base, nginx=nginx_tag, emqx=emqx, prometheus=DEFAULT_PROMETHEUS_IMAGE, build_seconds=seconds
    )
