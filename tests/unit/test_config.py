"""Stack-config validation: what `pulumi preview` accepts, and what it refuses with a usable message.

Every refusal must name the key (`emqx-cluster:<key>`), show the bad value on the same line
(secrets: never shown, and the message says so) and say what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from components.config import EMQX_TUNING_SYSCTLS, StackConfig, config_keys
from components.config_parse import ConfigError, parse_stack_config
from components.config_types import NAMESPACE
from components.plan import plan_cluster
from tests.support.stackfiles import TlsMaterial, stack_raw, validate

FAKE_CERT = "-----BEGIN CERTIFICATE-----\nMIIBfakeCERTbody\n-----END CERTIFICATE-----\n"
FAKE_KEY = "-----BEGIN PRIVATE KEY-----\nMIIBfakeKEYbody\n-----END PRIVATE KEY-----\n"
PUBLIC_DEFAULT_COOKIE = "emqxsecretcookie"


def problem_lines(error: ConfigError) -> list[str]:
    """The message's problem lines (the first line is the 'invalid stack configuration:' header)."""
    header, *lines = str(error).split("\n")
    assert header == "invalid stack configuration:"
    return [line.strip() for line in lines]


# ----------------------------------------------------------------------------- valid configs


def test_defaults_are_valid_apart_from_the_tls_material_they_require() -> None:
    """Every default is usable; only tlsMode=provided (the default) needs the cert and key."""
    config, plan = validate({"tlsMode": "self-signed"})
    assert config.nodes == 3
    assert config.effective_waves == 2
    assert config.lb.port == 8884
    assert [node.node_name for node in plan.nodes] == ["emqx1@127.0.0.1", "emqx2@127.0.0.1", "emqx3@127.0.0.1"]

    with pytest.raises(ConfigError) as refused:
        parse_stack_config({})
    (line,) = problem_lines(refused.value)
    assert line.startswith(f"{NAMESPACE}:tlsCertificate and tlsPrivateKey = (unset): allowed:")


def test_unset_keys_passed_as_none_mean_defaults() -> None:
    """load_stack_config passes every known key, None when the stack does not set it."""
    raw: dict[str, str | None] = dict.fromkeys(config_keys())
    raw["tlsMode"] = "self-signed"
    assert parse_stack_config(raw) == StackConfig.model_validate({"tls_mode": "self-signed"})


def test_dev_stack_file_is_valid() -> None:
    config, plan = validate(stack_raw("dev"))
    assert config.nodes == 3
    assert config.waves == 2
    assert config.tls.mode == "self-signed"
    assert config.tls.dns_names == ["localhost"]
    assert config.single_host.docker_host == "unix:///var/run/docker.sock"
    assert config.data_dir == "/var/lib/emqx-cluster/dev"
    assert plan.lb_port == 8884
    assert len(plan.nodes) == 3


def test_prod_stack_file_is_valid_once_its_tls_secrets_are_set(tls_material: TlsMaterial) -> None:
    raw = stack_raw("prod")
    raw["tlsCertificate"] = tls_material.certificate_pem
    raw["tlsPrivateKey"] = tls_material.private_key_pem
    config, plan = validate(raw)
    assert plan.hosts[0].ssh is not None
    assert config.single_host.ssh_host == "mqtt-01.prod.internal"
    assert config.single_host.host_use_sudo
    assert config.lb.worker_connections == 262144
    assert config.client_hostname == "mqtt.prod.internal"
    assert [node.short_name for node in plan.nodes] == [f"emqx{i}" for i in range(1, 6)]
    assert config.tls.private_key is not None
    assert config.tls.private_key.get_secret_value() == tls_material.private_key_pem


def test_secrets_do_not_leak_through_the_config_repr() -> None:
    cookie = "Cookie_0123456789abcdef"
    password = "Dashboard-Pa55word!"
    config = parse_stack_config({"tlsMode": "self-signed", "erlangCookie": cookie, "dashboardPassword": password})
    for text in (repr(config), str(config), config.model_dump_json()):
        assert cookie not in text
        assert password not in text


# ----------------------------------------------------------------------------- refused configs


@dataclass(frozen=True)
class Bad:
    raw: dict[str, str]
    key: str
    value: str  # the bad value as the user wrote it (for secrets: what must never be shown)
    secret: bool = False
    paired: bool = True  # the line reads `<key> = <value>` (quoted or not)
    also: tuple[str, ...] = field(default_factory=tuple)  # more text the line must carry
    never: tuple[str, ...] = field(default_factory=tuple)  # text the whole message must not carry


