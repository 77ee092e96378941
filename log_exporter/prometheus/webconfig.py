"""The ``--web.config.file``: TLS, client certificates, basic auth and response headers in the
Prometheus exporter-toolkit format, and ``LiveWebConfig``, which re-reads it when it changes.

The format is the one every official exporter accepts (``web-config.yml``), so operators can reuse
theirs (docs/exporter.md lists the fields). What Python's ``ssl`` cannot do the way Go's
``crypto/tls`` does (``RequestClientCert``, ``RequireAnyClientCert``, a ``curve_preferences``
list of more than one curve), and
what is not implemented (inline PEM, ``client_allowed_sans``, ``rate_limit``, HTTP/2), is refused
by name with the file and field, rather than silently ignored: an operator who wrote it expects it
enforced.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import secrets
import ssl
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from log_exporter.limits import read_regular

# The name operators see in the "logger" field and filter on, kept when the module moved.
log = logging.getLogger("log_exporter.webconfig")

_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Go's client auth types that Python's ssl cannot have: it verifies every certificate it asks for.
_CLIENT_AUTH_REFUSED = {
    "RequestClientCert": "asks for a certificate without verifying it",
    "RequireAnyClientCert": "requires a certificate without verifying it",
    "RequireClientCert": "(RequireAnyClientCert) requires a certificate without verifying it",
}
_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's names of the suites crypto/tls.CipherSuites() lists (the ones exporter-toolkit accepts),
# as OpenSSL names them. The TLS 1.3 suites are accepted and, as in Go, not configurable.
_CIPHERS = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
_TLS13_CIPHERS = frozenset(
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
)
# exporter-toolkit's own list: only these headers, and for two of them only these values.
_HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
_TOP_KEYS = {"tls_server_config", "basic_auth_users", "http_server_config"}
_TLS_KEYS = {
    "curve_preferences",
    "cert_file",
    "key_file",
    "client_ca_file",
    "client_auth_type",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
}
_HTTP_KEYS = {"headers", "http2"}
# Go's curve names (exporter-toolkit's list) as OpenSSL names them.
_CURVES = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}
# exporter-toolkit fields this exporter does not have, with what to do instead.
_NOT_SUPPORTED = {
    "rate_limit": "not implemented; the exporter bounds connections and renders itself",
    "cert": "inline PEM is not supported; write it to a file and use cert_file",
    "key": "inline PEM is not supported; write it to a file and use key_file",
    "client_ca": "inline PEM is not supported; write it to a file and use client_ca_file",
    "client_allowed_sans": "not implemented; use a dedicated client CA instead",
}
# How often at most the config and its files are looked at (a few stat calls) for a change.
CHECK_INTERVAL_SECONDS = 1.0
# Only successful checks are cached, so the cache is bounded by the configured users; the cap is a
# guard should a client cycle through many encodings of the same credentials.
_CACHE_MAX = 256
# Each check of a wrong password costs a bcrypt hash (48 ms of CPU at cost 10, 190 ms at 12): a
# few at a time, so a flood of wrong tries cannot take every core. A try that finds no free slot
# is refused at once like a wrong password (CHECK_WAIT_SECONDS: no wait), so that no handler
# thread waits behind a flood; cached successes are looked up first and need no slot.
MAX_CONCURRENT_CHECKS = 2
CHECK_WAIT_SECONDS = 0.0
# The highest bcrypt cost a user's hash may have: one check at 14 takes about 0.8 s of a core, at
# 16 over 3 s, which a few wrong tries would turn into a denial of service.
MAX_BCRYPT_COST = 14
# A bcrypt hash as htpasswd and the bcrypt libraries write it: version, cost, 22 characters of
# salt and 31 of hash in bcrypt's base64 alphabet.
_BCRYPT = re.compile(r"\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}")
# The web config, the certificate, key and CA files are small; a larger one is a mistake (or
# /dev/zero), refused before it is read to its end.
MAX_FILE_BYTES = 1 << 20


class WebConfigError(Exception):
    """A web config that cannot be used; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class TLSConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str | None = None
    max_version: str | None = None
    cipher_suites: tuple[str, ...] = ()  # Go names
    prefer_server_cipher_suites: bool = True
    curve: str | None = None  # Go name; curve_preferences of one curve

    @property
    def files(self) -> tuple[Path, ...]:
        """The files the context is built from, watched for a renewal."""
        ca = () if self.client_ca_file is None else (self.client_ca_file,)
        return (self.cert_file, self.key_file, *ca)


