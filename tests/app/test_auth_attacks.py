"""JWT attacks: every forged, stale or malformed token is a 401 with its auth.failed event."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask.testing import FlaskClient

from sustainbot.app import create_app
from sustainbot.auth import mint_token
from sustainbot.settings import Settings
from tests.support.app import PERSON, SECRET, EventLog, bearer, body

EXECUTE = "/workflows/governed/execute"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _craft(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": PERSON,
        "name": PERSON,
        "role": "admin",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture(scope="module")
def rsa_pems() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def _hs(secret: str | bytes, claims: dict[str, Any]) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    header = {"alg": "HS256", "typ": "JWT"}
    return _craft(header, claims, lambda data: hmac.new(key, data, hashlib.sha256).digest())


def _hs_header(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A token with this header, correctly signed with the service's secret."""
    key = SECRET.encode()
    return _craft(header, claims, lambda data: hmac.new(key, data, hashlib.sha256).digest())


# Each case: (id, RS256 app?, issuer/audience configured?, token factory, expected failure_type)
CASES: list[tuple[str, bool, bool, Callable[[tuple[str, str]], str], str]] = [
    (
        "alg_none",
        False,
        False,
        lambda _: _craft({"alg": "none", "typ": "JWT"}, _claims(), lambda _data: b""),
        "disallowed_algorithm",
    ),
    (
        "alg_none_uppercase",
        False,
        False,
        lambda _: _craft({"alg": "NONE"}, _claims(), lambda _data: b""),
        "disallowed_algorithm",
    ),
    (
        "hs256_signed_with_rsa_public_key",
        True,
        False,
        lambda keys: _hs(keys[1], _claims()),
        "disallowed_algorithm",
    ),
    (
        "rs256_token_against_hs256_service",
        False,
        False,
        lambda keys: jwt.encode(_claims(), keys[0], algorithm="RS256"),
        "disallowed_algorithm",
    ),
    (
        "expired",
        False,
        False,
        lambda _: _hs(SECRET, _claims(exp=int(time.time()) - 120)),
        "expired",
    ),
    ("missing_exp", False, False, lambda _: _hs(SECRET, _claims(exp=None)), "missing_claim"),
    ("missing_role", False, False, lambda _: _hs(SECRET, _claims(role=None)), "missing_claim"),
    ("unknown_role", False, False, lambda _: _hs(SECRET, _claims(role="root")), "invalid_role"),
    (
        "issued_in_the_future",
        False,
        False,
        lambda _: _hs(SECRET, _claims(iat=int(time.time()) + 3600, exp=int(time.time()) + 7200)),
        "not_yet_valid",
    ),
    (
        "wrong_signature",
        False,
        False,
        lambda _: _hs("another-secret-that-is-long-enough-too!!", _claims()),
        "invalid_signature",
    ),
    (
        "payload_tampered_after_signing",
        False,
        False,
        lambda _: _tamper(_hs(SECRET, _claims(role="engineer"))),
        "invalid_signature",
    ),
    (
        "rs256_signed_by_another_key",
        True,
        False,
        lambda _: jwt.encode(_claims(), _other_private_pem(), algorithm="RS256"),
        "invalid_signature",
    ),
    (
        "wrong_issuer",
        False,
        True,
        lambda _: _hs(SECRET, _claims(iss="https://evil.example", aud="sustainbot")),
        "invalid_issuer",
    ),
    (
        "wrong_audience",
        False,
        True,
        lambda _: _hs(SECRET, _claims(iss="https://issuer.example", aud="another-service")),
        "invalid_audience",
    ),
    (
        "missing_issuer_when_required",
        False,
        True,
        lambda _: _hs(SECRET, _claims(aud="sustainbot")),
        "missing_claim",
    ),
    (
        "crit_names_an_unsupported_extension",
        False,
        False,
        lambda _: _hs_header({"alg": "HS256", "typ": "JWT", "crit": ["exp"]}, _claims()),
        "invalid_token",
    ),
    (
        "crit_not_a_list",
        False,
        False,
        lambda _: _hs_header({"alg": "HS256", "crit": "exp"}, _claims()),
        "invalid_token",
    ),
    (
        "kid_not_a_string",
        False,
        False,
        lambda _: _hs_header({"alg": "HS256", "kid": 7}, _claims()),
        "invalid_token",
    ),
    ("garbage", False, False, lambda _: "this-is-not-a-jwt", "malformed"),
    ("garbage_three_segments", False, False, lambda _: "abc.def.ghi", "malformed"),
    ("oversized", False, False, lambda _: "a" * 20_000, "oversized_token"),
]


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


