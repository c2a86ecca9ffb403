"""KafkaLog: ``on_revoke`` runs on a rebalance, on the polling thread (never on kafka-python's IO loop,
which also sends the heartbeats), and its commit reaches the broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from tests.conftest import Services, warm_up_group
from trackstream.log import LogConsumer, Message, Partition
from trackstream.log.kafka import KafkaLog


def test_on_revoke_commits_what_was_consumed(services: Services) -> None:
    log = KafkaLog(services.kafka_bootstrap)
    topic, group = f"rebalance-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    log.ensure_topics([topic], 2)
    for i in range(20):
        log.produce(topic, f"k{i}".encode(), b"v")
    # Load this group's coordinator before the test proper: right after the fault tests restart the broker,
    # a group whose __consumer_offsets partition is still loading had its first commits answered late
    # (docs/DESIGN.md, failure states 18 and 24); the commit below is then what the test checks.
    warm_up_group(services.kafka_bootstrap, group, topic)
    consumed: dict[Partition, int] = {}
    revoked: list[Partition] = []
    first: LogConsumer

    def on_revoke(partitions: Sequence[Partition]) -> None:
        revoked.extend(partitions)
        first.commit({p: o for p, o in consumed.items() if p in partitions})

    first = log.consumer(group, topic, on_revoke)
    second: LogConsumer | None = None
    try:
        received: list[Message] = []
        deadline = time.monotonic() + 30
        while len(received) < 20 and time.monotonic() < deadline:
            received.extend(first.poll(0.5, 100))
        assert len(received) == 20
        for m in received:
            consumed[m.partition] = m.offset + 1
        second = log.consumer(group, topic)
        deadline = time.monotonic() + 30
        while not revoked and time.monotonic() < deadline:
            first.poll(0.2, 100)  # the rebalance is driven from the members' polls
            second.poll(0.2, 100)
        assert revoked
        deadline = time.monotonic() + 30
        expected = {p.index: o for p, o in consumed.items() if p in revoked}
        while time.monotonic() < deadline:
            committed = log.committed(group, topic)
            if all(committed.get(p) == o for p, o in expected.items()):
                break
            time.sleep(0.1)
        assert {p: o for p, o in log.committed(group, topic).items() if p in expected} == expected
    finally:
        first.close()
        if second is not None:
            second.close()
        log.close()
