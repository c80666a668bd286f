"""Who may connect and what they may do: MQTT clients, the password hash, the topic rules.

Pure Python. The `access` section of :class:`components.config.StackConfig`, read from flat keys
like every section (`allowAnonymous`, `mqttClients`, `mqttAcl`, ...). Secure by default: with no
key set, EMQX gets an authenticator with no user (every client is refused) and an ACL that
denies everything; `allowAnonymous: true` is the one switch that turns authentication off.

The EMQX 5.8.6 facts these checks follow (each cited where it is used):
- user ids are one kind per authenticator: `user_id_type` username | clientid
  (apps/emqx_auth_mnesia/src/emqx_authn_mnesia_schema.erl);
- topic rules are `{Permission, Who, Action, Topics}`, first match wins, placeholders
  `${username}` and `${clientid}` are rendered in filters but not inside `{eq, ...}`
  (apps/emqx_auth/src/emqx_authz/emqx_authz_rule.erl, ?ALLOWED_VARS, compile_topic/1).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, Field, SecretStr, model_validator

from components.config_types import MODEL_CONFIG, NAMESPACE, SECRET_IN_STACK, repeated

PasswordHash = Literal["sha256", "pbkdf2", "bcrypt"]
ClientIdType = Literal["username", "clientid"]

# A fast hash protects only a password nobody can guess: with sha256 every declared password
# must be this long (a generated one is 32 characters).
MIN_PASSWORD_FAST_HASH = 16
MIN_PASSWORD_SLOW_HASH = 8
# bcrypt reads at most 72 bytes of a password (the rest would be ignored, silently).
BCRYPT_MAX_PASSWORD_BYTES = 72

# Plain in a URL path (the REST API's DELETE .../users/<id>), in the JSON files and in
# resource names: no quoting anywhere.
USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")
PLACEHOLDERS = ("${username}", "${clientid}")
_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")


def _admin_network(value: str) -> str:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as error:
        raise ValueError(f"allowed: an IPv4 network in CIDR form, e.g. 10.20.0.0/24 ({error})") from None
    if network.prefixlen == 0:
        raise ValueError("allowed: the networks your operators come from, not 0.0.0.0/0 (everyone)")
    return str(network)


AdminNetwork = Annotated[str, AfterValidator(_admin_network)]


def _user_id(value: str) -> str:
    if not USER_ID.fullmatch(value):
        raise ValueError("allowed: 1-128 of A-Z a-z 0-9 _ . @ -, starting with a letter or digit")
    return value


UserId = Annotated[str, AfterValidator(_user_id)]


def topic_filter_problem(topic: str) -> str | None:
    """Why `topic` is no topic filter EMQX can match (MQTT 5 section 4.7), or None.

    `eq <topic>` is EMQX's exact form: the text after `eq ` is compared as written, wildcards
    and placeholders included, so placeholders there would never be rendered.
    """
    exact = topic.startswith("eq ")
    body = topic[3:] if exact else topic
    if not body or len(body.encode()) > 65535 or "\x00" in body:
        return "a non-empty MQTT topic filter (at most 65535 bytes, no NUL)"
    if exact:
        if _PLACEHOLDER.search(body):
            return "no placeholder inside `eq` (EMQX compares an `eq` topic as written)"
        return None
    unknown = [found for found in _PLACEHOLDER.findall(body) if found not in PLACEHOLDERS]
    if unknown:
        return f"placeholders {' and '.join(PLACEHOLDERS)} only (not {unknown[0]})"
    levels = body.split("/")
    for position, level in enumerate(levels):
        if "#" in level and (level != "#" or position != len(levels) - 1):
            return "`#` only as the whole last level (`a/#`)"
        if "+" in level and level != "+":
            return "`+` only as a whole level (`a/+/c`)"
    return None


class MqttClientConfig(BaseModel):
    """One declared client: its id (a username, or a client id with mqttClientIdType: clientid),
    its password (plain, hashed by the program) or a hash computed for mqttPasswordHash."""

    model_config = MODEL_CONFIG

    username: UserId | None = None
    clientid: UserId | None = None
    password: SecretStr | None = None
    password_hash: SecretStr | None = None
    salt: str | None = Field(None, max_length=128)
    superuser: bool = False

    @property
    def user_id(self) -> str:
        return self.username or self.clientid or ""


class AclRuleConfig(BaseModel):
    """One topic rule: `permission` for `action` on `topics`, for one username, one client id, or
    (neither set) every client."""

    model_config = MODEL_CONFIG

    permission: Literal["allow", "deny"]
    username: UserId | None = None
    clientid: UserId | None = None
    action: Literal["publish", "subscribe", "all"] = "all"
    topics: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_principal(self) -> Self:
        if self.username is not None and self.clientid is not None:
            raise ValueError("allowed: username or clientid (or neither: every client), not both")
        for topic in self.topics:
            problem = topic_filter_problem(topic)
            if problem is not None:
                raise ValueError(f"allowed: {problem} (topic {topic!r})")
        return self


class AccessConfig(BaseModel):
    """MQTT authentication (EMQX's built-in database) and authorization (a rendered ACL file)."""

    model_config = MODEL_CONFIG

    # The lab switch: no authenticator, EMQX accepts every client as anonymous.
    allow_anonymous: bool = Field(False, validation_alias="allowAnonymous")
    # Passwords or their hashes: the whole list is a secret (`pulumi config set --secret --path
    # 'mqttClients[0].password'` makes it one).
    clients: list[MqttClientConfig] = Field(
        default_factory=list, validation_alias="mqttClients", json_schema_extra={SECRET_IN_STACK: True}
    )
    client_id_type: ClientIdType = Field("username", validation_alias="mqttClientIdType")
    password_hash: PasswordHash = Field("sha256", validation_alias="mqttPasswordHash")
    # A client the program creates with a generated password (the `mqttClient` secret output).
    generated_client: UserId | None = Field(None, validation_alias="mqttGeneratedClient")
    acl: list[AclRuleConfig] = Field(default_factory=list, validation_alias="mqttAcl")
    # Operators' networks: each node's dashboard/API/Prometheus also listens with HTTPS on its
    # host's address, open to these networks only (the host firewall); unset: loopback only.
    admin_networks: list[AdminNetwork] = Field(default_factory=list, validation_alias="adminNetworks")

    @property
    def authenticates(self) -> bool:
        return not self.allow_anonymous

    @property
    def user_ids(self) -> list[str]:
        """Every declared id, the generated client's included."""
        ids = [client.user_id for client in self.clients]
        return [*ids, self.generated_client] if self.generated_client is not None else ids

    def problems(self) -> list[str]:
        return [*self._admin_network_problems(), *self._client_and_rule_problems()]

    def _admin_network_problems(self) -> list[str]:
        """Each network once: the firewall's rules list them as given (one given as an Output is
        known only there)."""
        twice = repeated(self.admin_networks)
        if not twice:
            return []
        return [
            f"{NAMESPACE}:adminNetworks = {self.admin_networks!r}: allowed: each network once; "
            f"repeated: {', '.join(twice)}"
        ]

    def _client_and_rule_problems(self) -> list[str]:
        if self.allow_anonymous:
            if self.clients or self.generated_client is not None:
                return [
                    f"{NAMESPACE}:allowAnonymous = true while mqttClients/mqttGeneratedClient are set: allowed: "
                    "allowAnonymous: false (the default) to authenticate those clients, or remove them"
                ]
            return self._acl_problems(set())
        problems = [
            problem
            for position, client in enumerate(self.clients)
            for problem in self._client_problems(position, client)
        ]
        seen: set[str] = set()
        for user_id in self.user_ids:
            if user_id in seen:
                problems.append(
                    f"{NAMESPACE}:mqttClients = {user_id!r}: allowed: each {self.client_id_type} once "
                    "(mqttClients and mqttGeneratedClient together)"
                )
            seen.add(user_id)
        return [*problems, *self._acl_problems(seen)]

    def _client_problems(self, position: int, client: MqttClientConfig) -> list[str]:
        key = f"{NAMESPACE}:mqttClients[{position}]"
        problems = []
        ids = {name: value for name, value in (("username", client.username), ("clientid", client.clientid)) if value}
        if list(ids) != [self.client_id_type]:
            problems.append(
                f"{key} = {sorted(ids) or '(no id)'}: allowed: exactly one `{self.client_id_type}` "
                f"(mqttClientIdType = {self.client_id_type!r}: EMQX's built-in database keeps one kind of id)"
            )
        if (client.password is None) == (client.password_hash is None):
            problems.append(f"{key}: allowed: `password` (a secret) or `passwordHash` (+ `salt`), exactly one")
        if client.password is not None:
            problems.extend(self.password_problems(key, client.password.get_secret_value()))
        if client.password_hash is not None and self.password_hash == "bcrypt" and client.salt is not None:
            problems.append(f"{key}.salt: allowed: unset with bcrypt (the salt is part of a bcrypt hash)")
        return problems

    def password_problems(self, key: str, password: str) -> list[str]:
        """A declared password's length against the hash (`key`: its client, `...mqttClients[i]`)."""
        shortest = MIN_PASSWORD_FAST_HASH if self.password_hash == "sha256" else MIN_PASSWORD_SLOW_HASH
        if len(password) < shortest:
            return [
                f"{key}.password = (hidden: secret, {len(password)} characters): allowed: at least {shortest} "
                f"characters with mqttPasswordHash = {self.password_hash!r}"
                + (" (a fast hash; pbkdf2 or bcrypt admit 8)" if shortest == MIN_PASSWORD_FAST_HASH else "")
            ]
        if self.password_hash == "bcrypt" and len(password.encode()) > BCRYPT_MAX_PASSWORD_BYTES:
            return [
                f"{key}.password = (hidden: secret): allowed: at most {BCRYPT_MAX_PASSWORD_BYTES} bytes with "
                "bcrypt (it ignores the rest)"
            ]
        return []

    def _acl_problems(self, declared: set[str]) -> list[str]:
        """A rule naming an id nobody is declared with would never match: a typo, refused. A
        placeholder of what the client chooses itself (the client id when clients authenticate
        by username, either one without authentication) is refused too: EMQX puts the value into
        the filter as it is (emqx_authz_rule.erl render_topic/2), so a client id `+` or `#` would
        widen `devices/${clientid}/down` to every device's topic."""
        kind = self.client_id_type
        problems = [
            f"{NAMESPACE}:mqttAcl[{position}].{kind} = {getattr(rule, kind)!r}: allowed: a declared "
            f"{kind} ({', '.join(sorted(declared)) or 'none declared'}) or no {kind} (every client)"
            for position, rule in enumerate(self.acl)
            if self.authenticates and getattr(rule, kind) is not None and getattr(rule, kind) not in declared
        ]
        verified = {f"${{{kind}}}"} if self.authenticates else set()
        for position, rule in enumerate(self.acl):
            chosen = sorted({found for topic in rule.topics for found in _PLACEHOLDER.findall(topic)} - verified)
            if chosen:
                problems.append(
                    f"{NAMESPACE}:mqttAcl[{position}].topics = {rule.topics!r}: allowed: "
                    + (
                        f"the placeholder of what clients authenticate with, ${{{kind}}} (not {chosen[0]}: a "
                        "client picks it itself, and `+` or `#` in it would widen the filter)"
                        if self.authenticates
                        else f"no placeholder with allowAnonymous (nothing is verified; {chosen[0]} is the client's choice)"
                    )
                )
        return problems
