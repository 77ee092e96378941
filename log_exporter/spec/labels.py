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
        # orjson reads an integer beyond 64 bits as a double, which is no label value; msgspec
        # (the pipeline's typed events) and the standard library keep it exact: "invalid" all
        # the same, whichever decoded the line (and no text of thousands of digits is made).
        return str(v) if -9223372036854775808 <= v <= 18446744073709551615 else "invalid"
    return "invalid"