def bad(case_id: str, raw: dict[str, str], key: str, value: str, **options: Any) -> Any:
    full = {"tlsMode": "self-signed", **raw}
    return pytest.param(Bad(full, key, value, **options), id=case_id)


SSH_DOCKER = "ssh://deploy@mqtt-01.example.net"

BAD_INPUTS = [
    # cluster shape
    bad("nodes-word", {"nodes": "three"}, "nodes", "three"),
    bad("nodes-zero", {"nodes": "0"}, "nodes", "0"),
    bad("nodes-1000", {"nodes": "1000"}, "nodes", "1000"),
    bad("nodes-fraction", {"nodes": "3.5"}, "nodes", "3.5"),
    bad("waves-above-nodes", {"nodes": "3", "waves": "4"}, "waves", "4"),
    bad("emqx-4", {"emqxVersion": "4.4.19"}, "emqxVersion", "4.4.19"),
    bad("repository-upper-case", {"emqxRepository": "EMQX/emqx"}, "emqxRepository", "EMQX/emqx"),
    # ports
    bad("lbPort-zero", {"lbPort": "0"}, "lbPort", "0"),
    bad("lbPort-70000", {"lbPort": "70000"}, "lbPort", "70000"),
    bad("lbPort-word", {"lbPort": "x"}, "lbPort", "x"),
    bad("mqttPortBase-70000", {"mqttPortBase": "70000"}, "mqttPortBase", "70000"),
    bad("mqtt-ports-past-65535", {"mqttPortBase": "65534"}, "mqttPortBase", "65534", also=("65536",)),
    bad("dashboard-overlaps-mqtt-above", {"dashboardPortBase": "61002"}, "dashboardPortBase", "61002"),
    bad("dashboard-overlaps-mqtt-below", {"dashboardPortBase": "61000"}, "dashboardPortBase", "61000"),
    bad("lbPort-is-node2-mqtt", {"lbPort": "61002"}, "lbPort", "61002", also=("emqx2",)),
    bad("lbPort-is-node1-dashboard", {"lbPort": "62001"}, "lbPort", "62001", also=("emqx1",)),
    bad("lbPort-is-distribution", {"lbPort": "4371"}, "lbPort", "4371", also=("distribution",)),
    bad("lbPort-is-rpc", {"lbPort": "5372"}, "lbPort", "5372", also=("rpc",)),
    bad("mqtt-overlaps-rpc", {"mqttPortBase": "5372"}, "mqttPortBase", "5372"),
    bad("port-range-reversed", {"ipLocalPortRange": "60999 1024"}, "ipLocalPortRange", "60999 1024"),
    bad("port-range-privileged", {"ipLocalPortRange": "80 90"}, "ipLocalPortRange", "80 90"),
    bad("port-range-word", {"ipLocalPortRange": "abc"}, "ipLocalPortRange", "abc"),
    bad("port-range-one-number", {"ipLocalPortRange": "1024"}, "ipLocalPortRange", "1024"),
    bad(
        "ports-in-ephemeral-range-unreservable",
        {"manageSysctls": "false"},
        "manageSysctls",
        "false",
        also=("4371-4373,5371-5373,8884", "1024 60999"),
    ),
    bad("reserved-ports-fill-range", {"ipLocalPortRange": "61000 61003"}, "ipLocalPortRange", "61000 61003"),
    # load balancer
    bad(
        "proxy-timeout-equals-keepalive",
        {"lbProxyTimeoutSeconds": "60", "mqttKeepaliveSeconds": "60"},
        "lbProxyTimeoutSeconds",
        "60",
        also=("1.5", "90"),
    ),
    bad(
        "proxy-timeout-exactly-1.5x-keepalive",
        {"lbProxyTimeoutSeconds": "90", "mqttKeepaliveSeconds": "60"},
        "lbProxyTimeoutSeconds",
        "90",
    ),
    bad("keepalive-zero", {"mqttKeepaliveSeconds": "0"}, "mqttKeepaliveSeconds", "0"),
    bad("balancing-ip_hash", {"lbBalancing": "ip_hash"}, "lbBalancing", "ip_hash", also=("least_conn",)),
    bad("fail-timeout-zero", {"lbFailTimeout": "0s"}, "lbFailTimeout", "0s"),
    bad("connect-timeout-words", {"lbConnectTimeout": "5 seconds"}, "lbConnectTimeout", "5 seconds"),
    bad("worker-connections-tiny", {"lbWorkerConnections": "100"}, "lbWorkerConnections", "100"),
    bad("listen-address-name", {"lbListenAddress": "localhost"}, "lbListenAddress", "localhost"),
    # TLS
    bad(
        "provided-tls-without-cert-and-key",
        {"tlsMode": "provided"},
        "tlsCertificate",
        "(unset)",
        paired=False,
        also=("tlsPrivateKey", "tlsMode = 'provided'"),
    ),
    bad(
        "provided-tls-without-key",
        {"tlsMode": "provided", "tlsCertificate": FAKE_CERT},
        "tlsPrivateKey",
        "(unset)",
        never=("MIIBfakeCERTbody",),
    ),
    bad("tlsMode-letsencrypt", {"tlsMode": "letsencrypt"}, "tlsMode", "letsencrypt", also=("self-signed",)),
    bad(
        "self-signed-with-provided-cert",
        {"tlsMode": "self-signed", "tlsCertificate": FAKE_CERT, "tlsPrivateKey": FAKE_KEY},
        "tlsMode",
        "self-signed",
        never=("MIIBfakeCERTbody", "MIIBfakeKEYbody"),
    ),
    bad(
        "certificate-not-pem",
        {"tlsMode": "provided", "tlsCertificate": "not-a-pem-s3cr3t-cert", "tlsPrivateKey": FAKE_KEY},
        "tlsCertificate",
        "not-a-pem-s3cr3t-cert",
        secret=True,
    ),
    bad(
        "private-key-not-pem",
        {"tlsMode": "provided", "tlsCertificate": FAKE_CERT, "tlsPrivateKey": "not-a-pem-s3cr3t-key"},
        "tlsPrivateKey",
        "not-a-pem-s3cr3t-key",
        secret=True,
    ),
    bad("dns-names-empty", {"tlsDnsNames": "[]"}, "tlsDnsNames", "[]"),
    bad("dns-name-with-space", {"tlsDnsNames": '["bad name"]'}, "tlsDnsNames", "bad name", paired=False),
    # secrets
    bad(
        "cookie-public-default",
        {"erlangCookie": PUBLIC_DEFAULT_COOKIE},
        "erlangCookie",
        PUBLIC_DEFAULT_COOKIE,
        secret=True,
    ),
    bad("cookie-too-short", {"erlangCookie": "s3cr3tShort"}, "erlangCookie", "s3cr3tShort", secret=True),
    bad(
        "cookie-bad-characters",
        {"erlangCookie": "s3cr3t cookie with spaces!"},
        "erlangCookie",
        "s3cr3t cookie with spaces!",
        secret=True,
    ),
    # EMQX's rule (emqx_dashboard_admin.erl legal_password/2): 8-64 ASCII, two kinds of characters.
    bad("dashboard-password-short", {"dashboardPassword": "pa55wd!"}, "dashboardPassword", "pa55wd!", secret=True),
    bad("dashboard-password-long", {"dashboardPassword": "a1" * 33}, "dashboardPassword", "a1" * 33, secret=True),
    bad(
        "dashboard-password-letters",
        {"dashboardPassword": "OnlyLetters"},
        "dashboardPassword",
        "OnlyLetters",
        secret=True,
    ),
    bad(
        "dashboard-password-digits", {"dashboardPassword": "0123456789"}, "dashboardPassword", "0123456789", secret=True
    ),
    bad(
        "dashboard-password-non-ascii",
        {"dashboardPassword": "pässwörd1"},
        "dashboardPassword",
        "pässwörd1",
        secret=True,
    ),
    # bin/emqx compares the cookie as written with its HOCON value: a leading digit is a number.
    bad(
        "cookie-leading-digit",
        {"erlangCookie": "0123456789abcdefXYZ"},
        "erlangCookie",
        "0123456789abcdefXYZ",
        secret=True,
    ),
    bad("image-platform", {"imagePlatform": "amd64"}, "imagePlatform", "amd64"),
    bad("broker-nofile-low", {"brokerNofileLimit": "100"}, "brokerNofileLimit", "100"),
    bad("broker-stop-grace-zero", {"brokerStopGraceSeconds": "0"}, "brokerStopGraceSeconds", "0"),
    bad("lb-stop-grace-zero", {"lbStopGraceSeconds": "0"}, "lbStopGraceSeconds", "0"),
    # where things run
    bad("advertise-short-name", {"advertiseAddress": "localhost"}, "advertiseAddress", "localhost"),
    bad("advertise-numeric-not-ip", {"advertiseAddress": "10.0.300"}, "advertiseAddress", "10.0.300"),
    bad("advertise-wildcard", {"advertiseAddress": "0.0.0.0"}, "advertiseAddress", "0.0.0.0"),
    # Listeners bind `ip:port`, which EMQX does not take with a host name.
    bad("advertise-fqdn", {"advertiseAddress": "mqtt-01.prod.internal"}, "advertiseAddress", "mqtt-01.prod.internal"),
    bad("sysctlDropIn-not-a-drop-in", {"sysctlDropIn": "/etc/sysctl.conf"}, "sysctlDropIn", "/etc/sysctl.conf"),
    bad("sysctlDropIn-passwd", {"sysctlDropIn": "/etc/passwd"}, "sysctlDropIn", "/etc/passwd"),
    bad("lbWorkerConnections-over-nr_open", {"lbWorkerConnections": "1048576"}, "lbWorkerConnections", "1048576"),
    bad("docker-tcp", {"dockerHost": "tcp://x:2375"}, "dockerHost", "tcp://x:2375"),
    bad("ssh-docker-without-sshHost", {"dockerHost": SSH_DOCKER}, "sshHost", "(unset)", also=(SSH_DOCKER,)),
    bad("ssh-user-upper-case", {"sshUser": "Root"}, "sshUser", "Root"),
    bad("dataDir-relative", {"dataDir": "var/lib/emqx"}, "dataDir", "var/lib/emqx"),
    bad("dataDir-dotdot", {"dataDir": "/var/lib/../../etc"}, "dataDir", "/var/lib/../../etc"),
    bad("dataDir-root", {"dataDir": "/"}, "dataDir", "/"),
    bad("dataDir-only-slashes", {"dataDir": "//"}, "dataDir", "//"),
    # host tuning
    bad(
        "sysctl-overrides-reserved-ports",
        {"sysctls": '{"net.ipv4.ip_local_reserved_ports": "8884"}'},
        "sysctls",
        "net.ipv4.ip_local_reserved_ports",
        paired=False,
        also=("ipLocalPortRange",),
    ),
    bad(
        "sysctl-overrides-port-range",
        {"sysctls": '{"net.ipv4.ip_local_port_range": "2000 3000"}'},
        "sysctls",
        "net.ipv4.ip_local_port_range",
        paired=False,
    ),
    bad(
        "sysctl-shell-injection",
        {"sysctls": '{"net.core.somaxconn": "1; rm -rf /"}'},
        "sysctls",
        "1; rm -rf /",
        paired=False,
    ),
    bad(
        "sysctl-command-substitution",
        {"sysctls": '{"net.core.somaxconn": "$(reboot)"}'},
        "sysctls",
        "$(reboot)",
        paired=False,
    ),
    bad(
        "sysctl-key-malformed",
        {"sysctls": '{"net.core.somaxconn;reboot": "1"}'},
        "sysctls",
        "net.core.somaxconn;reboot",
        paired=False,
    ),
    bad("sysctls-list-not-map", {"sysctls": '["net.core.somaxconn"]'}, "sysctls", "net.core.somaxconn", paired=False),
    bad("sysctls-not-json", {"sysctls": "net.core.somaxconn=1"}, "sysctls", "net.core.somaxconn=1"),
    # client certificates
    bad("client-ca-not-pem", {"tlsClientCa": "not-a-ca"}, "tlsClientCa", "not-a-ca", secret=True),
    bad("client-depth-zero", {"tlsClientCa": FAKE_CERT, "tlsClientVerifyDepth": "0"}, "tlsClientVerifyDepth", "0"),
    bad("client-crl-not-pem", {"tlsClientCa": FAKE_CERT, "tlsClientCrl": "crl"}, "tlsClientCrl", "crl"),
    bad(
        "client-crl-without-ca",
        {"tlsClientCrl": "-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n"},
        "tlsClientVerifyDepth/tlsClientCrl",
        "tlsClientCa = (unset)",
        paired=False,
    ),
    # misc
    bad("unknown-key-nodeCount", {"nodeCount": "3"}, "nodeCount", "3", also=("unknown key", "nodes")),
    # the model's sections are no keys of the stack file (users write `lbPort`, not `lb`)
    bad("unknown-key-lb", {"lb": '{"port": 1}'}, "lb", '{"port": 1}', also=("unknown key", "lbPort")),
    bad("unknown-key-tls", {"tls": "x"}, "tls", "x", also=("unknown key", "tlsMode")),
    bad("unknown-key-singleHost", {"singleHost": "x"}, "singleHost", "x", also=("unknown key", "advertiseAddress")),
    bad("unknown-key-tuning-with-more", {"tuning": "x", "nodes": "0"}, "nodes", "0"),  # both reported
    bad("unknown-key-tuning-beside-a-bad-one", {"tuning": "x", "nodes": "0"}, "tuning", "x", also=("unknown key",)),
    bad(
        "unknown-key-tls-holding-a-key",
        {"tls": FAKE_KEY},
        "tls",
        "(hidden: secret)",
        paired=False,
        also=("unknown key",),
        never=("MIIBfakeKEYbody",),
    ),
    bad("log-size-without-unit", {"containerLogMaxSize": "50"}, "containerLogMaxSize", "50"),
    bad("keepImage-maybe", {"keepImage": "maybe"}, "keepImage", "maybe", also=("true or false",)),
    bad("manageSysctls-maybe", {"manageSysctls": "maybe"}, "manageSysctls", "maybe", also=("true or false",)),
    bad("hostUseSudo-maybe", {"hostUseSudo": "maybe"}, "hostUseSudo", "maybe", also=("true or false",)),
    bad("purgeData-maybe", {"purgeData": "maybe"}, "purgeData", "maybe", also=("true or false",)),
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_refused_with_key_value_and_what_is_allowed(case: Bad) -> None:
    with pytest.raises(ConfigError) as refused:
        validate(case.raw)
    message = str(refused.value)
    lines = [line for line in problem_lines(refused.value) if f"{NAMESPACE}:{case.key}" in line]
    assert lines, f"no line names {NAMESPACE}:{case.key}:\n{message}"
    assert "allowed" in message

    def explains(line: str) -> bool:
        if "allowed" not in line or not all(text in line for text in case.also):
            return False
        if case.secret:
            return f"{case.key} = (hidden" in line and "not shown" in line
        if case.paired:
            return f"{case.key} = {case.value}" in line or f"{case.key} = {case.value!r}" in line
        return case.value in line

    assert any(explains(line) for line in lines), message
    for text in case.never:
        assert text not in message
    if case.secret:
        # EMQX's public default cookie may be named as the forbidden value, never shown as the input.
        shown = f"= {case.value!r}" if case.value == PUBLIC_DEFAULT_COOKIE else case.value
        assert shown not in message


def test_at_least_25_distinct_bad_inputs() -> None:
    assert len({param.id for param in BAD_INPUTS}) == len(BAD_INPUTS) >= 25


def test_every_field_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_stack_config(
            {
                "tlsMode": "self-signed",
                "nodes": "three",
                "lbPort": "x",
                "erlangCookie": "s3cr3tShort",
                "lbBalancing": "ip_hash",
                "keepImage": "maybe",
            }
        )
    lines = problem_lines(refused.value)
    keys = ("nodes", "lbPort", "erlangCookie", "lbBalancing", "keepImage")
    assert len(lines) == len(keys)
    for key in keys:
        assert any(line.startswith(f"{NAMESPACE}:{key} = ") and "allowed" in line for line in lines), key
    assert "s3cr3tShort" not in str(refused.value)


def test_every_cross_key_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_stack_config(
            {
                "nodes": "3",
                "waves": "4",
                "dockerHost": SSH_DOCKER,
                "tlsMode": "provided",
                "lbProxyTimeoutSeconds": "60",
            }
        )
    lines = problem_lines(refused.value)
    assert len(lines) == 4
    for key in ("waves", "sshHost", "tlsCertificate", "lbProxyTimeoutSeconds"):
        assert any(line.startswith(f"{NAMESPACE}:{key}") and "allowed" in line for line in lines), key


def test_every_port_collision_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as refused:
        validate({"tlsMode": "self-signed", "lbPort": "4372", "dashboardPortBase": "61002"})
    message = str(refused.value)
    assert f"{NAMESPACE}:lbPort = 4372" in message
    assert f"{NAMESPACE}:dashboardPortBase = 61002" in message


# ----------------------------------------------------------------------------- derived values


def test_default_waves_shrink_to_one_for_a_single_node() -> None:
    config, plan = validate({"tlsMode": "self-signed", "nodes": "1"})
    assert config.effective_waves == 1
    assert [[node.short_name for node in wave] for wave in plan.waves] == [["emqx1"]]


def test_explicit_waves_above_a_single_node_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"emqx-cluster:waves = 2: allowed: 1 to nodes \(1\)"):
        parse_stack_config({"tlsMode": "self-signed", "nodes": "1", "waves": "2"})


