"""Basic auth under a flood of wrong tries: bounded hash checks, and no timing that names users."""

from __future__ import annotations

import base64
import statistics
import time
from pathlib import Path

import bcrypt

from log_exporter.prometheus.webconfig import (
    CHECK_WAIT_SECONDS,
    MAX_CONCURRENT_CHECKS,
    parse_web_config,
)


def _header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _config(cost: int = 4):  # type: ignore[no-untyped-def]
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=cost)).decode()
    return parse_web_config(
        {"basic_auth_users": {"alice": hashed}}, source="web.yml", base_dir=Path(".")
    )


def _seconds(check, header: str) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(5):
        started = time.perf_counter()
        assert not check(header)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def test_unknown_user_costs_what_a_wrong_password_costs() -> None:
    """With users hashed at cost 4, an unknown name is checked at cost 4 too, not at cost 10."""
    config = _config(cost=4)
    assert config.dummy_hash.startswith(b"$2b$04$")
    wrong_password = _seconds(config.authorized, _header("alice", "wrong"))
    unknown_user = _seconds(config.authorized, _header("mallory", "wrong"))
    # Cost 10 is 64 times the work of cost 4; equal costs differ by noise only.
    assert unknown_user < 8 * wrong_password + 0.005, (unknown_user, wrong_password)


def test_hash_checks_beyond_the_limit_are_refused_and_cached_successes_still_pass() -> None:
    """With every hash slot busy a try is refused after a bounded wait; a cached login passes."""
    config = _config()
    good = _header("alice", "right")
    assert config.authorized(good)  # cached from now on
    for _ in range(MAX_CONCURRENT_CHECKS):
        assert config.checks.acquire(timeout=1)
    try:
        started = time.monotonic()
        assert not config.authorized(_header("alice", "right-but-uncached"))
        assert time.monotonic() - started < CHECK_WAIT_SECONDS + 2
        assert config.authorized(good)
    finally:
        for _ in range(MAX_CONCURRENT_CHECKS):
            config.checks.release()
    assert not config.authorized(_header("alice", "wrong"))
