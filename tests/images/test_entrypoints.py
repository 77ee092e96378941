"""Arguments after the image name reach the program, as the Dockerfile's header promises."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.images.podman import HARDENED, IMAGES, Podman, answers, http_get
from tests.support.ports import free_port
from tests.support.waits import wait_for


@pytest.fixture
def engine(podman: Podman) -> Iterator[Podman]:
    child = podman.child()
    try:
        yield child
    finally:
        child.remove_all()


def test_exporter_serves_on_the_port_its_web_listen_address_flag_names(engine: Podman) -> None:
    """`podman run IMAGE --web.listen-address=:9100` serves /metrics on 9100 inside the
    container, on a read-only root filesystem, as node_exporter's image would."""
    host_port = free_port()
    pod = engine.pod("flags", f"127.0.0.1:{host_port}:9100")
    logs = engine.volume("logs")
    exporter = engine.start(
        IMAGES["exporter"],
        "--web.listen-address=:9100",
        "--log.format=json",
        what="flags",
        options=(f"--pod={pod}", *HARDENED, f"--volume={logs}:/var/log/sustainbot:ro"),
    )
    wait_for(
        lambda: answers(host_port, "/metrics"),
        "the exporter to serve /metrics on the port its flag names",
        explain=lambda: engine.logs(exporter),
    )
    assert engine.inspect("container", exporter)["HostConfig"]["ReadonlyRootfs"] is True
    status, text = http_get(host_port, "/metrics")
    assert status == 200 and b"log_exporter_build_info" in text


def test_help_after_the_image_name_is_the_servers_and_the_apps_own(engine: Podman) -> None:
    """`--help` after the exporter image is `log-exporter serve --help`; `token --help` after
    the app image is `sustainbot token --help`."""
    exporter = engine.run("run", "--rm", "--network=none", IMAGES["exporter"], "--help")
    assert "--web.listen-address" in exporter.stdout, exporter.stdout
    app = engine.run("run", "--rm", "--network=none", IMAGES["app"], "token", "--help")
    assert "--role" in app.stdout, app.stdout


def test_emulator_image_answers_its_health_check(engine: Podman) -> None:
    """The CloudWatch emulator image serves moto on 5000 and its HEALTHCHECK passes."""
    host_port = free_port()
    pod = engine.pod("emulator", f"127.0.0.1:{host_port}:5000")
    emulator = engine.start(
        IMAGES["cloudwatch-emulator"], what="emulator", options=(f"--pod={pod}", *HARDENED)
    )
    engine.wait_healthy(emulator)
    assert answers(host_port, "/moto-api/data.json")