@dataclass(slots=True)
class WebConfig:
    """A parsed web config; ``ssl_context()`` and ``authorized()`` are what the server uses."""

    source: str
    tls: TLSConfig | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # added to every response
    path: Path | None = None  # the file it was read from, re-read when it changes
    # Checked when the user is unknown, so that a wrong user name costs what a wrong password
    # does and the answer time tells no one which names exist: a hash of a random password at
    # the highest cost among the users (set by parse_web_config).
    dummy_hash: bytes = b""
    # What one check at that cost took when the dummy was made: every failed check lasts at
    # least this long, so a user hashed at a lower cost is not told apart by a faster refusal.
    check_seconds: float = 0.0
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
        where = f"{self.source}: [tls_server_config]"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.minimum_version = _TLS_VERSIONS[tls.min_version or "TLS12"]
            ctx.maximum_version = _TLS_VERSIONS[tls.max_version or "TLS13"]
        except ValueError as exc:
            raise WebConfigError(
                f"{where} field 'min_version'/'max_version': this OpenSSL refuses it: {exc}"
            ) from exc
        if tls.cipher_suites:
            names = [_CIPHERS[name] for name in tls.cipher_suites if name in _CIPHERS]
            try:
                # TLS 1.2 and below only: OpenSSL keeps the TLS 1.3 suites apart, as Go does.
                ctx.set_ciphers(":".join(names) if names else "DEFAULT")
            except ssl.SSLError as exc:
                raise WebConfigError(
                    f"{where} field 'cipher_suites': this OpenSSL has none of {names}: {exc}"
                ) from exc
        if tls.curve is not None:
            # With OpenSSL 3 this sets the one group offered, for TLS 1.2 and 1.3 alike.
            ctx.set_ecdh_curve(_CURVES[tls.curve])
        if tls.prefer_server_cipher_suites:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        else:
            ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        for name, path in (
            ("cert_file", tls.cert_file),
            ("key_file", tls.key_file),
            ("client_ca_file", tls.client_ca_file),
        ):
            if path is not None:
                _check_regular(path, f"{where} field '{name}'")
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
        credentials = _basic_credentials(header)
        if credentials is None:
            return False
        ok = self._check(*credentials)
        if ok:
            with self._lock:
                if len(self._ok) >= _CACHE_MAX:
                    self._ok.clear()
                self._ok.add(key)
        return ok

    def _check(self, user: str, password: str) -> bool:
        """One bcrypt check in a free slot, or False at once when none is free; a failed check
        lasts as long as one at the highest configured cost, whoever the user."""
        hashed = self.users.get(user)
        if not self.dummy_hash:  # built without parse_web_config
            self.dummy_hash, self.check_seconds = _dummy_for(self.users.values())
        if not self.checks.acquire(blocking=False):
            return False
        started = time.perf_counter()
        try:
            try:
                ok = bcrypt.checkpw(password.encode(), hashed or self.dummy_hash)
            except ValueError:
                # The bcrypt library refuses passwords over 72 bytes rather than checking their
                # first 72; credentials it cannot check are refused like wrong ones.
                ok = False
            ok = ok and hashed is not None
            if not ok:
                # Held in the slot, so padding costs a slot as the real check would.
                rest = self.check_seconds - (time.perf_counter() - started)
                if rest > 0:
                    time.sleep(rest)
        finally:
            self.checks.release()
        return ok


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate a web config file; every problem raises ``WebConfigError``."""
    path = Path(path)
    source = str(path)
    try:
        text = read_regular(path, MAX_FILE_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"{source}: cannot read web config: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WebConfigError(f"{source}: invalid YAML: {exc}") from exc
    except RecursionError as exc:
        # PyYAML composes nodes recursively; a web config is three levels deep.
        raise WebConfigError(f"{source}: invalid YAML: nested too deeply") from exc
    try:
        config = parse_web_config(data, source=source, base_dir=path.parent)
    except WebConfigError:
        raise
    except Exception as exc:
        # Every field is checked by type first; this is the guard should one check miss a shape,
        # so that a typo is a config error and never a crash of whoever reloads.
        raise WebConfigError(f"{source}: unusable web config: {exc!r}") from exc
    config.path = path
    return config


def parse_web_config(data: Any, *, source: str, base_dir: Path) -> WebConfig:
    """Validate already-decoded YAML; split out so the rules are testable without files."""
    if data is None:
        return WebConfig(source=source)
    if not isinstance(data, dict):
        raise WebConfigError(f"{source}: the web config must be a mapping, got {_kind(data)}")
    _reject_unknown(data, _TOP_KEYS, source, "top level")
    config = WebConfig(source=source)
    http = data.get("http_server_config")
    if http is not None:
        config.headers = _parse_http(http, source)
    tls = data.get("tls_server_config")
    if tls is not None:
        config.tls = _parse_tls(tls, source, base_dir)
    users = data.get("basic_auth_users")
    if users is not None:
        config.users = _parse_users(users, source)
        config.dummy_hash, config.check_seconds = _dummy_for(config.users.values())
    return config


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of a Basic ``Authorization`` header, or None when it is not one."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        # ValueError covers binascii.Error, UnicodeDecodeError and non-ASCII header text.
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError:
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _dummy_for(hashes: Iterable[bytes]) -> tuple[bytes, float]:
    """A bcrypt hash of a random password at the highest cost of ``hashes`` (10 if none), and
    the seconds hashing it took (what a check at that cost takes)."""
    cost = max((int(h[4:6]) for h in hashes), default=10)
    started = time.perf_counter()
    dummy = bcrypt.hashpw(secrets.token_bytes(16).hex().encode(), bcrypt.gensalt(rounds=cost))
    return dummy, time.perf_counter() - started


def _check_regular(path: Path, where: str) -> None:
    """Refuse what is not a small regular file before OpenSSL opens it (a FIFO would hang it)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise WebConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise WebConfigError(f"{where}: {path} is not a regular file")
    if st.st_size > MAX_FILE_BYTES:
        raise WebConfigError(f"{where}: {path} is larger than {MAX_FILE_BYTES} bytes")


