"""A fake `docker` CLI for testing the host scripts against an EMQX 5 cluster without Docker.

The `bin/docker` script next to this module is a thin shim over `main()` below; all state
(containers, EMQX cluster membership, scenario knobs and a log of every invocation) lives in
one JSON file named by the FAKE_DOCKER_STATE environment variable, so the script under test,
run as a subprocess (or over SSH), and the test itself see the same world.

Stdlib only, Python >= 3.11, importable without pytest: the shim runs under the system
python3, which has neither the venv nor pytest.

The `emqx ctl` texts are EMQX 5.8's, from apps/emqx_management/src/emqx_mgmt_cli.erl
(github.com/emqx/emqx, functions status/1 and cluster/1), and the join/leave/force-leave
outcomes follow mria:join/2, mria:leave/0 and mria:force_leave/1 (github.com/emqx/mria,
src/mria.erl), which that CLI calls:

- join self                      -> "Ignore."
- join a seed that is down       -> "Failed to join the cluster: {node_down,'<seed>'}"
- join a seed already in cluster -> "Failed to join the cluster: {already_in_cluster,'<seed>'}"
- join ok                        -> "Join the cluster successfully." + "Cluster status: #{...}"
- leave with no other running member -> "Failed to leave the cluster: node_not_in_cluster"
- force-leave self               -> "Ignore."
- force-leave a non-member       -> "Failed to remove the node from cluster: node_not_in_cluster"

`emqx ctl` exits 0 after printing any of these (emqx_ctl only fails for a node that does not
answer), which is why host scripts must parse the text, and why the fake keeps exit 0.

Every container is an EMQX node configured by its environment, and the fake enforces what
EMQX 5.8 enforces on it (rules and source citations in emqx58.py, next to this module):
`EMQX_*` values are parsed as HOCON the way hocon_tconf does; a node boots only if its
configuration is valid and none of its sockets (MQTT and dashboard listeners, distribution
4370+N, RPC 5369 or 5370+N) collides with a running container's, as on one host network; a
container that fails to boot is "restarting" (restart: always) and refuses `docker exec`;
every `emqx ctl` / `emqx ping` first passes bin/emqx's checks (node name as written, RAW
cookie vs the booted cookie), with the container's environment; the dashboard's default admin
is stored on first boot only (no `mnesia/<node>` in the data dir yet), never validated.
A container added without `env` gets `default_env(node)`: a valid environment whose only
sockets are the distribution and stateless RPC ports of its node name.
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

try:  # imported as tests.support.emqx.fake_docker, or by bin/docker from this directory
    from . import emqx58, emqx58_access
except ImportError:
    import emqx58  # type: ignore[import-not-found,no-redef]
    import emqx58_access  # type: ignore[import-not-found,no-redef]

STATE_ENV = "FAKE_DOCKER_STATE"
BIN_DIR = Path(__file__).resolve().parent / "bin"
DOCKER_SCRIPT = BIN_DIR / "docker"

DEFAULT_EMQX_VERSION = "5.8.6"
DEFAULT_IMAGE = f"emqx/emqx:{DEFAULT_EMQX_VERSION}"
FAKE_SERVER_VERSION = "27.3.1"
EMQX_CTL = "/opt/emqx/bin/emqx"

# Scenario knobs settable per container, with their defaults.
KNOB_DEFAULTS: dict[str, Any] = {
    # How many joins answer {node_down,Seed} before one succeeds (decremented per join).
    "join_failures_before_success": 0,
    # Erlang term printed after "Failed to join the cluster: " on every join, e.g.
    # "{cannot_join_to_replicant,'emqx1@127.0.0.1'}"; None = no permanent error.
    "join_permanent_error": None,
    # Same for "Failed to leave the cluster: " and "Failed to remove the node from cluster: ".
    "leave_permanent_error": None,
    "force_leave_permanent_error": None,
    # Nodes this container's `cluster status` reports under stopped_nodes even if running.
    "status_hides": [],
    # Seconds every `docker exec` into this container sleeps before answering (not under lock).
    "exec_delay_seconds": 0.0,
    # False = container up but EMQX not (yet) answering: ctl prints "not responding to pings".
    "emqx_running": True,
}

DAEMON_DOWN_TEXT = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"


# --------------------------------------------------------------------------------------------
# State file: JSON guarded by flock on a sidecar lock file, replaced atomically.
# --------------------------------------------------------------------------------------------


def empty_state() -> dict[str, Any]:
    """A world with no containers; `clusters` is a list of disjoint member lists."""
    return {
        "version": 1,
        "daemon_down": False,
        "containers": {},
        "external_nodes": {},
        "clusters": [],
        "calls": [],
    }


@contextlib.contextmanager
def locked_state(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the state for read-modify-write under an exclusive lock; saved on clean exit.

    Concurrent fake-docker processes (scripts running in parallel over several hosts) must
    not lose each other's call-log entries, hence the lock around the whole update.
    """
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
    """Replace `path` keeping its mode, so a shared (0666) state stays writable by others."""
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
# Cluster model helpers (pure functions on the state dict).
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
    """Move `node` into `seed`'s cluster (mria drops the joiner's old membership first)."""
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
    for c in state["containers"].values():
        if c["node"] == node:
            return bool(c["running"] and c.get("emqx_running", True))
    ext = state["external_nodes"].get(node)
    return bool(ext and ext["running"])


