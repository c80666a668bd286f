"""Test support for the integration tests: a fake docker CLI, a real sshd, netns, ports.

The fixtures are registered by tests/integration/conftest.py via the `fixtures` plugin.
"""
