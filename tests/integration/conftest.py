"""Registers the support fixtures for every integration test.

Not `pytest_plugins = ["tests.support.fixtures"]`: pytest refuses that in a
conftest below the rootdir ("Defining 'pytest_plugins' in a non-top-level conftest is no
longer supported") as soon as collection starts above this directory (`pytest`,
`pytest tests`).  Importing the fixture functions registers them all the same.
"""

from tests.support.fixtures import fake_docker, netns, sshd_server

__all__ = ["fake_docker", "netns", "sshd_server"]
