"""Gateways to race: the embedded gateway, and two `trackstream serve` processes in Kafka mode."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Gateway, SettingsFactory, free_port
from tests.faults.conftest import REPO, worker_env
from trackstream.runtime import build
from trackstream.settings import Settings
from trackstream.tables import TableStore

API = "/api/2.0/mlflow"


@dataclass
class Cluster:
    """Gateway URLs (requests are spread over them) and the table store they all write to."""

    urls: list[str]
    tables: TableStore

    def post(self, path: str, body: dict[str, Any], replica: int = 0) -> requests.Response:
        return requests.post(self.urls[replica % len(self.urls)] + API + path, json=body, timeout=60)

    def ok(self, path: str, body: dict[str, Any]) -> Any:
        r = self.post(path, body)
        assert r.status_code == 200, r.text
        return r.json()

    def race(self, path: str, bodies: list[dict[str, Any]]) -> list[requests.Response]:
        """Send every body at once (one thread each, started together), spread over the replicas."""
        start = time.monotonic() + 0.3
        with ThreadPoolExecutor(len(bodies)) as pool:

            def send(i: int) -> requests.Response:
                time.sleep(max(0.0, start - time.monotonic()))
                return self.post(path, bodies[i], replica=i)

            return list(pool.map(send, range(len(bodies))))


def _spawn_gateway(settings: Settings, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**worker_env(settings), "TRACKSTREAM_PORT": str(port), "TRACKSTREAM_HOST": "127.0.0.1"}
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "trackstream.cli", "serve"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return process, f"http://127.0.0.1:{port}"


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited: {log_path.read_text()[-3000:]}")
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gateway at {url} not healthy after 60 s: {log_path.read_text()[-3000:]}")


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.services)])
def cluster(
    request: pytest.FixtureRequest, gateway_factory: Callable[[Settings], Gateway], tmp_path: Path
) -> Iterator[Cluster]:
    """Embedded: one gateway process (its sinks in threads). Kafka: two gateway processes, and the
    sinks as threads of the test process, all on the real services."""
    if request.param == "embedded":
        settings: Settings = request.getfixturevalue("embedded_settings")()
        gateway = gateway_factory(settings)
        yield Cluster([gateway.url], gateway.runtime.tables)
        return
    make: SettingsFactory = request.getfixturevalue("kafka_settings")
    settings = make()
    runtime = build(settings)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        runtime.start_consumers()
        runtime.wait_consumers_ready(timeout=60)
        urls = []
        for i in range(2):
            log_path = tmp_path / f"gateway{i}.log"
            process, url = _spawn_gateway(settings, log_path)
            processes.append(process)
            _wait_healthy(process, url, log_path)
            urls.append(url)
        yield Cluster(urls, runtime.tables)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        runtime.close()
