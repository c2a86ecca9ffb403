"""A real ``mlflow server`` 3.17.2 (SQLite backend, proxied artifacts) for the differential test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.differential.registry_session import run_registry_session
from tests.differential.session import Step, run_session
from tests.differential.stock import StockServer, log_tail, stock_mlflow_server
from tests.differential.trace_session import run_trace_session


@pytest.fixture(scope="session")
def stock_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StockServer]:
    """URL of a stock ``mlflow server`` (the one of the installed ``mlflow`` package), stopped at the end."""
    with stock_mlflow_server(tmp_path_factory.mktemp("stock-mlflow")) as server:
        yield server


@pytest.fixture(scope="session")
def stock_record(stock_server: StockServer) -> list[Step]:
    """The scripted session's record against the stock server (run once: the server keeps its state)."""
    return _record("tracking", run_session, stock_server)


@pytest.fixture(scope="session")
def stock_registry_record(tmp_path_factory: pytest.TempPathFactory) -> list[Step]:
    """The registry session's record against a stock server of its own (so neither session sees the
    other's experiments or models), stopped once the record is taken."""
    with stock_mlflow_server(tmp_path_factory.mktemp("stock-mlflow-registry")) as server:
        return _record("registry", run_registry_session, server)


@pytest.fixture(scope="session")
def stock_trace_record(tmp_path_factory: pytest.TempPathFactory) -> list[Step]:
    """The tracing session's record against a stock server of its own, stopped once the record is taken."""
    with stock_mlflow_server(tmp_path_factory.mktemp("stock-mlflow-traces")) as server:
        return _record("tracing", run_trace_session, server)


def _record(what: str, session: Callable[[str], list[Step]], server: StockServer) -> list[Step]:
    try:
        return session(server.url)
    except Exception as exc:
        raise AssertionError(
            f"the {what} session failed against the stock server: {exc!r}\n{log_tail(server.log)}"
        ) from exc
