"""KafkaLog replaces a producer kafka-python can no longer use, and closes in bounded time.

These pin the kafka-python 3.0 internals :func:`trackstream.log.kafka._stuck` reads: after the sender's
``reset_producer_id`` (what an expired, already-sent batch triggers when a broker dies under load) the
idempotent producer keeps state READY with producer id -1 and never asks for another id. The fault test
``tests/faults/test_broker_crash.py`` reaches the same state through a real broker crash."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

from kafka.producer.transaction_manager import TransactionState

from tests.conftest import Services
from trackstream.log.kafka import KafkaLog, _stuck


def _log(services: Services) -> tuple[KafkaLog, str]:
    log = KafkaLog(services.kafka_bootstrap, client_id=f"recovery-{uuid.uuid4().hex[:6]}", produce_timeout=5)
    topic = f"recovery-{uuid.uuid4().hex[:8]}"
    log.ensure_topics([topic], 1)
    return log, topic


def test_producer_without_producer_id_is_replaced_and_writes_are_acked_again(services: Services) -> None:
    log, topic = _log(services)
    try:
        log.produce(topic, b"k", b"before")
        stuck = log._producer
        assert stuck is not None and _stuck(stuck) is None
        manager = stuck._transaction_manager
        manager.reset_producer_id()  # as the sender does when a batch it had sent expires
        time.sleep(0.5)  # kafka-python 3.0.12 does not recover by itself: still no id, still READY
        assert not manager.has_producer_id() and manager._current_state == TransactionState.READY
        assert _stuck(stuck) is not None

        async def write() -> tuple[int, int]:
            return await log.produce_async(topic, b"k", b"after")

        started = time.monotonic()
        partition, offset = asyncio.run(write())
        assert (partition, offset) == (0, 1)  # acknowledged, after the one acked before
        assert time.monotonic() - started < 5
        assert log._producer is not stuck and log.producer_replacements == 1
        assert log.end_offsets(topic, [0]) == {0: 2}
    finally:
        log.close()


def test_close_is_bounded_with_a_stuck_producer_holding_writes(services: Services) -> None:
    log, topic = _log(services)
    producer = log._get_producer()
    log.produce(topic, b"k", b"v")
    producer._transaction_manager.reset_producer_id()
    pending = producer.send(topic, key=b"k", value=b"never sent")  # held: no producer id
    closed = threading.Event()
    started = time.monotonic()

    def close() -> None:
        log.close()
        closed.set()

    threading.Thread(target=close, daemon=True).start()
    assert closed.wait(timeout=10), "close() hung on a stuck producer"
    assert time.monotonic() - started < 8
    assert pending.is_done and pending.failed()  # the held write failed (never acknowledged)
