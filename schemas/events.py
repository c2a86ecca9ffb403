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

    @property
    def key(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricBatch(Event):
    """Metric points of one run, column by column (metric_batch.v2). Key: run_id."""

    FAMILY: ClassVar[str] = METRICS
    RECORD: ClassVar[str] = "trackstream.MetricBatch"
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

    @property
    def key(self) -> str:
        return self.run_id

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
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    op: str | None = None  # create | rename | delete | restore: decided by the metadata sink

    @property
    def key(self) -> str:
        return EXPERIMENTS_KEY


@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentTags(Event):
    FAMILY: ClassVar[str] = METADATA
    RECORD: ClassVar[str] = "trackstream.ExperimentTags"
    experiment_id: str
    tags: Sequence[Tag]

    @property
    def key(self) -> str:
        return self.experiment_id


@dataclass(frozen=True, slots=True, kw_only=True)
class RunState(Event):
    FAMILY: ClassVar[str] = METADATA
    RECORD: ClassVar[str] = "trackstream.RunState"
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

    @property
    def key(self) -> str:
        return self.run_id


@dataclass(frozen=True, slots=True, kw_only=True)
class RunData(Event):
    FAMILY: ClassVar[str] = METADATA
    RECORD: ClassVar[str] = "trackstream.RunData"
    run_id: str
    params: Sequence[Param]
    tags: Sequence[Tag]

    @property
    def key(self) -> str:
        return self.run_id


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedModelState(Event):
    FAMILY: ClassVar[str] = METADATA
    RECORD: ClassVar[str] = "trackstream.LoggedModelState"
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

    @property
    def key(self) -> str:
        return self.model_id


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedModelData(Event):
    FAMILY: ClassVar[str] = METADATA
    RECORD: ClassVar[str] = "trackstream.LoggedModelData"
    model_id: str
    params: Sequence[Param]
    tags: Sequence[Tag]

    @property
    def key(self) -> str:
        return self.model_id


@dataclass(frozen=True, slots=True, kw_only=True)
class RunInputs(Event):
    FAMILY: ClassVar[str] = METADATA
    RECORD: ClassVar[str] = "trackstream.RunInputs"
    run_id: str
    experiment_id: str
    datasets: Sequence[DatasetInput]
    model_ids: Sequence[str]

    @property
    def key(self) -> str:
        return self.run_id


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOutputs(Event):
    FAMILY: ClassVar[str] = METADATA
    RECORD: ClassVar[str] = "trackstream.RunOutputs"
    run_id: str
    models: Sequence[ModelOutput]

    @property
    def key(self) -> str:
        return self.run_id


@dataclass(frozen=True, slots=True, kw_only=True)
class ArtifactEvent(Event):
    """An artifact written or deleted; large ones travel by claim check (``content`` None). Key: path."""

    FAMILY: ClassVar[str] = ARTIFACT
    RECORD: ClassVar[str] = "trackstream.ArtifactEvent"
    path: str
    op: str  # PUT | DELETE
    content: bytes | None = None
    stored: bool = False
    size: int
    sha256: str
    time: int

    @property
    def key(self) -> str:
        return self.path


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisteredModelChange(Event):
    """A change to a registered model (registry.v1), decided by the registry sink in log order."""

    FAMILY: ClassVar[str] = REGISTRY
    RECORD: ClassVar[str] = "trackstream.RegisteredModelChange"
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

    @property
    def key(self) -> str:
        return REGISTRY_KEY


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelVersionChange(Event):
    """A change to a model version (registry.v1); a create is numbered by the registry sink."""

    FAMILY: ClassVar[str] = REGISTRY
    RECORD: ClassVar[str] = "trackstream.ModelVersionChange"
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

    @property
    def key(self) -> str:
        return REGISTRY_KEY


NESTED: tuple[type, ...] = (Tag, Param, InputTag, DatasetInput, ModelOutput)
EVENTS: tuple[type[Event], ...] = (
    MetricBatch, ExperimentState, ExperimentTags, RunState, RunData, LoggedModelState, LoggedModelData,
    RunInputs, RunOutputs, ArtifactEvent, RegisteredModelChange, ModelVersionChange,
)  # fmt: skip
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
