"""A `docker` for the program's host scripts in front of REAL EMQX nodes run without Docker.

Only Docker is stood in for, never EMQX: each "container" is a node of tests/support/emqx_nodes.py
(a copy of the release with its own data/ and log/), and `docker exec <container> <command>` runs
the command in that node's copy, as its user, with its environment, the container's paths
(/opt/emqx/...) mapped onto the copy, as Docker runs a command in the container. What the
scripts use:

- `exec [-i] [-e K=V] <container> /opt/emqx/bin/emqx ...` (and any other command, e.g. curl);
- `inspect [--type container] --format '{{.State.Running}}'|'{{.State.Status}}' <container>`;
- `ps [--all] [--quiet] [--filter name=...|label=...|status=...] [--format '{{.Names}}']`.

A container is running while its node's process lives. Docker's own answers where no node can
give one: `Error response from daemon: No such container: <name>` and `Error response from
daemon: container <id> is not running` (moby daemon/exec.go, errNotRunning), exit 1. A global
`-H <engine>` is accepted and ignored (ops/ passes it).

Stdlib only; run as `python emqx_docker.py <state.json> <docker arguments>` by the `docker`
wrapper emqx_nodes writes; the state file is emqx_nodes' (containers, their roots, users,
environments and node PIDs).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

CONTAINER_HOME = "/opt/emqx"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_EXEC_VALUE_OPTIONS = {"-e", "--env", "-u", "--user", "-w", "--workdir", "--env-file", "--detach-keys"}


def load(state_path: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(state_path.read_text())
    return state


def running(container: Mapping[str, Any]) -> bool:
    """Whether the node's process lives (a zombie not yet reaped by its parent does not)."""
    pid = container.get("pid")
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def mapped(argument: str, root: str) -> str:
    """A container path under /opt/emqx as the same path in the node's copy."""
    if argument == CONTAINER_HOME or argument.startswith(CONTAINER_HOME + "/"):
        return root + argument[len(CONTAINER_HOME) :]
    return argument


