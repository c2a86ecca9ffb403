"""chDB (embedded ClickHouse) table store: the same SQL in-process, persisted in a directory."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from chdb import session

from trackstream.errors import StoreRejected
from trackstream.tables.base import Row, TableStore, bind


class ChdbStore(TableStore):
    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._session = session.Session(str(path))
        self._lock = threading.Lock()  # one query at a time per session

    def _run(self, sql: str, fmt: str = "Null") -> bytes:
        with self._lock:
            try:
                result = self._session.query(sql, fmt)
            except Exception as exc:  # chDB raises RuntimeError carrying the server message
                raise StoreRejected(f"chDB rejected the statement: {str(exc)[:500]}") from exc
        return bytes(result.bytes()) if result is not None else b""

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._run(bind(sql, params))

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        out = self._run(bind(sql, params), "JSONCompact")
        if not out:
            return []
        return [tuple(r) for r in orjson.loads(out)["data"]]

    def insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        names = ", ".join(columns)
        payload = orjson.dumps([list(c) for c in columns.values()]).decode()
        self._run(f"INSERT INTO {table} ({names}) FORMAT JSONCompactColumns {payload}")

    def close(self) -> None:
        with self._lock:
            self._session.close()
