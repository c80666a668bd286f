"""pytest plugin exposing the support fixtures: fake_docker, sshd_server, netns.

Imported by tests/integration/conftest.py, so every integration test can
request these fixtures by name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.emqx.fake_docker import FakeDocker
from tests.support.netns import netns
from tests.support.sshd import sshd_server

__all__ = ["fake_docker", "netns", "sshd_server"]


@pytest.fixture
def fake_docker(tmp_path: Path) -> FakeDocker:
    """An empty fake docker world in tmp_path; use `.env()` for the script's environment."""
    return FakeDocker(tmp_path / "fake-docker")
