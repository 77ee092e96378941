"""The Kubernetes manifests in deploy/kubernetes, validated offline against the API schemas."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.deploy import DEPLOY, load_yaml, load_yaml_all
from tests.support.processes import run
from tests.support.waits import wait_for

K8S = DEPLOY / "kubernetes"
LOG_DIR = "/var/log/sustainbot"
# The oldest Kubernetes release still commonly run, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.29", "latest")


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    (doc,) = load_yaml_all(K8S / "deployment.yaml")
    return doc


@pytest.fixture(scope="module")
def containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def _ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", [])}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifest_rejected_by_kubernetes_schema(version: str) -> None:
    """Deployment and Service are valid, strictly (no unknown fields), for the Kubernetes API."""
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="dev dependency kubernetes-validate missing"
    )
    if version == "latest":
        version = kubernetes_validate.latest_version()
    kinds = []
    for name in ("deployment.yaml", "service.yaml"):
        for doc in load_yaml_all(K8S / name):
            kubernetes_validate.validate(doc, version, strict=True)
            kinds.append(doc["kind"])
    assert sorted(kinds) == ["Deployment", "Service"]


def test_sidecar_does_not_share_the_app_log(containers: dict[str, dict[str, Any]]) -> None:
    """App and sidecar mount one emptyDir at the log path; the sidecar only reads it."""
    app, exporter = containers["sustainbot"], containers["log-exporter"]
    assert _env(app)["JSON_LOG_PATH"] == _env(exporter)["LOG_EXPORTER_FILE"]
    assert _env(app)["JSON_LOG_PATH"].startswith(LOG_DIR + "/")
    app_mount, exporter_mount = _mounts(app)[LOG_DIR], _mounts(exporter)[LOG_DIR]
    assert app_mount["name"] == exporter_mount["name"]
    assert not app_mount.get("readOnly", False) and exporter_mount["readOnly"] is True


def test_sidecar_state_lost_on_container_restart(
    deployment: dict[str, Any], containers: dict[str, dict[str, Any]]
) -> None:
    """The sidecar's state file lives on a pod volume of its own, not in the container."""
    exporter = containers["log-exporter"]
    state_dir = os.path.dirname(_env(exporter)["LOG_EXPORTER_STATE"])
    mount = _mounts(exporter)[state_dir]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mount["name"]]
    others = [
        m["name"] for n, c in containers.items() if n != "log-exporter" for m in _mounts(c).values()
    ]
    assert mount["name"] not in others
    assert "emptyDir" in volumes[_mounts(exporter)[LOG_DIR]["name"]]


