"""A fake `docker` CLI whose containers are EMQX nodes reduced to their cluster membership: the
model kept for the tests a real broker would make too slow (tests/integration/test_rollout_order.py
walks whole stacks of 5 nodes through upgrades and failures, tests/integration/test_preflight.py
needs an engine that answers or not). Everything EMQX itself decides is tested on the real
release (tests/support/emqx_nodes.py); test_cluster_formation.py checks that this fake answers
the `emqx ctl` commands the program's scripts read with the texts real EMQX 5.8.6 prints.

The `bin/docker` script next to this module is a thin shim over `main()` below; all state
(containers, cluster membership, scenario knobs and a log of every invocation) lives in one JSON
file named by the FAKE_DOCKER_STATE environment variable, so the script under test, run as a
subprocess, and the test itself see the same world. Stdlib only: the shim runs under the system
python3.

What it answers, as EMQX 5.8.6 and Docker do:
- `exec <c> /opt/emqx/bin/emqx ctl status | cluster join|leave|force-leave|status --json`: the
  texts of emqx_mgmt_cli.erl:66-147, exit 0 (status:
  "Node '<node>' 5.8.6 is started"; join: "Join the cluster successfully.", "Failed to join the
  cluster: {node_down,'<seed>'}" / "{already_in_cluster,'<seed>'}", "Ignore." for itself; leave:
  "Leave the cluster successfully.", "Failed to leave the cluster: node_not_in_cluster" when no
  other member runs; force-leave: "Remove the node from cluster successfully.", "Failed to
  remove the node from cluster: node_not_in_cluster"; `--json`: jiffy's pretty print,
  stopped_nodes first); with the knob `emqx_running` false, bin/emqx's "Node '<node>' not
  responding to pings." on stderr, exit 1;
- `exec -i <c> curl --silent --show-error --config -`: the program's REST calls, answered as the
  node's API does (import_users: 200 with the counts, an existing user overridden; DELETE user:
  204, 404 when there is none; PUT the file source's rules: 204), behind the API key of the
  node's access files (401 BAD_API_KEY_OR_SECRET otherwise);
- `ps`, `info`, `start`, `stop`; "Error response from daemon: No such container: <c>" and
  "container <id> is not running" (moby daemon/exec.go errNotRunning), exit 1.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_ENV = "FAKE_DOCKER_STATE"
BIN_DIR = Path(__file__).resolve().parent / "bin"
DOCKER_SCRIPT = BIN_DIR / "docker"

DEFAULT_EMQX_VERSION = "5.8.6"
FAKE_SERVER_VERSION = "27.3.1"
BROKER_DATA_DIR = "/opt/emqx/data"  # the image's node.data_dir (relative "data" under /opt/emqx)
NODE_LABEL = "io.emqx-cluster.node"  # components/names.py (this module imports nothing of the program)

# Scenario knobs settable per container, with their defaults.
KNOB_DEFAULTS: dict[str, Any] = {
    # Erlang term printed after "Failed to join the cluster: " on every join, e.g.
    # "{cannot_join_to_replicant,'emqx1@127.0.0.1'}" (a join that never succeeds); None = none.
    "join_permanent_error": None,
    # False = container up but EMQX not (yet) answering: ctl prints "not responding to pings".
    "emqx_running": True,
}

DAEMON_DOWN_TEXT = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"


# --------------------------------------------------------------------------------------------
# State file: JSON guarded by flock on a sidecar lock file, replaced atomically.
# --------------------------------------------------------------------------------------------


def empty_state() -> dict[str, Any]:
    """A world with no containers; `clusters` is a list of disjoint member lists."""
    return {"version": 2, "daemon_down": False, "containers": {}, "clusters": [], "calls": []}


@contextlib.contextmanager
def locked_state(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the state for read-modify-write under an exclusive lock; saved on clean exit
    (scripts running side by side must not lose each other's call-log entries)."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        state = json.loads(path.read_text()) if path.exists() else empty_state()
        yield state
        _atomic_write(path, json.dumps(state, indent=1, sort_keys=True))
    finally:
        os.close(fd)


def read_state(path: Path) -> dict[str, Any]:
    """A consistent snapshot of the state (shared lock)."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        return json.loads(path.read_text()) if path.exists() else empty_state()
    finally:
        os.close(fd)


