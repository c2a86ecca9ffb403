"""Handlers of the MLflow tracking endpoints: validate, turn writes into events, answer reads.

Each handler takes the request's fields as a dict (JSON body or query string) and returns the
response body. Writes return once the log acknowledged the event; reads first pass the
read-your-writes barrier of the partitions they depend on.
"""

from __future__ import annotations

import base64
import logging
import math
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool

from ingest import validation as v
from ingest.consistency import Barrier
from ingest.errors import MlflowError, invalid, not_found
from ingest.protocol import LogBatch, LogMetric
from ingest.runstates import RunStates
from ingest.writer import EventWriter
from trackstream.reads import TrackingReader, search
from trackstream.settings import Topics

log = logging.getLogger(__name__)

ACTIVE, DELETED = "active", "deleted"
RUN_NAME_TAG = "mlflow.runName"
DEFAULT_EXPERIMENT_ID = "0"
# The log key of every ExperimentState event: all experiment changes share one partition, so the
# metadata sink decides name uniqueness and lifecycle transitions in one order (docs/DESIGN.md).
EXPERIMENTS_KEY = "experiments"
VIEW_TYPES = {"ACTIVE_ONLY": (ACTIVE,), "DELETED_ONLY": (DELETED,), "ALL": (ACTIVE, DELETED)}
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def now_ms() -> int:
    return int(time.time() * 1000)


def page_token(offset: int) -> str:
    return base64.b64encode(orjson.dumps({"offset": offset})).decode()


def page_offset(token: Any) -> int:
    if not token:
        return 0
    try:
        offset = orjson.loads(base64.b64decode(str(token)))["offset"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except Exception:
        pass
    raise invalid("Invalid page token, could not base64-decode")


_ADJECTIVES = ("able", "bold", "brave", "bright", "calm", "clever", "crisp", "eager", "fair", "gentle",
               "glad", "grand", "keen", "kind", "lively", "merry", "neat", "proud", "quick", "sharp",
               "shy", "silent", "sleek", "smart", "swift", "tidy", "vivid", "warm", "wise", "zealous")  # fmt: skip
_NOUNS = ("ant", "bass", "bat", "bear", "bee", "cat", "colt", "crab", "crow", "deer", "doe", "duck",
          "eel", "elk", "finch", "fox", "frog", "goat", "gull", "hare", "hawk", "hen", "jay", "lamb",
          "lark", "mole", "moth", "owl", "ox", "ram", "seal", "shrew", "slug", "snail", "swan", "toad",
          "wasp", "whale", "wolf", "worm", "yak")  # fmt: skip


def generate_run_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(0, 999)}"


class ActiveRuns:
    """The write paths' question "is this run active?", answered from the gateway's run-state view
    (:mod:`ingest.runstates`) so a stream of log-batch requests pays a dict lookup, not a barrier round
    trip and a ``runs FINAL`` query, and keeps being answered while ClickHouse is down. A run the view
    does not know is read from the store once (after the barrier) and remembered. Without a view (None)
    every check reads the store."""

    def __init__(self, states: RunStates | None) -> None:
        self.states = states

    def fresh(self, run_id: str) -> bool:
        """Known active: the write needs no further check (the hot path: no thread, no store)."""
        return self.states is not None and self.states.is_active(run_id)

    def stage(self, run_id: str) -> str | None:
        return None if self.states is None else self.states.stage(run_id)

    def remember(self, info: dict[str, Any]) -> None:
        if self.states is not None:
            self.states.learn(info["run_id"], info.get("experiment_id"), info["lifecycle_stage"])

    def forget(self, run_id: str) -> None:
        if self.states is not None:
            self.states.forget(run_id)


def _not_active(run_id: str, stage: str) -> MlflowError:
    return invalid(f"The run {run_id} must be in the 'active' state. Current state is {stage}.")


