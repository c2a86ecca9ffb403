"""Queries behind the MLflow read endpoints. Rows come back as MLflow REST JSON shapes.

All values are bound with ``%(name)s`` placeholders (see ``trackstream.tables.base.bind``).
Mutable tables are read with FINAL; metrics are de-duplicated on read with DISTINCT.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trackstream.tables import TableStore

EXPERIMENT_COLUMNS = "experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time"
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
        return {"info": info, "data": self.run_data([run_id])[run_id], "inputs": {}, "outputs": {}}

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
        """run_id → the metric's latest value (NaN omitted), the param's or the live tag's value."""
        runs = "SELECT run_id FROM runs FINAL WHERE experiment_id IN %(exps)s"
        if entity == "metric":
            sql = (
                "SELECT run_id, v FROM (SELECT run_id, argMax(value, (step, timestamp, value)) AS v, "
                "argMax(is_nan, (step, timestamp, value)) AS latest_is_nan FROM latest_metrics "
                f"WHERE key = %(key)s AND run_id IN ({runs}) GROUP BY run_id) WHERE latest_is_nan = 0"
            )
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

    # -- metrics --
    def metric_history(self, run_id: str, key: str, offset: int, limit: int) -> list[dict[str, Any]]:
        rows = self._t.query(
            "SELECT DISTINCT step, timestamp, value, is_nan FROM metrics "
            "WHERE run_id = %(run)s AND key = %(key)s ORDER BY timestamp, step, value "
            "LIMIT %(limit)s OFFSET %(offset)s",
            {"run": run_id, "key": key, "limit": limit, "offset": offset},
        )
        return [{"key": key, "value": metric_value(v, nan), "timestamp": ts, "step": step} for step, ts, v, nan in rows]

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