def _parse_tls(tls: Any, source: str, base_dir: Path) -> TLSConfig:
    where = f"{source}: [tls_server_config]"
    if not isinstance(tls, dict):
        raise WebConfigError(f"{where}: must be a mapping, got {_kind(tls)}")
    _reject_unknown(tls, _TLS_KEYS, source, "[tls_server_config]")
    # One field group at a time, in this order, so the first problem named stays the same.
    paths = _tls_files(tls, where, base_dir)
    auth_type = _client_auth_type(tls, where, paths)
    min_version, max_version = _tls_versions(tls, where)
    ciphers = _cipher_suites(tls, where)
    curve = _curve(tls, where)
    prefer = tls.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError(f"{where} field 'prefer_server_cipher_suites': must be true or false")
    return TLSConfig(
        cert_file=paths["cert_file"],
        key_file=paths["key_file"],
        client_ca_file=paths.get("client_ca_file"),
        client_auth_type=auth_type,
        min_version=min_version,
        max_version=max_version,
        cipher_suites=tuple(ciphers),
        prefer_server_cipher_suites=prefer,
        curve=curve,
    )


def _tls_files(tls: dict[Any, Any], where: str, base_dir: Path) -> dict[str, Path]:
    """``cert_file``, ``key_file`` (both required) and ``client_ca_file``, by field name."""
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
    return paths


