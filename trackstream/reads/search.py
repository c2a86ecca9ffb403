"""MLflow's search grammar and its one compiler, for every searchable entity.

A filter (``metrics.loss < 0.5 AND tags.team LIKE 'a%'``) is tokenized and parsed into
:class:`Clause` values (the typed AST: entity kind, key, operator, literal); an ``order_by`` into
:class:`OrderKey` values. What an entity allows — its attribute keys and their SQL columns, which are
numeric, which operators each kind takes, which kinds may be ordered by — is data, a
:class:`Searchable` (:data:`RUNS`, :data:`EXPERIMENTS`, :data:`LOGGED_MODELS`,
:data:`REGISTERED_MODELS`, :data:`MODEL_VERSIONS`), and :func:`compile_filter` turns clauses plus that
description into conditions over the entity's table whose values are all ``%(name)s`` parameters, so
a filter can never change a query's structure. The conditions say which columns they read, so
``trackstream.reads.current`` places them inside or outside FINAL (docs/SQL.md). The SQL uses only what
ClickHouse 18.16 already had.

One clause is not SQL: ``dataset.context`` (the ``mlflow.data.context`` tag of a run's dataset input,
kept in a JSON array string that ClickHouse 18.16 cannot take apart). It compiles to ``run_id IN
%(name)s`` with a :class:`Deferred` parameter that the reader fills by evaluating the clause in Python
(:func:`compare`) over the dataset inputs of the searched experiments.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from trackstream.reads.current import (
    EXPERIMENT_TAGS,
    LOGGED_MODEL_PARAMS,
    LOGGED_MODEL_TAGS,
    MODEL_VERSION_TAGS,
    PARAMS,
    REGISTERED_MODEL_TAGS,
    RUN_DATASET_INPUTS,
    RUN_TAGS,
    Cond,
    Versioned,
    cond,
    current,
)


class SearchError(ValueError):
    """An invalid filter or order_by (MLflow answers INVALID_PARAMETER_VALUE)."""


METRIC, PARAM, TAG, ATTR, DATASET = "metric", "parameter", "tag", "attribute", "dataset"
ENTITIES = {
    "metric": METRIC, "metrics": METRIC,
    "param": PARAM, "params": PARAM, "parameter": PARAM, "parameters": PARAM,
    "tag": TAG, "tags": TAG,
    "attribute": ATTR, "attributes": ATTR, "attr": ATTR, "run": ATTR,
    "dataset": DATASET, "datasets": DATASET,
}  # fmt: skip
DATASET_ATTRS = {"name", "digest", "context"}

NUMERIC_OPS = ("=", "!=", "<", "<=", ">", ">=")
STRING_OPS = ("=", "!=", "LIKE", "ILIKE")
LIST_OPS = (*STRING_OPS, "IN", "NOT IN")
NULL_OPS = ("IS NULL", "IS NOT NULL")

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
  | (?P<tick>`[^`]*`)
  | (?P<num>[-+]?(?>\d+\.?\d*|\.\d+)(?>[eE][-+]?\d+)?(?![\w.]))
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
  | (?P<word>[A-Za-z_][\w.:/\-]*)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str

    @property
    def upper(self) -> str:
        return self.text.upper()


@dataclass(frozen=True, slots=True)
class Clause:
    entity: str
    key: str
    op: str  # = != < <= > >= LIKE ILIKE IN NOT IN, IS NULL, IS NOT NULL
    value: Any  # float, int, str, tuple[str, ...] or None


@dataclass(frozen=True, slots=True)
class OrderKey:
    entity: str
    key: str
    ascending: bool
    dataset_name: str | None = None  # logged models: order by a metric's value on one dataset
    dataset_digest: str | None = None


@dataclass(frozen=True, slots=True)
class Attr:
    """A searchable attribute: its SQL expression, the table column(s) it reads, its type and operators."""

    sql: str
    columns: tuple[str, ...]
    numeric: bool = False
    ops: tuple[str, ...] = STRING_OPS
    nullable: bool = False  # None sorts last in either direction
    whole: bool = False  # numeric and integral: a fractional literal is refused (model version numbers)


def _col(name: str, ops: tuple[str, ...] = STRING_OPS, nullable: bool = False) -> Attr:
    return Attr(name, (name,), False, ops, nullable)


def _num(name: str, nullable: bool = False) -> Attr:
    return Attr(name, (name,), True, NUMERIC_OPS, nullable)


@dataclass(frozen=True)
class Searchable:
    """What one entity's search allows, as data; :func:`compile_filter` does the rest."""

    name: str
    id_column: str
    kinds: frozenset[str]  # entity kinds a filter may name
    kind_ops: dict[str, tuple[str, ...]]  # operators of the non-attribute kinds
    attrs: dict[str, Attr]  # filterable attributes (aliases included)
    order_kinds: frozenset[str]
    order_attrs: dict[str, Attr]
    default_order: tuple[OrderKey, ...]  # appended unless the same key is ordered by already
    compile_kind: dict[str, Callable[[Clause, str, dict[str, Any]], Cond]] = field(default_factory=dict)
    entities: dict[str, str] = field(default_factory=dict)  # entity prefixes of this entity only (over ENTITIES)
    compile_attr: dict[str, Callable[[Clause, str, dict[str, Any]], Cond]] = field(default_factory=dict)  # not columns


