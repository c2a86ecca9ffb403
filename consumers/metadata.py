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

import contextlib
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson

from consumers.sink import Event, Sink
from schemas import events as ev
from schemas import rules
from schemas.decisions import Decision
from schemas.events import METADATA
from trackstream.errors import StoreRejected
from trackstream.log import Partition
from trackstream.tables import TableStore

EXPERIMENT_COLUMNS = rules.EXPERIMENT_COLUMNS
RUN_COLUMNS = ("run_id", "experiment_id", "run_name", "user_id", "status", "start_time", "end_time", "artifact_uri",
               "lifecycle_stage", "deleted_time")  # fmt: skip


# Added to the `_version` of an experiment row written by a decided (v3) event. Those events all share
# the partition of the key "experiments", while earlier producers keyed each experiment by its id, so
# offsets of the two are not comparable; every decided change happened after any such earlier event.
DECIDED_VERSION_BASE = 1 << 48


decided = rules.decided  # whether an event carries a rule, i.e. gets a row in ``decisions``


def _columns(data: Any, names: Sequence[str]) -> dict[str, Any]:
    return {k: getattr(data, k) for k in names}


class RecordedDecisions:
    """The decisions already in ``decisions`` for a batch's log positions: a batch written before a crash
    or an outage and read again reuses them, never decides again (the tables may already hold later events
    of that batch, which could flip an answer). Every sink that decides events reads them back this way.

    Only positions that can hold one are looked up. A decision is recorded by the sink that owns the
    partition, before it commits the batch; so past the highest offset the table held for a partition
    when this sink first met it, and past what the sink recorded since, nothing is recorded, and a batch
    there (every batch once a sink runs) costs no query. The query cost 13 ms of a run set-up's ~100 ms
    of chDB time in embedded mode, and a ClickHouse round trip on every decision in Kafka mode.
    What is known of a partition is dropped when it is revoked (another member may record past it) and
    all of it when a write fails (a failed insert may still have landed).
    """

    def __init__(self, tables: TableStore) -> None:
        self._t = tables
        self._high: dict[Partition, int] = {}  # no decision recorded past this offset (-1: none at all)

    def lookup(self, positions: Sequence[tuple[Partition, int]]) -> dict[tuple[Partition, int], Decision]:
        if unknown := {p for p, _ in positions} - self._high.keys():
            self._high.update(self._highest(unknown))
        return self._read([(p, o) for p, o in positions if o <= self._high[p]])

    def recorded(self, positions: Sequence[tuple[Partition, int]]) -> None:
        for partition, offset in positions:
            if offset > self._high.get(partition, offset):
                self._high[partition] = offset

    @contextlib.contextmanager
    def writing(self) -> Iterator[RecordedDecisions]:
        """A batch's write: any failure forgets what is known."""
        try:
            yield self
        except BaseException:
            self.forget()
            raise

    def forget(self, partitions: Sequence[Partition] | None = None) -> None:
        for partition in list(self._high) if partitions is None else partitions:
            self._high.pop(partition, None)

    def _highest(self, partitions: set[Partition]) -> dict[Partition, int]:
        out = dict.fromkeys(partitions, -1)
        for topic, part, high in self._t.query(
            "SELECT topic, log_partition, max(log_offset) FROM decisions "
            "WHERE topic IN %(topics)s AND log_partition IN %(parts)s GROUP BY topic, log_partition",
            {"topics": tuple({p.topic for p in partitions}), "parts": tuple({p.index for p in partitions})},
        ):
            if (partition := Partition(topic, int(part))) in out:
                out[partition] = int(high)
        return out

    def _read(self, positions: list[tuple[Partition, int]]) -> dict[tuple[Partition, int], Decision]:
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


class KnownParams:
    """The params of the runs whose create this sink applied since it started or was last revoked a
    partition: every later param event of such a run comes through this sink, in log order, so what it
    wrote is all the table holds and a batch deciding params of those runs needs no query (it cost a
    quarter of the embedded engine's time setting up sweeps). Learned only after a batch's rows are
    written; the least recently used runs beyond ``most`` are forgotten (read from the table again)."""

    def __init__(self, most: int = 10_000) -> None:
        self._runs: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._most = most

    def get(self, run_id: str) -> dict[str, str] | None:
        return self._runs.get(run_id)

    def learn(self, created: set[str], params: dict[tuple[str, str], str]) -> None:
        """After a batch is written: ``created``, the runs created in it, and ``params``, its rules' params."""
        for run_id in created:
            self._runs[run_id] = {}
        for (run_id, key), value in params.items():
            if (held := self._runs.get(run_id)) is not None:
                held[key] = value
                self._runs.move_to_end(run_id)
        while len(self._runs) > self._most:
            self._runs.popitem(last=False)

    def forget(self) -> None:
        self._runs.clear()


