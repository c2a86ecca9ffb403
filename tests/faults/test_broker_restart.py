"""The Kafka broker restarted while points keep arriving: writes during the outage are refused with 503
(never acknowledged), the gateway and the sink worker reconnect on their own, and every point that was
acknowledged is stored exactly once."""

from __future__ import annotations

import asyncio
import time

from ingest.errors import MlflowError
from ingest.writer import EventWriter
from tests.conftest import SettingsFactory
from tests.faults.conftest import WorkerFactory, local_service, metric_batch, produce_metrics, wait_applied
from trackstream.runtime import build


def test_broker_restart_during_ingest_loses_no_acknowledged_point(
    fault_settings: SettingsFactory, worker_factory: WorkerFactory
) -> None:
    settings = fault_settings()
    runtime = build(settings)
    points = 20
    try:
        events, topic, group = runtime.events, settings.topics.metrics, runtime.group("metrics")
        writer = EventWriter(events, settings.topics)
        worker = worker_factory(settings, "metrics")
        acked = produce_metrics(writer, 0, 30, points)
        wait_applied(events, group, topic, timeout=30)

        async def attempt(batch: int) -> bool:
            try:
                await writer.metrics_async(metric_batch(batch % 5, batch, points))
            except MlflowError as exc:
                assert exc.error_code == "TEMPORARILY_UNAVAILABLE" and exc.status == 503, exc.body()
                return False
            return True

        local_service("stop", "kafka")
        stopped = time.monotonic()
        try:
            if asyncio.run(attempt(30)):  # waits up to the producer's delivery timeout, then 503
                acked += points  # acknowledged after all (the broker came back within the timeout)
        finally:
            local_service("start", "kafka")
        restarted = time.monotonic()

        # A client retries refused writes: keep writing new batches until the gateway acks again.
        batch, deadline = 31, time.monotonic() + 90
        first_ack_after: float | None = None
        while batch < 61:
            assert time.monotonic() < deadline, "the gateway did not recover within 90 s of the restart"
            if asyncio.run(attempt(batch)):
                acked += points
                first_ack_after = first_ack_after or time.monotonic() - restarted
                batch += 1
            else:
                time.sleep(0.5)
        wait_applied(events, group, topic, timeout=90)
        print(
            f"acked={acked} outage={restarted - stopped:.1f}s first_ack_after_restart={first_ack_after:.1f}s "
            f"applied_after_restart={time.monotonic() - restarted:.1f}s"
        )

        ((rows, unique),) = runtime.tables.query(
            "SELECT count(), uniqExact(run_id, key, step, timestamp, value) FROM metrics FINAL"
        )
        # Every acknowledged point is there once. A write refused with 503 may still have reached the
        # broker (at-least-once: the client's retry then collapses on the natural key), never fewer.
        assert rows == unique
        assert rows >= acked
        assert rows <= acked + points, "more than the one refused batch arrived beyond what was acked"
        assert worker.process.poll() is None, worker.output()
    finally:
        runtime.close()
