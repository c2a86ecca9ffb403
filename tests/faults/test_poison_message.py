"""A poison message on the metrics topic goes to the dead-letter topic; good messages after it still arrive."""

from __future__ import annotations

import time
import uuid

from ingest.writer import EventWriter
from tests.conftest import SettingsFactory
from tests.faults.conftest import WorkerFactory, produce_metrics, wait_applied
from trackstream.log import Message
from trackstream.runtime import build


def test_poison_message_is_dead_lettered_and_consumption_continues(
    fault_settings: SettingsFactory, worker_factory: WorkerFactory
) -> None:
    settings = fault_settings()
    runtime = build(settings)
    try:
        events, topic, group = runtime.events, settings.topics.metrics, runtime.group("metrics")
        writer = EventWriter(events, settings.topics)
        worker_factory(settings, "metrics")
        acked = produce_metrics(writer, 0, 20, 10)
        poison_partition, poison_offset = events.produce(topic, f"{3:032x}".encode(), b"\x00\x01 not an event")
        acked += produce_metrics(writer, 20, 20, 10)
        wait_applied(events, group, topic, timeout=45)

        ((rows, unique),) = runtime.tables.query(
            "SELECT count(), uniqExact(run_id, key, step, timestamp, value) FROM metrics FINAL"
        )
        assert rows == unique == acked

        dead: list[Message] = []
        inspector = events.consumer(f"inspect-{uuid.uuid4().hex[:8]}", settings.topics.deadletter)
        try:
            deadline = time.monotonic() + 20
            while not dead and time.monotonic() < deadline:
                dead.extend(inspector.poll(0.5, 100))
            dead.extend(inspector.poll(0.5, 100))
        finally:
            inspector.close()
        assert len(dead) == 1
        (letter,) = dead
        assert letter.value == b"\x00\x01 not an event"
        assert letter.header("dlq.topic") == topic.encode()
        assert letter.header("dlq.partition") == str(poison_partition).encode()
        assert letter.header("dlq.offset") == str(poison_offset).encode()
        assert letter.header("dlq.reason")
    finally:
        runtime.close()
