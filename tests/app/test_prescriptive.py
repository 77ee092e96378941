"""Prescriptive language detection: what counts as telling someone what to do."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient

from sustainbot.prescriptive import MAX_DETECTIONS_PER_TEXT, detect
from tests.support.app import EventLog, bearer, body


def _pairs(text: str) -> list[tuple[str, str]]:
    return [(d.phrase_type, d.phrase) for d in detect(text)]


def test_obligation_and_absolute_in_one_sentence() -> None:
    """'You must always deploy on Fridays.' is one obligation and one absolute."""
    assert _pairs("You must always deploy on Fridays.") == [
        ("obligation", "must"),
        ("absolute", "always"),
    ]


def test_each_phrase_type_is_recognised() -> None:
    """Obligations, recommendations, absolutes and imperatives are all found, in text order."""
    text = (
        "Teams need to report weekly. We recommend audits; you ought to plan. "
        "Results are guaranteed. Restart the service now!"
    )
    assert _pairs(text) == [
        ("obligation", "need to"),
        ("recommendation", "recommend"),
        ("recommendation", "ought to"),
        ("absolute", "guaranteed"),
        ("imperative", "restart"),
    ]


def test_imperative_only_at_sentence_start() -> None:
    """A command verb opening a sentence or list item is imperative; mid-sentence it is not."""
    assert _pairs("- Delete old snapshots\n2) run the backup") == [
        ("imperative", "delete"),
        ("imperative", "run"),
    ]
    assert _pairs("The team will deploy and run it.") == []


def test_neutral_text_has_no_detections() -> None:
    """Descriptive text without directives yields nothing (no false alarms on 'Report')."""
    assert _pairs("Report: emissions fell 4% in March. Shallow musts are not words.") == []


def test_detections_are_bounded() -> None:
    """A text stuffed with directives yields at most the documented number of detections."""
    assert len(detect("must " * 5000)) == MAX_DETECTIONS_PER_TEXT


def test_execute_writes_one_event_per_detection(
    client: FlaskClient, token: Callable[..., str], event_log: EventLog
) -> None:
    """Each detected phrase in the input and the output is one prescriptive_language event."""
    response = client.post(
        "/workflows/governed/execute",
        json=body(
            workflow="summarise_incident", mode="grunt", text="You must always deploy on Fridays."
        ),
        headers=bearer(token("engineer")),
    )
    assert response.status_code == 200
    trace = response.headers["X-Request-ID"]
    events = event_log.of("prescriptive_language.detected", trace)
    found = [(e["source"], e["phrase_type"], e["phrase"]) for e in events]
    assert ("input", "obligation", "must") in found and ("input", "absolute", "always") in found
    assert len(found) == len(response.json["detections"])
    assert {e["drag_mode"] for e in events} == {"grunt"}