def test_sysctl_defaults_are_emqx_tuning_values() -> None:
    config = parse_stack_config({"tlsMode": "self-signed"})
    assert config.tuning.settings() == EMQX_TUNING_SYSCTLS
    assert config.tuning.settings()["net.core.somaxconn"] == "32768"


def test_null_sysctl_override_drops_a_default_key() -> None:
    config = parse_stack_config({"tlsMode": "self-signed", "sysctls": '{"fs.file-max": null}'})
    settings = config.tuning.settings()
    assert "fs.file-max" not in settings
    assert settings == {key: value for key, value in EMQX_TUNING_SYSCTLS.items() if key != "fs.file-max"}


def test_sysctl_overrides_replace_and_extend_the_defaults() -> None:
    config = parse_stack_config(
        {"tlsMode": "self-signed", "sysctls": '{"net.core.somaxconn": "65535", "vm.swappiness": "10"}'}
    )
    settings = config.tuning.settings()
    assert settings["net.core.somaxconn"] == "65535"
    assert settings["vm.swappiness"] == "10"
    assert settings["fs.nr_open"] == EMQX_TUNING_SYSCTLS["fs.nr_open"]


def test_numeric_sysctl_values_from_yaml_are_accepted() -> None:
    """`net.core.somaxconn: 65535` in the stack YAML reaches the program as a JSON number."""
    config = parse_stack_config({"tlsMode": "self-signed", "sysctls": '{"net.core.somaxconn": 65535}'})
    assert config.tuning.settings()["net.core.somaxconn"] == "65535"


