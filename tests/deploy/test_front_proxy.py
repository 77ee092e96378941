"""The buffering proxy shown in front of SustainBot: compose's nginx and the Kubernetes Ingress."""

from __future__ import annotations

import re
from typing import Any

import pytest

from sustainbot.routes import MAX_BODY_BYTES
from tests.support.deploy import DEPLOY, REPO, load_yaml, load_yaml_all


def test_compose_proxy_buffers_requests_for_the_app() -> None:
    """The proxy profile's nginx buffers whole requests, within the app's limits, to the app."""
    compose = load_yaml(REPO / "docker-compose.yml")
    proxy = compose["services"]["sustainbot-proxy"]
    assert proxy["profiles"] == ["proxy"]
    assert all(str(p).startswith("127.0.0.1:") for p in proxy["ports"])
    assert proxy["depends_on"]["sustainbot"]["condition"] == "service_healthy"
    (mount,) = proxy["configs"]
    conf = compose["configs"][mount["source"]]["content"]
    assert "server sustainbot:5000;" in conf
    assert "proxy_request_buffering on;" in conf
    assert f"client_max_body_size {MAX_BODY_BYTES // 1024}k;" in conf
    for directive in ("client_header_timeout", "client_body_timeout"):
        assert re.search(rf"{directive} \d+s;", conf), directive


def test_ingress_buffers_requests_and_routes_to_the_app_service() -> None:
    """The Ingress is valid for the Kubernetes API, buffers requests and targets the Service."""
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="dev dependency kubernetes-validate missing"
    )
    (ingress,) = load_yaml_all(DEPLOY / "kubernetes" / "ingress.yaml")
    kubernetes_validate.validate(ingress, kubernetes_validate.latest_version(), strict=True)
    notes: dict[str, Any] = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"
    assert notes["nginx.ingress.kubernetes.io/proxy-body-size"] == f"{MAX_BODY_BYTES // 1024}k"
    (service,) = load_yaml_all(DEPLOY / "kubernetes" / "service.yaml")
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    backend = path["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