# -- per-kind compilers: a clause (its parameters named ``p``) → a condition over the entity's table --
_SIGN = "toUInt64(9223372036854775808)"
_VALUE_BITS = "reinterpretAsUInt64(reverse(substring(_l, 17, 8)))"
LATEST_VALUE = (
    f"reinterpretAsFloat64(reinterpretAsString(if({_VALUE_BITS} >= {_SIGN}, bitXor({_VALUE_BITS}, {_SIGN}), "
    f"bitNot({_VALUE_BITS}))))"
)
"""The value of a ``metric_latest`` rank string ``_l`` (bytes 17-24: the value's order-preserving bits)."""
LATEST_IS_NAN = "reinterpretAsUInt8(substring(_l, 25, 1))"
LATEST_STEP = f"toInt64(bitXor(reinterpretAsUInt64(reverse(substring(_l, 1, 8))), {_SIGN}))"
LATEST_TIMESTAMP = f"toInt64(bitXor(reinterpretAsUInt64(reverse(substring(_l, 9, 8))), {_SIGN}))"


def latest_metric_sql(key_param: str, v: str = "v", n: str = "n", has: str = "", having: str = "") -> str:
    """Each run's latest value of a metric (MLflow's rule: highest step, then timestamp, then value) as
    columns ``v`` and ``n`` (is_nan), and ``has`` = 1 if named.

    Read from ``metric_latest`` (schemas/clickhouse/tables.sql): one key range, one reduced row per run
    once merged, collapsed by FINAL and decoded from the rank bytes. This replaced an argMax over
    ``latest_metrics``' candidates (one per written batch), whose cost grew with the batches and was
    the bulk of a metric search: 100,000 runs, ClickHouse 18.16, 180 ms for that aggregation against
    25-60 ms for this read on a loaded 2-core machine. ``having``: a condition on ``v``/``n``, applied to
    the decoded rows.

    Every run with the metric is read, not only the searched experiments' runs (the join with ``runs``
    drops the others): restricting the rows first by ``run_id IN (runs of the experiments)`` cost more
    than it saved here (the set is built from ``runs`` and probed for every row; 100-150 vs 55-85 ms for
    this read at 100,000 runs in one experiment, ClickHouse 18.16).
    """
    flag = f"1 AS {has}, " if has else ""
    rows = f"SELECT run_id, finalizeAggregation(latest) AS _l FROM metric_latest FINAL PREWHERE key = %({key_param})s"
    return f"SELECT run_id, {flag}{LATEST_VALUE} AS {v}, {LATEST_IS_NAN} AS {n} FROM ({rows})" + (
        f" WHERE {having}" if having else ""
    )


def metric_match(op: str, value_param: str, v: str = "v", n: str = "n") -> str:
    """A comparison with a run's latest value. NaN is stored as value 0 (is_nan = 1); as in MLflow's SQL
    store, every comparison with a NaN latest value is false except "!=", which it always satisfies."""
    if op == "!=":
        return f"({v} != %({value_param})s OR {n} = 1)"
    return f"({v} {op} %({value_param})s AND {n} = 0)"


def _op_sql(column: str, op: str, name: str) -> str:
    match op:
        case "LIKE":
            return f"{column} LIKE %({name})s"
        case "ILIKE":
            return f"lower({column}) LIKE lower(%({name})s)"
        case "IN":
            return f"{column} IN %({name})s"
        case "NOT IN":
            return f"{column} NOT IN %({name})s"
    return f"{column} {op} %({name})s"


def _bind(c: Clause, p: str, params: dict[str, Any]) -> tuple[str, str]:
    params[f"{p}k"] = c.key
    if c.value is not None:
        params[f"{p}v"] = c.value
    return f"{p}k", f"{p}v"


def _run_metric(c: Clause, p: str, params: dict[str, Any]) -> Cond:
    k, val = _bind(c, p, params)
    latest = latest_metric_sql(k, having=metric_match(c.op, val))
    return cond(f"run_id IN (SELECT run_id FROM ({latest}))", "run_id")


