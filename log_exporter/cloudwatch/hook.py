"""How CloudWatch attaches to the exporter: what ``serve`` hands it to ship beside it, and the one
call ``replay --cloudwatch`` makes.

Free of boto3 and of serve: serve imports this always, the shipping machinery
(:mod:`log_exporter.cloudwatch.service`, then boto3) only once shipping is enabled.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, Protocol

from log_exporter.cloudwatch.config import INSTALL_HINT, CloudWatchConfig, ConfigError
from log_exporter.limits import EXIT_CONFIG, EXIT_ERROR, EXIT_OK

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from log_exporter.cloudwatch.shipper import SectionStore
    from log_exporter.drain import Drain
    from log_exporter.sources.tail.tailer import TailProgress
    from log_exporter.spec import Program, Spec

log = logging.getLogger(__name__)

# CloudWatch's section of serve's state file (docs/tailing.md).
SECTION: Final = "cloudwatch"


@dataclass(frozen=True, slots=True)
class Attachment:
    """What serve hands CloudWatch: the log to follow, how, and the parts of serve it may use."""

    path: str
    start_at: Literal["beginning", "end"]
    max_line_bytes: int
    program: Callable[[], Program]  # serve's current program, so shipping follows spec reloads
    state: SectionStore | None  # the SECTION of serve's state file; None without --state
    registry: CollectorRegistry  # where CloudWatch registers its self-metrics collector
    drain: Drain | None = None  # serve's shutdown drain, which shipping follows too
    rotated_globs: tuple[str, ...] = ()  # other rotators' names of the log's generations


class Shipping(Protocol):
    """What serve keeps of running shipping: stopping it, which saves its cursor."""

    def stop(self) -> None: ...

    def progress(self) -> TailProgress:
        """Its tailer's progress, for serve to count what rotation deletes before it is read."""
        ...

    def finish(self) -> tuple[int, int]:
        """Wait for the drain to ship everything (until its deadline), stop, save; the lines
        and the metric intervals left unshipped."""
        ...


def _boto3_installed() -> bool:
    try:
        return importlib.util.find_spec("boto3") is not None
    except ImportError:  # an import hook that refuses it
        return False


def start_for_serve(config: CloudWatchConfig, attachment: Attachment) -> Shipping | None:
    """Start shipping beside serve when ``config`` enables it, or say how to and return None.

    Raises MissingExtraError (a ConfigError) when boto3 is not installed.
    """
    if not config.enabled:
        enable = "to enable it set CLOUDWATCH_ENABLED=true (or --cloudwatch)"
        # The install step only where it is still missing: shown beside an installed boto3 it
        # sends the operator to install what they have.
        missing = not _boto3_installed()
        log.info(
            f"CloudWatch shipping is off; {enable}" + (f" and {INSTALL_HINT}" if missing else "")
        )
        return None
    from log_exporter.cloudwatch.service import start

    return start(
        config,
        path=attachment.path,
        program=attachment.program,
        state=attachment.state,
        registry=attachment.registry,
        start_at=attachment.start_at,
        max_line_bytes=attachment.max_line_bytes,
        drain=attachment.drain,
        rotated_globs=attachment.rotated_globs,
    )


def ship_replay(config: Callable[[], CloudWatchConfig], files: Sequence[str], spec: Spec) -> int:
    """``replay --cloudwatch``: ship ``files`` with the config ``config()`` loads, print the
    summary, and give the exit code (2 for a bad config or file, 1 when a file was damaged)."""
    from log_exporter.cloudwatch.service import format_summary, replay
    from log_exporter.sources.files import ReplayError
    from log_exporter.spec import compile_spec

    try:
        summary = replay(config(), files, compile_spec(spec))
    except (ConfigError, ReplayError) as exc:
        print(f"log-exporter replay: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(format_summary(summary), file=sys.stderr)
    # As plain replay: 1 when a file was damaged (what could be read was still shipped).
    return EXIT_ERROR if summary.damaged else EXIT_OK
