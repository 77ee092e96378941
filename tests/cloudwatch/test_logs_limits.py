"""PutLogEvents limits moto does not enforce, checked on the real boto3 client with Stubber.

botocore's Stubber replaces only the HTTP exchange: our code builds real, model-validated
requests, and the test reads exactly what would have gone over the wire.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from log_exporter.cloudwatch.client import Backoff, CloudWatchApi, CredentialsRefused
from log_exporter.cloudwatch.config import CloudWatchConfig
from log_exporter.cloudwatch.logs_batch import (
    EVENT_OVERHEAD,
    MAX_BATCH_BYTES,
    MAX_EVENT_BYTES,
    TRUNCATION_MARKER,
    make_event,
    rejected_counts,
)
from log_exporter.cloudwatch.shipper import Shipper
from log_exporter.cloudwatch.stats import ShipperStats

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CONFIG = CloudWatchConfig(enabled=True, log_stream="test-stream", region="eu-west-1")


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def line_of_size(size: int, when: datetime = T0) -> bytes:
    """A JSON line whose CloudWatch size (UTF-8 bytes + 26) is exactly ``size``.

    Too short for JSON, it is plain text (stamped with the read time when shipped).
    """
    if size - EVENT_OVERHEAD < 60:
        return b"a" * (size - EVENT_OVERHEAD)
    head = f'{{"timestamp":"{_iso(when)}","event":"x","pad":"'
    tail = '"}'
    pad = size - EVENT_OVERHEAD - len(head) - len(tail)
    assert pad >= 0
    raw = (head + "a" * pad + tail).encode()
    assert len(raw) + EVENT_OVERHEAD == size
    return raw


class Harness:
    """A Shipper on stubbed boto3 clients; ``calls`` records every request's parameters."""

    def __init__(
        self, now: datetime = T0 + timedelta(minutes=1), *, wait_for_credentials: bool = True
    ) -> None:
        kw: dict[str, Any] = {
            "region_name": "eu-west-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        self.logs = boto3.client("logs", **kw)
        self.metrics = boto3.client("cloudwatch", **kw)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        for client in (self.logs, self.metrics):
            client.meta.events.register("before-parameter-build", self._record)
        self.stub = Stubber(self.logs)
        self.stub.activate()
        self.stats = ShipperStats()
        self.now = now.timestamp()
        api = CloudWatchApi(
            self.logs,
            self.metrics,
            CONFIG,
            self.stats,
            threading.Event(),
            backoff=Backoff(base=0.001, cap=0.01),
            clock=lambda: self.now,
            wait_for_credentials=wait_for_credentials,
        )
        # Streams exist already: these tests are about PutLogEvents.
        self.stub.add_response(
            "describe_log_streams", {"logStreams": [{"logStreamName": CONFIG.log_stream}]}
        )
        api.ensure_stream(CONFIG.log_stream)
        self.shipper = Shipper(CONFIG, api, lambda ev: [], self.stats, clock=lambda: self.now)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, json.loads(json.dumps(params, default=str))))

    def expect_puts(self, n: int, response: dict[str, Any] | None = None) -> None:
        for _ in range(n):
            self.stub.add_response("put_log_events", response or {"nextSequenceToken": "1"})

    def puts(self) -> list[list[dict[str, Any]]]:
        return [p["logEvents"] for name, p in self.calls if name == "PutLogEvents"]

    def ship(self, lines: list[bytes]) -> None:
        for raw in lines:
            self.shipper.add_line(raw, None)
        self.shipper.ship_logs()
        self.stub.assert_no_pending_responses()


def test_batch_cut_at_10000_events() -> None:
    """10,001 lines go out as exactly 10,000 events and then 1."""
    h = Harness()
    h.expect_puts(2)
    h.ship([line_of_size(100) for _ in range(10_001)])
    assert [len(p) for p in h.puts()] == [10_000, 1]
    assert h.stats.events_shipped == 10_001


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([MAX_EVENT_BYTES] * 4, [4]),
        ([MAX_EVENT_BYTES] * 3 + [MAX_EVENT_BYTES - 27, 27], [5]),
        ([MAX_EVENT_BYTES] * 3 + [MAX_EVENT_BYTES - 27, 28], [4, 1]),
    ],
    ids=["four-max-events-fill-exactly", "exactly-1048576-bytes", "one-byte-over"],
)
def test_batch_cut_at_1048576_bytes_counting_26_per_event(
    sizes: list[int], expected: list[int]
) -> None:
    """A batch holds exactly 1,048,576 bytes (message + 26 per event); one byte more is cut."""
    h = Harness()
    h.expect_puts(len(expected))
    h.ship([line_of_size(s) for s in sizes])
    puts = h.puts()
    assert [len(p) for p in puts] == expected
    for events in puts:
        assert sum(len(e["message"].encode()) + EVENT_OVERHEAD for e in events) <= MAX_BATCH_BYTES


