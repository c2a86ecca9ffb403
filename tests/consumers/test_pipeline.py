"""The consumer pipeline on the in-process log: commit after write, dead letters, flush policy."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from consumers.deadletter import DeadLetters, TooManyDeadLetters
from consumers.pipeline import FlushPolicy, Pipeline, WorkerFailed
from consumers.sink import Sink
from schemas import codec, events
from tests.consumers.fakes import (
    BrokenSink,
    DownUntilToldSink,
    FailingSink,
    PollCountingConsumer,
    RecordingSink,
    RejectingSink,
    UnacknowledgingLog,
)
from tests.upgrade.schemas import CURRENT, NEXT
from trackstream.errors import StoreFailed
from trackstream.log import LogConsumer, Message, Partition
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


def _factory(log: MemoryLog) -> PipelineFactory:
    def make(
        sink: Sink,
        max_ratio: float = 0.5,
        min_messages: int = 100,
        source: LogConsumer | None = None,
        deadletter_timeout: float = 5.0,
        codec_: codec.Codec = codec.DEFAULT,
        **policy: float,
    ) -> Pipeline:
        holder: list[Pipeline] = []
        source = source or log.consumer(GROUP, TOPIC, lambda parts: holder[0].on_revoke(parts))
        dead = DeadLetters(log, DLQ, max_ratio, min_messages, timeout=deadletter_timeout)
        pipe = Pipeline(source, sink, dead, FlushPolicy(**policy), backoff_cap=0.1, codec_=codec_)  # type: ignore[arg-type]
        holder.append(pipe)
        return pipe

    return make


@pytest.fixture
def pipeline_factory(log: MemoryLog) -> PipelineFactory:
    return _factory(log)


@pytest.fixture
def pipeline_factory_on() -> Callable[[MemoryLog], PipelineFactory]:
    return _factory


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
    deadline = time.monotonic() + 10
    while sink.failures_left or not sink.written:
        assert time.monotonic() < deadline, "the pipeline did not retry the batch"
        pipe.run_once(timeout=0.01)  # never blocks: the retry comes from the loop
    assert sink.committed_during_failures == [{}] * 4
    assert len(sink.written) == 20
    assert sorted(e.message.offset for e in sink.written) == sorted(
        o for p, end in ends(log).items() for o in range(end)
    )
    assert log.committed(GROUP, TOPIC) == ends(log)
    assert dead_letters(log) == []


def test_store_outage_pauses_the_partitions_and_keeps_polling(
    log: MemoryLog, pipeline_factory: PipelineFactory
) -> None:
    """The member stays in its group: while the store is down each loop polls (paused, so nothing new
    is read into memory), nothing is committed, and after the outage everything is written once."""
    sink = DownUntilToldSink()
    source = PollCountingConsumer(log.consumer(GROUP, TOPIC))
    pipe = pipeline_factory(sink, max_seconds=0.05, source=source)
    produce_batches(log, 10)
    pipe.run_once(timeout=0.01)
    assert pipe.outage is not None
    assert source.paused() == source.assignment()
    produce_batches(log, 10)  # arrives during the outage: not read while paused
    polls_before = source.polls
    started = time.monotonic()
    loops = 0
    while time.monotonic() - started < 1.0:
        pipe.run_once(timeout=0.05)
        loops += 1
    assert source.polls - polls_before == loops  # every loop polled, none blocked in a retry
    assert loops >= 10
    assert 2 <= sink.attempts <= 12  # backoff, not a retry per loop
    assert log.committed(GROUP, TOPIC) == {}
    assert sink.written == []
    sink.up = True
    deadline = time.monotonic() + 10
    while log.committed(GROUP, TOPIC) != ends(log):
        assert time.monotonic() < deadline, "did not catch up after the outage"
        pipe.run_once(timeout=0.01)
    assert pipe.outage is None and source.paused() == set()
    offsets = [(e.message.partition, e.message.offset) for e in sink.written]
    assert len(offsets) == len(set(offsets)) == 20


def test_rebalance_during_an_outage_commits_nothing_for_the_revoked_partitions(
    log: MemoryLog, pipeline_factory: PipelineFactory
) -> None:
    sink = DownUntilToldSink()
    pipe = pipeline_factory(sink, max_seconds=0.05)
    positions = [p for run in ("run-0", "run-9") for p in produce_batches(log, 5, run_id=run)]
    assert {p for p, _ in positions} == {0, 1}
    pipe.run_once(timeout=0.01)
    assert pipe.outage is not None
    revoked = Partition(TOPIC, positions[0][0])
    pipe.on_revoke([revoked])  # the store is still down: the revoked part is dropped, not committed
    assert log.committed(GROUP, TOPIC) == {}
    sink.up = True
    deadline = time.monotonic() + 10
    while not sink.written:
        assert time.monotonic() < deadline
        pipe.run_once(timeout=0.01)
    kept = {p for p, _ in positions} - {revoked.index}
    assert set(log.committed(GROUP, TOPIC)) == kept
    assert {e.message.partition for e in sink.written} == {Partition(TOPIC, p) for p in kept}


def test_stop_during_an_outage_commits_nothing(log: MemoryLog, pipeline_factory: PipelineFactory) -> None:
    sink = DownUntilToldSink()
    pipe = pipeline_factory(sink, max_seconds=0.05)
    produce_batches(log, 5)
    pipe.run_once(timeout=0.01)
    pipe.stop()
    started = time.monotonic()
    pipe.run()  # one last attempt, then it closes: the next start re-reads from the commit
    assert time.monotonic() - started < 2
    assert pipe.failure is None
    assert log.committed(GROUP, TOPIC) == {}


@pytest.mark.parametrize(
    "error",
    [StoreFailed("local object store: EIO"), RuntimeError("a bug in the sink"), KeyError("record field")],
    ids=["unclassified-store-error", "bug", "key-error"],
)
def test_unclassified_error_stops_the_pipeline_loudly_and_commits_nothing(
    log: MemoryLog, pipeline_factory: PipelineFactory, error: Exception
) -> None:
    sink = BrokenSink(error)
    pipe = pipeline_factory(sink, max_seconds=0.05)
    produce_batches(log, 5)
    started = time.monotonic()
    with pytest.raises(WorkerFailed) as failed:
        pipe.run()
    assert time.monotonic() - started < 2  # no retry loop, no dead thread: it stops at once
    assert failed.value.cause is error
    assert pipe.failure is failed.value
    assert "recording sink worker stopped" in str(pipe.failure)
    assert log.committed(GROUP, TOPIC) == {}
    assert dead_letters(log) == []  # nothing thrown away either


def test_unacknowledged_dead_letter_holds_the_batch_and_never_blocks_the_loop(
    pipeline_factory_on: Callable[[MemoryLog], PipelineFactory],
) -> None:
    """The dead-letter produce is bounded: a topic that does not acknowledge is an outage like a store's;
    the garbage message's offset is not committed until its dead letter is acknowledged."""
    log = UnacknowledgingLog(DLQ, hang=1.5)
    log.ensure_topics([TOPIC, DLQ], 2)
    sink = RecordingSink()
    pipe = pipeline_factory_on(log)(sink, max_seconds=0.05, deadletter_timeout=0.2)
    produce_batches(log, 3)
    log.produce(TOPIC, b"run-0", b"garbage")
    started = time.monotonic()
    pipe.run_once(timeout=0.01)
    assert time.monotonic() - started < 1.0  # bounded by the dead-letter timeout, not the hang
    assert pipe.outage is not None
    assert log.committed(GROUP, TOPIC) == {}
    log.down = False
    time.sleep(1.6)  # the hung produce ends (refused) before the retry succeeds
    deadline = time.monotonic() + 10
    while log.committed(GROUP, TOPIC) != ends(log):
        assert time.monotonic() < deadline
        pipe.run_once(timeout=0.05)
    assert [m.value for m in dead_letters(log)] == [b"garbage"]


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


