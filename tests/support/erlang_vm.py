"""Real Erlang VMs (Debian's erlang-base) for the integration tier: start, talk to, stop.

- `ErlangProcesses` starts VMs (or escripts) with their output in a log file and stops every
  one of them by its own PID; `ErlangProcess.wait_for_line` reads the log.
- A VM started with `-eval AGENT_EVAL` and `stdin=True` evaluates the Erlang expressions the
  test sends it (`ErlangProcess.evaluate`), so one VM can be asked several things in turn.
- `private_epmd` runs an epmd of the test's own on a free port of chosen loopback addresses:
  VMs find it through ERL_EPMD_PORT (`erl_environment`) and run with `-start_epmd false`, so
  none spawns a daemon of its own and nothing clashes with or leaks into a host epmd on 4369.
- `tcp_listeners` tells which local addresses listen on a port (/proc/net/tcp{,6}).

Used by tests/integration/test_erlang_dist_bind.py and test_erlang_dist_tls.py.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

import pytest

from tests.support.ports import free_port, wait_for_port
from tests.support.processes import run_captured, stop_process

ERL = shutil.which("erl")
EPMD = shutil.which("epmd")
ESCRIPT = shutil.which("escript")

START_TIMEOUT = 30.0
STOP_GRACE = 15.0

# Taken out of the environment the VMs inherit: each test sets exactly the flags it is about.
ERL_ENV_FLAGS = ("ERL_AFLAGS", "ERL_FLAGS", "ERL_ZFLAGS")

# Reads `{Tag, Expression}.` terms from stdin, evaluates each and prints `reply {Tag,Value}` on
# one line (~w: no line breaks); an expression that raises prints `agent-error ...` instead.
# Spawned, so that boot completes (init's -eval would otherwise never return); it ends at EOF.
AGENT_EVAL = r"""
spawn(fun() ->
    Loop = fun Loop() ->
        case io:parse_erl_exprs('') of
            {ok, Exprs, _} ->
                try erl_eval:exprs(Exprs, []) of
                    {value, Value, _} -> io:format("reply ~w~n", [Value])
                catch Class:Reason -> io:format("agent-error ~w:~w~n", [Class, Reason])
                end,
                Loop();
            {eof, _} -> ok;
            Other -> io:format("agent-error ~w~n", [Other]), Loop()
        end
    end,
    Loop()
end),
io:format("agent-ready ~s~n", [node()]).
"""
AGENT_READY = r"^agent-ready "


def missing_executables(*names: str) -> list[str]:
    """Which of `names` (erl, epmd, escript) are not on PATH."""
    known = {"erl": ERL, "epmd": EPMD, "escript": ESCRIPT}
    return [name for name in names if known.get(name, shutil.which(name)) is None]


def missing_applications(*applications: str) -> str | None:
    """Why `applications` cannot be started on this Erlang (None: they all start)."""
    if ERL is None:
        return "erl not found"
    expression = f"[application:ensure_all_started(A) || A <- [{', '.join(applications)}]]"
    result = run_captured(
        [ERL, "-noshell", "-eval", f'io:format("~w~n", [{expression}]), halt().'], timeout=START_TIMEOUT
    )
    output = result.stdout + result.stderr
    return None if re.fullmatch(r"\[(\{ok,\[[^\]]*\]\},?)+\]\s*", output) else output.strip()


def tcp_listeners(port: int) -> set[str]:
    """Local addresses with a TCP socket in LISTEN state on `port` (/proc/net/tcp and tcp6)."""
    found: set[str] = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
        for line in lines:
            fields = line.split()
            address_hex, port_hex = fields[1].split(":")
            if fields[3] != "0A" or int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(address_hex)
            # The kernel prints each 32-bit word of the address in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, words))
    return found


def free_dist_port() -> int:
    """A port free on every address, so a VM without inet_dist_use_interface can bind it too."""
    return free_port("0.0.0.0")


def erl_environment(epmd_port: int, home: Path, **flags: str) -> dict[str, str]:
    """This process's environment without any ERL_*FLAGS, pointed at the private epmd."""
    env = {key: value for key, value in os.environ.items() if key not in ERL_ENV_FLAGS}
    env.update(
        ERL_EPMD_PORT=str(epmd_port),
        HOME=str(home),  # a VM started without -setcookie would write $HOME/.erlang.cookie
        ERL_CRASH_DUMP_SECONDS="0",  # a VM that fails to boot writes no erl_crash.dump
    )
    env.update(flags)
    return env


