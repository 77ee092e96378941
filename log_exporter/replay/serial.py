"""The one read-a-source loop of replay: a file, or a stretch of one, through a feed in order.

``read_stretch`` is used by every path that reads: the files of a replay in one process
(``feed_files``), a worker's stretch and the stretches the parent replays itself
(``log_exporter.replay.parallel``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from log_exporter.pipeline import Feed, Steps
from log_exporter.sources.files import FileReader, LogFile, ReplayError
from log_exporter.store import Store

__all__ = ["FedFiles", "ShowsProgress", "feed_files", "read_stretch"]


class ShowsProgress(Protocol):
    """Where a replay reports how far it is (``log_exporter.replay.progress.ProgressBar``)."""

    def update(self, done_bytes: int, events: int) -> None: ...


def read_stretch(
    source: LogFile,
    feed: Feed,
    steps: Steps | None,
    max_line_bytes: int,
    read_size: int,
    *,
    start: int = 0,
    end: int | None = None,
    after_batch: Callable[[int], None] | None = None,
) -> tuple[int, FileReader]:
    """Feed bytes ``start`` to ``end`` of ``source`` (all of it by default) batch by batch, in
    ``steps`` when given; the lines read, and the (closed) reader, which tells of any damage.

    ``after_batch(raw_done)`` follows each batch. ReplayError when the file cannot be read.
    """
    reader = FileReader(source, max_line_bytes, read_size, start=start, end=end)
    lines = 0
    try:
        for batch in reader.batches():
            if steps is None:
                feed.feed(batch)
            else:
                feed.feed_steps(batch, steps)
            lines += len(batch.lines) + batch.oversized
            if after_batch is not None:
                after_batch(reader.raw_done)
    except OSError as exc:
        raise ReplayError(f"{source.path}: cannot read: {exc.strerror or exc}") from exc
    finally:
        reader.close()
    return lines, reader


@dataclass(slots=True)
class FedFiles:
    """What feeding whole files went through: lines, files and damage, in log order."""

    lines: int = 0
    files: int = 0
    damage: list[str] = field(default_factory=list)


def feed_files(
    sources: Sequence[LogFile],
    feed: Feed,
    steps: Steps | None,
    progress: ShowsProgress,
    store: Store,
    max_line_bytes: int,
    read_size: int,
) -> FedFiles:
    """Feed every file whole, oldest first (``end_file`` after each one, in steps), reporting
    the bytes done and ``store``'s events to ``progress`` after each batch."""
    out = FedFiles()
    done = 0
    for source in sources:

        def after_batch(raw_done: int, done: int = done) -> None:
            progress.update(done + raw_done, int(store.lines["parsed"]))

        lines, reader = read_stretch(
            source, feed, steps, max_line_bytes, read_size, after_batch=after_batch
        )
        out.lines += lines
        if steps is not None:
            feed.end_file(steps)
        done += source.size
        out.files += 1
        if reader.damage is not None:
            out.damage.append(reader.damage)
    return out
