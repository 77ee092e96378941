"""The app and exporter images as compose and the Kubernetes pod run them: one network namespace
(a pod), the log in a volume the app writes and the exporter reads read-only, the exporter's state
in a volume of its own, each as the image's own non-root user with a read-only root filesystem,
and the ports published on 127.0.0.1 only. The tests of this module share that one stack, in
order: requests, build information, health checks, then the stop."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sustainbot.auth import mint_token
from sustainbot.settings import Settings
from tests.images.podman import HARDENED, IMAGES, REPO, Podman, answers, http_get, http_post
from tests.support.app import bearer, body
from tests.support.ports import free_port
from tests.support.waits import wait_for

SECRET = "image-test-secret-that-is-long-enough-for-hs256!"
EXECUTE = "/workflows/governed/execute"
VALIDATE = "/governance/validate"
# The manifests' one grace period for the app and its sidecars (terminationGracePeriodSeconds).
GRACE = yaml.safe_load((REPO / "deploy/kubernetes/deployment.yaml").read_text())["spec"][
    "template"
]["spec"]["terminationGracePeriodSeconds"]
# The Deployment's own arguments for the app and settings for the exporter's drain.
APP_ARGS = ("serve", "--host", "0.0.0.0", "--port", "5000", "--workers", "2")
DRAIN = ("--env=LOG_EXPORTER_DRAIN_QUIET=2", "--env=LOG_EXPORTER_DRAIN_TIMEOUT=20")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Stack:
    podman: Podman
    pod: str
    app: str
    exporter: str
    app_port: int
    exporter_port: int
    logs: str
    state: str
    sent: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def start_exporter(self) -> None:
        """A new exporter container in the pod, on the stack's volumes; waits for /readyz."""
        self.exporter = self.podman.start(
            IMAGES["exporter"],
            what="exporter",
            options=(
                f"--pod={self.pod}",
                *HARDENED,
                *DRAIN,
                f"--volume={self.logs}:/var/log/sustainbot:ro",
                f"--volume={self.state}:/var/lib/log-exporter",
            ),
        )
        wait_for(
            lambda: answers(self.exporter_port, "/readyz"),
            "the exporter container to answer /readyz",
            explain=lambda: self.podman.logs(self.exporter),
        )

    def metrics(self) -> Samples:
        status, text = http_get(self.exporter_port, "/metrics")
        assert status == 200, text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode())
            for s in family.samples
        }

    def requests_counted(self) -> dict[tuple[str, str, str], float]:
        """The exporter's request counts by (method, endpoint, status), but for /healthz, which
        the images' health checks call too."""
        return {
            (labels["method"], labels["endpoint"], labels["status_code"]): value
            for (name, pairs), value in self.metrics().items()
            if name == "sustainbot_http_requests_total"
            for labels in [dict(pairs)]
            if labels["endpoint"] != "/healthz"
        }

    def post(self, path: str, payload: dict[str, object], headers: dict[str, str]) -> None:
        status = http_post(self.app_port, path, json.dumps(payload).encode(), headers)
        self.sent["POST", path, str(status)] += 1


@pytest.fixture(scope="module")
def stack(podman: Podman) -> Iterator[Stack]:
    engine = podman.child()
    try:
        logs, state = engine.volume("logs"), engine.volume("state")
        app_port, exporter_port = free_port(), free_port()
        pod = engine.pod("stack", f"127.0.0.1:{app_port}:5000", f"127.0.0.1:{exporter_port}:9464")
        # The app first, as compose starts it: the new volume takes the owner of the directory
        # the image mounts it over, which both images give to their user.
        app = engine.start(
            IMAGES["app"],
            *APP_ARGS,
            what="app",
            options=(
                f"--pod={pod}",
                *HARDENED,
                f"--env=SUSTAINBOT_JWT_SECRET={SECRET}",
                f"--volume={logs}:/var/log/sustainbot",
            ),
        )
        wait_for(
            lambda: answers(app_port, "/healthz"),
            "the app container to answer /healthz",
            explain=lambda: engine.logs(app),
        )
        stack = Stack(engine, pod, app, "", app_port, exporter_port, logs, state)
        stack.start_exporter()
        yield stack
    finally:
        engine.remove_all()


def test_each_container_runs_as_the_images_user_and_the_app_writes_the_shared_log(
    stack: Stack,
) -> None:
    """Both containers run as uid 10001 on a read-only root filesystem, as the manifests ask,
    and the log in the shared volume is the app's file."""
    for container in (stack.app, stack.exporter):
        inspected = stack.podman.inspect("container", container)
        assert inspected["Config"]["User"] == "10001:10001"
        assert inspected["HostConfig"]["ReadonlyRootfs"] is True
        uid = stack.podman.run("exec", container, "python", "-c", "import os; print(os.getuid())")
        assert uid.stdout.strip() == "10001"
    log = stack.podman.volume_path(stack.logs) / "sustainbot.jsonl"
    wait_for(log.exists, "the app to create its log in the volume")
    assert (log.stat().st_uid, log.stat().st_gid) == (10001, 10001)


