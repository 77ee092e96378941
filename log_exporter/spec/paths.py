"""Field paths: how a spec names a field of a nested event, and how generated code reads one.

``a.b.c`` descends objects; an all-digit segment indexes an array (``headers.User-Agent.0``); a
segment holding a dot or a quote is quoted (``labels."app.kubernetes.io/name"``, with ``\\"``
and ``\\\\`` inside). A path through a missing key, a value that is not an object (or, for an
index, not an array), or past an array's end reads as missing, as a missing top-level field does.
An all-digit segment on an object reads the key of those digits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Path", "parse_path", "path_expr", "path_text", "read_path"]

# The segments of a path; a one-segment path is a top-level field, as before paths existed.
Path = tuple[str, ...]


def _quoted(text: str, i: int) -> tuple[str, int]:
    """The quoted segment starting after its opening quote at ``i``, and where it ends."""
    n = len(text)
    chars: list[str] = []
    while i < n and text[i] != '"':
        if text[i] == "\\":
            if i + 1 >= n or text[i + 1] not in '"\\':
                raise ValueError(
                    f'path {text!r}: only \\" and \\\\ are escapes in a quoted segment'
                )
            i += 1
        chars.append(text[i])
        i += 1
    if i >= n:
        raise ValueError(f"path {text!r}: a quoted segment is not closed")
    i += 1
    if i < n and text[i] != ".":
        raise ValueError(f"path {text!r}: a quoted segment must be followed by '.'")
    return "".join(chars), i


def parse_path(text: str) -> Path:
    """The segments of ``text``; raises ValueError saying what is wrong with it."""
    if not text:
        raise ValueError("an empty path names no field")
    segments: list[str] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == '"':
            segment, i = _quoted(text, i + 1)
        else:
            end = text.find(".", i)
            end = n if end < 0 else end
            segment = text[i:end]
            if not segment:
                raise ValueError(
                    f"path {text!r}: an empty segment (quote a key that holds a dot: 'a.\"b.c\"')"
                )
            if '"' in segment:
                raise ValueError(f"path {text!r}: a quote inside segment {segment!r}")
            i = end
        segments.append(segment)
        if i >= n:
            return tuple(segments)
        i += 1  # the dot
        if i >= n:
            raise ValueError(f"path {text!r}: ends with '.'")


def path_text(path: Path) -> str:
    """The path as a spec writes it (segments quoted where needed)."""
    return ".".join(
        s
        if s and "." not in s and '"' not in s
        else '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
        for s in path
    )


def _index(segment: str) -> int | None:
    return int(segment) if segment.isascii() and segment.isdigit() else None


def read_path(event: Any, path: Path) -> Any:
    """The value at ``path`` in ``event``, None when it is missing."""
    v = event
    for segment in path:
        t = type(v)
        if t is dict:
            v = v.get(segment)
        elif t is list:
            i = _index(segment)
            if i is None or i >= len(v):
                return None
            v = v[i]
        else:
            return None
    return v


def path_expr(path: Path, root: str, tmp: str, fields: Mapping[str, str] | None = None) -> str:
    """A Python expression reading ``path`` from the dict in variable ``root``: nested gets,
    inline, with the walrus variable ``tmp`` (so no per-event interpretation of the path).

    With ``fields`` (top-level key -> attribute), ``root`` is a typed event
    (``log_exporter.spec.typed``) and the top-level key is its attribute, None when missing.
    """
    expr = f"{root}.{fields[path[0]]}" if fields is not None else f"{root}.get({path[0]!r})"
    for segment in path[1:]:
        i = _index(segment)
        step = f"{tmp}.get({segment!r}) if type({tmp} := {expr}) is dict else "
        if i is None:
            expr = f"({step}None)"
        else:
            expr = f"({step}({tmp}[{i}] if type({tmp}) is list and len({tmp}) > {i} else None))"
    return expr


def fast_expr(path: Path, root: str) -> str | None:
    """``root[a][b]...``: the fast read of a path without indexes, raising KeyError or TypeError
    where ``path_expr`` gives None (and where it gives a value, the same value); None for a path
    with an index (a subscript would index a string too)."""
    if any(_index(s) is not None for s in path[1:]):
        return None
    return root + "".join(f"[{s!r}]" for s in path)
