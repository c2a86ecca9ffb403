"""The sink contract: turn a batch of decoded events into store writes."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.codec import Decoded
from schemas.events import Event as Data
from trackstream.log import Message, Partition


@dataclass(frozen=True, slots=True)
class Event:
    """A decoded event with the log position it came from (its offset versions the rows it writes)."""

    message: Message
    decoded: Decoded

    @property
    def data(self) -> Data:
        """The typed event (``schemas/events.py``)."""
        return self.decoded.event


class Sink(abc.ABC):
    """Writes batches of events. ``write`` must be idempotent: the pipeline may repeat a batch
    (retry after an outage, or replay after a crash between write and commit).

    Raises :class:`trackstream.errors.StoreUnavailable` to have the same batch retried later, and
    :class:`trackstream.errors.StoreRejected` when the data itself is unacceptable.
    """

    name: str
    family: str  # the schema family this sink reads

    @abc.abstractmethod
    def rows(self, event: Event) -> int:
        """How many rows ``event`` adds to a batch (for flushing by size)."""

    @abc.abstractmethod
    def write(self, events: Sequence[Event]) -> None: ...

    def revoked(self, partitions: Sequence[Partition]) -> None:
        """``partitions`` moved to another member (a rebalance): forget anything kept about them."""
        return None
