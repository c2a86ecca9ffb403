"""Metric history pages (keyset) and the bulk-interval sample (in SQL), on chDB and on the server.

The sample is checked against ``sample_points``, the Python statement of MLflow 3.17's SQL-store
sampling (NTILE buckets, first row of each, the last point kept), over every point the store holds.
"""

from __future__ import annotations

import random
import struct
import sys
from typing import Any

import orjson
import pytest

from ingest.handlers.metrics import sample_points
from trackstream.reads import TrackingReader
from trackstream.reads.store import HistoryKey, history_point
from trackstream.tables import TableStore

Point = tuple[int, int, float, int]  # step, timestamp, value, is_nan


def _put(store: TableStore, run_id: str, key: str, points: list[Point], blocks: int = 1) -> None:
    """Insert ``points`` in ``blocks`` inserts (separate parts, so FINAL has work to do)."""
    size = max(1, -(-len(points) // blocks))
    for i in range(0, len(points), size):
        part = points[i : i + size]
        store.insert(
            "metrics",
            {
                "run_id": [run_id] * len(part), "key": [key] * len(part), "step": [p[0] for p in part],
                "timestamp": [p[1] for p in part], "value": [p[2] for p in part], "is_nan": [p[3] for p in part],
            },
        )  # fmt: skip


def _history_order(points: list[Point]) -> list[Point]:
    return sorted(set(points), key=lambda p: (p[1], p[0], p[2], p[3]))


def _pages(reader: TrackingReader, run_id: str, key: str, size: int) -> list[list[Point]]:
    pages: list[list[Point]] = []
    after: HistoryKey | None = None
    while True:
        rows = [history_point(p) for p in reader.metric_history_after(run_id, key, after, size + 1).points]
        pages.append(rows[:size])
        if len(rows) <= size:
            return pages
        step, ts, value, nan = rows[size - 1]
        after = HistoryKey(ts, step, value, nan)


def test_keyset_pages_cover_the_history_once_with_ties(table_store: TableStore) -> None:
    # equal timestamps across steps, equal (timestamp, step) with different values, a NaN beside a 0.0,
    # and a replayed copy of every point (a second part): each point is on exactly one page, in order
    points: list[Point] = []
    for step in range(12):
        points += [(step, 100, 1.0, 0), (step, 100, 2.0, 0), (step, 50, -1.0, 0)]
    points += [(3, 7, 0.0, 0), (3, 7, 0.0, 1), (0, 7, 0.0, 1)]
    _put(table_store, "r1", "loss", points, blocks=3)
    _put(table_store, "r1", "loss", points[::2], blocks=2)  # duplicates
    _put(table_store, "r1", "other", [(0, 1, 9.0, 0)])
    reader = TrackingReader(table_store)
    expected = _history_order(points)
    for size in (1, 2, 5, 7, 1000):
        pages = _pages(reader, "r1", "loss", size)
        assert [p for page in pages for p in page] == expected, size
        assert all(len(page) == size for page in pages[:-1])
    assert _pages(reader, "nope", "loss", 3) == [[]]


def test_a_point_written_between_pages_is_not_repeated(table_store: TableStore) -> None:
    _put(table_store, "r1", "m", [(s, 10 * s, float(s), 0) for s in range(10)])
    reader = TrackingReader(table_store)
    first = [history_point(p) for p in reader.metric_history_after("r1", "m", None, 4).points]
    _put(table_store, "r1", "m", [(0, 0, -5.0, 0)])  # before the page boundary: an OFFSET page would repeat a point
    step, ts, value, nan = first[-1]
    rest = reader.metric_history_after("r1", "m", HistoryKey(ts, step, value, nan), 100).points
    assert [p[0] for p in first + [history_point(line) for line in rest]] == list(range(10))


def test_history_json_carries_every_double_exactly(table_store: TableStore) -> None:
    # the store writes each value's text (POINT_JSON): it must read back as the same double, the token too
    rng = random.Random(5)
    values = [rng.random(), 0.1 + 0.2, 1 / 3, 5e-324, 2.2250738585072014e-308, 1e22, 1e23, 3.7e-06, -0.0, 7.0]
    values += [struct.unpack("d", struct.pack("Q", rng.getrandbits(62)))[0] for _ in range(300)]
    values += [rng.uniform(-1e300, 1e300) for _ in range(100)] + [sys.float_info.max, -sys.float_info.max]
    points = [(i, 1000 + i, v, 0) for i, v in enumerate(values)] + [(len(values), 1000 + len(values), 0.0, 1)]
    _put(table_store, "r1", "m", points)
    lines = TrackingReader(table_store).metric_history_after("r1", "m", None, len(points) + 1).points
    parsed = [orjson.loads(line) for line in lines]
    assert [p["value"] for p in parsed] == [*values, "NaN"]
    assert all(type(p["value"]) is float for p in parsed[:-1])  # 7.0 too, not 7
    assert [history_point(line) for line in lines] == points
    assert all(p["key"] == "m" and set(p) == {"key", "value", "timestamp", "step"} for p in parsed)


@pytest.mark.parametrize(
    ("n", "max_results", "span"),
    [(0, 10, None), (1, 1, None), (5, 10, None), (10, 10, None), (11, 10, None), (100, 10, None),
     (101, 7, None), (997, 100, None), (2600, 2500, None), (50, 1, None), (300, 13, (40, 250)),
     (300, 2500, (99, 99)), (30, 4, (50, 60))],
)  # fmt: skip
def test_sample_is_mlflows_ntile_sample(
    table_store: TableStore, n: int, max_results: int, span: tuple[int, int] | None
) -> None:
    rng = random.Random(n * 31 + max_results)
    points: list[Point] = []
    for i in range(n):
        step = i // 3 if n > 50 else i  # several points per step in the larger cases
        points.append((step, rng.randrange(1000), rng.choice([0.5, 1.0, float(i)]), 1 if i % 17 == 5 else 0))
    points = [(s, t, 0.0 if nan else v, nan) for s, t, v, nan in points]
    _put(table_store, "b", "loss", points, blocks=3)
    _put(table_store, "b", "loss", points[: n // 2])  # replayed duplicates
    _put(table_store, "a", "loss", [(s, s, float(s), 0) for s in range(23)])  # another run, sorted before "b"
    _put(table_store, "b", "acc", [(0, 0, 0.0, 0)])
    reader = TrackingReader(table_store)
    start, end = span if span else (None, None)
    got = reader.metric_samples(["b", "a", "zz"], "loss", max_results, start, end)

    def expected(run_points: list[Point]) -> list[Any]:
        chosen = sorted({p for p in run_points if span is None or span[0] <= p[0] <= span[1]})
        return sample_points(chosen, max_results)

    assert got["b"] == expected(points)
    assert got["a"] == expected([(s, s, float(s), 0) for s in range(23)])
    assert got["zz"] == []


def test_sample_of_many_runs_in_one_query(table_store: TableStore) -> None:
    runs = {f"run{i:02d}": [(s, s, float(i * s), 0) for s in range(i * 7)] for i in range(12)}
    for run_id, points in runs.items():
        _put(table_store, run_id, "loss", points, blocks=2)
    got = TrackingReader(table_store).metric_samples(list(runs), "loss", 5, None, None)
    for run_id, points in runs.items():
        assert got[run_id] == sample_points(points, 5), run_id


def test_history_bulk_is_ordered_by_run_then_history(table_store: TableStore) -> None:
    _put(table_store, "r2", "m", [(1, 5, 1.0, 0), (0, 9, 2.0, 0)])
    _put(table_store, "r1", "m", [(2, 1, 3.0, 0), (2, 1, 3.0, 0)])
    reader = TrackingReader(table_store)
    assert bulk_rows(reader.metric_history_bulk(["r2", "r1"], "m", 100)) == [
        ("r1", 2, 1, 3.0, 0),
        ("r2", 1, 5, 1.0, 0),
        ("r2", 0, 9, 2.0, 0),
    ]
    assert len(reader.metric_history_bulk(["r2", "r1"], "m", 2)) == 2


def bulk_rows(lines: list[bytes]) -> list[tuple[str, int, int, float, int]]:
    """(run_id, step, timestamp, stored value, is_nan) of get-history-bulk's JSON points."""
    points = [orjson.loads(line) for line in lines]
    assert all(set(p) == {"key", "value", "timestamp", "step", "run_id"} for p in points)
    return [(p["run_id"], *history_point(line)) for p, line in zip(points, lines, strict=True)]
