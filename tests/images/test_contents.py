"""What is inside each built image: no build tooling, no source tree, no caches, a bounded size,
and the labels build-images.sh stamps."""

from __future__ import annotations

import json

import pytest

from tests.images.podman import IMAGES, Podman

# Walks the image's filesystem from inside it with the image's own Python, as root, so that
# nothing is hidden from it.
INVENTORY = r"""
import json, os, shutil
found = {"tools": sorted(t for t in ("gcc", "cc", "c++", "make", "git") if shutil.which(t)),
         "paths": sorted(p for p in ("/src", "/wheels", "/tmp/wheels", "/root/.cache",
                                     "/nonexistent/.cache") if os.path.exists(p)),
         "found": []}
for top, dirs, files in os.walk("/", onerror=lambda e: None):
    if top in ("/proc", "/sys", "/dev"):
        dirs[:] = []
        continue
    for d in dirs:
        if d == ".git" or (d == "pip" and top.endswith("/.cache")):
            found["found"].append(os.path.join(top, d))
    for f in files:
        if f.endswith(".whl") or f in ("build_revision.py", "pyproject.toml"):
            found["found"].append(os.path.join(top, f))
print(json.dumps(found))
"""
# Today's sizes (docs/deployment.md) with room: a jump past these is a regression to explain,
# such as a compiler, a cache or the whole source tree left in a layer.
MAX_MB = {
    "app": 300,
    "exporter": 260,
    "exporter-cloudwatch": 300,
    "cloudwatch-emulator": 550,
    "log-rotator": 260,
}


@pytest.mark.parametrize("target", sorted(IMAGES))
def test_runtime_image_holds_no_build_tooling_source_tree_or_cache(
    podman: Podman, target: str
) -> None:
    """No compiler, make or git, no /src or wheel directory, no .git, wheel, pip cache or
    project build file anywhere in the image beyond what its base image already holds (the
    base Python's own bundled pip and setuptools wheels)."""
    labels = podman.inspect("image", IMAGES[target])["Config"]["Labels"]
    base = labels["org.opencontainers.image.base.name"]
    added = inventory(podman, IMAGES[target])
    for kind, found in inventory(podman, base).items():
        added[kind] = sorted(set(added[kind]) - set(found))
    assert added == {"tools": [], "paths": [], "found": []}, f"{target} on {base}: {added}"


def inventory(podman: Podman, image: str) -> dict[str, list[str]]:
    result = podman.run(
        "run",
        "--rm",
        "--network=none",
        "--user=0",
        "--entrypoint",
        "python",
        image,
        "-c",
        INVENTORY,
    )
    found: dict[str, list[str]] = json.loads(result.stdout)
    return found


@pytest.mark.parametrize("target", sorted(IMAGES))
def test_image_size_stays_within_its_bound(podman: Podman, target: str) -> None:
    """Each image stays under the size recorded for it (the sizes are printed after the run)."""
    size = int(podman.run("image", "inspect", "--format", "{{.Size}}", IMAGES[target]).stdout)
    assert size / 1e6 < MAX_MB[target], f"{IMAGES[target]} is {size / 1e6:.0f} MB"


@pytest.mark.parametrize("target", sorted(IMAGES))
def test_image_carries_version_revision_and_creation_labels(podman: Podman, target: str) -> None:
    """build-images.sh fills the OCI labels the Dockerfile defaults to "unknown"."""
    labels = podman.inspect("image", IMAGES[target])["Config"]["Labels"]
    for name in ("version", "revision", "created"):
        assert labels.get(f"org.opencontainers.image.{name}") not in (None, "", "unknown"), labels
