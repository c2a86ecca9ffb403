"""S3-compatible object store through the ``minio`` client (any S3 server: SeaweedFS, MinIO, AWS, Ceph)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import BinaryIO
from urllib.parse import urlparse

import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.error import InvalidResponseError, S3Error, ServerError

from trackstream.errors import StoreError, StoreFailed, StoreRejected, StoreUnavailable
from trackstream.objects.base import (
    InvalidParts,
    ObjectNotFound,
    ObjectStore,
    UploadNotFound,
    check_part_list,
    check_part_number,
)

PART_SIZE = 8 << 20  # multipart part size; uploaded one at a time, so memory is O(part)
RETRIABLE_S3_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "OperationAborted"}
)
# The key or the request's arguments: this object can never be stored as it is.
REJECTED_S3_CODES = frozenset(
    {
        "KeyTooLongError",
        "InvalidObjectName",
        "XMinioInvalidObjectName",
        "InvalidArgument",
        "InvalidRequest",
        "EntityTooLarge",
        "InvalidDigest",
        "BadDigest",
        "IncompleteBody",
        "MetadataTooLarge",
        "InvalidURI",
        "ObjectNameTooLong",
        "XMinioObjectExistsAsDirectory",
        "XMinioParentIsObject",
    }
)
_UPLOAD_ID = re.compile(r"[A-Za-z0-9._~=+-]{1,1024}")  # S3 upload ids are URL-safe tokens
INVALID_PARTS_CODES = frozenset({"InvalidPart", "InvalidPartOrder", "EntityTooSmall", "MalformedXML"})


def classify(exc: Exception) -> StoreError:
    """S3 errors by code and HTTP status: 5xx, throttling and connection trouble are retriable; a key or
    argument S3 refuses is rejected; anything else (AccessDenied, NoSuchBucket, a wrong secret: the
    configuration, not the data) is unclassified and stops the worker."""
    if isinstance(exc, S3Error):
        status = exc.response.status if exc.response is not None else 0
        text = f"S3 {exc.code} (HTTP {status}): {exc.message}"
        if exc.code in RETRIABLE_S3_CODES or status >= 500 or status == 429:
            return StoreUnavailable(text)
        if exc.code in REJECTED_S3_CODES:
            return StoreRejected(text)
        return StoreFailed(text)
    if isinstance(exc, (ServerError, InvalidResponseError)):
        status = exc.status_code if isinstance(exc, ServerError) else _status(exc)
        if status >= 500 or status in (408, 429):
            return StoreUnavailable(f"S3 answered HTTP {status}: {exc}")
        return StoreFailed(f"S3 answered HTTP {status}: {exc}")
    if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, OSError)):
        return StoreUnavailable(f"S3 unreachable: {exc!r}")
    return StoreFailed(f"S3 failed in an unclassified way: {type(exc).__name__}: {exc}")


def _status(exc: InvalidResponseError) -> int:
    code = getattr(exc, "_code", None)
    return code if isinstance(code, int) else 0


class S3ObjectStore(ObjectStore):
    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str, region: str) -> None:
        url = urlparse(endpoint)
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=3, read=60),
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[502, 503, 504]),
            maxsize=16,
        )
        self._client = Minio(
            url.netloc,
            access_key=access_key,
            secret_key=secret_key,
            secure=url.scheme == "https",
            region=region,
            http_client=http,
        )
        self._bucket = bucket

    def ensure_bucket(self) -> None:
        try:
            if not self._client.bucket_exists(self._bucket):
                self._client.make_bucket(self._bucket)
        except Exception as exc:
            raise classify(exc) from exc

    def put(self, key: str, data: bytes) -> None:
        import io

        self.put_stream(key, io.BytesIO(data), len(data))

    def put_stream(self, key: str, stream: BinaryIO, size: int) -> None:
        try:
            self._client.put_object(self._bucket, key, stream, length=size, part_size=PART_SIZE, num_parallel_uploads=1)
        except Exception as exc:
            raise classify(exc) from exc

    def get(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        try:
            response = self._client.get_object(self._bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise ObjectNotFound(key) from None
            raise classify(exc) from exc
        except Exception as exc:
            raise classify(exc) from exc
        return _stream(response, chunk_size)

    def size(self, key: str) -> int | None:
        try:
            return int(self._client.stat_object(self._bucket, key).size or 0)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return None
            raise classify(exc) from exc
        except Exception as exc:
            raise classify(exc) from exc

    def delete(self, key: str) -> None:
        try:
            self._client.remove_object(self._bucket, key)
        except Exception as exc:
            raise classify(exc) from exc

    # minio's public API hides the multipart calls inside put_object; these use the S3 operations it
    # wraps (CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload), which
    # is why the minio version is pinned. The upload id is S3's own, so the state lives in S3.
    def _multipart(self, key: str, upload_id: str, call: str, *args: object) -> object:
        if call != "_create_multipart_upload" and not _UPLOAD_ID.fullmatch(upload_id):
            raise UploadNotFound(f"no multipart upload {upload_id!r} of {key!r}")  # S3 would answer InvalidRequest
        try:
            return getattr(self._client, call)(self._bucket, key, *args)
        except S3Error as exc:
            if exc.code == "NoSuchUpload":
                raise UploadNotFound(f"no multipart upload {upload_id!r} of {key!r}") from None
            if exc.code in INVALID_PARTS_CODES:
                raise InvalidParts(f"S3 {exc.code}: {exc.message}") from None
            raise classify(exc) from exc
        except Exception as exc:
            raise classify(exc) from exc

    def create_upload(self, key: str) -> str:
        return str(self._multipart(key, "", "_create_multipart_upload", {}))

    def put_part(self, key: str, upload_id: str, part_number: int, data: bytes) -> str:
        check_part_number(part_number)
        return str(self._multipart(key, upload_id, "_upload_part", data, None, upload_id, part_number))

    def complete_upload(self, key: str, upload_id: str, parts: Sequence[tuple[int, str]]) -> None:
        check_part_list(parts)
        listed = [Part(n, etag.strip('"')) for n, etag in parts]
        self._multipart(key, upload_id, "_complete_multipart_upload", upload_id, listed)

    def abort_upload(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(UploadNotFound):
            self._multipart(key, upload_id, "_abort_multipart_upload", upload_id)


def _stream(response: urllib3.BaseHTTPResponse, chunk_size: int) -> Iterator[bytes]:
    try:
        yield from response.stream(chunk_size)
    finally:
        response.close()
        response.release_conn()
