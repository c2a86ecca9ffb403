"""Assembles log, stores, sinks, consumers and gateway for one mode (the composition root, with
``trackstream.registry``, ``trackstream.assembly``, ``trackstream.cli`` and ``trackstream.replay``:
the only modules that see every layer; pyproject's import-linter contracts check it)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from consumers.deadletter import DeadLetters
from consumers.pipeline import FlushPolicy, Pipeline, WorkerFailed
from consumers.sink import Sink
from ingest.consistency import Barrier, Outcomes
from ingest.errors import unavailable
from ingest.handlers.context import Context
from ingest.runstates import RunStates
from ingest.writer import EventWriter
from schemas import codec
from trackstream import registry
from trackstream.log import EventLog, Partition
from trackstream.log.memory import MemoryLog
from trackstream.objects import ObjectStore
from trackstream.reads import TrackingReader
from trackstream.reads.registry import RegistryReader
from trackstream.settings import ConfigurationError, Mode, Settings
from trackstream.tables import TableStore

log = logging.getLogger(__name__)

SINKS = registry.NAMES


@dataclass
class Runtime:
    settings: Settings
    events: EventLog
    tables: TableStore
    objects: ObjectStore
    threads: list[threading.Thread] = field(default_factory=list)
    pipelines: list[Pipeline] = field(default_factory=list)
    # the gateway's run-state view, once tracking() built it; /health asks run_states.healthy()
    run_states: RunStates | None = None
    _closing: bool = False

    def topic(self, sink: str) -> str:
        return str(getattr(self.settings.topics, registry.spec(sink).topic))

    def group(self, sink: str) -> str:
        return f"{self.settings.consumer_group_prefix}-{registry.spec(sink).group_suffix}"

    def groups(self) -> dict[str, list[str]]:
        """Topic -> the consumer groups that apply it (every sink reading it): a read waits for all."""
        out: dict[str, list[str]] = {}
        for s in registry.SINKS:
            out.setdefault(self.topic(s.name), []).append(self.group(s.name))
        return out

    def sink(self, name: str) -> Sink:
        return registry.spec(name).make(self.tables, self.objects)

    def pipeline(self, name: str, codec_: codec.Codec = codec.DEFAULT) -> Pipeline:
        s = self.settings
        sink = self.sink(name)
        holder: list[Pipeline] = []
        source = self.events.consumer(self.group(name), self.topic(name), lambda parts: holder[0].on_revoke(parts))
        dead = DeadLetters(self.events, s.topics.deadletter, s.deadletter_max_ratio, s.deadletter_min_messages)
        pipe = Pipeline(
            source,
            sink,
            dead,
            FlushPolicy(s.batch_max_rows, s.batch_max_seconds, min_seconds=s.batch_min_seconds),
            codec_=codec_,
        )
        holder.append(pipe)
        return pipe

    def start_consumers(self) -> None:
        """Embedded mode: every registered sink's pipeline in a thread of this process."""
        for name in registry.names():
            pipe = self.pipeline(name)
            thread = threading.Thread(target=_run_logged, args=(pipe,), name=f"consume-{name}", daemon=True)
            thread.start()
            self.pipelines.append(pipe)
            self.threads.append(thread)

    def consumer_failure(self, topic: str | None = None) -> str | None:
        """Why an embedded consumer (of ``topic``, or any) stopped on its own; None while all run.

        A consumer thread that ended without :meth:`close` asking it to is a failure even without a
        recorded reason: the gateway must never look healthy in front of a dead consumer."""
        for pipe, thread in zip(self.pipelines, self.threads, strict=True):
            if topic is not None and self.topic(pipe.name) != topic:
                continue
            if pipe.failure is not None:
                return str(pipe.failure)
            if not thread.is_alive() and not self._closing:
                return f"the {pipe.name} sink worker exited"
        return None

    def _of(self, topic: str) -> list[Pipeline]:
        return [p for p in self.pipelines if self.topic(p.name) == topic]

    def health(self) -> list[str]:
        """Problems that make this process unhealthy (``/health`` answers 503 with them)."""
        problems = [failure] if (failure := self.consumer_failure()) else []
        problems += [stalled for pipe in self.pipelines if (stalled := pipe.stalled)]
        if self.run_states is not None and not self.run_states.healthy():
            problems.append(f"the run-state view stopped: {self.run_states.error}")
        return problems

    def wait_consumers_ready(self, timeout: float) -> None:
        """Block until every started pipeline holds its partitions (joined its consumer group)."""
        deadline = time.monotonic() + timeout
        for pipe in self.pipelines:
            if not pipe.ready.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"a consumer did not get partitions within {timeout}s")

    def tracking(self) -> Context:
        embedded = isinstance(self.events, MemoryLog)
        barrier = _ConsumersBarrier(self, self.events, self.groups(), self.settings.read_barrier_timeout)
        reader = TrackingReader(self.tables)
        states = self.run_states = RunStates(self.events.tail(self.settings.topics.metadata))
        states.start()
        # a decided event's outcome: embedded mode's after-produce hook already waited for the sink
        outcomes = Outcomes(reader.decision, None if embedded else barrier.wait_applied)
        writer = EventWriter(
            self.events,
            self.settings.topics,
            self._wait_applied if embedded else None,
            outcomes,
            on_metadata=states.observe,
        )
        return Context(writer, reader, barrier, self.settings.topics, states, registry=RegistryReader(self.tables))

    def _wait_applied(self, partition: Partition, offset: int) -> None:
        """Embedded acknowledgement: wait until the sink applied the write; answer 503 with the reason
        at once if that sink's worker stopped (it will not apply anything until the process restarts)."""
        assert isinstance(self.events, MemoryLog)
        waiting = list(self.groups()[partition.topic])
        deadline = time.monotonic() + self.settings.read_barrier_timeout
        while True:
            if failure := self.consumer_failure(partition.topic):
                raise unavailable(f"The write was not applied: {failure}. See the gateway log and restart it.")
            slice_ = min(0.25, deadline - time.monotonic())
            if slice_ > 0 and self.events.wait_committed(waiting[0], partition, offset, slice_):
                waiting.pop(0)
                if not waiting:
                    return
                continue
            if time.monotonic() >= deadline:
                why = next(
                    (f": {p.name} store unavailable ({p.outage})" for p in self._of(partition.topic) if p.outage), ""
                ) or next((f": {p.stalled}" for p in self._of(partition.topic) if p.stalled), "")
                raise unavailable(
                    f"The embedded consumers did not apply the write in time{why}; it may be applied later."
                )

    def close(self) -> None:
        self._closing = True
        if self.run_states is not None:
            self.run_states.close()
        for pipe in self.pipelines:
            pipe.stop()
        for thread in self.threads:
            thread.join(timeout=10)
        self.events.close()
        self.tables.close()


