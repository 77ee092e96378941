"""``log-exporter serve``: tail -> pipeline -> store, served over HTTP, until asked to stop.

``main`` wires it from the parsed flags (settings checked, ``Service`` built, CloudWatch attached
beside it, run); ``Service`` is one running exporter.

Everything that changes the store runs in the tail loop's thread: a stop or reload request (the
entry point relays signals to a thread that makes them) only sets a flag and wakes the loop, so a
spec reload and a periodic state save never race a batch. The HTTP server and the optional
CloudWatch shipper have their own threads.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from log_exporter import buildinfo, logs, settings
from log_exporter.cloudwatch.config import ConfigError
from log_exporter.cloudwatch.config import load as load_cloudwatch
from log_exporter.cloudwatch.hook import SECTION, Attachment, start_for_serve
from log_exporter.drain import Drain, Outcome
from log_exporter.limits import EXIT_CONFIG, EXIT_DRAIN_INCOMPLETE, EXIT_ERROR, EXIT_OK
from log_exporter.manyfiles import STATE_SECTION as FILES_SECTION
from log_exporter.manyfiles import Followed, ManyFiles, restore_error_types
from log_exporter.pipeline import Pipeline
from log_exporter.prometheus import selfmetrics
from log_exporter.prometheus.collector import (
    Registry,
    ServeCollector,
    ServeValues,
    StateValues,
    StoreCollector,
    StoreSetCollector,
    register_standard,
)
from log_exporter.prometheus.families import Pairs
from log_exporter.prometheus.server import MetricsServer
from log_exporter.prometheus.webconfig import WebConfig, WebConfigError, load_web_config
from log_exporter.sources.cri import InputFormat
from log_exporter.sources.patterns import (
    FilePattern,
    PatternError,
    check_label_names,
    parse_label,
    parse_pattern,
)
from log_exporter.sources.tail import Tailer, count_lines_after
from log_exporter.sources.tail.ledger import RotationLedger
from log_exporter.sources.tail.siblings import is_rotated_name
from log_exporter.spec import Program, Spec, SpecError, compile_spec
from log_exporter.spec import read_spec as read_spec_file
from log_exporter.statefile import StateFile, StateKeeper, StateSection
from log_exporter.store import Store, StoreError
from log_exporter.values import Batch, Position, position_from_json, position_to_json

log = logging.getLogger(__name__)

STATE_SECTION = "metrics"


class StartupError(Exception):
    """A setting that makes starting pointless; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """serve's settings once checked (log_exporter.settings has their flags and variables)."""

    file: str
    listen: str
    spec: str | None
    web_config: str | None
    start_at: Literal["beginning", "end"]
    state: str | None
    state_interval: float
    max_line_bytes: int
    telemetry_path: str = "/metrics"
    drain_quiet: float = 2.0
    drain_timeout: float = 20.0
    rotated_globs: tuple[str, ...] = ()
    # "cri": a container runtime's log (log_exporter.sources.cri).
    input_format: InputFormat = "json"
    # Every --file given (``file`` is the first); several, or a pattern, serve many files.
    files: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()  # the --label NAME=VALUE items
    grace_period: float = 300.0

    @property
    def patterns(self) -> tuple[str, ...]:
        return self.files or (self.file,)


