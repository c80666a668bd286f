"""nginx.conf of the load balancer: structure (parsed back with crossplane) and a real `nginx -t`.

The tests render with a runtime that points at temp files and loads Debian's stream module;
`test_container_render_differs_only_in_runtime_lines` proves that this is the container's config.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import ssl
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import crossplane
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from components.config import StackConfig
from components.config_types import LOAD_BALANCING
from components.render.nginx import (
    CONTAINER_RUNTIME,
    DEBIAN_STREAM_MODULE,
    NginxRuntime,
    NginxSettings,
    nginx_settings,
    render_nginx_conf,
    standalone_runtime,
)
from tests.support.stackfiles import TlsMaterial, stack_raw, validate

NGINX = "/usr/sbin/nginx"
STREAM_MODULE = DEBIAN_STREAM_MODULE
WEAK_CIPHER_MARKERS = ("RC4", "3DES", "DES-CBC", "MD5", "NULL", "EXPORT", "aNULL", "eNULL", "PSK", "SRP", "CAMELLIA")
RUNTIME_DIRECTIVES = (
    "load_module",
    "user",
    "pid",
    "error_log",
    "access_log",
    "ssl_certificate",
    "ssl_certificate_key",
    "ssl_session_ticket_key",
)

needs_nginx = pytest.mark.skipif(
    shutil.which(NGINX) is None or not Path(STREAM_MODULE).is_file(),
    reason=f"needs Debian's nginx at {NGINX} and the stream module at {STREAM_MODULE} "
    "(apt-get install nginx-light libnginx-mod-stream)",
)

Directive = dict[str, Any]


# ----------------------------------------------------------------------------- helpers


def stack(name: str, tls: TlsMaterial, **overrides: str) -> tuple[StackConfig, NginxSettings]:
    raw = stack_raw(name)
    if raw.get("tlsMode") == "provided":
        raw["tlsCertificate"] = tls.certificate_pem
        raw["tlsPrivateKey"] = tls.private_key_pem
    raw.update(overrides)
    config, plan = validate(raw)
    return config, nginx_settings(config, plan)


def local_runtime(directory: Path, tls: TlsMaterial) -> NginxRuntime:
    return standalone_runtime(str(directory), str(tls.certificate_path), str(tls.private_key_path))


def parse(text: str, directory: Path) -> list[Directive]:
    path = directory / "parsed.conf"
    path.write_text(text)
    payload = crossplane.parse(str(path), combine=False, comments=False)
    assert payload["status"] == "ok", payload["errors"]
    parsed: list[Directive] = payload["config"][0]["parsed"]
    return parsed


def only(block: list[Directive], name: str) -> Directive:
    found = [d for d in block if d["directive"] == name]
    assert len(found) == 1, f"expected exactly one {name}, got {found}"
    return found[0]


def args(block: list[Directive], name: str) -> list[str]:
    value: list[str] = only(block, name)["args"]
    return value


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h)?", duration)
    assert match, duration
    scale = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[match.group(2)]
    return int(match.group(1)) * scale


def nginx_test(conf: Path, directory: Path) -> subprocess.CompletedProcess[str]:
    for number in (1, 2):  # what the container gets from Pulumi state: 80 random bytes each
        (directory / f"ticket-{number}.key").write_bytes(os.urandom(80))
    return subprocess.run(
        [NGINX, "-t", "-q", "-c", str(conf), "-p", str(directory), "-e", str(directory / "startup-error.log")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


# ----------------------------------------------------------------------------- structure


@pytest.mark.parametrize("stack_name", ["dev", "prod"])
def test_rendered_config_structure(stack_name: str, tls_material: TlsMaterial, tmp_path: Path) -> None:
    config, settings = stack(stack_name, tls_material)
    top = parse(render_nginx_conf(settings, local_runtime(tmp_path, tls_material)), tmp_path)

    worker_connections = int(args(only(top, "events")["block"], "worker_connections")[0])
    assert worker_connections == config.lb.worker_connections
    assert int(args(top, "worker_rlimit_nofile")[0]) >= 2 * worker_connections

    stream = only(top, "stream")["block"]
    log_format = args(stream, "log_format")
    assert "$upstream_addr" in "".join(log_format[1:])
    assert args(stream, "access_log")[1] == log_format[0]

    upstream = only(stream, "upstream")
    servers = [d["args"] for d in upstream["block"] if d["directive"] == "server"]
    assert [s[0] for s in servers] == [
        f"{config.single_host.advertise_address}:{61000 + i}" for i in range(1, config.nodes + 1)
    ]
    for server in servers:
        assert f"max_fails={config.lb.max_fails}" in server
        assert f"fail_timeout={config.lb.fail_timeout}" in server

    server = only(stream, "server")["block"]
    assert args(server, "listen") == [f"{config.lb.listen_address}:{config.lb.port}", "ssl"]
    assert args(server, "proxy_pass") == upstream["args"]
    assert args(server, "ssl_protocols") == ["TLSv1.2", "TLSv1.3"]
    assert args(server, "ssl_session_cache")[0].startswith("shared:")
    assert args(server, "proxy_protocol") == ["on"]
    assert args(server, "proxy_next_upstream") == ["on"]
    assert int(args(server, "proxy_next_upstream_tries")[0]) == config.nodes
    assert seconds(args(server, "proxy_connect_timeout")[0]) == seconds(config.lb.connect_timeout)
    assert seconds(args(server, "proxy_timeout")[0]) > 1.5 * config.lb.mqtt_keepalive_seconds
    assert seconds(args(server, "proxy_timeout")[0]) == config.lb.proxy_timeout_seconds


@pytest.mark.parametrize("stack_name", ["dev", "prod"])
def test_tls_ciphers_are_modern_and_known_to_openssl(
    stack_name: str, tls_material: TlsMaterial, tmp_path: Path
) -> None:
    _, settings = stack(stack_name, tls_material)
    server = only(only(parse(render_nginx_conf(settings), tmp_path), "stream")["block"], "server")["block"]
    (cipher_list,) = args(server, "ssl_ciphers")
    suites = cipher_list.split(":")
    assert suites
    for suite in suites:
        assert not any(marker in suite for marker in WEAK_CIPHER_MARKERS), suite
        assert suite.startswith("ECDHE-"), f"{suite}: no forward secrecy"
        assert suite.endswith(("GCM-SHA256", "GCM-SHA384", "CHACHA20-POLY1305")), f"{suite}: not an AEAD suite"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers(cipher_list)
    known = {cipher["name"] for cipher in context.get_ciphers()}
    assert set(suites) <= known
    # Key exchange groups of Mozilla's intermediate profile only (no X448, no secp521r1).
    assert args(server, "ssl_ecdh_curve") == ["X25519:prime256v1:secp384r1"]


def test_container_config_loads_no_module_and_runs_as_nginx(tls_material: TlsMaterial, tmp_path: Path) -> None:
    _, settings = stack("dev", tls_material)
    top = parse(render_nginx_conf(settings), tmp_path)
    assert not [d for d in top if d["directive"] == "load_module"]
    assert args(top, "user") == ["nginx"]
    server = only(only(top, "stream")["block"], "server")["block"]
    assert args(server, "ssl_certificate") == [CONTAINER_RUNTIME.certificate_path]
    assert args(server, "ssl_certificate_key") == [CONTAINER_RUNTIME.private_key_path]


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("round_robin", None),
        ("least_conn", ["least_conn"]),
        ("random", ["random", "two", "least_conn"]),
        ("hash_client_address", ["hash", "$remote_addr", "consistent"]),
    ],
)
def test_balancing_directive_per_method(
    method: str, expected: list[str] | None, tls_material: TlsMaterial, tmp_path: Path
) -> None:
    _, settings = stack("dev", tls_material, lbBalancing=method)
    block = only(only(parse(render_nginx_conf(settings), tmp_path), "stream")["block"], "upstream")["block"]
    # A shared zone first, so every worker balances and counts failures with one state.
    zone, upstream = block[0], block[1:]
    assert [zone["directive"], *zone["args"]] == ["zone", "emqx_mqtt", "256k"]
    first = upstream[0]
    if expected is None:
        assert {d["directive"] for d in upstream} == {"server"}
    else:
        assert [first["directive"], *first["args"]] == expected
        assert [d["directive"] for d in upstream[1:]] == ["server"] * (len(upstream) - 1)


def test_every_balancing_method_is_tested() -> None:
    assert set(LOAD_BALANCING) == {"round_robin", "least_conn", "random", "hash_client_address"}


def test_proxy_protocol_follows_the_plan(tls_material: TlsMaterial, tmp_path: Path) -> None:
    """Nginx sends a PROXY header iff the brokers expect one: both come from plan.proxy_protocol."""
    config, plan = validate({"tlsMode": "self-signed"})
    for enabled, expected in ((True, ["on"]), (False, ["off"])):
        settings = nginx_settings(config, replace(plan, proxy_protocol=enabled))
        server = only(only(parse(render_nginx_conf(settings), tmp_path), "stream")["block"], "server")["block"]
        assert args(server, "proxy_protocol") == expected


def test_container_render_differs_only_in_runtime_lines(tls_material: TlsMaterial, tmp_path: Path) -> None:
    """What `nginx -t` checks below is the container's config, except for where files live."""
    for name in ("dev", "prod"):
        _, settings = stack(name, tls_material)
        container = render_nginx_conf(settings, CONTAINER_RUNTIME).splitlines()
        tested = render_nginx_conf(settings, local_runtime(tmp_path, tls_material)).splitlines()

        def directive(line: str) -> str:
            return line.strip().split(" ", 1)[0]

        container = [line for line in container if directive(line) != "user"]
        tested = [line for line in tested if directive(line) != "load_module"]
        assert len(container) == len(tested)
        differing = [(a, b) for a, b in zip(container, tested, strict=True) if a != b]
        assert {directive(a) for a, _ in differing} <= set(RUNTIME_DIRECTIVES)
        assert all(directive(a) == directive(b) for a, b in differing)
        # pid, error_log, access_log, ssl_certificate, ssl_certificate_key, ssl_session_ticket_key
        assert len(differing) == 6