def test_container_runs_as_root_or_with_writable_root(
    deployment: dict[str, Any], containers: dict[str, dict[str, Any]]
) -> None:
    """The pod runs as the images' non-root uid; every container has a read-only root, no caps."""
    pod = deployment["spec"]["template"]["spec"]
    ctx = pod["securityContext"]
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == 10001 and ctx["fsGroup"] == 10001
    assert ctx["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    for name, container in containers.items():
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"]["drop"] == ["ALL"], name


def _quantity(value: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match, value
    return float(match.group(1)) * units.get(match.group(2), 1)


def test_container_without_resources(containers: dict[str, dict[str, Any]]) -> None:
    """Every container requests CPU and memory and is capped at limits no lower than requests."""
    for name, container in containers.items():
        res = container["resources"]
        for kind in ("cpu", "memory"):
            assert _quantity(res["requests"][kind]) <= _quantity(res["limits"][kind]), name
    # The sidecar's memory limit leaves headroom over its 80 MB RSS target.
    assert _quantity(containers["log-exporter"]["resources"]["limits"]["memory"]) >= 100 * 2**20


def test_probe_checks_wrong_endpoint(containers: dict[str, dict[str, Any]]) -> None:
    """The app is probed on /healthz; the sidecar is live on /healthz and ready on /readyz."""
    app, exporter = containers["sustainbot"], containers["log-exporter"]
    expected = {
        ("sustainbot", "startupProbe"): "/healthz",
        ("sustainbot", "readinessProbe"): "/healthz",
        ("sustainbot", "livenessProbe"): "/healthz",
        ("log-exporter", "readinessProbe"): "/readyz",
        ("log-exporter", "livenessProbe"): "/healthz",
    }
    for (name, probe), path in expected.items():
        container = containers[name]
        get = container[probe]["httpGet"]
        assert get["path"] == path and get["port"] in _ports(container), (name, probe)
    assert _ports(app) == {"http": 5000}
    # Arguments, not a command: the image's entrypoint stays the program.
    assert "command" not in app and "command" not in exporter
    assert app["args"][0] == "serve" and "--port" in app["args"] and "5000" in app["args"]
    assert _ports(exporter) == {"metrics": 9464}
    assert _env(exporter)["LOG_EXPORTER_LISTEN"] == "0.0.0.0:9464"


def test_scrape_annotations_point_elsewhere(
    deployment: dict[str, Any], containers: dict[str, dict[str, Any]]
) -> None:
    """The pod's prometheus.io annotations name the sidecar's metrics port and path."""
    notes = deployment["spec"]["template"]["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert int(notes["prometheus.io/port"]) == _ports(containers["log-exporter"])["metrics"]
    assert notes["prometheus.io/path"] == "/metrics"


def _alert_jobs() -> set[str]:
    text = (DEPLOY / "prometheus" / "rules" / "sustainbot-alerts.yml").read_text()
    return set(re.findall(r'job="([^"]+)"', text))


def test_podmonitor_selects_nothing(
    deployment: dict[str, Any], containers: dict[str, dict[str, Any]]
) -> None:
    """The PodMonitor selects these pods' metrics port and labels them as the alerts expect."""
    (monitor,) = load_yaml_all(DEPLOY / "kubernetes-operator" / "podmonitor.yaml")
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in _ports(containers["log-exporter"])
    assert endpoint["path"] == "/metrics"
    (relabel,) = [r for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
    assert {relabel["replacement"]} == _alert_jobs()


def test_service_exposes_metrics_or_selects_nothing(
    deployment: dict[str, Any], containers: dict[str, dict[str, Any]]
) -> None:
    """The Service routes to the app's port on these pods and never load-balances scrapes."""
    (service,) = load_yaml_all(K8S / "service.yaml")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in _ports(containers["sustainbot"])


def test_secret_written_into_manifest(containers: dict[str, dict[str, Any]]) -> None:
    """The JWT secret comes from a Kubernetes Secret, never a literal in the manifest."""
    for container in containers.values():
        for item in container.get("env", []):
            if re.search(r"SECRET|PASSWORD|TOKEN|KEY", item["name"]):
                assert "value" not in item and "secretKeyRef" in item["valueFrom"], item["name"]
    ref = _env(containers["sustainbot"])["SUSTAINBOT_JWT_SECRET"]["secretKeyRef"]
    assert ref == {"name": "sustainbot-jwt", "key": "secret"}


def test_kustomization_names_missing_file_or_image(containers: dict[str, dict[str, Any]]) -> None:
    """kustomization.yaml lists files that exist and images the containers use."""
    kustomization = load_yaml(K8S / "kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    used = {c["image"].split(":")[0] for c in containers.values()}
    assert {i["name"] for i in kustomization["images"]} == used


def test_annotation_scrape_config_rejected_by_promtool(
    tmp_path: Path, promtool_binary: str
) -> None:
    """The in-cluster scrape config parses, rewrites pod addresses right, and loads the rules.

    Debian's Prometheus is built without Kubernetes discovery, so the discovery block is swapped
    for a static target before promtool checks the rest (relabelling, rule files).
    """
    import yaml

    config = load_yaml(K8S / "prometheus-scrape-config.yml")
    (job,) = config["scrape_configs"]
    assert job["job_name"] in _alert_jobs()
    assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}]
    job["static_configs"] = [{"targets": ["10.0.0.1:5000"]}]
    (tmp_path / "rules").mkdir()
    rules = DEPLOY / "prometheus" / "rules" / "sustainbot-alerts.yml"
    (tmp_path / "rules" / rules.name).write_text(rules.read_text())
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = run([promtool_binary, "check", "config", str(tmp_path / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    # Prometheus anchors relabel regexes; the address rewrite must keep the pod IP, use the port.
    (rewrite,) = [r for r in job["relabel_configs"] if r.get("target_label") == "__address__"]
    for address in ("10.0.0.7:5000", "10.0.0.7"):
        match = re.fullmatch(rewrite["regex"], f"{address};9464")
        assert match is not None
        assert rewrite["replacement"].replace("$1", match[1]).replace("$2", match[2]) == (
            "10.0.0.7:9464"
        )


def test_log_rotator_loses_lines_or_never_rotates(
    containers: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """The pod's rotator renames the log once it reaches its size limit, keeping every line."""
    rotator = containers["log-rotator"]
    assert rotator["command"] == ["python", "-c"]
    assert _mounts(rotator)[LOG_DIR]["name"] == _mounts(containers["sustainbot"])[LOG_DIR]["name"]
    assert _env(rotator)["LOG_FILE"] == _env(containers["sustainbot"])["JSON_LOG_PATH"]
    log = tmp_path / "sustainbot.jsonl"
    env = {**os.environ, "LOG_FILE": str(log), "ROTATE_BYTES": "4096", "CHECK_SECONDS": "0.05"}
    proc = subprocess.Popen(
        [sys.executable, "-c", rotator["args"][0]], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        generations = []
        for generation in range(2):
            lines = [f'{{"event":"http.request","n":{generation}{i:04d}}}\n' for i in range(200)]
            with log.open("a") as f:
                for line in lines:
                    f.write(line)
            generations.append("".join(lines))
            rotated = log.with_name(log.name + ".1")
            wait_for(lambda: not log.exists(), f"rotation {generation}")
            assert rotated.read_text() == generations[-1]
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert output.count("rotated ") == 2