def _run_logged(pipe: Pipeline) -> None:
    """Thread target: the failure is recorded on the pipeline (and logged there); the thread just ends."""
    with contextlib.suppress(WorkerFailed):
        pipe.run()


class _ConsumersBarrier(Barrier):
    """Embedded reads: a stopped consumer answers 503 with its reason at once, not after the timeout."""

    def __init__(self, runtime: Runtime, events: EventLog, groups: dict[str, list[str]], timeout: float) -> None:
        super().__init__(events, groups, timeout)
        self._runtime = runtime

    def wait(self, topic: str, keys: Iterable[str] | None = None) -> None:
        if failure := self._runtime.consumer_failure(topic):
            raise unavailable(f"Reads of recent writes are unavailable: {failure}. See the gateway log.")
        super().wait(topic, keys)


def build(settings: Settings) -> Runtime:
    topics = settings.topics
    names = list(topics.names().values())
    if settings.mode is Mode.EMBEDDED:
        from trackstream.objects.local import LocalObjectStore
        from trackstream.tables.chdb import ChdbStore

        events: EventLog = MemoryLog()
        tables: TableStore = ChdbStore(settings.data_dir / "chdb")
        objects: ObjectStore = LocalObjectStore(settings.data_dir / "artifacts")
    else:
        from trackstream.log.kafka import KafkaLog
        from trackstream.objects.s3 import S3ObjectStore
        from trackstream.tables.clickhouse import ClickHouseStore

        assert settings.kafka_bootstrap and settings.clickhouse_url and settings.s3_endpoint
        assert settings.s3_access_key and settings.s3_secret_key
        timeouts = {
            "session_timeout_ms": settings.consumer_session_timeout_ms,
            "max_poll_interval_ms": settings.consumer_max_poll_interval_ms,
        }
        events = KafkaLog(settings.kafka_bootstrap, consumer_timeouts_ms=timeouts)
        tables = ClickHouseStore(settings.clickhouse_url)
        s3 = S3ObjectStore(
            settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key, settings.s3_bucket, settings.s3_region
        )
        s3.ensure_bucket()
        objects = s3
    if settings.create_topics:
        events.ensure_topics(names, topics.partitions)
    elif missing := events.missing_topics(names):
        events.close()
        raise ConfigurationError(
            f"topics {', '.join(missing)} do not exist and TRACKSTREAM_CREATE_TOPICS is false; create them "
            f"(one per event family, {topics.partitions} partitions) or let trackstream create them"
        )
    tables.migrate()
    return Runtime(settings, events, tables, objects)
