"""The exporter's own logs: one JSON object per record, whatever the record carries."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from log_exporter import logs


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # configure() changes the root and package loggers; other tests (caplog) need them intact.
    root, package = logging.getLogger(), logging.getLogger("log_exporter")
    saved = (list(root.handlers), root.level, package.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    package.setLevel(saved[2])
    logging.captureWarnings(False)


def _capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    logs.configure("debug", stream=stream)
    return logging.getLogger("log_exporter.test"), stream


def test_record_is_one_json_line_with_extra_fields() -> None:
    """A log call becomes one JSON line with ts, level, logger, msg and its extra fields."""
    log, stream = _capture()
    log.info("spec %s", "reloaded", extra={"metrics": 13, "spec": "a.toml"})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["msg"] == "spec reloaded"
    assert record["level"] == "info"
    assert record["logger"] == "log_exporter.test"
    assert record["ts"].endswith("Z")
    assert (record["metrics"], record["spec"]) == (13, "a.toml")


def test_unserialisable_extra_and_traceback_stay_on_one_line() -> None:
    """A Path or exception in extra, and a traceback, never break the one-line JSON format."""
    log, stream = _capture()
    try:
        raise OSError("disk on fire")
    except OSError as exc:
        log.exception("read failed", extra={"path": Path("/x/y"), "error": exc})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["path"] == "/x/y"
    assert record["error"] == "disk on fire"
    assert "OSError: disk on fire" in record["exc"]


def test_configure_twice_does_not_duplicate_lines() -> None:
    """Configuring logging again replaces the handler instead of printing each record twice."""
    logs.configure("info", stream=io.StringIO())
    log, stream = _capture()
    log.warning("once")
    assert len(stream.getvalue().splitlines()) == 1


def test_level_filters_debug_records() -> None:
    """At level info, debug records (per-request access lines) are not written."""
    stream = io.StringIO()
    logs.configure("info", stream=stream)
    logging.getLogger("log_exporter.server").debug("GET /metrics 200")
    assert stream.getvalue() == ""


def test_library_warnings_are_json_too() -> None:
    """A warning from a library logger is written in the same JSON format; its debug is not."""
    stream = io.StringIO()
    logs.configure("debug", stream=stream)
    logging.getLogger("watchdog.observers").debug("noise")
    logging.getLogger("watchdog.observers").warning("inotify limit reached")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["logger"] == "watchdog.observers"


def _logfmt_pairs(line: str) -> dict[str, str]:
    """A logfmt line read back the way logfmt readers do: key=value, quoted values unescaped."""
    pairs: dict[str, str] = {}
    decoder = json.JSONDecoder()
    i = 0
    while i < len(line):
        key_end = line.index("=", i)
        key = line[i:key_end]
        if line[key_end + 1 : key_end + 2] == '"':
            value, end = decoder.raw_decode(line, key_end + 1)
        else:
            end = line.find(" ", key_end)
            end = len(line) if end < 0 else end
            value = line[key_end + 1 : end]
        pairs[key] = value
        i = end + 1
    return pairs


def test_logfmt_line_loses_fields_or_splits(tmp_path: Path) -> None:
    """--log.format=logfmt writes one key=value line per record, quoting values with blanks,
    quotes, '=' or newlines so that a logfmt reader gets every field back intact."""
    stream = io.StringIO()
    logs.configure("debug", stream=stream, fmt="logfmt")
    log = logging.getLogger("log_exporter.test")
    odd = 'a "quoted" value = with\nnewline'
    log.warning("spec reloaded", extra={"path": tmp_path, "odd": odd, "empty": "", "n": 3})
    (line,) = stream.getvalue().splitlines()
    fields = _logfmt_pairs(line)
    assert list(fields)[:4] == ["ts", "level", "logger", "msg"]
    assert fields["level"] == "warning" and fields["msg"] == "spec reloaded"
    assert fields["odd"] == odd and fields["empty"] == "" and fields["n"] == "3"
    assert fields["path"] == str(tmp_path)


def test_warn_level_lets_info_through() -> None:
    """`--log.level=warn`, the Prometheus tools' spelling, drops info and keeps warnings."""
    stream = io.StringIO()
    logs.configure("warn", stream=stream)
    log = logging.getLogger("log_exporter.test")
    log.info("quiet")
    log.warning("loud")
    assert [json.loads(line)["msg"] for line in stream.getvalue().splitlines()] == ["loud"]
