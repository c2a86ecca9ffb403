"""get-history's keyset pages bounded by ``metric_spans`` (``TrackingReader.metric_history_after``), on chDB
and on the server: every page of random histories — timestamps out of step order, equal timestamps across
steps, replays in other batchings, NaN and +-inf, a constant step, negative and extreme steps — equals the
slice of a Python sort of the distinct points; the bounded read is the one taken; a store without span rows
(or migrated before the table existed) still pages right."""

from __future__ import annotations

import itertools
import random
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import orjson
import pytest

from tests.reads.test_metric_reads import bulk_rows
from trackstream.reads import TrackingReader
from trackstream.reads import store as reads_store
from trackstream.reads.store import MAX_STEP_RANGES, SPAN_SHIFT, HistoryKey, _step_ranges, history_point
from trackstream.tables import TableStore

Point = tuple[int, int, float, int]  # step, timestamp, stored value (0.0 for NaN), is_nan
BIG = sys.float_info.max  # +-inf is stored as +-max, as MLflow's SQL store does


class Recording:
    """The store, with the SQL of every query kept (to tell which read a page took)."""

    def __init__(self, store: TableStore) -> None:
        self.store, self.sql = store, []  # type: ignore[var-annotated]

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        self.sql.append(sql)
        return self.store.query(sql, params)

    def query_lines(self, sql: str, params: Mapping[str, Any] | None = None) -> Iterator[list[bytes]]:
        self.sql.append(sql)
        return self.store.query_lines(sql, params)

    def query_text(self, sql: str, params: Mapping[str, Any] | None = None) -> list[bytes]:
        self.sql.append(sql)
        return self.store.query_text(sql, params)


def _insert(store: TableStore, run: str, key: str, points: Sequence[Point]) -> None:
    store.insert(
        "metrics",
        {
            "run_id": [run] * len(points),
            "key": [key] * len(points),
            "step": [p[0] for p in points],
            "timestamp": [p[1] for p in points],
            "value": [p[2] for p in points],
            "is_nan": [p[3] for p in points],
        },
    )


def _value(rnd: random.Random) -> tuple[float, int]:
    r = rnd.random()
    if r < 0.05:
        return 0.0, 1  # NaN
    if r < 0.08:
        return rnd.choice([BIG, -BIG]), 0
    return rnd.choice([0.5, 1.0, -2.0, float(rnd.randrange(100))]), 0


