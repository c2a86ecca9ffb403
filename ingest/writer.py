"""Events → the log. Mechanism only: encode, key, produce; the handlers decide what an event is.

One message per request batch, keyed by run (experiment tags by experiment id, every experiment state
change by one constant key, artifact events by path), so all events of one entity land in one
partition, in order.

``decide`` produces an event that carries a rule and returns the metadata sink's decision on it
(docs/DESIGN.md, "Decided events"): the rule is decided where the events are ordered, not here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from starlette.concurrency import run_in_threadpool

from ingest.errors import MlflowError, unavailable
from schemas import codec
from schemas.decisions import Decision
from trackstream.log import EventLog, LogUnavailable, Partition
from trackstream.settings import Topics

# Called after the log acknowledged a record; the embedded runtime uses it to hold the answer
# until the sink applied the record (its in-process log is not durable on its own).
AfterProduce = Callable[[Partition, int], None]
# Told of every metadata event the log acknowledged: (kind, body, offset). The run-state view listens.
MetadataObserver = Callable[[str, dict[str, Any], int], None]
# Waits until the metadata sink applied the event at (partition, offset) and returns its decision;
# raises MlflowError TEMPORARILY_UNAVAILABLE past the read-barrier timeout (ingest/consistency.py).
Outcome = Callable[[Partition, int], Decision]


class EventWriter:
    def __init__(
        self,
        events: EventLog,
        topics: Topics,
        after_produce: AfterProduce | None = None,
        outcome: Outcome | None = None,
        on_metadata: MetadataObserver | None = None,
    ) -> None:
        self._log = events
        self._topics = topics
        self._after = after_produce
        self._outcome = outcome
        self._on_metadata = on_metadata

    def _produce(self, topic: str, family: str, key: str, record: dict[str, Any]) -> tuple[Partition, int]:
        payload = codec.encode(family, record)
        with _acknowledged():
            index, offset = self._log.produce(topic, key.encode(), payload, (codec.header(family),))
        partition = Partition(topic, index)
        if self._after is not None:
            self._after(partition, offset)
        return partition, offset

    async def metrics_async(self, record: dict[str, Any]) -> None:
        """A metric batch, awaited on the event loop: the hot path holds no thread while the log acks."""
        topic, family = self._topics.metrics, codec.METRICS
        payload = codec.encode(family, record)
        with _acknowledged():
            partition, offset = await self._log.produce_async(
                topic, record["run_id"].encode(), payload, (codec.header(family),)
            )
        if self._after is not None:
            await run_in_threadpool(self._after, Partition(topic, partition), offset)

    def metadata(self, key: str, kind: str, body: dict[str, Any]) -> tuple[Partition, int]:
        partition, offset = self._produce(
            self._topics.metadata, codec.METADATA, key, {"event": (f"trackstream.{kind}", body)}
        )
        if self._on_metadata is not None:
            self._on_metadata(kind, body, offset)
        return partition, offset

    def decide(self, key: str, kind: str, body: dict[str, Any]) -> str:
        """Produce a metadata event that carries a rule and wait for the sink's decision on it.

        Returns the decision's result payload, or raises the refusal as the MLflowError the stock
        server gives. If the decision does not come within the read-barrier timeout it raises 503
        TEMPORARILY_UNAVAILABLE: the event is in the log and will still be decided (docs/DESIGN.md).
        """
        if self._outcome is None:
            raise RuntimeError("EventWriter.decide needs an outcome reader (see trackstream/runtime.py)")
        partition, offset = self.metadata(key, kind, body)
        decision = self._outcome(partition, offset)
        if not decision.ok:
            raise MlflowError(decision.message, decision.error_code)
        return decision.result

    def artifact(self, record: dict[str, Any]) -> tuple[Partition, int]:
        return self._produce(self._topics.artifacts, codec.ARTIFACT, record["path"], record)


@contextlib.contextmanager
def _acknowledged() -> Iterator[None]:
    try:
        yield
    except LogUnavailable as exc:
        raise unavailable(f"The event log did not acknowledge the write; nothing was recorded. {exc}") from exc
