"""The ``--web-config`` file: TLS and basic auth in the Prometheus exporter-toolkit format.

The format is the one every official exporter accepts (``web-config.yml``), so operators can reuse
theirs. The subset supported here::

    tls_server_config:
      cert_file: server.crt          # relative paths are relative to this file's directory
      key_file: server.key
      client_ca_file: ca.crt         # optional: verify client certificates
      client_auth_type: RequireAndVerifyClientCert   # or NoClientCert, VerifyClientCertIfGiven
      min_version: TLS12             # optional: TLS12 or TLS13
    basic_auth_users:
      alice: $2y$10$...              # bcrypt hash, e.g. from `htpasswd -nBC 10 alice`

Anything else is refused at start with the file and field named, rather than silently ignored:
an operator who wrote ``cipher_suites`` expects it to be enforced.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml  # type: ignore[import-untyped]

_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_TOP_KEYS = {"tls_server_config", "basic_auth_users"}
_TLS_KEYS = {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version"}
# Only successful checks are cached, so the cache is bounded by the configured users; the cap is a
# guard should a client cycle through many encodings of the same credentials.
_CACHE_MAX = 256
# Each check of a wrong password costs a bcrypt hash (48 ms of CPU at cost 10, 190 ms at 12): a
# few at a time, so a flood of wrong tries cannot take every core. A try that finds no free slot
# within CHECK_WAIT_SECONDS is refused like a wrong password; cached successes need no slot.
MAX_CONCURRENT_CHECKS = 2
CHECK_WAIT_SECONDS = 1.0


class WebConfigError(Exception):
    """A web config that cannot be used; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class TLSConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str | None = None


