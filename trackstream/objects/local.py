"""Local-directory object store: each key is a file; writes go to a temp file and are renamed in.

A key's file is named by the SHA-256 of the key (``<root>/ab/abcdef…``), not by the key itself, so the
directory holds every key S3 holds: ``x/f`` and ``x/f/child`` side by side (a file and a directory of
one name cannot coexist in a filesystem), and keys whose components are longer than the filesystem
allows. The store has no listing (the ``artifacts`` table is the index), so nothing needs the tree.
Files written by earlier versions at ``<root>/<key>`` are still read and deleted there.

Multipart uploads stage their parts in ``<root>.uploads/<upload_id>/`` (outside the key space, so no
artifact path can collide with them) and are concatenated into the object on completion.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from trackstream.errors import StoreRejected, classify_os_error
from trackstream.objects.base import (
    InvalidParts,
    ObjectNotFound,
    ObjectStore,
    UploadNotFound,
    check_part_list,
    check_part_number,
)

_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


class InvalidKey(StoreRejected, ValueError):
    """A key no store takes (empty, absolute, with ``..``): the gateway never sends one."""


class LocalObjectStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self._root = root.resolve()
        self._root.mkdir(parents=True, exist_ok=True)
        self._uploads = self._root.with_name(self._root.name + ".uploads")

    def _path(self, key: str) -> Path:
        if not key or "\x00" in key or key.startswith("/") or ".." in key.split("/"):
            raise InvalidKey(f"invalid object key {key!r}")
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self._root / digest[:2] / digest

    def _legacy(self, key: str) -> Path | None:
        """Where versions before the hashed layout kept ``key``, if it is a file there."""
        try:
            path = (self._root / key).resolve()
            if path.is_relative_to(self._root) and path != self._root and path.is_file():
                return path
        except OSError:  # a name longer than the filesystem allows was never stored there
            pass
        return None

    @staticmethod
    def _replace(path: Path, fill: BinaryIO | bytes | list[tuple[Path, str]]) -> None:
        """Write ``path`` whole through a temp file in its directory: bytes, a stream, or checked parts."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(fill, bytes):
                    out.write(fill)
                elif isinstance(fill, list):
                    for part, etag in fill:
                        _copy_checked(part, etag, out)
                else:
                    shutil.copyfileobj(fill, out, 1 << 20)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _write(self, key: str, fill: BinaryIO | bytes | list[tuple[Path, str]]) -> None:
        path = self._path(key)
        with _classified(f"storing {key!r}"):
            self._replace(path, fill)
            if (old := self._legacy(key)) is not None:
                old.unlink(missing_ok=True)

    def put(self, key: str, data: bytes) -> None:
        self._write(key, data)

    def put_stream(self, key: str, stream: BinaryIO, size: int) -> None:
        self._write(key, stream)

    def _existing(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else self._legacy(key)

    def get(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        with _classified(f"reading {key!r}"):
            path = self._existing(key)
            try:
                handle = path.open("rb") if path is not None else None
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                handle = None
        if handle is None:
            raise ObjectNotFound(key)
        return _chunks(handle, chunk_size)

    def size(self, key: str) -> int | None:
        with _classified(f"reading {key!r}"):
            path = self._existing(key)
            return path.stat().st_size if path is not None else None

    def delete(self, key: str) -> None:
        with _classified(f"deleting {key!r}"):
            self._path(key).unlink(missing_ok=True)
            if (old := self._legacy(key)) is not None:
                old.unlink(missing_ok=True)

    def _upload(self, key: str, upload_id: str) -> Path:
        staging = self._uploads / upload_id
        try:
            if _UPLOAD_ID.fullmatch(upload_id) and (staging / "key").read_text() == key:
                return staging
        except FileNotFoundError:
            pass
        raise UploadNotFound(f"no multipart upload {upload_id!r} of {key!r}")

    def create_upload(self, key: str) -> str:
        self._path(key)  # validates the key now rather than at completion
        upload_id = uuid.uuid4().hex
        with _classified(f"starting an upload of {key!r}"):
            self._replace(self._uploads / upload_id / "key", key.encode())
        return upload_id

    def put_part(self, key: str, upload_id: str, part_number: int, data: bytes) -> str:
        check_part_number(part_number)
        staging = self._upload(key, upload_id)
        with _classified(f"storing part {part_number} of {key!r}"):
            self._replace(staging / str(part_number), data)
        return hashlib.md5(data, usedforsecurity=False).hexdigest()

    def complete_upload(self, key: str, upload_id: str, parts: Sequence[tuple[int, str]]) -> None:
        staging = self._upload(key, upload_id)
        check_part_list(parts)
        missing = [n for n, _ in parts if not (staging / str(n)).is_file()]
        if missing:
            raise InvalidParts(f"parts {missing} were not uploaded")
        self._write(key, [(staging / str(n), etag.strip('"')) for n, etag in parts])
        shutil.rmtree(staging, ignore_errors=True)

    def abort_upload(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(UploadNotFound, FileNotFoundError):
            shutil.rmtree(self._upload(key, upload_id))


@contextlib.contextmanager
def _classified(what: str) -> Iterator[None]:
    """OSErrors as named store errors (by errno: out of space waits, an impossible name is rejected)."""
    try:
        yield
    except OSError as exc:
        raise classify_os_error(exc, f"local object store, {what}") from exc


def _chunks(handle: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(chunk_size):
            yield chunk


def _copy_checked(part: Path, etag: str, out: BinaryIO) -> None:
    digest = hashlib.md5(usedforsecurity=False)
    with part.open("rb") as src:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != etag:
        raise InvalidParts(f"part {part.name}: ETag {etag!r} does not match the uploaded part")
