"""A gateway with auth on, in each mode, and HTTP helpers that authenticate as a given user."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from tests.conftest import Gateway, free_port, unique_topics
from trackstream import assembly
from trackstream.runtime import Runtime
from trackstream.settings import Settings

ADMIN, ADMIN_PASSWORD = "admin", "admin-password-0"


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def auth_settings(make: Callable[..., Settings], kafka: bool, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"auth_enabled": True, "auth_admin_password": ADMIN_PASSWORD}
    if kafka:  # every test its own auth topic, as unique_topics gives it the others
        values["topics"] = unique_topics().model_copy(update={"auth": f"test-{uuid.uuid4().hex[:8]}.auth"})
    values.update(overrides)
    return make(**values)


@dataclass
class AuthGateway(Gateway):
    app: Starlette


@pytest.fixture
def auth_gateway_factory() -> Iterator[Callable[[Settings], AuthGateway]]:
    """Start a gateway (as tests.conftest.gateway_factory does) and keep its app: the tests walk its routes."""
    servers: list[tuple[uvicorn.Server, threading.Thread, Runtime]] = []

    def start(settings: Settings) -> AuthGateway:
        built = assembly.gateway(settings, consumers=True, ready_timeout=60, close_on_shutdown=False)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(built.app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.02)
        servers.append((server, thread, built.runtime))
        return AuthGateway(f"http://127.0.0.1:{port}", built.runtime, built.app)

    yield start
    for server, thread, runtime in servers:
        server.should_exit = True
        thread.join(timeout=10)
        runtime.close()


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.services)])
def auth_gateway(
    request: pytest.FixtureRequest, auth_gateway_factory: Callable[[Settings], AuthGateway]
) -> AuthGateway:
    """A gateway with auth on (default permission READ, the stock default), in each mode."""
    kafka = request.param == "kafka"
    make = request.getfixturevalue("kafka_settings" if kafka else "embedded_settings")
    return auth_gateway_factory(auth_settings(make, kafka))


class Api:
    """JSON calls to one gateway as one user (or with the given headers)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.client = httpx.Client(base_url=url, headers=headers or {}, timeout=60)

    def call(self, method: str, path: str, fields: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        if method == "GET":
            return self.client.request(method, path, params=fields, **kw)
        return self.client.request(method, path, json=fields if fields is not None else {}, **kw)

    def ok(self, method: str, path: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.call(method, path, fields)
        assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text}"
        body: dict[str, Any] = response.json()
        return body


API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts"


def admin(gateway: Gateway) -> Api:
    return Api(gateway.url, basic(ADMIN, ADMIN_PASSWORD))


def new_user(gateway: Gateway, name: str, password: str | None = None) -> Api:
    """Create ``name`` through the admin and return a client authenticating as it."""
    password = password or f"{name}-password-1"
    admin(gateway).ok("POST", f"{API}/users/create", {"username": name, "password": password})
    return Api(gateway.url, basic(name, password))


def grant(gateway: Gateway, username: str, experiment_id: str, permission: str) -> None:
    admin(gateway).ok(
        "POST",
        f"{API}/experiments/permissions/create",
        {"experiment_id": experiment_id, "username": username, "permission": permission},
    )
