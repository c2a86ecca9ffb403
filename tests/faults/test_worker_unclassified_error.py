"""Kafka mode: a store error nobody classified stops ``trackstream consume`` with a non-zero exit and
the reason, commits nothing and dead-letters nothing (a supervisor restarts it; the data waits in Kafka)."""

from __future__ import annotations

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
    assert settings.clickhouse_url is not None
    runtime = build(settings)
    try:
        events, topic, group = runtime.events, settings.topics.artifacts, runtime.group("artifacts")
        # The index table replaced by a view (a botched manual migration): ClickHouse answers code 48
        # "Method write is not supported by storage View", which is neither an outage nor the data's
        # fault; retrying forever and dead-lettering every artifact would both be wrong.
        ch = Client.from_url(settings.clickhouse_url)
        ch.execute("DROP TABLE artifacts")
        ch.execute("CREATE VIEW artifacts AS SELECT '' AS path")
        worker = worker_factory(settings, "artifacts")
        writer = EventWriter(events, settings.topics)
        path = f"0/{uuid.uuid4().hex}/artifacts/a.txt"
        writer.artifact({"path": path, "op": "PUT", "content": b"data", "stored": False, "size": 4,
                         "sha256": "", "time": 1})  # fmt: skip

        code = worker.process.wait(timeout=60)
        assert code != 0
        output = worker.output()
        assert "artifacts sink worker stopped" in output and "code 48" in output, output
        assert events.committed(group, topic) == {}
        dead = events.end_offsets(
            settings.topics.deadletter, list(range(events.partitions(settings.topics.deadletter)))
        )
        assert sum(dead.values()) == 0
    finally:
        runtime.close()
