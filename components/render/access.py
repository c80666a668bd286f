"""What the brokers read to decide who connects and what they may do, rendered from the access config.

Pure Python. Per node, three files in its private `access` dir (0600, the image's user; with
adminNetworks also the HTTPS dashboard's certificate and key), mounted read-only at
ACCESS_FILES.directory, and the environment that points EMQX 5.8.6 at them:

- `mqtt-users.json`: the built-in database's bootstrap file, `bootstrap_type = hash`. EMQX
  imports it on every boot of every node and never overwrites a user that exists
  (apps/emqx_auth_mnesia/src/emqx_authn_mnesia.erl, boostrap_user_from_file/2: import_users
  with `override => false`; the format follows the extension, `.json` = a JSON array of
  `user_id`, `password_hash`, `salt`, `is_superuser`: reader_fn/1, find_password_hash/3).
  JSON, not CSV: EMQX's CSV reader splits fields on spaces as well as commas, unquoted
  (emqx_utils_stream.erl csv_read_line/1). So a changed or removed client is applied through
  the REST API (the client registry), and this file covers a node that boots with an empty
  database (the first boot, a purged data dir).
- `api-keys`: `key:secret:administrator`, loaded on every boot of a core node and written over
  the key's previous secret (apps/emqx_management/src/emqx_mgmt_auth.erl,
  try_init_bootstrap_file/0, parse_bootstrap_line/2: the regex `(.+):(.+)(?::(.+))?$` is
  lazy, so a `:` in the secret would be read as a role; the open-source edition admits the
  role `administrator` only, valid_role/1). The program's REST calls authenticate with it
  (HTTP Basic), never with the dashboard password.
- `acl.conf`: the file authorization source, the declared rules then `{deny, all}.`, with
  `authorization.no_match = deny` (apps/emqx/src/emqx_schema.erl authz_fields/0: default
  allow). It replaces EMQX's default file (apps/emqx_auth/etc/acl.conf), whose danger is its
  closing `{allow, all}.`: whatever its first rules do not settle, every client may do. Its
  `{allow, {ipaddr, "127.0.0.1"}, all, ["$SYS/#", "#"]}.` does not match the clients Nginx
  proxies from 127.0.0.1, because with PROXY protocol the peer is the client: esockd 5.13.0's
  esockd_transport:peername/1 answers a proxy socket with the header's source address,
  emqx_connection.erl init_state/3 keeps it as `peername`, emqx_channel.erl init/2 makes it the
  client's `peerhost`, which emqx_authz_rule.erl match_who/2 matches `ipaddr` against. Only a
  client whose own address is 127.0.0.1 would match it.

Passwords are hashed here, on the deployer's machine: no plain password reaches a host. The
hashes are EMQX's (apps/emqx/src/emqx_passwd.erl): sha256 = hex(sha256(salt ++ password))
(`salt_position = prefix`), pbkdf2 = hex(pbkdf2_hmac(sha256, password, salt, iterations, 32)),
bcrypt = the bcrypt string (EMQX checks `bcrypt:hashpw(Password, Hash)`). The salt of a declared
password is an HMAC of id and password under a generated stack secret: stable across runs (no
change, no REST call), new when the password changes, unguessable without that secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass

import bcrypt

from components.config_access import AclRuleConfig, MqttClientConfig, PasswordHash
from components.render.host_scripts import NodeFiles
from components.render.templating import double_quoted, render

# The key name of the program's REST calls (the secret is generated, see components.access).
API_KEY_NAME = "emqx-cluster"
# The built-in database's authenticator id in REST paths (emqx_authn_api.erl: mechanism:backend).
AUTHENTICATOR_ID = "password_based:built_in_database"
# Chosen by bench/access_hashes.py (docs/access.md, "Choosing the password hash").
PBKDF2_ITERATIONS = 4096
BCRYPT_ROUNDS = 10  # EMQX's default salt_rounds (emqx_authn_password_hashing.erl, bcrypt_rw)


@dataclass(frozen=True)
class AccessFiles(NodeFiles):
    """Where a node finds its access files inside the container."""

    directory: str = "/opt/emqx/etc/access"
    users: str = "mqtt-users.json"
    api_keys: str = "api-keys"
    acl: str = "acl.conf"
    admin_certificate: str = "admin-cert.pem"  # the HTTPS dashboard's, with adminNetworks
    admin_key: str = "admin-key.pem"

    def names(self, admin_https: bool = False) -> tuple[str, ...]:
        admin = (self.admin_certificate, self.admin_key) if admin_https else ()
        return (self.users, self.api_keys, self.acl, *admin)


ACCESS_FILES = AccessFiles()


@dataclass(frozen=True)
class MqttUser:
    """One row of the built-in database, as its import formats spell it."""

    user_id: str
    password_hash: str
    salt: str
    is_superuser: bool

    def as_json(self) -> dict[str, object]:
        return {
            "user_id": self.user_id,
            "password_hash": self.password_hash,
            "salt": self.salt,
            "is_superuser": self.is_superuser,
        }


def hash_password(algorithm: PasswordHash, password: str, salt_seed: bytes) -> tuple[str, str]:
    """(password_hash, salt) as EMQX stores and checks them; `salt_seed` is 16+ random-looking bytes."""
    if algorithm == "bcrypt":
        prefix = f"$2b${BCRYPT_ROUNDS:02d}$".encode() + _bcrypt_salt(salt_seed)
        hashed = bcrypt.hashpw(password.encode(), prefix).decode()
        return hashed, hashed[:29]
    salt = salt_seed[:16].hex()
    if algorithm == "pbkdf2":
        return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), PBKDF2_ITERATIONS).hex(), salt
    return hashlib.sha256(salt.encode() + password.encode()).hexdigest(), salt


_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _bcrypt_salt(seed: bytes) -> bytes:
    """16 bytes in bcrypt's base64 (22 characters, its own alphabet, no padding)."""
    standard = base64.b64encode(seed[:16] + b"\0\0").decode()[:22]
    table = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", _BCRYPT_ALPHABET)
    # The 22nd character carries the last 2 bits of the 16 bytes and 4 zero bits (the padding).
    return standard.translate(table).encode()