@dataclass
class ErlangProcess:
    """A VM (or escript) started by a test; its stdout and stderr go to `log`."""

    process: subprocess.Popen[bytes]
    log: Path
    _tags: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_line(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """The first line matching `pattern`; fails with the log if the VM exits or times out."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.output(), re.MULTILINE)
            if match:
                return match
            if self.process.poll() is not None:
                pytest.fail(f"VM exited ({self.process.returncode}) before /{pattern}/:\n{self.output()}")
            if time.monotonic() >= deadline:
                pytest.fail(f"no /{pattern}/ after {timeout}s:\n{self.output()}")
            time.sleep(0.02)

    def evaluate(self, expression: str, timeout: float = START_TIMEOUT) -> str:
        """The value of an Erlang `expression` in this VM (started with AGENT_EVAL), as ~w prints it."""
        assert self.process.stdin is not None, "started without stdin=True"
        tag = next(self._tags)
        self.process.stdin.write(f"{{{tag}, begin {expression} end}}.\n".encode())
        self.process.stdin.flush()
        match = self.wait_for_line(rf"^(?:reply \{{{tag},(.*)\}}|agent-error .*)$", timeout)
        if match.group(1) is None:
            pytest.fail(f"`{expression}` raised: {match.group(0)}\n{self.output()}")
        return match.group(1)

    def stop(self) -> None:
        stop_process(self.process, grace=STOP_GRACE, kill_grace=5)  # SIGTERM = init:stop() in the VM
        if self.process.stdin is not None:
            self.process.stdin.close()


class ErlangProcessFactory(Protocol):
    def __call__(self, argv: list[str], env: dict[str, str], name: str) -> ErlangProcess: ...


class ErlangProcesses:
    """Starts Erlang processes with their logs in `directory`; stops every one of them on exit."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[ErlangProcess] = []

    def start(self, argv: list[str], env: dict[str, str], name: str, *, stdin: bool = False) -> ErlangProcess:
        log = self.directory / f"{name}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                argv,
                env=env,
                cwd=self.directory,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self.started.append(ErlangProcess(process, log))
        return self.started[-1]

    def stop_all(self) -> None:
        """SIGTERM to all at once (a VM running ssl takes about a second to stop), then `stop` each."""
        running = [erlang.process for erlang in self.started if erlang.process.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for process in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.0, deadline - time.monotonic()))
        for erlang in reversed(self.started):
            erlang.stop()  # SIGKILL for what is still running; closes stdin

    def __enter__(self) -> ErlangProcesses:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop_all()


@contextlib.contextmanager
def private_epmd(directory: Path, addresses: Sequence[str]) -> Iterator[int]:
    """An epmd of our own (foreground, so it is ours to stop) on a free port of `addresses`.

    epmd adds the loopback 127.0.0.1 itself (where every VM registers); a node named
    `n@127.0.0.2` is looked up at 127.0.0.2, so list the address of every node name.
    """
    assert EPMD is not None
    port = free_port("0.0.0.0")
    log = directory / "epmd.log"
    with log.open("wb") as sink:
        epmd = subprocess.Popen(
            [EPMD, "-port", str(port), "-address", ",".join(addresses)],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        for address in addresses:
            try:
                wait_for_port(address, port, timeout=10)
            except TimeoutError:
                pytest.fail(f"epmd did not listen on {address}:{port}:\n{log.read_text()}")
        yield port
    finally:
        stop_process(epmd, grace=10, kill_grace=5)