# --------------------------------------------------------------------------------------------
# Text renderers for EMQX output.
# --------------------------------------------------------------------------------------------


def erl_cluster_status(running: Sequence[str], stopped: Sequence[str]) -> str:
    """`Cluster status: ~p` of the cluster_info() map (emqx58.cluster_status_text), no newline."""
    return emqx58.cluster_status_text(running, stopped).rstrip("\n")


def cluster_info(state: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, list[str]]:
    """running/stopped members as seen from `container`, honouring its `status_hides`."""
    hides = set(container.get("status_hides", []))
    members = members_of(state, container["node"])
    running = [n for n in members if node_is_running(state, n) and n not in hides]
    stopped = [n for n in members if n not in running]
    return {"running_nodes": sorted(running), "stopped_nodes": sorted(stopped)}


def json_cluster_status(info: Mapping[str, list[str]]) -> str:
    """`cluster status --json` (emqx58.cluster_status_json: jiffy pretty, " : "), no newline."""
    return emqx58.cluster_status_json(info["running_nodes"], info["stopped_nodes"]).rstrip("\n")


CLUSTER_USAGE = emqx58.CLUSTER_USAGE.rstrip("\n")


# --------------------------------------------------------------------------------------------
# EMQX node configuration: environment, boot, data dir.
# --------------------------------------------------------------------------------------------

# A valid cookie for containers added without an environment: a bare HOCON token that HOCON
# keeps as it is, so bin/emqx's raw comparison passes (emqx58.cli_precheck).
FAKE_COOKIE = "fakeDockerCookie0123456789"
BROKER_DATA_DIR = "/opt/emqx/data"  # the image's node.data_dir (relative "data" under /opt/emqx)


def default_env(node: str) -> dict[str, str]:
    """A valid EMQX environment for `node` on a shared host: every default MQTT listener and the
    dashboard off, stateless RPC; its only sockets are 4370+N and 5370+N (N from the name)."""
    env = {
        "EMQX_NODE__NAME": node,
        "EMQX_NODE__COOKIE": FAKE_COOKIE,
        "EMQX_RPC__PORT_DISCOVERY": "stateless",
        "EMQX_DASHBOARD__LISTENERS__HTTP__BIND": "0",
    }
    for listener in emqx58.DEFAULT_LISTENER_BINDS:
        env[f"EMQX_LISTENERS__{listener.upper()}__DEFAULT__ENABLE"] = "false"
    return env


def _node_config(c: Mapping[str, Any]) -> emqx58.NodeConfig:
    return emqx58.resolve_node(emqx58.image_environment(c["env"]))


def _admin_file(c: Mapping[str, Any], node: str) -> Path | None:
    return Path(c["data_dir"]) / "mnesia" / node / "fake-emqx-dashboard-admin.json" if c.get("data_dir") else None


