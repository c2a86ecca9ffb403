"""Assembles log, stores, sinks, consumers and gateway for one mode (the composition root, with
``trackstream.registry``, ``trackstream.assembly``, ``trackstream.cli`` and ``trackstream.replay``:
the only modules that see every layer; pyproject's import-linter contracts check it)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from consumers.deadletter import DeadLetters
from consumers.metadata import DECIDED_VERSION_BASE
from consumers.pipeline import FlushPolicy, Pipeline, WorkerFailed
from consumers.sink import Sink
from ingest.auth.credentials import hash_password
from ingest.auth.guard import Guard
from ingest.auth.view import AuthView, import_journal
from ingest.consistency import Barrier, Outcomes, ViewFirst
from ingest.errors import MlflowError, unavailable
from ingest.handlers.context import Context
from ingest.runstates import RunStates
from ingest.writer import EventWriter
from schemas import codec
from schemas.events import AuthChange
from trackstream import metrics, registry
from trackstream.health import Dependencies
from trackstream.log import EventLog, LogConsumer, LogTail, Partition
from trackstream.log.base import Headers, Record, RevokeCallback
from trackstream.log.file import FileLog
from trackstream.objects import ObjectStore
from trackstream.reads import TrackingReader
from trackstream.reads.registry import RegistryReader
from trackstream.settings import ConfigurationError, Mode, Settings
from trackstream.tables import TableStore

log = logging.getLogger(__name__)

SINKS = registry.NAMES
AUTH_START_TIMEOUT = 30.0  # seconds a starting gateway may take to read the whole auth topic


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
    # users, tokens and permissions, once tracking() built them (auth on); /health asks auth.healthy()
    auth: AuthView | None = None
    _closing: bool = False
    _dependencies: Dependencies | None = None

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
            self.track(pipe)

    def track(self, pipe: Pipeline) -> None:
        """Export ``pipe``'s lag, last-commit age and store availability (``trackstream.metrics``)."""
        topic, group = self.topic(pipe.name), self.group(pipe.name)

        def positions() -> tuple[dict[int, int], dict[int, int]]:
            ends = self.events.end_offsets(topic, list(range(self.events.partitions(topic))))
            return ends, self.events.committed(group, topic)

        metrics.label_values([pipe.name])
        metrics.SINKS.track(pipe, topic, positions)

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

    def pipelines_of(self, topic: str) -> list[Pipeline]:
        return [p for p in self.pipelines if self.topic(p.name) == topic]

    def health(self) -> list[str]:
        """Problems that make this process unhealthy (``/health`` answers 503 with them)."""
        problems = [failure] if (failure := self.consumer_failure()) else []
        problems += [stalled for pipe in self.pipelines if (stalled := pipe.stalled)]
        if self.run_states is not None and not self.run_states.healthy():
            problems.append(f"the run-state view stopped: {self.run_states.error}")
        if self.auth is not None and not self.auth.healthy():
            problems.append(f"the auth view stopped: {self.auth.error}")
        return problems

    def liveness(self) -> list[str]:
        """Problems a restart of this process fixes (a stopped consumer thread or run-state view)."""
        return self.health()

    def readiness(self) -> list[str]:
        """Problems that make this process unfit for traffic now: :meth:`liveness`'s, a service it
        depends on (log, tables, object store) not answering, an embedded consumer without its
        partitions yet or paused by a store outage."""
        if self._dependencies is None:
            topic = self.settings.topics.metadata
            self._dependencies = Dependencies(self.events, self.tables, self.objects, topic)
        problems = self.liveness() + self._dependencies.problems()
        for pipe in self.pipelines:
            if not pipe.ready.is_set():
                problems.append(f"the {pipe.name} consumer holds no partitions yet")
            elif pipe.outage is not None:
                problems.append(f"the {pipe.name} sink's store is unavailable: {pipe.outage}")
        return problems

    def before_scrape(self) -> None:
        if self.run_states is not None:
            metrics.ACTIVE_RUNS.set(len(self.run_states))

    def wait_consumers_ready(self, timeout: float) -> None:
        """Block until every started pipeline holds its partitions (joined its consumer group)."""
        deadline = time.monotonic() + timeout
        for pipe in self.pipelines:
            if not pipe.ready.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"a consumer did not get partitions within {timeout}s")

    def tracking(self) -> Context:
        barrier = _ConsumersBarrier(self, self.events, self.groups(), self.settings.read_barrier_timeout)
        reader = TrackingReader(self.tables)
        states = self.run_states = RunStates(self.events.tail(self.settings.topics.metadata))
        states.start()
        # a decided event's outcome: the run-state view's, which its tail decides in log order, where it
        # decides it; else the sink's, once it applied the event
        sink_outcomes = Outcomes(reader.decision, barrier.wait_applied)
        timeout = self.settings.read_barrier_timeout
        outcomes = ViewFirst(states.decision, self.settings.topics.metadata, sink_outcomes, timeout)
        writer = EventWriter(
            _TimedLog(self.events),
            self.settings.topics,
            outcomes,
            on_metadata=states.observe,
        )
        return Context(
            writer,
            reader,
            barrier,
            self.settings.topics,
            states,
            guard=self._guard(),
            registry=RegistryReader(self.tables),
        )

    def _guard(self) -> Guard | None:
        """Auth on: the auth view, caught up with the whole auth topic, and the initial admin (docs/DESIGN.md,
        failure states 65-69). A view that cannot read the topic stops start-up: serving with an empty view
        would refuse every user."""
        s = self.settings
        if not s.auth_enabled:
            return None
        view = self.auth = AuthView(self.events, s.topics.auth, s.read_barrier_timeout)
        view.start()
        if not view.catch_up(AUTH_START_TIMEOUT):
            raise ConfigurationError(
                f"the auth view could not read the auth topic {s.topics.auth!r} within {AUTH_START_TIMEOUT}s"
                f"{': ' + view.error if view.error else ''}; is the event log reachable?"
            )
        if view.user(s.auth_admin_username) is None:
            if s.auth_admin_password is None:
                raise ConfigurationError(
                    f"auth is on and the user {s.auth_admin_username!r} does not exist yet: set "
                    "TRACKSTREAM_AUTH_ADMIN_PASSWORD (or MLFLOW_AUTH_ADMIN_PASSWORD) for the initial admin"
                )
            admin = AuthChange(
                op="create_user",
                username=s.auth_admin_username,
                password_hash=hash_password(s.auth_admin_password.get_secret_value()),
                is_admin=True,
                time=int(time.time() * 1000),
            )
            with contextlib.suppress(MlflowError):  # another replica created it first: the log decided
                view.write(admin)
        return Guard(view, s.auth_default_permission, s.auth_token_max_ttl_seconds)

    def close(self) -> None:
        self._closing = True
        metrics.SINKS.untrack(self.pipelines)
        if self._dependencies is not None:
            self._dependencies.close()
        if self.run_states is not None:
            self.run_states.close()
        if self.auth is not None:
            self.auth.close()
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
    """Embedded reads: a stopped consumer answers 503 with its reason at once, not after the timeout; a
    wait that times out names a store outage or a stall of the topic's consumers (which Kafka mode's
    gateway cannot see: its consumers are other processes)."""

    def __init__(self, runtime: Runtime, events: EventLog, groups: dict[str, list[str]], timeout: float) -> None:
        super().__init__(events, groups, timeout)
        self._runtime = runtime

    def wait(self, topic: str, keys: Iterable[str] | None = None) -> None:
        if failure := self._runtime.consumer_failure(topic):
            raise unavailable(f"Reads of recent writes are unavailable: {failure}. See the gateway log.")
        with metrics.timed(metrics.BARRIER_WAIT, metrics.BARRIER_TIMEOUTS, topic), self._why(topic):
            super().wait(topic, keys)

    def wait_applied(self, partition: Partition, offset: int) -> None:
        if failure := self._runtime.consumer_failure(partition.topic):
            raise unavailable(f"The write is in the log but its sink stopped: {failure}. See the gateway log.")
        with self._why(partition.topic):
            super().wait_applied(partition, offset)

    @contextlib.contextmanager
    def _why(self, topic: str) -> Iterator[None]:
        try:
            yield
        except MlflowError as exc:
            pipes = self._runtime.pipelines_of(topic)
            why = next((f"{p.name} store unavailable ({p.outage})" for p in pipes if p.outage), None)
            why = why or next((p.stalled for p in pipes if p.stalled), None)
            if exc.error_code != "TEMPORARILY_UNAVAILABLE" or why is None:
                raise
            raise unavailable(f"{exc.message} The {topic} consumers are held: {why}") from exc


