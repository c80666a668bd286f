"""STAND-IN for EMQX 5.8 inside the e2e tests' `emqx/emqx:<version>` images. NOT EMQX.

No registry is reachable on the test machines, so the official image cannot be pulled. This
daemon keeps the contract the emqx-cluster program relies on, applying the EMQX 5.8 rules of
tests/support/emqx/emqx58.py (HOCON env values, raw cookie comparison, the dashboard's
first-boot password, port derivation):

- `emqx foreground` binds for real, like EMQX: Erlang distribution (4370 + N of the node name,
  on the `-kernel inet_dist_use_interface` address of ERL_AFLAGS, else 0.0.0.0), gen_rpc
  (`rpc.listen_address`, 5370 + N with `stateless` port discovery, else 5369), every enabled
  listener (`tcp`/`ssl`/`ws`/`wss` default) and the dashboard. A taken port fails the start.
- The tcp listener is real MQTT: mosquitto on a container-private unix socket, behind the
  integration tier's PROXY-protocol shim (tests/support/emqx/proxy_shim.py) when
  `proxy_protocol` is on.
- The dashboard answers `GET /status` (200 "Node <name> is started\\nemqx is running") and
  `POST /api/v5/login` (admin + the password fixed at the node's first boot).
- Cluster membership lives in `data/mnesia/<node name>/` and is exchanged between nodes over
  their distribution ports, authenticated with the cookie (HMAC challenge: equal iff the raw
  cookies are equal, as Erlang's distribution handshake). `cluster status` pings members for
  real, so a dead node is listed as stopped; a node restarting with peers in its membership
  file re-announces itself to them.
- `emqx ctl ...` (status, cluster join|leave|force-leave|status [--json], broker, broker stats,
  data export|import) talks to the local node over the distribution port with the cookie from its
  own environment, as nodetool does.
- `emqx ctl data export` writes `data/backup/emqx-export-<local time>.tar.gz` (EMQX's name,
  every entry under a folder of that name: META.hocon with version and edition, cluster.hocon,
  which is empty here as the stand-in keeps no runtime config, and mnesia/<table> for the tables
  it keeps: the built-in authn users and the dashboard admin, in its own JSON encoding).
  `data import <file>` follows EMQX's lookup (a path that is a file, else a bare name in
  data/backup/), name, folder (bad_archive_dir), META and version rules with EMQX's texts, reads
  the file as the broker's user, and merges the tables (same keys overwritten, others kept) on
  every running member, as mnesia:restore with keep_tables does.
- Cluster TLS as EMQX 5.8.6 + OTP run it: `cluster.proto_dist = inet_tls` makes the
  distribution port TLS, configured by the Erlang term file `$EMQX_SSL_DIST_OPTFILE` (its
  `server` and `client` sections; OTP 26 refuses server-only options in `client` and client-only
  ones in `server`); the dialling side checks the host part of the node name against the
  server certificate's DNS names only (inet_tls_dist sends it as SNI). `rpc.protocol = ssl`
  makes gen_rpc's port TLS with a required client certificate (gen_rpc 3.4.1 ssl.hrl). A file
  that is missing or unreadable stops the boot, as it stops the VM.

Runs on the image's Python 3 stdlib plus `proxy-protocol` (copied in at build time).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.emqx import emqx58, emqx58_access, mqtt_gate

VERSION = os.environ.get("EMQX_STANDIN_VERSION", "5.8.6")
HOME = Path(os.environ.get("EMQX_STANDIN_HOME", "/opt/emqx"))
RUN_DIR = Path(os.environ.get("EMQX_STANDIN_RUN_DIR", "/tmp/emqx-standin"))  # container-private
CONNECT_TIMEOUT = 2.0
CALL_TIMEOUT = 10.0
MEMBERSHIP_FILE = "standin-cluster.json"
ADMIN_FILE = "standin-admin.json"
USERS_FILE = "standin-authn-users.json"  # the built-in database's table
AUTHN_PATH = "/api/v5/authentication/password_based:built_in_database"
PROMETHEUS_PATH = "/api/v5/prometheus/stats"


@dataclass(frozen=True)
class Listener:
    name: str  # emqx58.Socket.owner: "listener tcp:default", "dashboard http", "distribution", "rpc"
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ClusterTls:
    """TLS contexts of the distribution port (both sides) and of gen_rpc's server."""

    dist_server: ssl.SSLContext
    dist_client: ssl.SSLContext
    rpc_server: ssl.SSLContext | None


@dataclass(frozen=True)
class NodeConfig:
    """What the node boots with: emqx58.resolve_node plus the few settings the stand-in serves."""

    rules: emqx58.NodeConfig
    sockets: tuple[Listener, ...]  # every socket EMQX would listen on, in boot order
    proxy_protocol: dict[str, tuple[bool, float]]  # listener owner -> (on, header timeout s)
    log_to_file: bool
    access: emqx58_access.AccessSettings
    tls: ClusterTls | None = None  # cluster.proto_dist = inet_tls
    dashboard_tls: tuple[str, str] | None = None  # dashboard.listeners.https.ssl_options cert, key
    prometheus_basic_auth: bool = False  # prometheus.enable_basic_auth

    @property
    def node_name(self) -> str:
        return self.rules.name

    @property
    def cookie(self) -> str:
        return self.rules.cookie

    @property
    def mnesia_dir(self) -> Path:
        return HOME / "data" / "mnesia" / self.node_name

    def socket(self, owner: str) -> Listener | None:
        return next((s for s in self.sockets if s.name == owner), None)


def _env_setting(env: Mapping[str, str], name: str, default: Any) -> Any:
    raw = env.get(name)
    if raw is None:
        return default
    value = emqx58.parse_env_value(raw).value
    return default if value is None else value


def _seconds(value: Any) -> float:
    """An EMQX duration ("5s", "500ms", "1m", or a number of milliseconds) in seconds."""
    text = str(value).strip()
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix) and text[: -len(suffix)].strip().replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * factor
    return float(text) / 1000


