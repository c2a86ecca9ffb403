"""The metadata sink decides in offset order, and a repeated batch (retry after an outage, replay
after a crash between write and commit) reuses the decisions it recorded instead of deciding again
from tables that may already hold the batch's later events."""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from consumers.metadata import MetadataSink
from consumers.sink import Event
from schemas import codec
from trackstream.errors import StoreUnavailable
from trackstream.log import Message, Partition
from trackstream.tables import TableStore
from trackstream.tables.base import Row
from trackstream.tables.chdb import ChdbStore

EXP = {"artifact_location": "a", "lifecycle_stage": "active", "creation_time": 1, "last_update_time": 1}


class StateInsertFailsOnce(TableStore):
    """chDB whose first insert into a state table (not ``decisions``) fails as an outage would."""

    def __init__(self, inner: ChdbStore) -> None:
        self.inner = inner
        self.failed = False

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.inner.command(sql, params)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        return self.inner.query(sql, params)

    def insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        if table != "decisions" and not self.failed:
            self.failed = True
            raise StoreUnavailable("injected: the store went away after the decisions were written")
        self.inner.insert(table, columns)

    def query_text(self, sql: str, params: Mapping[str, Any] | None = None) -> list[bytes]:
        return self.inner.query_text(sql, params)

    def query_lines(self, sql: str, params: Mapping[str, Any] | None = None) -> Generator[list[bytes], None, None]:
        return self.inner.query_lines(sql, params)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def tables(tmp_path: Path) -> Iterator[ChdbStore]:
    store = ChdbStore(tmp_path / "chdb")
    store.migrate()
    yield store
    store.close()


def events(*bodies: tuple[str, dict[str, Any]], first: int = 0) -> list[Event]:
    out = []
    for offset, (kind, body) in enumerate(bodies, start=first):
        payload = codec.encode(codec.METADATA, {"event": (f"trackstream.{kind}", body)})
        out.append(Event(Message(Partition("meta", 0), offset, b"k", payload), codec.decode(payload)))
    return out


def test_a_replayed_batch_keeps_its_decisions(tables: ChdbStore) -> None:
    batch = events(
        ("ExperimentState", {"experiment_id": "1", "name": "X", **EXP, "op": "create"}),
        ("ExperimentState", {"experiment_id": "1", "name": "Y", **EXP, "op": "rename"}),
        ("ExperimentState", {"experiment_id": "2", "name": "X", **EXP, "op": "create"}),
    )
    sink = MetadataSink(tables)
    sink.write(batch)
    # Deciding again from these tables would refuse offset 0 (experiment 1 exists, named Y now).
    sink.write(batch)
    assert tables.query("SELECT log_offset, ok FROM decisions ORDER BY log_offset") == [
        (0, 1), (0, 1), (1, 1), (1, 1), (2, 1), (2, 1)
    ]  # fmt: skip
    assert tables.query("SELECT experiment_id, name FROM experiments FINAL ORDER BY experiment_id") == [
        ("1", "Y"), ("2", "X")
    ]  # fmt: skip


def test_an_outage_between_decisions_and_state_rows(tables: ChdbStore) -> None:
    flaky = StateInsertFailsOnce(tables)
    batch = events(
        ("RunData", {"run_id": "r", "params": [{"key": "p", "value": "A"}], "tags": []}),
        ("RunData", {"run_id": "r", "params": [{"key": "p", "value": "B"}], "tags": [{"key": "t", "value": "v",
                                                                                      "deleted": False}]}),
        ("RunData", {"run_id": "r", "params": [{"key": "p", "value": "A"}, {"key": "q", "value": "1"}], "tags": []}),
    )  # fmt: skip
    sink = MetadataSink(flaky)
    with pytest.raises(StoreUnavailable):
        sink.write(batch)
    assert tables.query("SELECT count() FROM params") == [(0,)]  # decisions first, state rows not yet
    sink.write(batch)  # the pipeline's retry
    assert tables.query("SELECT DISTINCT log_offset, ok, error_code FROM decisions ORDER BY log_offset") == [
        (0, 1, ""), (1, 0, "INVALID_PARAMETER_VALUE"), (2, 1, "")
    ]  # fmt: skip
    assert tables.query("SELECT key, value FROM params FINAL ORDER BY key") == [("p", "A"), ("q", "1")]
    assert tables.query("SELECT count() FROM run_tags") == [(0,)]  # the refused event's tag


def test_run_changes_merge_field_by_field_in_offset_order(tables: ChdbStore) -> None:
    run = {"run_id": "r", "experiment_id": "1", "run_name": "n", "user_id": "u", "status": "RUNNING",
           "start_time": 1, "end_time": None, "artifact_uri": "a", "lifecycle_stage": "active",
           "deleted_time": None}  # fmt: skip
    sink = MetadataSink(tables)
    sink.write(events(("RunState", {**run, "changed": None})))
    # two replicas read the same row; one finishes the run, the other deletes it
    sink.write(
        events(
            ("RunState", {**run, "status": "FINISHED", "end_time": 9, "changed": ["status", "end_time"]}),
            ("RunState", {**run, "lifecycle_stage": "deleted", "deleted_time": 7,
                          "changed": ["lifecycle_stage", "deleted_time"]}),
            first=1,
        )
    )  # fmt: skip
    assert tables.query("SELECT status, end_time, lifecycle_stage, deleted_time FROM runs FINAL") == [
        ("FINISHED", 9, "deleted", 7)
    ]


