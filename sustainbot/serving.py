"""How ``sustainbot serve`` runs the app: gunicorn's gevent worker, with deadlines on each request.

A client that sends its request slowly must not hold what other clients need. gunicorn's gthread
worker gives each connection a thread as soon as its first byte arrives and keeps it while the
headers trickle in, so a handful of slow clients could take every thread. The gevent worker
serves each connection in a greenlet (a few KiB, no thread) up to ``WORKER_CONNECTIONS`` per
worker, and bounds the wait for a request's line and headers by gunicorn's ``keepalive``
(``HEADER_TIMEOUT_SECONDS``), the wait between keep-alive requests too. The body is bounded here:
``with_body_deadline`` makes every read of it end by ``BODY_TIMEOUT_SECONDS`` after the request
reached the app (408), and turns a body whose chunked framing is broken into a 400 instead of
the server's exception (a 500). Either answer closes the connection, whose framing is lost.

``lifecycle_hooks`` writes the processes' comings and goings (a worker started, a worker exited
however it died, the service stopped), so the exporter can forget the requests a dead process
had in flight.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from werkzeug.exceptions import BadRequest, RequestTimeout

from sustainbot import emit
from sustainbot.events import EventWriter

# gunicorn's gevent worker cuts a connection whose request line and headers take longer than its
# ``keepalive`` setting, which is also how long an idle keep-alive connection is kept.
HEADER_TIMEOUT_SECONDS = 5
# A 64 KiB body in 10 s needs about 6.5 KB/s; a client slower than that is refused with 408.
BODY_TIMEOUT_SECONDS = 10.0
# Per worker. Each costs a greenlet and a descriptor; with 2 workers, 2000 clients at once.
WORKER_CONNECTIONS = 1000

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Late(Exception):
    """The body deadline passed while a read was waiting for the client."""


class _Body:
    """``wsgi.input`` whose reads end by a deadline and whose broken framing is a 400."""

    def __init__(self, stream: Any, deadline: float, on_broken: Callable[[], None]) -> None:
        self._stream = stream
        self._deadline = deadline
        self._on_broken = on_broken

    def read(self, size: int = -1) -> bytes:
        return bytes(self._guarded(self._stream.read, size))

    def readline(self, size: int = -1) -> bytes:
        return bytes(self._guarded(self._stream.readline, size))

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(self._guarded(self._stream.readlines, hint))

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def _guarded(self, read: Callable[[int], Any], size: int) -> Any:
        # Imported here: this module is imported by the master, which gevent must not patch.
        import gevent
        from gunicorn.http.errors import NoMoreData, ParseException

        remaining = self._deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise _Late()
            with gevent.Timeout(remaining, _Late):
                return read(size)
        except _Late:
            self._on_broken()
            raise RequestTimeout(
                f"request body not received within {BODY_TIMEOUT_SECONDS:g} s"
            ) from None
        except (ParseException, NoMoreData) as exc:
            self._on_broken()
            raise BadRequest(f"malformed request body: {type(exc).__name__}") from None


def with_body_deadline(app: WSGIApp, clock: Callable[[], float] = time.monotonic) -> WSGIApp:
    """``app`` with its request body read under ``BODY_TIMEOUT_SECONDS`` (gevent workers only)."""

    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        broken: list[bool] = []
        environ["wsgi.input"] = _Body(
            environ["wsgi.input"], clock() + BODY_TIMEOUT_SECONDS, lambda: broken.append(True)
        )

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if broken:
                # The rest of the body cannot be found any more, so nothing after it on this
                # connection is a request: gunicorn ignores an app's Connection header, but
                # its response object, whose method start_response is, can be told to close.
                close = getattr(getattr(start_response, "__self__", None), "force_close", None)
                if close is not None:
                    close()
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return guarded


def lifecycle_hooks(writer: EventWriter) -> dict[str, Callable[..., None]]:
    """gunicorn server hooks writing ``app.worker_started``, ``app.worker_exited`` and
    ``app.stopped`` (docs/events.md); the writer never raises, so neither do they."""

    def trace() -> emit.Trace:
        return emit.Trace(writer, uuid.uuid4().hex)

    def post_fork(server: Any, worker: Any) -> None:
        # In the new worker, before it serves anything: a share left under a reused pid goes.
        emit.app_worker_started(trace(), pid=os.getpid())

    def child_exit(server: Any, worker: Any) -> None:
        # In the master, once the worker was reaped: however it ended, kill -9 included.
        emit.app_worker_exited(trace(), pid=int(worker.pid))

    def on_exit(server: Any) -> None:
        # The master's last act, after its workers were stopped or, past the graceful timeout,
        # killed: no request of this service is in flight any more.
        emit.app_stopped(trace(), pid=os.getpid())

    return {"post_fork": post_fork, "child_exit": child_exit, "on_exit": on_exit}


def gunicorn_options(bind: str, workers: int, **extra: Any) -> dict[str, Any]:
    """The gunicorn settings of ``sustainbot serve`` (the benchmarks serve with them too)."""
    return {
        "bind": bind,
        "workers": workers,
        "worker_class": "gevent",
        "worker_connections": WORKER_CONNECTIONS,
        "keepalive": HEADER_TIMEOUT_SECONDS,
        "accesslog": None,  # the event log is the access log
        **extra,
    }


def run_gunicorn(application: Any, options: dict[str, Any]) -> None:
    """Serve a WSGI application on gunicorn with these settings, its body under a deadline."""
    import warnings

    from gevent.monkey import MonkeyPatchWarning
    from gunicorn.app.base import BaseApplication

    # The worker patches the standard library after fork, when PyJWT has long imported ssl; no
    # worker makes a TLS connection of its own (gunicorn serves plain HTTP here, tokens are
    # checked without the network), so the warning about it would only be noise at every boot.
    warnings.filterwarnings("ignore", message="Monkey-patching ssl", category=MonkeyPatchWarning)
    guarded = with_body_deadline(application)

    class GunicornServer(BaseApplication):  # type: ignore[misc]
        # The app is built (and app.started written) once in the master; workers fork from it.
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            if "control_socket_disable" in self.cfg.settings:
                # gunicorn >= 25 opens a control socket at one fixed path per user; two services
                # (or parallel tests) would fight over it, and nothing here uses it.
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            return guarded

    GunicornServer().run()
