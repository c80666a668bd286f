"""Debian's Prometheus running what the program renders for one host: its command line, scrape
config and alert rules (components/render/prometheus.py), the two container paths pointed at a
directory of the caller's. Used by tests/integration/test_metrics.py and bench/metrics_scrape.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.capacity import cluster_capacity
from components.config import StackConfig
from components.plan import ClusterPlan, HostPlan
from components.render.prometheus import (
    CONFIG_PATH,
    DATA_PATH,
    alert_thresholds,
    prometheus_settings,
    render_alert_rules,
    render_prometheus_config,
)
from tests.support.lb_stack import wait_for_listener
from tests.support.ports import wait_until


def missing_prometheus() -> list[str]:
    return [] if shutil.which("prometheus") else ["prometheus (Debian package)"]


@dataclass(frozen=True)
class RunningPrometheus:
    url: str
    pid: int

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as response:
                return bool(response.status == 200)
        except urllib.error.URLError:  # HTTPError (503 while starting) included
            return False

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
            return json.load(response)["data"]

    def value(self, expression: str) -> float:
        """The first sample of an instant query, NaN when there is none."""
        result = self.api(f"/api/v1/query?query={urllib.parse.quote(expression)}")["result"]
        return float(result[0]["value"][1]) if result else float("nan")

    def targets(self) -> dict[str, str]:
        return {target["scrapeUrl"]: target["health"] for target in self.api("/api/v1/targets")["activeTargets"]}

    def firing(self) -> set[str]:
        alerts = self.api("/api/v1/alerts")["alerts"]
        return {alert["labels"]["alertname"] for alert in alerts if alert["state"] == "firing"}


@contextmanager
def running_prometheus(
    config: StackConfig, plan: ClusterPlan, host: HostPlan, directory: Path
) -> Iterator[RunningPrometheus]:
    """Prometheus for `host`, its rules measured against the plan's ceiling (no memory bound: no
    preflight runs here), its files and data in `directory`; stopped on exit."""
    directory.mkdir(parents=True, exist_ok=True)
    rules = directory / "alert-rules.yml"
    capacity = cluster_capacity(config, plan)[host.label]
    rules.write_text(render_alert_rules(host.label, alert_thresholds(config, plan, host, capacity)))
    settings = prometheus_settings(config, host)
    config_file = directory / "prometheus.yml"
    config_file.write_text(render_prometheus_config(settings, str(rules)))
    # The program's command line, its two container paths pointed at this directory.
    paths = {
        f"--config.file={CONFIG_PATH}": f"--config.file={config_file}",
        f"--storage.tsdb.path={DATA_PATH}": f"--storage.tsdb.path={directory / 'data'}",
    }
    arguments = [paths.get(argument, argument) for argument in settings.arguments]
    assert len(set(arguments) - set(settings.arguments)) == len(paths), settings.arguments
    log = directory / "prometheus.log"
    with log.open("wb") as output:
        process = subprocess.Popen(["prometheus", *arguments], stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for_listener("127.0.0.1", settings.port, process, "prometheus", log)
        running = RunningPrometheus(f"http://{settings.self_endpoint}", process.pid)
        # Listening is not serving: the API answers 503 until the storage is open (`/-/ready`).
        wait_until(running.ready, "prometheus to be ready (/-/ready)", timeout=60, interval=0.2)
        yield running
    finally:
        process.terminate()
        process.wait(30)
