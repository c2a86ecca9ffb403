"""Fixtures of the registry tests: a REST helper over a gateway in each mode, the two-gateway cluster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.conftest import Gateway
from tests.decisions.conftest import cluster  # noqa: F401  (the two-gateway fixture, reused)
from trackstream.tables import TableStore

API = "/api/2.0/mlflow"


@dataclass
class Registry:
    """The registry endpoints of one gateway, and the table store its sinks write."""

    url: str
    tables: TableStore

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        if method == "GET":
            return requests.get(self.url + API + path, params=body, timeout=60)
        return requests.request(method, self.url + API + path, json=body or {}, timeout=60)

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.call(method, path, body)
        assert response.status_code == 200, response.text
        return response.json()

    def error(self, method: str, path: str, body: dict[str, Any] | None, status: int, code: str) -> str:
        response = self.call(method, path, body)
        assert response.status_code == status, response.text
        assert response.json()["error_code"] == code, response.text
        return str(response.json()["message"])

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.tables.query(sql)]


@pytest.fixture
def registry(gateway: Gateway) -> Registry:
    return Registry(gateway.url, gateway.runtime.tables)
