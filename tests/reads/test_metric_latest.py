"""``metric_latest``, the reduced latest point per (key, run) that runs/search reads, on chDB and on the
server: MLflow's rule (highest step, then timestamp, then value) over any batching, replay, arrival
order and merge; extreme and negative values, steps and timestamps decoded exactly; NaN; and the fill
of a store migrated before the table existed."""

from __future__ import annotations

import random
import sys
from typing import Any

from trackstream.reads import TrackingReader, search
from trackstream.tables import TableStore

Candidate = tuple[int, int, float, int]  # step, timestamp, stored value (0.0 for NaN), is_nan
EXTREMES = [0.0, -0.0, 1.5, -1.5, 0.1, -0.1, sys.float_info.max, -sys.float_info.max, 5e-324, -5e-324, 1e-300]
INT64 = [0, 1, -1, 2**63 - 1, -(2**63), 1_700_000_000_000, -1_700_000_000_000]

DECODED = (
    f"SELECT run_id, {search.LATEST_STEP}, {search.LATEST_TIMESTAMP}, {search.LATEST_VALUE}, {search.LATEST_IS_NAN} "
    "FROM (SELECT run_id, finalizeAggregation(latest) AS _l FROM metric_latest FINAL PREWHERE key = %(k)s) "
    "ORDER BY run_id"
)


def _insert(store: TableStore, run_key_candidates: list[tuple[str, str, Candidate]]) -> None:
    store.insert(
        "latest_metrics",
        {
            "run_id": [r for r, _, _ in run_key_candidates],
            "key": [k for _, k, _ in run_key_candidates],
            "step": [c[0] for _, _, c in run_key_candidates],
            "timestamp": [c[1] for _, _, c in run_key_candidates],
            "value": [c[2] for _, _, c in run_key_candidates],
            "is_nan": [c[3] for _, _, c in run_key_candidates],
        },
    )


def _mlflow_latest(candidates: list[Candidate]) -> Candidate:
    """MLflow's latest: the max over (step, timestamp, value). A tie between a NaN (stored as 0.0) and a
    0.0 is broken as the rank bytes do: the NaN wins."""
    return max(candidates, key=lambda c: (c[0], c[1], c[2], c[3]))


def _decoded(store: TableStore, key: str) -> dict[str, tuple[Any, ...]]:
    return {r[0]: tuple(r[1:]) for r in store.query(DECODED, {"k": key})}


def _same(got: tuple[Any, ...], want: Candidate) -> bool:
    # -0.0 == 0.0, as in MLflow's comparison (chDB's JSON answer does not keep the zero's sign anyway)
    return got == want and type(got[2]) is float


def test_the_latest_point_of_random_candidates_in_any_batching_and_replays(table_store: TableStore) -> None:
    rnd = random.Random(99)
    by_run: dict[str, list[Candidate]] = {}
    rows: list[tuple[str, str, Candidate]] = []
    for i in range(150):
        run = f"run-{i:03d}"
        for _ in range(rnd.randrange(1, 8)):
            # few distinct steps and timestamps: ties on them are common, so value decides often
            nan = int(rnd.random() < 0.1)
            value = 0.0 if nan else rnd.choice([*EXTREMES, rnd.uniform(-5, 5)])
            cand = (rnd.choice([0, 1, 2, -3, *INT64]), rnd.choice([5, 6, -7, *INT64]), value, nan)
            by_run.setdefault(run, []).append(cand)
            rows.append((run, "loss", cand))
    rnd.shuffle(rows)
    for part in range(5):  # five blocks (parts), a run's candidates spread over them
        _insert(table_store, rows[part::5])
    _insert(table_store, rows[:200])  # a replay of some, batched differently
    _insert(table_store, [(r, "acc", (0, 0, 1.0, 0)) for r in list(by_run)[:10]])  # another key apart
    got = _decoded(table_store, "loss")
    assert set(got) == set(by_run)
    wrong = {r: (got[r], _mlflow_latest(c)) for r, c in by_run.items() if not _same(got[r], _mlflow_latest(c))}
    assert wrong == {}
    table_store.command("OPTIMIZE TABLE metric_latest FINAL")  # merged: one row per (key, run), same answer
    assert table_store.query("SELECT count() FROM metric_latest") == [(len(by_run) + 10,)]
    assert _decoded(table_store, "loss") == got
    assert set(_decoded(table_store, "acc").values()) == {(0, 0, 1.0, 0)}


