"""Queries behind the MLflow read endpoints. Rows come back as MLflow REST JSON shapes.

All values are bound with ``%(name)s`` placeholders (see ``trackstream.tables.base.bind``).
Versioned tables are read through ``trackstream.reads.current.current`` (FINAL, mutable columns
filtered outside it); metrics are de-duplicated on read with DISTINCT.
"""

from __future__ import annotations

import contextvars
import functools
import json
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from schemas.decisions import Decision
from trackstream.log import Partition
from trackstream.reads import current as t
from trackstream.reads import search
from trackstream.reads.current import Cond, cond, current
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


_DATASET_COLUMNS = "run_id, name, digest, source_type, source, schema, profile, tags"
_IN_EXPS = "experiment_id IN %(exps)s"
CONTEXT_TAG = "mlflow.data.context"
HISTORY_ORDER = "timestamp, step, value, is_nan"  # MLflow's get-history order; is_nan breaks the last tie
SAMPLE_ORDER = "step, timestamp, value, is_nan"  # MLflow's bulk-interval sampling order
RUN_READS = 3  # threads reading one run's parts at once (TrackingReader.run), shared by all requests
EXACT_SAMPLE_POINTS = 20_000
"""Runs with at most this many stored points in the step range get MLflow's exact NTILE sample (sorting
them costs a few ms); longer ones the bucket sample (``TrackingReader.metric_samples``)."""
FETCHED_SAMPLE_POINTS = 2_000
"""Runs with at most this many stored points are read whole and sampled in Python (one round trip
less than counting them in ClickHouse first)."""
_LEVELS = 12  # resolutions of the bucket sample: groups of 4^0 .. 4^11 64-step buckets
_MIN_STEP, _MAX_STEP = -(2**63), 2**63 - 1
SPAN_SHIFT = 10  # metric_spans' buckets: step >> 10 (schemas/clickhouse/tables.sql)
PAGE_MARGINS = (1.2, 4.0)
"""A history page reads the buckets whose estimated points reach these multiples of its limit, one after
the other while the read comes back short (the estimate counts replays and the points before the token),
then every bucket after the token (``TrackingReader.metric_history_after``)."""
MAX_SPAN_ROWS = 20_000
"""A (run, key) with more ``metric_spans`` rows pages without them: its steps are so sparse (a stride of
~1,000 or more) that its spans cost as much to read as its points (1M one-point buckets: 1.1 s a page
against 0.22 s for the plain sort, 18.16)."""
_FEW_SPANS = (
    " AND (SELECT count() FROM (SELECT 1 FROM metric_spans WHERE run_id = %(run)s AND key = %(key)s "
    "LIMIT %(most)s)) < %(most)s"
)  # a (run, key) with more than MAX_SPAN_ROWS span rows reads none: a stopped read of its rows tells
MAX_STEP_RANGES = 32  # step ranges in a page's query; more are joined across their smallest gaps


class HistoryPage(NamedTuple):
    """A keyset page of a metric's history: its points (``POINT_JSON`` text) and whether the (run, key)
    was found to have few enough ``metric_spans`` rows to bound it (at most MAX_SPAN_ROWS). The next
    page's token carries the second, so that page reads the spans without counting them first."""

    points: list[bytes]
    spans_checked: bool


@dataclass(frozen=True, slots=True)
class HistoryKey:
    """A point's place in the history order: what a keyset page token carries."""

    timestamp: int
    step: int
    value: float
    is_nan: int


Ready = Callable[[], None] | None
"""Called by a search once its request is parsed and before it queries (the handler's read barrier):
an invalid filter answers 400 at once, even while the barrier would wait."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a search: its items and the offset of the next page (None: this is the last one)."""

    items: list[dict[str, Any]]
    next_offset: int | None


def _point_json(end: str) -> str:
    return (
        "concat(%(head)s, multiIf(is_nan OR isNaN(value), '\"NaN\"', "
        "NOT isFinite(value), if(value > 0, '\"Infinity\"', '\"-Infinity\"'), "
        "position(toString(value) AS value_text, '.') + position(value_text, 'e') > 0, value_text, "
        f"concat(value_text, '.0')), ',\"timestamp\":', toString(timestamp), ',\"step\":', toString(step), {end})"
    )


POINT_JSON = _point_json("'}'")
"""A metrics row as MLflow's JSON point, made by the store: 1M points cost ~2.5 s of Python as rows turned
into dicts and dumped (on chDB, whose rows come as JSON text, most of it parsing them) and a fraction of
that as text. ``%(head)s`` is ``_point_head(key)``. NaN as MLflow writes it ("NaN"; stored as 0 with
is_nan); ±inf, clamped at ingest as MLflow's store does, as "Infinity" should one ever be stored;
ClickHouse's shortest round-trip text of a double, with ".0" on an integral one so that a JSON reader
gets a float, as from the stock server (ClickHouse writes 5.0 as "5", 1e20 as "100000000000000000000")."""
RUN_POINT_JSON = _point_json("transform(run_id, %(ids)s, %(ends)s, '}')")
"""``POINT_JSON`` with the point's run id (get-history-bulk): ``%(ends)s`` is ``_run_end(r)`` of each r of
``%(ids)s``."""


def _point_head(key: str) -> str:
    return '{"key":' + orjson.dumps(key).decode() + ',"value":'


def _run_end(run_id: str) -> str:
    return ',"run_id":' + orjson.dumps(run_id).decode() + "}"


def history_point(line: bytes) -> tuple[int, int, float, int]:
    """(step, timestamp, value, is_nan) of a ``POINT_JSON`` point: what its page token names."""
    point = orjson.loads(line)
    value = point["value"]
    nan = value == "NaN"
    return point["step"], point["timestamp"], 0.0 if nan else float(value), int(nan)


def metric_value(value: float, is_nan: int) -> float | str:
    """MLflow JSON: NaN travels as the string "NaN"."""
    return "NaN" if is_nan else value


