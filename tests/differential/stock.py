"""A real ``mlflow server`` 3.17.2 (SQLite backend, proxied artifacts), started as a process of its own."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port

# Start-up takes 5-10 s on an idle machine and was measured at 165 s on the shared 2-core build machine
# under a load average of 40; the bound only stops a server that will never answer.
STARTUP_SECONDS = 300


@dataclass(frozen=True)
class StockServer:
    url: str
    log: Path


def log_tail(log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return text[-6000:]


@contextlib.contextmanager
def stock_mlflow_server(root: Path) -> Iterator[StockServer]:
    """A stock ``mlflow server`` (the installed ``mlflow`` package's) keeping its data under ``root``,
    answering ``/health`` (fails the test if it does not within ``STARTUP_SECONDS``); stopped at the end."""
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
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log_tail(log)}", pytrace=False)
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"mlflow server did not answer /health in {STARTUP_SECONDS}s:\n{log_tail(log)}", pytrace=False
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
