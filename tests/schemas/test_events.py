"""Typed events: each class has exactly the fields of its Avro record in the newest schema, encodes
and decodes to itself, and knows its family and key."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from schemas import codec, events
from schemas.events import Event
from tests.schemas.test_examples import VERSIONS, examples


def _records(schema: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Every named record of a parsed schema, by full name."""
    if isinstance(schema, list):
        for s in schema:
            _records(s, out)
    elif isinstance(schema, dict):
        if schema.get("type") == "record":
            out[schema["name"]] = schema
            for f in schema["fields"]:
                _records(f["type"], out)
        elif schema.get("type") == "array":
            _records(schema["items"], out)
    return out


NEWEST = {name: record for f in codec.registry() for name, record in _records(codec.latest(f).schema, {}).items()}
WRAPPERS = {codec.latest(f).schema["name"] for f in codec.WRAPPED}  # MetadataEvent: a union holder, not an event


def _nullable(avro_type: Any) -> bool:
    return isinstance(avro_type, list) and "null" in avro_type


def test_every_record_of_the_newest_schemas_has_a_class_and_every_class_a_record() -> None:
    assert set(NEWEST) - WRAPPERS == set(events.TYPES)


@pytest.mark.parametrize("name", sorted(events.TYPES))
def test_each_class_matches_its_record(name: str) -> None:
    cls = events.TYPES[name]
    record = NEWEST[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert list(fields) == [f["name"] for f in record["fields"]], "same fields, in schema order"
    for avro_field in record["fields"]:
        field = fields[avro_field["name"]]
        has_default = field.default is not dataclasses.MISSING
        # the class requires exactly what the schema requires (a field with a schema default has the same one)
        assert has_default == ("default" in avro_field), f"{name}.{field.name}: default in class and schema differ"
        hint = str(field.type)
        assert _nullable(avro_field["type"]) == ("None" in hint), f"{name}.{field.name}: nullability differs"


@pytest.mark.parametrize("cls", events.EVENTS, ids=lambda c: c.__name__)
def test_each_event_names_its_family(cls: type[Event]) -> None:
    family = cls.FAMILY
    assert family in codec.registry()
    if family in codec.WRAPPED:
        assert any(member["name"] == cls.RECORD for member in codec.latest(family).schema["fields"][0]["type"])
    else:
        assert codec.latest(family).schema["name"] == cls.RECORD


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"{v.family}.v{v.version}")
def test_every_example_decodes_to_a_typed_event_that_encodes_to_the_same_record(
    version: codec.SchemaVersion,
) -> None:
    for record in examples(version):
        decoded = codec.decode(codec.encode(version.family, record, version.version))
        event = decoded.event
        assert isinstance(event, Event) and version.family == event.FAMILY
        again = codec.decode(codec.encode(event))
        assert again.event == event
        assert again.record == decoded.record
        assert again.version == codec.latest(version.family).version


@pytest.mark.parametrize("cls", events.EVENTS, ids=lambda c: c.__name__)
def test_each_event_names_its_key(cls: type[Event]) -> None:
    """Exactly one of KEY_FIELD (a field of the record) or FIXED_KEY says where the message key comes from."""
    assert bool(cls.KEY_FIELD) != bool(cls.FIXED_KEY)
    if cls.KEY_FIELD:
        assert cls.KEY_FIELD in {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]


def test_keys_follow_the_entity() -> None:
    tags = [events.Tag(key="k", value="v")]
    assert events.ExperimentTags(experiment_id="7", tags=tags).key == "7"
    exp = events.ExperimentState(experiment_id="7", name="n", artifact_location="a", lifecycle_stage="active",
                                 creation_time=1, last_update_time=1, op="create")  # fmt: skip
    assert exp.key == events.EXPERIMENTS_KEY  # every experiment change in one partition
    assert events.RunData(run_id="r1", params=[], tags=tags).key == "r1"
    assert events.LoggedModelData(model_id="m-1", params=[], tags=[]).key == "m-1"
    art = events.ArtifactEvent(path="1/r/artifacts/a.txt", op="PUT", content=b"x", size=1, sha256="s", time=1)
    assert art.key == "1/r/artifacts/a.txt"
    batch = events.MetricBatch(run_id="r1", key_names=["a", "b"], key_index=[1, 0], values=[1.0, 2.0],
                               timestamps=[1, 2], steps=[0, 0])  # fmt: skip
    assert batch.key == "r1"
    assert list(batch.point_keys()) == ["b", "a"]


def test_the_dict_form_builds_the_same_event_with_defaults() -> None:
    body = {"run_id": "r1", "params": [{"key": "p", "value": "1"}], "tags": [{"key": "t", "value": "v"}]}
    event = events.metadata_event("RunData", body)
    assert event == events.RunData(
        run_id="r1", params=[events.Param(key="p", value="1")], tags=[events.Tag(key="t", value="v", deleted=False)]
    )
    with pytest.raises(ValueError, match="unknown metadata event kind"):
        events.metadata_event("RunStatus", body)


def test_a_metric_batch_keeps_its_columns() -> None:
    """The hot path builds no per-point objects: the decoded event holds the decoded column lists."""
    values = [float(i) for i in range(1000)]
    batch = events.MetricBatch(run_id="r", keys=["loss"] * 1000, values=values, timestamps=[1] * 1000,
                               steps=list(range(1000)))  # fmt: skip
    decoded = codec.decode(codec.encode(batch))
    event = decoded.event
    assert isinstance(event, events.MetricBatch)
    assert event.values is decoded.record["values"]
    assert list(event.values) == values


def test_a_newer_schema_is_told_apart_from_a_corrupt_message() -> None:
    from tests.upgrade.schemas import CURRENT, NEXT

    state = events.RunState(run_id="r", experiment_id="0", run_name="n", user_id="u", status="RUNNING",
                            start_time=1, artifact_uri="a", lifecycle_stage="active")  # fmt: skip
    payload = NEXT.encode_event(state)
    with pytest.raises(codec.NewerSchema, match=r"metadata\.v4, newer than this process's metadata\.v3"):
        CURRENT.decode(payload, [NEXT.header(codec.METADATA)])
    with pytest.raises(codec.InvalidMessage):  # no header naming a newer version: corrupt, dead-lettered
        CURRENT.decode(payload)
    with pytest.raises(codec.InvalidMessage):
        CURRENT.decode(payload, [("schema", b"metadata.v3")])
    assert NEXT.decode(payload).event == state  # the next release's consumer reads it
    assert NEXT.decode(CURRENT.encode_event(state)).event == state  # and this release's messages
