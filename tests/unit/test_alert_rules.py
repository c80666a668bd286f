"""Every alert rule the plan renders fires when its condition holds long enough, says so in a
summary an operator can act on, and clears when the condition is gone: `promtool test rules`
(Debian's prometheus package) evaluates the rendered rules over series written here."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from components.capacity import cluster_capacity
from components.config_parse import parse_stack_config
from components.plan import plan_cluster
from components.render.prometheus import alert_thresholds, render_alert_rules

HOST = "127.0.0.1"
NODE = "emqx1@127.0.0.1"
EMQX_TARGET = {"job": "emqx", "instance": "127.0.0.1:62001", "node": NODE}
NGINX_TARGET = {"job": "nginx", "instance": "127.0.0.1:9113"}


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    selector = ",".join(f"{key}={json.dumps(value)}" for key, value in labels.items())
    return {"series": f"{name}{{{selector}}}", "values": values}


@dataclass(frozen=True)
class Case:
    """One rule: its input (one sample a minute), when it must not fire, fire, and have cleared."""

    alert: str
    inputs: list[dict[str, str]]
    quiet: str
    firing: str
    cleared: str
    labels: dict[str, str]
    summary: str
    extra: list[dict[str, str]] = field(default_factory=list)


# The dev stack of 3 nodes with metrics on, the plan's ceiling shrunk (brokerNofileLimit 1,124:
# 100 clients per node, 300 per host) so that thresholds are small numbers: 80% -> 240 and 80.
STACK = {"tlsMode": "self-signed", "metrics": "true", "brokerNofileLimit": "1124"}

DROPPED_SUMMARY = (
    f"about 10 messages dropped on {NODE} in 5m (subscribers' queues full, expired, too large; QoS 2 timeouts): "
    "subscribers are too slow or offline too long"
)

CASES = [
    Case(
        "EmqxNodeDown",
        [series("up", EMQX_TARGET, "1 1 0x4 1x4")],
        quiet="1m",
        firing="4m",
        cleared="8m",
        labels={**EMQX_TARGET, "severity": "critical"},
        summary=f"EMQX node {NODE} on host {HOST} does not answer its stats endpoint (stopped, crashed or hung)",
    ),
    Case(
        "EmqxNodeStoppedInCluster",
        [series("emqx_cluster_nodes_stopped", EMQX_TARGET, "0 0 1x4 0x4")],
        quiet="1m",
        firing="4m",
        cleared="8m",
        labels={"severity": "critical"},
        summary=f"1 node(s) of the cluster are stopped, as the nodes on host {HOST} see it: a node is down or "
        "cannot reach the others",
    ),
    Case(
        "EmqxFewerNodesThanDeclared",
        [series("emqx_cluster_nodes_running", EMQX_TARGET, "3 3 2x4 3x4")],
        quiet="1m",
        firing="4m",
        cleared="8m",
        labels={"severity": "critical"},
        summary=f"2 of the 3 declared nodes run in the cluster, as the nodes on host {HOST} see it",
    ),
    Case(
        "LoadBalancerDown",
        [series("up", NGINX_TARGET, "1 1 0x4 1x4")],
        quiet="1m",
        firing="4m",
        cleared="8m",
        labels={**NGINX_TARGET, "severity": "critical"},
        summary=f"Nginx on host {HOST} does not answer its metrics listener: no client gets in there",
    ),
    Case(
        "LoadBalancerNearCeiling",
        # 241 clients and the scrape: above 80% of 300; 240 and the scrape is not.
        [series("nginx_connections_active", NGINX_TARGET, "241x2 242x8 241x4")],
        quiet="1m",
        firing="9m",
        cleared="13m",
        labels={**NGINX_TARGET, "severity": "warning"},
        summary=f"241 clients on host {HOST}'s load balancer: above 80% of its ceiling of 300 connections "
        "(broker open files decide: raise emqx-cluster:brokerNofileLimit (or nodes on the host))",
    ),
    Case(
        "EmqxNodeNearConnectionCap",
        # Live connections: disconnected sessions (emqx_connections_count) do not count.
        [
            series("emqx_live_connections_count", EMQX_TARGET, "80x2 81x8 80x4"),
            series("emqx_connections_count", EMQX_TARGET, "500x14"),
        ],
        quiet="1m",
        firing="9m",
        cleared="13m",
        labels={**EMQX_TARGET, "severity": "warning"},
        summary=f"81 clients on {NODE}: above 80% of the 100 Nginx lets a node of host {HOST} hold",
    ),
    Case(
        "EmqxAuthenticationFailures",
        # 60 failures a minute for a while (above 30), then none.
        [series("emqx_authentication_failure", EMQX_TARGET, "0x5 0+60x15 900x12")],
        quiet="4m",
        firing="18m",
        cleared="30m",
        labels={**EMQX_TARGET, "severity": "warning"},
        summary=f"60 failed authentications per minute on {NODE} (above 30): a client with a wrong password "
        "retrying, or someone guessing",
    ),
    Case(
        "EmqxMessagesDropped",
        # Publishes: dropped for lack of subscribers alone never fires; 10 more dropped otherwise
        # (a QoS 2 timeout) does (increase() extrapolates over its window: "about").
        [
            series("emqx_messages_dropped", EMQX_TARGET, "0x5 0+5x4 20x10 30 30x10"),
            series("emqx_messages_dropped_no_subscribers", EMQX_TARGET, "0x5 0+5x4 20x21"),
            series("emqx_delivery_dropped", EMQX_TARGET, "0x32"),
            series("emqx_delivery_dropped_no_local", EMQX_TARGET, "0x32"),
        ],
        quiet="20m",
        firing="24m",
        cleared="30m",
        labels={**EMQX_TARGET, "severity": "warning"},
        summary=DROPPED_SUMMARY,
    ),
    Case(
        "EmqxMessagesDropped",
        # Deliveries: dropped as no_local alone never fires; 10 more (a full queue) does.
        [
            series("emqx_messages_dropped", EMQX_TARGET, "0x5 0+5x4 20x21"),
            series("emqx_messages_dropped_no_subscribers", EMQX_TARGET, "0x5 0+5x4 20x21"),
            series("emqx_delivery_dropped", EMQX_TARGET, "0x5 0+3x4 12x10 22 22x10"),
            series("emqx_delivery_dropped_no_local", EMQX_TARGET, "0x5 0+3x4 12x21"),
        ],
        quiet="20m",
        firing="24m",
        cleared="30m",
        labels={**EMQX_TARGET, "severity": "warning"},
        summary=DROPPED_SUMMARY,
    ),
    Case(
        "EmqxHostMemoryHigh",
        [
            series("emqx_vm_total_memory", EMQX_TARGET, "1000x14"),
            series("emqx_vm_used_memory", EMQX_TARGET, "900x2 950x8 500x4"),
        ],
        quiet="1m",
        firing="9m",
        cleared="13m",
        labels={**EMQX_TARGET, "severity": "warning"},
        summary=f"95% of host {HOST}'s memory in use, as {NODE} reads it (above 90%)",
    ),
]


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = parse_stack_config(STACK)
    plan = plan_cluster(config)
    host = plan.hosts[0]
    capacity = cluster_capacity(config, plan)[host.label]
    assert (capacity.ceiling, capacity.deciding.name) == (300, "broker open files")
    path = tmp_path_factory.mktemp("rules") / "alert-rules.yml"
    path.write_text(render_alert_rules(host.label, alert_thresholds(config, plan, host, capacity)))
    return path


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary is not None, "promtool missing: scripts/install-test-deps installs Debian's prometheus"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)


def test_the_rendered_rules_are_valid_and_every_rule_has_a_case(rules_file: Path) -> None:
    checked = promtool("check", "rules", str(rules_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = yaml.safe_load(rules_file.read_text())["groups"][0]["rules"]
    assert sorted(rule["alert"] for rule in rules) == sorted({case.alert for case in CASES})


@pytest.mark.parametrize("case", CASES, ids=[f"{case.alert}-{index}" for index, case in enumerate(CASES)])
def test_the_rule_fires_on_its_condition_and_clears_after(case: Case, rules_file: Path, tmp_path: Path) -> None:
    firing = {"exp_labels": {**case.labels, "alertname": case.alert}, "exp_annotations": {"summary": case.summary}}
    labels = {key: value for key, value in firing["exp_labels"].items() if key != "alertname"}
    firing["exp_labels"] = labels
    test = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": case.inputs,
                "alert_rule_test": [
                    {"eval_time": case.quiet, "alertname": case.alert, "exp_alerts": []},
                    {"eval_time": case.firing, "alertname": case.alert, "exp_alerts": [firing]},
                    {"eval_time": case.cleared, "alertname": case.alert, "exp_alerts": []},
                ],
            }
        ],
    }
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
