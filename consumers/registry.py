"""Registry sink: registered-model and model-version changes → ``registered_models``, ``model_versions``,
``registered_model_tags``, ``model_version_tags``, ``registered_model_aliases``, and ``decisions``.

Guarantee: at-least-once writes, exactly-once as seen by readers (ReplacingMergeTree keyed by the
entity, versioned by the event's log offset; readers use FINAL); every event gets exactly one decision,
reused on replay; a refused event writes nothing else.

Every registry event has the one key ``"registry"`` (``schemas.events.REGISTRY_KEY``), so this sink sees
all registry changes in one order and decides here what the stock server's database constraints
decide: a name belongs to one model (create, rename), a version number is the next after every version
the model ever had (consecutive, no duplicate, no gap: a refused create allocates nothing), and a change
to a model or version that does not exist (any more) is refused with the stock server's error. The
gateway that produced the event waits for its decision (``EventWriter.decide``); a created version's
number is the decision's ``result``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consumers.metadata import RecordedDecisions, _Batch
from consumers.sink import Event, Sink
from schemas import events as ev
from schemas.decisions import ACCEPTED, Decision, refused
from schemas.events import REGISTRY
from trackstream.errors import StoreRejected
from trackstream.log import Partition
from trackstream.reads.current import MODEL_VERSIONS, REGISTERED_MODEL_ALIASES, REGISTERED_MODELS, cond, current
from trackstream.reads.registry import IS_PROMPT_TAG, MODEL_COLUMNS, VERSION_COLUMNS
from trackstream.tables import TableStore

TAGS_TABLE = "registered_model_tags"

# the sink keeps deleted models and versions (numbers are never given twice): the read columns and the flag
MODEL_ROW = (*MODEL_COLUMNS, "deleted")
VERSION_ROW = (*VERSION_COLUMNS, "deleted")


def model_not_found(name: str) -> Decision:
    return refused("RESOURCE_DOES_NOT_EXIST", f"Registered Model with name={name} not found")


def version_not_found(name: str, version: Any) -> Decision:
    return refused("RESOURCE_DOES_NOT_EXIST", f"Model Version (name={name}, version={version}) not found")


def _already_exists(name: str, existing_is_prompt: bool, new_is_prompt: bool) -> Decision:
    """The stock server's answer to a taken name (``handle_resource_already_exist_error``)."""
    old = "Prompt" if existing_is_prompt else "Registered Model"
    new = "Prompt" if new_is_prompt else "Registered Model"
    if old != new:
        return refused(
            "RESOURCE_ALREADY_EXISTS",
            f"Tried to create a {new.lower()} with name {name!r}, but the name is already taken by a "
            f"{old.lower()}. MLflow does not allow creating a model and a prompt with the same name.",
        )
    return refused("RESOURCE_ALREADY_EXISTS", f"{new} (name={name}) already exists.")


def _is_prompt(tags: Sequence[ev.Tag]) -> bool:
    return any(t.key == IS_PROMPT_TAG and t.value.lower() == "true" and not t.deleted for t in tags)


class RegistryState:
    """The registry as a batch is decided against: the live models its events name (one query), their
    versions (deleted ones too: numbers are never given twice) and aliases, overlaid with the batch's
    own accepted events as they apply."""

    def __init__(self, tables: TableStore, events: Sequence[Event], recorded: RecordedDecisions) -> None:
        names: set[str] = set()
        positions: list[tuple[Partition, int]] = []
        for event in events:
            data = event.data
            if isinstance(data, ev.RegisteredModelChange | ev.ModelVersionChange):
                names.add(data.name)
                positions.append((event.message.partition, event.message.offset))
            if isinstance(data, ev.RegisteredModelChange) and data.new_name:
                names.add(data.new_name)
        self.recorded = recorded.lookup(positions)
        self.models: dict[str, dict[str, Any]] = {}  # live models by name
        self.prompts: set[str] = set()  # model ids tagged mlflow.prompt.is_prompt = true
        self.versions: dict[str, dict[int, dict[str, Any]]] = {}  # model id -> number -> row (deleted too)
        self.aliases: dict[str, dict[str, int]] = {}  # model id -> alias -> version
        if not names:
            return
        rows = tables.query(
            current(REGISTERED_MODELS, MODEL_ROW, [cond("name IN %(names)s", "name"), cond("deleted = 0", "deleted")]),
            {"names": tuple(names)},
        )
        for row in rows:
            model = dict(zip(MODEL_ROW, row, strict=True))
            self.models[model["name"]] = model
            self.versions[model["model_id"]] = {}
            self.aliases[model["model_id"]] = {}
        ids = tuple(self.versions)
        if not ids:
            return
        for row in tables.query(
            current(MODEL_VERSIONS, VERSION_ROW, [cond("model_id IN %(ids)s", "model_id")]), {"ids": ids}
        ):
            version = dict(zip(VERSION_ROW, row, strict=True))
            self.versions[version["model_id"]][int(version["version"])] = version
        for model_id, alias, number in tables.query(
            current(
                REGISTERED_MODEL_ALIASES,
                "model_id, alias, version",
                [cond("model_id IN %(ids)s", "model_id"), cond("deleted = 0", "deleted")],
            ),
            {"ids": ids},
        ):
            self.aliases[model_id][alias] = int(number)
        for (model_id,) in tables.query(
            f"SELECT model_id FROM (SELECT model_id, value, deleted FROM {TAGS_TABLE} FINAL "
            "WHERE model_id IN %(ids)s AND key = %(key)s) WHERE deleted = 0 AND lower(value) = 'true'",
            {"ids": ids, "key": IS_PROMPT_TAG},
        ):
            self.prompts.add(model_id)

    def live_version(self, model: dict[str, Any], number: int | None) -> dict[str, Any] | None:
        if number is None:
            return None
        row = self.versions.get(model["model_id"], {}).get(number)
        return row if row is not None and not row["deleted"] else None


