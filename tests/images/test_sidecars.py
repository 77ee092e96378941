"""The pod's other images: the log rotator as the Deployment runs it, and the CloudWatch variant
of the exporter shipping to the emulator image, as compose's `cloudwatch` profile runs them."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config

from tests.images.podman import HARDENED, IMAGES, REPO, Podman, answers
from tests.support.contract import contract_line
from tests.support.ports import free_port
from tests.support.waits import wait_for

DEPLOYMENT = yaml.safe_load((REPO / "deploy/kubernetes/deployment.yaml").read_text())
POD_SPEC = DEPLOYMENT["spec"]["template"]["spec"]
GRACE = POD_SPEC["terminationGracePeriodSeconds"]
LOGROTATE_CONF = REPO / "deploy/kubernetes/logrotate.conf"
GROUP, STREAM = "/sustainbot/image-test", "image-test"


@pytest.fixture
def engine(podman: Podman) -> Iterator[Podman]:
    child = podman.child()
    try:
        yield child
    finally:
        child.remove_all()


def write_log(engine: Podman, volume: str, lines: list[bytes]) -> Path:
    """The app's log in ``volume``, owned by the images' user as the app would leave it."""
    log = engine.volume_path(volume) / "sustainbot.jsonl"
    log.write_bytes(b"".join(lines))
    os.chown(log, 10001, 10001)
    return log


def rotator_container() -> dict[str, Any]:
    init = POD_SPEC["initContainers"]
    return next(c for c in init if c["name"] == "log-rotator")


def test_rotator_image_default_command_prints_logrotates_version(engine: Podman) -> None:
    """The rotator image's own command runs Debian's logrotate as the images' user."""
    result = engine.run("run", "--rm", "--network=none", IMAGES["log-rotator"])
    assert result.stdout.startswith("logrotate "), result.stdout + result.stderr


def test_rotator_runs_the_manifests_loop_and_stops_at_once_on_sigterm(engine: Podman) -> None:
    """The Deployment's command, arguments and environment for the rotator, on a read-only root
    with the logrotate.conf it mounts: logrotate runs (its state appears) and SIGTERM ends the
    loop with exit 0 well within the grace period."""
    spec = rotator_container()
    logs, state = engine.volume("logs"), engine.volume("logrotate-state")
    write_log(engine, logs, [contract_line("app.started")])
    rotator = engine.start(
        IMAGES["log-rotator"],
        *spec["args"],
        what="rotator",
        options=(
            "--network=none",
            *HARDENED,
            # Kubernetes' `command` replaces the image's ENTRYPOINT, its `args` the CMD.
            f"--entrypoint={json.dumps(spec['command'])}",
            *(f"--env={e['name']}={e['value']}" for e in spec["env"]),
            f"--volume={logs}:/var/log/sustainbot",
            f"--volume={LOGROTATE_CONF}:/etc/sustainbot-logrotate/logrotate.conf:ro",
            f"--volume={state}:/var/lib/logrotate",
        ),
    )
    status = engine.volume_path(state) / "status"
    wait_for(status.exists, "logrotate to write its state", explain=lambda: engine.logs(rotator))
    started = time.monotonic()
    engine.run("stop", f"--time={GRACE}", rotator, timeout=GRACE + 60)
    took = time.monotonic() - started
    assert engine.exit_code(rotator) == 0, engine.logs(rotator)
    assert took < 10, f"the rotator took {took:.1f}s to stop"


