"""Every example of every schema version decodes with the newest reader schema and goes through its sink.

Adding ``<family>.v<N+1>.avsc`` that cannot read what ``v<N>`` wrote (a field without a default, a
changed type) fails ``test_every_version_decodes_with_the_newest_reader``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastavro import json_reader

from consumers.artifacts import ArtifactSink
from consumers.metadata import MetadataSink
from consumers.metrics import MetricsSink
from consumers.registry import RegistrySink
from consumers.sink import Event, Sink
from schemas import codec
from trackstream.log import Message, Partition
from trackstream.objects.local import LocalObjectStore
from trackstream.tables.chdb import ChdbStore

EXAMPLES = codec.AVRO_DIR / "examples"
VERSIONS = [v for versions in codec.registry().values() for v in versions]


def examples(version: codec.SchemaVersion) -> list[dict[str, Any]]:
    """The example records of one version, read with that version's own schema (Avro JSON encoding)."""
    path = EXAMPLES / f"{version.family}.v{version.version}.json"
    lines = "\n".join(json.dumps(r) for r in json.loads(path.read_text()))
    return [r for r in json_reader(io.StringIO(lines), version.schema) if isinstance(r, dict)]


def test_every_schema_version_has_examples() -> None:
    for v in VERSIONS:
        path = EXAMPLES / f"{v.family}.v{v.version}.json"
        assert path.is_file(), f"{path.name} is missing: every schema version needs examples"
        assert examples(v), f"{path.name} holds no records"


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"{v.family}.v{v.version}")
def test_every_version_decodes_with_the_newest_reader(version: codec.SchemaVersion) -> None:
    newest = codec.latest(version.family)
    for record in examples(version):
        decoded = codec.decode(codec.encode(version.family, record, version.version))
        assert decoded.family == version.family
        assert decoded.version == version.version
        # the newest reader's fields are all present (defaults filled in for older writers)
        fields = {f["name"] for f in newest.schema["fields"]}
        assert set(decoded.record) == fields


def _sink(family: str, tmp_path: Path) -> tuple[Sink, ChdbStore]:
    tables = ChdbStore(tmp_path / "chdb")
    tables.migrate()
    match family:
        case codec.METRICS:
            return MetricsSink(tables), tables
        case codec.METADATA:
            return MetadataSink(tables), tables
        case codec.ARTIFACT:
            return ArtifactSink(tables, LocalObjectStore(tmp_path / "objects")), tables
        case codec.REGISTRY:
            return RegistrySink(tables), tables
    raise AssertionError(f"no sink for family {family}")


TABLES = {
    codec.METRICS: ("metrics", "latest_metrics"),
    codec.METADATA: ("experiments", "experiment_tags", "runs", "params", "run_tags"),
    codec.ARTIFACT: ("artifacts",),
    codec.REGISTRY: (
        "registered_models",
        "model_versions",
        "registered_model_tags",
        "model_version_tags",
        "registered_model_aliases",
        "decisions",
    ),
}
# Tables that only a later version's examples fill: (family, first version) -> tables.
TABLES_SINCE = {
    (codec.METADATA, 2): (
        "logged_models", "logged_model_params", "logged_model_tags",
        "run_dataset_inputs", "run_model_inputs", "run_model_outputs",
    ),
    (codec.METADATA, 3): ("decisions",),
}  # fmt: skip


def tables_of(version: codec.SchemaVersion) -> tuple[str, ...]:
    extra = [t for (family, since), ts in TABLES_SINCE.items() for t in ts
             if family == version.family and version.version >= since]  # fmt: skip
    return (*TABLES[version.family], *extra)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"{v.family}.v{v.version}")
