"""The access the program renders, enforced by a REAL EMQX 5.8.6 node (tests/support/emqx_nodes.py),
once per password hash: the node boots with the program's users file (its clients hashed here,
imported by EMQX's bootstrap), its ACL and its environment, and real MQTT clients (paho, MQTT 5 and
3.1.1) connect through the node's listener with the PROXY header Nginx sends. The hashes are also
checked against Erlang's crypto directly, which EMQX calls (emqx_passwd.erl)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from paho.mqtt.client import MQTTv311

from components.config_access import PasswordHash
from components.render.access import PBKDF2_ITERATIONS, hash_password
from tests.support.emqx_nodes import ReleaseCluster, ReleaseNode, release_cluster, release_stack
from tests.support.emqx_reason_codes import BAD_USERNAME_OR_PASSWORD, NOT_AUTHORIZED
from tests.support.lb_stack import (
    MqttRefusedError,
    MqttSession,
    connect_mqtt,
    raw_mqtt_connect,
)

pytestmark = pytest.mark.integration

ALICE, OPS = "alice", "ops"
PASSWORDS = {ALICE: "alice-password-0123456789", OPS: "ops-password-0123456789ab"}
RULES = [
    {"permission": "allow", "username": ALICE, "action": "publish", "topics": ["sensors/${username}/#"]},
    {"permission": "allow", "username": ALICE, "action": "subscribe", "topics": ["cmd/${username}"]},
    {"permission": "deny", "action": "subscribe", "topics": ["#"]},
]


@pytest.fixture(scope="module", params=["sha256", "pbkdf2", "bcrypt"])
def node(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReleaseNode]:
    clients = [
        {"username": ALICE, "password": PASSWORDS[ALICE]},
        {"username": OPS, "password": PASSWORDS[OPS], "superuser": True},
    ]
    stack = release_stack(
        tmp_path_factory.mktemp(f"access-{request.param}"),
        nodes=1,
        mqttPasswordHash=request.param,
        mqttClients=json.dumps(clients),
        mqttAcl=json.dumps(RULES),
    )
    cluster: ReleaseCluster
    with release_cluster(stack) as cluster:
        yield cluster.node(1)


def connect(node: ReleaseNode, username: str | None, password: str | None = None, **options: object) -> MqttSession:
    return connect_mqtt(
        *node.mqtt_address,
        client_id=f"{username}-{uuid.uuid4().hex[:6]}",
        username=username,
        password=password,
        proxy_protocol=True,
        **options,  # type: ignore[arg-type]
    )


def v311_connack(node: ReleaseNode, username: str | None, password: str | None) -> bytes:
    return raw_mqtt_connect(
        *node.mqtt_address, f"raw-{uuid.uuid4().hex[:6]}", proxy_protocol=True, username=username, password=password
    )


def test_anonymous_and_wrong_passwords_are_refused_with_emqx_connack_codes(node: ReleaseNode) -> None:
    with pytest.raises(MqttRefusedError) as anonymous:
        connect(node, None)
    assert anonymous.value.code == BAD_USERNAME_OR_PASSWORD  # no password at all
    with pytest.raises(MqttRefusedError) as unknown:
        connect(node, "mallory", "any-password-at-all")
    assert unknown.value.code == NOT_AUTHORIZED  # no such user: the authenticator ignores it
    with pytest.raises(MqttRefusedError) as wrong:
        connect(node, ALICE, "not-the-password")
    assert wrong.value.code == BAD_USERNAME_OR_PASSWORD
    # MQTT 3.1.1 return codes: 5 not authorized, 4 bad user name or password.
    assert v311_connack(node, None, None) == b"\x20\x02\x00\x04"
    assert v311_connack(node, "mallory", "any-password-at-all") == b"\x20\x02\x00\x05"
    assert v311_connack(node, ALICE, "not-the-password") == b"\x20\x02\x00\x04"
    assert v311_connack(node, ALICE, PASSWORDS[ALICE]) == b"\x20\x02\x00\x00"


def test_topics_are_allowed_only_as_the_rules_say_and_denied_otherwise(node: ReleaseNode) -> None:
    alice = connect(node, ALICE, PASSWORDS[ALICE])
    ops = connect(node, OPS, PASSWORDS[OPS])
    try:
        # subscribe: its own command topic granted, anything else 0x87, per filter in one SUBSCRIBE
        assert alice.subscribe([("cmd/alice", 1), ("cmd/other", 1), ("#", 0)]) == [1, NOT_AUTHORIZED, NOT_AUTHORIZED]
        # the superuser skips the rules
        assert ops.subscribe("sensors/#", 1) == [1]
        # publish: QoS 1 outside the rules is answered PUBACK 0x87 (deny_action = ignore)
        inside = alice.publish("sensors/alice/temp", b"21", qos=1)
        outside = alice.publish("sensors/bob/temp", b"21", qos=1)
        assert alice.publish_reasons[inside.mid] == 0
        assert alice.publish_reasons[outside.mid] == NOT_AUTHORIZED
        # what ops sends to alice's command topic reaches her; only her allowed message reached ops
        ops.publish("cmd/alice", b"reboot", qos=1)
        assert alice.receive(timeout=10).payload == b"reboot"
        assert ops.receive(timeout=10).topic == "sensors/alice/temp"
        assert ops.messages.empty()
    finally:
        alice.close()
        ops.close()


def test_an_mqtt_311_client_gets_0x80_for_a_denied_subscription(node: ReleaseNode) -> None:
    alice = connect(node, ALICE, PASSWORDS[ALICE], protocol=MQTTv311)
    try:
        assert alice.subscribe([("cmd/alice", 1), ("cmd/other", 1)]) == [1, 0x80]
    finally:
        alice.close()


@pytest.mark.parametrize("algorithm", ["sha256", "pbkdf2"])
def test_the_program_hashes_passwords_as_erlang_crypto_does_for_emqx(algorithm: PasswordHash) -> None:
    password = 'p@ss "word" ${x} 0123'
    hashed, salt = hash_password(algorithm, password, b"seed-seed-seed-seed")
    # emqx_passwd.erl hash/2: lower-case hex of crypto:hash(sha256, <<Salt, Password>>) (prefix
    # salt) or of crypto:pbkdf2_hmac(sha256, Password, Salt, Iterations, 32).
    digest = (
        "crypto:hash(sha256, <<S/binary, P/binary>>)"
        if algorithm == "sha256"
        else f"crypto:pbkdf2_hmac(sha256, P, S, {PBKDF2_ITERATIONS}, 32)"
    )
    program = (
        'S = list_to_binary(os:getenv("SALT")), P = unicode:characters_to_binary(os:getenv("PASSWORD")), '
        f'io:format("~s", [string:lowercase(binary:encode_hex({digest}))]), halt().'
    )
    assert shutil.which("erl"), "Erlang is installed by scripts/install-test-deps"
    erl = subprocess.run(
        ["erl", "-noshell", "-eval", program],
        env={**os.environ, "SALT": salt, "PASSWORD": password},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert erl.stdout == hashed
