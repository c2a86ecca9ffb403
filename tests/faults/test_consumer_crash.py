"""A metrics worker SIGKILLed mid-stream and restarted: every acked point is stored, none twice (FINAL)."""

from __future__ import annotations

import threading
import time

from ingest.writer import EventWriter
from tests.conftest import SettingsFactory
from tests.faults.conftest import WorkerFactory, produce_metrics, wait_applied
from trackstream.runtime import build

BATCHES = 400
POINTS = 25


def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    fault_settings: SettingsFactory, worker_factory: WorkerFactory
) -> None:
    # A long batch age: the worker holds written-but-uncommitted or unwritten data when it dies.
    settings = fault_settings(batch_max_seconds=30.0, batch_max_rows=2_000)
    runtime = build(settings)  # topics and tables; this process only produces
    try:
        writer = EventWriter(runtime.events, settings.topics)
        topic, group = settings.topics.metrics, runtime.group("metrics")
        worker = worker_factory(settings, "metrics")
        acked = produce_metrics(writer, 0, 50, POINTS)

        acked_in_background: list[int] = []
        producer = threading.Thread(
            target=lambda: acked_in_background.append(produce_metrics(writer, 50, BATCHES - 50, POINTS))
        )
        producer.start()
        deadline = time.monotonic() + 30
        while not runtime.events.committed(group, topic) and time.monotonic() < deadline:
            time.sleep(0.05)  # the worker is consuming: it has written and committed something
        committed_before_kill = sum(runtime.events.committed(group, topic).values())
        worker.kill()
        producer.join(timeout=60)
        acked += sum(acked_in_background)

        restarted = worker_factory(settings, "metrics")
        wait_applied(runtime.events, group, topic, timeout=45)
        assert restarted.process.poll() is None, restarted.output()

        ((final_rows, final_unique),) = runtime.tables.query(
            "SELECT count(), uniqExact(run_id, key, step, timestamp, value) FROM metrics FINAL"
        )
        ((raw_rows,),) = runtime.tables.query("SELECT count() FROM metrics")
        print(
            f"acked={acked} committed_before_kill={committed_before_kill} raw_rows={raw_rows} "
            f"final_rows={final_rows} replayed_rows={raw_rows - final_rows}"
        )
        assert acked == BATCHES * POINTS
        assert final_rows == acked
        assert final_rows - final_unique == 0
    finally:
        runtime.close()