def process_env(container: Mapping[str, Any], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a process in the container sees: the image's basics, the container's environment,
    `docker exec -e` on top."""
    return {
        "PATH": SYSTEM_PATH,
        "HOME": str(container["root"]),
        "LANG": "C.UTF-8",
        **container["env"],
        **(extra or {}),
    }


def exec_in(container: Mapping[str, Any], argv: Sequence[str], extra_env: Mapping[str, str]) -> int:
    """Run `argv` in the container's node copy, as its user, standard input passed through."""
    root = str(container["root"])
    done = subprocess.run(
        [mapped(argument, root) for argument in argv],
        cwd=root,  # the image's WORKDIR /opt/emqx
        env=process_env(container, extra_env),
        user=int(container["uid"]),
        group=int(container["gid"]),
        extra_groups=[],
        capture_output=True,
        text=True,
        check=False,
    )
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode


def split_exec(args: list[str]) -> tuple[dict[str, str], str | None, list[str]]:
    env: dict[str, str] = {}
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        option = args[i]
        if option in ("-e", "--env") and i + 1 < len(args):
            key, _, value = args[i + 1].partition("=")
            env[key] = value
            i += 2
        elif option.startswith("--env="):
            key, _, value = option.split("=", 1)[1].partition("=")
            env[key] = value
            i += 1
        elif option in _EXEC_VALUE_OPTIONS:
            i += 2
        else:
            i += 1  # -i, -t, -it, -d
    if i < len(args) and args[i] == "--":
        i += 1
    if i >= len(args):
        return env, None, []
    return env, args[i], args[i + 1 :]


def _no_such(name: str, prefix: str = "Error response from daemon: ") -> int:
    sys.stderr.write(f"{prefix}No such container: {name}\n")
    return 1


def cmd_exec(state: Mapping[str, Any], args: list[str]) -> int:
    env, name, argv = split_exec(args)
    if name is None or not argv:
        sys.stderr.write('"docker exec" requires at least 2 arguments.\n')
        return 1
    container = state["containers"].get(name)
    if container is None:
        return _no_such(name)
    if not running(container):
        sys.stderr.write(f"Error response from daemon: container {container['id']} is not running\n")
        return 1
    return exec_in(container, argv, env)


def _option_values(args: list[str], names: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(values of the options `names`, the other arguments)."""
    values: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        argument = args[i]
        option, equals, value = argument.partition("=")
        if option in names and equals:
            values.append(value)
            i += 1
        elif argument in names and i + 1 < len(args):
            values.append(args[i + 1])
            i += 2
        else:
            rest.append(argument)
            i += 1
    return values, rest


def _state_word(container: Mapping[str, Any]) -> str:
    return "running" if running(container) else "exited"


def cmd_inspect(state: Mapping[str, Any], args: list[str]) -> int:
    formats, rest = _option_values(args, ("--format", "-f"))
    _, names = _option_values(rest, ("--type",))
    fields: dict[str, Callable[[Mapping[str, Any]], str]] = {
        "{{.State.Running}}": lambda c: str(running(c)).lower(),
        "{{.State.Status}}": _state_word,
        "{{.Id}}": lambda c: str(c["id"]),
        "{{.Name}}": lambda c: "/" + str(c["name"]),
    }
    status = 0
    for name in names:
        container = state["containers"].get(name)
        if container is None:
            status = _no_such(name, "Error: ")
            continue
        template = formats[-1] if formats else "{{.Id}}"
        if template not in fields:
            sys.stderr.write(f"emqx_docker: inspect format {template!r} is not emulated\n")
            return 2
        print(fields[template](container))
    return status


def cmd_ps(state: Mapping[str, Any], args: list[str]) -> int:
    filters, rest = _option_values(args, ("--filter", "-f"))
    formats, rest = _option_values(rest, ("--format",))
    show_all = bool({"-a", "--all", "-aq", "-qa"} & set(rest))
    quiet = bool({"-q", "--quiet", "-aq", "-qa"} & set(rest))
    rows = []
    for name, container in sorted(state["containers"].items()):
        word = _state_word(container)
        if not show_all and word != "running" and not any(f.startswith("status=") for f in filters):
            continue
        keep = True
        for spec in filters:
            key, _, value = spec.partition("=")
            if key == "name":
                keep &= re.search(value, name) is not None
            elif key == "label":
                keep &= value in container.get("labels", [])
            elif key == "status":
                keep &= value == word
        if keep:
            rows.append((name, container))
    for name, container in rows:
        if quiet:
            print(str(container["id"])[:12])
        elif formats:
            print(formats[-1].replace("{{.Names}}", name).replace("{{.ID}}", str(container["id"])[:12]))
        else:
            print(f"{str(container['id'])[:12]}   {name}   {_state_word(container)}")
    return 0


def main(argv: Sequence[str]) -> int:
    """Answer one `docker` command line; with the state's `log`, append what it did there (one
    JSON line: argv, monotonic start and end, exit code, output) for the tests to read."""
    state_path, *args = argv
    state = load(Path(state_path))
    log = state.get("log")
    if not log:
        return dispatch(state, args)
    started = time.monotonic()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = dispatch(state, args)
    sys.stdout.write(out.getvalue())
    sys.stderr.write(err.getvalue())
    record = {
        "argv": args,
        "start": started,
        "end": time.monotonic(),
        "rc": code,
        "stdout": out.getvalue(),
        "stderr": err.getvalue(),
    }
    with open(log, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps(record) + "\n")
    return code


def dispatch(state: Mapping[str, Any], args: list[str]) -> int:
    while args and args[0] in ("-H", "--host", "--context"):
        args = args[2:]
    while args and args[0].startswith(("-H=", "--host=", "--context=")):
        args = args[1:]
    command, rest = (args[0], args[1:]) if args else ("", [])
    if command == "container" and rest:
        command, rest = rest[0], rest[1:]
    if command == "exec":
        return cmd_exec(state, rest)
    if command == "inspect":
        return cmd_inspect(state, rest)
    if command in ("ps", "ls"):
        return cmd_ps(state, rest)
    sys.stderr.write(f"emqx_docker: `docker {' '.join(args)}` is not emulated (real EMQX nodes, no Docker)\n")
    return 2


if __name__ == "__main__":
    sys.dont_write_bytecode = True
    sys.exit(main(sys.argv[1:]))
