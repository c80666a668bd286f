"""Unit tests of support/emqx58.py: HOCON as hocon 0.43.4 parses `EMQX_*` values, and the
pure rules (password, ip_port, socket collisions, texts).  Pure functions, no processes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.emqx import emqx58
from tests.support.emqx.emqx58 import HoconError, parse_env_value, parse_hocon


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ('"127.0.0.1:61001"', "127.0.0.1:61001"),
        ('"a\\"b\\\\c\\n"', 'a"b\\c\n'),  # unesc/1: \" \\ \n
        ('"\\u0041"', "\\u0041"),  # \uXXXX is scanned but not unescaped by hocon 0.43.4
        ("emqx1@127.0.0.1", "emqx1@127.0.0.1"),  # one Unquoted token: letters . @ - _ % |
        ("mock-password-b66094e7", "mock-password-b66094e7"),
        ("1883", 1883),
        ("-5", -5),
        ("0123", 123),
        ("1.5", 1.5),
        (".5", 0.5),
        ("true", True),
        ("false", False),
        ("null", None),
        ("5s", "5s"),  # Duration: a string token
        ("100ms", "100ms"),
        ("50MB", "50MB"),  # Bytesize
        ("80%", "80%"),  # Percent
        ("a b", "ab"),  # blanks are skipped, the parts concatenate
        ('x"y"', "xy"),
        ("abc#comment", "abc"),
        ("abc // comment", "abc"),
        (":1883", 1883),  # the `:` separator, then an integer
        ("[1, 2,]", [1, 2]),  # trailing comma dropped before ]
        ("{a = 1, b.c = x}", {"a": 1, "b": {"c": "x"}}),
        ("{a=1}{b=2}", {"a": 1, "b": 2}),
        ("[1][2]", [1, 2]),
        ("a${?UNSET}", "a"),
        ("", ""),  # parse_env/3 first clause
    ],
)
def test_env_values_hocon_parses(raw: str, value: Any) -> None:
    parsed = parse_env_value(raw)
    assert (parsed.value, parsed.fallback) == (value, False)


@pytest.mark.parametrize(
    "raw",
    [
        "127.0.0.1:61001",  # floats 127.0 .0 .1, then `:`: a syntax error
        "localhost:1883",  # `localhost` becomes a key
        "a:b",
        "1abcdefghijklmnop",  # an integer, then a string: no rule concatenates them
        "a,b",
        "${UNSET}",  # unresolved substitution
        '"unterminated',
        "dollar$sign",  # no token for `$`
        "a/b",
        "{a=1",
        "1e5",  # no exponent without a fraction: integer then Unquoted
    ],
)
def test_env_values_hocon_refuses_are_kept_raw(raw: str) -> None:
    parsed = parse_env_value(raw)
    assert (parsed.value, parsed.fallback) == (raw, True)
    assert parsed.reason


def test_an_env_value_that_leaves_no_value_crashes_like_parse_env() -> None:
    with pytest.raises(HoconError, match="case_clause"):
        parse_env_value("${?UNSET}")


def test_parse_hocon_documents() -> None:
    assert parse_hocon('node { name = x, cookie = "c" }\nnode.name = y') == {"node": {"name": "y", "cookie": "c"}}
    assert parse_hocon("a = 1\nb = ${a}") == {"a": 1, "b": 1}
    assert parse_hocon("") == {}
    for bad in ("a = [1, {]", "a = 1 b", "= 1", "a = {x=1} y", "a = [1] 2"):
        with pytest.raises(HoconError):
            parse_hocon(bad)


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("public", emqx58.BAD_PASSWORD_LEN),
        ("x" * 63 + "1", None),
        ("y" * 65, emqx58.BAD_PASSWORD_LEN),
        ("12345678", emqx58.INVALID_PASSWORD_MSG),
        ("abcdefghIJ", emqx58.INVALID_PASSWORD_MSG),
        ("!@#$%^&*()", emqx58.INVALID_PASSWORD_MSG),
        ("abc\\\\defgh", emqx58.INVALID_PASSWORD_MSG),  # backslash is not in ?SPECIAL_CHARS
        ("abckldiekflkdf w", None),
        ("# 12344858", None),
        ("️test_for_non_ascii1中", emqx58.NON_ASCII_PASSWORD_MSG),
    ],
)
def test_legal_password(password: str, problem: str | None) -> None:
    assert emqx58.legal_password(password) == problem


def test_node_sockets_and_collisions() -> None:
    node = emqx58.resolve_node(emqx58.image_environment({"EMQX_NODE__NAME": "emqx7@10.0.0.1"}))
    assert node.ok and node.cookie == emqx58.DEFAULT_COOKIE
    assert {(s.owner, s.address, s.port) for s in node.sockets} == {
        ("listener tcp:default", "0.0.0.0", 1883),
        ("listener ssl:default", "0.0.0.0", 8883),
        ("listener ws:default", "0.0.0.0", 8083),
        ("listener wss:default", "0.0.0.0", 8084),
        ("dashboard http", "0.0.0.0", 18083),
        ("distribution", "0.0.0.0", 4377),
        ("rpc", "0.0.0.0", 5369),  # the image's entrypoint: manual
    }
    stateless = emqx58.resolve_node({"EMQX_NODE__NAME": "emqx7@10.0.0.1"})
    assert ("rpc", "0.0.0.0", 5377) in {(s.owner, s.address, s.port) for s in stateless.sockets}
    clash = emqx58.resolve_node(
        {"EMQX_NODE__NAME": "n@h", "EMQX_LISTENERS__TCP__DEFAULT__BIND": "18083", "EMQX_RPC__PORT_DISCOVERY": "bogus"}
    )
    assert clash.errors == (
        "rpc.port_discovery: {expected_type: enum ['manual', 'stateless'], got: 'bogus'}",
        "Failed to start dashboard http on 0.0.0.0:18083: eaddrinuse (held by listener tcp:default on 0.0.0.0:18083)",
    )
    assert emqx58.Socket("x", "127.0.0.1", 1).collides(emqx58.Socket("y", "0.0.0.0", 1))
    assert not emqx58.Socket("x", "127.0.0.1", 1).collides(emqx58.Socket("y", "127.0.0.2", 1))


def test_cli_precheck_texts() -> None:
    node = emqx58.resolve_node({"EMQX_NODE__NAME": "emqx1@h", "EMQX_NODE__COOKIE": '"abc"'})
    assert node.cookie == "abc"
    failure = emqx58.cli_precheck({"EMQX_NODE__NAME": "emqx1@h", "EMQX_NODE__COOKIE": '"abc"'}, node)
    assert failure == emqx58.CliFailure("ERROR: EMQX_NODE__COOKIE is different from the cookie used by emqx1@h\n", 1)
    assert emqx58.cli_precheck({"EMQX_NODE__NAME": "emqx1@h", "EMQX_NODE__COOKIE": "abc"}, node) is None
    assert emqx58.cli_precheck({}, node) is None  # no cookie in the environment: nothing to compare
    legacy = emqx58.cli_precheck({"EMQX_NODE_NAME": "emqx1@h", "EMQX_NODE_COOKIE": "zzz"}, node)
    assert legacy is not None and "different from the cookie" in legacy.stderr


def test_ctl_texts() -> None:
    assert emqx58.status_text("e@h", "5.8.6") == "Node 'e@h' 5.8.6 is started\n"
    assert (
        emqx58.cluster_status_json([], [])
        == '{\n  "stopped_nodes" : [\n    \n  ],\n  "running_nodes" : [\n    \n  ]\n}\n'
    )
    assert emqx58.format_usage([("a", "x"), ("bbb", "y")]) == "a   # x\nbbb # y\n"
    assert (
        emqx58.cluster_status_text(["a@h"], []) == "Cluster status: #{running_nodes => ['a@h'],stopped_nodes => []}\n"
    )
