"""What EMQX 5.8 (v5.8.6) enforces on a node's environment, as pure functions for EMQX stand-ins.

Stdlib only, Python >= 3.11, no imports from this project: the scripted `docker` of the
integration tier (fake_docker.py) and the EMQX stand-in image of the e2e tier import this file
unchanged.  Every rule cites the EMQX source it reproduces (github.com/emqx/emqx at tag v5.8.6,
and the dependencies that tag pins in rebar.config: emqx/hocon 0.43.4, emqx/ekka 0.19.8,
emqx/gen_rpc 3.4.1, emqx/jiffy 1.0.6).

API
---
HOCON (hocon 0.43.4, the parser EMQX runs on every `EMQX_*` variable):

- ``parse_hocon(text) -> dict``: hocon:binary/2 with ``format => map``; raises ``HoconError``
  where hocon returns ``{error, _}`` (scan, parse, unresolved substitution, concat errors).
- ``parse_env_value(raw) -> EnvValue``: hocon_tconf:parse_env/3, i.e. ``fake_key=<raw>`` parsed
  as HOCON, falling back to the raw text when that fails.  ``EnvValue.value`` is a str, int,
  float, bool, dict, list or None (HOCON ``null``: the variable counts as absent).

Node configuration and boot (bin/emqx, the image's entrypoint, emqx_conf_schema, emqx_schema,
emqx_dashboard, ekka_dist, gen_rpc):

- ``image_environment(env) -> dict``: the container's environment as the official image's
  entrypoint leaves it for the boot command (``EMQX_RPC__PORT_DISCOVERY`` defaults to manual).
- ``resolve_node(env) -> NodeConfig``: node name, booted cookie, default dashboard admin, every
  socket the node listens on (``Socket``), and the configuration errors that stop the boot.
- ``boot_errors(node, others) -> list[str]``: ``node.errors`` plus every socket that collides
  with a socket of ``others`` (running nodes on the same host network).
- ``default_admin(node) -> tuple[str, str] | None``: what emqx_dashboard_admin stores on the
  first boot (no existing admin record), never validated; None when username/password is empty.

Non-boot commands (``emqx ctl ...``, ``emqx ping``) run by `docker exec` with the container's
environment:

- ``cli_precheck(env, node) -> CliFailure | None``: bin/emqx's checks before it talks to the
  node: the node-name lookup and the raw cookie comparison (``die``: ``ERROR: ...`` on stderr,
  exit 1).
- ``legal_password(password) -> str | None``: emqx_dashboard_admin:legal_password/1 (used by
  ``emqx ctl admins add|passwd``, not by the first-boot default admin), None when legal.

Texts of ``emqx ctl`` (emqx_mgmt_cli, emqx_ctl, nodetool):

- ``status_text(node, version, started=True)``, ``not_responding_text(node)``,
  ``cluster_status_text(running, stopped)``, ``cluster_status_json(running, stopped)``,
  ``ctl_help_text()``, ``CLUSTER_USAGE``, ``ADMINS_USAGE``, ``format_usage(pairs)``.
- ``broker_text(version, uptime_ms, datetime)``, ``broker_stats_text(stats)``,
  ``BROKER_USAGE``, ``DATA_USAGE``.

Backup archives (emqx_mgmt_data_backup, `emqx ctl data export|import`):

- ``export_base_name(local_time, millis)``, ``meta_hocon(version, edition)``,
  ``data_export_done_text(path)``, ``DATA_IMPORTED``, ``data_import_failed_text(reason)``,
  ``IMPORT_ERRORS``, ``check_backup_meta(meta, node_version) -> reason | None``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ADMINS_USAGE",
    "BROKER_USAGE",
    "CLUSTER_USAGE",
    "DATA_IMPORTED",
    "DATA_USAGE",
    "DEFAULT_COOKIE",
    "IMPORT_ERRORS",
    "CliFailure",
    "EnvValue",
    "HoconError",
    "NodeConfig",
    "Socket",
    "boot_errors",
    "broker_stats_text",
    "broker_text",
    "check_backup_meta",
    "cli_precheck",
    "cluster_status_json",
    "cluster_status_text",
    "ctl_help_text",
    "data_export_done_text",
    "data_import_failed_text",
    "default_admin",
    "export_base_name",
    "format_usage",
    "image_environment",
    "legal_password",
    "meta_hocon",
    "not_responding_text",
    "parse_env_value",
    "parse_hocon",
    "resolve_node",
    "status_text",
]

# ================================================================================================
# HOCON, as emqx/hocon 0.43.4 parses it
# ================================================================================================


class HoconError(ValueError):
    """Where hocon:binary/2 returns {error, Reason} (src/hocon.erl, binary/2 catches throw:_)."""


@dataclass(frozen=True)
class _Tok:
    kind: str  # unqstr string variable maybevar integer float bool null include key endstr endvar
    # endobj endarr, or a punctuator: { } [ ] , : =
    line: int
    value: Any = None


# src/hocon_scanner.xrl, Definitions.  leex takes the longest match; on a tie the rule listed
# first in Rules wins, hence this order (Ignored, Punctuator, Bool, Null, Unquoted, Integer,
# Float, String, MultilineString, Bytesize, Percent, Duration, Variable, MaybeVar).
_LINEFEED = "\n\r\u2028\u2029"
_UNQUOTED = r"[A-Za-z][A-Za-z0-9_.@%\-|]*"
_INTEGER = r"[+\-]?[0-9]+"
_SCANNER_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("ws", re.compile("[\t\x0b\x0c \u00a0]")),
    ("newline", re.compile(f"[{_LINEFEED}]")),
    ("comment", re.compile(f"(?:#|//)[^{_LINEFEED}]*")),
    ("punct", re.compile(r"[{}\[\],:=]")),
    ("bool", re.compile("true|false")),
    ("null", re.compile("null")),
    ("unqstr", re.compile(_UNQUOTED)),
    ("integer", re.compile(_INTEGER)),
    ("float", re.compile(rf"(?:{_INTEGER})?\.[0-9]+|{_INTEGER}\.[0-9]+[eE][+\-]?[0-9]+")),
    ("string", re.compile(rf'"(?:\\["\\bfnrt]|\\u[0-9A-Fa-f]{{4}}|[^"{_LINEFEED}])*"')),
    ("multiline", re.compile(r'"""(?:[^"]|"[^"]|""[^"])*"""')),
    ("bytesize", re.compile("[0-9]+(?:kb|KB|mb|MB|gb|GB)")),
    ("percent", re.compile("[0-9]+%")),
    ("duration", re.compile("[0-9]+(?:d|D|h|H|m|M|s|S|ms|MS)")),
    ("variable", re.compile(r"\$\{" + _UNQUOTED + r"\}")),
    ("maybevar", re.compile(r"\$\{\?" + _UNQUOTED + r"\}")),
)


def _unescape(body: str) -> str:
    """hocon_scanner.xrl unescape/2 + unesc/1: only \\\\ \\" \\n \\t \\r \\b \\f; \\uXXXX stays as is."""
    table = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
    out: list[str] = []
    i = 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body) and body[i + 1] in table:
            out.append(table[body[i + 1]])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def _scan(text: str) -> list[_Tok]:
    """hocon_token:scan/2 (hocon_scanner:string/1): a scan error is a HoconError."""
    tokens: list[_Tok] = []
    pos, line = 0, 1
    while pos < len(text):
        best: tuple[int, str] | None = None
        for kind, pattern in _SCANNER_RULES:
            m = pattern.match(text, pos)
            if m and m.end() > pos and (best is None or m.end() - pos > best[0]):
                best = (m.end() - pos, kind)
        if best is None:
            raise HoconError(f"scan_error: illegal characters {text[pos : pos + 10]!r} at line {line}")
        length, kind = best
        chars = text[pos : pos + length]
        pos += length
        if kind in ("ws", "comment"):
            continue
        if kind == "newline":
            line += 1
            continue
        if kind == "punct":
            tokens.append(_Tok(chars, line))
        elif kind == "bool":
            tokens.append(_Tok("bool", line, chars == "true"))
        elif kind == "null":
            tokens.append(_Tok("null", line, None))
        elif kind == "unqstr":
            # maybe_include/2: the bare word `include` starts a directive.
            tokens.append(_Tok("include", line) if chars == "include" else _Tok("unqstr", line, chars))
        elif kind == "integer":
            tokens.append(_Tok("integer", line, int(chars)))
        elif kind == "float":
            tokens.append(_Tok("float", line, float("0" + chars if chars.startswith(".") else chars)))
        elif kind == "string":
            tokens.append(_Tok("string", line, _unescape(chars[1:-1])))
        elif kind == "multiline":
            # strip_quotes/3; the `~` unindent form is not modelled (no EMQX_* value needs it).
            tokens.append(_Tok("string", line, chars[3:-3]))
        elif kind in ("bytesize", "percent", "duration"):
            # The scanner emits these as {string, Line, TokenChars}: "5s" stays the text "5s".
            tokens.append(_Tok("string", line, chars))
        elif kind == "variable":
            tokens.append(_Tok("variable", line, chars[2:-1].strip()))
        else:  # maybevar
            tokens.append(_Tok("maybevar", line, chars[3:-1].strip()))
        line += chars.count("\n")
    return tokens


