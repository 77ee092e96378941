"""Where the revision of `--version` and log_exporter_build_info comes from: the file a wheel
build records, else the checkout's git commit, else `unknown`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from log_exporter import buildinfo
from tests.support.processes import clean_env

REPO = Path(__file__).resolve().parents[3]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """buildinfo looking at a package directory of the test's own, outside any checkout."""
    directory = tmp_path / "site" / "log_exporter"
    directory.mkdir(parents=True)
    monkeypatch.setattr(buildinfo, "_PACKAGE", directory)
    buildinfo.revision.cache_clear()
    yield directory
    buildinfo.revision.cache_clear()


def test_recorded_revision_ignored(package: Path) -> None:
    """A REVISION file in the package (what a wheel build writes) is the revision."""
    (package / "REVISION").write_text(COMMIT + "\n", encoding="ascii")
    assert buildinfo.revision() == COMMIT


def test_garbage_revision_file_reported(package: Path) -> None:
    """A REVISION file that holds no commit is not reported; with no checkout: `unknown`."""
    (package / "REVISION").write_text("not a commit\n", encoding="ascii")
    assert buildinfo.revision() in (buildinfo.UNKNOWN, buildinfo._pip_recorded())


def test_checkout_revision_wrong() -> None:
    """In a checkout (an editable install, as the test suite runs) it is git's HEAD."""
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout with git installed")
    head = subprocess.run([git, "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True, timeout=60).stdout.strip()  # fmt: skip
    buildinfo.revision.cache_clear()
    assert buildinfo.revision() == head


def _source_copy(tmp_path: Path) -> Path:
    """What the Docker build copies: no .git, so only SOURCE_REVISION can tell the commit."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "build_revision.py"):
        shutil.copy(REPO / name, src / name)
    for package in ("log_exporter", "sustainbot"):
        shutil.copytree(REPO / package, src / package,
                        ignore=shutil.ignore_patterns("__pycache__", "REVISION"))  # fmt: skip
    return src


@pytest.mark.slow
def test_installed_wheel_does_not_know_its_revision(tmp_path: Path) -> None:
    """A wheel built with SOURCE_REVISION (as the Dockerfile builds it) carries the commit, and
    the installed copy's `log-exporter --version` reports it without any checkout around."""
    src = _source_copy(tmp_path)
    env = {**clean_env(), "SOURCE_REVISION": COMMIT}
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"),
         str(src)], capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("log_exporter/REVISION").decode().strip() == COMMIT
    target = tmp_path / "installed"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)  # what pip install --target does with a pure wheel
    # -S: no site-packages, so neither the editable install nor a checkout can answer.
    env = {**clean_env(), "PYTHONPATH": str(target)}
    env.pop("PYTHONHOME", None)
    result = subprocess.run([sys.executable, "-S", "-m", "log_exporter", "--version"],
                            capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"(revision: {COMMIT})" in result.stdout.splitlines()[0]
    assert os.path.isfile(target / "log_exporter" / "REVISION")