def _client_auth_type(tls: dict[Any, Any], where: str, paths: dict[str, Path]) -> str:
    """``client_auth_type``, one Python's ssl can enforce, consistent with ``client_ca_file``."""
    auth_type = tls.get("client_auth_type")
    if auth_type is None:
        auth_type = "NoClientCert"  # exporter-toolkit's default
    if not isinstance(auth_type, str):
        raise WebConfigError(
            f"{where} field 'client_auth_type': must be one of {', '.join(sorted(_CLIENT_AUTH))}, "
            f"got {_kind(auth_type)}"
        )
    if auth_type in _CLIENT_AUTH_REFUSED:
        raise WebConfigError(
            f"{where} field 'client_auth_type': {auth_type} {_CLIENT_AUTH_REFUSED[auth_type]}, "
            "which Python's ssl cannot do; use VerifyClientCertIfGiven or "
            "RequireAndVerifyClientCert"
        )
    if auth_type not in _CLIENT_AUTH:
        raise WebConfigError(
            f"{where} field 'client_auth_type': {auth_type!r} is not one of "
            f"{', '.join(sorted(_CLIENT_AUTH))}"
        )
    if auth_type != "NoClientCert" and "client_ca_file" not in paths:
        raise WebConfigError(
            f"{where} field 'client_ca_file': required when client_auth_type is {auth_type}"
        )
    if auth_type == "NoClientCert" and "client_ca_file" in paths:
        # As exporter-toolkit: a CA without a policy would verify nobody, silently.
        raise WebConfigError(
            f"{where} field 'client_auth_type': client_ca_file is set without a client auth "
            "policy (RequireAndVerifyClientCert or VerifyClientCertIfGiven)"
        )
    return str(auth_type)


def _tls_versions(tls: dict[Any, Any], where: str) -> tuple[str | None, str | None]:
    """``min_version`` and ``max_version`` as written (None when absent), in a usable order."""
    versions = {}
    for name in ("min_version", "max_version"):
        value = tls.get(name)
        if value is not None and (not isinstance(value, str) or value not in _TLS_VERSIONS):
            raise WebConfigError(
                f"{where} field '{name}': {value!r} is not one of {', '.join(_TLS_VERSIONS)}"
            )
        versions[name] = value
    order = list(_TLS_VERSIONS)
    low, high = versions["min_version"] or "TLS12", versions["max_version"] or "TLS13"
    if order.index(low) > order.index(high):
        raise WebConfigError(f"{where} field 'max_version': {high} is below min_version {low}")
    return versions["min_version"], versions["max_version"]


def _cipher_suites(tls: dict[Any, Any], where: str) -> list[str]:
    """``cipher_suites``: Go names of suites OpenSSL has (an empty list when absent)."""
    ciphers = tls.get("cipher_suites") or []
    if not isinstance(ciphers, list) or not all(isinstance(c, str) for c in ciphers):
        raise WebConfigError(f"{where} field 'cipher_suites': must be a list of Go suite names")
    for name in ciphers:
        if name not in _CIPHERS and name not in _TLS13_CIPHERS:
            raise WebConfigError(f"{where} field 'cipher_suites': unknown cipher {name!r}")
    return ciphers


