"""MQTT access, pure: what the stack config admits, and the files and environment rendered from it.
A real EMQX 5.8.6 node enforces them in tests/integration/test_access_enforced.py (every password
hash, the ACL) and test_access_scripts.py (the API key)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import bcrypt
import pytest

from components.config import StackConfig
from components.config_parse import ConfigError, parse_stack_config
from components.render.access import (
    BCRYPT_ROUNDS,
    PBKDF2_ITERATIONS,
    acl_file,
    api_keys_file,
    declared_user,
    generated_user,
    users_file,
)
from components.render.broker_env import access_environment

PASSWORD = "a password, with spaces & commas"  # fine in JSON (EMQX's CSV reader would split it)


def access(**keys: Any) -> StackConfig:
    raw = {"tlsMode": "self-signed", **{k: v if isinstance(v, str) else json.dumps(v) for k, v in keys.items()}}
    return parse_stack_config(raw)


def problems(**keys: Any) -> str:
    with pytest.raises(ConfigError) as raised:
        access(**keys)
    return str(raised.value)


def test_every_stack_authenticates_and_denies_what_no_rule_allows_unless_anonymous_is_asked_for() -> None:
    default = access_environment(access().access)  # no client declared: nobody gets in
    assert {key: value for key, value in default.items() if key.startswith("EMQX_AUTHENTICATION__1__")} == {
        "EMQX_AUTHENTICATION__1__MECHANISM": "password_based",
        "EMQX_AUTHENTICATION__1__BACKEND": "built_in_database",
        "EMQX_AUTHENTICATION__1__ENABLE": "true",
        "EMQX_AUTHENTICATION__1__USER_ID_TYPE": "username",
        "EMQX_AUTHENTICATION__1__BOOTSTRAP_FILE": '"/opt/emqx/etc/access/mqtt-users.json"',
        "EMQX_AUTHENTICATION__1__BOOTSTRAP_TYPE": "hash",
        "EMQX_AUTHENTICATION__1__PASSWORD_HASH_ALGORITHM__NAME": "sha256",
        "EMQX_AUTHENTICATION__1__PASSWORD_HASH_ALGORITHM__SALT_POSITION": "prefix",
    }
    assert default["EMQX_AUTHORIZATION__NO_MATCH"] == "deny"
    assert default["EMQX_AUTHORIZATION__SOURCES__1__PATH"] == '"/opt/emqx/etc/access/acl.conf"'
    assert default["EMQX_API_KEY__BOOTSTRAP_FILE"] == '"/opt/emqx/etc/access/api-keys"'
    lab = access_environment(access(allowAnonymous="true").access)
    assert (
        not [key for key in lab if key.startswith("EMQX_AUTHENTICATION")]
        and lab["EMQX_AUTHORIZATION__NO_MATCH"] == "deny"
    )


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
    # emqx_passwd.erl hash/2, sha256 with salt_position = prefix: hex(sha256(salt ++ password))
    assert hashlib.sha256((row["salt"] + PASSWORD).encode()).hexdigest() == row["password_hash"]


@pytest.mark.parametrize(
    ("algorithm", "settings"),
    [
        ("sha256", {"NAME": "sha256", "SALT_POSITION": "prefix"}),
        ("pbkdf2", {"NAME": "pbkdf2", "MAC_FUN": "sha256", "ITERATIONS": str(PBKDF2_ITERATIONS)}),
        ("bcrypt", {"NAME": "bcrypt", "SALT_ROUNDS": str(BCRYPT_ROUNDS)}),
    ],
)
def test_each_hash_is_rendered_with_the_settings_emqx_checks_it_with(algorithm: str, settings: dict[str, str]) -> None:
    config = access(mqttPasswordHash=algorithm, mqttGeneratedClient="dev")
    prefix = "EMQX_AUTHENTICATION__1__PASSWORD_HASH_ALGORITHM__"
    rendered = {k.removeprefix(prefix): v for k, v in access_environment(config.access).items() if k.startswith(prefix)}
    assert rendered == settings
    user = generated_user("dev", PASSWORD, config.access.password_hash, "salt-key")
    password, salt = PASSWORD.encode(), user.salt.encode()
    if algorithm == "bcrypt":  # EMQX checks bcrypt:hashpw(Password, Hash) =:= Hash
        assert bcrypt.checkpw(password, user.password_hash.encode()) and user.salt == user.password_hash[:29]
    elif algorithm == "pbkdf2":
        assert hashlib.pbkdf2_hmac("sha256", password, salt, PBKDF2_ITERATIONS).hex() == user.password_hash
    else:
        assert hashlib.sha256(salt + password).hexdigest() == user.password_hash


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
    assert text.splitlines()[-4:] == [
        '{deny, {username, "dev"}, publish, ["dev/secret"]}.',
        '{allow, {username, "dev"}, all, ["dev/#", "quote\\"d", {eq, "dev/#"}]}.',
        '{allow, all, subscribe, ["devices/${username}/down"]}.',
        "{deny, all}.",
    ]


def test_the_api_key_line_holds_no_colon_in_its_secret() -> None:
    # emqx_mgmt_auth.erl parse_bootstrap_line/2: `key:secret:role`, the role administrator
    assert api_keys_file("s3cret") == "emqx-cluster:s3cret:administrator\n"
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