Shape = Callable[[random.Random, int], tuple[int, int]]  # (rnd, i) -> (step, timestamp)
SHAPES: dict[str, Shape] = {
    # steps in order, time in order, spread over many buckets
    "monotone": lambda rnd, i: (i * 37, 1_700_000_000_000 + i),
    # time runs backwards at times and often repeats across steps
    "shuffled_time": lambda rnd, i: (rnd.randrange(-3000, 60_000), 1_000 + rnd.randrange(400)),
    # equal timestamps over runs of steps (a batch logged with one timestamp)
    "time_plateaus": lambda rnd, i: (i * 11, 5_000 + (i // 50) * 7),
    "constant_step": lambda rnd, i: (0, rnd.randrange(-500, 500)),
    "negative_steps": lambda rnd, i: (-i * 300 - rnd.randrange(3), -(10**12) + i // 3),
    # the extremes of Int64 steps and timestamps, next to ordinary ones
    "extremes": lambda rnd, i: (
        rnd.choice([-(2**63), 2**63 - 1, -(2**63) + 1023, 2**63 - 1024, rnd.randrange(-5000, 5000)]),
        rnd.choice([-(2**63), 2**63 - 1, rnd.randrange(100)]),
    ),
}


def _history(rnd: random.Random, shape: Shape, n: int) -> list[Point]:
    points = []
    for i in range(n):
        step, ts = shape(rnd, i)
        value, nan = _value(rnd)
        points.append((step, ts, value, nan))
        if rnd.random() < 0.05:  # the same step and time with another value
            other, other_nan = _value(rnd)
            points.append((step, ts, other, other_nan))
    return points


def _reference(points: Sequence[Point]) -> list[Point]:
    """MLflow's history order over the distinct points: timestamp, step, value, is_nan."""
    return sorted(set(points), key=lambda p: (p[1], p[0], p[2], p[3]))


def _pages(reader: TrackingReader, run: str, key: str, limit: int) -> list[list[Point]]:
    pages: list[list[Point]] = []
    after = None
    checked = False
    while True:
        lines, checked = reader.metric_history_after(run, key, after, limit, checked)
        # the store writes MLflow's JSON point: a value is a float even when integral (1.0, not 1), NaN "NaN"
        parsed = [orjson.loads(line) for line in lines]
        assert all(p["key"] == key and type(p["step"]) is int and type(p["timestamp"]) is int for p in parsed)
        assert all(type(p["value"]) is float or p["value"] == "NaN" for p in parsed)
        page = [history_point(line) for line in lines]
        pages.append(page)
        if len(page) < limit:
            return pages
        step, ts, value, nan = page[-1]
        after = HistoryKey(ts, step, value, nan)
        assert len(pages) < 10_000, "paging does not end"


def _expected(reference: list[Point], limit: int) -> list[list[Point]]:
    pages = [reference[i : i + limit] for i in range(0, len(reference), limit)]
    if not pages or len(pages[-1]) == limit:
        pages.append([])  # a full last page is followed by an empty one
    return pages


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_page_is_the_slice_of_the_sorted_distinct_points(table_store: TableStore, shape: str) -> None:
    rnd = random.Random(f"history-{shape}")
    points = _history(rnd, SHAPES[shape], 700)
    order = points[:]
    rnd.shuffle(order)
    for i in range(0, len(order), 97):  # blocks of unrelated points: parts, each with its span rows
        _insert(table_store, "run", "loss", order[i : i + 97])
    replayed = rnd.sample(points, 200)  # replays of some points in other batchings: spans over-count them
    _insert(table_store, "run", "loss", replayed[:70])
    _insert(table_store, "run", "loss", replayed[70:])
    _insert(table_store, "run", "other", points[:100])  # another key of the run, and another run, apart
    _insert(table_store, "other-run", "loss", points[:100])
    reference = _reference(points)
    recording = Recording(table_store)
    reader = TrackingReader(cast(TableStore, recording))
    for limit in (5, 64, 300):
        assert _pages(reader, "run", "loss", limit) == _expected(reference, limit), limit
    assert _pages(reader, "run", "other", 25) == _expected(_reference(points[:100]), 25)
    assert reader.metric_history_after("nobody", "loss", None, 10) == ([], False)
    if shape == "monotone":  # the pages of an ordered history read a bounded window of steps
        bounded = [s for s in recording.sql if "timestamp <= " in s]
        assert len(bounded) > 20


def test_a_page_over_all_steps_after_a_wrong_estimate(table_store: TableStore) -> None:
    """A bucket replayed many times over-counts its points: the bounded read comes back short, is widened,
    and the page is still exact."""
    points = [(s, 10_000 + s, float(s), 0) for s in range(0, 8 * 1024, 4)]
    _insert(table_store, "run", "loss", points)
    for _ in range(20):  # the first bucket's estimate grows twenty-fold
        _insert(table_store, "run", "loss", points[:256])
    reader = TrackingReader(table_store)
    assert _pages(reader, "run", "loss", 300) == _expected(_reference(points), 300)


def test_sparse_steps_page_without_their_many_spans(table_store: TableStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """One point per bucket: past MAX_SPAN_ROWS span rows the spans are not read, and pages are still exact."""
    monkeypatch.setattr(reads_store, "MAX_SPAN_ROWS", 100)
    points = [(s * 1024, 50_000 - s // 3, float(s % 7), 0) for s in range(300)]
    _insert(table_store, "sparse", "loss", points)
    _insert(table_store, "dense", "loss", points[:100])  # at the bound: read through its spans
    recording = Recording(table_store)
    reader = TrackingReader(cast(TableStore, recording))
    counted = "SELECT 1 FROM metric_spans"  # the stopped read that counts a (run, key)'s span rows
    pages = _pages(reader, "sparse", "loss", 40)
    assert pages == _expected(_reference(points), 40)
    assert not any("timestamp <= " in s for s in recording.sql)
    assert sum(counted in s for s in recording.sql) == len(pages)  # too many: every page counts again
    recording.sql.clear()
    assert _pages(reader, "dense", "loss", 40) == _expected(_reference(points[:100]), 40)
    assert any("timestamp <= " in s for s in recording.sql)
    assert sum(counted in s for s in recording.sql) == 1  # few: the later pages are told so by the first


def test_pages_are_right_without_span_rows_and_after_migrate_fills_them(table_store: TableStore) -> None:
    rnd = random.Random(7)
    points = _history(rnd, SHAPES["monotone"], 3000)
    table_store.command("DROP TABLE metric_spans_mv")
    table_store.command("DROP TABLE metric_spans")
    table_store.command(
        "CREATE TABLE metric_spans (run_id String, key String, bucket Int64, "
        "min_timestamp AggregateFunction(min, Int64), max_timestamp AggregateFunction(max, Int64), "
        "points AggregateFunction(count)) ENGINE = AggregatingMergeTree() ORDER BY (run_id, key, bucket)"
    )
    for i in range(0, len(points), 500):  # a store written before the view: no span row
        _insert(table_store, "run", "loss", points[i : i + 500])
    reader = TrackingReader(table_store)
    expected = _expected(_reference(points), 97)
    assert _pages(reader, "run", "loss", 97) == expected  # no span: the unbounded read
    table_store.command("DROP TABLE metric_spans")
    table_store.migrate()  # creates the table and the view, and fills it from metrics
    spans = (
        "SELECT bucket, minMerge(min_timestamp), maxMerge(max_timestamp), countMerge(points) "
        "FROM metric_spans GROUP BY bucket ORDER BY bucket"
    )
    filled = table_store.query(spans)
    want: dict[int, tuple[int, int, int, int]] = {}  # bucket: min, max, distinct points, rows
    for step, ts, _, _ in points:
        lo, hi, _, rows = want.get(step >> SPAN_SHIFT, (ts, ts, 0, 0))
        want[step >> SPAN_SHIFT] = (min(lo, ts), max(hi, ts), 0, rows + 1)
    for step, _, _, _ in set(points):
        lo, hi, distinct, rows = want[step >> SPAN_SHIFT]
        want[step >> SPAN_SHIFT] = (lo, hi, distinct + 1, rows)
    assert [(b, lo, hi) for b, lo, hi, _ in filled] == [(b, v[0], v[1]) for b, v in sorted(want.items())]
    # the count is an estimate: the rows `metrics` held (merges may have collapsed identical ones)
    assert all(want[b][2] <= n <= want[b][3] for b, _, _, n in filled)
    recording = Recording(table_store)
    assert _pages(TrackingReader(cast(TableStore, recording)), "run", "loss", 97) == expected
    assert any("timestamp <= " in s for s in recording.sql)
    later = [(s, 1_800_000_000_000 + s, 1.0, 0) for s in range(200_000, 200_050)]
    _insert(table_store, "run", "loss", later)  # the view is there: later points get their spans
    assert _pages(reader, "run", "loss", 97) == _expected(_reference(points + later), 97)
    table_store.migrate()  # a second migration leaves the table as it is
    assert table_store.query(spans)[: len(filled)] == filled


def test_history_bulk_reads_the_first_points_of_a_long_run_through_its_spans(table_store: TableStore) -> None:
    long = _history(random.Random(11), SHAPES["monotone"], 5000)
    _insert(table_store, "long", "loss", long)
    _insert(table_store, "a", "loss", [(0, 9, 1.0, 0), (1, 8, 2.0, 0)])
    _insert(table_store, "c", "loss", [(5, 1, 0.0, 1)])
    recording = Recording(table_store)
    reader = TrackingReader(cast(TableStore, recording))
    whole = [("a", 1, 8, 2.0, 0), ("a", 0, 9, 1.0, 0), ("c", 5, 1, 0.0, 1)]  # by run id, then history order
    whole += [("long", *p) for p in _reference(long)]
    assert bulk_rows(reader.metric_history_bulk(["c", "long", "a"], "loss", 10_000)) == whole
    recording.sql.clear()
    assert bulk_rows(reader.metric_history_bulk(["c", "long", "a"], "loss", 1000)) == whole[:1000]
    assert any("timestamp <= " in s for s in recording.sql)  # long's first 997 points: a bounded read


def test_step_ranges_cover_every_bucket_and_stay_few() -> None:
    width = 1 << SPAN_SHIFT
    assert _step_ranges([0, 1, 2, 5, -1]) == [(-width, 3 * width - 1), (5 * width, 6 * width - 1)]
    assert _step_ranges([-(2**53), 2**53 - 1]) == [(-(2**63), -(2**63) + width - 1), (2**63 - width, 2**63 - 1)]
    rnd = random.Random(3)
    buckets = rnd.sample(range(-10_000, 10_000), 500)
    ranges = _step_ranges(buckets)
    assert len(ranges) == MAX_STEP_RANGES
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))
    assert all(any(lo <= b * width and b * width + width - 1 <= hi for lo, hi in ranges) for b in buckets)
