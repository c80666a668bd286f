"""The ceiling through the whole program: a stack output per host, and expectedConnections above
it refused before any resource is declared."""

from __future__ import annotations

import pulumi
import pytest

from components.capacity import cluster_capacity
from tests.support.program import MOCK_MEMORY, Deployments, ProgramRun, run_program
from tests.support.stackfiles import StackCase, with_changes


def test_every_host_reports_its_ceiling_and_the_bound_that_decides(deployed: ProgramRun, case: StackCase) -> None:
    [(host, capacity)] = deployed.outputs["capacity"].items()
    assert host == case.plan().hosts[0].label
    assert capacity["ceiling"] == min(capacity["bounds"].values())
    assert capacity["bounds"][capacity["decidedBy"]] == capacity["ceiling"]
    assert capacity["liftedBy"].startswith("emqx-cluster:")


def test_the_memory_bound_is_the_one_the_hosts_preflight_printed(deployed: ProgramRun) -> None:
    [capacity] = deployed.outputs["capacity"].values()
    assert capacity["bounds"]["memory"] == MOCK_MEMORY[0]


def test_preview_shows_the_plans_bounds_and_leaves_the_memory_to_the_host(
    case: StackCase, deployments: Deployments
) -> None:
    """The preflight's reading of MemTotal is unknown in a preview (and whenever its script
    changes): the plan's bounds are shown all the same; memory and the ceiling it may decide wait."""
    [capacity] = deployments.run(case, preview=True).outputs["capacity"].values()
    planned = cluster_capacity(case.parsed(), case.plan())[case.plan().hosts[0].label].bound_connections
    assert {name: value for name, value in capacity["bounds"].items() if name != "memory"} == planned
    assert not isinstance(capacity["bounds"]["memory"], int)
    assert not isinstance(capacity["ceiling"], int)


def test_expected_connections_above_the_ceiling_stop_the_run_before_anything_is_declared(
    stacks: dict[str, StackCase],
) -> None:
    dev = stacks["dev"]
    config = with_changes(dev.config, ipLocalPortRange="40000 40999", expectedConnections=5000)
    run = ProgramRun()
    with pytest.raises(pulumi.RunError) as raised:
        run_program(config, secrets=dev.secrets, stack="dev", into=run)
    assert "emqx-cluster:expectedConnections = 5000: allowed: at most 3000 per host" in str(raised.value)
    assert run.resources == []
