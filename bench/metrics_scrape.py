"""What scraping the nodes costs: Debian's Prometheus running the scrape config the program
renders for one host of 3 and of 30 nodes, each node's stats page as EMQX 5.8.6's (every metric
family emqx_prometheus.erl declares, tests/support/emqx/stats.py), in a network namespace.

Per node and scrape: the page's bytes and samples, the scrape's duration as Prometheus measures
it (`scrape_duration_seconds`, the page served by this process's threads), Prometheus's CPU per
node-scrape and its memory. A benchmark, not a test: it asserts nothing.

    sudo .venv/bin/python -m bench.metrics_scrape              # 3 and 30 nodes, 30 s each
    sudo .venv/bin/python -m bench.metrics_scrape --nodes 3,30,90 --seconds 60
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from components.config_parse import parse_stack_config
from components.plan import plan_cluster
from tests.support.emqx.stats import serving, stats_text
from tests.support.netns import entered, scratch_namespace
from tests.support.ports import wait_until
from tests.support.prometheus import running_prometheus

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(nodes: int, seconds: float, directory: Path) -> dict[str, float]:
    config = parse_stack_config(
        {"tlsMode": "self-signed", "nodes": str(nodes), "metrics": "true", "metricsScrapeInterval": "1s"}
    )
    plan = plan_cluster(config)
    host = plan.hosts[0]
    values = {"emqx_cluster_nodes_running": nodes}
    page = stats_text(values)
    with ExitStack() as stack:
        netns = stack.enter_context(scratch_namespace("emqx-bench"))
        stack.enter_context(entered(netns))
        for node in host.nodes:
            stack.enter_context(serving(node.ports.dashboard, values))
        prometheus = stack.enter_context(running_prometheus(config, plan, host, directory / str(nodes)))
        wait_until(lambda: prometheus.value('count(up{job="emqx"} == 1)') == nodes, "every node scraped", timeout=60)
        cpu_before, started = process_cpu_seconds(prometheus.pid), time.monotonic()
        time.sleep(seconds)
        cpu = process_cpu_seconds(prometheus.pid) - cpu_before
        elapsed = time.monotonic() - started
        return {
            "bytes": len(page.encode()),
            "samples": prometheus.value('avg(scrape_samples_scraped{job="emqx"})'),
            "duration_ms": 1000 * prometheus.value('avg(avg_over_time(scrape_duration_seconds{job="emqx"}[20s]))'),
            "cpu_ms_per_node_scrape": 1000 * cpu / (nodes * elapsed),  # one scrape a second per node
            "cpu_share": cpu / elapsed,
            "rss_mib": rss_mib(prometheus.pid),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=lambda text: [int(n) for n in text.split(",")], default=[3, 30])
    parser.add_argument("--seconds", type=float, default=30, help="measured after every node is scraped")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root: network namespaces (sudo .venv/bin/python -m bench.metrics_scrape)")
    print(f"scrape every 1s, {args.seconds:.0f}s measured; pages served by this process's threads")
    header = f"{'nodes':>5} {'bytes':>7} {'samples':>7} {'scrape ms':>9} {'CPU ms/scrape':>13} {'CPU share':>9} {'RSS MiB':>7}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="metrics-bench-") as work:
        for nodes in args.nodes:
            try:
                row = measure(nodes, args.seconds, Path(work))
            except pytest.skip.Exception as skipped:  # scratch_namespace's way to say "cannot here"
                print(f"cannot run: {skipped.msg}")
                return 1
            print(
                f"{nodes:>5} {row['bytes']:>7.0f} {row['samples']:>7.0f} {row['duration_ms']:>9.2f} "
                f"{row['cpu_ms_per_node_scrape']:>13.3f} {row['cpu_share']:>9.1%} {row['rss_mib']:>7.1f}",
                flush=True,
            )
    print(
        "CPU ms/scrape: Prometheus's CPU (its rules and its own scrape included) per node and scrape; at the "
        "default 15s interval a node costs 1/15 of that each second"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
