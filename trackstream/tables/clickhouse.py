"""ClickHouse server table store (clickhouse-driver, native protocol, one connection per thread)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Generator, Mapping, Sequence
from typing import Any

from clickhouse_driver import Client
from clickhouse_driver.errors import (
    NetworkError,
    ServerException,
    SocketTimeoutError,
    TypeMismatchError,
    UnexpectedPacketFromServerError,
    UnknownPacketFromServerError,
)

from trackstream.errors import StoreError, StoreFailed, StoreRejected, StoreUnavailable
from trackstream.tables.base import LINE_BLOCK, Row, TableStore, bind
from trackstream.tables.codes import classify_code


def classify(exc: Exception) -> StoreError:
    """clickhouse-driver's errors: connection trouble is retriable, server errors go by code
    (:mod:`trackstream.tables.codes`), a value the driver cannot encode is rejected, the rest unknown."""
    if isinstance(exc, (NetworkError, SocketTimeoutError, socket.timeout, ConnectionError, EOFError, OSError)):
        return StoreUnavailable(f"ClickHouse unreachable: {exc}")
    if isinstance(exc, ServerException):
        return classify_code(exc.code, exc.message, "ClickHouse refused the statement")
    if isinstance(exc, TypeMismatchError):
        return StoreRejected(f"ClickHouse client cannot encode the data: {exc}")
    if isinstance(exc, (UnexpectedPacketFromServerError, UnknownPacketFromServerError)):
        return StoreUnavailable(f"ClickHouse connection broken: {exc}")
    return StoreFailed(f"ClickHouse failed in an unclassified way: {type(exc).__name__}: {exc}")


class ClickHouseStore(TableStore):
    def __init__(self, url: str) -> None:
        self._url = url
        self._local = threading.local()
        self._clients: list[Client] = []
        self._lock = threading.Lock()
        self._idle: list[Client] = []  # connections of finished query_lines streams, for the next one

    def _client(self) -> Client:
        client: Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._new_client()
        return client

    def _new_client(self) -> Client:
        client = Client.from_url(self._url)
        client.connection.connect_timeout = 3
        client.connection.send_receive_timeout = 60
        with self._lock:
            self._clients.append(client)
        return client

    def _execute(
        self, sql: str, data: Any = None, columnar: bool = False, settings: dict[str, Any] | None = None
    ) -> Any:
        client = self._client()
        try:
            if data is None:
                return client.execute(sql, columnar=columnar, settings=settings)
            return client.execute(sql, data, columnar=columnar)
        except Exception as exc:
            client.disconnect()
            raise classify(exc) from exc

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._execute(bind(sql, params))

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        return [tuple(r) for r in self._execute(bind(sql, params))]

    def query_text(self, sql: str, params: Mapping[str, Any] | None = None) -> list[bytes]:
        columns = self._execute(bind(sql, params), columnar=True, settings={"strings_as_bytes": True})
        return list(columns[0]) if columns else []

    def query_lines(self, sql: str, params: Mapping[str, Any] | None = None) -> Generator[list[bytes], None, None]:
        """Streamed from the server block by block on a connection of its own: the consumer of a block
        may be another thread (a streamed HTTP answer), and this thread's connection stays free. The
        strings stay the bytes the server sent (the driver's ``strings_as_bytes``)."""
        client = self._idle.pop() if self._idle else self._new_client()
        rows = client.execute_iter(bind(sql, params), settings={"max_block_size": LINE_BLOCK, "strings_as_bytes": True})
        block: list[bytes] = []
        try:
            for (value,) in rows:
                block.append(value)
                if len(block) == LINE_BLOCK:
                    yield block
                    block = []
            if block:
                yield block
        except Exception as exc:
            client.disconnect()
            raise classify(exc) from exc
        except GeneratorExit:  # closed early: the rest of the answer is still on the wire
            client.disconnect()
            raise
        self._idle.append(client)

    def insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        names = ", ".join(columns)
        self._execute(f"INSERT INTO {table} ({names}) VALUES", list(columns.values()), columnar=True)

    def close(self) -> None:
        with self._lock:
            for client in self._clients:
                client.disconnect()
            self._clients.clear()
