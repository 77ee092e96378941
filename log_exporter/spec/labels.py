"""The event contract's conversion of a field's value to label text (labels, matches, dims)."""

from __future__ import annotations

from typing import Any

__all__ = ["convert_label"]


def convert_label(v: Any) -> str:
    """An event field's value as label text: the event contract's conversion rules."""
    t = type(v)
    if t is str:
        return v  # type: ignore[no-any-return]
    if v is None:
        return "unknown"
    if t is bool:
        return "true" if v else "false"
    if t is int:
        try:
            return str(v)
        except ValueError:
            # Beyond Python's int-to-text digit limit; no JSON parser here produces one.
            return "invalid"
    return "invalid"