def _boot(state: dict[str, Any], name: str) -> None:
    """Start container `name`: EMQX boots, or the container keeps restarting (restart: always).

    Sockets are checked against every other running container of this (one) host network.
    On a successful first boot (no mnesia/<node> in the data dir) the default dashboard admin
    is stored, as emqx_dashboard_admin:add_default_user/2 does (emqx58.default_admin).
    """
    c = state["containers"][name]
    config = _node_config(c)
    others = [_node_config(o) for n, o in state["containers"].items() if n != name and o["running"]]
    errors = emqx58.boot_errors(config, others)
    c["boot_error"] = "\n".join(errors) if errors else None
    c["running"] = not errors
    c["restarting"] = bool(errors)
    if errors:
        return
    c["node"] = config.name
    if _cluster_index(state, config.name) is None:
        state["clusters"].append([config.name])
    admin = emqx58.default_admin(config)
    path = _admin_file(c, config.name)
    if path is not None:
        try:
            if not path.parent.exists():
                path.parent.mkdir(parents=True)
                path.write_text(json.dumps(admin))
            return
        except OSError:
            pass  # data dir not writable by this user: keep the record in the state instead
    c.setdefault("mnesia", {})
    if config.name not in c["mnesia"]:
        c["mnesia"][config.name] = admin


def stored_admin(c: Mapping[str, Any]) -> list[str] | None:
    """The dashboard admin (username, password) the node's data holds, None if none."""
    path = _admin_file(c, c["node"])
    if path is not None and path.exists():
        value = json.loads(path.read_text())
        return list(value) if value else None
    value = c.get("mnesia", {}).get(c["node"])
    return list(value) if value else None


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
    """`emqx ctl <args>` inside container `c` (texts: emqx_mgmt_cli.erl, emqx_ctl.erl, EMQX 5.8)."""
    node = c["node"]
    if not c.get("emqx_running", True):
        # bin/emqx assert_node_alive: nodetool's ping fails, its message goes to stderr, exit 1.
        res.err(emqx58.not_responding_text(node).rstrip("\n"))
        res.rc = 1
        return

    def status_lines() -> None:
        info = cluster_info(state, c)
        res.out(erl_cluster_status(info["running_nodes"], info["stopped_nodes"]))

    match args:
        case []:
            # emqx_ctl:run_command([]) -> help(), ok: exit 0.
            res.stdout += emqx58.ctl_help_text()
        case ["status"]:
            res.stdout += emqx58.status_text(node, c.get("version", DEFAULT_EMQX_VERSION))
        case ["status", *_]:
            res.stdout += emqx58.STATUS_USAGE
        case ["cluster", "join", seed]:
            if seed == node:
                res.out("Ignore.")
            elif c.get("join_permanent_error"):
                res.out(f"Failed to join the cluster: {c['join_permanent_error']}")
            elif int(c.get("join_failures_before_success", 0)) > 0:
                c["join_failures_before_success"] = int(c["join_failures_before_success"]) - 1
                res.out(f"Failed to join the cluster: {{node_down,'{seed}'}}")
            elif not node_is_running(state, seed):
                res.out(f"Failed to join the cluster: {{node_down,'{seed}'}}")
            elif seed in members_of(state, node):
                res.out(f"Failed to join the cluster: {{already_in_cluster,'{seed}'}}")
            else:
                _attach(state, node, seed)
                res.out("Join the cluster successfully.")
                status_lines()
        case ["cluster", "leave"]:
            others = [n for n in members_of(state, node) if n != node and node_is_running(state, n)]
            if c.get("leave_permanent_error"):
                res.out(f"Failed to leave the cluster: {c['leave_permanent_error']}")
            elif not others:
                res.out("Failed to leave the cluster: node_not_in_cluster")
            else:
                _detach(state, node)
                res.out("Leave the cluster successfully.")
                status_lines()
        case ["cluster", "force-leave", target]:
            if target == node:
                res.out("Ignore.")
            elif c.get("force_leave_permanent_error"):
                res.out(f"Failed to remove the node from cluster: {c['force_leave_permanent_error']}")
            elif target not in members_of(state, node):
                res.out("Failed to remove the node from cluster: node_not_in_cluster")
            else:
                _detach(state, target)
                res.out("Remove the node from cluster successfully.")
                status_lines()
        case ["cluster", "status"]:
            status_lines()
        case ["cluster", "status", "--json"]:
            res.out(json_cluster_status(cluster_info(state, c)))
        case ["cluster", *_]:
            res.out(CLUSTER_USAGE)
        case ["admins", "passwd", username, password]:
            # emqx_dashboard_cli admins(["passwd", ...]) -> emqx_dashboard_admin:change_password/2:
            # legal_password/1 first; errors print "Error: ~s~n" (exit 0, the command returned ok).
            problem = emqx58.legal_password(password)
            admin = stored_admin(c)
            if problem is None and (admin is None or admin[0] != username):
                problem = "username_not_found"  # update_pwd/2 aborts with this binary
            if problem is not None:
                res.out(f"Error: {problem}")
            else:
                _store_admin(c, [username, password])
                res.out("ok")
        case ["admins", *_]:
            res.stdout += emqx58.ADMINS_USAGE
        case _:
            # emqx_ctl:run_command/1: an unknown command prints help() and returns
            # {error, cmd_not_found}; nodetool rpc_infinity halts with 1 on anything but ok.
            res.stdout += emqx58.ctl_help_text()
            res.rc = 1


