"""A failed `pulumi up` tells the operator what is wrong in its first lines after the failing
resource's name: the host script's own message, naming the host or node and the key or action
that fixes it; never the script's text, never a Python traceback.

One dev-like stack on the e2e host fails three ways, as a user would meet them: a sysctl value
the kernel refuses, a nofile limit above the Docker daemon's (preflight), and a node that cannot
join because the seed is down.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.e2e.cluster_probe import health
from tests.support.e2e.host import E2eHost
from tests.support.e2e.images import E2eImages, ensure_images
from tests.support.e2e.pulumi_cli import PulumiProject, Result
from tests.support.e2e.stacks import dev_like, host_paths, probe_secrets
from tests.support.ports import wait_until

pytestmark = pytest.mark.e2e

# What a script's text or a Python traceback would show; none of it belongs in a failure.
NOISE = re.compile(r"Traceback|_InactiveRpcError|RunError|case \"\$\{1:-\}\" in|set -eu|'\"'\"'|<<'EMQX")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("failing-stack")


@pytest.fixture(scope="module")
def project(bin_dir: Path, e2e_host_session: E2eHost, e2e_images: E2eImages, root: Path) -> Iterator[PulumiProject]:
    ensure_images(e2e_host_session)
    project = PulumiProject.create(root / "project", bin_dir, stack="failing", netns=e2e_host_session.netns_path)
    project.init_stack(dev_like(e2e_host_session, root, nodes=1, waves=1, joinTimeoutSeconds=10), probe_secrets())
    yield project
    # The clients' delete scripts call emqx1's REST API, waiting joinTimeoutSeconds (10 s here)
    # for it: the node test 3 stopped is started and awaited first.
    try:
        if health(e2e_host_session, "emqx1")["emqx1"] != "missing":
            e2e_host_session.docker("start", "emqx1", check=False)
            wait_until(
                lambda: health(e2e_host_session, "emqx1")["emqx1"] == "healthy",
                "emqx1 healthy",
                timeout=120,
                interval=1,
            )
    finally:
        if project.resources():
            project.destroy()


def failed_up(project: PulumiProject) -> Result:
    result = project.run("up", "--stack", project.stack, "--yes", "--skip-preview", check=False, timeout=900)
    assert result.returncode != 0, result.output
    return result


def after_resource(output: str, name: str, lines: int = 10) -> str:
    """The `lines` lines that follow the first diagnostic line naming resource `name`."""
    text = output.splitlines()
    start = next(i for i, line in enumerate(text) if re.search(rf"\({re.escape(name)}\):$", line.strip()))
    return "\n".join(text[start + 1 : start + 1 + lines])


def assert_reads_well(result: Result, resource: str, *expected: str) -> None:
    first_lines = after_resource(result.output, resource)
    for text in expected:
        assert text in first_lines, (
            f"{text!r} not in the 10 lines after {resource}:\n{first_lines}\n---\n{result.output}"
        )
    assert not NOISE.search(result.output), result.output


def fails_with(project: PulumiProject, root: Path, key: str, value: Any, resource: str, *expected: str) -> None:
    """`pulumi up` with `key` set to `value` fails at `resource` reading `expected`; the key is
    then put back to the stack's own value."""
    project.set_config({key: value})
    assert_reads_well(failed_up(project), resource, *expected)
    project.set_config({key: host_paths(root)[key]})


def test_1_a_sysctl_value_the_kernel_refuses_names_the_key(project: PulumiProject, root: Path) -> None:
    refused = {**host_paths(root)["sysctls"], "net.ipv4.tcp_fin_timeout": "99999999999999999999"}
    fails_with(
        project,
        root,
        "sysctls",
        refused,
        "emqx-host-sysctls",
        'running "sh -s create"',
        "sysctl net.ipv4.tcp_fin_timeout = '99999999999999999999' refused by the kernel",
        "in emqx-cluster:sysctls",
    )


def test_2_a_nofile_limit_above_the_daemon_fails_preflight_with_the_key(project: PulumiProject, root: Path) -> None:
    fails_with(
        project,
        root,
        "brokerNofileLimit",
        1048576,
        "emqx-preflight-check",
        'running "sh -s update"',
        "nofile limit 1048576 of the brokers exceeds the hard limit of the Docker daemon",
        "emqx-cluster:brokerNofileLimit",
    )


def test_3_a_node_that_cannot_reach_the_seed_says_so(project: PulumiProject, e2e_host_session: E2eHost) -> None:
    project.up()
    e2e_host_session.docker("stop", "emqx1")  # the seed is down: a stop is not restarted
    project.set_config({"nodes": 2})
    result = failed_up(project)
    assert_reads_well(
        result,
        "emqx2-membership",
        'running "sh -s create"',
        "emqx2@127.0.0.1 (container emqx2 on ",
        "could not join emqx1@127.0.0.1",
        "emqx-cluster:joinTimeoutSeconds",
    )
