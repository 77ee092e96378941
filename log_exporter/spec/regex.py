"""Regular expressions of a spec's ``match``, matched in linear time by RE2.

Log values are written by whoever sends requests, so a backtracking engine (the standard
library's ``re``) could be made to spend exponential time on one line; RE2 cannot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["RegexError", "compile_regex"]


class RegexError(ValueError):
    """A pattern RE2 refuses (backreferences and lookarounds, which need backtracking, too)."""


def compile_regex(pattern: str) -> Callable[[str], Any]:
    """The ``search`` of ``pattern`` (unanchored, as ``re.search``); raises RegexError."""
    # Imported here: RE2 and its libraries cost memory that a spec without regexes never needs.
    import re2

    options = re2.Options()
    options.log_errors = False  # the error is ours to report, not RE2's on stderr
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as exc:
        text = exc.args[0] if exc.args else exc
        raise RegexError(text.decode() if isinstance(text, bytes) else str(text)) from None
    return compiled.search  # type: ignore[no-any-return]
