"""Event log contract shared by the Kafka and the in-process implementations."""

from __future__ import annotations

import abc
import asyncio
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from kafka.partitioner.default import murmur2

Headers = tuple[tuple[str, bytes], ...]
Record = tuple[str, bytes, bytes, Headers]
"""A record to produce: (topic, key, value, headers)."""


class LogUnavailable(Exception):
    """The log did not acknowledge a write or answer a query in time; nothing was acknowledged."""


@dataclass(frozen=True, slots=True)
class Partition:
    topic: str
    index: int


@dataclass(frozen=True, slots=True)
class Message:
    """One record read from the log; ``offset + 1`` is what committing it makes durable."""

    partition: Partition
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers = ()

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def partition_for_key(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), so both implementations place a key alike."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


RevokeCallback = Callable[[Sequence[Partition]], None]


class LogConsumer(abc.ABC):
    """A member of one consumer group reading one topic."""

    @abc.abstractmethod
    def poll(self, timeout: float, max_records: int) -> list[Message]:
        """Block up to ``timeout`` seconds; return what arrived (possibly nothing)."""

    @abc.abstractmethod
    def commit(self, offsets: dict[Partition, int]) -> None:
        """Make ``offsets`` (next offset to read, per partition) the group's position. Synchronous."""

    def assigned(self) -> bool:
        """Whether this member holds partitions yet (a Kafka member has none until the group assigns some)."""
        return True

    # Backpressure: a member whose store is down pauses its partitions and keeps polling, so it stays
    # in its group (heartbeats, max.poll.interval) however long the outage lasts.
    @abc.abstractmethod
    def assignment(self) -> set[Partition]:
        """The partitions this member holds now (changes at a rebalance)."""

    @abc.abstractmethod
    def pause(self, partitions: Sequence[Partition]) -> None:
        """Stop fetching ``partitions``: ``poll`` returns none of their records (those not yet returned are
        read again after :meth:`resume`) but still serves the group. A rebalance forgets pauses: a
        partition assigned anew is fetched until paused again."""

    @abc.abstractmethod
    def resume(self, partitions: Sequence[Partition]) -> None:
        """Fetch ``partitions`` again from the position after the last record ``poll`` returned."""

    @abc.abstractmethod
    def paused(self) -> set[Partition]: ...

    @abc.abstractmethod
    def close(self) -> None: ...


class LogTail(abc.ABC):
    """Every partition of one topic, read from where the log ended when the tail was opened, in offset
    order per partition. No consumer group and no commits: a tail observes, it never takes a share of a
    group's partitions nor holds back anyone's position. Records produced after :meth:`EventLog.tail`
    returned are all seen (a tail that fell behind a Kafka topic's retention resumes at the oldest kept
    record)."""

    @abc.abstractmethod
    def poll(self, timeout: float, max_records: int) -> list[Message]:
        """Block up to ``timeout`` seconds; return what arrived (possibly nothing). A log that is briefly
        unreachable is an empty poll, not an error."""

    @abc.abstractmethod
    def close(self) -> None: ...


class EventLog(abc.ABC):
    """Produce, consume and observe positions.

    ``produce`` returns only once the log acknowledged the record as durable (Kafka: acks=all);
    it raises :class:`LogUnavailable` otherwise and the caller must not acknowledge anything.
    """

    @abc.abstractmethod
    def ensure_topics(
        self, topics: Sequence[str], partitions: int, configs: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        """Create the topics that do not exist yet (idempotent); ``configs``: topic configs by topic
        name, for topics created with other settings than the broker's defaults (e.g. kept forever)."""

    @abc.abstractmethod
    def missing_topics(self, topics: Sequence[str]) -> list[str]:
        """The topics among ``topics`` that do not exist (never creates any)."""

    @abc.abstractmethod
    def partitions(self, topic: str) -> int: ...

    @abc.abstractmethod
    def produce(self, topic: str, key: bytes, value: bytes, headers: Headers = ()) -> tuple[int, int]:
        """Append one record keyed by ``key``; returns ``(partition, offset)`` once durable."""

    def produce_all(self, records: Sequence[Record]) -> list[tuple[int, int]]:
        """Append several ``(topic, key, value, headers)`` records, in order; their ``(partition, offset)``
        once all are durable. The default produces them one after the other; a log that can have them in
        flight together overrides it (one round trip instead of one each). If it raises, some of the
        records may be durable: the caller acknowledges none of them."""
        return [self.produce(*record) for record in records]

    async def produce_async(self, topic: str, key: bytes, value: bytes, headers: Headers = ()) -> tuple[int, int]:
        """:meth:`produce` for an event loop. The default holds an executor thread while it waits;
        implementations override it to wait without one (a thread per in-flight write, and the GIL
        hand-offs between it and the loop, cost the gateway more CPU than the rest of a log-batch)."""
        call = functools.partial(self.produce, topic, key, value, headers)
        return await asyncio.get_running_loop().run_in_executor(None, call)

    @abc.abstractmethod
    def end_offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """Offset the next record of each partition will get."""

    @abc.abstractmethod
    def start_offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """Offset of the first record each partition still holds (its end when it holds none): where a
        reader from the start begins (not 0 for an embedded log started above its tables' offsets)."""

    @abc.abstractmethod
    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offsets for ``topic`` (partitions never committed are absent)."""

    @abc.abstractmethod
    def consumer(self, group: str, topic: str, on_revoke: RevokeCallback | None = None) -> LogConsumer:
        """Join ``group``; ``on_revoke`` runs on the polling thread when a rebalance took partitions away
        (write what is held there; a commit for partitions that moved is refused, and they are re-read)."""

    def await_commit(self, timeout: float) -> None:
        """Block for at most ``timeout`` seconds, or until a group may have committed: a poller of
        :meth:`committed` calls it between looks. The default sleeps (a remote log's commits are seen only
        by asking); an in-process log wakes its waiters at the commit."""
        time.sleep(timeout)

    @abc.abstractmethod
    def tail(self, topic: str, from_start: bool = False) -> LogTail:
        """Open a :class:`LogTail` of ``topic`` positioned at its current end (resolved before returning),
        or with ``from_start`` at its oldest kept record (a view rebuilt from the whole topic)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def partition_for(self, topic: str, key: bytes) -> int:
        return partition_for_key(key, self.partitions(topic))
