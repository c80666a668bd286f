"""From the raw strings Pulumi holds to a StackConfig, or one ConfigError naming every bad key.

Pure Python. Each line of a ConfigError reads `emqx-cluster:<key> = <value>: allowed: ...`, with
the key as the user writes it in the stack file (flat, even when the model keeps it in a
section) and a secret value hidden.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.alias_generators import to_camel, to_snake
from pydantic.fields import FieldInfo

from components.config import SECTIONS, StackConfig, config_keys, section_names_in
from components.config_hosts import HostConfig
from components.config_types import LATE_PATHS, NAMESPACE, SECRET_IN_STACK


class ConfigError(ValueError):
    """Any invalid `emqx-cluster:*` key; the message lists every problem found."""

    @classmethod
    def of(cls, problems: Iterable[str]) -> ConfigError:
        return cls("invalid stack configuration:\n  " + "\n  ".join(dict.fromkeys(problems)))


def host_config_keys() -> list[str]:
    """Every key a `hosts` entry accepts, its own (name, address, ...) before the SSH login's."""
    own = list(HostConfig.__annotations__)
    return [to_camel(name) for name in sorted(HostConfig.model_fields, key=lambda name: name not in own)]


def holds_secrets(key: str, text: str) -> bool:
    """Whether a structured key's value carries a secret (a host's SSH key): then the whole
    value must be a secret in the stack config."""
    if key != "hosts":
        return False
    try:
        hosts = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(hosts, list) and any(isinstance(host, dict) and "sshPrivateKey" in host for host in hosts)


def parse_stack_config(raw: Mapping[str, str | None]) -> StackConfig:
    """Validate raw stack-config strings (key without namespace -> value as Pulumi gives it)."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, text in raw.items():
        if text is None:
            continue
        if to_camel(key) in _STRUCTURED:
            try:
                values[key] = json.loads(text)
            except json.JSONDecodeError:
                problems.append(f"{NAMESPACE}:{key} = {text!r}: allowed: a YAML map/list in the stack file")
                continue
        else:
            values[key] = text
    if problems:  # a structured value that is no YAML: the model would read the stack wrongly
        raise ConfigError.of(problems)
    return validate_config(values)


def validate_config(
    given: Mapping[str, Any], problems: Iterable[str] = (), late: frozenset[str] = frozenset()
) -> StackConfig:
    """Validate values by stack-config key (structured ones as lists and maps), or raise one
    ConfigError naming every bad key, `problems` found before included. `late`: the paths
    (`hosts[1].address`) whose values stand for Outputs (args_config): checks that would judge
    the stand-in, not the value, wait until it is known."""
    values = dict(given)
    problems = list(problems)
    problems.extend(_unknown_key(key, values.pop(key)) for key in section_names_in(values))
    try:
        config = StackConfig.model_validate(values, context={LATE_PATHS: late})
    except ValidationError as error:
        problems.extend(_describe(error))
    if problems:
        raise ConfigError.of(problems)
    return config


def _describe(error: ValidationError) -> list[str]:
    """Turn pydantic errors into 'namespace:key = value: allowed ...' lines, hiding secrets."""
    lines: list[str] = []
    for item in error.errors(include_url=False):
        location = [str(part) for part in item["loc"]]
        message = item["msg"].removeprefix("Value error, ")
        if location and location[0] in SECTIONS:  # a section field: the user's flat key
            location = location[1:]
        if not location:  # model-level checks already name their keys
            lines.extend(message.split("\n"))
            continue
        key = location[0]
        field = field_of(key)
        if key in _LIST_ITEMS and len(location) > 2:  # hosts[<i>].<field>, its own value shown
            field = _LIST_ITEMS[key].model_fields.get(to_snake(location[2]))
            key, location = f"{key}[{location[1]}].{location[2]}", location[2:]
        elif key in _LIST_ITEMS and len(location) == 2:  # a whole item's check: mqttAcl[<i>]
            key, location = f"{key}[{location[1]}]", location[:1]
        if item["type"] == "extra_forbidden":
            lines.append(_unknown_key(key, item.get("input")))
            continue
        value = shown(key, item.get("input"))
        if item["type"] in (
            "greater_than",
            "greater_than_equal",
            "less_than_equal",
            "int_parsing",
            "int_type",
            "float_parsing",
            "bool_parsing",
        ):
            allowed = _range_text(field)
            message = f"allowed: {allowed}" if allowed else message
        elif item["type"] == "literal_error":
            message = f"allowed: {item.get('ctx', {}).get('expected', message)}"
        elif not message.startswith("allowed"):
            # Type errors ("Input should be a valid list"): say where, and keep the contract's wording.
            where = f" (at {'.'.join(location[1:])})" if len(location) > 1 else ""
            message = f"allowed: {_TYPE_TEXT.get(item['type'], 'a value of the documented type')}{where}; {message}"
        lines.append(f"{NAMESPACE}:{key} = {value}: {message}")
    return lines


def shown(key: str, value: Any) -> str:
    """A value as an error line shows it: its repr, or `(hidden: secret)`."""
    shown = repr(value)
    if key in _HIDDEN_KEYS or key.endswith(".sshPrivateKey") or "PRIVATE KEY" in shown or _client_secret(key):
        return "(hidden: secret)"
    return shown


def _client_secret(key: str) -> bool:
    """A declared client's password or hash, or a whole client entry (which holds one)."""
    return key.startswith("mqttClients") and not key.endswith((".username", ".clientid", ".salt", ".superuser"))


