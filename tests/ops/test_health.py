"""Liveness and readiness that mean something: readiness flips when a service the process depends on
stops answering and back when it returns; liveness flips when a consumer thread stops.

The outage is a TCP forwarder of the test's own in front of the real ClickHouse server (stopping it
is ClickHouse going away for this gateway or worker only: the shared services keep running)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.conftest import Gateway, SettingsFactory, free_port
from tests.faults.conftest import REPO, worker_env
from tests.ops.conftest import TcpProxy
from trackstream.settings import Settings

BOUND = 30.0  # seconds a probe may take to notice (checks time out after 3 s, results live 1 s)


def _until(url: str, status: int, bound: float = BOUND) -> str:
    deadline = time.monotonic() + bound
    last = ""
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(url, timeout=10)
            last = f"{answer.status_code} {answer.text}"
            if answer.status_code == status:
                return answer.text
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer {status} within {bound}s; last: {last}")


def _proxied(
    kafka_settings: SettingsFactory, tcp_proxy: type[TcpProxy], **overrides: object
) -> tuple[Settings, TcpProxy]:
    plain = kafka_settings()
    url = urlsplit(str(plain.clickhouse_url))
    proxy = tcp_proxy((url.hostname or "127.0.0.1", url.port or 9000))
    proxy.start()
    netloc = url.netloc.replace(f":{url.port}", f":{proxy.port}")
    settings = kafka_settings(clickhouse_url=url._replace(netloc=netloc).geturl(), topics=plain.topics,
                              consumer_group_prefix=plain.consumer_group_prefix, **overrides)  # fmt: skip
    return settings, proxy


def test_gateway_readiness_follows_clickhouse(
    kafka_settings: SettingsFactory, tcp_proxy: type[TcpProxy], gateway_factory: Callable[..., Gateway]
) -> None:
    settings, proxy = _proxied(kafka_settings, tcp_proxy)
    gw = gateway_factory(settings)
    assert _until(gw.url + "/health/ready", 200) == "OK"
    proxy.stop()
    problems = _until(gw.url + "/health/ready", 503)
    assert "tables" in problems
    assert httpx.get(gw.url + "/health/live", timeout=10).status_code == 200  # a restart would not help
    proxy.start()
    assert _until(gw.url + "/health/ready", 200, bound=60) == "OK"


def test_embedded_liveness_and_readiness_flip_when_a_consumer_thread_stops(
    embedded_settings: SettingsFactory, gateway_factory: Callable[..., Gateway]
) -> None:
    gw = gateway_factory(embedded_settings())
    assert _until(gw.url + "/health/ready", 200) == "OK"
    assert httpx.get(gw.url + "/health/live", timeout=10).text == "OK"
    pipe, thread = gw.runtime.pipelines[0], gw.runtime.threads[0]
    pipe.stop()
    thread.join(timeout=10)
    for path in ("/health/live", "/health/ready", "/health"):
        answer = httpx.get(gw.url + path, timeout=10)
        assert answer.status_code == 503, path
        assert f"the {pipe.name} sink worker exited" in answer.text


def test_sink_worker_readiness_follows_clickhouse(
    kafka_settings: SettingsFactory, tcp_proxy: type[TcpProxy], tmp_path: Path
) -> None:
    settings, proxy = _proxied(kafka_settings, tcp_proxy)
    port = free_port()
    env = {**worker_env(settings), "TRACKSTREAM_METRICS_PORT": str(port), "TRACKSTREAM_METRICS_HOST": "127.0.0.1"}
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "trackstream.cli", "consume", "metadata"], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        assert _until(base + "/health/ready", 200, bound=60) == "OK", log.read_text()
        proxy.stop()
        assert "tables" in _until(base + "/health/ready", 503)
        assert httpx.get(base + "/health/live", timeout=10).status_code == 200
        proxy.start()
        assert _until(base + "/health/ready", 200, bound=60) == "OK"
        assert proc.poll() is None, log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
