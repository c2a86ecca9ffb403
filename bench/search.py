"""Search at scale: runs/search over 100,000 runs, experiments/search over 10,000 experiments (not a test;
see bench/README.md).

    python -m bench.search [--systems trackstream-kafka,trackstream-embedded,mlflow] [--runs 100000]
    python -m bench.search --store chdb|clickhouse [--url URL]     # the read model alone, no HTTP

The fixture is written straight into each system's tables, not through its API (the figure measured is
the search, not the fill; creating 100k runs through ``mlflow server`` takes hours): ``--runs`` runs in
one experiment, each with a ``loss`` metric logged at two steps (two latest-metric candidates, as two
batches leave them), an ``lr`` param and a ``kind`` tag, and ``--experiments`` experiments with a
``team`` tag. trackstream: columnar inserts into its ClickHouse tables (the server's database of a
Kafka-mode bench run, or the chDB directory of an embedded gateway before it starts); ``mlflow server``
3.17.2: rows inserted into its SQLite tables (runs, metrics, latest_metrics, params, tags, experiments,
experiment_tags) while it runs. The experiment the runs belong to is created through the API.

Each system then answers, through HTTP, ``--repeat`` times after one warm-up call, the queries of
:data:`QUERIES`; p50 and p95 in ms per query and system, with trackstream ÷ mlflow ratios, go to the
console and to bench/results/<timestamp>-search.json and .md.

With ``--store``, no gateway: the same queries on ``TrackingReader`` over a fresh chDB directory or
an empty ClickHouse database (the SQL and the page assembly only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

from bench.report import save
from bench.run import (
    API,
    Mlflow,
    System,
    TrackstreamEmbedded,
    TrackstreamKafka,
    call,
    machine_info,
    services_env,
    with_database,
)
from trackstream.tables import TableStore

BLOCK = 50_000
EXP_BASE = 1_000_000  # ids of the filled experiments (above any id the systems allocate in a bench run)

# label, endpoint, body (the runs' experiment id is filled in)
QUERIES: list[tuple[str, str, dict[str, Any]]] = [
    ("runs: metrics.loss < 0.5, order metrics.loss ASC, 100", "runs",
     {"filter": "metrics.loss < 0.5", "order_by": ["metrics.loss ASC"], "max_results": 100}),
    ("runs: params.lr = '3', default order, 100", "runs", {"filter": "params.lr = '3'", "max_results": 100}),
    ("runs: tags.kind = 'k1', default order, 100", "runs", {"filter": "tags.kind = 'k1'", "max_results": 100}),
    ("runs: no filter, default order (start_time DESC), 100", "runs", {"max_results": 100}),
    ("experiments: default order, 100", "experiments", {"max_results": 100}),
    ("experiments: default order, 1", "experiments", {"max_results": 1}),
    ("experiments: name LIKE 'exp-1%', 100", "experiments", {"filter": "name LIKE 'exp-1%'", "max_results": 100}),
    ("experiments: name LIKE 'exp-1%', 1", "experiments", {"filter": "name LIKE 'exp-1%'", "max_results": 1}),
]  # fmt: skip


def rows(runs: int, experiments: int, exp: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(table, rows) of the fixture in trackstream's tables, in blocks of at most ``BLOCK`` rows."""
    run_rows: list[dict[str, Any]] = []
    metric_rows: list[dict[str, Any]] = []
    param_rows: list[dict[str, Any]] = []
    tag_rows: list[dict[str, Any]] = []

    def flush() -> Iterator[tuple[str, list[dict[str, Any]]]]:
        for table, block in (("runs", run_rows), ("latest_metrics", metric_rows), ("metrics", metric_rows),
                             ("params", param_rows), ("run_tags", tag_rows)):  # fmt: skip
            if block:
                yield table, list(block)
        for block in (run_rows, metric_rows, param_rows, tag_rows):
            block.clear()

    for i in range(runs):
        rid = uuid.uuid4().hex
        run_rows.append({
            "run_id": rid, "experiment_id": exp, "run_name": f"run-{i}", "user_id": "u", "status": "FINISHED",
            "start_time": i, "end_time": i + 10, "artifact_uri": "x", "lifecycle_stage": "active",
            "deleted_time": None, "_version": 1,
        })  # fmt: skip
        for step in (0, 1):
            metric_rows.append({"run_id": rid, "key": "loss", "step": step, "timestamp": i,
                                "value": ((i * 7919) % 1000) / 1000 + (1 - step), "is_nan": 0})  # fmt: skip
        param_rows.append({"run_id": rid, "key": "lr", "value": str(i % 10), "_version": 1})
        tag_rows.append({"run_id": rid, "key": "kind", "value": f"k{i % 3}", "deleted": 0, "_version": 1})
        if len(run_rows) >= BLOCK // 2:
            yield from flush()
    yield from flush()
    exp_rows = [
        {"experiment_id": str(EXP_BASE + i), "name": f"exp-{i}", "artifact_location": "x",
         "lifecycle_stage": "active", "creation_time": i, "last_update_time": i, "_version": 1}
        for i in range(experiments)
    ]  # fmt: skip
    exp_tags = [{"experiment_id": str(EXP_BASE + i), "key": "team", "value": f"t{i % 5}", "deleted": 0,
                 "_version": 1} for i in range(experiments)]  # fmt: skip
    for table, block in (("experiments", exp_rows), ("experiment_tags", exp_tags)):
        for j in range(0, len(block), BLOCK):
            yield table, block[j : j + BLOCK]


