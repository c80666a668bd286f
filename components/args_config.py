"""EmqxClusterArgs <-> the StackConfig model: the stack config as args, and args validated.

:func:`stack_args` is the stack-config program's adapter: the `emqx-cluster:*` keys, validated
as ever (config_loader), handed over as the args of the cluster, the keys set and nothing else.
:func:`config_of` validates any args into the same model through the same checks
(config_parse.validate_config), so every message keeps its key names
(`emqx-cluster:hosts[1].address = ...: allowed: ...`). A value that is a `pulumi.Output` (known
only once other resources exist) is refused here, naming its field, unless EmqxClusterArgs
declares the field an Input: the model then holds a placeholder (LATE_FORMS), the real value
travels in :class:`LateInputs`, which puts it in place of the placeholder in every child resource.
"""

from __future__ import annotations

import collections.abc
import copy
import functools
import inspect
import re
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import pulumi
from pulumi import _types
from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel, to_snake

from components.cluster_args import EmqxClusterArgs
from components.config import SECTIONS, StackConfig
from components.config_access import MqttClientConfig
from components.config_hosts import HostConfig
from components.config_parse import ConfigError, field_of, shown, validate_config
from components.config_types import NAMESPACE
from components.render.broker_env import erlang_address

# ------------------------------------------------------------------ the stack config as args


def stack_args(config: StackConfig) -> EmqxClusterArgs:
    """The args that say what `config` says: each key set in the stack, as its args field."""
    values: dict[str, Any] = {}
    for name in config.model_fields_set:
        if name in SECTIONS:
            section = getattr(config, name)
            values.update(
                {
                    to_snake(_key_of(section, field)): _plain(getattr(section, field))
                    for field in section.model_fields_set
                }
            )
        else:
            values[name] = _plain(getattr(config, name))
    return cast(EmqxClusterArgs, values)


def _key_of(model: BaseModel, field_name: str) -> str:
    """The flat stack-config key a section's field reads."""
    alias = type(model).model_fields[field_name].validation_alias
    return alias if isinstance(alias, str) else to_camel(field_name)


