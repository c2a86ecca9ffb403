"""Kafka mode: a store error nobody classified stops ``trackstream consume`` with a non-zero exit and
the reason, commits nothing and dead-letters nothing (a supervisor restarts it; the data waits in Kafka)."""

from __future__ import annotations

import time
import uuid

from clickhouse_driver import Client

from ingest.writer import EventWriter
from tests.conftest import SettingsFactory
from tests.faults.conftest import WorkerFactory
from trackstream.runtime import build


def test_unclassified_store_error_exits_the_worker_non_zero(
    fault_settings: SettingsFactory, worker_factory: WorkerFactory
) -> None:
    settings = fault_settings()
    runtime = build(settings)
    try:
        events, topic, group = runtime.events, settings.topics.artifacts, runtime.group("artifacts")
        # Schema drift: someone dropped a column the sink writes. ClickHouse answers NO_SUCH_COLUMN_IN_TABLE
        # (code 16) on every insert; neither retrying nor dead-lettering every artifact is right.
        assert settings.clickhouse_url is not None
        Client.from_url(settings.clickhouse_url).execute("ALTER TABLE artifacts DROP COLUMN sha256")
        worker = worker_factory(settings, "artifacts")
        writer = EventWriter(events, settings.topics)
        path = f"0/{uuid.uuid4().hex}/artifacts/a.txt"
        writer.artifact({"path": path, "op": "PUT", "content": b"data", "stored": False, "size": 4,
                         "sha256": "", "time": 1})  # fmt: skip

        code = worker.process.wait(timeout=60)
        assert code != 0
        output = worker.output()
        assert "stopped" in output and "code 16" in output, output
        time.sleep(1)
        assert events.committed(group, topic) == {}
        dead = events.end_offsets(
            settings.topics.deadletter, list(range(events.partitions(settings.topics.deadletter)))
        )
        assert sum(dead.values()) == 0
    finally:
        runtime.close()