def _store_admin(c: dict[str, Any], admin: list[str]) -> None:
    path = _admin_file(c, c["node"])
    if path is not None and path.exists():
        path.write_text(json.dumps(admin))
    else:
        c.setdefault("mnesia", {})[c["node"]] = admin


def _exec_env(args: list[str]) -> dict[str, str]:
    """`docker exec -e K=V` / `--env K=V` / `--env=K=V` options (added to the container's env)."""
    env: dict[str, str] = {}
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        opt = args[i]
        value = None
        if opt in ("-e", "--env") and i + 1 < len(args):
            value, i = args[i + 1], i + 2
        elif opt.startswith("--env="):
            value, i = opt.split("=", 1)[1], i + 1
        elif opt in _EXEC_VALUE_OPTS:
            i += 2
        else:
            i += 1
        if value is not None:
            key, sep, val = value.partition("=")
            if sep:
                env[key] = val
            else:
                env.setdefault(key, os.environ.get(key, ""))
    return env


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
        if a in _EXEC_VALUE_OPTS:
            i += 2
            continue
        i += 1  # boolean flags (-i, -t, -it, -d, --privileged) and --opt=value forms
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
    """`_lookup`, answering the daemon's "No such container" (exit 1) when there is none."""
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
    if c.get("restarting"):
        # moby daemon/errors.go errContainerIsRestarting(ctr.ID): EMQX failed to boot and
        # `restart: always` keeps restarting the container.
        res.err(f"Error response from daemon: Container {c['id']} is restarting, wait until the container is running")
        res.rc = 1
        return
    if not c["running"]:
        # moby daemon/exec.go: errNotRunning(ctr.ID) -> the full id, not the name.
        res.err(f"Error response from daemon: container {c['id']} is not running")
        res.rc = 1
        return
    prog = os.path.basename(argv[0])
    is_ctl = (prog == "emqx" and argv[1:2] == ["ctl"]) or prog == "emqx_ctl"
    if is_ctl or (prog == "emqx" and argv[1:] == ["ping"]):
        # bin/emqx checks the node name and the RAW cookie before talking to the node, with the
        # exec'd process's environment: the container's plus `docker exec -e`.
        failure = emqx58.cli_precheck({**c["env"], **_exec_env(args)}, _node_config(c))
        if failure is not None:
            res.stderr += failure.stderr
            res.rc = failure.rc
            return
    if is_ctl:
        _emqx_ctl(state, c, argv[2:] if prog == "emqx" else argv[1:], res)
    elif prog == "curl" and argv[1:] == ["--silent", "--show-error", "--config", "-"]:
        _curl(state, c, sys.stdin.read(), res)
    elif prog == "emqx" and argv[1:] == ["ping"]:
        if c.get("emqx_running", True):
            res.out("pong")  # bin/nodetool ping
        else:
            res.err(emqx58.not_responding_text(c["node"]).rstrip("\n"))
            res.rc = 1
    else:
        res.err(
            "OCI runtime exec failed: exec failed: unable to start container process: "
            f'exec: "{argv[0]}": executable file not found in $PATH: unknown'
        )
        res.err("(fake docker: only `emqx ctl ...`, `emqx_ctl ...`, `emqx ping` and `curl --config -` are emulated)")
        res.rc = 127


