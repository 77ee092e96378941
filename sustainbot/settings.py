"""Service settings, read from the environment once, at the edge (the CLI or a WSGI entry point)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DEFAULT_JSON_LOG_PATH = "./logs/sustainbot.jsonl"
DEFAULT_PHASE = "production"
DEFAULT_COMPLIANCE_SPEC = "aim-drag-v1"
# HS256 keys shorter than the hash output are brute-forceable; PyJWT warns below this too.
MIN_SECRET_BYTES = 32
# RS256 keys below 2048 bits are considered breakable.
MIN_RSA_BITS = 2048


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable (and file, if any)."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Settings:
    json_log_path: Path = Path(DEFAULT_JSON_LOG_PATH)
    # Secrets stay out of repr so a logged Settings never leaks them.
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_public_key: str | None = field(default=None, repr=False)
    jwt_private_key: str | None = field(default=None, repr=False)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    phase: str = DEFAULT_PHASE
    compliance_spec: str = DEFAULT_COMPLIANCE_SPEC

    @property
    def jwt_algorithm(self) -> str | None:
        """The one algorithm tokens are signed and verified with, or None if no key is set."""
        if self.jwt_secret is not None:
            return "HS256"
        if self.jwt_public_key is not None or self.jwt_private_key is not None:
            return "RS256"
        return None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping; raise SettingsError naming the variable."""
        secret = _optional(environ, "SUSTAINBOT_JWT_SECRET")
        public_pem = _optional(environ, "SUSTAINBOT_JWT_PUBLIC_KEY")
        private_pem = _optional(environ, "SUSTAINBOT_JWT_PRIVATE_KEY")
        if secret is not None:
            if len(secret.encode()) < MIN_SECRET_BYTES:
                raise SettingsError(
                    "SUSTAINBOT_JWT_SECRET", f"must be at least {MIN_SECRET_BYTES} bytes long"
                )
            for name, value in (
                ("SUSTAINBOT_JWT_PUBLIC_KEY", public_pem),
                ("SUSTAINBOT_JWT_PRIVATE_KEY", private_pem),
            ):
                if value is not None:
                    # Two verification keys would mean two algorithms: exactly what pinning avoids.
                    raise SettingsError(
                        name, "set either SUSTAINBOT_JWT_SECRET (HS256) or RS256 keys, not both"
                    )
        public_key = (
            _load_pem("SUSTAINBOT_JWT_PUBLIC_KEY", public_pem, private=False)
            if public_pem is not None
            else None
        )
        private_key = (
            _load_pem("SUSTAINBOT_JWT_PRIVATE_KEY", private_pem, private=True)
            if private_pem is not None
            else None
        )
        log_path = _optional(environ, "JSON_LOG_PATH") or DEFAULT_JSON_LOG_PATH
        return cls(
            json_log_path=Path(log_path),
            jwt_secret=secret,
            jwt_public_key=public_key,
            jwt_private_key=private_key,
            jwt_issuer=_optional(environ, "SUSTAINBOT_JWT_ISSUER"),
            jwt_audience=_optional(environ, "SUSTAINBOT_JWT_AUDIENCE"),
            phase=_label(environ, "SUSTAINBOT_PHASE", DEFAULT_PHASE),
            compliance_spec=_label(environ, "SUSTAINBOT_COMPLIANCE_SPEC", DEFAULT_COMPLIANCE_SPEC),
        )


def _optional(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value


def _label(environ: Mapping[str, str], name: str, default: str) -> str:
    value = _optional(environ, name) or default
    # These become metric label values via app.started, so keep them short and printable.
    if len(value) > 64 or not value.isprintable():
        raise SettingsError(name, "must be at most 64 printable characters")
    return value


def _load_pem(variable: str, value: str, *, private: bool) -> str:
    """Accept PEM text or a path to a PEM file; return the PEM text after checking it parses."""
    where = variable
    if value.lstrip().startswith("-----BEGIN"):
        pem = value
    else:
        path = Path(value).expanduser()
        where = f"{variable} (file {path})"
        try:
            pem = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(where, f"cannot read PEM file: {exc}") from exc
    try:
        key = (
            serialization.load_pem_private_key(pem.encode(), password=None)
            if private
            else serialization.load_pem_public_key(pem.encode())
        )
    except (ValueError, TypeError) as exc:
        kind = "private" if private else "public"
        raise SettingsError(where, f"not a PEM-encoded {kind} key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        raise SettingsError(where, "must be an RSA key (tokens are RS256)")
    if key.key_size < MIN_RSA_BITS:
        raise SettingsError(where, f"RSA key must be at least {MIN_RSA_BITS} bits")
    return pem


def load_settings() -> Settings:
    """The one place the process environment is read."""
    return Settings.from_env(os.environ)