def test_a_later_lower_point_and_an_exact_replay_change_nothing(table_store: TableStore) -> None:
    _insert(table_store, [("r", "loss", (10, 100, 0.25, 0))])
    _insert(table_store, [("r", "loss", (9, 999, 7.0, 0)), ("r", "loss", (10, 99, 9.0, 0))])  # late arrivals
    _insert(table_store, [("r", "loss", (10, 100, 0.25, 0))])  # replayed
    assert _decoded(table_store, "loss") == {"r": (10, 100, 0.25, 0)}
    _insert(table_store, [("r", "loss", (10, 100, 0.5, 0))])  # same step and time, higher value: MLflow takes it
    assert _decoded(table_store, "loss") == {"r": (10, 100, 0.5, 0)}


def test_nan_latest_matches_only_not_equal_and_sorts_after_values(table_store: TableStore) -> None:
    runs = {"a": 0.5, "b": float("nan"), "c": 2.0}
    for rid in runs:
        table_store.insert("runs", _run_row(rid))
    for rid, value in runs.items():
        nan = int(value != value)
        _insert(table_store, [(rid, "loss", (0, 1, 9.0, 0)), (rid, "loss", (1, 1, 0.0 if nan else value, nan))])
    reader = TrackingReader(table_store)

    def ids(filter_string: str, order: list[str] | None = None) -> list[str]:
        return [
            r["info"]["run_id"] for r in reader.search_runs(["1"], ["active"], filter_string, order or [], 0, 10).items
        ]

    assert ids("metrics.loss < 1", ["metrics.loss"]) == ["a"]
    assert ids("metrics.loss != 0.5", ["metrics.loss"]) == ["c", "b"]
    assert ids("metrics.loss >= 0", ["metrics.loss DESC"]) == ["c", "a"]
    assert ids("", ["metrics.loss DESC"]) == ["c", "a", "b"]
    assert ids("metrics.loss = 9") == []  # an older candidate never matches


def test_migrate_fills_the_table_from_a_store_that_had_only_candidates(table_store: TableStore) -> None:
    table_store.command("DROP TABLE metric_latest_mv")
    table_store.command("DROP TABLE metric_latest")
    _insert(
        table_store,
        [("old", "loss", (1, 1, 0.5, 0)), ("old", "loss", (2, 1, -0.5, 0)), ("nan", "loss", (3, 1, 0.0, 1))],
    )
    table_store.migrate()
    assert _decoded(table_store, "loss") == {"nan": (3, 1, 0.0, 1), "old": (2, 1, -0.5, 0)}
    _insert(table_store, [("old", "loss", (3, 0, 4.0, 0))])  # the view is back: later candidates count
    assert _decoded(table_store, "loss")["old"] == (3, 0, 4.0, 0)
    before = _decoded(table_store, "loss")
    table_store.migrate()  # a second migration leaves the table as it is
    assert _decoded(table_store, "loss") == before
    assert table_store.query("SELECT count() FROM metric_latest FINAL") == [(2,)]


def _run_row(run_id: str) -> dict[str, list[Any]]:
    return {
        "run_id": [run_id], "experiment_id": ["1"], "run_name": [run_id], "user_id": ["u"], "status": ["FINISHED"],
        "start_time": [0], "end_time": [None], "artifact_uri": ["a"], "lifecycle_stage": ["active"],
        "deleted_time": [None], "_version": [1],
    }  # fmt: skip