_CURL_LINE = re.compile(r'^([a-z-]+) = "((?:[^"\\]|\\.)*)"$')
_AUTHN = "/api/v5/authentication/password_based%3Abuilt_in_database"


def _curl(state: dict[str, Any], c: dict[str, Any], config: str, res: Result) -> None:
    """The node's own curl against its REST API (the program's access calls): the request read as
    curl reads `--config -`, answered as EMQX 5.8.6 does (emqx58_access has the rules), the
    reply's last line its HTTP code (`write-out`). The built-in database and the rules are the
    cluster's, kept in the fake's state; the API key is the node's access file's."""
    request = {
        key: re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), value)
        for key, value in (m.groups() for m in map(_CURL_LINE.match, config.splitlines()) if m)
    }
    url = urllib.parse.urlsplit(request.get("url", ""))
    bind = emqx58.parse_env_value(c["env"].get("EMQX_DASHBOARD__LISTENERS__HTTP__BIND", "18083")).value
    if not c.get("emqx_running", True) or str(bind).rsplit(":", 1)[-1] != str(url.port):
        res.err(f"curl: (7) Failed to connect to {url.hostname} port {url.port}: Connection refused")
        res.rc = 7
        return
    code, body = _rest(state, c, request.get("request", "GET"), url, request)
    res.stdout += f"{body}\n{code}"


def _rest(
    state: dict[str, Any], c: Mapping[str, Any], method: str, url: urllib.parse.SplitResult, request: Mapping[str, str]
) -> tuple[int, str]:
    access = Path(c["access_dir"]) if c.get("access_dir") else None
    keys = emqx58_access.parse_api_keys((access / "api-keys").read_text())[0] if access else {}
    key, _, secret = request.get("user", "").partition(":")
    if keys.get(key) != secret or not secret:
        return 401, '{"code":"BAD_API_KEY_OR_SECRET","message":"Check api_key/api_secret"}'
    users = emqx58_access.UserDb.from_json(state.setdefault("authn_users", []))
    if method == "POST" and url.path == f"{_AUTHN}/import_users":
        rows = [emqx58_access.UserRow.from_json(item) for item in json.loads(request.get("data-binary", "[]"))]
        counts = users.import_rows(rows, override=True)
        state["authn_users"] = users.to_json()
        return 200, json.dumps(counts, separators=(",", ":"))
    if method == "DELETE" and url.path.startswith(f"{_AUTHN}/users/"):
        if users.rows.pop(url.path.rsplit("/", 1)[1], None) is None:
            return 404, '{"code":"NOT_FOUND","message":"User not found"}'
        state["authn_users"] = users.to_json()
        return 204, ""
    if method == "PUT" and url.path == "/api/v5/authorization/sources/file":
        rules = str(json.loads(request.get("data-binary", "{}")).get("rules", ""))
        try:
            emqx58_access.parse_acl(rules)
        except emqx58_access.AclError as exc:
            return 400, json.dumps({"code": "BAD_REQUEST", "message": str(exc)})
        state["authz_rules"] = rules
        return 204, ""
    return 404, '{"code":"NOT_FOUND","message":"fake docker: not emulated"}'


def _ps_status_text(c: Mapping[str, Any]) -> str:
    if c.get("restarting"):
        return "Restarting (1) Less than a second ago"
    return "Up 5 minutes" if c["running"] else "Exited (0) 1 minute ago"


def _ps_state(c: Mapping[str, Any]) -> str:
    return "restarting" if c.get("restarting") else "running" if c["running"] else "exited"


