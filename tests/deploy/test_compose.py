"""docker-compose.yml, the Dockerfile and .dockerignore, validated offline (no Docker engine).

The compose file is checked against the Compose specification's JSON schema (vendored by
check-jsonschema) and for the wiring a user relies on; the Dockerfile is parsed for its targets.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.deploy import DEPLOY, REPO, load_yaml
from tests.support.processes import run

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
LOG_DIR = "/var/log/sustainbot"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str | None:
        values = [arg for kw, arg in self.instructions if kw == keyword]
        return values[-1] if values else None

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse_dockerfile() -> dict[str, Stage]:
    """Stages by name, each with its instructions (line continuations joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arg = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", arg.strip(), re.IGNORECASE)
            assert match, f"every stage is named: {line}"
            current = Stage(match.group(2), match.group(1))
            stages[current.name] = current
        elif current is not None:
            current.instructions.append((keyword, arg.strip()))
    return stages


def effective(stages: dict[str, Stage], name: str, keyword: str) -> str | None:
    """The value of an instruction a stage inherits from its base stages, last one winning."""
    stage = stages[name]
    own = stage.last(keyword)
    if own is not None:
        return own
    return effective(stages, stage.base, keyword) if stage.base in stages else None


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(load_yaml(COMPOSE))


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return parse_dockerfile()


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment is written as a mapping"
    return {k: str(v) for k, v in env.items()}


def _volumes(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Mounts by target path (every mount is written in the long syntax)."""
    mounts = {}
    for vol in service.get("volumes", []):
        assert isinstance(vol, dict), "volumes use the long syntax so read_only is explicit"
        mounts[vol["target"]] = vol
    return mounts


def test_compose_file_violates_compose_spec() -> None:
    """docker-compose.yml is valid against the Compose specification's JSON schema."""
    pytest.importorskip("check_jsonschema", reason="dev dependency check-jsonschema missing")
    schema = ["--builtin-schema", "vendor.compose-spec"]
    result = run([sys.executable, "-m", "check_jsonschema", *schema, str(COMPOSE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_has_every_service(compose: dict[str, Any]) -> None:
    """The stack has the app, its sidecar, Prometheus and Grafana, plus the CloudWatch profile."""
    services = compose["services"]
    default = {name for name, s in services.items() if not s.get("profiles")}
    assert default == {"sustainbot", "log-exporter", "prometheus", "grafana"}
    optional = {name for name, s in services.items() if s.get("profiles") == ["cloudwatch"]}
    assert optional == {"cloudwatch", "log-exporter-cloudwatch"}


def test_sidecars_read_the_app_log_read_only_and_own_their_state(compose: dict[str, Any]) -> None:
    """Sidecars read the app's log volume read-only at its path and own separate state volumes."""
    services = compose["services"]
    app_log = _volumes(services["sustainbot"])[LOG_DIR]
    assert app_log["type"] == "volume" and not app_log.get("read_only", False)
    assert _env(services["sustainbot"])["JSON_LOG_PATH"].startswith(LOG_DIR + "/")
    state_volumes = []
    for name in ("log-exporter", "log-exporter-cloudwatch"):
        mounts = _volumes(services[name])
        log = mounts[LOG_DIR]
        assert log["source"] == app_log["source"] and log["read_only"] is True
        env = _env(services[name])
        assert env["LOG_EXPORTER_FILE"] == _env(services["sustainbot"])["JSON_LOG_PATH"]
        state = mounts[env["LOG_EXPORTER_STATE"].rsplit("/", 1)[0]]
        assert state["type"] == "volume" and not state.get("read_only", False)
        state_volumes.append(state["source"])
    assert len(set(state_volumes)) == 2
    everyone_else = [
        v["source"]
        for name, s in services.items()
        if name not in ("log-exporter", "log-exporter-cloudwatch")
        for v in _volumes(s).values()
    ]
    assert not set(state_volumes) & set(everyone_else)
    assert set(state_volumes) | {app_log["source"]} <= set(compose["volumes"])


def test_every_built_service_names_an_existing_target(
    compose: dict[str, Any], stages: dict[str, Stage]
) -> None:
    """Every service built here names a Dockerfile target that exists."""
    built = {n: s["build"] for n, s in compose["services"].items() if "build" in s}
    assert {n: b["target"] for n, b in built.items()} == {
        "sustainbot": "app",
        "log-exporter": "exporter",
        "cloudwatch": "cloudwatch-emulator",
        "log-exporter-cloudwatch": "exporter-cloudwatch",
    }
    for build in built.values():
        assert build["context"] == "." and build["dockerfile"] == "Dockerfile"
        assert build["target"] in stages


def test_image_runs_as_root(stages: dict[str, Stage]) -> None:
    """Every service image ends as the unprivileged uid 10001, never root."""
    for target in ("app", "exporter", "exporter-cloudwatch", "cloudwatch-emulator"):
        assert stages[target].last("USER") == "10001:10001", target
    assert "useradd --system --uid 10001" in " ".join(stages["runtime"].all("RUN"))


def test_image_installs_wrong_extras(stages: dict[str, Stage]) -> None:
    """The app image gets the app extra, the sidecars the exporter (and cloudwatch) extras."""
    expected = {
        "app": "[app]",
        "exporter": "[exporter]",
        "exporter-cloudwatch": "[exporter,cloudwatch]",
    }
    for target, extras in expected.items():
        installs = " ".join(stages[target].all("RUN"))
        assert f'/tmp/wheels/*.whl){extras}"' in installs, target
    assert stages["app"].base == "runtime" and stages["exporter"].base == "runtime"


def _healthcheck(stages: dict[str, Stage], target: str) -> tuple[str, str]:
    """The URL a target's HEALTHCHECK fetches, after checking its command is valid Python."""
    check = effective(stages, target, "HEALTHCHECK")
    assert check is not None, f"{target} has no HEALTHCHECK"
    options, _, command = check.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)  # exec form: no shell in the check
    assert argv[:2] == ["python", "-c"], "slim images have no curl; Python's urllib does the check"
    compile(argv[2], f"<{target} healthcheck>", "exec")
    (url,) = re.findall(r"'(http://[^']+)'", argv[2])
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}", parts.path


def test_image_without_meaningful_healthcheck(stages: dict[str, Stage]) -> None:
    """The app is checked on /healthz and the sidecar on /readyz, on the ports they listen on."""
    assert _healthcheck(stages, "app") == ("127.0.0.1:5000", "/healthz")
    assert '"--port", "5000"' in (stages["app"].last("CMD") or "")
    for target in ("exporter", "exporter-cloudwatch"):
        assert _healthcheck(stages, target) == ("127.0.0.1:9464", "/readyz")
    assert "LOG_EXPORTER_LISTEN=0.0.0.0:9464" in (effective(stages, "exporter", "ENV") or "")
    assert _healthcheck(stages, "cloudwatch-emulator")[0] == "127.0.0.1:5000"


def test_depends_on_health_that_is_never_reported(
    compose: dict[str, Any], stages: dict[str, Stage]
) -> None:
    """A service waited on as healthy reports health, from its compose entry or its image."""
    services = compose["services"]
    waited = 0
    for service in services.values():
        for dep, cond in service.get("depends_on", {}).items():
            if cond["condition"] == "service_healthy":
                waited += 1
                if "healthcheck" in services[dep]:
                    continue
                assert effective(stages, services[dep]["build"]["target"], "HEALTHCHECK"), dep
    assert waited >= 4


def test_cloudwatch_profile_without_emulator(
    compose: dict[str, Any], stages: dict[str, Stage]
) -> None:
    """The cloudwatch profile runs moto's server and points the shipping sidecar at it."""
    services = compose["services"]
    emulator = stages[services["cloudwatch"]["build"]["target"]]
    assert "moto[server]==" in " ".join(emulator.all("RUN"))
    argv = json.loads(emulator.last("ENTRYPOINT") or "[]") + json.loads(
        emulator.last("CMD") or "[]"
    )
    assert argv == ["moto_server", "-H", "0.0.0.0", "-p", "5000"]
    env = _env(services["log-exporter-cloudwatch"])
    assert env["CLOUDWATCH_ENABLED"] == "true"
    assert env["AWS_ENDPOINT_URL"].endswith(":-http://cloudwatch:5000}")
    assert "boto3" not in " ".join(stages["exporter"].all("RUN"))


def test_prometheus_started_without_rules(compose: dict[str, Any]) -> None:
    """Prometheus gets deploy/prometheus (config and rules) and scrapes the sidecar's service."""
    prom = compose["services"]["prometheus"]
    mount = _volumes(prom)["/etc/prometheus"]
    assert mount == {
        "type": "bind",
        "source": "./deploy/prometheus",
        "target": "/etc/prometheus",
        "read_only": True,
    }
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    for rule_file in config["rule_files"]:
        assert (DEPLOY / "prometheus" / rule_file).is_file()
    (job,) = config["scrape_configs"]
    (targets,) = job["static_configs"]
    listen_port = _env(compose["services"]["log-exporter"])["LOG_EXPORTER_LISTEN"].rsplit(":")[-1]
    assert targets["targets"] == [f"log-exporter:{listen_port}"]


def test_grafana_started_without_provisioning(compose: dict[str, Any]) -> None:
    """Grafana mounts the datasource/dashboard provisioning and the dashboard JSON it points to."""
    grafana = compose["services"]["grafana"]
    mounts = _volumes(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning["source"] == "./deploy/grafana/provisioning" and provisioning["read_only"]
    (provider,) = load_yaml(DEPLOY / "grafana/provisioning/dashboards/sustainbot.yml")["providers"]
    dashboards = mounts[provider["options"]["path"]]
    assert (REPO / dashboards["source"] / "governance-observability.json").is_file()
    home = _env(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == provider["options"]["path"] + "/governance-observability.json"
    (datasource,) = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")[
        "datasources"
    ]
    url = urlsplit(datasource["url"])
    assert url.hostname in compose["services"] and url.port == 9090


def test_port_published_beyond_localhost(compose: dict[str, Any]) -> None:
    """Every published port is bound to 127.0.0.1, so nothing is exposed to the network."""
    published = [p for s in compose["services"].values() for p in s.get("ports", [])]
    assert len(published) >= 5
    assert all(str(p).startswith("127.0.0.1:") for p in published)


def test_secret_written_into_compose_file(compose: dict[str, Any]) -> None:
    """Secrets and passwords come only from the environment; required ones stop compose if unset."""
    for service in compose["services"].values():
        for key, value in _env(service).items():
            if re.search(r"SECRET|PASSWORD|TOKEN", key):
                assert re.fullmatch(r"\$\{[A-Z_]+:[?-][^}]*\}", value), key
    assert _env(compose["services"]["sustainbot"])["SUSTAINBOT_JWT_SECRET"].startswith(
        "${SUSTAINBOT_JWT_SECRET:?"
    )


def test_app_containers_have_writable_root(compose: dict[str, Any]) -> None:
    """Our own containers run with a read-only root, no capabilities and no privilege gain."""
    for name in ("sustainbot", "log-exporter", "cloudwatch", "log-exporter-cloudwatch"):
        service = compose["services"][name]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"]


def test_dockerignore_keeps_needed_files_and_drops_local_state() -> None:
    """The build context keeps what the Dockerfile copies and leaves out venvs, logs and state."""
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(
            fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns
        )

    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), re.MULTILINE)
    sources = [src.rstrip("/") for line in copied for src in line.split()]
    assert set(sources) == {
        "pyproject.toml",
        "README.md",
        "build_revision.py",  # the build hook pyproject.toml names: the build fails without it
        "sustainbot",
        "log_exporter",
    }
    for src in sources:
        assert not ignored(src), src
    for local in (".venv", ".git", "logs", "sustainbot.jsonl", "state.json", ".env"):
        assert ignored(local), local


def _exec_form(stages: dict[str, Stage], target: str, keyword: str) -> list[str]:
    value = effective(stages, target, keyword)
    assert value is not None, (target, keyword)
    argv = json.loads(value)  # exec form: no shell between docker run and the program
    assert isinstance(argv, list), (target, keyword)
    return [str(a) for a in argv]


def test_docker_run_arguments_replace_the_program(stages: dict[str, Stage]) -> None:
    """Arguments after the image name reach the program: each image's entrypoint is its program.

    `docker run IMAGE --help` runs the entrypoint with ["--help"]; it is run here against the
    installed programs, so a wrong entrypoint or a default CMD they refuse fails.
    """
    assert _exec_form(stages, "app", "ENTRYPOINT") == ["sustainbot"]
    assert _exec_form(stages, "app", "CMD")[0] == "serve"
    for target in ("exporter", "exporter-cloudwatch"):
        assert _exec_form(stages, target, "ENTRYPOINT") == ["log-exporter", "serve"]
        assert _exec_form(stages, target, "CMD") == []
    bin_dir = Path(sys.executable).parent
    for target, extra in (("app", ["--help"]), ("exporter", ["--help"])):
        entrypoint = _exec_form(stages, target, "ENTRYPOINT")
        argv = [str(bin_dir / entrypoint[0]), *entrypoint[1:]]
        # The default arguments parse, and a flag given after the image name reaches the program.
        result = run([*argv, *_exec_form(stages, target, "CMD"), *extra])
        assert result.returncode == 0, (target, result.stderr)
        assert "usage:" in result.stdout and entrypoint[-1] in result.stdout, target


def _labels(stages: dict[str, Stage], target: str) -> dict[str, str]:
    """The LABELs an image ends with: its own and its base stages', the later ones winning."""
    stage = stages[target]
    labels = _labels(stages, stage.base) if stage.base in stages else {}
    for arg in stage.all("LABEL"):
        for item in shlex.split(arg):
            key, _, value = item.partition("=")
            labels[key] = value
    return labels


def test_image_without_oci_labels(stages: dict[str, Stage]) -> None:
    """Every image carries the OCI labels, version and revision from build arguments."""
    declared = {arg.split("=")[0] for arg in stages["runtime"].all("ARG")}
    assert {"VERSION", "REVISION", "CREATED", "SOURCE"} <= declared
    titles = set()
    for target in ("app", "exporter", "exporter-cloudwatch", "cloudwatch-emulator"):
        labels = _labels(stages, target)
        prefix = "org.opencontainers.image."
        assert labels[prefix + "version"] == "${VERSION}", target
        assert labels[prefix + "revision"] == "${REVISION}", target
        assert labels[prefix + "created"] == "${CREATED}", target
        assert urlsplit(labels[prefix + "source"].replace("${SOURCE}", "https://x/y")).scheme
        assert labels[prefix + "licenses"] == "Apache-2.0"
        titles.add(labels[prefix + "title"])
    assert len(titles) == 4
    # compose passes the revision through, so `docker compose build` can stamp it.
    build = load_yaml(COMPOSE)["x-build"]
    assert build["args"]["REVISION"].startswith("${GIT_REVISION")


def test_prometheus_and_grafana_report_their_health(compose: dict[str, Any]) -> None:
    """Prometheus and Grafana report health on their readiness endpoints, Grafana waits for it."""
    services = compose["services"]
    expected = {"prometheus": ("9090", "/-/ready"), "grafana": ("3000", "/api/health")}
    for name, (port, path) in expected.items():
        check = services[name]["healthcheck"]
        assert check["test"][0] == "CMD", "exec form: the images' shells differ"
        (url,) = [a for a in check["test"] if a.startswith("http://")]
        parts = urlsplit(url)
        assert (parts.hostname, str(parts.port), parts.path) == ("127.0.0.1", port, path)
        assert check["interval"] and check["timeout"] and check["retries"] >= 1
        assert any(p.endswith(f":{port}:{port}") for p in services[name]["ports"])
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert "--enable-feature=exemplar-storage" in services["prometheus"]["command"]
