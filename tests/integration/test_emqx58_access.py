"""The access the program renders, enforced as EMQX 5.8.6 enforces it: real MQTT clients (paho,
MQTT 5 and 3.1.1) through the stand-in's gate (tests/support/emqx/mqtt_gate.py) in front of a real
mosquitto, with the users file, ACL and settings the program renders. The hashes themselves are
checked against Erlang's crypto, which EMQX calls (emqx_passwd.erl)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from paho.mqtt.client import MQTTv311

from components.config import StackConfig
from components.config_access import PasswordHash
from components.config_parse import parse_stack_config
from components.render.access import PBKDF2_ITERATIONS, acl_file, declared_user, hash_password, users_file
from components.render.broker_env import access_environment
from tests.support.emqx import emqx58, emqx58_access, mqtt_gate
from tests.support.lb_stack import Mosquitto, MqttRefusedError, connect_mqtt, mqtt_connect_packet, recv_up_to
from tests.support.ports import free_port

ALICE, OPS = "alice", "ops"
PASSWORDS = {ALICE: "alice-password-0123456789", OPS: "ops-password-0123456789ab"}
RULES = [
    {"permission": "allow", "username": ALICE, "action": "publish", "topics": ["sensors/${username}/#"]},
    {"permission": "allow", "username": ALICE, "action": "subscribe", "topics": ["cmd/${username}"]},
    {"permission": "deny", "action": "subscribe", "topics": ["#"]},
]


def stack_config(algorithm: str) -> StackConfig:
    clients = [
        {"username": ALICE, "password": PASSWORDS[ALICE]},
        {"username": OPS, "password": PASSWORDS[OPS], "superuser": True},
    ]
    return parse_stack_config(
        {
            "tlsMode": "self-signed",
            "mqttPasswordHash": algorithm,
            "mqttClients": json.dumps(clients),
            "mqttAcl": json.dumps(RULES),
        }
    )


def node_access(config: StackConfig, salt_key: str = "salt-key") -> emqx58_access.NodeAccess:
    """A node's access state from exactly what the program renders (environment, users file, ACL)."""
    users = [declared_user(client, config.access.password_hash, salt_key) for client in config.access.clients]
    values, errors = emqx58.env_values(access_environment(config.access))
    assert not errors
    settings = emqx58_access.access_settings(values)
    table = emqx58_access.UserDb()
    table.import_rows([emqx58_access.UserRow.from_json(row) for row in json.loads(users_file(users))], override=False)
    return emqx58_access.NodeAccess(settings, table, emqx58_access.parse_acl(acl_file(config.access.acl)))


@dataclass
class Gate:
    port: int
    access: emqx58_access.NodeAccess


@pytest.fixture(params=["sha256", "pbkdf2", "bcrypt"])
def gate(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gate]:
    """The stand-in's gate on a loopback port, relaying to a real mosquitto."""
    broker = Mosquitto(tmp_path / "mosquitto", port=free_port())
    broker.start()
    access = node_access(stack_config(request.param))
    try:
        with mqtt_gate.running_gate(access, broker.port) as port:
            yield Gate(port, access)
    finally:
        broker.stop()


def v311_connack(port: int, username: str | None, password: str | None) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(mqtt_connect_packet(f"raw-{uuid.uuid4().hex[:6]}", username=username, password=password))
        return recv_up_to(sock, 4)


def test_anonymous_and_wrong_passwords_are_refused_with_emqx_connack_codes(gate: Gate) -> None:
    with pytest.raises(MqttRefusedError) as anonymous:
        connect_mqtt("127.0.0.1", gate.port, client_id="anon")
    assert anonymous.value.code == emqx58_access.BAD_USERNAME_OR_PASSWORD  # 0x86: no password at all
    with pytest.raises(MqttRefusedError) as unknown:
        connect_mqtt("127.0.0.1", gate.port, client_id="u1", username="mallory", password="any-password-at-all")
    assert unknown.value.code == emqx58_access.NOT_AUTHORIZED  # 0x87: no such user
    with pytest.raises(MqttRefusedError) as wrong:
        connect_mqtt("127.0.0.1", gate.port, client_id="a1", username=ALICE, password="not-the-password")
    assert wrong.value.code == emqx58_access.BAD_USERNAME_OR_PASSWORD  # 0x86
    # MQTT 3.1.1 return codes: 5 not authorized, 4 bad user name or password.
    assert v311_connack(gate.port, None, None) == b"\x20\x02\x00\x04"
    assert v311_connack(gate.port, "mallory", "any-password-at-all") == b"\x20\x02\x00\x05"
    assert v311_connack(gate.port, ALICE, "not-the-password") == b"\x20\x02\x00\x04"
    assert v311_connack(gate.port, ALICE, PASSWORDS[ALICE]) == b"\x20\x02\x00\x00"


def test_topics_are_allowed_only_as_the_rules_say_and_denied_otherwise(gate: Gate) -> None:
    alice = connect_mqtt("127.0.0.1", gate.port, client_id="alice-1", username=ALICE, password=PASSWORDS[ALICE])
    ops = connect_mqtt("127.0.0.1", gate.port, client_id="ops-1", username=OPS, password=PASSWORDS[OPS])
    try:
        # subscribe: its own command topic granted, anything else 0x87, per filter in one SUBSCRIBE
        assert alice.subscribe([("cmd/alice", 1), ("cmd/other", 1), ("#", 0)]) == [1, 0x87, 0x87]
        # the superuser skips the rules
        assert ops.subscribe("sensors/#", 1) == [1]
        # publish: QoS 1 outside the rules is answered PUBACK 0x87 (deny_action = ignore)
        inside = alice.publish("sensors/alice/temp", b"21", qos=1)
        outside = alice.publish("sensors/bob/temp", b"21", qos=1)
        assert alice.publish_reasons[inside.mid] == 0
        assert alice.publish_reasons[outside.mid] == emqx58_access.NOT_AUTHORIZED
        # what ops sends to alice's command topic reaches her; only her allowed message reached ops
        ops.publish("cmd/alice", b"reboot", qos=1)
        assert alice.receive(timeout=10).payload == b"reboot"
        assert ops.receive(timeout=10).topic == "sensors/alice/temp"
        assert ops.messages.empty()
    finally:
        alice.close()
        ops.close()


def test_an_mqtt_311_client_gets_0x80_for_a_denied_subscription(gate: Gate) -> None:
    alice = connect_mqtt(
        "127.0.0.1", gate.port, client_id="alice-2", username=ALICE, password=PASSWORDS[ALICE], protocol=MQTTv311
    )
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
