"""The table store: a ClickHouse server, or chDB (embedded ClickHouse) in embedded mode."""

from trackstream.tables.base import Row, TableStore

__all__ = ["Row", "TableStore"]
