"""Prometheus metrics: the gateway's /metrics and a sink worker's own port, scraped and parsed with
prometheus_client's parser; the values move after traffic; several uvicorn workers add up."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from ingest.observability import Observability
from tests.conftest import Gateway, SettingsFactory, free_port
from tests.faults.conftest import REPO, GatewayProcessFactory, WorkerFactory, worker_env
from tests.ops.conftest import has, scrape, value

API = "/api/2.0/mlflow"


def _traffic(url: str) -> tuple[str, int]:
    """An experiment, a run, a log-batch of 5 metrics and a read of the run; returns (run id, batch bytes)."""
    with httpx.Client(base_url=url + API, timeout=30) as c:
        exp = c.post("/experiments/create", json={"name": f"metrics-{time.time_ns()}"}).json()["experiment_id"]
        run = c.post("/runs/create", json={"experiment_id": exp}).json()["run"]["info"]["run_id"]
        body = {
            "run_id": run,
            "metrics": [{"key": "loss", "value": 1.0 / (i + 1), "timestamp": 1, "step": i} for i in range(5)],
        }
        sent = len(httpx.Request("POST", "http://x", json=body).content)
        assert c.post("/runs/log-batch", json=body).status_code == 200
        assert c.get("/runs/get", params={"run_id": run}).status_code == 200
    return run, sent


def test_gateway_metrics_move_after_traffic(gateway: Gateway) -> None:
    topics = gateway.runtime.settings.topics
    metrics_url = gateway.url + "/metrics"
    before = scrape(metrics_url)
    _, sent = _traffic(gateway.url)
    route = f"{API}/runs/log-batch"
    deadline = time.monotonic() + 30
    while True:  # the metrics sink applies the batch after the gateway acknowledged it (Kafka mode)
        after = scrape(metrics_url)
        written = value(after, "trackstream_sink_events_written_total", sink="metrics")
        lag = value(after, "trackstream_sink_consumer_lag_messages", sink="metrics", topic=topics.metrics)
        if written > value(before, "trackstream_sink_events_written_total", sink="metrics") and lag == 0:
            break
        assert time.monotonic() < deadline, f"the metrics sink did not report the batch: written={written} lag={lag}"
        time.sleep(0.2)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("trackstream_http_requests_total", method="POST", route=route, status="200") == 1
    assert delta("trackstream_http_request_duration_seconds_count", method="POST", route=route) == 1
    assert delta("trackstream_http_request_duration_seconds_sum", method="POST", route=route) > 0
    assert delta("trackstream_http_request_bytes_total", route=route) == sent
    assert delta("trackstream_http_requests_total", method="GET", route=f"{API}/runs/get", status="200") == 1
    assert delta("trackstream_produce_duration_seconds_count", topic=topics.metrics) >= 1
    assert delta("trackstream_produce_duration_seconds_count", topic=topics.metadata) >= 1
    assert delta("trackstream_read_barrier_wait_seconds_count", topic=topics.metadata) >= 1
    assert value(after, "trackstream_active_runs") >= 1
    assert delta("trackstream_sink_batch_rows_count", sink="metrics") >= 1
    assert delta("trackstream_sink_batch_rows_sum", sink="metrics") >= 5
    assert delta("trackstream_sink_write_duration_seconds_count", sink="metrics") >= 1
    assert delta("trackstream_sink_commits_total", sink="metrics") >= 1
    assert value(after, "trackstream_sink_last_commit_age_seconds", sink="metrics") < 30
    assert value(after, "trackstream_sink_store_available", sink="metadata") == 1
    partitions = {dict(ls)["partition"] for (n, ls) in after if n == "trackstream_sink_consumer_lag_messages"
                  and dict(ls)["topic"] == topics.metrics}  # fmt: skip
    assert partitions == {str(p) for p in range(topics.partitions)}
    # conventions: counters end in _total; no label carries a raw path (ids would make series unbounded)
    assert has(after, "trackstream_sink_dead_letters_total", sink="metrics")
    assert not any("/runs/get?" in dict(ls).get("route", "") for (_, ls) in after)


def _app() -> Starlette:
    async def boom(request: Request) -> Response:
        raise RuntimeError("boom")

    async def ok(request: Request) -> Response:
        logging.getLogger("tests.ops").warning("inside the request")
        return Response("ok")

    routes = [Route("/boom/{x}", boom), Route("/ok", ok)]
    return Starlette(routes=routes, middleware=[Middleware(Observability)])


def test_request_ids_route_templates_and_one_line_per_5xx(caplog: pytest.LogCaptureFixture) -> None:
    from trackstream import logs

    seen: list[str | None] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(logs.REQUEST_ID.get())

    capture = Capture()
    logging.getLogger("tests.ops").addHandler(capture)
    try:
        client = TestClient(_app(), raise_server_exceptions=False)
        answer = client.get("/ok", headers={"X-Request-Id": "req-42"})
        assert answer.headers["x-request-id"] == "req-42"
        assert seen == ["req-42"]  # a line logged while answering carries the request's id
        made = client.get("/ok", headers={"X-Request-Id": "not a valid id;<script>"}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="ingest.observability"):
            assert client.get("/boom/123", headers={"X-Request-Id": "req-500"}).status_code == 500
        lines = [r for r in caplog.records if r.name == "ingest.observability"]
        assert len(lines) == 1 and lines[0].levelno == logging.ERROR
        assert getattr(lines[0], "request_id", None) == "req-500"
        assert getattr(lines[0], "route", None) == "/boom/{x}" and getattr(lines[0], "status", None) == 500
    finally:
        logging.getLogger("tests.ops").removeHandler(capture)


def test_several_uvicorn_workers_add_up(
    kafka_settings: SettingsFactory, gateway_process_factory: GatewayProcessFactory, tmp_path: Path
) -> None:
    """TRACKSTREAM_WORKERS=2: whichever worker answers /metrics, the counts are the sum of both. Neither
    worker nor their parent maps chDB's library: Kafka mode has no use for it (it held ~240 MB of RSS).
    No consumer runs: both workers start all the same (the second one's wait for the first one's default
    experiment used to fail its start-up after the read-barrier timeout, and its restarts too)."""
    prom = tmp_path / "prom"
    prom.mkdir()
    settings = kafka_settings(read_barrier_timeout=1.0)
    gateway = gateway_process_factory(settings, TRACKSTREAM_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(prom))
    url = gateway.url
    pids: set[str] = set()
    deadline = time.monotonic() + 60
    while len(pids) < 2:  # both workers imported their metrics (each writes files named by its pid)
        pids = {m.group(1) for f in os.listdir(prom) if (m := re.search(r"_(\d+)\.db$", f))}
        assert time.monotonic() < deadline, f"one worker only: {os.listdir(prom)}\n{gateway.output()}"
        time.sleep(0.3)
    for _ in range(40):  # a new connection each: the kernel spreads them over both workers
        assert httpx.get(url + "/version", headers={"Connection": "close"}, timeout=10).status_code == 200
    for _ in range(6):
        samples = scrape(url + "/metrics")
        assert value(samples, "trackstream_http_requests_total", route="/version", status="200") == 40
    time.sleep(3 * settings.read_barrier_timeout)  # past both workers' start-up waits
    assert "start-up failed" not in gateway.output()
    for pid in pids | {str(gateway.process.pid)}:
        assert Path(f"/proc/{pid}").exists(), f"worker {pid} died:\n{gateway.output()}"
        assert "_chdb" not in Path(f"/proc/{pid}/maps").read_text(), f"process {pid} loaded chDB"


def test_sink_worker_serves_metrics_and_probes_on_its_port(
    kafka_settings: SettingsFactory, worker_factory: WorkerFactory, gateway_factory: object, tmp_path: Path
) -> None:
    from collections.abc import Callable

    settings = kafka_settings()
    port = free_port()
    start: Callable[..., Gateway] = gateway_factory  # type: ignore[assignment]
    gw = start(settings, consumers=False)
    worker_factory(settings, "metadata")
    log = tmp_path / "metrics-worker.log"
    env = {**worker_env(settings), "TRACKSTREAM_METRICS_PORT": str(port), "TRACKSTREAM_METRICS_HOST": "127.0.0.1"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "trackstream.cli", "consume", "metrics"], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(base + "/health/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        assert httpx.get(base + "/health/live", timeout=5).status_code == 200
        before = scrape(base + "/metrics")
        _traffic(gw.url)
        deadline = time.monotonic() + 30
        while True:
            after = scrape(base + "/metrics")
            lag = value(after, "trackstream_sink_consumer_lag_messages", sink="metrics")
            if value(after, "trackstream_sink_events_written_total", sink="metrics") >= 1 and lag == 0:
                break
            assert time.monotonic() < deadline, f"lag {lag}\n{log.read_text()}"
            time.sleep(0.3)
        assert (
            value(after, "trackstream_sink_batch_rows_sum", sink="metrics")
            - value(before, "trackstream_sink_batch_rows_sum", sink="metrics")
            >= 5
        )
        assert value(after, "trackstream_sink_write_duration_seconds_count", sink="metrics") >= 1
        assert value(after, "trackstream_sink_last_commit_age_seconds", sink="metrics") < 30
        assert value(after, "trackstream_sink_retries_total", sink="metrics") == 0
        assert value(after, "trackstream_sink_dead_letters_total", sink="metrics") == 0
        assert has(after, "trackstream_sink_consumer_lag_messages", sink="metrics", topic=settings.topics.metrics)
        assert not has(after, "trackstream_http_requests_total")  # a worker serves no API
    finally:
        proc.terminate()
        proc.wait(timeout=30)
