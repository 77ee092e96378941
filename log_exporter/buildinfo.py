"""What this build is (version, revision, Python): ``--version`` and ``log_exporter_build_info``.

The revision is the git commit the code was built from, found in this order:

1. ``REVISION`` in this package, written when a wheel is built (``build_revision.py`` at the
   project root: ``$SOURCE_REVISION`` if set, as the Docker build passes it, else the checkout's
   ``git rev-parse HEAD``). An installed wheel and the Docker image answer from it.
2. The commit pip recorded for a ``pip install git+URL@REF`` (PEP 610 ``direct_url.json``).
3. A source checkout (an editable install, or code run from the tree): its ``git rev-parse HEAD``,
   asked once per process.
4. ``unknown`` when none of these knows.

Both programs (``log-exporter`` and ``sustainbot``) ship in one distribution and print their
version from here; nothing in this module knows either program.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Final

DISTRIBUTION: Final = "sustainbot-observability"
UNKNOWN: Final = "unknown"
_PACKAGE = Path(__file__).resolve().parent
_HEX = frozenset("0123456789abcdef")


def version() -> str:
    """The distribution's version, from its metadata (the package's own when not installed)."""
    # importlib.metadata (with the email package it parses with), platform and subprocess are
    # imported where they are used, not with this module: every command line imports it for
    # ``--version``, which most never give.
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        from log_exporter import __version__

        return __version__


@functools.cache
def revision() -> str:
    """The git commit this code was built from, or ``unknown`` (see the module's docstring)."""
    return _recorded() or _pip_recorded() or _checkout() or UNKNOWN


def python_version() -> str:
    import platform

    return platform.python_version()


def version_text(program: str) -> str:
    """What ``PROGRAM --version`` prints, in the shape of the Prometheus tools' version output."""
    import platform

    return (
        f"{program}, version {version()} (revision: {revision()})\n"
        f"  python version:   {python_version()} ({platform.python_implementation()})\n"
        f"  platform:         {platform.system().lower()}/{platform.machine()}"
    )


class VersionAction(argparse.Action):
    """``--version``: print ``version_text(program)`` on stdout and exit 0.

    The text is made when the flag is given, not when the parser is: finding the revision may
    ask git, which no other command line should pay for.
    """

    def __init__(
        self,
        option_strings: list[str],
        program: str,
        dest: str = argparse.SUPPRESS,
        default: str = argparse.SUPPRESS,
        help: str | None = None,
    ) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)
        self.program = program

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(version_text(self.program), file=sys.stdout, flush=True)
        parser.exit(0)


def add_version_flag(parser: argparse.ArgumentParser, program: str) -> None:
    parser.add_argument(
        "--version",
        action=VersionAction,
        program=program,
        help="print the version, revision and Python version, and exit",
    )


def _commit(text: str | None) -> str | None:
    value = (text or "").strip().lower()
    return value if 7 <= len(value) <= 64 and set(value) <= _HEX else None


def _recorded() -> str | None:
    try:
        return _commit((_PACKAGE / "REVISION").read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError):
        return None


def _pip_recorded() -> str | None:
    import json
    from importlib import metadata

    try:
        text = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    try:
        vcs = json.loads(text or "{}").get("vcs_info", {})
    except (ValueError, AttributeError):
        return None
    return _commit(vcs.get("commit_id")) if isinstance(vcs, dict) else None


def _checkout() -> str | None:
    root = _PACKAGE.parent
    if not (root / ".git").exists():
        # An installed copy in site-packages: git would find whatever repository is around it.
        return None
    import subprocess

    try:
        result = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return _commit(result.stdout) if result.returncode == 0 else None
