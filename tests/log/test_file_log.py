"""The embedded mode's durable log: what a new process finds after the previous one ended or died."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from trackstream.log.base import LogUnavailable, Message, Partition
from trackstream.log.file import FileLog, LogCorrupted, encode

TOPIC = "t"


def _open(path: Path, first_offset: int = 0, segment_bytes: int = 1 << 20) -> FileLog:
    log = FileLog(path, first_offset=first_offset, segment_bytes=segment_bytes)
    log.ensure_topics([TOPIC, "auth"], 1)
    return log


def _drain(log: FileLog, group: str) -> list[Message]:
    consumer = log.consumer(group, TOPIC)
    out: list[Message] = []
    while batch := consumer.poll(0.05, 1000):
        out.extend(batch)
    return out


def _segments(path: Path) -> list[Path]:
    return sorted((path / TOPIC / "0").glob("*.log"))


def test_acknowledged_records_and_positions_survive_a_new_process(tmp_path: Path) -> None:
    log = _open(tmp_path)
    offsets = [log.produce(TOPIC, b"k", f"v{i}".encode(), (("schema", b"s"),))[1] for i in range(10)]
    consumer = log.consumer("applied", TOPIC)
    first = consumer.poll(0.1, 4)
    consumer.commit({Partition(TOPIC, 0): first[-1].offset + 1})
    log.produce("auth", b"k", b"kept")  # a topic no group reads
    # no close: a process that died keeps what produce acknowledged, and the positions committed

    log = _open(tmp_path)
    assert offsets == list(range(10))
    rest = _drain(log, "applied")
    assert [m.value for m in rest] == [f"v{i}".encode() for i in range(4, 10)]
    assert rest[0].headers == (("schema", b"s"),) and rest[0].key == b"k"
    assert log.committed("applied", TOPIC) == {0: 4}
    assert log.produce(TOPIC, b"k", b"next") == (0, 10)  # offsets go on after the last record
    assert [m.value for m in log.tail("auth", from_start=True).poll(0.1, 10)] == [b"kept"]  # kept whole
    assert all(p.stat().st_mode & 0o077 == 0 for p in (tmp_path / "auth" / "0").glob("*.log"))  # secrets in it


def test_a_torn_last_record_is_cut_and_the_offsets_go_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = _open(tmp_path)
    for i in range(3):
        log.produce(TOPIC, b"k", f"v{i}".encode())
    log.close()
    (segment,) = _segments(tmp_path)
    whole = segment.stat().st_size
    with segment.open("ab") as f:  # the process died in the middle of an append (never acknowledged)
        f.write(encode(3, b"k", b"v3", ())[:-2])

    with caplog.at_level(logging.WARNING):
        log = _open(tmp_path)
    assert "torn last record" in caplog.text
    assert segment.stat().st_size == whole
    assert [m.value for m in _drain(log, "g")] == [b"v0", b"v1", b"v2"]
    assert log.produce(TOPIC, b"k", b"v3") == (0, 3)
    log.close()
    assert [m.value for m in _drain(_open(tmp_path), "g")] == [b"v0", b"v1", b"v2", b"v3"]


def test_damage_before_the_last_segment_stops_the_start(tmp_path: Path) -> None:
    log = _open(tmp_path, segment_bytes=100)
    for i in range(6):
        log.produce(TOPIC, b"k", b"x" * 100 + bytes([i]))
    log.close()
    first = _segments(tmp_path)[0]
    data = bytearray(first.read_bytes())
    data[20] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(LogCorrupted, match="not the last"):
        _open(tmp_path)


def test_segments_every_group_passed_are_deleted_and_the_active_one_is_kept(tmp_path: Path) -> None:
    log = _open(tmp_path, segment_bytes=100)  # a record of ~130 bytes: one segment each
    for i in range(6):
        log.produce(TOPIC, b"k", b"x" * 100 + bytes([i]))
    assert len(_segments(tmp_path)) == 7  # six full ones and the empty active one
    slow, fast = log.consumer("slow", TOPIC), log.consumer("fast", TOPIC)
    fast.commit({Partition(TOPIC, 0): 6})
    slow.commit({Partition(TOPIC, 0): 2})
    assert [p.stem for p in _segments(tmp_path)] == [f"{o:020d}" for o in (2, 3, 4, 5, 6)]
    slow.commit({Partition(TOPIC, 0): 6})
    assert [p.stem for p in _segments(tmp_path)] == [f"{6:020d}"]

    log = _open(tmp_path, segment_bytes=100)
    assert log.start_offsets(TOPIC, [0]) == log.end_offsets(TOPIC, [0]) == {0: 6}
    assert _drain(log, "slow") == []
    assert log.produce(TOPIC, b"k", b"y") == (0, 6)


def test_a_new_data_directory_starts_above_the_tables_and_an_old_one_continues(tmp_path: Path) -> None:
    log = _open(tmp_path, first_offset=500)  # a data directory from before the durable log: its tables' offsets
    assert log.produce(TOPIC, b"k", b"a") == (0, 500)
    log.close()
    log = _open(tmp_path, first_offset=501)
    assert log.produce(TOPIC, b"k", b"b") == (0, 501)
    assert [m.offset for m in _drain(log, "new group")] == [500, 501]


def test_an_unreadable_positions_file_replays_what_the_segments_hold(tmp_path: Path) -> None:
    log = _open(tmp_path)
    for i in range(3):
        log.produce(TOPIC, b"k", f"v{i}".encode())
    log.consumer("g", TOPIC).commit({Partition(TOPIC, 0): 3})
    (tmp_path / "committed.json").write_bytes(b'{"g": {"t": {"0"')  # cut by a crash of the machine
    log = _open(tmp_path)
    assert [m.value for m in _drain(log, "g")] == [b"v0", b"v1", b"v2"]


def test_writes_wait_for_the_sinks_past_the_held_bytes_and_are_refused_after_the_timeout(tmp_path: Path) -> None:
    log = FileLog(tmp_path, held_bytes=1000, room_timeout=0.3)
    log.ensure_topics([TOPIC], 1)
    consumer = log.consumer("sink", TOPIC)
    for i in range(5):
        log.produce(TOPIC, b"k", bytes(199) + bytes([i]))  # 201 bytes held each: 1005 after the fifth
    started = time.monotonic()
    with pytest.raises(LogUnavailable, match="have not applied"):
        log.produce(TOPIC, b"k", b"refused")
    assert time.monotonic() - started >= 0.3
    assert log.end_offsets(TOPIC, [0]) == {0: 5}  # nothing recorded

    threading.Timer(0.1, lambda: consumer.commit({Partition(TOPIC, 0): 5})).start()
    assert log.produce(TOPIC, b"k", b"room again") == (0, 5)  # waited for the commit
    assert asyncio.run(log.produce_async(TOPIC, b"k", b"async")) == (0, 6)


def test_a_group_that_never_committed_a_partition_keeps_its_records(tmp_path: Path) -> None:
    """Two sinks on one topic: the one that never committed the partition (it had not written its first
    batch when the process died) still finds every record there, and none is deleted before it passes it."""
    log = _open(tmp_path, first_offset=40, segment_bytes=100)  # the tables' offsets reach 39
    log.consumer("slow", TOPIC)  # it reads the topic too, and commits nothing before the process dies
    for i in range(4):
        log.produce(TOPIC, b"k", b"x" * 100 + bytes([i]))
    log.consumer("fast", TOPIC).commit({Partition(TOPIC, 0): 44})
    assert len(_segments(tmp_path)) == 5

    log = _open(tmp_path, first_offset=45, segment_bytes=100)
    assert log.committed("slow", TOPIC) == {0: 40}
    slow = log.consumer("slow", TOPIC)
    got = _drain(log, "slow")
    assert [m.offset for m in got] == [40, 41, 42, 43]
    slow.commit({Partition(TOPIC, 0): 44})
    log.consumer("fast", TOPIC).commit({Partition(TOPIC, 0): 44})
    assert [p.stem for p in _segments(tmp_path)] == [f"{44:020d}"]


def test_concurrent_producers_share_an_fsync_and_readers_see_only_records_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _open(tmp_path)
    consumer = log.consumer("g", TOPIC)
    release = threading.Event()
    syncs: list[int] = []
    real = os.fdatasync

    def slow_sync(fd: int) -> None:  # a disk that takes until released
        syncs.append(fd)
        release.wait(5)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow_sync)
    producers = [threading.Thread(target=log.produce, args=(TOPIC, b"k", f"v{i}".encode())) for i in range(8)]
    for t in producers:
        t.start()
    deadline = time.monotonic() + 5
    while log.end_offsets(TOPIC, [0])[0] < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.end_offsets(TOPIC, [0]) == {0: 8}  # all appended while the first fsync is held
    assert consumer.poll(0.1, 100) == []  # none is on disk yet: no reader gets one
    release.set()
    for t in producers:
        t.join(5)
    assert len(syncs) <= 2  # the first producer's fsync, then one for the seven that queued behind it
    assert sorted(m.value for m in consumer.poll(1, 100)) == sorted(f"v{i}".encode() for i in range(8))
