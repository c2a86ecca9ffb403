"""The event log contract, run on MemoryLog and KafkaLog."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict

from trackstream.log import EventLog, LogConsumer, LogTail, Message, Partition, partition_for_key

PARTITIONS = 3


def _topic(log: EventLog) -> str:
    topic = f"contract-{uuid.uuid4().hex[:10]}"
    log.ensure_topics([topic], PARTITIONS)
    return topic


def _poll(consumer: LogConsumer, count: int, timeout: float = 30.0) -> list[Message]:
    """Poll until ``count`` messages arrived (Kafka needs a group join first), then a little more."""
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        out.extend(consumer.poll(0.5, 1000))
    out.extend(consumer.poll(0.2, 1000))  # nothing beyond ``count`` may arrive
    return out


def _produce(log: EventLog, topic: str, keys: int, per_key: int) -> dict[bytes, list[bytes]]:
    sent: dict[bytes, list[bytes]] = defaultdict(list)
    for i in range(per_key):
        for k in range(keys):
            key = f"run-{k}".encode()
            value = f"{key.decode()}:{i}".encode()
            partition, _ = log.produce(topic, key, value, (("schema", b"test.v1"),))
            assert partition == log.partition_for(topic, key)
            sent[key].append(value)
    return sent


def test_ensure_topics_is_idempotent(event_log: EventLog) -> None:
    topic = _topic(event_log)
    event_log.ensure_topics([topic], PARTITIONS)
    assert event_log.partitions(topic) == PARTITIONS


def test_produce_assigns_increasing_offsets_in_the_key_partition(event_log: EventLog) -> None:
    topic = _topic(event_log)
    positions = [event_log.produce(topic, b"same-key", f"v{i}".encode()) for i in range(5)]
    assert {p for p, _ in positions} == {event_log.partition_for(topic, b"same-key")}
    offsets = [o for _, o in positions]
    assert offsets == list(range(offsets[0], offsets[0] + 5))


def test_produce_async_interleaves_with_produce(event_log: EventLog) -> None:
    """Awaited writes (the gateway's hot path) land in the same partitions, in order, with their headers."""
    topic = _topic(event_log)

    async def write() -> list[tuple[int, int]]:
        first = await event_log.produce_async(topic, b"k", b"a0", (("schema", b"test.v1"),))
        middle = event_log.produce(topic, b"k", b"s1")
        rest = await asyncio.gather(*(event_log.produce_async(topic, b"k", f"a{i}".encode()) for i in (2, 3, 4)))
        return [first, middle, *rest]

    positions = asyncio.run(write())
    assert {p for p, _ in positions} == {event_log.partition_for(topic, b"k")}
    offsets = sorted(o for _, o in positions)
    assert offsets == list(range(offsets[0], offsets[0] + 5))
    consumer = event_log.consumer(f"g-{uuid.uuid4().hex[:8]}", topic)
    try:
        got = _poll(consumer, 5)
    finally:
        consumer.close()
    assert [m.value for m in got][:2] == [b"a0", b"s1"]
    assert sorted(m.value for m in got) == [b"a0", b"a2", b"a3", b"a4", b"s1"]
    assert got[0].headers == (("schema", b"test.v1"),)


def test_produce_all_keeps_the_order_and_names_each_position(event_log: EventLog) -> None:
    """Records produced together (a run's state and its tags) land in order, each at the position returned."""
    topic = _topic(event_log)
    records = [(topic, b"run" if i % 2 else b"other", f"r{i}".encode(), (("schema", b"test.v1"),)) for i in range(6)]
    positions = event_log.produce_all(records)
    assert [p for p, _ in positions] == [event_log.partition_for(topic, key) for _, key, _, _ in records]
    for key in (b"run", b"other"):
        offsets = [o for (p, o), (_, k, _, _) in zip(positions, records, strict=True) if k == key]
        assert offsets == list(range(offsets[0], offsets[0] + 3))
    assert event_log.produce_all([]) == []
    consumer = event_log.consumer(f"g-{uuid.uuid4().hex[:8]}", topic)
    try:
        got = _poll(consumer, 6)
    finally:
        consumer.close()
    assert [m.value for m in got if m.key == b"run"] == [b"r1", b"r3", b"r5"]
    assert [m.value for m in got if m.key == b"other"] == [b"r0", b"r2", b"r4"]
    assert {(m.partition.index, m.offset): m.value for m in got} == {
        position: value for position, (_, _, value, _) in zip(positions, records, strict=True)
    }


def test_consume_keeps_order_per_key_and_headers(event_log: EventLog) -> None:
    topic = _topic(event_log)
    sent = _produce(event_log, topic, keys=6, per_key=10)
    consumer = event_log.consumer(f"g-{uuid.uuid4().hex[:8]}", topic)
    try:
        received = _poll(consumer, 60)
    finally:
        consumer.close()
    assert len(received) == 60
    by_key: dict[bytes, list[bytes]] = defaultdict(list)
    for m in received:
        assert m.key is not None
        assert m.partition == Partition(topic, event_log.partition_for(topic, m.key))
        assert m.header("schema") == b"test.v1"
        by_key[m.key].append(m.value)
    assert by_key == sent


def test_end_offsets_and_committed(event_log: EventLog) -> None:
    topic = _topic(event_log)
    group = f"g-{uuid.uuid4().hex[:8]}"
    assert event_log.end_offsets(topic, list(range(PARTITIONS))) == dict.fromkeys(range(PARTITIONS), 0)
    assert event_log.committed(group, topic) == {}
    _produce(event_log, topic, keys=5, per_key=4)
    ends = event_log.end_offsets(topic, list(range(PARTITIONS)))
    assert sum(ends.values()) == 20

    consumer = event_log.consumer(group, topic)
    try:
        received = _poll(consumer, 20)
        assert len(received) == 20
        consumer.commit({m.partition: m.offset + 1 for m in received})
    finally:
        consumer.close()
    assert event_log.committed(group, topic) == {p: e for p, e in ends.items() if e > 0}
    assert event_log.committed(f"other-{group}", topic) == {}


def test_group_resumes_from_committed_offset(event_log: EventLog) -> None:
    topic = _topic(event_log)
    group = f"g-{uuid.uuid4().hex[:8]}"
    for i in range(10):
        event_log.produce(topic, b"one-key", str(i).encode())

    first = event_log.consumer(group, topic)
    try:
        received = _poll(first, 10)
        assert [m.value for m in received] == [str(i).encode() for i in range(10)]
        fourth = received[3]
        first.commit({fourth.partition: fourth.offset + 1})  # processed 0..3 only
    finally:
        first.close()

    second = event_log.consumer(group, topic)
    try:
        again = _poll(second, 6)
    finally:
        second.close()
    assert [m.value for m in again] == [str(i).encode() for i in range(4, 10)]


def test_commit_is_per_group(event_log: EventLog) -> None:
    # Both groups join before the write: the in-process log retains a record only until every group
    # that reads the topic committed it (Kafka: until retention), so a later group may start after it.
    topic = _topic(event_log)
    a = event_log.consumer(f"a-{uuid.uuid4().hex[:8]}", topic)
    b = event_log.consumer(f"b-{uuid.uuid4().hex[:8]}", topic)
    try:
        event_log.produce(topic, b"k", b"v")
        (message,) = _poll(a, 1)
        a.commit({message.partition: message.offset + 1})
        assert [m.value for m in _poll(b, 1)] == [b"v"]  # group b is unaffected by a's commit
    finally:
        a.close()
        b.close()


# Apache Kafka's UtilsTest.testMurmur2 (signed 32-bit, as the Java client computes them).
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_partition_for_matches_the_java_client() -> None:
    for key, java_hash in JAVA_MURMUR2.items():
        for n in (1, 2, 4, 7, 12):
            assert partition_for_key(key, n) == (java_hash & 0x7FFFFFFF) % n


def test_partition_for_is_the_same_in_every_implementation(event_log: EventLog) -> None:
    topic = _topic(event_log)
    for i in range(50):
        key = uuid.UUID(int=i * 7919).hex.encode()
        assert event_log.partition_for(topic, key) == partition_for_key(key, PARTITIONS)


# -- tails: every partition from the end, no group, no commits (the gateway's run-state view reads one) --


def _tail_poll(tail: LogTail, count: int, timeout: float = 30.0) -> list[Message]:
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        out.extend(tail.poll(0.5, 1000))
    out.extend(tail.poll(0.2, 1000))  # nothing beyond ``count`` may arrive
    return out


def test_tail_starts_at_the_end_and_sees_every_later_record_in_order(event_log: EventLog) -> None:
    topic = _topic(event_log)
    _produce(event_log, topic, keys=4, per_key=3)  # before the tail: not seen
    tail = event_log.tail(topic)
    try:
        sent = _produce(event_log, topic, keys=5, per_key=4)
        got = _tail_poll(tail, 20)
    finally:
        tail.close()
    assert len(got) == 20
    by_key: dict[bytes, list[bytes]] = defaultdict(list)
    for m in got:
        assert m.key is not None
        by_key[m.key].append(m.value)
        assert m.headers == (("schema", b"test.v1"),)
    assert by_key == sent  # in order per key, nothing from before the tail opened
    for partition in {m.partition for m in got}:
        offsets = [m.offset for m in got if m.partition == partition]
        assert offsets == sorted(offsets)


def test_tail_neither_joins_nor_holds_back_a_group(event_log: EventLog) -> None:
    """A tail takes no partition away from a group's member and commits nothing."""
    topic = _topic(event_log)
    group = f"g-{uuid.uuid4().hex[:8]}"
    tail = event_log.tail(topic)
    consumer = event_log.consumer(group, topic)
    try:
        sent = _produce(event_log, topic, keys=6, per_key=2)
        assert len(_tail_poll(tail, 12)) == 12
        got = _poll(consumer, 12)
        assert sorted(m.value for m in got) == sorted(v for vs in sent.values() for v in vs)
        assert event_log.committed(group, topic) == {}
    finally:
        consumer.close()
        tail.close()


def test_two_tails_each_see_everything(event_log: EventLog) -> None:
    topic = _topic(event_log)
    first, second = event_log.tail(topic), event_log.tail(topic)
    try:
        _produce(event_log, topic, keys=3, per_key=3)
        assert len(_tail_poll(first, 9)) == 9
        assert len(_tail_poll(second, 9)) == 9
    finally:
        first.close()
        second.close()


def test_pause_stops_fetching_and_resume_loses_nothing(event_log: EventLog) -> None:
    """A paused partition returns nothing while the member keeps polling; after resume every record comes
    exactly once, including those fetched but not yet returned when the pause began."""
    topic = _topic(event_log)
    sent = _produce(event_log, topic, keys=6, per_key=4)
    total = sum(len(v) for v in sent.values())
    consumer = event_log.consumer(f"g-{uuid.uuid4().hex[:8]}", topic)
    first = consumer.poll(0.5, 1)
    deadline = time.monotonic() + 30
    while not first and time.monotonic() < deadline:  # a Kafka member first joins its group
        first = consumer.poll(0.5, 1)
    assert len(first) == 1
    held = consumer.assignment()
    assert held == {Partition(topic, i) for i in range(PARTITIONS)}
    consumer.pause(sorted(held, key=lambda p: p.index))
    assert consumer.paused() == held
    _produce(event_log, topic, keys=6, per_key=1)
    quiet_until = time.monotonic() + 1.5
    while time.monotonic() < quiet_until:
        assert consumer.poll(0.2, 1000) == []
    assert consumer.assignment() == held  # polling while paused keeps the member's partitions
    consumer.resume(sorted(held, key=lambda p: p.index))
    assert consumer.paused() == set()
    rest = _poll(consumer, total + 6 - 1)
    got = [(m.partition, m.offset) for m in first + rest]
    assert len(got) == len(set(got)) == total + 6
    consumer.close()


def test_pause_of_one_partition_leaves_the_others_flowing(event_log: EventLog) -> None:
    topic = _topic(event_log)
    consumer = event_log.consumer(f"g-{uuid.uuid4().hex[:8]}", topic)
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.2, 1)
    stopped = Partition(topic, 0)
    consumer.pause([stopped])
    sent = _produce(event_log, topic, keys=12, per_key=2)
    expected = sum(len(v) for k, v in sent.items() if event_log.partition_for(topic, k) != 0)
    flowing = _poll(consumer, expected, timeout=10)
    assert len(flowing) == expected
    assert all(m.partition != stopped for m in flowing)
    consumer.resume([stopped])
    late = _poll(consumer, sum(len(v) for v in sent.values()) - expected, timeout=10)
    assert {m.partition for m in late} == {stopped}
    consumer.close()
