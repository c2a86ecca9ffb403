"""The read model over both table stores (chDB and a ClickHouse server), fed rows directly."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from tests.contracts.conftest import table_store
from trackstream.tables import TableStore

__all__ = ["table_store"]

_RUN = {
    "experiment_id": "1", "run_name": "", "user_id": "u", "status": "RUNNING", "start_time": 0, "end_time": None,
    "artifact_uri": "a", "lifecycle_stage": "active", "deleted_time": None,
}  # fmt: skip

Insert = Callable[..., None]


@pytest.fixture
def put(table_store: TableStore) -> Insert:
    """``put(table, version or None, **columns)``: insert one row as its own block (its own part, not yet merged),
    with the defaults of that table's other columns."""

    def insert(table: str, _version: int | None, **row: Any) -> None:
        full = {**(_RUN if table == "runs" else {}), **row}
        if _version is not None:  # tables without versions: None
            full["_version"] = _version
        table_store.insert(table, {k: [v] for k, v in full.items()})

    return insert


def rows(values: Sequence[dict[str, Any]], key: str) -> list[Any]:
    return [v[key] for v in values]