def metric_columns(metrics: list[Any]) -> dict[str, list[Any]]:
    """Validated metric points as the columns of a MetricBatch event.

    The common case (numbers where numbers belong) is checked column by column, with C-level
    ``map``/``set`` passes rather than Python loops; anything else goes through the per-point rules,
    which raise MLflow's message for the first bad point.
    """
    if set(map(type, metrics)) - {dict}:
        bad = next(m for m in metrics if type(m) is not dict)
        raise invalid(f"Invalid value {bad!r} for parameter 'metrics' supplied: each metric must be an object.")
    present: set[str] = set().union(*metrics)
    keys: list[Any] = [m.get("key") for m in metrics]
    if set(map(type, keys)) != {str}:
        for key in keys:
            v.key_name("metric", key)  # raises for the first key that is not a string
    names = dict.fromkeys(keys)  # distinct keys, first appearance first
    for key in names:
        v.key_name("metric", key)
    values: list[Any] = [m.get("value") for m in metrics]
    timestamps = [m.get("timestamp") for m in metrics]
    steps = [m.get("step") or 0 for m in metrics] if "step" in present else [0] * len(metrics)
    if (
        not set(map(type, values)) - {float, int}
        and set(map(type, timestamps)) == {int}
        and min(timestamps, default=0) >= 0
        and max(timestamps, default=0) <= v.INT64_MAX
        and set(map(type, steps)) == {int}
        and min(steps, default=0) >= v.INT64_MIN
        and max(steps, default=0) <= v.INT64_MAX
    ):
        floats = list(map(float, values))
        if any(map(math.isinf, floats)):
            floats = [v.metric_value(k, x, t, s)[0] for k, x, t, s in zip(keys, floats, timestamps, steps, strict=True)]
    else:
        checked = [v.metric_value(k, x, t, s) for k, x, t, s in zip(keys, values, timestamps, steps, strict=True)]
        floats = [c[0] for c in checked]
        timestamps = [c[1] for c in checked]
        steps = [c[2] for c in checked]
    index = {key: i for i, key in enumerate(names)}
    columns: dict[str, list[Any]] = {
        "keys": [], "key_names": list(names), "key_index": list(map(index.__getitem__, keys)),  # see metric_batch.v2
        "values": floats, "timestamps": timestamps, "steps": steps,
    }  # fmt: skip
    for column, field in (("model_ids", "model_id"), ("dataset_names", "dataset_name"),
                          ("dataset_digests", "dataset_digest")):  # fmt: skip
        given = [m.get(field) or "" for m in metrics] if field in present else []
        if set(map(type, given)) - {str}:
            raise invalid(f"Invalid value for parameter '{field}' supplied: expected a string.")
        columns[column] = given if any(given) else []
    return columns


