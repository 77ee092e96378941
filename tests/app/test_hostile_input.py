"""Hostile token headers and chunked framing over real HTTP: a 4xx JSON answer, never a 500.

Hypothesis writes the input; one ``sustainbot serve`` answers every example over loopback HTTP,
and each refusal must come with its events: ``auth.failed`` for a token, ``http.request`` with
the 4xx for a body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sustainbot.auth import FAILURE_TYPES
from tests.support.app import PERSON, SECRET
from tests.support.service import Service, running

pytestmark = pytest.mark.slow
VALIDATE = "/governance/validate"
EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running(tmp_path_factory.mktemp("hostile"), "--workers", "2") as svc:
        yield svc


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _exchange(service: Service, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, half-close, and read the first response (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=60) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, rest[: int(headers.get("content-length", len(rest)))]


def _token(header_segment: str) -> str:
    now = int(time.time())
    claims = {"sub": PERSON, "name": PERSON, "role": "admin", "iat": now, "exp": now + 600}
    signing_input = f"{header_segment}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
_known = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(["HS256", "none", "RS256", "hs256", ""]) | _json,
        "typ": st.sampled_from(["JWT", "at+jwt"]) | _json,
        "crit": st.lists(st.sampled_from(["exp", "b64", "kid", "x"]), max_size=3) | _json,
        "kid": _json,
        "b64": st.booleans() | _json,
        "jku": _json,
        "x5c": _json,
    },
)
_header_segments = st.one_of(
    _known.map(lambda h: _b64(json.dumps(h).encode())),
    _json.map(lambda v: _b64(json.dumps(v).encode())),
    st.binary(max_size=64).map(_b64),
    st.text(max_size=40),
)


@EXAMPLES
@given(segment=_header_segments)
def test_fuzzed_token_header_is_401_with_auth_failed_or_accepted(
    service: Service, segment: str
) -> None:
    """Any token header is accepted (200) or refused 401 with a known failure type and events."""
    token = _token(segment)
    # A header value may hold only visible ASCII, spaces and tabs; gunicorn refuses anything
    # else (a control character such as \x0b or \x7f) with its own 400 before the app sees it
    # (docs/sustainbot.md), so such a segment is sent base64-encoded, as a token would carry it.
    if any(not (c == "\t" or " " <= c <= "~") for c in token):
        token = _token(_b64(segment.encode("utf-8", "surrogatepass")))
    body = json.dumps({"workflow_name": "generate_report", "drag_mode": "draft", "aim": {}})
    request = (
        f"POST {VALIDATE} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    )
    status, headers, answer = _exchange(service, request.encode())
    assert status in (200, 401, 422), answer
    assert headers["content-type"] == "application/json"
    if status == 401:
        refusal = json.loads(answer)
        assert refusal["failure_type"] in FAILURE_TYPES
        failed = service.log.of("auth.failed", refusal["trace_id"])
        assert [e["failure_type"] for e in failed] == [refusal["failure_type"]]


_size_lines = st.one_of(
    st.integers(min_value=0, max_value=40).map(lambda n: f"{n:x}".encode()),
    st.sampled_from([b"-1", b"zz", b"", b" 5", b"5 ", b"0x5", b"5;ext=1", b"5;", b"ffffffffffff"]),
    st.binary(min_size=1, max_size=6).filter(lambda b: b"\r" not in b and b"\n" not in b),
)
_chunks = st.lists(
    st.tuples(_size_lines, st.binary(max_size=40), st.sampled_from([b"\r\n", b"\n", b"", b"x"])),
    min_size=1,
    max_size=5,
)


@EXAMPLES
@given(chunks=_chunks, terminated=st.booleans())
def test_fuzzed_chunked_framing_is_answered_4xx_or_served(
    service: Service, chunks: list[tuple[bytes, bytes, bytes]], terminated: bool
) -> None:
    """A chunked body with any framing gets a JSON answer below 500, logged as a request."""
    token = service_token(service)
    body = b"".join(size + b"\r\n" + data + end for size, data, end in chunks)
    if terminated:
        body += b"0\r\n\r\n"
    request = (
        f"POST {VALIDATE} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode() + body
    status, headers, answer = _exchange(service, request)
    assert 200 <= status < 500, answer
    assert headers["content-type"] == "application/json"
    trace_id = json.loads(answer)["trace_id"]
    logged = service.log.of("http.request", trace_id)
    assert [e["status_code"] for e in logged] == [status]


_TOKENS: dict[int, str] = {}


def service_token(service: Service) -> str:
    """One admin token per service, minted by its CLI once (minting costs a process)."""
    if service.port not in _TOKENS:
        _TOKENS[service.port] = service.token("admin")
    return _TOKENS[service.port]
