"""Metrics: off by default and private when on; Prometheus's scrape config rendered from the plan
(one target per node and per host's Nginx, several hosts included) and valid for promtool;
Nginx's metrics listener on loopback; the ports planned and checked; bad keys refused."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.config_parse import ConfigError, parse_stack_config
from components.names import LB_CONTAINER, PROMETHEUS_CONTAINER
from components.plan import plan_cluster
from components.render.nginx import nginx_settings, render_nginx_conf
from components.render.prometheus import prometheus_settings, render_prometheus_config

BASE = {"tlsMode": "self-signed"}
THREE_HOSTS = json.dumps(
    [
        {"name": "a", "address": "10.0.0.11", "nodes": 2},
        {"name": "b", "address": "10.0.0.12", "nodes": 1},
        {"name": "c", "address": "10.0.0.13", "nodes": 2},
    ]
)


def planned(**keys: str) -> tuple:  # type: ignore[type-arg]
    config = parse_stack_config({**BASE, **keys})
    return config, plan_cluster(config)


def refusal(**keys: str) -> str:
    with pytest.raises(ConfigError) as raised:
        planned(**keys)
    return str(raised.value)


def test_metrics_are_off_by_default_and_add_no_port_and_no_listener() -> None:
    config, plan = planned()
    host = plan.hosts[0]
    assert not config.monitoring.enabled
    assert (host.metrics_port, host.lb_metrics_port) == (None, None)
    assert 9090 not in host.ports() and 9113 not in host.reserved_ports
    assert "http {" not in render_nginx_conf(nginx_settings(config, plan))


def test_metrics_on_plan_their_ports_reserve_them_and_the_preflight_checks_them() -> None:
    _, plan = planned(metrics="true")
    host = plan.hosts[0]
    assert {9090, 9113} <= set(host.ports())
    assert {9090, 9113} <= set(host.reserved_ports)  # inside the default ephemeral range
    claims = {(claim.port, claim.owner) for claim in host.listeners}
    assert {(9090, PROMETHEUS_CONTAINER), (9113, LB_CONTAINER)} <= claims


def test_nginx_serves_its_connection_count_on_loopback_only() -> None:
    config, plan = planned(metrics="true", lbMetricsPort="9200")
    conf = render_nginx_conf(nginx_settings(config, plan))
    http = conf[conf.index("http {") : conf.index("stream {")]
    assert "listen 127.0.0.1:9200;" in http
    assert http.count("listen ") == 1
    assert "nginx_connections_active $connections_active" in http


@pytest.mark.parametrize(
    ("keys", "key", "allowed"),
    [
        ({"metricsPort": "9113"}, "lbMetricsPort = 9113", "a port other than metricsPort"),
        ({"lbPort": "9090"}, "lbPort = 9090", "a port other than metricsPort (9090) and lbMetricsPort"),
        ({"metricsPort": "62002"}, "dashboardPortBase = 62001", "already taken by emqx-cluster:metricsPort = 62002"),
        ({"metricsRetention": "forever"}, "metricsRetention = 'forever'", "a positive Prometheus duration"),
        ({"metricsRetentionSize": "2G"}, "metricsRetentionSize = '2G'", "a positive size such as 512MB"),
        ({"metricsScrapeInterval": "0s"}, "metricsScrapeInterval = '0s'", "a positive Prometheus duration"),
        ({"metricsScrapeInterval": "500ms"}, "metricsScrapeInterval = '500ms'", "1s or more"),
        ({"alertConnectionsShare": "1.5"}, "alertConnectionsShare = '1.5'", "a number above 0 and at most 1"),
        ({"alertAuthFailuresPerMinute": "0"}, "alertAuthFailuresPerMinute = '0'", "a number above 0"),
        ({"metricsListenAddress": "example.org"}, "metricsListenAddress = 'example.org'", "allowed"),
    ],
)
def test_bad_metrics_keys_are_refused_naming_key_value_and_what_is_allowed(
    keys: dict[str, str], key: str, allowed: str
) -> None:
    message = refusal(metrics="true", **keys)
    line = next((line for line in message.splitlines() if key in line), message)
    assert allowed in line, message


@pytest.fixture(scope="module")
def several_hosts() -> tuple:  # type: ignore[type-arg]
    return planned(metrics="true", hosts=THREE_HOSTS, metricsScrapeInterval="5s")


def test_each_hosts_prometheus_scrapes_its_own_nodes_its_nginx_and_itself(several_hosts: tuple) -> None:  # type: ignore[type-arg]
    config, plan = several_hosts
    for host in plan.hosts:
        document = yaml.safe_load(render_prometheus_config(prometheus_settings(config, host)))
        assert document["global"]["external_labels"] == {"emqx_host": host.label}
        assert document["global"]["scrape_interval"] == "5s"
        jobs = {job["job_name"]: job for job in document["scrape_configs"]}
        emqx = jobs["emqx"]
        assert emqx["metrics_path"] == "/api/v5/prometheus/stats"
        assert [(group["targets"], group["labels"]["node"]) for group in emqx["static_configs"]] == [
            ([f"127.0.0.1:{node.ports.dashboard}"], node.node_name) for node in host.nodes
        ]
        assert jobs["nginx"]["static_configs"] == [{"targets": ["127.0.0.1:9113"]}]
        assert jobs["prometheus"]["static_configs"] == [{"targets": ["127.0.0.1:9090"]}]


def test_prometheus_listens_on_loopback_unless_the_key_opens_it_to_the_admin_networks() -> None:
    config, plan = planned(metrics="true")
    assert "--web.listen-address=127.0.0.1:9090" in prometheus_settings(config, plan.hosts[0]).arguments
    message = refusal(metrics="true", metricsListenAddress="0.0.0.0")
    assert "emqx-cluster:metricsListenAddress = '0.0.0.0': allowed: a loopback address, or adminNetworks" in message
    config, plan = planned(
        metrics="true", hosts=THREE_HOSTS, adminNetworks='["192.0.2.0/24"]', metricsListenAddress="0.0.0.0"
    )
    settings = prometheus_settings(config, plan.hosts[0])
    assert "--web.listen-address=0.0.0.0:9090" in settings.arguments
    assert settings.self_endpoint == "127.0.0.1:9090"
    refused = refusal(
        metrics="true",
        hosts=THREE_HOSTS,
        adminNetworks='["192.0.2.0/24"]',
        metricsListenAddress="0.0.0.0",
        manageFirewall="false",
    )
    assert "with manageFirewall: true" in refused


def test_metrics_keys_without_metrics_are_refused_rather_than_ignored() -> None:
    message = refusal(metricsListenAddress="0.0.0.0", metricsRetention="30d")
    assert "emqx-cluster:metricsListenAddress, metricsRetention set while metrics = false" in message


def test_alerts_go_to_the_declared_alertmanagers() -> None:
    config, plan = planned(metrics="true", metricsAlertmanagers='["10.0.0.5:9093", "am.example.net:9093"]')
    document = yaml.safe_load(render_prometheus_config(prometheus_settings(config, plan.hosts[0])))
    assert document["alerting"] == {
        "alertmanagers": [{"static_configs": [{"targets": ["10.0.0.5:9093", "am.example.net:9093"]}]}]
    }
    config, plan = planned(metrics="true")
    assert "alerting" not in yaml.safe_load(render_prometheus_config(prometheus_settings(config, plan.hosts[0])))
    assert "host:port" in refusal(metrics="true", metricsAlertmanagers='["http://am:9093"]')


def test_the_rendered_config_is_valid_for_promtool(several_hosts: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    config, plan = several_hosts
    rules = tmp_path / "alert-rules.yml"
    rules.write_text("groups: []\n")
    path = tmp_path / "prometheus.yml"
    path.write_text(render_prometheus_config(prometheus_settings(config, plan.hosts[0]), str(rules)))
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool missing: scripts/install-test-deps installs Debian's prometheus"
    checked = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