@dataclass(slots=True)
class WebConfig:
    """A parsed web config; ``ssl_context()`` and ``authorized()`` are what the server uses."""

    source: str
    tls: TLSConfig | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    # Checked when the user is unknown, so that a wrong user name costs what a wrong password
    # does and the answer time tells no one which names exist: a hash of a random password at
    # the highest cost among the users (set by parse_web_config).
    dummy_hash: bytes = b""
    checks: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(MAX_CONCURRENT_CHECKS)
    )
    _ok: set[bytes] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def auth_required(self) -> bool:
        return bool(self.users)

    def ssl_context(self) -> ssl.SSLContext | None:
        """Build the server-side TLS context, failing with the file and field named."""
        if self.tls is None:
            return None
        tls = self.tls
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _TLS_VERSIONS[tls.min_version or "TLS12"]
        where = f"{self.source}: [tls_server_config]"
        try:
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(
                f"{where} field 'cert_file'/'key_file': cannot load {tls.cert_file} with "
                f"{tls.key_file}: {exc}"
            ) from exc
        if tls.client_ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=str(tls.client_ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise WebConfigError(
                    f"{where} field 'client_ca_file': cannot load {tls.client_ca_file}: {exc}"
                ) from exc
        ctx.verify_mode = _CLIENT_AUTH[tls.client_auth_type]
        return ctx

    def authorized(self, header: str | None) -> bool:
        """True when no users are configured or ``header`` carries valid Basic credentials."""
        if not self.users:
            return True
        if not header:
            return False
        # Keyed by a digest so the cache never holds a password in clear.
        key = hashlib.sha256(header.encode("utf-8", "surrogateescape")).digest()
        with self._lock:
            if key in self._ok:
                return True
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            # ValueError covers binascii.Error, UnicodeDecodeError and non-ASCII header text.
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except ValueError:
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        hashed = self.users.get(user)
        if not self.dummy_hash:  # built without parse_web_config
            self.dummy_hash = _dummy_for(self.users.values())
        if not self.checks.acquire(timeout=CHECK_WAIT_SECONDS):
            return False
        try:
            ok = bcrypt.checkpw(password.encode(), hashed or self.dummy_hash)
        except ValueError:
            # The bcrypt library refuses passwords over 72 bytes rather than checking their first
            # 72; credentials it cannot check are refused like wrong ones, not a dropped request.
            return False
        finally:
            self.checks.release()
        ok = ok and hashed is not None
        if ok:
            with self._lock:
                if len(self._ok) >= _CACHE_MAX:
                    self._ok.clear()
                self._ok.add(key)
        return ok


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate a web config file; every problem raises ``WebConfigError``."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"{source}: cannot read web config: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WebConfigError(f"{source}: invalid YAML: {exc}") from exc
    return parse_web_config(data, source=source, base_dir=path.parent)


def parse_web_config(data: Any, *, source: str, base_dir: Path) -> WebConfig:
    """Validate already-decoded YAML; split out so the rules are testable without files."""
    if data is None:
        return WebConfig(source=source)
    if not isinstance(data, dict):
        raise WebConfigError(f"{source}: the web config must be a mapping, got {_kind(data)}")
    _reject_unknown(data, _TOP_KEYS, source, "top level")
    config = WebConfig(source=source)
    tls = data.get("tls_server_config")
    if tls is not None:
        config.tls = _parse_tls(tls, source, base_dir)
    users = data.get("basic_auth_users")
    if users is not None:
        config.users = _parse_users(users, source)
        config.dummy_hash = _dummy_for(config.users.values())
    return config


def _dummy_for(hashes: Iterable[bytes]) -> bytes:
    """A bcrypt hash of a random password at the highest cost of ``hashes`` (10 if none)."""
    cost = max((int(h[4:6]) for h in hashes), default=10)
    return bcrypt.hashpw(secrets.token_bytes(16).hex().encode(), bcrypt.gensalt(rounds=cost))


def _parse_tls(tls: Any, source: str, base_dir: Path) -> TLSConfig:
    where = f"{source}: [tls_server_config]"
    if not isinstance(tls, dict):
        raise WebConfigError(f"{where}: must be a mapping, got {_kind(tls)}")
    _reject_unknown(tls, _TLS_KEYS, source, "[tls_server_config]")
    paths: dict[str, Path] = {}
    for name in ("cert_file", "key_file", "client_ca_file"):
        value = tls.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise WebConfigError(f"{where} field '{name}': must be a non-empty path string")
        # As in the exporter toolkit: a relative path is relative to the config file's directory.
        paths[name] = base_dir / value
    for name in ("cert_file", "key_file"):
        if name not in paths:
            raise WebConfigError(f"{where} field '{name}': required when TLS is configured")
    auth_type = tls.get("client_auth_type")
    if auth_type is None:
        auth_type = "RequireAndVerifyClientCert" if "client_ca_file" in paths else "NoClientCert"
    if auth_type not in _CLIENT_AUTH:
        raise WebConfigError(
            f"{where} field 'client_auth_type': {auth_type!r} is not one of "
            f"{', '.join(sorted(_CLIENT_AUTH))}"
        )
    if auth_type != "NoClientCert" and "client_ca_file" not in paths:
        raise WebConfigError(
            f"{where} field 'client_ca_file': required when client_auth_type is {auth_type}"
        )
    min_version = tls.get("min_version")
    if min_version is not None and min_version not in _TLS_VERSIONS:
        raise WebConfigError(
            f"{where} field 'min_version': {min_version!r} is not one of "
            f"{', '.join(sorted(_TLS_VERSIONS))}"
        )
    return TLSConfig(
        cert_file=paths["cert_file"],
        key_file=paths["key_file"],
        client_ca_file=paths.get("client_ca_file"),
        client_auth_type=auth_type,
        min_version=min_version,
    )


def _parse_users(users: Any, source: str) -> dict[str, bytes]:
    where = f"{source}: [basic_auth_users]"
    if not isinstance(users, dict):
        raise WebConfigError(f"{where}: must be a mapping of user name to bcrypt hash")
    parsed: dict[str, bytes] = {}
    for user, hashed in users.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError(f"{where} field {user!r}: a user name is a string without ':'")
        if not isinstance(hashed, str) or not _is_bcrypt(hashed):
            raise WebConfigError(
                f"{where} field '{user}': must be a bcrypt hash ($2a$/$2b$/$2y$...), "
                "not a clear-text password"
            )
        parsed[user] = hashed.encode("ascii")
    return parsed


def _is_bcrypt(value: str) -> bool:
    if len(value) != 60 or value[:4] not in ("$2a$", "$2b$", "$2y$"):
        return False
    try:
        # A well-formed hash is accepted by checkpw; a malformed one raises ValueError.
        bcrypt.checkpw(b"", value.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return False
    return True


def _reject_unknown(data: dict[Any, Any], known: set[str], source: str, where: str) -> None:
    for key in data:
        if key not in known:
            raise WebConfigError(
                f"{source}: {where} field {key!r}: unknown or unsupported "
                f"(supported: {', '.join(sorted(known))})"
            )


def _kind(value: Any) -> str:
    return type(value).__name__
