"""scripts/backup, scripts/restore and scripts/status against a real `pulumi up` on the e2e host.

A dev-like stack of 2 nodes with `purgeData: true` gets a user created at runtime through the
REST API (not declared in the stack); scripts/backup copies an export off the host; `pulumi
destroy` and `pulumi up` start the cluster on fresh data dirs, where that user is unknown;
scripts/restore brings it back (it connects through the load balancer again), with the dashboard
admin of the backup. An archive of a newer EMQX minor is refused by the script before anything
is copied (and by the node itself when handed over directly). scripts/status lists every node.
The scripts run as a user runs them: in the project directory, with its Pulumi backend, `pulumi`
and `docker` from PATH.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import queue
import re
import secrets
import stat
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.support.e2e.cluster_probe import client_context, cluster_status, health
from tests.support.e2e.host import E2eHost
from tests.support.e2e.images import E2eImages, ensure_images
from tests.support.e2e.pulumi_cli import PulumiProject
from tests.support.e2e.stacks import PROBE_PASSWORD, PROBE_USERNAME, dev_like, probe_secrets
from tests.support.emqx_reason_codes import NOT_AUTHORIZED
from tests.support.lb_stack import MqttRefusedError, MqttSession, connect_mqtt

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
NODES = ("emqx1", "emqx2")
AUTHN_USERS = "/api/v5/authentication/password_based:built_in_database"
RUNTIME_USER = "runtime-operator"
RUNTIME_PASSWORD = "runtime-operator-password-42"
RETAINED_TOPIC = "e2e/retained/backup"
BANNED_CLIENT = "e2e-banned-device"
BANNED = 0x8A  # MQTT 5 CONNACK "Banned" (emqx_channel.erl check_banned -> ?RC_BANNED)


@pytest.fixture(scope="module")
def stack(
    bin_dir: Path, e2e_host_session: E2eHost, e2e_images: E2eImages, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PulumiProject]:
    ensure_images(e2e_host_session)
    root = tmp_path_factory.mktemp("backup-stack")
    project = PulumiProject.create(root / "project", bin_dir, stack="dev", netns=e2e_host_session.netns_path)
    project.init_stack(dev_like(e2e_host_session, root, nodes=2, waves=1, purgeData=True), probe_secrets())
    yield project
    if project.resources():
        project.destroy()


class State:
    archive: ClassVar[Path | None] = None
    dashboard_password: ClassVar[str] = ""


def script(project: PulumiProject, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """scripts/<name> in the project directory with the project's backend and CLI on PATH."""
    return subprocess.run(
        [str(REPO / "scripts" / name), *args],
        cwd=project.directory,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def dashboard_call(
    host: E2eHost, port: int, method: str, path: str, body: Any = None, auth: str | None = None
) -> tuple[int, str]:
    """One HTTP call to a node's dashboard listener on the host's loopback (inside its netns)."""
    program = (
        "import json, sys, urllib.request, urllib.error\n"
        "req = json.loads(sys.stdin.read())\n"
        "data = None if req['body'] is None else json.dumps(req['body']).encode()\n"
        "r = urllib.request.Request(req['url'], data=data, method=req['method'])\n"
        "r.add_header('content-type', 'application/json')\n"
        "if req['auth']: r.add_header('authorization', req['auth'])\n"
        "try:\n"
        "    with urllib.request.urlopen(r, timeout=30) as a: print(json.dumps([a.status, a.read().decode()]))\n"
        "except urllib.error.HTTPError as e: print(json.dumps([e.code, e.read().decode()]))\n"
    )
    request = {"url": f"http://127.0.0.1:{port}{path}", "method": method, "body": body, "auth": auth}
    done = subprocess.run(
        host.nsenter_argv(sys.executable, "-c", program),
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    status, text = json.loads(done.stdout)
    return int(status), str(text)


def api_key_auth(host: E2eHost) -> str:
    """HTTP Basic with the stack's API key (the node's access file), as the program's REST calls use it."""
    key, secret = host.docker("exec", "emqx1", "cat", "/opt/emqx/etc/access/api-keys").stdout.split(":")[:2]
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


def users(host: E2eHost, port: int) -> list[str]:
    status, text = dashboard_call(host, port, "GET", f"{AUTHN_USERS}/users", auth=api_key_auth(host))
    assert status == 200, text
    return sorted(row["user_id"] for row in json.loads(text)["data"])


def mqtt(
    host: E2eHost, project: PulumiProject, username: str, password: str, client_id: str | None = None
) -> MqttSession:
    return connect_mqtt(
        host.address,
        8884,
        client_id=client_id or f"e2e-{uuid.uuid4().hex[:8]}",
        tls_context=client_context(project.outputs()["tlsCertificate"]),
        username=username,
        password=password,
    )


def refusal(host: E2eHost, project: PulumiProject, username: str, password: str, client_id: str | None = None) -> int:
    try:
        mqtt(host, project, username, password, client_id).close()
    except MqttRefusedError as refused:
        return refused.code
    return 0


def dashboard_port(project: PulumiProject) -> int:
    return int(project.outputs()["nodes"][0]["ports"]["dashboard"])


def retained(host: E2eHost, project: PulumiProject) -> bytes | None:
    """What a new subscriber to RETAINED_TOPIC gets at once: the retained message, if any."""
    session = mqtt(host, project, PROBE_USERNAME, PROBE_PASSWORD)
    try:
        session.subscribe(RETAINED_TOPIC, qos=1)
        try:
            return bytes(session.receive(timeout=3).payload)
        except queue.Empty:
            return None
    finally:
        session.close()


def login(host: E2eHost, port: int, password: str) -> int:
    return dashboard_call(host, port, "POST", "/api/v5/login", {"username": "admin", "password": password})[0]


def test_1_a_user_created_at_runtime_is_in_the_backup(stack: PulumiProject, e2e_host_session: E2eHost) -> None:
    """Runtime data of a real EMQX: a built-in database user, a retained message and a banned
    client (emqx_authn_mnesia, emqx_retainer_mnesia and emqx_banned backup_tables/0). The MQTT
    ACL is the stack's file source, which `pulumi up` writes, not the backup's business."""
    host = e2e_host_session
    stack.up()
    assert health(host, *NODES) == dict.fromkeys(NODES, "healthy")
    outputs = stack.outputs()
    assert [row["dockerHost"] for row in outputs["nodes"]] == [host.docker_host] * 2
    port = dashboard_port(stack)
    salt = secrets.token_hex(8)
    row = {
        "user_id": RUNTIME_USER,
        "password_hash": hashlib.sha256((salt + RUNTIME_PASSWORD).encode()).hexdigest(),
        "salt": salt,
        "is_superuser": True,
    }
    status, text = dashboard_call(
        host, port, "POST", f"{AUTHN_USERS}/import_users?type=hash", [row], auth=api_key_auth(host)
    )
    assert status == 200, text
    assert RUNTIME_USER in users(host, port)
    assert refusal(host, stack, RUNTIME_USER, RUNTIME_PASSWORD) == 0
    publisher = mqtt(host, stack, PROBE_USERNAME, PROBE_PASSWORD)
    try:
        publisher.client.publish(RETAINED_TOPIC, b"kept across a restore", qos=1, retain=True).wait_for_publish(10)
    finally:
        publisher.close()
    assert retained(host, stack) == b"kept across a restore"
    ban = {"as": "clientid", "who": BANNED_CLIENT, "reason": "e2e backup"}
    status, text = dashboard_call(host, port, "POST", "/api/v5/banned", ban, auth=api_key_auth(host))
    assert status == 200, text
    assert refusal(host, stack, PROBE_USERNAME, PROBE_PASSWORD, BANNED_CLIENT) == BANNED
    State.dashboard_password = outputs["dashboardPassword"]

    backups = stack.directory / "my-backups"
    done = script(stack, "backup", stack.stack, str(backups))
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    archive = Path(done.stdout.strip().splitlines()[-1].removeprefix("wrote "))
    assert archive.parent.parent == backups
    assert re.fullmatch(r"dev-\d{8}T\d{6}Z", archive.parent.name), archive
    assert re.fullmatch(r"emqx-export-\d{4}(-\d{2}){5}\.\d{3}\.tar\.gz", archive.name), archive
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert stat.S_IMODE(archive.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(backups.stat().st_mode) == 0o700
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        meta = tar.extractfile(f"{archive.name.removesuffix('.tar.gz')}/META.hocon")
        assert meta is not None and b'version = "5.8.6"' in meta.read()
    folder = archive.name.removesuffix(".tar.gz")
    assert all(name.startswith(folder + "/") for name in names), names
    assert any(RUNTIME_USER in (tar_text(archive, name) or "") for name in names)
    for secret in (RUNTIME_PASSWORD, State.dashboard_password):
        assert secret not in done.stdout + done.stderr
    # The node's copy is gone: the archive holds credentials' hashes.
    left = host.docker("exec", "emqx1", "ls", "/opt/emqx/data/backup").stdout.split()
    assert archive.name not in left
    State.archive = archive


def tar_text(archive: Path, name: str) -> str | None:
    with tarfile.open(archive) as tar:
        member = tar.extractfile(name)
        return None if member is None else member.read().decode("utf-8", "replace")


def test_2_a_new_cluster_on_fresh_data_does_not_know_the_user(stack: PulumiProject, e2e_host_session: E2eHost) -> None:
    host = e2e_host_session
    stack.destroy()
    data = stack.directory.parent / "data"
    assert not any((data / node).exists() for node in NODES), "purgeData: the data dirs go with the stack"
    ensure_images(host)  # the destroy removed the nginx image it pulled
    stack.up()
    assert cluster_status(host, "emqx1") == {"running_nodes": [f"{n}@127.0.0.1" for n in NODES], "stopped_nodes": []}
    port = dashboard_port(stack)
    assert RUNTIME_USER not in users(host, port)
    assert refusal(host, stack, RUNTIME_USER, RUNTIME_PASSWORD) == NOT_AUTHORIZED
    assert retained(host, stack) is None
    assert refusal(host, stack, PROBE_USERNAME, PROBE_PASSWORD, BANNED_CLIENT) == 0
    assert stack.outputs()["dashboardPassword"] != State.dashboard_password


def newer_minor(archive: Path, directory: Path, version: str) -> Path:
    """The same archive (same name and folder) with META.hocon saying `version`."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / archive.name
    folder = archive.name.removesuffix(".tar.gz")
    with tarfile.open(archive) as source, tarfile.open(target, "w:gz") as out:
        for member in source.getmembers():
            data = source.extractfile(member)
            content = data.read() if data is not None else b""
            if member.name == f"{folder}/META.hocon":
                content = f'edition = ce\nversion = "{version}"\n'.encode()
            member.size = len(content)
            out.addfile(member, io.BytesIO(content))
    return target


def test_3_an_archive_of_a_newer_minor_is_refused_before_anything_is_copied(
    stack: PulumiProject, e2e_host_session: E2eHost
) -> None:
    host = e2e_host_session
    assert State.archive is not None
    newer = newer_minor(State.archive, stack.directory / "newer", "5.9.0")
    done = script(stack, "restore", stack.stack, str(newer))
    assert done.returncode == 1
    assert "Backup version 5.9.0 is newer than the cluster's EMQX version 5.8.6" in done.stderr, done.stderr
    assert "Data import failed" not in done.stderr  # the script's refusal, not the node's
    copied = host.docker("exec", "emqx1", "test", "-e", f"/opt/emqx/data/backup/{newer.name}", check=False)
    assert copied.returncode != 0
    assert RUNTIME_USER not in users(host, dashboard_port(stack))
    # Handed to the node directly, EMQX refuses it with its own text.
    subprocess.run(
        host.docker_argv(
            "exec",
            "-i",
            "emqx1",
            "sh",
            "-c",
            f"mkdir -p /opt/emqx/data/backup && cat > /opt/emqx/data/backup/{newer.name}",
        ),
        input=newer.read_bytes(),
        check=True,
    )
    answer = host.docker("exec", "emqx1", "/opt/emqx/bin/emqx", "ctl", "data", "import", newer.name).stdout
    assert answer.endswith(
        '[error] Data import failed, reason: "[warning] Backup version \\"5.9.0\\" is newer than EMQX version '
        '\\"5.8.6\\", import is not allowed.\\n".\n'
    ), answer
    host.docker("exec", "emqx1", "rm", "-f", f"/opt/emqx/data/backup/{newer.name}")
    assert RUNTIME_USER not in users(host, dashboard_port(stack))


def test_4_restore_brings_the_user_back_on_every_node(stack: PulumiProject, e2e_host_session: E2eHost) -> None:
    host = e2e_host_session
    assert State.archive is not None
    done = script(stack, "restore", stack.stack, str(State.archive))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"restored {State.archive} into stack dev" in done.stdout
    for row in stack.outputs()["nodes"]:  # the table is replicated: every node knows the user
        assert RUNTIME_USER in users(host, int(row["ports"]["dashboard"])), row["name"]
    assert refusal(host, stack, RUNTIME_USER, RUNTIME_PASSWORD) == 0
    assert refusal(host, stack, PROBE_USERNAME, PROBE_PASSWORD) == 0  # the stack's own clients stay
    assert retained(host, stack) == b"kept across a restore"
    assert refusal(host, stack, PROBE_USERNAME, PROBE_PASSWORD, BANNED_CLIENT) == BANNED
    # The stack's API key is its own again, not the backup's (ops/restore.py): users() above
    # called the REST API with it, as the program's client registry does.
    # The dashboard admin is the backup's (an import overwrites records with the same key).
    port = dashboard_port(stack)
    assert login(host, port, State.dashboard_password) == 200
    assert login(host, port, stack.outputs()["dashboardPassword"]) == 401
    # The same archive renamed is refused (EMQX needs its folder and name to match).
    renamed = stack.directory / "renamed" / "dev-backup.tar.gz"
    renamed.parent.mkdir()
    renamed.write_bytes(State.archive.read_bytes())
    refused = script(stack, "restore", stack.stack, str(renamed))
    assert refused.returncode == 1 and "must be under dev-backup/" in refused.stderr, refused.stderr


def test_5_status_lists_every_node_running_with_its_version_and_connections(
    stack: PulumiProject, e2e_host_session: E2eHost
) -> None:
    host = e2e_host_session
    done = script(stack, "status", stack.stack)
    assert done.returncode == 0, done.stderr
    host_row = done.stdout.strip().split("\n\n")[1].splitlines()[1]
    assert host_row.split()[-1] == "-"  # no metrics output: no LB connection count
    stack.set_config({"metrics": True})
    stack.up()
    client = mqtt(host, stack, PROBE_USERNAME, PROBE_PASSWORD)
    try:
        done = script(stack, "status", stack.stack)
    finally:
        client.close()
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    node_table, host_table = done.stdout.strip().split("\n\n")
    header, *rows = node_table.splitlines()
    assert header.split() == ["HOST", "NODE", "RUNNING", "CONNECTIONS", "UPTIME", "VERSION"]
    cells = [row.split() for row in rows]
    assert [(c[1], c[2], c[5]) for c in cells] == [(f"{n}@127.0.0.1", "yes", "5.8.6") for n in NODES], done.stdout
    assert sum(int(c[3]) for c in cells) == 1, done.stdout  # the client held through the LB
    capacity = next(iter(stack.outputs()["capacity"].values()))
    (host_row,) = host_table.splitlines()[1:]
    assert host_row.split()[1] == str(capacity["ceiling"])
    # metrics on: Nginx's active connections, read on the host: the client and that request at least.
    assert int(host_row.split()[-1]) >= 2, done.stdout