def _atomic_write(path: Path, text: str) -> None:
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def container_id(name: str) -> str:
    """Stable 64-hex id, so `docker ps -q` output is predictable across runs."""
    return hashlib.sha256(f"fake-docker:{name}".encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Cluster membership (pure functions on the state dict).
# --------------------------------------------------------------------------------------------


def _cluster_index(state: Mapping[str, Any], node: str) -> int | None:
    for i, members in enumerate(state["clusters"]):
        if node in members:
            return i
    return None


def members_of(state: Mapping[str, Any], node: str) -> list[str]:
    """Sorted members of `node`'s cluster; a node never joined is a cluster of itself."""
    idx = _cluster_index(state, node)
    return sorted(state["clusters"][idx]) if idx is not None else [node]


def _detach(state: dict[str, Any], node: str) -> None:
    """Make `node` a cluster of itself again."""
    idx = _cluster_index(state, node)
    if idx is not None:
        state["clusters"][idx].remove(node)
    state["clusters"] = [c for c in state["clusters"] if c]
    state["clusters"].append([node])


def _attach(state: dict[str, Any], node: str, seed: str) -> None:
    """Move `node` into `seed`'s cluster."""
    old = _cluster_index(state, node)
    if old is not None:
        state["clusters"][old].remove(node)
        state["clusters"] = [c for c in state["clusters"] if c]
    idx = _cluster_index(state, seed)
    if idx is None:
        state["clusters"].append([seed, node])
    else:
        state["clusters"][idx].append(node)
        state["clusters"][idx].sort()


def node_is_running(state: Mapping[str, Any], node: str) -> bool:
    """Whether EMQX on `node` answers: its container is up and EMQX in it started."""
    return any(c["node"] == node and c["running"] and c["emqx_running"] for c in state["containers"].values())


def cluster_info(state: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, list[str]]:
    members = members_of(state, container["node"])
    running = [n for n in members if node_is_running(state, n)]
    return {"running_nodes": running, "stopped_nodes": [n for n in members if n not in running]}


def json_cluster_status(info: Mapping[str, list[str]]) -> str:
    """`cluster status --json` as EMQX 5.8.6 prints it (emqx_mgmt_cli.erl:145-147, jiffy's pretty
    print of the sorted map, "stopped_nodes" first; an empty list is `[` blank line `]`)."""

    def array(items: Sequence[str]) -> str:
        inner = ",\n".join(f'    "{item}"' for item in items) if items else "    "
        return f"[\n{inner}\n  ]"

    return (
        f'{{\n  "stopped_nodes" : {array(info["stopped_nodes"])},\n'
        f'  "running_nodes" : {array(info["running_nodes"])}\n}}'
    )


def erl_cluster_status(info: Mapping[str, list[str]]) -> str:
    """`Cluster status: ~p` after a join, leave or force-leave (one line here; EMQX's ~p wraps
    past 80 columns, and no script reads this line)."""
    quoted = {key: ",".join(f"'{n}'" for n in nodes) for key, nodes in info.items()}
    return f"Cluster status: #{{running_nodes => [{quoted['running_nodes']}],stopped_nodes => [{quoted['stopped_nodes']}]}}"


# --------------------------------------------------------------------------------------------
# The CLI emulation.
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    """What one fake invocation prints and returns."""

    rc: int = 0
    stdout: str = ""
    stderr: str = ""

    def out(self, line: str) -> None:
        self.stdout += line + "\n"

    def err(self, line: str) -> None:
        self.stderr += line + "\n"


def _emqx_ctl(state: dict[str, Any], c: dict[str, Any], args: list[str], res: Result) -> None:
    """`emqx ctl <args>` inside container `c` (texts: emqx_mgmt_cli.erl at v5.8.6)."""
    node = c["node"]
    if not c["emqx_running"]:
        # bin/emqx assert_node_alive: nodetool's ping fails; its message on stderr, exit 1.
        res.err(f"Node '{node}' not responding to pings.")
        res.rc = 1
        return
    match args:
        case ["status"]:
            res.out(f"Node '{node}' {c['version']} is started")
        case ["cluster", "join", seed]:
            if seed == node:
                res.out("Ignore.")
            elif c.get("join_permanent_error"):
                res.out(f"Failed to join the cluster: {c['join_permanent_error']}")
            elif not node_is_running(state, seed):
                res.out(f"Failed to join the cluster: {{node_down,'{seed}'}}")
            elif seed in members_of(state, node):
                res.out(f"Failed to join the cluster: {{already_in_cluster,'{seed}'}}")
            else:
                _attach(state, node, seed)
                res.out("Join the cluster successfully.")
                res.out(erl_cluster_status(cluster_info(state, c)))
        case ["cluster", "leave"]:
            if not [n for n in members_of(state, node) if n != node and node_is_running(state, n)]:
                res.out("Failed to leave the cluster: node_not_in_cluster")
            else:
                _detach(state, node)
                res.out("Leave the cluster successfully.")
                res.out(erl_cluster_status(cluster_info(state, c)))
        case ["cluster", "force-leave", target]:
            if target == node:
                res.out("Ignore.")
            elif target not in members_of(state, node):
                res.out("Failed to remove the node from cluster: node_not_in_cluster")
            else:
                _detach(state, target)
                res.out("Remove the node from cluster successfully.")
                res.out(erl_cluster_status(cluster_info(state, c)))
        case ["cluster", "status", "--json"]:
            res.out(json_cluster_status(cluster_info(state, c)))
        case _:
            # emqx_ctl:run_command/1: an unknown command prints the help and returns
            # {error, cmd_not_found}; nodetool rpc_infinity halts with 1 on anything but ok.
            res.out(f"fake docker: `emqx ctl {' '.join(args)}` is not emulated")
            res.rc = 1


_EXEC_VALUE_OPTS = {"-e", "--env", "--env-file", "-u", "--user", "-w", "--workdir", "--detach-keys"}


def _split_exec_args(args: list[str]) -> tuple[str | None, list[str]]:
    """Skip `docker exec` options; return (container, command argv)."""
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            break
        i += 2 if a in _EXEC_VALUE_OPTS else 1
    if i >= len(args):
        return None, []
    return args[i], args[i + 1 :]


def _lookup(state: Mapping[str, Any], ref: str) -> tuple[str, dict[str, Any]] | None:
    """Find a container by name or (prefix of) id, like the daemon does."""
    containers: dict[str, dict[str, Any]] = state["containers"]
    if ref in containers:
        return ref, containers[ref]
    for name, c in containers.items():
        if len(ref) >= 4 and c["id"].startswith(ref):
            return name, c
    return None


def _lookup_or_report(state: Mapping[str, Any], ref: str, res: Result) -> tuple[str, dict[str, Any]] | None:
    found = _lookup(state, ref)
    if found is None:
        res.err(f"Error response from daemon: No such container: {ref}")
        res.rc = 1
    return found


def _cmd_exec(state: dict[str, Any], args: list[str], res: Result) -> None:
    ref, argv = _split_exec_args(args)
    if ref is None or not argv:
        res.err('"docker exec" requires at least 2 arguments.')
        res.rc = 1
        return
    found = _lookup_or_report(state, ref, res)
    if found is None:
        return
    _, c = found
    if not c["running"]:
        res.err(f"Error response from daemon: container {c['id']} is not running")
        res.rc = 1
        return
    if os.path.basename(argv[0]) == "emqx" and argv[1:2] == ["ctl"]:
        _emqx_ctl(state, c, argv[2:], res)
    elif argv[0] == "curl" and argv[1:] == ["--silent", "--show-error", "--config", "-"]:
        _curl(state, c, sys.stdin.read(), res)
    else:
        res.err(
            "OCI runtime exec failed: exec failed: unable to start container process: "
            f'exec: "{argv[0]}": executable file not found in $PATH: unknown'
        )
        res.err("(fake docker: only `emqx ctl ...` and `curl --config -` are emulated)")
        res.rc = 127


_CURL_LINE = re.compile(r'^([a-z-]+) = "((?:[^"\\]|\\.)*)"$')
_AUTHN = "/api/v5/authentication/password_based%3Abuilt_in_database"


def _curl(state: dict[str, Any], c: dict[str, Any], config: str, res: Result) -> None:
    """The node's own curl against its REST API: the request read as curl reads `--config -`,
    the reply's last line its HTTP code (`write-out`). The users and rules are the cluster's,
    kept in the state; the API key is the node's access files'."""
    request = {
        key: re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), value)
        for key, value in (m.groups() for m in map(_CURL_LINE.match, config.splitlines()) if m)
    }
    url = urllib.parse.urlsplit(request.get("url", ""))
    bind = c["env"].get("EMQX_DASHBOARD__LISTENERS__HTTP__BIND", "18083").strip('"')
    if not c["emqx_running"] or bind.rsplit(":", 1)[-1] != str(url.port):
        res.err(f"curl: (7) Failed to connect to {url.hostname} port {url.port}: Connection refused")
        res.rc = 7
        return
    code, body = _rest(state, c, request.get("request", "GET"), url, request)
    res.stdout += f"{body}\n{code}"


