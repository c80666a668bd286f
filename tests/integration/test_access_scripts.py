"""The client registry's REST scripts against a REAL EMQX 5.8.6 node (tests/support/emqx_nodes.py):
the node boots with the environment and access files the program renders (its bootstrap API key
among them), the scripts run as the host runs them (`sh -s <operation>`, the program on stdin)
with a `docker` whose `exec -i <node> curl` runs curl for that node (tests/support/emqx_docker.py),
and what they change is checked where it matters: an MQTT client through the node's listener
(PROXY protocol on, as Nginx speaks it: a PROXY v1 header first), the API's own view.

The stack has two nodes; only emqx1 runs (emqx2 is a node whose container is down).
"""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from components.config_access import AclRuleConfig
from components.render.access import MqttUser, acl_file, hash_password
from components.render.access_scripts import acl_apply_script, user_delete_script, user_upsert_script
from components.render.host_scripts import host_program
from tests.support.emqx_nodes import (
    API_SECRET,
    DASHBOARD_PASSWORD,
    ReleaseCluster,
    ReleaseNode,
    release_cluster,
    release_stack,
)
from tests.support.emqx_reason_codes import BAD_USERNAME_OR_PASSWORD, NO_MATCHING_SUBSCRIBERS, NOT_AUTHORIZED
from tests.support.lb_stack import MqttRefusedError, connect_mqtt, raw_mqtt_connect
from tests.support.ports import wait_until

pytestmark = pytest.mark.integration

USER_ID = "sensor-1"
USERS_PATH = "/api/v5/authentication/password_based%3Abuilt_in_database/users"
ACL_PATH = "/api/v5/authorization/sources/file"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReleaseCluster]:
    stack = release_stack(tmp_path_factory.mktemp("access"), nodes=2)
    with release_cluster(stack, start=False) as cluster:
        yield cluster


@pytest.fixture
def cluster(nodes: ReleaseCluster) -> ReleaseCluster:
    """The nodes with emqx1 running, the call log empty."""
    seed = nodes.node(1)
    if not seed.running:
        nodes.start(seed)
    nodes.clear_calls()
    return nodes


def user(password: str, superuser: bool = False) -> MqttUser:
    hashed, salt = hash_password("sha256", password, uuid.uuid4().bytes)  # the dev stack's hash
    return MqttUser(USER_ID, hashed, salt, superuser)


