"""The consumer pipeline: poll → decode → batch → write → commit (the commit last).

Flush policy: a batch is written when it holds ``max_rows`` rows, when its oldest event is
``max_seconds`` old, or at once when a poll drained the log (the partition is idle), so
interactive clients see their data within milliseconds and busy ones get large inserts.

Failure policy (see docs/DESIGN.md); every store error is one of three named classes:
- undecodable message → dead-letter topic (sent with its batch, before the commit), offset advances;
- a message written with a newer schema than this worker knows (:class:`codec.NewerSchema`: a gateway
  upgraded before its consumers) → its partition is held at that message: nothing of it or after it is
  written, dead-lettered or committed, the partition is paused and :attr:`Pipeline.stalled` says why
  (health); the other partitions go on. An upgraded worker resumes from there (docs/DESIGN.md);
- StoreUnavailable → the batch is kept, the partitions are paused and the loop keeps polling (the
  member stays in its group), and the same batch is retried with capped backoff; nothing is
  committed meanwhile. A rebalance during the outage drops the revoked partitions' part of the
  batch uncommitted: their new owner re-reads it;
- StoreRejected → the batch is split, each event written alone, the rejected ones dead-lettered;
- StoreFailed or any other exception (nobody classified it) → the pipeline stops with
  :class:`WorkerFailed`, recorded in :attr:`Pipeline.failure` for health checks; nothing is committed;
- more dead letters than ``deadletter_max_ratio`` → :class:`TooManyDeadLetters`, the same stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from consumers.deadletter import DeadLetter, DeadLetters, TooManyDeadLetters
from consumers.sink import Event, Sink
from schemas import codec
from trackstream import metrics
from trackstream.errors import StoreRejected, StoreUnavailable, WorkerFailed
from trackstream.log import LogConsumer, LogUnavailable, Message, Partition

log = logging.getLogger(__name__)

__all__ = ["FlushPolicy", "Pipeline", "TooManyDeadLetters", "WorkerFailed"]


@dataclass(frozen=True, slots=True)
class FlushPolicy:
    max_rows: int = 50_000
    max_seconds: float = 0.5
    poll_records: int = 2_000
    min_seconds: float = 0.0  # a drained log flushes a batch once it is this old


@dataclass
class _Batch:
    events: list[Event] = field(default_factory=list)
    offsets: dict[Partition, int] = field(default_factory=dict)  # next offset to commit
    dead: list[DeadLetter] = field(default_factory=list)  # undecodable messages, sent before the commit
    rows: int = 0
    started: float = 0.0

    def advance(self, message: Message) -> None:
        if not self.offsets and not self.events:
            self.started = time.monotonic()
        self.offsets[message.partition] = message.offset + 1

    def drop(self, partitions: set[Partition]) -> None:
        """Forget what came from ``partitions`` (revoked): it is neither written nor committed here."""
        self.events = [e for e in self.events if e.message.partition not in partitions]
        self.dead = [d for d in self.dead if d.message.partition not in partitions]
        self.offsets = {p: o for p, o in self.offsets.items() if p not in partitions}


class Pipeline:
    def __init__(
        self,
        source: LogConsumer,
        sink: Sink,
        deadletters: DeadLetters,
        policy: FlushPolicy,
        backoff_cap: float = 5.0,
        codec_: codec.Codec = codec.DEFAULT,
    ) -> None:
        self._source = source
        self._sink = sink
        self._dead = deadletters
        self._policy = policy
        self._backoff_cap = backoff_cap
        self._codec = codec_
        # partitions held at a message this worker cannot read yet (newer schema): partition -> (offset, why)
        self._held: dict[Partition, tuple[int, str]] = {}
        self._batch = _Batch()
        self._stop = threading.Event()
        self.ready = threading.Event()  # set once the source holds partitions
        self._uncommitted: dict[Partition, int] = {}  # written, commit not yet accepted
        self.written_events = 0
        self.outage: StoreUnavailable | None = None  # set while a store is down and the partitions paused
        self._retry_at = 0.0
        self._delay = 0.0
        self.failure: WorkerFailed | None = None  # why the pipeline stopped on its own
        # for metrics and health (trackstream.metrics, trackstream.health)
        self.started = time.time()
        self.last_commit = 0.0  # time.time() of the last commit the log accepted
        self.beat = time.monotonic()  # the loop's last pass: liveness
        self.dead_letters = 0

    @property
    def name(self) -> str:
        return self._sink.name

    @property
    def stalled(self) -> str | None:
        """Why partitions are held (messages newer than this worker's schemas), or None."""
        if not self._held:
            return None
        parts = ", ".join(f"{p.topic}[{p.index}]" for p in sorted(self._held, key=lambda p: p.index))
        return f"the {self._sink.name} sink holds {parts}: {next(iter(self._held.values()))[1]}"

    @property
    def available(self) -> bool:
        return self.outage is None

    @property
    def held_partitions(self) -> int:
        return len(self._held)

    # -- the steps --
    def _hold(self, message: Message, exc: codec.NewerSchema) -> None:
        partition = message.partition
        self._held[partition] = (message.offset, f"{exc} (at offset {message.offset})")
        log.critical("%s: holding %s[%d] at offset %d: %s", self._sink.name, partition.topic, partition.index,
                     message.offset, exc)  # fmt: skip
        self._source.pause([partition])

    def _decode(self, message: Message) -> Event | None:
        try:
            decoded = self._codec.decode(message.value, message.headers)
        except codec.InvalidMessage as exc:
            self._batch.dead.append(DeadLetter(message, str(exc)))
            return None
        if decoded.family != self._sink.family:
            self._batch.dead.append(DeadLetter(message, f"{decoded.family} event on the {self._sink.name} topic"))
            return None
        return Event(message, decoded)

    def _add(self, messages: Sequence[Message]) -> None:
        for message in messages:
            held = self._held.get(message.partition)
            if held is not None:
                if message.offset > held[0]:
                    continue  # neither written nor committed: re-read from the held message after the upgrade
                del self._held[message.partition]  # read again from the commit (reassigned): decide afresh
            try:
                event = self._decode(message)
            except codec.NewerSchema as exc:
                self._hold(message, exc)
                continue
            self._batch.advance(message)
            if event is not None:
                self._batch.events.append(event)
                self._batch.rows += self._sink.rows(event)
                if self._batch.rows >= self._policy.max_rows and self.outage is None:
                    self.flush()
        self._dead.record(len(messages), pending=len(self._batch.dead))

    def _due(self, drained: bool) -> bool:
        b = self._batch
        if not b.offsets:
            return False
        age = time.monotonic() - b.started
        return (drained and age >= self._policy.min_seconds) or age >= self._policy.max_seconds

    def flush(self) -> bool:
        """Write the pending batch and send its dead letters, then commit its offsets.

        Returns False when a store (or the dead-letter topic) is unavailable: the batch is kept, the
        partitions are paused, and the loop retries it. Unclassified errors propagate.
        """
        batch = self._batch
        if not batch.offsets:
            self._recovered()
            return True
        rejected: list[DeadLetter] = []
        name = self._sink.name
        try:
            if batch.events:
                with metrics.timed(metrics.SINK_WRITE_DURATION, None, name):
                    self._write(batch.events, rejected)
            self._dead.send_all(batch.dead + rejected)
        except StoreUnavailable as exc:
            self._unavailable(exc)
            return False
        if batch.events:
            metrics.SINK_BATCH_ROWS.labels(name).observe(batch.rows)
        if dead := len(batch.dead) + len(rejected):
            self.dead_letters += dead
            metrics.SINK_DEAD_LETTERS.labels(name).inc(dead)
        self._commit(batch.offsets)
        self.written_events += len(batch.events)
        metrics.SINK_EVENTS.labels(name).inc(len(batch.events))
        self._batch = _Batch()
        self._recovered()
        return True

    def _commit(self, offsets: dict[Partition, int]) -> None:
        """Commit, or keep the offsets and retry on the next loop: the rows are written (and idempotent),
        so a commit the log did not take only delays read-your-writes until a retry succeeds."""
        self._uncommitted.update(offsets)
        try:
            self._source.commit(self._uncommitted)
        except LogUnavailable as exc:
            metrics.SINK_COMMIT_FAILURES.labels(self._sink.name).inc()
            log.warning("%s: commit not accepted, retrying: %s", self._sink.name, exc)
            return
        self._uncommitted = {}
        self.last_commit = time.time()
        metrics.SINK_COMMITS.labels(self._sink.name).inc()

    def _write(self, events: Sequence[Event], rejected: list[DeadLetter]) -> None:
        """Write ``events``; the ones the store rejects for good are appended to ``rejected``.
        StoreUnavailable and unclassified errors propagate (the whole batch is retried or the worker stops)."""
        try:
            self._sink.write(events)
        except StoreRejected as exc:
            if len(events) == 1:
                rejected.append(DeadLetter(events[0].message, f"rejected by the {self._sink.name} sink: {exc}"))
                return
            for event in events:  # isolate the rejected events; the others are written
                self._write([event], rejected)

    # -- backpressure: pause, keep polling, retry --
    def _unavailable(self, exc: StoreUnavailable) -> None:
        if self.outage is None:
            self._delay = 0.05
            log.warning("%s: store unavailable, pausing partitions and retrying: %s", self._sink.name, exc)
        else:
            self._delay = min(self._delay * 2, self._backoff_cap)
        metrics.SINK_RETRIES.labels(self._sink.name).inc()
        self.outage = exc
        self._retry_at = time.monotonic() + self._delay
        self._source.pause(sorted(self._source.assignment(), key=lambda p: p.index))

    def _recovered(self) -> None:
        if self.outage is None:
            return
        log.warning("%s: store available again, resuming", self._sink.name)
        self.outage = None
        self._source.resume(sorted((p for p in self._source.paused() if p not in self._held), key=lambda p: p.index))

    # -- the loop --
    def _keep_held(self) -> None:
        """Held partitions stay held across rebalances: kafka-python keeps the position (past the held
        message) and the pause of a partition a rebalance leaves with this member, so forgetting the hold
        would skip the held message. A partition another member got is forgotten once this member holds
        partitions again (its new owner reads it from the commit, i.e. from the held message); one read
        again here from the commit is decided afresh (``_add``)."""
        assignment = self._source.assignment()
        if assignment:
            for p in [p for p in self._held if p not in assignment]:
                del self._held[p]
        if held := [p for p in self._held if p in assignment and p not in self._source.paused()]:
            self._source.pause(sorted(held, key=lambda p: p.index))

    def run_once(self, timeout: float) -> None:
        self.beat = time.monotonic()
        if self._held:
            self._keep_held()
        if self._uncommitted:
            self._commit({})
        if self.outage is not None:
            # Poll while paused: heartbeats and max.poll.interval keep the member in its group. A rebalance
            # forgets pauses, so newly assigned partitions are paused again (what they already returned
            # joins the batch and is retried with it).
            self._source.pause(sorted(self._source.assignment(), key=lambda p: p.index))
            wait = min(timeout, max(0.0, self._retry_at - time.monotonic()))
            self._add(self._source.poll(wait, self._policy.poll_records))
            if time.monotonic() >= self._retry_at:
                self.flush()
            return
        messages = self._source.poll(timeout, self._policy.poll_records)
        if not self.ready.is_set() and self._source.assigned():
            self.ready.set()
        self._add(messages)
        if self._due(drained=len(messages) < self._policy.poll_records):
            self.flush()

    def _poll_timeout(self) -> float:
        if not self._batch.offsets or self.outage is not None:
            return 0.1
        age = time.monotonic() - self._batch.started
        return max(0.0, min(0.1, self._policy.min_seconds - age if age < self._policy.min_seconds else 0.1))

    def run(self) -> None:
        """Consume until :meth:`stop`; then flush (once: a store still down leaves the batch uncommitted
        for the next start), commit and close. An unclassified error stops it with :class:`WorkerFailed`."""
        try:
            while not self._stop.is_set():
                self.run_once(timeout=self._poll_timeout())
            self.flush()
        except Exception as exc:
            self.failure = WorkerFailed(self._sink.name, exc)
            log.critical("%s", self.failure, exc_info=exc)
            raise self.failure from exc
        finally:
            self._dead.close()
            self._source.close()

    def stop(self) -> None:
        self._stop.set()

    def on_revoke(self, partitions: Sequence[Partition]) -> None:
        """Rebalance: write and commit what we hold before the partitions move to another member. With the
        store down, the revoked partitions' part of the batch is dropped uncommitted (the new owner
        re-reads it); the rest stays for the retry."""
        gone = set(partitions)
        self._sink.revoked(partitions)
        if self.flush():
            return
        self._batch.drop(gone)
        self._batch.rows = sum(self._sink.rows(e) for e in self._batch.events)
        self._uncommitted = {p: o for p, o in self._uncommitted.items() if p not in gone}
