"""CloudWatch settings from the environment and flags, and running without the extra."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from log_exporter.cloudwatch import config as cw_config
from log_exporter.cloudwatch.config import CloudWatchConfig, ConfigError, load
from tests.support.cloudwatch import serve_startup_log
from tests.support.serve import exporter_argv


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cw_config.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_when_only_enabled() -> None:
    """Enabling with nothing else gives the documented defaults and the host name as stream."""
    cfg = load({"CLOUDWATCH_ENABLED": "true"})
    assert cfg.enabled
    assert (cfg.namespace, cfg.region, cfg.log_group) == (
        "AIWF/SustainBot",
        "eu-west-1",
        "/aiwf/sustainbot",
    )
    assert cfg.flush_seconds == 60.0
    assert cfg.metrics_mode == "putmetricdata"
    import socket

    assert cfg.log_stream == socket.gethostname()


def test_settings_table_defaults_are_the_config_defaults() -> None:
    """With nothing set, the settings table's defaults give CloudWatchConfig's own defaults."""
    import socket

    assert load({}) == CloudWatchConfig(log_stream=socket.gethostname())


def test_disabled_unless_enabled_is_true() -> None:
    """Shipping is off without CLOUDWATCH_ENABLED, and off for an explicit false."""
    assert not load({}).enabled
    assert not load({"CLOUDWATCH_ENABLED": "false"}).enabled


def test_flag_overrides_environment() -> None:
    """A flag wins over its environment variable."""
    env = {"CLOUDWATCH_NAMESPACE": "Env/NS", "CLOUDWATCH_METRICS_MODE": "putmetricdata"}
    cfg = load(
        env,
        _args(
            "--cloudwatch", "--cloudwatch-namespace", "Flag/NS", "--cloudwatch-metrics-mode", "emf"
        ),
    )
    assert cfg.enabled
    assert cfg.namespace == "Flag/NS"
    assert cfg.metrics_mode == "emf"
    assert cfg.emf_log_stream == f"{cfg.log_stream}-emf"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CLOUDWATCH_ENABLED": "maybe"}, "CLOUDWATCH_ENABLED"),
        ({"CLOUDWATCH_FLUSH_SECONDS": "0"}, "CLOUDWATCH_FLUSH_SECONDS"),
        ({"CLOUDWATCH_FLUSH_SECONDS": "nan"}, "CLOUDWATCH_FLUSH_SECONDS"),
        ({"CLOUDWATCH_FLUSH_SECONDS": "soon"}, "CLOUDWATCH_FLUSH_SECONDS"),
        ({"CLOUDWATCH_METRICS_MODE": "statsd"}, "CLOUDWATCH_METRICS_MODE"),
        ({"CLOUDWATCH_LOG_GROUP": "bad group!"}, "CLOUDWATCH_LOG_GROUP"),
        ({"CLOUDWATCH_LOG_STREAM": "a:b"}, "CLOUDWATCH_LOG_STREAM"),
        ({"CLOUDWATCH_REGION": "Europe"}, "CLOUDWATCH_REGION"),
        ({"CLOUDWATCH_NAMESPACE": "AWS/EC2"}, "CLOUDWATCH_NAMESPACE"),
    ],
)
def test_bad_setting_names_the_variable_and_flag(env: dict[str, str], named: str) -> None:
    """A bad value fails at start with a message naming the variable and its flag."""
    with pytest.raises(ConfigError, match=named) as info:
        load(env)
    assert "--cloudwatch" in str(info.value)


_BLOCK_BOTO3 = textwrap.dedent(
    """
    import sys

    class _NoBoto:
        # Simulates an install without the cloudwatch extra: boto3/botocore cannot be imported.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("boto3", "botocore"):
                raise ImportError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, _NoBoto())
    """
)


def test_enabled_without_boto3_fails_with_install_command(tmp_path: Path) -> None:
    """With boto3 missing, serve with CLOUDWATCH_ENABLED=true exits 2 printing the pip command."""
    log_file = tmp_path / "sustainbot.jsonl"
    log_file.write_text("")
    code = _BLOCK_BOTO3 + textwrap.dedent(
        f"""
        from log_exporter.cli import main
        sys.exit(main(["serve", "--file", {str(log_file)!r}, "--web.listen-address=127.0.0.1:0"]))
        """
    )
    env = {**os.environ, "CLOUDWATCH_ENABLED": "true"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'sustainbot-observability[cloudwatch]'" in proc.stderr


def test_disabled_serve_says_how_to_enable(tmp_path: Path) -> None:
    """Without CLOUDWATCH_ENABLED, serve runs and its start-up log says how to enable shipping;
    with boto3 installed it names no install step."""
    log_file = tmp_path / "sustainbot.jsonl"
    log_file.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDWATCH_")}
    seen, returncode = serve_startup_log(log_file, env)
    assert "CLOUDWATCH_ENABLED=true" in seen
    assert "pip install" not in seen
    assert returncode == 0


def test_disabled_without_boto3_names_the_install_step() -> None:
    """Where boto3 is missing, the start-up hint adds the install command, for an installed wheel
    and for a checkout."""
    code = _BLOCK_BOTO3 + textwrap.dedent(
        """
        import logging
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        from log_exporter.cloudwatch.config import load
        from log_exporter.cloudwatch.hook import start_for_serve
        start_for_serve(load({}), None)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "CLOUDWATCH_ENABLED=true" in proc.stderr
    assert "pip install 'sustainbot-observability[cloudwatch]'" in proc.stderr
    assert "pip install -e '.[cloudwatch]'" in proc.stderr


