"""The native load generator (tools/loadgen, Go): built from the Go module proxy into a versioned
cache outside the repository, like the e2e toolchain, and run with a JSON report.

The cache key covers every file of tools/loadgen (go.mod and go.sum pin the modules), so an
edited generator is built anew beside the old one; building is idempotent and atomic.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().parents[2] / "tools" / "loadgen"


def cache_dir() -> Path:
    root = Path(os.environ.get("EMQX_E2E_CACHE", Path.home() / ".cache" / "emqx-cluster-e2e"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def loadgen_binary() -> Path:
    """The built generator, building it first (`go build`, modules from the proxy) if needed."""
    digest = hashlib.sha256()
    for path in sorted(SOURCE.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    target = cache_dir() / f"loadgen-{digest.hexdigest()[:12]}" / "emqx-loadgen"
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
            capture_output=True,
            timeout=600,
        )
        partial.rename(target)
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
