"""The settings overlay: a flag wins over its variables, which win over the default, and a bad
value is refused naming the flag and the variable."""

from __future__ import annotations

import argparse

import pytest

from log_exporter import settings
from log_exporter.settings import SettingError


def _parse(argv: list[str], environ: dict[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, settings.SERVE, environ)
    return parser.parse_args(argv)


def test_flag_then_variables_in_order_then_default() -> None:
    """--file beats LOG_EXPORTER_FILE, which beats JSON_LOG_PATH, which beats the default."""
    environ = {"LOG_EXPORTER_FILE": "a.jsonl", "JSON_LOG_PATH": "b.jsonl"}
    assert _parse(["--file", "f.jsonl"], environ).file == ["f.jsonl"]
    assert _parse([], environ).file == ["a.jsonl"]
    assert _parse([], {"JSON_LOG_PATH": "b.jsonl"}).file == ["b.jsonl"]
    assert _parse([], {}).file == ["./logs/sustainbot.jsonl"]


def test_repeated_file_and_label_add_up_and_their_variables_split_at_commas() -> None:
    """--file and --label given twice keep both values (the flags replacing the variable's);
    LOG_EXPORTER_FILE and LOG_EXPORTER_LABELS hold several, JSON_LOG_PATH one path."""
    environ = {"LOG_EXPORTER_FILE": "a.log, b/*.log", "LOG_EXPORTER_LABELS": "job=x,env=y"}
    args = _parse(["--file", "f.log", "--file", "g/*.log", "--label", "job=z"], environ)
    assert (args.file, args.label) == (["f.log", "g/*.log"], ["job=z"])
    args = _parse([], environ)
    assert (args.file, args.label) == (["a.log", "b/*.log"], ["job=x", "env=y"])
    assert _parse([], {"JSON_LOG_PATH": "logs/a,b.jsonl"}).file == ["logs/a,b.jsonl"]
    assert _parse([], {}).label == []


def test_empty_variable_counts_as_unset() -> None:
    """An empty variable falls through to the next one, then to the default."""
    assert _parse([], {"LOG_EXPORTER_FILE": "", "JSON_LOG_PATH": "b.jsonl"}).file == ["b.jsonl"]
    assert _parse([], {"LOG_EXPORTER_STATE_INTERVAL": ""}).state_interval == 5.0


def test_variable_is_converted_like_its_flag() -> None:
    """A number from the environment arrives converted, as the same flag's value would."""
    args = _parse([], {"LOG_EXPORTER_MAX_LINE_BYTES": "1024"})
    assert args.max_line_bytes == 1024
    assert _parse(["--max-line-bytes", "1024"], {}).max_line_bytes == 1024


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"LOG_EXPORTER_LOG_LEVEL": "chatty"}, "--log.level / LOG_EXPORTER_LOG_LEVEL: unknown"),
        ({"LOG_EXPORTER_START_AT": "middle"}, "--start-at / LOG_EXPORTER_START_AT: 'middle' is"),
        ({"LOG_EXPORTER_STATE_INTERVAL": "0"}, "--state-interval / LOG_EXPORTER_STATE_INTERVAL"),
        ({"LOG_EXPORTER_MAX_LINE_BYTES": "0"}, "--max-line-bytes / LOG_EXPORTER_MAX_LINE_BYTES"),
        ({"LOG_EXPORTER_INPUT_FORMAT": "xml"}, "--input-format / LOG_EXPORTER_INPUT_FORMAT: 'xml'"),
    ],
)
def test_check_names_flag_and_variable(environ: dict[str, str], message: str) -> None:
    """A well-formed but unusable value is refused naming the flag and the variable."""
    with pytest.raises(SettingError, match=message):
        settings.check(_parse([], environ), settings.SERVE)


def test_log_level_is_checked_first() -> None:
    """With several bad values the log level is named, as the logs are configured from it."""
    environ = {"LOG_EXPORTER_START_AT": "middle", "LOG_EXPORTER_LOG_LEVEL": "chatty"}
    with pytest.raises(SettingError, match=r"--log\.level"):
        settings.check(_parse([], environ), settings.SERVE)


def test_every_row_has_a_flag_variable_and_meaning() -> None:
    """Each row can be documented: a flag, at least one variable, a meaning, unique names."""
    rows = (*settings.SERVE, *settings.CLOUDWATCH)
    assert all(row.flag.startswith("--") and row.env and row.doc for row in rows)
    assert len({row.flag for row in rows}) == len({row.dest for row in rows}) == len(rows)


def test_stdout_log_path_from_the_service_is_refused_naming_it() -> None:
    """SustainBot's JSON_LOG_PATH=- (its events on stdout) shared by a sidecar is no file to
    tail: refused at start, naming the variable and where to read such logs instead."""
    with pytest.raises(SettingError, match=r"--file / LOG_EXPORTER_FILE: .*JSON_LOG_PATH=-.*cri"):
        settings.check(_parse([], {"JSON_LOG_PATH": "-"}), settings.SERVE)
