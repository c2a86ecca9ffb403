"""Table store contract shared by the ClickHouse server and the chDB implementations."""

from __future__ import annotations

import abc
import os
from collections.abc import Generator, Mapping, Sequence
from typing import Any

# clickhouse-driver fills a date lookup table for 1900-2299 when it is imported (two dicts of 146,000
# dates: ~30 MB of RSS and 0.2 s in every process, the embedded gateway's too, which only escapes with
# it) unless this, its documented switch, asks for a lazy one. trackstream has no Date column to read.
os.environ.setdefault("CLICKHOUSE_DRIVER_LASY_DATE_LUT", "1")

from clickhouse_driver.util.escape import escape_param

from schemas import ddl

Row = tuple[Any, ...]
LINE_BLOCK = 8192
"""Values per block of ``TableStore.query_lines``: what the gateway holds of a streamed answer at once."""


class _NoContext:
    """escape_param only needs a context for datetimes, which trackstream never binds."""


def bind(sql: str, params: Mapping[str, Any] | None) -> str:
    """Substitute ``%(name)s`` placeholders with escaped ClickHouse literals (clickhouse-driver's escaping).

    Values only ever enter SQL through here, so a filter string cannot change a query's structure.
    """
    if not params:
        return sql
    return sql % {k: escape_param(v, _NoContext()) for k, v in params.items()}


class TableStore(abc.ABC):
    """Columnar inserts and parameterized queries; raises :class:`trackstream.errors.StoreError`."""

    def migrate(self) -> None:
        """Create every table of ``schemas/clickhouse`` that does not exist yet; a materialized view's
        target created now is filled from the rows its source already holds (rows inserted meanwhile
        may be written twice, which the view targets allow)."""
        fills = ddl.view_fills()
        new = [sql for table, sql in fills if not self.query(f"EXISTS TABLE {table}")[0][0]]
        for statement in ddl.statements():
            self.command(statement)
        for sql in new:
            self.command(sql)

    @abc.abstractmethod
    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None: ...

    @abc.abstractmethod
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]: ...

    @abc.abstractmethod
    def query_text(self, sql: str, params: Mapping[str, Any] | None = None) -> list[bytes]:
        """``query_lines``' values all at once, on the store's usual connection: for answers small enough to
        hold (a history page), a few ms cheaper than opening a stream."""

    @abc.abstractmethod
    def query_lines(self, sql: str, params: Mapping[str, Any] | None = None) -> Generator[list[bytes], None, None]:
        """The values of a query of one String column, as UTF-8 bytes, in order, a block at a time
        (LINE_BLOCK values): answers the query already formats as text (a history's JSON points,
        ``trackstream.reads.store.POINT_JSON``), too many to hold at once. One query, however many blocks;
        closing the iterator early ends it. A value must not contain a newline (the embedded store's stream
        is one value per line)."""

    @abc.abstractmethod
    def insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        """Insert one block given column by column (all columns of equal length)."""

    @abc.abstractmethod
    def close(self) -> None: ...
