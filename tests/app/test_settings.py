"""Settings come from the environment once; a bad value fails at start, naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sustainbot.settings import DEFAULT_JSON_LOG_PATH, Settings, SettingsError
from tests.support.app import SECRET


def test_defaults_without_environment() -> None:
    """With nothing set, the log goes to ./logs/sustainbot.jsonl and no key is configured."""
    settings = Settings.from_env({})
    assert settings.json_log_path == Path(DEFAULT_JSON_LOG_PATH)
    assert settings.jwt_algorithm is None


def test_short_secret_rejected_naming_variable() -> None:
    """A secret too short for HS256 is refused with an error naming SUSTAINBOT_JWT_SECRET."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"SUSTAINBOT_JWT_SECRET": "short"})
    assert caught.value.variable == "SUSTAINBOT_JWT_SECRET"


def test_secret_and_public_key_together_rejected(tmp_path: Path) -> None:
    """Configuring both HS256 and RS256 keys is refused, keeping one pinned algorithm."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"SUSTAINBOT_JWT_SECRET": SECRET, "SUSTAINBOT_JWT_PUBLIC_KEY": "x"})
    assert caught.value.variable == "SUSTAINBOT_JWT_PUBLIC_KEY"


def test_missing_public_key_file_named_in_error(tmp_path: Path) -> None:
    """A public key path that does not exist fails naming the variable and the file."""
    missing = tmp_path / "nope.pem"
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"SUSTAINBOT_JWT_PUBLIC_KEY": str(missing)})
    assert "SUSTAINBOT_JWT_PUBLIC_KEY" in str(caught.value) and str(missing) in str(caught.value)


def test_non_rsa_key_rejected(tmp_path: Path) -> None:
    """An EC key where an RSA key is expected is refused, so RS256 is the only algorithm."""
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    path = tmp_path / "ec.pem"
    path.write_bytes(pem)
    with pytest.raises(SettingsError, match="RSA"):
        Settings.from_env({"SUSTAINBOT_JWT_PUBLIC_KEY": str(path)})


def test_secret_not_in_repr() -> None:
    """Printing the settings never shows the secret."""
    settings = Settings.from_env({"SUSTAINBOT_JWT_SECRET": SECRET, "JSON_LOG_PATH": "/x/y.jsonl"})
    assert SECRET not in repr(settings)
    assert settings.json_log_path == Path("/x/y.jsonl") and settings.jwt_algorithm == "HS256"
