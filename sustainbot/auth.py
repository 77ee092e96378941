"""JWT bearer authentication with one pinned algorithm (HS256 with a secret, RS256 with a key)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from sustainbot.governance import ROLES
from sustainbot.settings import Settings

# Tokens minted here are a few hundred bytes; anything this large is an attack or a mistake,
# and refusing it before decoding bounds the work an unauthenticated client can cause.
MAX_TOKEN_BYTES = 4096
# Tolerated clock skew between the minting host and this one.
LEEWAY_SECONDS = 10
REQUIRED_CLAIMS = ("exp", "iat", "sub", "role")

# The closed set of auth.failed failure_type values (documented in docs/events.md).
FAILURE_TYPES = (
    "missing_token",
    "malformed",
    "oversized_token",
    "disallowed_algorithm",
    "invalid_signature",
    "expired",
    "not_yet_valid",
    "missing_claim",
    "invalid_issuer",
    "invalid_audience",
    "invalid_role",
    "invalid_token",
)


class NoKeyConfiguredError(RuntimeError):
    """Neither a secret nor an RSA key is configured, so no token can be verified or minted."""

    def __init__(self) -> None:
        super().__init__(
            "no JWT key configured: set SUSTAINBOT_JWT_SECRET (HS256, at least 32 bytes) or "
            "SUSTAINBOT_JWT_PUBLIC_KEY (RS256; SUSTAINBOT_JWT_PRIVATE_KEY to mint tokens)"
        )


class AuthError(Exception):
    """Authentication failed; ``failure_type`` is one of FAILURE_TYPES."""

    def __init__(self, failure_type: str, detail: str) -> None:
        super().__init__(detail)
        self.failure_type = failure_type
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    name: str  # the person's name: written only to audit.entry's ``actor`` field
    role: str


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        algorithm = settings.jwt_algorithm
        if algorithm is None:
            raise NoKeyConfiguredError()
        self.algorithm = algorithm
        self._key: Any
        if algorithm == "HS256":
            self._key = settings.jwt_secret
        elif settings.jwt_public_key is not None:
            self._key = serialization.load_pem_public_key(settings.jwt_public_key.encode())
        else:
            # Only a private key configured: verify with its public half.
            assert settings.jwt_private_key is not None
            private = serialization.load_pem_private_key(
                settings.jwt_private_key.encode(), password=None
            )
            self._key = private.public_key()
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience

    # One early refusal per failure_type of the event contract (docs/events.md), in the
    # order a token is checked.
    def verify(self, authorization: str | None) -> Principal:  # noqa: C901
        """Check an Authorization header value; raise AuthError with a failure_type."""
        if authorization is None or authorization.strip() == "":
            raise AuthError("missing_token", "no bearer token presented")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("malformed", "Authorization must be 'Bearer <token>'")
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthError("oversized_token", f"token longer than {MAX_TOKEN_BYTES} bytes")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise AuthError("malformed", "token is not a well-formed JWT") from exc
        except jwt.InvalidTokenError as exc:
            # PyJWT checks some header parameters itself (a ``crit`` naming an extension it does
            # not support, a ``kid`` that is not a string): well-formed, but not acceptable.
            raise AuthError("invalid_token", "token header is not accepted") from exc
        if header.get("alg") != self.algorithm:
            # Covers alg=none and HS/RS confusion before any key is touched.
            raise AuthError("disallowed_algorithm", f"only {self.algorithm} tokens are accepted")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self.algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=LEEWAY_SECONDS,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("expired", "token has expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("invalid_signature", "token signature does not verify") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError("missing_claim", f"token lacks the {exc.claim!r} claim") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError("invalid_issuer", "token issuer is not accepted") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError("invalid_audience", "token audience is not accepted") from exc
        except (jwt.ImmatureSignatureError, jwt.InvalidIssuedAtError) as exc:
            raise AuthError("not_yet_valid", "token is not valid yet") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise AuthError("disallowed_algorithm", str(exc)) from exc
        except jwt.DecodeError as exc:
            raise AuthError("malformed", "token payload cannot be decoded") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError("invalid_token", "token is invalid") from exc
        subject, role = claims.get("sub"), claims.get("role")
        name = claims.get("name", subject)
        if not isinstance(subject, str) or not subject or not isinstance(name, str):
            raise AuthError("missing_claim", "token 'sub' and 'name' must be non-empty strings")
        if role not in ROLES:
            raise AuthError("invalid_role", f"role must be one of {', '.join(ROLES)}")
        return Principal(subject=subject, name=name or subject, role=str(role))


def mint_token(
    settings: Settings, *, actor: str, role: str, ttl: int = 3600, now: float | None = None
) -> str:
    """A signed token for ``actor`` in ``role`` using the configured key (for local use)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if ttl <= 0:
        raise ValueError("ttl must be a positive number of seconds")
    if not actor.strip():
        raise ValueError("actor must not be empty")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": actor,
        "name": actor,
        "role": role,
        "iat": issued,
        "exp": issued + ttl,
    }
    if settings.jwt_issuer is not None:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience is not None:
        claims["aud"] = settings.jwt_audience
    algorithm = settings.jwt_algorithm
    if algorithm == "HS256":
        assert settings.jwt_secret is not None
        return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
    if algorithm == "RS256":
        if settings.jwt_private_key is None:
            raise NoKeyConfiguredError()
        return jwt.encode(claims, settings.jwt_private_key, algorithm="RS256")
    raise NoKeyConfiguredError()
