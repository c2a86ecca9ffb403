"""The consumer pipeline: poll → decode → batch → write → commit (the commit last).

Flush policy: a batch is written when it holds ``max_rows`` rows, when its oldest event is
``max_seconds`` old, or at once when a poll drained the log (the partition is idle), so
interactive clients see their data within milliseconds and busy ones get large inserts.

Failure policy (see docs/DESIGN.md):
- undecodable message → dead-letter topic, offset advances;
- StoreUnavailable → the same batch is retried with capped backoff; nothing is committed meanwhile;
- StoreRejected → the batch is split, each event written alone, the rejected ones dead-lettered;
- more dead letters than ``deadletter_max_ratio`` → :class:`TooManyDeadLetters`, the consumer stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from consumers.deadletter import DeadLetters, TooManyDeadLetters
from consumers.sink import Event, Sink
from schemas import codec
from trackstream.errors import StoreRejected, StoreUnavailable
from trackstream.log import LogConsumer, LogUnavailable, Message, Partition

log = logging.getLogger(__name__)

__all__ = ["FlushPolicy", "Pipeline", "TooManyDeadLetters"]


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
    rows: int = 0
    started: float = 0.0

    def advance(self, message: Message) -> None:
        if not self.offsets and not self.events:
            self.started = time.monotonic()
        self.offsets[message.partition] = message.offset + 1


class Pipeline:
    def __init__(
        self,
        source: LogConsumer,
        sink: Sink,
        deadletters: DeadLetters,
        policy: FlushPolicy,
        backoff_cap: float = 5.0,
    ) -> None:
        self._source = source
        self._sink = sink
        self._dead = deadletters
        self._policy = policy
        self._backoff_cap = backoff_cap
        self._batch = _Batch()
        self._stop = threading.Event()
        self.ready = threading.Event()  # set once the source holds partitions
        self._uncommitted: dict[Partition, int] = {}  # written, commit not yet accepted
        self.written_events = 0

    # -- the steps --
    def _decode(self, message: Message) -> Event | None:
        try:
            decoded = codec.decode(message.value)
        except codec.InvalidMessage as exc:
            self._dead.send(message, str(exc))
            return None
        if decoded.family != self._sink.family:
            self._dead.send(message, f"{decoded.family} event on the {self._sink.name} topic")
            return None
        return Event(message, decoded)

    def _add(self, messages: Sequence[Message]) -> None:
        for message in messages:
            self._batch.advance(message)
            event = self._decode(message)
            if event is not None:
                self._batch.events.append(event)
                self._batch.rows += self._sink.rows(event)
                if self._batch.rows >= self._policy.max_rows:
                    self.flush()
        self._dead.record(len(messages))

    def _due(self, drained: bool) -> bool:
        b = self._batch
        if not b.offsets:
            return False
        age = time.monotonic() - b.started
        return (drained and age >= self._policy.min_seconds) or age >= self._policy.max_seconds

    def flush(self) -> None:
        """Write the pending batch (retrying outages) and then commit its offsets."""
        batch = self._batch
        if not batch.offsets:
            return
        if batch.events:
            self._write(batch.events)
        self._commit(batch.offsets)
        self.written_events += len(batch.events)
        self._batch = _Batch()

    def _commit(self, offsets: dict[Partition, int]) -> None:
        """Commit, or keep the offsets and retry on the next loop: the rows are written (and idempotent),
        so a commit the log did not take only delays read-your-writes until a retry succeeds."""
        self._uncommitted.update(offsets)
        try:
            self._source.commit(self._uncommitted)
        except LogUnavailable as exc:
            log.warning("%s: commit not accepted, retrying: %s", self._sink.name, exc)
            return
        self._uncommitted = {}

    def _write(self, events: Sequence[Event]) -> None:
        delay = 0.05
        while True:
            try:
                self._sink.write(events)
                return
            except StoreUnavailable as exc:
                if self._stop.is_set():
                    raise
                log.warning("%s sink unavailable, retrying in %.2fs: %s", self._sink.name, delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, self._backoff_cap)
            except StoreRejected as exc:
                if len(events) == 1:
                    self._dead.send(events[0].message, f"rejected by the {self._sink.name} sink: {exc}")
                    return
                for event in events:  # isolate the rejected events; the others are written
                    self._write([event])
                return

    # -- the loop --
    def run_once(self, timeout: float) -> None:
        if self._uncommitted:
            self._commit({})
        messages = self._source.poll(timeout, self._policy.poll_records)
        if not self.ready.is_set() and self._source.assigned():
            self.ready.set()
        self._add(messages)
        if self._due(drained=len(messages) < self._policy.poll_records):
            self.flush()

    def _poll_timeout(self) -> float:
        if not self._batch.offsets:
            return 0.1
        age = time.monotonic() - self._batch.started
        return max(0.0, min(0.1, self._policy.min_seconds - age if age < self._policy.min_seconds else 0.1))

    def run(self) -> None:
        """Consume until :meth:`stop`; then flush, commit and close."""
        try:
            while not self._stop.is_set():
                self.run_once(timeout=self._poll_timeout())
            self.flush()
        finally:
            self._source.close()

    def stop(self) -> None:
        self._stop.set()

    def on_revoke(self, partitions: Sequence[Partition]) -> None:
        """Rebalance: write and commit what we hold before the partitions move to another member."""
        self.flush()
