"""Object store contract shared by the S3 and the local-directory implementations."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import BinaryIO


class ObjectNotFound(Exception):
    pass


class ObjectStore(abc.ABC):
    """Whole-object writes keyed by path; a write is visible only once complete.

    Raises :class:`trackstream.errors.StoreError` for outages and rejections.
    """

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def put_stream(self, key: str, stream: BinaryIO, size: int) -> None:
        """Stream ``size`` bytes (-1: unknown) without holding them in memory; multipart where large."""

    @abc.abstractmethod
    def get(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream an object's bytes; raises :class:`ObjectNotFound` (before yielding) if absent."""

    @abc.abstractmethod
    def size(self, key: str) -> int | None:
        """Size of the object, None if absent."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; removing an absent one is not an error (idempotent)."""
