"""Searches compiled to SQL, on chDB and on the server: ordering, paging and dataset filters."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.reads.conftest import Insert, rows
from trackstream.reads import TrackingReader, search
from trackstream.reads.store import Page
from trackstream.tables import TableStore


def _runs(put: Insert) -> None:
    # name, start_time, latest loss (None: never logged, "nan"), lr param, tag
    specs: list[tuple[str, int, float | str | None, str | None, str | None]] = [
        ("a", 1, 0.9, "0.1", "x"),
        ("b", 2, 0.5, "0.2", None),
        ("c", 3, "nan", None, "y"),
        ("d", 4, None, "0.3", "x"),
    ]
    for name, start, loss, lr, tag in specs:
        put("runs", 1, run_id=f"r{name}", run_name=name, start_time=start)
        if loss is not None:
            nan = loss == "nan"
            for step, value, is_nan in ((0, 7.0, 0), (1, 0.0 if isinstance(loss, str) else loss, int(nan))):
                put(
                    "latest_metrics",
                    None,
                    run_id=f"r{name}",
                    key="loss",
                    step=step,
                    timestamp=1,
                    value=value,
                    is_nan=is_nan,
                )
        if lr is not None:
            put("params", 1, run_id=f"r{name}", key="lr", value=lr)
        if tag is not None:
            put("run_tags", 1, run_id=f"r{name}", key="kind", value=tag, deleted=0)


def _names(reader: TrackingReader, filter_string: str = "", order: list[str] | None = None) -> list[str]:
    page = reader.search_runs(["1"], ["active"], filter_string, order or [], 0, 100)
    return [r["info"]["run_name"] for r in page.items]


def test_run_filters_and_orders(table_store: TableStore, put: Insert) -> None:
    _runs(put)
    reader = TrackingReader(table_store)
    assert _names(reader) == ["d", "c", "b", "a"]
    assert _names(reader, "metrics.loss < 0.6") == ["b"]
    assert _names(reader, "metrics.loss != 0.5") == ["c", "a"]  # NaN satisfies only !=
    assert _names(reader, "metrics.loss > 1") == []  # the superseded step-0 value does not count
    assert _names(reader, "params.lr IS NULL") == ["c"]
    assert _names(reader, "tags.kind = 'x' AND params.lr LIKE '0.%'") == ["d", "a"]
    assert _names(reader, "attributes.start_time >= 2 AND run_name != 'c'") == ["d", "b"]
    # NaN after the values and a missing value last, in either direction
    assert _names(reader, order=["metrics.loss"]) == ["b", "a", "c", "d"]
    assert _names(reader, order=["metrics.loss DESC"]) == ["a", "b", "c", "d"]
    assert _names(reader, order=["params.lr DESC"]) == ["d", "b", "a", "c"]
    assert _names(reader, order=["tags.kind", "metrics.loss DESC"]) == ["a", "d", "c", "b"]
    assert _names(reader, order=["start_time ASC"]) == ["a", "b", "c", "d"]
    # a metric filtered and ordered by is aggregated once (the clause tests the ordering join)
    assert _names(reader, "metrics.loss != 0.5", ["metrics.loss"]) == ["a", "c"]
    assert _names(reader, "metrics.loss < 0.95 AND metrics.loss > 0.1", ["metrics.loss DESC"]) == ["a", "b"]
    assert _names(reader, "metrics.loss > 0.6 AND params.lr = '0.1'", ["metrics.loss", "run_name"]) == ["a"]


def test_run_pages(table_store: TableStore, put: Insert) -> None:
    _runs(put)
    reader = TrackingReader(table_store)
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = reader.search_runs(["1"], ["active"], "", ["metrics.loss"], offset, 3)
        seen += [r["info"]["run_name"] for r in page.items]
        offset = page.next_offset
    assert seen == ["b", "a", "c", "d"]
    assert reader.search_runs(["1"], ["active"], "", [], 0, 4).next_offset is None
    assert reader.search_runs([], ["active"], "", [], 0, 4).items == []


def test_dataset_filters(table_store: TableStore, put: Insert) -> None:
    for start, name in enumerate(("a", "b", "c")):
        put("runs", 1, run_id=f"r{name}", run_name=name, start_time=start)

    def dataset(run: str, name: str, digest: str, context: str | None) -> None:
        tags = json.dumps([{"key": "mlflow.data.context", "value": context}] if context else [])
        put("run_dataset_inputs", 1, run_id=run, experiment_id="1", name=name, digest=digest, source_type="s",
            source="s", schema=None, profile=None, tags=tags)  # fmt: skip

    dataset("ra", "train", "d1", "training")
    dataset("ra", "eval", "d2", "validation")
    dataset("rb", "train", "d3", None)
    reader = TrackingReader(table_store)
    assert _names(reader, "datasets.name = 'train'") == ["b", "a"]
    assert _names(reader, "dataset.name != 'train'") == ["a"]  # a run with some other dataset
    assert _names(reader, "dataset.digest IN ('d2', 'd3')") == ["b", "a"]
    assert _names(reader, "dataset.context = 'training'") == ["a"]
    assert _names(reader, "dataset.context LIKE '%ion' AND dataset.name = 'eval'") == ["a"]
    assert _names(reader, "dataset.context = 'nothing'") == []


def test_experiment_search(table_store: TableStore, put: Insert) -> None:
    for exp_id, name, created in (("2", "beta", 5), ("10", "alpha", 5), ("3", "gamma", 9)):
        put("experiments", 1, experiment_id=exp_id, name=name, artifact_location="x", lifecycle_stage="active",
            creation_time=created, last_update_time=created)  # fmt: skip
    put("experiment_tags", 1, experiment_id="2", key="team", value="a", deleted=0)
    put("experiment_tags", 1, experiment_id="10", key="team", value="b", deleted=0)
    reader = TrackingReader(table_store)

    def names(filter_string: str = "", order: list[str] | None = None, offset: int = 0, limit: int = 10) -> list[str]:
        return rows(reader.search_experiments(["active"], filter_string, order or [], offset, limit).items, "name")

    assert names() == ["gamma", "beta", "alpha"]  # creation_time DESC, then the id as a number (2 < 10)
    assert names(order=["experiment_id DESC"]) == ["alpha", "gamma", "beta"]
    assert names(order=["name"]) == ["alpha", "beta", "gamma"]
    assert names("tags.team IS NOT NULL", ["name DESC"]) == ["beta", "alpha"]
    assert names("tags.team ILIKE 'A'") == ["beta"]
    assert names("name LIKE '%a' AND creation_time < 9") == ["beta", "alpha"]
    assert names(offset=1, limit=1) == ["beta"]
    page = reader.search_experiments(["active"], "", [], 1, 1)
    assert page.next_offset == 2 and page.items[0]["tags"] == [{"key": "team", "value": "a"}]
    assert reader.search_experiments(["active"], "", [], 2, 1).next_offset is None


def test_logged_model_search(table_store: TableStore, put: Insert) -> None:
    for i, name in enumerate(("a", "b", "c")):
        put("logged_models", 1, model_id=f"m{name}", experiment_id="1", name=name, artifact_uri="x",
            creation_timestamp_ms=i, last_updated_timestamp_ms=i, status="LOGGED_MODEL_READY", status_message=None,
            lifecycle_stage="active", model_type="t" if name == "a" else None, source_run_id=None)  # fmt: skip

    def point(model: str, value: float, ts: int, dataset: str = "", is_nan: int = 0) -> None:
        put_metric = {"model_id": model, "key": "acc", "step": 0, "timestamp": ts, "run_id": "r", "value": value,
                      "is_nan": is_nan, "dataset_name": dataset, "dataset_digest": "x" if dataset else ""}  # fmt: skip
        table_store.insert("logged_model_metrics", {k: [v] for k, v in put_metric.items()})

    point("ma", 0.9, 1, "eval")
    point("ma", 0.2, 2)  # the latest point of ma without a dataset
    point("mb", 0.5, 1, "eval")
    point("mc", 0.0, 1, is_nan=1)
    reader = TrackingReader(table_store)

    def found(
        filter_string: str = "",
        order: list[dict[str, object]] | None = None,
        datasets: list[dict[str, str]] | None = None,
    ) -> list[str]:
        page = reader.search_logged_models(["1"], filter_string, datasets or [], order or [], 0, 10)
        return rows(page.items, "name")

    assert found() == ["c", "b", "a"]
    assert found("metrics.acc > 0.8") == ["a"]  # any point matches
    assert found("metrics.acc > 0.8", datasets=[{"dataset_name": "other"}]) == []
    assert found("", datasets=[{"dataset_name": "eval"}]) == ["b", "a"]
    assert found("model_type = 't'") == ["a"]
    assert found("model_type != 't'") == []  # NULL matches nothing, as in SQL
    assert found(order=[{"field_name": "metrics.acc"}]) == ["a", "b", "c"]  # a NaN latest sorts as missing
    assert found(order=[{"field_name": "metrics.acc", "dataset_name": "eval", "ascending": False}]) == ["a", "b", "c"]
    assert found(order=[{"field_name": "model_type"}, {"field_name": "name", "ascending": False}]) == ["a", "c", "b"]


def test_the_read_barrier_waits_only_for_a_valid_request(table_store: TableStore, put: Insert) -> None:
    _runs(put)
    reader = TrackingReader(table_store)
    calls: list[str] = []
    calls_of: tuple[Callable[[str], Page], ...] = (
        lambda f: reader.search_runs(["1"], ["active"], f, [], 0, 10, lambda: calls.append("runs")),
        lambda f: reader.search_experiments(["active"], f, [], 0, 10, lambda: calls.append("experiments")),
        lambda f: reader.search_logged_models(["1"], f, [], [], 0, 10, lambda: calls.append("models")),
    )
    for search_call in calls_of:
        with pytest.raises(search.SearchError):
            search_call("tags.t = 'a' OR tags.t = 'b'")
        search_call("tags.t = 'a'")
    assert calls == ["runs", "experiments", "models"]
