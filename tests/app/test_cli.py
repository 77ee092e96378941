"""``sustainbot token`` and the start-up checks of ``sustainbot serve``."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from sustainbot.cli import main
from tests.support.app import SECRET


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in (
        "SUSTAINBOT_JWT_SECRET",
        "SUSTAINBOT_JWT_PUBLIC_KEY",
        "SUSTAINBOT_JWT_PRIVATE_KEY",
        "SUSTAINBOT_JWT_ISSUER",
        "SUSTAINBOT_JWT_AUDIENCE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JSON_LOG_PATH", str(tmp_path / "events.jsonl"))
    return monkeypatch


def test_token_carries_documented_claims(env, capsys: pytest.CaptureFixture[str]) -> None:
    """The printed token is HS256-signed with the secret and carries sub, name, role, iat, exp."""
    env.setenv("SUSTAINBOT_JWT_SECRET", SECRET)
    env.setenv("SUSTAINBOT_JWT_ISSUER", "https://issuer.example")
    assert main(["token", "--actor", "Grace Hopper", "--role", "analyst", "--ttl", "120"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], issuer="https://issuer.example")
    assert (claims["sub"], claims["name"], claims["role"]) == (
        "Grace Hopper",
        "Grace Hopper",
        "analyst",
    )
    assert claims["exp"] - claims["iat"] == 120


def test_token_without_secret_explains_what_to_set(env, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a key, token exits 2 and says which variable to set."""
    assert main(["token", "--actor", "x", "--role", "admin"]) == 2
    assert "SUSTAINBOT_JWT_SECRET" in capsys.readouterr().err


def test_token_with_unknown_role_refused(env, capsys: pytest.CaptureFixture[str]) -> None:
    """A role outside the four is refused by the command line, before any token is made."""
    env.setenv("SUSTAINBOT_JWT_SECRET", SECRET)
    with pytest.raises(SystemExit) as caught:
        main(["token", "--actor", "x", "--role", "root"])
    assert caught.value.code == 2
    assert capsys.readouterr().out == ""


def test_token_with_non_positive_ttl_refused(env, capsys: pytest.CaptureFixture[str]) -> None:
    """A token that would be born expired is refused with a clear message."""
    env.setenv("SUSTAINBOT_JWT_SECRET", SECRET)
    assert main(["token", "--actor", "x", "--role", "admin", "--ttl", "0"]) == 2
    assert "ttl" in capsys.readouterr().err


def test_serve_with_invalid_setting_names_variable(env, capsys: pytest.CaptureFixture[str]) -> None:
    """serve with a too-short secret exits 2 naming SUSTAINBOT_JWT_SECRET, binding nothing."""
    env.setenv("SUSTAINBOT_JWT_SECRET", "short")
    assert main(["serve", "--port", "0"]) == 2
    assert "SUSTAINBOT_JWT_SECRET" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_serve_with_bad_port_is_a_usage_error_not_a_traceback(
    env, capsys: pytest.CaptureFixture[str], port
) -> None:
    """serve with a port outside 0-65535 exits 2 with a usage message before binding anything."""
    env.setenv("SUSTAINBOT_JWT_SECRET", SECRET)
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--port", port])
    assert exited.value.code == 2
    assert "not a port number" in capsys.readouterr().err