def _batch(run_id: str, i: int) -> events.MetricBatch:
    return events.MetricBatch(run_id=run_id, keys=["loss"], values=[float(i)], timestamps=[i], steps=[i])


def _run_on(log: MemoryLog, partition: int) -> str:
    return next(r for r in (f"run-{i}" for i in range(100)) if log.partition_for(TOPIC, r.encode()) == partition)


def test_a_message_newer_than_the_worker_holds_its_partition_until_an_upgraded_worker_reads_it(
    log: MemoryLog, pipeline_factory: PipelineFactory
) -> None:
    """A gateway upgraded before its consumers: nothing is dead-lettered or committed past the newer
    message; the other partition goes on; the upgraded worker applies the rest exactly once."""
    held_run, other_run = _run_on(log, 0), _run_on(log, 1)

    def produce(c: codec.Codec, run_id: str, i: int) -> tuple[int, int]:
        return log.produce(TOPIC, run_id.encode(), c.encode_event(_batch(run_id, i)), (c.header(codec.METRICS),))

    produced = [produce(CURRENT, held_run, 0), produce(CURRENT, other_run, 1)]
    newer = produce(NEXT, held_run, 2)
    produced += [newer, produce(CURRENT, held_run, 3), produce(CURRENT, other_run, 4), produce(NEXT, other_run, 5)]
    produced += [produce(CURRENT, other_run, 6)]

    old_sink = RecordingSink()
    old = pipeline_factory(old_sink)
    drain(old)
    assert dead_letters(log) == []
    assert {(e.message.partition.index, e.message.offset) for e in old_sink.written} == {
        produced[0],
        produced[1],
        produced[4],
    }
    assert log.committed(GROUP, TOPIC) == {0: newer[1], 1: produced[5][1]}
    assert old.stalled is not None and "metric_batch.v3" in old.stalled and "upgrade" in old.stalled
    old.stop()
    old.run()  # flushes and closes; commits nothing past the held messages

    new_sink = RecordingSink()
    upgraded = pipeline_factory(new_sink, codec_=NEXT)
    drain(upgraded)
    assert dead_letters(log) == []
    assert upgraded.stalled is None
    written = old_sink.written + new_sink.written
    assert sorted((e.message.partition.index, e.message.offset) for e in written) == sorted(produced)
    assert log.committed(GROUP, TOPIC) == ends(log)


