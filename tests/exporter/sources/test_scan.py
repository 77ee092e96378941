"""The scan of --file patterns every poll: new files found, vanished ones dropped, directories
listed again only when they changed, rotated generations left to their file's tailer."""

from __future__ import annotations

import os
from pathlib import Path

from log_exporter.sources.patterns import parse_pattern
from log_exporter.sources.scan import Match, Scanner


def _touch(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"{}\n")
    return str(path)


def test_a_scan_finds_files_created_and_forgets_files_removed_since_the_last(
    tmp_path: Path,
) -> None:
    """A pod directory created after the first scan is found by the next, with its labels; a
    removed one is gone from it; names a wildcard should not match stay out."""
    pattern = parse_pattern(f"{tmp_path}/pods/{{namespace}}_{{pod}}_{{_}}/app/*.log")
    scanner = Scanner([pattern])
    first = _touch(tmp_path / "pods" / "prod_web-0_u1" / "app" / "0.log")
    _touch(tmp_path / "pods" / "prod_web-0_u1" / "app" / ".hidden.log")
    _touch(tmp_path / "pods" / "prod_web-0_u1" / "other" / "0.log")
    assert scanner.scan() == {first: Match(0, ("prod", "web-0"))}
    second = _touch(tmp_path / "pods" / "dev_api-1_u2" / "app" / "1.log")
    assert scanner.scan() == {
        first: Match(0, ("prod", "web-0")),
        second: Match(0, ("dev", "api-1")),
    }
    os.remove(first)
    assert scanner.scan() == {second: Match(0, ("dev", "api-1"))}
    assert scanner.scan() == dict(sorted({second: Match(0, ("dev", "api-1"))}.items()))


def test_a_rotated_generation_beside_its_file_is_not_a_file_of_its_own(tmp_path: Path) -> None:
    """With a pattern broad enough to match them, the kubelet's and logrotate's rotated names
    beside the file they came from are left to that file's tailer."""
    live = _touch(tmp_path / "0.log")
    _touch(tmp_path / "0.log.20260201-143000")
    _touch(tmp_path / "0.log.20260201-143000.gz")
    other = _touch(tmp_path / "1.log")
    assert sorted(Scanner([parse_pattern(f"{tmp_path}/*")]).scan()) == [live, other]


def test_an_unchanged_directory_is_not_listed_again(tmp_path: Path) -> None:
    """Between two scans of an idle tree the directories are only stat'ed: a file slipped in
    without changing the directory's time is found by the next full scan only."""
    found = _touch(tmp_path / "a" / "x.log")
    scanner = Scanner([parse_pattern(f"{tmp_path}/{{dir}}/*.log")], full_every=3)
    assert list(scanner.scan()) == [found]
    directory = tmp_path / "a"
    before = directory.stat()
    sneaked = _touch(directory / "y.log")
    # Pretend the directory did not change: its listing is reused, so y.log is not seen yet.
    os.utime(directory, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert list(scanner.scan()) == [found]
    assert list(scanner.scan()) == [found]
    assert list(scanner.scan()) == [found, sneaked]
