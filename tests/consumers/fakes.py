"""Sinks named for their behaviour, over a MemoryLog."""

from __future__ import annotations

import time
from collections.abc import Sequence

from consumers.sink import Event, Sink
from schemas.codec import METRICS
from trackstream.errors import StoreRejected, StoreUnavailable
from trackstream.log import LogConsumer, LogUnavailable, Message, Partition
from trackstream.log.base import Headers
from trackstream.log.memory import MemoryLog


class RecordingSink(Sink):
    """Accepts everything; remembers each written batch."""

    name = "recording"
    family = METRICS

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []

    def rows(self, event: Event) -> int:
        return len(event.decoded.record["keys"])

    def write(self, events: Sequence[Event]) -> None:
        self.batches.append(list(events))

    @property
    def written(self) -> list[Event]:
        return [e for batch in self.batches for e in batch]


class FailingSink(RecordingSink):
    """Unavailable for the first ``failures`` writes, then fine. Records what was committed at each failure."""

    def __init__(self, log: MemoryLog, group: str, topic: str, failures: int) -> None:
        super().__init__()
        self._log, self._group, self._topic = log, group, topic
        self.failures_left = failures
        self.committed_during_failures: list[dict[int, int]] = []

    def write(self, events: Sequence[Event]) -> None:
        if self.failures_left:
            self.failures_left -= 1
            self.committed_during_failures.append(self._log.committed(self._group, self._topic))
            raise StoreUnavailable("store is down")
        super().write(events)


class RejectingSink(RecordingSink):
    """Rejects any batch holding an event of ``poisoned_run``; writes batches without it."""

    def __init__(self, poisoned_run: str) -> None:
        super().__init__()
        self._poisoned = poisoned_run

    def write(self, events: Sequence[Event]) -> None:
        if any(e.decoded.record["run_id"] == self._poisoned for e in events):
            raise StoreRejected(f"run {self._poisoned} has a value the store cannot take")
        super().write(events)


class BrokenSink(RecordingSink):
    """Fails every write with an error no store classifies (a bug, a broken disk)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def write(self, events: Sequence[Event]) -> None:
        raise self.error


class DownUntilToldSink(RecordingSink):
    """Unavailable until :attr:`up` is set; counts the attempts."""

    def __init__(self) -> None:
        super().__init__()
        self.up = False
        self.attempts = 0

    def write(self, events: Sequence[Event]) -> None:
        self.attempts += 1
        if not self.up:
            raise StoreUnavailable("store is down")
        super().write(events)


class PollCountingConsumer(LogConsumer):
    """Passes everything to a real consumer and counts the polls (a Kafka member must keep polling)."""

    def __init__(self, inner: LogConsumer) -> None:
        self.inner = inner
        self.polls = 0

    def poll(self, timeout: float, max_records: int) -> list[Message]:
        self.polls += 1
        return self.inner.poll(timeout, max_records)

    def commit(self, offsets: dict[Partition, int]) -> None:
        self.inner.commit(offsets)

    def assignment(self) -> set[Partition]:
        return self.inner.assignment()

    def pause(self, partitions: Sequence[Partition]) -> None:
        self.inner.pause(partitions)

    def resume(self, partitions: Sequence[Partition]) -> None:
        self.inner.resume(partitions)

    def paused(self) -> set[Partition]:
        return self.inner.paused()

    def close(self) -> None:
        self.inner.close()


class UnacknowledgingLog(MemoryLog):
    """A MemoryLog whose ``topic`` hangs ``hang`` seconds and then refuses every produce while :attr:`down`."""

    def __init__(self, topic: str, hang: float) -> None:
        super().__init__()
        self._down_topic = topic
        self._hang = hang
        self.down = True

    def produce(self, topic: str, key: bytes, value: bytes, headers: Headers = ()) -> tuple[int, int]:
        if topic == self._down_topic and self.down:
            time.sleep(self._hang)
            raise LogUnavailable("not acknowledged (test)")
        return super().produce(topic, key, value, headers)
