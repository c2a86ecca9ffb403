"""Sinks named for their behaviour, over a MemoryLog."""

from __future__ import annotations

from collections.abc import Sequence

from consumers.sink import Event, Sink
from schemas.codec import METRICS
from trackstream.errors import StoreRejected, StoreUnavailable
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
