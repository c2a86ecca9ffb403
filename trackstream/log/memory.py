"""In-process log for unit tests, and the memory of the embedded mode's durable log
(``trackstream.log.file``): partitions are lists, groups are dicts. Not durable by itself.
Records below every group's committed offset and every open tail's position are dropped so memory stays
bounded (an open tail that is never polled therefore holds its topic's records).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from trackstream.log.base import EventLog, Headers, LogConsumer, LogTail, Message, Partition, RevokeCallback


@dataclass
class _Partition:
    base: int = 0  # offset of records[0]
    records: list[Message] = field(default_factory=list)
    durable: int | None = None  # readers stop here when set: the records after it are not on disk yet

    @property
    def end(self) -> int:
        return self.base + len(self.records)

    @property
    def readable(self) -> int:
        return self.end if self.durable is None else self.durable


class MemoryLog(EventLog):
    """``first_offset``: where every partition starts. The embedded runtime starts a new process's log above
    every offset its tables hold, because offsets version rows and key decisions: a log restarting at 0
    would write rows older than the previous process's and find its recorded decisions at new events'
    positions. Nothing exists below it, so it also counts as committed by every group."""

    def __init__(self, first_offset: int = 0) -> None:
        self._first = first_offset
        self._cond = threading.Condition()
        self._topics: dict[str, list[_Partition]] = {}
        self._committed: dict[str, dict[Partition, int]] = {}
        self._closed = False
        # groups that read each topic: a record is dropped once all of them committed it
        self._readers: dict[str, set[str]] = {}
        # open tails by topic: they hold records too, until they read them
        self._tails: dict[str, set[_MemoryTail]] = {}

    def ensure_topics(
        self, topics: Sequence[str], partitions: int, configs: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        with self._cond:
            for topic in topics:
                self._topics.setdefault(topic, [_Partition(base=self._first) for _ in range(partitions)])

    def missing_topics(self, topics: Sequence[str]) -> list[str]:
        with self._cond:
            return [t for t in topics if t not in self._topics]

    def partitions(self, topic: str) -> int:
        return len(self._topic(topic))

    def _topic(self, topic: str) -> list[_Partition]:
        try:
            return self._topics[topic]
        except KeyError:
            raise KeyError(f"unknown topic {topic!r}") from None

    def produce(self, topic: str, key: bytes, value: bytes, headers: Headers = ()) -> tuple[int, int]:
        with self._cond:
            index = self.partition_for(topic, key)
            part = self._topic(topic)[index]
            message = Message(Partition(topic, index), part.end, key, value, headers)
            self._append(part, message)
            return index, message.offset

    async def produce_async(self, topic: str, key: bytes, value: bytes, headers: Headers = ()) -> tuple[int, int]:
        return self.produce(topic, key, value, headers)  # an append under a lock: nothing to wait for

    def end_offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        with self._cond:
            parts = self._topic(topic)
            return {p: parts[p].end for p in partitions}

    def start_offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        with self._cond:
            parts = self._topic(topic)
            return {p: parts[p].base for p in partitions}

    def committed(self, group: str, topic: str) -> dict[int, int]:
        with self._cond:
            out = {i: o for i in range(len(self._topic(topic))) if (o := self._origin(Partition(topic, i)))}
            out.update({p.index: o for p, o in self._committed.get(group, {}).items() if p.topic == topic})
            return out

    def consumer(self, group: str, topic: str, on_revoke: RevokeCallback | None = None) -> LogConsumer:
        return _MemoryConsumer(self, group, topic)

    def await_commit(self, timeout: float) -> None:
        with self._cond:  # woken by commits (and by appends: the caller looks again either way)
            if not self._closed:
                self._cond.wait(timeout)

    def tail(self, topic: str, from_start: bool = False) -> LogTail:
        return _MemoryTail(self, topic, from_start)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- used by _MemoryConsumer, under self._cond --
    def _read(
        self, topic: str, positions: dict[int, int], max_records: int, paused: set[int] | frozenset[int] = frozenset()
    ) -> list[Message]:
        out: list[Message] = []
        for index, part in enumerate(self._topic(topic)):
            if index in paused:
                continue
            start = max(positions.get(index, part.base), part.base)  # nothing exists below the base
            if start < part.readable:
                first = start - part.base
                chunk = part.records[first : min(first + max_records - len(out), part.readable - part.base)]
                out.extend(chunk)
                positions[index] = start + len(chunk)
            if len(out) >= max_records:
                break
        return out

    def _commit(self, group: str, offsets: dict[Partition, int]) -> None:
        committed = self._committed.setdefault(group, {})
        for partition, offset in offsets.items():
            committed[partition] = max(committed.get(partition, self._origin(partition)), offset)
        self._trim(offsets)
        self._cond.notify_all()

    def _trim(self, offsets: dict[Partition, int]) -> None:
        for partition in offsets:
            readers = self._readers_of(partition.topic)
            origin = self._origin(partition)
            floor = min((self._committed.get(g, {}).get(partition, origin) for g in readers), default=origin)
            for tail in self._tails.get(partition.topic, ()):
                floor = min(floor, tail.positions[partition.index])
            part = self._topics[partition.topic][partition.index]
            drop = floor - part.base
            if drop > 0:
                gone = part.records[:drop]
                del part.records[:drop]
                part.base = floor
                self._dropped(partition, floor, gone)

    def _origin(self, partition: Partition) -> int:
        """Where a group that never committed ``partition`` stands: nothing exists below it for anyone."""
        return self._first

    def _readers_of(self, topic: str) -> set[str]:
        """The groups whose positions hold ``topic``'s records."""
        return self._readers.get(topic, set())

    def _append(self, part: _Partition, message: Message) -> None:
        """Under the lock: add ``message`` to ``part`` and wake its readers (a durable subclass writes it
        out too, and wakes the readers once it is on disk)."""
        part.records.append(message)
        self._cond.notify_all()

    def _dropped(self, partition: Partition, floor: int, gone: list[Message]) -> None:
        """``gone``, every record of ``partition`` below ``floor``, was dropped (a durable subclass deletes
        its files)."""


