"""Events → the log. Mechanism only: encode, key, produce; the handlers decide what an event is.

One message per request batch, keyed by run (experiment events by experiment id, artifact events by
path), so all events of one entity land in one partition, in order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from starlette.concurrency import run_in_threadpool

from ingest.errors import unavailable
from schemas import codec
from trackstream.log import EventLog, LogUnavailable, Partition
from trackstream.settings import Topics

# Called after the log acknowledged a record; the embedded runtime uses it to hold the answer
# until the sink applied the record (its in-process log is not durable on its own).
AfterProduce = Callable[[Partition, int], None]
# Told of every metadata event the log acknowledged: (kind, body, offset). The run-state view listens.
MetadataObserver = Callable[[str, dict[str, Any], int], None]


class EventWriter:
    def __init__(
        self,
        events: EventLog,
        topics: Topics,
        after_produce: AfterProduce | None = None,
        on_metadata: MetadataObserver | None = None,
    ) -> None:
        self._log = events
        self._topics = topics
        self._after = after_produce
        self._on_metadata = on_metadata

    def _produce(self, topic: str, family: str, key: str, record: dict[str, Any]) -> int:
        payload = codec.encode(family, record)
        with _acknowledged():
            partition, offset = self._log.produce(topic, key.encode(), payload, (codec.header(family),))
        if self._after is not None:
            self._after(Partition(topic, partition), offset)
        return offset

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

    def metadata(self, key: str, kind: str, body: dict[str, Any]) -> None:
        offset = self._produce(self._topics.metadata, codec.METADATA, key, {"event": (f"trackstream.{kind}", body)})
        if self._on_metadata is not None:
            self._on_metadata(kind, body, offset)

    def artifact(self, record: dict[str, Any]) -> None:
        self._produce(self._topics.artifacts, codec.ARTIFACT, record["path"], record)


@contextlib.contextmanager
def _acknowledged() -> Iterator[None]:
    try:
        yield
    except LogUnavailable as exc:
        raise unavailable(f"The event log did not acknowledge the write; nothing was recorded. {exc}") from exc
