"""Fault-test helpers: a sink worker as a real process, acked metric batches, waiting for the sinks."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from clickhouse_driver import Client

from ingest.writer import EventWriter
from tests.conftest import Services, SettingsFactory
from trackstream.log import EventLog, LogUnavailable
from trackstream.settings import Settings
from trackstream.tables import TableStore

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
        TRACKSTREAM_TOPIC_PARTITIONS=str(t.partitions),
        TRACKSTREAM_CONSUMER_GROUP_PREFIX=settings.consumer_group_prefix,
        TRACKSTREAM_BATCH_MAX_ROWS=str(settings.batch_max_rows),
        TRACKSTREAM_BATCH_MAX_SECONDS=str(settings.batch_max_seconds),
        TRACKSTREAM_DATA_DIR=str(settings.data_dir),
        TRACKSTREAM_CONSUMER_SESSION_TIMEOUT_MS=str(settings.consumer_session_timeout_ms),
        TRACKSTREAM_CONSUMER_MAX_POLL_INTERVAL_MS=str(settings.consumer_max_poll_interval_ms),
    )
    # every topic setting (each event family's and the dead-letter topic), whatever families there are
    env.update({f"TRACKSTREAM_TOPIC_{name.upper()}": topic for name, topic in t.names().items()})
    return env


@dataclass
class Process:
    """A trackstream process a fault test starts (``serve`` or ``consume``), with its combined output."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def terminate(self, timeout: float) -> int:
        """SIGTERM and wait up to ``timeout`` s; returns the exit status (fails the test if it hangs)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(f"process did not stop within {timeout}s of SIGTERM:\n{self.output()}") from None


@dataclass
class Worker(Process):
    def pause(self) -> None:
        """SIGSTOP: frozen, as a process swapped out or a VM suspended; no heartbeats."""
        self.process.send_signal(signal.SIGSTOP)

    def cont(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: a crash, no flush, no commit, no goodbye to the group."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


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
            worker.cont()  # a test that failed between SIGSTOP and SIGCONT
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
class GatewayProcess(Process):
    url: str


class GatewayProcessFactory(Protocol):
    def __call__(self, settings: Settings | None = None, /, **env: str) -> GatewayProcess: ...


@pytest.fixture
def gateway_process_factory(tmp_path: Path) -> Iterator[GatewayProcessFactory]:
    """``trackstream serve`` as a real process on a free port, ready once /health answers: on ``settings``'
    services (Kafka mode), or with no settings on the environment ``env`` gives (e.g. embedded mode);
    ``env`` adds to either (``TRACKSTREAM_WORKERS``, ``PROMETHEUS_MULTIPROC_DIR``...)."""
    import httpx

    from tests.conftest import free_port

    started: list[GatewayProcess] = []

    def start(settings: Settings | None = None, /, **env: str) -> GatewayProcess:
        port = free_port()
        log_path = tmp_path / f"gateway-{len(started)}.log"
        if settings is not None:
            full = worker_env(settings)
            full["TRACKSTREAM_READ_BARRIER_TIMEOUT"] = str(settings.read_barrier_timeout)
        else:
            full = {k: v for k, v in os.environ.items() if not k.startswith("TRACKSTREAM_")}
        full.update(TRACKSTREAM_HOST="127.0.0.1", TRACKSTREAM_PORT=str(port), **env)
        with log_path.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "trackstream.cli", "serve"],
                cwd=REPO,
                env=full,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        gateway = GatewayProcess(process, log_path, f"http://127.0.0.1:{port}")
        started.append(gateway)
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, f"the gateway exited: {gateway.output()}"
            assert time.monotonic() < deadline, f"the gateway did not answer /health in 90 s: {gateway.output()}"
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


def group_members(bootstrap: str, group: str) -> list[str]:
    """Member ids of ``group`` now; a member that was expelled and rejoined has a new id."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fault-test-admin")
    try:
        described = admin.describe_groups([group])[group]
        return sorted(str(m["member_id"]) for m in described.get("members") or [])
    finally:
        admin.close()


@dataclass(frozen=True, slots=True)
class Answer:
    at: float  # time.monotonic() when the answer arrived
    kind: str
    status: int  # HTTP status; 0 when the request itself failed (timeout, refused)