def _plain(value: Any) -> Any:
    """A validated value as args hold it: secrets as their text, entries as dicts of the fields set."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name)) for name in value.model_fields_set}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


# ------------------------------------------------------------------ args validated


# Fields that take an Output (EmqxClusterArgs declares them `pulumi.Input`; the key of a stack
# config or of a `hosts` entry) -> the form of the placeholder the model validates meanwhile:
# each passes the field's check and is distinct per field (it holds the field's path or position).
# None is needed to plan. Where the program only writes a value into text (node names, nginx.conf,
# scripts, Prometheus's config, the firewall's rules, the engine's address), every child resource
# gets the Output's value in place of its placeholder (LateInputs.transformation; the address's
# Erlang term too, LATE_TERMS), the component's outputs as well. Where it computes on one, it takes
# the Output itself (LateInputs.resolve): tlsCertificate, tlsPrivateKey, tlsClientCa, tlsClientCrl
# -> tls.tls_material (the certificate is an output; the CRL's digest keys the ticket keys);
# erlangCookie, dashboardPassword -> secrets (generated when unset); sshPrivateKey, sshHostKey ->
# hostexec.HostShell (the connection, secret); mqttClients[i].password, .passwordHash ->
# access.access_material (hashed inside its apply). The checks across keys (loopback with several
# hosts, one address per host, an ssh:// dockerHost needs sshHost) run again once every Output is
# known (config_of).
_PEM = "-----BEGIN {kind}-----\n{mark}\n-----END {kind}-----\n"
LATE_FORMS: dict[str, str] = {
    "tlsCertificate": _PEM.replace("{kind}", "CERTIFICATE"),
    "tlsPrivateKey": _PEM.replace("{kind}", "PRIVATE KEY"),
    "tlsClientCa": _PEM.replace("{kind}", "CERTIFICATE"),
    "tlsClientCrl": _PEM.replace("{kind}", "X509 CRL"),
    "erlangCookie": "{mark}",
    "dashboardPassword": "{mark}",
    "sshPrivateKey": _PEM.replace("{kind}", "OPENSSH PRIVATE KEY"),
    "sshHostKey": "{mark}",
    # 16+ characters (sha256's shortest password), under bcrypt's 72 bytes.
    "password": "{mark}",
    "passwordHash": "{mark}",
    "metricsAlertmanagers": "{mark}:9093",  # host:port
    # A network (no mark fits a CIDR): item i's own host in 198.18.0.0/15 (RFC 2544, benchmarking).
    "adminNetworks": "198.18.{high}.{low}/32",
    # Host i's address: 198.19.0.0/16, the other half of that range (the networks' are 198.18.*).
    "advertiseAddress": "198.19.{high}.{low}",
    "address": "198.19.{high}.{low}",
    # A socket path passes the check (ssh:// would ask for sshHost): the real value is checked later.
    "dockerHost": "unix:///{mark}",
    "sshHost": "{mark}",
    "sshUser": "emqx_late_user_{high}_{low}",  # a POSIX name: lower case, 32 characters at most
}
# Forms a value takes in text besides its own: the address as an Erlang term (inet_dist_use_interface).
LATE_TERMS: dict[str, Callable[[str], str]] = {"advertiseAddress": erlang_address, "address": erlang_address}
_ENTRY_MODELS: dict[str, type[BaseModel]] = {"hosts": HostConfig, "mqttClients": MqttClientConfig}
LATE_MARK = "emqxClusterLateInput"


def placeholder(path: str) -> str:
    """The stand-in for the Output given at `path` (`tlsCertificate`, `hosts[1].sshPrivateKey`)."""
    mark = f"{LATE_MARK}-{path.replace('[', '-').replace('].', '-').removesuffix(']')}"
    form = LATE_FORMS[_field_key(path)]
    position = int(path.split("[", 1)[1].split("]", 1)[0]) if "[" in path else 0  # the item's, or the host's
    return form.replace("{mark}", mark).replace("{high}", str(position // 256)).replace("{low}", str(position % 256))


def _field_key(path: str) -> str:
    """`hosts[1].address` -> `address`, `adminNetworks[0]` -> `adminNetworks`."""
    return path.rsplit(".", 1)[-1].split("[", 1)[0]


def placeholder_pattern(texts: Iterable[str]) -> re.Pattern[str] | None:
    """Any of `texts`, the longest first, never as a piece of a longer number or address
    (`198.19.0.1` neither in `198.19.0.12` nor in `10.198.19.0.1`, `emqx_late_user_0_1` not in
    `emqx_late_user_0_10`); None for no texts."""
    ordered = sorted(texts, key=len, reverse=True)
    if not ordered:
        return None
    return re.compile(
        "|".join(
            (r"(?<![\d.])" if text[0].isdigit() else "") + re.escape(text) + (r"(?!\d)" if text[-1].isdigit() else "")
            for text in ordered
        )
    )


@dataclass(frozen=True)
class LateInputs:
    """The Outputs given for fields that take one, by the text that stands for them (a
    placeholder, or its Erlang term); each resolves to its value once every one is known and
    checked (a failed check names the field)."""

    by_placeholder: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)
    paths: Mapping[str, str] = field(default_factory=dict)  # placeholder -> the field's path

    @functools.cached_property
    def _pattern(self) -> re.Pattern[str] | None:
        return placeholder_pattern(self.paths)

    def holds(self, text: str) -> bool:
        """Whether `text` holds a placeholder (stands for a value known only later)."""
        return self._pattern is not None and self._pattern.search(text) is not None

    def named(self, text: str) -> str:
        """`text` (an error message) with each placeholder named as the field whose Output it stands for."""
        return _named(text, self.paths, self._pattern)

    def resolve(self, value: Any) -> Any:
        """A value as a resource takes it: every placeholder in it replaced by what its Output
        resolves to (then an Output), in strings, lists, maps, Outputs and input types; else itself."""
        pattern = self._pattern
        if pattern is None:
            return value
        if isinstance(value, str):
            if value in self.by_placeholder:
                return self.by_placeholder[value]
            found = {text: self.by_placeholder[text] for text in pattern.findall(value)}
            if not found:
                return value
            return pulumi.Output.all(**found).apply(
                lambda resolved: pattern.sub(lambda match: resolved[match.group()], value)
            )
        if isinstance(value, pulumi.Output):
            return value.apply(self.resolve)
        if isinstance(value, list | tuple):
            return [self.resolve(item) for item in value]
        if isinstance(value, dict):  # keys too: a single host's outputs are keyed by its address
            keys = [self.resolve(key) for key in value]
            items = [self.resolve(item) for item in value.values()]
            if not any(isinstance(key, pulumi.Output) for key in keys):
                return dict(zip(keys, items, strict=True))
            return pulumi.Output.all(*keys).apply(
                lambda known: pulumi.Output.from_input(dict(zip(known, items, strict=True)))
            )
        if _types.is_input_type(type(value)):  # a provider's args class (ConnectionArgs, ContainerUploadArgs)
            copied = copy.copy(value)
            copied.__dict__.update({key: self.resolve(item) for key, item in vars(value).items()})
            return copied
        return value

    def resolve_secret(self, secret: SecretStr | None) -> pulumi.Input[str] | None:
        return None if secret is None else self.resolve(secret.get_secret_value())

    def transformation(self, args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult:
        """Every child resource's inputs with the placeholders replaced (in-process
        `transformations`: pulumi resource.py applies a parent's to each child's props, under the
        mock monitor too, where engine-side `transforms` do not run)."""
        return pulumi.ResourceTransformationResult(props=self.resolve(dict(args.props)), opts=args.opts)


_PLAIN_REASON = (
    "a plain value, known at preview (EmqxClusterArgs declares it plain: it decides how many resources "
    "exist, their names, ports or settings, which Pulumi must know before it declares them)"
)


def config_of(args: Mapping[str, Any]) -> tuple[StackConfig, LateInputs]:
    """Validate the args into the model, or raise one ConfigError naming every bad field."""
    flat: dict[str, Any] = {}
    problems: list[str] = []
    late: dict[str, pulumi.Output[str]] = {}
    hints = _fields(EmqxClusterArgs)
    for name, value in args.items():
        key = to_camel(name)
        for path, output, declared_input in _outputs_in(value, hints.get(name, Any), key):
            if declared_input:
                late[path] = output
            else:
                problems.append(
                    f"{NAMESPACE}:{path} = (an Output, known only once other resources exist): allowed: {_PLAIN_REASON}"
                )
        flat[key] = _camel_keys(value, hints.get(name, Any))
    if problems:
        raise ConfigError.of(problems)
    for path in late:
        _put(flat, path, placeholder(path))
    paths = {text: path for path in late for text in _stand_ins(path)}
    pattern = placeholder_pattern(paths)
    holding = _holding_placeholders(flat, late, paths, pattern)
    if holding:  # before the model, which would judge (and show) the stand-ins
        raise ConfigError.of(holding)
    try:
        config = validate_config(flat, late=frozenset(late))
    except ConfigError as error:
        raise ConfigError(_named(str(error), paths, pattern)) from None
    checked = _checked_together(
        flat, {path: _checked(config, path, output) for path, output in late.items()}, paths, pattern
    )
    by_placeholder = {
        text: output if form is None else output.apply(form)
        for path, output in checked.items()
        for text, form in _stand_ins(path).items()
    }
    return config, LateInputs(by_placeholder, paths)


def _named(text: str, paths: Mapping[str, str], pattern: re.Pattern[str] | None) -> str:
    return text if pattern is None else pattern.sub(lambda match: f"<{paths[match.group()]}: an Output>", text)


def _stand_ins(path: str) -> dict[str, Callable[[str], str] | None]:
    """The texts that stand for the Output at `path`, each with the form its value takes there:
    its placeholder (the value itself), and for an address its Erlang term (LATE_TERMS)."""
    term = LATE_TERMS.get(_field_key(path))
    return {placeholder(path): None, **({term(placeholder(path)): term} if term is not None else {})}


def _checked_together(
    flat: Mapping[str, Any],
    checked: Mapping[str, pulumi.Output[str]],
    paths: Mapping[str, str],
    pattern: re.Pattern[str] | None,
) -> dict[str, pulumi.Output[str]]:
    """Each Output, once every one is known and has passed its own check, and the whole config
    with their values has passed the checks across keys (an address loopback with several
    hosts, two hosts at one address, an ssh:// dockerHost without sshHost) and none holds
    another's placeholder: the stack config's lines, naming the keys. The verdict holds no
    value, so it is not secret."""

    if not checked:
        return {}

    def check(values: dict[str, Any]) -> None:
        given = copy.deepcopy(dict(flat))
        for path, value in values.items():
            _put(given, path, value)
        try:
            validate_config(given, _holding_placeholders(values, set(), paths, pattern))
        except ConfigError as error:
            raise pulumi.RunError(str(error)) from None

    verdict = pulumi.Output.unsecret(pulumi.Output.all(**checked).apply(check))
    return {path: pulumi.Output.all(verdict, output).apply(lambda pair: pair[1]) for path, output in checked.items()}


def _holding_placeholders(
    values: Mapping[str, Any], late: Iterable[str], paths: Mapping[str, str], pattern: re.Pattern[str] | None
) -> list[str]:
    """A value holding the placeholder of a late one would have its text replaced by that
    Output's value in every resource: refused, naming both."""
    if pattern is None:
        return []
    skipped = set(late)
    problems = []
    for path, text in _texts(values):
        match = None if path in skipped else pattern.search(text)
        if match is not None:
            problems.append(
                f"{NAMESPACE}:{path} = {shown(path, text)}: allowed: a value without {match.group()!r} (the "
                f"program writes it for {paths[match.group()]}, an Output, until that is known)"
            )
    return problems


def _texts(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in the model's input, with its path (`hosts[0].lbSourceAddresses[1]`)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from _texts(item, f"{path}[{position}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _texts(item, f"{path}.{key}" if path else str(key))


def _put(flat: dict[str, Any], path: str, value: str) -> None:
    """Set `key`, `<list>[<i>]` or `<list>[<i>].key` in the model's input."""
    head, _, key = path.partition(".")
    items, _, position = head.removesuffix("]").partition("[")
    if not position:
        flat[head] = value
    elif not key:
        flat[items][int(position)] = value
    else:
        flat[items][int(position)][key] = value


def _checked(config: StackConfig, path: str, output: pulumi.Output[Any]) -> pulumi.Output[str]:
    """The Output, checked like its field once it resolves (a declared password also against the
    hash): a failed check stops the update with the line the stack config would give (secrets
    hidden)."""
    head, _, key = path.partition(".")
    items = head.split("[", 1)[0]
    model = _ENTRY_MODELS[items] if key else None
    field_info = model.model_fields[to_snake(key)] if model is not None else field_of(items)
    if field_info is None:
        raise ValueError(f"{path}: no field of the config model")
    adapter: TypeAdapter[Any] = TypeAdapter(cast(Any, field_info.annotation))
    an_item = not key and items != head  # a list's item: checked as a list of one

    def check(value: Any) -> str:
        try:
            adapter.validate_python([value] if an_item else value)
        except ValidationError as error:
            message = error.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
            raise pulumi.RunError(
                str(ConfigError.of([f"{NAMESPACE}:{path} = {shown(path, value)}: {message}"]))
            ) from None
        problems = config.access.password_problems(f"{NAMESPACE}:{head}", str(value)) if key == "password" else []
        if problems:
            raise pulumi.RunError(str(ConfigError.of(problems)))
        return str(value)

    return output.apply(check)


def _camel_keys(value: Any, annotation: Any) -> Any:
    """An args value as the model reads it, in a new list or map: the entries of `hosts`,
    `mqttClients` and `mqttAcl` keyed by stack-config key (their fields), maps (`placement`,
    `sysctls`) as given."""
    entry = _entry_type(annotation)
    if entry is not None and isinstance(value, list):
        return [{to_camel(k): v for k, v in item.items()} if isinstance(item, dict) else item for item in value]
    if isinstance(value, list | dict):  # a copy: placeholders go into it, never into the caller's args
        return value.copy()
    return value


def _entry_type(annotation: Any) -> type | None:
    """The TypedDict of a list's entries (list[ClusterHost] -> ClusterHost), else None."""
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if typing.is_typeddict(item):
            return cast(type, item)
    return None


def _is_output(value: Any) -> bool:
    return isinstance(value, pulumi.Output) or inspect.isawaitable(value)


def _fields(typed_dict: type) -> dict[str, Any]:
    """A TypedDict's field annotations as objects (cluster_args has no postponed annotations;
    typing.get_type_hints cannot resolve pulumi.Input's forward reference to Output[T])."""
    return {name: _unwrapped(annotation) for name, annotation in typed_dict.__annotations__.items()}


def _unwrapped(annotation: Any) -> Any:
    """`Required[X]` / `NotRequired[X]` -> X."""
    if typing.get_origin(annotation) in (typing.Required, typing.NotRequired):
        return typing.get_args(annotation)[0]
    return annotation


def _input_of(annotation: Any) -> Any | None:
    """X of `pulumi.Input[X]` (a union of X, Awaitable[X] and Output[X]), else None."""
    if typing.get_origin(annotation) is not typing.Union:
        return None
    awaited = [m for m in typing.get_args(annotation) if typing.get_origin(m) is collections.abc.Awaitable]
    return typing.get_args(awaited[0])[0] if awaited else None


def _outputs_in(value: Any, annotation: Any, path: str) -> list[tuple[str, pulumi.Output[Any], bool]]:
    """Every Output in an args value: (its path as messages write it, the Output, whether its
    field takes one)."""
    inner = _input_of(annotation)
    if _is_output(value):
        return [(path, pulumi.Output.from_input(value), inner is not None)]
    annotation = inner if inner is not None else annotation
    found: list[tuple[str, pulumi.Output[Any], bool]] = []
    origin = typing.get_origin(annotation)
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(annotation)
        for position, entry in enumerate(value):
            found.extend(_outputs_in(entry, item, f"{path}[{position}]"))
    elif origin is dict and isinstance(value, dict):
        _, item = typing.get_args(annotation)
        for key, entry in value.items():
            found.extend(_outputs_in(entry, item, f'{path}["{key}"]'))
    elif isinstance(annotation, type) and typing.is_typeddict(annotation) and isinstance(value, dict):
        fields = _fields(annotation)
        for name, entry in value.items():
            found.extend(_outputs_in(entry, fields.get(name, Any), f"{path}.{to_camel(name)}"))
    return found
