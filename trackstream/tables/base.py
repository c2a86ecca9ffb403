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

    def query_chunks(
        self, sql: str, params: Mapping[str, Any] | None = None, size: int = 50_000
    ) -> Generator[list[Row], None, None]:
        """``query``'s rows, in order, in lists of at most ``size``: for answers too large to hold at once
        as Python rows (a million-point history). One query, however many chunks; closing the iterator
        early ends it."""
        rows = self.query(sql, params)
        for start in range(0, len(rows), size):
            yield rows[start : start + size]

    @abc.abstractmethod
    def insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        """Insert one block given column by column (all columns of equal length)."""

    @abc.abstractmethod
    def close(self) -> None: ...