def test_package_import_does_not_load_boto3() -> None:
    """Importing every CloudWatch module (shipping disabled) never imports boto3."""
    code = _BLOCK_BOTO3 + textwrap.dedent(
        """
        import log_exporter.cloudwatch.client, log_exporter.cloudwatch.config
        import log_exporter.cloudwatch.shipper, log_exporter.cloudwatch.service
        import log_exporter.cloudwatch.emf, log_exporter.cloudwatch.derive
        assert not any(m.split(".")[0] in ("boto3", "botocore") for m in sys.modules)
        print("ok")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_replay_without_credentials_retries_forever(tmp_path: Path) -> None:
    """`replay --cloudwatch` with no AWS credentials anywhere ends at once with exit code 2 and
    says what is missing, instead of retrying like serve does."""
    log_file = tmp_path / "old.jsonl"
    log_file.write_text('{"timestamp":"2026-02-01T10:00:00.000Z","event":"auth.failed"}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CLOUDWATCH_"))} | {
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true",
        # Should credentials turn up after all, nothing listens here: the run would then hang
        # retrying and time out instead of reaching a real AWS account.
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    }
    proc = subprocess.run(
        exporter_argv("replay", "--cloudwatch", str(log_file)),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "NoCredentialsError" in proc.stderr
    assert "docs/cloudwatch.md" in proc.stderr


@pytest.mark.parametrize(
    ("environ", "region"),
    [
        ({}, "eu-west-1"),
        ({"AWS_DEFAULT_REGION": "ap-south-1"}, "ap-south-1"),
        ({"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "ap-south-1"}, "us-east-1"),
        ({"CLOUDWATCH_REGION": "eu-north-1", "AWS_REGION": "us-east-1"}, "eu-north-1"),
        ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "ap-south-1"}, "ap-south-1"),
    ],
    ids=[
        "seed-default",
        "aws-default-region",
        "aws-region-first",
        "cloudwatch-region-wins",
        "empty",
    ],
)
def test_region_follows_the_aws_chain(environ: dict[str, str], region: str) -> None:
    """CLOUDWATCH_REGION, then AWS_REGION (as EKS and ECS set it), then AWS_DEFAULT_REGION, then
    eu-west-1: a pod in us-east-1 no longer ships to eu-west-1."""
    assert load({"CLOUDWATCH_ENABLED": "true", **environ}).region == region


def test_region_flag_wins_over_the_aws_variables() -> None:
    """--cloudwatch-region beats every variable of the chain."""
    args = _args("--cloudwatch", "--cloudwatch-region", "sa-east-1")
    assert load({"AWS_REGION": "us-east-1"}, args).region == "sa-east-1"


def test_clients_are_made_for_the_region_of_the_chain() -> None:
    """The boto3 clients the shipper uses are bound to the region AWS_REGION named."""
    from log_exporter.cloudwatch.client import connect

    logs, metrics = connect(load({"CLOUDWATCH_ENABLED": "true", "AWS_REGION": "us-east-1"}))
    assert logs.meta.region_name == metrics.meta.region_name == "us-east-1"


def test_bad_aws_region_names_every_variable_it_may_come_from() -> None:
    """A malformed region from AWS_REGION fails at start with a message naming the chain."""
    with pytest.raises(ConfigError, match="CLOUDWATCH_REGION / AWS_REGION / AWS_DEFAULT_REGION"):
        load({"CLOUDWATCH_ENABLED": "true", "AWS_REGION": "Mars"})
