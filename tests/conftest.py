"""Shared test configuration.

In CI (CI=true) a skipped test is a failure: every real component the suite needs (prometheus,
promtool, logrotate, moto) is installed there, so a skip can only mean a missing install step.
"""

from __future__ import annotations

import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (
            f"skipped in CI, where every real component must be present: {report.longrepr}"
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A skip raised while collecting a module never reaches makereport above; catch it here.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if os.environ.get("CI") == "true" and skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter is not None:
            reporter.write_line(f"CI: {len(skipped)} skipped test(s) count as failures", red=True)
