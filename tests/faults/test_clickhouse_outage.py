"""ClickHouse stopped while points keep arriving: the worker pauses, retries, resumes; nothing is lost."""

from __future__ import annotations

import time

from ingest.writer import EventWriter
from tests.conftest import SettingsFactory
from tests.faults.conftest import WorkerFactory, local_service, produce_metrics, wait_applied
from trackstream.runtime import build


def test_clickhouse_outage_during_ingest_loses_nothing(
    fault_settings: SettingsFactory, worker_factory: WorkerFactory
) -> None:
    settings = fault_settings()
    runtime = build(settings)
    try:
        events, topic, group = runtime.events, settings.topics.metrics, runtime.group("metrics")
        writer = EventWriter(events, settings.topics)
        worker = worker_factory(settings, "metrics")
        acked = produce_metrics(writer, 0, 30, 20)
        wait_applied(events, group, topic, timeout=30)
        committed_before = sum(events.committed(group, topic).values())

        local_service("stop", "clickhouse")
        stopped = time.monotonic()
        try:
            acked += produce_metrics(writer, 30, 60, 20)  # Kafka still acks while the store is down
            time.sleep(2)
            committed_during = sum(events.committed(group, topic).values())
            assert committed_during == committed_before, "committed while the store was down"
            assert worker.process.poll() is None, worker.output()
        finally:
            local_service("start", "clickhouse")
        started = time.monotonic()
        wait_applied(events, group, topic, timeout=45)
        print(
            f"acked={acked} committed_before={committed_before} outage={started - stopped:.1f}s "
            f"caught_up_after_restart={time.monotonic() - started:.1f}s"
        )

        ((rows, unique),) = runtime.tables.query(
            "SELECT count(), uniqExact(run_id, key, step, timestamp, value) FROM metrics FINAL"
        )
        assert rows == unique == acked
        assert worker.process.poll() is None, worker.output()
    finally:
        runtime.close()