_OTHER_KEY: list[str] = []


def _other_private_pem() -> str:
    if not _OTHER_KEY:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _OTHER_KEY.append(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
        )
    return _OTHER_KEY[0]


@pytest.mark.parametrize(
    ("rs256", "claims_checked", "make_token", "failure_type"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_token_is_401_with_auth_failed_event(
    event_log: EventLog,
    rsa_pems: tuple[str, str],
    rs256: bool,
    claims_checked: bool,
    make_token: Callable[[tuple[str, str]], str],
    failure_type: str,
) -> None:
    """A forged, stale or malformed token is refused with 401 and leaves auth.failed behind."""
    settings = Settings(
        json_log_path=event_log.path,
        jwt_secret=None if rs256 else SECRET,
        jwt_public_key=rsa_pems[1] if rs256 else None,
        jwt_issuer="https://issuer.example" if claims_checked else None,
        jwt_audience="sustainbot" if claims_checked else None,
    )
    client = create_app(settings).test_client()
    response = client.post(EXECUTE, json=body(mode="execute"), headers=bearer(make_token(rsa_pems)))
    assert response.status_code == 401
    assert response.json is not None and response.json["failure_type"] == failure_type
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    trace = response.headers["X-Request-ID"]
    assert [e["failure_type"] for e in event_log.of("auth.failed", trace)] == [failure_type]
    validated = event_log.of("auth.jwt_validated", trace)
    assert [(e["outcome"], e["failure_type"]) for e in validated] == [("failure", failure_type)]
    # Nothing past authentication happened.
    assert not event_log.of("aim.request", trace)
    assert not event_log.of("workflow.completed", trace)


def test_missing_token_writes_only_auth_failed(client: FlaskClient, event_log: EventLog) -> None:
    """A request without a token is 401 with auth.failed(missing_token) and no validation event."""
    response = client.post(EXECUTE, json=body())
    assert response.status_code == 401
    trace = response.headers["X-Request-ID"]
    assert [e["failure_type"] for e in event_log.of("auth.failed", trace)] == ["missing_token"]
    assert event_log.of("auth.jwt_validated", trace) == []


def test_non_bearer_scheme_is_malformed(client: FlaskClient, event_log: EventLog) -> None:
    """Basic credentials where a bearer token belongs are refused as malformed."""
    response = client.post(
        "/governance/validate", json=body(), headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"}
    )
    assert response.status_code == 401
    trace = response.headers["X-Request-ID"]
    assert [e["failure_type"] for e in event_log.of("auth.failed", trace)] == ["malformed"]


def test_rs256_service_accepts_its_own_tokens(event_log: EventLog, rsa_pems) -> None:
    """With an RSA key pair configured, tokens minted with the private key are accepted."""
    private, public = rsa_pems
    minting = Settings(json_log_path=event_log.path, jwt_private_key=private)
    serving = Settings(json_log_path=event_log.path, jwt_public_key=public)
    tok = mint_token(minting, actor=PERSON, role="analyst")
    response = (
        create_app(serving)
        .test_client()
        .post("/governance/validate", json=body(), headers=bearer(tok))
    )
    assert response.status_code == 200
    trace = response.headers["X-Request-ID"]
    assert [e["outcome"] for e in event_log.of("auth.jwt_validated", trace)] == ["success"]
    assert event_log.of("auth.failed", trace) == []


def test_issuer_and_audience_accepted_when_they_match(event_log: EventLog) -> None:
    """A token carrying the configured issuer and audience is accepted."""
    settings = Settings(
        json_log_path=event_log.path,
        jwt_secret=SECRET,
        jwt_issuer="https://issuer.example",
        jwt_audience="sustainbot",
    )
    tok = mint_token(settings, actor=PERSON, role="engineer")
    response = (
        create_app(settings)
        .test_client()
        .post("/governance/validate", json=body(), headers=bearer(tok))
    )
    assert response.status_code == 200
