"""How the exposition text writes a label value and a number, defined once for the encoder and
the store's families, which write lines of the same page."""

from __future__ import annotations

import math

__all__ = ["escape", "go_number"]

_INF = math.inf


def go_number(d: float) -> str:
    """``prometheus_client.utils.floatToGoString``, the same branches in a cheaper order."""
    d = float(d)
    s = repr(d)
    if d - d == 0.0:  # finite
        if d > 0:
            dot = s.find(".")
            if dot > 6:
                # Go switches to exponents sooner than Python.
                mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
                return f"{mantissa}e+{dot - 1:02d}"
        return s
    if d == _INF:
        return "+Inf"
    if d == -_INF:
        return "-Inf"
    return "NaN"


def escape(text: str) -> str:
    """A label value (or help text) with backslash, newline and double quote escaped."""
    # Most label values hold none of the three characters; three scans beat three copies.
    if "\\" in text or "\n" in text or '"' in text:
        return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return text
