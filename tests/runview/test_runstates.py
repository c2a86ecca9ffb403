"""The run-state view: which events it applies, in which order, what the store may add, and what a dead
tail does. On the in-process log (no services)."""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from ingest.runstates import ACTIVE, DELETED, RunStates
from ingest.writer import EventWriter
from schemas.decisions import ACCEPTED
from schemas.events import Param, RunData, RunState
from trackstream.log import LogTail, Message, Partition
from trackstream.log.memory import MemoryLog
from trackstream.settings import Topics

TOPICS = Topics(metrics="m", metadata="md", artifacts="a", deadletter="dl", partitions=2)


def run_state(run_id: str, stage: str, experiment_id: str = "1") -> dict[str, Any]:
    return {
        "run_id": run_id, "experiment_id": experiment_id, "run_name": "r", "user_id": "", "status": "RUNNING",
        "start_time": 1, "end_time": None, "artifact_uri": "x", "lifecycle_stage": stage, "deleted_time": None,
    }  # fmt: skip


def wait_for(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the view did not get there in time"
        time.sleep(0.01)


@pytest.fixture
def memory_log() -> Iterator[MemoryLog]:
    log = MemoryLog()
    log.ensure_topics([TOPICS.metadata], TOPICS.partitions)
    yield log
    log.close()


def test_an_older_event_never_replaces_a_newer_one() -> None:
    view = RunStates()
    view.observe("RunState", run_state("r1", ACTIVE), 10)
    view.observe("RunState", run_state("r1", DELETED), 12)
    view.observe("trackstream.RunState", run_state("r1", ACTIVE), 10)  # the tail replaying the create
    assert view.stage("r1") == DELETED
    view.observe("trackstream.RunState", run_state("r1", ACTIVE), 13)  # a restore
    assert view.is_active("r1")


def test_absent_fields_leave_the_entry_unchanged() -> None:
    """A field-level patch (only the fields that changed) reads as well as a whole state."""
    view = RunStates()
    view.observe("RunState", {"run_id": "r1", "experiment_id": "7", "lifecycle_stage": ACTIVE}, 1)
    view.observe("RunState", {"run_id": "r1", "status": "FINISHED"}, 2)
    assert view.is_active("r1")
    view.observe("RunState", {"run_id": "r1", "lifecycle_stage": DELETED}, 3)
    assert view.stage("r1") == DELETED
    view.observe("RunState", {"run_id": "r2", "status": "FINISHED"}, 4)  # a patch of a run never seen whole
    assert view.stage("r2") is None


def test_other_events_are_ignored() -> None:
    view = RunStates()
    view.observe("ExperimentState", {"experiment_id": "1", "lifecycle_stage": DELETED}, 1)
    view.observe("RunData", {"run_id": "r1", "params": [], "tags": []}, 2)
    assert len(view) == 0


def test_the_store_fills_misses_but_never_overrides_the_log() -> None:
    view = RunStates()
    view.learn("r1", "1", ACTIVE)
    assert view.is_active("r1")
    view.observe("RunState", run_state("r1", DELETED), 0)  # any logged event is newer than the store
    assert view.stage("r1") == DELETED
    view.learn("r1", "1", ACTIVE)  # a store read that began before the delete was applied
    assert view.stage("r1") == DELETED


def test_the_tail_applies_what_another_gateway_wrote(memory_log: MemoryLog) -> None:
    view = RunStates(memory_log.tail(TOPICS.metadata))
    view.start()
    other_gateway = EventWriter(memory_log, TOPICS)  # no observer: only the tail tells this view
    try:
        other_gateway.metadata("r1", "RunState", run_state("r1", ACTIVE))
        wait_for(lambda: view.is_active("r1"))
        other_gateway.metadata("r1", "RunData", {"run_id": "r1", "params": [], "tags": []})
        other_gateway.metadata("r1", "RunState", run_state("r1", DELETED))
        wait_for(lambda: view.stage("r1") == DELETED)
        assert view.applied == 3 and view.healthy()
    finally:
        view.close()


def test_own_writes_are_seen_before_the_answer(memory_log: MemoryLog) -> None:
    view = RunStates()
    writer = EventWriter(memory_log, TOPICS, on_metadata=view.observe)
    writer.metadata("r1", "RunState", run_state("r1", ACTIVE))
    assert view.is_active("r1")
    writer.metadata("r1", "RunState", run_state("r1", DELETED))
    assert view.stage("r1") == DELETED


class BrokenTail(LogTail):
    def poll(self, timeout: float, max_records: int) -> list[Message]:
        raise RuntimeError("the tail's client broke")

    def close(self) -> None:
        pass


def test_a_dead_tail_makes_the_view_unhealthy_and_silent() -> None:
    """A view whose tail stopped would keep answering states it can no longer update: it answers
    nothing instead (every write check goes to the store) and says so for /health."""
    view = RunStates(BrokenTail())
    view.observe("RunState", run_state("r1", ACTIVE), 1)
    view.start()
    wait_for(lambda: not view.healthy())
    assert view.error is not None and "broke" in view.error
    assert view.stage("r1") is None and not view.is_active("r1")
    view.close()


def test_a_memory_tail_keeps_records_until_it_read_them(memory_log: MemoryLog) -> None:
    """The in-process log drops records every group committed; an open tail holds them until read."""
    tail = memory_log.tail(TOPICS.metadata)
    consumer = memory_log.consumer("g", TOPICS.metadata)
    try:
        for i in range(5):
            memory_log.produce(TOPICS.metadata, b"k", f"v{i}".encode())
        got = consumer.poll(0.1, 100)
        consumer.commit({got[-1].partition: got[-1].offset + 1})
        assert [m.value for m in tail.poll(0.1, 100)] == [m.value for m in got]
        consumer.commit({got[-1].partition: got[-1].offset + 1})  # trims now that the tail read them too
        part = memory_log._topics[TOPICS.metadata][got[-1].partition.index]
        assert part.records == [] and part.base == 5
    finally:
        tail.close()


def test_past_its_bound_the_view_forgets_the_oldest_runs() -> None:
    """A forgotten run is a miss again: the store answers it after the barrier."""
    view = RunStates(max_runs=10)
    for i in range(11):
        view.observe("RunState", run_state(f"r{i}", ACTIVE), i)
    assert len(view) == 10
    assert view.stage("r0") is None and view.is_active("r10")


def test_the_tail_decides_params_of_runs_it_saw_created(memory_log: MemoryLog) -> None:
    """A changed value is refused, the same value accepted again, by the view alone (no store); a run
    created before the view was opened is left to the sink (None)."""
    writer = EventWriter(memory_log, TOPICS)
    writer.emit(RunState(**run_state("before", ACTIVE)))
    view = RunStates(memory_log.tail(TOPICS.metadata))
    view.start()
    try:
        writer.emit(RunState(**run_state("r1", ACTIVE)))
        first = writer.emit(RunData(run_id="r1", params=[Param(key="lr", value="0.1")], tags=[]))
        same = writer.emit(RunData(run_id="r1", params=[Param(key="lr", value="0.1")], tags=[]))
        changed = writer.emit(RunData(run_id="r1", params=[Param(key="lr", value="0.2"), Param(key="b", value="1")],
                                      tags=[]))  # fmt: skip
        later = writer.emit(RunData(run_id="r1", params=[Param(key="b", value="2")], tags=[]))
        unknown = writer.emit(RunData(run_id="before", params=[Param(key="lr", value="1")], tags=[]))
        assert view.decision(*first, timeout=5) == ACCEPTED
        assert view.decision(*same, timeout=5) == ACCEPTED
        refusal = view.decision(*changed, timeout=5)
        assert refusal is not None and refusal.error_code == "INVALID_PARAMETER_VALUE"
        assert "was already logged with value='0.1'" in refusal.message
        assert view.decision(*later, timeout=5) == ACCEPTED  # the refused event set nothing ("b" is new)
        assert view.decision(*unknown, timeout=5) is None
    finally:
        view.close()


def test_a_view_that_has_not_reached_the_event_does_not_answer(memory_log: MemoryLog) -> None:
    view = RunStates(memory_log.tail(TOPICS.metadata))  # never started: its tail stays behind
    position = EventWriter(memory_log, TOPICS).emit(RunData(run_id="r1", params=[Param(key="a", value="1")], tags=[]))
    with pytest.raises(TimeoutError):
        view.decision(*position, timeout=0.05)
    view.close()


def test_a_gap_in_the_tail_leaves_params_to_the_sink() -> None:
    """Offsets that jump (a tail that fell behind retention) may have skipped a param event: the view
    forgets every run's params rather than decide on an incomplete history."""
    view = RunStates()
    part = Partition(TOPICS.metadata, 0)
    view._apply(part, 0, RunState(**run_state("r1", ACTIVE)))
    view._apply(part, 1, RunData(run_id="r1", params=[Param(key="a", value="1")], tags=[]))
    view._apply(part, 5, RunData(run_id="r1", params=[Param(key="a", value="1")], tags=[]))
    assert view.decision(part, 1, timeout=0) == ACCEPTED
    assert view.decision(part, 5, timeout=0) is None


def test_a_dead_tail_decides_nothing() -> None:
    view = RunStates(BrokenTail())
    view.start()
    wait_for(lambda: not view.healthy())
    assert view.decision(Partition(TOPICS.metadata, 0), 10, timeout=1) is None
    view.close()


def test_memory_per_param() -> None:
    """What a param costs the view beyond its key and value (documented in ingest/runstates.py)."""
    view = RunStates()
    part = Partition(TOPICS.metadata, 0)
    runs, per_run = 200, 20
    for i in range(runs):
        view._apply(part, 2 * i, RunState(**run_state(f"{i:032x}", ACTIVE)))
    events = [
        RunData(
            run_id=f"{i:032x}",
            params=[Param(key=f"param_{k:02d}", value=f"{i}.{k:04d}") for k in range(per_run)],
            tags=[],
        )
        for i in range(runs)
    ]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, event in enumerate(events):
        view._apply(part, 2 * i + 1, event)
        view.decision(part, 2 * i + 1, timeout=0)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # the key and value strings are the event's own (shared, not copied): what grows is the dict slots
    per_param = grown / (runs * per_run)
    assert per_param < 150, per_param
    print(f"view memory per param: {per_param:.0f} bytes beyond its key and value")


def test_experiments_are_remembered_until_the_log_shows_a_change() -> None:
    view = RunStates()
    since = view.experiment_changes()
    view.learn_experiment("7", ACTIVE, "s3://b/7", since)
    assert view.experiment("7") == (ACTIVE, "s3://b/7")
    view.observe("trackstream.ExperimentState", {"experiment_id": "7", "lifecycle_stage": DELETED}, 3)
    assert view.experiment("7") is None
    stale = view.experiment_changes()
    view.observe("ExperimentState", {"experiment_id": "8"}, 4)  # a change while a store read was under way
    view.learn_experiment("7", ACTIVE, "s3://b/7", stale)
    assert view.experiment("7") is None
