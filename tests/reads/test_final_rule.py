"""The FINAL rule (docs/SQL.md): a row whose newest version no longer matches a filter is not found.

Each row is written as two versions in two inserts, so they sit in two parts until a merge and only
FINAL collapses them. ClickHouse 18.16 moves a WHERE on a non-key column into PREWHERE, which runs
before FINAL: a read filtering a mutable column inside FINAL finds the old version. Every read goes
through ``trackstream.reads.current.current``; these cases run on chDB and on the server.
"""

from __future__ import annotations

import json

from tests.reads.conftest import Insert, rows
from trackstream.reads import TrackingReader
from trackstream.reads.current import RUNS, cond, current
from trackstream.tables import TableStore


def test_conditions_on_mutable_columns_run_outside_final() -> None:
    sql = current(RUNS, "run_id, status", [cond("run_id = %(id)s", "run_id"), cond("status = %(s)s", "status")])
    assert sql == (
        "SELECT run_id, status FROM (SELECT run_id, status FROM runs FINAL PREWHERE (run_id = %(id)s)) "
        "WHERE (status = %(s)s)"
    )
    # a column read only by the outer condition is carried out of the subquery
    sql = current(RUNS, "run_id", [cond("lifecycle_stage = 'active'", "lifecycle_stage")])
    assert (
        sql == "SELECT run_id FROM (SELECT run_id, lifecycle_stage FROM runs FINAL) WHERE (lifecycle_stage = 'active')"
    )
    # a condition reading a mutable and a fixed column is outside
    sql = current(RUNS, "run_id", [cond("run_id = 'x' OR status = 'y'", "run_id", "status")])
    assert "FINAL) WHERE (run_id = 'x' OR status = 'y')" in sql


def test_a_run_no_longer_matching_is_not_found(table_store: TableStore, put: Insert) -> None:
    put("runs", 1, run_id="r1", run_name="old", status="RUNNING")
    put("runs", 2, run_id="r1", run_name="new", status="FINISHED", end_time=5)
    put("runs", 1, run_id="r2", run_name="other", status="RUNNING")
    put("runs", 2, run_id="r2", run_name="other", status="RUNNING", lifecycle_stage="deleted", deleted_time=3)
    reader = TrackingReader(table_store)

    def names(filter_string: str, stages: tuple[str, ...] = ("active",)) -> list[str]:
        page = reader.search_runs(["1"], stages, filter_string, [], 0, 100)
        return [r["info"]["run_name"] for r in page.items]

    assert names("attributes.status = 'RUNNING'") == []
    assert names("attributes.status = 'FINISHED'") == ["new"]
    assert names("attributes.run_name = 'old'") == []
    assert names("") == ["new"]  # r2 was deleted
    assert names("", ("deleted",)) == ["other"]
    assert [r["run_id"] for r in reader.run_ids(["1"], ["active"])] == ["r1"]


def test_a_deleted_tag_stays_deleted(table_store: TableStore, put: Insert) -> None:
    put("runs", 1, run_id="r1", run_name="a")
    put("run_tags", 1, run_id="r1", key="k", value="v", deleted=0)
    put("run_tags", 2, run_id="r1", key="k", value="v", deleted=1)
    put("experiments", 1, experiment_id="1", name="e", artifact_location="x", lifecycle_stage="active",
        creation_time=1, last_update_time=1)  # fmt: skip
    put("experiment_tags", 1, experiment_id="1", key="k", value="v", deleted=0)
    put("experiment_tags", 2, experiment_id="1", key="k", value="v", deleted=1)
    put("artifacts", 1, path="1/r1/artifacts/f", size=1, sha256="", time=1, deleted=0)
    put("artifacts", 2, path="1/r1/artifacts/f", size=1, sha256="", time=2, deleted=1)
    reader = TrackingReader(table_store)
    assert reader.run_data(["r1"])["r1"]["tags"] == []
    assert reader.search_runs(["1"], ["active"], "tags.k = 'v'", [], 0, 10).items == []
    assert len(reader.search_runs(["1"], ["active"], "tags.k IS NULL", [], 0, 10).items) == 1
    assert reader.experiment_tags("1") == []
    assert reader.search_experiments(["active"], "tags.k = 'v'", [], 0, 10).items == []
    assert reader.artifact_files("1/r1") == []


def test_a_renamed_experiment_is_not_found_by_its_old_name(table_store: TableStore, put: Insert) -> None:
    exp = {"experiment_id": "1", "artifact_location": "x", "creation_time": 1}
    put("experiments", 1, **exp, name="old", lifecycle_stage="active", last_update_time=1)
    put("experiments", 2, **exp, name="new", lifecycle_stage="deleted", last_update_time=2)
    reader = TrackingReader(table_store)
    assert reader.experiment_by_name("old") is None
    assert rows([reader.experiment_by_name("new") or {}], "lifecycle_stage") == ["deleted"]
    assert reader.search_experiments(["active"], "", [], 0, 10).items == []
    assert reader.search_experiments(["deleted"], "name = 'old'", [], 0, 10).items == []
    assert rows(reader.search_experiments(["deleted"], "last_update_time = 2", [], 0, 10).items, "name") == ["new"]


def test_a_changed_logged_model_is_found_by_its_current_state(table_store: TableStore, put: Insert) -> None:
    model = {
        "model_id": "m1", "experiment_id": "1", "name": "m", "artifact_uri": "x", "creation_timestamp_ms": 1,
        "status_message": None, "model_type": None, "source_run_id": None,
    }  # fmt: skip
    put("logged_models", 1, **model, last_updated_timestamp_ms=1, status="LOGGED_MODEL_PENDING",
        lifecycle_stage="active")  # fmt: skip
    put("logged_models", 2, **model, last_updated_timestamp_ms=2, status="LOGGED_MODEL_READY",
        lifecycle_stage="active")  # fmt: skip
    put("logged_model_tags", 1, model_id="m1", key="k", value="v", deleted=0)
    put("logged_model_tags", 2, model_id="m1", key="k", value="w", deleted=0)
    reader = TrackingReader(table_store)

    def found(filter_string: str) -> list[str]:
        return rows(reader.search_logged_models(["1"], filter_string, [], [], 0, 10).items, "model_id")

    assert found("status = '1'") == []  # PENDING was the old version
    assert found("status = '2'") == ["m1"]
    assert found("tags.k = 'v'") == []
    assert found("tags.k = 'w'") == ["m1"]
    put("logged_models", 3, **model, last_updated_timestamp_ms=3, status="LOGGED_MODEL_READY",
        lifecycle_stage="deleted")  # fmt: skip
    assert found("") == []


def test_dataset_inputs_are_read_once_per_key(table_store: TableStore, put: Insert) -> None:
    put("runs", 1, run_id="r1", run_name="a")
    tags = json.dumps([{"key": "mlflow.data.context", "value": "train"}])
    for version in (1, 2):  # a replayed event: the same row twice
        put("run_dataset_inputs", version, run_id="r1", experiment_id="1", name="d", digest="x", source_type="s",
            source="s", schema=None, profile=None, tags=tags)  # fmt: skip
    reader = TrackingReader(table_store)
    assert len(reader.run_inputs(["r1"])["r1"]["dataset_inputs"]) == 1
