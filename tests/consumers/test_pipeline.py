"""The consumer pipeline on the in-process log: commit after write, dead letters, flush policy."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from consumers.deadletter import DeadLetters, TooManyDeadLetters
from consumers.pipeline import FlushPolicy, Pipeline
from consumers.sink import Sink
from schemas import codec
from tests.consumers.fakes import FailingSink, RecordingSink, RejectingSink
from trackstream.log import Message, Partition
from trackstream.log.memory import MemoryLog

TOPIC = "metrics"
DLQ = "deadletter"
GROUP = "sink-group"


@pytest.fixture
def log() -> MemoryLog:
    events = MemoryLog()
    events.ensure_topics([TOPIC, DLQ], 2)
    return events


PipelineFactory = Callable[..., Pipeline]


@pytest.fixture
def pipeline_factory(log: MemoryLog) -> PipelineFactory:
    def make(sink: Sink, max_ratio: float = 0.5, min_messages: int = 100, **policy: float) -> Pipeline:
        holder: list[Pipeline] = []
        source = log.consumer(GROUP, TOPIC, lambda parts: holder[0].on_revoke(parts))
        dead = DeadLetters(log, DLQ, max_ratio, min_messages)
        pipe = Pipeline(source, sink, dead, FlushPolicy(**policy), backoff_cap=0.1)  # type: ignore[arg-type]
        holder.append(pipe)
        return pipe

    return make


def produce_batches(log: MemoryLog, count: int, run_id: str | None = None, points: int = 3) -> list[tuple[int, int]]:
    """Produce ``count`` metric batches; returns their (partition, offset)."""
    positions = []
    for i in range(count):
        run = run_id or f"run-{i % 5}"
        record = {
            "run_id": run,
            "keys": ["loss"] * points,
            "values": [float(i)] * points,
            "timestamps": [1_700_000_000_000 + i] * points,
            "steps": list(range(points)),
        }
        positions.append(
            log.produce(TOPIC, run.encode(), codec.encode(codec.METRICS, record), (codec.header(codec.METRICS),))
        )
    return positions


def ends(log: MemoryLog) -> dict[int, int]:
    return {p: o for p, o in log.end_offsets(TOPIC, [0, 1]).items() if o}


def dead_letters(log: MemoryLog) -> list[Message]:
    consumer = log.consumer(f"inspect-{uuid.uuid4().hex[:6]}", DLQ)
    return consumer.poll(0.1, 10_000)


def drain(pipe: Pipeline, rounds: int = 5) -> None:
    for _ in range(rounds):
        pipe.run_once(timeout=0.01)


def test_idle_partition_flushes_at_once_and_commits_everything(
    log: MemoryLog, pipeline_factory: PipelineFactory
) -> None:
    sink = RecordingSink()
    pipe = pipeline_factory(sink, max_rows=10**6, max_seconds=3600)
    produce_batches(log, 12)
    pipe.run_once(timeout=0.01)
    assert len(sink.written) == 12
    assert len(sink.batches) == 1
    assert log.committed(GROUP, TOPIC) == ends(log)


def test_sink_outage_commits_nothing_until_the_write_succeeds(
    log: MemoryLog, pipeline_factory: PipelineFactory
) -> None:
    sink = FailingSink(log, GROUP, TOPIC, failures=4)
    pipe = pipeline_factory(sink, max_seconds=0.05)
    produce_batches(log, 20)
    pipe.run_once(timeout=0.01)  # blocks, retrying with backoff, until the store is back
    assert sink.committed_during_failures == [{}] * 4
    assert sink.failures_left == 0
    assert len(sink.written) == 20
    assert sorted(e.message.offset for e in sink.written) == sorted(
        o for p, end in ends(log).items() for o in range(end)
    )
    assert log.committed(GROUP, TOPIC) == ends(log)
    assert dead_letters(log) == []


def test_rejected_event_is_dead_lettered_and_the_rest_written(
    log: MemoryLog, pipeline_factory: PipelineFactory
) -> None:
    sink = RejectingSink(poisoned_run="poison")
    pipe = pipeline_factory(sink)
    produce_batches(log, 10)
    ((partition, offset),) = produce_batches(log, 1, run_id="poison")
    produce_batches(log, 10)
    drain(pipe)
    assert len(sink.written) == 20
    assert all(e.decoded.record["run_id"] != "poison" for e in sink.written)
    assert len({(e.message.partition, e.message.offset) for e in sink.written}) == 20  # no duplicates
    (dead,) = dead_letters(log)
    assert dead.key == b"poison"
    assert dead.header("dlq.topic") == TOPIC.encode()
    assert dead.header("dlq.partition") == str(partition).encode()
    assert dead.header("dlq.offset") == str(offset).encode()
    assert b"cannot take" in (dead.header("dlq.reason") or b"")
    assert codec.decode(dead.value).record["run_id"] == "poison"  # the payload is kept as it was
    assert log.committed(GROUP, TOPIC) == ends(log)


def test_garbage_payload_is_dead_lettered_and_consumption_goes_on(
    log: MemoryLog, pipeline_factory: PipelineFactory
) -> None:
    sink = RecordingSink()
    pipe = pipeline_factory(sink)
    produce_batches(log, 5)
    garbage_partition, garbage_offset = log.produce(TOPIC, b"run-0", b"\x00not avro at all")
    log.produce(TOPIC, b"run-1", codec.MARKER + b"\xff" * 8 + b"unknown fingerprint")
    produce_batches(log, 5)
    drain(pipe)
    assert len(sink.written) == 10
    dead = dead_letters(log)
    assert len(dead) == 2
    first = next(m for m in dead if m.value.startswith(b"\x00"))
    assert first.header("dlq.partition") == str(garbage_partition).encode()
    assert first.header("dlq.offset") == str(garbage_offset).encode()
    assert b"not an Avro" in (first.header("dlq.reason") or b"")
    assert log.committed(GROUP, TOPIC) == ends(log)
    produce_batches(log, 3)  # later good messages still arrive
    drain(pipe)
    assert len(sink.written) == 13


def test_wrong_family_on_the_topic_is_dead_lettered(log: MemoryLog, pipeline_factory: PipelineFactory) -> None:
    sink = RecordingSink()
    pipe = pipeline_factory(sink)
    record = {"path": "p", "op": "DELETE", "content": None, "size": 0, "sha256": "", "time": 0}
    log.produce(TOPIC, b"p", codec.encode(codec.ARTIFACT, record))
    drain(pipe)
    (dead,) = dead_letters(log)
    assert b"artifact event on the recording topic" in (dead.header("dlq.reason") or b"")
    assert sink.written == []
    assert log.committed(GROUP, TOPIC) == ends(log)


def test_too_many_dead_letters_stops_the_consumer_without_committing(
    log: MemoryLog, pipeline_factory: PipelineFactory
) -> None:
    sink = RecordingSink()
    pipe = pipeline_factory(sink, max_ratio=0.5, min_messages=10)
    produce_batches(log, 4)
    for i in range(8):
        log.produce(TOPIC, f"run-{i}".encode(), b"garbage")
    with pytest.raises(TooManyDeadLetters):
        drain(pipe)
    assert log.committed(GROUP, TOPIC) == {}
    assert sink.written == []


def test_flush_by_size(log: MemoryLog, pipeline_factory: PipelineFactory) -> None:
    sink = RecordingSink()
    # 3 rows per event, 2 events per poll: a poll is never "drained" while the log has more
    pipe = pipeline_factory(sink, max_rows=10, max_seconds=3600, poll_records=2)
    produce_batches(log, 8, run_id="one-run")
    pipe.run_once(timeout=0.01)  # 6 rows
    assert sink.batches == [] and log.committed(GROUP, TOPIC) == {}
    pipe.run_once(timeout=0.01)  # 12 rows >= 10
    assert [len(b) for b in sink.batches] == [4]
    partition = Partition(TOPIC, log.partition_for(TOPIC, b"one-run"))
    assert log.committed(GROUP, TOPIC) == {partition.index: 4}


def test_flush_by_time(log: MemoryLog, pipeline_factory: PipelineFactory) -> None:
    sink = RecordingSink()
    pipe = pipeline_factory(sink, max_rows=10**6, max_seconds=0.3, poll_records=1)
    produce_batches(log, 5, run_id="one-run")
    pipe.run_once(timeout=0.01)
    pipe.run_once(timeout=0.01)
    assert sink.batches == [] and log.committed(GROUP, TOPIC) == {}
    time.sleep(0.35)
    pipe.run_once(timeout=0.01)
    assert [len(b) for b in sink.batches] == [3]
    assert sum(log.committed(GROUP, TOPIC).values()) == 3


def test_on_revoke_flushes_and_commits(log: MemoryLog, pipeline_factory: PipelineFactory) -> None:
    sink = RecordingSink()
    pipe = pipeline_factory(sink, max_rows=10**6, max_seconds=3600, poll_records=2)
    produce_batches(log, 6, run_id="one-run")
    pipe.run_once(timeout=0.01)
    assert sink.batches == []
    partition = Partition(TOPIC, log.partition_for(TOPIC, b"one-run"))
    pipe.on_revoke([partition])
    assert [len(b) for b in sink.batches] == [2]
    assert log.committed(GROUP, TOPIC) == {partition.index: 2}


def test_stop_flushes_what_is_pending(log: MemoryLog, pipeline_factory: PipelineFactory) -> None:
    sink = RecordingSink()
    pipe = pipeline_factory(sink, max_rows=10**6, max_seconds=3600, poll_records=2)
    produce_batches(log, 6, run_id="one-run")
    pipe.run_once(timeout=0.01)
    pipe.stop()
    pipe.run()
    assert len(sink.written) == 2
    assert sum(log.committed(GROUP, TOPIC).values()) == 2