def _api_keys(c: Mapping[str, Any]) -> dict[str, str]:
    """The node's bootstrap API keys, `key:secret:role` lines (emqx_mgmt_auth.erl)."""
    path = Path(c["access_dir"]) / "api-keys" if c.get("access_dir") else None
    if path is None or not path.exists():
        return {}
    return {line.split(":")[0]: line.split(":")[1] for line in path.read_text().splitlines() if line.count(":") >= 1}


def _rest(
    state: dict[str, Any], c: Mapping[str, Any], method: str, url: urllib.parse.SplitResult, request: Mapping[str, str]
) -> tuple[int, str]:
    key, _, secret = request.get("user", "").partition(":")
    if not secret or _api_keys(c).get(key) != secret:
        return 401, '{"code":"BAD_API_KEY_OR_SECRET","message":"Check api_key/api_secret"}'
    users: dict[str, Any] = {row["user_id"]: row for row in state.setdefault("authn_users", [])}
    if method == "POST" and url.path == f"{_AUTHN}/import_users":
        counts = {"total": 0, "success": 0, "failed": 0, "override": 0, "skipped": 0}
        for row in json.loads(request.get("data-binary", "[]")):
            counts["total"] += 1
            counts["override" if row["user_id"] in users else "success"] += 1  # override => true
            users[row["user_id"]] = row
        state["authn_users"] = list(users.values())
        return 200, json.dumps(counts, separators=(",", ":"))
    if method == "DELETE" and url.path.startswith(f"{_AUTHN}/users/"):
        if users.pop(url.path.rsplit("/", 1)[1], None) is None:
            return 404, '{"code":"NOT_FOUND","message":"User not found"}'
        state["authn_users"] = list(users.values())
        return 204, ""
    if method == "PUT" and url.path == "/api/v5/authorization/sources/file":
        state["authz_rules"] = str(json.loads(request.get("data-binary", "{}")).get("rules", ""))
        return 204, ""
    return 404, '{"code":"NOT_FOUND","message":"fake docker: not emulated"}'