class _Writes(_Batch):
    """The rows and decisions of one batch (``_Batch`` of the metadata sink, with the registry's state)."""

    def __init__(self, state: RegistryState) -> None:
        super().__init__(state)  # type: ignore[arg-type]
        self.state = state

    def model(self, model: dict[str, Any], version: int) -> None:
        self.add("registered_models", {k: model[k] for k in MODEL_ROW}, version)

    def version(self, row: dict[str, Any], version: int) -> None:
        self.add("model_versions", {k: row[k] for k in VERSION_ROW}, version)


def _model_change(w: _Writes, data: ev.RegisteredModelChange, offset: int, replayed: bool) -> Decision:
    s = w.state
    model = s.models.get(data.name)
    if data.op == "create":
        if model is not None and not (replayed and model["model_id"] == data.model_id):
            return _already_exists(data.name, model["model_id"] in s.prompts, _is_prompt(data.tags))
        model = {
            "model_id": data.model_id,
            "name": data.name,
            "creation_timestamp": data.time,
            "last_updated_timestamp": data.time,
            "description": data.description,
            "deployment_job_id": data.deployment_job_id,
            "deleted": 0,
        }
        s.models[data.name] = model
        s.versions.setdefault(data.model_id, {})
        s.aliases.setdefault(data.model_id, {})
        w.model(model, offset)
        _model_tags(w, model["model_id"], data.tags, offset)
        return ACCEPTED
    if model is None:
        return model_not_found(data.name)
    model_id = model["model_id"]
    match data.op:
        case "rename":
            new_name = data.new_name or ""
            holder = s.models.get(new_name)
            if holder is not None and holder is not model:
                return refused("RESOURCE_ALREADY_EXISTS", f"Registered Model (name={new_name}) already exists.")
            del s.models[data.name]
            model.update(name=new_name, last_updated_timestamp=data.time)
            s.models[new_name] = model
            w.model(model, offset)
            for row in s.versions[model_id].values():  # versions follow their model
                row.update(name=new_name, last_updated_timestamp=data.time)
                w.version(row, offset)
        case "update":
            model.update(description=data.description, last_updated_timestamp=data.time)
            if data.deployment_job_id is not None:
                model["deployment_job_id"] = data.deployment_job_id
            w.model(model, offset)
        case "delete":
            del s.models[data.name]
            model.update(deleted=1, last_updated_timestamp=data.time)
            w.model(model, offset)
            for row in s.versions[model_id].values():
                if not row["deleted"]:
                    row.update(deleted=1)
                    w.version(row, offset)
            for alias, number in s.aliases[model_id].items():
                w.add("registered_model_aliases", _alias(model_id, alias, number, deleted=True), offset)
            s.aliases[model_id] = {}
        case "set_tag" | "delete_tag":
            _model_tags(w, model_id, data.tags, offset)
        case "set_alias":
            if s.live_version(model, data.version) is None:
                return version_not_found(data.name, data.version)
            assert data.alias is not None and data.version is not None
            s.aliases[model_id][data.alias] = data.version
            w.add("registered_model_aliases", _alias(model_id, data.alias, data.version), offset)
        case "delete_alias":
            gone = s.aliases[model_id].pop(data.alias or "", None)
            if gone is not None:
                w.add("registered_model_aliases", _alias(model_id, data.alias or "", gone, deleted=True), offset)
        case _:
            raise StoreRejected(f"unknown registered model change {data.op!r}")
    return ACCEPTED


def _model_tags(w: _Writes, model_id: str, tags: Sequence[ev.Tag], offset: int) -> None:
    for tag in tags:
        w.add(TAGS_TABLE, {"model_id": model_id, **_tag(tag)}, offset)
        if tag.key == IS_PROMPT_TAG:
            if not tag.deleted and tag.value.lower() == "true":
                w.state.prompts.add(model_id)
            else:
                w.state.prompts.discard(model_id)