def _rm_trailing_comma(tokens: list[_Tok]) -> list[_Tok]:
    """hocon_token:rm_trailing_comma/1: a `,` right before `}` or `]` is dropped."""
    out: list[_Tok] = []
    for i, tok in enumerate(tokens):
        if tok.kind == "," and i + 1 < len(tokens) and tokens[i + 1].kind in ("}", "]"):
            continue
        out.append(tok)
    return out


def _to_key(acc: list[_Tok]) -> list[_Tok]:
    """hocon_token:trans_key_lb/1: the string before `:`, `=` or `{` becomes a key."""
    if acc and acc[-1].kind == "unqstr":
        acc[-1] = _Tok("key", acc[-1].line, tuple(p for p in str(acc[-1].value).split(".") if p))
    elif acc and acc[-1].kind == "string":
        acc[-1] = _Tok("key", acc[-1].line, (acc[-1].value,))
    return acc


def _trans_key(tokens: list[_Tok]) -> list[_Tok]:
    """hocon_token:trans_key/1 (`:` and `=` are dropped, `{` kept), then trans_splice_end/1."""
    acc: list[_Tok] = []
    for tok in tokens:
        if tok.kind in (":", "="):
            _to_key(acc)
        elif tok.kind == "{":
            _to_key(acc)
            acc.append(tok)
        else:
            acc.append(tok)
    return _trans_splice_end(acc)


_SPLICE_END = {"unqstr": "endstr", "string": "endstr", "variable": "endvar", "maybevar": "endvar", "}": "endobj"}


def _trans_splice_end(tokens: list[_Tok]) -> list[_Tok]:
    """hocon_token:trans_splice_end/3: the last token of each value run becomes endstr/endvar/...."""
    out: list[_Tok] = []
    seq: list[_Tok] = []

    def flush() -> None:
        if seq:
            last = seq[-1]
            end = {**_SPLICE_END, "]": "endarr"}.get(last.kind)
            if end is not None:
                seq[-1] = _Tok(end, last.line, last.value if last.kind not in ("}", "]") else None)
                if last.kind == "maybevar":
                    seq[-1] = _Tok("endmaybevar", last.line, last.value)
        out.extend(seq)
        seq.clear()

    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.kind in ("key", "include", ","):
            flush()
            out.append(tok)
        elif tok.kind == "}" and i + 1 < len(tokens) and tokens[i + 1].kind == "{" and tokens[i + 1].line != tok.line:
            # Virtual comma between objects on separate lines.
            tokens = [*tokens[: i + 1], _Tok(",", tok.line), *tokens[i + 1 :]]
            continue
        elif tok.kind in ("}", "]"):
            flush()
            seq.append(tok)
        else:
            seq.append(tok)
        i += 1
    flush()
    return out


# Parsed values before concatenation: ("obj", [(path, node)]), ("arr", [node]), ("concat", [node]),
# ("var", (name, required)), ("prim", value).
_Node = tuple[str, Any]


