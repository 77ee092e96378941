"""A real Prometheus scraping a real sidecar, and promtool judging what the sidecar serves."""

from __future__ import annotations

import base64
import contextlib
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from prometheus_client.openmetrics import parser as openmetrics_parser

from log_exporter.prometheus import selfmetrics
from tests.exporter.conftest import PrometheusFactory
from tests.support.certs import make_certs
from tests.support.prometheus import Prometheus
from tests.support.serve import Exporter, append, parse_metrics
from tests.support.waits import DEADLINE, wait_for

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parents[1] / "fixtures"
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}


@pytest.fixture
def scraping_prometheus(
    prometheus_factory: PrometheusFactory,
) -> Callable[[dict[str, Any]], Prometheus]:
    """Starts Prometheus servers scraping the sidecar every second with a given scrape config."""

    def start(scrape_config: dict[str, Any]) -> Prometheus:
        return prometheus_factory(
            config={
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [{"job_name": "sidecar", **scrape_config}],
            }
        )

    return start


def _vector(prom: Prometheus, promql: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """An instant query's vector as ``{(name, sorted labels without job/instance): value}``."""
    out = {}
    for item in prom.query(promql):
        labels = dict(item["metric"])
        name = labels.pop("__name__", "")
        kept = tuple(sorted((k, v) for k, v in labels.items() if k not in TARGET_LABELS))
        out[(name, kept)] = float(item["value"][1])
    return out


def _scraped_like(prom: Prometheus, expected: dict[Any, float], selector: str) -> bool:
    return _vector(prom, selector) == expected


def test_prometheus_query_results_equal_the_contract_counts(
    tmp_path: Path,
    scraping_prometheus: Callable[[dict[str, Any]], Prometheus],
    contract_line: Callable[..., bytes],
) -> None:
    """Prometheus scraping the sidecar stores exactly the golden contract values, then follows."""
    log = tmp_path / "contract.jsonl"
    log.write_bytes((FIXTURES / "contract.jsonl").read_bytes())
    golden = parse_metrics((FIXTURES / "contract.expected.prom").read_text())
    selector = '{__name__=~"sustainbot_.+|log_exporter_lines_total|log_exporter_bytes_read_total"}'
    expected = {
        key: value
        for key, value in golden.items()
        if key[0].startswith("sustainbot_")
        or key[0] in ("log_exporter_lines_total", "log_exporter_bytes_read_total")
    }
    assert len(expected) > 50, "the golden file should cover every contract metric"

    with Exporter(tmp_path, ["--file", str(log)]) as exporter:
        exporter.wait_healthy()
        prom = scraping_prometheus(
            {"static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}
        )
        wait_for(
            lambda: _scraped_like(prom, expected, selector),
            "Prometheus to hold the golden values",
        )

        # Live: new events reach Prometheus through the next scrapes.
        append(
            log,
            contract_line(
                "aim.request", drag_mode="grunt", actor_role="engineer", workflow_name="w"
            )
            * 4,
        )
        wait_for(
            lambda: (
                _vector(
                    prom, 'sum by (drag_mode) (sustainbot_aim_requests_total{drag_mode="grunt"})'
                )
                == {("", (("drag_mode", "grunt"),)): 4.0}
            ),
            "4 grunt requests in Prometheus",
        )
        assert exporter.stop() == 0


def test_promtool_check_metrics_is_clean(tmp_path: Path, promtool_binary: str) -> None:
    """``promtool check metrics`` finds nothing to complain about in a full /metrics page, and
    the OpenMetrics page of the same exporter parses strictly."""
    log = tmp_path / "contract.jsonl"
    log.write_bytes((FIXTURES / "contract.jsonl").read_bytes())
    # An empty web config: its reload counter appears too, so promtool judges every family.
    web = tmp_path / "web.yml"
    web.write_text("", encoding="utf-8")
    args = ["--file", str(log), "--state", str(tmp_path / "state.json"),
            "--web.config.file", str(web)]  # fmt: skip
    with Exporter(tmp_path, args) as exporter:
        exporter.wait_healthy()
        exporter.wait_metric("log_exporter_bytes_read_total", float(log.stat().st_size))
        status, body = exporter.get("/metrics")
        om_status, om_body = exporter.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert exporter.stop() == 0
    assert status == om_status == 200
    # Every family appears, self-metrics with --state and the web config included, and
    # client_python's process and Python collectors, so promtool judges them all.
    for name in ("log_exporter_state_saves_total", "log_exporter_web_config_reloads_total",
                 *selfmetrics.STANDARD):  # fmt: skip
        assert f"# TYPE {name} ".encode() in body, name
    # promtool reads only the text format (its parser refuses OpenMetrics' info type); the
    # OpenMetrics page goes through client_python's strict OpenMetrics parser instead, which
    # refuses what the format forbids (a missing # EOF, a counter without _total, ...).
    # client_python's OpenMetrics parser carries no annotations.
    parse = openmetrics_parser.text_string_to_metric_families
    families = {f.name for f in parse(om_body.decode())}  # type: ignore[no-untyped-call]
    assert {n.removesuffix("_total") for n in selfmetrics.STANDARD} <= families
    assert "log_exporter_build" in families
    result = subprocess.run(
        [promtool_binary, "check", "metrics"],
        input=body,
        capture_output=True,
        timeout=DEADLINE,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b""
    assert result.stderr.strip() == b""


@contextlib.contextmanager
def _secured_sidecar(tmp_path: Path, log: Path) -> Iterator[tuple[Exporter, dict[str, Any]]]:
    """A sidecar behind TLS and basic auth (a web config file), and the scrape config with the
    CA and the password file that a Prometheus reaches it with."""
    certs = make_certs(tmp_path)
    password = "scrape-secret"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {certs.server_cert.name}\n"
        f"  key_file: {certs.server_key.name}\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    client = ssl.create_default_context(cafile=str(certs.ca))
    with Exporter(
        tmp_path,
        ["--file", str(log), "--web.config.file", str(web)],
        scheme="https",
        context=client,
        auth=("prometheus", password),
    ) as exporter:
        exporter.wait_healthy()
        (tmp_path / "password").write_text(password)
        yield (
            exporter,
            {
                "scheme": "https",
                "tls_config": {"ca_file": str(certs.ca), "server_name": "localhost"},
                "basic_auth": {
                    "username": "prometheus",
                    "password_file": str(tmp_path / "password"),
                },
                "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
            },
        )


def test_prometheus_scrapes_through_tls_and_basic_auth(
    tmp_path: Path,
    scraping_prometheus: Callable[[dict[str, Any]], Prometheus],
    contract_line: Callable[..., bytes],
) -> None:
    """A Prometheus configured with the CA and the password scrapes a TLS + basic auth sidecar."""
    log = tmp_path / "app.jsonl"
    append(log, contract_line("auth.jwt_validated", outcome="success") * 3)
    with _secured_sidecar(tmp_path, log) as (exporter, scrape):
        prom = scraping_prometheus(scrape)
        wait_for(
            lambda: (
                _vector(prom, 'sustainbot_jwt_validations_total{outcome="success"}')
                == {("sustainbot_jwt_validations_total", (("outcome", "success"),)): 3.0}
            ),
            "Prometheus to scrape through TLS and basic auth",
        )
        assert exporter.stop() == 0


def test_prometheus_asks_for_protobuf_through_tls_and_basic_auth(
    tmp_path: Path,
    prometheus_factory: PrometheusFactory,
    contract_line: Callable[..., bytes],
) -> None:
    """A Prometheus with native histograms on gets the protobuf page through the same TLS and
    basic auth: the request durations arrive as a native histogram with the log's count."""
    log = tmp_path / "app.jsonl"
    durations = [0.002, 0.004, 0.03, 0.7]
    append(
        log,
        b"".join(
            contract_line(
                "http.request", method="GET", endpoint="/x", status_code=200, duration_seconds=d
            )
            for d in durations
        ),
    )
    with _secured_sidecar(tmp_path, log) as (exporter, scrape):
        prom = prometheus_factory(
            config={
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [{"job_name": "sidecar", **scrape}],
            },
            flags=("--enable-feature=native-histograms",),
        )
        expr = "histogram_count(sustainbot_http_request_duration_seconds)"
        wait_for(
            lambda: [float(x["value"][1]) for x in prom.query(expr)] == [float(len(durations))],
            "Prometheus to hold the native histogram scraped through TLS and basic auth",
            explain=prom.log,
        )
        assert prom.query("sustainbot_http_request_duration_seconds_bucket") == []
        assert exporter.stop() == 0


def test_prometheus_with_a_wrong_password_is_refused(
    tmp_path: Path,
    scraping_prometheus: Callable[[dict[str, Any]], Prometheus],
    contract_line: Callable[..., bytes],
) -> None:
    """A Prometheus with the wrong password sees the target down with HTTP 401, and no data."""
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    log = tmp_path / "app.jsonl"
    append(log, contract_line("auth.jwt_validated", outcome="success"))
    with Exporter(tmp_path, ["--file", str(log), "--web.config.file", str(web)]) as exporter:
        exporter.auth_header = {
            "Authorization": "Basic " + base64.b64encode(b"prometheus:right").decode()
        }
        exporter.wait_healthy()
        prom = scraping_prometheus(
            {
                "basic_auth": {"username": "prometheus", "password": "wrong"},
                "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
            }
        )

        def refused() -> bool:
            targets = prom.active_targets()
            return bool(targets) and "401" in targets[0].get("lastError", "")

        wait_for(refused, "the target to report 401")
        assert _vector(prom, "sustainbot_jwt_validations_total") == {}
        assert exporter.stop() == 0
