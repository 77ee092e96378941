"""The registry of governed workflows: deterministic, offline text transformations.

Each workflow takes the AIM input text and returns its output text; an exception means the
workflow failed, and its class name becomes the event's ``error_type``. Any workflow fails on
demand when its input contains FAILURE_MARKER, so the failure path can be exercised end to end.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

FAILURE_MARKER = "#simulate-failure"


class WorkflowError(Exception):
    """Base of the failures a workflow reports; subclasses name the error_type."""


class SimulatedFailure(WorkflowError):
    """The input asked for a failure (FAILURE_MARKER)."""


class NoActivityData(WorkflowError):
    """carbon_audit found no quantity with a unit it knows."""


class NoServicesNamed(WorkflowError):
    """deploy_staging found no service to plan a deployment for."""


@dataclass(frozen=True, slots=True)
class Workflow:
    name: str
    description: str
    run: Callable[[str], str]


_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
_STOPWORDS = frozenset(
    """
    a an and are as at be been but by for from has have in is it its of on or that the this
    to was were will with we you our your they their there then than not no so if into over
    must shall should would could may might can
    """.split()  # noqa: SIM905 - a word list reads better as text
)


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_SPLIT.split(text) if s.strip()]


def _keywords(text: str, count: int) -> list[str]:
    words = [w.lower() for w in _WORD.findall(text) if w.lower() not in _STOPWORDS]
    # Ties are broken alphabetically so the output never depends on dict ordering.
    ranked = sorted(Counter(words).items(), key=lambda item: (-item[1], item[0]))
    return [word for word, _ in ranked[:count]]


def generate_report(text: str) -> str:
    """A structured report of the input: size, key terms, and its opening sentences."""
    sentences = _sentences(text)
    words = _WORD.findall(text)
    lines = [
        "# Report",
        f"Sentences: {len(sentences)}; words: {len(words)}.",
        "Key terms: " + (", ".join(_keywords(text, 5)) or "none") + ".",
        "## Highlights",
    ]
    lines += [f"- {sentence}" for sentence in sentences[:3]]
    return "\n".join(lines)


_SEVERITY = re.compile(r"\b(critical|sev[ -]?[0-4]|p[0-4]|outage|error|failed|down)\b", re.I)
_TIME = re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?\b")


def summarise_incident(text: str) -> str:
    """A short incident summary: headline, severity signals and the timeline entries."""
    sentences = _sentences(text)
    signals = sorted({m.group(1).lower() for m in _SEVERITY.finditer(text)})
    timeline = [s for s in sentences if _TIME.search(s)]
    lines = [
        "Incident summary: " + (sentences[0] if sentences else "(empty)"),
        "Severity signals: " + (", ".join(signals) or "none"),
        f"Timeline entries: {len(timeline)}",
    ]
    lines += [f"  {entry}" for entry in timeline[:10]]
    return "\n".join(lines)


# kg CO2e per unit; round, documented figures (UK DESNZ 2023 conversion factors, rounded).
EMISSION_FACTORS_KG: Mapping[str, float] = {
    "kwh": 0.207,  # grid electricity
    "km": 0.170,  # average car
    "l": 2.51,  # diesel, litres
    "therm": 5.31,  # natural gas
}
# A number starts only where no digit precedes it: trying every position inside a long run of
# digits made one 10,000-character input cost seconds of CPU (quadratic backtracking).
_QUANTITY = re.compile(
    r"(?<!\d)(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)\s*(kwh|km|litres?|liters?|l|therms?)\b",
    re.IGNORECASE,
)


def _unit(raw: str) -> str:
    unit = raw.lower()
    if unit.startswith(("litre", "liter")):
        return "l"
    return unit.rstrip("s") if unit.startswith("therm") else unit


def carbon_audit(text: str) -> str:
    """Emissions in kg CO2e computed from quantities in the input (kWh, km, litres, therms)."""
    totals: dict[str, float] = {}
    for amount, unit in _QUANTITY.findall(text):
        key = _unit(unit)
        # A comma is a thousands separator ("1,200 kWh"), never a decimal point.
        totals[key] = totals.get(key, 0.0) + float(amount.replace(",", ""))
    if not totals:
        raise NoActivityData("no quantities in kWh, km, litres or therms found in the input")
    lines = ["Carbon audit (kg CO2e):"]
    grand = 0.0
    for unit in sorted(totals):
        kg = totals[unit] * EMISSION_FACTORS_KG[unit]
        grand += kg
        lines.append(f"- {totals[unit]:g} {unit} x {EMISSION_FACTORS_KG[unit]} = {kg:.2f}")
    lines.append(f"Total: {grand:.2f} kg CO2e")
    return "\n".join(lines)


_SERVICE = re.compile(r"\b([a-z][a-z0-9-]{1,40})(?:@|:|\s+v)(\d+(?:\.\d+){0,2})\b")


def deploy_staging(text: str) -> str:
    """A dry-run plan to deploy the named services (``name@1.2.3``) to staging; changes nothing."""
    services = sorted(set(_SERVICE.findall(text)))
    if not services:
        raise NoServicesNamed("name services as name@version, e.g. api@1.4.2")
    lines = ["Dry-run plan for staging (nothing is changed):"]
    step = 1
    for name, version in services:
        for action in (
            f"Pull image {name}:{version}",
            f"Roll out {name}:{version} to staging, one replica at a time",
            f"Check /healthz of {name} before continuing",
        ):
            lines.append(f"{step}. {action}")
            step += 1
    return "\n".join(lines)


def _with_failure_marker(run: Callable[[str], str]) -> Callable[[str], str]:
    def guarded(text: str) -> str:
        if FAILURE_MARKER in text:
            raise SimulatedFailure(f"input contains {FAILURE_MARKER}")
        return run(text)

    return guarded


def default_registry() -> dict[str, Workflow]:
    """The workflows the service offers, by name."""
    entries = [
        Workflow("generate_report", "Structured report of the input text", generate_report),
        Workflow("summarise_incident", "Headline, severity and timeline", summarise_incident),
        Workflow("carbon_audit", "kg CO2e from kWh, km, litres, therms", carbon_audit),
        Workflow("deploy_staging", "Dry-run staging deployment plan", deploy_staging),
    ]
    return {w.name: Workflow(w.name, w.description, _with_failure_marker(w.run)) for w in entries}
