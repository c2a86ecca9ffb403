"""``metric_buckets`` is written by the metrics sink (it was a materialized view): per inserted block the
same rows the view wrote, i.e. the FILLS query over that block's points, on chDB and on the server; a
store that still has the view loses it on migrate, and a store migrated before the table existed is
filled from ``metrics``."""

from __future__ import annotations

import math
import random

from consumers.metrics import MetricsSink
from consumers.sink import Event
from schemas import codec, ddl
from schemas.events import METRICS, MetricBatch
from tests.contracts.conftest import table_store
from trackstream.log import Message, Partition
from trackstream.tables import TableStore

__all__ = ["table_store"]

COLUMNS = "run_id, key, bucket, first_step, first_timestamp, first_value, first_is_nan, points"
ROWS = f"SELECT {COLUMNS} FROM {{}} ORDER BY 1, 2, 3"
P = Partition("metrics", 0)
SELECT = ddl.FILLS["metric_buckets"].replace("INSERT INTO metric_buckets ", "")


def _event(offset: int, batch: MetricBatch) -> Event:
    return Event(Message(P, offset, b"k", b"", ()), codec.Decoded(METRICS, 2, {}, batch))


def _batch(run_id: str, points: list[tuple[str, int, int, float]]) -> MetricBatch:
    names = sorted({p[0] for p in points})
    return MetricBatch(
        run_id=run_id, key_names=names, key_index=[names.index(p[0]) for p in points],
        steps=[p[1] for p in points], timestamps=[p[2] for p in points], values=[p[3] for p in points],
    )  # fmt: skip


def _points(rng: random.Random, n: int) -> list[tuple[str, int, int, float]]:
    out: list[tuple[str, int, int, float]] = []
    for _ in range(n):
        value = rng.choice([rng.random(), math.nan, 0.0, 1e308])
        # distinct timestamps: a newer ClickHouse (chDB) collapses duplicate points within a block on insert
        out.append((rng.choice("ab"), rng.randrange(-300, 2000), rng.randrange(0, 50) * 10_000 + len(out), value))
    return out


def test_the_sink_writes_the_rows_the_view_wrote(table_store: TableStore) -> None:
    rng = random.Random(7)
    sink = MetricsSink(table_store)
    expected: list[tuple[object, ...]] = []
    for block in range(4):  # one write = one insert block, as the pipeline flushes
        events = [_event(block * 10 + i, _batch(f"run{i % 2}", _points(rng, 700))) for i in range(3)]
        table_store.command("TRUNCATE TABLE metrics")
        sink.write(events)
        # what the view computed for this block: the fill over exactly its points
        expected += [tuple(r) for r in table_store.query(SELECT)]
    got = [tuple(r) for r in table_store.query(ROWS.format("metric_buckets"))]
    assert sorted(got) == sorted(expected)
    assert sum(r[-1] for r in got) == 4 * 3 * 700  # every point counted once per block


def test_migrate_drops_the_old_view_and_fills_a_new_table(table_store: TableStore) -> None:
    sink = MetricsSink(table_store)
    table_store.command(f"CREATE MATERIALIZED VIEW metric_buckets_mv TO metric_buckets AS {SELECT}")  # an old store
    table_store.migrate()
    assert not table_store.query("EXISTS TABLE metric_buckets_mv")[0][0]
    sink.write([_event(0, _batch("r", [("a", s, s, float(s)) for s in range(500)]))])
    sink.write([_event(1, _batch("r", [("a", s, s, float(s)) for s in range(500, 600)]))])
    assert table_store.query("SELECT count() FROM metric_buckets")[0][0] == 8 + 3  # the sink's rows, no view's
    table_store.command("DROP TABLE metric_buckets")  # a store migrated before the table existed
    table_store.migrate()
    assert [tuple(r) for r in table_store.query(ROWS.format("metric_buckets"))] == [
        ("r", "a", b, 64 * b, 64 * b, float(64 * b), 0, 64 if b < 9 else 24) for b in range(10)
    ]  # one row per bucket over every point
