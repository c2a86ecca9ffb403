"""The bucket sample of long runs (get-history-bulk-interval past ``EXACT_SAMPLE_POINTS``), on chDB and on
the server: at most max_results real points in step order, the first and last point of the (step-ranged)
history always in, evenly spread over the steps; runs of at most max_results points answered in full."""

from __future__ import annotations

from itertools import pairwise

import pytest

from ingest.handlers.metrics import sample_points
from tests.reads.test_metric_reads import Point, _put, bulk_rows
from trackstream.reads import TrackingReader
from trackstream.reads import store as store_module
from trackstream.tables import TableStore


@pytest.fixture(autouse=True)
def _small_exact_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    # long runs without writing 20,000 points per case: the bound is a cost knob, not a behaviour
    monkeypatch.setattr(store_module, "EXACT_SAMPLE_POINTS", 200)


def _check(points: list[Point], got: list[tuple[int, int, float, int]], m: int, span: tuple[int, int] | None) -> None:
    chosen = sorted({p for p in points if span is None or span[0] <= p[0] <= span[1]})
    assert got[0] == chosen[0] and got[-1] == chosen[-1]  # first and last point of the range
    assert len(got) <= m
    assert got == sorted(set(got))  # step order, each point once
    assert set(got) <= set(chosen)  # real points
    # evenly spread: a sample is at most one bucket (≤ a target spacing) after its target, so no gap between
    # consecutive samples is wider than two spacings, plus the data's own gaps and one finest bucket
    spacing = (chosen[-1][0] - chosen[0][0]) / max(1, m - 1)
    steps = sorted({p[0] for p in chosen})
    widest_data_gap = max((b - a for a, b in pairwise(steps)), default=0)
    for a, b in pairwise(got):
        assert b[0] - a[0] <= 2 * spacing + 2 * widest_data_gap + 64, (a, b)


def test_long_regular_run_is_spread_with_its_ends(table_store: TableStore) -> None:
    points = [(s, 1000 + s, float(s % 7), 0) for s in range(50_000)]
    _put(table_store, "big", "loss", points, blocks=50)
    got = TrackingReader(table_store).metric_samples(["big"], "loss", 320, None, None)["big"]
    _check(points, got, 320, None)
    assert len(got) >= 300  # not just a handful of points
    ranged = TrackingReader(table_store).metric_samples(["big"], "loss", 50, 1234, 40_001)["big"]
    _check(points, ranged, 50, (1234, 40_001))
    assert len(ranged) >= 45


def test_sparse_irregular_steps_and_several_points_per_step(table_store: TableStore) -> None:
    points: list[Point] = []
    step = -500
    for i in range(3000):
        step += (i * 7919) % 97 + 1  # irregular gaps, negative steps first
        points += [(step, 5, 1.0, 0), (step, 3, 2.0, 0), (step, 3, 0.0, 1)]  # three points at each step
    _put(table_store, "sparse", "loss", points, blocks=7)
    reader = TrackingReader(table_store)
    for m, span in (
        (320, None),
        (10, None),
        (2, None),
        (40, (10_000, 90_000)),
        (25, (points[5][0], points[5][0] + 40)),
    ):
        got = reader.metric_samples(["sparse"], "loss", m, *(span or (None, None)))["sparse"]
        _check(points, got, m, span)
    assert reader.metric_samples(["sparse"], "loss", 1, None, None)["sparse"] == [max(points)]


def test_replayed_duplicates_appear_once(table_store: TableStore) -> None:
    points = [(s, s, float(s), 0) for s in range(0, 60_000, 3)]
    _put(table_store, "r", "loss", points, blocks=4)
    _put(table_store, "r", "loss", points, blocks=9)  # a replay, batched differently
    _put(table_store, "r", "loss", points[:5000], blocks=1)
    got = TrackingReader(table_store).metric_samples(["r"], "loss", 320, None, None)["r"]
    _check(points, got, 320, None)
    assert len(got) >= 300


def test_dense_steps_past_the_exact_bound(table_store: TableStore) -> None:
    # every point at a handful of steps: the step range has few buckets, still first and last are in
    points = [(s % 4, t, float(t), 0) for t in range(1000) for s in (t,)]
    _put(table_store, "d", "loss", points, blocks=3)
    got = TrackingReader(table_store).metric_samples(["d"], "loss", 20, None, None)["d"]
    _check(points, got, 20, None)


def test_several_runs_at_once_short_ones_exact(table_store: TableStore) -> None:
    runs = {
        "long1": [(s, s, float(s), 0) for s in range(30_000)],
        "long2": [(s * 10, s, 1.0, 0) for s in range(5_000)],
        "short": [(s, 9, float(s), 0) for s in range(0, 900, 7)],  # 129 points: every one
        "mid": [(s, s, 2.0, 0) for s in range(150)],  # over max_results, under the exact bound: NTILE
    }
    for run_id, points in runs.items():
        _put(table_store, run_id, "loss", points, blocks=3)
        _put(table_store, run_id, "loss", points[:40])  # replayed head
    _put(table_store, "long1", "other", [(0, 0, 0.0, 0)])
    got = TrackingReader(table_store).metric_samples([*runs, "none"], "loss", 130, None, None)
    _check(runs["long1"], got["long1"], 130, None)
    _check(runs["long2"], got["long2"], 130, None)
    assert got["short"] == sorted(runs["short"])
    assert got["mid"] == sample_points(sorted(runs["mid"]), 130)
    assert got["none"] == []


def test_migrate_fills_a_new_bucket_table_from_existing_points(table_store: TableStore) -> None:
    points = [(s, s, float(s), 0) for s in range(20_000)]
    _put(table_store, "old", "loss", points, blocks=2)
    table_store.command("DROP TABLE metric_buckets_mv")
    table_store.command("DROP TABLE metric_buckets")  # a store migrated before the bucket table existed
    table_store.migrate()
    got = TrackingReader(table_store).metric_samples(["old"], "loss", 100, None, None)["old"]
    _check(points, got, 100, None)
    assert len(got) >= 90


def test_history_bulk_collapses_replays_across_parts(table_store: TableStore) -> None:
    points = [(s, 1000 - s, float(s), 0) for s in range(300)]  # history order is the reverse of step order
    _put(table_store, "b", "m", points, blocks=3)
    _put(table_store, "b", "m", points[::2], blocks=2)  # replayed copies in other parts
    _put(table_store, "a", "m", [(0, 5, 1.0, 0), (0, 5, 1.0, 0), (1, 5, 0.0, 1)])
    reader = TrackingReader(table_store)
    got = bulk_rows(reader.metric_history_bulk(["b", "a"], "m", 10_000))
    expected_b = sorted(points, key=lambda p: (p[1], p[0], p[2], p[3]))
    assert got == [("a", 0, 5, 1.0, 0), ("a", 1, 5, 0.0, 1)] + [("b", *p) for p in expected_b]
    for limit in (1, 2, 3, 50, 301, 302):  # b's replays over-count it: it is read alone, by a page
        assert bulk_rows(reader.metric_history_bulk(["b", "a", "b"], "m", limit)) == got[:limit], limit