def fill_tables(store: TableStore, runs: int, experiments: int, exp: str) -> None:
    for table, block in rows(runs, experiments, exp):
        store.insert(table, {k: [r[k] for r in block] for k in block[0]})


def fill_sqlite(db: Path, runs: int, experiments: int, exp: str) -> None:
    """The same fixture in mlflow server's SQLite tables."""
    with sqlite3.connect(db, timeout=60) as con:
        for table, block in rows(runs, experiments, exp):
            if table == "runs":
                con.executemany(
                    "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, "
                    "start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id) "
                    "VALUES (?, ?, 'LOCAL', '', '', ?, ?, ?, ?, '', 'active', ?, ?)",
                    [(r["run_id"], r["run_name"], r["user_id"], r["status"], r["start_time"], r["end_time"],
                      r["artifact_uri"], int(exp)) for r in block],
                )  # fmt: skip
            elif table == "metrics":
                con.executemany(
                    "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, 0)",
                    [(r["key"], r["value"], r["timestamp"], r["run_id"], r["step"]) for r in block],
                )
            elif table == "latest_metrics":  # one row per (run, key): the highest step
                con.executemany(
                    "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                    "VALUES (?, ?, ?, ?, 0, ?)",
                    [(r["key"], r["value"], r["timestamp"], r["step"], r["run_id"]) for r in block if r["step"] == 1],
                )
            elif table == "params":
                con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
                                [(r["key"], r["value"], r["run_id"]) for r in block])  # fmt: skip
            elif table == "run_tags":
                con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
                                [(r["key"], r["value"], r["run_id"]) for r in block])  # fmt: skip
            elif table == "experiments":
                con.executemany(
                    "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, "
                    "last_update_time) VALUES (?, ?, ?, 'active', ?, ?)",
                    [(int(r["experiment_id"]), r["name"], r["artifact_location"], r["creation_time"],
                      r["last_update_time"]) for r in block],
                )  # fmt: skip
            elif table == "experiment_tags":
                con.executemany("INSERT INTO experiment_tags (key, value, experiment_id) VALUES (?, ?, ?)",
                                [(r["key"], r["value"], int(r["experiment_id"])) for r in block])  # fmt: skip


def timed(fn: Callable[[], Any], repeat: int) -> dict[str, Any]:
    result = fn()  # warm
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(p95, 1), "n": repeat, "items": result}


