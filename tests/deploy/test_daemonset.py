"""deploy/kubernetes-daemonset: one exporter per node reading /var/log/pods, SustainBot logging to
stdout, validated offline against the API schemas and the exporter's own command line."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import pytest

from log_exporter import settings
from log_exporter.cli import build_parser
from tests.support.deploy import DEPLOY, load_yaml, load_yaml_all

NODE = DEPLOY / "kubernetes-daemonset"
KUBERNETES_VERSIONS = ("1.29", "latest")


def _docs() -> dict[str, dict[str, Any]]:
    """Every object of the kustomization's resources, by kind."""
    kustomization = load_yaml(NODE / "kustomization.yaml")
    out: dict[str, dict[str, Any]] = {}
    for resource in kustomization["resources"]:
        for doc in load_yaml_all(NODE / resource):
            key = (
                doc["kind"] if doc["kind"] != "ServiceAccount" else f"SA/{doc['metadata']['name']}"
            )
            assert key not in out, key
            out[key] = doc
    return out


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return _docs()


def _pod(doc: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = doc["spec"]["template"]["spec"]
    return pod


def _exporter(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (container,) = _pod(docs["DaemonSet"])["containers"]
    return dict(container)


def _serve_args(docs: dict[str, dict[str, Any]]) -> Any:
    """The exporter's arguments and environment as its own command line parses and checks
    them."""
    exporter = _exporter(docs)
    environ = {e["name"]: e["value"] for e in exporter.get("env", [])}
    args = build_parser(environ).parse_args(["serve", *exporter["args"]])
    settings.check(args, settings.SERVE)
    return args


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_are_valid_for_the_kubernetes_schema(
    docs: dict[str, dict[str, Any]], version: str
) -> None:
    """DaemonSet, Deployment, Service and ServiceAccounts are valid, strictly (no unknown
    fields), for the Kubernetes API."""
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="dev dependency kubernetes-validate missing"
    )
    if version == "latest":
        version = kubernetes_validate.latest_version()
    for key, doc in docs.items():
        if key != "PodMonitor":
            kubernetes_validate.validate(doc, version, strict=True)
    assert set(docs) == {
        "DaemonSet",
        "Deployment",
        "Service",
        "PodMonitor",
        "SA/log-exporter-node",
        "SA/sustainbot",
    }


def test_exporter_reads_the_apps_container_logs_read_only(docs: dict[str, dict[str, Any]]) -> None:
    """The exporter's --file (parsed by its own command line) reads the CRI logs of the app's
    container under the read-only /var/log/pods host path; the app's container is named as the
    pattern's container directory and logs to stdout, with no log volume."""
    args = _serve_args(docs)
    assert args.input_format == "cri"
    assert args.file == ["/var/log/pods/{namespace}_{pod}_{_}/sustainbot/*.log"]
    (pattern,) = args.file
    exporter = _exporter(docs)
    mounts = {m["mountPath"]: m for m in exporter["volumeMounts"]}
    assert mounts["/var/log/pods"]["readOnly"] is True
    volumes = {v["name"]: v for v in _pod(docs["DaemonSet"])["volumes"]}
    assert volumes[mounts["/var/log/pods"]["name"]]["hostPath"]["path"] == "/var/log/pods"
    (app,) = _pod(docs["Deployment"])["containers"]
    env = {e["name"]: e.get("value") for e in app["env"]}
    assert env["JSON_LOG_PATH"] == "-"
    assert "volumes" not in _pod(docs["Deployment"]) or all(
        "emptyDir" in v and v["name"] == "tmp" for v in _pod(docs["Deployment"])["volumes"]
    )
    # The kubelet's path for this app's pod: namespace_pod_uid/container/restart.log.
    glob = re.sub(r"\{[a-z_]+\}", "*", pattern)
    assert fnmatch.fnmatchcase(
        f"/var/log/pods/prod_sustainbot-5d9c-x2x_7c1e/{app['name']}/0.log", glob
    )


def test_no_constant_label_overrides_the_podmonitors_job_or_the_pods_labels(
    docs: dict[str, dict[str, Any]],
) -> None:
    """With honorLabels an exposed label wins over the target's: the exporter adds no --label
    job (which would replace the job the alert rules select), namespace or pod."""
    args = _serve_args(docs)
    names = {label.split("=", 1)[0] for label in args.label}
    assert not names & {"job", "namespace", "pod", "instance"}


def test_a_deleted_pods_last_counts_stay_for_several_scrapes(
    docs: dict[str, dict[str, Any]],
) -> None:
    """A deleted pod's series stay on /metrics for --file-grace-period after its logs are gone:
    long enough for several scrapes to take its last counts (and rate() its last increase)."""
    args = _serve_args(docs)
    (endpoint,) = docs["PodMonitor"]["spec"]["podMetricsEndpoints"]
    match = re.fullmatch(r"(\d+)s", endpoint["interval"])
    assert match, endpoint["interval"]
    interval = float(match.group(1))
    assert args.file_grace_period >= 4 * interval


def test_state_lives_on_the_node(docs: dict[str, dict[str, Any]]) -> None:
    """The state file is on a host path per node, so an exporter restarted or updated resumes
    every file where it stopped."""
    args = _serve_args(docs)
    exporter = _exporter(docs)
    mounts = {m["mountPath"]: m for m in exporter["volumeMounts"]}
    state_dir = str(Path(args.state).parent)
    volumes = {v["name"]: v for v in _pod(docs["DaemonSet"])["volumes"]}
    host = volumes[mounts[state_dir]["name"]]["hostPath"]
    assert host == {"path": "/var/lib/log-exporter", "type": "DirectoryOrCreate"}
    assert not mounts[state_dir].get("readOnly", False)


def test_every_container_has_requests_under_limits_and_no_privileges(
    docs: dict[str, dict[str, Any]],
) -> None:
    """Both pods' containers request CPU and memory under their limits, drop every capability,
    cannot escalate and have a read-only root; no API token is mounted."""
    for kind in ("DaemonSet", "Deployment"):
        pod = _pod(docs[kind])
        assert pod["automountServiceAccountToken"] is False, kind
        for container in pod["containers"]:
            res = container["resources"]
            for what in ("cpu", "memory"):
                assert _quantity(res["requests"][what]) <= _quantity(res["limits"][what])
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
    assert _pod(docs["Deployment"])["securityContext"]["runAsNonRoot"] is True


def test_podmonitor_keeps_the_apps_namespace_and_pod_labels(
    docs: dict[str, dict[str, Any]],
) -> None:
    """The PodMonitor scrapes every node's exporter on its metrics port, honouring the labels
    the exporter takes from the path (else Prometheus renames them exported_pod), with the job
    the alert rules select."""
    monitor = docs["PodMonitor"]
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    labels = docs["DaemonSet"]["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    ports = {p["name"]: p["containerPort"] for p in _exporter(docs)["ports"]}
    assert endpoint["port"] in ports and endpoint["honorLabels"] is True
    assert str(ports[endpoint["port"]]) == _serve_args(docs).listen.rsplit(":", 1)[1]
    (relabel,) = [r for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
    rules = (DEPLOY / "prometheus" / "rules" / "sustainbot-alerts.yml").read_text()
    assert {relabel["replacement"]} == set(re.findall(r'job="([^"]+)"', rules))


def test_kustomization_names_existing_files_and_used_images(
    docs: dict[str, dict[str, Any]],
) -> None:
    """kustomization.yaml lists files that exist and exactly the images the pods use."""
    kustomization = load_yaml(NODE / "kustomization.yaml")
    assert all((NODE / r).is_file() for r in kustomization["resources"])
    used = {
        c["image"].split(":")[0]
        for kind in ("DaemonSet", "Deployment")
        for c in _pod(docs[kind])["containers"]
    }
    assert {i["name"] for i in kustomization["images"]} == used


def _quantity(value: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match, value
    return float(match.group(1)) * units.get(match.group(2), 1)