@pytest.mark.parametrize(
    ("span", "expected"),
    [(timedelta(hours=24) - timedelta(milliseconds=1), [2]), (timedelta(hours=24), [1, 1])],
    ids=["just-under-24h", "exactly-24h"],
)
def test_batch_cut_at_24_hours_span(span: timedelta, expected: list[int]) -> None:
    """Events spanning less than 24 h share a batch; a span of 24 h starts a new one."""
    h = Harness(now=T0 + span + timedelta(minutes=1))
    h.expect_puts(len(expected))
    h.ship([line_of_size(100, T0), line_of_size(100, T0 + span)])
    assert [len(p) for p in h.puts()] == expected


def test_events_sorted_by_time_within_a_batch() -> None:
    """Lines written out of time order are sent in chronological order, as the API requires."""
    h = Harness(now=T0 + timedelta(minutes=5))
    h.expect_puts(1)
    h.ship([line_of_size(100, T0 + timedelta(seconds=s)) for s in (30, 10, 20)])
    stamps = [e["timestamp"] for e in h.puts()[0]]
    assert stamps == sorted(stamps)
    assert stamps[0] == int((T0 + timedelta(seconds=10)).timestamp() * 1000)


def test_oversized_event_truncated_with_marker_and_counted() -> None:
    """A 300 KB line is shipped cut to the 256 KiB event limit, ending in a marker, and counted."""
    h = Harness()
    h.expect_puts(1)
    h.ship([line_of_size(300_000)])
    (event,) = h.puts()[0]
    assert len(event["message"].encode()) + EVENT_OVERHEAD == MAX_EVENT_BYTES
    assert event["message"].endswith(TRUNCATION_MARKER)
    assert h.stats.truncated_events == 1


def test_invalid_utf8_replaced_not_dropped() -> None:
    """A line with invalid UTF-8 is shipped with U+FFFD in place of the bad bytes."""
    h = Harness()
    h.expect_puts(1)
    h.ship([b'{"event":"x","bad":"\xff\xfe"}'])
    (event,) = h.puts()[0]
    assert event["message"] == '{"event":"x","bad":"\ufffd\ufffd"}'


def test_rejected_log_events_info_counted_not_retried() -> None:
    """Indices in rejectedLogEventsInfo are counted by reason (AWS semantics), never resent."""
    h = Harness(now=T0 + timedelta(minutes=30))
    info = {
        "tooNewLogEventStartIndex": 8,
        "tooOldLogEventEndIndex": 2,
        "expiredLogEventEndIndex": 3,
    }
    h.expect_puts(1, {"nextSequenceToken": "1", "rejectedLogEventsInfo": info})
    h.ship([line_of_size(100, T0 + timedelta(seconds=i)) for i in range(10)])
    assert len(h.puts()) == 1
    # expired: indices 0-2 (end exclusive); too old 0-1 already counted; too new: 8 and 9.
    assert h.stats.rejected == {"response_expired": 3, "response_too_new": 2}


@pytest.mark.parametrize(
    ("info", "n", "expected"),
    [
        ({}, 5, {}),
        ({"tooOldLogEventEndIndex": 2}, 5, {"too_old": 2}),
        ({"tooNewLogEventStartIndex": 4}, 5, {"too_new": 1}),
        ({"tooNewLogEventStartIndex": 0}, 5, {"too_new": 5}),
        (
            {"expiredLogEventEndIndex": 1, "tooOldLogEventEndIndex": 3},
            5,
            {"expired": 1, "too_old": 2},
        ),
        ({"tooOldLogEventEndIndex": 9}, 5, {"too_old": 5}),
    ],
)
def test_rejected_counts_index_semantics(
    info: dict[str, int], n: int, expected: dict[str, int]
) -> None:
    """Too-new start is inclusive, too-old and expired ends exclusive; each event counted once."""
    assert rejected_counts(info, n) == expected


def test_events_outside_service_window_not_sent_and_counted() -> None:
    """Events over 14 days old or over 2 hours ahead are left out, counted by reason."""
    now = T0 + timedelta(days=30)
    h = Harness(now=now)
    h.expect_puts(1)
    h.ship(
        [
            line_of_size(100, now - timedelta(days=14, seconds=1)),
            line_of_size(100, now - timedelta(days=13)),
            line_of_size(100, now + timedelta(hours=2, seconds=1)),
        ]
    )
    assert len(h.puts()[0]) == 1
    assert h.stats.rejected == {"window_too_old": 1, "window_too_new": 1}


