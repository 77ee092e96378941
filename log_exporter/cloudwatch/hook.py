"""The two calls the CLI makes: start shipping beside ``serve``, or ship a ``replay``.

Kept apart from the CLI so its wiring stays one line per subcommand and everything CloudWatch
lives in this package.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from log_exporter.cloudwatch.config import INSTALL_HINT, ConfigError, load
from log_exporter.limits import EXIT_CONFIG, EXIT_ERROR, EXIT_OK

if TYPE_CHECKING:
    from log_exporter.cloudwatch.service import Shipping
    from log_exporter.serve import Service
    from log_exporter.spec import Spec

log = logging.getLogger(__name__)


def start_for_serve(args: argparse.Namespace, service: Service) -> Shipping | None:
    """Start shipping when enabled (None otherwise); StartupError for bad settings or no boto3."""
    from log_exporter.serve import StartupError

    try:
        config = load(os.environ, args)
    except ConfigError as exc:
        raise StartupError(str(exc)) from exc
    if not config.enabled:
        log.info(
            "CloudWatch shipping is off; to enable it set CLOUDWATCH_ENABLED=true (or --cloudwatch)"
            f" and {INSTALL_HINT}"
        )
        return None
    from log_exporter.cloudwatch.service import start

    try:
        return start(
            config,
            path=service.options.file,
            program=lambda: service.pipeline.program,
            keeper=service.keeper,
            sections=service.sections,
            registry=service.registry,
            start_at=service.options.start_at,
            max_line_bytes=service.options.max_line_bytes,
        )
    except ConfigError as exc:
        raise StartupError(str(exc)) from exc


def run_replay(args: argparse.Namespace, spec: Spec) -> int | None:
    """With ``--cloudwatch``, ship the files and print the summary; None without the flag.

    Only the flag turns it on: a CLOUDWATCH_ENABLED=true meant for ``serve`` must not make an
    ad-hoc replay write to CloudWatch.
    """
    if getattr(args, "cloudwatch_enabled", None) is None:
        return None
    from log_exporter.cloudwatch.service import format_summary, replay
    from log_exporter.sources import ReplayError
    from log_exporter.spec import compile_spec

    try:
        config = load(os.environ, args)
        summary = replay(config, args.files, compile_spec(spec))
    except (ConfigError, ReplayError) as exc:
        print(f"log-exporter replay: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(format_summary(summary), file=sys.stderr)
    # As plain replay: 1 when a file was damaged (what could be read was still shipped).
    return EXIT_ERROR if summary.damaged else EXIT_OK
