"""Every shell block of README.md and docs/ runs as written, or says why it cannot run here.

A reader copies these blocks into a terminal; one that drifted from the programs (a renamed flag,
a file that does not exist yet, a port another program holds) fails its reader in the first hour.
So each block is preceded by a marker comment, which the reader of the rendered page does not see:

    <!-- doc-test: run -->                   run here, as written, and must exit 0
    <!-- doc-test: run, needs promtool -->   the same, with a real program the block uses
    <!-- doc-test: run, with logs -->        the same, beside a SustainBot log rotated twice
                                             (``logs/sustainbot.jsonl``, ``.1``, ``.2.gz``)
    <!-- doc-test: run, env NAME=VALUE -->   the same, with a variable the reader would set
    <!-- doc-test: skip, REASON -->          cannot run here (a cluster, Docker, PyPI, minutes of
                                             CPU, a synopsis): the reason says which

A block runs with ``bash -euo pipefail`` in a scratch folder that shows the checkout's files (so
``deploy/...`` paths resolve) and has ``.venv`` pointing at the virtualenv running the tests, with
the PATH the tests have: a block activates the virtualenv itself, as its reader must. Its servers
(``sustainbot serve &``) are stopped with the block's process group.
"""

from __future__ import annotations

import fcntl
import gzip
import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import binary, clean_env
from tests.support.waits import wait_for

REPO = Path(__file__).resolve().parents[1]
PAGES = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
SHELLS = ("sh", "bash", "console", "shell")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
MARKER = re.compile(r"<!-- doc-test: (run|skip)(?:, (.+?))? -->")
LOCK_NAME = "log-exporter-doc-blocks.lock"
CONTRACT_SAMPLE = REPO / "tests" / "exporter" / "fixtures" / "contract.jsonl"
# One block's whole run, servers started and stopped included; a block waits for its servers
# with curl's own bounded retries.
BLOCK_SECONDS = 180
# Left out of the scratch folder: what a block writes there must not land in the checkout.
NOT_SHOWN = frozenset({".git", ".venv", "logs"})


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    marker: tuple[str, str] | None  # (run|skip, the rest) or None when the block has none
    script: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def _blocks() -> list[Block]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for fence in FENCE.finditer(text):
            if fence.group(1) not in SHELLS:
                continue
            before = text[: fence.start()].rstrip("\n").rsplit("\n", 1)[-1]
            marker = MARKER.fullmatch(before.strip())
            found.append(
                Block(
                    page=page,
                    line=text.count("\n", 0, fence.start()) + 1,
                    marker=(marker.group(1), marker.group(2) or "") if marker else None,
                    script=fence.group(2),
                )
            )
    return found


BLOCKS = _blocks()
RUN = [b for b in BLOCKS if b.marker is not None and b.marker[0] == "run"]


def test_every_shell_block_says_whether_it_runs() -> None:
    """A shell block without a marker, or a skip without its reason, fails: a new block is
    either run by the suite or says why it cannot be."""
    unmarked = [b.name for b in BLOCKS if b.marker is None]
    assert not unmarked, f"shell blocks without a doc-test marker: {', '.join(unmarked)}"
    reasonless = [b.name for b in BLOCKS if b.marker == ("skip", "")]
    assert not reasonless, f"skipped without a reason: {', '.join(reasonless)}"


def test_the_runner_finds_blocks_to_run() -> None:
    """The page scan finds the README's by-hand block among those run, so a change to the
    marker syntax cannot quietly turn every block into one that is never run."""
    assert any(b.page.name == "README.md" and "sustainbot serve" in b.script for b in RUN)


def _scratch(tmp_path: Path) -> Path:
    """A folder showing the checkout's files through links, with ``.venv`` this virtualenv."""
    tmp_path.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in NOT_SHOWN:
            (tmp_path / entry.name).symlink_to(entry)
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    return tmp_path


def _write_logs(work: Path) -> None:
    """SustainBot's contract sample as a log rotated twice: the oldest third gzipped as ``.2.gz``,
    the next as ``.1``, the rest the live file."""
    lines = CONTRACT_SAMPLE.read_bytes().splitlines(keepends=True)
    third = len(lines) // 3
    logs = work / "logs"
    logs.mkdir()
    (logs / "sustainbot.jsonl.2.gz").write_bytes(gzip.compress(b"".join(lines[:third])))
    (logs / "sustainbot.jsonl.1").write_bytes(b"".join(lines[third : 2 * third]))
    (logs / "sustainbot.jsonl").write_bytes(b"".join(lines[2 * third :]))


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM every process the block left (its servers, which share the shell's group) and
    wait for them to finish; SIGKILL what still runs after that."""
    if _group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            wait_for(lambda: not _group_alive(proc.pid), "the block's servers to stop", timeout=20)
        except AssertionError:
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=20)


@pytest.mark.slow
@pytest.mark.parametrize("block", RUN, ids=[b.name for b in RUN])
def test_documented_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    """The block exits 0 when run as a reader would paste it."""
    assert block.marker is not None
    work = _scratch(tmp_path / "work")
    env = clean_env()
    env["HOME"] = str(tmp_path)
    for given in filter(None, block.marker[1].split(", ")):
        what, _, rest = given.partition(" ")
        if what == "needs":
            binary(rest)
        elif what == "with" and rest == "logs":
            _write_logs(work)
        elif what == "env":
            for pair in rest.split():
                key, _, value = pair.partition("=")
                env[key] = value
        else:
            pytest.fail(f"{block.name}: unknown doc-test condition {given!r}")
    output = tmp_path / "output.txt"
    # The blocks use the documented fixed ports (5000, 9464): one block at a time on this
    # machine, even when two runs of the suite share it (CI runs it with and without packages).
    with (
        open(os.path.join(tempfile.gettempdir(), LOCK_NAME), "a") as lock,
        open(output, "wb") as out,
    ):
        fcntl.flock(lock, fcntl.LOCK_EX)
        # A file, not a pipe: servers started with `&` keep the block's stdout open after the
        # shell exits, and a pipe would wait for them.
        proc = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", block.script],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=BLOCK_SECONDS)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            _stop_group(proc)
    said = output.read_text(encoding="utf-8", errors="replace")
    assert code == 0, f"{block.name} exited {code}:\n{said[-4000:]}"