def _keyed_value(table: Any, id_column: str, live: tuple[Cond, ...] = ()) -> Callable[..., Cond]:
    """A param or tag clause: the ids whose live (id, key) row's value matches (IS [NOT] NULL: has one)."""

    def compile_(c: Clause, p: str, params: dict[str, Any]) -> Cond:
        k, val = _bind(c, p, params)
        where = [cond(f"key = %({k})s", "key"), *live]
        if c.op in NULL_OPS:
            ids = current(table, id_column, where)
            return cond(f"{id_column} {'NOT IN' if c.op == 'IS NULL' else 'IN'} ({ids})", id_column)
        ids = current(table, id_column, [*where, cond(_op_sql("value", c.op, val), "value")])
        return cond(f"{id_column} IN ({ids})", id_column)

    return compile_


_NOT_DELETED = (cond("deleted = 0", "deleted"),)


def _run_dataset(c: Clause, p: str, params: dict[str, Any]) -> Cond:
    if c.key == "context":
        params[f"{p}ids"] = Deferred(c)
        return cond(f"run_id IN %({p}ids)s", "run_id")
    params[f"{p}v"] = c.value
    ids = current(RUN_DATASET_INPUTS, "run_id", [cond(_op_sql(c.key, c.op, f"{p}v"), c.key)])
    return cond(f"run_id IN ({ids})", "run_id")


def _model_metric(c: Clause, p: str, params: dict[str, Any]) -> Cond:
    # any point of the metric linked to the model matches (a NaN point never does); with dataset
    # filters, only points on one of those datasets count (MLflow's logged-model search)
    k, val = _bind(c, p, params)
    on = params.get("_datasets_sql", "1")
    return cond(
        f"model_id IN (SELECT model_id FROM logged_model_metrics WHERE key = %({k})s AND is_nan = 0 "
        f"AND value {c.op} %({val})s AND {on})",
        "model_id",
    )


@dataclass(frozen=True, slots=True)
class Deferred:
    """A parameter the reader computes before running the query (a clause SQL cannot evaluate)."""

    clause: Clause


# -- the entities --
_RUN_ATTRS = {
    "run_id": _col("run_id", LIST_OPS),
    "run_name": _col("run_name"),
    "status": _col("status"),
    "user_id": _col("user_id"),
    "artifact_uri": _col("artifact_uri"),
    "start_time": _num("start_time"),
    "end_time": _num("end_time", nullable=True),
    "created": _num("start_time"),
}
RUNS = Searchable(
    name="runs",
    id_column="run_id",
    kinds=frozenset({METRIC, PARAM, TAG, ATTR, DATASET}),
    kind_ops={METRIC: NUMERIC_OPS, PARAM: STRING_OPS + NULL_OPS, TAG: STRING_OPS + NULL_OPS, DATASET: LIST_OPS},
    attrs=_RUN_ATTRS,
    order_kinds=frozenset({METRIC, PARAM, TAG, ATTR}),
    order_attrs=_RUN_ATTRS,
    default_order=(OrderKey(ATTR, "start_time", False), OrderKey(ATTR, "run_id", True)),
    compile_kind={
        METRIC: _run_metric,
        PARAM: _keyed_value(PARAMS, "run_id"),
        TAG: _keyed_value(RUN_TAGS, "run_id", _NOT_DELETED),
        DATASET: _run_dataset,
    },
)

_EXPERIMENT_ATTRS = {
    "name": _col("name"),
    "creation_time": _num("creation_time"),
    "last_update_time": _num("last_update_time"),
}
EXPERIMENTS = Searchable(
    name="experiments",
    id_column="experiment_id",
    kinds=frozenset({ATTR, TAG}),
    kind_ops={TAG: STRING_OPS + NULL_OPS},
    attrs=_EXPERIMENT_ATTRS,
    order_kinds=frozenset({ATTR}),
    # experiment ids are decimal strings ordered as numbers, as the SQL store's integer column
    order_attrs={**_EXPERIMENT_ATTRS, "experiment_id": Attr("toUInt64OrZero(experiment_id)", ("experiment_id",))},
    default_order=(OrderKey(ATTR, "creation_time", False), OrderKey(ATTR, "experiment_id", True)),
    compile_kind={TAG: _keyed_value(EXPERIMENT_TAGS, "experiment_id", _NOT_DELETED)},
)