def _cmd_ps(state: dict[str, Any], args: list[str], res: Result) -> None:
    show_all = quiet = no_trunc = False
    fmt: str | None = None
    filters: dict[str, list[str]] = {}
    it = iter(args)
    for a in it:
        if a in ("-a", "--all"):
            show_all = True
        elif a in ("-q", "--quiet"):
            quiet = True
        elif a == "--no-trunc":
            no_trunc = True
        elif a in ("-f", "--filter") or a.startswith("--filter="):
            spec = a.split("=", 1)[1] if a.startswith("--filter=") else next(it, "")
            key, _, value = spec.partition("=")
            filters.setdefault(key, []).append(value)
        elif a == "--format" or a.startswith("--format="):
            fmt = a.split("=", 1)[1] if a.startswith("--format=") else next(it, "")
        elif a in ("-aq", "-qa"):
            show_all = quiet = True
        else:
            res.err(f"unknown flag: {a}")
            res.rc = 125
            return
    # A status filter lists stopped containers too, as docker does.
    show_all = show_all or "status" in filters
    rows: list[tuple[str, dict[str, Any]]] = []
    for name, c in sorted(state["containers"].items()):
        state_word = _ps_state(c)
        if not show_all and state_word != "running" and state_word != "restarting":
            continue
        if "status" in filters and state_word not in filters["status"]:
            continue
        if "name" in filters and not any(re.search(p, name) or re.search(p, "/" + name) for p in filters["name"]):
            continue
        if "id" in filters and not any(c["id"].startswith(p) for p in filters["id"]):
            continue
        rows.append((name, c))
    for name, c in rows:
        cid = c["id"] if no_trunc else c["id"][:12]
        if quiet:
            res.out(cid)
        elif fmt is not None:
            res.out(
                fmt.replace("{{.ID}}", cid)
                .replace("{{.Names}}", name)
                .replace("{{.Image}}", c["image"])
                .replace("{{.Status}}", _ps_status_text(c))
                .replace("{{.State}}", _ps_state(c))
                .replace("\\t", "\t")
            )
    if not quiet and fmt is None:
        res.out("CONTAINER ID   IMAGE   COMMAND   CREATED   STATUS   PORTS   NAMES")
        for name, c in rows:
            res.out(
                f'{c["id"][:12]}   {c["image"]}   "/usr/bin/docker-entrypoint.sh /opt/emqx/bin/emqx foreground"'
                f"   10 minutes ago   {_ps_status_text(c)}      {name}"
            )


def _cmd_start_stop(state: dict[str, Any], verb: str, args: list[str], res: Result) -> None:
    refs = [a for a in args if not a.startswith("-")]
    for ref in refs:
        found = _lookup_or_report(state, ref, res)
        if found is None:
            continue
        name, c = found
        if verb == "stop":
            c["running"] = c["restarting"] = False
        else:
            _boot(state, name)
        res.out(ref)


def _cmd_info(state: dict[str, Any], args: list[str], res: Result) -> None:
    if "--format" in args or any(a.startswith("--format=") for a in args):
        # `{{json .DriverStatus}}` as Docker prints it for the classic overlay2 store, or for
        # the containerd image store (`image_store: containerd`).
        if any("DriverStatus" in a for a in args):
            containerd = state.get("image_store") == "containerd"
            res.out(
                '[["driver-type","io.containerd.snapshotter.v1"]]'
                if containerd
                else '[["Backing Filesystem","extfs"],["Supports d_type","true"],["Using metacopy","false"]]'
            )
            return
        res.out(FAKE_SERVER_VERSION)
        return
    res.out("Client:\n Version:    " + FAKE_SERVER_VERSION + "\n Context:    default\n")
    res.out("Server:\n Server Version: " + FAKE_SERVER_VERSION + "\n Storage Driver: overlay2")


def dispatch(state: dict[str, Any], argv: list[str], res: Result) -> None:
    """Run one docker command line (argv without the program name) against `state`."""
    args = list(argv)
    while args and args[0] in ("-D", "--debug"):
        args.pop(0)
    if not args:
        res.out("Usage:  docker [OPTIONS] COMMAND")
        return
    if args[0] in ("--version", "-v"):
        res.out(f"Docker version {FAKE_SERVER_VERSION}, build fake")
        return
    if state.get("daemon_down"):
        res.err(DAEMON_DOWN_TEXT)
        res.rc = 1
        return
    cmd, rest = args[0], args[1:]
    if cmd == "container" and rest:
        cmd, rest = rest[0], rest[1:]
        cmd = {"ls": "ps", "list": "ps"}.get(cmd, cmd)
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


