"""EMQX 5.8.6's access rules, for the stand-in: authentication, authorization, the API key. NOT EMQX.

Pure Python (stdlib, plus `bcrypt` for bcrypt hashes), used by the e2e stand-in
(tests/support/e2e/emqx_standin.py) and its MQTT gate (mqtt_gate.py). Each rule follows EMQX's
source at v5.8.6, cited where it is modelled:

- Authentication: no authenticator configured -> every client is accepted as anonymous
  (emqx_access_control.erl authenticate/1: an empty chain returns `ignore`, then `{ok,
  NotSuperUser}`). With the built-in database: no password -> `bad_username_or_password`
  before any lookup, an unknown id -> `ignore`, the chain ends with `not_authorized`
  (emqx_authn_chains.erl do_authenticate/3), a wrong password -> `bad_username_or_password`
  (emqx_authn_mnesia.erl authenticate/2). CONNACK: MQTT 5 0x86 /
  0x87, MQTT 3.1.1 4 / 5 (emqx_reason_codes.erl connack_error/1, compat/2).
- Hashes: emqx_passwd.erl (sha256 with a prefix salt, pbkdf2 via crypto:pbkdf2_hmac, bcrypt).
- The database's imports: emqx_authn_mnesia.erl insert_user/2 -> success (new), skipped (the
  same row), override (different, override on: the REST import), failed (different, override
  off: the bootstrap file on every boot).
- Authorization: the file source's rules, first match wins (emqx_authz_rule.erl matches/4);
  nothing matched -> `authorization.no_match` (default allow, emqx_schema.erl); a superuser
  skips the rules (emqx_authz.erl authorize/5); `${username}` / `${clientid}` rendered in
  filters, a missing value never matches; `{eq, T}` compared as written; topics matched word by
  word, `$`-topics never by a leading wildcard (emqx_topic.erl match/2). A missing or invalid
  file stops the node at boot (emqx_authz_file.erl validate/1 throws; emqx_conf_app init:stop).
- The API key bootstrap file: `key:secret[:role]` per line, matched by the lazy regex
  `(.+):(.+)(?::(.+))?$`, role `administrator` only in the open-source edition; a bad line
  stops the load (emqx_mgmt_auth.erl parse_bootstrap_line/2, valid_role/1).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# --- authentication ----------------------------------------------------------------------------

# MQTT 5 reason codes and their MQTT 3.1.1 CONNACK return codes (emqx_reason_codes.erl compat/2).
BAD_USERNAME_OR_PASSWORD = 0x86
NOT_AUTHORIZED = 0x87
_V3_CONNACK = {BAD_USERNAME_OR_PASSWORD: 4, NOT_AUTHORIZED: 5}


def connack_code(reason: int, protocol_level: int) -> int:
    return reason if protocol_level >= 5 else _V3_CONNACK[reason]


@dataclass(frozen=True)
class HashAlgorithm:
    """`password_hash_algorithm` (emqx_authn_password_hashing.erl); default sha256 + prefix salt."""

    name: str = "sha256"
    salt_position: str = "prefix"
    mac_fun: str = "sha256"
    iterations: int = 0
    dk_length: int | None = None

    def check(self, password_hash: str, salt: str, password: str | None) -> bool:
        """emqx_passwd:check_pass/3 (a client without a password never passes)."""
        if password is None:
            return False
        given = password.encode()
        if self.name == "bcrypt":
            import bcrypt  # python3-bcrypt in the stand-in image

            try:
                return bcrypt.checkpw(given, password_hash.encode())
            except ValueError:
                return False
        if self.name == "pbkdf2":
            derived = hashlib.pbkdf2_hmac(self.mac_fun, given, salt.encode(), self.iterations, self.dk_length)
            return hmac.compare_digest(derived.hex(), password_hash.lower())
        data = {"prefix": salt.encode() + given, "suffix": given + salt.encode(), "disable": given}[self.salt_position]
        if self.name == "plain":
            return hmac.compare_digest(data, password_hash.encode())
        return hmac.compare_digest(hashlib.new(self.name, data).hexdigest(), password_hash.lower())


@dataclass(frozen=True)
class UserRow:
    """One row of the table, read as EMQX reads an import (not the program's MqttUser: the
    stand-in checks the program's files, it does not share their code)."""

    user_id: str
    password_hash: str
    salt: str
    is_superuser: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "password_hash": self.password_hash,
            "salt": self.salt,
            "is_superuser": self.is_superuser,
        }

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> UserRow:
        """A `hash` import row (emqx_authn_mnesia.erl find_password_hash/3: user_id and
        password_hash required, salt defaults to "", is_superuser true only for true/"true")."""
        if not isinstance(item.get("user_id"), str) or not isinstance(item.get("password_hash"), str):
            raise ValueError(f"bad user: {item!r}")
        superuser = item.get("is_superuser", False) in (True, "true")
        return cls(item["user_id"], item["password_hash"], str(item.get("salt", "")), superuser)