LOGGED_MODEL_STATUSES = (
    "LOGGED_MODEL_STATUS_UNSPECIFIED",
    "LOGGED_MODEL_PENDING",
    "LOGGED_MODEL_READY",
    "LOGGED_MODEL_UPLOAD_FAILED",
)
_STATUS_NUMBER = "toString(indexOf([{}], status) - 1)".format(", ".join(f"'{s}'" for s in LOGGED_MODEL_STATUSES))
_MODEL_ATTRS = {
    "model_id": _col("model_id", LIST_OPS),
    "experiment_id": _col("experiment_id", LIST_OPS),
    "name": _col("name", LIST_OPS),
    "artifact_location": Attr("artifact_uri", ("artifact_uri",), False, LIST_OPS),
    "status": Attr(_STATUS_NUMBER, ("status",), False, LIST_OPS),  # the SQL store keeps the enum number
    "lifecycle_stage": _col("lifecycle_stage", LIST_OPS),
    "model_type": _col("model_type", LIST_OPS, nullable=True),
    "source_run_id": _col("source_run_id", LIST_OPS, nullable=True),
    "status_message": _col("status_message", LIST_OPS, nullable=True),
    "creation_timestamp_ms": _num("creation_timestamp_ms"),
    "last_updated_timestamp_ms": _num("last_updated_timestamp_ms"),
}
_MODEL_ATTRS |= {
    "creation_time": _MODEL_ATTRS["creation_timestamp_ms"],
    "creation_timestamp": _MODEL_ATTRS["creation_timestamp_ms"],
    "last_updated_timestamp": _MODEL_ATTRS["last_updated_timestamp_ms"],
}
LOGGED_MODELS = Searchable(
    name="logged models",
    id_column="model_id",
    kinds=frozenset({ATTR, METRIC, PARAM, TAG}),
    kind_ops={METRIC: NUMERIC_OPS, PARAM: LIST_OPS, TAG: LIST_OPS},
    attrs=_MODEL_ATTRS,
    order_kinds=frozenset({ATTR, METRIC}),
    order_attrs=_MODEL_ATTRS,
    default_order=(OrderKey(ATTR, "creation_timestamp_ms", False), OrderKey(ATTR, "model_id", True)),
    compile_kind={
        METRIC: _model_metric,
        PARAM: _keyed_value(LOGGED_MODEL_PARAMS, "model_id"),
        TAG: _keyed_value(LOGGED_MODEL_TAGS, "model_id", _NOT_DELETED),
    },
)


# -- traces (MLflow 3): the `traces` table, with tags, metadata, spans and assessments beside it --
METADATA, SPAN, FEEDBACK, EXPECTATION = "request_metadata", "span", "feedback", "expectation"
TRACE_TAGS = Versioned("trace_tags", frozenset({"trace_id", "key"}))
TRACE_ASSESSMENTS = Versioned("trace_assessments", frozenset({"trace_id", "assessment_id"}))
TRACE_NAME_TAG = "mlflow.traceName"
SOURCE_RUN = "mlflow.sourceRun"
# a JSON string value without its quotes ('"LLM"' -> 'LLM'): filters compare MLflow's JSON values as text
_UNQUOTE = "replaceRegexpAll({}, '^\"|\"$', '')"
_SPAN_COLUMNS = {"name": "name", "type": "span_type", "status": "status_code"}


def _trace_tag(c: Clause, p: str, params: dict[str, Any]) -> Cond:
    return _keyed_value(TRACE_TAGS, "trace_id", _NOT_DELETED)(c, p, params)


def _trace_name(c: Clause, p: str, params: dict[str, Any]) -> Cond:
    return _trace_tag(Clause(TAG, TRACE_NAME_TAG, c.op, c.value), p, params)


def _trace_metadata(c: Clause, p: str, params: dict[str, Any]) -> Cond:
    k, val = _bind(c, p, params)
    value = f"metadata_values[indexOf(metadata_keys, %({k})s)]"
    if c.op in NULL_OPS:
        return cond(f"{'NOT ' if c.op == 'IS NULL' else ''}has(metadata_keys, %({k})s)", "metadata_keys")
    return cond(f"has(metadata_keys, %({k})s) AND {_op_sql(value, c.op, val)}", "metadata_keys", "metadata_values")


def _trace_run(c: Clause, p: str, params: dict[str, Any]) -> Cond:
    """``run_id``: the trace's ``mlflow.sourceRun`` metadata, or a link made by link_traces_to_run."""
    params[f"{p}k"], params[f"{p}v"] = SOURCE_RUN, c.value
    linked = f"SELECT trace_id FROM trace_runs WHERE {_op_sql('run_id', c.op, f'{p}v')}"
    meta = _op_sql(f"metadata_values[indexOf(metadata_keys, %({p}k)s)]", c.op, f"{p}v")
    return cond(f"((has(metadata_keys, %({p}k)s) AND {meta}) OR trace_id IN ({linked}))", "trace_id", "metadata_keys",
                "metadata_values")  # fmt: skip