@pytest.mark.parametrize(("generation", "keys"), [("1", ["ticket-1.key"]), ("7", ["ticket-1.key", "ticket-2.key"])])
def test_session_tickets_use_the_issuing_key_first_and_keep_the_previous_generation(
    generation: str, keys: list[str], tls_material: TlsMaterial, tmp_path: Path
) -> None:
    config, settings = stack("dev", tls_material, tlsTicketKeyGeneration=generation)
    assert config.tls.ticket_key_generations == ((1,) if generation == "1" else (7, 6))
    server = only(only(parse(render_nginx_conf(settings), tmp_path), "stream")["block"], "server")["block"]
    assert args(server, "ssl_session_tickets") == ["on"]
    tickets = [d["args"][0] for d in server if d["directive"] == "ssl_session_ticket_key"]
    assert tickets == [f"/etc/nginx/tls/{key}" for key in keys]


def test_without_session_tickets_only_the_session_cache_resumes(tls_material: TlsMaterial, tmp_path: Path) -> None:
    config, settings = stack("dev", tls_material, tlsSessionTickets="false")
    assert config.tls.ticket_key_generations == ()
    server = only(only(parse(render_nginx_conf(settings), tmp_path), "stream")["block"], "server")["block"]
    assert args(server, "ssl_session_tickets") == ["off"]
    assert not [d for d in server if d["directive"] == "ssl_session_ticket_key"]
    assert args(server, "ssl_session_cache")[0].startswith("shared:")