def test_a_runs_first_dataset_input_of_a_name_and_digest_is_kept(tables: ChdbStore) -> None:
    """MLflow keeps the first input of a (name, digest) in a run and ignores repeats: first by offset,
    whichever gateway produced it, in one batch or across batches."""

    def inputs(source: str) -> tuple[str, dict[str, Any]]:
        dataset: dict[str, Any] = {"name": "d", "digest": "1", "source_type": "local", "source": source, "schema": None,
                   "profile": None, "tags": []}  # fmt: skip
        return "RunInputs", {"run_id": "r", "experiment_id": "1", "datasets": [dataset], "model_ids": []}

    sink = MetadataSink(tables)
    sink.write(events(inputs("first"), inputs("second")))
    sink.write(events(inputs("third"), first=2))
    assert tables.query("SELECT source FROM run_dataset_inputs FINAL") == [("first",)]


class CountsReads(TableStore):
    """chDB that counts the queries reading table ``of``."""

    def __init__(self, inner: ChdbStore, of: str = "decisions") -> None:
        self.inner = inner
        self.of = of
        self.reads = 0

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.inner.command(sql, params)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        self.reads += f"FROM {self.of} " in sql
        return self.inner.query(sql, params)

    def insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        self.inner.insert(table, columns)

    def query_text(self, sql: str, params: Mapping[str, Any] | None = None) -> list[bytes]:
        return self.inner.query_text(sql, params)

    def query_lines(self, sql: str, params: Mapping[str, Any] | None = None) -> Generator[list[bytes], None, None]:
        return self.inner.query_lines(sql, params)

    def close(self) -> None:
        self.inner.close()


def creates(*names: str, first: int = 0) -> list[Event]:
    return events(
        *(("ExperimentState", {"experiment_id": str(first + i), "name": n, **EXP, "op": "create"})
          for i, n in enumerate(names)),
        first=first,
    )  # fmt: skip


def test_a_new_sink_reuses_decisions_recorded_past_its_first_batch(tables: ChdbStore) -> None:
    """A sink that crashed after recording three decisions, and its successor re-reading them in smaller
    batches: the second batch too is answered from the table, not decided again."""
    batch = events(
        ("ExperimentState", {"experiment_id": "1", "name": "X", **EXP, "op": "create"}),
        ("ExperimentState", {"experiment_id": "1", "name": "Y", **EXP, "op": "rename"}),
        ("ExperimentState", {"experiment_id": "2", "name": "X", **EXP, "op": "create"}),
    )
    MetadataSink(tables).write(batch)
    successor = MetadataSink(tables)
    successor.write(batch[:2])
    # Deciding offset 2 again from these tables would refuse it (experiment 2 exists).
    successor.write(batch[2:])
    assert tables.query("SELECT log_offset, min(ok) FROM decisions GROUP BY log_offset ORDER BY log_offset") == [
        (0, 1), (1, 1), (2, 1)
    ]  # fmt: skip


def test_a_running_sink_reads_decisions_only_where_one_can_be_recorded(tables: ChdbStore) -> None:
    counted = CountsReads(tables)
    sink = MetadataSink(counted)
    sink.write(creates("a", "b"))
    assert counted.reads == 1  # what the table held for the partition: nothing
    sink.write(creates("c", "d", first=2))
    sink.write(creates("e", first=4))
    assert counted.reads == 1  # past what it recorded itself: no decision can be there
    sink.write(creates("e", first=4))  # the same batch again (a seek back): read back, not decided again
    assert counted.reads == 2
    sink.revoked([Partition("meta", 0)])  # another member may have recorded past it meanwhile
    sink.write(creates("f", first=5))
    assert counted.reads == 3
    assert tables.query("SELECT min(ok), count() FROM decisions") == [(1, 7)]


def created(run_id: str) -> tuple[str, dict[str, Any]]:
    return "RunState", {"run_id": run_id, "experiment_id": "1", "run_name": "n", "user_id": "u", "status": "RUNNING",
                        "start_time": 1, "end_time": None, "artifact_uri": "a", "lifecycle_stage": "active",
                        "deleted_time": None, "changed": None}  # fmt: skip


def params(run_id: str, **values: str) -> tuple[str, dict[str, Any]]:
    return "RunData", {"run_id": run_id, "params": [{"key": k, "value": v} for k, v in values.items()], "tags": []}


def test_params_of_runs_the_sink_created_are_decided_without_reading_the_params_table(tables: ChdbStore) -> None:
    MetadataSink(tables).write(events(params("old", a="1"), first=0))  # a run a predecessor wrote
    counted = CountsReads(tables, "params")
    sink = MetadataSink(counted)
    sink.write(events(created("r"), params("r", a="1"), first=1))
    sink.write(events(params("r", a="1"), params("r", a="2"), params("r", b="3"), first=3))
    assert counted.reads == 0  # created in the first batch: everything it holds went through this sink
    sink.write(events(params("old", a="9"), first=6))
    assert counted.reads == 1  # created before this sink: read from the table
    sink.revoked([Partition("meta", 0)])  # another member may have written params of "r" meanwhile
    sink.write(events(params("r", b="4"), first=7))
    assert counted.reads == 2
    assert tables.query("SELECT log_offset, ok FROM decisions ORDER BY log_offset") == [
        (0, 1), (2, 1), (3, 1), (4, 0), (5, 1), (6, 0), (7, 0)
    ]  # fmt: skip
    assert sorted(tables.query("SELECT run_id, key, value FROM params FINAL")) == [
        ("old", "a", "1"), ("r", "a", "1"), ("r", "b", "3")
    ]  # fmt: skip