def _trace_span(c: Clause, p: str, params: dict[str, Any]) -> Cond:
    """``span.name``, ``span.type``, ``span.status``, ``span.attributes.<key>``: traces with a span that matches
    (attribute values are compared as MLflow keeps them, JSON-encoded)."""
    params[f"{p}v"] = c.value
    if c.key.startswith("attributes."):
        params[f"{p}k"] = c.key[len("attributes.") :]
        column = f"attr_values[indexOf(attr_keys, %({p}k)s)]"
        unquoted = _UNQUOTE.format(column)
        match = f"has(attr_keys, %({p}k)s) AND ({_op_sql(column, c.op, f'{p}v')} OR {_op_sql(unquoted, c.op, f'{p}v')})"
    elif c.key in _SPAN_COLUMNS:
        match = _op_sql(_SPAN_COLUMNS[c.key], c.op, f"{p}v")
    else:
        raise SearchError(f"Invalid span key '{c.key}'. Valid keys are {sorted(_SPAN_COLUMNS)} and 'attributes.<key>'")
    return cond(f"trace_id IN (SELECT trace_id FROM spans WHERE {match})", "trace_id")


def _trace_assessment(kind: str) -> Callable[[Clause, str, dict[str, Any]], Cond]:
    def compile_(c: Clause, p: str, params: dict[str, Any]) -> Cond:
        params[f"{p}k"], params[f"{p}kind"] = c.key, kind
        where = [cond(f"name = %({p}k)s", "name"), cond(f"kind = %({p}kind)s", "kind"), *_NOT_DELETED]
        if c.op in NULL_OPS:
            ids = current(TRACE_ASSESSMENTS, "trace_id", where)
            return cond(f"trace_id {'NOT IN' if c.op == 'IS NULL' else 'IN'} ({ids})", "trace_id")
        params[f"{p}v"] = c.value
        # values are JSON: 'yes' matches "yes", 'true' matches true, '0.5' matches 0.5
        value = _UNQUOTE.format("value")
        ids = current(TRACE_ASSESSMENTS, "trace_id", [*where, cond(_op_sql(value, c.op, f"{p}v"), "value")])
        return cond(f"trace_id IN ({ids})", "trace_id")

    return compile_


_TRACE_ATTRS = {
    "trace_id": _col("trace_id", LIST_OPS),
    "request_id": _col("trace_id", LIST_OPS),
    "timestamp_ms": _num("request_time"),
    "timestamp": _num("request_time"),
    "execution_time_ms": _num("execution_duration", nullable=True),
    "execution_time": _num("execution_duration", nullable=True),
    "end_time_ms": Attr(
        "request_time + ifNull(execution_duration, 0)", ("request_time", "execution_duration"), True, NUMERIC_OPS
    ),
    "status": _col("state", LIST_OPS),
    "state": _col("state", LIST_OPS),
    "client_request_id": _col("client_request_id", LIST_OPS, nullable=True),
    "name": _col("trace_id", LIST_OPS),  # compiled by _trace_name
    "run_id": _col("trace_id", STRING_OPS),  # compiled by _trace_run
}
_TRACE_ATTRS["end_time"] = _TRACE_ATTRS["end_time_ms"]
_TRACE_ORDER = {k: v for k, v in _TRACE_ATTRS.items() if k not in ("name", "run_id")}
_TRACE_ORDER["experiment_id"] = Attr("toUInt64OrZero(experiment_id)", ("experiment_id",))
TRACES = Searchable(
    name="traces",
    id_column="trace_id",
    kinds=frozenset({ATTR, TAG, METADATA, SPAN, FEEDBACK, EXPECTATION}),
    kind_ops={
        TAG: STRING_OPS + NULL_OPS,
        METADATA: STRING_OPS + NULL_OPS,
        SPAN: LIST_OPS,
        FEEDBACK: STRING_OPS + NULL_OPS,
        EXPECTATION: STRING_OPS + NULL_OPS,
    },
    attrs=_TRACE_ATTRS,
    order_kinds=frozenset({ATTR}),
    order_attrs=_TRACE_ORDER,
    default_order=(OrderKey(ATTR, "timestamp_ms", False), OrderKey(ATTR, "request_id", True)),
    compile_kind={
        TAG: _trace_tag,
        METADATA: _trace_metadata,
        SPAN: _trace_span,
        FEEDBACK: _trace_assessment("feedback"),
        EXPECTATION: _trace_assessment("expectation"),
    },
    entities={
        "trace": ATTR,
        "metadata": METADATA,
        "request_metadata": METADATA,
        "span": SPAN,
        "spans": SPAN,
        "feedback": FEEDBACK,
        "expectation": EXPECTATION,
    },
    compile_attr={"name": _trace_name, "run_id": _trace_run},
)