def _ps_state(c: Mapping[str, Any]) -> str:
    return "running" if c["running"] else "exited"


def _cmd_ps(state: dict[str, Any], args: list[str], res: Result) -> None:
    show_all = quiet = False
    fmt: str | None = None
    filters: dict[str, list[str]] = {}
    it = iter(args)
    for a in it:
        if a in ("-a", "--all"):
            show_all = True
        elif a in ("-q", "--quiet"):
            quiet = True
        elif a in ("-aq", "-qa"):
            show_all = quiet = True
        elif a in ("-f", "--filter") or a.startswith("--filter="):
            spec = a.split("=", 1)[1] if a.startswith("--filter=") else next(it, "")
            key, _, value = spec.partition("=")
            filters.setdefault(key, []).append(value)
        elif a == "--format" or a.startswith("--format="):
            fmt = a.split("=", 1)[1] if a.startswith("--format=") else next(it, "")
        else:
            res.err(f"unknown flag: {a}")
            res.rc = 125
            return
    show_all = show_all or "status" in filters  # a status filter lists stopped containers too
    for name, c in sorted(state["containers"].items()):
        word = _ps_state(c)
        if (not show_all and word != "running") or ("status" in filters and word not in filters["status"]):
            continue
        if "name" in filters and not any(re.search(p, name) or re.search(p, "/" + name) for p in filters["name"]):
            continue
        if "label" in filters and not all(_labelled(c, label) for label in filters["label"]):
            continue
        if quiet:
            res.out(c["id"][:12])
        else:
            res.out((fmt or "{{.ID}} {{.Names}}").replace("{{.ID}}", c["id"][:12]).replace("{{.Names}}", name))


def _labelled(c: Mapping[str, Any], spec: str) -> bool:
    """Every container here is a broker: labelled NODE_LABEL=<its node> (broker_cluster.py)."""
    key, equals, value = spec.partition("=")
    return key == NODE_LABEL and (not equals or value == c["node"])


