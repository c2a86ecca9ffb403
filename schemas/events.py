"""Typed events: one frozen, slotted dataclass per Avro record of the newest schema of every family.

An event knows its family (so its topic: ``trackstream.settings.Topics`` has one per family) and its
key (the entity whose events must stay in one partition, in order); ``codec.encode(event)`` writes it
and ``codec.decode`` gives it back. ``tests/schemas/test_events.py`` checks that each class has
exactly the fields of its record in the newest ``.avsc``, so a schema change that forgets its class
(or the reverse) fails there.

Arrays are ``Sequence`` fields and are passed through as given (a 1000-point ``MetricBatch`` keeps
its column lists; no per-point objects are built). Nested records (``Tag``, ``Param``...) are
dataclasses too.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

METRICS = "metric_batch"
METADATA = "metadata"
ARTIFACT = "artifact"
AUTH = "auth"

# The constant key of every AuthChange: users, tokens and permissions are decided in one partition, in
# one order, by every gateway's view alike (ingest/auth/view.py).
AUTH_KEY = "auth"
TRACE = "trace"
REGISTRY = "registry"

# The constant key of every ExperimentState: experiment names are unique across experiments, so all
# experiment changes are decided in one partition, in one order (docs/DESIGN.md, "Decided events").
EXPERIMENTS_KEY = "experiments"
# The constant key of every registry event: registered-model names are unique and version numbers
# consecutive, so every registry change is decided in one partition, in one order (registry writes
# are few; docs/DESIGN.md, "Decided events").
REGISTRY_KEY = "registry"


# -- nested records --
@dataclass(frozen=True, slots=True, kw_only=True)
class Tag:
    RECORD: ClassVar[str] = "trackstream.Tag"
    key: str
    value: str
    deleted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Param:
    RECORD: ClassVar[str] = "trackstream.Param"
    key: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InputTag:
    RECORD: ClassVar[str] = "trackstream.InputTag"
    key: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetInput:
    RECORD: ClassVar[str] = "trackstream.DatasetInput"
    name: str
    digest: str
    source_type: str
    source: str
    schema: str | None = None
    profile: str | None = None
    tags: Sequence[InputTag]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelOutput:
    RECORD: ClassVar[str] = "trackstream.ModelOutput"
    model_id: str
    step: int


# -- events (what a message carries) --
class Event:
    """What every event class provides (the classes below are dataclasses that subclass nothing;
    this is the type the writer and the codec accept)."""

    __slots__ = ()
    FAMILY: ClassVar[str]
    RECORD: ClassVar[str]
    # The message key: the value of the field named by KEY_FIELD, else FIXED_KEY (an event family whose
    # changes are all decided in one partition, in one order).
    KEY_FIELD: ClassVar[str] = ""
    FIXED_KEY: ClassVar[str] = ""

    @property
    def key(self) -> str:
        return str(getattr(self, self.KEY_FIELD)) if self.KEY_FIELD else self.FIXED_KEY


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricBatch(Event):
    """Metric points of one run, column by column (metric_batch.v2). Key: run_id."""

    FAMILY: ClassVar[str] = METRICS
    RECORD: ClassVar[str] = "trackstream.MetricBatch"
    KEY_FIELD: ClassVar[str] = "run_id"
    run_id: str
    keys: Sequence[str] = ()
    key_names: Sequence[str] = ()
    key_index: Sequence[int] = ()
    values: Sequence[float]
    timestamps: Sequence[int]
    steps: Sequence[int]
    model_ids: Sequence[str] = ()
    dataset_names: Sequence[str] = ()
    dataset_digests: Sequence[str] = ()

    def point_keys(self) -> Sequence[str]:
        """Each point's metric name, from the plain ``keys`` column or the dictionary-encoded one."""
        if self.keys or not self.key_index:
            return self.keys
        names = self.key_names
        return [names[i] for i in self.key_index]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentState(Event):
    FAMILY: ClassVar[str] = METADATA
    RECORD: ClassVar[str] = "trackstream.ExperimentState"
    FIXED_KEY: ClassVar[str] = EXPERIMENTS_KEY
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    op: str | None = None  # create | rename | delete | restore: decided by the metadata sink


