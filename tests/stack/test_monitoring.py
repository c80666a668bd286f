"""Metrics through the whole program: nothing without the key; with it, each host's Prometheus
(its data dir, its image, its container on loopback) scraping that host's nodes and Nginx, its
rules measured against the host's ceiling with the memory bound, and the `metrics` output."""

from __future__ import annotations

import json

import pytest
import yaml

from components.names import PROMETHEUS_CONTAINER
from components.render.access import API_KEY_NAME
from components.render.prometheus import CONFIG_PATH, RULES_PATH, STATS_SECRET_PATH
from tests.stack.test_several_hosts import FAKE_KEY, HOSTS, several_hosts_config
from tests.support.program import MOCK_MEMORY, Deployments, ProgramRun, Recorded, run_program
from tests.support.stackfiles import StackCase
from tests.support.views import is_secret_at, lb_container, uploads

PROMETHEUS = "docker:index/container:Container"


def prometheus_containers(run: ProgramRun) -> list[Recorded]:
    return [r for r in run.of_type(PROMETHEUS) if r.inputs.get("name") == PROMETHEUS_CONTAINER]


def test_without_the_key_nothing_is_added(deployed: ProgramRun) -> None:
    assert prometheus_containers(deployed) == []
    assert not [r for r in deployed.resources if "prometheus" in r.name or "monitoring" in r.name]
    assert deployed.outputs["metrics"] is None
    nginx_conf = uploads(lb_container(deployed))["/etc/nginx/nginx.conf"][1]["content"]
    assert "http {" not in nginx_conf


@pytest.fixture
def monitored(case: StackCase, deployments: Deployments) -> ProgramRun:
    return deployments.run(case.with_config(metrics=True))


def test_with_the_key_the_host_runs_prometheus_on_loopback_with_its_data_kept(
    monitored: ProgramRun, case: StackCase
) -> None:
    [container] = prometheus_containers(monitored)
    inputs = container.inputs
    assert inputs["networkMode"] == "host" and inputs["restart"] == "always"
    assert "--web.listen-address=127.0.0.1:9090" in inputs["command"]
    data_dir = f"{case.parsed().data_dir}/prometheus/data"
    assert [(v["hostPath"], v["containerPath"]) for v in inputs["volumes"]] == [(data_dir, "/prometheus")]
    assert inputs["user"] == "65534:65534"
    dirs = monitored.named("emqx-prometheus-dirs")
    assert dirs.urn in container.dependencies
    assert container.delete_before_replace  # its port is fixed: the old one goes first
    files = uploads(container)
    assert set(files) == {CONFIG_PATH, RULES_PATH}
    assert all(upload["permissions"] == "0644" for _, upload in files.values())


def test_it_scrapes_every_node_and_nginx_whose_conf_gets_the_metrics_listener(
    monitored: ProgramRun, case: StackCase
) -> None:
    [container] = prometheus_containers(monitored)
    config = yaml.safe_load(uploads(container)[CONFIG_PATH][1]["content"])
    emqx = next(job for job in config["scrape_configs"] if job["job_name"] == "emqx")
    assert [group["labels"]["node"] for group in emqx["static_configs"]] == [n.node_name for n in case.plan().nodes]
    nginx_conf = uploads(lb_container(monitored))["/etc/nginx/nginx.conf"][1]["content"]
    assert "listen 127.0.0.1:9113;" in nginx_conf
    [metrics] = monitored.outputs["metrics"].values()
    assert metrics["prometheus"] == "http://127.0.0.1:9090"
    assert metrics["lbMetrics"] == "http://127.0.0.1:9113/metrics"


