"""``log-exporter trace``: every event of one request (one trace id) in old log files, in order.

The trace id an exemplar shows leads here: the files are read as replay reads them (plain or
gzip, checked, oldest first, the same framer; ``log_exporter.sources``), and each line whose
``trace_id`` field (or ``--field``, a field path) equals the given id is printed as the file
holds it. The exit status is grep's: 0 some event found, 1 none, 2 an error (a file missing,
unreadable or damaged; what was found before the damage is still printed).

With ``--file`` patterns the files form file sets by the labels they capture
(``log_exporter.sources.filesets``), read set after set, each oldest first; when any set has
labels, each line is printed after its set's labels and a tab (``{namespace="a",pod="b"}<TAB>``),
as grep prefixes the file name: ``cut -f2-`` gives back the lines as the files hold them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import BinaryIO, TextIO

from log_exporter.limits import MAX_LINE_BYTES
from log_exporter.parse import parse_line
from log_exporter.sources.cri import InputFormat, cri_event
from log_exporter.sources.files import FileReader, LogFile, ReplayError, open_sources
from log_exporter.sources.filesets import Labels, gather, labels_text
from log_exporter.sources.patterns import PatternError, parse_pattern
from log_exporter.spec import Spec
from log_exporter.spec.paths import Path, parse_path, read_path

__all__ = ["DEFAULT_FIELD", "EXIT_FOUND", "EXIT_NONE", "EXIT_TROUBLE", "exemplar_field", "run"]

EXIT_FOUND = 0
EXIT_NONE = 1
EXIT_TROUBLE = 2
DEFAULT_FIELD = "trace_id"


def exemplar_field(spec: Spec) -> str:
    """The event field the spec's exemplars carry (the first metric's that has one), else
    ``trace_id``: where the id an exemplar shows is found in the log."""
    for metric in spec.metrics:
        if metric.exemplar is not None:
            return metric.exemplar.field
    return DEFAULT_FIELD


def run(
    trace_id: str,
    paths: Sequence[str],
    *,
    field: str = DEFAULT_FIELD,
    patterns: Sequence[str] = (),
    stdout: BinaryIO | None = None,
    stderr: TextIO | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
    input_format: InputFormat = "json",
) -> int:
    """Print the lines of ``paths`` and of the files of ``patterns`` whose ``field`` is
    ``trace_id``; grep's exit status.

    With ``input_format`` ``cri`` (container runtime logs) the event of each line is printed,
    the runtime's split lines joined, without the runtime's time and stream before it."""
    out = sys.stdout.buffer if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    try:
        parse_path(field)
    except ValueError as exc:
        print(f"log-exporter trace: --field: {exc}", file=err)
        return EXIT_TROUBLE
    try:
        filesets = gather(paths, [parse_pattern(p) for p in patterns])
        sets = [
            (f.labels, open_sources(f.paths, max_line_bytes, input_format=input_format))
            for f in filesets
        ]
    except (ReplayError, PatternError) as exc:
        print(f"log-exporter trace: {exc}", file=err)
        return EXIT_TROUBLE
    # Most lines are told apart without parsing: one of the request's has the id's bytes as they
    # are, or a JSON escape that could spell them otherwise (then it is parsed to be sure).
    needle = trace_id.encode("utf-8", "surrogatepass")
    try:
        return _print_matches(sets, needle, field, trace_id, out, err, max_line_bytes)
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as grep does.
        if stdout is None:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail
        return EXIT_FOUND


def _print_matches(
    sets: Sequence[tuple[Labels, Sequence[LogFile]]],
    needle: bytes,
    field: str,
    trace_id: str,
    out: BinaryIO,
    err: TextIO,
    max_line_bytes: int,
) -> int:
    path = parse_path(field)  # checked by ``run``
    found = lines = 0
    trouble = False
    labelled = any(labels for labels, _ in sets)
    sources = [(labels, source) for labels, files in sets for source in files]
    for labels, source in sources:
        prefix = (labels_text(labels) + "\t").encode() if labelled else b""
        reader = FileReader(source, max_line_bytes)
        try:
            for batch in reader.batches():
                lines += len(batch.lines)
                picked = [
                    raw
                    for raw in batch.lines
                    if (needle in raw or b"\\" in raw) and _is_of(raw, path, trace_id, batch.cri)
                ]
                if batch.cri:
                    picked = [_content(raw) for raw in picked]
                if picked:
                    found += len(picked)
                    out.write(b"".join(prefix + raw + b"\n" for raw in picked))
        except BrokenPipeError:
            raise  # the reader's end, not the file's: see run
        except OSError as exc:
            print(
                f"log-exporter trace: {source.path}: cannot read: {exc.strerror or exc}", file=err
            )
            trouble = True
        except ReplayError as exc:
            print(f"log-exporter trace: {exc}", file=err)
            trouble = True
        finally:
            reader.close()
        if reader.damage is not None:
            print(f"log-exporter trace: {reader.damage}", file=err)
            trouble = True
    out.flush()
    if trouble:
        return EXIT_TROUBLE
    if not found:
        # grep is silent here, but an operator who pasted an id wants to know it was looked for.
        files = f"{len(sources)} file{'s' if len(sources) != 1 else ''}"
        print(
            f"log-exporter trace: 0 of {lines} lines in {files} have {field} = {trace_id!r}",
            file=err,
        )
    return EXIT_FOUND if found else EXIT_NONE


def _is_of(raw: bytes, path: Path, trace_id: str, cri: bool = False) -> bool:
    event = cri_event(raw) if cri else parse_line(raw)
    return type(event) is dict and read_path(event, path) == trace_id


def _content(raw: bytes) -> bytes:
    """The event of a CRI line (one ``decode`` took for an event): after time, stream, tag."""
    return raw.split(b" ", 3)[3]