@dataclass
class UserDb:
    """The built-in database's table (replicated over the cluster by the stand-in)."""

    rows: dict[str, UserRow] = field(default_factory=dict)

    def import_rows(self, rows: Sequence[UserRow], override: bool) -> dict[str, int]:
        """emqx_authn_mnesia.erl insert_user/2 per row; the REST answer's counts."""
        counts = {"total": len(rows), "success": 0, "override": 0, "skipped": 0, "failed": 0}
        for row in rows:
            existing = self.rows.get(row.user_id)
            if existing is None:
                self.rows[row.user_id] = row
                counts["success"] += 1
            elif existing == row:
                counts["skipped"] += 1
            elif override:
                self.rows[row.user_id] = row
                counts["override"] += 1
            else:
                counts["failed"] += 1
        return counts

    def to_json(self) -> list[dict[str, Any]]:
        return [row.as_json() for row in sorted(self.rows.values(), key=lambda row: row.user_id)]

    @classmethod
    def from_json(cls, items: Sequence[Mapping[str, Any]]) -> UserDb:
        return cls({row.user_id: row for row in map(UserRow.from_json, items)})


@dataclass(frozen=True)
class Authenticator:
    """The built-in database authenticator as the environment configures it."""

    user_id_type: str = "username"
    algorithm: HashAlgorithm = HashAlgorithm()
    bootstrap_file: str = "/opt/emqx/etc/auth-built-in-db-bootstrap.csv"
    bootstrap_type: str = "plain"

    def authenticate(self, db: UserDb, clientid: str, username: str | None, password: str | None) -> tuple[int, bool]:
        """(0 or a CONNACK reason, is_superuser)."""
        if password is None:  # checked before the lookup (authenticate/2's `password := undefined`)
            return BAD_USERNAME_OR_PASSWORD, False
        user_id = clientid if self.user_id_type == "clientid" else username
        row = db.rows.get(user_id or "")
        if row is None:
            return NOT_AUTHORIZED, False  # ignore, then the end of the chain
        if not self.algorithm.check(row.password_hash, row.salt, password):
            return BAD_USERNAME_OR_PASSWORD, False
        return 0, row.is_superuser

    def bootstrap_rows(self) -> list[UserRow]:
        """The bootstrap file's rows (hash type, JSON; the program never writes CSV)."""
        path = Path(self.bootstrap_file)
        if not path.exists():
            return []
        if path.suffix != ".json":
            raise ValueError(f"stand-in: bootstrap file {path} is not JSON")
        if self.bootstrap_type != "hash":
            raise ValueError("stand-in: only bootstrap_type = hash is modelled")
        return [UserRow.from_json(item) for item in json.loads(path.read_text())]


# --- authorization -----------------------------------------------------------------------------


class AclError(ValueError):
    """An ACL file EMQX refuses (the node does not boot; a REST update answers 400)."""


_TOKEN = re.compile(r'\s*(?:(%[^\n]*)|("(?:[^"\\]|\\.)*")|([A-Za-z_][A-Za-z0-9_@]*)|([{}\[\],.]))', re.S)


def _terms(text: str) -> list[Any]:
    """The Erlang terms of a file:consult/1 file, for the subset ACL files use (atoms, strings,
    tuples, lists); strings come back as str, atoms as Atom."""
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise AclError(f"bad_acl_file_content: cannot read at {text[position : position + 20]!r}")
        position = match.end()
        comment, string, atom, punct = match.groups()
        if comment is not None:
            continue
        if string is not None:
            tokens.append(("str", re.sub(r"\\(.)", r"\1", string[1:-1])))
        elif atom is not None:
            tokens.append(("atom", atom))
        else:
            tokens.append(("punct", punct))
    terms: list[Any] = []
    index = 0

    def value() -> Any:
        nonlocal index
        kind, text_ = tokens[index]
        index += 1
        if kind == "str":
            return text_
        if kind == "atom":
            return Atom(text_)
        closing = {"{": "}", "[": "]"}.get(text_)
        if closing is None:
            raise AclError(f"bad_acl_file_content: unexpected {text_!r}")
        items: list[Any] = []
        while tokens[index] != ("punct", closing):
            items.append(value())
            if tokens[index] == ("punct", ","):
                index += 1
        index += 1
        return tuple(items) if closing == "}" else items

    try:
        while index < len(tokens):
            terms.append(value())
            if tokens[index] != ("punct", "."):
                raise AclError("bad_acl_file_content: a term does not end with `.`")
            index += 1
    except IndexError as exc:
        raise AclError("bad_acl_file_content: the file ends inside a term") from exc
    return terms


