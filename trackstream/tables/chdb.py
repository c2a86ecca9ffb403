"""chDB (embedded ClickHouse) table store: the same SQL in-process, persisted in a directory.

chDB's native connection (``chdb._chdb``) is used, not ``chdb.session``: the session module imports
pyarrow (and numpy) whenever they are installed, ~40 MB of the gateway's RSS for Arrow output formats
trackstream never asks for. The session class is a thin wrapper over the same calls.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from chdb import _chdb

from trackstream import memory
from trackstream.errors import StoreError
from trackstream.tables.base import LINE_BLOCK, Row, TableStore, bind
from trackstream.tables.codes import classify_code, code_in

log = logging.getLogger(__name__)

# No engine settings in the connection string: the one that would have bounded the ~130 idle threads a
# fill leaves (max_thread_pool_free_size) is read when the global thread pool is created, and
# ``import chdb`` creates it (its first connection) before trackstream's connection can set it.
PURGE_AFTER_ROWS = 100_000
"""A query that read at least this many rows from the tables is followed by ``SYSTEM JEMALLOC PURGE``
(~4 ms): chDB's allocator keeps the pages such a query freed for 5 s (its dirty decay) in the arena of
the CPU that freed them, so the next big query, on the other CPU, took fresh pages on top of them
(ten 1M-point history reads in a row: 197-275 MB peak anonymous memory without, 153 MB with)."""
_released = False  # release_startup_pages ran in this process
_release_lock = threading.Lock()


class ChdbStore(TableStore):
    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._target = str(path)
        self._conn = _connect(self._target)
        self._lock = threading.Lock()  # one query at a time per connection
        self._streams: set[Any] = set()  # connections of open query_lines streams, closed by close()
        self._streams_lock = threading.Lock()

    def _run(self, sql: str, fmt: str = "Null") -> Any:
        """``sql``'s answer as chDB's result object (its bytes stay in chDB's buffer: ``get_memview``)."""
        with self._lock:
            try:
                result = self._conn.query(sql, fmt)
            except Exception as exc:  # chDB raises RuntimeError carrying ClickHouse's "Code: NNN. DB::Exception"
                raise _store_error(exc) from exc
            if result.storage_rows_read() >= PURGE_AFTER_ROWS:
                self._purge()
            return result

    def _purge(self) -> None:
        """Return the allocator's freed pages to the kernel now (see PURGE_AFTER_ROWS); the caller holds
        the lock. A failure only leaves them to the allocator's own decay."""
        try:
            self._conn.query("SYSTEM JEMALLOC PURGE", "Null")
        except Exception as exc:
            log.debug("SYSTEM JEMALLOC PURGE failed: %s", exc)

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._run(bind(sql, params))

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        # NaN and +-inf come back as strings ("nan", "inf"): JSON has no literal for them.
        result = self._run(bind(sql, params).rstrip().rstrip(";") + _JSON_SETTINGS, "JSONCompact")
        if not result.size():
            return []
        answer = orjson.loads(result.get_memview().view())  # parsed in chDB's buffer: no copy of the text
        return _typed(answer["data"], [_converter(c["type"]) for c in answer["meta"]])

    def query_text(self, sql: str, params: Mapping[str, Any] | None = None) -> list[bytes]:
        return bytes(self._run(bind(sql, params), "TSVRaw").bytes()).split(b"\n")[:-1]

    def query_lines(self, sql: str, params: Mapping[str, Any] | None = None) -> Generator[list[bytes], None, None]:
        """One query streamed from chDB block by block (LINE_BLOCK rows), each block's text (TSVRaw: one
        value a line, as the query made it) split into its lines.

        The stream runs on a connection of its own (to the same engine: cheap, ~0.3 ms): a query on a
        connection cancels the stream open on it, and the shared connection must stay free for the
        sinks and the other reads while an HTTP client takes its time reading. The gateway holds one
        block, plus what chDB keeps for the query itself (a sort holds every row it sorts: ~50 MB for a
        1M-point history). Closing the generator early cancels the query and closes its connection."""
        text = bind(sql, params).rstrip().rstrip(";") + f"\nSETTINGS max_block_size = {LINE_BLOCK}"
        conn = self._open_stream()
        read = 0
        try:
            try:
                stream = conn.send_query(text, "TSVRaw")
            except Exception as exc:
                raise _store_error(exc) from exc
            for block in _blocks(conn, stream):
                read += block.storage_rows_read()
                yield bytes(block.bytes()).split(b"\n")[:-1]  # each line ends with a newline
        finally:
            self._close_stream(conn)
        if read >= PURGE_AFTER_ROWS:
            with self._lock:
                self._purge()

    def _open_stream(self) -> Any:
        try:
            conn = _connect(self._target)
        except Exception as exc:
            raise _store_error(exc) from exc
        with self._streams_lock:
            self._streams.add(conn)
        return conn

    def _close_stream(self, conn: Any) -> None:
        with self._streams_lock:
            self._streams.discard(conn)
        conn.close()  # cancels a query still running on it

    def formatted(self, sql: str, fmt: str) -> bytes:
        """``sql``'s answer in ClickHouse output format ``fmt`` (``trackstream sql``)."""
        return bytes(self._run(sql, fmt).bytes())

    def insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        names = ", ".join(columns)
        payload = orjson.dumps([list(c) for c in columns.values()]).decode()
        self._run(f"INSERT INTO {table} ({names}) FORMAT JSONCompactColumns {payload}")

    def release_startup_pages(self) -> memory.Released | None:
        """Page out the chDB library's pages only its start-up touched (``trackstream.memory``), once a
        process: a later store (tests build many) finds the library already started."""
        global _released
        with _release_lock:
            if _released:
                return None
            _released = True
        return memory.page_out_library(_chdb.__file__)

    def close(self) -> None:
        with self._streams_lock:
            streams, self._streams = list(self._streams), set()
        for conn in streams:
            conn.close()
        with self._lock:
            self._conn.close()


def _connect(target: str) -> Any:
    """A connection to the engine of ``target`` (the first one starts it; the others share it)."""
    return _chdb.connect(target)  # type: ignore[attr-defined]  # chDB's stub covers its UDF functions only


def _store_error(exc: Exception) -> StoreError:
    text = str(exc)
    return classify_code(code_in(text), text, "chDB refused the statement")


def _blocks(conn: Any, stream: Any) -> Iterator[Any]:
    """The stream's result blocks until chDB reports the end (a block of no rows)."""
    while True:
        try:
            block = conn.streaming_fetch_result(stream)
        except Exception as exc:
            raise _store_error(exc) from exc
        if block is None or block.rows_read() == 0:
            return
        yield block


def _typed(rows: list[list[Any]], convert: list[Callable[[Any], Any]]) -> list[Row]:
    return [tuple(f(v) for f, v in zip(convert, r, strict=True)) for r in rows]


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