# ----------------------------------------------------------------------------- nginx -t


@needs_nginx
@pytest.mark.parametrize(
    ("stack_name", "overrides"),
    [
        ("dev", {}),
        ("prod", {}),
        ("dev", {"lbBalancing": "round_robin"}),
        ("dev", {"lbBalancing": "random"}),
        ("dev", {"lbBalancing": "hash_client_address", "nodes": "1", "waves": "1"}),
    ],
    ids=["dev", "prod", "dev-round_robin", "dev-random", "dev-hash-one-node"],
)
def test_nginx_accepts_the_rendered_config(
    stack_name: str, overrides: dict[str, str], tls_material: TlsMaterial, tmp_path: Path
) -> None:
    _, settings = stack(stack_name, tls_material, **overrides)
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx_conf(settings, local_runtime(tmp_path, tls_material)))
    result = nginx_test(conf, tmp_path)
    assert result.returncode == 0, result.stderr


@needs_nginx
def test_nginx_t_catches_a_broken_config(tls_material: TlsMaterial, tmp_path: Path) -> None:
    """Guards the check above: a config nginx cannot load (certificate missing) must fail `nginx -t`."""
    _, settings = stack("dev", tls_material)
    runtime = replace(local_runtime(tmp_path, tls_material), certificate_path=str(tmp_path / "missing.crt"))
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx_conf(settings, runtime))
    result = nginx_test(conf, tmp_path)
    assert result.returncode != 0
    assert "missing.crt" in result.stderr


# ------------------------------------------------------------------------- client certificates


def empty_crl(ca: trustme.CA) -> str:
    """A PEM CRL the CA signed, revoking nothing."""
    key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes()).subject
    now = datetime.datetime.now(datetime.UTC)
    builder = x509.CertificateRevocationListBuilder().issuer_name(issuer).last_update(now)
    crl = builder.next_update(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return crl.public_bytes(serialization.Encoding.PEM).decode()


@needs_nginx
def test_a_client_ca_makes_nginx_verify_client_certificates(tls_material: TlsMaterial, tmp_path: Path) -> None:
    ca = trustme.CA()
    crl = empty_crl(ca)
    _, settings = stack(
        "dev", tls_material, tlsClientCa=ca.cert_pem.bytes().decode(), tlsClientCrl=crl, tlsClientVerifyDepth="3"
    )
    runtime = local_runtime(tmp_path, tls_material)
    text = render_nginx_conf(settings, runtime)
    server = only(only(parse(text, tmp_path), "stream")["block"], "server")["block"]
    assert args(server, "ssl_verify_client") == ["on"]
    assert args(server, "ssl_client_certificate") == [runtime.client_ca_path]
    assert args(server, "ssl_verify_depth") == ["3"]
    assert args(server, "ssl_crl") == [runtime.client_crl_path]
    Path(runtime.client_ca_path).write_bytes(ca.cert_pem.bytes())
    Path(runtime.client_crl_path).write_text(crl)
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    result = nginx_test(conf, tmp_path)
    assert result.returncode == 0, result.stderr


def test_without_a_client_ca_nginx_asks_no_client_certificate(tls_material: TlsMaterial) -> None:
    _, settings = stack("dev", tls_material)
    assert settings.client_verify_depth is None
    assert "ssl_verify_client" not in render_nginx_conf(settings)
