"""MQTT access, pure: what the stack config admits, and the files and environment rendered from it
(read back with the stand-in's EMQX 5.8.6 rules, tests/support/emqx/emqx58_access.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.config import StackConfig
from components.config_parse import ConfigError, parse_stack_config
from components.render.access import (
    acl_file,
    api_keys_file,
    declared_user,
    generated_user,
    users_file,
)
from components.render.broker_env import access_environment
from tests.support.emqx import emqx58, emqx58_access

PASSWORD = "a password, with spaces & commas"  # fine in JSON (EMQX's CSV reader would split it)


def access(**keys: Any) -> StackConfig:
    raw = {"tlsMode": "self-signed", **{k: v if isinstance(v, str) else json.dumps(v) for k, v in keys.items()}}
    return parse_stack_config(raw)


def problems(**keys: Any) -> str:
    with pytest.raises(ConfigError) as raised:
        access(**keys)
    return str(raised.value)


def settings(config: StackConfig) -> emqx58_access.AccessSettings:
    values, errors = emqx58.env_values(access_environment(config.access))
    assert errors == []
    return emqx58_access.access_settings(values)


def test_every_stack_authenticates_and_denies_what_no_rule_allows_unless_anonymous_is_asked_for() -> None:
    default = settings(access())
    assert default.authenticator is not None  # no client declared: nobody gets in
    assert default.authenticator.user_id_type == "username"
    assert default.authenticator.bootstrap_type == "hash"
    assert default.no_match == "deny"
    assert default.acl_path == "/opt/emqx/etc/access/acl.conf"
    assert default.api_key_file == "/opt/emqx/etc/access/api-keys"
    lab = settings(access(allowAnonymous="true"))
    assert lab.authenticator is None and lab.no_match == "deny"


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            {"allowAnonymous": "true", "mqttGeneratedClient": "dev"},
            "emqx-cluster:allowAnonymous = true while mqttClients/mqttGeneratedClient are set",
        ),
        (
            {"mqttClients": [{"username": "a", "password": "0123456789abcdef"}] * 2},
            "emqx-cluster:mqttClients = 'a': allowed: each username once",
        ),
        (
            {"mqttClients": [{"username": "a", "password": "short-but-12"}]},
            "emqx-cluster:mqttClients[0].password = (hidden: secret, 12 characters): allowed: at least 16",
        ),
        (
            {"mqttPasswordHash": "bcrypt", "mqttClients": [{"username": "a", "password": "x" * 73}]},
            "allowed: at most 72 bytes with bcrypt",
        ),
        (
            {"mqttClients": [{"clientid": "c1", "password": "0123456789abcdef"}]},
            "emqx-cluster:mqttClients[0] = ['clientid']: allowed: exactly one `username`",
        ),
        (
            {"mqttClients": [{"username": "a"}]},
            "emqx-cluster:mqttClients[0]: allowed: `password` (a secret) or `passwordHash` (+ `salt`), exactly one",
        ),
        (
            {"mqttClients": [{"username": "a b", "password": "0123456789abcdef"}]},
            "emqx-cluster:mqttClients[0].username = 'a b': allowed: 1-128 of",
        ),
        (
            {"mqttAcl": [{"permission": "allow", "action": "read", "topics": ["a"]}]},
            "emqx-cluster:mqttAcl[0].action = 'read': allowed: 'publish', 'subscribe' or 'all'",
        ),
        (
            {"mqttAcl": [{"permission": "allow", "topics": ["a/#/b"]}]},
            "allowed: `#` only as the whole last level (`a/#`) (topic 'a/#/b')",
        ),
        (
            {"mqttAcl": [{"permission": "allow", "topics": ["a/b+"]}]},
            "allowed: `+` only as a whole level",
        ),
        (
            {"mqttAcl": [{"permission": "allow", "topics": ["a/${peerhost}"]}]},
            "allowed: placeholders ${username} and ${clientid} only (not ${peerhost})",
        ),
        (
            {"mqttAcl": [{"permission": "allow", "topics": ["eq a/${username}"]}]},
            "allowed: no placeholder inside `eq`",
        ),
        (
            {"mqttGeneratedClient": "dev", "mqttAcl": [{"permission": "allow", "username": "devv", "topics": ["a"]}]},
            "emqx-cluster:mqttAcl[0].username = 'devv': allowed: a declared username (dev)",
        ),
        (
            {"mqttAcl": [{"permission": "allow", "topics": ["devices/${clientid}/down"]}]},
            "allowed: the placeholder of what clients authenticate with, ${username} (not ${clientid}",
        ),
        (
            {"allowAnonymous": "true", "mqttAcl": [{"permission": "allow", "topics": ["d/${username}"]}]},
            "allowed: no placeholder with allowAnonymous",
        ),
    ],
    ids=[
        "anonymous-with-clients",
        "duplicate",
        "short-password-fast-hash",
        "bcrypt-72-bytes",
        "id-kind",
        "no-password",
        "bad-username",
        "unknown-action",
        "hash-inside",
        "plus-inside",
        "unknown-placeholder",
        "placeholder-in-eq",
        "unknown-principal",
        "client-chosen-placeholder",
        "placeholder-without-authentication",
    ],
)
def test_bad_access_config_is_refused_at_preview_naming_key_and_value(keys: dict[str, Any], expected: str) -> None:
    message = problems(**keys)
    assert expected in message
    assert "0123456789abcdef" not in message and "x" * 73 not in message


def test_a_password_is_hashed_here_stable_until_it_changes_and_never_rendered_plain() -> None:
    config = access(mqttClients=[{"username": "alice", "password": PASSWORD}])
    client = config.access.clients[0]
    first = declared_user(client, "sha256", "salt-key")
    assert declared_user(client, "sha256", "salt-key") == first  # no change, no REST call
    assert declared_user(client, "sha256", "other-key").salt != first.salt
    changed = access(mqttClients=[{"username": "alice", "password": PASSWORD + "!"}]).access.clients[0]
    assert declared_user(changed, "sha256", "salt-key").salt != first.salt
    rendered = users_file([first])
    assert PASSWORD not in rendered
    [row] = json.loads(rendered)
    check = emqx58_access.HashAlgorithm(name="sha256")
    assert check.check(row["password_hash"], row["salt"], PASSWORD)
    assert not check.check(row["password_hash"], row["salt"], PASSWORD[:-1])


@pytest.mark.parametrize("algorithm", ["sha256", "pbkdf2", "bcrypt"])
def test_each_hash_is_one_emqx_checks_with_the_rendered_settings(algorithm: str) -> None:
    config = access(mqttPasswordHash=algorithm, mqttGeneratedClient="dev")
    authenticator = settings(config).authenticator
    assert authenticator is not None
    user = generated_user("dev", PASSWORD, config.access.password_hash, "salt-key")
    table = emqx58_access.UserDb()
    table.import_rows([emqx58_access.UserRow.from_json(row) for row in json.loads(users_file([user]))], override=False)
    assert authenticator.authenticate(table, "c1", "dev", PASSWORD) == (0, False)
    assert authenticator.authenticate(table, "c1", "dev", "wrong")[0] == emqx58_access.BAD_USERNAME_OR_PASSWORD
    assert authenticator.authenticate(table, "c1", "nobody", PASSWORD)[0] == emqx58_access.NOT_AUTHORIZED
    assert authenticator.authenticate(table, "c1", None, None)[0] == emqx58_access.BAD_USERNAME_OR_PASSWORD


def test_a_given_hash_passes_through_unchanged() -> None:
    config = access(mqttClients=[{"username": "legacy", "passwordHash": "ab" * 32, "salt": "s1", "superuser": True}])
    user = declared_user(config.access.clients[0], "sha256", "salt-key")
    assert (user.password_hash, user.salt, user.is_superuser) == ("ab" * 32, "s1", True)


def test_the_acl_keeps_the_declared_order_and_ends_in_deny_all() -> None:
    rules = [
        {"permission": "deny", "username": "dev", "action": "publish", "topics": ["dev/secret"]},
        {"permission": "allow", "username": "dev", "topics": ["dev/#", 'quote"d', "eq dev/#"]},
        {"permission": "allow", "action": "subscribe", "topics": ["devices/${username}/down"]},
    ]
    text = acl_file(access(mqttGeneratedClient="dev", mqttAcl=rules).access.acl)
    assert text.rstrip().endswith("{deny, all}.")
    assert "127.0.0.1" not in text and "{allow, all}" not in text
    parsed = emqx58_access.parse_acl(text)
    assert [rule.permission for rule in parsed] == ["deny", "allow", "allow", "deny"]
    assert parsed[1].topics == (("filter", "dev/#"), ("filter", 'quote"d'), ("eq", "dev/#"))
    dev = emqx58_access.Client("c1", "dev", "127.0.0.1")
    other = emqx58_access.Client("c2", "other", "127.0.0.1")

    def may(client: emqx58_access.Client, action: str, topic: str) -> bool:
        return emqx58_access.authorize(parsed, "deny", client, action, topic)

    assert not may(dev, "publish", "dev/secret")  # first match: the deny before the allow
    assert may(dev, "subscribe", "dev/secret") and may(dev, "publish", "dev/a")
    assert may(dev, "subscribe", "dev/#") and may(dev, "publish", 'quote"d')
    assert may(other, "subscribe", "devices/other/down") and not may(other, "subscribe", "devices/dev/down")
    assert not may(other, "publish", "dev/a")


def test_the_api_key_line_holds_no_colon_in_its_secret() -> None:
    keys, error = emqx58_access.parse_api_keys(api_keys_file("s3cret"))
    assert error is None and keys == {"emqx-cluster": "s3cret"}
    with pytest.raises(ValueError, match="no `:`"):
        api_keys_file("a:b")


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            {"adminNetworks": ["10.20.0.0/33"]},
            "emqx-cluster:adminNetworks = '10.20.0.0/33': allowed: an IPv4 network",
        ),
        ({"adminNetworks": ["10.20.0.1/24"]}, "allowed: an IPv4 network in CIDR form"),  # host bits set
        ({"adminNetworks": ["0.0.0.0/0"]}, "not 0.0.0.0/0 (everyone)"),
        (
            {"adminNetworks": ["10.20.0.0/24"]},
            "emqx-cluster:adminNetworks = ['10.20.0.0/24']: allowed only when the nodes' address is reachable from "
            "those networks; emqx-cluster:advertiseAddress = '127.0.0.1' is loopback",
        ),
    ],
    ids=["bad-prefix", "host-bits", "everyone", "loopback-nodes"],
)
def test_bad_admin_networks_are_refused_at_preview(keys: dict[str, Any], expected: str) -> None:
    assert expected in problems(**keys)


def test_admin_networks_add_an_https_dashboard_on_the_node_address_and_prometheus_credentials() -> None:
    from components.plan import plan_cluster
    from components.render.broker_env import broker_environment

    config = access(advertiseAddress="10.0.0.11", adminNetworks=["10.20.0.0/24"])
    plan = plan_cluster(config)
    env = broker_environment(plan.nodes[0], plan, config)
    assert env["EMQX_DASHBOARD__LISTENERS__HTTPS__BIND"] == '"10.0.0.11:62001"'
    assert env["EMQX_DASHBOARD__LISTENERS__HTTP__BIND"] == '"127.0.0.1:62001"'  # loopback stays
    assert env["EMQX_DASHBOARD__LISTENERS__HTTPS__SSL_OPTIONS__CERTFILE"] == '"/opt/emqx/etc/access/admin-cert.pem"'
    assert env["EMQX_PROMETHEUS__ENABLE_BASIC_AUTH"] == "true"
    assert config.opens_firewall
    without = access(advertiseAddress="10.0.0.11")
    plain = broker_environment(plan.nodes[0], plan_cluster(without), without)
    assert not [key for key in plain if "HTTPS" in key or "PROMETHEUS" in key]
    assert not without.opens_firewall  # one host, no admin networks: nothing to open