def test_the_rules_measure_against_the_ceiling_with_the_hosts_memory(
    deployments: Deployments, stacks: dict[str, StackCase]
) -> None:
    """With a small MemTotal (the mock's preflight) memory decides the ceiling: the rule says so."""
    run = deployments.run(stacks["dev"].with_config(metrics=True))
    [capacity] = run.outputs["capacity"].values()
    [container] = prometheus_containers(run)
    rules = yaml.safe_load(uploads(container)[RULES_PATH][1]["content"])["groups"][0]["rules"]
    near = next(rule for rule in rules if rule["alert"] == "LoadBalancerNearCeiling")
    assert near["expr"] == f"nginx_connections_active - 1 > {int(capacity['ceiling'] * 0.8)}"
    assert (
        f"ceiling of {capacity['ceiling']} connections ({capacity['decidedBy']} decide"
        in near["annotations"]["summary"]
    )
    assert capacity["bounds"]["memory"] == MOCK_MEMORY[0]


def test_over_several_hosts_each_host_has_its_own_prometheus_for_its_own_nodes() -> None:
    run = run_program(several_hosts_config(metrics=True), secrets={"sshPrivateKey": FAKE_KEY}, stack="dev")
    containers = {r.name: r for r in prometheus_containers(run)}
    assert set(containers) == {f"emqx-{name}-prometheus" for name in HOSTS}
    for name, address in HOSTS.items():
        config = yaml.safe_load(uploads(containers[f"emqx-{name}-prometheus"])[CONFIG_PATH][1]["content"])
        emqx = next(job for job in config["scrape_configs"] if job["job_name"] == "emqx")
        assert all(group["labels"]["node"].endswith(f"@{address}") for group in emqx["static_configs"])
        assert len(emqx["static_configs"]) == 2
    assert set(run.outputs["metrics"]) == set(HOSTS)  # by host label


def test_with_admin_networks_the_stats_ask_for_the_api_key_which_prometheus_reads_from_a_private_file() -> None:
    """adminNetworks turns on EMQX's basic auth for the stats: Prometheus sends the API key, its
    secret in a file only the root group reads (Prometheus runs in it), a secret in state."""
    config = several_hosts_config(metrics=True, adminNetworks=["192.0.2.0/24"])
    run = run_program(config, secrets={"sshPrivateKey": FAKE_KEY}, stack="dev")
    for container in prometheus_containers(run):
        scrape = yaml.safe_load(uploads(container)[CONFIG_PATH][1]["content"])
        emqx = next(job for job in scrape["scrape_configs"] if job["job_name"] == "emqx")
        assert emqx["basic_auth"] == {"username": API_KEY_NAME, "password_file": STATS_SECRET_PATH}
        index, secret = uploads(container)[STATS_SECRET_PATH]
        assert secret["permissions"] == "0440" and is_secret_at(container, ("uploads", index, "content"))
        assert container.inputs["groupAdds"] == ["0"]


def test_without_admin_networks_no_credentials_are_handed_to_prometheus(monitored: ProgramRun) -> None:
    [container] = prometheus_containers(monitored)
    assert STATS_SECRET_PATH not in uploads(container)
    assert "groupAdds" not in container.inputs
    scrape = yaml.safe_load(uploads(container)[CONFIG_PATH][1]["content"])
    assert all("basic_auth" not in job for job in scrape["scrape_configs"])


def test_opened_beyond_loopback_prometheus_is_firewalled_to_the_admin_networks() -> None:
    config = several_hosts_config(metrics=True, adminNetworks=["192.0.2.0/24"], metricsListenAddress="0.0.0.0")
    run = run_program(config, secrets={"sshPrivateKey": FAKE_KEY}, stack="dev")
    loopback = run_program(
        several_hosts_config(metrics=True, adminNetworks=["192.0.2.0/24"]),
        secrets={"sshPrivateKey": FAKE_KEY},
        stack="dev",
    )
    for name in HOSTS:
        opened = json.dumps(run.named(f"emqx-{name}-firewall-rules").inputs)
        assert "9090" in opened and "192.0.2.0/24" in opened, name
        assert "9090" not in json.dumps(loopback.named(f"emqx-{name}-firewall-rules").inputs), name
