"""The stock server's web security (mlflow server 3.17): allowed hosts, cross-origin writes, frame and
sniffing headers, with its defaults on the running gateway and each setting on the middleware itself."""

from __future__ import annotations

import time

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ingest.security import CORS_BLOCKED_MSG, INVALID_HOST_MSG, WebSecurity
from tests.conftest import Gateway

API = "/api/2.0/mlflow"


def test_a_foreign_host_header_is_refused_but_health_answers(gateway: Gateway) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends ``Host: evil.example``."""
    with httpx.Client(base_url=gateway.url, timeout=30) as c:
        refused = c.get(f"{API}/experiments/get", params={"experiment_id": "0"}, headers={"Host": "evil.example"})
        assert refused.status_code == 403
        assert refused.content == INVALID_HOST_MSG
        assert refused.headers["content-type"].startswith("text/plain")
        for host in ("evil.example:5000", "127.0.0.1.evil.example", ""):
            assert c.get(f"{API}/experiments/search", headers={"Host": host}).status_code == 403, host
        for path in ("/health", "/health/live", "/health/ready", "/version"):
            assert c.get(path, headers={"Host": "evil.example"}).status_code == 200
        for host in ("localhost", "127.0.0.1:5000", "localhost:1", "10.1.2.3:80", "192.168.0.7", "172.20.0.1:5000"):
            ok = c.get(f"{API}/experiments/get", params={"experiment_id": "0"}, headers={"Host": host})
            assert ok.status_code == 200, host


def test_a_cross_origin_text_plain_write_is_refused_and_stores_nothing(gateway: Gateway) -> None:
    name = f"csrf-{time.time_ns()}"
    with httpx.Client(base_url=gateway.url + API, timeout=30) as c:
        for content_type in ("text/plain", "application/json"):
            refused = c.post(
                "/experiments/create",
                content=f'{{"name": "{name}"}}',
                headers={"Origin": "https://evil.example", "Content-Type": content_type},
            )
            assert refused.status_code == 403 and refused.content == CORS_BLOCKED_MSG
        assert c.get("/experiments/get-by-name", params={"experiment_name": name}).status_code == 404
        # reads from any origin, and writes from localhost origins, are served as by the stock server
        assert c.get("/experiments/search", headers={"Origin": "https://evil.example"}).status_code == 200
        local = c.post("/experiments/create", json={"name": name}, headers={"Origin": "http://localhost:3000"})
        assert local.status_code == 200
        assert local.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert c.get("/experiments/get-by-name", params={"experiment_name": name}).status_code == 200


def test_api_responses_carry_nosniff_and_frame_options(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url, timeout=30) as c:
        for response in (
            c.get(f"{API}/experiments/get", params={"experiment_id": "0"}),
            c.get(f"{API}/experiments/get", params={"experiment_id": "nope"}),
            c.post(f"{API}/runs/create", json={"experiment_id": "0", "start_time": 2**64}),
            c.get("/health"),
        ):
            assert response.headers["x-content-type-options"] == "nosniff", response.url
            assert response.headers["x-frame-options"] == "SAMEORIGIN", response.url
        preflight = c.options(
            f"{API}/runs/log-batch",
            headers={"Origin": "http://127.0.0.1:8080", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://127.0.0.1:8080"
        foreign = c.options(
            f"{API}/runs/log-batch",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert foreign.status_code == 400 and "access-control-allow-origin" not in foreign.headers


def _app(web: WebSecurity) -> TestClient:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    routes = [Route("/api/2.0/mlflow/x", echo, methods=["GET", "POST", "OPTIONS"]), Route("/health", echo)]
    return TestClient(Starlette(routes=routes, middleware=web.middleware()), base_url="http://127.0.0.1:5000")


def test_each_security_setting() -> None:
    allowed = _app(WebSecurity(allowed_hosts=["mlflow.example.com", "*.internal:*"]))
    assert allowed.get("/api/2.0/mlflow/x", headers={"Host": "mlflow.example.com"}).status_code == 200
    assert allowed.get("/api/2.0/mlflow/x", headers={"Host": "a.internal:5000"}).status_code == 200
    assert allowed.get("/api/2.0/mlflow/x", headers={"Host": "127.0.0.1:5000"}).status_code == 403
    anyone = _app(WebSecurity(allowed_hosts=["*"]))
    assert anyone.get("/api/2.0/mlflow/x", headers={"Host": "evil.example"}).status_code == 200

    origins = _app(WebSecurity(cors_allowed_origins=["https://ui.example.com", "https://*.corp.example"]))
    for origin, status in (
        ("https://ui.example.com", 200),
        ("https://a.corp.example", 200),
        ("https://evil.example", 403),
        ("http://localhost:9", 200),
    ):
        assert origins.post("/api/2.0/mlflow/x", headers={"Origin": origin}).status_code == status, origin
    wildcard = _app(WebSecurity(cors_allowed_origins=["*"]))
    response = wildcard.post("/api/2.0/mlflow/x", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200 and response.headers["access-control-allow-origin"] == "*"

    assert _app(WebSecurity(x_frame_options="deny")).get("/health").headers["x-frame-options"] == "DENY"
    assert "x-frame-options" not in _app(WebSecurity(x_frame_options="NONE")).get("/health").headers
    plain_options = _app(WebSecurity()).options("/api/2.0/mlflow/x")
    assert plain_options.status_code == 204 and plain_options.content == b""

    off = _app(WebSecurity(enabled=False))
    response = off.post("/api/2.0/mlflow/x", headers={"Host": "evil.example", "Origin": "https://evil.example"})
    assert response.status_code == 200 and "x-content-type-options" not in response.headers