def _exec_delay(state: Mapping[str, Any], argv: list[str]) -> float:
    if not argv or argv[0] != "exec":
        return 0.0
    ref, _ = _split_exec_args(argv[1:])
    found = _lookup(state, ref) if ref else None
    return float(found[1].get("exec_delay_seconds", 0.0)) if found else 0.0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of bin/docker: answer, append to the call log, exit like docker would."""
    args = list(sys.argv[1:] if argv is None else argv)
    state_env = os.environ.get(STATE_ENV)
    if not state_env:
        sys.stderr.write(f"fake docker: {STATE_ENV} is not set\n")
        return 125
    path = Path(state_env)
    started, started_mono = time.time(), time.monotonic()
    delay = _exec_delay(read_state(path), args)
    if delay > 0:
        time.sleep(delay)
    res = Result()
    with locked_state(path) as state:
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
    def exec_argv(self) -> list[str]:
        """The command run inside the container by a `docker exec` call."""
        if not self.argv or self.argv[0] != "exec":
            return []
        return _split_exec_args(self.argv[1:])[1]

    @property
    def ctl_args(self) -> list[str]:
        """`emqx ctl` arguments of this call (e.g. ["cluster", "join", "emqx1@h"]), else []."""
        cmd = self.exec_argv
        if cmd and os.path.basename(cmd[0]) == "emqx" and cmd[1:2] == ["ctl"]:
            return cmd[2:]
        if cmd and os.path.basename(cmd[0]) == "emqx_ctl":
            return cmd[1:]
        return []


class FakeDocker:
    """Test handle on a fake docker world stored under `root`.

    `shared=True` makes the state dir and files world-writable, for scripts run as another
    user (e.g. over SSH as the sshd fixture's non-root user); `root`'s parents must then be
    traversable by that user too (pytest's tmp_path is not: its base dir is 0700).
    """

    def __init__(self, root: Path, *, shared: bool = False) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_path = self.root / "fake-docker-state.json"
        self.bin_dir = BIN_DIR
        if not os.access(DOCKER_SCRIPT, os.X_OK):
            DOCKER_SCRIPT.chmod(0o755)
        with locked_state(self.state_path):
            pass  # creates the state and lock files
        if shared:
            self.root.chmod(0o777)
            for p in (self.state_path, self.state_path.with_name(self.state_path.name + ".lock")):
                p.chmod(0o666)

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
        image: str = DEFAULT_IMAGE,
        version: str = DEFAULT_EMQX_VERSION,
        **knobs: Any,
    ) -> str:
        """Add an EMQX container, alone in its cluster; returns its node name.

        `env` is the container's environment (default: default_env(node), node defaulting to
        `<name>@127.0.0.1`); the node name is then what EMQX boots from it.  `data_dir` is the
        host dir mounted on /opt/emqx/data (None: the data lives in the fake's state).  With
        `running`, EMQX boots: if it cannot, the container is left restarting (boot_error()).
        """
        _check_knobs(knobs)
        if env is None:
            env = default_env(node or f"{name}@127.0.0.1")
        with locked_state(self.state_path) as state:
            record: dict[str, Any] = {
                "id": container_id(name),
                "node": node or emqx58.resolve_node(env).name,
                "running": False,
                "restarting": False,
                "boot_error": None,
                "image": image,
                "version": version,
                "env": dict(env),
                "data_dir": str(data_dir) if data_dir is not None else None,
                "access_dir": str(access_dir) if access_dir is not None else None,
            }
            record.update(json.loads(json.dumps(KNOB_DEFAULTS)))
            record.update(knobs)
            state["containers"][name] = record
            if running:
                _boot(state, name)
            if _cluster_index(state, record["node"]) is None:
                state["clusters"].append([record["node"]])
        return str(record["node"])

    def recreate_container(
        self,
        name: str,
        *,
        env: Mapping[str, str] | None = None,
        image: str | None = None,
        version: str | None = None,
        **knobs: Any,
    ) -> None:
        """Replace container `name` (delete before create, same name and data dir) and start
        the new one with `env` / `image` (unchanged when None); cluster membership stays."""
        _check_knobs(knobs)
        with locked_state(self.state_path) as state:
            c = state["containers"][name]
            c["running"] = c["restarting"] = False
            if env is not None:
                c["env"] = dict(env)
            if image is not None:
                c["image"] = image
            if version is not None:
                c["version"] = version
            c.update(knobs)
            _boot(state, name)

    def add_emqx_containers(self, count: int, *, prefix: str = "emqx", host: str = "127.0.0.1") -> list[str]:
        """Add `<prefix>1..N` with nodes `<prefix>i@<host>`; returns the node names."""
        return [self.add_container(f"{prefix}{i}", f"{prefix}{i}@{host}") for i in range(1, count + 1)]

    def add_node(self, node: str, *, running: bool = True) -> None:
        """A node without a local container (e.g. the seed on another host)."""
        with locked_state(self.state_path) as state:
            state["external_nodes"][node] = {"running": running}
            if _cluster_index(state, node) is None:
                state["clusters"].append([node])

    def form_cluster(self, *nodes: str) -> None:
        """Put `nodes` into one cluster (as if they had joined nodes[0])."""
        with locked_state(self.state_path) as state:
            for n in nodes[1:]:
                _attach(state, n, nodes[0])

    def set_knobs(self, container: str, **knobs: Any) -> None:
        """Set scenario knobs (see KNOB_DEFAULTS) on a container."""
        _check_knobs(knobs)
        with locked_state(self.state_path) as state:
            state["containers"][container].update(knobs)

    def set_running(self, container: str, running: bool) -> None:
        """Start (EMQX boots, see add_container) or stop a container; a stopped one stays in its
        cluster, as a stopped node."""
        with locked_state(self.state_path) as state:
            if running:
                _boot(state, container)
            else:
                c = state["containers"][container]
                c["running"] = c["restarting"] = False

    def set_node_running(self, node: str, running: bool) -> None:
        """Up/down for an external node added with add_node()."""
        with locked_state(self.state_path) as state:
            state["external_nodes"][node]["running"] = running

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
        """Raw state snapshot."""
        return read_state(self.state_path)

    def container(self, name: str) -> dict[str, Any]:
        """Raw record of one container (knobs included, e.g. the remaining join failures)."""
        return dict(self.state()["containers"][name])

    def boot_error(self, name: str) -> str | None:
        """Why EMQX in container `name` failed to boot (it is restarting), None if it did not."""
        error = self.state()["containers"][name].get("boot_error")
        return str(error) if error else None

    def health(self, name: str) -> str:
        """What the broker image's health check (`emqx ctl status` prints "is started", run
        in the container with its environment) makes of container `name`: healthy/unhealthy;
        "starting" while it is restarting or EMQX does not answer yet; "exited" when stopped."""
        c = self.container(name)
        if c.get("restarting") or (c["running"] and not c.get("emqx_running", True)):
            return "starting"
        if not c["running"]:
            return "exited"
        failure = emqx58.cli_precheck(c["env"], _node_config(c))
        return "healthy" if failure is None else "unhealthy"

    def dashboard_admin(self, name: str) -> tuple[str, str] | None:
        """The dashboard admin (username, password) stored in the node's data, None if none."""
        admin = stored_admin(self.container(name))
        return (admin[0], admin[1]) if admin else None

    def members(self, node: str) -> list[str]:
        """Sorted members of `node`'s cluster (true membership, ignoring status_hides)."""
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
        """Forget the call log (e.g. after arranging a scenario through the CLI)."""
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
            [str(DOCKER_SCRIPT), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def install_wrapper(self, target_dir: Path, name: str = "docker") -> Path:
        """Write `target_dir/name`, a sh wrapper with this state baked in.

        For callers that lose the environment: `sudo docker ...` (env_reset, secure_path)
        or a remote login shell.  Install into /usr/local/bin to shadow docker under sudo.
        """
        target = Path(target_dir) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            "#!/bin/sh\n"
            f': "${{{STATE_ENV}:={self.state_path}}}"\n'
            f"export {STATE_ENV}\n"
            f'exec python3 "{DOCKER_SCRIPT}" "$@"\n'
        )
        target.chmod(0o755)
        return target


def _check_knobs(knobs: Mapping[str, Any]) -> None:
    unknown = set(knobs) - set(KNOB_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown fake docker knobs: {sorted(unknown)}")


if __name__ == "__main__":
    sys.exit(main())