class _Parser:
    """src/hocon_parser.yrl as recursive descent (the grammar is LALR(1) and unambiguous)."""

    def __init__(self, tokens: list[_Tok]) -> None:
        self.toks = tokens
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i].kind if self.i < len(self.toks) else None

    def take(self, *kinds: str) -> _Tok:
        kind = self.peek()
        if kind not in kinds:
            where = self.toks[self.i].line if kind is not None else "end"
            raise HoconError(f"parse_error: syntax error before {kind or 'end of input'} (line {where})")
        self.i += 1
        return self.toks[self.i - 1]

    def hocon(self) -> _Node:
        if self.peek() == "{":
            self.take("{")
            fields = [] if self.peek() == "endobj" else self.fields()
            self.take("endobj")
        else:
            fields = self.fields()
        if self.peek() is not None:
            self.take()  # raises: trailing tokens
        return ("obj", fields)

    def fields(self) -> list[tuple[tuple[str, ...], _Node]]:
        out = [self.field()]
        while True:
            if self.peek() == ",":
                self.take(",")
                out.append(self.field())
            elif self.peek() in ("key", "include"):
                out.append(self.field())
            else:
                return out

    def field(self) -> tuple[tuple[str, ...], _Node]:
        if self.peek() == "include":
            # hocon_token:include/2 reads files; no EMQX_* value needs it.
            raise HoconError("include directives are not modelled")
        key = self.take("key")
        return (tuple(key.value), self.value())

    _VALUE_START = frozenset(
        [
            "null",
            "bool",
            "integer",
            "float",
            "unqstr",
            "string",
            "variable",
            "maybevar",
            "endstr",
            "endvar",
            "endmaybevar",
            "{",
            "[",
        ]
    )

    def value(self) -> _Node:
        kind = self.peek()
        if kind in ("null", "bool", "integer", "float"):
            return ("prim", self.take(kind).value)
        return ("concat", self.partials())

    def partials(self) -> list[_Node]:
        parts: list[_Node] = []
        while True:
            kind = self.peek()
            if kind in ("unqstr", "string"):
                parts.append(("prim", str(self.take(kind).value)))
            elif kind in ("variable", "maybevar"):
                tok = self.take(kind)
                parts.append(("var", (tok.value, kind == "variable")))
            elif kind == "endstr":
                parts.append(("prim", str(self.take(kind).value)))
                return parts
            elif kind in ("endvar", "endmaybevar"):
                tok = self.take(kind)
                parts.append(("var", (tok.value, kind == "endvar")))
                return parts
            elif kind == "{":
                self.take("{")
                fields = [] if self.peek() in ("}", "endobj") else self.fields()
                end = self.take("}", "endobj")
                parts.append(("obj", fields))
                if end.kind == "endobj":
                    return parts
            elif kind == "[":
                self.take("[")
                elements = [] if self.peek() in ("]", "endarr") else self.elements()
                end = self.take("]", "endarr")
                parts.append(("arr", elements))
                if end.kind == "endarr":
                    return parts
            else:
                self.take("endstr")  # raises

    def elements(self) -> list[_Node]:
        out = [self.value()]
        while True:
            if self.peek() == ",":
                self.take(",")
                out.append(self.value())
            elif self.peek() in self._VALUE_START:
                out.append(self.value())
            else:
                return out


_UNRESOLVABLE = object()


def _nest(path: tuple[str, ...], value: Any) -> tuple[str, Any]:
    """hocon:create_nested/2: `a.b = 1` is `a { b = 1 }`."""
    for key in reversed(path[1:]):
        value = {key: value}
    return path[0], value


def _merge(into: dict[str, Any], key: str, value: Any) -> None:
    """hocon:do_transform/3 merge: objects deep-merge, anything else is replaced."""
    if isinstance(value, dict) and isinstance(into.get(key), dict):
        for k, v in value.items():
            _merge(into[key], k, v)
    else:
        into[key] = value


def _evaluate(node: _Node, root: list[tuple[tuple[str, ...], _Node]], depth: int = 0) -> Any:
    """hocon:resolve/1 then hocon:concat/1 for one value."""
    if depth > 32:
        raise HoconError("resolve_error: substitution cycle")
    kind, payload = node
    if kind == "prim":
        return payload
    if kind == "obj":
        obj: dict[str, Any] = {}
        for path, sub in payload:
            value = _evaluate(sub, root, depth)
            if value is not _UNRESOLVABLE:
                _merge(obj, *_nest(path, value))
        return obj
    if kind == "arr":
        return [v for v in (_evaluate(e, root, depth) for e in payload) if v is not _UNRESOLVABLE]
    if kind == "var":
        name, required = payload
        found = _lookup(tuple(p for p in name.split(".") if p), root, depth)
        if found is _UNRESOLVABLE:
            if required:
                raise HoconError(f"resolve_error: failed to resolve {name}")
            return _UNRESOLVABLE
        return found
    # concat: do_concat/3 -- strings join, arrays append, objects merge, anything else mixed errors.
    parts = [v for v in (_evaluate(p, root, depth) for p in payload) if v is not _UNRESOLVABLE]
    if not parts:
        return _UNRESOLVABLE
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, str) for p in parts):
        return "".join(parts)
    if all(isinstance(p, list) for p in parts):
        return [x for p in parts for x in p]
    if all(isinstance(p, dict) for p in parts):
        merged: dict[str, Any] = {}
        for p in parts:
            for k, v in p.items():
                _merge(merged, k, v)
        return merged
    raise HoconError("concat_error: cannot concatenate values of different types")


def _lookup(path: tuple[str, ...], root: list[tuple[tuple[str, ...], _Node]], depth: int) -> Any:
    """hocon:lookup/2 on the document being resolved (the last definition wins)."""
    tree: dict[str, Any] = {}
    for fpath, sub in root:
        if fpath[: len(path)] == path[: len(fpath)]:
            value = _evaluate(sub, root, depth + 1)
            if value is not _UNRESOLVABLE:
                _merge(tree, *_nest(fpath, value))
    current: Any = tree
    for key in path:
        if not isinstance(current, dict) or key not in current:
            return _UNRESOLVABLE
        current = current[key]
    return current


def parse_hocon(text: str) -> dict[str, Any]:
    """hocon:binary(Text, #{format => map}) (src/hocon.erl do_binary/2 pipeline); HoconError on error."""
    tokens = _trans_key(_rm_trailing_comma(_scan(text)))
    if not tokens:
        return {}  # hocon_token:parse([], _)
    tree = _Parser(tokens).hocon()
    result = _evaluate(tree, tree[1])
    assert isinstance(result, dict)
    return result


@dataclass(frozen=True)
class EnvValue:
    """An `EMQX_*` value as the config layer sees it (hocon_tconf:parse_env/3)."""

    raw: str
    value: Any  # str | int | float | bool | dict | list | None (null: the override is dropped)
    fallback: bool  # HOCON refused the text, so the raw text is used as a string
    reason: str = ""  # why HOCON refused it (when fallback)


def parse_env_value(raw: str) -> EnvValue:
    """hocon_tconf:parse_env/3 (hocon 0.43.4): "" stays ""; else `fake_key=<raw>` parsed as HOCON,
    and the raw text (as a binary) when that fails."""
    if raw == "":
        return EnvValue(raw, "", False)
    try:
        parsed = parse_hocon("fake_key=" + raw)
    except HoconError as exc:
        return EnvValue(raw, raw, True, str(exc))
    if "fake_key" not in parsed:
        # `{ok, #{}}` matches neither clause of parse_env/3's case: EMQX crashes (case_clause).
        raise HoconError(f"case_clause: {raw!r} leaves no value (hocon_tconf:parse_env/3)")
    return EnvValue(raw, parsed["fake_key"], False)


