"""The registry client flows run against a stock ``mlflow server`` and against the gateway in each mode,
with the same assertions: passing on the stock server proves a test right; passing on the gateway
proves the gateway compatible."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from mlflow import MlflowClient

from tests.conftest import Gateway, official_client
from tests.differential.stock import StockServer, stock_mlflow_server
from trackstream.settings import Settings


@pytest.fixture(scope="session")
def stock_clients_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StockServer]:
    """One stock server for every client-flow test (each test uses names of its own)."""
    with stock_mlflow_server(tmp_path_factory.mktemp("stock-mlflow-clients")) as server:
        yield server


@pytest.fixture(params=["stock", "embedded", pytest.param("kafka", marks=pytest.mark.services)])
def tracking_uri(request: pytest.FixtureRequest, gateway_factory: Callable[[Settings], Gateway]) -> str:
    """A stock ``mlflow server``'s URL, or a fresh gateway's in embedded or Kafka mode."""
    if request.param == "stock":
        server: StockServer = request.getfixturevalue("stock_clients_server")
        return server.url
    factory = "embedded_settings" if request.param == "embedded" else "kafka_settings"
    return gateway_factory(request.getfixturevalue(factory)()).url


@pytest.fixture
def client(tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowClient]:
    """``MlflowClient`` and the fluent API (``mlflow.*``) pointed at ``tracking_uri``."""
    with official_client(tracking_uri, monkeypatch) as c:
        yield c


@pytest.fixture
def name() -> str:
    """A registered-model name no other test uses (the stock server is shared by the session)."""
    return f"model-{uuid.uuid4().hex[:8]}"
