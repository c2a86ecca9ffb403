"""Shared fixtures.

Real services come from ``TRACKSTREAM_*`` environment variables (``make services-up`` writes them to
``.services/env``; ``make test`` sources it); else from testcontainers when a Docker engine answers;
else a test that needs them FAILS naming the command that starts them. Nothing is skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from ingest.errors import MlflowError
from trackstream import assembly
from trackstream.runtime import Runtime
from trackstream.settings import Mode, Settings, Topics

START_SERVICES = "make services-up"
SERVICE_VARS = (
    "TRACKSTREAM_KAFKA_BOOTSTRAP",
    "TRACKSTREAM_CLICKHOUSE_URL",
    "TRACKSTREAM_S3_ENDPOINT",
    "TRACKSTREAM_S3_ACCESS_KEY",
    "TRACKSTREAM_S3_SECRET_KEY",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that use the real services are marked so `make test-unit` can leave them out: those asking
    # for a service fixture, and the "kafka" case of every fixture parametrized by mode.
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if {"services", "kafka_settings", "kafka_gateway", "clickhouse_url"} & names or "kafka" in params.values():
            item.add_marker(pytest.mark.services)


@dataclass(frozen=True)
class Services:
    kafka_bootstrap: str
    clickhouse_url: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    s3_bucket: str


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0


def _from_testcontainers(stack: list[Any]) -> Services:
    from testcontainers.clickhouse import ClickHouseContainer
    from testcontainers.kafka import KafkaContainer
    from testcontainers.minio import MinioContainer

    kafka = KafkaContainer().with_kraft()
    clickhouse = ClickHouseContainer()
    minio = MinioContainer()
    for c in (kafka, clickhouse, minio):
        c.start()
        stack.append(c)
    ch_host, ch_port = clickhouse.get_container_host_ip(), clickhouse.get_exposed_port(9000)
    cfg = minio.get_config()
    return Services(
        kafka_bootstrap=kafka.get_bootstrap_server(),
        clickhouse_url=f"clickhouse://{clickhouse.username}:{clickhouse.password}@{ch_host}:{ch_port}/default",
        s3_endpoint=f"http://{cfg['endpoint']}",
        s3_access_key=cfg["access_key"],
        s3_secret_key=cfg["secret_key"],
        s3_bucket="trackstream",
    )


def warm_up_group(bootstrap: str, group: str, topic: str) -> None:
    """Commit offset 0 of ``topic``'s partitions for ``group`` (waiting up to 60 s for its coordinator), so
    the group's coordinator is loaded before a test measures what its members commit."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        offsets = {TopicPartition(topic, p): OffsetAndMetadata(0, "", -1) for p in partitions}
        consumer.commit(offsets, timeout_ms=60_000)
    finally:
        consumer.close()


def warm_up_kafka(bootstrap: str) -> None:
    """Have a consumer group commit once before the tests start.

    On a brand-new broker the first groups are created while the broker is still creating its
    offsets topic; kafka-python 3.0 members of those groups then rebalance once more and can be left
    without partitions (docs/DESIGN.md, failure state 18). Production brokers are past this point.
    """
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from trackstream.log.kafka import KafkaLog

    topic = "trackstream.warmup"
    log = KafkaLog(bootstrap)
    log.ensure_topics([topic], 1)
    log.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id="trackstream-warmup", enable_auto_commit=False)
    try:
        consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(0, "", -1)}, timeout_ms=60_000)
    finally:
        consumer.close()


TEST_TOPIC_PREFIXES = ("test-", "contract-", "rebalance-", "recovery-")
"""How the tests name the topics they create (unique_topics, the log contract, tests/log)."""


@contextlib.contextmanager
def topics_dropped_after(bootstrap: str) -> Iterator[None]:
    """Delete, when the block ends, the test topics (TEST_TOPIC_PREFIXES) created during it: a long-lived
    dev broker otherwise keeps every run's topics. A failure to delete is only a warning."""
    from kafka.admin import KafkaAdminClient

    def test_topics(admin: KafkaAdminClient) -> set[str]:
        return {t for t in admin.list_topics() if t.startswith(TEST_TOPIC_PREFIXES)}

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="trackstream-tests")
    before = test_topics(admin)
    try:
        yield
    finally:
        try:
            if created := sorted(test_topics(admin) - before):
                admin.delete_topics(created, timeout_ms=60_000)
        except Exception as exc:  # the tests' outcome stands; the topics are left
            warnings.warn(f"the test topics were not deleted: {exc}", stacklevel=1)
        admin.close()


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    if all(os.environ.get(v) for v in SERVICE_VARS):
        warm_up_kafka(os.environ["TRACKSTREAM_KAFKA_BOOTSTRAP"])
        with topics_dropped_after(os.environ["TRACKSTREAM_KAFKA_BOOTSTRAP"]):
            yield Services(
                kafka_bootstrap=os.environ["TRACKSTREAM_KAFKA_BOOTSTRAP"],
                clickhouse_url=os.environ["TRACKSTREAM_CLICKHOUSE_URL"],
                s3_endpoint=os.environ["TRACKSTREAM_S3_ENDPOINT"],
                s3_access_key=os.environ["TRACKSTREAM_S3_ACCESS_KEY"],
                s3_secret_key=os.environ["TRACKSTREAM_S3_SECRET_KEY"],
                s3_bucket=os.environ.get("TRACKSTREAM_S3_BUCKET", "trackstream"),
            )
        return
    if _docker_answers():
        stack: list[Any] = []
        try:
            yield _from_testcontainers(stack)
        finally:
            for c in reversed(stack):
                c.stop()
        return
    missing = ", ".join(v for v in SERVICE_VARS if not os.environ.get(v))
    pytest.fail(
        f"This test needs Kafka, ClickHouse and S3, but {missing} are not set and no Docker engine answers. "
        f"Start them with `{START_SERVICES}` and run `source .services/env` (or use `make test`).",
        pytrace=False,
    )


