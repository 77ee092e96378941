"""The Prometheus config and alert rules shipped in deploy/prometheus, checked by real promtool."""

from __future__ import annotations

import re
from typing import Any

from tests.support.deploy import DEPLOY, REPO, load_yaml
from tests.support.processes import run

PROM_DIR = DEPLOY / "prometheus"
RULES = PROM_DIR / "rules" / "sustainbot-alerts.yml"
RULE_TESTS = PROM_DIR / "rules" / "sustainbot-alerts_test.yml"

EXPECTED_ALERTS = {
    "SustainBotAIMValidationFailureRateHigh",
    "SustainBotWorkflowLatencyP95High",
    "SustainBotPrescriptiveLanguageDetected",
    "SustainBotExporterDown",
    "SustainBotExporterLagging",
    "SustainBotNoEvents",
    "SustainBotExporterLostLinesOnResume",
    "SustainBotExporterStateSavesFailing",
    "SustainBotExporterIOErrors",
    "SustainBotExporterRotationLostLines",
}


def _alert_names() -> set[str]:
    rules = load_yaml(RULES)
    return {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}


def test_prometheus_config_rejected_by_promtool(promtool_binary: str) -> None:
    """Prometheus accepts the shipped config, including the rule file it loads."""
    result = run([promtool_binary, "check", "config", str(PROM_DIR / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_alert_rules_rejected_by_promtool(promtool_binary: str) -> None:
    """Every alert rule parses and passes promtool's rule lint."""
    result = run([promtool_binary, "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(EXPECTED_ALERTS)} rules found" in result.stdout


def test_each_alert_fires_exactly_when_its_unit_tests_say(promtool_binary: str) -> None:
    """Each alert fires exactly when its unit tests say, with the rendered annotations."""
    result = run([promtool_binary, "test", "rules", str(RULE_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_expected_alert_exists() -> None:
    """The alerts an operator expects all exist under their documented names."""
    assert _alert_names() == EXPECTED_ALERTS


def test_every_alert_is_tested_firing_and_silent() -> None:
    """Every alert has a unit test where it fires and one where it must stay silent."""
    fires: set[str] = set()
    silent: set[str] = set()
    for case in load_yaml(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    assert fires == EXPECTED_ALERTS
    assert silent == EXPECTED_ALERTS


RUNBOOKS = REPO / "docs" / "runbooks.md"
RUNBOOK_PAGE = "https://github.com/sustainbot/sustainbot-observability/blob/main/docs/runbooks.md"


def _anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, - for space."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, re.MULTILINE):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return anchors


def _alerts() -> list[dict[str, Any]]:
    rules = load_yaml(RULES)
    return [r for g in rules["groups"] for r in g["rules"] if "alert" in r]


def test_alert_without_runbook_section() -> None:
    """Every alert links to a section of docs/runbooks.md that exists and is about that alert."""
    markdown = RUNBOOKS.read_text(encoding="utf-8")
    anchors = _anchors(markdown)
    for rule in _alerts():
        url = rule["annotations"].get("runbook_url", "")
        page, _, anchor = url.partition("#")
        assert page == RUNBOOK_PAGE, (rule["alert"], url)
        assert anchor in anchors, (rule["alert"], anchor)
        assert anchor == rule["alert"].lower()
        section = markdown.split(f"## {rule['alert']}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("**Means.**", "**Confirm.**", "```promql", "**Do.**"):
            assert part in section, (rule["alert"], part)


def _groupings(expr: str, keyword: str) -> list[set[str]]:
    return [
        {label.strip() for label in labels.split(",")}
        for labels in re.findall(rf"\b{keyword}\s*\(([^)]*)\)", expr)
    ]


def test_aggregation_merges_namespaces() -> None:
    """No alert sums or matches across namespaces: every by() and on() keeps `namespace`."""
    checked = 0
    for rule in _alerts():
        for keyword in ("by", "on"):
            for labels in _groupings(rule["expr"], keyword):
                assert "namespace" in labels, (rule["alert"], keyword, labels)
                checked += 1
    assert checked >= 4