# the model registry (MLflow's SearchModelUtils / SearchModelVersionUtils and its SQL store's checks)
_REGISTERED_MODEL_ATTRS = {"name": _col("name", LIST_OPS)}
REGISTERED_MODELS = Searchable(
    name="registered models",
    id_column="model_id",
    kinds=frozenset({ATTR, TAG}),
    kind_ops={TAG: STRING_OPS},
    attrs=_REGISTERED_MODEL_ATTRS,
    order_kinds=frozenset({ATTR}),
    # the SQL store orders both timestamp keys by the last update
    order_attrs={
        "name": _col("name"),
        "timestamp": _num("last_updated_timestamp"),
        "last_updated_timestamp": _num("last_updated_timestamp"),
    },
    default_order=(OrderKey(ATTR, "name", True),),
    compile_kind={TAG: _keyed_value(REGISTERED_MODEL_TAGS, "model_id", _NOT_DELETED)},
)


def _version_tag(c: Clause, p: str, params: dict[str, Any]) -> Cond:
    k, val = _bind(c, p, params)
    where = [cond(f"key = %({k})s", "key"), *_NOT_DELETED, cond(_op_sql("value", c.op, val), "value")]
    return cond(
        f"(model_id, version) IN ({current(MODEL_VERSION_TAGS, 'model_id, version', where)})", "model_id", "version"
    )


_VERSION_ATTRS = {
    "name": _col("name", LIST_OPS),
    "run_id": Attr("ifNull(run_id, '')", ("run_id",), False, LIST_OPS),
    "source_path": _col("source"),
    "version_number": Attr("version", ("version",), True, NUMERIC_OPS, whole=True),
}
MODEL_VERSIONS = Searchable(
    name="model versions",
    id_column="model_id",
    kinds=frozenset({ATTR, TAG}),
    kind_ops={TAG: STRING_OPS},
    attrs=_VERSION_ATTRS,
    order_kinds=frozenset({ATTR}),
    order_attrs={
        "name": _col("name"),
        "version_number": _num("version"),
        "creation_timestamp": _num("creation_timestamp"),
        "last_updated_timestamp": _num("last_updated_timestamp"),
    },
    default_order=(OrderKey(ATTR, "name", True), OrderKey(ATTR, "version_number", False)),
    compile_kind={TAG: _version_tag},
)


