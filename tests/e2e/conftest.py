"""Fixtures of the e2e tier: one e2e host per session, with the stand-in images built into it.

The tier needs root, docker.io (dockerd), debootstrap, iproute2, openssh-server and sudo
(`scripts/e2e-host deps` installs them); without them every e2e test is skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.e2e.host import E2eHost, e2e_host, missing_requirements
from tests.support.e2e.images import StandInImages, ensure_images
from tests.support.e2e.pulumi_cli import toolchain_bin


@pytest.fixture(scope="session")
def e2e_machine() -> None:
    """Skips with one clear reason where an e2e host cannot run."""
    problems = missing_requirements()
    if problems:
        pytest.skip("e2e host unavailable (run scripts/e2e-host deps as root): " + "; ".join(problems))


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
def standin_images(e2e_host_session: E2eHost) -> StandInImages:
    """`nginx:1.27`, `emqx/emqx:5.8.6` and `emqx/emqx:5.8.7` stand-ins in the host's engine."""
    return ensure_images(e2e_host_session)


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    """The Pulumi CLI and providers built from Go modules (scripts/e2e-toolchain)."""
    found = toolchain_bin()
    if found is None:
        pytest.skip("e2e toolchain not built: run scripts/e2e-toolchain (Pulumi CLI and providers from Go modules)")
    return found
