"""Shared by every tier: with EMQX_TESTS_NO_SKIPS=1 (scripts/test sets it), a skipped test fails
the run. A test skipped on the machine CI runs on is a test that does not exist: the machine
must install what the test needs (scripts/install-test-deps), or the test must go."""

from __future__ import annotations

import os

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("EMQX_TESTS_NO_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and reporter is not None:
        reasons = sorted(
            {
                str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
                for report in skipped
            }
        )
        reporter.write_line(f"{len(skipped)} test(s) skipped with EMQX_TESTS_NO_SKIPS=1; install what they need:")
        for reason in reasons:
            reporter.write_line(f"  {reason}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