def _cmd_start_stop(state: dict[str, Any], verb: str, args: list[str], res: Result) -> None:
    for ref in (a for a in args if not a.startswith("-")):
        found = _lookup_or_report(state, ref, res)
        if found is None:
            continue
        if verb == "stop":
            found[1]["running"] = False
        else:
            _boot(state, found[0])
        res.out(ref)


def _cmd_info(state: dict[str, Any], args: list[str], res: Result) -> None:
    if any("DriverStatus" in a for a in args):
        # `{{json .DriverStatus}}` as Docker prints it for the classic overlay2 store, or for
        # the containerd image store (`image_store: containerd`).
        containerd = state.get("image_store") == "containerd"
        res.out(
            '[["driver-type","io.containerd.snapshotter.v1"]]'
            if containerd
            else '[["Backing Filesystem","extfs"],["Supports d_type","true"],["Using metacopy","false"]]'
        )
        return
    res.out(f"Server:\n Server Version: {FAKE_SERVER_VERSION}\n Storage Driver: overlay2")


def _boot(state: dict[str, Any], name: str) -> None:
    """Start container `name`: its node runs, in its cluster (a node never joined: alone)."""
    c = state["containers"][name]
    c["running"] = True
    if _cluster_index(state, c["node"]) is None:
        state["clusters"].append([c["node"]])


def dispatch(state: dict[str, Any], argv: list[str], res: Result) -> None:
    """Run one docker command line (argv without the program name) against `state`."""
    args = list(argv)
    if not args:
        res.out("Usage:  docker [OPTIONS] COMMAND")
        return
    if state.get("daemon_down"):
        res.err(DAEMON_DOWN_TEXT)
        res.rc = 1
        return
    cmd, rest = args[0], args[1:]
    if cmd == "exec":
        _cmd_exec(state, rest, res)
    elif cmd == "ps":
        _cmd_ps(state, rest, res)
    elif cmd == "info":
        _cmd_info(state, rest, res)
    elif cmd in ("start", "stop", "restart"):
        _cmd_start_stop(state, cmd, rest, res)
    else:
        res.err(f"docker: '{cmd}' is not a docker command (fake docker).\nSee 'docker --help'")
        res.rc = 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of bin/docker: answer, append to the call log, exit like docker would."""
    args = list(sys.argv[1:] if argv is None else argv)
    state_env = os.environ.get(STATE_ENV)
    if not state_env:
        sys.stderr.write(f"fake docker: {STATE_ENV} is not set\n")
        return 125
    started, started_mono = time.time(), time.monotonic()
    res = Result()
    with locked_state(Path(state_env)) as state:
        try:
            dispatch(state, args, res)
        except Exception as exc:  # record emulator bugs in the log rather than lose them
            res.err(f"fake docker internal error: {exc!r}")
            res.rc = 125
        state["calls"].append(
            {
                "argv": args,
                "ts": started,
                "mono": started_mono,
                "end_ts": time.time(),
                "pid": os.getpid(),
                "uid": os.getuid(),
                "rc": res.rc,
                "stdout": res.stdout,
                "stderr": res.stderr,
            }
        )
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    return res.rc


# --------------------------------------------------------------------------------------------
# Test-side API.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One recorded docker invocation; `ts` is wall-clock start, `mono` CLOCK_MONOTONIC start."""

    argv: list[str]
    ts: float
    mono: float
    end_ts: float
    pid: int
    uid: int
    rc: int
    stdout: str
    stderr: str

    @property
    def exec_container(self) -> str | None:
        """Container of a `docker exec` call, else None."""
        if not self.argv or self.argv[0] != "exec":
            return None
        return _split_exec_args(self.argv[1:])[0]

    @property
    def ctl_args(self) -> list[str]:
        """`emqx ctl` arguments of this call (e.g. ["cluster", "join", "emqx1@h"]), else []."""
        cmd = _split_exec_args(self.argv[1:])[1] if self.argv[:1] == ["exec"] else []
        if cmd and os.path.basename(cmd[0]) == "emqx" and cmd[1:2] == ["ctl"]:
            return cmd[2:]
        return []