# -- the parser --
def _tokens(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise SearchError(f"Invalid filter '{text}': unexpected character at position {pos}")
        kind = m.lastgroup or ""
        out.append(Token(kind, m.group(kind)))
        pos = m.end()
    return out


def _unquote(token: Token) -> str:
    body = token.text[1:-1]
    if token.text[0] == "'":
        body = body.replace("''", "'")
    return re.sub(r"\\(.)", r"\1", body)


class _Parser:
    def __init__(self, text: str, what: Searchable, attrs: dict[str, Attr], kinds: frozenset[str]) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.what, self.attrs, self.kinds = what, attrs, kinds

    def peek(self, ahead: int = 0) -> Token | None:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise SearchError(f"Invalid clause(s) in filter string: '{self.text}'. Unexpected end of filter.")
        self.i += 1
        return tok

    def identifier(self) -> tuple[str, str]:
        tok = self.take()
        if tok.kind == "tick":
            entity, key = "attributes", _unquote(tok)
        elif tok.kind == "word":
            entity, dot, key = tok.text.partition(".")
            if not dot:
                entity, key = "attributes", tok.text
            elif not key:
                quoted = self.take()
                if quoted.kind not in ("tick", "str") or quoted.text[0] == "'":
                    raise SearchError(f"Invalid identifier '{tok.text}{quoted.text}' in filter '{self.text}'")
                key = _unquote(quoted)
        else:
            raise SearchError(
                f"Invalid clause(s) in filter string: '{self.text}'. Expected an identifier, got '{tok.text}'."
            )
        kind = self.what.entities.get(entity.lower()) or ENTITIES.get(entity.lower())
        if kind is None or kind not in self.kinds:
            raise SearchError(f"Invalid entity type '{entity}'. Valid values are {sorted(self.kinds)}")
        if kind == ATTR and key not in self.attrs:
            raise SearchError(f"Invalid attribute key '{key}' specified. Valid keys are '{sorted(self.attrs)}'")
        if kind == DATASET and key not in DATASET_ATTRS:
            raise SearchError(f"Invalid dataset key '{key}' specified. Valid keys are '{sorted(DATASET_ATTRS)}'")
        return kind, key

    def clause(self) -> Clause:
        entity, key = self.identifier()
        tok = self.take()
        op = tok.upper
        if op == "<>":
            op = "!="
        if op == "NOT" and (nxt := self.peek()) is not None and nxt.upper == "IN":
            self.take()
            op = "NOT IN"
        elif op == "IS":
            negate = (nxt := self.peek()) is not None and nxt.upper == "NOT"
            if negate:
                self.take()
            if self.take().upper != "NULL":
                raise SearchError(f"Invalid clause(s) in filter string: '{self.text}'. Expected NULL after IS.")
            op = "IS NOT NULL" if negate else "IS NULL"
            if op not in self.what.kind_ops.get(entity, ()):
                raise SearchError(f"Invalid comparator '{op}' for {entity} '{key}'")
            return Clause(entity, key, op, None)
        attr = self.attrs[key] if entity == ATTR else None
        numeric = entity == METRIC or (attr is not None and attr.numeric)
        allowed = attr.ops if attr is not None else self.what.kind_ops[entity]
        allowed = tuple(o for o in allowed if o not in NULL_OPS)
        if op not in allowed:
            raise SearchError(f"Invalid comparator '{tok.text}' not one of '{list(allowed)}' for {entity} '{key}'")
        if op in ("IN", "NOT IN"):
            return Clause(entity, key, op, self.string_list())
        value = self.take()
        if numeric:
            if value.kind != "num":
                raise SearchError(f"Expected numeric value type for {entity} '{key}'. Found {value.text}")
            if attr is not None and attr.whole and not value.text.lstrip("+-").isdigit():
                raise SearchError(f"Expected an integer value for {entity} '{key}'. Found {value.text}")
            return Clause(entity, key, op, float(value.text) if entity == METRIC else _int64_literal(value.text))
        if value.kind != "str":
            raise SearchError(
                f"Value for {entity} '{key}' is either not quoted or unidentified quote types used for string "
                f"value {value.text}. Use either single or double quotes."
            )
        return Clause(entity, key, op, _unquote(value))

    def string_list(self) -> tuple[str, ...]:
        if self.take().text != "(":
            raise SearchError(f"Invalid clause(s) in filter string: '{self.text}'. IN expects a list '(...)'.")
        values: list[str] = []
        while True:
            tok = self.take()
            if tok.kind != "str":
                raise SearchError(f"While parsing a list in the query, expected string value, got {tok.text}")
            values.append(_unquote(tok))
            sep = self.take().text
            if sep == ")":
                return tuple(values)
            if sep != ",":
                raise SearchError(f"Invalid clause(s) in filter string: '{self.text}'. Malformed list.")

    def clauses(self) -> list[Clause]:
        out = [self.clause()]
        while (tok := self.peek()) is not None:
            if tok.upper != "AND":
                raise SearchError(
                    f"Invalid clause(s) in filter string: '{self.text}'. Only AND joins clauses (got '{tok.text}')."
                )
            self.take()
            out.append(self.clause())
        return out


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _int64_literal(text: str) -> int:
    """A numeric attribute's value (start_time, creation_time, …: BIGINT columns) as an int inside their range."""
    try:
        number = int(text) if text.lstrip("+-").isdigit() and len(text) <= 21 else float(text)
    except ValueError:
        raise SearchError(f"Expected numeric value type for attribute. Found {text[:100]}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise SearchError(f"Numeric value {text[:100]} is out of range for a 64-bit integer attribute")
    number = int(number)
    if not INT64_MIN <= number <= INT64_MAX:
        raise SearchError(f"Numeric value {text[:100]} is out of range for a 64-bit integer attribute")
    return number


def parse_filter(what: Searchable, text: str | None) -> list[Clause]:
    """The clauses of a filter string (``None`` or blank: none)."""
    if not text or not text.strip():
        return []
    return _Parser(text, what, what.attrs, what.kinds).clauses()


def parse_order_by(what: Searchable, items: list[str] | None) -> list[OrderKey]:
    """MLflow's ``order_by`` strings (``"metrics.loss DESC"``) of runs and experiments."""
    out: list[OrderKey] = []
    for item in items or []:
        text = str(item).strip()
        ascending = True
        head, _, last = text.rpartition(" ")  # not a regex: "(.*?)\s+(ASC|DESC)$" is quadratic on long blanks
        if head.strip() and last.upper() in ("ASC", "DESC"):
            text, ascending = head.strip(), last.upper() == "ASC"
        p = _Parser(text, what, what.order_attrs, what.order_kinds | {DATASET})
        try:
            entity, key = p.identifier()
        except SearchError as exc:
            raise SearchError(f"Invalid order_by clause '{item}': {exc}") from None
        if p.peek() is not None or entity == DATASET:
            raise SearchError(f"Invalid order_by clause '{item}'. Could not be parsed.")
        if any(o.entity == entity and o.key == key for o in out):
            raise SearchError(f"`order_by` contains duplicate fields: {items}")
        out.append(OrderKey(entity, key, ascending))
    return out


def parse_logged_model_order_by(items: list[dict[str, Any]]) -> list[OrderKey]:
    """The logged-model ``order_by``: ``{field_name, ascending, dataset_name, dataset_digest}`` objects."""
    out: list[OrderKey] = []
    for ob in items:
        name = str(ob.get("field_name") or "")
        ascending = ob.get("ascending", True) is not False
        if "." not in name:
            if name not in LOGGED_MODELS.order_attrs:
                raise SearchError(f"Invalid order by field name: {name}")
            out.append(OrderKey(ATTR, name, ascending))
            continue
        entity, key = name.split(".", 1)
        if ENTITIES.get(entity) != METRIC:
            raise SearchError(f"Invalid order by field name: {name}. Only metrics are supported.")
        dn, dd = ob.get("dataset_name"), ob.get("dataset_digest")
        out.append(OrderKey(METRIC, key, ascending, str(dn) if dn else None, str(dd) if dd else None))
    return out


# -- the compiler --
@dataclass
class Compiled:
    """Conditions over the entity's table (to pass to ``current``) and their parameters."""

    conds: list[Cond]
    params: dict[str, Any]


def compile_filter(what: Searchable, clauses: list[Clause], params: dict[str, Any] | None = None) -> Compiled:
    params = dict(params or {})
    conds: list[Cond] = []
    for i, c in enumerate(clauses):
        p = f"f{i}"
        if c.entity == ATTR and c.key in what.compile_attr:
            conds.append(what.compile_attr[c.key](c, p, params))
        elif c.entity == ATTR:
            attr = what.attrs[c.key]
            params[f"{p}v"] = c.value
            conds.append(Cond(_op_sql(attr.sql, c.op, f"{p}v"), attr.columns))
        else:
            conds.append(what.compile_kind[c.entity](c, p, params))
    params.pop("_datasets_sql", None)
    return Compiled(conds, params)


def with_defaults(what: Searchable, order: list[OrderKey]) -> list[OrderKey]:
    """``order`` followed by the entity's default keys it does not already name (the stable tie-breaks)."""
    named = {(o.entity, what.order_attrs[o.key].sql if o.entity == ATTR else o.key) for o in order}
    extra = [d for d in what.default_order if (d.entity, what.order_attrs[d.key].sql) not in named]
    return [*order, *extra]


def attr_order_sql(attr: Attr, ascending: bool) -> list[str]:
    """ORDER BY terms of an attribute: a missing value (NULL) last in either direction."""
    terms = [f"isNull({attr.sql})"] if attr.nullable else []
    return [*terms, f"{attr.sql} {'ASC' if ascending else 'DESC'}"]


def like(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """SQL LIKE (``%`` any run of characters, ``_`` one) in time linear in ``value`` for each piece of
    ``pattern``, never by a backtracking regex: ``.*a.*a.*a…b`` over a long name took a regex engine
    seconds (12 s for one search, the event loop held by the GIL the whole time).

    The pattern splits at ``%`` into pieces of fixed length: the first must match at the start, the last
    at the end, and every other piece at its leftmost place after the one before (the leftmost place is
    always as good as any later one, so no choice is ever revisited).
    """
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    pieces = pattern.split("%")
    if len(pieces) == 1:
        return len(value) == len(pattern) and _piece_at(pattern, value, 0)
    first, *middle, last = pieces
    start, end = len(first), len(value) - len(last)
    if end < start or not _piece_at(first, value, 0) or not _piece_at(last, value, end):
        return False
    for piece in middle:
        if piece:
            found = _find_piece(piece, value, start, end)
            if found < 0:
                return False
            start = found + len(piece)
    return True


def _piece_at(piece: str, value: str, at: int) -> bool:
    if "_" not in piece:
        return value.startswith(piece, at)
    return at + len(piece) <= len(value) and all(p in ("_", c) for p, c in zip(piece, value[at:], strict=False))


@lru_cache(maxsize=256)
def _piece_regex(piece: str) -> re.Pattern[str]:
    # literals and "." only: no quantifier, so a search costs at most len(value) * len(piece) steps
    return re.compile("".join("." if ch == "_" else re.escape(ch) for ch in piece), re.DOTALL)


def _find_piece(piece: str, value: str, start: int, end: int) -> int:
    if "_" not in piece:
        return value.find(piece, start, end)
    m = _piece_regex(piece).search(value, start, end)
    return m.start() if m else -1


def compare(op: str, left: Any, right: Any) -> bool:
    """Evaluate one clause in Python; a missing value (None) matches nothing, as an inner join would."""
    if left is None:
        return False
    match op:
        case "=":
            return bool(left == right)
        case "!=":
            return bool(left != right)
        case "<":
            return bool(left < right)
        case "<=":
            return bool(left <= right)
        case ">":
            return bool(left > right)
        case ">=":
            return bool(left >= right)
        case "LIKE" | "ILIKE":
            return like(str(right), str(left), op == "ILIKE")
        case "IN":
            return str(left) in right
        case "NOT IN":
            return str(left) not in right
    raise SearchError(f"Unsupported comparator {op}")
