"""A real ``mlflow server`` 3.17.2 (SQLite backend, proxied artifacts) for the differential test."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port
from tests.differential.session import Step, run_session

STARTUP_SECONDS = 90


@dataclass(frozen=True)
class StockServer:
    url: str
    log: Path


def _log_tail(log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return text[-6000:]


@pytest.fixture(scope="session")
def stock_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StockServer]:
    """URL of a stock ``mlflow server`` (the one of the installed ``mlflow`` package), stopped at the end."""
    root = tmp_path_factory.mktemp("stock-mlflow")
    port = free_port()
    log = root / "server.log"
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    cmd = [
        str(mlflow_cli),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--default-artifact-root",
        "mlflow-artifacts:/",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{_log_tail(log)}", pytrace=False)
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"mlflow server did not answer /health in {STARTUP_SECONDS}s:\n{_log_tail(log)}", pytrace=False
                )
            time.sleep(0.3)
        yield StockServer(url, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def stock_record(stock_server: StockServer) -> list[Step]:
    """The scripted session's record against the stock server (run once: the server keeps its state)."""
    try:
        return run_session(stock_server.url)
    except Exception as exc:
        raise AssertionError(
            f"the session failed against the stock server: {exc!r}\n{_log_tail(stock_server.log)}"
        ) from exc