class _TimedLog(EventLog):
    """The gateway's log as its writer sees it: every produce timed (``trackstream_produce_duration_seconds``),
    every unacknowledged one counted; the rest passes through."""

    def __init__(self, inner: EventLog) -> None:
        self._inner = inner

    def produce(self, topic: str, key: bytes, value: bytes, headers: Headers = ()) -> tuple[int, int]:
        with metrics.timed(metrics.PRODUCE_DURATION, metrics.PRODUCE_FAILURES, topic):
            return self._inner.produce(topic, key, value, headers)

    def produce_all(self, records: Sequence[Record]) -> list[tuple[int, int]]:
        """Timed as one produce, under the first record's topic (the writer sends one entity's events)."""
        if not records:
            return []
        with metrics.timed(metrics.PRODUCE_DURATION, metrics.PRODUCE_FAILURES, records[0][0]):
            return self._inner.produce_all(records)

    async def produce_async(self, topic: str, key: bytes, value: bytes, headers: Headers = ()) -> tuple[int, int]:
        with metrics.timed(metrics.PRODUCE_DURATION, metrics.PRODUCE_FAILURES, topic):
            return await self._inner.produce_async(topic, key, value, headers)

    def ensure_topics(
        self, topics: Sequence[str], partitions: int, configs: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        self._inner.ensure_topics(topics, partitions, configs)

    def missing_topics(self, topics: Sequence[str]) -> list[str]:
        return self._inner.missing_topics(topics)

    def partitions(self, topic: str) -> int:
        return self._inner.partitions(topic)

    def partition_for(self, topic: str, key: bytes) -> int:
        return self._inner.partition_for(topic, key)

    def end_offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        return self._inner.end_offsets(topic, partitions)

    def start_offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        return self._inner.start_offsets(topic, partitions)

    def committed(self, group: str, topic: str) -> dict[int, int]:
        return self._inner.committed(group, topic)

    def consumer(self, group: str, topic: str, on_revoke: RevokeCallback | None = None) -> LogConsumer:
        return self._inner.consumer(group, topic, on_revoke)

    def await_commit(self, timeout: float) -> None:
        self._inner.await_commit(timeout)

    def tail(self, topic: str, from_start: bool = False) -> LogTail:
        return self._inner.tail(topic, from_start)

    def close(self) -> None:
        self._inner.close()


def resume_offset(tables: TableStore) -> int:
    """Embedded mode: where a partition with nothing on disk starts, above every log offset the tables hold
    (row versions, recorded decisions; see ``MemoryLog``). One ``max`` per versioned table at start-up."""
    high = -1
    versioned = tables.query("SELECT DISTINCT table FROM system.columns WHERE database = currentDatabase() "
                             "AND name = '_version'")  # fmt: skip
    for (table,) in versioned:
        ((top, rows),) = tables.query(f"SELECT max(_version), count() FROM {table}")
        if rows:
            high = max(high, int(top) % DECIDED_VERSION_BASE)  # experiment rows of decided events: + 2^48
    ((top, rows),) = tables.query("SELECT max(log_offset), count() FROM decisions")
    return max(high, int(top) if rows else -1) + 1


def build(settings: Settings) -> Runtime:
    topics = settings.topics
    names = list(topics.names().values())
    if settings.mode is Mode.EMBEDDED:
        from trackstream.objects.local import LocalObjectStore
        from trackstream.tables.chdb import ChdbStore

        tables: TableStore = ChdbStore(settings.data_dir / "chdb")
        tables.migrate()
        events: EventLog = FileLog(
            settings.data_dir / "log", first_offset=resume_offset(tables), room_timeout=settings.read_barrier_timeout
        )
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
        configs = {getattr(topics, name): dict(c) for name, c in topics.CONFIGS.items()}
        events.ensure_topics(names, topics.partitions, configs)
    elif missing := events.missing_topics(names):
        events.close()
        raise ConfigurationError(
            f"topics {', '.join(missing)} do not exist and TRACKSTREAM_CREATE_TOPICS is false; create them "
            f"(one per event family, {topics.partitions} partitions) or let trackstream create them"
        )
    if settings.mode is Mode.EMBEDDED:  # the auth journal of a data directory from before the durable log
        import_journal(events, topics.auth, settings.data_dir / "auth" / "changes.avro")
    tables.migrate()
    return Runtime(settings, events, tables, objects)