class Tracking:
    def __init__(
        self,
        writer: EventWriter,
        reader: TrackingReader,
        barrier: Barrier,
        topics: Topics,
        run_states: RunStates | None = None,
    ) -> None:
        self.writer = writer
        self.reader = reader
        self.barrier = barrier
        self.topics = topics
        self._active_runs = ActiveRuns(run_states)

    # -- consistency helpers --
    def _sync_metadata(self, *keys: str) -> None:
        self.barrier.wait(self.topics.metadata, keys or None)

    def _experiment(self, experiment_id: str) -> dict[str, Any]:
        self._sync_metadata(EXPERIMENTS_KEY, experiment_id)  # the row's partition, then its tags'
        exp = self.reader.experiment(str(experiment_id))
        if exp is None:
            raise not_found(f"No Experiment with id={experiment_id} exists")
        return exp

    def _run_info(self, run_id: str) -> dict[str, Any]:
        self._sync_metadata(run_id)
        info = self.reader.run_info(run_id)
        if info is None:
            raise not_found(f"Run with id={run_id} not found")
        return info

    def _check_active(self, run_id: str) -> None:
        """The write paths' check that a run exists and is active: from the run-state view when it knows
        the run (a deleted run is refused without asking the store), else from the store."""
        stage = self._active_runs.stage(run_id)
        if stage is None:
            self._active_run(run_id)
        elif stage != ACTIVE:
            raise _not_active(run_id, stage)

    def _active_run(self, run_id: str) -> dict[str, Any]:
        info = self._run_info(run_id)
        self._active_runs.remember(info)
        if info["lifecycle_stage"] != ACTIVE:
            raise _not_active(run_id, info["lifecycle_stage"])
        return info

    def ensure_default_experiment(self) -> None:
        self._sync_metadata(EXPERIMENTS_KEY)
        if self.reader.experiment(DEFAULT_EXPERIMENT_ID) is None:
            t = now_ms()
            try:
                self._decide_experiment(
                    "create",
                    {"experiment_id": DEFAULT_EXPERIMENT_ID, "name": "Default",
                     "artifact_location": f"mlflow-artifacts:/{DEFAULT_EXPERIMENT_ID}",
                     "lifecycle_stage": ACTIVE, "creation_time": t, "last_update_time": t},
                )  # fmt: skip
            except MlflowError as exc:
                if exc.error_code == "TEMPORARILY_UNAVAILABLE":
                    # the metadata consumers are not running yet: the event is in the log and is decided
                    # when they start, so the gateway need not wait for them
                    log.warning("default experiment: %s", exc.message)
                elif exc.error_code != "RESOURCE_ALREADY_EXISTS":  # another replica created it first
                    raise

    def _decide_experiment(self, op: str, state: dict[str, Any]) -> None:
        """Emit an experiment change and wait for the metadata sink's decision (raises the refusal).

        The event carries the whole row as this gateway saw it, but the sink applies only what ``op``
        changes (a create: the row; a rename: the name; a delete/restore: the stage) to the row it holds.
        """
        row = {k: state[k] for k in ("experiment_id", "name", "artifact_location", "lifecycle_stage",
                                     "creation_time", "last_update_time")}  # fmt: skip
        self.writer.decide(EXPERIMENTS_KEY, "ExperimentState", {**row, "op": op})

    def _emit_run(self, info: dict[str, Any], changed: tuple[str, ...] | None = None) -> None:
        """A run's row; with ``changed`` the sink sets only those columns of the row it holds (so two
        replicas updating different fields of one run both keep theirs; RunState is never refused)."""
        state: dict[str, Any] = {k: info.get(k) for k in (
            "run_id", "experiment_id", "run_name", "user_id", "status", "start_time", "end_time",
            "artifact_uri", "lifecycle_stage", "deleted_time")}  # fmt: skip
        state["changed"] = None if changed is None else list(changed)
        self.writer.metadata(info["run_id"], "RunState", state)

    def _emit_run_data(self, run_id: str, params: list[dict[str, str]], tags: list[dict[str, Any]]) -> None:
        if params or tags:
            self.writer.metadata(run_id, "RunData", {"run_id": run_id, "params": params, "tags": tags})

    # -- experiments --
    def create_experiment(self, p: dict[str, Any]) -> dict[str, Any]:
        name = v.experiment_name(p.get("name"))
        tags = [_tag(t, v.MAX_EXPERIMENT_TAG_VAL_LENGTH) for t in p.get("tags") or []]
        experiment_id = str(random.randint(1, 2**53))
        t = now_ms()
        # name uniqueness is decided by the metadata sink in log order, not checked here
        self._decide_experiment(
            "create",
            {"experiment_id": experiment_id, "name": name,
             "artifact_location": p.get("artifact_location") or f"mlflow-artifacts:/{experiment_id}",
             "lifecycle_stage": ACTIVE, "creation_time": t, "last_update_time": t},
        )  # fmt: skip
        if tags:
            self.writer.metadata(experiment_id, "ExperimentTags", {"experiment_id": experiment_id, "tags": tags})
        return {"experiment_id": experiment_id}

    def get_experiment(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"experiment": self._experiment(str(v.required(p, "experiment_id")))}

    def get_experiment_by_name(self, p: dict[str, Any]) -> dict[str, Any]:
        name = v.required(p, "experiment_name")
        self._sync_metadata()
        exp = self.reader.experiment_by_name(name)
        if exp is None:
            raise not_found(f"Could not find experiment with name '{name}'")
        return {"experiment": exp}

    def search_experiments(self, p: dict[str, Any]) -> dict[str, Any]:
        view = VIEW_TYPES.get(str(p.get("view_type") or "ACTIVE_ONLY"))
        if view is None:
            raise invalid(f"Invalid view_type '{p.get('view_type')}'")
        limit = v.max_results(p.get("max_results"), 1000, v.MAX_RESULTS_SEARCH_EXPERIMENTS)
        offset = page_offset(p.get("page_token"))
        try:
            page = self.reader.search_experiments(
                view, p.get("filter"), _str_list(p.get("order_by")), offset, limit, ready=self._sync_metadata
            )
        except search.SearchError as exc:
            raise invalid(str(exc)) from None
        out: dict[str, Any] = {"experiments": page.items}
        if page.next_offset is not None:
            out["next_page_token"] = page_token(page.next_offset)
        return out

    def _active_experiment(self, experiment_id: str) -> dict[str, Any]:
        exp = self._experiment(experiment_id)
        if exp["lifecycle_stage"] != ACTIVE:
            raise invalid(
                f"The experiment {experiment_id} must be in the 'active' state. "
                f"Current state is {exp['lifecycle_stage']}."
            )
        return exp

    def _set_experiment_stage(self, experiment_id: str, old: str, new: str) -> None:
        exp = self._experiment(experiment_id)
        if exp["lifecycle_stage"] != old:  # answered early; the sink decides again in log order
            raise not_found(f"No Experiment with id={experiment_id} exists")
        exp["lifecycle_stage"] = new
        exp["last_update_time"] = now_ms()
        self._decide_experiment("delete" if new == DELETED else "restore", exp)
        for info in self.reader.run_ids([experiment_id], (ACTIVE, DELETED)):
            if info["lifecycle_stage"] != new:
                self._set_run_stage(info, new)

    def _set_run_stage(self, info: dict[str, Any], stage: str) -> None:
        info = dict(info)
        info["lifecycle_stage"] = stage
        info["deleted_time"] = now_ms() if stage == DELETED else None
        self._active_runs.forget(info["run_id"])
        self._emit_run(info, ("lifecycle_stage", "deleted_time"))

    def delete_experiment(self, p: dict[str, Any]) -> dict[str, Any]:
        self._set_experiment_stage(str(v.required(p, "experiment_id")), ACTIVE, DELETED)
        return {}

    def restore_experiment(self, p: dict[str, Any]) -> dict[str, Any]:
        self._set_experiment_stage(str(v.required(p, "experiment_id")), DELETED, ACTIVE)
        return {}

    def update_experiment(self, p: dict[str, Any]) -> dict[str, Any]:
        experiment_id = str(v.required(p, "experiment_id"))
        new_name = v.experiment_name(v.required(p, "new_name"))
        exp = self._experiment(experiment_id)
        if exp["lifecycle_stage"] != ACTIVE:
            raise MlflowError("Cannot rename a non-active experiment.", "INVALID_STATE")
        if new_name == exp["name"]:
            return {}
        exp["name"] = new_name
        exp["last_update_time"] = now_ms()
        self._decide_experiment("rename", exp)  # a taken name is refused by the sink, in log order
        return {}

    def set_experiment_tag(self, p: dict[str, Any]) -> dict[str, Any]:
        experiment_id = str(v.required(p, "experiment_id"))
        key = v.key_name("tag", v.required(p, "key"))
        tag = _tag({"key": key, "value": p.get("value")}, v.MAX_EXPERIMENT_TAG_VAL_LENGTH)
        self._active_experiment(experiment_id)
        self.writer.metadata(experiment_id, "ExperimentTags", {"experiment_id": experiment_id, "tags": [tag]})
        return {}

    def delete_experiment_tag(self, p: dict[str, Any]) -> dict[str, Any]:
        experiment_id = str(v.required(p, "experiment_id"))
        key = str(v.required(p, "key"))
        exp = self._active_experiment(experiment_id)
        if key not in {t["key"] for t in exp["tags"]}:
            raise not_found(f"No tag with name: {key} in experiment with id {experiment_id}")
        tag = {"key": key, "value": "", "deleted": True}
        self.writer.metadata(experiment_id, "ExperimentTags", {"experiment_id": experiment_id, "tags": [tag]})
        return {}

    # -- runs --
    def delete_run(self, p: dict[str, Any]) -> dict[str, Any]:
        self._set_run_stage(self._run_info(_run_id(p)), DELETED)
        return {}

    def restore_run(self, p: dict[str, Any]) -> dict[str, Any]:
        self._set_run_stage(self._run_info(_run_id(p)), ACTIVE)
        return {}

    def create_run(self, p: dict[str, Any]) -> dict[str, Any]:
        experiment_id = str(p.get("experiment_id") or DEFAULT_EXPERIMENT_ID)
        exp = self._active_experiment(experiment_id)
        tags = {t["key"]: t["value"] for t in (_tag(t, v.MAX_TAG_VAL_LENGTH) for t in p.get("tags") or [])}
        run_name = p.get("run_name") or tags.get(RUN_NAME_TAG) or generate_run_name()
        if p.get("run_name") and tags.get(RUN_NAME_TAG) and tags[RUN_NAME_TAG] != p["run_name"]:
            raise invalid(
                f"Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values "
                f"(run_name='{p['run_name']}', mlflow.runName='{tags[RUN_NAME_TAG]}')."
            )
        tags[RUN_NAME_TAG] = run_name
        run_id = uuid.uuid4().hex
        info = {
            "run_id": run_id, "experiment_id": experiment_id, "run_name": run_name,
            "user_id": str(p.get("user_id") or ""), "status": "RUNNING",
            "start_time": _int_or(p.get("start_time"), now_ms()), "end_time": None,
            "artifact_uri": f"{exp['artifact_location'].rstrip('/')}/{run_id}/artifacts",
            "lifecycle_stage": ACTIVE, "deleted_time": None,
        }  # fmt: skip
        self._emit_run(info)
        tag_list = [{"key": k, "value": val, "deleted": False} for k, val in tags.items()]
        self._emit_run_data(run_id, [], tag_list)
        info = {k: val for k, val in info.items() if val is not None}
        info["run_uuid"] = run_id
        return {
            "run": {
                "info": info,
                "data": {"tags": [{"key": t["key"], "value": t["value"]} for t in sorted(tag_list, key=_by_key)]},
                "inputs": {},
                "outputs": {},
            }
        }

    def update_run(self, p: dict[str, Any]) -> dict[str, Any]:
        run_id = _run_id(p)
        info = self._active_run(run_id)
        if p.get("status") is not None:
            if p["status"] not in RUN_STATUSES:
                raise invalid(f"Invalid value {p['status']} for parameter 'status' supplied.")
            info["status"] = p["status"]
        if p.get("end_time") is not None:
            info["end_time"] = _int_or(p["end_time"], None)
        renamed = p.get("run_name")
        if renamed:
            info["run_name"] = renamed
        changed = tuple(f for f, given in (("status", p.get("status") is not None),
                                           ("end_time", p.get("end_time") is not None),
                                           ("run_name", bool(renamed))) if given)  # fmt: skip
        self._emit_run(info, changed)
        if renamed:
            self._emit_run_data(run_id, [], [{"key": RUN_NAME_TAG, "value": renamed, "deleted": False}])
        info.pop("deleted_time", None)
        return {"run_info": {k: val for k, val in info.items() if val is not None}}

    def get_run(self, p: dict[str, Any]) -> dict[str, Any]:
        run_id = _run_id(p)
        self._sync_metadata(run_id)
        self.barrier.wait(self.topics.metrics, [run_id])
        run = self.reader.run(run_id)
        if run is None:
            raise not_found(f"Run with id={run_id} not found")
        return {"run": run}

    def search_runs(self, p: dict[str, Any]) -> dict[str, Any]:
        experiment_ids = [str(e) for e in p.get("experiment_ids") or []]
        view = VIEW_TYPES.get(str(p.get("run_view_type") or "ACTIVE_ONLY"))
        if view is None:
            raise invalid(f"Invalid run_view_type '{p.get('run_view_type')}'")
        limit = v.max_results(p.get("max_results"), 1000, v.MAX_RESULTS_SEARCH_RUNS)
        offset = page_offset(p.get("page_token"))

        def ready() -> None:
            self._sync_metadata()
            self.barrier.wait(self.topics.metrics)

        try:
            page = self.reader.search_runs(
                experiment_ids, view, p.get("filter"), _str_list(p.get("order_by")), offset, limit, ready
            )
        except search.SearchError as exc:
            raise invalid(str(exc)) from None
        out: dict[str, Any] = {"runs": page.items}
        if page.next_offset is not None:
            out["next_page_token"] = page_token(page.next_offset)
        return out

    # -- run data --
    # log-metric and log-batch run on the event loop and await the log's acknowledgement there; only a
    # cache miss of the active-run check and params/tags (which read the store) take a thread.
    async def log_metric(self, p: LogMetric) -> dict[str, Any]:
        run_id = p.run_id or p.run_uuid
        if not run_id:
            v.required({}, "run_id")
        assert run_id is not None
        await self._log(run_id, [p.model_dump(exclude={"run_id", "run_uuid"})], [], [])
        return {}

    async def log_batch(self, p: LogBatch) -> dict[str, Any]:
        if not p.run_id:
            v.required({}, "run_id")
        assert p.run_id is not None
        v.batch_limits(len(p.metrics), len(p.params), len(p.tags))
        await self._log(p.run_id, p.metrics, p.params, p.tags)
        return {}

    def log_param(self, p: dict[str, Any]) -> dict[str, Any]:
        run_id = _run_id(p)
        key = v.key_name("parameter", v.required(p, "key"))
        self._log_params_tags(run_id, [{"key": key, "value": v.param_value(key, p.get("value"))}], [])
        return {}

    def set_tag(self, p: dict[str, Any]) -> dict[str, Any]:
        run_id = _run_id(p)
        tag = _tag(p, v.MAX_TAG_VAL_LENGTH)
        self._log_params_tags(run_id, [], [tag])
        if tag["key"] == RUN_NAME_TAG:
            info = self._run_info(run_id)
            info["run_name"] = tag["value"]
            self._emit_run(info, ("run_name",))
        return {}

    def delete_tag(self, p: dict[str, Any]) -> dict[str, Any]:
        run_id = _run_id(p)
        key = v.required(p, "key")
        self._active_run(run_id)
        self._sync_metadata(run_id)
        if key not in {t["key"] for t in self.reader.run_data([run_id])[run_id]["tags"]}:
            raise not_found(f"No tag with name: {key} in run with id {run_id}")
        self._emit_run_data(run_id, [], [{"key": key, "value": "", "deleted": True}])
        return {}

    async def _log(self, run_id: str, metrics: list[Any], params: list[Any], tags: list[Any]) -> None:
        """A log-batch is all or nothing: every part is validated before anything is produced; params
        and tags go first, as one event the metadata sink decides (params are immutable), and the
        metrics only once it was accepted. A batch without params needs no decision."""
        if not self._active_runs.fresh(run_id):
            await run_in_threadpool(self._check_active, run_id)
        columns = metric_columns(metrics) if metrics else None
        param_rows = [
            {"key": v.key_name("parameter", kv.key), "value": v.param_value(str(kv.key), kv.value)} for kv in params
        ]
        tag_rows = [_tag({"key": kv.key, "value": kv.value}, v.MAX_TAG_VAL_LENGTH) for kv in tags]
        if param_rows or tag_rows:
            await run_in_threadpool(self._log_params_tags, run_id, param_rows, tag_rows, True)
        if columns is not None:
            await self.writer.metrics_async({"run_id": run_id, **columns})

    def _log_params_tags(
        self, run_id: str, params: list[dict[str, str]], tags: list[dict[str, Any]], checked: bool = False
    ) -> None:
        """Params and tags as one RunData event. With params it is decided by the metadata sink, which
        refuses the whole event (its tags too) if a param already holds another value."""
        if not params and not tags:
            return
        if not checked:
            self._check_active(run_id)
        fresh: dict[str, str] = {}
        for param in params:  # the same key twice in one request: MLflow's answer for a changed value
            old = fresh.get(param["key"])
            if old is not None and old != param["value"]:
                raise invalid(
                    f"Changing param values is not allowed. Param with key='{param['key']}' was already "
                    f"logged with value='{old}' for run ID='{run_id}'. Attempted logging new value "
                    f"'{param['value']}'."
                )
            fresh[param["key"]] = param["value"]
        last_tags = {t["key"]: t for t in tags}  # a key given twice: the last value wins
        body = {"run_id": run_id, "params": [{"key": k, "value": val} for k, val in fresh.items()],
                "tags": list(last_tags.values())}  # fmt: skip
        if fresh:
            self.writer.decide(run_id, "RunData", body)
        else:
            self.writer.metadata(run_id, "RunData", body)

    def metric_history(self, p: dict[str, Any]) -> dict[str, Any]:
        run_id = _run_id(p)
        key = v.required(p, "metric_key")
        limit = v.max_results(p.get("max_results"), 25000, 25000)
        offset = page_offset(p.get("page_token"))
        self.barrier.wait(self.topics.metrics, [run_id])  # an unknown run has an empty history, as in MLflow
        rows = self.reader.metric_history(run_id, key, offset, limit + 1)
        out: dict[str, Any] = {"metrics": rows[:limit]}
        if len(rows) > limit:
            out["next_page_token"] = page_token(offset + limit)
        return out

    def metric_history_bulk_interval(self, p: dict[str, Any]) -> dict[str, Any]:
        run_ids = _str_list(p.get("run_ids"))
        if not run_ids:
            v.required({}, "run_ids")
        if len(run_ids) > MAX_RUNS_GET_METRIC_HISTORY_BULK:
            raise invalid(
                f"GetMetricHistoryBulkInterval request must specify at most {MAX_RUNS_GET_METRIC_HISTORY_BULK} "
                f"run_ids. Received {len(run_ids)} run_ids."
            )
        key = str(v.required(p, "metric_key"))
        max_results = MAX_RESULTS_PER_RUN
        if p.get("max_results") is not None:
            max_results = _int_or(p["max_results"], None)
            if not 1 <= max_results <= MAX_RESULTS_PER_RUN:
                raise invalid(f"max_results must be between 1 and {MAX_RESULTS_PER_RUN}.")
        start, end = p.get("start_step"), p.get("end_step")
        if (start is None) != (end is None):
            raise invalid("If either start step or end step are specified, both must be specified.")
        if start is not None:
            start, end = _int_or(start, None), _int_or(end, None)
            if start > end:
                raise invalid(f"end_step must be greater than start_step. Found start_step={start} and end_step={end}.")
        self._sync_metadata(*run_ids)
        self.barrier.wait(self.topics.metrics, run_ids)
        metrics: list[dict[str, Any]] = []
        for run_id in run_ids:
            rows = sample_points(self.reader.metric_points(run_id, key, start, end), max_results)
            metrics += [
                {"key": key, "value": "NaN" if nan else value, "timestamp": ts, "step": step, "run_id": run_id}
                for step, ts, value, nan in rows
            ]
        return {"metrics": metrics}

    # -- run inputs and outputs --
    def log_inputs(self, p: dict[str, Any]) -> dict[str, Any]:
        run_id = str(v.required(p, "run_id"))
        datasets = [_dataset_input(d) for d in v.array_field(p, "datasets")]
        model_ids = [str(v.required(m if isinstance(m, dict) else {}, "model_id")) for m in v.array_field(p, "models")]
        info = self._active_run(run_id)
        fresh: dict[tuple[str, str], dict[str, Any]] = {}
        for d in datasets:  # MLflow keeps the first input of a (name, digest) and ignores repeats; the
            fresh.setdefault((d["name"], d["digest"]), d)  # sink drops repeats of earlier events, in log order
        if fresh or model_ids:
            self.writer.metadata(
                run_id,
                "RunInputs",
                {"run_id": run_id, "experiment_id": info["experiment_id"], "datasets": list(fresh.values()),
                 "model_ids": list(dict.fromkeys(model_ids))},
            )  # fmt: skip
        return {}

    def log_outputs(self, p: dict[str, Any]) -> dict[str, Any]:
        run_id = str(v.required(p, "run_id"))
        models = p.get("models")
        if not models:
            v.required({}, "models")
        outputs = [
            {"model_id": str(v.required(m if isinstance(m, dict) else {}, "model_id")),
             "step": _int_or(m.get("step"), 0) or 0}
            for m in v.array_field(p, "models")
        ]  # fmt: skip
        self._active_run(run_id)
        self.writer.metadata(run_id, "RunOutputs", {"run_id": run_id, "models": outputs})
        return {}

    def search_datasets(self, p: dict[str, Any]) -> dict[str, Any]:
        experiment_ids = _str_list(p.get("experiment_ids"))
        if not experiment_ids:
            raise invalid("SearchDatasets request must specify at least one experiment_id.")
        if len(experiment_ids) > MAX_EXPERIMENT_IDS_PER_DATASET_SEARCH:
            raise invalid(
                f"SearchDatasets request cannot specify more than {MAX_EXPERIMENT_IDS_PER_DATASET_SEARCH} "
                f"experiment_ids. Received {len(experiment_ids)} experiment_ids."
            )
        self._sync_metadata()
        summaries = self.reader.dataset_summaries(experiment_ids, MAX_DATASET_SUMMARIES)
        return {"dataset_summaries": summaries} if summaries else {}