def load_config(env: Mapping[str, str]) -> NodeConfig:
    """The node's config from its environment, by EMQX 5.8's rules (emqx58); ValueError if it cannot boot."""
    env = emqx58.image_environment(env)
    rules = emqx58.resolve_node(env)
    if rules.errors:
        raise ValueError("; ".join(rules.errors))
    # Boot order: the VM opens distribution first, then gen_rpc, listeners, dashboard.
    order = {"distribution": 0, "rpc": 1}
    sockets = tuple(
        Listener(s.owner, s.address, s.port)
        for s in sorted(rules.sockets, key=lambda s: (order.get(s.owner, 2), s.owner.startswith("dashboard")))
    )
    proxy: dict[str, tuple[bool, float]] = {}
    for sock in sockets:
        if sock.name.startswith("listener tcp:"):
            prefix = "EMQX_LISTENERS__TCP__" + sock.name.split(":", 1)[1].upper()
            on = str(_env_setting(env, prefix + "__PROXY_PROTOCOL", False)).lower() == "true"
            timeout = _seconds(_env_setting(env, prefix + "__PROXY_PROTOCOL_TIMEOUT", "3s"))
            proxy[sock.name] = (on, timeout)
    log_to_file = str(_env_setting(env, "EMQX_LOG__FILE__ENABLE", True)).lower() == "true"
    values = emqx58.env_values(env)[0]
    https = "dashboard.listeners.https.ssl_options."
    certfile, keyfile = values.get(https + "certfile"), values.get(https + "keyfile")
    return NodeConfig(
        rules=rules,
        sockets=sockets,
        proxy_protocol=proxy,
        log_to_file=log_to_file,
        access=emqx58_access.access_settings(values),
        tls=cluster_tls(env),
        dashboard_tls=(str(certfile), str(keyfile)) if certfile and keyfile else None,
        prometheus_basic_auth=str(values.get("prometheus.enable_basic_auth", False)).lower() == "true",
    )


# --- cluster TLS -------------------------------------------------------------------------------

_OPTION = re.compile(r"\{\s*([a-z_]+)\s*,\s*(\"[^\"]*\"|\[[^\]]*\]|[a-z_]+)\s*\}")
# OTP 26 ssl: server-only options refused on the client side and the other way round.
_SERVER_ONLY = {"fail_if_no_peer_cert", "honor_cipher_order", "reuse_sessions"}
_CLIENT_ONLY = {"server_name_indication", "customize_hostname_check"}


def _dist_sections(path: str) -> dict[str, dict[str, str]]:
    """The `server` and `client` option lists of an ssl_dist optfile (`[{server, [...]}, {client, [...]}].`)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"{{bad_ssl_dist_optfile,{path}}}: {exc.strerror}") from exc
    text = re.sub(r"%[^\n]*", "", text)
    sections: dict[str, dict[str, str]] = {}
    for side in ("server", "client"):
        match = re.search(r"\{\s*" + side + r"\s*,\s*\[(.*?)\]\s*\}\s*[,\]]", text, re.S)
        if match is None:
            raise ValueError(f"{{bad_ssl_dist_optfile,{path}}}: no {side} section")
        sections[side] = {key: value.strip('"') for key, value in _OPTION.findall(match.group(1))}
    misplaced = (_SERVER_ONLY & sections["client"].keys()) | (_CLIENT_ONLY & sections["server"].keys())
    if misplaced:
        raise ValueError(f"{{bad_ssl_dist_optfile,{path}}}: options on the wrong side: {sorted(misplaced)}")
    return sections


def _context(purpose: int, certfile: str, keyfile: str, cacertfile: str, verify: ssl.VerifyMode) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if purpose == 0 else ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # the name check is OTP's, done by the caller (_check_dns_name)
    try:
        context.load_cert_chain(certfile, keyfile)
        context.load_verify_locations(cacertfile)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cluster TLS files unusable ({certfile}, {keyfile}, {cacertfile}): {exc}") from exc
    context.verify_mode = verify
    return context


def cluster_tls(env: Mapping[str, str]) -> ClusterTls | None:
    """The node's cluster TLS, or None for plain distribution; ValueError where the VM would not boot."""
    if str(_env_setting(env, "EMQX_CLUSTER__PROTO_DIST", "inet_tcp")) not in ("inet_tls", "inet6_tls"):
        return None
    sections = _dist_sections(env.get("EMQX_SSL_DIST_OPTFILE") or str(HOME / "etc" / "ssl_dist.conf"))
    server, client = sections["server"], sections["client"]

    def files(options: dict[str, str]) -> tuple[str, str, str]:
        return (
            options.get("certfile", ""),
            options.get("keyfile", options.get("certfile", "")),
            options.get("cacertfile", ""),
        )

    required = ssl.CERT_REQUIRED if server.get("fail_if_no_peer_cert") == "true" else ssl.CERT_OPTIONAL
    dist_server = _context(0, *files(server), required if server.get("verify") == "verify_peer" else ssl.CERT_NONE)
    dist_client = _context(
        1, *files(client), ssl.CERT_REQUIRED if client.get("verify") == "verify_peer" else ssl.CERT_NONE
    )
    rpc_server = None
    protocol = _env_setting(env, "EMQX_RPC__PROTOCOL", _env_setting(env, "EMQX_RPC__DRIVER", "tcp"))
    if str(protocol) == "ssl":
        certfile, keyfile, cacertfile = (
            str(_env_setting(env, f"EMQX_RPC__{key}", "")) for key in ("CERTFILE", "KEYFILE", "CACERTFILE")
        )
        # gen_rpc 3.4.1 ssl.hrl: verify_peer and fail_if_no_peer_cert on the server, always.
        rpc_server = _context(0, certfile, keyfile, cacertfile, ssl.CERT_REQUIRED)
    return ClusterTls(dist_server=dist_server, dist_client=dist_client, rpc_server=rpc_server)


def _check_dns_name(writer: asyncio.StreamWriter, host: str) -> None:
    """OTP's check on the dialling side: the node name's host among the certificate's DNS names."""
    peer = writer.get_extra_info("peercert") or {}
    names = [value for kind, value in peer.get("subjectAltName", ()) if kind == "DNS"]
    if host not in names:
        raise CallError(
            f"node_down: {{tls_alert,{{handshake_failure, hostname_check_failed}}}} ({host} not in {names})"
        )


