"""The plain-host files, deploy/systemd/ and deploy/host/, checked offline with the real tools:
systemd's own verifier and user creator, and logrotate rotating a log for real."""

from __future__ import annotations

import gzip
import stat
from pathlib import Path

from tests.support.deploy import DEPLOY
from tests.support.processes import binary, run

SYSTEMD = DEPLOY / "systemd"
LOGROTATE = DEPLOY / "host" / "logrotate.conf"
LOG = "/var/log/sustainbot/sustainbot.jsonl"
# Each unit's program, as its ExecStart names it (the install the unit's comment describes).
PROGRAMS = {
    "sustainbot.service": "/opt/sustainbot/bin/sustainbot",
    "log-exporter.service": "/opt/log-exporter/bin/log-exporter",
}


def _settings(unit: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file, all values of a key repeated (Environment=)."""
    found: dict[str, list[str]] = {}
    for line in (SYSTEMD / unit).read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def _environment(unit: str) -> dict[str, str]:
    return dict(v.partition("=")[::2] for v in _settings(unit).get("Environment", []))


def test_units_pass_systemd_analyze_verify_without_a_warning(tmp_path: Path) -> None:
    """Both units pass systemd-analyze verify with no warning at all (an unknown or misspelt key
    is only a warning), once ExecStart points at a program that exists here."""
    analyze = binary("systemd-analyze")
    for unit, program in PROGRAMS.items():
        stand_in = tmp_path / Path(program).name
        stand_in.write_text("#!/bin/sh\n")
        stand_in.chmod(0o755)
        text = (SYSTEMD / unit).read_text(encoding="utf-8")
        assert f"ExecStart={program} " in text
        (tmp_path / unit).write_text(text.replace(program, str(stand_in)))
        result = run([analyze, "verify", "--man=no", str(tmp_path / unit)], timeout=60)
        assert (result.returncode, result.stdout + result.stderr) == (0, ""), unit


def test_sysusers_file_creates_the_group_the_exporter_reads_the_log_with(tmp_path: Path) -> None:
    """systemd-sysusers, on an empty root, creates the user and group the app runs as, which is
    the group the exporter's unit reads the log with."""
    sysusers = binary("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    for name in ("passwd", "group"):
        (tmp_path / "etc" / name).touch()
    conf = SYSTEMD / "sustainbot.sysusers.conf"
    result = run([sysusers, "--dry-run", f"--root={tmp_path}", str(conf)], timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Creating group 'sustainbot'" in result.stdout + result.stderr
    app, exporter = _settings("sustainbot.service"), _settings("log-exporter.service")
    assert app["User"] == app["Group"] == ["sustainbot"]
    assert exporter["SupplementaryGroups"] == app["Group"]
    assert exporter["DynamicUser"] == ["yes"]


def test_units_are_hardened_and_share_one_log_path_with_logrotate() -> None:
    """Both units run without privileges on a read-only system, the app's log directory is
    readable by its group only, the exporter keeps its state in its StateDirectory, and the app,
    the exporter and logrotate name the same log file."""
    app, exporter = _settings("sustainbot.service"), _settings("log-exporter.service")
    for unit in (app, exporter):
        assert unit["NoNewPrivileges"] == ["yes"]
        assert unit["ProtectSystem"] == ["strict"]
        assert unit["CapabilityBoundingSet"] == [""]
    assert app["LogsDirectory"] == ["sustainbot"] and app["LogsDirectoryMode"] == ["0750"]
    assert app["UMask"] == ["0027"]
    assert exporter["StateDirectory"] == ["log-exporter"]
    app_env, exporter_env = _environment("sustainbot.service"), _environment("log-exporter.service")
    assert exporter_env["LOG_EXPORTER_STATE"].startswith("/var/lib/log-exporter/")
    assert app_env["JSON_LOG_PATH"] == exporter_env["LOG_EXPORTER_FILE"] == LOG
    assert app["EnvironmentFile"] == ["/etc/sustainbot/sustainbot.env"]
    assert f"{LOG} {{" in LOGROTATE.read_text(encoding="utf-8")


def test_host_logrotate_config_parses_with_no_unknown_user(tmp_path: Path) -> None:
    """logrotate -d accepts the host config as shipped: it names no user or group that may not
    exist on the host."""
    logrotate = binary("logrotate")
    result = run([logrotate, "-d", "--state", str(tmp_path / "status"), str(LOGROTATE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stderr.lower(), result.stderr


def test_host_logrotate_renames_and_keeps_the_newest_rotated_generation_plain(
    tmp_path: Path,
) -> None:
    """Real logrotate on the host config renames the log without creating a new one (the app
    does), keeps the newest rotated generation uncompressed for the exporter to finish, and
    compresses the older ones, in a directory of mode 0750 as systemd makes it."""
    logrotate = binary("logrotate")
    logs = tmp_path / "logs"
    logs.mkdir()
    logs.chmod(0o750)
    log = logs / "sustainbot.jsonl"
    conf = tmp_path / "logrotate.conf"
    conf.write_text(LOGROTATE.read_text(encoding="utf-8").replace(LOG, str(log)))
    conf.chmod(0o644)
    status = tmp_path / "status"
    for generation in (b"first\n", b"second\n"):
        log.write_bytes(generation)
        result = run([logrotate, "-f", "--state", str(status), str(conf)])
        assert result.returncode == 0, result.stdout + result.stderr
        assert not log.exists()
    assert (logs / "sustainbot.jsonl.1").read_bytes() == b"second\n"
    assert gzip.decompress((logs / "sustainbot.jsonl.2.gz").read_bytes()) == b"first\n"
    assert stat.S_IMODE(logs.stat().st_mode) == 0o750