class Load:
    """Calls ``request(i)`` (returning a kind and an HTTP status) in a background thread until stopped,
    keeping every answer, so a test can count what was acknowledged in each phase of a fault."""

    def __init__(self, request: Callable[[int], tuple[str, int]], pause: float = 0.0) -> None:
        self._request = request
        self._pause = pause
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-load", daemon=True)
        self.answers: list[Answer] = []

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            kind, status = self._request(i)
            self.answers.append(Answer(time.monotonic(), kind, status))
            i += 1
            if self._pause:
                self._stop.wait(self._pause)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def between(self, start: float, end: float, kind: str | None = None) -> list[Answer]:
        return [a for a in self.answers if start <= a.at < end and (kind is None or a.kind == kind)]

    @staticmethod
    def availability(answers: list[Answer]) -> float:
        return sum(a.status == 200 for a in answers) / len(answers) if answers else float("nan")


class MetricWrites:
    """``log-batch`` requests through a gateway, ``points`` distinct points each, over ``runs`` new runs;
    remembers which points were acknowledged (200) and which were not. Usable as a :class:`Load` request."""

    def __init__(self, url: str, runs: int = 4, points: int = 50, spread: tuple[EventLog, str] | None = None) -> None:
        """``spread=(log, topic)``: create runs until every partition of ``topic`` has one, so every
        member of the group has work."""
        self._url = url
        self._points = points
        self._client = httpx.Client(timeout=30)
        self.runs = [self._create_run() for _ in range(runs)]
        if spread is not None:
            events, topic = spread
            while len({events.partition_for(topic, r.encode()) for r in self.runs}) < events.partitions(topic):
                assert len(self.runs) < 64, "runs do not spread over the partitions"
                self.runs.append(self._create_run())
        self.acked: set[tuple[str, int]] = set()  # (run_id, step)
        self.unacked: set[tuple[str, int]] = set()

    def _create_run(self) -> str:
        created = self._client.post(f"{self._url}/api/2.0/mlflow/runs/create", json={"experiment_id": "0"})
        assert created.status_code == 200, created.text
        return str(created.json()["run"]["info"]["run_id"])

    def __call__(self, i: int) -> tuple[str, int]:
        run = self.runs[i % len(self.runs)]
        steps = range(i * self._points, (i + 1) * self._points)
        metrics = [{"key": f"m{s % 4}", "value": s / 7, "timestamp": 1_700_000_000_000 + s, "step": s} for s in steps]
        try:
            status = self._client.post(
                f"{self._url}/api/2.0/mlflow/runs/log-batch", json={"run_id": run, "metrics": metrics}
            ).status_code
        except httpx.HTTPError:
            status = 0
        (self.acked if status == 200 else self.unacked).update((run, s) for s in steps)
        return "log-batch", status

    def assert_stored_exactly_once(self, tables: TableStore) -> int:
        """Every acknowledged point is stored once (FINAL, as readers see it); nothing stored that was
        not sent. Returns the number of points stored."""
        rows = tables.query(
            "SELECT run_id, step FROM metrics FINAL WHERE run_id IN %(runs)s", {"runs": tuple(self.runs)}
        )
        stored = [(str(r), int(s)) for r, s in rows]
        assert len(stored) == len(set(stored)), "a point is stored twice"
        missing = self.acked - set(stored)
        assert not missing, f"{len(missing)} acknowledged points are not stored, e.g. {sorted(missing)[:3]}"
        assert set(stored) <= self.acked | self.unacked
        return len(stored)

    def close(self) -> None:
        self._client.close()


# --- HTTP write load with availability figures (broker fault tests) ---


@dataclass(frozen=True)
class WriteAnswer:
    """One write request of the load: when it was sent and answered, its status (0: no HTTP answer)."""

    client: int
    batch: int
    sent: float
    answered: float
    status: int


@dataclass(frozen=True)
class Availability:
    """Availability of writes over a fault: ``start`` the fault began, ``since`` the broker (or store)
    could be reached again."""

    requests: int  # write requests sent from ``start`` on
    ok_share: float  # share of them answered 200
    longest_gap: float  # longest time without a 200 answer from ``start`` on, seconds
    first_ack_after: float | None  # from ``since`` to the first 200 answer, seconds
    acked_in_outage: int  # requests sent after ``start`` and answered 200 before ``since``
    outage: float  # ``since`` - ``start``, seconds

    def describe(self) -> str:
        first = "none" if self.first_ack_after is None else f"{self.first_ack_after:.2f}s"
        return (
            f"outage {self.outage:.1f}s, {self.acked_in_outage} writes acked during it; {self.requests} writes, "
            f"{self.ok_share:.1%} answered 200, longest without a 200 {self.longest_gap:.1f}s, "
            f"first ack {first} after the broker was reachable"
        )