def node_host(node_name: str) -> str:
    return node_name.split("@", 1)[1] if "@" in node_name else "127.0.0.1"


def distribution_port(node_name: str) -> int:
    """Where `node_name` listens for distribution (ekka_dist: 4370 + the name's number)."""
    rules = emqx58.resolve_node({"EMQX_NODE__NAME": node_name})
    return next(s.port for s in rules.sockets if s.owner == "distribution")


# --- logging ---------------------------------------------------------------------------------


class Log:
    def __init__(self, to_file: bool) -> None:
        self.file: Any = None
        if to_file:
            with contextlib.suppress(OSError):
                (HOME / "log").mkdir(parents=True, exist_ok=True)
                self.file = (HOME / "log" / "emqx.log").open("a", encoding="utf-8")

    def __call__(self, level: str, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} [{level}] {message}"
        print(line, flush=True)
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.write(line + "\n")
                self.file.flush()


# --- the cookie-authenticated wire protocol (JSON lines over the distribution port) ----------


def _digest(cookie: str, challenge: str) -> str:
    return hmac.new(cookie.encode(), challenge.encode(), hashlib.sha256).hexdigest()


class CallError(Exception):
    """A peer could not be reached, refused the cookie, or answered with an error."""


async def call(
    node_name: str,
    port: int,
    cookie: str,
    request: dict[str, Any],
    host: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> Any:
    """One request to `node_name`'s distribution port (over TLS with `tls`); returns the answer's `result`."""
    address = host or node_host(node_name)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port, ssl=tls, server_hostname="" if tls else None), CONNECT_TIMEOUT
        )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise CallError(f"node_down: {exc}") from exc
    try:
        if tls is not None and tls.verify_mode == ssl.CERT_REQUIRED:
            _check_dns_name(writer, node_host(node_name))
        hello = json.loads(await asyncio.wait_for(reader.readline(), CALL_TIMEOUT) or b"null")
        if not isinstance(hello, dict) or hello.get("node") != node_name:
            raise CallError(f"node_down: {address}:{port} is not {node_name} ({hello!r})")
        request = {**request, "digest": _digest(cookie, str(hello["challenge"]))}
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        answer = json.loads(await asyncio.wait_for(reader.readline(), CALL_TIMEOUT) or b"null")
    except (OSError, TimeoutError, ValueError, ssl.SSLError) as exc:
        raise CallError(f"node_down: {exc}") from exc
    finally:
        writer.close()
    if not isinstance(answer, dict) or "error" in answer:
        raise CallError(str(answer.get("error") if isinstance(answer, dict) else answer))
    return answer.get("result")


# --- the node ----------------------------------------------------------------------------------


