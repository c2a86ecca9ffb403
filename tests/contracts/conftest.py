"""Each store's two implementations behind one parametrized fixture, so one suite runs on both.

The real implementations use the services of ``tests/conftest.py`` (env, testcontainers, or a failure
naming ``make services-up``), with a topic, database or key prefix unique to the test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Services
from trackstream.log import EventLog
from trackstream.log.file import FileLog
from trackstream.log.memory import MemoryLog
from trackstream.objects import ObjectStore
from trackstream.tables import TableStore


@pytest.fixture(params=["memory", "file", pytest.param("kafka", marks=pytest.mark.services)])
def event_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventLog]:
    if request.param == "memory":
        log: EventLog = MemoryLog()
    elif request.param == "file":
        log = FileLog(tmp_path / "log", segment_bytes=4096)  # small segments: the contract holds across rolls
    else:
        from trackstream.log.kafka import KafkaLog

        services: Services = request.getfixturevalue("services")
        log = KafkaLog(services.kafka_bootstrap, client_id=f"contract-{uuid.uuid4().hex[:6]}")
    yield log
    log.close()


@pytest.fixture(params=["chdb", pytest.param("clickhouse", marks=pytest.mark.services)])
def table_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TableStore]:
    """An empty, migrated store: a fresh chDB directory, or a fresh database on the server."""
    if request.param == "chdb":
        from trackstream.tables.chdb import ChdbStore

        store: TableStore = ChdbStore(tmp_path / "chdb")
    else:
        from clickhouse_driver import Client

        from trackstream.tables.clickhouse import ClickHouseStore

        services: Services = request.getfixturevalue("services")
        base, _, _ = services.clickhouse_url.rpartition("/")
        database = f"ts_contract_{uuid.uuid4().hex[:10]}"
        Client.from_url(services.clickhouse_url).execute(f"CREATE DATABASE {database}")
        store = ClickHouseStore(f"{base}/{database}")
    store.migrate()
    yield store
    if request.param != "chdb":
        store.command(f"DROP DATABASE IF EXISTS {database}")
    store.close()


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.services)])
def object_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        from trackstream.objects.local import LocalObjectStore

        return LocalObjectStore(tmp_path / "objects")
    from trackstream.objects.s3 import S3ObjectStore

    services: Services = request.getfixturevalue("services")
    s3 = S3ObjectStore(
        services.s3_endpoint, services.s3_access_key, services.s3_secret_key, services.s3_bucket, "us-east-1"
    )
    s3.ensure_bucket()
    return s3


@pytest.fixture
def key_prefix() -> str:
    """Keys unique to the test, so runs sharing a bucket never see each other's objects."""
    return f"contract-{uuid.uuid4().hex[:10]}"
