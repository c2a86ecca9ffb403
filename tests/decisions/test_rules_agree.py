"""The gateway's log view and the metadata sink decide param events the same way.

Both apply ``schemas.rules`` over the same log prefix, the view to what its tail applied in memory, the
sink to the tables (chDB) overlaid with its batch. The same random event sequences go through both: a
real in-process log tailed by the view, and the sink writing them in randomly cut batches (so decisions
come from the tables as well as from the batch's overlay). Every param event of a run whose create the
view saw must get the same decision; the view decides nothing for a run it did not see created."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers.metadata import MetadataSink
from consumers.sink import Event
from ingest.runstates import ACTIVE, RunStates
from ingest.writer import EventWriter
from schemas import codec
from schemas import events as ev
from schemas.decisions import Decision
from trackstream.log import Message, Partition
from trackstream.log.memory import MemoryLog
from trackstream.settings import Topics
from trackstream.tables.chdb import ChdbStore

TOPICS = Topics(metrics="m", metadata="md", artifacts="a", deadletter="dl", partitions=3)
SEEDS = range(6)
EVENTS = 300


@pytest.fixture
def tables(tmp_path: Path) -> Iterator[ChdbStore]:
    store = ChdbStore(tmp_path / "chdb")
    store.migrate()
    yield store
    store.close()


def create(run_id: str) -> ev.RunState:
    return ev.RunState(run_id=run_id, experiment_id="0", run_name="r", user_id="", status="RUNNING", start_time=1,
                       artifact_uri="x", lifecycle_stage=ACTIVE)  # fmt: skip


def random_events(rng: random.Random) -> list[ev.Event]:
    """Runs created along the way; params from a few keys and values, so repeats, same-value repeats and
    changes all occur; tag-only events, field-level run updates, and params for a run written before the
    view started (``old-*``: created before it, so undecided by the view)."""
    runs: list[str] = []
    out: list[ev.Event] = []
    for _ in range(EVENTS):
        roll = rng.random()
        if not runs or roll < 0.08:
            runs.append(f"run{len(runs)}")
            out.append(create(runs[-1]))
            continue
        run_id = rng.choice(runs)
        if roll < 0.12:
            out.append(ev.RunData(run_id=run_id, params=[], tags=[ev.Tag(key="t", value=str(rng.random()))]))
        elif roll < 0.15:
            state = create(run_id)
            out.append(ev.RunState(**{**ev.to_dict(state), "status": "FINISHED", "changed": ["status"]}))
        else:
            run_id = run_id if roll < 0.92 else f"old-{rng.randrange(2)}"
            keys = rng.sample(["a", "b", "c", "d", "e"], rng.randint(1, 3))
            params = [ev.Param(key=k, value=rng.choice(["1", "2", "x" * rng.randint(1, 3)])) for k in keys]
            out.append(ev.RunData(run_id=run_id, params=params, tags=[ev.Tag(key="t", value="v")]))
    return out


def wait_until(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the view did not apply the log in time"
        time.sleep(0.01)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_view_and_the_sink_decide_every_param_event_alike(seed: int, tables: ChdbStore) -> None:
    rng = random.Random(seed)
    log = MemoryLog()
    log.ensure_topics([TOPICS.metadata], TOPICS.partitions)
    sink = MetadataSink(tables)
    # runs whose history began before the view was opened: one param already logged, in the sink's tables
    old = [ev.RunData(run_id=f"old-{i}", params=[ev.Param(key="a", value="1")], tags=[]) for i in range(2)]
    writer = EventWriter(log, TOPICS)
    for event in [create("old-0"), create("old-1"), *old]:
        writer.emit(event)
    earlier = log.consumer("metadata", TOPICS.metadata)
    sink.write([Event(m, codec.decode(m.value)) for m in earlier.poll(0.1, 100)])

    view = RunStates(log.tail(TOPICS.metadata))
    view.start()
    try:
        sequence = random_events(rng)
        positions = [writer.emit(event) for event in sequence]
        # the sink: everything the consumer reads, in randomly cut batches
        pending: list[Message] = []
        while len(pending) < len(sequence):
            pending += earlier.poll(0.1, 1000)
        while pending:
            cut = rng.randint(1, 40)
            batch, pending = pending[:cut], pending[cut:]
            sink.write([Event(m, codec.decode(m.value)) for m in batch])
        wait_until(lambda: view.applied >= len(sequence))

        recorded = {
            (Partition(t, int(p)), int(o)): Decision(bool(ok), code, message, result)
            for t, p, o, ok, code, message, result in tables.query(
                "SELECT topic, log_partition, log_offset, ok, error_code, message, result FROM decisions"
            )
        }
        compared = refused = undecided = 0
        for event, (partition, offset) in zip(sequence, positions, strict=True):
            if not (isinstance(event, ev.RunData) and event.params):
                continue
            mine = view.decision(partition, offset, timeout=1.0)
            if event.run_id.startswith("old-"):
                assert mine is None, "the view decided for a run it did not see created"
                undecided += 1
                continue
            assert mine == recorded[(partition, offset)], (event, mine, recorded[(partition, offset)])
            compared += 1
            refused += not mine.ok
        assert compared > 100 and refused > 10 and undecided > 5, (compared, refused, undecided)
        assert view.healthy()
    finally:
        view.close()
        log.close()
