"""podman for the image tests: the images as scripts/build-images.sh tags them, and containers,
pods and volumes that are removed again by the name they were given."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import subprocess
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.waits import DEADLINE, wait_for

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
# Dockerfile target -> the image name compose and the Kubernetes manifests use.
IMAGES = {
    "app": f"localhost/sustainbot-app:{VERSION}",
    "exporter": f"localhost/sustainbot-log-exporter:{VERSION}",
    "exporter-cloudwatch": f"localhost/sustainbot-log-exporter-cloudwatch:{VERSION}",
    "cloudwatch-emulator": f"localhost/sustainbot-cloudwatch-emulator:{VERSION}",
    "log-rotator": f"localhost/sustainbot-log-rotator:{VERSION}",
}
# The sandbox's OCI runtime wrapper, for where runc cannot apply a container's limits.
WRAPPER = REPO / "scripts" / "runc-without-limits"
# As compose's x-hardened and the manifests' securityContext run the app and its sidecars.
HARDENED = (
    "--read-only",
    "--read-only-tmpfs=false",
    "--tmpfs=/tmp",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
)
# Image builds and first starts on a small shared machine; a deadline only bounds a failure.
COMMAND_TIMEOUT = 300.0
_names = itertools.count()


@dataclass
class Podman:
    """Runs podman with one OCI runtime and removes everything it created, by name."""

    runtime: str
    created: list[tuple[str, str]] = field(default_factory=list)

    def run(
        self, *args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        argv = ["podman", "--runtime", self.runtime, *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def child(self) -> Podman:
        """The same podman, keeping its own list of what to remove."""
        return Podman(self.runtime)

    def name(self, what: str) -> str:
        return f"sbtest-{os.getpid()}-{next(_names)}-{what}"

    def volume(self, what: str) -> str:
        name = self.name(what)
        self.run("volume", "create", name)
        self.created.append(("volume", name))
        return name

    def volume_path(self, volume: str) -> Path:
        """The volume's directory on this machine (podman runs as root here)."""
        return Path(
            self.run("volume", "inspect", "--format", "{{.Mountpoint}}", volume).stdout.strip()
        )

    def pod(self, what: str, *publish: str) -> str:
        """A pod, the containers of which share one network namespace as a Kubernetes pod's do;
        ``publish`` as ``podman pod create -p`` takes them."""
        name = self.name(what)
        self.run("pod", "create", "--name", name, *(f"--publish={p}" for p in publish))
        self.created.append(("pod", name))
        return name

    def start(self, image: str, *args: str, what: str, options: Sequence[str] = ()) -> str:
        """``podman run -d`` a container (``args`` go to its entrypoint); its name."""
        name = self.name(what)
        self.created.append(("container", name))
        self.run("run", "-d", "--name", name, *options, image, *args)
        return name

    def inspect(self, kind: str, name: str) -> Any:
        return json.loads(self.run(kind, "inspect", name).stdout)[0]

    def logs(self, container: str) -> str:
        result = self.run("logs", container, check=False)
        return result.stdout + result.stderr

    def healthcheck(self, container: str) -> subprocess.CompletedProcess[str]:
        return self.run("healthcheck", "run", container, check=False)

    def wait_healthy(self, container: str) -> None:
        """Run the image's own HEALTHCHECK until it passes (no systemd here to time it)."""
        wait_for(
            lambda: self.healthcheck(container).returncode == 0,
            f"the health check of {container} to pass",
            interval=0.5,
            explain=lambda: self.logs(container),
        )

    def exit_code(self, container: str) -> int:
        return int(self.inspect("container", container)["State"]["ExitCode"])

    def remove_all(self) -> None:
        for kind, name in reversed(self.created):
            if kind == "container":
                self.run("rm", "-f", "-t", "0", name, check=False)
            elif kind == "pod":
                self.run("pod", "rm", "-f", "-t", "0", name, check=False)
            else:
                self.run("volume", "rm", "-f", name, check=False)
        self.created.clear()


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def http_post(port: int, path: str, body: bytes, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    try:
        conn.request(
            "POST", path, body=body, headers={"Content-Type": "application/json", **headers}
        )
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def answers(port: int, path: str) -> bool:
    """Whether ``path`` answers 200 now (a refused or reset connection is a no)."""
    try:
        return http_get(port, path)[0] == 200
    except OSError:
        return False