# ================================================================================================
# Schema conversions the rules rely on
# ================================================================================================


class _ConfigError(Exception):
    pass


def _bin_str(value: Any, what: str) -> str:
    """emqx_schema:password_converter/2 -> bin_str_converter/2: integers become their digits,
    strings stay, anything else throws "must_quote"."""
    if isinstance(value, bool):
        raise _ConfigError(f"{what}: must_quote")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in value):
        try:
            return "".join(chr(c) for c in value)  # unicode:characters_to_binary/1 of a charlist
        except (ValueError, OverflowError):
            pass
    raise _ConfigError(f"{what}: must_quote")


def _string(value: Any, what: str) -> str:
    """typerefl string() as hocon_schema checks it: HOCON strings only."""
    if not isinstance(value, str):
        raise _ConfigError(f"{what}: {{expected_type: string, got: {value!r}}}")
    return value


def _boolean(value: Any, what: str) -> bool:
    """typerefl boolean(): true/false, or the strings "true"/"false" (typerefl:from_string)."""
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise _ConfigError(f"{what}: {{expected_type: boolean, got: {value!r}}}")


def _enum(value: Any, allowed: tuple[str, ...], what: str) -> str:
    """hoconsc:enum/1: the text must be one of the symbols."""
    if isinstance(value, str) and value in allowed:
        return value
    raise _ConfigError(f"{what}: {{expected_type: enum {list(allowed)}, got: {value!r}}}")


def _pos_integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _ConfigError(f"{what}: {{expected_type: pos_integer, got: {value!r}}}")
    try:
        number = int(value)
    except ValueError:
        raise _ConfigError(f"{what}: {{expected_type: pos_integer, got: {value!r}}}") from None
    if number < 1:
        raise _ConfigError(f"{what}: {{expected_type: pos_integer, got: {value!r}}}")
    return number


def _ip_address(text: str) -> str | None:
    """inet:parse_address/1 for the forms EMQX's configs use (IPv4 dotted quad, IPv6)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _ip_port(value: Any, what: str) -> tuple[str, int]:
    """emqx_schema:ip_port() (apps/emqx/src/emqx_schema.erl): an integer is a port on every
    interface; a string goes through to_ip_port/1 -> split_ip_port/1 (spaces removed, split at
    the last `:`, brackets around IPv6 dropped), parse_port/1 and inet:parse_address/1."""
    if isinstance(value, int) and not isinstance(value, bool):
        return ("0.0.0.0", value)
    if not isinstance(value, str):
        raise _ConfigError(f"{what}: {{expected_type: ip_port, got: {value!r}}}")
    text = value.replace(" ", "")
    ip, sep, port_text = text.rpartition(":")
    if not sep:
        ip, port_text = "", text
    elif ip.startswith("["):
        if not ip.endswith("]"):
            raise _ConfigError(f"{what}: bad_ip_port ({value!r})")
        ip = ip[1:-1]
    port_match = re.fullmatch(r"[+\-]?[0-9]+", port_text.strip())
    if port_match is None:
        raise _ConfigError(f"{what}: bad_port_number ({value!r})")  # parse_port/1
    port = int(port_text)
    if port < 0:
        raise _ConfigError(f"{what}: port_number_must_be_positive ({value!r})")
    if port > 65535:
        raise _ConfigError(f"{what}: port_number_too_large ({value!r})")
    if ip == "":
        return ("0.0.0.0", port)
    address = _ip_address(ip)
    if address is None:
        raise _ConfigError(f"{what}: bad_ip_port ({value!r})")
    return (address, port)


# ================================================================================================
# Node configuration
# ================================================================================================

# bin/emqx: EMQX_DEFAULT_ERLANG_COOKIE; also node.cookie in etc/emqx.conf
# (apps/emqx_conf/etc/emqx_conf.conf: cookie = "{{ emqx_default_erlang_cookie }}").
DEFAULT_COOKIE = "emqxsecretcookie"
DEFAULT_NODE_NAME = "emqx@127.0.0.1"  # apps/emqx_conf/etc/emqx_conf.conf node.name
DEFAULT_DASHBOARD_USERNAME = "admin"  # emqx_dashboard_schema default_username/1
DEFAULT_DASHBOARD_PASSWORD = "public"  # emqx_dashboard_schema default_password/1

# emqx_schema:default_listener/1: the `default` listener of each type, enabled (field "enable",
# default true in base_listener/1) unless configured otherwise.
DEFAULT_LISTENER_BINDS = {"tcp": "0.0.0.0:1883", "ssl": "0.0.0.0:8883", "ws": "0.0.0.0:8083", "wss": "0.0.0.0:8084"}
# emqx_schema fields("listeners") -> mqtt_listener(Port): a named listener without a bind.
_LISTENER_SCHEMA_BINDS = {"tcp": 1883, "ssl": 8883, "ws": 8083, "wss": 8084}
# Dashboard: emqx_dashboard_schema bind/1 defaults to 0 (= off, emqx_dashboard:listeners/1 drops
# `bind := 0`); apps/emqx_dashboard/etc/emqx_dashboard.conf sets `http.bind = 18083`.
DEFAULT_DASHBOARD_BINDS: dict[str, Any] = {"http": 18083, "https": 0}

DIST_BASE_PORT = 4370  # ekka_dist.erl ?DEFAULT_PORT
RPC_STATELESS_BASE_PORT = 5370  # gen_rpc_helper.erl ?DEFAULT_LISTEN_PORT
RPC_DEFAULT_PORT = 5369  # emqx_conf_schema.erl ?DEFAULT_RPC_PORT (rpc.server_port)
_MAX_PORT_LIMIT = 60000  # ekka_dist.erl / gen_rpc_helper.erl ?MAX_PORT_LIMIT


@dataclass(frozen=True)
class Socket:
    """One TCP listening socket of a node: `address` 0.0.0.0 is every interface."""

    owner: str  # e.g. "listener tcp:default", "dashboard http", "distribution", "rpc"
    address: str
    port: int

    def collides(self, other: Socket) -> bool:
        """Linux bind(2) without SO_REUSEPORT: same port, and same address or either is 0.0.0.0."""
        if self.port != other.port:
            return False
        return self.address == other.address or "0.0.0.0" in (self.address, other.address)

    def describe(self) -> str:
        return f"{self.owner} on {self.address}:{self.port}"


@dataclass(frozen=True)
class NodeConfig:
    """What one node boots with, from its environment."""

    name: str
    cookie: str  # node.cookie as written to vm.args (-setcookie), i.e. the booted cookie
    dashboard_username: str
    dashboard_password: str
    sockets: tuple[Socket, ...]
    errors: tuple[str, ...] = field(default=())  # configuration errors: the boot fails

    @property
    def ok(self) -> bool:
        return not self.errors


def image_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The environment the boot command sees in the official image.

    deploy/docker/docker-entrypoint.sh (v5.8.6): `export EMQX_RPC__PORT_DISCOVERY=
    "${EMQX_RPC__PORT_DISCOVERY:-manual}"` (so 5369 for every node unless set; the schema
    default `stateless` never applies in the image).  `docker exec` processes do not run the
    entrypoint, but no non-boot rule depends on this variable.
    """
    out = dict(env)
    if not out.get("EMQX_RPC__PORT_DISCOVERY"):
        out["EMQX_RPC__PORT_DISCOVERY"] = "manual"
    return out


