"""Fault-test helpers: a sink worker as a real process, acked metric batches, waiting for the sinks."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clickhouse_driver import Client

from ingest.writer import EventWriter
from tests.conftest import Services, SettingsFactory
from trackstream.log import EventLog, LogUnavailable
from trackstream.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def local_service(action: str, name: str) -> None:
    """``deploy/local/services.sh <action> <name>``: stop or start one of the suite's services."""
    command = ["bash", str(REPO / "deploy/local/services.sh"), action, name]
    subprocess.run(command, check=True, timeout=120, capture_output=True)


def worker_env(settings: Settings) -> dict[str, str]:
    """The TRACKSTREAM_* environment that makes ``trackstream consume`` use ``settings``' services."""
    t = settings.topics
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKSTREAM_")}
    env.update(
        TRACKSTREAM_MODE="kafka",
        TRACKSTREAM_KAFKA_BOOTSTRAP=str(settings.kafka_bootstrap),
        TRACKSTREAM_CLICKHOUSE_URL=str(settings.clickhouse_url),
        TRACKSTREAM_S3_ENDPOINT=str(settings.s3_endpoint),
        TRACKSTREAM_S3_ACCESS_KEY=str(settings.s3_access_key),
        TRACKSTREAM_S3_SECRET_KEY=str(settings.s3_secret_key),
        TRACKSTREAM_S3_BUCKET=settings.s3_bucket,
        TRACKSTREAM_TOPIC_METRICS=t.metrics,
        TRACKSTREAM_TOPIC_METADATA=t.metadata,
        TRACKSTREAM_TOPIC_ARTIFACTS=t.artifacts,
        TRACKSTREAM_TOPIC_DEADLETTER=t.deadletter,
        TRACKSTREAM_TOPIC_PARTITIONS=str(t.partitions),
        TRACKSTREAM_CONSUMER_GROUP_PREFIX=settings.consumer_group_prefix,
        TRACKSTREAM_BATCH_MAX_ROWS=str(settings.batch_max_rows),
        TRACKSTREAM_BATCH_MAX_SECONDS=str(settings.batch_max_seconds),
        TRACKSTREAM_DATA_DIR=str(settings.data_dir),
    )
    return env


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log_path: Path

    def kill(self) -> None:
        """SIGKILL: a crash, no flush, no commit, no goodbye to the group."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


WorkerFactory = Callable[[Settings, str], Worker]


@pytest.fixture
def fault_settings(kafka_settings: SettingsFactory, services: Services) -> SettingsFactory:
    """Kafka-mode settings with a ClickHouse database of the test's own (the session's is shared),
    so row counts cover exactly what this test produced."""

    def make(**overrides: Any) -> Settings:
        base, _, _ = services.clickhouse_url.rpartition("/")
        database = f"ts_fault_{uuid.uuid4().hex[:10]}"
        Client.from_url(services.clickhouse_url).execute(f"CREATE DATABASE {database}")
        return kafka_settings(clickhouse_url=f"{base}/{database}", **overrides)

    return make


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[WorkerFactory]:
    started: list[Worker] = []

    def start(settings: Settings, sink: str) -> Worker:
        log_path = tmp_path / f"worker-{sink}-{len(started)}.log"
        with log_path.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "trackstream.cli", "consume", sink],
                cwd=REPO,
                env=worker_env(settings),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(process, log_path)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
            try:
                worker.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()


def metric_batch(run: int, batch: int, points: int) -> dict[str, object]:
    """``points`` metric points, each with a distinct natural key."""
    return {
        "run_id": f"{run:032x}",
        "keys": [f"m{i % 4}" for i in range(points)],
        "values": [batch + i / 1000 for i in range(points)],
        "timestamps": [1_700_000_000_000 + batch * 1000 + i for i in range(points)],
        "steps": [batch * points + i for i in range(points)],
    }


def produce_metrics(writer: EventWriter, first: int, count: int, points: int, runs: int = 5) -> int:
    """Produce ``count`` batches; each returns only once Kafka acked it. Returns the points acked."""

    async def produce_all() -> None:
        for b in range(first, first + count):
            await writer.metrics_async(metric_batch(b % runs, b, points))

    asyncio.run(produce_all())
    return count * points


def wait_applied(events: EventLog, group: str, topic: str, timeout: float) -> dict[int, int]:
    """Wait until ``group`` committed everything ``topic`` holds now; returns the committed offsets.

    Kafka answering LogUnavailable meanwhile (a restarted broker still loading its group coordinator)
    only means "not yet", as it does for the gateway's read barrier, which answers 503 then."""
    deadline = time.monotonic() + timeout
    ends: dict[int, int] | None = None
    committed: dict[int, int] = {}
    while time.monotonic() < deadline:
        try:
            if ends is None:
                found = events.end_offsets(topic, list(range(events.partitions(topic))))
                ends = {p: e for p, e in found.items() if e}
            committed = events.committed(group, topic)
        except LogUnavailable:
            time.sleep(0.5)
            continue
        if all(committed.get(p, 0) >= e for p, e in ends.items()):
            return committed
        time.sleep(0.1)
    raise AssertionError(f"group {group} did not apply {topic} in {timeout}s: committed {committed}, ends {ends}")


@dataclass
class GatewayProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


GatewayProcessFactory = Callable[[Settings], GatewayProcess]


@pytest.fixture
def gateway_process_factory(tmp_path: Path) -> Iterator[GatewayProcessFactory]:
    """``trackstream serve`` as a real process on a free port (Kafka mode), ready once /health answers."""
    import httpx

    from tests.conftest import free_port

    started: list[GatewayProcess] = []

    def start(settings: Settings) -> GatewayProcess:
        port = free_port()
        log_path = tmp_path / f"gateway-{len(started)}.log"
        env = worker_env(settings)
        env.update(TRACKSTREAM_HOST="127.0.0.1", TRACKSTREAM_PORT=str(port),
                   TRACKSTREAM_READ_BARRIER_TIMEOUT=str(settings.read_barrier_timeout))  # fmt: skip
        with log_path.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "trackstream.cli", "serve"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        gateway = GatewayProcess(process, log_path, f"http://127.0.0.1:{port}")
        started.append(gateway)
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"the gateway exited: {gateway.output()}"
            assert time.monotonic() < deadline, f"the gateway did not answer /health in 60 s: {gateway.output()}"
            try:
                if httpx.get(f"{gateway.url}/health", timeout=2).status_code == 200:
                    return gateway
            except httpx.TransportError:
                pass
            time.sleep(0.2)

    yield start
    for gateway in started:
        if gateway.process.poll() is None:
            gateway.process.send_signal(signal.SIGTERM)
            try:
                gateway.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                gateway.process.kill()
                gateway.process.wait(timeout=10)
