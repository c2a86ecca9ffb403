"""A rolling upgrade on real Kafka, in both orders, with two schema versions (this release's and a
test-only next release's, ``tests/upgrade/avro``): nothing is lost and nothing is dead-lettered.

- Gateways first: workers of this release meet messages of the next schema version. They hold those
  partitions (no dead letter, no commit past them; health says why) and keep applying everything
  else; the upgraded workers, in the same consumer groups, apply the rest.
- Consumers first: upgraded workers read this release's messages (schema resolution) and the next's.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from consumers.pipeline import Pipeline
from ingest.writer import EventWriter
from schemas import codec, events
from tests.conftest import SettingsFactory
from tests.upgrade.schemas import CURRENT, NEXT
from trackstream import assembly
from trackstream.log import EventLog, LogUnavailable
from trackstream.runtime import Runtime, build
from trackstream.settings import Settings
from trackstream.tables import TableStore

SINKS = ("metrics", "metadata")
RUNS = 8
POINTS = 50


class Workers:
    """Sink workers of one release, each pipeline in a thread (as ``trackstream consume`` runs it)."""

    def __init__(self, settings: Settings, codec_: codec.Codec) -> None:
        self.workers = [assembly.worker(settings, sink, codec_) for sink in SINKS]
        self.threads = [threading.Thread(target=w.pipeline.run, daemon=True) for w in self.workers]
        for thread in self.threads:
            thread.start()

    @property
    def pipelines(self) -> list[Pipeline]:
        return [w.pipeline for w in self.workers]

    def stop(self) -> None:
        for w in self.workers:
            w.pipeline.stop()
        for thread in self.threads:
            thread.join(timeout=30)
        for w in self.workers:
            w.close()
        assert all(p.failure is None for p in self.pipelines)


@pytest.fixture
def started() -> Iterator[list[Workers]]:
    running: list[Workers] = []
    yield running
    for workers in running:
        if any(t.is_alive() for t in workers.threads):
            workers.stop()


@pytest.fixture
def gateway_side(upgrade_settings: SettingsFactory) -> Iterator[Runtime]:
    """The gateways' log client and a store client to count with (both releases share the services)."""
    runtime = build(upgrade_settings())
    yield runtime
    runtime.close()


def produce(settings: Settings, log: EventLog) -> tuple[int, set[str]]:
    """Half the runs from a gateway of this release, half from one of the next, interleaved; returns
    the points acknowledged and the run ids."""
    gateways = [EventWriter(log, settings.topics, codec_=CURRENT), EventWriter(log, settings.topics, codec_=NEXT)]
    points, runs = 0, set()
    for i in range(RUNS):
        writer, run_id = gateways[i % 2], uuid.uuid4().hex
        state = events.RunState(run_id=run_id, experiment_id="0", run_name=f"run-{i}", user_id="u",
                                status="RUNNING", start_time=i, artifact_uri="a", lifecycle_stage="active")  # fmt: skip
        writer.emit(state)
        for b in range(3):
            batch = events.MetricBatch(run_id=run_id, key_names=["loss", "acc"],
                                       key_index=[j % 2 for j in range(POINTS)],
                                       values=[float(j) for j in range(POINTS)],
                                       timestamps=[1_700_000_000_000 + b] * POINTS,
                                       steps=[b * POINTS + j for j in range(POINTS)])  # fmt: skip
            writer.emit(batch)
            points += POINTS
        runs.add(run_id)
    return points, runs


def applied(log: EventLog, settings: Settings, group_of: dict[str, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending: dict[str, str] = {}
    while time.monotonic() < deadline:
        pending = {}
        for sink, group in group_of.items():
            topic = getattr(settings.topics, sink)
            try:
                ends = log.end_offsets(topic, list(range(log.partitions(topic))))
                committed = log.committed(group, topic)
            except LogUnavailable:
                pending[sink] = "log unavailable"
                continue
            if any(committed.get(p, 0) < e for p, e in ends.items()):
                pending[sink] = f"committed {committed}, ends {ends}"
        if not pending:
            return
        time.sleep(0.2)
    raise AssertionError(f"not applied in {timeout}s: {pending}")


def dead_lettered(log: EventLog, settings: Settings) -> int:
    topic = settings.topics.deadletter
    return sum(log.end_offsets(topic, list(range(log.partitions(topic)))).values())


def check_stored(tables: TableStore, points: int, runs: set[str]) -> None:
    ((rows, unique),) = tables.query(
        "SELECT count(), uniqExact(run_id, key, step, timestamp, value) FROM metrics FINAL WHERE run_id IN %(r)s",
        {"r": tuple(runs)},
    )
    assert rows == unique == points
    ((stored_runs,),) = tables.query("SELECT count() FROM runs FINAL WHERE run_id IN %(r)s", {"r": tuple(runs)})
    assert stored_runs == len(runs)


def test_gateways_first_workers_hold_newer_messages_and_upgraded_workers_apply_them(
    gateway_side: Runtime, started: list[Workers]
) -> None:
    settings, log = gateway_side.settings, gateway_side.events
    old = Workers(settings, CURRENT)
    started.append(old)
    groups = {sink: old.workers[i].runtime.group(sink) for i, sink in enumerate(SINKS)}
    points, runs = produce(settings, log)

    deadline = time.monotonic() + 60
    while not all(p.stalled for p in old.pipelines) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pipe in old.pipelines:
        assert pipe.stalled is not None and "upgrade this consumer" in pipe.stalled
    time.sleep(1.0)  # whatever the old workers could apply, they applied; still nothing dead-lettered
    assert dead_lettered(log, settings) == 0
    old.stop()

    new = Workers(settings, NEXT)
    started.append(new)
    applied(log, settings, groups, timeout=60)
    assert all(p.stalled is None for p in new.pipelines)
    assert dead_lettered(log, settings) == 0
    check_stored(gateway_side.tables, points, runs)
    new.stop()


def test_consumers_first_upgraded_workers_read_both_versions(gateway_side: Runtime, started: list[Workers]) -> None:
    settings, log = gateway_side.settings, gateway_side.events
    new = Workers(settings, NEXT)
    started.append(new)
    groups = {sink: new.workers[i].runtime.group(sink) for i, sink in enumerate(SINKS)}
    points, runs = produce(settings, log)
    applied(log, settings, groups, timeout=60)
    assert all(p.stalled is None for p in new.pipelines)
    assert dead_lettered(log, settings) == 0
    check_stored(gateway_side.tables, points, runs)
    new.stop()