class FakeDocker:
    """Test handle on a fake docker world stored under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_path = self.root / "fake-docker-state.json"
        self.bin_dir = BIN_DIR
        if not os.access(DOCKER_SCRIPT, os.X_OK):
            DOCKER_SCRIPT.chmod(0o755)
        with locked_state(self.state_path):
            pass  # creates the state and lock files

    # -- world building ------------------------------------------------------------------

    def add_container(
        self,
        name: str,
        node: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        data_dir: str | Path | None = None,
        access_dir: str | Path | None = None,
        running: bool = True,
        version: str = DEFAULT_EMQX_VERSION,
        **knobs: Any,
    ) -> str:
        """Add an EMQX container, alone in its cluster; returns its node name (`node`, else the
        environment's EMQX_NODE__NAME, else `<name>@127.0.0.1`). `access_dir` holds the node's
        access files (the API key the REST calls need); `data_dir` is recorded only."""
        _check_knobs(knobs)
        env = dict(env or {})
        node = node or env.get("EMQX_NODE__NAME", "").strip('"') or f"{name}@127.0.0.1"
        with locked_state(self.state_path) as state:
            state["containers"][name] = {
                "id": container_id(name),
                "node": node,
                "running": False,
                "version": version,
                "env": env,
                "data_dir": str(data_dir) if data_dir is not None else None,
                "access_dir": str(access_dir) if access_dir is not None else None,
                **json.loads(json.dumps(KNOB_DEFAULTS)),
                **knobs,
            }
            if running:
                _boot(state, name)
            if _cluster_index(state, node) is None:
                state["clusters"].append([node])
        return node

    def recreate_container(self, name: str, *, env: Mapping[str, str] | None = None, **knobs: Any) -> None:
        """Replace container `name` (same name, data and membership) and start the new one."""
        _check_knobs(knobs)
        with locked_state(self.state_path) as state:
            c = state["containers"][name]
            if env is not None:
                c["env"] = dict(env)
            c.update(knobs)
            _boot(state, name)

    def set_running(self, container: str, running: bool) -> None:
        """Start or stop a container; a stopped one stays in its cluster, as a stopped node."""
        with locked_state(self.state_path) as state:
            if running:
                _boot(state, container)
            else:
                state["containers"][container]["running"] = False

    def set_image_store(self, store: str) -> None:
        """`overlay2` (classic) or `containerd` (the containerd image store), as `docker info` reports it."""
        with locked_state(self.state_path) as state:
            state["image_store"] = store

    def set_daemon_down(self, down: bool = True) -> None:
        """Every command then fails like docker without a reachable daemon."""
        with locked_state(self.state_path) as state:
            state["daemon_down"] = down

    # -- inspection ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return read_state(self.state_path)

    def container(self, name: str) -> dict[str, Any]:
        return dict(self.state()["containers"][name])

    def boot_error(self, name: str) -> str | None:
        """Why EMQX in container `name` did not boot: never here (every container boots; what
        makes a real node fail to boot is for the real release, tests/support/emqx_nodes.py)."""
        return None

    def health(self, name: str) -> str:
        """What the broker image's health check makes of container `name`: "healthy" when EMQX
        answers, "starting" while it does not (`emqx_running` false), "exited" when stopped."""
        c = self.container(name)
        if not c["running"]:
            return "exited"
        return "healthy" if c["emqx_running"] else "starting"

    def members(self, node: str) -> list[str]:
        """Sorted members of `node`'s cluster."""
        return members_of(self.state(), node)

    def clusters(self) -> list[list[str]]:
        """All clusters, each sorted, sorted by first member."""
        return sorted(sorted(c) for c in self.state()["clusters"])

    def calls(self) -> list[Call]:
        """Every invocation so far, in order."""
        return [Call(**c) for c in self.state()["calls"]]

    def ctl_calls(self, container: str | None = None) -> list[Call]:
        """`emqx ctl` invocations, optionally only those into `container`."""
        return [c for c in self.calls() if c.ctl_args and (container is None or c.exec_container == container)]

    def clear_calls(self) -> None:
        with locked_state(self.state_path) as state:
            state["calls"] = []

    # -- running -------------------------------------------------------------------------

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """`base` (default os.environ) with the fake docker first on PATH and the state set."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', os.defpath)}"
        env[STATE_ENV] = str(self.state_path)
        return env

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run the fake `docker <args>` as a subprocess, exactly as a script would."""
        return subprocess.run(
            [str(DOCKER_SCRIPT), *args], env=self.env(), capture_output=True, text=True, timeout=timeout, check=False
        )


def _check_knobs(knobs: Mapping[str, Any]) -> None:
    unknown = set(knobs) - set(KNOB_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown fake docker knobs: {sorted(unknown)}")


if __name__ == "__main__":
    sys.exit(main())