def test_the_exporter_counts_exactly_the_requests_the_app_answered(stack: Stack) -> None:
    """Real requests through the published app port show up, per status, in the exporter's
    /metrics through its published port, with tokens minted on the host and by the image."""
    analyst = mint_token(Settings(jwt_secret=SECRET), actor="Dana Operator", role="analyst")
    minted = stack.podman.run(
        "run",
        "--rm",
        "--network=none",
        f"--env=SUSTAINBOT_JWT_SECRET={SECRET}",
        IMAGES["app"],
        "token",
        "--actor",
        "ci",
        "--role",
        "approver",
    )
    approver = minted.stdout.strip()
    for _ in range(5):
        stack.post(EXECUTE, body("carbon_audit", "analysis", "We used 1,200 kWh."), bearer(analyst))
        stack.post(
            EXECUTE, body("deploy_staging", "execute", "Deploy api@1.4.2."), bearer(approver)
        )
        stack.post(EXECUTE, body("deploy_staging", "execute", "Deploy api@1.4.2."), bearer(analyst))
        stack.post(EXECUTE, body("generate_report", "nonsense"), bearer(analyst))
        stack.post(EXECUTE, body(), {})
        stack.post(VALIDATE, body(), bearer(approver))
        status, _ = http_get(stack.app_port, "/workflows")
        stack.sent["GET", "/workflows", str(status)] += 1
    statuses = {status for (_, _, status) in stack.sent}
    assert {"200", "401", "403", "422"} <= statuses, stack.sent
    wait_for(
        stack.requests_counted,
        "the exporter's request counts to equal the requests sent",
        until=lambda counted: counted == dict(stack.sent),
        explain=lambda: stack.podman.logs(stack.exporter),
    )


def test_build_info_and_version_name_the_revision_in_the_images_label(stack: Stack) -> None:
    """The revision label build-images.sh stamps, `--version` of both images and
    log_exporter_build_info{revision} name the same commit."""
    labels = stack.podman.inspect("image", IMAGES["exporter"])["Config"]["Labels"]
    revision = labels["org.opencontainers.image.revision"]
    assert revision not in ("", "unknown"), labels
    assert labels["org.opencontainers.image.created"] != "unknown", labels
    assert (
        labels["org.opencontainers.image.version"]
        == stack.podman.inspect("image", IMAGES["app"])["Config"]["Labels"][
            "org.opencontainers.image.version"
        ]
    )
    build_info = [
        dict(pairs) for (name, pairs) in stack.metrics() if name == "log_exporter_build_info"
    ]
    assert [info["revision"] for info in build_info] == [revision], build_info
    for image in (IMAGES["exporter"], IMAGES["app"]):
        assert image_label(stack.podman, image, "revision") == revision
        version = stack.podman.run("run", "--rm", "--network=none", image, "--version")
        assert revision in version.stdout + version.stderr, version


def image_label(podman: Podman, image: str, name: str) -> str:
    return str(
        podman.inspect("image", image)["Config"]["Labels"][f"org.opencontainers.image.{name}"]
    )


def test_the_images_health_checks_pass_in_the_running_stack(stack: Stack) -> None:
    """`podman healthcheck run` runs each image's HEALTHCHECK and it passes for both."""
    for container in (stack.app, stack.exporter):
        assert stack.podman.inspect("container", container)["Config"]["Healthcheck"]["Test"]
        stack.podman.wait_healthy(container)


def test_sigterm_stops_both_within_the_grace_period_with_exit_0_and_nothing_unread(
    stack: Stack,
) -> None:
    """Stopped app first, then the exporter, as the kubelet does: both exit 0 within the
    manifests' grace period, the exporter drains to the end of the log and keeps its state."""
    started = time.monotonic()
    for container in (stack.app, stack.exporter):
        stack.podman.run("stop", f"--time={GRACE}", container, timeout=GRACE + 60)
        assert stack.podman.exit_code(container) == 0, stack.podman.logs(container)
    took = time.monotonic() - started
    assert took < GRACE, f"the stop took {took:.1f}s, past the {GRACE}s grace period"
    stopped = [r for r in records(stack) if r.get("msg") == "stopped"]
    assert stopped and stopped[-1]["unread_lines"] == 0 and stopped[-1]["exit_code"] == 0, records(
        stack
    )
    state = stack.podman.volume_path(stack.state) / "state.json"
    assert state.exists(), "the exporter wrote no state into its volume"
    assert state.stat().st_uid == 10001


def records(stack: Stack) -> list[dict[str, Any]]:
    """The exporter container's own log records (JSON lines)."""
    return [
        json.loads(line)
        for line in stack.podman.logs(stack.exporter).splitlines()
        if line.startswith("{")
    ]


def test_a_new_exporter_container_resumes_from_the_state_volume_without_counting_twice(
    stack: Stack,
) -> None:
    """After the stop, a new exporter container on the same volumes reports the same request
    counts: it resumed from the state its predecessor saved instead of reading the log again."""
    before = stack.sent.copy()
    stack.start_exporter()
    log = (stack.podman.volume_path(stack.logs) / "sustainbot.jsonl").read_bytes()
    resumed = [r for r in records(stack) if r.get("msg") == "resuming from the state file"]
    assert [r["offset"] for r in resumed] == [len(log)], records(stack)
    assert stack.requests_counted() == dict(before)
    parsed = stack.metrics()[("log_exporter_lines_total", (("result", "parsed"),))]
    assert parsed == log.count(b"\n")
