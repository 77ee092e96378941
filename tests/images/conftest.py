"""The image tests: every Dockerfile target, built by scripts/build-images.sh, run with podman.

They need podman and the built images, and take minutes, so the suite leaves them out: they run
only when asked for, by path (``pytest tests/images``, which ``make test-images`` runs after
building the images) or by marker (``-m images``). Asked for on a machine without podman they
skip naming the package, which fails them under CI=true as any other missing real component.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images.podman import IMAGES, WRAPPER, Podman
from tests.support import processes

HERE = Path(__file__).resolve().parent
_SIZES: dict[str, int] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "images: builds on the container images and runs them (make test-images)"
    )


def _asked_for(config: pytest.Config) -> bool:
    if "images" in (config.option.markexpr or ""):
        return True
    start = config.invocation_params.dir
    for arg in config.args:
        path = (start / arg.split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [item for item in items if HERE in item.path.parents]
    for item in mine:
        item.add_marker(pytest.mark.images)
    if mine and not _asked_for(config):
        config.hook.pytest_deselected(items=mine)
        items[:] = [item for item in items if HERE not in item.path.parents]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SIZES:
        terminalreporter.section("image sizes")
        for image, size in sorted(_SIZES.items()):
            terminalreporter.write_line(f"{image}: {size / 1e6:.0f} MB")


def _works(podman: Podman) -> bool:
    try:
        result = podman.run(
            "run",
            "--rm",
            "--network=none",
            "--entrypoint",
            "true",
            IMAGES["exporter"],
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    """podman with an OCI runtime that starts containers here; skips where podman is missing
    and fails where an image is (scripts/build-images.sh builds them)."""
    processes.binary("podman")
    missing = [
        image
        for image in IMAGES.values()
        if subprocess.run(["podman", "image", "exists", image], check=False).returncode != 0
    ]
    if missing:
        pytest.fail(f"not built: {', '.join(missing)}; run scripts/build-images.sh first")
    for image in IMAGES.values():
        info = subprocess.run(
            ["podman", "image", "inspect", "--format", "{{.Size}}", image],
            capture_output=True,
            text=True,
            check=True,
        )
        _SIZES[image] = int(info.stdout.strip())
    chosen = os.environ.get("PODMAN_RUNTIME")
    candidates = [chosen] if chosen else [shutil.which("runc") or "runc", str(WRAPPER)]
    for runtime in candidates:
        engine = Podman(runtime)
        if _works(engine):
            break
    else:
        pytest.fail(f"no container starts with any of the OCI runtimes {candidates}")
    try:
        yield engine
    finally:
        engine.remove_all()
