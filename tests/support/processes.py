"""Running a command for its output, and stopping a process the tests started by its own PID (never by name)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from contextlib import suppress


def run_captured(
    argv: Sequence[str], *, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `argv` with text output captured and `input` (else no stdin); never raises on exit code."""
    return subprocess.run(
        list(argv),
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stop_process(
    process: subprocess.Popen[bytes],
    first: signal.Signals = signal.SIGTERM,
    grace: float = 5.0,
    *,
    kill_grace: float | None = None,
    group: bool = False,
) -> None:
    """Signal `first`, wait `grace` s, then SIGKILL and wait `kill_grace` s (default `grace`).

    `group`: then sweep the process group it leads (started with start_new_session=True, so the
    group id is its PID and holds only its children, e.g. nginx's workers).
    """
    if process.poll() is None:
        try:
            process.send_signal(first)
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace if kill_grace is None else kill_grace)
        except ProcessLookupError:
            pass
    if group:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
