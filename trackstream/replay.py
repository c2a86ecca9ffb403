"""Rebuild the ClickHouse tables from the log: ``trackstream replay [--database NAME]``.

Every sink (metrics, metadata, artifacts) is run once more over its topic, from the earliest
retained offset, by a pipeline in a fresh consumer group (``<prefix>-replay-<hex>-<sink>``), until
that group has committed the end offsets captured when the replay began. The sinks are idempotent
(natural keys, ``_version`` = offset, objects put by key), so the rebuilt tables read the same as
tables built live.

Targets:
- default: the configured database, after ``TRUNCATE`` of every table of ``schemas/clickhouse``.
  The end offsets are captured after the truncation, so anything the live consumers applied before
  it is replayed; what they apply afterwards lands in the truncated tables as usual.
- ``--database NAME``: that database is created and migrated and the original is left intact,
  which makes the two comparable.

Kafka mode only: the in-process log of embedded mode keeps no history to replay.
Only what the topics still retain is replayed; a partition whose earliest offset is above 0 has lost
events to retention and the rebuilt tables miss them (a warning says so).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit, urlunsplit

from consumers.pipeline import Pipeline
from schemas import ddl
from trackstream import registry
from trackstream.runtime import Runtime
from trackstream.settings import Settings
from trackstream.tables import TableStore

log = logging.getLogger(__name__)

_TABLE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?`?(\w+)`?", re.IGNORECASE)
_DATABASE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Offsets = dict[int, int]  # partition -> offset
OffsetsReader = Callable[[str, Sequence[int]], Offsets]


class ReplayError(Exception):
    """The replay could not run or did not finish; the message says why."""


def table_names() -> list[str]:
    """Every table created by ``schemas/clickhouse/*.sql``, in DDL order."""
    names: list[str] = []
    for statement in ddl.statements():
        match = _TABLE.search(statement)
        if match:
            names.append(match.group(1))
    return names


def truncate_all(tables: TableStore) -> None:
    for name in table_names():
        tables.command(f"TRUNCATE TABLE IF EXISTS {name}")


def database_url(url: str, database: str) -> str:
    """``url`` (``clickhouse://user:pw@host:port/db?opts``) with its database replaced."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def check_database_name(name: str) -> str:
    if not _DATABASE.match(name):
        raise ReplayError(f"invalid database name {name!r}: use letters, digits and underscores")
    return name


def kafka_earliest_offsets(bootstrap: str) -> OffsetsReader:
    """A reader of the earliest retained offsets (the ``EventLog`` contract only knows end offsets)."""
    from kafka import KafkaAdminClient, TopicPartition
    from kafka.admin import OffsetSpec

    def read(topic: str, partitions: Sequence[int]) -> Offsets:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="trackstream-replay", request_timeout_ms=10_000)
        try:
            found = admin.list_partition_offsets({TopicPartition(topic, p): OffsetSpec.EARLIEST for p in partitions})
        finally:
            admin.close()
        return {tp.partition: info.offset for tp, info in found.items()}

    return read


def delete_kafka_groups(bootstrap: str, groups: Sequence[str]) -> None:
    """Best effort: the replay groups are of no use once the replay is over."""
    from kafka import KafkaAdminClient

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="trackstream-replay", request_timeout_ms=10_000)
        try:
            admin.delete_groups(list(groups))
        finally:
            admin.close()
    except Exception as exc:  # cleanup only
        log.warning("could not delete the replay consumer groups %s: %s", list(groups), exc)


@dataclass
class SinkProgress:
    sink: str
    topic: str
    group: str
    earliest: Offsets
    end: Offsets
    committed: Offsets = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(max(0, self.end[p] - self.earliest.get(p, 0)) for p in self.end)

    @property
    def done_events(self) -> int:
        out = 0
        for p, end in self.end.items():
            start = self.earliest.get(p, 0)
            out += max(0, min(self.committed.get(p, start), end) - start)
        return out

    @property
    def finished(self) -> bool:
        return all(self.committed.get(p, self.earliest.get(p, 0)) >= end for p, end in self.end.items())


@dataclass
class ReplayResult:
    sinks: list[SinkProgress]
    seconds: float

    @property
    def events(self) -> int:
        return sum(s.total for s in self.sinks)


def replay_runtime(runtime: Runtime, target: TableStore, group_prefix: str | None = None) -> Runtime:
    """A Runtime on the same log and objects whose sinks write to ``target`` under fresh consumer groups."""
    prefix = group_prefix or f"{runtime.settings.consumer_group_prefix}-replay-{uuid.uuid4().hex[:12]}"
    settings = runtime.settings.model_copy(update={"consumer_group_prefix": prefix})
    return replace(runtime, settings=settings, tables=target, threads=[], pipelines=[])


def replay(
    runtime: Runtime,
    earliest_offsets: OffsetsReader,
    *,
    progress: bool = True,
    timeout: float | None = None,
    poll_interval: float = 0.2,
    stall_seconds: float = 15.0,
) -> ReplayResult:
    """Run every sink of ``runtime`` (a :func:`replay_runtime`) from ``earliest_offsets`` to the current end.

    Blocks until each sink's group has committed the end offsets captured at the start, then stops
    the pipelines (which flush and close). A sink that makes no progress for ``stall_seconds`` gets a
    new pipeline in the same group. Raises :class:`ReplayError` if a pipeline fails or ``timeout``
    seconds pass.
    """
    from tqdm import tqdm

    began = time.monotonic()
    events = runtime.events
    sinks: list[SinkProgress] = []
    for name in registry.names():
        topic = runtime.topic(name)
        partitions = list(range(events.partitions(topic)))
        end = events.end_offsets(topic, partitions)
        earliest = earliest_offsets(topic, partitions)
        lost = {p: o for p, o in earliest.items() if o > 0}
        if lost:
            log.warning("topic %s no longer retains its first events (earliest offsets %s)", topic, lost)
        sinks.append(SinkProgress(name, topic, runtime.group(name), earliest, end))

    errors: list[BaseException] = []
    running: dict[str, tuple[Pipeline, threading.Thread]] = {}
    retired: list[tuple[Pipeline, threading.Thread]] = []
    progressed: dict[str, tuple[int, float]] = {}  # sink -> (events done, when that changed)

    def run(pipe: Pipeline, sink: str) -> None:
        try:
            pipe.run()
        except BaseException as exc:  # reported by the main thread, unless this pipeline was retired
            if not any(pipe is p for p, _ in retired):
                log.error("replay of the %s sink failed: %s", sink, exc)
                errors.append(exc)

    def start(s: SinkProgress) -> None:
        pipe = runtime.pipeline(s.sink)
        thread = threading.Thread(target=run, args=(pipe, s.sink), name=f"replay-{s.sink}", daemon=True)
        thread.start()
        running[s.sink] = (pipe, thread)
        progressed[s.sink] = (s.done_events, time.monotonic())

    for s in sinks:
        if not s.finished:
            start(s)

    bar = tqdm(total=sum(s.total for s in sinks), unit="event", desc="replay", disable=not progress)
    try:
        while True:
            now = time.monotonic()
            for s in sinks:
                if s.sink not in running or s.finished:
                    continue
                s.committed = events.committed(s.group, s.topic)
                if s.finished:
                    running[s.sink][0].stop()
                elif s.done_events != progressed[s.sink][0]:
                    progressed[s.sink] = (s.done_events, now)
                elif now - progressed[s.sink][1] > stall_seconds:
                    # A member can join before it knows the topic's partitions and stay without any; a new
                    # member of the same group resumes from the group's commits.
                    log.warning("replay of the %s sink made no progress in %.0fs; restarting it", s.sink, stall_seconds)
                    retired.append(running[s.sink])
                    running[s.sink][0].stop()
                    start(s)
            bar.update(sum(s.done_events for s in sinks) - bar.n)
            if errors:
                raise ReplayError(f"replay failed: {errors[0]}") from errors[0]
            if all(s.finished for s in sinks):
                break
            if timeout is not None and now - began > timeout:
                behind = {s.sink: (s.committed, s.end) for s in sinks if not s.finished}
                raise ReplayError(f"replay did not finish within {timeout:.0f}s; behind (committed, end): {behind}")
            time.sleep(poll_interval)
    finally:
        bar.close()
        for pipe, _ in [*running.values(), *retired]:
            pipe.stop()
        for _, thread in [*running.values(), *retired]:
            thread.join(timeout=30)
    if errors:
        raise ReplayError(f"replay failed: {errors[0]}") from errors[0]
    return ReplayResult(sinks, time.monotonic() - began)


def run_replay(
    settings: Settings, database: str | None = None, *, progress: bool = True, timeout: float | None = None
) -> ReplayResult:
    """The ``trackstream replay`` command: Kafka mode, ClickHouse server target (see the module doc)."""
    from trackstream.runtime import build
    from trackstream.settings import Mode
    from trackstream.tables.clickhouse import ClickHouseStore

    if settings.mode is not Mode.KAFKA:
        raise ReplayError(
            "needs TRACKSTREAM_MODE=kafka: embedded mode's in-process log keeps no history to replay "
            "(its tables in the data dir are the only copy)"
        )
    assert settings.clickhouse_url and settings.kafka_bootstrap  # checked by Settings in Kafka mode
    if database is not None:
        check_database_name(database)
    runtime = build(settings)  # creates the topics and migrates the configured database
    target: TableStore
    try:
        if database is None:
            target = runtime.tables
            truncate_all(target)
        else:
            runtime.tables.command(f"CREATE DATABASE IF NOT EXISTS {database}")
            target = ClickHouseStore(database_url(settings.clickhouse_url, database))
            target.migrate()
        worker = replay_runtime(runtime, target)
        try:
            return replay(worker, kafka_earliest_offsets(settings.kafka_bootstrap), progress=progress, timeout=timeout)
        finally:
            delete_kafka_groups(settings.kafka_bootstrap, [worker.group(s) for s in registry.names()])
            if target is not runtime.tables:
                target.close()
    finally:
        runtime.close()