def test_line_without_timestamp_stamped_with_read_time() -> None:
    """A line without a usable timestamp is stamped with the time it was read."""
    h = Harness()
    h.expect_puts(1)
    h.ship([b"not json at all"])
    (event,) = h.puts()[0]
    assert event["timestamp"] == int(h.now * 1000)
    assert event["message"] == "not json at all"


def test_throttling_retried_then_delivered() -> None:
    """A ThrottlingException is retried with backoff and the batch is then delivered."""
    h = Harness()
    h.stub.add_client_error("put_log_events", "ThrottlingException", "Rate exceeded", 400)
    h.stub.add_client_error("put_log_events", "ServiceUnavailableException", "busy", 503)
    h.expect_puts(1)
    h.ship([line_of_size(100)])
    assert len(h.puts()) == 3
    assert h.stats.retries == 2
    assert h.stats.events_shipped == 1
    assert h.stats.requests[("PutLogEvents", "ThrottlingException")] == 1


def test_access_denied_batch_is_kept_and_sent_once_fixed() -> None:
    """serve keeps a batch CloudWatch refused for lack of permission and sends it once IAM is
    fixed, without a restart."""
    h = Harness()
    h.stub.add_client_error("put_log_events", "AccessDeniedException", "not allowed", 400)
    h.expect_puts(1)
    h.ship([line_of_size(100)])
    assert len(h.puts()) == 2
    assert h.stats.events_shipped == 1


def test_access_denied_leaves_a_replay_waiting_forever() -> None:
    """A one-shot replay stops at a permission error with a message naming the call and the
    error, instead of retrying while nobody is there to fix IAM."""
    h = Harness(wait_for_credentials=False)
    h.stub.add_client_error("put_log_events", "AccessDeniedException", "not allowed", 400)
    with pytest.raises(CredentialsRefused, match="PutLogEvents failed: AccessDeniedException"):
        h.ship([line_of_size(100)])
    assert len(h.puts()) == 1


def test_invalid_parameter_not_retried_and_counted() -> None:
    """A batch CloudWatch calls invalid is counted as rejected and not sent again."""
    h = Harness()
    h.stub.add_client_error("put_log_events", "InvalidParameterException", "bad", 400)
    h.ship([line_of_size(100), line_of_size(100)])
    assert len(h.puts()) == 1
    assert h.stats.rejected == {"invalid_request": 2}


def test_missing_stream_recreated_without_touching_the_group() -> None:
    """A deleted stream is created again; the existing group is left alone (no CreateLogGroup)."""
    h = Harness()
    h.stub.add_client_error("put_log_events", "ResourceNotFoundException", "gone", 400)
    h.stub.add_response("describe_log_streams", {"logStreams": []})
    h.stub.add_response("create_log_stream", {})
    h.expect_puts(1)
    h.ship([line_of_size(100)])
    assert [n for n, _ in h.calls][-4:] == [
        "PutLogEvents",
        "DescribeLogStreams",
        "CreateLogStream",
        "PutLogEvents",
    ]
    assert h.stats.events_shipped == 1


def test_missing_group_and_stream_created_then_delivered() -> None:
    """When the log group itself is gone, group and stream are created and the batch delivered."""
    h = Harness()
    h.stub.add_client_error("put_log_events", "ResourceNotFoundException", "gone", 400)
    h.stub.add_client_error("describe_log_streams", "ResourceNotFoundException", "no group", 400)
    h.stub.add_response("create_log_group", {})
    h.stub.add_response("create_log_stream", {})
    h.expect_puts(1)
    h.ship([line_of_size(100)])
    assert [n for n, _ in h.calls][-3:] == ["CreateLogGroup", "CreateLogStream", "PutLogEvents"]
    assert h.stats.events_shipped == 1


def test_blank_line_is_not_an_event() -> None:
    """Blank and whitespace-only lines ship nothing."""
    assert make_event(b"   \r", 0) is None
    assert make_event(b"", 0) is None


def test_shipper_classifies_lines_as_the_pipeline_counts_them() -> None:
    """A line the pipeline takes for blank ships nothing; a malformed one ships as it is, at the
    time it was read; an event ships at its own timestamp; each is one line read."""
    h = Harness(now=T0 + timedelta(minutes=5))
    h.expect_puts(1)
    stamp = T0.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    event = b'{"event":"auth.failed","timestamp":"%s"}' % stamp.encode()
    h.ship([b"", b"\xef\xbb\xbf \t\r", b"[1, 2]", event, b"\xc2\xa0"])
    (events,) = h.puts()
    # A batch goes out in time order: the event's own time is earlier than the reading time.
    assert [(e["message"], e["timestamp"]) for e in events] == [
        (event.decode(), int(T0.timestamp() * 1000)),
        ("[1, 2]", int(h.now * 1000)),
    ]
    assert h.shipper.summary.lines == 5