def test_every_example_goes_through_its_sink(version: codec.SchemaVersion, tmp_path: Path) -> None:
    sink, tables = _sink(version.family, tmp_path)
    try:
        events = []
        for offset, record in enumerate(examples(version)):
            payload = codec.encode(version.family, record, version.version)
            message = Message(Partition(version.family, 0), offset, b"k", payload)
            events.append(Event(message, codec.decode(payload)))
        sink.write(events)
        sink.write(events)  # a replay is harmless
        for table in tables_of(version):
            (total,) = tables.query(f"SELECT count() FROM {table} FINAL")[0]
            assert total > 0, f"{version.family}.v{version.version} examples wrote nothing to {table}"
        if version.family == codec.METRICS:
            points = sum(len(e.decoded.record["values"]) for e in events)
            assert tables.query("SELECT count() FROM metrics FINAL") == [(points,)]
    finally:
        tables.close()


def test_metadata_v3_examples_are_decided_in_log_order(tmp_path: Path) -> None:
    """The v3 examples create an experiment, rename it, create a second one with the new name (refused),
    merge a field-level run update and change a param (refused): what the tables hold says so."""
    version = codec.version_of(codec.METADATA, 3)
    sink, tables = _sink(codec.METADATA, tmp_path)
    try:
        events = []
        for offset, record in enumerate(examples(version)):
            payload = codec.encode(codec.METADATA, record, 3)
            events.append(Event(Message(Partition("m", 0), offset, b"k", payload), codec.decode(payload)))
        sink.write(events)
        sink.write(events)  # a replay reuses the recorded decisions
        assert tables.query("SELECT experiment_id, name FROM experiments FINAL") == [("1", "renamed experiment")]
        refused = tables.query("SELECT log_offset, error_code FROM decisions FINAL WHERE ok = 0 ORDER BY log_offset")
        assert [code for _, code in refused] == ["RESOURCE_ALREADY_EXISTS", "INVALID_PARAMETER_VALUE"]
        assert tables.query("SELECT value FROM params FINAL WHERE key = 'lr'") == [("0.1",)]
        assert tables.query("SELECT count() FROM run_tags FINAL WHERE key = 'refused'") == [(0,)]
        # the field-level update set status and end_time, and kept the stage it did not name
        assert tables.query("SELECT status, end_time, lifecycle_stage FROM runs FINAL") == [
            ("FINISHED", 1700000009000, "active")
        ]
    finally:
        tables.close()


def test_registry_v1_examples_are_decided_in_log_order(tmp_path: Path) -> None:
    """The registry examples create a model with two versions, move version 1 to Production, point an
    alias at version 2, create the name again (refused), rename the model (its versions follow), tag
    version 2 under the new name, and delete a version of a model that does not exist (refused)."""
    version = codec.version_of(codec.REGISTRY, 1)
    sink, tables = _sink(codec.REGISTRY, tmp_path)
    try:
        events = []
        for offset, record in enumerate(examples(version)):
            payload = codec.encode(codec.REGISTRY, record, 1)
            events.append(Event(Message(Partition("r", 0), offset, b"registry", payload), codec.decode(payload)))
        sink.write(events)
        sink.write(events)  # a replay reuses the recorded decisions and numbers
        assert tables.query("SELECT model_id, name, deleted FROM registered_models FINAL") == [
            ("m-1", "renamed-model", 0)
        ]
        assert tables.query("SELECT version, name, current_stage FROM model_versions FINAL ORDER BY version") == [
            (1, "renamed-model", "Production"),
            (2, "renamed-model", "None"),
        ]
        assert tables.query("SELECT alias, version FROM registered_model_aliases FINAL") == [("champion", 2)]
        assert tables.query("SELECT version, key, value FROM model_version_tags FINAL ORDER BY version, key") == [
            (1, "k", "v"),
            (2, "validated", "yes"),
        ]
        decided = tables.query("SELECT log_offset, ok, error_code, result FROM decisions FINAL ORDER BY log_offset")
        assert [(o, ok, code) for o, ok, code, _ in decided if not ok] == [
            (5, 0, "RESOURCE_ALREADY_EXISTS"),
            (8, 0, "RESOURCE_DOES_NOT_EXIST"),
        ]
        assert [r for o, ok, _, r in decided if o in (1, 2)] == ["1", "2"]
    finally:
        tables.close()
