"""The Prometheus-operator overlay and the dashboard ConfigMap, validated offline.

kubernetes-validate knows only the built-in API kinds, so the PrometheusRule is checked against
the fields of the operator's CRD schema (monitoring.coreos.com/v1, written out below from the
operator's published CRD), and the kustomizations are resolved here the way kustomize resolves
them (resources, load restrictions, configMapGenerator) instead of by a kustomize binary.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest

from tests.support.deploy import DEPLOY, REPO, load_script, load_yaml, load_yaml_all

OPERATOR = DEPLOY / "kubernetes-operator"
RULES = DEPLOY / "prometheus" / "rules" / "sustainbot-alerts.yml"
DASHBOARD = REPO / "dashboards" / "governance-observability.json"

# prometheus-operator's Duration and NonEmptyDuration patterns.
_DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
# The PrometheusRule's spec as the operator's CRD declares it (v0.75 and later); unknown fields
# are refused, as the API server does for a structural CRD schema with pruning.
PROMETHEUS_RULE_SPEC = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "groups": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "interval": {"type": "string", "pattern": _DURATION},
                    "query_offset": {"type": "string", "pattern": _DURATION},
                    "limit": {"type": "integer"},
                    "partial_response_strategy": {"type": "string"},
                    "labels": _STRING_MAP,
                    "rules": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["expr"],
                            "properties": {
                                "alert": {"type": "string"},
                                "record": {"type": "string"},
                                "expr": {"type": ["string", "integer"]},
                                "for": {"type": "string", "pattern": _DURATION},
                                "keep_firing_for": {"type": "string", "pattern": _DURATION},
                                "labels": _STRING_MAP,
                                "annotations": _STRING_MAP,
                            },
                        },
                    },
                },
            },
        }
    },
}


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return load_script("gen_prometheusrule")


def _prometheus_rule() -> dict[str, Any]:
    (doc,) = load_yaml_all(OPERATOR / "prometheusrule.yaml")
    return dict(doc)


def test_prometheusrule_differs_from_rules_file(generator: ModuleType) -> None:
    """The committed PrometheusRule is the generator's output and holds the rules file's groups."""
    committed = (OPERATOR / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert committed == generator.render(), "stale: run python scripts/gen_prometheusrule.py"
    assert _prometheus_rule()["spec"]["groups"] == load_yaml(RULES)["groups"]


def test_prometheusrule_check_mode_fails_on_a_stale_file(
    generator: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gen_prometheusrule.py --check` fails on an edited copy and passes once regenerated."""
    target = tmp_path / "prometheusrule.yaml"
    target.write_text("# edited by hand\n", encoding="utf-8")
    monkeypatch.setattr(generator, "REPO", tmp_path)
    monkeypatch.setattr(generator, "PROMETHEUS_RULE", target)
    assert generator.main(["--check"]) == 1
    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0
    assert target.read_text(encoding="utf-8") == generator.render()


def test_prometheusrule_violates_operator_schema() -> None:
    """The PrometheusRule has the operator's apiVersion, kind and spec fields, nothing else."""
    rule = _prometheus_rule()
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert rule["metadata"]["name"] == "sustainbot-alerts"
    jsonschema.validate(rule["spec"], PROMETHEUS_RULE_SPEC)
    names = [g["name"] for g in rule["spec"]["groups"]]
    assert len(names) == len(set(names)), "the operator refuses duplicate group names"
    # The schema must be able to refuse: a field the operator does not know fails.
    broken = json.loads(json.dumps(rule["spec"]))
    broken["groups"][0]["rules"][0]["for_"] = "5m"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, PROMETHEUS_RULE_SPEC)


def _build(root: Path, visiting: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize root`` emits, for the features these files use.

    Enforces kustomize's rules that bite here: a resource file must lie within the root, a
    resource directory must hold a kustomization and must not contain a root being built (a
    cycle), and a generator's files must lie within the root.
    """
    root = root.resolve()
    for parent in visiting:
        assert not parent.is_relative_to(root), f"{root} contains {parent}: kustomize cycle"
    kustomization = load_yaml(root / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = (root / entry).resolve()
        if path.is_dir():
            assert (path / "kustomization.yaml").is_file(), f"{path} has no kustomization"
            objects += _build(path, (*visiting, root))
        else:
            assert path.is_relative_to(root), f"{entry}: file outside {root}"
            assert path.is_file(), f"{entry} missing in {root}"
            objects += load_yaml_all(path)
    options = kustomization.get("generatorOptions", {})
    for generator in kustomization.get("configMapGenerator", []):
        data = {}
        for name in generator["files"]:
            path = (root / name).resolve()
            assert path.is_relative_to(root) and path.is_file(), f"{name}: not within {root}"
            data[path.name] = path.read_text(encoding="utf-8")
        # A generator's own options override the kustomization-wide generatorOptions.
        merged = {**options, **generator.get("options", {})}
        labels = {**options.get("labels", {}), **generator.get("options", {}).get("labels", {})}
        suffix = "" if merged.get("disableNameSuffixHash") else "-<hash>"
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"] + suffix, "labels": labels},
                "data": data,
            }
        )
    return objects


def test_operator_overlay_builds_base_monitor_and_rules() -> None:
    """deploy/kubernetes-operator builds the base plus PodMonitor, PrometheusRule and dashboard."""
    objects = _build(OPERATOR)
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == [
        ("ConfigMap", "sustainbot-governance-dashboard"),
        ("ConfigMap", "sustainbot-logrotate-<hash>"),
        ("Deployment", "sustainbot"),
        ("PodMonitor", "sustainbot-exporter"),
        ("PrometheusRule", "sustainbot-alerts"),
        ("Service", "sustainbot"),
        ("ServiceAccount", "sustainbot"),
    ]
    # The base alone stays free of the operator's kinds, so it applies without its CRDs.
    base = {o["kind"] for o in _build(DEPLOY / "kubernetes")}
    assert base == {"ConfigMap", "Deployment", "Service", "ServiceAccount"}


def test_dashboard_configmap_invisible_to_grafana_sidecar() -> None:
    """The dashboard ConfigMap carries the sidecar's label and exactly the committed JSON."""
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="dev dependency kubernetes-validate missing"
    )
    (configmap,) = _build(REPO / "dashboards")
    kubernetes_validate.validate(configmap, kubernetes_validate.latest_version(), strict=True)
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["data"] == {DASHBOARD.name: DASHBOARD.read_text(encoding="utf-8")}
    # `kubectl apply` keeps the whole object in an annotation limited to 256 KiB.
    assert len(json.dumps(configmap)) < 256 * 1024


def test_kustomize_cycle_or_outside_file_is_refused(tmp_path: Path) -> None:
    """The resolver refuses what kustomize refuses: an overlay inside its base, a file outside."""
    base = tmp_path / "base"
    (base / "overlay").mkdir(parents=True)
    (base / "kustomization.yaml").write_text("kind: Kustomization\nresources: [overlay]\n")
    (base / "overlay" / "kustomization.yaml").write_text("kind: Kustomization\nresources: [..]\n")
    with pytest.raises(AssertionError, match="cycle"):
        _build(base / "overlay")
    (tmp_path / "x.yaml").write_text("kind: ConfigMap\nmetadata: {name: x}\n")
    (base / "kustomization.yaml").write_text("kind: Kustomization\nresources: [../x.yaml]\n")
    with pytest.raises(AssertionError, match="outside"):
        _build(base)