def _curve(tls: dict[Any, Any], where: str) -> str | None:
    """The one curve of ``curve_preferences``, or None when absent."""
    curves = tls.get("curve_preferences") or []
    if not isinstance(curves, list) or not all(isinstance(c, str) for c in curves):
        raise WebConfigError(f"{where} field 'curve_preferences': must be a list of Go curve names")
    for name in curves:
        if name not in _CURVES:
            raise WebConfigError(
                f"{where} field 'curve_preferences': unknown curve {name!r} "
                f"(one of {', '.join(_CURVES)})"
            )
    if len(curves) > 1 or (curves and ssl.OPENSSL_VERSION_INFO < (3,)):
        # Python's ssl sets one curve (SSL_CTX_set1_groups with one entry under OpenSSL 3; under
        # OpenSSL 1.1 only TLS 1.2's ECDHE curve), never a preference list.
        raise WebConfigError(
            f"{where} field 'curve_preferences': Python's ssl can restrict the handshake to one "
            f"curve (with OpenSSL 3), not order several; got {curves}"
        )
    return curves[0] if curves else None


def _parse_http(http: Any, source: str) -> dict[str, str]:
    where = f"{source}: [http_server_config]"
    if not isinstance(http, dict):
        raise WebConfigError(f"{where}: must be a mapping, got {_kind(http)}")
    _reject_unknown(http, _HTTP_KEYS, source, "[http_server_config]")
    http2 = http.get("http2")
    if http2 is not None and not isinstance(http2, bool):
        raise WebConfigError(f"{where} field 'http2': must be true or false")
    if http2:
        raise WebConfigError(
            f"{where} field 'http2': HTTP/2 is not supported (the exporter speaks HTTP/1.1); "
            "set it to false or remove it"
        )
    headers = http.get("headers") or {}
    if not isinstance(headers, dict):
        raise WebConfigError(f"{where} field 'headers': must be a mapping of header to value")
    parsed: dict[str, str] = {}
    for name, value in headers.items():
        if name not in _HEADERS:
            raise WebConfigError(
                f"{where} field 'headers': HTTP header {name!r} can not be configured "
                f"(only {', '.join(_HEADERS)})"
            )
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise WebConfigError(f"{where} field 'headers': {name} must be a one-line string")
        allowed = _HEADERS[name]
        if allowed and value not in allowed:
            raise WebConfigError(
                f"{where} field 'headers': invalid value for {name}: expected one of "
                f"{', '.join(allowed)}, got {value!r}"
            )
        if value:  # blank means unset, as in exporter-toolkit
            parsed[name] = value
    return parsed


def _parse_users(users: Any, source: str) -> dict[str, bytes]:
    where = f"{source}: [basic_auth_users]"
    if not isinstance(users, dict):
        raise WebConfigError(f"{where}: must be a mapping of user name to bcrypt hash")
    parsed: dict[str, bytes] = {}
    for user, hashed in users.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError(f"{where} field {user!r}: a user name is a string without ':'")
        # Checked by form, not by a bcrypt check per user: a reload with many users at a high
        # cost would otherwise take seconds of CPU.
        match = _BCRYPT.fullmatch(hashed) if isinstance(hashed, str) else None
        if match is None:
            raise WebConfigError(
                f"{where} field '{user}': must be a bcrypt hash ($2a$/$2b$/$2y$...), "
                "not a clear-text password"
            )
        cost = int(match.group(1))
        if not 4 <= cost <= MAX_BCRYPT_COST:
            raise WebConfigError(
                f"{where} field '{user}': bcrypt cost {cost} is outside 4..{MAX_BCRYPT_COST}, "
                "where every wrong try costs seconds of a core; hash the password again "
                f"with a cost of at most {MAX_BCRYPT_COST}"
            )
        parsed[user] = hashed.encode("ascii")
    return parsed


def _reject_unknown(data: dict[Any, Any], known: set[str], source: str, where: str) -> None:
    for key in data:
        if key in _NOT_SUPPORTED:
            raise WebConfigError(f"{source}: {where} field {key!r}: {_NOT_SUPPORTED[key]}")
        if key not in known:
            raise WebConfigError(
                f"{source}: {where} field {key!r}: unknown or unsupported "
                f"(supported: {', '.join(sorted(known))})"
            )


def _kind(value: Any) -> str:
    return type(value).__name__


_Signature = tuple[tuple[int, int, int, int] | None, ...]


