"""Time of one search page at scale, straight on the read model (not a test; see bench/README.md).

    python -m bench.search --store chdb --runs 100000 --experiments 10000
    python -m bench.search --store clickhouse --url clickhouse://default:@127.0.0.1:9000/default

Fills a fresh store with ``--runs`` runs in one experiment (each with a ``loss`` metric logged at two
steps, an ``lr`` param and a tag) and ``--experiments`` experiments (each with a tag), the rows
inserted in blocks as the sinks write them, then times ``TrackingReader.search_runs`` (first page,
a metric filter and a metric order_by) and ``search_experiments`` (first page, default order and a
name filter). Prints the median and the worst of ``--repeat`` calls in ms. No gateway, no HTTP: the
figures are the SQL and the page assembly only.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trackstream.reads import TrackingReader
from trackstream.tables import TableStore

BLOCK = 50_000
EXP_FILTER = "name LIKE 'exp-1%' AND tags.team = 't1'"


def _insert(store: TableStore, table: str, rows: list[dict[str, Any]]) -> None:
    for i in range(0, len(rows), BLOCK):
        block = rows[i : i + BLOCK]
        store.insert(table, {k: [r[k] for r in block] for k in block[0]})


def fill(store: TableStore, runs: int, experiments: int) -> None:
    run_rows, metric_rows, param_rows, tag_rows = [], [], [], []
    for i in range(runs):
        rid = uuid.uuid4().hex
        run_rows.append({
            "run_id": rid, "experiment_id": "1", "run_name": f"run-{i}", "user_id": "u", "status": "FINISHED",
            "start_time": i, "end_time": i + 10, "artifact_uri": "x", "lifecycle_stage": "active",
            "deleted_time": None, "_version": 1,
        })  # fmt: skip
        for step in (0, 1):
            metric_rows.append({"run_id": rid, "key": "loss", "step": step, "timestamp": i,
                                "value": ((i * 7919) % 1000) / 1000 + (1 - step), "is_nan": 0})  # fmt: skip
        param_rows.append({"run_id": rid, "key": "lr", "value": str(i % 10), "_version": 1})
        tag_rows.append({"run_id": rid, "key": "kind", "value": f"k{i % 3}", "deleted": 0, "_version": 1})
    exp_rows = [
        {"experiment_id": str(i + 2), "name": f"exp-{i}", "artifact_location": "x", "lifecycle_stage": "active",
         "creation_time": i, "last_update_time": i, "_version": 1}
        for i in range(experiments)
    ]  # fmt: skip
    exp_tags = [{"experiment_id": str(i + 2), "key": "team", "value": f"t{i % 5}", "deleted": 0, "_version": 1}
                for i in range(experiments)]  # fmt: skip
    for table, rows in (("runs", run_rows), ("latest_metrics", metric_rows), ("metrics", metric_rows),
                        ("params", param_rows), ("run_tags", tag_rows), ("experiments", exp_rows),
                        ("experiment_tags", exp_tags)):  # fmt: skip
        if rows:
            _insert(store, table, rows)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    fn()  # warm
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times), result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", choices=("chdb", "clickhouse"), default="chdb")
    ap.add_argument("--url", help="ClickHouse URL of an empty database (--store clickhouse)")
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--experiments", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    if args.store == "chdb":
        from trackstream.tables.chdb import ChdbStore

        store: TableStore = ChdbStore(Path(tempfile.mkdtemp(prefix="bench-search-")) / "chdb")
    else:
        from trackstream.tables.clickhouse import ClickHouseStore

        store = ClickHouseStore(args.url)
    store.migrate()
    start = time.perf_counter()
    fill(store, args.runs, args.experiments)
    print(f"filled {args.runs} runs, {args.experiments} experiments in {time.perf_counter() - start:.1f} s")
    reader = TrackingReader(store)
    cases: list[tuple[str, Callable[[], Any]]] = []
    for limit in (100, 1000):
        cases += [
            (f"runs/search metrics.loss < 0.5, order metrics.loss DESC, max_results={limit}",
             lambda n=limit: reader.search_runs(["1"], ["active"], "metrics.loss < 0.5", ["metrics.loss DESC"], 0, n)),
            (f"runs/search params.lr = '3', order start_time, max_results={limit}",
             lambda n=limit: reader.search_runs(["1"], ["active"], "params.lr = '3'", ["start_time"], 0, n)),
            (f"experiments/search default order, max_results={limit}",
             lambda n=limit: reader.search_experiments(["active"], "", [], 0, n)),
            (f"experiments/search name LIKE 'exp-1%' AND tags.team = 't1', max_results={limit}",
             lambda n=limit: reader.search_experiments(["active"], EXP_FILTER, [], 0, n)),
        ]  # fmt: skip
    for label, fn in cases:
        median, worst, page = timed(fn, args.repeat)
        print(f"{median:8.1f} ms median {worst:8.1f} ms worst  {len(page.items):5d} items  {label}")
    store.close()


if __name__ == "__main__":
    main()