MAX_RUNS_GET_METRIC_HISTORY_BULK = 100
MAX_RESULTS_PER_RUN = 2500
MAX_EXPERIMENT_IDS_PER_DATASET_SEARCH = 20
MAX_DATASET_SUMMARIES = 1000


def sample_points(rows: list[tuple[Any, ...]], max_results: int) -> list[tuple[Any, ...]]:
    """MLflow 3.17's SQL-store sampling of one run's metric history.

    ``rows`` are the run's points ordered by (step, timestamp, value, is_nan). They are split into
    ``max_results`` buckets as SQL ``NTILE`` does (the first ``len % n`` buckets one row larger) and the
    first row of each bucket is kept; then the last point is kept too, replacing the last sample when
    the answer is already full.
    """
    total = len(rows)
    if total == 0:
        return []
    n = max(1, max_results)
    out: list[tuple[Any, ...]] = []
    if total <= n:
        out = list(rows)
    else:
        size, extra = divmod(total, n)
        index = 0
        for bucket in range(n):
            out.append(rows[index])
            index += size + (1 if bucket < extra else 0)
    last = rows[-1]
    if out[-1] != last:
        if len(out) >= n:
            out[-1] = last
        else:
            out.append(last)
    return out


def _dataset_input(d: Any) -> dict[str, Any]:
    dataset = d.get("dataset") if isinstance(d, dict) else None
    if not isinstance(dataset, dict):
        raise invalid("Dataset input must have a dataset associated with it.")
    out: dict[str, Any] = {}
    for field in ("name", "digest", "source_type", "source"):
        value = dataset.get(field)
        if value is None or value == "":
            raise invalid(f"Missing value for required parameter 'datasets.dataset.{field}'.")
        out[field] = str(value)
    for field in ("schema", "profile"):
        out[field] = None if dataset.get(field) is None else str(dataset[field])
    tags = []
    for t in d.get("tags") or []:
        if not isinstance(t, dict) or not t.get("key"):
            raise invalid("Missing value for required parameter 'datasets.tags.key'.")
        tags.append({"key": str(t["key"]), "value": str(t.get("value") or "")})
    out["tags"] = tags
    return out


def _run_id(p: dict[str, Any]) -> str:
    run_id = p.get("run_id") or p.get("run_uuid")
    if not run_id:
        v.required(p, "run_id")
    return str(run_id)


def _str_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(x) for x in value] if isinstance(value, list) else [str(value)]


def _tag(t: dict[str, Any], max_value: int) -> dict[str, Any]:
    return {"key": v.key_name("tag", t.get("key")), "value": v.tag_value(t.get("value"), max_value), "deleted": False}


def _by_key(t: dict[str, Any]) -> str:
    return str(t["key"])


def _int_or(value: Any, default: int | None) -> Any:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        raise invalid(f"Invalid value {value} for an int64 parameter") from None
