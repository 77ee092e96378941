"""``sustainbot serve`` (gunicorn, several workers) and ``sustainbot token`` (mint a JWT).

Every parser, a subcommand's too, is a ``Parser``: no abbreviated flags, ``--version``, and help
showing each option's default.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

# The two programs ship in one distribution; its build facts (version, revision) are read in one
# place, which knows neither program.
from log_exporter.buildinfo import add_version_flag
from sustainbot.auth import NoKeyConfiguredError, mint_token
from sustainbot.governance import ROLES
from sustainbot.settings import Settings, SettingsError, load_settings


def _port(text: str) -> int:
    # Checked here so a typo is a usage message, not a traceback from gunicorn's bind().
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return port


class Parser(argparse.ArgumentParser):
    """A parser of this command line; argparse makes subcommands' parsers of the same class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # An abbreviation that works today breaks silently once a second flag starts the same way.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        add_version_flag(self, "sustainbot")


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="sustainbot",
        description=__doc__.splitlines()[0],
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the service on gunicorn")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind [default 127.0.0.1]")
    serve.add_argument(
        "--port", type=_port, default=5000, help="port, 0 for any free one [default 5000]"
    )
    serve.add_argument("--workers", type=int, default=2, help="worker processes [default 2]")
    # Kept so that existing command lines still work: the gevent worker (sustainbot.serving)
    # serves each connection in a greenlet, so there is no thread count to set any more.
    serve.add_argument(
        "--threads",
        type=int,
        default=4,
        help="accepted for compatibility; has no effect [default 4]",
    )

    token = commands.add_parser("token", help="print a signed JWT for local use")
    token.add_argument(
        "--actor", required=True, help="the person's name (token subject) [required]"
    )
    token.add_argument("--role", required=True, choices=ROLES, help="the role [required]")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds [default 3600]")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"sustainbot: invalid setting {exc}", file=sys.stderr)
        return 2
    if args.command == "token":
        return _token(settings, args)
    return _serve(settings, args)


def _token(settings: Settings, args: argparse.Namespace) -> int:
    try:
        print(mint_token(settings, actor=args.actor, role=args.role, ttl=args.ttl))
    except NoKeyConfiguredError as exc:
        print(f"sustainbot: cannot mint a token: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"sustainbot: {exc}", file=sys.stderr)
        return 2
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.workers < 1 or args.threads < 1:
        print("sustainbot: --workers and --threads must be at least 1", file=sys.stderr)
        return 2
    # Imported here so `sustainbot token` does not pay for Flask and gunicorn.
    from sustainbot.app import create_app
    from sustainbot.serving import gunicorn_options, lifecycle_hooks, run_gunicorn

    try:
        app = create_app(settings)
    except NoKeyConfiguredError as exc:
        print(f"sustainbot: refusing to start: {exc}", file=sys.stderr)
        return 2
    writer = app.extensions["sustainbot"].writer
    if not writer.status.writable:
        print(
            f"sustainbot: warning: cannot write events to {writer.path} "
            f"({writer.status.error}); execute will answer 503 until it can",
            file=sys.stderr,
        )
    options = gunicorn_options(
        f"{args.host}:{args.port}", args.workers, when_ready=_announce, **lifecycle_hooks(writer)
    )
    run_gunicorn(app, options)
    return 0


def _announce(server: Any) -> None:
    # Printed once the sockets are bound, so scripts (and tests) using --port 0 learn the port
    # without racing for a free one.
    for listener in server.LISTENERS:
        print(f"sustainbot: listening on {listener}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:] if len(sys.argv) > 1 else None))
