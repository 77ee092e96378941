"""The Kubernetes manifests in deploy/kubernetes, validated offline against the API schemas."""

from __future__ import annotations

import getpass
import grp
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.deploy import DEPLOY, json_patch, load_yaml, load_yaml_all
from tests.support.processes import binary, run

K8S = DEPLOY / "kubernetes"
PRE_129 = DEPLOY / "kubernetes-pre-1.29"
TLS = DEPLOY / "kubernetes-tls"
LOG_DIR = "/var/log/sustainbot"
# The first release with native sidecars, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.29", "latest")
# Releases the variant for older clusters must suit: the oldest the validator knows, the newest.
PRE_129_VERSIONS = ("1.25", "latest")
# gunicorn's default graceful timeout: how long the app may take to exit after SIGTERM.
GUNICORN_GRACEFUL_SECONDS = 30


def _pre_129_deployment() -> dict[str, Any]:
    """The Deployment of the older clusters' overlay: its JSON patches applied to the base."""
    (doc,) = load_yaml_all(K8S / "deployment.yaml")
    overlay = load_yaml(PRE_129 / "kustomization.yaml")
    assert overlay["resources"] == ["../kubernetes"]
    (patch,) = overlay["patches"]
    assert patch["target"] == {"kind": "Deployment", "name": "sustainbot"}
    result: dict[str, Any] = json_patch(doc, load_yaml_text(patch["patch"]))
    return result


def _tls_deployment() -> dict[str, Any]:
    """The Deployment of the TLS overlay: its JSON patches applied to the base."""
    (doc,) = load_yaml_all(K8S / "deployment.yaml")
    overlay = load_yaml(TLS / "kustomization.yaml")
    assert overlay["resources"] == ["../kubernetes"]
    (patch,) = overlay["patches"]
    assert patch["target"] == {"kind": "Deployment", "name": "sustainbot"}
    result: dict[str, Any] = json_patch(doc, load_yaml_text(patch["patch"]))
    return result


def load_yaml_text(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def _all_containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    pod = deployment["spec"]["template"]["spec"]
    return {c["name"]: c for c in [*pod.get("initContainers", []), *pod["containers"]]}


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    (doc,) = load_yaml_all(K8S / "deployment.yaml")
    return dict(doc)


@pytest.fixture(scope="module")
def containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every container of the pod by name, native sidecars (init containers) included."""
    return _all_containers(deployment)


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def _ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", [])}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifest_rejected_by_kubernetes_schema(version: str) -> None:
    """Deployment, Service and ServiceAccount are valid, strictly (no unknown fields), for the
    Kubernetes API."""
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="dev dependency kubernetes-validate missing"
    )
    if version == "latest":
        version = kubernetes_validate.latest_version()
    kinds = []
    for name in ("serviceaccount.yaml", "deployment.yaml", "service.yaml"):
        for doc in load_yaml_all(K8S / name):
            kubernetes_validate.validate(doc, version, strict=True)
            kinds.append(doc["kind"])
    assert sorted(kinds) == ["Deployment", "Service", "ServiceAccount"]


@pytest.mark.parametrize("version", PRE_129_VERSIONS)
def test_pre_129_variant_rejected_by_kubernetes_schema(version: str) -> None:
    """The older clusters' Deployment is valid for releases without native sidecars too."""
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="dev dependency kubernetes-validate missing"
    )
    if version == "latest":
        version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(_pre_129_deployment(), version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_tls_variant_is_valid_for_the_kubernetes_schema(version: str) -> None:
    """The TLS overlay's Deployment is valid, strictly, for the Kubernetes API."""
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="dev dependency kubernetes-validate missing"
    )
    if version == "latest":
        version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(_tls_deployment(), version, strict=True)