class Node:
    def __init__(self, config: NodeConfig, log: Log) -> None:
        self.config = config
        self.log = log
        self.status = "starting"
        self.members: set[str] = {config.node_name}
        self.removed: set[str] = set()
        self.servers: list[asyncio.AbstractServer] = []
        self.mosquitto: subprocess.Popen[bytes] | None = None
        self.stopping = asyncio.Event()
        self.access = emqx58_access.NodeAccess(config.access)  # the MQTT gate's policy
        self.api_keys: dict[str, str] = {}
        self.tokens: set[str] = set()
        self.live: set[object] = set()  # MQTT connections past an accepted CONNECT
        self.started_at = time.monotonic()

    # access (emqx58_access has EMQX's rules) --------------------------------------------------

    def load_acl(self) -> None:
        """The file source, read when the config loads: a missing or invalid file stops the node."""
        try:
            self.access.acl = emqx58_access.read_acl(self.config.access.acl_path)
        except (emqx58_access.AclError, OSError, UnicodeDecodeError) as exc:
            raise StartError(f"Failed to load config: authorization: {exc}") from exc

    def load_users(self) -> None:
        """The table from the data dir, then the bootstrap file imported without overwriting."""
        path = self.config.mnesia_dir / USERS_FILE
        if path.exists():
            self.access.users = emqx58_access.UserDb.from_json(json.loads(path.read_text()))
        authenticator = self.config.access.authenticator
        if authenticator is None:
            return
        try:
            rows = authenticator.bootstrap_rows()
        except (ValueError, OSError) as exc:
            self.log("warning", f"failed_to_import_users_from_bootstrap_file: {exc}")
            return
        counts = self.access.users.import_rows(rows, override=False)
        if counts["failed"]:
            self.log("warning", f"import_an_exists_userid_into_authentication_database_failed: {counts}")
        self.save_users()

    def save_users(self) -> None:
        path = self.config.mnesia_dir / USERS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.access.users.to_json()))
        tmp.replace(path)

    def load_api_keys(self) -> None:
        path = self.config.access.api_key_file
        if path is None:
            return
        try:
            keys, error = emqx58_access.parse_api_keys(Path(path).read_text())
        except OSError as exc:
            keys, error = {}, str(exc)
        self.api_keys = keys
        if error:
            self.log("error", f"failed_to_load_bootstrap_api_keys: {error}")

    # membership -----------------------------------------------------------------------------

    def load_membership(self) -> None:
        path = self.config.mnesia_dir / MEMBERSHIP_FILE
        if path.exists():
            data = json.loads(path.read_text())
            self.members = set(data.get("members", [])) | {self.config.node_name}
            self.removed = set(data.get("removed", []))

    def save_membership(self) -> None:
        path = self.config.mnesia_dir / MEMBERSHIP_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"members": sorted(self.members), "removed": sorted(self.removed)}))
        tmp.replace(path)

    def peers(self) -> list[str]:
        return sorted(self.members - {self.config.node_name})

    async def call_peer(self, node: str, request: dict[str, Any]) -> Any:
        tls = self.config.tls.dist_client if self.config.tls else None
        return await call(node, distribution_port(node), self.config.cookie, request, tls=tls)

    async def tell(self, nodes: Iterable[str], request: dict[str, Any]) -> None:
        """Send `request` to each of `nodes`; one that does not answer learns on its next start."""
        for node in nodes:
            with contextlib.suppress(CallError):
                await self.call_peer(node, request)

    async def running_nodes(self) -> tuple[list[str], list[str]]:
        async def alive(node: str) -> bool:
            try:
                result = await self.call_peer(node, {"op": "ping"})
            except CallError:
                return False
            return isinstance(result, dict) and result.get("status") == "started"

        peers = self.peers()
        states = await asyncio.gather(*(alive(p) for p in peers))
        running = sorted([self.config.node_name, *(p for p, up in zip(peers, states, strict=True) if up)])
        stopped = sorted(p for p, up in zip(peers, states, strict=True) if not up)
        return running, stopped

    # ctl commands ---------------------------------------------------------------------------

    async def ctl(self, args: list[str]) -> tuple[int, str]:
        name = self.config.node_name
        if args == ["status"]:
            return 0, emqx58.status_text(name, VERSION, started=self.status == "started")
        if args[:1] == ["broker"]:
            return 0, self.broker(args[1:])
        if args[:1] == ["data"]:
            return 0, await self.data(args[1:])
        if args[:1] != ["cluster"]:
            return 0, emqx58.ctl_help_text(
                (emqx58.STATUS_USAGE, emqx58.BROKER_USAGE, emqx58.CLUSTER_USAGE, emqx58.DATA_USAGE)
            )
        sub = args[1:]
        if sub == ["status"]:
            running, stopped = await self.running_nodes()
            return 0, emqx58.cluster_status_text(running, stopped)
        if sub == ["status", "--json"]:
            running, stopped = await self.running_nodes()
            return 0, emqx58.cluster_status_json(running, stopped)
        if len(sub) == 2 and sub[0] == "join":
            return await self.join(sub[1])
        if sub == ["leave"]:
            return await self.leave()
        if len(sub) == 2 and sub[0] == "force-leave":
            return await self.force_leave(sub[1])
        return 0, emqx58.CLUSTER_USAGE

    def broker(self, sub: list[str]) -> str:
        if sub == []:
            uptime_ms = int((time.monotonic() - self.started_at) * 1000)
            now = time.time()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1e9):09d}"
            offset = time.strftime("%z", time.localtime(now))
            return emqx58.broker_text(VERSION, uptime_ms, f"{stamp}{offset[:3]}:{offset[3:]}")
        if sub == ["stats"]:
            count = len(self.live)
            return emqx58.broker_stats_text(
                {"connections.count": count, "live_connections.count": count, "channels.count": count}
            )
        return emqx58.BROKER_USAGE

    # backup (emqx_mgmt_data_backup.erl) -------------------------------------------------------

    def backup_tables(self) -> dict[str, Any]:
        """The tables this stand-in keeps, by EMQX's table name."""
        admin_file = self.config.mnesia_dir / ADMIN_FILE
        return {
            "emqx_admin": json.loads(admin_file.read_text()) if admin_file.exists() else None,
            "emqx_authn_mnesia": self.access.users.to_json(),
        }

    async def data(self, sub: list[str]) -> str:
        if sub == ["export"]:
            return self.export()
        if len(sub) == 2 and sub[0] == "import":
            return await self.import_backup(sub[1])
        return emqx58.DATA_USAGE

    def export(self) -> str:
        """export/1 (:162-180, 437-510): progress lines, then the file name relative to the cwd."""
        now_ms = int(time.time() * 1000)
        local = time.localtime(now_ms // 1000)[:6]
        base = emqx58.export_base_name(local, now_ms % 1000)
        relative = f"data/backup/{base}.tar.gz"
        (HOME / "data" / "backup").mkdir(parents=True, exist_ok=True)
        lines = [
            f'Exporting data to "{relative}"...\n',
            "Exporting cluster configuration...\n",
            'Exporting additional files from EMQX data_dir: "data"...\n',
            "Exporting built-in database...\n",
        ]
        entries = {"META.hocon": emqx58.meta_hocon(VERSION).encode(), "cluster.hocon": b""}
        for table, rows in self.backup_tables().items():
            if rows is not None:
                lines.append(f"Exporting {table} database table...\n")
                entries[f"mnesia/{table}"] = json.dumps(rows).encode()
        with tarfile.open(HOME / relative, "w:gz") as tar:
            for name, data in entries.items():
                info = tarfile.TarInfo(f"{base}/{name}")
                info.size, info.mtime = len(data), now_ms // 1000
                tar.addfile(info, io.BytesIO(data))
        self.log("info", f"data exported to {relative}")
        return "".join(lines) + emqx58.data_export_done_text(relative)

    def lookup_file(self, name: str) -> Path | None:
        """lookup_file/1 (:1030-1046): a path that is a regular file (relative to the cwd),
        else a bare name in data/backup/."""
        path = Path(name) if name.startswith("/") else HOME / name
        if path.is_file():
            return path
        if name == Path(name).name and (HOME / "data" / "backup" / name).exists():
            return HOME / "data" / "backup" / name
        return None

    async def import_backup(self, name: str) -> str:
        """import/2 and do_import/2 (:248-262, 619-644): the checks in EMQX's order, then the
        tables merged here and on every running member."""
        found = self.lookup_file(name)
        if found is None:
            return emqx58.data_import_failed_text(emqx58.IMPORT_ERRORS["not_found"])
        relative = str(found.relative_to(HOME)) if found.is_relative_to(HOME) else str(found)
        lines = [f"Importing data from {emqx58.erlang_string(relative)}...\n"]
        folder = found.name.removesuffix(".tar.gz")
        if not found.name.endswith(".tar.gz"):
            return "".join(lines) + emqx58.data_import_failed_text(emqx58.IMPORT_ERRORS["bad_backup_name"])
        extracted = HOME / "data" / "backup" / folder
        try:
            try:
                with tarfile.open(found, "r:gz") as tar:
                    members = tar.getmembers()
                    if any(Path(m.name).parts[:1] != (folder,) for m in members):
                        reason = emqx58.IMPORT_ERRORS["bad_archive_dir"]
                        return "".join(lines) + emqx58.data_import_failed_text(reason)
                    for member in members:  # erl_tar:extract into data/backup (regular files)
                        source = tar.extractfile(member) if member.isfile() else None
                        if source is None or ".." in Path(member.name).parts:
                            continue
                        target = HOME / "data" / "backup" / member.name
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(source.read())
            except PermissionError:
                return "".join(lines) + emqx58.data_import_failed_text(f"{relative}: permission denied")
            except (OSError, tarfile.TarError) as exc:
                return "".join(lines) + emqx58.data_import_failed_text(f"{relative}: {exc}")
            try:
                meta = emqx58.parse_hocon((extracted / "META.hocon").read_text())
            except (OSError, emqx58.HoconError):
                meta = {}
            refused = emqx58.check_backup_meta(meta, VERSION)
            if refused is not None:
                return "".join(lines) + emqx58.data_import_failed_text(refused)
            lines.append("Importing cluster configuration...\n")
            lines.append("Importing built-in database...\n")
            for table in self.backup_tables():
                table_file = extracted / "mnesia" / table
                if not table_file.exists():
                    lines.append(f"No backup file for {table} database table...\n")
                    continue
                lines.append(f"Importing {table} database table...\n")
                await self.restore_table(table, json.loads(table_file.read_text()))
        finally:
            shutil.rmtree(extracted, ignore_errors=True)
        self.log("info", f"data imported from {relative}")
        return "".join(lines) + emqx58.DATA_IMPORTED

    async def restore_table(self, table: str, rows: Any) -> None:
        """mnesia:restore(..., [{default_op, keep_tables}]): records merged, same keys overwritten,
        on every member (the tables are replicated)."""
        if table == "emqx_authn_mnesia":
            self.access.users.import_rows([emqx58_access.UserRow.from_json(r) for r in rows], override=True)
            self.save_users()
            await self.tell(self.peers(), {"op": "authn_put", "rows": rows})
        elif table == "emqx_admin" and rows:
            self.put_admin(rows)
            await self.tell(self.peers(), {"op": "admin_put", "admin": rows})

    def put_admin(self, admin: dict[str, Any]) -> None:
        (self.config.mnesia_dir / ADMIN_FILE).write_text(json.dumps(admin))

    async def status_text(self) -> str:
        return (await self.ctl(["cluster", "status"]))[1]

    async def join(self, seed: str) -> tuple[int, str]:
        name = self.config.node_name
        if seed == name:
            return 0, "Ignore.\n"
        if seed in self.members:
            return 0, f"Failed to join the cluster: {{already_in_cluster,{_atom(seed)}}}\n"
        try:
            result = await self.call_peer(seed, {"op": "join", "node": name})
        except CallError as exc:
            self.log("warning", f"join {seed} failed: {exc}")
            return 0, f"Failed to join the cluster: {{node_down,{_atom(seed)}}}\n"
        # ekka leaves the old cluster before joining the new one.
        await self.tell(self.peers(), {"op": "remove", "node": name})
        self.members = set(result["members"]) | {name, seed}
        self.removed = set()
        self.save_membership()
        # mria replaces a joining node's tables with the cluster's.
        with contextlib.suppress(CallError):
            self.access.users = emqx58_access.UserDb.from_json(await self.call_peer(seed, {"op": "authn_all"}))
            self.save_users()
        await self.tell([peer for peer in self.peers() if peer != seed], {"op": "announce", "node": name})
        self.log("info", f"joined the cluster of {seed}: {sorted(self.members)}")
        return 0, "Join the cluster successfully.\n" + await self.status_text()

    async def leave(self) -> tuple[int, str]:
        name = self.config.node_name
        if not self.peers():
            return 0, "Failed to leave the cluster: node_not_in_cluster\n"
        await self.tell(self.peers(), {"op": "remove", "node": name})
        self.members = {name}
        self.removed = set()
        self.save_membership()
        self.log("info", "left the cluster")
        return 0, "Leave the cluster successfully.\n" + await self.status_text()

    async def force_leave(self, node: str) -> tuple[int, str]:
        if node == self.config.node_name:
            return 0, "Ignore.\n"
        if node not in self.members:
            return 0, "Failed to remove the node from cluster: node_not_in_cluster\n"
        self.members.discard(node)
        self.removed.add(node)
        self.save_membership()
        await self.tell([*self.peers(), node], {"op": "remove", "node": node})
        self.log("info", f"forced {node} out of the cluster")
        return 0, "Remove the node from cluster successfully.\n" + await self.status_text()

    # distribution server --------------------------------------------------------------------

    async def handle_distribution(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        challenge = secrets.token_hex(16)
        try:
            writer.write(json.dumps({"node": self.config.node_name, "challenge": challenge}).encode() + b"\n")
            await writer.drain()
            request = json.loads(await asyncio.wait_for(reader.readline(), CALL_TIMEOUT) or b"null")
            if not isinstance(request, dict):
                return
            if not hmac.compare_digest(str(request.get("digest", "")), _digest(self.config.cookie, challenge)):
                # Erlang logs this on the receiving node and drops the connection.
                self.log("error", "Connection attempt from disallowed node (cookie mismatch)")
                answer: dict[str, Any] = {"error": "bad_cookie"}
            else:
                answer = await self.dispatch(request)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (OSError, TimeoutError, ValueError):
            pass
        finally:
            writer.close()

    async def dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        name = self.config.node_name
        node = str(request.get("node", ""))
        # The replicated tables: the authn users (mnesia) and the authz rules (a cluster-wide
        # config update).
        if op == "authn_all":
            return {"result": self.access.users.to_json()}
        if op == "authn_put":
            rows = [emqx58_access.UserRow.from_json(item) for item in request.get("rows", [])]
            self.access.users.import_rows(rows, override=True)
            self.save_users()
            return {"result": "ok"}
        if op == "authn_delete":
            self.access.users.rows.pop(str(request.get("user_id")), None)
            self.save_users()
            return {"result": "ok"}
        if op == "admin_put":
            self.put_admin(dict(request.get("admin", {})))
            return {"result": "ok"}
        if op == "authz_rules":
            self.apply_rules(str(request.get("text", "")))
            return {"result": "ok"}
        if op == "ping":
            return {"result": {"node": name, "status": self.status, "version": VERSION}}
        if op == "ctl":
            code, output = await self.ctl([str(a) for a in request.get("args", [])])
            return {"result": {"code": code, "output": output}}
        if self.status != "started":
            return {"error": "not_started"}
        if op == "join":
            self.members.add(node)
            self.removed.discard(node)
            self.save_membership()
            await self.tell([peer for peer in self.peers() if peer != node], {"op": "announce", "node": node})
            self.log("info", f"{node} joined")
            return {"result": {"members": sorted(self.members)}}
        if op == "announce":
            if node in self.removed:
                return {"error": "removed"}
            if node not in self.members:
                self.members.add(node)
                self.save_membership()
                self.log("info", f"{node} announced itself")
            return {"result": {"members": sorted(self.members)}}
        if op == "remove":
            if node == name:  # forced out by the others: standalone from now on
                self.members = {name}
            else:
                self.members.discard(node)
            self.save_membership()
            self.log("info", f"{node} removed from the cluster")
            return {"result": "ok"}
        return {"error": f"unknown op {op!r}"}

    async def reannounce(self) -> None:
        """Tell the peers of the membership file that this node is back (retrying a while)."""
        pending = set(self.peers())
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline and not self.stopping.is_set():
            for peer in sorted(pending):
                try:
                    await self.call_peer(peer, {"op": "announce", "node": self.config.node_name})
                    pending.discard(peer)
                except CallError as exc:
                    if "removed" in str(exc):  # forced out while down: standalone now
                        self.log("warning", f"{peer} says this node was removed from the cluster")
                        self.members.discard(peer)
                        self.save_membership()
                        pending.discard(peer)
            await asyncio.sleep(1)

    # other listeners ------------------------------------------------------------------------

    async def handle_dashboard(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            method, path = [*lines[0].split(" "), "", ""][:2]
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
            target, _, query = path.partition("?")
            if target.startswith("/api/v5/") and not self.authorized(target, headers.get("authorization", "")):
                code, content_type, text = (
                    401,
                    "application/json",
                    json.dumps({"code": "BAD_API_KEY_OR_SECRET", "message": "Check api_key/api_secret"}),
                )
            else:
                code, content_type, text = await self.http(method, urllib.parse.unquote(target), query, body)
            payload = text.encode()
            reason = {
                200: "OK",
                204: "No Content",
                400: "Bad Request",
                401: "Unauthorized",
                404: "Not Found",
                503: "Service Unavailable",
            }.get(code, "")
            writer.write(
                f"HTTP/1.1 {code} {reason}\r\ncontent-type: {content_type}\r\n"
                f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def dashboard_tls_context(self) -> ssl.SSLContext:
        """The HTTPS listener's certificate and key: unreadable, the listener does not start."""
        if self.config.dashboard_tls is None:
            raise StartError("Failed to start dashboard https: ssl_options.certfile/keyfile unset")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(*self.config.dashboard_tls)
        except (OSError, ssl.SSLError) as exc:
            raise StartError(f"Failed to start dashboard https: {exc}") from exc
        return context

    def authorized(self, path: str, authorization: str) -> bool:
        """emqx_dashboard.erl authorize/1: login and status are open, and Prometheus stats unless
        prometheus.enable_basic_auth (emqx_prometheus_api.erl security/0); the rest takes a
        bearer token from login or an API key as HTTP Basic (api_key_authorize/3)."""
        if path in ("/api/v5/login", "/api/v5/status"):
            return True
        if path == PROMETHEUS_PATH and not self.config.prometheus_basic_auth:
            return True
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return credentials in self.tokens
        if scheme.lower() != "basic":
            return False
        try:
            key, _, secret = base64.b64decode(credentials).decode().partition(":")
        except ValueError:
            return False
        return key in self.api_keys and hmac.compare_digest(self.api_keys[key], secret)

    async def http(self, method: str, path: str, query: str, body: bytes) -> tuple[int, str, str]:
        """The REST calls the program and the tests make (status, login, users, topic rules)."""
        if path.startswith(AUTHN_PATH) or path == "/api/v5/authorization/sources/file":
            return await self.access_api(method, path, query, body)
        if method == "GET" and path == PROMETHEUS_PATH:
            members, down = await self.running_nodes()
            return (
                200,
                "text/plain",
                (
                    f"emqx_cluster_nodes_running {len(members)}\nemqx_cluster_nodes_stopped {len(down)}\n"
                    f"emqx_authentication_users {len(self.access.users.rows)}\n"
                ),
            )
        name = self.config.node_name
        if method == "GET" and path in ("/status", "/api/v5/status"):
            running = "running" if self.status == "started" else "not_running"
            code = 200 if self.status == "started" else 503
            return code, "text/plain", f"Node {name} is {self.status}\nemqx is {running}"
        if method == "POST" and path == "/api/v5/login":
            try:
                credentials = json.loads(body or b"{}")
            except ValueError:
                credentials = {}
            admin_file = self.config.mnesia_dir / ADMIN_FILE
            if not admin_file.exists():
                return 401, "application/json", json.dumps({"code": "BAD_USERNAME_OR_PWD", "message": "Auth failed"})
            admin = json.loads(admin_file.read_text())
            given = str(credentials.get("password", ""))
            if credentials.get("username") == admin["username"] and hmac.compare_digest(
                _password_hash(given, admin["salt"]), admin["hash"]
            ):
                token = secrets.token_hex(16)
                self.tokens.add(token)
                return 200, "application/json", json.dumps({"token": token, "version": VERSION, "license": {}})
            return 401, "application/json", json.dumps({"code": "BAD_USERNAME_OR_PWD", "message": "Auth failed"})
        return 404, "application/json", json.dumps({"code": "NOT_FOUND", "message": "stand-in: not implemented"})

    async def access_api(self, method: str, path: str, query: str, body: bytes) -> tuple[int, str, str]:
        """emqx_authn_user_import_api.erl import_users, emqx_authn_api.erl users and
        emqx_authz_api_sources.erl source(put): applied here and on every running member."""
        json_type = "application/json"
        if path == "/api/v5/authorization/sources/file" and method == "PUT":
            try:
                text = str(json.loads(body)["rules"])
                emqx58_access.parse_acl(text)
            except (ValueError, KeyError, emqx58_access.AclError) as exc:
                return 400, json_type, json.dumps({"code": "BAD_REQUEST", "message": str(exc)})
            self.apply_rules(text)
            await self.tell(self.peers(), {"op": "authz_rules", "text": text})
            return 204, json_type, ""
        if self.config.access.authenticator is None:
            return 404, json_type, json.dumps({"code": "NOT_FOUND", "message": "Authenticator not found"})
        if path == f"{AUTHN_PATH}/import_users" and method == "POST":
            try:
                rows = [emqx58_access.UserRow.from_json(item) for item in json.loads(body)]
            except (ValueError, TypeError) as exc:
                return 400, json_type, json.dumps({"code": "BAD_REQUEST", "message": str(exc)})
            if "type=plain" in query.split("&"):
                return 400, json_type, json.dumps({"code": "BAD_REQUEST", "message": "stand-in: type=hash only"})
            counts = self.access.users.import_rows(rows, override=True)
            self.save_users()
            await self.tell(self.peers(), {"op": "authn_put", "rows": [row.as_json() for row in rows]})
            return 200, json_type, json.dumps(counts, separators=(",", ":"))
        if path == f"{AUTHN_PATH}/users" and method == "GET":
            data = [
                {"user_id": row["user_id"], "is_superuser": row["is_superuser"]} for row in self.access.users.to_json()
            ]
            return 200, json_type, json.dumps({"data": data, "meta": {"page": 1, "limit": 100, "count": len(data)}})
        if path.startswith(f"{AUTHN_PATH}/users/") and method == "DELETE":
            user_id = path.removeprefix(f"{AUTHN_PATH}/users/")
            if self.access.users.rows.pop(user_id, None) is None:
                return 404, json_type, json.dumps({"code": "NOT_FOUND", "message": "User not found"})
            self.save_users()
            await self.tell(self.peers(), {"op": "authn_delete", "user_id": user_id})
            return 204, json_type, ""
        return 404, json_type, json.dumps({"code": "NOT_FOUND", "message": "stand-in: not implemented"})

    def apply_rules(self, text: str) -> None:
        """A cluster-wide update of the file source: written to data/authz/acl.conf and read."""
        target = HOME / "data" / "authz" / "acl.conf"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        self.access.acl = emqx58_access.parse_acl(text)
        self.log("info", f"authorization rules updated: {len(self.access.acl)} rules")

    async def accept_and_close(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    # lifecycle ------------------------------------------------------------------------------

    async def bind(
        self, listener: Listener, handler: Callable[..., Awaitable[None]], tls: ssl.SSLContext | None = None
    ) -> None:
        try:
            server = await asyncio.start_server(handler, listener.host, listener.port, reuse_address=True, ssl=tls)
        except OSError as exc:
            if listener.name == "distribution":  # ekka_dist:do_listen/4
                raise StartError(f'distribution: {{error,"port {listener.port} is in use"}} ({exc})') from exc
            reason = "eaddrinuse" if exc.errno == errno.EADDRINUSE else f"{exc.strerror}"
            raise StartError(f"Failed to start {listener.name} on {listener}: {reason}") from exc
        self.servers.append(server)
        self.log("info", f"{listener.name} started on {listener}")

    def first_boot(self) -> None:
        """Create the node's mnesia dir; the dashboard password is fixed when the admin is created."""
        try:
            self.config.mnesia_dir.mkdir(parents=True, exist_ok=True)
            probe = self.config.mnesia_dir / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise StartError(f"cannot write the data dir {self.config.mnesia_dir}: {exc}") from exc
        admin_file = self.config.mnesia_dir / ADMIN_FILE
        admin = emqx58.default_admin(self.config.rules)
        if admin_file.exists():
            self.log("info", "dashboard admin exists: default_password is ignored (first boot only)")
        elif admin is not None:
            salt = secrets.token_hex(8)
            data = {"username": admin[0], "salt": salt, "hash": _password_hash(admin[1], salt)}
            admin_file.write_text(json.dumps(data))
            self.log("info", f"dashboard user {admin[0]} created with the configured default password")

    async def start_mosquitto(self) -> str:
        """mosquitto on a container-private unix socket (started once); returns the socket path."""
        sock_path = RUN_DIR / "mosquitto.sock"
        if self.mosquitto is not None:
            return str(sock_path)
        sock_path.unlink(missing_ok=True)
        conf = RUN_DIR / "mosquitto.conf"
        conf.write_text(
            f"listener 0 {sock_path}\nallow_anonymous true\npersistence false\n"
            "log_dest stderr\nlog_type error\nlog_type warning\n"
        )
        self.mosquitto = subprocess.Popen(["mosquitto", "-c", str(conf)], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not sock_path.exists():
            if self.mosquitto.poll() is not None or time.monotonic() > deadline:
                raise StartError("the MQTT engine (mosquitto) did not start")
            await asyncio.sleep(0.05)
        return str(sock_path)

    async def mqtt_handler(self, listener: Listener) -> Callable[..., Awaitable[None]]:
        sock_path = await self.start_mosquitto()
        proxy_protocol, header_timeout = self.config.proxy_protocol.get(listener.name, (False, 3.0))
        if proxy_protocol:
            return self._proxied_handler(listener, sock_path, header_timeout)
        return self._plain_handler(sock_path)

    def _proxied_handler(
        self, listener: Listener, sock_path: str, header_timeout: float
    ) -> Callable[..., Awaitable[None]]:
        from tests.support.emqx.proxy_shim import Shim  # needs proxy-protocol, copied into the image

        node = self

        class UnixShim(Shim):
            """The integration tier's shim, relaying to mosquitto's unix socket (any source),
            with EMQX's access checks on the way (mqtt_gate)."""

            async def relay(
                self,
                reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter,
                up_reader: asyncio.StreamReader,
                up_writer: asyncio.StreamWriter,
                client_address: str,
            ) -> None:
                await mqtt_gate.relay(
                    node.access, client_address, reader, writer, up_reader, up_writer, self.record, node.live
                )

            def source_address(self, result: Any) -> str:
                return self.host

            async def open_upstream(self, source: str) -> socket.socket:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.setblocking(False)
                    await asyncio.get_running_loop().sock_connect(sock, sock_path)
                except BaseException:
                    sock.close()
                    raise
                return sock

        events = (RUN_DIR / "proxy-events.jsonl").open("a", encoding="utf-8")
        return UnixShim(listener.host, 0, events, header_timeout).handle

    def _plain_handler(self, sock_path: str) -> Callable[..., Awaitable[None]]:

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_unix_connection(sock_path)
            except OSError:
                writer.close()
                return
            peer = writer.get_extra_info("peername")
            await mqtt_gate.relay(
                self.access, str(peer[0]) if peer else "", reader, writer, up_reader, up_writer, live=self.live
            )

        return handle

    def write_booted(self, distribution: Listener) -> None:
        """What bin/emqx reads off the node's `ps` line (name, -setcookie), for `emqx ctl`."""
        data = {
            "pid": os.getpid(),
            "name": self.config.node_name,
            "cookie": self.config.cookie,
            "host": distribution.host,
            "port": distribution.port,
        }
        path = RUN_DIR / "booted.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.chmod(0o600)
        tmp.replace(path)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        config = self.config
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        (RUN_DIR / "booted.json").unlink(missing_ok=True)
        self.log("info", f"EMQX {VERSION} STAND-IN (emqx-cluster e2e tests, not EMQX) starting as {config.node_name}")
        if config.cookie == emqx58.DEFAULT_COOKIE:
            self.log("warning", "node.cookie is EMQX's public default")
        try:
            self.load_acl()  # the config loads before anything starts
            for listener in config.sockets:
                if listener.name == "distribution":
                    await self.bind(listener, self.handle_distribution, config.tls.dist_server if config.tls else None)
                    self.write_booted(listener)
                    # The VM is up: mria opens the data dir, the dashboard app adds its admin,
                    # the authenticator imports its bootstrap file, the API keys theirs.
                    self.first_boot()
                    self.load_membership()
                    self.load_users()
                    self.load_api_keys()
                elif listener.name.startswith("listener tcp:"):
                    await self.bind(listener, await self.mqtt_handler(listener))
                elif listener.name == "dashboard http":
                    await self.bind(listener, self.handle_dashboard)
                elif listener.name == "dashboard https":
                    await self.bind(listener, self.handle_dashboard, self.dashboard_tls_context())
                elif listener.name == "rpc" and config.tls is not None:
                    await self.bind(listener, self.accept_and_close, config.tls.rpc_server)
                else:  # gen_rpc, ssl/ws/wss listeners, dashboard https: bound, not served
                    await self.bind(listener, self.accept_and_close)
        except StartError as exc:
            self.log("error", str(exc))
            self.shutdown()
            return 1
        self.status = "started"
        self.log("info", f"EMQX {VERSION} is running now! (stand-in) members: {sorted(self.members)}")
        announcing = asyncio.create_task(self.reannounce())
        stop = asyncio.create_task(self.stopping.wait())
        watch = asyncio.create_task(self.watch_mosquitto())
        done, _ = await asyncio.wait({stop, watch}, return_when=asyncio.FIRST_COMPLETED)
        announcing.cancel()
        code = 0 if stop in done else 1
        self.log("info" if code == 0 else "error", "stopping" if code == 0 else "the MQTT engine died")
        self.shutdown()
        return code

    async def watch_mosquitto(self) -> None:
        while self.mosquitto is None or self.mosquitto.poll() is None:
            await asyncio.sleep(1)

    def shutdown(self) -> None:
        for server in self.servers:
            server.close()
        if self.mosquitto is not None and self.mosquitto.poll() is None:
            self.mosquitto.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.mosquitto.wait(5)


class StartError(Exception):
    pass


def _password_hash(password: str, salt: str) -> str:
    return hashlib.sha256((salt + password).encode()).hexdigest()


def _atom(node: str) -> str:
    return f"'{node}'"


# --- entry points ------------------------------------------------------------------------------


def foreground() -> int:
    try:
        config = load_config(os.environ)
    except ValueError as exc:
        print(f"ERROR: the node cannot boot: {exc}", file=sys.stderr, flush=True)
        return 1
    return asyncio.run(Node(config, Log(config.log_to_file)).run())


def ctl(args: list[str]) -> int:
    """`emqx ctl ...`: bin/emqx's checks (emqx58.cli_precheck), then the local node over distribution."""
    env = dict(os.environ)
    try:
        booted = json.loads((RUN_DIR / "booted.json").read_text())
        os.kill(int(booted["pid"]), 0)
    except (OSError, ValueError, KeyError):
        name = env.get("EMQX_NODE__NAME") or env.get("EMQX_NODE_NAME") or emqx58.DEFAULT_NODE_NAME
        sys.stderr.write(f"ERROR: Node {name} is not running?\n")
        return 1
    node = emqx58.NodeConfig(
        name=booted["name"], cookie=booted["cookie"], dashboard_username="", dashboard_password="", sockets=()
    )
    failure = emqx58.cli_precheck(env, node)
    if failure is not None:
        sys.stderr.write(failure.stderr)
        return failure.rc
    host = booted["host"] if booted["host"] not in ("0.0.0.0", "::") else node_host(node.name)
    try:
        # nodetool dials with the optfile's client section, as bin/emqx passes it to `emqx ctl`.
        tls = cluster_tls(env)
    except ValueError as exc:
        sys.stderr.write(f"ERROR: {exc}\n")
        return 1
    request = {"op": "ctl", "args": args}
    try:
        result = asyncio.run(
            call(node.name, int(booted["port"]), node.cookie, request, host, tls.dist_client if tls else None)
        )
    except CallError:
        sys.stderr.write(emqx58.not_responding_text(node.name))
        return 1
    sys.stdout.write(str(result["output"]))
    return int(result["code"])


def main(argv: list[str]) -> int:
    if argv[:1] == ["foreground"]:
        return foreground()
    if argv[:1] == ["ctl"]:
        return ctl(argv[1:])
    if argv[:1] == ["ping"]:
        code = ctl(["status"])
        return code
    if argv[:1] == ["version"]:
        print(VERSION)
        return 0
    print("usage: emqx foreground | ctl <command> | ping | version  (EMQX stand-in for the e2e tests)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
