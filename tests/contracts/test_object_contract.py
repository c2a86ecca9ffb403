"""The object store contract, run on LocalObjectStore and S3ObjectStore."""

from __future__ import annotations

import hashlib
import io
import tracemalloc

import pytest

from trackstream.objects import InvalidParts, ObjectNotFound, ObjectStore, UploadNotFound

LARGE = 20 << 20


class PatternStream(io.RawIOBase):
    """``size`` deterministic bytes produced on demand, so the source never holds the object."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._block = hashlib.sha256(b"trackstream").digest() * 2048  # 64 KiB
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._left, len(self._block))
        buffer[:n] = self._block[:n]
        self.digest.update(self._block[:n])
        self._left -= n
        return n


def _read(store: ObjectStore, key: str) -> bytes:
    return b"".join(store.get(key))


def test_put_get_size(object_store: ObjectStore, key_prefix: str) -> None:
    key = f"{key_prefix}/1/run/artifacts/notes.txt"
    object_store.put(key, b"hello\n")
    assert _read(object_store, key) == b"hello\n"
    assert object_store.size(key) == 6
    object_store.put(key, b"replaced")  # a replayed or newer write replaces the object whole
    assert _read(object_store, key) == b"replaced"
    assert object_store.size(key) == 8


def test_empty_object(object_store: ObjectStore, key_prefix: str) -> None:
    key = f"{key_prefix}/empty"
    object_store.put(key, b"")
    assert object_store.size(key) == 0
    assert _read(object_store, key) == b""


def test_missing_object(object_store: ObjectStore, key_prefix: str) -> None:
    key = f"{key_prefix}/absent"
    with pytest.raises(ObjectNotFound):
        object_store.get(key)
    assert object_store.size(key) is None


def test_delete_is_idempotent(object_store: ObjectStore, key_prefix: str) -> None:
    key = f"{key_prefix}/gone.bin"
    object_store.put(key, b"x")
    object_store.delete(key)
    object_store.delete(key)
    object_store.delete(f"{key_prefix}/never-written")
    assert object_store.size(key) is None
    with pytest.raises(ObjectNotFound):
        object_store.get(key)


def test_large_object_streams_both_ways_in_bounded_memory(object_store: ObjectStore, key_prefix: str) -> None:
    key = f"{key_prefix}/model.bin"
    source = PatternStream(LARGE)
    tracemalloc.start()
    try:
        object_store.put_stream(key, io.BufferedReader(source, 1 << 20), LARGE)
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest = hashlib.sha256()
        received = 0
        for chunk in object_store.get(key, chunk_size=1 << 20):
            digest.update(chunk)
            received += len(chunk)
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == LARGE
    assert digest.hexdigest() == source.digest.hexdigest()
    assert object_store.size(key) == LARGE
    # S3 holds one 8 MiB multipart part at a time (about 17 MiB peak with copies), never the object.
    assert upload_peak < LARGE, f"upload peak {upload_peak / 2**20:.1f} MiB"
    assert download_peak < 4 << 20, f"download peak {download_peak / 2**20:.1f} MiB"


def test_unknown_size_stream(object_store: ObjectStore, key_prefix: str) -> None:
    key = f"{key_prefix}/unknown-size.bin"
    source = PatternStream(3 << 20)
    object_store.put_stream(key, io.BufferedReader(source, 1 << 20), -1)
    assert object_store.size(key) == 3 << 20
    assert hashlib.sha256(_read(object_store, key)).hexdigest() == source.digest.hexdigest()


# Multipart: every part but the last must be at least 5 MiB on S3, so the tests use that size.
PART = 5 << 20


def _etag(store: ObjectStore, key: str, upload_id: str, number: int, data: bytes) -> str:
    return store.put_part(key, upload_id, number, data)


def test_multipart_upload_assembles_parts_in_order(object_store: ObjectStore, key_prefix: str) -> None:
    key = f"{key_prefix}/1/run/artifacts/model.bin"
    first, second = b"a" * PART, b"tail"
    upload_id = object_store.create_upload(key)
    e2 = _etag(object_store, key, upload_id, 2, second)  # parts may arrive in any order
    e1 = _etag(object_store, key, upload_id, 1, b"stale" * 10)
    e1 = _etag(object_store, key, upload_id, 1, first)  # a re-sent part replaces the earlier one
    assert object_store.size(key) is None  # nothing visible before completion
    object_store.complete_upload(key, upload_id, [(1, e1), (2, f'"{e2}"')])  # quoted, as HTTP clients keep it
    assert object_store.size(key) == PART + 4
    assert _read(object_store, key) == first + second
    with pytest.raises(UploadNotFound):  # a completed upload is gone
        object_store.put_part(key, upload_id, 3, b"late")
    object_store.abort_upload(key, upload_id)  # aborting a finished upload is not an error
    assert _read(object_store, key) == first + second


def test_multipart_completion_checks_parts(object_store: ObjectStore, key_prefix: str) -> None:
    key = f"{key_prefix}/checked.bin"
    upload_id = object_store.create_upload(key)
    e1 = _etag(object_store, key, upload_id, 1, b"b" * PART)
    e2 = _etag(object_store, key, upload_id, 2, b"end")
    for parts in ([(1, e1), (2, "0" * 32)], [(1, e1), (3, e2)], [(2, e2), (1, e1)], []):
        with pytest.raises(InvalidParts):
            object_store.complete_upload(key, upload_id, parts)
        assert object_store.size(key) is None, parts
    object_store.abort_upload(key, upload_id)
    object_store.abort_upload(key, upload_id)
    with pytest.raises(UploadNotFound):
        object_store.complete_upload(key, upload_id, [(1, e1), (2, e2)])
    assert object_store.size(key) is None


def test_multipart_unknown_upload(object_store: ObjectStore, key_prefix: str) -> None:
    key = f"{key_prefix}/one.bin"
    upload_id = object_store.create_upload(key)
    for other_key, other_id in ((key, "0" * 32), (key, "../../etc"), (f"{key_prefix}/other.bin", upload_id)):
        with pytest.raises(UploadNotFound):
            object_store.put_part(other_key, other_id, 1, b"x")
    with pytest.raises(InvalidParts):
        object_store.put_part(key, upload_id, 0, b"x")
    object_store.abort_upload(key, upload_id)


def test_a_key_and_keys_below_it_coexist(object_store: ObjectStore, key_prefix: str) -> None:
    """S3 keys are flat: ``x/f`` and ``x/f/child`` are two objects, in either order of arrival."""
    for first, second in (("x/f", "x/f/child"), ("y/g/child", "y/g")):
        object_store.put(f"{key_prefix}/{first}", b"first")
        object_store.put(f"{key_prefix}/{second}", b"second")
        assert _read(object_store, f"{key_prefix}/{first}") == b"first"
        assert _read(object_store, f"{key_prefix}/{second}") == b"second"
        object_store.delete(f"{key_prefix}/{first}")
        assert object_store.size(f"{key_prefix}/{first}") is None
        assert object_store.size(f"{key_prefix}/{second}") == 6


def test_longest_keys_the_gateway_accepts(object_store: ObjectStore, key_prefix: str) -> None:
    """255-byte components (longer than many file names) up to a 1024-byte key are stored."""
    long_name = f"{key_prefix}/{'n' * 255}"
    longest = f"{key_prefix}/" + "/".join(["k" * 200] * 5)
    longest = longest + "z" * (1024 - len(longest.encode()))
    for key in (long_name, longest, f"{key_prefix}/{'é' * 127}"):
        object_store.put(key, b"long")
        assert _read(object_store, key) == b"long"