def test_a_held_partition_stays_held_across_a_rebalance_that_leaves_it_here(
    log: MemoryLog, pipeline_factory: PipelineFactory
) -> None:
    """kafka-python keeps the position (past the held message) of a partition a rebalance leaves with
    the member: forgetting the hold on revoke would write and commit what follows and skip the held one."""
    run = _run_on(log, 0)
    log.produce(TOPIC, run.encode(), CURRENT.encode_event(_batch(run, 0)), (CURRENT.header(codec.METRICS),))
    _, newer = log.produce(TOPIC, run.encode(), NEXT.encode_event(_batch(run, 1)), (NEXT.header(codec.METRICS),))
    log.produce(TOPIC, run.encode(), CURRENT.encode_event(_batch(run, 2)), (CURRENT.header(codec.METRICS),))
    sink = RecordingSink()
    pipe = pipeline_factory(sink)
    drain(pipe)
    assert pipe.stalled is not None
    pipe.on_revoke([Partition(TOPIC, 0)])  # the partition stays with this member, position kept
    log.produce(TOPIC, run.encode(), CURRENT.encode_event(_batch(run, 3)), (CURRENT.header(codec.METRICS),))
    drain(pipe)
    assert [e.message.offset for e in sink.written] == [newer - 1]
    assert log.committed(GROUP, TOPIC).get(0) == newer
    assert pipe.stalled is not None and dead_letters(log) == []
