"""The embedded log, durable: :class:`MemoryLog` whose records are appended to files before ``produce``
returns, and whose groups' committed offsets are kept in a file.

So the embedded gateway acknowledges a write once it is in the log, as in Kafka mode, and its sinks apply
the log in batches behind it; a process that dies leaves the unapplied records on disk, and the next one
applies them. Before, the log was memory only, so the gateway waited for the sinks before every answer:
one chDB INSERT per table touched, 3-17 ms each whatever its size, serialized on one engine.

Layout under the directory: ``<topic>/<partition>/<base offset>.log`` segments of framed records, and
``committed.json`` (group -> topic -> partition -> next offset). A frame is ``<length u32><crc32 u32>``
then the body ``<offset u64><key length i32, -1: none><key><value length u32><value><header count u16>``
and each header ``<name length u16><name><value length u32><value>``; the CRC covers the body.
A record is fsynced (``fdatasync``, ~0.15 ms here) before ``produce`` returns and before any reader gets
it; producers that append while one fsync runs share the next (group commit). ``committed.json`` is
replaced (write, rename) after each commit without an fsync: chDB does not fsync its parts either, so
after a crash of the machine (not of the process) an offset file older than the tables only replays
records, which every sink applies idempotently; one newer than the tables cannot be ruled out there
(see docs/DESIGN.md, the embedded crash rows).

Segments roll at ``segment_bytes``; a segment is deleted once every group that reads its topic (those in
``committed.json`` too) and every open tail passed its last record. The active segment is never
deleted, so a partition's next offset is always on disk.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import orjson

from trackstream.log.base import Headers, LogConsumer, LogUnavailable, Message, Partition, Record, RevokeCallback
from trackstream.log.memory import MemoryLog, _Partition

log = logging.getLogger(__name__)

SEGMENT_BYTES = 64 << 20
HELD_BYTES = 16 << 20
"""Records the sinks have not applied are also held in memory, where they read them; past this many bytes of
them a write waits for the sinks (``room_timeout``, then it is refused: 503, nothing recorded). Before the
log was durable every write waited for its sink; this bounds the gateway's memory the same way while
letting writes run ahead of the sinks by a few batches."""
_FRAME = struct.Struct("<II")  # body length, crc32 of the body
_OFFSET = struct.Struct("<Q")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")


class LogCorrupted(Exception):
    """A record before the last one of a partition is unreadable: the files were damaged, not torn by a
    crash during an append (which only ever leaves the last record short)."""


def encode(offset: int, key: bytes | None, value: bytes, headers: Headers) -> bytes:
    parts = [_OFFSET.pack(offset), _I32.pack(-1 if key is None else len(key)), key or b"", _U32.pack(len(value)), value]
    parts.append(_U16.pack(len(headers)))
    for name, data in headers:
        raw = name.encode()
        parts += [_U16.pack(len(raw)), raw, _U32.pack(len(data)), data]
    body = b"".join(parts)
    return _FRAME.pack(len(body), zlib.crc32(body)) + body


def _decode(body: bytes, partition: Partition) -> Message:
    (offset,) = _OFFSET.unpack_from(body, 0)
    (key_len,) = _I32.unpack_from(body, 8)
    at = 12
    key = None if key_len < 0 else body[at : at + key_len]
    at += max(key_len, 0)
    (value_len,) = _U32.unpack_from(body, at)
    value = body[at + 4 : at + 4 + value_len]
    at += 4 + value_len
    (count,) = _U16.unpack_from(body, at)
    at += 2
    headers = []
    for _ in range(count):
        (name_len,) = _U16.unpack_from(body, at)
        name = body[at + 2 : at + 2 + name_len].decode()
        at += 2 + name_len
        (data_len,) = _U32.unpack_from(body, at)
        headers.append((name, body[at + 4 : at + 4 + data_len]))
        at += 4 + data_len
    return Message(partition, offset, key, value, tuple(headers))


def read_segment(path: Path, partition: Partition, last: bool) -> Iterator[Message]:
    """The records of one segment file. A short or damaged frame at the end of the ``last`` segment is
    an append the process died in (never acknowledged: the ack follows the fsync): the file is cut there."""
    with path.open("rb") as f:
        data = f.read()
    at = 0
    while at < len(data):
        good = at + _FRAME.size <= len(data)
        if good:
            length, crc = _FRAME.unpack_from(data, at)
            body = data[at + _FRAME.size : at + _FRAME.size + length]
            good = len(body) == length and zlib.crc32(body) == crc
        if not good:
            if not last:
                raise LogCorrupted(f"{path}: unreadable record at byte {at} of a segment that is not the last")
            log.warning("%s: dropping a torn last record (%d bytes at byte %d)", path, len(data) - at, at)
            with path.open("r+b") as f:
                f.truncate(at)
                os.fsync(f.fileno())
            return
        yield _decode(body, partition)
        at += _FRAME.size + length


class _Files:
    """One partition's segment files: the active one open for appends.

    Group commit: a record is written under the log's lock (``write``, a buffered write: microseconds) and
    made durable outside it (``sync``): one ``fdatasync`` covers every record written before it, so
    concurrent producers share it and nobody waits for the disk while holding the log."""

    def __init__(self, directory: Path, partition: Partition, base: int) -> None:
        self.directory = directory
        self.partition = partition
        directory.mkdir(parents=True, exist_ok=True)
        self.segments = sorted(int(p.stem) for p in directory.glob("*.log"))  # base offsets
        if not self.segments:
            self.segments = [base]
        self.active: BinaryIO | None = None
        self.retired: list[BinaryIO] = []  # rolled segments, closed by the next sync (one may be syncing)
        self.written = self.synced = 0  # the offsets after the last record written, after the last one synced
        self._sync_lock = threading.Lock()

    def path(self, base: int) -> Path:
        return self.directory / f"{base:020d}.log"

    def recover(self) -> Iterator[Message]:
        for i, base in enumerate(self.segments):
            if self.path(base).exists():
                yield from read_segment(self.path(base), self.partition, last=i == len(self.segments) - 1)

    def write(self, frame: bytes, next_offset: int, segment_bytes: int) -> None:
        """Under the log's lock: append a record (in the OS's cache until ``sync``)."""
        if self.active is None:
            self.active = self._open(self.segments[-1])
        self.active.write(frame)
        self.active.flush()
        self.written = next_offset
        if self.active.tell() >= segment_bytes:  # roll: the next record starts a new segment
            os.fdatasync(self.active.fileno())  # whole before the next one starts
            self.retired.append(self.active)
            self.segments.append(next_offset)
            self.active = self._open(next_offset)

    def sync(self, end: int) -> int:
        """Make every record before ``end`` durable; returns the offset it is durable to (>= ``end``)."""
        with self._sync_lock:
            if self.synced < end:
                target, active = self.written, self.active  # this order: a roll between them synced the old one
                assert active is not None
                os.fdatasync(active.fileno())
                self.synced = target
                while self.retired:
                    self.retired.pop().close()
            return self.synced

    def _open(self, base: int) -> BinaryIO:
        path = self.path(base)
        new = not path.exists()
        # readable by the gateway's user alone: the auth topic holds password hashes and token digests
        f = os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
        if new:  # the file's name must survive a crash of the machine too
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return f

    def drop_below(self, floor: int) -> None:
        """Delete the segments every record of which is below ``floor`` (never the active one)."""
        while len(self.segments) > 1 and self.segments[1] <= floor:
            self.path(self.segments.pop(0)).unlink(missing_ok=True)

    def close(self) -> None:
        with self._sync_lock:
            for f in (*self.retired, self.active):
                if f is not None:
                    f.close()
            self.retired.clear()
            self.active = None


class FileLog(MemoryLog):
    """``first_offset``: where a partition with nothing on disk starts (see :class:`MemoryLog`); a
    partition with segments continues after its last record. A topic no group reads (the auth topic, read
    whole by its view's tail) is kept whole and does not count towards ``held_bytes``."""

    def __init__(
        self,
        directory: Path,
        first_offset: int = 0,
        segment_bytes: int = SEGMENT_BYTES,
        held_bytes: int = HELD_BYTES,
        room_timeout: float = 10.0,
    ) -> None:
        super().__init__(first_offset)
        self._held_most = held_bytes
        self._room_timeout = room_timeout
        self._held: dict[Partition, int] = {}  # bytes of each partition's records in memory
        self._held_topics: set[str] = set()  # topics a group reads: their records wait for the sinks
        self._held_total = 0  # bytes in memory of those topics' partitions
        self._origins: dict[Partition, int] = {}  # each partition's first record kept at the start
        self._dir = directory
        self._segment_bytes = segment_bytes
        self._files: dict[Partition, _Files] = {}
        directory.mkdir(parents=True, exist_ok=True)
        self._offsets_file = directory / "committed.json"
        stored = _read_positions(self._offsets_file)
        self._committed.update(stored.get("committed", {}))
        # where each group stood when it joined, for the partitions it has not committed yet: a next process
        # keeps those records for it (``committed`` stays what the groups committed, as in Kafka)
        self._joined: dict[str, dict[Partition, int]] = stored.get("joined", {})

    def ensure_topics(
        self, topics: Sequence[str], partitions: int, configs: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        with self._cond:
            for topic in topics:
                if topic in self._topics:
                    continue
                stored = self._dir / topic
                count = len(list(stored.iterdir())) if stored.is_dir() else 0
                self._topics[topic] = [self._load(Partition(topic, i)) for i in range(max(partitions, count))]
                if self._readers_of(topic):
                    self._hold(topic)

    def _load(self, partition: Partition) -> _Partition:
        """The partition's records from its segments, those below every group's position left out."""
        files = _Files(self._dir / partition.topic / str(partition.index), partition, self._first)
        self._files[partition] = files
        floor = self._floor(partition)
        part = _Partition(base=files.segments[-1])  # nothing on disk: the active segment's base is next
        end = None
        for message in files.recover():
            end = message.offset + 1
            if message.offset >= floor:
                part.records.append(message)
        if part.records:
            part.base = part.records[0].offset
        elif end is not None:
            part.base = end
        part.durable = files.written = files.synced = part.end
        files.drop_below(floor)  # segments passed before the last process could delete them
        self._origins[partition] = part.base
        for positions in (*self._committed.values(), *self._joined.values()):  # nothing exists below the base
            if positions.get(partition, part.base) < part.base:
                positions[partition] = part.base
        self._held[partition] = sum(_size(m) for m in part.records)
        return part

    def _hold(self, topic: str) -> None:
        """Under the lock: ``topic``'s records count towards ``held_bytes`` from now on (a group reads it)."""
        if topic not in self._held_topics:
            self._held_topics.add(topic)
            self._held_total += sum(self._held[Partition(topic, i)] for i in range(len(self._topics[topic])))

    def _floor(self, partition: Partition) -> int:
        """The least position of the topic's groups on ``partition``; 0 (keep everything) when there are
        none, or when one of them never committed this partition (it reads it from its first record)."""
        positions = [self._position(g, partition) for g in self._readers_of(partition.topic)]
        if not positions or None in positions:
            return 0
        return min(p for p in positions if p is not None)

    def _position(self, group: str, partition: Partition) -> int | None:
        committed = self._committed.get(group, {}).get(partition)
        return committed if committed is not None else self._joined.get(group, {}).get(partition)

    def _origin(self, partition: Partition) -> int:
        return self._origins.get(partition, self._first)

    def produce(self, topic: str, key: bytes, value: bytes, headers: Headers = ()) -> tuple[int, int]:
        index, offset = super().produce(topic, key, value, headers)
        self._sync(Partition(topic, index), offset + 1)
        return index, offset

    def produce_all(self, records: Sequence[Record]) -> list[tuple[int, int]]:
        """Every record appended, then one fsync wait per partition for them all."""
        append = super().produce  # a comprehension's scope has no zero-argument super()
        positions = [append(*record) for record in records]
        ends: dict[Partition, int] = {}
        for (topic, *_), (index, offset) in zip(records, positions, strict=True):
            ends[Partition(topic, index)] = offset + 1
        for partition, end in ends.items():
            self._sync(partition, end)
        return positions

    async def produce_async(self, topic: str, key: bytes, value: bytes, headers: Headers = ()) -> tuple[int, int]:
        """Waiting for room off the event loop; the append and its fsync on it: the fsync holds no lock and
        costs less than a hop to a thread and back (measured: 0.7 ms more gateway CPU per log-batch)."""
        if self._held_total >= self._held_most:
            await asyncio.get_running_loop().run_in_executor(None, self._room)
        return self.produce(topic, key, value, headers)

    def _append(self, part: _Partition, message: Message) -> None:
        self._wait_room()
        files = self._files[message.partition]
        try:
            files.write(encode(message.offset, message.key, message.value, message.headers), message.offset + 1,
                        self._segment_bytes)  # fmt: skip
        except OSError as exc:  # nothing acknowledged; a partial frame is cut at the next start
            raise LogUnavailable(f"the embedded log could not write {self._dir}: {exc}") from exc
        part.records.append(message)  # readers get it once it is on disk (``_sync``)
        self._held[message.partition] += _size(message)
        if message.partition.topic in self._held_topics:
            self._held_total += _size(message)

    def _sync(self, partition: Partition, end: int) -> None:
        """Wait until the records of ``partition`` before ``end`` are on disk, then let readers have them."""
        try:
            durable = self._files[partition].sync(end)
        except OSError as exc:  # not acknowledged; readers get the record once a later fsync covers it
            raise LogUnavailable(f"the embedded log could not fsync {self._dir}: {exc}") from exc
        with self._cond:
            part = self._topics[partition.topic][partition.index]
            if part.durable is not None and durable > part.durable:
                part.durable = durable
                self._cond.notify_all()

    def _room(self) -> None:
        with self._cond:
            self._wait_room()

    def _wait_room(self) -> None:
        """Under the lock: wait until the records held for the sinks are below ``held_bytes``."""
        if self._held_total < self._held_most:
            return
        deadline = time.monotonic() + self._room_timeout
        while self._held_total >= self._held_most:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                raise LogUnavailable(
                    f"the embedded sinks have not applied {self._held_total >> 20} MB of acknowledged writes "
                    f"(waited {self._room_timeout:.0f}s); retry shortly"
                )
            self._cond.wait(remaining)

    def consumer(self, group: str, topic: str, on_revoke: RevokeCallback | None = None) -> LogConsumer:
        """A group that joins stands at the first record each partition keeps, recorded at once: a next
        process must keep what this group has not read even if it dies before its first commit."""
        with self._cond:
            parts = {Partition(topic, i): part.base for i, part in enumerate(self._topic(topic))}
            missing = {p: o for p, o in parts.items() if self._position(group, p) is None}
            if missing:
                self._joined.setdefault(group, {}).update(missing)
                self._save_positions()
            self._hold(topic)
        return super().consumer(group, topic, on_revoke)

    def _commit(self, group: str, offsets: dict[Partition, int]) -> None:
        super()._commit(group, offsets)
        self._save_positions()

    def _save_positions(self) -> None:
        data = {
            "committed": {g: _by_topic(c) for g, c in self._committed.items()},
            "joined": {g: _by_topic(c) for g, c in self._joined.items()},
        }
        tmp = self._offsets_file.with_suffix(".tmp")
        try:
            tmp.write_bytes(orjson.dumps(data))
            os.replace(tmp, self._offsets_file)
        except OSError as exc:  # the positions on disk stay older: the next start re-applies more, idempotently
            log.warning("could not record the consumers' positions in %s: %s", self._offsets_file, exc)

    def _readers_of(self, topic: str) -> set[str]:
        known = {g for m in (self._committed, self._joined) for g, c in m.items() if any(p.topic == topic for p in c)}
        return super()._readers_of(topic) | known

    def _dropped(self, partition: Partition, floor: int, gone: list[Message]) -> None:
        self._files[partition].drop_below(floor)
        size = sum(_size(m) for m in gone)
        self._held[partition] -= size
        if partition.topic in self._held_topics:
            self._held_total -= size

    def close(self) -> None:
        super().close()
        with self._cond:
            for files in self._files.values():
                files.close()


def _size(message: Message) -> int:
    return len(message.value) + len(message.key or b"")


def _by_topic(committed: dict[Partition, int]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for p, o in committed.items():
        out.setdefault(p.topic, {})[str(p.index)] = o
    return out


def _read_positions(path: Path) -> dict[str, dict[str, dict[Partition, int]]]:
    """ "committed" and "joined": group -> partition -> offset. An unreadable file (a machine crash between
    its write and its rename reaching the disk) counts as no positions: the sinks then re-apply what the
    segments hold."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except orjson.JSONDecodeError:
        log.warning("%s is unreadable; every group re-reads the log's retained records", path)
        return {}
    return {
        kind: {
            group: {Partition(t, int(i)): int(o) for t, parts in topics.items() for i, o in parts.items()}
            for group, topics in data.get(kind, {}).items()
        }
        for kind in ("committed", "joined")
    }