class Atom(str):
    """An Erlang atom read from the file (a str subclass, so `== "allow"` works)."""


@dataclass(frozen=True)
class Rule:
    permission: str  # allow | deny
    who: tuple[str, str | None]  # ("all", None) | ("username" | "clientid" | "ipaddr", x) | ("username re", r)
    action: str  # publish | subscribe | all
    topics: tuple[tuple[str, str], ...]  # ("filter", text) | ("eq", text)


def parse_acl(text: str) -> list[Rule]:
    """emqx_authz_rule.erl compile/1 for the forms the program renders and EMQX's default file."""
    rules = []
    for term in _terms(text):
        if isinstance(term, tuple) and len(term) == 2 and term[0] in ("allow", "deny") and term[1] == "all":
            rules.append(Rule(str(term[0]), ("all", None), "all", (("filter", "#"),)))
            continue
        if not (isinstance(term, tuple) and len(term) == 4 and term[0] in ("allow", "deny")):
            raise AclError(f"invalid_authorization_rule: {term!r}")
        permission, who, action, topics = term
        rules.append(Rule(str(permission), _who(who), _action(action), _topics(topics)))
    return rules


def _who(who: Any) -> tuple[str, str | None]:
    if who == "all":
        return ("all", None)
    kinds = {"user": "username", "username": "username", "client": "clientid", "clientid": "clientid"}
    if isinstance(who, tuple) and len(who) == 2 and who[0] in (*kinds, "ipaddr"):
        kind, value = kinds.get(who[0], "ipaddr"), who[1]
        if isinstance(value, str) and not isinstance(value, Atom):
            return (kind, value)
        if kind != "ipaddr" and isinstance(value, tuple) and len(value) == 2 and value[0] == "re":
            return (f"{kind} re", str(value[1]))
    raise AclError(f"invalid_authorization_rule: who {who!r}")


def _action(action: Any) -> str:
    if action in ("publish", "subscribe", "all"):
        return str(action)
    raise AclError(f"invalid_authorization_action: {action!r}")