def _version_change(w: _Writes, data: ev.ModelVersionChange, offset: int, recorded: Decision | None) -> Decision:
    s = w.state
    model = s.models.get(data.name)
    if model is None:
        return model_not_found(data.name)
    model_id = model["model_id"]
    if data.op == "create":
        versions = s.versions[model_id]
        # a replayed create keeps the number it was given; a new one takes the next after every version ever
        number = int(recorded.result) if recorded is not None else max(versions, default=0) + 1
        row = {
            "model_id": model_id,
            "version": number,
            "name": data.name,
            "creation_timestamp": data.time,
            "last_updated_timestamp": data.time,
            "user_id": data.user_id,
            "current_stage": "None",
            "description": data.description,
            "source": data.source or "",
            "storage_location": data.storage_location,
            "run_id": data.run_id,
            "run_link": data.run_link,
            "logged_model_id": data.model_id,
            "status": "READY",
            "deleted": 0,
        }
        versions[number] = row
        w.version(row, offset)
        _version_tags(w, model_id, number, data.tags, offset)
        model["last_updated_timestamp"] = data.time
        w.model(model, offset)
        return Decision(True, result=str(number))
    live = s.live_version(model, data.version)
    if live is None or data.version is None:
        return version_not_found(data.name, data.version)
    row = live
    match data.op:
        case "update":
            row.update(description=data.description, last_updated_timestamp=data.time)
            w.version(row, offset)
        case "transition":
            stage = data.stage or "None"
            if data.archive_existing_versions:
                for other in s.versions[model_id].values():
                    if other is not row and not other["deleted"] and other["current_stage"] == stage:
                        other.update(current_stage="Archived", last_updated_timestamp=data.time)
                        w.version(other, offset)
            row.update(current_stage=stage, last_updated_timestamp=data.time)
            w.version(row, offset)
            model["last_updated_timestamp"] = data.time
            w.model(model, offset)
        case "delete":
            for alias, number in list(s.aliases[model_id].items()):
                if number == data.version:  # a deleted version's aliases go with it, as in the stock server
                    del s.aliases[model_id][alias]
                    w.add("registered_model_aliases", _alias(model_id, alias, number, deleted=True), offset)
            # kept, redacted, so its number is never given again (the stock SQL store's Deleted_Internal)
            row.update(
                deleted=1,
                current_stage="Deleted_Internal",
                last_updated_timestamp=data.time,
                description=None,
                user_id=None,
                source="REDACTED-SOURCE-PATH",
                run_id="REDACTED-RUN-ID",
                run_link="REDACTED-RUN-LINK",
            )
            w.version(row, offset)
            model["last_updated_timestamp"] = data.time
            w.model(model, offset)
        case "set_tag" | "delete_tag":
            _version_tags(w, model_id, data.version, data.tags, offset)
        case _:
            raise StoreRejected(f"unknown model version change {data.op!r}")
    return ACCEPTED


def _version_tags(w: _Writes, model_id: str, number: int, tags: Sequence[ev.Tag], offset: int) -> None:
    for tag in tags:
        w.add("model_version_tags", {"model_id": model_id, "version": number, **_tag(tag)}, offset)


def _alias(model_id: str, alias: str, version: int, deleted: bool = False) -> dict[str, Any]:
    return {"model_id": model_id, "alias": alias, "version": version, "deleted": int(deleted)}


def _tag(tag: ev.Tag) -> dict[str, Any]:
    return {"key": tag.key, "value": tag.value, "deleted": 1 if tag.deleted else 0}


class RegistrySink(Sink):
    name = "registry"
    family = REGISTRY

    def __init__(self, tables: TableStore) -> None:
        self._tables = tables
        self._recorded = RecordedDecisions(tables)

    def rows(self, event: Event) -> int:
        return 1 + len(getattr(event.data, "tags", ()))

    def revoked(self, partitions: Sequence[Partition]) -> None:
        self._recorded.forget(partitions)

    def write(self, events: Sequence[Event]) -> None:
        with self._recorded.writing() as recorded:
            state = RegistryState(self._tables, events, recorded)
            w = _Writes(state)
            for event in events:
                decision = _decide(w, event, state.recorded.get((event.message.partition, event.message.offset)))
                w.record(event, decision)
            w.insert(self._tables, recorded)


def _decide(w: _Writes, event: Event, recorded: Decision | None) -> Decision:
    """Apply one event. The checks come before any change in each branch, so a refusal has changed
    nothing. Replay: a recorded refusal is not applied at all; a recorded acceptance is applied again
    over tables that may already hold the batch's rows (a create finds its own model), and where the
    tables show a later state of the batch (the model deleted further on) the rows written before the
    crash stand, since they are versioned by the same offsets."""
    if recorded is not None and not recorded.ok:
        return recorded
    data, offset = event.data, event.message.offset
    if isinstance(data, ev.RegisteredModelChange):
        decision = _model_change(w, data, offset, recorded is not None)
    elif isinstance(data, ev.ModelVersionChange):
        decision = _version_change(w, data, offset, recorded)
    else:
        raise StoreRejected(f"registry sink does not know event type {type(data).__name__}")
    return recorded if recorded is not None else decision
