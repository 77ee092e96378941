"""A real HTTP proxy between boto3 and moto that injects the faults CloudWatch shows in life.

Per request it asks ``plan(operation, nth_call)`` what to do: forward, answer a throttling
error or a 503, reset the connection before or after forwarding, or forward slowly. One chosen
request can also be held (``hold``) until the test releases it, so a kill lands exactly while
that request is on the wire.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

Plan = Callable[[str, int], str]
# (operation, request body) -> True for the requests that count towards the one to hold.
Match = Callable[[str, bytes], bool]
# A held request waits at most this long for release(), so a forgotten one cannot hang a run.
HOLD_SECONDS = 120.0

_THROTTLE_JSON = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()


class FaultProxy:
    """Listens on an ephemeral loopback port; ``url`` is the endpoint to give boto3."""

    def __init__(
        self,
        upstream: str,
        plan: Plan,
        slow_seconds: float = 1.5,
        *,
        hold: tuple[Match, int] | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.plan = plan
        self.slow_seconds = slow_seconds
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {}
        self.actions: list[tuple[str, str]] = []
        self.in_flight: dict[str, int] = {}
        # Events per PutLogEvents request that reached moto: the size of a "batch".
        self.forwarded_batches: list[int] = []
        # hold=(match, n): the n-th request (from 0) that match() accepts waits for release(),
        # then is forwarded; "held" is set while it waits, "held_done" once moto answered it.
        self._hold = hold
        self._matched = 0
        self.held = threading.Event()
        self.held_done = threading.Event()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def release(self) -> None:
        """Let the held request go on to moto."""
        self._release.set()

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def count(self, op: str) -> int:
        with self.lock:
            return self.calls.get(op, 0)

    # The handler class is built here around the proxy; one branch per fault it can
    # inject.
    def _handler(self) -> type[BaseHTTPRequestHandler]:  # noqa: C901
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def finish(self) -> None:
                # After a deliberate reset the socket is gone; flushing it is expected to fail.
                with contextlib.suppress(OSError, ValueError):
                    super().finish()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                target = self.headers.get("X-Amz-Target") or ""
                op = target.rsplit(".", 1)[-1] if target else self.path.rsplit("/", 1)[-1]
                with proxy.lock:
                    nth = proxy.calls.get(op, 0)
                    proxy.calls[op] = nth + 1
                    action = proxy.plan(op, nth)
                    if proxy._hold is not None and proxy._hold[0](op, body):
                        if proxy._matched == proxy._hold[1]:
                            action = "hold"
                        proxy._matched += 1
                    proxy.actions.append((op, action))
                    proxy.in_flight[op] = proxy.in_flight.get(op, 0) + 1
                try:
                    self._act(op, action, body)
                finally:
                    with proxy.lock:
                        proxy.in_flight[op] -= 1

            def _act(self, op: str, action: str, body: bytes) -> None:
                if action == "throttle" and self.headers.get("X-Amz-Target"):
                    self._reply(
                        400,
                        _THROTTLE_JSON,
                        {
                            "x-amzn-ErrorType": "ThrottlingException",
                            "Content-Type": "application/x-amz-json-1.1",
                        },
                    )
                elif action in ("throttle", "503"):
                    self._reply(503, b"Service Unavailable", {"Content-Type": "text/plain"})
                elif action == "reset":
                    self._reset()
                elif action == "hold":
                    proxy.held.set()
                    proxy._release.wait(HOLD_SECONDS)
                    status, headers, data = self._forward(body)
                    proxy.held_done.set()
                    # The client may be gone (killed while this waited): nobody to answer.
                    with contextlib.suppress(OSError):
                        self._reply(status, data, headers)
                else:
                    if action == "slow":
                        time.sleep(proxy.slow_seconds)
                    status, headers, data = self._forward(body)
                    if op == "PutLogEvents" and status == 200:
                        with proxy.lock:
                            proxy.forwarded_batches.append(len(json.loads(body)["logEvents"]))
                    if action == "forward_reset":
                        self._reset()
                    else:
                        self._reply(status, data, headers)

            def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    conn.request("POST", self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    keep = (
                        "content-type",
                        "x-amzn-requestid",
                        "x-amzn-errortype",
                        "smithy-protocol",
                    )
                    out = {k: v for k, v in resp.getheaders() if k.lower() in keep}
                    return resp.status, out, data
                finally:
                    conn.close()

            def _reply(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _reset(self) -> None:
                # SO_LINGER 0 makes close() send a TCP RST: "connection reset by peer".
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                self.connection.close()

        return Handler
