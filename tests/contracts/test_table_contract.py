"""The table store contract, run on ChdbStore and ClickHouseStore (server as old as 18.16)."""

from __future__ import annotations

from typing import Any

import pytest

from trackstream.errors import StoreRejected
from trackstream.tables import TableStore
from trackstream.tables.base import LINE_BLOCK

TABLES = {"metrics", "latest_metrics", "experiments", "experiment_tags", "runs", "params", "run_tags", "artifacts"}
INJECTION = "it's'); DROP TABLE metrics; --\\"


def _metric_rows(run_id: str, n: int) -> dict[str, list[Any]]:
    return {
        "run_id": [run_id] * n,
        "key": [f"k{i % 3}" for i in range(n)],
        "step": list(range(n)),
        "timestamp": [1_700_000_000_000 + i for i in range(n)],
        "value": [i / 4 for i in range(n)],
        "is_nan": [0] * n,
        "model_id": [""] * n,
        "dataset_name": [""] * n,
        "dataset_digest": [""] * n,
    }


def _run(run_id: str, status: str, end_time: int | None, version: int) -> dict[str, list[Any]]:
    return {
        "run_id": [run_id],
        "experiment_id": ["1"],
        "run_name": ["r"],
        "user_id": ["u"],
        "status": [status],
        "start_time": [1_700_000_000_000],
        "end_time": [end_time],
        "artifact_uri": ["s3://b/1/r"],
        "lifecycle_stage": ["active"],
        "deleted_time": [None],
        "_version": [version],
    }


def test_migrate_twice_is_idempotent(table_store: TableStore) -> None:
    table_store.insert("params", {"run_id": ["r"], "key": ["k"], "value": ["v"], "_version": [1]})
    table_store.migrate()
    rows = table_store.query("SELECT name FROM system.tables WHERE database = currentDatabase()")
    assert {r[0] for r in rows} >= TABLES
    assert table_store.query("SELECT count() FROM params") == [(1,)]  # data survives a second migration


def test_columnar_insert_and_bound_query(table_store: TableStore) -> None:
    table_store.insert("metrics", _metric_rows("run-a", 30))
    table_store.insert("metrics", _metric_rows(INJECTION, 7))
    rows = table_store.query(
        "SELECT run_id, count(), sum(step), min(timestamp) FROM metrics WHERE run_id IN %(ids)s "
        "GROUP BY run_id ORDER BY run_id",
        {"ids": ("run-a", INJECTION)},
    )
    assert rows == [(INJECTION, 7, 21, 1_700_000_000_000), ("run-a", 30, 435, 1_700_000_000_000)]
    only = table_store.query("SELECT count() FROM metrics WHERE run_id = %(r)s", {"r": INJECTION})
    assert only == [(7,)]
    assert table_store.query("SELECT count() FROM metrics") == [(37,)]  # the table is still there
    one = table_store.query(
        "SELECT step, value FROM metrics WHERE run_id = %(r)s AND key = %(k)s ORDER BY step LIMIT %(n)s",
        {"r": "run-a", "k": "k1", "n": 2},
    )
    assert one == [(1, 0.25), (4, 1.0)]


def test_replaying_rows_is_collapsed_by_final_and_distinct(table_store: TableStore) -> None:
    for _ in range(3):  # an at-least-once replay writes the same block again
        table_store.insert("metrics", _metric_rows("run-b", 10))
    assert table_store.query("SELECT count() FROM metrics") == [(30,)]
    assert table_store.query("SELECT count() FROM metrics FINAL") == [(10,)]
    assert table_store.query(
        "SELECT count() FROM (SELECT DISTINCT run_id, key, step, timestamp, value FROM metrics)"
    ) == [(10,)]