class MetricLoad:
    """``clients`` threads, each logging ``points`` metric points per log-batch to a run of its own as
    fast as the gateway answers, each batch with new natural keys and never retried, so the points
    acknowledged are exactly the batches answered 200. Stops by itself after ``max_seconds``."""

    def __init__(self, url: str, run_ids: list[str], points: int = 100, max_seconds: float = 300.0) -> None:
        self.url, self.run_ids, self.points = url, run_ids, points
        self.answers: list[WriteAnswer] = []
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._threads = [threading.Thread(target=self._client, args=(c,), daemon=True) for c in range(len(run_ids))]

    def batch_body(self, client: int, batch: int) -> dict[str, Any]:
        ts = 1_700_000_000_000 + batch
        return {
            "run_id": self.run_ids[client],
            "metrics": [
                {"key": f"m{i % 4}", "value": batch + i / 1000, "timestamp": ts, "step": batch * self.points + i}
                for i in range(self.points)
            ],
        }

    def _client(self, client: int) -> None:
        import requests

        session = requests.Session()
        batch = 0
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            sent = time.monotonic()
            try:
                status = session.post(
                    f"{self.url}/api/2.0/mlflow/runs/log-batch", json=self.batch_body(client, batch), timeout=30
                ).status_code
            except requests.RequestException:
                status = 0
                session = requests.Session()
            answered = time.monotonic()
            self.answers.append(WriteAnswer(client, batch, sent, answered, status))
            batch += 1
            if status != 200:
                time.sleep(0.2)  # a client backing off before its next write

    def start(self) -> MetricLoad:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=40)

    def acked_points(self) -> set[tuple[str, int]]:
        """(run_id, step) of every point in a batch answered 200."""
        return {
            (self.run_ids[a.client], a.batch * self.points + i)
            for a in self.answers
            if a.status == 200
            for i in range(self.points)
        }

    def availability(self, start: float, since: float) -> Availability:
        """Over the requests sent from ``start``; ``first_ack_after`` counts from ``since`` (the
        broker healthy again)."""
        window = sorted((a for a in self.answers if a.sent >= start), key=lambda a: a.answered)
        ok = [a.answered for a in window if a.status == 200]
        marks = [start, *ok, window[-1].answered if window else start]
        after = [t - since for t in ok if t >= since]
        return Availability(
            requests=len(window),
            ok_share=len(ok) / len(window) if window else 0.0,
            longest_gap=max(b - a for a, b in itertools.pairwise(marks)) if len(marks) > 1 else 0.0,
            first_ack_after=after[0] if after else None,
            acked_in_outage=sum(1 for a in window if a.status == 200 and a.answered < since),
            outage=since - start,
        )


def create_runs(url: str, count: int) -> list[str]:
    import requests

    run_ids = []
    for _ in range(count):
        answer = requests.post(f"{url}/api/2.0/mlflow/runs/create", json={"experiment_id": "0"}, timeout=30)
        assert answer.status_code == 200, answer.text
        run_ids.append(answer.json()["run"]["info"]["run_id"])
    return run_ids


@dataclass(frozen=True)
class Stored:
    rows: int  # count() of metrics FINAL
    unique: int  # uniqExact of MLflow's natural key (run_id, key, step, timestamp, value)
    points: set[tuple[str, int]]  # (run_id, step) present; MetricLoad gives every point its own step


def stored_points(settings: Settings) -> Stored:
    client = Client.from_url(str(settings.clickhouse_url))
    ((rows, unique),) = client.execute(
        "SELECT count(), uniqExact(run_id, key, step, timestamp, value) FROM metrics FINAL"
    )
    keys = client.execute("SELECT DISTINCT run_id, step FROM metrics FINAL")
    return Stored(int(rows), int(unique), {(str(r), int(s)) for r, s in keys})


def assert_stored_once(settings: Settings, load: MetricLoad) -> int:
    """Every point acknowledged to ``load`` is stored exactly once; points of writes refused with 503
    may be stored too (they can have reached the log), once. Returns the points acknowledged."""
    acked = load.acked_points()
    stored = stored_points(settings)
    missing = acked - stored.points
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged points are not stored"
    assert stored.rows == stored.unique == len(stored.points), f"a point is stored more than once: {stored}"
    refused = sum(1 for a in load.answers if a.status != 200)
    assert len(stored.points - acked) <= load.points * refused
    return len(acked)


class PortWatch:
    """Notes the first moment after :meth:`arm` at which 127.0.0.1:``port`` accepts a connection: the
    earliest a restarted broker can be reached (``services.sh start`` returns seconds later, after a
    JVM-based health check). Recovery times measured from here are an upper bound."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.opened: float | None = None
        self._armed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def arm(self) -> None:
        self._armed.set()

    def _watch(self) -> None:
        import socket

        self._armed.wait(timeout=600)
        while not self._stop.is_set() and self.opened is None:
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    self.opened = time.monotonic()
                    return
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._armed.set()
        self._thread.join(timeout=5)