@pytest.fixture
def clickhouse_url(services: Services) -> Iterator[str]:
    """A fresh ClickHouse database for each test, so no test sees another's experiments or rows; dropped
    after it (the fixtures that use it end first), so the server's background work does not grow with
    every test run."""
    from clickhouse_driver import Client

    base, _, _db = services.clickhouse_url.rpartition("/")
    database = f"ts_test_{uuid.uuid4().hex[:10]}"
    client = Client.from_url(services.clickhouse_url)
    client.execute(f"CREATE DATABASE {database}")
    yield f"{base}/{database}"
    client.execute(f"DROP DATABASE IF EXISTS {database}")
    client.disconnect()


def unique_topics() -> Topics:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    return Topics(
        metrics=f"{prefix}.metrics",
        metadata=f"{prefix}.metadata",
        artifacts=f"{prefix}.artifacts",
        traces=f"{prefix}.traces",
        registry=f"{prefix}.registry",
        deadletter=f"{prefix}.deadletter",
        partitions=2,
    )


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def kafka_settings(services: Services, clickhouse_url: str, tmp_path: Path) -> SettingsFactory:
    """Kafka-mode settings on the real services, with topics and consumer groups unique to the test."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "mode": Mode.KAFKA,
            "data_dir": tmp_path,
            "kafka_bootstrap": services.kafka_bootstrap,
            "clickhouse_url": clickhouse_url,
            "s3_endpoint": services.s3_endpoint,
            "s3_access_key": services.s3_access_key,
            "s3_secret_key": services.s3_secret_key,
            "s3_bucket": services.s3_bucket,
            "topics": unique_topics(),
            "consumer_group_prefix": f"test-{uuid.uuid4().hex[:8]}",
            "batch_max_seconds": 0.2,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def embedded_settings(tmp_path: Path) -> SettingsFactory:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"mode": Mode.EMBEDDED, "data_dir": tmp_path / "data", "batch_max_seconds": 0.2}
        values.update(overrides)
        return Settings(**values)

    return make


def retried(call: Callable[[], object], seconds: float = 30) -> str:
    """Call until the answer is not TEMPORARILY_UNAVAILABLE, as the MLflow client retries a 503; the error
    code then ("" for success). A consumer still settling in its group, or one slow batch on a loaded
    machine, outlasts a test's short read barrier: that 503 is right, and a client retries it."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            call()
            return ""
        except MlflowError as exc:
            if exc.error_code != "TEMPORARILY_UNAVAILABLE" or time.monotonic() > deadline:
                return exc.error_code
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Gateway:
    url: str
    runtime: Runtime


@pytest.fixture
def gateway_factory() -> Iterator[Callable[[Settings], Gateway]]:
    """Start a gateway (with its sink pipelines as threads of the test process) on a free port."""
    servers: list[tuple[uvicorn.Server, threading.Thread, Runtime]] = []

    def start(settings: Settings, consumers: bool = True) -> Gateway:
        built = assembly.gateway(settings, consumers=consumers, ready_timeout=60, close_on_shutdown=False)
        app, runtime = built.app, built.runtime
        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("gateway did not start")
            time.sleep(0.02)
        servers.append((server, thread, runtime))
        return Gateway(f"http://127.0.0.1:{port}", runtime)

    yield start
    for server, thread, runtime in servers:
        server.should_exit = True
        thread.join(timeout=10)
        runtime.close()


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.services)])
def gateway(request: pytest.FixtureRequest, gateway_factory: Callable[[Settings], Gateway]) -> Gateway:
    """The gateway in each mode: embedded (in-process log, chDB, local dir) and Kafka (real services)."""
    if request.param == "embedded":
        settings = request.getfixturevalue("embedded_settings")()
    else:
        settings = request.getfixturevalue("kafka_settings")()
    return gateway_factory(settings)


@contextlib.contextmanager
def official_client(url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The official MLflow client (pinned mlflow-skinny) and its fluent API pointed at ``url``."""
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    mlflow.set_tracking_uri(url)
    try:
        yield MlflowClient(url)
    finally:
        if mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        # set_experiment's choice outlives the gateway it named an experiment of: the next test's gateway
        # would get runs created in an experiment it never had (the fluent API has no public reset)
        mlflow.tracking.fluent._active_experiment_id = None
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)  # set_experiment exports it too


@pytest.fixture
def mlflow_client(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with official_client(gateway.url, monkeypatch) as client:
        yield client
