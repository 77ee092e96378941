"""Shared test configuration, and the fixtures every test directory may use.

In CI (CI=true) a skipped test is a failure: every real component the suite needs (prometheus,
promtool, logrotate, moto) is installed there, so a skip can only mean a missing install step.

The fixtures are the common helpers of ``tests.support`` in the form pytest injects; the plain
functions stay importable from there for code outside a test function.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from hypothesis import settings

from tests.support import contract, ports, processes

# No per-example time limit: a timing belongs in benchmarks/, and on a loaded machine (CI, or two
# cores shared) Hypothesis's 200 ms default failed examples that are only slow, not wrong.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")


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


@pytest.fixture
def free_port() -> int:
    """A loopback port free right now, for a server that cannot report the one it bound."""
    return ports.free_port()


@pytest.fixture
def contract_line() -> Callable[..., bytes]:
    """The builder of event contract lines: ``contract_line(event, timestamp, **fields)``."""
    return contract.contract_line


# Session-scoped so module-scoped fixtures can use them; a missing program skips every test
# needing it at setup, before the test has opened anything.
@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    """The path of a real ``prometheus``; skips naming the Debian package where it is missing."""
    return processes.binary("prometheus")


@pytest.fixture(scope="session")
def promtool_binary() -> str:
    """The path of a real ``promtool``; skips naming the Debian package where it is missing."""
    return processes.binary("promtool")