class Rules:
    """The state a batch's rules are decided against: what the tables held before the batch (one query
    per kind of rule present in it), overlaid with the batch's own accepted events as they apply.

    Decisions already recorded for a batch's positions (a batch written before a crash, replayed) are
    reused, never recomputed: the tables may already hold later events of that batch, which could
    flip an answer.
    """

    def __init__(
        self, tables: TableStore, events: Sequence[Event], recorded: RecordedDecisions, known: KnownParams
    ) -> None:
        self._t = tables
        self.created: set[str] = set()  # runs created in this batch: no params before it
        exp_ids: set[str] = set()
        names: set[str] = set()
        param_runs: set[str] = set()
        merged_runs: set[str] = set()
        input_runs: set[str] = set()
        positions: list[tuple[Partition, int]] = []
        for event in events:
            data = event.data
            if decided(data):
                positions.append((event.message.partition, event.message.offset))
            if isinstance(data, ev.ExperimentState) and data.op is not None:
                exp_ids.add(data.experiment_id)
                names.add(data.name)
            elif isinstance(data, ev.RunData) and data.params:
                param_runs.add(data.run_id)
            elif isinstance(data, ev.RunState) and data.changed is not None:
                merged_runs.add(data.run_id)
            elif isinstance(data, ev.RunState):
                self.created.add(data.run_id)
            elif isinstance(data, ev.RunInputs) and data.datasets:
                input_runs.add(data.run_id)
        self.recorded = recorded.lookup(positions)
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
        for run_id in list(param_runs):
            if (held := known.get(run_id)) is not None:
                self.params.update(((run_id, key), value) for key, value in held.items())
            if held is not None or run_id in self.created:
                param_runs.discard(run_id)
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

    # -- the State the pure rules (schemas.rules) read --
    def param(self, run_id: str, key: str) -> str | None:
        return self.params.get((run_id, key))

    def experiment_state(self, experiment_id: str) -> dict[str, Any] | None:
        return self.experiments.get(experiment_id)

    def name_holder(self, name: str) -> str | None:
        return next((i for i, row in self.experiments.items() if row["name"] == name), None)

    # -- decided events: the rules are schemas.rules; a recorded decision is reused, never recomputed --
    def experiment(self, body: ev.ExperimentState, recorded: Decision | None) -> tuple[Decision, dict[str, Any] | None]:
        """The decision on an ExperimentState event (``recorded`` if there is one) and the row it writes."""
        state = _RuleState(self)
        try:
            decision = recorded or rules.check_experiment(state, body)
        except rules.UnknownChange as exc:
            raise StoreRejected(str(exc)) from None
        if not decision.ok:
            return decision, None
        row = rules.experiment_row(state, body)
        if row is not None:
            self.experiments[body.experiment_id] = row
        return decision, row

    def run_params(self, body: ev.RunData, recorded: Decision | None) -> Decision:
        if recorded is not None:
            decision, change = recorded, (rules.param_change(body) if recorded.ok else {})
        else:
            decision, change = rules.params(_RuleState(self), body)
        for key, value in change.items():
            self.params[(body.run_id, key)] = value
        return decision

    # -- runs: field-level changes merged into the current row in offset order (never refused) --
    def run(self, body: ev.RunState) -> dict[str, Any]:
        changed, run_id = body.changed, body.run_id
        row = _columns(body, RUN_COLUMNS)
        current = self.runs.get(run_id)
        if changed is not None and current is not None:
            row = {**current, **{k: row[k] for k in changed if k in row}}
        self.runs[run_id] = row
        return row

    def fresh_datasets(self, body: ev.RunInputs) -> list[ev.DatasetInput]:
        """MLflow keeps the first input of a (name, digest) in a run and ignores repeats."""
        out = []
        for ds in body.datasets:
            key = (body.run_id, ds.name, ds.digest)
            if key not in self.datasets:
                self.datasets.add(key)
                out.append(ds)
        return out


class _RuleState:
    """:class:`Rules` as the ``schemas.rules.State`` protocol (its ``experiment`` name is taken)."""

    def __init__(self, rules_: Rules) -> None:
        self._r = rules_

    def param(self, run_id: str, key: str) -> str | None:
        return self._r.param(run_id, key)

    def experiment(self, experiment_id: str) -> dict[str, Any] | None:
        return self._r.experiment_state(experiment_id)

    def name_holder(self, name: str) -> str | None:
        return self._r.name_holder(name)


