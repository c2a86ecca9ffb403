"""SIGTERM to a metrics worker while acked batches stream in: it writes and commits what it read, then exits 0."""

from __future__ import annotations

import signal
import threading

from ingest.writer import EventWriter
from tests.conftest import SettingsFactory
from tests.faults.conftest import WorkerFactory, produce_metrics, wait_applied
from trackstream.runtime import build

POINTS = 50


def test_sigterm_flushes_commits_and_exits(fault_settings: SettingsFactory, worker_factory: WorkerFactory) -> None:
    settings = fault_settings(batch_max_seconds=30.0, batch_max_rows=1_000_000)
    runtime = build(settings)
    try:
        writer = EventWriter(runtime.events, settings.topics)
        topic, group = settings.topics.metrics, runtime.group("metrics")
        worker = worker_factory(settings, "metrics")
        acked = produce_metrics(writer, 0, 20, POINTS)
        wait_applied(runtime.events, group, topic, timeout=45)  # the worker is consuming

        done = threading.Event()
        more: list[int] = []

        def produce() -> None:
            more.append(produce_metrics(writer, 20, 200, POINTS))
            done.set()

        producer = threading.Thread(target=produce)
        producer.start()
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(timeout=30) == 0, worker.output()
        producer.join(timeout=60)
        acked += sum(more)

        # Everything the stopped worker committed is in the table; what it had not read is still in the
        # log. A successor picks up exactly there: no loss, no duplicate.
        committed_at_stop = sum(runtime.events.committed(group, topic).values())
        ((rows_at_stop,),) = runtime.tables.query("SELECT count() FROM metrics FINAL")
        assert rows_at_stop == committed_at_stop * POINTS

        worker_factory(settings, "metrics")
        wait_applied(runtime.events, group, topic, timeout=45)
        ((rows, unique),) = runtime.tables.query(
            "SELECT count(), uniqExact(run_id, key, step, timestamp, value) FROM metrics FINAL"
        )
        assert rows == acked == 220 * POINTS
        assert rows == unique
    finally:
        runtime.close()