def _topics(topics: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(topics, list):
        raise AclError(f"invalid_authorization_rule: topics {topics!r} is not a list")
    parsed = []
    for topic in topics:
        if isinstance(topic, tuple) and len(topic) == 2 and topic[0] == "eq" and isinstance(topic[1], str):
            parsed.append(("eq", topic[1]))
        elif isinstance(topic, str) and not isinstance(topic, Atom):
            parsed.append(("eq", topic[3:]) if topic.startswith("eq ") else ("filter", topic))
        else:
            raise AclError(f"invalid_topic: {topic!r}")
    return tuple(parsed)


def topic_matches(name: str, pattern: str) -> bool:
    """emqx_topic.erl match/2: `name` (a topic or a subscribed filter) against `pattern`."""
    if name.startswith("$") and pattern[:1] in ("+", "#"):
        return False
    names, words = name.split("/"), pattern.split("/")
    while True:
        if words == ["#"]:
            return True
        if not names or not words:
            return not names and not words
        if names[0] != words[0] and words[0] != "+":
            return False
        names, words = names[1:], words[1:]


@dataclass(frozen=True)
class Client:
    clientid: str
    username: str | None
    peer_address: str
    is_superuser: bool = False


def _rendered(pattern: str, client: Client) -> str | None:
    """`${username}` / `${clientid}` filled in; None when a value is missing (render_strict)."""
    values = {"username": client.username, "clientid": client.clientid}
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        if name not in values:
            return match.group(0)  # not an allowed variable: kept as text
        value = values[name]
        if value is None or value == "":
            missing = True
            return ""
        return value

    text = re.sub(r"\$\{([^}]*)\}", fill, pattern)
    return None if missing else text


def _who_matches(rule: Rule, client: Client) -> bool:
    kind, value = rule.who
    if kind == "all":
        return True
    if kind.endswith(" re"):
        subject = client.username if kind == "username re" else client.clientid
        return subject is not None and value is not None and re.search(value, subject) is not None
    if kind == "username":
        return client.username == value
    if kind == "clientid":
        return client.clientid == value
    return client.peer_address == value


def authorize(rules: Sequence[Rule], no_match: str, client: Client, action: str, topic: str) -> bool:
    """Whether `client` may `action` (publish | subscribe) `topic` (for subscribe, the filter)."""
    if client.is_superuser:
        return True
    for rule in rules:
        if rule.action not in (action, "all") or not _who_matches(rule, client):
            continue
        for kind, pattern in rule.topics:
            if kind == "eq":
                hit = topic == pattern
            else:
                rendered = _rendered(pattern, client)
                hit = rendered is not None and topic_matches(topic, rendered)
            if hit:
                return rule.permission == "allow"
    return no_match == "allow"


# EMQX 5.8.6 apps/emqx_auth/etc/acl.conf, its rules (the comments left out).
DEFAULT_ACL = """\
{allow, {username, {re, "^dashboard$"}}, subscribe, ["$SYS/#"]}.
{allow, {ipaddr, "127.0.0.1"}, all, ["$SYS/#", "#"]}.
{deny, all, subscribe, ["$SYS/#", {eq, "#"}, {eq, "+/#"}]}.
{allow, all}.
"""
DEFAULT_ACL_PATH = "/opt/emqx/etc/acl.conf"


# --- the API key --------------------------------------------------------------------------------

_API_KEY_LINE = re.compile(r"(.+?):(.+?)(?::(.+?))?$")  # emqx_mgmt_auth.erl, `ungreedy`


def parse_api_keys(text: str) -> tuple[dict[str, str], str | None]:
    """({key: secret}, the error that stopped the load or None); blank lines skipped."""
    keys: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _API_KEY_LINE.fullmatch(line)
        if match is None:
            return keys, f"invalid_format: {line!r}"
        key, secret, role = match.groups()
        if (role or "administrator") != "administrator":
            return keys, f"invalid_role: {role!r}"
        keys[key] = secret
    return keys, None


# --- the settings, from the node's environment ----------------------------------------------


@dataclass(frozen=True)
class AccessSettings:
    authenticator: Authenticator | None
    no_match: str
    acl_path: str | None  # the first enabled file source
    api_key_file: str | None


def access_settings(values: Mapping[str, Any]) -> AccessSettings:
    """From the node's parsed EMQX_* values (emqx58.env_values), keyed by config path."""

    def get(path: str, default: Any) -> Any:
        return values.get(path, default)

    authenticator = None
    if (
        get("authentication.1.mechanism", None) == "password_based"
        and get("authentication.1.backend", None) == "built_in_database"
        and str(get("authentication.1.enable", True)).lower() == "true"
    ):
        algorithm = "authentication.1.password_hash_algorithm."
        authenticator = Authenticator(
            user_id_type=str(get("authentication.1.user_id_type", "username")),
            algorithm=HashAlgorithm(
                name=str(get(algorithm + "name", "sha256")),
                salt_position=str(get(algorithm + "salt_position", "prefix")),
                mac_fun=str(get(algorithm + "mac_fun", "sha256")),
                iterations=int(get(algorithm + "iterations", 0)),
                dk_length=get(algorithm + "dk_length", None),
            ),
            bootstrap_file=str(get("authentication.1.bootstrap_file", Authenticator.bootstrap_file)),
            bootstrap_type=str(get("authentication.1.bootstrap_type", "plain")),
        )
    acl_path: str | None = DEFAULT_ACL_PATH
    if any(path.startswith("authorization.sources.1.") for path in values):
        enabled = str(get("authorization.sources.1.enable", True)).lower() == "true"
        is_file = get("authorization.sources.1.type", "file") == "file"
        acl_path = str(get("authorization.sources.1.path", DEFAULT_ACL_PATH)) if enabled and is_file else None
    api_key_file = get("api_key.bootstrap_file", "") or None
    return AccessSettings(authenticator, str(get("authorization.no_match", "allow")), acl_path, api_key_file)


class Credentials(Protocol):
    """What a CONNECT carries for authentication (mqtt_gate.Connect)."""

    @property
    def clientid(self) -> str: ...

    @property
    def username(self) -> str | None: ...

    @property
    def password(self) -> str | None: ...


@dataclass
class NodeAccess:
    """One node's access state: its settings, its copy of the users table, its ACL rules."""

    settings: AccessSettings
    users: UserDb = field(default_factory=UserDb)
    acl: list[Rule] = field(default_factory=list)

    def authenticate(self, connect: Credentials) -> tuple[int, bool]:
        """(0 or the CONNACK reason, is_superuser); no authenticator: anonymous."""
        if self.settings.authenticator is None:
            return 0, False
        return self.settings.authenticator.authenticate(
            self.users, connect.clientid, connect.username, connect.password
        )

    def authorize(self, client: Client, action: str, topic: str) -> bool:
        return authorize(self.acl, self.settings.no_match, client, action, topic)


def read_acl(path: str | None) -> list[Rule]:
    """The file source's rules at boot; AclError stops the node (failed_to_read_acl_file)."""
    if path is None:
        return []
    file = Path(path)
    if not file.exists():
        if path == DEFAULT_ACL_PATH:
            return parse_acl(DEFAULT_ACL)  # the official image ships it
        raise AclError(f"failed_to_read_acl_file: {path}: enoent")
    return parse_acl(file.read_text(encoding="utf-8"))
