"""Fixtures of the e2e tier: one e2e host per session, with the e2e images built into it.

The tier needs root, docker.io (dockerd), iproute2, openssh-server, sudo and what
`scripts/install-test-deps` builds first (the Pulumi toolchain, the base rootfs); without them
every e2e test fails at once with the reason and the command that installs it, never skips.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.e2e.host import E2eHost, clean_engine, e2e_host, missing_requirements
from tests.support.e2e.images import E2eImages, ensure_images
from tests.support.e2e.pulumi_cli import toolchain_bin


@pytest.fixture(scope="session")
def e2e_machine() -> None:
    """Fails with one clear reason where an e2e host cannot run."""
    problems = missing_requirements()
    if problems:
        pytest.fail("e2e host unavailable (run scripts/install-test-deps as root): " + "; ".join(problems))


@pytest.fixture(scope="session")
def e2e_host_session(e2e_machine: None) -> Iterator[E2eHost]:
    """A running e2e host (netns + veth + dockerd + sshd), torn down after the session.

    With EMQX_E2E_HOST=<name>, the host of that name (`scripts/e2e-host up --name <name>`) is
    used and left running, for debugging with its engine and logs afterwards.
    """
    existing = os.environ.get("EMQX_E2E_HOST")
    if existing:
        yield E2eHost.load(existing)
        return
    with e2e_host() as host:
        yield host


@pytest.fixture(scope="session")
def e2e_images(e2e_host_session: E2eHost) -> E2eImages:
    """`nginx:1.27`, the real `emqx/emqx:5.8.6` (and as `5.8.7`) and `prom/prometheus` in the host's engine."""
    return ensure_images(e2e_host_session)


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    """The Pulumi CLI and providers built from Go modules (scripts/e2e-toolchain)."""
    found = toolchain_bin()
    if found is None:
        pytest.fail("e2e toolchain not built: run scripts/install-test-deps (Pulumi CLI and providers from Go modules)")
    return found


@pytest.fixture(scope="module", autouse=True)
def clean_session_engine(request: pytest.FixtureRequest) -> None:
    """Each scenario module that uses the session's host starts from a clean engine (no
    container, no image but the cached ones): one that failed half-way, its destroy too, leaves
    nothing for the next to collide with."""
    in_module = [item for item in request.session.items if getattr(item, "module", None) is request.module]
    if any("e2e_host_session" in getattr(item, "fixturenames", ()) for item in in_module):
        clean_engine(request.getfixturevalue("e2e_host_session"))


# Two lanes for `pytest -n 2 --dist loadgroup` (scripts/e2e): each module's scenarios run in
# order in one worker, and each worker has its own hosts and engines. The three-host stack and
# the layout upgrades in one lane, the single-host scenarios in the other: about the same time.
LANES = {"test_several_hosts.py": "hosts-and-layouts", "test_layout_upgrade.py": "hosts-and-layouts"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups into the node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.xdist_group(LANES.get(item.path.name, "single-host")))
