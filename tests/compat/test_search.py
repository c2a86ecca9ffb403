"""search_runs / search_experiments filters, ordering and paging through the official client."""

from __future__ import annotations

from typing import Any

import pytest
from mlflow.exceptions import MlflowException

from tests.conftest import Gateway


def _names(runs: Any) -> list[str]:
    return [r.info.run_name for r in runs]


def test_search_runs(gateway: Gateway, mlflow_client: Any) -> None:
    client = mlflow_client
    exp = client.create_experiment("search")
    specs = [("a", 0.9, "0.1", "x"), ("b", 0.5, "0.2", "y"), ("c", 0.1, "0.1", None), ("d", None, None, "x-2")]
    for i, (name, loss, lr, tag) in enumerate(specs):
        run = client.create_run(exp, run_name=name, start_time=1000 + i)
        rid = run.info.run_id
        if loss is not None:
            client.log_metric(rid, "loss", 5.0, step=0)  # superseded by the later step
            client.log_metric(rid, "loss", loss, step=1)
        if lr is not None:
            client.log_param(rid, "lr", lr)
        if tag is not None:
            client.set_tag(rid, "kind", tag)
        if name == "b":
            client.set_terminated(rid)

    def search(filt: str = "", order: list[str] | None = None) -> list[str]:
        return _names(client.search_runs([exp], filt, order_by=order))

    assert search() == ["d", "c", "b", "a"]  # start_time DESC
    assert search("metrics.loss < 0.6") == ["c", "b"]
    assert search("metrics.loss >= 0.5 and params.lr = '0.1'") == ["a"]
    assert search("params.lr != '0.1'") == ["b"]
    assert search("tags.kind LIKE 'x%'") == ["d", "a"]
    assert search("tags.kind ILIKE 'X-%'") == ["d"]
    assert search("params.lr IS NULL") == ["d"]
    assert search("tags.kind IS NOT NULL") == ["d", "b", "a"]
    assert search("attributes.status = 'FINISHED'") == ["b"]
    assert search("run_name = 'c'") == ["c"]
    assert search("attributes.start_time >= 1002") == ["d", "c"]
    assert search('tags.`mlflow.runName` = "a"') == ["a"]
    ids = {r.info.run_name: r.info.run_id for r in client.search_runs([exp])}
    assert search(f"attributes.run_id IN ('{ids['a']}', '{ids['c']}')") == ["c", "a"]
    assert search("datasets.name = 'train'") == []  # no run has logged a dataset yet
    # ORDER BY: metric (missing last either way), param, attribute; ties by start_time DESC.
    assert search(order=["metrics.loss ASC"]) == ["c", "b", "a", "d"]
    assert search(order=["metrics.loss DESC"]) == ["a", "b", "c", "d"]
    assert search(order=["params.lr DESC", "run_name ASC"]) == ["b", "a", "c", "d"]
    assert search(order=["attributes.start_time ASC"]) == ["a", "b", "c", "d"]

    page1 = client.search_runs([exp], max_results=3)
    assert _names(page1) == ["d", "c", "b"] and page1.token
    page2 = client.search_runs([exp], max_results=3, page_token=page1.token)
    assert _names(page2) == ["a"] and not page2.token

    for bad in (
        "metrics.loss < 'x'",
        "params.lr = 0.1",
        "metrics.loss < 1 OR params.lr = '0.1'",
        "bogus.key = 'x'",
        "attributes.nope = 'x'",
        "params.lr > '0.1'",
        "metrics.loss <",
        "tags.kind = 'x'; DROP TABLE runs",
    ):
        with pytest.raises(MlflowException) as exc:
            client.search_runs([exp], bad)
        assert exc.value.error_code == "INVALID_PARAMETER_VALUE", bad
    with pytest.raises(MlflowException) as exc:
        client.search_runs([exp], order_by=["metrics.loss SIDEWAYS"])
    assert exc.value.error_code == "INVALID_PARAMETER_VALUE"
    # A quote inside a value is data, not SQL.
    assert search("tags.kind = 'x'' OR 1=1 --'") == []
    assert gateway.runtime.tables.query("SELECT count() FROM runs FINAL WHERE experiment_id = %(e)s", {"e": exp}) == [
        (4,)
    ]


def test_search_experiments(gateway: Gateway, mlflow_client: Any) -> None:
    client = mlflow_client
    a = client.create_experiment("proj-alpha", tags={"owner": "ann"})
    b = client.create_experiment("proj-beta", tags={"owner": "bob"})
    client.create_experiment("other")

    def names(filt: str | None = None, order: list[str] | None = None) -> list[str]:
        return [e.name for e in client.search_experiments(filter_string=filt, order_by=order)]

    assert names("name LIKE 'proj-%'") == ["proj-beta", "proj-alpha"]  # creation_time DESC
    assert names("name LIKE 'PROJ-%'") == []
    assert names("name ILIKE 'PROJ-A%'") == ["proj-alpha"]
    assert names("tags.owner = 'bob'") == ["proj-beta"]
    assert names("name != 'other' AND tags.owner != 'bob'") == ["proj-alpha"]
    assert names("name LIKE 'proj-%'", ["name ASC"]) == ["proj-alpha", "proj-beta"]
    assert [e.experiment_id for e in client.search_experiments(filter_string="name = 'proj-beta'")] == [b]
    assert a != b
    for bad in ("name = proj", "nonsense.x = 'a'", "metrics.x > 1"):
        with pytest.raises(MlflowException) as exc:
            client.search_experiments(filter_string=bad)
        assert exc.value.error_code == "INVALID_PARAMETER_VALUE", bad


def test_search_runs_by_dataset(gateway: Gateway, mlflow_client: Any) -> None:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    client = mlflow_client
    exp = client.create_experiment("search-datasets")
    ids = {}
    for i, name in enumerate(("a", "b", "c")):
        ids[name] = client.create_run(exp, run_name=name, start_time=1000 + i).info.run_id

    def dataset(name: str, digest: str, context: str | None) -> DatasetInput:
        tags = [InputTag("mlflow.data.context", context)] if context else []
        return DatasetInput(Dataset(name, digest, "local", f"/data/{name}"), tags)

    client.log_inputs(ids["a"], [dataset("train", "d1", "training"), dataset("eval", "d2", "validation")])
    client.log_inputs(ids["b"], [dataset("train", "d3", None)])

    def search(filt: str) -> list[str]:
        return _names(client.search_runs([exp], filt))

    assert search("datasets.name = 'train'") == ["b", "a"]
    assert search("dataset.name != 'train'") == ["a"]  # a run with another dataset than 'train'
    assert search("dataset.digest IN ('d2', 'd3')") == ["b", "a"]
    assert search("dataset.context = 'training'") == ["a"]
    assert search("dataset.context LIKE '%ion' AND dataset.name = 'eval'") == ["a"]
    assert search("dataset.name = 'train' AND dataset.context = 'nothing'") == []
    with pytest.raises(MlflowException) as exc:
        client.search_runs([exp], "dataset.size = 'x'")
    assert exc.value.error_code == "INVALID_PARAMETER_VALUE"