def test_rotator_rotates_the_apps_log_in_the_shared_volume_as_the_images_user(
    engine: Podman,
) -> None:
    """A forced run of the manifest's logrotate.conf renames the log to .1 in the volume, the
    rotated file still the images' user's, and makes no new log (the app reopens its path)."""
    logs, state = engine.volume("logs"), engine.volume("logrotate-state")
    log = write_log(engine, logs, [contract_line("app.started")] * 3)
    result = engine.run(
        "run",
        "--rm",
        "--network=none",
        *HARDENED,
        "--entrypoint=logrotate",
        f"--volume={logs}:/var/log/sustainbot",
        f"--volume={LOGROTATE_CONF}:/etc/sustainbot-logrotate/logrotate.conf:ro",
        f"--volume={state}:/var/lib/logrotate",
        IMAGES["log-rotator"],
        "--force",
        "--verbose",
        "--state",
        "/var/lib/logrotate/status",
        "/etc/sustainbot-logrotate/logrotate.conf",
    )
    rotated = log.with_name("sustainbot.jsonl.1")
    assert rotated.exists() and not log.exists(), result.stdout + result.stderr
    assert (rotated.stat().st_uid, rotated.stat().st_gid) == (10001, 10001)


def cloudwatch_logs(endpoint: str) -> Any:
    return boto3.client(
        "logs",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        aws_access_key_id="emulator",
        aws_secret_access_key="emulator",
        config=Config(retries={"total_max_attempts": 3, "mode": "standard"}),
    )


def shipped(logs: Any) -> list[str]:
    """The messages in the test's stream, oldest first; [] while it does not exist."""
    try:
        page = logs.get_log_events(logGroupName=GROUP, logStreamName=STREAM, startFromHead=True)
    except logs.exceptions.ResourceNotFoundException:
        return []
    return [e["message"] for e in page["events"]]


def test_cloudwatch_exporter_image_ships_the_log_to_the_emulator_image(engine: Podman) -> None:
    """In one pod, as compose's `cloudwatch` profile wires them: the emulator image and the
    CloudWatch exporter image, which ships every line of the log and stops with exit 0."""
    emulator_port, exporter_port = free_port(), free_port()
    pod = engine.pod(
        "cloudwatch", f"127.0.0.1:{emulator_port}:5000", f"127.0.0.1:{exporter_port}:9464"
    )
    logs, state = engine.volume("logs"), engine.volume("state")
    # Stamped now: CloudWatch (and the emulator) drops events older than 14 days.
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    lines = [contract_line("app.started", now), contract_line("app.stopped", now)]
    write_log(engine, logs, lines)
    emulator = engine.start(
        IMAGES["cloudwatch-emulator"], what="emulator", options=(f"--pod={pod}", *HARDENED)
    )
    engine.wait_healthy(emulator)
    exporter = engine.start(
        IMAGES["exporter-cloudwatch"],
        what="exporter-cloudwatch",
        options=(
            f"--pod={pod}",
            *HARDENED,
            "--env=CLOUDWATCH_REGION=eu-west-1",
            f"--env=CLOUDWATCH_LOG_GROUP={GROUP}",
            f"--env=CLOUDWATCH_LOG_STREAM={STREAM}",
            "--env=CLOUDWATCH_FLUSH_SECONDS=1",
            "--env=AWS_ENDPOINT_URL=http://127.0.0.1:5000",
            "--env=AWS_ACCESS_KEY_ID=emulator",
            "--env=AWS_SECRET_ACCESS_KEY=emulator",
            f"--volume={logs}:/var/log/sustainbot:ro",
            f"--volume={state}:/var/lib/log-exporter",
        ),
    )
    wait_for(
        lambda: answers(exporter_port, "/readyz"),
        "the CloudWatch exporter to answer /readyz",
        explain=lambda: engine.logs(exporter),
    )
    client = cloudwatch_logs(f"http://127.0.0.1:{emulator_port}")
    wait_for(
        lambda: shipped(client),
        "the log's lines to reach the emulator",
        until=lambda messages: messages == [line.decode().rstrip("\n") for line in lines],
        timeout=120,
        explain=lambda: engine.logs(exporter),
    )
    engine.wait_healthy(exporter)
    engine.run("stop", f"--time={GRACE}", exporter, timeout=GRACE + 60)
    assert engine.exit_code(exporter) == 0, engine.logs(exporter)