@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentTags(Event):
    FAMILY: ClassVar[str] = METADATA
    RECORD: ClassVar[str] = "trackstream.ExperimentTags"
    KEY_FIELD: ClassVar[str] = "experiment_id"
    experiment_id: str
    tags: Sequence[Tag]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunState(Event):
    FAMILY: ClassVar[str] = METADATA
    RECORD: ClassVar[str] = "trackstream.RunState"
    KEY_FIELD: ClassVar[str] = "run_id"
    run_id: str
    experiment_id: str
    run_name: str
    user_id: str
    status: str
    start_time: int
    end_time: int | None = None
    artifact_uri: str
    lifecycle_stage: str
    deleted_time: int | None = None
    changed: Sequence[str] | None = None  # the columns this event sets (None: the whole row)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunData(Event):
    FAMILY: ClassVar[str] = METADATA
    RECORD: ClassVar[str] = "trackstream.RunData"
    KEY_FIELD: ClassVar[str] = "run_id"
    run_id: str
    params: Sequence[Param]
    tags: Sequence[Tag]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedModelState(Event):
    FAMILY: ClassVar[str] = METADATA
    RECORD: ClassVar[str] = "trackstream.LoggedModelState"
    KEY_FIELD: ClassVar[str] = "model_id"
    model_id: str
    experiment_id: str
    name: str
    artifact_uri: str
    creation_timestamp_ms: int
    last_updated_timestamp_ms: int
    status: str
    status_message: str | None = None
    lifecycle_stage: str
    model_type: str | None = None
    source_run_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedModelData(Event):
    FAMILY: ClassVar[str] = METADATA
    RECORD: ClassVar[str] = "trackstream.LoggedModelData"
    KEY_FIELD: ClassVar[str] = "model_id"
    model_id: str
    params: Sequence[Param]
    tags: Sequence[Tag]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunInputs(Event):
    FAMILY: ClassVar[str] = METADATA
    RECORD: ClassVar[str] = "trackstream.RunInputs"
    KEY_FIELD: ClassVar[str] = "run_id"
    run_id: str
    experiment_id: str
    datasets: Sequence[DatasetInput]
    model_ids: Sequence[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOutputs(Event):
    FAMILY: ClassVar[str] = METADATA
    RECORD: ClassVar[str] = "trackstream.RunOutputs"
    KEY_FIELD: ClassVar[str] = "run_id"
    run_id: str
    models: Sequence[ModelOutput]


@dataclass(frozen=True, slots=True, kw_only=True)
class ArtifactEvent(Event):
    """An artifact written or deleted; large ones travel by claim check (``content`` None). Key: path."""

    FAMILY: ClassVar[str] = ARTIFACT
    RECORD: ClassVar[str] = "trackstream.ArtifactEvent"
    KEY_FIELD: ClassVar[str] = "path"
    path: str
    op: str  # PUT | DELETE
    content: bytes | None = None
    stored: bool = False
    size: int
    sha256: str
    time: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthChange(Event):
    """A change to users, tokens or permissions (auth.v1). Key: the constant ``AUTH_KEY``."""

    FAMILY: ClassVar[str] = AUTH
    RECORD: ClassVar[str] = "trackstream.AuthChange"
    FIXED_KEY: ClassVar[str] = AUTH_KEY
    op: str
    username: str
    password_hash: str | None = None
    is_admin: bool | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    permission: str | None = None
    new_resource_id: str | None = None
    token_id: str | None = None
    token_hash: str | None = None
    expires_ms: int | None = None
    time: int


# -- traces (MLflow 3 tracing): keyed by experiment id, so a trace's info, spans, tags, assessments and
# deletion are applied in one order; run links by run id --
@dataclass(frozen=True, slots=True, kw_only=True)
class TraceInfo(Event):
    FAMILY: ClassVar[str] = TRACE
    RECORD: ClassVar[str] = "trackstream.TraceInfo"
    KEY_FIELD: ClassVar[str] = "experiment_id"
    trace_id: str
    experiment_id: str
    request_time: int
    execution_duration: int | None = None
    state: str
    client_request_id: str | None = None
    request_preview: str | None = None
    response_preview: str | None = None
    metadata: Sequence[Param]
    tags: Sequence[Tag]


@dataclass(frozen=True, slots=True, kw_only=True)
class SpanBatch(Event):
    """The spans of one request, column by column (one message per request, never one per span)."""

    FAMILY: ClassVar[str] = TRACE
    RECORD: ClassVar[str] = "trackstream.SpanBatch"
    KEY_FIELD: ClassVar[str] = "experiment_id"
    experiment_id: str
    run_id: str | None = None
    trace_ids: Sequence[str]
    span_ids: Sequence[str]
    parent_ids: Sequence[str]
    names: Sequence[str]
    span_types: Sequence[str]
    kinds: Sequence[int]
    start_ns: Sequence[int]
    end_ns: Sequence[int]
    status_codes: Sequence[str]
    status_messages: Sequence[str]
    attr_keys: Sequence[Sequence[str]]
    attr_values: Sequence[Sequence[str]]
    payloads: Sequence[bytes]
    payload_refs: Sequence[str]
    sizes: Sequence[int]


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceTags(Event):
    FAMILY: ClassVar[str] = TRACE
    RECORD: ClassVar[str] = "trackstream.TraceTags"
    KEY_FIELD: ClassVar[str] = "experiment_id"
    trace_id: str
    experiment_id: str
    tags: Sequence[Tag]


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceDeletion(Event):
    FAMILY: ClassVar[str] = TRACE
    RECORD: ClassVar[str] = "trackstream.TraceDeletion"
    KEY_FIELD: ClassVar[str] = "experiment_id"
    experiment_id: str
    trace_ids: Sequence[str]
    time: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AssessmentState(Event):
    FAMILY: ClassVar[str] = TRACE
    RECORD: ClassVar[str] = "trackstream.AssessmentState"
    KEY_FIELD: ClassVar[str] = "experiment_id"
    assessment_id: str
    trace_id: str
    experiment_id: str
    name: str
    kind: str
    value: str
    body: str
    created: int
    updated: int
    deleted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceRunLinks(Event):
    FAMILY: ClassVar[str] = TRACE
    RECORD: ClassVar[str] = "trackstream.TraceRunLinks"
    KEY_FIELD: ClassVar[str] = "run_id"
    run_id: str
    trace_ids: Sequence[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisteredModelChange(Event):
    """A change to a registered model (registry.v1), decided by the registry sink in log order."""

    FAMILY: ClassVar[str] = REGISTRY
    RECORD: ClassVar[str] = "trackstream.RegisteredModelChange"
    FIXED_KEY: ClassVar[str] = REGISTRY_KEY
    op: str  # create | rename | update | delete | set_tag | delete_tag | set_alias | delete_alias
    name: str
    model_id: str = ""  # create: the new model's id; otherwise the sink resolves the name
    new_name: str | None = None
    description: str | None = None
    deployment_job_id: str | None = None
    tags: Sequence[Tag] = ()
    alias: str | None = None
    version: int | None = None
    time: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelVersionChange(Event):
    """A change to a model version (registry.v1); a create is numbered by the registry sink."""

    FAMILY: ClassVar[str] = REGISTRY
    RECORD: ClassVar[str] = "trackstream.ModelVersionChange"
    FIXED_KEY: ClassVar[str] = REGISTRY_KEY
    op: str  # create | update | delete | transition | set_tag | delete_tag
    name: str
    version: int | None = None
    source: str | None = None
    storage_location: str | None = None
    run_id: str | None = None
    run_link: str | None = None
    description: str | None = None
    model_id: str | None = None
    user_id: str | None = None
    tags: Sequence[Tag] = ()
    stage: str | None = None
    archive_existing_versions: bool = False
    time: int


NESTED: tuple[type, ...] = (Tag, Param, InputTag, DatasetInput, ModelOutput)
EVENTS: tuple[type[Event], ...] = (
    MetricBatch, ExperimentState, ExperimentTags, RunState, RunData, LoggedModelState, LoggedModelData,
    RunInputs, RunOutputs, ArtifactEvent, AuthChange, RegisteredModelChange, ModelVersionChange,
)  # fmt: skip
TRACE_EVENTS: tuple[type[Event], ...] = (TraceInfo, SpanBatch, TraceTags, TraceDeletion, AssessmentState, TraceRunLinks)
EVENTS += TRACE_EVENTS
# Avro full name -> class: the codec decodes a record (or a union member) of that name into it.
TYPES: Mapping[str, type] = {c.RECORD: c for c in (*NESTED, *EVENTS)}  # type: ignore[attr-defined]
BY_KIND: Mapping[str, type[Event]] = {c.__name__: c for c in EVENTS if c.FAMILY == METADATA}


# -- conversion to and from the dicts fastavro reads and writes --
Convert = Callable[[Any], Any]


def _nested_of(hint: Any) -> type | None:
    """The record class a ``Sequence[Record]`` field holds, if any."""
    for arg in typing.get_args(hint):
        if arg in NESTED:
            return typing.cast(type, arg)
        if (inner := _nested_of(arg)) is not None:
            return inner
    return None


def _fields(cls: type) -> list[tuple[str, type | None]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, _nested_of(hints[f.name])) for f in dataclasses.fields(cls)]


_FIELDS: dict[type, list[tuple[str, type | None]]] = {c: _fields(c) for c in (*NESTED, *EVENTS)}
_PLAIN: dict[type, tuple[str, ...]] = {
    c: tuple(n for n, _ in fs) for c, fs in _FIELDS.items() if all(k is None for _, k in fs)
}


def from_dict(cls: type[Any], record: Mapping[str, Any]) -> Any:
    """Build ``cls`` from an Avro record dict. Fields the class does not declare are ignored (a reader
    built for an older schema keeps what it knows); missing fields take the class default."""
    if (plain := _PLAIN.get(cls)) is not None:
        return cls(**{n: record[n] for n in plain if n in record})
    args: dict[str, Any] = {}
    for name, nested in _FIELDS[cls]:
        if name not in record:
            continue
        value = record[name]
        if nested is not None and value is not None:
            value = [v if isinstance(v, nested) else from_dict(nested, v) for v in value]
        args[name] = value
    return cls(**args)


def to_dict(obj: Any) -> dict[str, Any]:
    """The Avro record dict of an event or nested record (arrays passed through, nested records as dicts)."""
    cls = type(obj)
    if (plain := _PLAIN.get(cls)) is not None:
        return {n: getattr(obj, n) for n in plain}
    out: dict[str, Any] = {}
    for name, nested in _FIELDS[cls]:
        value = getattr(obj, name)
        if nested is not None and value is not None:
            value = [to_dict(v) if isinstance(v, nested) else v for v in value]
        out[name] = value
    return out


def metadata_event(kind: str, body: Mapping[str, Any]) -> Event:
    """The typed event for the old ``(kind, body)`` form, e.g. ``("RunState", {...})``."""
    try:
        cls = BY_KIND[kind]
    except KeyError:
        raise ValueError(f"unknown metadata event kind {kind!r}; expected one of {', '.join(BY_KIND)}") from None
    event: Event = from_dict(cls, body)
    return event