def test_replacing_merge_tree_keeps_the_highest_version(table_store: TableStore) -> None:
    table_store.insert("runs", _run("r1", "FINISHED", 1_700_000_360_000, version=7))
    table_store.insert("runs", _run("r1", "RUNNING", None, version=3))  # an older event arriving late
    table_store.insert("runs", _run("r2", "RUNNING", None, version=4))
    rows = table_store.query("SELECT run_id, status, end_time, deleted_time FROM runs FINAL ORDER BY run_id")
    assert rows == [("r1", "FINISHED", 1_700_000_360_000, None), ("r2", "RUNNING", None, None)]


def test_nullable_columns_round_trip(table_store: TableStore) -> None:
    table_store.insert("runs", {**_run("r3", "KILLED", None, 1), "deleted_time": [1_700_000_000_123]})
    rows = table_store.query(
        "SELECT end_time, deleted_time, isNull(end_time) FROM runs FINAL WHERE run_id = %(r)s", {"r": "r3"}
    )
    assert rows == [(None, 1_700_000_000_123, 1)]


def test_latest_metric_argmax_over_tuples(table_store: TableStore) -> None:
    cols: dict[str, list[Any]] = {
        "run_id": ["r"] * 4,
        "key": ["loss"] * 4,
        "step": [1, 3, 3, 2],
        "timestamp": [10, 20, 30, 40],
        "value": [0.5, 0.1, 0.3, 0.9],
        "is_nan": [0, 0, 0, 0],
    }
    table_store.insert("latest_metrics", cols)
    rows = table_store.query(
        "SELECT key, argMax((value, is_nan, timestamp, step), (step, timestamp, value)) "
        "FROM latest_metrics WHERE run_id IN %(ids)s GROUP BY run_id, key",
        {"ids": ("r",)},
    )
    assert rows == [("loss", (0.3, 0, 30, 3))]


def test_invalid_statement_is_rejected(table_store: TableStore) -> None:
    with pytest.raises(StoreRejected):
        table_store.query("SELECT no_such_column FROM metrics")
    with pytest.raises(StoreRejected):
        table_store.insert("metrics", {"run_id": ["r"], "no_such_column": [1]})


def test_query_lines_gives_the_values_as_bytes_in_order_in_bounded_blocks(table_store: TableStore) -> None:
    n = 2 * LINE_BLOCK + 5
    table_store.insert("metrics", _metric_rows("run-c", n))
    sql = "SELECT concat(key, ' é\t', toString(step), '\"') FROM metrics WHERE run_id = %(run)s ORDER BY step DESC"
    blocks = list(table_store.query_lines(sql, {"run": "run-c"}))
    assert len(blocks) >= 3 and all(0 < len(b) <= LINE_BLOCK for b in blocks)
    assert [v for b in blocks for v in b] == [f'k{s % 3} é\t{s}"'.encode() for s in reversed(range(n))]
    assert list(table_store.query_lines(sql, {"run": "none"})) == []


def test_query_text_gives_what_query_lines_gives_at_once(table_store: TableStore) -> None:
    table_store.insert("metrics", _metric_rows("run-t", 3000))
    sql = "SELECT concat(key, ' é\t', toString(step), '\"') FROM metrics WHERE run_id = %(run)s ORDER BY step"
    text = table_store.query_text(sql, {"run": "run-t"})
    assert text == [v for b in table_store.query_lines(sql, {"run": "run-t"}) for v in b]
    assert text[:2] == ['k0 é\t0"'.encode(), 'k1 é\t1"'.encode()] and len(text) == 3000
    assert table_store.query_text(sql, {"run": "none"}) == []


def test_query_lines_closed_early_leaves_the_store_usable(table_store: TableStore) -> None:
    n = 3 * LINE_BLOCK
    table_store.insert("metrics", _metric_rows("run-d", n))
    sql = "SELECT toString(step) FROM metrics WHERE run_id = 'run-d' ORDER BY step"
    blocks = table_store.query_lines(sql)
    assert next(blocks)[:3] == [b"0", b"1", b"2"]
    blocks.close()
    assert table_store.query("SELECT count() FROM metrics WHERE run_id = 'run-d'") == [(n,)]
    assert [int(v) for b in table_store.query_lines(sql) for v in b] == list(range(n))
