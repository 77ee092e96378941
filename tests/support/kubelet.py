"""A container's logs written as containerd and the kubelet write them under /var/log/pods: CRI
lines, lines over 16 KiB cut into P chunks, one write per chunk, rename-then-gzip rotation and a
new ``N.log`` when the container restarts."""

from __future__ import annotations

import gzip
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

# containerd's buffer: a longer line is cut into P chunks of this many bytes.
SPLIT = 16 * 1024


def cri_lines(stamp: str, stream: str, content: bytes, *, ended: bool = True) -> list[bytes]:
    """The CRI lines (with their newlines) of one line the app printed; without ``ended`` its
    last chunk is a P too (the runtime was killed before the line's end)."""
    pieces = [content[i : i + SPLIT] for i in range(0, len(content), SPLIT)] or [b""]
    head = f"{stamp} {stream}".encode()
    out = []
    for n, piece in enumerate(pieces):
        tag = b"F" if n == len(pieces) - 1 and ended else b"P"
        out.append(head + b" " + tag + b" " + piece + b"\n")
    return out


class ContainerLog:
    """``ROOT/<namespace>_<pod>_<uid>/<container>/<restart>.log`` and its rotated generations."""

    def __init__(
        self, root: Path, namespace: str, pod: str, uid: str, container: str = "sustainbot"
    ) -> None:
        self.dir = root / f"{namespace}_{pod}_{uid}" / container
        self.dir.mkdir(parents=True)
        self.restarts = 0
        self.written = 0  # bytes written in all, whatever became of the files since
        self._now = datetime(2026, 12, 7, 10, 15, tzinfo=UTC)
        self.path.touch()

    @property
    def path(self) -> Path:
        """The file the runtime writes now."""
        return self.dir / f"{self.restarts}.log"

    def _stamp(self) -> str:
        self._now += timedelta(milliseconds=1)
        return self._now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"

    def print(self, stream: str, content: bytes, *, ended: bool = True) -> None:
        """One line the app printed, each CRI line of it in one write, as containerd writes."""
        with open(self.path, "ab") as f:
            for line in cri_lines(self._stamp(), stream, content, ended=ended):
                f.write(line)
                f.flush()
                self.written += len(line)

    def chunks(self, stream: str, content: bytes) -> list[bytes]:
        """The CRI lines of one line, for a test to interleave with another stream's writes."""
        return cri_lines(self._stamp(), stream, content)

    def write_raw(self, data: bytes) -> None:
        with open(self.path, "ab") as f:
            f.write(data)
        self.written += len(data)

    def rotate(self) -> None:
        """The kubelet's rotation: every rotated generation but the newest gzipped (through a
        ``.tmp`` file renamed ``.gz``, the original removed), then ``N.log`` renamed
        ``N.log.<YYYYMMDD-HHMMSS>`` and a new one opened by the runtime."""
        for name in sorted(os.listdir(self.dir)):
            rotated = self.dir / name
            if name.startswith(f"{self.restarts}.log.") and not name.endswith((".gz", ".tmp")):
                tmp = self.dir / f"{name}.tmp"
                with open(rotated, "rb") as src, gzip.open(tmp, "wb") as dst:
                    dst.write(src.read())
                os.rename(tmp, self.dir / f"{name}.gz")
                os.unlink(rotated)
        self._now += timedelta(seconds=1)
        os.rename(self.path, f"{self.path}.{self._now.strftime('%Y%m%d-%H%M%S')}")
        self.path.touch()

    def restart(self) -> None:
        """The container restarted: the runtime writes ``<restart + 1>.log``."""
        self.restarts += 1
        self.path.touch()

    def files(self) -> list[Path]:
        """Every file of the container's logs, rotated and gzipped ones included."""
        return sorted(self.dir.iterdir())
