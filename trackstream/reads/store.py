"""Queries behind the MLflow read endpoints. Rows come back as MLflow REST JSON shapes.

All values are bound with ``%(name)s`` placeholders (see ``trackstream.tables.base.bind``).
Mutable tables are read with FINAL; metrics are de-duplicated on read with DISTINCT.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from schemas.decisions import Decision
from trackstream.log import Partition
from trackstream.tables import TableStore

EXPERIMENT_COLUMNS = "experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time"
LOGGED_MODEL_COLUMNS = (
    "model_id, experiment_id, name, artifact_uri, creation_timestamp_ms, last_updated_timestamp_ms, status, "
    "status_message, lifecycle_stage, model_type, source_run_id"
)
RUN_COLUMNS = (
    "run_id, experiment_id, run_name, user_id, status, start_time, end_time, artifact_uri, lifecycle_stage, "
    "deleted_time"
)


def metric_value(value: float, is_nan: int) -> float | str:
    """MLflow JSON: NaN travels as the string "NaN"."""
    return "NaN" if is_nan else value


class TrackingReader:
    def __init__(self, tables: TableStore) -> None:
        self._t = tables

    # -- experiments --
    def _experiments(self, where: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        rows = self._t.query(f"SELECT {EXPERIMENT_COLUMNS} FROM experiments FINAL WHERE {where}", params)
        out = []
        for r in rows:
            exp = dict(zip(EXPERIMENT_COLUMNS.split(", "), r, strict=True))
            exp["tags"] = self.experiment_tags(exp["experiment_id"])
            out.append(exp)
        return out

    def experiment(self, experiment_id: str) -> dict[str, Any] | None:
        found = self._experiments("experiment_id = %(id)s", {"id": experiment_id})
        return found[0] if found else None

    def experiment_by_name(self, name: str) -> dict[str, Any] | None:
        found = self._experiments("name = %(name)s", {"name": name})
        active = [e for e in found if e["lifecycle_stage"] == "active"]
        return (active or found)[0] if found else None

    def experiment_tags(self, experiment_id: str) -> list[dict[str, str]]:
        rows = self._t.query(
            "SELECT key, value FROM experiment_tags FINAL WHERE experiment_id = %(id)s AND deleted = 0 ORDER BY key",
            {"id": experiment_id},
        )
        return [{"key": k, "value": v} for k, v in rows]

    def experiments(self, stages: Sequence[str]) -> list[dict[str, Any]]:
        return self._experiments("lifecycle_stage IN %(stages)s", {"stages": tuple(stages)})

    # -- runs --
    def run_info(self, run_id: str) -> dict[str, Any] | None:
        rows = self._t.query(f"SELECT {RUN_COLUMNS} FROM runs FINAL WHERE run_id = %(id)s", {"id": run_id})
        if not rows:
            return None
        return _run_info(rows[0])

    def run(self, run_id: str) -> dict[str, Any] | None:
        info = self.run_info(run_id)
        if info is None:
            return None
        inputs = self.run_inputs([run_id])[run_id]
        outputs = self.run_outputs([run_id])[run_id]
        return {"info": info, "data": self.run_data([run_id])[run_id], "inputs": inputs, "outputs": outputs}

    def run_inputs(self, run_ids: Sequence[str], models: bool = True) -> dict[str, dict[str, Any]]:
        """run_id → ``{dataset_inputs: [...], model_inputs: [...]}`` (empty lists left out, as MLflow's JSON does)."""
        out: dict[str, dict[str, Any]] = {r: {} for r in run_ids}
        if not run_ids:
            return out
        ids = {"ids": tuple(run_ids)}
        for run_id, name, digest, source_type, source, schema, profile, tags in self._t.query(
            "SELECT run_id, name, digest, source_type, source, schema, profile, tags FROM run_dataset_inputs FINAL "
            "WHERE run_id IN %(ids)s ORDER BY run_id, _version, name, digest",
            ids,
        ):
            dataset = {"name": name, "digest": digest, "source_type": source_type, "source": source}
            if schema is not None:
                dataset["schema"] = schema
            if profile is not None:
                dataset["profile"] = profile
            entry: dict[str, Any] = {"dataset": dataset}
            if parsed := json.loads(tags):
                entry["tags"] = parsed
            out[run_id].setdefault("dataset_inputs", []).append(entry)
        if models:
            for run_id, model_id in self._t.query(
                "SELECT run_id, model_id FROM run_model_inputs FINAL WHERE run_id IN %(ids)s ORDER BY run_id, _version",
                ids,
            ):
                out[run_id].setdefault("model_inputs", []).append({"model_id": model_id})
        return out

    def run_outputs(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {r: {} for r in run_ids}
        if not run_ids:
            return out
        for run_id, model_id, step in self._t.query(
            "SELECT run_id, model_id, step FROM run_model_outputs FINAL WHERE run_id IN %(ids)s "
            "ORDER BY run_id, _version, model_id, step",
            {"ids": tuple(run_ids)},
        ):
            out[run_id].setdefault("model_outputs", []).append({"model_id": model_id, "step": step})
        return out

    def dataset_summaries(self, experiment_ids: Sequence[str], limit: int) -> list[dict[str, Any]]:
        rows = self._t.query(
            "SELECT DISTINCT experiment_id, name, digest, tags FROM run_dataset_inputs FINAL "
            "WHERE experiment_id IN %(exps)s ORDER BY experiment_id, name, digest",
            {"exps": tuple(experiment_ids)},
        )
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, str, str, str | None]] = set()
        for experiment_id, name, digest, tags in rows:
            context = next((t["value"] for t in json.loads(tags) if t["key"] == "mlflow.data.context"), None)
            if (experiment_id, name, digest, context) in seen:
                continue
            seen.add((experiment_id, name, digest, context))
            summary = {"experiment_id": experiment_id, "name": name, "digest": digest}
            if context is not None:
                summary["context"] = context
            out.append(summary)
        return out[:limit]

    # -- logged models --
    def logged_model_rows(self, where: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Logged-model rows (the state columns only) matching ``where``; mutable columns filtered outside FINAL."""
        rows = self._t.query(
            f"SELECT {LOGGED_MODEL_COLUMNS} FROM (SELECT {LOGGED_MODEL_COLUMNS} FROM logged_models FINAL) "
            f"WHERE {where}",
            params,
        )
        return [dict(zip(LOGGED_MODEL_COLUMNS.split(", "), r, strict=True)) for r in rows]

    def logged_model_row(self, model_id: str) -> dict[str, Any] | None:
        found = self.logged_model_rows("model_id = %(id)s", {"id": model_id})
        return found[0] if found else None

    def logged_model_data(self, model_ids: Sequence[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """model_id → ``{tags, params, metrics}``; metrics are every point linked to the model."""
        data: dict[str, dict[str, list[dict[str, Any]]]] = {
            m: {"tags": [], "params": [], "metrics": []} for m in model_ids
        }
        if not model_ids:
            return data
        ids = {"ids": tuple(model_ids)}
        for model_id, key, value in self._t.query(
            "SELECT model_id, key, value FROM (SELECT model_id, key, value, deleted FROM logged_model_tags FINAL "
            "WHERE model_id IN %(ids)s) WHERE deleted = 0 ORDER BY model_id, key",
            ids,
        ):
            data[model_id]["tags"].append({"key": key, "value": value})
        for model_id, key, value in self._t.query(
            "SELECT model_id, key, value FROM logged_model_params FINAL WHERE model_id IN %(ids)s "
            "ORDER BY model_id, key",
            ids,
        ):
            data[model_id]["params"].append({"key": key, "value": value})
        for model_id, key, step, ts, run_id, value, nan, dname, ddigest in self._t.query(
            "SELECT DISTINCT model_id, key, step, timestamp, run_id, value, is_nan, dataset_name, dataset_digest "
            "FROM logged_model_metrics WHERE model_id IN %(ids)s ORDER BY model_id, key, timestamp, step, run_id",
            ids,
        ):
            metric: dict[str, Any] = {"key": key, "value": metric_value(value, nan), "timestamp": ts, "step": step}
            if dname:
                metric["dataset_name"] = dname
            if ddigest:
                metric["dataset_digest"] = ddigest
            metric["model_id"] = model_id
            metric["run_id"] = run_id
            data[model_id]["metrics"].append(metric)
        return data

    def run_ids(self, experiment_ids: Sequence[str], stages: Sequence[str]) -> list[dict[str, Any]]:
        rows = self._t.query(
            f"SELECT {RUN_COLUMNS} FROM runs FINAL WHERE experiment_id IN %(exps)s AND lifecycle_stage IN %(stages)s "
            "ORDER BY start_time DESC, run_id",
            {"exps": tuple(experiment_ids), "stages": tuple(stages)},
        )
        return [_run_info(r) for r in rows]

    def search_run_infos(
        self, experiment_ids: Sequence[str], stages: Sequence[str], where: str, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Runs matching ``where`` (a condition from ``search.run_filter_sql``), unordered.

        Mutable columns are filtered outside FINAL: old servers may apply a WHERE before the merge.
        """
        rows = self._t.query(
            f"SELECT {RUN_COLUMNS} FROM (SELECT {RUN_COLUMNS} FROM runs FINAL WHERE experiment_id IN %(_exps)s) "
            f"WHERE lifecycle_stage IN %(_stages)s AND ({where})",
            {**params, "_exps": tuple(experiment_ids), "_stages": tuple(stages)},
        )
        return [_run_info(r) for r in rows]

    def order_values(self, entity: str, key: str, experiment_ids: Sequence[str]) -> dict[str, Any]:
        """run_id → the metric's latest value (NaN as NaN), the param's or the live tag's value."""
        runs = "SELECT run_id FROM runs FINAL WHERE experiment_id IN %(exps)s"
        if entity == "metric":
            rows = self._t.query(
                "SELECT run_id, argMax((value, is_nan), (step, timestamp, value)) FROM latest_metrics "
                f"WHERE key = %(key)s AND run_id IN ({runs}) GROUP BY run_id",
                {"key": key, "exps": tuple(experiment_ids)},
            )
            return {run_id: math.nan if latest[1] else latest[0] for run_id, latest in rows}
        elif entity == "parameter":
            sql = f"SELECT run_id, value FROM params FINAL WHERE key = %(key)s AND run_id IN ({runs})"
        else:
            sql = (
                "SELECT run_id, value FROM (SELECT run_id, value, deleted FROM run_tags FINAL "
                f"WHERE key = %(key)s AND run_id IN ({runs})) WHERE deleted = 0"
            )
        return dict(self._t.query(sql, {"key": key, "exps": tuple(experiment_ids)}))

    def run_data(self, run_ids: Sequence[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
        data: dict[str, dict[str, list[dict[str, Any]]]] = {
            r: {"metrics": [], "params": [], "tags": []} for r in run_ids
        }
        if not run_ids:
            return data
        ids = {"ids": tuple(run_ids)}
        for run_id, key, value in self._t.query(
            "SELECT run_id, key, value FROM params FINAL WHERE run_id IN %(ids)s ORDER BY key", ids
        ):
            data[run_id]["params"].append({"key": key, "value": value})
        for run_id, key, value in self._t.query(
            "SELECT run_id, key, value FROM run_tags FINAL WHERE run_id IN %(ids)s AND deleted = 0 ORDER BY key", ids
        ):
            data[run_id]["tags"].append({"key": key, "value": value})
        for run_id, key, latest in self._t.query(
            "SELECT run_id, key, argMax((value, is_nan, timestamp, step), (step, timestamp, value)) "
            "FROM latest_metrics WHERE run_id IN %(ids)s GROUP BY run_id, key ORDER BY run_id, key",
            ids,
        ):
            value, is_nan, timestamp, step = latest
            data[run_id]["metrics"].append(
                {"key": key, "value": metric_value(value, is_nan), "timestamp": timestamp, "step": step}
            )
        return data

    def params(self, run_id: str) -> dict[str, str]:
        return dict(self._t.query("SELECT key, value FROM params FINAL WHERE run_id = %(id)s", {"id": run_id}))

    # -- decisions --
    def decision(self, partition: Partition, offset: int) -> Decision | None:
        """What the metadata sink decided for the event at ``offset`` (None: not decided, or not yet applied)."""
        rows = self._t.query(
            "SELECT ok, error_code, message, result FROM decisions "
            "WHERE topic = %(topic)s AND log_partition = %(part)s AND log_offset = %(offset)s LIMIT 1",
            {"topic": partition.topic, "part": partition.index, "offset": offset},
        )
        if not rows:
            return None
        ok, code, message, result = rows[0]
        return Decision(bool(ok), code, message, result)

    # -- metrics --
    def metric_history(self, run_id: str, key: str, offset: int, limit: int) -> list[dict[str, Any]]:
        rows = self._t.query(
            "SELECT DISTINCT step, timestamp, value, is_nan FROM metrics "
            "WHERE run_id = %(run)s AND key = %(key)s ORDER BY timestamp, step, value "
            "LIMIT %(limit)s OFFSET %(offset)s",
            {"run": run_id, "key": key, "limit": limit, "offset": offset},
        )
        return [{"key": key, "value": metric_value(v, nan), "timestamp": ts, "step": step} for step, ts, v, nan in rows]

    def metric_points(
        self, run_id: str, key: str, start_step: int | None, end_step: int | None
    ) -> list[tuple[Any, ...]]:
        """Every distinct point of a run's metric as (step, timestamp, value, is_nan), in MLflow's sampling order."""
        where = ""
        params: dict[str, Any] = {"run": run_id, "key": key}
        if start_step is not None and end_step is not None:
            where = " AND step >= %(start)s AND step <= %(end)s"
            params.update(start=start_step, end=end_step)
        return [
            tuple(r)
            for r in self._t.query(
                "SELECT DISTINCT step, timestamp, value, is_nan FROM metrics "
                f"WHERE run_id = %(run)s AND key = %(key)s{where} ORDER BY step, timestamp, value, is_nan",
                params,
            )
        ]

    # -- artifacts --
    def artifact_files(self, prefix: str) -> list[tuple[str, int]]:
        """Live indexed files at ``prefix`` or under ``prefix/`` (every file when ``prefix`` is empty).

        ``deleted`` is filtered outside FINAL: old servers may move a WHERE before the FINAL merge.
        """
        where = "1"
        params: dict[str, Any] = {}
        if prefix:
            where = "path = %(p)s OR substring(path, 1, %(n)s) = %(dir)s"
            params = {"p": prefix, "dir": prefix + "/", "n": len(prefix.encode()) + 1}
        rows = self._t.query(
            f"SELECT path, size FROM (SELECT path, size, deleted FROM artifacts FINAL WHERE {where}) "
            "WHERE deleted = 0 ORDER BY path",
            params,
        )
        return [(str(p), int(n)) for p, n in rows]


def _run_info(row: Sequence[Any]) -> dict[str, Any]:
    info = dict(zip(RUN_COLUMNS.split(", "), row, strict=True))
    info["run_uuid"] = info["run_id"]
    info.pop("deleted_time")
    if info["end_time"] is None:
        info.pop("end_time")
    return info