def http_queries(url: str, exp: str, repeat: int, timeout: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, what, body in QUERIES:
        full = {**body, "experiment_ids": [exp]} if what == "runs" else dict(body)

        def one(path: str = f"{url}{API}/{what}/search", full: dict[str, Any] = full, what: str = what) -> int:
            resp = requests.post(path, json=full, timeout=timeout)
            assert resp.status_code == 200, resp.text[:300]
            return len(resp.json().get(what, []))

        try:
            out[label] = timed(one, repeat)
        except requests.Timeout:  # the other queries still get their figures
            out[label] = {"error": f"no answer within {timeout:.0f} s"}
            print(f"  no answer within {timeout:.0f} s  {label}", flush=True)
            continue
        print(f"  {out[label]['p50_ms']:8.1f} ms p50 {out[label]['p95_ms']:8.1f} ms p95  "
              f"{out[label]['items']:4d} items  {label}", flush=True)  # fmt: skip
    return out


def bench_system(name: str, args: argparse.Namespace) -> dict[str, Any]:
    run_dir = Path(tempfile.mkdtemp(prefix=f"trackstream-bench-search-{name}-"))
    print(f"bench.search: {name}, logs in {run_dir}", flush=True)
    system: System
    fill_s = 0.0
    if name == "trackstream-embedded":
        # chDB belongs to the gateway's process: the fixture goes into its directory before it starts
        from trackstream.tables.chdb import ChdbStore

        store: TableStore = ChdbStore(run_dir / "data" / "chdb")
        store.migrate()
        start = time.perf_counter()
        fill_tables(store, args.runs, args.experiments, "1")
        fill_s = time.perf_counter() - start
        store.insert("experiments", {"experiment_id": ["1"], "name": ["search-bench"], "artifact_location": ["x"],
                                     "lifecycle_stage": ["active"], "creation_time": [0], "last_update_time": [0],
                                     "_version": [1]})  # fmt: skip
        store.close()
        system = TrackstreamEmbedded(args, run_dir)
    else:
        system = (TrackstreamKafka if name == "trackstream-kafka" else Mlflow)(args, run_dir)
    try:
        system.start()
        url = system.urls[0]
        if name == "trackstream-embedded":
            exp = "1"  # written with the fixture
        else:
            exp = str(call(url, "POST", "/experiments/create", {"name": "search-bench"})["experiment_id"])
            start = time.perf_counter()
            if isinstance(system, TrackstreamKafka):
                from trackstream.tables.clickhouse import ClickHouseStore

                ch = ClickHouseStore(with_database(services_env()["TRACKSTREAM_CLICKHOUSE_URL"], system.database))
                fill_tables(ch, args.runs, args.experiments, exp)
                ch.close()
            else:
                assert isinstance(system, Mlflow)
                fill_sqlite(system.db, args.runs, args.experiments, exp)
            fill_s = time.perf_counter() - start
        print(f"  filled {args.runs} runs, {args.experiments} experiments in {fill_s:.1f} s", flush=True)
        repeat = args.mlflow_repeat if name == "mlflow" else args.repeat
        queries = http_queries(url, exp, repeat, args.timeout)
        return {"fill_s": round(fill_s, 1), "queries": queries, "config": system.config}
    finally:
        system.stop()
        system.cleanup()


def markdown(result: dict[str, Any]) -> str:
    systems = list(result["systems"])
    others = [s for s in systems if s != "mlflow"]
    ratio_heads = [f"{s} ÷ mlflow (p50)" for s in others] if "mlflow" in systems else []
    lines = [f"# Search, {result['timestamp']} ({result['runs']} runs in one experiment, "
             f"{result['experiments']} experiments)", "",
             "| query | " + " | ".join(f"{s} p50 / p95 ms" for s in systems) + "".join(f" | {h}" for h in ratio_heads)
             + " |", "|---" * (1 + len(systems) + len(ratio_heads)) + "|"]  # fmt: skip
    for label, _, _ in QUERIES:
        cells, ratios = [], []
        for s in systems:
            q = result["systems"][s].get("queries", {}).get(label)
            cells.append(("> " + q["error"].split()[-2] + " s" if "error" in q else f"{q['p50_ms']} / {q['p95_ms']}")
                         if q else "-")  # fmt: skip
        if "mlflow" in systems:
            ref = result["systems"]["mlflow"].get("queries", {}).get(label)
            for s in others:
                q = result["systems"][s].get("queries", {}).get(label)
                ok = q and ref and "p50_ms" in q and "p50_ms" in ref and ref["p50_ms"]
                ratios.append(f"{q['p50_ms'] / ref['p50_ms']:.3f}" if ok else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + "".join(f" | {r}" for r in ratios) + " |")
    lines += ["", "Targets (issue 14): runs/search first page ≤ 200 ms, experiments/search ≤ 50 ms. "
              f"Machine: {json.dumps(result['machine'])}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def read_model(args: argparse.Namespace) -> None:
    """The queries on ``TrackingReader`` alone (no gateway, no HTTP)."""
    from trackstream.reads import TrackingReader

    if args.store == "chdb":
        from trackstream.tables.chdb import ChdbStore

        store: TableStore = ChdbStore(Path(tempfile.mkdtemp(prefix="bench-search-")) / "chdb")
    else:
        from trackstream.tables.clickhouse import ClickHouseStore

        store = ClickHouseStore(args.url)
    store.migrate()
    start = time.perf_counter()
    fill_tables(store, args.runs, args.experiments, "1")
    print(f"filled {args.runs} runs, {args.experiments} experiments in {time.perf_counter() - start:.1f} s")
    reader = TrackingReader(store)
    for label, what, body in QUERIES:
        f, order, n = body.get("filter", ""), body.get("order_by", []), body["max_results"]

        def fn(what: str = what, f: str = f, o: list[str] = order, n: int = n) -> int:
            if what == "runs":
                return len(reader.search_runs(["1"], ["active"], f, o, 0, n).items)
            return len(reader.search_experiments(["active"], f, o, 0, n).items)

        t = timed(fn, args.repeat)
        print(f"{t['p50_ms']:8.1f} ms p50 {t['p95_ms']:8.1f} ms p95  {t['items']:5d} items  {label}")
    store.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--systems", default="trackstream-kafka,trackstream-embedded,mlflow")
    ap.add_argument("--store", choices=("chdb", "clickhouse"), help="the read model alone, no gateway")
    ap.add_argument("--url", help="ClickHouse URL of an empty database (--store clickhouse)")
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--experiments", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--mlflow-repeat", type=int, default=5, help="repeats for mlflow server (seconds a call)")
    ap.add_argument("--mlflow-workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=600, help="s to wait for one answer (default 600)")
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    if args.store:
        read_model(args)
        return
    args.variant, args.gateways, args.metrics_consumers, args.partitions, args.keep = "", 1, 1, 0, False
    timestamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    result: dict[str, Any] = {"timestamp": timestamp, "runs": args.runs, "experiments": args.experiments,
                              "repeat": args.repeat, "machine": machine_info(), "note": args.note,
                              "systems": {}}  # fmt: skip
    for name in args.systems.split(","):
        try:
            result["systems"][name] = bench_system(name, args)
        except Exception as exc:  # keep the other systems' figures
            result["systems"][name] = {"error": repr(exc)[:500]}
            print(f"  {name} failed: {exc!r}", flush=True)
    save(f"{timestamp}-search", result, markdown(result))


if __name__ == "__main__":
    main()