def read_spec(path: str | None) -> Spec:
    """The spec at ``path``, or the built-in one; ``StartupError`` listing every problem."""
    try:
        return read_spec_file(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise StartupError(f"{path}: cannot read spec: {exc}") from exc
    except SpecError as exc:
        raise StartupError("invalid spec: " + "; ".join(exc.errors)) from exc


class Service:
    """One running exporter: built by ``__init__`` (which validates), driven by ``run``."""

    def __init__(
        self, options: ServeOptions, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.options = options
        # The first stop request drains, a second one stops at once (docs/exporter.md, "Drain").
        self.drain = Drain(quiet=options.drain_quiet, timeout=options.drain_timeout, clock=clock)
        self._drain_reader = self.drain.reader()
        self.drain_outcome: Outcome | None = None
        self._drain_announced = False
        self.unread_lines = 0  # lines a drain cut short left out of the metrics
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.reloads = {"success": 0, "failure": 0}
        # Held while a batch is fed and its position recorded, and while the state is copied:
        # a save from any thread (the CloudWatch shipper saves too) sees values and position of
        # the same instant, so a restart neither loses nor repeats a line.
        self._consistency = threading.Lock()
        self._fed: Position | None = None
        # After an unexpected error the store may hold half a batch: from then on saves repeat
        # the last consistent section on disk (``_frozen``).
        self._broken = False
        self._frozen: Any = None
        # Set by the tail thread once the data present at start is in the store. The tailer's own
        # ``caught_up`` turns true when the last poll returns, before its batch is fed: /readyz
        # answering from it could show metrics that still miss that batch.
        self._ready = False

        spec = read_spec(options.spec)
        self.web_config = _web_config(options.web_config)
        self.constant = constant_labels(options, spec)
        self.keeper: StateKeeper | None = None
        self._sections: dict[str, Any] = {}
        self._setup_reading(spec, clock)
        self.registry = self._build_registry()
        self.server = self._build_server()

    def _setup_reading(self, spec: Spec, clock: Callable[[], float]) -> None:
        """The store, the pipeline and the tailer of the one file, resumed from the state."""
        options = self.options
        self.store = Store(spec.definitions)
        self.pipeline = Pipeline(compile_spec(spec), self.store)
        _check_paths(options)
        self._fed = self._open_state()
        self.tailer = Tailer(
            options.file,
            start_at=options.start_at,
            resume=self._fed,
            max_line_bytes=options.max_line_bytes,
            rotated_globs=options.rotated_globs,
            input_format=options.input_format,
        )
        # Counts what the rotator deletes before a slower reader (CloudWatch's) has read it.
        self.ledger = RotationLedger(options.file, clock=clock, rotated_globs=options.rotated_globs)

    def _open_state(self) -> Position | None:
        """With ``--state``: open the state file, restore the metrics it holds and have it save
        them from now on; where reading resumes (None: as ``--start-at`` says)."""
        options = self.options
        if options.state is None:
            return None
        self.keeper = StateKeeper(
            StateFile(options.state, target=options.file), interval=options.state_interval
        )
        self._sections = self.keeper.load()
        resume = self._restore(self._sections.get(STATE_SECTION))
        self.keeper.provide(STATE_SECTION, self._state_section)
        return resume

    def _build_registry(self) -> Registry:
        """What /metrics shows, in its order: the store's metrics and self-metrics, serve's own,
        then client_python's process, platform and GC collectors."""
        registry = Registry(self.constant)
        registry.register(StoreCollector(self.store, constant=self.constant))
        registry.register(ServeCollector(self._serve_values))
        register_standard(registry)
        return registry

    def _build_server(self) -> MetricsServer:
        """The HTTP server, bound and with its certificates loaded, so a bad address or
        certificate fails at start, named, not at the first scrape."""
        options = self.options
        try:
            return MetricsServer(
                self.registry,
                listen=options.listen,
                ready=lambda: self._ready,
                web_config=self.web_config,
                telemetry_path=options.telemetry_path,
            )
        except WebConfigError as exc:
            raise StartupError(str(exc)) from exc
        except ValueError as exc:
            raise StartupError(str(exc)) from exc
        except OSError as exc:
            raise StartupError(
                f"--web.listen-address {options.listen}: cannot listen: {exc}"
            ) from exc

    # -- state --------------------------------------------------------------------------------

    def _restore(self, section: Any) -> Position | None:
        """Restore the saved values and return where to resume; on any doubt start fresh."""
        if section is None:
            return None
        try:
            if not isinstance(section, dict):
                raise ValueError("the metrics section is not an object")
            saved = section.get("position")
            position = None if saved is None else position_from_json(saved)
            with self.store.lock:
                self.store.restore(section["store"])
        except (KeyError, ValueError, StoreError) as exc:
            # Values without their position (or the reverse) would double-count or lose lines;
            # reading the file again from the start is exact as long as it is still there.
            log.warning(
                "state file not usable, starting fresh",
                extra={"path": self.options.state, "error": str(exc)},
            )
            assert self.keeper is not None
            self.keeper.state_file.load_failures += 1
            return None
        log.info(
            "resuming from the state file",
            extra={"path": self.options.state, "offset": position.offset if position else 0},
        )
        return position

    def _state_section(self) -> Any:
        with self._consistency:
            if self._broken:
                # Another component (the CloudWatch shipper) still saves its own section.
                return self._frozen
            position = self._fed
            return {
                "position": None if position is None else position_to_json(position),
                "store": self.store.dump(),
            }

    def attachment(self) -> Attachment:
        """What CloudWatch's shipping may follow and use of this service (docs/cloudwatch.md)."""
        keeper = self.keeper
        return Attachment(
            path=self.options.file,
            start_at=self.options.start_at,
            max_line_bytes=self.options.max_line_bytes,
            rotated_globs=self.options.rotated_globs,
            program=lambda: self.pipeline.program,
            state=None if keeper is None else StateSection(keeper, SECTION, self._sections),
            registry=self.registry,
            drain=self.drain,
        )

    # -- the tail loop ------------------------------------------------------------------------

    def _on_batch(self, batch: Batch) -> None:
        with self._consistency:
            self.pipeline.feed(batch)
            self._fed = batch.position
        self._drain_reader.read(batch.bytes_read)

    def _on_tick(self) -> None:
        # Every batch of the last poll has been fed by now, so the tailer's position is exact
        # (it moves without a batch when, e.g., a drained rotated file is let go).
        with self._consistency:
            self._fed = self.tailer.position
        self.ledger.check(self.tailer)
        if not self._ready and self.tailer.caught_up:
            self._ready = True
        self._after_tick(self.tailer.at_end)

    def _after_tick(self, at_end: bool) -> None:
        """What every tick does once the positions are noted: reload, save, drain."""
        if self._reload.is_set():
            self._reload.clear()
            self.reload_spec()
        if self.keeper is not None:
            self.keeper.maybe_save()
        if self.drain.requested and not self._drain_announced:
            # Said here, not in the signal handler, where logging's lock could deadlock.
            self._drain_announced = True
            log.info(
                "draining: reading to the end of the log before stopping",
                extra={"drain_quiet": self.drain.quiet, "drain_timeout": self.drain.timeout},
            )
        if self.drain.requested and self.drain_outcome is None:
            self.drain_outcome = self._drain_reader.outcome(at_end)
            if self.drain_outcome is not None:
                self._stop.set()

    def reload_spec(self) -> bool:
        """Load the spec again from its path; keep the old one (and say why) when invalid."""
        try:
            spec = read_spec(self.options.spec)
        except StartupError as exc:
            self.reloads["failure"] += 1
            log.error("spec reload failed, keeping the current spec", extra={"error": str(exc)})
            return False
        try:
            # A reloaded metric may now use a --label's or a capture's name.
            constant_labels(self.options, spec)
        except StartupError as exc:
            self.reloads["failure"] += 1
            log.error("spec reload failed, keeping the current spec", extra={"error": str(exc)})
            return False
        with self._consistency:
            self._reload_program(compile_spec(spec))
        self.reloads["success"] += 1
        log.info("spec reloaded", extra={"spec": spec.source, "metrics": len(spec.metrics)})
        return True

    def _serve_values(self) -> ServeValues:
        keeper = self.keeper
        return ServeValues(
            lag_bytes=float(self.tailer.lag_bytes()),
            io_errors=float(self.tailer.io_errors),
            spec_reloads=self.reloads,
            web_config_reloads=self.server.web_config_reloads,
            http_requests=self.server.http_requests,
            http_connection_errors=float(self.server.http_connection_errors),
            tls_handshake_failures=self.server.tls_handshake_failures,
            rotation_lost=dict(self.ledger.lost),
            state=None
            if keeper is None
            else StateValues(
                saves=keeper.saves_total,
                load_failures=float(keeper.state_file.load_failures),
                resume_misses=float(self.tailer.resume_misses),
                resume_lost_bytes=float(self.tailer.resume_lost_bytes),
            ),
        )

    # -- lifecycle ----------------------------------------------------------------------------

    def _warn_exposure(self) -> None:
        """Say so when the settings expose more than an operator may think."""
        host = self.server.address[0]
        config = self.web_config
        if config is not None and config.auth_required and config.tls is None:
            log.warning("basic auth without TLS: passwords cross the network in clear text")
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:  # a host name: assume it reaches beyond this host
            loopback = False
        if not loopback and (config is None or not config.users):
            log.warning(
                "serving metrics beyond this host without authentication",
                extra={"listen": self.options.listen},
            )

    def request_stop(self) -> None:
        """Make ``run`` drain the log, save the state and return: the first request reads on
        until the log is quiet (or the drain timeout), a second one stops at once. Safe from any
        thread, but not from a signal handler: waking the tail loop takes a lock the main thread
        may hold (the entry point relays signals to a thread, ``log_exporter.signals``)."""
        self.drain.request()
        if self.drain.forced and self.drain_outcome is None:
            self.drain_outcome = "forced"
            self._stop.set()
        self._wake_reader()

    def request_reload(self) -> None:
        """Make ``run`` reload the spec between two batches; safe from any thread (not from a
        signal handler, as ``request_stop``)."""
        self._reload.set()
        self._wake_reader()

    def run(self) -> int:
        """Serve until ``request_stop``; returns the exit code."""
        # Before /healthz answers: a generation rotated once the exporter is seen running must be
        # read, not taken for history present at start.
        self._start_reader()
        self.server.start()
        self._warn_exposure()
        log.info(
            "serving",
            extra={
                "url": self.server.url,
                "file": self.options.file,
                "spec": self.options.spec or "built in",
                "state": self.options.state,
                "version": buildinfo.version(),
                "revision": buildinfo.revision(),
                "python": buildinfo.python_version(),
            },
        )
        code = EXIT_OK
        try:
            self._follow()
        except Exception:
            # A half-applied batch must not be saved with either position: keep the last save.
            if self.keeper is not None:
                with self._consistency:
                    on_disk = self.keeper.state_file.load() or {}
                    self._frozen = on_disk.get(STATE_SECTION)
                    self._broken = True
            log.exception("stopped by an unexpected error; the state file keeps its last save")
            code = EXIT_ERROR
        finally:
            if self.keeper is not None and code == EXIT_OK:
                self.keeper.save()
            self.server.shutdown()
            self._close_reader()
        if code == EXIT_OK and self.drain_outcome in ("forced", "timeout"):
            # Counted after the save, so a slow count never delays it; the lines are counted
            # by reading the rest of the log, which is local and quick.
            self.unread_lines = self._count_unread()
        return code

    # -- what the subclass for many files replaces ---------------------------------------------

    def _follow(self) -> None:
        """The tail loop, until stopped."""
        self.tailer.run(self._on_batch, self._stop, on_tick=self._on_tick)

    def _reload_program(self, program: Program) -> None:
        self.pipeline.reload(program)

    def _start_reader(self) -> None:
        self.tailer.start()

    def _close_reader(self) -> None:
        self.tailer.close()

    def _wake_reader(self) -> None:
        self.tailer.wake()

    def _count_unread(self) -> int:
        return self._unread_after(self.options.file, self._fed)

    def _unread_after(self, path: str, fed: Position | None) -> int:
        """The lines of ``path`` (and its rotated generations) after ``fed``, read as serve
        reads them."""
        options = self.options
        return count_lines_after(
            path,
            fed,
            start_at=options.start_at,
            max_line_bytes=options.max_line_bytes,
            rotated_globs=options.rotated_globs,
            input_format=options.input_format,
        )


class ManyService(Service):
    """serve over many files: several ``--file`` or a pattern, each file followed by its own
    tailer, one store per label set (``log_exporter.manyfiles``); no CloudWatch shipping."""

    def _setup_reading(self, spec: Spec, clock: Callable[[], float]) -> None:
        options = self.options
        self.files = ManyFiles(
            _patterns(options),
            compile_spec(spec),
            consistency=self._consistency,
            start_at=options.start_at,
            max_line_bytes=options.max_line_bytes,
            rotated_globs=options.rotated_globs,
            grace=options.grace_period,
            clock=clock,
            input_format=options.input_format,
        )
        _check_state_path(options)
        if options.state is None:
            return
        self.keeper = StateKeeper(
            StateFile(options.state, target=_target(options)), interval=options.state_interval
        )
        self._sections = self.keeper.load()
        section = self._sections.get(FILES_SECTION)
        if section is not None:
            try:
                self.files.restore(section)
            except restore_error_types() as exc:
                log.warning(
                    "state file not usable, starting fresh",
                    extra={"path": options.state, "error": str(exc)},
                )
                self.keeper.state_file.load_failures += 1
            else:
                log.info(
                    "resuming from the state file",
                    extra={"path": options.state, "files": len(section.get("files", ()))},
                )
        self.keeper.provide(FILES_SECTION, self._state_section)

    def _build_registry(self) -> Registry:
        registry = Registry(self.constant)
        files = self.files
        registry.register(
            StoreSetCollector(
                lambda: files.view,
                lambda: files.program.spec.definitions,
                constant=self.constant,
            )
        )
        registry.register(ServeCollector(self._serve_values))
        register_standard(registry)
        return registry

    def _state_section(self) -> Any:
        with self._consistency:
            if self._broken:
                return self._frozen
            return self.files.section()

    def attachment(self) -> Attachment:
        raise StartupError(CLOUDWATCH_MANY)

    def _on_file_batch(self, followed: Followed, batch: Batch) -> None:
        with self._consistency:
            self.files.feed(followed, batch)
        self._drain_reader.read(batch.bytes_read)

    def _on_tick(self) -> None:
        with self._consistency:
            self.files.note_positions()
        if not self._ready and self.files.caught_up:
            self._ready = True
        self._after_tick(self.files.at_end)

    def _serve_values(self) -> ServeValues:
        keeper, files = self.keeper, self.files
        return ServeValues(
            lag_bytes=float(files.lag_bytes()),
            io_errors=float(files.io_errors),
            spec_reloads=self.reloads,
            web_config_reloads=self.server.web_config_reloads,
            http_requests=self.server.http_requests,
            http_connection_errors=float(self.server.http_connection_errors),
            tls_handshake_failures=self.server.tls_handshake_failures,
            state=None
            if keeper is None
            else StateValues(
                saves=keeper.saves_total,
                load_failures=float(keeper.state_file.load_failures),
                resume_misses=float(files.resume_misses),
                resume_lost_bytes=float(files.resume_lost_bytes),
            ),
        )

    def _follow(self) -> None:
        self.files.run(self._on_file_batch, self._stop, on_tick=self._on_tick)

    def _count_unread(self) -> int:
        return sum(self._unread_after(path, fed) for path, fed in self.files.positions())

    def _reload_program(self, program: Program) -> None:
        self.files.reload(program)

    def _start_reader(self) -> None:
        self.files.start()

    def _close_reader(self) -> None:
        self.files.close()

    def _wake_reader(self) -> None:
        self.files.wake()


CLOUDWATCH_MANY = (
    "--cloudwatch / CLOUDWATCH_ENABLED: CloudWatch shipping follows one file; it cannot be "
    "used with several --file or a --file pattern (docs/node.md)"
)


def service_for(options: ServeOptions, *, clock: Callable[[], float] = time.monotonic) -> Service:
    """The one-file ``Service`` for one plain ``--file`` path (today's exporter, its state file
    unchanged), else the ``ManyService``."""
    patterns = _patterns(options)
    if len(patterns) == 1 and patterns[0].literal:
        return Service(options, clock=clock)
    return ManyService(options, clock=clock)


def _patterns(options: ServeOptions) -> list[FilePattern]:
    try:
        return [parse_pattern(text) for text in options.patterns]
    except PatternError as exc:
        raise StartupError(str(exc)) from exc


def constant_labels(options: ServeOptions, spec: Spec) -> Pairs:
    """The ``--label`` pairs, once no label name has two sources (a metric's label, a capture,
    another ``--label``); ``StartupError`` naming both otherwise."""
    try:
        pairs = [parse_label(item) for item in options.labels]
        labels = check_label_names(
            pairs,
            _patterns(options),
            selfmetrics.taken_label_names(
                spec.definitions, selfmetrics.SELF_METRICS, standard=True
            ),
        )
    except PatternError as exc:
        raise StartupError(str(exc)) from exc
    return tuple(labels.items())


def _target(options: ServeOptions) -> str:
    """What the state file says it belongs to: every --file, in order."""
    return " ".join(os.path.abspath(p) for p in options.patterns)


def _check_state_path(options: ServeOptions) -> None:
    if options.state is None:
        return
    state_dir = Path(options.state).absolute().parent
    if not state_dir.is_dir():
        raise StartupError(f"--state {options.state}: directory {state_dir} does not exist")
    for pattern in _patterns(options):
        if pattern.match(os.path.abspath(options.state)) is not None or (
            pattern.match(options.state) is not None
        ):
            raise StartupError(
                f"--state {options.state}: matches --file {pattern.text}; the state file "
                "would be read as a log"
            )


def _check_paths(options: ServeOptions) -> None:
    """Refuse a ``--file`` or ``--state`` that would make serving pointless; ``StartupError``."""
    if os.path.exists(options.file) and not os.path.isfile(options.file):
        # The tailer waits for a regular file and treats anything else as not there yet, so
        # `--file logs/` would serve empty metrics, ready, with nothing in the log to say why.
        raise StartupError(f"--file {options.file}: not a regular file (a directory?)")
    if options.state is None:
        return
    state_dir = Path(options.state).absolute().parent
    if not state_dir.is_dir():
        # Most likely a typo; failing now beats a warning every few seconds forever.
        raise StartupError(f"--state {options.state}: directory {state_dir} does not exist")
    _check_state_is_no_sibling(options.state, options.file, options.rotated_globs)


def _check_state_is_no_sibling(state: str, file: str, globs: tuple[str, ...] = ()) -> None:
    """Refuse a state file the tailer would take for a rotated generation of the log.

    The tailer reads every unknown file of the log's directory named as a rotated generation
    (``app.jsonl.1``, ``app.jsonl-2026``, or a ``--rotated-glob`` match). The state file is
    replaced on every save, so it would be a new "generation" at each rotation, its JSON counted
    as a log line.
    """
    state_path, log_path = os.path.abspath(state), os.path.abspath(file)
    # The directories' real paths: a symlinked alias of the log's directory is the same one.
    if os.path.realpath(os.path.dirname(state_path)) != os.path.realpath(os.path.dirname(log_path)):
        return
    state_name, log_name = os.path.basename(state_path), os.path.basename(log_path)
    if state_name.startswith(log_name):
        raise StartupError(
            f"--state {state}: in the log's directory, a name starting with "
            f"{log_name!r} is taken for a rotated log; "
            "choose another name or directory"
        )
    if is_rotated_name(state_name, log_name, globs):
        raise StartupError(
            f"--state {state}: in the log's directory, its name is taken for a rotated log "
            "(it matches a rotator's name or --rotated-glob); choose another name or directory"
        )


def _web_config(path: str | None) -> WebConfig | None:
    if path is None:
        return None
    try:
        return load_web_config(path)
    except WebConfigError as exc:
        raise StartupError(str(exc)) from exc


def main(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    handle_signals: Callable[[Service], None],
) -> int:
    """``log-exporter serve`` from its parsed flags: check them, build the service and (when
    enabled) CloudWatch's shipping, let ``handle_signals`` wire the process's signals to the
    service's requests, run until stopped; the exit code."""
    level, fmt = str(args.log_level).lower(), str(args.log_format)
    logs.configure(
        level if level in logs.LEVELS else "info", fmt=fmt if fmt in logs.FORMATS else "json"
    )
    for alias, flag in settings.deprecated_flags(args):
        log.warning(f"{alias} is deprecated, use {flag}", extra={"flag": alias, "use": flag})
    try:
        settings.check(args, settings.SERVE)
        files = tuple(args.file)
        service = service_for(
            ServeOptions(
                file=files[0] if files else "",
                files=files,
                labels=tuple(args.label or ()),
                grace_period=args.file_grace_period,
                listen=args.listen,
                spec=args.spec,
                web_config=args.web_config,
                start_at=args.start_at,
                state=args.state,
                state_interval=args.state_interval,
                max_line_bytes=args.max_line_bytes,
                telemetry_path=args.telemetry_path,
                drain_quiet=args.drain_quiet,
                drain_timeout=args.drain_timeout,
                rotated_globs=settings.globs(args.rotated_glob),
                input_format=args.input_format,
            )
        )
        # CloudWatch shipping, when enabled: its own thread, tailer and cursor (docs/cloudwatch.md).
        cloudwatch = load_cloudwatch(environ, args)
        shipping = None
        if isinstance(service, ManyService):
            if cloudwatch.enabled:
                raise StartupError(CLOUDWATCH_MANY)
        else:
            if cloudwatch.enabled and args.input_format == "cri":
                # Its shipper sends the file's lines as they are: CRI framing would reach
                # CloudWatch.
                raise StartupError("--input-format cri: CloudWatch shipping reads JSON logs only")
            shipping = start_for_serve(cloudwatch, service.attachment())
        if shipping is not None:
            service.ledger.watch("cloudwatch", shipping.progress)
    except (settings.SettingError, StartupError, ConfigError) as exc:
        # Each names the flag, variable or file at fault: said once, in the log, no traceback.
        log.error(str(exc))
        return EXIT_CONFIG
    unshipped = unsent = 0
    try:
        handle_signals(service)
        code = service.run()
    finally:
        # The shipper drains in its own thread meanwhile; this waits for it until the drain's
        # deadline, then stops it and counts what it left.
        if shipping is not None:
            unshipped, unsent = shipping.finish()
    return _stopped(service, code, unshipped, unsent)


def _stopped(service: Service, code: int, unshipped: int, unsent: int = 0) -> int:
    """Say how the drain ended; the exit code (EXIT_DRAIN_INCOMPLETE when lines were left)."""
    # None when the loop ended otherwise (an unexpected error); "forced" when the second
    # request came while shipping still drained.
    outcome = "forced" if service.drain.forced else service.drain_outcome
    if outcome == "quiet" and (unshipped or unsent):
        outcome = "timeout"
    unread = service.unread_lines
    fields = {
        "drain": outcome,
        "unread_lines": unread,
        "unshipped_lines": unshipped,
        "unsent_metric_intervals": unsent,
    }
    if code == EXIT_OK and (unread or unshipped or unsent):
        code = EXIT_DRAIN_INCOMPLETE
        log.warning(
            "stopped before the end of the log (%s): %d lines not read into the metrics, "
            "%d lines not shipped to CloudWatch, %d metric intervals not sent",
            outcome,
            unread,
            unshipped,
            unsent,
            extra={**fields, "exit_code": code},
        )
        return code
    log.info("stopped", extra={**fields, "exit_code": code})
    return code
