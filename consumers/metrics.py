"""Metrics sink: metric batches → ``metrics`` and ``latest_metrics`` (one columnar insert each), and
the points logged with a model id → ``logged_model_metrics``.

Guarantee: at-least-once writes, exactly-once as seen by readers (rows keyed by MLflow's natural
key (run, key, step, timestamp, value); the table and the queries collapse duplicates).

This is the hottest loop of the pipeline (every point passes through it), so it works column by
column and leaves out the optional columns when no point of the batch has them (their default is '').
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

from consumers.sink import Event, Sink
from schemas.events import METRICS, MetricBatch
from trackstream.tables import TableStore

OPTIONAL = (("model_id", "model_ids"), ("dataset_name", "dataset_names"), ("dataset_digest", "dataset_digests"))
MODEL_COLUMNS = ("model_id", "key", "step", "timestamp", "run_id", "value", "is_nan", "dataset_name", "dataset_digest")

Candidate = tuple[int, int, float]  # (step, timestamp, stored value): MLflow's order for the latest value


class MetricsSink(Sink):
    name = "metrics"
    family = METRICS

    def __init__(self, tables: TableStore) -> None:
        self._tables = tables

    def rows(self, event: Event) -> int:
        return len(cast(MetricBatch, event.data).values)

    def write(self, events: Sequence[Event]) -> None:
        cols: dict[str, list[Any]] = {c: [] for c in ("run_id", "key", "step", "timestamp", "value", "is_nan")}
        optional: dict[str, list[Any]] = {c: [] for c, _ in OPTIONAL}
        has_optional = False
        model_cols: dict[str, list[Any]] = {c: [] for c in MODEL_COLUMNS}
        latest: dict[tuple[str, str], tuple[Candidate, int]] = {}  # (run, key) → (candidate, is_nan)
        for event in events:
            r = cast(MetricBatch, event.data)
            keys = r.point_keys()
            values, steps, timestamps = r.values, r.steps, r.timestamps
            n = len(keys)
            run_id = r.run_id
            nan_flags = list(map(math.isnan, values))
            stored: Sequence[float]
            if True in nan_flags:
                is_nan = [1 if nan else 0 for nan in nan_flags]
                stored = [0.0 if nan else v for v, nan in zip(values, nan_flags, strict=True)]
            else:
                is_nan, stored = [0] * n, values
            cols["run_id"].extend([run_id] * n)
            cols["key"].extend(keys)
            cols["step"].extend(steps)
            cols["timestamp"].extend(timestamps)
            cols["value"].extend(stored)
            cols["is_nan"].extend(is_nan)
            given = [r.model_ids, r.dataset_names, r.dataset_digests]
            if any(given) and not has_optional:  # the first event with optional columns: backfill the rest
                has_optional = True
                for backfill in optional.values():
                    backfill.extend([""] * (len(cols["key"]) - n))
            if has_optional:
                for (name, _), values_given in zip(OPTIONAL, given, strict=True):
                    optional[name].extend(values_given or [""] * n)
            if r.model_ids:
                self._model_points(model_cols, r, keys, stored, is_nan)
            self._latest(latest, run_id, keys, zip(steps, timestamps, stored, strict=False), is_nan)
        if not cols["key"]:
            return
        if has_optional:
            cols.update(optional)
        self._tables.insert("metrics", cols)
        if model_cols["model_id"]:
            self._tables.insert("logged_model_metrics", model_cols)
        self._tables.insert(
            "latest_metrics",
            {
                "run_id": [k[0] for k in latest],
                "key": [k[1] for k in latest],
                "step": [c[0][0] for c in latest.values()],
                "timestamp": [c[0][1] for c in latest.values()],
                "value": [c[0][2] for c in latest.values()],
                "is_nan": [c[1] for c in latest.values()],
            },
        )

    @staticmethod
    def _latest(
        latest: dict[tuple[str, str], tuple[Candidate, int]],
        run_id: str,
        keys: Sequence[str],
        candidates: Any,
        is_nan: list[int],
    ) -> None:
        """Fold one event's points into the batch's highest point per (run, key); ties keep the first."""
        top: dict[str, Candidate] = {}
        at: dict[str, int] = {}
        for i, (key, cand) in enumerate(zip(keys, candidates, strict=False)):
            current = top.get(key)
            if current is None or cand > current:
                top[key] = cand
                at[key] = i
        for key, cand in top.items():
            held = latest.get((run_id, key))
            if held is None or cand > held[0]:
                latest[(run_id, key)] = (cand, is_nan[at[key]])

    @staticmethod
    def _model_points(
        cols: dict[str, list[Any]], r: MetricBatch, keys: Sequence[str], stored: Sequence[float], is_nan: list[int]
    ) -> None:
        n = len(keys)
        names = r.dataset_names or [""] * n
        digests = r.dataset_digests or [""] * n
        for i, model_id in enumerate(r.model_ids):
            if model_id:
                for column, value in zip(
                    MODEL_COLUMNS,
                    (model_id, keys[i], r.steps[i], r.timestamps[i], r.run_id, stored[i], is_nan[i],
                     names[i], digests[i]),
                    strict=True,
                ):  # fmt: skip
                    cols[column].append(value)
