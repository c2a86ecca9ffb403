"""Object store contract shared by the S3 and the local-directory implementations."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import BinaryIO

MAX_PARTS = 10_000  # S3's limit on part numbers, kept by every implementation


class ObjectNotFound(Exception):
    pass


class UploadNotFound(ObjectNotFound):
    """No multipart upload with this id for this key: never created, or already completed or aborted."""


class InvalidParts(Exception):
    """A completion named a part that was not uploaded, a wrong ETag, parts out of order, or too small a part."""


def check_part_number(part_number: int) -> None:
    if not 1 <= part_number <= MAX_PARTS:
        raise InvalidParts(f"part number {part_number} is outside 1..{MAX_PARTS}")


def check_part_list(parts: Sequence[tuple[int, str]]) -> None:
    numbers = [n for n, _ in parts]
    if not numbers or numbers != sorted(set(numbers)):
        raise InvalidParts("parts must be listed once each, in ascending order")


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

    # Client-driven multipart upload (MLflow's mpu API). The upload's state lives in the store, not in
    # the gateway process, so parts of one upload may arrive in any order through any gateway replica.
    @abc.abstractmethod
    def create_upload(self, key: str) -> str:
        """Start a multipart upload of ``key``; returns its upload id."""

    @abc.abstractmethod
    def put_part(self, key: str, upload_id: str, part_number: int, data: bytes) -> str:
        """Store part ``part_number`` (1..MAX_PARTS; a re-sent part replaces the earlier one); returns its ETag.

        Raises :class:`UploadNotFound` for an unknown upload.
        """

    @abc.abstractmethod
    def complete_upload(self, key: str, upload_id: str, parts: Sequence[tuple[int, str]]) -> None:
        """Assemble the named ``(part_number, etag)`` parts, ascending, into the object, visible whole.

        Raises :class:`UploadNotFound` or :class:`InvalidParts`; the upload stays open after InvalidParts
        on the local store, as on S3 (the client aborts it).
        """

    @abc.abstractmethod
    def abort_upload(self, key: str, upload_id: str) -> None:
        """Discard an upload's parts; aborting an unknown or finished upload is not an error."""