def run(script: str, cluster: ReleaseCluster) -> subprocess.CompletedProcess[str]:
    """The script as a host command runs it: `sh -s create`, the program on standard input."""
    return subprocess.run(
        ["sh", "-s", "create"],
        input=host_program({"create": script}),
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def connack(node: ReleaseNode, username: str | None, password: str | None) -> bytes:
    """An MQTT 3.1.1 CONNECT through the node's listener, after the PROXY header Nginx would send."""
    return raw_mqtt_connect(
        *node.mqtt_address, f"c-{uuid.uuid4().hex[:6]}", proxy_protocol=True, username=username, password=password
    )


def mqtt5(node: ReleaseNode, password: str) -> Any:
    return connect_mqtt(
        *node.mqtt_address,
        client_id=f"m-{uuid.uuid4().hex[:6]}",
        username=USER_ID,
        password=password,
        proxy_protocol=True,
    )


ACCEPTED, BAD_PASSWORD, REFUSED = b"\x20\x02\x00\x00", b"\x20\x02\x00\x04", b"\x20\x02\x00\x05"


def test_a_client_upserted_while_the_node_boots_is_retried_until_the_api_answers(nodes: ReleaseCluster) -> None:
    node = nodes.node(1)
    if node.running:
        nodes.stop(node)
    nodes.clear_calls()
    script = user_upsert_script("emqx1", node.plan.ports.dashboard, API_SECRET, user("first-password-0123"), 120)
    outcome: list[subprocess.CompletedProcess[str]] = []
    upsert = threading.Thread(target=lambda: outcome.append(run(script, nodes)))
    upsert.start()
    wait_until(lambda: nodes.calls(), "the script's first attempt", timeout=30, interval=0.1)
    nodes.start(node)
    upsert.join(150)
    (done,) = outcome
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"MQTT client {USER_ID}: done (HTTP 200)\n"
    execs = [call for call in nodes.calls() if call.argv[:2] == ["exec", "-i"]]
    assert execs[0].rc == 1 and "is not running" in execs[0].stderr  # the container was down at first
    assert len(execs) >= 2 and execs[-1].rc == 0
    assert connack(node, USER_ID, "first-password-0123") == ACCEPTED


def test_a_client_is_imported_with_its_hash_and_connects_with_its_password(cluster: ReleaseCluster) -> None:
    seed = cluster.node(1)
    done = run(
        user_upsert_script("emqx1", seed.plan.ports.dashboard, API_SECRET, user("a-password-0123456"), 30), cluster
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"MQTT client {USER_ID}: done (HTTP 200)\n"
    [call] = cluster.calls()
    counts = json.loads(call.stdout.splitlines()[0])  # new (success) or over an earlier test's (override)
    assert counts | {"success": 0, "override": 0} == {
        "total": 1,
        "success": 0,
        "failed": 0,
        "override": 0,
        "skipped": 0,
    }
    assert connack(seed, USER_ID, "a-password-0123456") == ACCEPTED
    assert connack(seed, USER_ID, "not-the-password") == BAD_PASSWORD
    assert connack(seed, None, None) == BAD_PASSWORD  # nobody gets in without a password
    assert connack(seed, "mallory", "any-password-at-all") == REFUSED  # no such user: not authorized
    with pytest.raises(MqttRefusedError) as wrong:
        mqtt5(seed, "not-the-password")
    assert wrong.value.code == BAD_USERNAME_OR_PASSWORD
    code, body = seed.api("GET", f"{USERS_PATH}/{USER_ID}")
    assert (code, json.loads(body)) == (200, {"user_id": USER_ID, "is_superuser": False})


def test_a_changed_password_replaces_the_old_one(cluster: ReleaseCluster) -> None:
    seed = cluster.node(1)
    port = seed.plan.ports.dashboard
    assert run(user_upsert_script("emqx1", port, API_SECRET, user("old-password-0123456"), 30), cluster).returncode == 0
    assert connack(seed, USER_ID, "old-password-0123456") == ACCEPTED
    done = run(user_upsert_script("emqx1", port, API_SECRET, user("new-password-0123456"), 30), cluster)
    assert done.returncode == 0, done.stderr
    assert '"override":1' in cluster.calls()[-1].stdout
    assert connack(seed, USER_ID, "old-password-0123456") == BAD_PASSWORD
    assert connack(seed, USER_ID, "new-password-0123456") == ACCEPTED


def test_a_wrong_api_key_fails_at_once_with_what_to_check(cluster: ReleaseCluster) -> None:
    seed = cluster.node(1)
    script = user_upsert_script(
        "emqx1", seed.plan.ports.dashboard, "NotTheStacksSecret0123", user("pw-0123456789ab"), 60
    )
    done = run(script, cluster)
    assert done.returncode == 1 and len(cluster.calls()) == 1
    assert "refused the program's API key (HTTP 401)" in done.stderr and "data dir" in done.stderr
    assert '{"code":"BAD_API_KEY_OR_SECRET","message":"Check api_key/api_secret"}' in done.stderr


def test_removing_a_client_makes_it_unable_to_connect_and_again_is_done(cluster: ReleaseCluster) -> None:
    seed = cluster.node(1)
    port = seed.plan.ports.dashboard
    assert run(user_upsert_script("emqx1", port, API_SECRET, user("gone-password-012345"), 30), cluster).returncode == 0
    removed = run(user_delete_script("emqx1", port, API_SECRET, USER_ID, 30), cluster)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout == f"MQTT client {USER_ID} removal: done (HTTP 204)\n"
    assert connack(seed, USER_ID, "gone-password-012345") == REFUSED  # no such user any more
    again = run(user_delete_script("emqx1", port, API_SECRET, USER_ID, 30), cluster)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"MQTT client {USER_ID} removal: done (HTTP 404)\n"
    assert seed.api("GET", f"{USERS_PATH}/{USER_ID}")[0] == 404


RULES = [
    {"permission": "allow", "username": USER_ID, "action": "publish", "topics": ["sensors/${username}/#"]},
    {"permission": "allow", "username": USER_ID, "action": "subscribe", "topics": ["cmd/${username}", "eq all/#"]},
    {"permission": "deny", "action": "subscribe", "topics": ["#"]},
]


def test_topic_rules_apply_on_the_running_node_as_declared(cluster: ReleaseCluster) -> None:
    seed = cluster.node(1)
    port = seed.plan.ports.dashboard
    assert run(user_upsert_script("emqx1", port, API_SECRET, user("rules-password-0123"), 30), cluster).returncode == 0
    acl = acl_file([AclRuleConfig.model_validate(rule) for rule in RULES])
    done = run(acl_apply_script("emqx1", port, API_SECRET, acl, 30), cluster)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "MQTT topic rules: done (HTTP 204)\n"
    assert API_SECRET not in done.stdout + done.stderr
    code, body = seed.api("GET", ACL_PATH)
    assert (code, json.loads(body)) == (200, {"type": "file", "enable": True, "rules": acl})
    client = mqtt5(seed, "rules-password-0123")
    try:
        # subscribe: its command topic and the literal `all/#` granted, anything else 0x87
        assert client.subscribe([(f"cmd/{USER_ID}", 1), ("all/#", 1), ("cmd/other", 1), ("#", 0)]) == [1, 1, 0x87, 0x87]
        # publish, QoS 1: allowed, and nobody subscribes: PUBACK 0x10, no matching subscribers
        # (emqx_channel.erl:786-790); outside the rules: PUBACK 0x87, not authorized (:639-648,
        # authorization.deny_action = ignore: the client stays connected)
        inside = client.publish(f"sensors/{USER_ID}/temp", b"21", qos=1)
        outside = client.publish("sensors/other/temp", b"21", qos=1)
        assert client.publish_reasons[inside.mid] == NO_MATCHING_SUBSCRIBERS
        assert client.publish_reasons[outside.mid] == NOT_AUTHORIZED
        assert not client.disconnected.is_set()
    finally:
        client.close()


def test_topic_rules_emqx_cannot_read_are_refused_and_the_old_ones_kept(cluster: ReleaseCluster) -> None:
    seed = cluster.node(1)
    port = seed.plan.ports.dashboard
    before = seed.api("GET", ACL_PATH)
    done = run(acl_apply_script("emqx1", port, API_SECRET, "{allow, all\n", 30), cluster)
    assert done.returncode == 1
    assert "answered HTTP 400" in done.stderr and "bad_acl_file_content" in done.stderr
    assert seed.api("GET", ACL_PATH) == before


def test_removing_a_client_while_its_node_is_down_but_others_run_fails_at_once(cluster: ReleaseCluster) -> None:
    """The client would stay valid on the running nodes: say so, no waiting out the deadline."""
    down = cluster.node(2)
    assert not down.running
    done = run(user_delete_script("emqx2", down.plan.ports.dashboard, API_SECRET, USER_ID, 60), cluster)
    assert done.returncode == 1
    assert "container emqx2 does not run" in done.stderr and "docker start emqx2" in done.stderr
    assert [call.argv[0] for call in cluster.calls()] == ["inspect", "ps"]  # no exec


def test_an_import_counted_as_failed_fails_the_command(cluster: ReleaseCluster) -> None:
    """EMQX 5.8.6's REST import always overrides (emqx_authn_mnesia.erl:174-175 import_users/2
    with `override => true`; insert_user/2 counts `failed` only with override off, :354-361), so
    no node answers `"failed":1` to it: a scripted answer stands in for one, through the same
    node's curl, to show the script refuses an import that did not take."""

    class Failed(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0) or 0))
            payload = b'{"total":1,"success":0,"failed":1,"override":0,"skipped":0}'
            self.send_response(200)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Failed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        done = run(
            user_upsert_script("emqx1", server.server_address[1], API_SECRET, user("pw-0123456789ab"), 10), cluster
        )
    finally:
        server.shutdown()
    assert done.returncode == 1
    assert f"MQTT client {USER_ID}: the API answered 200 but not as expected" in done.stderr


def test_removing_a_client_when_no_node_runs_on_the_host_does_nothing(cluster: ReleaseCluster) -> None:
    """A destroy after the cluster went (or a broken stack): nothing left to remove the client from."""
    seed = cluster.node(1)
    cluster.stop(seed)
    done = run(user_delete_script("emqx1", seed.plan.ports.dashboard, API_SECRET, USER_ID, 10), cluster)
    assert done.returncode == 0, done.stderr
    assert "no node of the cluster runs" in done.stdout
    assert not [call for call in cluster.calls() if call.argv[0] == "exec"]


def test_the_dashboard_password_reaches_emqx_as_written(cluster: ReleaseCluster) -> None:
    """with_secrets quotes it: `#`, `"` and `${` arrive as characters, not HOCON (a comment, a
    string, a substitution); EMQX stores it for `admin` on the first boot."""
    code, body = cluster.node(1).api("POST", "/api/v5/login", {"username": "admin", "password": DASHBOARD_PASSWORD})
    assert code == 200 and "token" in json.loads(body), body
