"""Events → the log. Mechanism only: encode, key, produce; the handlers decide what an event is.

An event's type names its family, so its topic, and its key (``schemas/events.py``): all events of
one entity land in one partition, in order (a run's by run id, experiment tags by experiment id,
every experiment state change by one constant key, logged models by model id, artifacts by path).
One message per request batch.

``decide`` produces an event that carries a rule and returns the metadata sink's decision on it
(docs/DESIGN.md, "Decided events"): the rule is decided where the events are ordered, not here.

``metadata(key, kind, body)``, ``decide(key, kind, body)``, ``artifact(record)`` and
``metrics_async(record)`` are the dict forms of ``emit``/``decide``/``emit_async``, kept for the
handlers not yet converted: each builds the typed event and goes the same way (the key is derived from
the event; the one given must agree with it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ingest.errors import MlflowError, unavailable
from schemas import codec, events
from schemas.decisions import Decision
from schemas.events import Event
from trackstream.log import EventLog, LogUnavailable, Partition
from trackstream.settings import Topics

# Told of every metadata event the log acknowledged: (kind, body, offset). The run-state view listens.
MetadataObserver = Callable[[str, dict[str, Any], int], None]
# The decision on the event produced at (partition, offset) (the event is passed along): the gateway's log
# view's or the metadata sink's once it applied it; raises MlflowError TEMPORARILY_UNAVAILABLE past the
# read-barrier timeout (ingest/consistency.py).
Outcome = Callable[[Partition, int, Event | None], Decision]


class EventWriter:
    def __init__(
        self,
        events_: EventLog,
        topics: Topics,
        outcome: Outcome | None = None,
        on_metadata: MetadataObserver | None = None,
        codec_: codec.Codec = codec.DEFAULT,
    ) -> None:
        self._log = events_
        self._topics = topics
        self._outcome = outcome
        self._on_metadata = on_metadata
        self._codec = codec_

    def _topic(self, event: Event) -> str:
        return self._topics.of_family(event.FAMILY)

    def emit(self, event: Event) -> tuple[Partition, int]:
        """Produce ``event`` on its family's topic, keyed by its entity; returns its log position once
        the log acknowledged it (503 TEMPORARILY_UNAVAILABLE when it did not: nothing was recorded)."""
        return self.emit_all([event])[0]

    def emit_all(self, events_: Sequence[Event]) -> list[tuple[Partition, int]]:
        """``emit`` of several events, in order, all in flight at once: one acknowledgement round trip.
        A 503 means none of them is acknowledged to the client, though some may be in the log (as a
        retried request's would be)."""
        records = [
            (self._topic(e), e.key.encode(), self._codec.encode_event(e), (self._codec.header(e.FAMILY),))
            for e in events_
        ]
        with _acknowledged():
            positions = [self._log.produce(*records[0])] if len(records) == 1 else self._log.produce_all(records)
        out = []
        for event, (topic, *_), (index, offset) in zip(events_, records, positions, strict=True):
            if self._on_metadata is not None and event.FAMILY == events.METADATA:
                self._on_metadata(type(event).__name__, events.to_dict(event), offset)
            out.append((Partition(topic, index), offset))
        return out

    async def emit_async(self, event: Event) -> None:
        """``emit`` awaited on the event loop (metric batches): the hot path holds no thread while the log acks."""
        topic, family = self._topic(event), event.FAMILY
        payload = self._codec.encode_event(event)
        with _acknowledged():
            await self._log.produce_async(topic, event.key.encode(), payload, (self._codec.header(family),))

    def decide(self, event: Event | str, kind: str | None = None, body: Mapping[str, Any] | None = None) -> str:
        """Produce an event that carries a rule and wait for the metadata sink's decision on it.

        Returns the decision's result payload, or raises the refusal as the MLflowError the stock
        server gives. If the decision does not come within the read-barrier timeout it raises 503
        TEMPORARILY_UNAVAILABLE: the event is in the log and will still be decided (docs/DESIGN.md).
        ``decide(key, kind, body)`` is the dict form.
        """
        if isinstance(event, str):
            assert kind is not None and body is not None, "decide(key, kind, body)"
            event = _keyed(event, events.metadata_event(kind, body))
        if self._outcome is None:
            raise RuntimeError("EventWriter.decide needs an outcome reader (see trackstream/runtime.py)")
        partition, offset = self.emit(event)
        decision = self._outcome(partition, offset, event)
        if not decision.ok:
            raise MlflowError(decision.message, decision.error_code)
        return decision.result

    # -- the dict forms (adapters for handlers not yet converted to typed events) --
    async def metrics_async(self, record: Mapping[str, Any]) -> None:
        await self.emit_async(events.from_dict(events.MetricBatch, record))

    def metadata(self, key: str, kind: str, body: Mapping[str, Any]) -> tuple[Partition, int]:
        return self.emit(_keyed(key, events.metadata_event(kind, body)))

    def artifact(self, record: Mapping[str, Any]) -> tuple[Partition, int]:
        return self.emit(events.from_dict(events.ArtifactEvent, record))


def _keyed(key: str, event: Event) -> Event:
    if key != event.key:
        raise ValueError(f"{type(event).__name__} is keyed by {event.key!r}, not {key!r}")
    return event


@contextlib.contextmanager
def _acknowledged() -> Iterator[None]:
    try:
        yield
    except LogUnavailable as exc:
        raise unavailable(f"The event log did not acknowledge the write; nothing was recorded. {exc}") from exc
