"""Prescriptive language detection: phrases that tell someone what to do.

Phrase types: obligation, recommendation, absolute, imperative. Each occurrence is one
detection, reported in order of appearance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PHRASE_TYPES = ("obligation", "recommendation", "absolute", "imperative")
# Bounds the number of events one request can cause; documented in docs/sustainbot.md.
MAX_DETECTIONS_PER_TEXT = 100

_WORD_PATTERNS: dict[str, re.Pattern[str]] = {
    "obligation": re.compile(r"\b(must|shall|ha(?:ve|s) to|needs? to)\b", re.IGNORECASE),
    "recommendation": re.compile(r"\b(should|ought to|recommend(?:s|ed|ing)?)\b", re.IGNORECASE),
    "absolute": re.compile(r"\b(always|never|guaranteed)\b", re.IGNORECASE),
}

# Bare command verbs that open an imperative sentence. A fixed list keeps detection
# deterministic and explainable; words that are commonly also nouns or adjectives at the start
# of a sentence ("Report", "Plan", "Test") are left out to avoid false positives.
IMPERATIVE_VERBS = frozenset(
    """
    add apply approve avoid build buy call cancel change check choose clean close configure
    consider copy create cut delete deploy disable do don't drop enable ensure execute fix
    follow get give go install keep kill launch leave let make migrate move open pay pick
    push put reboot reduce remember remove replace restart revert rollback run send set ship
    shut start stop switch take tell turn update upgrade use verify wait write
    """.split()  # noqa: SIM905 - a word list reads better as text
)

# A sentence starts at the beginning of the text, after . ! ? or a line break, optionally behind
# list markers ("-", "*", "1.", "2)") and opening quotes or brackets. After a line break only
# spaces and tabs are skipped (the last break of a run starts the sentence): skipping all
# whitespace from every break made a text of many blank lines cost seconds of CPU.
_SENTENCE_START = re.compile(
    r"(?:^|(?<=[.!?])\s+|\n[^\S\n]*)(?:(?:[-*•]|\d+[.)])\s+)?[\"'(\[]*([A-Za-z][A-Za-z']*)",
)


@dataclass(frozen=True, slots=True)
class Detection:
    phrase_type: str
    phrase: str  # the matched words, lower-cased
    offset: int  # character offset in the text, for ordering and highlighting


def detect(text: str) -> list[Detection]:
    """All prescriptive phrases in ``text`` (at most MAX_DETECTIONS_PER_TEXT), in text order."""
    found: list[Detection] = []
    for phrase_type, pattern in _WORD_PATTERNS.items():
        for match in pattern.finditer(text):
            phrase = " ".join(match.group(1).lower().split())
            found.append(Detection(phrase_type, phrase, match.start(1)))
    for match in _SENTENCE_START.finditer(text):
        word = match.group(1).lower()
        if word in IMPERATIVE_VERBS:
            found.append(Detection("imperative", word, match.start(1)))
    found.sort(key=lambda d: (d.offset, PHRASE_TYPES.index(d.phrase_type)))
    return found[:MAX_DETECTIONS_PER_TEXT]
