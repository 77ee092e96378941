"""The shipping cursor after each line, which bounds what a crash repeats to one batch."""

from __future__ import annotations

from pathlib import Path

from log_exporter.cloudwatch.shipper import line_positions
from log_exporter.sources.tail import Tailer
from log_exporter.values import Batch, FileId, Position


def test_cursor_exact_per_line_even_when_a_read_ends_mid_line(tmp_path: Path) -> None:
    """Each line's cursor is the byte after its newline, also when the read stopped mid-line."""
    path = tmp_path / "f.jsonl"
    lines = [b'{"n": %d, "pad": "%s"}' % (i, b"x" * (i % 50)) for i in range(400)]
    data = b"".join(line + b"\n" for line in lines)
    path.write_bytes(data)
    # A read budget that ends inside a line, as a large file does at the poll limit.
    tailer = Tailer(path, max_batch_bytes=4_000, read_size=1_000)
    previous = None
    seen: list[tuple[bytes, int]] = []
    try:
        while len(seen) < len(lines):
            batch = tailer.poll()
            assert batch.lines, "the tailer stopped before the end of the file"
            positions = line_positions(previous, batch)
            assert all(p is not None for p in positions)
            seen.extend((raw, p.offset) for raw, p in zip(batch.lines, positions, strict=True))  # type: ignore[union-attr]
            previous = batch.position
    finally:
        tailer.close()
    ends = [data.index(raw + b"\n") + len(raw) + 1 for raw, _ in seen]
    assert [offset for _, offset in seen] == ends


def test_cursor_only_at_batch_end_when_offsets_unknowable() -> None:
    """After a rotation or a skipped oversized line, only a batch's last line carries the cursor."""
    fid = FileId(1, 2, "ab")
    end = Position(fid, 100)
    lines = [b"a" * 10, b"b" * 20]
    for batch in (
        Batch(list(lines), rotations=1, position=end),
        Batch(list(lines), oversized=1, position=end),
        Batch(list(lines), truncations=1, position=end),
        Batch(list(lines), position=Position(fid, 100, rotated=(Position(FileId(1, 3, "cd"), 5),))),
    ):
        positions = line_positions(Position(fid, 69), batch)
        assert positions == [None, batch.position]


def test_cursor_exact_when_batch_continues_previous() -> None:
    """A batch that starts where the previous ended gets one exact cursor per line."""
    fid = FileId(1, 2, "ab")
    batch = Batch([b"a" * 10, b"b" * 20], position=Position(fid, 100))
    positions = line_positions(Position(fid, 68), batch)
    assert [p.offset for p in positions if p is not None] == [79, 100]
    # A gap (bytes skipped between polls) makes per-line offsets unknowable.
    assert line_positions(Position(fid, 50), batch) == [None, batch.position]