class LiveWebConfig:
    """The web config in force, re-read when its file or a file it names changes.

    As exporter-toolkit re-reads its file per request and its certificates per handshake, but
    cheaply: ``current()`` stats the config, certificate, key and CA files at most once per
    ``CHECK_INTERVAL_SECONDS`` and reloads only when one changed (a certificate renewed by
    cert-manager, a user added). ``current()`` never waits for a reload: it starts one in a
    thread of its own (one at a time) and answers with the config in force, which the reload
    replaces when it succeeds; a slow reload (a FIFO named as a file, users at a high cost)
    delays no request. A new config that cannot be used (invalid, a half-written file, TLS
    switched on or off, which needs a restart), or a reload that fails in any other way, is
    logged and counted, and the one in force keeps serving; it is tried again when the files
    change again. Thread-safe.
    """

    def __init__(self, config: WebConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._state = (config, config.ssl_context())  # the context fails at start, named
        # The configs whose files are watched: the one in force, and a newer one that failed.
        self._watched: tuple[WebConfig | None, ...] = (config,)
        self._seen = self._signature(config)
        self._next_check = clock() + CHECK_INTERVAL_SECONDS
        self._reloading = False  # a reload thread runs
        self.reloads = {"success": 0, "failure": 0}

    @property
    def tls(self) -> bool:
        """Whether connections are TLS; fixed for the life of the server."""
        return self._state[1] is not None

    def current(self) -> tuple[WebConfig, ssl.SSLContext | None]:
        """The config and TLS context in force; starts a reload in the background when due."""
        state = self._state
        if state[0].path is None or self._clock() < self._next_check:
            return state
        with self._lock:
            if self._clock() >= self._next_check and not self._reloading:
                self._reloading = True
                threading.Thread(target=self._reload, name="web-config-reload", daemon=True).start()
        return self._state

    def _reload(self) -> None:
        try:
            self._check()
        except Exception as exc:
            # Whatever a reload meets, serving goes on with the config in force.
            self.reloads["failure"] += 1
            log.error(
                "web config reload failed, keeping the one in force",
                extra={"error": f"{exc!r}"},
            )
        finally:
            # The interval counts from the end of a reload, so a slow one is not run back to back.
            with self._lock:
                self._next_check = self._clock() + CHECK_INTERVAL_SECONDS
                self._reloading = False

    def _check(self) -> None:
        config = self._state[0]
        seen = self._signature(*self._watched)
        if seen == self._seen:
            return
        self._seen = seen
        assert config.path is not None
        new: WebConfig | None = None
        try:
            new = load_web_config(config.path)
            context = new.ssl_context()
            if (context is None) != (self._state[1] is None):
                raise WebConfigError(
                    f"{config.source}: [tls_server_config]: switching TLS on or off needs a restart"
                )
        except WebConfigError as exc:
            # Watch the files the new config names too: fixing a certificate only it names must
            # be noticed although neither the config file nor the old files change again.
            self._watched = (config, new)
            self._seen = self._signature(*self._watched)
            self.reloads["failure"] += 1
            log.error(
                "web config reload failed, keeping the one in force", extra={"error": str(exc)}
            )
            return
        # The files the new config names decide the next change, not the old ones.
        self._watched = (new,)
        self._seen = self._signature(new)
        self._state = (new, context)
        self.reloads["success"] += 1
        log.info("web config reloaded", extra={"path": str(config.path)})

    @staticmethod
    def _signature(*configs: WebConfig | None) -> _Signature:
        files: list[Path] = []
        for config in configs:
            if config is None:
                continue
            named = [] if config.path is None else [config.path]
            named += [] if config.tls is None else list(config.tls.files)
            files += [path for path in named if path not in files]
        return tuple(_stat(path) for path in files)


def _stat(path: Path) -> tuple[int, int, int, int] | None:
    # Followed links: a Kubernetes Secret volume renews by swapping the directory a link names.
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
