"""Metadata sink: experiment, run and logged-model events → ``experiments``, ``experiment_tags``,
``runs``, ``params``, ``run_tags``, ``logged_models``, ``logged_model_params``, ``logged_model_tags``,
``run_dataset_inputs``, ``run_model_inputs``, ``run_model_outputs``, and ``decisions``.

Guarantee: at-least-once writes, exactly-once as seen by readers (ReplacingMergeTree keyed by the
entity's natural key and versioned by the event's log offset; readers use FINAL).

Decided events: the rules that need an order (experiment names unique, param values immutable,
experiment lifecycle transitions) are decided here, where each partition's events are applied in
offset order; see :class:`Rules`. Every decided event gets a row in ``decisions``; a refused event
writes nothing else. Write order: decisions, then state rows, then (the pipeline) the commit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson

from consumers.sink import Event, Sink
from schemas.codec import METADATA
from schemas.decisions import ACCEPTED, Decision, refused
from trackstream.errors import StoreRejected
from trackstream.log import Partition
from trackstream.tables import TableStore

EXPERIMENT_COLUMNS = ("experiment_id", "name", "artifact_location", "lifecycle_stage", "creation_time",
                      "last_update_time")  # fmt: skip
RUN_COLUMNS = ("run_id", "experiment_id", "run_name", "user_id", "status", "start_time", "end_time", "artifact_uri",
               "lifecycle_stage", "deleted_time")  # fmt: skip


# Added to the `_version` of an experiment row written by a decided (v3) event. Those events all share
# the partition of the key "experiments", while earlier producers keyed each experiment by its id, so
# offsets of the two are not comparable; every decided change happened after any such earlier event.
DECIDED_VERSION_BASE = 1 << 48


def _kind(event: Event) -> tuple[str, dict[str, Any]]:
    kind, body = event.decoded.record["event"]
    return kind.rsplit(".", 1)[-1], body


def decided(kind: str, body: dict[str, Any]) -> bool:
    """Whether an event carries a rule, i.e. gets a row in ``decisions``."""
    return (kind == "ExperimentState" and body.get("op") is not None) or (kind == "RunData" and bool(body["params"]))


class Rules:
    """The state a batch's rules are decided against: what the tables held before the batch (one query
    per kind of rule present in it), overlaid with the batch's own accepted events as they apply.

    Decisions already recorded for a batch's positions (a batch written before a crash, replayed) are
    reused, never recomputed: the tables may already hold later events of that batch, which could
    flip an answer.
    """

    def __init__(self, tables: TableStore, events: Sequence[Event]) -> None:
        self._t = tables
        exp_ids: set[str] = set()
        names: set[str] = set()
        param_runs: set[str] = set()
        merged_runs: set[str] = set()
        input_runs: set[str] = set()
        positions: list[tuple[Partition, int]] = []
        for event in events:
            kind, body = _kind(event)
            if decided(kind, body):
                positions.append((event.message.partition, event.message.offset))
            if kind == "ExperimentState" and body.get("op") is not None:
                exp_ids.add(body["experiment_id"])
                names.add(body["name"])
            elif kind == "RunData" and body["params"]:
                param_runs.add(body["run_id"])
            elif kind == "RunState" and body.get("changed") is not None:
                merged_runs.add(body["run_id"])
            elif kind == "RunInputs" and body["datasets"]:
                input_runs.add(body["run_id"])
        self.recorded = self._recorded(positions)
        self.experiments: dict[str, dict[str, Any]] = {}
        if exp_ids:
            cols = ", ".join(EXPERIMENT_COLUMNS)
            # name is mutable: filtered outside FINAL (old servers may apply a WHERE before the merge)
            for row in tables.query(
                f"SELECT {cols} FROM (SELECT {cols} FROM experiments FINAL) "
                "WHERE experiment_id IN %(ids)s OR name IN %(names)s",
                {"ids": tuple(exp_ids), "names": tuple(names)},
            ):
                self.experiments[row[0]] = dict(zip(EXPERIMENT_COLUMNS, row, strict=True))
        self.params: dict[tuple[str, str], str] = {}
        if param_runs:
            for run_id, key, value in tables.query(
                "SELECT run_id, key, value FROM params FINAL WHERE run_id IN %(ids)s", {"ids": tuple(param_runs)}
            ):
                self.params[(run_id, key)] = value
        self.runs: dict[str, dict[str, Any]] = {}
        if merged_runs:
            for row in tables.query(
                f"SELECT {', '.join(RUN_COLUMNS)} FROM runs FINAL WHERE run_id IN %(ids)s",
                {"ids": tuple(merged_runs)},
            ):
                self.runs[row[0]] = dict(zip(RUN_COLUMNS, row, strict=True))
        self.datasets: set[tuple[str, str, str]] = set()
        if input_runs:
            rows = tables.query(
                "SELECT DISTINCT run_id, name, digest FROM run_dataset_inputs WHERE run_id IN %(ids)s",
                {"ids": tuple(input_runs)},
            )
            self.datasets = {(r, n, d) for r, n, d in rows}

    def _recorded(self, positions: list[tuple[Partition, int]]) -> dict[tuple[Partition, int], Decision]:
        if not positions:
            return {}
        wanted = set(positions)
        offsets = [o for _, o in positions]
        rows = self._t.query(
            "SELECT topic, log_partition, log_offset, ok, error_code, message, result FROM decisions "
            "WHERE topic IN %(topics)s AND log_partition IN %(parts)s "
            "AND log_offset >= %(low)s AND log_offset <= %(high)s",
            {
                "topics": tuple({p.topic for p, _ in positions}),
                "parts": tuple({p.index for p, _ in positions}),
                "low": min(offsets),
                "high": max(offsets),
            },
        )
        out: dict[tuple[Partition, int], Decision] = {}
        for topic, part, offset, ok, code, message, result in rows:
            position = (Partition(topic, int(part)), int(offset))
            if position in wanted:
                out[position] = Decision(bool(ok), code, message, result)
        return out

    # -- experiments: every ExperimentState is in one partition (key "experiments"), so names are
    # decided against every experiment in one order --
    def _holder(self, name: str) -> str | None:
        return next((i for i, row in self.experiments.items() if row["name"] == name), None)

    def experiment(self, body: dict[str, Any], recorded: Decision | None) -> tuple[Decision, dict[str, Any] | None]:
        """The decision on an ExperimentState event (``recorded`` if there is one) and the row it writes."""
        decision = recorded or self._check_experiment(body)
        if not decision.ok:
            return decision, None
        op, exp_id = body.get("op"), body["experiment_id"]
        row = {k: body[k] for k in EXPERIMENT_COLUMNS}
        current = self.experiments.get(exp_id)
        if op in ("rename", "delete", "restore") and current is not None:
            if op == "rename" and current["name"] == body["name"]:
                return decision, None
            changed = ("name",) if op == "rename" else ("lifecycle_stage",)
            row = {**current, **{k: body[k] for k in (*changed, "last_update_time")}}
        self.experiments[exp_id] = row
        return decision, row

    def _check_experiment(self, body: dict[str, Any]) -> Decision:
        op, exp_id = body.get("op"), body["experiment_id"]
        current = self.experiments.get(exp_id)
        if op is None:
            return ACCEPTED
        if op == "create":
            if current is not None or self._holder(body["name"]) is not None:
                return refused("RESOURCE_ALREADY_EXISTS", f"Experiment(name={body['name']}) already exists.")
            return ACCEPTED
        if op not in ("rename", "delete", "restore"):
            raise StoreRejected(f"unknown experiment change {op!r}")
        if current is None:
            return refused("RESOURCE_DOES_NOT_EXIST", f"No Experiment with id={exp_id} exists")
        if op == "rename":
            if current["lifecycle_stage"] != "active":
                return refused("INVALID_STATE", "Cannot rename a non-active experiment.")
            holder = self._holder(body["name"])
            if holder is not None and holder != exp_id:
                # the stock server's SQL store answers a rename onto a taken name with its unique-constraint failure
                return refused("BAD_REQUEST", f"Experiment(name={body['name']}) already exists.")
            return ACCEPTED
        if current["lifecycle_stage"] != ("active" if op == "delete" else "deleted"):
            return refused("RESOURCE_DOES_NOT_EXIST", f"No Experiment with id={exp_id} exists")
        return ACCEPTED

    # -- params: a run's events are in one partition (key run_id) --
    def run_params(self, body: dict[str, Any], recorded: Decision | None) -> Decision:
        run_id = body["run_id"]
        decision = recorded or self._check_params(body)
        if decision.ok:
            for param in body["params"]:
                self.params[(run_id, param["key"])] = param["value"]
        return decision

    def _check_params(self, body: dict[str, Any]) -> Decision:
        run_id = body["run_id"]
        for param in body["params"]:
            old = self.params.get((run_id, param["key"]))
            if old is not None and old != param["value"]:
                return refused(
                    "INVALID_PARAMETER_VALUE",
                    f"Changing param values is not allowed. Param with key='{param['key']}' was already logged "
                    f"with value='{old}' for run ID='{run_id}'. Attempted logging new value '{param['value']}'.",
                )
        return ACCEPTED

    # -- runs: field-level changes merged into the current row in offset order (never refused) --
    def run(self, body: dict[str, Any]) -> dict[str, Any]:
        changed, run_id = body.get("changed"), body["run_id"]
        row = {k: body[k] for k in RUN_COLUMNS}
        current = self.runs.get(run_id)
        if changed is not None and current is not None:
            row = {**current, **{k: body[k] for k in changed if k in row}}
        self.runs[run_id] = row
        return row

    def fresh_datasets(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """MLflow keeps the first input of a (name, digest) in a run and ignores repeats."""
        out = []
        for ds in body["datasets"]:
            key = (body["run_id"], ds["name"], ds["digest"])
            if key not in self.datasets:
                self.datasets.add(key)
                out.append(ds)
        return out


class MetadataSink(Sink):
    name = "metadata"
    family = METADATA

    def __init__(self, tables: TableStore) -> None:
        self._tables = tables

    def rows(self, event: Event) -> int:
        _, body = event.decoded.record["event"]
        return 1 + sum(len(body.get(k, ())) for k in ("params", "tags", "datasets", "model_ids", "models"))

    def write(self, events: Sequence[Event]) -> None:
        tables: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
        decisions: dict[str, list[Any]] = defaultdict(list)
        rules = Rules(self._tables, events)

        def add(table: str, row: dict[str, Any], version: int) -> None:
            cols = tables[table]
            for name, value in row.items():
                cols[name].append(value)
            cols["_version"].append(version)

        def record(event: Event, decision: Decision) -> None:
            partition, offset = event.message.partition, event.message.offset
            for column, value in (
                ("topic", partition.topic), ("log_partition", partition.index), ("log_offset", offset),
                ("ok", int(decision.ok)), ("error_code", decision.error_code), ("message", decision.message),
                ("result", decision.result),
            ):  # fmt: skip
                decisions[column].append(value)

        for event in events:
            kind, body = _kind(event)
            version = event.message.offset
            recorded = rules.recorded.get((event.message.partition, version))
            match kind:
                case "ExperimentState":
                    decision, row = rules.experiment(body, recorded)
                    if decided(kind, body):
                        record(event, decision)
                    if row is not None:
                        add("experiments", row, version + (DECIDED_VERSION_BASE if decided(kind, body) else 0))
                case "ExperimentTags":
                    for tag in body["tags"]:
                        add("experiment_tags", {"experiment_id": body["experiment_id"], **_tag(tag)}, version)
                case "RunState":
                    add("runs", rules.run(body), version)
                case "RunData":
                    if body["params"]:
                        decision = rules.run_params(body, recorded)
                        record(event, decision)
                        if not decision.ok:
                            continue  # refused: neither its params nor its tags are stored
                    for param in body["params"]:
                        add("params", {"run_id": body["run_id"], **param}, version)
                    for tag in body["tags"]:
                        add("run_tags", {"run_id": body["run_id"], **_tag(tag)}, version)
                case "LoggedModelState":
                    add("logged_models", body, version)
                case "LoggedModelData":
                    for param in body["params"]:
                        add("logged_model_params", {"model_id": body["model_id"], **param}, version)
                    for tag in body["tags"]:
                        add("logged_model_tags", {"model_id": body["model_id"], **_tag(tag)}, version)
                case "RunInputs":
                    for ds in rules.fresh_datasets(body):
                        row = {"run_id": body["run_id"], "experiment_id": body["experiment_id"], **ds}
                        row["tags"] = orjson.dumps(ds["tags"]).decode()
                        add("run_dataset_inputs", row, version)
                    for model_id in body["model_ids"]:
                        add("run_model_inputs", {"run_id": body["run_id"], "model_id": model_id}, version)
                case "RunOutputs":
                    for out in body["models"]:
                        add("run_model_outputs", {"run_id": body["run_id"], **out}, version)
                case other:
                    raise StoreRejected(f"metadata sink does not know event type {other}")
        if decisions:
            self._tables.insert("decisions", decisions)
        for table, cols in tables.items():
            self._tables.insert(table, cols)


def _tag(tag: dict[str, Any]) -> dict[str, Any]:
    return {"key": tag["key"], "value": tag["value"], "deleted": 1 if tag["deleted"] else 0}