class _MemoryConsumer(LogConsumer):
    def __init__(self, log: MemoryLog, group: str, topic: str) -> None:
        self._log = log
        self._group = group
        self._topic = topic
        self._paused: set[int] = set()
        with log._cond:
            log._readers.setdefault(topic, set()).add(group)
            self._positions = {p.index: o for p, o in log._committed.get(group, {}).items() if p.topic == topic}

    def poll(self, timeout: float, max_records: int) -> list[Message]:
        deadline = time.monotonic() + timeout
        with self._log._cond:
            while True:
                out = self._log._read(self._topic, self._positions, max_records, self._paused)
                remaining = deadline - time.monotonic()
                if out or remaining <= 0 or self._log._closed:
                    return out
                self._log._cond.wait(remaining)

    def commit(self, offsets: dict[Partition, int]) -> None:
        with self._log._cond:
            self._log._commit(self._group, offsets)

    def assignment(self) -> set[Partition]:
        return {Partition(self._topic, i) for i in range(self._log.partitions(self._topic))}

    def pause(self, partitions: Sequence[Partition]) -> None:
        with self._log._cond:
            self._paused.update(p.index for p in partitions if p.topic == self._topic)

    def resume(self, partitions: Sequence[Partition]) -> None:
        with self._log._cond:
            self._paused.difference_update(p.index for p in partitions)
            self._log._cond.notify_all()

    def paused(self) -> set[Partition]:
        return {Partition(self._topic, i) for i in self._paused}

    def close(self) -> None:
        pass


class _MemoryTail(LogTail):
    def __init__(self, log: MemoryLog, topic: str, from_start: bool = False) -> None:
        self._log = log
        self._topic = topic
        with log._cond:
            self.positions = {index: 0 if from_start else part.end for index, part in enumerate(log._topic(topic))}
            log._tails.setdefault(topic, set()).add(self)

    def poll(self, timeout: float, max_records: int) -> list[Message]:
        deadline = time.monotonic() + timeout
        with self._log._cond:
            while True:
                out = self._log._read(self._topic, self.positions, max_records)
                remaining = deadline - time.monotonic()
                if out or remaining <= 0 or self._log._closed:
                    return out
                self._log._cond.wait(remaining)

    def close(self) -> None:
        with self._log._cond:
            self._log._tails.get(self._topic, set()).discard(self)