def _legacy_names(env: Mapping[str, str]) -> dict[str, str]:
    """bin/emqx: EMQX_NODE_NAME / EMQX_NODE_COOKIE are exported as EMQX_NODE__NAME / __COOKIE."""
    out = dict(env)
    if out.get("EMQX_NODE_NAME"):
        out["EMQX_NODE__NAME"] = out.pop("EMQX_NODE_NAME")
    if out.get("EMQX_NODE_COOKIE"):
        out["EMQX_NODE__COOKIE"] = out.pop("EMQX_NODE_COOKIE")
    return out


def _offset(node_name: str) -> int:
    """ekka_dist:offset/1 == gen_rpc_helper:offset/1: the digits just left of `@`, rem 60000."""
    short = re.sub("@.*$", "", node_name)
    m = re.search("[0-9]+$", short)
    return int(m.group(0)) % _MAX_PORT_LIMIT if m else 0


_DIST_INTERFACE = re.compile(r"-kernel\s+inet_dist_use_interface\s+(\{[^}]*\})")


def _dist_interface(env: Mapping[str, str]) -> str:
    """The distribution listener's address: OTP kernel `inet_dist_use_interface` (lib/kernel/src/
    inet_tcp_dist.erl listen/2 binds it; unset = every interface), from ERL_AFLAGS (or
    ERL_FLAGS / ERL_ZFLAGS) that erlexec adds to the VM's command line."""
    address = "0.0.0.0"
    for var in ("ERL_AFLAGS", "ERL_FLAGS", "ERL_ZFLAGS"):  # later ones win, as erl applies them
        for m in _DIST_INTERFACE.finditer(env.get(var, "")):
            parts = [p.strip() for p in m.group(1)[1:-1].split(",")]
            if len(parts) != 4 or not all(p.isdigit() and int(p) <= 255 for p in parts):
                raise _ConfigError(f"{var}: bad inet_dist_use_interface {m.group(1)}")
            address = ".".join(str(int(p)) for p in parts)
    return address


