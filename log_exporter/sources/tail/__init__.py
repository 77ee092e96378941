"""Tailing one JSONL file: whole lines plus the position to resume from.

The tailer knows files, inodes and rotation, nothing about events: it yields lines of bytes.
Rotation by rename (logrotate ``create``, RotatingFileHandler), copytruncate, plain truncation
and delete+recreate are all followed; the rules and their residual risks are in docs/tailing.md.

One module per concern: ``generation`` follows one file generation (its descriptor, offsets,
truncation, line framing), ``siblings`` the rotated files next to it (missed generations,
copytruncate copies, what is known), ``follow`` the generations of the path across rotations,
``resume`` the start from a saved position, ``wakeup`` the file events the loop waits on, and
``tailer`` the ``Tailer`` itself: the polls, the loop and the snapshots other threads read.
"""

from log_exporter.sources.tail.tailer import Tailer, count_lines_after

__all__ = ["Tailer", "count_lines_after"]
