"""The ceiling through the whole program: a stack output per host, and expectedConnections above
it refused before any resource is declared."""

from __future__ import annotations

import pulumi
import pytest

from tests.support.program import MOCK_MEMORY, ProgramRun, run_program
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
