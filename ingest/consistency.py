"""Read-your-writes through log offsets.

Before a read, the gateway notes the end offset of every partition the read depends on and waits
(bounded) until every consumer group that applies the topic has committed past it (a topic may feed
several sinks, each its own group; the runtime's sink registry says which). Consumers commit only after the
sink write, so a committed offset means the data is in the store — whichever replica acked the write.
Committed offsets only grow, so a cached value that already covers the end offset costs no query.

The same wait, for one partition and one offset, gives a gateway the outcome of an event it
produced itself (:class:`Outcomes`): once the metadata sink committed past it, its decision is in
the ``decisions`` table.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from ingest.errors import MlflowError, unavailable
from schemas.decisions import Decision
from schemas.events import Event, RunData
from trackstream.log import EventLog, LogUnavailable, Partition


class Barrier:
    def __init__(self, events: EventLog, groups: Mapping[str, Sequence[str]], timeout: float) -> None:
        self._log = events
        self._groups = groups  # topic -> consumer groups of the sinks that apply it (a read waits for all)
        self._timeout = timeout
        self._known: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def wait(self, topic: str, keys: Iterable[str] | None = None) -> None:
        """Wait until everything the partitions of ``keys`` (all partitions if None) held is applied."""
        try:
            if keys is None:
                parts = list(range(self._log.partitions(topic)))
            else:
                parts = sorted({self._log.partition_for(topic, k.encode()) for k in keys})
            self._wait(topic, self._log.end_offsets(topic, parts))
        except LogUnavailable as exc:
            raise unavailable(f"The event log is unreachable: {exc}") from exc

    def wait_applied(self, partition: Partition, offset: int) -> None:
        """Wait until the event at ``offset`` of ``partition`` is applied (its sink committed past it)."""
        try:
            self._wait(partition.topic, {partition.index: offset + 1})
        except LogUnavailable as exc:
            raise unavailable(f"The event log is unreachable: {exc}") from exc

    def _wait(self, topic: str, ends: dict[int, int]) -> None:
        """Wait until the group committed at least ``ends`` (partition -> offset) of ``topic``."""
        deadline = time.monotonic() + self._timeout
        delay = 0.002
        while True:
            behind = {p: e for p, e in ends.items() if e > self._known.get((topic, p), 0)}
            if not behind:
                return
            committed = self._committed(topic)
            with self._lock:
                for p, o in committed.items():
                    if o > self._known.get((topic, p), 0):
                        self._known[(topic, p)] = o
            if all(committed.get(p, 0) >= e for p, e in behind.items()):
                return
            if time.monotonic() >= deadline:
                raise unavailable(
                    f"The {topic} consumers have not yet applied recent writes "
                    f"(waited {self._timeout:.1f}s); retry shortly."
                )
            self._log.await_commit(max(0.0, min(delay, deadline - time.monotonic())))
            delay = min(delay * 2, 0.01)

    def _committed(self, topic: str) -> dict[int, int]:
        """Per partition, the offset every group of ``topic`` committed past (the least of them)."""
        least: dict[int, int] | None = None
        for group in self._groups[topic]:
            committed = self._log.committed(group, topic)
            least = dict(committed) if least is None else {p: min(o, committed.get(p, 0)) for p, o in least.items()}
        return least or {}


Lookup = Callable[[Partition, int], Decision | None]
# The decision on the event at (partition, offset); the event itself may be passed (see ViewFirst)
Outcome = Callable[[Partition, int, Event | None], Decision]


class Outcomes:
    """The decision on an event this gateway produced: wait until the metadata sink applied it (``wait``;
    None when the writer's after-produce hook already waited, as in embedded mode), then read it."""

    def __init__(self, lookup: Lookup, wait: Callable[[Partition, int], None] | None) -> None:
        self._lookup = lookup
        self._wait = wait

    def __call__(self, partition: Partition, offset: int, event: Event | None = None) -> Decision:
        if self._wait is not None:
            try:
                self._wait(partition, offset)
            except MlflowError as exc:
                raise unavailable(
                    "The write is in the log but its outcome is not known yet (the metadata consumers are "
                    f"behind); it may still be applied. Retry shortly. {exc.message}"
                ) from exc
        decision = self._lookup(partition, offset)
        if decision is None:
            raise unavailable(
                f"No decision recorded for {partition.topic}[{partition.index}]@{offset} although its sink "
                "committed past it; the write may or may not have been applied. Retry shortly."
            )
        return decision


# The gateway's log view (``ingest.runstates.RunStates.decision``): its decision on the event at
# (partition, offset) once its tail applied it, None when it does not decide that event; raises
# TimeoutError when the tail has not reached the event within the timeout.
ViewDecision = Callable[[Partition, int, float], Decision | None]


class ViewFirst:
    """The decision on an event this gateway produced, from the gateway's own log view when it decides it
    (params of a run whose whole history its tail applied: no store round trip, so it answers while
    ClickHouse is down), else from the sink's recorded decision (``sink``, an :class:`Outcomes`).

    Both compute the same decision with the same rule (``schemas.rules``) over the same log prefix. Events
    of other topics (a sink-decided family on its own topic) go to ``sink`` directly."""

    def __init__(
        self, view: ViewDecision, topic: str, sink: Callable[[Partition, int], Decision], timeout: float
    ) -> None:
        self._view = view
        self._topic = topic
        self._sink = sink
        self._timeout = timeout

    def __call__(self, partition: Partition, offset: int, event: Event | None = None) -> Decision:
        """``event``: what was produced there, when known; the view is asked only about events it may
        decide (params), so an experiment change never waits for the view's tail on top of the sink."""
        if partition.topic == self._topic and (event is None or (isinstance(event, RunData) and bool(event.params))):
            try:
                decision = self._view(partition, offset, self._timeout)
            except TimeoutError as exc:
                raise unavailable(
                    f"The write is in the log but its outcome is not known yet ({exc}; waited "
                    f"{self._timeout:.1f}s); it may still be applied. Retry shortly."
                ) from exc
            if decision is not None:
                return decision
        return self._sink(partition, offset)