def env_values(env: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Every EMQX_* variable parsed (hocon_tconf:parse_env/3), keyed by its config path in lower
    case (hocon_tconf env_name_to_path: `__` separates path segments); nulls are dropped."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    for name, raw in env.items():
        if not name.startswith("EMQX_") or "__" not in name[5:]:
            continue
        path = ".".join(part for part in name[5:].lower().split("__") if part)
        try:
            parsed = parse_env_value(raw)
        except HoconError as exc:
            errors.append(f"{name}: {exc}")
            continue
        if parsed.value is not None:  # hocon_tconf drop_nulls/2: null is absence
            values[path] = parsed.value
    return values, errors


def resolve_node(env: Mapping[str, str]) -> NodeConfig:
    """The node a container's environment boots (pass it through image_environment first for
    the official image).  Only the settings a single-host deployment depends on are modelled;
    other EMQX_* variables are parsed (so a HOCON crash is seen) but not type-checked."""
    env = _legacy_names(env)
    values, errors = env_values(env)

    def get(path: str, default: Any, convert: Any, *args: Any) -> Any:
        if path not in values:
            return default
        try:
            return convert(values[path], *args, f"{path}")
        except _ConfigError as exc:
            errors.append(str(exc))
            return default

    name = get("node.name", DEFAULT_NODE_NAME, _string)
    if "@" not in name:
        errors.append(f"node.name: {name!r} is not a long node name (name@host)")
    cookie = get("node.cookie", DEFAULT_COOKIE, _bin_str)  # emqx_conf_schema "cookie": password_converter
    username = get("dashboard.default_username", DEFAULT_DASHBOARD_USERNAME, _bin_str)
    password = get("dashboard.default_password", DEFAULT_DASHBOARD_PASSWORD, _bin_str)

    sockets: list[Socket] = []
    # MQTT listeners (emqx_schema fields("listeners"), emqx_listeners:start_listener/3 skips
    # `enable := false`; "enabled" is an alias of "enable").
    listeners: dict[tuple[str, str], dict[str, Any]] = {
        (kind, "default"): {"bind": bind} for kind, bind in DEFAULT_LISTENER_BINDS.items()
    }
    for path in values:
        parts = path.split(".")
        if len(parts) >= 4 and parts[0] == "listeners" and parts[1] in DEFAULT_LISTENER_BINDS:
            listeners.setdefault((parts[1], parts[2]), {"bind": _LISTENER_SCHEMA_BINDS[parts[1]]})
    for (kind, lname), conf in sorted(listeners.items()):
        prefix = f"listeners.{kind}.{lname}"
        enabled = True
        for flag in ("enable", "enabled"):
            enabled = get(f"{prefix}.{flag}", enabled, lambda v, w: _boolean(v, w))
        bind = get(f"{prefix}.bind", None, _ip_port) or _ip_port(conf["bind"], f"{prefix}.bind")
        if enabled:
            sockets.append(Socket(f"listener {kind}:{lname}", *bind))
    # Dashboard listeners (emqx_dashboard:listeners/1: `bind := 0` is off; `enable` is deprecated
    # since 5.1.0 and ignored there).
    for proto, default_bind in DEFAULT_DASHBOARD_BINDS.items():
        bind = get(f"dashboard.listeners.{proto}.bind", None, _ip_port) or _ip_port(default_bind, "bind")
        if bind[1] != 0:
            sockets.append(Socket(f"dashboard {proto}", *bind))
    # Erlang distribution: ekka_dist:listen/1 forces 4370 + offset(node name).
    try:
        dist_address = _dist_interface(env)
    except _ConfigError as exc:
        errors.append(str(exc))
        dist_address = "0.0.0.0"
    sockets.append(Socket("distribution", dist_address, DIST_BASE_PORT + _offset(name)))
    # Cluster RPC: gen_rpc_helper:get_server_driver_options/1 -- `manual`: rpc.server_port
    # (aliases tcp_server_port, ssl_server_port; default 5369), `stateless`: port(node()) =
    # 5370 + offset; bound to rpc.listen_address (emqx_conf_schema translation "socket_ip":
    # inet:parse_address/1, throws bad_ip_address).
    discovery = get("rpc.port_discovery", "stateless", _enum, ("manual", "stateless"))
    server_port = RPC_DEFAULT_PORT
    for alias in ("server_port", "tcp_server_port", "ssl_server_port"):
        server_port = get(f"rpc.{alias}", server_port, _pos_integer)
    listen_text = get("rpc.listen_address", "0.0.0.0", _string)
    listen_address = _ip_address(listen_text)
    if listen_address is None:
        errors.append(f"rpc.listen_address: #{{bad_ip_address => {listen_text!r}}}")
        listen_address = "0.0.0.0"
    rpc_port = server_port if discovery == "manual" else RPC_STATELESS_BASE_PORT + _offset(name)
    sockets.append(Socket("rpc", listen_address, rpc_port))

    errors.extend(_clashes(sockets, sockets, same_node=True))
    return NodeConfig(name, cookie, username, password, tuple(sockets), tuple(errors))


def _clashes(mine: Sequence[Socket], others: Iterable[Socket], *, same_node: bool = False) -> list[str]:
    """The boot failures of `mine` against sockets already bound by `others` (eaddrinuse).

    A listener that cannot bind fails the boot: emqx_listeners:start_listener/3 returns
    {error, {failed_to_start, ...}} after logging "Failed to start listener ~ts on ~ts: ~0p";
    ekka_dist:do_listen/4 returns {error, "port N is in use"}; emqx_dashboard_app:start/2
    returns {error, Reason} from emqx_dashboard:start_listeners/1; gen_rpc's acceptor fails.
    """
    out: list[str] = []
    others = list(others)
    for i, sock in enumerate(mine):
        pool = others[:i] if same_node else others
        for other in pool:
            if sock.collides(other):
                if sock.owner == "distribution":
                    out.append(f'distribution: {{error,"port {sock.port} is in use"}} (held by {other.describe()})')
                else:
                    out.append(
                        f"Failed to start {sock.owner} on {sock.address}:{sock.port}: eaddrinuse"
                        f" (held by {other.describe()})"
                    )
                break
    return out


def boot_errors(node: NodeConfig, others: Iterable[NodeConfig]) -> list[str]:
    """Why `node` fails to boot next to the running nodes `others` on one host network."""
    return [*node.errors, *_clashes(node.sockets, (s for o in others for s in o.sockets))]


def default_admin(node: NodeConfig) -> tuple[str, str] | None:
    """emqx_dashboard_admin:add_default_user/2, run by emqx_dashboard_app:start/2 at every boot.

    An empty username or password adds nobody ({ok, empty}); an existing record is kept
    ({ok, default_user_exists}: the password in the environment is ignored once the data dir
    holds the admin table); otherwise do_add_user/4 stores it WITHOUT legal_password/1 (only
    add_user/4 and change_password/2 check the password rule), so EMQX's own default `public`
    (6 characters) boots fine.  The caller keeps the record across restarts (the data dir).
    """
    if node.dashboard_username == "" or node.dashboard_password == "":
        return None
    return (node.dashboard_username, node.dashboard_password)


# ================================================================================================
# bin/emqx checks for non-boot commands (ctl, ping, ...)
# ================================================================================================


@dataclass(frozen=True)
class CliFailure:
    """What bin/emqx prints and returns when it refuses a non-boot command."""

    stderr: str
    rc: int = 1


def _die(message: str) -> CliFailure:
    """bin/emqx die(): logerr "$1" -> `echo -e "ERROR: $*" 1>&2` when TERM is unset or dumb
    (`docker exec` without -t), then exit ${2:-1}."""
    return CliFailure(f"ERROR: {_echo_e(message)}\n", 1)


def _echo_e(text: str) -> str:
    """bash `echo -e` escapes (the subset that can appear in a cookie or node name)."""
    table = {"\\": "\\", "n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v", "e": "\x1b"}
    return re.sub(r"\\(.)", lambda m: table.get(m.group(1), m.group(0)), text)


def cli_precheck(env: Mapping[str, str], node: NodeConfig) -> CliFailure | None:
    """bin/emqx (v5.8.6) before any non-boot command reaches the running `node`.

    1. find_emqx_process: with EMQX_NODE__NAME set, the node's `ps` line must match
       `grep -E "\\s-s?name\\s${EMQX_NODE__NAME}"`; no match -> die "Node $EMQX_NODE__NAME is
       not running?" (so the name, too, must be written as EMQX boots it: no quotes).
    2. "Resolve Erlang cookie": COOKIE_IN_USE = the `-setcookie` word of the `ps` line
       (awk '{print $2}'), through `echo -e` twice and get_boot_config's `tr -d \\"`; when both it
       and the RAW EMQX_NODE__COOKIE are non-empty and differ -> die "EMQX_NODE__COOKIE is
       different from the cookie used by $NAME" ($NAME = EMQX_NODE__NAME as written, else the
       booted name).
    """
    env = _legacy_names(env)
    raw_name = env.get("EMQX_NODE__NAME", "")
    if raw_name:
        ps_line = f" -name {node.name} -setcookie {node.cookie} "
        try:
            found = re.search(r"\s-s?name\s" + raw_name, ps_line) is not None
        except re.error:
            found = False
        if not found:
            return _die(f"Node {raw_name} is not running?")
    name = raw_name or node.name
    words = _echo_e(node.cookie).split()
    in_use = _echo_e(words[0] if words else "").replace('"', "")
    cookie = env.get("EMQX_NODE__COOKIE", "")
    if in_use and cookie and cookie != in_use:
        return _die(f"EMQX_NODE__COOKIE is different from the cookie used by {name}")
    return None


# ================================================================================================
# Dashboard password rule (emqx ctl admins add|passwd)
# ================================================================================================

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_NUMBERS = "0123456789"
_SPECIALS = "!@#$%^&*()_+-=[]{}\"|;':,./<>?`~ "  # ?SPECIAL_CHARS (no backslash)
BAD_PASSWORD_LEN = "The range of password length is 8~64"
INVALID_PASSWORD_MSG = (
    "Bad password. At least two different kind of characters from groups of letters, numbers, "
    "and special characters. For example, if password is composed from letters, it must contain "
    "at least one number or a special character."
)
NON_ASCII_PASSWORD_MSG = "Only ascii characters are allowed in the password"


def legal_password(password: str) -> str | None:
    """emqx_dashboard_admin:legal_password/1: None if legal, else EMQX's error text.

    Length counted in bytes (binary_to_list of the UTF-8 binary), 8..64; at least two of the
    groups ?NUMBER, ?LETTER, ?SPECIAL_CHARS (is_mixed_password/3); then ASCII only
    (ascii_character_validate/1).
    """
    data = password.encode("utf-8")
    if not 8 <= len(data) <= 64:
        return BAD_PASSWORD_LEN
    chars = [chr(b) for b in data]
    groups = sum(any(c in group for c in chars) for group in (_NUMBERS, _LETTERS, _SPECIALS))
    if groups < 2:
        return INVALID_PASSWORD_MSG
    if any(b > 0x7F for b in data):
        return NON_ASCII_PASSWORD_MSG
    return None


# ================================================================================================
# emqx ctl texts
# ================================================================================================


def status_text(node: str, version: str, started: bool = True) -> str:
    """emqx_mgmt_cli:status/1: "Node ~p ~ts is ~p~n" with init:get_status() (started/starting)."""
    return f"Node '{node}' {version} is {'started' if started else 'starting'}\n"


def not_responding_text(node: str) -> str:
    """bin/nodetool: io:format(standard_error, "Node ~p not responding to pings.\\n") then halt(1);
    bin/emqx assert_node_alive hides only stdout, so this reaches stderr, exit 1."""
    return f"Node '{node}' not responding to pings.\n"


def _atom_list(nodes: Sequence[str]) -> str:
    return "[" + ",".join(f"'{n}'" for n in nodes) + "]"


def cluster_status_text(running: Sequence[str], stopped: Sequence[str]) -> str:
    """emqx_mgmt_cli cluster(["status"]): "Cluster status: ~p~n" of cluster_info().

    io_lib_pretty wraps at 80 columns; this reproduces the one- and two-line layouts of small
    clusters, not every wrapping rule (scripts should read --json).
    """
    prefix = "Cluster status: "
    one_line = f"#{{running_nodes => {_atom_list(running)},stopped_nodes => {_atom_list(stopped)}}}"
    if len(prefix) + len(one_line) <= 80:
        return prefix + one_line + "\n"
    pad = " " * (len(prefix) + 2)
    return f"{prefix}#{{running_nodes => {_atom_list(running)},\n{pad}stopped_nodes => {_atom_list(stopped)}}}\n"


def _jiffy_pretty(value: Any, depth: int = 0) -> str:
    """jiffy:encode(_, [pretty]) (c_src/encoder.c): `{`/`[` then newline + 2 x depth spaces
    (enc_shift) even when empty, `,` + shift between items, shift before `}`/`]`, " : "
    (enc_colon) between key and value; maps are emitted in reverse iteration order
    (enc_map_to_ejson conses pairs onto a list), i.e. reverse term order for small maps."""
    inner, outer = "\n" + "  " * (depth + 1), "\n" + "  " * depth
    if isinstance(value, dict):
        items = [f'"{k}" : {_jiffy_pretty(v, depth + 1)}' for k, v in sorted(value.items(), reverse=True)]
        return "{" + inner + ("," + inner).join(items) + outer + "}"
    if isinstance(value, list):
        return "[" + inner + ("," + inner).join(_jiffy_pretty(v, depth + 1) for v in value) + outer + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def cluster_status_json(running: Sequence[str], stopped: Sequence[str]) -> str:
    """emqx_mgmt_cli cluster(["status", "--json"]): "~ts~n" of emqx_logger_jsonfmt:
    best_effort_json/1 (= emqx_utils_json:encode(_, [pretty, force_utf8]), jiffy) of the
    sorted cluster_info() map; an empty list prints as "[\\n    \\n  ]" (its eunit test)."""
    return _jiffy_pretty({"running_nodes": sorted(running), "stopped_nodes": sorted(stopped)}) + "\n"


def format_usage(pairs: Sequence[tuple[str, str]]) -> str:
    """emqx_ctl:format_usage/1: each command padded to the widest + 1, then "# " + description."""
    width = max(len(cmd) for cmd, _ in pairs)
    return "".join(f"{cmd:<{width + 1}}# {desc}\n" for cmd, desc in pairs)


# emqx_mgmt_cli cluster(_) and emqx_dashboard_cli admins(_).
CLUSTER_USAGE = format_usage(
    [
        ("cluster join <Node>", "Join the cluster"),
        ("cluster leave", "Leave the cluster"),
        ("cluster force-leave <Node>", "Force the node leave from cluster"),
        ("cluster status [--json]", "Cluster status"),
        ("cluster discovery enable", "Enable and run automatic cluster discovery (if configured)"),
    ]
)
ADMINS_USAGE = format_usage(
    [
        ("admins add <Username> <Password> <Description>", "Add dashboard user"),
        ("admins passwd <Username> <Password>", "Reset dashboard user password"),
        ("admins del <Username>", "Delete dashboard user"),
    ]
)
STATUS_USAGE = format_usage([("status", "Show broker status")])


def ctl_help_text(usages: Sequence[str] = (STATUS_USAGE, CLUSTER_USAGE, ADMINS_USAGE)) -> str:
    """emqx_ctl help/0: "Usage: emqx ctl", then per registered command a 110-dash line
    ("~110..-s~n") and its usage.  A real node registers ~30 commands; stand-ins list theirs."""
    return "Usage: emqx ctl\n" + "".join("-" * 110 + "\n" + usage for usage in usages)


# ================================================================================================
# emqx ctl broker, broker stats, data export|import (emqx_mgmt_cli.erl, emqx_mgmt_data_backup.erl)
# ================================================================================================

BROKER_USAGE = format_usage(
    [
        ("broker", "Show broker version, uptime and description"),
        ("broker stats", "Show broker statistics of clients, topics, subscribers"),
        ("broker metrics", "Show broker metrics"),
    ]
)  # emqx_mgmt_cli.erl:91-96
DATA_USAGE = format_usage(
    [
        ("data import <File>", "Import data from the specified tar archive file"),
        (
            "data export \\\n  [--root-keys key1,key2,key3] \\\n  [--table-sets set1,set2,set3] \\\n  [--dir out_dir]",
            "Export data",
        ),
    ]
)  # emqx_mgmt_cli.erl:915-925 (format_usage pads the first line only, as emqx_ctl does not split)

# emqx_stats.erl:73-130 (the lists) and init/1 (:240-250): every stat of them exists from the start (0); the
# delayed module adds delayed.count/max (emqx_delayed.erl:425, enabled by default).
STATS_NAMES = (
    "connections.count",
    "connections.max",
    "live_connections.count",
    "live_connections.max",
    "channels.count",
    "channels.max",
    "sessions.count",
    "sessions.max",
    "cluster_sessions.count",
    "cluster_sessions.max",
    "durable_subscriptions.count",
    "durable_subscriptions.max",
    "topics.count",
    "topics.max",
    "suboptions.count",
    "suboptions.max",
    "subscribers.count",
    "subscribers.max",
    "subscriptions.count",
    "subscriptions.max",
    "subscriptions.shared.count",
    "subscriptions.shared.max",
    "retained.count",
    "retained.max",
    "delayed.count",
    "delayed.max",
)


def human_readable_duration(milliseconds: int) -> str:
    """emqx_utils_calendar.erl:128-135: "D days, H hours, M minutes, S seconds", the leading zero
    parts dropped (the inner ones kept), "" under a second."""
    days, rest = divmod(milliseconds // 1000, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(days, " days"), (hours, " hours"), (minutes, " minutes"), (seconds, " seconds")]
    while parts and parts[0][0] == 0:
        parts.pop(0)
    return ", ".join(f"{value}{unit}" for value, unit in parts)


def broker_text(version: str, uptime_ms: int, datetime_rfc3339: str, description: str = "EMQX") -> str:
    """emqx_mgmt_cli.erl:75-80: `"~-10s: ~ts~n"` for sysdescr (emqx_release.erl:44-50 "EMQX"
    for ce), version, datetime (calendar:system_time_to_rfc3339 in nanoseconds, emqx_sys.erl:
    121-124) and uptime (the VM's wall clock, emqx_sys.erl:116-119)."""
    rows = [
        ("sysdescr", description),
        ("version", version),
        ("datetime", datetime_rfc3339),
        ("uptime", human_readable_duration(uptime_ms)),
    ]
    return "".join(f"{key:<10}: {value}\n" for key, value in rows)


def broker_stats_text(stats: Mapping[str, int]) -> str:
    """emqx_mgmt_cli.erl:81-85: `"~-30s: ~w~n"` per lists:sort(emqx_stats:getstats()) entry
    (atoms sort by their text); missing stats of STATS_NAMES read 0."""
    values = {name: 0 for name in STATS_NAMES} | dict(stats)
    return "".join(f"{name:<30}: {values[name]}\n" for name in sorted(values))


def erlang_string(text: str) -> str:
    """io_lib:format("~p", [String]) of a printable string: quoted, `\\` `"` and control
    characters escaped (one line: io_lib_pretty breaks only at the string's own newlines when it
    does not fit, and these messages end at theirs)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def export_base_name(local_time: tuple[int, int, int, int, int, int], millis: int) -> str:
    """emqx_mgmt_data_backup.erl:439-446 (local time, :1056-1057)."""
    year, month, day, hour, minute, second = local_time
    return f"emqx-export-{year}-{month:02d}-{day:02d}-{hour:02d}-{minute:02d}-{second:02d}.{millis % 1000:03d}"


def meta_hocon(version: str, edition: str = "ce") -> str:
    """META.hocon of an export (emqx_mgmt_data_backup.erl:457-464): hocon_pp:do(#{version, edition})
    (hocon 0.43.4 hocon_pp.erl: root fields sorted by key, `key = value`, a string with dots or a
    leading digit quoted with ~0p)."""
    return f'edition = {edition}\nversion = "{version}"\n'


def data_export_done_text(relative_tar: str) -> str:
    """emqx_mgmt_cli.erl:883."""
    return f"Data has been successfully exported to {relative_tar}.\n"


DATA_IMPORTED = "Data has been imported successfully.\n"  # emqx_mgmt_cli.erl:906


def data_import_failed_text(reason: str) -> str:
    """emqx_mgmt_cli.erl:912-913: `"[error] Data import failed, reason: ~p.~n"` of
    emqx_mgmt_data_backup:format_error/1 (a string, so quoted)."""
    return f"[error] Data import failed, reason: {erlang_string(reason)}.\n"


# emqx_mgmt_data_backup.erl:331-358 format_error/1.
IMPORT_ERRORS = {
    "not_found": "backup file not found",
    "bad_backup_name": "invalid backup name: file name must have .tar.gz extension",
    "bad_archive_dir": (
        "invalid backup archive content: all files in the archive must be under <backup name> directory"
    ),
    "missing_backup_meta": "invalid backup archive file: missing META.hocon",
    "invalid_edition": "invalid backup archive content: wrong EMQX edition value in META.hocon",
    "invalid_version": "invalid backup archive content: wrong EMQX version value in META.hocon",
    "ee_to_ce_backup": "importing EMQX Enterprise data backup to EMQX is not allowed",
}


def unsupported_version_text(backup_version: str, node_version: str) -> str:
    """format_error({unsupported_version, V}) (emqx_mgmt_data_backup.erl:352-358)."""
    return (
        f"[warning] Backup version {erlang_string(backup_version)} is newer than EMQX version "
        f"{erlang_string(node_version)}, import is not allowed.\n"
    )


def _version_no_patch(version: str) -> tuple[int, int] | None:
    """parse_version_no_patch/1 (:608-617): the leading integers of the first two parts
    (emqx_utils_binary:bin_to_int), None where EMQX answers invalid_version."""
    parts = version.split(".")
    if len(parts) < 2:
        return None
    numbers = [re.match(r"[0-9]+", part) for part in parts[:2]]
    if numbers[0] is None or numbers[1] is None:
        return None
    return int(numbers[0].group()), int(numbers[1].group())


def check_backup_meta(meta: Mapping[str, Any], node_version: str, node_edition: str = "ce") -> str | None:
    """validate_backup/1 (emqx_mgmt_data_backup.erl:553-606) on META.hocon's parsed map: the
    reason text format_error gives, or None when the backup may be imported. The version rule
    compares major and minor each on its own: refused when the backup's major OR its minor is
    greater than the node's (so 5.9 and 6.0 are refused on 5.8, and 4.9 too)."""
    edition, version = meta.get("edition"), meta.get("version")
    if edition is None or version is None:
        return IMPORT_ERRORS["missing_backup_meta"]
    if edition not in ("ce", "ee"):
        return IMPORT_ERRORS["invalid_edition"]
    if (edition, node_edition) == ("ee", "ce"):
        return IMPORT_ERRORS["ee_to_ce_backup"]
    backup = _version_no_patch(str(version))
    if backup is None:
        return IMPORT_ERRORS["invalid_version"]
    node = _version_no_patch(node_version)
    assert node is not None
    if backup[0] > node[0] or backup[1] > node[1]:
        return unsupported_version_text(str(version), node_version)
    return None
