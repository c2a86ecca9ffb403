"""Every store error is classified once: retriable, rejected for good, or unknown (stops the worker)."""

from __future__ import annotations

import errno

import pytest
import urllib3
from clickhouse_driver.errors import NetworkError, ServerException, SocketTimeoutError, TypeMismatchError
from minio.error import InvalidResponseError, S3Error, ServerError

from trackstream.errors import StoreError, StoreFailed, StoreRejected, StoreUnavailable, classify_os_error
from trackstream.objects import s3
from trackstream.tables import clickhouse
from trackstream.tables.codes import classify_code, code_in


def _s3_error(code: str, status: int) -> S3Error:
    response = urllib3.HTTPResponse(body=b"", status=status)
    return S3Error(response, code, f"{code} (test)", "/bucket/key", "req", "host")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NetworkError("connection refused"), StoreUnavailable),
        (SocketTimeoutError("timed out"), StoreUnavailable),
        (TimeoutError("timed out"), StoreUnavailable),
        (EOFError("Unexpected EOF while reading bytes"), StoreUnavailable),
        (ServerException("Too many parts", 252), StoreUnavailable),
        (ServerException("Memory limit exceeded", 241), StoreUnavailable),
        (ServerException("Timeout exceeded", 159), StoreUnavailable),
        (ServerException("Cannot convert", 53), StoreRejected),
        (ServerException("Cannot parse input", 27), StoreRejected),
        (ServerException("No such column", 16), StoreRejected),
        (ServerException("Unknown identifier", 47), StoreRejected),
        (ServerException("Not enough privileges", 497), StoreFailed),
        (ServerException("Syntax error", 62), StoreFailed),
        (TypeMismatchError("Int64 column got a str"), StoreRejected),
        (RuntimeError("a bug"), StoreFailed),
    ],
)
def test_clickhouse_driver_errors(error: Exception, expected: type[StoreError]) -> None:
    assert type(clickhouse.classify(error)) is expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)", StoreUnavailable),
        ("Code: 6. DB::Exception: Cannot parse string 'x' as Int8. (CANNOT_PARSE_TEXT)", StoreRejected),
        ("Code: 16. DB::Exception: No such column b in table default.t. (NO_SUCH_COLUMN_IN_TABLE)", StoreRejected),
        ("Code: 62. DB::Exception: Syntax error: failed at position 1. (SYNTAX_ERROR)", StoreFailed),
        ("something without a code", StoreFailed),
    ],
)
def test_chdb_messages_by_their_code(message: str, expected: type[StoreError]) -> None:
    assert type(classify_code(code_in(message), message, "chDB")) is expected


def test_chdb_store_classifies_its_own_errors(tmp_path: object) -> None:
    from pathlib import Path

    from trackstream.tables.chdb import ChdbStore

    store = ChdbStore(Path(str(tmp_path)) / "chdb")
    store.command("CREATE TABLE t (a Int64) ENGINE = Memory")
    with pytest.raises(StoreRejected, match="code 27"):
        store.insert("t", {"a": ["not a number"]})
    with pytest.raises(StoreRejected, match="code 16"):
        store.insert("t", {"b": [1]})
    with pytest.raises(StoreFailed, match="code 62"):
        store.query("SELEKT 1")
    store.close()


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_s3_error("SlowDown", 503), StoreUnavailable),
        (_s3_error("InternalError", 500), StoreUnavailable),
        (_s3_error("RequestTimeout", 400), StoreUnavailable),
        (_s3_error("KeyTooLongError", 400), StoreRejected),
        (_s3_error("InvalidArgument", 400), StoreRejected),
        (_s3_error("AccessDenied", 403), StoreFailed),
        (_s3_error("NoSuchBucket", 404), StoreFailed),
        (ServerError("bad gateway", 502), StoreUnavailable),
        (InvalidResponseError(503, "text/html", "busy"), StoreUnavailable),
        (InvalidResponseError(403, "text/html", "proxy says no"), StoreFailed),
        (urllib3.exceptions.MaxRetryError(None, "/", "refused"), StoreUnavailable),  # type: ignore[arg-type]
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), StoreUnavailable),
        (ValueError("a bug"), StoreFailed),
    ],
)
def test_s3_errors(error: Exception, expected: type[StoreError]) -> None:
    assert type(s3.classify(error)) is expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.ENOSPC, StoreUnavailable),
        (errno.EDQUOT, StoreUnavailable),
        (errno.EEXIST, StoreRejected),
        (errno.ENOTDIR, StoreRejected),
        (errno.ENAMETOOLONG, StoreRejected),
        (errno.EIO, StoreFailed),
        (errno.EACCES, StoreFailed),
        (errno.EROFS, StoreFailed),
    ],
)
def test_local_directory_errors_by_errno(code: int, expected: type[StoreError]) -> None:
    classified = classify_os_error(OSError(code, "test"), "local object store")
    assert type(classified) is expected
    assert errno.errorcode[code] in str(classified)
