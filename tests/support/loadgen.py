"""The native load generator (tools/loadgen, Go): built from the Go module proxy into a versioned
cache outside the repository, like the e2e toolchain, and run with a JSON report.

Built before any test runs (`scripts/install-test-deps` calls `python -m tests.support.loadgen`):
the tests that use it run inside network namespaces, where the module proxy is unreachable, so a
test never builds it; it fails at once naming the command instead. The cache key covers every
file of tools/loadgen (go.mod and go.sum pin the modules), so an edited generator is built anew
beside the old one; building is idempotent and atomic.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().parents[2] / "tools" / "loadgen"
BUILD_COMMAND = "scripts/install-test-deps"


def cache_dir() -> Path:
    root = Path(os.environ.get("EMQX_E2E_CACHE", Path.home() / ".cache" / "emqx-cluster-e2e"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def loadgen_path() -> Path:
    """Where the generator of the current sources is cached (built or not)."""
    digest = hashlib.sha256()
    for path in sorted(SOURCE.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return cache_dir() / f"loadgen-{digest.hexdigest()[:12]}" / "emqx-loadgen"


def build_loadgen() -> Path:
    """Build the generator (`go build`, modules from the proxy) unless it is cached; its path."""
    target = loadgen_path()
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        partial = Path(work) / "emqx-loadgen"
        subprocess.run(
            ["go", "build", "-mod=readonly", "-o", str(partial), "."],
            cwd=SOURCE,
            env={**os.environ, "CGO_ENABLED": "0"},
            check=True,
            timeout=600,
        )
        partial.rename(target)
    return target


def loadgen_binary() -> Path:
    """The built generator; a clear error naming the command that builds it when it is missing."""
    target = loadgen_path()
    if not target.exists():
        raise RuntimeError(f"the load generator is not built ({target}): run {BUILD_COMMAND}")
    return target


def run_loadgen(
    args: Sequence[str], timeout: float = 300, between_rounds: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Run the generator with `args`; its JSON report. With `between_rounds` (and `-rounds`) it
    pauses once every client has connected and dropped, runs it, then the clients come back."""
    command = [str(loadgen_binary()), *args, *(["-pause"] if between_rounds else [])]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as generator:
        assert generator.stdin is not None and generator.stdout is not None and generator.stderr is not None
        try:
            if between_rounds is not None:
                for line in generator.stderr:
                    if not line.startswith("round "):
                        break
                    between_rounds()
                    generator.stdin.write("\n")
                    generator.stdin.flush()
            stdout, stderr = generator.communicate(timeout=timeout)
        finally:
            generator.kill()
    if generator.returncode != 0:
        raise RuntimeError(f"emqx-loadgen exited {generator.returncode}: {stderr[-2000:]}")
    report: dict[str, Any] = json.loads(stdout)
    return report


if __name__ == "__main__":
    print(build_loadgen())
    sys.exit(0)