class _Batch:
    """The rows and decisions one ``write`` inserts, and the rules it decides against."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.tables: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
        self.decisions: dict[str, list[Any]] = defaultdict(list)

    def add(self, table: str, row: dict[str, Any], version: int) -> None:
        cols = self.tables[table]
        for name, value in row.items():
            cols[name].append(value)
        cols["_version"].append(version)

    def record(self, event: Event, decision: Decision) -> None:
        partition, offset = event.message.partition, event.message.offset
        for column, value in (
            ("topic", partition.topic), ("log_partition", partition.index), ("log_offset", offset),
            ("ok", int(decision.ok)), ("error_code", decision.error_code), ("message", decision.message),
            ("result", decision.result),
        ):  # fmt: skip
            self.decisions[column].append(value)

    def insert(self, tables: TableStore, recorded: RecordedDecisions) -> None:
        """Decisions first, then the state rows (the pipeline commits after both)."""
        if self.decisions:
            tables.insert("decisions", self.decisions)
            d = self.decisions
            recorded.recorded(
                [(Partition(t, p), o) for t, p, o in zip(d["topic"], d["log_partition"], d["log_offset"], strict=True)]
            )
        for table, cols in self.tables.items():
            tables.insert(table, cols)


def _experiment_state(b: _Batch, event: Event, data: ev.ExperimentState, version: int) -> None:
    decision, row = b.rules.experiment(data, b.rules.recorded.get((event.message.partition, version)))
    if decided(data):
        b.record(event, decision)
    if row is not None:
        b.add("experiments", row, version + (DECIDED_VERSION_BASE if decided(data) else 0))


def _experiment_tags(b: _Batch, event: Event, data: ev.ExperimentTags, version: int) -> None:
    for tag in data.tags:
        b.add("experiment_tags", {"experiment_id": data.experiment_id, **_tag(tag)}, version)


def _run_state(b: _Batch, event: Event, data: ev.RunState, version: int) -> None:
    b.add("runs", b.rules.run(data), version)


def _run_data(b: _Batch, event: Event, data: ev.RunData, version: int) -> None:
    if data.params:
        decision = b.rules.run_params(data, b.rules.recorded.get((event.message.partition, version)))
        b.record(event, decision)
        if not decision.ok:
            return  # refused: neither its params nor its tags are stored
    for param in data.params:
        b.add("params", {"run_id": data.run_id, "key": param.key, "value": param.value}, version)
    for tag in data.tags:
        b.add("run_tags", {"run_id": data.run_id, **_tag(tag)}, version)


def _logged_model_state(b: _Batch, event: Event, data: ev.LoggedModelState, version: int) -> None:
    b.add("logged_models", ev.to_dict(data), version)


def _logged_model_data(b: _Batch, event: Event, data: ev.LoggedModelData, version: int) -> None:
    for param in data.params:
        b.add("logged_model_params", {"model_id": data.model_id, "key": param.key, "value": param.value}, version)
    for tag in data.tags:
        b.add("logged_model_tags", {"model_id": data.model_id, **_tag(tag)}, version)


def _run_inputs(b: _Batch, event: Event, data: ev.RunInputs, version: int) -> None:
    for ds in b.rules.fresh_datasets(data):
        row = {"run_id": data.run_id, "experiment_id": data.experiment_id, **ev.to_dict(ds)}
        row["tags"] = orjson.dumps(row["tags"]).decode()
        b.add("run_dataset_inputs", row, version)
    for model_id in data.model_ids:
        b.add("run_model_inputs", {"run_id": data.run_id, "model_id": model_id}, version)


def _run_outputs(b: _Batch, event: Event, data: ev.RunOutputs, version: int) -> None:
    for out in data.models:
        b.add("run_model_outputs", {"run_id": data.run_id, "model_id": out.model_id, "step": out.step}, version)


Apply = Callable[[_Batch, Event, Any, int], None]
# The metadata sink's dispatch: event class -> what it writes. A new metadata event is one entry here
# (and its class in schemas/events.py); an event class without one is rejected (dead-lettered).
APPLY: dict[type[ev.Event], Apply] = {
    ev.ExperimentState: _experiment_state,
    ev.ExperimentTags: _experiment_tags,
    ev.RunState: _run_state,
    ev.RunData: _run_data,
    ev.LoggedModelState: _logged_model_state,
    ev.LoggedModelData: _logged_model_data,
    ev.RunInputs: _run_inputs,
    ev.RunOutputs: _run_outputs,
}
_COUNTED = ("params", "tags", "datasets", "model_ids", "models")


class MetadataSink(Sink):
    name = "metadata"
    family = METADATA

    def __init__(self, tables: TableStore) -> None:
        self._tables = tables
        self._recorded = RecordedDecisions(tables)
        self._known = KnownParams()

    def rows(self, event: Event) -> int:
        data = event.data
        return 1 + sum(len(getattr(data, k, ())) for k in _COUNTED)

    def revoked(self, partitions: Sequence[Partition]) -> None:
        self._recorded.forget(partitions)
        self._known.forget()  # another member may write params of those runs

    def write(self, events: Sequence[Event]) -> None:
        with self._recorded.writing() as recorded:
            batch = _Batch(Rules(self._tables, events, recorded, self._known))
            for event in events:
                data = event.data
                apply = APPLY.get(type(data))
                if apply is None:
                    raise StoreRejected(f"metadata sink does not know event type {type(data).__name__}")
                apply(batch, event, data, event.message.offset)
            batch.insert(self._tables, recorded)
            self._known.learn(batch.rules.created, batch.rules.params)


def _tag(tag: ev.Tag) -> dict[str, Any]:
    return {"key": tag.key, "value": tag.value, "deleted": 1 if tag.deleted else 0}
