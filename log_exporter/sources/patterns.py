"""``--file`` patterns and ``--label`` pairs: the files a pattern names, the labels a path gives.

A pattern is a glob (``*``, ``?`` and ``[...]`` within one path segment, as the shell's) in which
``{name}`` matches like ``*`` and captures the text it matched as the label ``name``:
``/var/log/pods/{namespace}_{pod}_{_}/sustainbot/*.log``. A capture named ``_`` matches without
becoming a label (a pod's uid, which no dashboard selects on). Where captures could split a
segment in more than one way, the earlier capture takes the shortest text (Kubernetes' namespace,
pod and uid hold no ``_``, so their split is unique).

Checked once at start: a pattern that cannot be read, a label name Prometheus refuses, a name
given twice, or one that a metric already uses as a label, is a ``PatternError`` naming both
sources. Does no I/O but ``FilePattern.expand``.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DROP",
    "FilePattern",
    "PatternError",
    "check_label_names",
    "parse_label",
    "parse_pattern",
]

# The capture that matches without becoming a label.
DROP: Final = "_"
_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_GLOB_MAGIC: Final = re.compile(r"[*?\[]")


class PatternError(ValueError):
    """A ``--file`` pattern or ``--label`` that makes starting pointless; the message names it."""


@dataclass(frozen=True, slots=True)
class FilePattern:
    """One ``--file``: its text, the glob the file system is searched with, and its captures."""

    text: str
    glob: str  # every {name} replaced by *
    captures: tuple[str, ...]  # every capture's name in order, DROP included
    regex: re.Pattern[str]  # the whole path, one group per capture

    @property
    def labels(self) -> tuple[str, ...]:
        """The label names the pattern gives, in order (the ``_`` captures left out)."""
        return tuple(name for name in self.captures if name != DROP)

    @property
    def literal(self) -> bool:
        """True for a plain path (no glob characters, no captures): the one-file exporter."""
        return not self.captures and _GLOB_MAGIC.search(self.text) is None

    def match(self, path: str) -> tuple[str, ...] | None:
        """The values of ``labels`` that ``path`` gives, or None when it does not match."""
        m = self.regex.fullmatch(path)
        if m is None:
            return None
        return tuple(
            value for name, value in zip(self.captures, m.groups(), strict=True) if name != DROP
        )

    def expand(self) -> list[str]:
        """The regular files matching now, sorted; none is no error (the directory may come)."""
        if self.literal:
            return [self.text] if os.path.isfile(self.text) else []
        found = []
        for path in glob.glob(self.glob):
            # glob's own matching is the shell's; the regex, the same pattern's, must agree, and
            # a capture that would split a name some other way is only decided by the regex.
            if self.regex.fullmatch(path) is not None and os.path.isfile(path):
                found.append(path)
        return sorted(found)


def parse_pattern(text: str, *, flag: str = "--file") -> FilePattern:
    """``text`` as a pattern; ``PatternError`` naming ``flag`` when it cannot be one."""
    if not text:
        raise PatternError(f"{flag}: empty path")
    glob_parts: list[str] = []
    regex_parts: list[str] = []
    captures: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "{":
            end = text.find("}", i)
            if end < 0:
                raise PatternError(f"{flag} {text}: '{{' without its '}}'")
            name = text[i + 1 : end]
            _check_capture(text, name, captures, flag)
            captures.append(name)
            glob_parts.append("*")
            # Non-greedy: the earlier capture takes the shortest text (the module's docstring).
            regex_parts.append("([^/]*?)")
            i = end + 1
        elif c == "}":
            raise PatternError(f"{flag} {text}: '}}' without its '{{'")
        elif c == "*":
            glob_parts.append(c)
            regex_parts.append("[^/]*")
            i += 1
        elif c == "?":
            glob_parts.append(c)
            regex_parts.append("[^/]")
            i += 1
        elif c == "[":
            end = text.find("]", i + 2)
            if end < 0:
                raise PatternError(f"{flag} {text}: '[' without its ']'")
            body = text[i + 1 : end]
            if "/" in body:
                raise PatternError(f"{flag} {text}: a '[...]' set cannot hold '/'")
            glob_parts.append(text[i : end + 1])
            if body.startswith("!"):
                body = "^" + body[1:]
            regex_parts.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            glob_parts.append(c)
            regex_parts.append(re.escape(c))
            i += 1
    return FilePattern(
        text=text,
        glob="".join(glob_parts),
        captures=tuple(captures),
        regex=re.compile("".join(regex_parts)),
    )


def _check_capture(text: str, name: str, earlier: Sequence[str], flag: str) -> None:
    if name == DROP:
        return
    if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
        raise PatternError(f"{flag} {text}: {{{name}}} is not a valid label name")
    if name in earlier:
        raise PatternError(f"{flag} {text}: {{{name}}} is captured twice")


def parse_label(item: str, *, flag: str = "--label") -> tuple[str, str]:
    """``NAME=VALUE`` as a pair; ``PatternError`` naming ``flag`` when it is not one."""
    name, sep, value = item.partition("=")
    if not sep:
        raise PatternError(f"{flag} {item}: expected NAME=VALUE")
    if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
        raise PatternError(f"{flag} {item}: {name!r} is not a valid label name")
    if not value:
        # Prometheus drops a label with an empty value: the series would not carry it at all.
        raise PatternError(f"{flag} {item}: empty value")
    return name, value


def check_label_names(
    constant: Iterable[tuple[str, str]],
    patterns: Sequence[FilePattern],
    metric_labels: Mapping[str, Iterable[str]],
) -> dict[str, str]:
    """The constant labels as a dict, once every label name has exactly one source.

    ``metric_labels`` maps each metric's name to the label names its series already have (the
    spec's and the exporter's own, ``le`` of histograms included). ``PatternError`` naming both
    sources when a name is given twice, or by a label and a metric.
    """
    sources: dict[str, str] = {}
    labels: dict[str, str] = {}
    for name, value in constant:
        _claim(sources, name, f"--label {name}={value}")
        labels[name] = value
    for pattern in patterns:
        for name in pattern.labels:
            source = f"--file {pattern.text}"
            if sources.get(name, source) != source and not sources[name].startswith("--file "):
                raise PatternError(
                    f"label {name!r} is given twice: by {sources[name]} and by {source}"
                )
            # Several patterns may each capture the same name: a file takes it from its own.
            sources.setdefault(name, source)
    for metric, names in metric_labels.items():
        for name in names:
            if name in sources:
                raise PatternError(
                    f"label {name!r} is given twice: by {sources[name]} and by the metric "
                    f"{metric}, which has a label of that name"
                )
    return labels


def _claim(sources: dict[str, str], name: str, source: str) -> None:
    if name in sources:
        raise PatternError(f"label {name!r} is given twice: by {sources[name]} and by {source}")
    sources[name] = source
