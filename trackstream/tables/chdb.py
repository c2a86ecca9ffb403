"""chDB (embedded ClickHouse) table store: the same SQL in-process, persisted in a directory."""

from __future__ import annotations

import io
import itertools
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from chdb import session

from trackstream.tables.base import Row, TableStore, bind
from trackstream.tables.codes import classify_code, code_in


class ChdbStore(TableStore):
    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._session = session.Session(str(path))  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()  # one query at a time per session

    def _run(self, sql: str, fmt: str = "Null") -> bytes:
        with self._lock:
            try:
                result = self._session.query(sql, fmt)  # type: ignore[no-untyped-call]
            except Exception as exc:  # chDB raises RuntimeError carrying ClickHouse's "Code: NNN. DB::Exception"
                text = str(exc)
                raise classify_code(code_in(text), text, "chDB refused the statement") from exc
        return bytes(result.bytes()) if result is not None else b""

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._run(bind(sql, params))

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        # NaN and +-inf come back as strings ("nan", "inf"): JSON has no literal for them.
        out = self._run(bind(sql, params).rstrip().rstrip(";") + _JSON_SETTINGS, "JSONCompact")
        if not out:
            return []
        result = orjson.loads(out)
        convert = [_converter(c["type"]) for c in result["meta"]]
        return [tuple(f(v) for f, v in zip(convert, r, strict=True)) for r in result["data"]]

    def query_chunks(
        self, sql: str, params: Mapping[str, Any] | None = None, size: int = 50_000
    ) -> Generator[list[Row], None, None]:
        """One query, its answer kept as compact JSON lines (about 30 bytes a point) and turned into rows
        a chunk at a time. Not a chDB stream: one session runs one query at a time, and a stream would
        hold it for as long as the HTTP client takes to read."""
        out = self._run(bind(sql, params).rstrip().rstrip(";") + _JSON_SETTINGS, "JSONCompactEachRowWithNamesAndTypes")
        answer = io.BytesIO(out)  # shares the buffer: each chunk's lines are the only copies
        answer.readline()  # the column names
        types = answer.readline()
        if not types:
            return
        convert = [_converter(t) for t in orjson.loads(types)]
        while lines := list(itertools.islice(answer, size)):
            rows = orjson.loads(b"[" + b",".join(lines) + b"]")
            yield [tuple(f(v) for f, v in zip(convert, r, strict=True)) for r in rows]

    def formatted(self, sql: str, fmt: str) -> bytes:
        """``sql``'s answer in ClickHouse output format ``fmt`` (``trackstream sql``)."""
        return self._run(sql, fmt)

    def insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        names = ", ".join(columns)
        payload = orjson.dumps([list(c) for c in columns.values()]).decode()
        self._run(f"INSERT INTO {table} ({names}) FORMAT JSONCompactColumns {payload}")

    def close(self) -> None:
        with self._lock:
            self._session.close()  # type: ignore[no-untyped-call]


# Rows come back with the Python types clickhouse-driver gives for the same query (the contract tests
# compare both stores): 64-bit integers as int, NaN/inf as float, tuples as tuple.
# (On its own line, so a query ending in a "--" comment keeps it.) NaN inside a tuple stays "nan".
_JSON_SETTINGS = "\nSETTINGS output_format_json_quote_64bit_integers = 0, output_format_json_quote_denormals = 1"


def _converter(type_name: str) -> Callable[[Any], Any]:
    inner = type_name
    for wrapper in ("Nullable(", "LowCardinality("):
        if inner.startswith(wrapper):
            inner = inner[len(wrapper) : -1]
    if inner.startswith("Float"):
        return _float
    if inner.startswith(("Int", "UInt")):
        return _int
    if inner.startswith("Tuple("):
        return _tuple
    return _same


def _same(v: Any) -> Any:
    return v


def _float(v: Any) -> Any:
    return float(v) if v is not None else None


def _int(v: Any) -> Any:
    return int(v) if v is not None else None


def _tuple(v: Any) -> Any:
    return tuple(_tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