def test_tls_variant_probes_over_https_with_the_web_config_mounted() -> None:
    """The TLS overlay passes --web.config.file naming a file of a read-only Secret mount, and
    probes /healthz over HTTPS (no credentials needed there); nothing else of the pod changes."""
    variant = _tls_deployment()
    exporter = _all_containers(variant)["log-exporter"]
    flag, path = exporter["args"]
    assert flag == "--web.config.file"
    mount = next(m for m in exporter["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True
    volumes = {v["name"]: v for v in variant["spec"]["template"]["spec"]["volumes"]}
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "sustainbot-exporter-web"
    # Readable by the pod's group (fsGroup), which the exporter runs in, and nobody else.
    assert secret["defaultMode"] == 0o440
    for probe in ("startupProbe", "livenessProbe"):
        assert exporter[probe]["httpGet"] == {
            "path": "/healthz",
            "port": "metrics",
            "scheme": "HTTPS",
        }
    (base,) = load_yaml_all(K8S / "deployment.yaml")
    for name, container in _all_containers(base).items():
        if name != "log-exporter":
            assert _all_containers(variant)[name] == container, name


def test_exporter_starts_before_and_stops_after_the_app(deployment: dict[str, Any]) -> None:
    """The exporter and the rotator are native sidecars: started before the app, stopped after."""
    pod = deployment["spec"]["template"]["spec"]
    sidecars = pod["initContainers"]
    assert [c["name"] for c in sidecars] == ["log-exporter", "log-rotator"]
    assert all(c["restartPolicy"] == "Always" for c in sidecars)
    assert [c["name"] for c in pod["containers"]] == ["sustainbot"]
    # The exporter's startup probe holds the app's start until the exporter serves.
    assert sidecars[0]["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_pre_129_variant_keeps_sidecars_as_init_containers() -> None:
    """Without native sidecars the exporter and rotator are plain containers beside the app."""
    variant = _pre_129_deployment()
    pod = variant["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert [c["name"] for c in pod["containers"]] == ["sustainbot", "log-exporter", "log-rotator"]
    assert all("restartPolicy" not in c for c in pod["containers"])
    (base,) = load_yaml_all(K8S / "deployment.yaml")
    # Everything else as in the base: only the drain's timing differs.
    for name, container in _all_containers(base).items():
        moved = dict(_all_containers(variant)[name])
        moved.pop("env", None)
        expected = {k: v for k, v in container.items() if k not in ("env", "restartPolicy")}
        assert moved == expected, name


def _seconds(container: dict[str, Any], name: str) -> float:
    return float(_env(container)[name])


def test_grace_period_covers_app_stop_and_drain(deployment: dict[str, Any]) -> None:
    """The grace period covers gunicorn's graceful stop, then the exporter's whole drain (native
    order), or a drain outlasting gunicorn's stop (both signalled at once)."""
    native = deployment["spec"]["template"]["spec"]
    exporter = _all_containers(deployment)["log-exporter"]
    timeout = _seconds(exporter, "LOG_EXPORTER_DRAIN_TIMEOUT")
    assert native["terminationGracePeriodSeconds"] >= GUNICORN_GRACEFUL_SECONDS + timeout + 5

    variant = _pre_129_deployment()
    exporter = _all_containers(variant)["log-exporter"]
    timeout = _seconds(exporter, "LOG_EXPORTER_DRAIN_TIMEOUT")
    quiet = _seconds(exporter, "LOG_EXPORTER_DRAIN_QUIET")
    assert timeout >= GUNICORN_GRACEFUL_SECONDS + quiet
    assert variant["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= timeout + 5


def test_service_account_mounts_no_token(deployment: dict[str, Any]) -> None:
    """The pod runs as the kustomization's ServiceAccount, which mounts no API token."""
    (account,) = load_yaml_all(K8S / "serviceaccount.yaml")
    assert account["kind"] == "ServiceAccount"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False
    assert pod["automountServiceAccountToken"] is False


def test_sidecar_does_not_share_the_app_log(containers: dict[str, dict[str, Any]]) -> None:
    """App and sidecar mount one emptyDir at the log path; the sidecar only reads it."""
    app, exporter = containers["sustainbot"], containers["log-exporter"]
    assert _env(app)["JSON_LOG_PATH"] == _env(exporter)["LOG_EXPORTER_FILE"]
    assert _env(app)["JSON_LOG_PATH"].startswith(LOG_DIR + "/")
    app_mount, exporter_mount = _mounts(app)[LOG_DIR], _mounts(exporter)[LOG_DIR]
    assert app_mount["name"] == exporter_mount["name"]
    assert not app_mount.get("readOnly", False) and exporter_mount["readOnly"] is True


def test_sidecar_state_lives_on_a_pod_volume(
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


def test_containers_run_as_non_root_with_a_read_only_root(
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
    """The app is probed on /healthz; the sidecar is started and live on /healthz and has no
    readiness probe, so an exporter catching up never takes the app out of its Service."""
    app, exporter = containers["sustainbot"], containers["log-exporter"]
    assert "readinessProbe" not in exporter
    assert "readinessProbe" not in containers["log-rotator"]
    expected = {
        ("sustainbot", "startupProbe"): "/healthz",
        ("sustainbot", "readinessProbe"): "/healthz",
        ("sustainbot", "livenessProbe"): "/healthz",
        ("log-exporter", "startupProbe"): "/healthz",
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


def test_service_routes_to_the_app_port_only(
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


def test_kustomization_names_existing_files_and_used_images(
    deployment: dict[str, Any], containers: dict[str, dict[str, Any]]
) -> None:
    """kustomization.yaml lists files that exist and images the containers use, and generates
    the ConfigMap the rotator mounts."""
    kustomization = load_yaml(K8S / "kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    used = {c["image"].split(":")[0] for c in containers.values()}
    assert {i["name"] for i in kustomization["images"]} == used
    (generated,) = kustomization["configMapGenerator"]
    assert all((K8S / f).is_file() for f in generated["files"])
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mount = _mounts(containers["log-rotator"])["/etc/sustainbot-logrotate"]
    assert volumes[mount["name"]]["configMap"]["name"] == generated["name"]


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


def _rotator_config(tmp_path: Path, log: Path, size: str) -> Path:
    """The pod's logrotate.conf for ``log``: only the path, the size and the ``su`` user (the
    image's user does not exist here) differ."""
    text = (K8S / "logrotate.conf").read_text()
    assert "/var/log/sustainbot/sustainbot.jsonl {" in text and "su sustainbot sustainbot" in text
    user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    text = text.replace("/var/log/sustainbot/sustainbot.jsonl", str(log))
    text = text.replace("su sustainbot sustainbot", f"su {user} {group}")
    text = re.sub(r"^(\s*)size \S+$", rf"\g<1>size {size}", text, flags=re.MULTILINE)
    conf = tmp_path / "logrotate.conf"
    conf.write_text(text)
    conf.chmod(0o644)
    return conf


def test_log_rotator_keeps_rotated_generations_whole(
    containers: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """The pod's rotator, real logrotate on its config, keeps four rotated generations whole and
    deletes only the oldest; a log below the size limit is left alone."""
    logrotate = binary("logrotate")
    rotator = containers["log-rotator"]
    assert _mounts(rotator)[LOG_DIR]["name"] == _mounts(containers["sustainbot"])[LOG_DIR]["name"]
    assert "/etc/sustainbot-logrotate/logrotate.conf" in rotator["args"][0]
    logs = tmp_path / "logs"
    logs.mkdir()
    logs.chmod(0o2777)  # as the emptyDir with fsGroup: logrotate needs its `su` for this
    log = logs / "sustainbot.jsonl"
    conf = _rotator_config(tmp_path, log, "4k")
    status = tmp_path / "status"
    generations = []
    for generation in range(6):
        lines = "".join(f'{{"event":"http.request","n":{generation}{i:04d}}}\n' for i in range(200))
        log.write_text(lines)
        generations.append(lines)
        result = run([logrotate, "--state", str(status), str(conf)])
        assert result.returncode == 0, result.stderr
        assert not log.exists()
    # Newest first: .1 is the last generation written; the two oldest were deleted.
    kept = sorted(p.name for p in logs.iterdir())
    assert kept == [f"sustainbot.jsonl.{n}" for n in (1, 2, 3, 4)]
    for n in (1, 2, 3, 4):
        assert (logs / f"sustainbot.jsonl.{n}").read_text() == generations[-n]
    log.write_text(generations[0][:100])
    assert run([logrotate, "--state", str(status), str(conf)]).returncode == 0
    assert log.read_text() == generations[0][:100]