class TrackingReader:
    def __init__(self, tables: TableStore) -> None:
        self._t = tables
        self._pool = ThreadPoolExecutor(RUN_READS, thread_name_prefix="run-reads")

    @property
    def tables(self) -> TableStore:
        """The table store (the trace reader, ``trackstream.reads.traces``, reads the same one)."""
        return self._t

    # -- experiments --
    def _experiments(self, where: Sequence[Cond], params: dict[str, Any], tail: str = "") -> list[dict[str, Any]]:
        rows = self._t.query(current(t.EXPERIMENTS, EXPERIMENT_COLUMNS, where) + tail, params)
        out = [dict(zip(EXPERIMENT_COLUMNS.split(", "), r, strict=True)) for r in rows]
        tags = self.experiment_tags_of([e["experiment_id"] for e in out])
        for exp in out:
            exp["tags"] = tags[exp["experiment_id"]]
        return out

    def experiment(self, experiment_id: str) -> dict[str, Any] | None:
        found = self._experiments([cond("experiment_id = %(id)s", "experiment_id")], {"id": experiment_id})
        return found[0] if found else None

    def experiment_by_name(self, name: str) -> dict[str, Any] | None:
        found = self._experiments([cond("name = %(name)s", "name")], {"name": name})
        active = [e for e in found if e["lifecycle_stage"] == "active"]
        return (active or found)[0] if found else None

    def experiment_tags(self, experiment_id: str) -> list[dict[str, str]]:
        return self.experiment_tags_of([experiment_id])[experiment_id]

    def experiment_tags_of(self, experiment_ids: Sequence[str]) -> dict[str, list[dict[str, str]]]:
        out: dict[str, list[dict[str, str]]] = {e: [] for e in experiment_ids}
        if not experiment_ids:
            return out
        live = [cond("experiment_id IN %(ids)s", "experiment_id"), cond("deleted = 0", "deleted")]
        for exp_id, k, v in self._t.query(
            current(t.EXPERIMENT_TAGS, "experiment_id, key, value", live) + " ORDER BY experiment_id, key",
            {"ids": tuple(experiment_ids)},
        ):
            out[exp_id].append({"key": k, "value": v})
        return out

    def experiments(self, stages: Sequence[str]) -> list[dict[str, Any]]:
        return self._experiments([cond("lifecycle_stage IN %(stages)s", "lifecycle_stage")], {"stages": tuple(stages)})

    def search_experiments(
        self,
        stages: Sequence[str],
        filter_string: str | None,
        order_by: list[str],
        offset: int,
        limit: int,
        ready: Ready = None,
    ) -> Page:
        """One page of experiments (filter, order and limit in SQL, tags read for the page only).

        Raises ``search.SearchError`` for an invalid filter or order_by.
        """
        what = search.EXPERIMENTS
        order = search.with_defaults(what, search.parse_order_by(what, order_by))
        compiled = search.compile_filter(what, search.parse_filter(what, filter_string), {"_stages": tuple(stages)})
        if ready:
            ready()
        where = [cond("lifecycle_stage IN %(_stages)s", "lifecycle_stage"), *compiled.conds]
        terms = [term for o in order for term in search.attr_order_sql(what.order_attrs[o.key], o.ascending)]
        tail = f" ORDER BY {', '.join(terms)} LIMIT %(_limit)s OFFSET %(_offset)s"
        found = self._experiments(where, {**compiled.params, "_limit": limit + 1, "_offset": offset}, tail)
        return Page(found[:limit], offset + limit if len(found) > limit else None)

    # -- runs --
    def run_info(self, run_id: str) -> dict[str, Any] | None:
        rows = self._t.query(current(t.RUNS, RUN_COLUMNS, [cond("run_id = %(id)s", "run_id")]), {"id": run_id})
        if not rows:
            return None
        return _run_info(rows[0])

    def run_infos(self, run_ids: Sequence[str]) -> list[dict[str, Any]]:
        if not run_ids:
            return []
        rows = self._t.query(
            current(t.RUNS, RUN_COLUMNS, [cond("run_id IN %(ids)s", "run_id")]), {"ids": tuple(run_ids)}
        )
        return [_run_info(r) for r in rows]

    def run(self, run_id: str) -> dict[str, Any] | None:
        """The run's four reads (seven queries) at once: against a ClickHouse server, whose store gives each
        thread its own connection, runs/get (and the web app's GetRun, on the chart view's critical path)
        then waits for the longest read, not their sum; chDB runs them one after another as before."""
        ids = [run_id]
        data = self._pool.submit(contextvars.copy_context().run, self.run_data, ids)
        inputs = self._pool.submit(contextvars.copy_context().run, self.run_inputs, ids)
        outputs = self._pool.submit(contextvars.copy_context().run, self.run_outputs, ids)
        info = self.run_info(run_id)
        parts = {"data": data.result()[run_id], "inputs": inputs.result()[run_id], "outputs": outputs.result()[run_id]}
        if info is None:
            return None
        return {"info": info, **parts}

    def run_inputs(self, run_ids: Sequence[str], models: bool = True) -> dict[str, dict[str, Any]]:
        """run_id → ``{dataset_inputs: [...], model_inputs: [...]}`` (empty lists left out, as MLflow's JSON does)."""
        out: dict[str, dict[str, Any]] = {r: {} for r in run_ids}
        if not run_ids:
            return out
        ids = {"ids": tuple(run_ids)}
        for run_id, name, digest, source_type, source, schema, profile, tags in self._t.query(
            current(t.RUN_DATASET_INPUTS, _DATASET_COLUMNS, [cond("run_id IN %(ids)s", "run_id")])
            + " ORDER BY run_id, _version, name, digest",
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
            for run_id, model_id, _ in self._t.query(
                current(t.RUN_MODEL_INPUTS, "run_id, model_id, _version", [cond("run_id IN %(ids)s", "run_id")])
                + " ORDER BY run_id, _version",
                ids,
            ):
                out[run_id].setdefault("model_inputs", []).append({"model_id": model_id})
        return out

    def run_outputs(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {r: {} for r in run_ids}
        if not run_ids:
            return out
        for run_id, model_id, step, _ in self._t.query(
            current(t.RUN_MODEL_OUTPUTS, "run_id, model_id, step, _version", [cond("run_id IN %(ids)s", "run_id")])
            + " ORDER BY run_id, _version, model_id, step",
            {"ids": tuple(run_ids)},
        ):
            out[run_id].setdefault("model_outputs", []).append({"model_id": model_id, "step": step})
        return out

    def dataset_summaries(self, experiment_ids: Sequence[str], limit: int) -> list[dict[str, Any]]:
        rows = self._t.query(
            "SELECT DISTINCT experiment_id, name, digest, tags FROM ("
            + current(t.RUN_DATASET_INPUTS, "experiment_id, name, digest, tags", [cond(_IN_EXPS, "experiment_id")])
            + ") ORDER BY experiment_id, name, digest",
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
    def logged_model_rows(self, where: Sequence[Cond], params: dict[str, Any], tail: str = "") -> list[dict[str, Any]]:
        """Logged-model rows (the state columns only) matching every condition of ``where``."""
        rows = self._t.query(current(t.LOGGED_MODELS, LOGGED_MODEL_COLUMNS, where) + tail, params)
        return [dict(zip(LOGGED_MODEL_COLUMNS.split(", "), r, strict=True)) for r in rows]

    def logged_model_row(self, model_id: str) -> dict[str, Any] | None:
        found = self.logged_model_rows([cond("model_id = %(id)s", "model_id")], {"id": model_id})
        return found[0] if found else None

    def search_logged_models(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None,
        datasets: list[dict[str, Any]],
        order_by: list[dict[str, Any]],
        offset: int,
        limit: int,
        ready: Ready = None,
    ) -> Page:
        """One page of live logged-model rows (state columns; ``logged_model_data`` gives the rest).

        ``datasets`` (``{dataset_name, dataset_digest?}``) restrict metric clauses to points on one of
        them, and without a metric clause keep only models with a point on one of them (MLflow's rule).
        Raises ``search.SearchError`` for an invalid filter or order_by.
        """
        what = search.LOGGED_MODELS
        params: dict[str, Any] = {"_exps": tuple(experiment_ids), "_deleted": "deleted"}
        on: list[str] = []
        for i, d in enumerate(datasets):
            params[f"_ds{i}n"] = str(d["dataset_name"])
            if d.get("dataset_digest"):
                params[f"_ds{i}d"] = str(d["dataset_digest"])
                on.append(f"(dataset_name = %(_ds{i}n)s AND dataset_digest = %(_ds{i}d)s)")
            else:
                on.append(f"dataset_name = %(_ds{i}n)s")
        params["_datasets_sql"] = f"({' OR '.join(on)})" if on else "1"
        clauses = search.parse_filter(what, filter_string)
        order = search.with_defaults(what, search.parse_logged_model_order_by(order_by))
        compiled = search.compile_filter(what, clauses, params)
        if ready:
            ready()
        where = [
            cond("experiment_id IN %(_exps)s", "experiment_id"),
            cond("lifecycle_stage != %(_deleted)s", "lifecycle_stage"),
            *compiled.conds,
        ]
        if on and not any(c.entity == search.METRIC for c in clauses):
            where.append(
                cond(f"model_id IN (SELECT model_id FROM logged_model_metrics WHERE {' OR '.join(on)})", "model_id")
            )
        sql = current(t.LOGGED_MODELS, LOGGED_MODEL_COLUMNS, where)
        columns = LOGGED_MODEL_COLUMNS.split(", ")
        terms: list[str] = []
        for i, o in enumerate(order):
            if o.entity == search.ATTR:
                terms += search.attr_order_sql(what.order_attrs[o.key], o.ascending)
                continue
            j = f"_o{i}"
            params[f"{j}k"] = o.key
            point = f"key = %({j}k)s"
            if o.dataset_name:
                params[f"{j}n"] = o.dataset_name
                point += f" AND dataset_name = %({j}n)s"
            if o.dataset_digest:
                params[f"{j}d"] = o.dataset_digest
                point += f" AND dataset_digest = %({j}d)s"
            # the latest point: highest timestamp, then step, then the smallest run id; a NaN one sorts as missing
            latest = "(-timestamp, -step, run_id)"
            right = (
                f"SELECT model_id, 1 AS {j}h, argMin(value, {latest}) AS {j}v, argMin(is_nan, {latest}) AS {j}n "
                f"FROM logged_model_metrics WHERE {point} GROUP BY model_id"
            )
            sql = (
                f"SELECT {', '.join(columns)}, {j}h, {j}v, {j}n FROM ({sql}) AS _l{i} "
                f"ANY LEFT JOIN ({right}) AS _r{i} USING model_id"
            )
            columns += [f"{j}h", f"{j}v", f"{j}n"]
            terms += [f"({j}h = 1 AND {j}n = 0) DESC", f"{j}v {'ASC' if o.ascending else 'DESC'}"]
        params.pop("_datasets_sql", None)
        sql = (
            f"SELECT {LOGGED_MODEL_COLUMNS} FROM ({sql}) ORDER BY {', '.join(terms)} "
            "LIMIT %(_limit)s OFFSET %(_offset)s"
        )
        rows = self._t.query(sql, {**params, **compiled.params, "_limit": limit + 1, "_offset": offset})
        found = [dict(zip(LOGGED_MODEL_COLUMNS.split(", "), r, strict=True)) for r in rows]
        return Page(found[:limit], offset + limit if len(found) > limit else None)

    def logged_model_data(self, model_ids: Sequence[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """model_id → ``{tags, params, metrics}``; metrics are every point linked to the model."""
        data: dict[str, dict[str, list[dict[str, Any]]]] = {
            m: {"tags": [], "params": [], "metrics": []} for m in model_ids
        }
        if not model_ids:
            return data
        ids = {"ids": tuple(model_ids)}
        by_model = cond("model_id IN %(ids)s", "model_id")
        for model_id, key, value in self._t.query(
            current(t.LOGGED_MODEL_TAGS, "model_id, key, value", [by_model, cond("deleted = 0", "deleted")])
            + " ORDER BY model_id, key",
            ids,
        ):
            data[model_id]["tags"].append({"key": key, "value": value})
        for model_id, key, value in self._t.query(
            current(t.LOGGED_MODEL_PARAMS, "model_id, key, value", [by_model]) + " ORDER BY model_id, key",
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
        where = [cond(_IN_EXPS, "experiment_id"), cond("lifecycle_stage IN %(stages)s", "lifecycle_stage")]
        rows = self._t.query(
            current(t.RUNS, RUN_COLUMNS, where) + " ORDER BY start_time DESC, run_id",
            {"exps": tuple(experiment_ids), "stages": tuple(stages)},
        )
        return [_run_info(r) for r in rows]

    def search_runs(
        self,
        experiment_ids: Sequence[str],
        stages: Sequence[str],
        filter_string: str | None,
        order_by: list[str],
        offset: int,
        limit: int,
        ready: Ready = None,
    ) -> Page:
        """One page of runs as MLflow's search_runs answers them (info, data, inputs without model
        inputs, outputs). Filter, order and limit run in SQL: the work per page is one sorted, limited
        query plus the page's data. Raises ``search.SearchError`` for an invalid filter or order_by.
        """
        what = search.RUNS
        clauses = search.parse_filter(what, filter_string)
        order = search.with_defaults(what, search.parse_order_by(what, order_by))
        if not experiment_ids:  # no experiment: no run (and ClickHouse 18.16 refuses an empty IN list)
            return Page([], None)
        if ready:
            ready()
        # a metric both filtered and ordered by is aggregated once: its clauses test the ordering join's columns
        joined = {o.key: i for i, o in enumerate(order) if o.entity == search.METRIC}
        on_join = [c for c in clauses if c.entity == search.METRIC and c.key in joined]
        clauses = [c for c in clauses if c not in on_join]
        compiled = search.compile_filter(what, clauses, {"exps": tuple(experiment_ids), "_stages": tuple(stages)})
        params = compiled.params
        # the clauses on an ordered metric filter its aggregated rows (HAVING), and that join keeps matches only
        having: dict[int, list[str]] = {}
        for i, c in enumerate(on_join):
            params[f"_j{i}v"] = c.value
            at = joined[c.key]
            having.setdefault(at, []).append(search.metric_match(c.op, f"_j{i}v", f"_o{at}v", f"_o{at}n"))
        for name, value in list(params.items()):
            if isinstance(value, search.Deferred):
                params[name] = self._dataset_context_runs(experiment_ids, value.clause)
        where = [
            cond(_IN_EXPS, "experiment_id"),
            cond("lifecycle_stage IN %(_stages)s", "lifecycle_stage"),
            *compiled.conds,
        ]
        # only the id and the ordered attributes travel through the joins and the sort; the page's
        # rows are read by id afterwards (a 100k-run sort carrying every column cost twice as much)
        columns = ["run_id"]
        for o in order:
            if o.entity == search.ATTR:
                columns += [c for c in what.order_attrs[o.key].columns if c not in columns]
        sql = current(t.RUNS, columns, where)
        terms: list[str] = []
        for i, o in enumerate(order):
            if o.entity == search.ATTR:
                terms += search.attr_order_sql(what.order_attrs[o.key], o.ascending)
                continue
            j = f"_o{i}"
            params[f"{j}k"] = o.key
            direction = "ASC" if o.ascending else "DESC"
            kind = "ANY LEFT JOIN"
            if o.entity == search.METRIC:
                match = " AND ".join(having.get(i, []))
                right = search.latest_metric_sql(f"{j}k", f"{j}v", f"{j}n", f"{j}h", having=match)
                kind = "ANY INNER JOIN" if match else kind
                added = [f"{j}h", f"{j}v", f"{j}n"]
                # in either direction NaN after the values and a missing metric last, as MLflow's SQL store
                terms += [f"{j}h DESC", f"{j}n ASC", f"{j}v {direction}"]
            else:
                table, live = (
                    (t.PARAMS, []) if o.entity == search.PARAM else (t.RUN_TAGS, [cond("deleted = 0", "deleted")])
                )
                values = current(table, "run_id, value", [cond(f"key = %({j}k)s", "key"), *live])
                right = f"SELECT run_id, 1 AS {j}h, value AS {j}v FROM ({values})"
                added = [f"{j}h", f"{j}v"]
                terms += [f"{j}h DESC", f"{j}v {direction}"]
            sql = f"SELECT {', '.join(columns + added)} FROM ({sql}) AS _l{i} {kind} ({right}) AS _r{i} USING run_id"
            columns += added
        sql = f"SELECT run_id FROM ({sql}) ORDER BY {', '.join(terms)} LIMIT %(_limit)s OFFSET %(_offset)s"
        found = [r[0] for r in self._t.query(sql, {**params, "_limit": limit + 1, "_offset": offset})]
        ids = found[:limit]
        by_id = {i["run_id"]: i for i in self.run_infos(ids)}
        infos = [by_id[r] for r in ids if r in by_id]
        data = self.run_data(ids)
        inputs = self.run_inputs(ids, models=False)  # MLflow's search_runs leaves model inputs out
        outputs = self.run_outputs(ids)
        runs = [
            {"info": i, "data": data[i["run_id"]], "inputs": inputs[i["run_id"]], "outputs": outputs[i["run_id"]]}
            for i in infos
        ]
        return Page(runs, offset + limit if len(found) > limit else None)

    def _dataset_context_runs(self, experiment_ids: Sequence[str], clause: search.Clause) -> tuple[str, ...]:
        """Runs with a dataset input whose ``mlflow.data.context`` tag satisfies ``clause`` (a Python
        predicate: the tags are a JSON array string, which ClickHouse 18.16 cannot take apart)."""
        ids: set[str] = set()
        for run_id, tags in self._t.query(
            current(t.RUN_DATASET_INPUTS, "run_id, tags", [cond(_IN_EXPS, "experiment_id")]),
            {"exps": tuple(experiment_ids)},
        ):
            for tag in json.loads(tags):
                if tag.get("key") == CONTEXT_TAG and search.compare(clause.op, tag.get("value"), clause.value):
                    ids.add(run_id)
        return tuple(ids) or ("",)  # never an empty list (18.16 refuses it); no run has id ''

    def run_data(self, run_ids: Sequence[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
        data: dict[str, dict[str, list[dict[str, Any]]]] = {
            r: {"metrics": [], "params": [], "tags": []} for r in run_ids
        }
        if not run_ids:
            return data
        ids = {"ids": tuple(run_ids)}
        by_run = cond("run_id IN %(ids)s", "run_id")
        for run_id, key, value in self._t.query(
            current(t.PARAMS, "run_id, key, value", [by_run]) + " ORDER BY key", ids
        ):
            data[run_id]["params"].append({"key": key, "value": value})
        for run_id, key, value in self._t.query(
            current(t.RUN_TAGS, "run_id, key, value", [by_run, cond("deleted = 0", "deleted")]) + " ORDER BY key",
            ids,
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
        return dict(self._t.query(current(t.PARAMS, "key, value", [cond("run_id = %(id)s", "run_id")]), {"id": run_id}))

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
        """A page by offset: only for page tokens issued before keyset tokens (see ``metric_history_after``)."""
        rows = self._t.query(
            f"SELECT step, timestamp, value, is_nan FROM metrics FINAL WHERE run_id = %(run)s AND key = %(key)s "
            f"ORDER BY {HISTORY_ORDER} LIMIT %(limit)s OFFSET %(offset)s",
            {"run": run_id, "key": key, "limit": limit, "offset": offset},
        )
        return [{"key": key, "value": metric_value(v, nan), "timestamp": ts, "step": step} for step, ts, v, nan in rows]

    def metric_history_after(
        self,
        run_id: str,
        key: str,
        after: HistoryKey | None,
        limit: int,
        spans_checked: bool = False,
        with_run: bool = False,
    ) -> HistoryPage:
        """Up to ``limit`` distinct points of a run's metric as MLflow JSON objects made by the store
        (``POINT_JSON``; ``history_point`` reads one back), in MLflow's history order (timestamp, step,
        value; is_nan breaks the last tie), strictly after ``after``.

        A keyset page: a point written between two pages neither repeats nor hides one. ``FINAL``
        collapses replayed duplicates (the sort key is the natural key) at a fraction of the cost of
        ``DISTINCT``, which hashes every point.

        The table is in step order and the page in time order, so instead of sorting every point of the
        run, the page first reads ``metric_spans`` (each 1024-step bucket's least and greatest timestamp
        and an estimate of its points) and bounds the read. Let t0 be the token's timestamp (every point
        after the token has timestamp >= t0) and P the points after the token, in history order:

        - T1 is the least bucket ``max_timestamp`` (over buckets with max >= t0) at which the buckets'
          estimated points reach 1.2 x limit (``PAGE_MARGINS``; an estimate: it decides speed, not answers);
        - the query reads the steps of every bucket whose [min, max] meets [t0, T1], with
          ``timestamp <= T1`` added to the keyset condition, ordered and limited as before.

        Every point p of P with timestamp <= T1 is in a bucket with min <= p.timestamp <= T1 and
        max >= p.timestamp >= t0, i.e. in the steps read, so the query returns the first ``limit`` points
        of P ∩ {timestamp <= T1}; that set is a prefix of P (timestamp leads the order). If it returned
        ``limit`` rows they are the first ``limit`` of P: the page. If fewer, the prefix is all of it, and
        they are the page only when T1 bounds nothing (no bucket beyond it); otherwise the read is widened
        (a larger estimate, then every bucket with max >= t0 and no bound on timestamp: always the page).

        This holds for every point whose span row is visible. The view writes it within the INSERT of the
        point, before the sink commits, so every point a read barrier waits for (acknowledged, read your
        writes) has it; a point of an INSERT still in progress may be missed, as any point written while
        pages are read may be (docs/DESIGN.md, row 103, which also has the window of migrate's first fill of
        the table). No span at all (an unknown run or key) reads unbounded, as before the spans; so
        does a (run, key) with more than MAX_SPAN_ROWS span rows (sparse steps, about one point a bucket:
        reading its spans would cost more than its points; a first, stopped read of its rows tells). That
        first read (~4 ms of a ~30 ms page on chDB, ~1 ms on a server) is skipped when ``spans_checked``: an
        earlier page of the same read found the spans few (``HistoryPage.spans_checked``). It decides
        speed only: a (run, key) whose spans grew past the limit since is read through them, slowly.
        ``with_run``: each point carries its run id (``RUN_POINT_JSON``).
        """
        first = after.timestamp if after is not None else _MIN_STEP
        few = "" if spans_checked else _FEW_SPANS
        spans = [
            (int(b), int(lo), int(hi), int(n))
            for b, lo, hi, n in self._t.query(
                "SELECT bucket, minMerge(min_timestamp), maxMerge(max_timestamp), countMerge(points) "
                f"FROM metric_spans WHERE run_id = %(run)s AND key = %(key)s{few} "
                "GROUP BY bucket HAVING maxMerge(max_timestamp) >= %(t0)s",
                {"run": run_id, "key": key, "t0": first, "most": MAX_SPAN_ROWS + 1},
            )
        ]
        page = functools.partial(self._history_page, run_id, key, after, limit, with_run=with_run)
        if not spans:  # no span (or too many): unbounded, and the next page checks again
            return HistoryPage(page(None, None), False)
        return HistoryPage(self._bounded_page(page, limit, spans), True)

    @staticmethod
    def _bounded_page(
        page: Callable[[int | None, list[int] | None], list[bytes]], limit: int, spans: list[tuple[int, int, int, int]]
    ) -> list[bytes]:
        """The page (``page(bound, buckets)``) through ``spans`` (bucket, min and max timestamp, estimated
        points), widened while short."""
        spans.sort(key=lambda s: s[2])
        tried = None
        for margin in PAGE_MARGINS:
            bound = _time_bound(spans, margin * limit)
            if bound is None:
                break
            if bound == tried:
                continue
            tried = bound
            rows = page(bound, [b for b, lo, _, _ in spans if lo <= bound])
            if len(rows) >= limit:
                return rows
        return page(None, [s[0] for s in spans])

    def _history_page(
        self,
        run_id: str,
        key: str,
        after: HistoryKey | None,
        limit: int,
        bound: int | None,
        buckets: list[int] | None,
        with_run: bool = False,
    ) -> list[bytes]:
        """The page's query: ``_history_sql`` with ``timestamp <= bound`` and the steps of ``buckets``."""
        sql, params = self._history_sql(run_id, key, after, limit, bound, buckets, with_run)
        return self._t.query_text(sql, params)

    def metric_history_lines(
        self, run_id: str, key: str, after: HistoryKey | None, limit: int | None
    ) -> Generator[list[bytes], None, None]:
        """``metric_history_after`` as one query streamed a block at a time (``limit`` None: every point):
        one sort of the points after ``after`` (no span bound: the whole rest is read anyway)."""
        sql, params = self._history_sql(run_id, key, after, limit)
        yield from self._t.query_lines(sql, params)

    @staticmethod
    def _history_sql(
        run_id: str,
        key: str,
        after: HistoryKey | None,
        limit: int | None,
        bound: int | None = None,
        buckets: list[int] | None = None,
        with_run: bool = False,
    ) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {"run": run_id, "key": key, "limit": limit, "head": _point_head(key)}
        if with_run:
            params.update(ids=[run_id], ends=[_run_end(run_id)])
        where = ""
        if after is not None:
            params.update(a_ts=after.timestamp, a_step=after.step, a_value=after.value, a_nan=after.is_nan)
            where = (
                " AND (timestamp > %(a_ts)s OR (timestamp = %(a_ts)s AND (step > %(a_step)s OR (step = %(a_step)s "
                "AND (value > %(a_value)s OR (value = %(a_value)s AND is_nan > %(a_nan)s))))))"
            )
        if bound is not None:
            params["bound"] = bound
            where += " AND timestamp <= %(bound)s"
        if buckets is not None:
            ranges = []
            for i, (lo, hi) in enumerate(_step_ranges(buckets)):
                params[f"s{i}"], params[f"e{i}"] = lo, hi
                ranges.append(f"(step >= %(s{i})s AND step <= %(e{i})s)")
            where += f" AND ({' OR '.join(ranges)})"
        sql = (
            f"SELECT {RUN_POINT_JSON if with_run else POINT_JSON} FROM metrics FINAL "
            f"WHERE run_id = %(run)s AND key = %(key)s{where} ORDER BY {HISTORY_ORDER}"
        )
        return sql + (" LIMIT %(limit)s" if limit is not None else ""), params

    def metric_history_bulk(self, run_ids: Sequence[str], key: str, limit: int) -> list[bytes]:
        """Several runs' metric, by run id then history order, at most ``limit`` points in all (MLflow's
        get-history-bulk), each MLflow's JSON point with its run id (``RUN_POINT_JSON``).

        The runs are taken in turn, as many at once as fit whole in what is left of ``limit`` by their
        ``metric_spans`` estimate (never fewer than their distinct points), in one query sorting their
        points; a run past that alone, by the keyset page of its first points that are left (a bounded
        read: ~30,000 points of a 1M-point run for the first 25,000, not all of them). A run without span
        rows counts as none and is read with its group, still bounded by the query's LIMIT.
        """
        ids = sorted(set(run_ids))
        if not ids or limit <= 0:
            return []
        estimates = {
            str(rid): int(n)
            for rid, n in self._t.query(
                "SELECT run_id, countMerge(points) FROM metric_spans WHERE run_id IN %(ids)s AND key = %(key)s "
                "GROUP BY run_id",
                {"ids": tuple(ids), "key": key},
            )
        }
        out: list[bytes] = []
        i = 0
        while i < len(ids) and len(out) < limit:
            left, j, fits = limit - len(out), i, 0
            while j < len(ids) and fits + (n := estimates.get(ids[j], 0)) <= left:
                fits += n
                j += 1
            if j == i:  # this run alone has more points than are left
                out += self.metric_history_after(ids[i], key, None, left, with_run=True).points
                i += 1
                continue
            group = ids[i:j]
            out += self._t.query_text(
                f"SELECT {RUN_POINT_JSON} FROM metrics FINAL WHERE run_id IN %(group)s AND key = %(key)s "
                f"ORDER BY run_id, {HISTORY_ORDER} LIMIT %(limit)s",
                {
                    "group": tuple(group),
                    "key": key,
                    "limit": left,
                    "head": _point_head(key),
                    "ids": group,
                    "ends": [_run_end(r) for r in group],
                },
            )
            i = j
        return out

    def metric_samples(
        self, run_ids: Sequence[str], key: str, max_results: int, start_step: int | None, end_step: int | None
    ) -> dict[str, list[tuple[Any, ...]]]:
        """run_id → a chart sample of the run's metric (get-history-bulk-interval): at most ``max_results``
        real points as (step, timestamp, value, is_nan), in that order.

        A run with few points in the step range (at most ``max_results`` occupied 64-step buckets and at
        most ``EXACT_SAMPLE_POINTS`` stored points) gets MLflow 3.17's SQL-store sample exactly
        (``_ntile_samples``; every point when it has at most ``max_results``). A longer run is sampled
        from ``metric_buckets`` (each 64-step bucket's first point, filled by a view on ``metrics``): its
        first and last point in the range, and between them, for ``max_results - 2`` evenly spaced target
        steps, the first bucket point at or after each target, from the coarsest resolution (groups of 4^L
        buckets, computed when read) that still has ``max_results`` groups in the range. No request reads
        every point of a long run: only its bucket rows and two narrow step ranges of ``metrics``. Three
        queries at most
        (each is a round trip that costs more than its work on a busy server).
        """
        if not run_ids:
            return {}
        m = max(1, max_results)
        lo = start_step if start_step is not None else _MIN_STEP
        hi = end_step if end_step is not None else _MAX_STEP
        ids = tuple(sorted(set(run_ids)))
        # per run and level (groups of 4^level buckets): distinct groups whose stored first point is in
        # range, the extremes of those points, and the points of their blocks (an estimate of the run's size)
        stats: dict[str, dict[int, tuple[int, int, int, int]]] = {}
        shifts = ", ".join(f"uniqExact(bitShiftRight(bucket, {2 * level}))" for level in range(_LEVELS))
        for run_id, first, last, total, *groups in self._t.query(
            f"SELECT run_id, min(first_step), max(first_step), sum(points), {shifts} "
            "FROM metric_buckets WHERE run_id IN %(ids)s AND key = %(key)s AND first_step >= %(lo)s "
            "AND first_step <= %(hi)s GROUP BY run_id",
            {"ids": ids, "key": key, "lo": lo, "hi": hi},
        ):
            stats[str(run_id)] = {level: (int(n), int(first), int(last), int(total)) for level, n in enumerate(groups)}
        out: dict[str, list[tuple[Any, ...]]] = {r: [] for r in run_ids}
        fetched, counted, long_runs = [], [], []
        for r in ids:
            buckets, _, _, points = stats.get(r, {}).get(0, (0, 0, 0, 0))
            if r not in stats and start_step is None:
                continue  # no point at all
            if buckets > m or points > EXACT_SAMPLE_POINTS:
                long_runs.append(r)
            elif points <= FETCHED_SAMPLE_POINTS:
                fetched.append(r)  # every point to Python, sampled there: no count query
            else:
                counted.append(r)
        if counted:
            out.update(self._ntile_samples(counted, key, m, start_step, end_step))
        if long_runs or fetched:
            out.update(self._bucket_samples(long_runs, fetched, key, m, lo, hi, stats))
        return out

    def _bucket_samples(
        self,
        run_ids: Sequence[str],
        fetched: Sequence[str],
        key: str,
        m: int,
        lo: int,
        hi: int,
        stats: dict[str, dict[int, tuple[int, int, int, int]]],
    ) -> dict[str, list[tuple[Any, ...]]]:
        """The bucket sample of ``run_ids`` and MLflow's exact sample of ``fetched`` (short runs, read
        whole), in one query."""
        # the run's first point in range is at or before its first stored bucket point, and its last one
        # in the bucket of its last stored bucket point: two narrow step ranges of `metrics`; the bucket
        # points between come from the coarsest level with max_results buckets in range
        params: dict[str, Any] = {"key": key, "lo": lo, "hi": hi, "fetched": tuple(fetched)}
        firsts, lasts, picks = [], [], []
        for i, r in enumerate(run_ids):
            per = stats.get(r, {})
            _, first, last, _ = per.get(0, (0, hi, lo, 0))
            params.update({f"r{i}": r, f"b{i}": min(hi, first), f"c{i}": max(lo, last)})
            params[f"l{i}"] = max((lv for lv, (n, *_) in per.items() if n >= m), default=0)
            firsts.append(f"(run_id = %(r{i})s AND step >= %(lo)s AND step <= %(b{i})s)")
            lasts.append(f"(run_id = %(r{i})s AND step >= %(c{i})s AND step <= %(hi)s)")
            picks.append(f"run_id = %(r{i})s")
        params["runs"] = list(run_ids)
        params["shifts"] = [2 * params[f"l{i}"] for i in range(len(run_ids))]
        point = "step, timestamp, value, is_nan"
        parts = []
        if run_ids:
            parts += [
                f"SELECT run_id, 0 AS side, {point} FROM metrics WHERE key = %(key)s AND ({' OR '.join(firsts)}) "
                f"ORDER BY run_id, {SAMPLE_ORDER} LIMIT 1 BY run_id",
                f"SELECT run_id, 1 AS side, {point} FROM metrics WHERE key = %(key)s AND ({' OR '.join(lasts)}) "
                "ORDER BY run_id, step DESC, timestamp DESC, value DESC, is_nan DESC LIMIT 1 BY run_id",
                "SELECT run_id, 2 AS side, first_step, first_timestamp, first_value, first_is_nan FROM metric_buckets "
                f"WHERE key = %(key)s AND ({' OR '.join(picks)}) AND first_step >= %(lo)s AND first_step <= %(hi)s "
                "ORDER BY run_id, first_step, first_timestamp, first_value, first_is_nan "
                "LIMIT 1 BY run_id, bitShiftRight(bucket, transform(run_id, %(runs)s, %(shifts)s, 0))",
            ]
        if fetched:  # replayed copies included (no FINAL: it costs more than the few rows it collapses)
            parts.append(
                f"SELECT run_id, 3 AS side, {point} FROM metrics WHERE run_id IN %(fetched)s AND key = %(key)s "
                "AND step >= %(lo)s AND step <= %(hi)s"
            )
        edge: dict[tuple[str, int], tuple[Any, ...]] = {}
        inner: dict[str, list[tuple[Any, ...]]] = {r: [] for r in (*run_ids, *fetched)}
        for r, side, *p in self._t.query(" UNION ALL ".join(parts), params):
            if side >= 2:
                inner[str(r)].append(tuple(p))
            else:
                edge[(str(r), int(side))] = tuple(p)
        out = {r: _spread(edge.get((r, 0)), edge.get((r, 1)), sorted(inner[r]), m) for r in run_ids}
        out.update({r: _ntile(sorted(set(inner[r])), m) for r in fetched})
        return out

    def _ntile_samples(
        self, run_ids: Sequence[str], key: str, max_results: int, start_step: int | None, end_step: int | None
    ) -> dict[str, list[tuple[Any, ...]]]:
        """MLflow 3.17's sample of each run, exactly: for runs of a few thousand points.

        MLflow's SQL store splits a run's points, in that order, into ``max_results`` buckets as
        ``NTILE`` does (the first ``n % max_results`` one row larger), keeps the first row of each and
        puts the last point in place of the last sample (or after it, when there are fewer points than
        buckets). Which positions that keeps depends only on the number of points ``n``, so the first
        query counts each run's points and the second keeps the rows at those positions: the row number
        over the sorted points (``rowNumberInAllBlocks``: ClickHouse 18.16 has no window functions)
        tested against the run's bucket arithmetic. (One query with the counts in a scalar subquery was
        tried: ClickHouse 18.16 evaluates it over and over, 200 ms for a 2-point run.)
        """
        params: dict[str, Any] = {"ids": tuple(sorted(set(run_ids))), "key": key}
        span = ""
        if start_step is not None and end_step is not None:
            span = " AND step >= %(start)s AND step <= %(end)s"
            params.update(start=start_step, end=end_step)
        out: dict[str, list[tuple[Any, ...]]] = {r: [] for r in run_ids}
        source = f"FROM metrics FINAL WHERE run_id IN %(ids)s AND key = %(key)s{span}"
        counts = sorted(
            (str(r), int(n)) for r, n in self._t.query(f"SELECT run_id, count() {source} GROUP BY run_id", params)
        )
        if not counts:
            return out
        # per run (in run_id order, the order of the sorted stream): its first row number, the last
        # position, the end of the size+1 buckets, the end of the sampled buckets, the bucket size
        bases, lasts, bigs, ends, sizes = [], [], [], [], []
        base = 0
        m = max(1, max_results)
        for _, n in counts:
            if n <= m:
                size, big, end = 1, 0, n  # every point is a sample
            else:
                size, extra = divmod(n, m)
                big = extra * (size + 1)
                end = big + (m - 1 - extra) * size  # buckets 0 .. m-2; the last point stands for bucket m-1
            bases.append(base)
            lasts.append(n - 1)
            bigs.append(big)
            ends.append(end)
            sizes.append(size)
            base += n
        params.update(_runs=[r for r, _ in counts], _base=bases, _last=lasts, _big=bigs, _end=ends, _size=sizes)
        rows = self._t.query(
            "SELECT run_id, step, timestamp, value, is_nan FROM ("
            "SELECT run_id, step, timestamp, value, is_nan, indexOf(%(_runs)s, run_id) AS _x, "
            "_rn - arrayElement(%(_base)s, _x) AS _i, arrayElement(%(_big)s, _x) AS _b, "
            "arrayElement(%(_end)s, _x) AS _e, arrayElement(%(_size)s, _x) AS _s FROM ("
            "SELECT run_id, step, timestamp, value, is_nan, toInt64(rowNumberInAllBlocks()) AS _rn FROM ("
            f"SELECT run_id, step, timestamp, value, is_nan {source} ORDER BY run_id, {SAMPLE_ORDER}))) "
            "WHERE _i = arrayElement(%(_last)s, _x) OR (_i < _b AND modulo(_i, _s + 1) = 0) "
            "OR (_i >= _b AND _i < _e AND modulo(_i - _b, _s) = 0)",
            params,
        )
        by_run: dict[str, list[tuple[Any, ...]]] = {}
        for run_id, step, ts, value, nan in rows:
            by_run.setdefault(run_id, []).append((step, ts, value, nan))
        for run_id, points in by_run.items():
            points.sort()
            out[run_id] = points
        return out

    # -- artifacts --
    def artifact_files(self, prefix: str) -> list[tuple[str, int]]:
        """Live indexed files at ``prefix`` or under ``prefix/`` (every file when ``prefix`` is empty)."""
        where = [cond("deleted = 0", "deleted")]
        params: dict[str, Any] = {}
        if prefix:
            where.append(cond("path = %(p)s OR substring(path, 1, %(n)s) = %(dir)s", "path"))
            params = {"p": prefix, "dir": prefix + "/", "n": len(prefix.encode()) + 1}
        rows = self._t.query(current(t.ARTIFACTS, "path, size", where) + " ORDER BY path", params)
        return [(str(p), int(n)) for p, n in rows]


def _run_info(row: Sequence[Any]) -> dict[str, Any]:
    info = dict(zip(RUN_COLUMNS.split(", "), row, strict=True))
    info["run_uuid"] = info["run_id"]
    info.pop("deleted_time")
    if info["end_time"] is None:
        info.pop("end_time")
    return info


def _ntile(points: list[tuple[Any, ...]], m: int) -> list[tuple[Any, ...]]:
    """MLflow 3.17's sample of one run's distinct points in (step, timestamp, value, is_nan) order: the
    first point of each of ``m`` NTILE buckets, the last point in place of the last (or after it)."""
    n = len(points)
    if n <= m:
        return points
    size, extra = divmod(n, m)
    out, i = [], 0
    for bucket in range(m):
        out.append(points[i])
        i += size + (1 if bucket < extra else 0)
    out[-1] = points[-1]
    return out


def _spread(
    first: tuple[Any, ...] | None, last: tuple[Any, ...] | None, inner: list[tuple[Any, ...]], m: int
) -> list[tuple[Any, ...]]:
    """At most ``m`` points: ``first``, ``last``, and for ``m - 2`` target steps evenly spaced between
    theirs, the first of ``inner`` (sorted bucket points) at or after the target, each once."""
    if first is None or last is None:
        return []
    if first == last:
        return [first]
    if m == 1:
        return [last]  # as MLflow: the last point stands for the only bucket
    out = [first]
    span = last[0] - first[0]
    j, slots = 0, m - 2
    for i in range(1, slots + 1):
        target = first[0] + span * i / (slots + 1)
        while j < len(inner) and (inner[j][0] < target or inner[j] <= out[-1]):
            j += 1
        if j == len(inner) or inner[j] >= last:
            break
        out.append(inner[j])
    out.append(last)
    return out


def _time_bound(spans: list[tuple[int, int, int, int]], points: float) -> int | None:
    """The least ``max_timestamp`` of ``spans`` (sorted by it) at which their estimated points reach
    ``points``; None when they never do or when it is the last one (a bound that bounds nothing)."""
    total = 0
    for _, _, hi, n in spans:
        total += n
        if total >= points:
            return hi if hi < spans[-1][2] else None
    return None


def _step_ranges(buckets: list[int]) -> list[tuple[int, int]]:
    """The steps of ``buckets`` as at most MAX_STEP_RANGES inclusive ranges: consecutive buckets join,
    and past the cap the smallest gaps are read too (more rows, never fewer)."""
    ordered = sorted(set(buckets))
    runs: list[list[int]] = []
    for b in ordered:
        if runs and b == runs[-1][1] + 1:
            runs[-1][1] = b
        else:
            runs.append([b, b])
    if len(runs) > MAX_STEP_RANGES:
        gaps = sorted(range(len(runs) - 1), key=lambda i: runs[i + 1][0] - runs[i][1])
        keep = set(gaps[len(runs) - MAX_STEP_RANGES :])
        merged = [runs[0]]
        for i in range(1, len(runs)):
            if i - 1 in keep:
                merged.append(runs[i])
            else:
                merged[-1] = [merged[-1][0], runs[i][1]]
        runs = merged
    width = 1 << SPAN_SHIFT
    return [(lo * width, hi * width + width - 1) for lo, hi in runs]