def salt_seed(salt_key: str, user_id: str, password: str) -> bytes:
    """HMAC(stack salt key, id NUL password): stable for a password, new when it changes."""
    return hmac.new(salt_key.encode(), f"{user_id}\0{password}".encode(), hashlib.sha256).digest()


def declared_user(client: MqttClientConfig, algorithm: PasswordHash, salt_key: str) -> MqttUser:
    """A declared client as a database row: its password hashed here, or its given hash."""
    if client.password is not None:
        password = client.password.get_secret_value()
        hashed, salt = hash_password(algorithm, password, salt_seed(salt_key, client.user_id, password))
    else:
        assert client.password_hash is not None  # the model admits exactly one of the two
        hashed = client.password_hash.get_secret_value()
        salt = hashed[:29] if algorithm == "bcrypt" else client.salt or ""
    return MqttUser(client.user_id, hashed, salt, client.superuser)


def generated_user(user_id: str, password: str, algorithm: PasswordHash, salt_key: str) -> MqttUser:
    password_hash, salt = hash_password(algorithm, password, salt_seed(salt_key, user_id, password))
    return MqttUser(user_id, password_hash, salt, False)


def users_file(users: Sequence[MqttUser]) -> str:
    """The bootstrap file: a JSON array, one user per line."""
    return "[\n" + ",\n".join(json.dumps(user.as_json()) for user in users) + "\n]\n"


def api_keys_file(secret: str) -> str:
    if ":" in secret or "\n" in secret:
        raise ValueError("an API secret holds no `:` and no newline (EMQX would read the rest as a role)")
    return f"{API_KEY_NAME}:{secret}:administrator\n"


def acl_rule(rule: AclRuleConfig) -> str:
    """One rule as EMQX's file source reads it (emqx_authz_rule.erl compile/1)."""
    if rule.username is not None:
        who = f"{{username, {double_quoted(rule.username)}}}"
    elif rule.clientid is not None:
        who = f"{{clientid, {double_quoted(rule.clientid)}}}"
    else:
        who = "all"
    topics = [
        f"{{eq, {double_quoted(topic[3:])}}}" if topic.startswith("eq ") else double_quoted(topic)
        for topic in rule.topics
    ]
    return f"{{{rule.permission}, {who}, {rule.action}, [{', '.join(topics)}]}}."


def acl_file(rules: Sequence[AclRuleConfig]) -> str:
    return render("acl.conf.j2", rules=[acl_rule(rule) for rule in rules])
