"""Metrics sink: metric batches → ``metrics`` and ``latest_metrics`` (one columnar insert each), and
the points logged with a model id → ``logged_model_metrics``.

Guarantee: at-least-once writes, exactly-once as seen by readers (rows keyed by MLflow's natural
key (run, key, step, timestamp, value); the table and the queries collapse duplicates).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consumers.sink import Event, Sink
from schemas.codec import METRICS
from trackstream.tables import TableStore


class MetricsSink(Sink):
    name = "metrics"
    family = METRICS

    def __init__(self, tables: TableStore) -> None:
        self._tables = tables

    def rows(self, event: Event) -> int:
        return len(event.decoded.record["keys"])

    def write(self, events: Sequence[Event]) -> None:
        cols: dict[str, list[Any]] = {
            c: []
            for c in (
                "run_id", "key", "step", "timestamp", "value", "is_nan",
                "model_id", "dataset_name", "dataset_digest",
            )
        }  # fmt: skip
        latest: dict[tuple[str, str], tuple[int, int, float, int]] = {}
        model_cols: dict[str, list[Any]] = {
            c: [] for c in ("model_id", "key", "step", "timestamp", "run_id", "value", "is_nan",
                            "dataset_name", "dataset_digest")
        }  # fmt: skip
        for event in events:
            r = event.decoded.record
            n = len(r["keys"])
            run_id = r["run_id"]
            values = r["values"]
            is_nan = [1 if v != v else 0 for v in values]
            stored = [0.0 if nan else v for v, nan in zip(values, is_nan, strict=True)]
            cols["run_id"].extend([run_id] * n)
            cols["key"].extend(r["keys"])
            cols["step"].extend(r["steps"])
            cols["timestamp"].extend(r["timestamps"])
            cols["value"].extend(stored)
            cols["is_nan"].extend(is_nan)
            for name, field in (
                ("model_id", "model_ids"),
                ("dataset_name", "dataset_names"),
                ("dataset_digest", "dataset_digests"),
            ):
                cols[name].extend(r[field] or [""] * n)
            if any(r["model_ids"]):
                names = r["dataset_names"] or [""] * n
                digests = r["dataset_digests"] or [""] * n
                for i, model_id in enumerate(r["model_ids"]):
                    if model_id:
                        for col, value in (
                            ("model_id", model_id), ("key", r["keys"][i]), ("step", r["steps"][i]),
                            ("timestamp", r["timestamps"][i]), ("run_id", run_id), ("value", stored[i]),
                            ("is_nan", is_nan[i]), ("dataset_name", names[i]), ("dataset_digest", digests[i]),
                        ):  # fmt: skip
                            model_cols[col].append(value)
            for key, step, ts, value, nan in zip(r["keys"], r["steps"], r["timestamps"], stored, is_nan, strict=True):
                candidate = (step, ts, value, nan)
                current = latest.get((run_id, key))
                if current is None or candidate[:3] > current[:3]:
                    latest[(run_id, key)] = candidate
        if not cols["run_id"]:
            return
        self._tables.insert("metrics", cols)
        if model_cols["model_id"]:
            self._tables.insert("logged_model_metrics", model_cols)
        self._tables.insert(
            "latest_metrics",
            {
                "run_id": [k[0] for k in latest],
                "key": [k[1] for k in latest],
                "step": [v[0] for v in latest.values()],
                "timestamp": [v[1] for v in latest.values()],
                "value": [v[2] for v in latest.values()],
                "is_nan": [v[3] for v in latest.values()],
            },
        )
