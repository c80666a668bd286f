"""The npm cache the TypeScript example installs from with no network (examples/typescript).

Filled before any test runs (`scripts/install-test-deps` calls `python -m tests.support.npm_cache`):
the e2e tests run `pulumi package add` and the program with `npm_config_offline=true` against
this cache and a registry address that answers nothing, so a test never fetches. The cache key
covers the example's package.json and package-lock.json and the dependencies of the SDK that
`pulumi package add` generates, so a changed pin fills a new cache beside the old one; filling
is idempotent and atomic (a temporary directory renamed into place once an offline install from
it has worked).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.loadgen import BUILD_COMMAND, cache_dir

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "typescript"
SDK_NAME = "@pulumi/emqx-cluster"
# The generated SDK's package.json asks for these (pulumi pkg/v3 codegen/nodejs gen.go at
# v3.274.1: MinimumValidSDKVersion, MinimumTypescriptVersion, MinimumNodeTypesVersion); npm
# resolves them when `pulumi package add` installs the SDK as `file:sdks/emqx-cluster`.
SDK_DEPENDENCIES = {"@pulumi/pulumi": "^3.269.0", "@types/node": "^20", "typescript": "^4.7.0"}
# A registry address that refuses connections: an install that needs anything not cached fails.
NO_REGISTRY = "http://127.0.0.1:9"


def npm_cache_path() -> Path:
    """Where the cache for the current pins lives (filled or not)."""
    digest = hashlib.sha256(json.dumps(SDK_DEPENDENCIES, sort_keys=True).encode())
    for name in ("package.json", "package-lock.json"):
        digest.update(name.encode() + b"\0" + (EXAMPLE / name).read_bytes())
    return cache_dir() / f"npm-{digest.hexdigest()[:12]}"


def offline_env(cache: Path) -> dict[str, str]:
    """npm's settings (environment) for installing from `cache` only, never from a registry."""
    return {"npm_config_cache": str(cache), "npm_config_offline": "true", "npm_config_registry": NO_REGISTRY}


def _install_example(project: Path, env: dict[str, str]) -> None:
    """`npm install` in a copy of the example with a stand-in of the generated SDK added as
    `pulumi package add` adds it (a `file:` dependency): its dependencies, no code."""
    project.mkdir()
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(EXAMPLE / name, project / name)
    sdk = project / "sdks" / "emqx-cluster"
    sdk.mkdir(parents=True)
    (sdk / "package.json").write_text(
        json.dumps({"name": SDK_NAME, "version": "0.0.0", "dependencies": SDK_DEPENDENCIES}, indent=2)
    )
    subprocess.run(
        ["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", f"{SDK_NAME}@file:sdks/emqx-cluster"],
        cwd=project,
        env={**os.environ, **env},
        check=True,
        timeout=900,
        stdout=subprocess.DEVNULL,
    )


def fill_npm_cache() -> Path:
    """Fill the cache from the registry unless it is there; its path."""
    target = npm_cache_path()
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as work:
        cache = Path(work) / "cache"
        _install_example(Path(work) / "online", {"npm_config_cache": str(cache)})
        # The proof the cache suffices: the same install again, offline, with no registry.
        _install_example(Path(work) / "offline", offline_env(cache))
        cache.rename(target)
    return target


def npm_cache() -> Path:
    """The filled cache; a clear error naming the command that fills it when it is missing."""
    target = npm_cache_path()
    if not target.exists():
        raise RuntimeError(f"the npm cache of examples/typescript is not filled ({target}): run {BUILD_COMMAND}")
    return target


if __name__ == "__main__":
    print(fill_npm_cache())