def _unknown_key(key: str, value: Any) -> str:
    item = key.split("[", 1)[0] if "[" in key else None
    if item == "hosts":
        close = ", ".join(host_config_keys())
    elif item in _LIST_ITEMS:
        close = ", ".join(to_camel(name) for name in _LIST_ITEMS[item].model_fields)
    else:
        close = ", ".join(config_keys())
    return f"{NAMESPACE}:{key} = {shown(key, value)}: unknown key; allowed keys: {close}"


def field_of(key: str) -> FieldInfo | None:
    """The model field a flat stack-config key fills, in the stack or in a section."""
    models: list[type[BaseModel]] = [StackConfig, *SECTIONS.values()]
    for model in models:
        for name, field in model.model_fields.items():
            if key == (field.validation_alias or to_camel(name)) and name not in SECTIONS:
                return field
    return None


# ------------------------------------------------------------------ what the model says of each key


def _parts(annotation: Any) -> list[Any]:
    """The types an annotation is made of: `Optional[Annotated[SecretStr, ...]]` -> [SecretStr, None]."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _parts(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [part for member in typing.get_args(annotation) for part in _parts(member)]
    return [annotation]


def _containers(annotation: Any) -> list[Any]:
    """The list or dict types of an annotation (`list[HostConfig] | None` -> [list[HostConfig]])."""
    return [part for part in _parts(annotation) if typing.get_origin(part) in (list, dict)]


def _secret(field: FieldInfo) -> bool:
    """A secret value: a SecretStr, unless its field says otherwise (SECRET_IN_STACK)."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    said = extra.get(SECRET_IN_STACK)
    return bool(said) if said is not None else SecretStr in _parts(field.annotation)


def _key_fields() -> dict[str, FieldInfo]:
    fields = {key: field_of(key) for key in config_keys()}
    return {key: field for key, field in fields.items() if field is not None}


_KEY_FIELDS = _key_fields()
# Keys whose stack-config value is structured (a YAML list or map, JSON in PULUMI_CONFIG).
_STRUCTURED = {key for key, field in _KEY_FIELDS.items() if _containers(field.annotation)}
# Set with `pulumi config set --secret`, or refused, and never echoed in an error.
SECRET_KEYS = tuple(key for key, field in _KEY_FIELDS.items() if _secret(field))
# Never echoed either: the secrets, and a client CA (public, but it may have been set as one).
_HIDDEN_KEYS = tuple(
    key for key, field in _KEY_FIELDS.items() if SecretStr in _parts(field.annotation) or _secret(field)
)
# Structured keys whose items are models: their errors name `key[i].field`.
_LIST_ITEMS: dict[str, type[BaseModel]] = {
    key: item
    for key, field in _KEY_FIELDS.items()
    for container in _containers(field.annotation)
    if typing.get_origin(container) is list
    and isinstance(item := typing.get_args(container)[0], type)
    and issubclass(item, BaseModel)
}

_TYPE_TEXT = {
    "dict_type": "a YAML map in the stack file",
    "list_type": "a YAML list in the stack file",
    "string_type": "a string or a number",
}


def _range_text(field: FieldInfo | None) -> str:
    if field is None:
        return ""
    if field.annotation is bool:
        return "true or false"
    low = high = above = None
    for meta in field.metadata:
        low = getattr(meta, "ge", low)
        above = getattr(meta, "gt", above)
        high = getattr(meta, "le", high)
    if field.annotation is float:
        floor = f"above {above}" if above is not None else f"at least {low}"
        return f"a number {floor}" + (f" and at most {high}" if high is not None else "")
    if low is None and high is None:
        return ""
    if high is None:
        return f"a whole number >= {low}"
    return f"a whole number from {low} to {high}"
