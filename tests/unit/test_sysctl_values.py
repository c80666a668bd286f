"""`emqx-cluster:sysctls` values as users set them: from the command line or the stack file.

`pulumi config set --path 'emqx-cluster:sysctls["<key>"]' <value>` stores "true"/"false" as
booleans, base-10 integers without a leading 0 as numbers and everything else, `null` included, as
a string (pulumi/pulumi: Value.coerceObject and coerce in sdk/go/common/resource/config):
`pulumi_cli_stores` does the same, so these tests see the values the program gets. A value the
host cannot take is refused at preview, naming the key, the value, what is allowed and a command
that fixes it; "null", as the command line stores it, leaves the key alone.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from components.config import EMQX_TUNING_SYSCTLS
from components.config_parse import ConfigError, parse_stack_config
from components.config_types import SYSCTL_VECTORS, sysctl_problems, sysctl_shape
from components.render.host_scripts import sysctl_apply_script
from tests.support.stackfiles import stack_raw, validate


def pulumi_cli_stores(value: str) -> Any:
    """The value `pulumi config set --path` stores for `value` typed on the command line."""
    if value in ("true", "false"):
        return value == "true"
    if re.fullmatch(r"-?[1-9][0-9]*|0", value):
        return int(value)
    return value


def with_sysctls(overrides: dict[str, Any]) -> dict[str, str | None]:
    """The dev stack with `emqx-cluster:sysctls` as Pulumi hands it to the program (JSON)."""
    return {**stack_raw("dev"), "sysctls": json.dumps(overrides)}


def refusal(overrides: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        validate(with_sysctls(overrides))
    header, *lines = str(refused.value).split("\n")
    assert header == "invalid stack configuration:"
    return [line.strip() for line in lines]


def line_for(lines: list[str], key: str) -> str:
    (line,) = [line for line in lines if line.startswith(f'emqx-cluster:sysctls["{key}"] = ')]
    return line


def commands_in(line: str) -> list[tuple[str, str]]:
    """The `pulumi config set --path '<path>' <value>` commands an error line suggests."""
    found = re.findall(r"`pulumi config set --path '([^']+)' ('[^']*'|\S+)`", line)
    return [(path, value.strip("'")) for path, value in found]


def applied_script(overrides: dict[str, Any]) -> str:
    from components.host_tuning import host_sysctls  # imports pulumi

    config, plan = validate(with_sysctls(overrides))
    return sysctl_apply_script(host_sysctls(config, plan, plan.hosts[0]), config.tuning.drop_in)


# ----------------------------------------------------------------------------- null


def test_null_typed_on_the_command_line_leaves_the_key_alone() -> None:
    """`pulumi config set --path 'emqx-cluster:sysctls["net.ipv4.tcp_rmem"]' null` stores the
    string "null": the key is left alone, never written to the kernel or the drop-in."""
    stored = pulumi_cli_stores("null")
    assert stored == "null"
    config, _ = validate(with_sysctls({"net.ipv4.tcp_rmem": stored}))
    assert config.tuning.overrides == {"net.ipv4.tcp_rmem": None}
    assert "net.ipv4.tcp_rmem" not in config.tuning.settings()
    script = applied_script({"net.ipv4.tcp_rmem": stored})
    assert "/proc/sys/net/ipv4/tcp_rmem" not in script  # neither checked, saved nor written
    drop_in = script.split("<<'EMQX_SYSCTL'\n", 1)[1].split("EMQX_SYSCTL\n", 1)[0]
    assert "net.ipv4.tcp_rmem" not in drop_in and "null" not in drop_in
    assert "\nnet.ipv4.tcp_wmem = 1024 4096 16777216\n" in script  # the other keys still are


def test_a_yaml_null_in_the_stack_file_leaves_the_key_alone_too() -> None:
    config, _ = validate(with_sysctls({"net.ipv4.tcp_rmem": None}))
    assert "net.ipv4.tcp_rmem" not in config.tuning.settings()


@pytest.mark.parametrize("spelling", ["NULL", "Null", "~", "null "])
def test_only_null_as_yaml_spells_it_means_leave_alone(spelling: str) -> None:
    """Case-sensitive and exact: anything else is a value, refused for an integer key."""
    line = line_for(refusal({"net.core.somaxconn": spelling}), "net.core.somaxconn")
    assert f"= {spelling!r}: allowed: one integer" in line


# ----------------------------------------------------------------------------- refused shapes


def test_a_non_integer_in_tcp_rmem_is_refused_naming_key_value_and_shape() -> None:
    line = line_for(refusal({"net.ipv4.tcp_rmem": "1024 abc"}), "net.ipv4.tcp_rmem")
    assert line.startswith("emqx-cluster:sysctls[\"net.ipv4.tcp_rmem\"] = '1024 abc': allowed: 3 integers")
    assert "(min default max, in bytes)" in line


@pytest.mark.parametrize("value", ["4096 131072", "4096 131072 6291456 1", "4096", "4096,131072,6291456"])
def test_tcp_rmem_with_other_than_three_integers_is_refused(value: str) -> None:
    """The kernel would take `4096 131072` and keep the old max, and ignore a fourth value."""
    line = line_for(refusal({"net.ipv4.tcp_rmem": value}), "net.ipv4.tcp_rmem")
    assert f"= {value!r}: allowed: 3 integers separated by spaces" in line


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("net.ipv4.tcp_wmem", "4096 16384"),
        ("net.ipv4.tcp_mem", "1 2"),
        ("net.ipv4.ping_group_range", "0"),
        ("kernel.sem", "250 32000 32"),
    ],
)
def test_other_vectors_are_refused_with_a_wrong_count(key: str, value: str) -> None:
    shape = SYSCTL_VECTORS[key]
    line = line_for(refusal({key: value}), key)
    assert f"= {value!r}: allowed: {shape.count} integers separated by spaces" in line


@pytest.mark.parametrize("value", ["300 400", "abc", "12abc", "1.5", "", "  ", "1; rm -rf /", "$(reboot)", "0x"])
def test_a_plain_integer_key_takes_one_integer(value: str) -> None:
    line = line_for(refusal({"net.core.somaxconn": value}), "net.core.somaxconn")
    assert f"= {value!r}: allowed: one integer;" in line


def test_a_leading_zero_is_refused_as_the_octal_the_kernel_would_read() -> None:
    line = line_for(refusal({"net.core.somaxconn": "010"}), "net.core.somaxconn")
    assert "allowed: one integer, without a leading 0 (the kernel reads 010 as octal 8)" in line


@pytest.mark.parametrize(("typed", "shown"), [("true", "'true'"), ("false", "'false'")])
def test_a_boolean_from_the_command_line_is_refused_as_written(typed: str, shown: str) -> None:
    line = line_for(refusal({"net.core.somaxconn": pulumi_cli_stores(typed)}), "net.core.somaxconn")
    assert f'emqx-cluster:sysctls["net.core.somaxconn"] = {shown}: allowed: one integer' in line


def test_a_yaml_list_is_refused_with_the_form_that_works() -> None:
    line = line_for(refusal({"net.ipv4.tcp_rmem": [4096, 131072, 6291456]}), "net.ipv4.tcp_rmem")
    assert "= '[4096, 131072, 6291456]': allowed: 3 integers separated by spaces" in line


def test_text_keys_keep_the_script_safe_alphabet() -> None:
    line = line_for(refusal({"net.ipv4.tcp_congestion_control": "bbr;reboot"}), "net.ipv4.tcp_congestion_control")
    assert "allowed: text of digits, letters, spaces and . _ : , / -, not empty" in line


def test_every_bad_value_is_its_own_line_in_one_error() -> None:
    lines = refusal({"net.ipv4.tcp_rmem": "1024 abc", "net.core.somaxconn": "300 400", "vm.swappiness": "10"})
    assert len(lines) == 2
    assert line_for(lines, "net.ipv4.tcp_rmem") and line_for(lines, "net.core.somaxconn")


# ----------------------------------------------------------------------------- the commands given


@pytest.mark.parametrize(
    ("key", "value"),
    [("net.ipv4.tcp_rmem", "1024 abc"), ("net.core.somaxconn", "300 400"), ("kernel.hostname", "a;b")],
)
def test_the_null_command_an_error_gives_leaves_the_key_alone_when_run(key: str, value: str) -> None:
    """The error's `pulumi config set --path ... null`, as Pulumi stores it, is accepted and the
    key is then left alone: the command in the message works."""
    line = line_for(refusal({key: value}), key)
    suggested = commands_in(line)
    assert (f'emqx-cluster:sysctls["{key}"]', "null") in suggested
    path, typed = suggested[-1]
    assert path == f'emqx-cluster:sysctls["{key}"]'
    config, _ = validate(with_sysctls({key: pulumi_cli_stores(typed)}))
    assert key not in config.tuning.settings()


def test_the_set_command_names_the_fields_and_the_example_works() -> None:
    line = line_for(refusal({"net.ipv4.tcp_rmem": "4096 131072"}), "net.ipv4.tcp_rmem")
    assert ('emqx-cluster:sysctls["net.ipv4.tcp_rmem"]', "<min> <default> <max>") in commands_in(line)
    example = re.search(r"e\.g\. '([^']+)'", line)
    assert example is not None and example.group(1) == "4096 131072 6291456"
    config, _ = validate(with_sysctls({"net.ipv4.tcp_rmem": pulumi_cli_stores(example.group(1))}))
    assert config.tuning.settings()["net.ipv4.tcp_rmem"] == "4096 131072 6291456"


def test_a_port_plan_key_is_refused_with_the_commands_that_fix_it() -> None:
    line = line_for(refusal({"net.ipv4.ip_local_port_range": "2000 3000"}), "net.ipv4.ip_local_port_range")
    assert "`pulumi config rm --path 'emqx-cluster:sysctls[\"net.ipv4.ip_local_port_range\"]'`" in line
    assert "`pulumi config set ipLocalPortRange '<low> <high>'`" in line


@pytest.mark.parametrize(
    ("key", "remedy"),
    [
        (
            "net.core.somaxconn;reboot",
            "`pulumi config rm --path 'emqx-cluster:sysctls[\"net.core.somaxconn;reboot\"]'`",
        ),
        ("Net.Core.Somaxconn", "`pulumi config rm --path 'emqx-cluster:sysctls[\"Net.Core.Somaxconn\"]'`"),
        ("net core'somaxconn", "from emqx-cluster:sysctls in Pulumi.<stack>.yaml"),
    ],
)
def test_a_malformed_key_is_refused_with_how_to_remove_it(key: str, remedy: str) -> None:
    line = line_for(refusal({key: "1"}), key)
    assert "allowed: a sysctl name as `sysctl -a` lists it" in line and remedy in line


# ----------------------------------------------------------------------------- accepted


@pytest.mark.parametrize(
    ("key", "value", "applied"),
    [
        ("net.ipv4.tcp_rmem", "4096 131072 6291456", "4096 131072 6291456"),
        ("net.ipv4.tcp_wmem", "4096  16384  4194304", "4096  16384  4194304"),
        ("net.ipv4.tcp_mem", "188888 251851 377776", "188888 251851 377776"),
        ("vm.lowmem_reserve_ratio", "256 256 32 0 0", "256 256 32 0 0"),
        ("net.core.somaxconn", 65535, "65535"),  # `pulumi config set --path ... 65535`: a number
        ("net.core.somaxconn", "65535", "65535"),
        ("kernel.perf_event_paranoid", -1, "-1"),
        ("net.ipv4.fib_multipath_hash_fields", "0x0037", "0x0037"),
        ("net.ipv4.tcp_fin_timeout", "0", "0"),
        ("net.ipv4.tcp_congestion_control", "bbr", "bbr"),
        ("net.core.default_qdisc", "fq", "fq"),
        ("net.ipv6.conf.eth0.stable_secret", "2001:db8::1", "2001:db8::1"),
        ("net.netfilter.nf_conntrack_max", "262144", "262144"),
    ],
)
def test_well_formed_values_are_accepted_and_applied(key: str, value: Any, applied: str) -> None:
    config, _ = validate(with_sysctls({key: value}))
    assert config.tuning.settings()[key] == applied


def test_emqx_tuning_values_and_the_stack_files_pass_the_same_checks() -> None:
    """A default the checks would refuse could not be overridden back to itself."""
    assert sysctl_problems(EMQX_TUNING_SYSCTLS) == []
    for stack in ("dev", "prod"):  # the stacks set no sysctls today; if one does, its values must pass
        text = stack_raw(stack).get("sysctls")
        config = parse_stack_config({"tlsMode": "self-signed", "sysctls": text or "{}"})
        assert sysctl_problems(config.tuning.overrides) == []
    config = parse_stack_config({"tlsMode": "self-signed", "sysctls": json.dumps(EMQX_TUNING_SYSCTLS)})
    assert config.tuning.settings() == EMQX_TUNING_SYSCTLS


def test_every_vector_example_has_its_own_shape() -> None:
    for key, shape in SYSCTL_VECTORS.items():
        assert sysctl_shape(key) is shape
        if shape.example:
            assert shape.accepts(shape.example), key