def test_trailing_slash_of_data_dir_is_dropped() -> None:
    config, plan = validate({"tlsMode": "self-signed", "dataDir": "/srv/emqx/"})
    assert config.data_dir == "/srv/emqx"
    assert plan.nodes[0].data_dir == "/srv/emqx/emqx1/data"


def test_every_key_of_the_stack_files_is_a_known_key() -> None:
    known = set(config_keys())
    for stack in ("dev", "prod"):
        assert set(stack_raw(stack)) <= known, stack


def test_plan_accepts_manage_sysctls_false_when_no_planned_port_is_ephemeral() -> None:
    """The unreservable-port refusal is about the range, not about manageSysctls itself."""
    _, plan = validate({"tlsMode": "self-signed", "manageSysctls": "false", "ipLocalPortRange": "10000 60999"})
    assert plan.hosts[0].reserved_ports == ()
    assert plan_cluster(parse_stack_config({"tlsMode": "self-signed"})).hosts[0].reserved_ports != ()


@pytest.mark.parametrize(
    "password",
    ["abcdefg1", "pass word", "ABCDEFG!", "12345678_", "x" * 63 + "1", 'Dash "board" #1 ${x}'],
    ids=["letters-digits", "letters-space", "letters-special", "digits-special", "64-chars", "hocon-specials"],
)
def test_dashboard_passwords_emqx_accepts_are_accepted(password: str) -> None:
    """Mirror of emqx_dashboard_admin:legal_password/2: two kinds out of letters, digits, specials."""
    config = parse_stack_config({"tlsMode": "self-signed", "dashboardPassword": password})
    assert config.dashboard_password is not None
    assert config.dashboard_password.get_secret_value() == password


@pytest.mark.parametrize("cookie", ["a" * 16, "Cookie_0123456789-abcdef", "Z" + "9" * 254])
def test_cookies_that_hocon_keeps_as_written_are_accepted(cookie: str) -> None:
    config = parse_stack_config({"tlsMode": "self-signed", "erlangCookie": cookie})
    assert config.erlang_cookie is not None
    assert config.erlang_cookie.get_secret_value() == cookie


def test_fidelity_defaults() -> None:
    """Keys an operator relies on without setting them: image platform, limits, stop grace."""
    config = parse_stack_config({"tlsMode": "self-signed"})
    assert config.image_platform is None  # the Docker host's own
    assert config.broker_nofile_limit == 1048576
    assert config.broker_stop_grace_seconds > 0
    assert config.lb.stop_grace_seconds > 0
    assert (
        parse_stack_config({"tlsMode": "self-signed", "imagePlatform": "linux/arm64"}).image_platform == "linux/arm64"
    )
