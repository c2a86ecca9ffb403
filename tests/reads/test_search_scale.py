"""Search pages over a few thousand runs and experiments, on chDB and on the server, against the answer
computed in Python from the same rows: deleted and moved runs, replayed rows, candidates in unmerged
parts, NaN and missing metrics, runs of another experiment with the same metric, and many ties in the
ordered value (broken by start_time DESC, then run_id, as MLflow's SQL store does)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import pytest

from trackstream.reads import TrackingReader
from trackstream.tables import TableStore

RUNS = 2000
Row = dict[str, Any]


def _insert(store: TableStore, table: str, rows: list[Row]) -> None:
    store.insert(table, {k: [r[k] for r in rows] for k in rows[0]})


def _run(run_id: str, exp: str, start: int, version: int, stage: str = "active") -> Row:
    return {"run_id": run_id, "experiment_id": exp, "run_name": run_id, "user_id": "u", "status": "FINISHED",
            "start_time": start, "end_time": None, "artifact_uri": "a", "lifecycle_stage": stage,
            "deleted_time": 1 if stage == "deleted" else None, "_version": version}  # fmt: skip


class Fixture:
    """Runs of experiment 1 (and 200 of experiment 2), and what their latest ``loss``, ``lr`` and tag are."""

    def __init__(self, store: TableStore) -> None:
        rnd = random.Random(14)
        self.start: dict[str, int] = {}
        self.exp: dict[str, str] = {}
        self.stage: dict[str, str] = {}
        self.loss: dict[str, tuple[float, int]] = {}  # run -> (value, is_nan) of the latest point
        self.lr: dict[str, str] = {}
        self.kind: dict[str, str] = {}
        runs, candidates, params, tags = [], [], [], []
        for i in range(RUNS + 200):
            rid = f"r{i:05d}"
            exp = "1" if i < RUNS else "2"
            start = rnd.randrange(50)  # many equal start times: run_id breaks those ties
            self.start[rid], self.exp[rid], self.stage[rid] = start, exp, "active"
            runs.append(_run(rid, exp, start, 1))
            if i % 11 == 0:
                continue  # no metric, param or tag: missing sorts last
            steps = rnd.randrange(1, 4)
            for step in range(steps):
                # one candidate per batch; few distinct values, so the order has many ties
                nan = int(step == steps - 1 and i % 37 == 0)
                value = 0.0 if nan else rnd.randrange(20) / 20
                candidates.append({"run_id": rid, "key": "loss", "step": step, "timestamp": 5, "value": value,
                                   "is_nan": nan})  # fmt: skip
                self.loss[rid] = (value, nan)
            self.lr[rid] = str(i % 7)
            params.append({"run_id": rid, "key": "lr", "value": self.lr[rid], "_version": 1})
            self.kind[rid] = f"k{i % 3}"
            tags.append({"run_id": rid, "key": "kind", "value": self.kind[rid], "deleted": 0, "_version": 1})
        # three blocks each: three parts until a merge; the candidates of one run spread over them
        for table, rows in (("runs", runs), ("params", params), ("run_tags", tags)):
            for part in range(3):
                _insert(store, table, rows[part::3])
        rnd.shuffle(candidates)
        for part in range(3):
            _insert(store, "latest_metrics", candidates[part::3])
        # replays: the same rows again (runs at the same version, candidates as they were)
        _insert(store, "runs", runs[:300])
        _insert(store, "latest_metrics", candidates[:500])
        # newer versions: deleted runs, a run moved to the deleted stage and back, a tag deleted
        changed = []
        for i in range(0, RUNS, 13):
            rid = f"r{i:05d}"
            self.stage[rid] = "deleted"
            changed.append(_run(rid, "1", self.start[rid], 2, "deleted"))
        _insert(store, "runs", changed)
        _insert(store, "runs", [_run("r00013", "1", self.start["r00013"], 3)])
        self.stage["r00013"] = "active"
        _insert(store, "run_tags", [{"run_id": "r00001", "key": "kind", "value": "k1", "deleted": 1, "_version": 2}])
        self.kind.pop("r00001", None)

    def live(self, exps: tuple[str, ...] = ("1",)) -> list[str]:
        return [r for r in self.start if self.exp[r] in exps and self.stage[r] == "active"]


@pytest.fixture
def fixture(table_store: TableStore) -> Fixture:
    return Fixture(table_store)


def _default(f: Fixture) -> Callable[[str], tuple[Any, ...]]:
    return lambda r: (-f.start[r], r)


def _by_loss(f: Fixture, ascending: bool) -> Callable[[str], tuple[Any, ...]]:
    def key(r: str) -> tuple[Any, ...]:
        if r not in f.loss:
            return (2, 0.0, -f.start[r], r)  # missing: last
        value, nan = f.loss[r]
        if nan:
            return (1, 0.0, -f.start[r], r)  # NaN: after the values
        return (0, value if ascending else -value, -f.start[r], r)

    return key


def _pages(reader: TrackingReader, exps: list[str], filter_string: str, order: list[str], size: int) -> list[str]:
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = reader.search_runs(exps, ["active"], filter_string, order, offset, size)
        assert len(page.items) <= size
        seen += [r["info"]["run_id"] for r in page.items]
        offset = page.next_offset
    return seen


def test_metric_filter_and_order_across_pages(table_store: TableStore, fixture: Fixture) -> None:
    f, reader = fixture, TrackingReader(table_store)
    expected = sorted((r for r in f.live() if r in f.loss and not f.loss[r][1] and f.loss[r][0] < 0.5),
                      key=_by_loss(f, True))  # fmt: skip
    assert len(expected) > 500
    assert _pages(reader, ["1"], "metrics.loss < 0.5", ["metrics.loss ASC"], 100) == expected
    # the first page alone, as the UI asks for it
    first = reader.search_runs(["1"], ["active"], "metrics.loss < 0.5", ["metrics.loss ASC"], 0, 100)
    assert [r["info"]["run_id"] for r in first.items] == expected[:100] and first.next_offset == 100
    # "!=" keeps NaN latest values; a run without the metric matches no clause
    expected = sorted((r for r in f.live() if r in f.loss and (f.loss[r][1] or f.loss[r][0] != 0.5)),
                      key=_by_loss(f, False))  # fmt: skip
    assert _pages(reader, ["1"], "metrics.loss != 0.5", ["metrics.loss DESC"], 250) == expected


def test_metric_order_without_filter_puts_nan_then_missing_last(table_store: TableStore, fixture: Fixture) -> None:
    f, reader = fixture, TrackingReader(table_store)
    for ascending in (True, False):
        expected = sorted(f.live(), key=_by_loss(f, ascending))
        order = ["metrics.loss " + ("ASC" if ascending else "DESC")]
        assert _pages(reader, ["1"], "", order, 300) == expected


def test_metric_filter_on_another_key_than_the_order(table_store: TableStore, fixture: Fixture) -> None:
    f, reader = fixture, TrackingReader(table_store)
    expected = sorted((r for r in f.live() if r in f.loss and not f.loss[r][1] and f.loss[r][0] >= 0.75),
                      key=_default(f))  # fmt: skip
    assert _pages(reader, ["1"], "metrics.loss >= 0.75", [], 200) == expected


def test_runs_of_other_experiments_count_only_when_searched(table_store: TableStore, fixture: Fixture) -> None:
    f, reader = fixture, TrackingReader(table_store)
    both = ("1", "2")
    expected = sorted((r for r in f.live(both) if r in f.loss and not f.loss[r][1] and f.loss[r][0] < 0.25),
                      key=_by_loss(f, True))  # fmt: skip
    assert any(f.exp[r] == "2" for r in expected)
    assert _pages(reader, ["1", "2"], "metrics.loss < 0.25", ["metrics.loss"], 500) == expected
    only_two = [r for r in expected if f.exp[r] == "2"]
    assert _pages(reader, ["2"], "metrics.loss < 0.25", ["metrics.loss"], 500) == only_two


def test_param_and_tag_filters_in_the_default_order(table_store: TableStore, fixture: Fixture) -> None:
    f, reader = fixture, TrackingReader(table_store)
    expected = sorted((r for r in f.live() if f.lr.get(r) == "3"), key=_default(f))
    assert _pages(reader, ["1"], "params.lr = '3'", [], 100) == expected
    expected = sorted((r for r in f.live() if f.kind.get(r) == "k1"), key=_default(f))
    assert "r00001" not in expected  # its tag was deleted by a newer version
    assert _pages(reader, ["1"], "tags.kind = 'k1'", [], 100) == expected
    assert _pages(reader, ["1"], "", [], 400) == sorted(f.live(), key=_default(f))


def test_page_data_comes_from_the_newest_versions(table_store: TableStore, fixture: Fixture) -> None:
    f, reader = fixture, TrackingReader(table_store)
    page = reader.search_runs(["1"], ["active", "deleted"], "attributes.run_name = 'r00013'", [], 0, 10)
    (run,) = page.items
    assert run["info"]["lifecycle_stage"] == "active"  # version 3 over the deleted version 2
    value, nan = f.loss["r00013"]
    (metric,) = run["data"]["metrics"]
    assert metric["key"] == "loss" and (metric["value"] == "NaN" if nan else math.isclose(metric["value"], value))
    assert run["data"]["params"] == [{"key": "lr", "value": f.lr["r00013"]}]
    deleted = reader.search_runs(["1"], ["deleted"], "", [], 0, 1000)
    assert sorted(r["info"]["run_id"] for r in deleted.items) == sorted(
        r for r in f.start if f.exp[r] == "1" and f.stage[r] == "deleted"
    )


def test_experiment_pages_at_a_few_thousand(table_store: TableStore) -> None:
    n = 3000
    rows = [{"experiment_id": str(i), "name": f"exp-{i}", "artifact_location": "x", "lifecycle_stage": "active",
             "creation_time": i % 40, "last_update_time": 0, "_version": 1} for i in range(1, n + 1)]  # fmt: skip
    for part in range(2):
        _insert(table_store, "experiments", rows[part::2])
    # renamed and deleted by newer versions
    _insert(table_store, "experiments", [{**rows[0], "name": "renamed", "_version": 2},
                                         {**rows[1], "lifecycle_stage": "deleted", "_version": 2}])  # fmt: skip
    _insert(table_store, "experiment_tags", [{"experiment_id": str(i), "key": "team", "value": f"t{i % 5}",
                                              "deleted": 0, "_version": 1} for i in range(1, n + 1)])  # fmt: skip
    reader = TrackingReader(table_store)
    names: dict[str, str] = {str(r["experiment_id"]): str(r["name"]) for r in rows} | {"1": "renamed"}
    live = [e for e in names if e != "2"]

    def pages(filter_string: str, size: int) -> list[str]:
        seen: list[str] = []
        offset: int | None = 0
        while offset is not None:
            page = reader.search_experiments(["active"], filter_string, [], offset, size)
            seen += [e["experiment_id"] for e in page.items]
            offset = page.next_offset
        return seen

    def order(e: str) -> tuple[int, int]:
        return (-(int(e) % 40), int(e))  # creation_time DESC, then the id as a number

    assert pages("", 500) == sorted(live, key=order)
    expected = sorted((e for e in live if names[e].startswith("exp-1") and int(e) % 5 == 1), key=order)
    assert pages("name LIKE 'exp-1%' AND tags.team = 't1'", 100) == expected
    assert pages("name = 'exp-1'", 10) == []  # renamed by the newer version
    first = reader.search_experiments(["active"], "", [], 0, 1)
    assert [e["experiment_id"] for e in first.items] == sorted(live, key=order)[:1] and first.next_offset == 1
    assert first.items[0]["tags"] == [{"key": "team", "value": f"t{int(first.items[0]['experiment_id']) % 5}"}]
