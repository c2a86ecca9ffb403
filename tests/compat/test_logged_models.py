"""Logged models (MLflow 3), run inputs/outputs and bulk metric history through the official client."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import mlflow.sklearn
import numpy as np
import pytest
import requests
from mlflow.entities import (
    Dataset,
    DatasetInput,
    InputTag,
    LoggedModelInput,
    LoggedModelOutput,
    LoggedModelStatus,
    Metric,
)
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LinearRegression

from tests.conftest import Gateway

X = np.array([[0.0], [1.0], [2.0], [3.0]])
Y = np.array([1.0, 3.0, 5.0, 7.0])


def test_sklearn_log_and_load_both_ways(gateway: Gateway, mlflow_client: Any, tmp_path: Path) -> None:
    model = LinearRegression().fit(X, Y)
    mlflow.set_experiment("sk")
    with mlflow.start_run() as run:
        mlflow.log_metric("rmse", 0.25)
        mlflow.log_metric("later", 1.0, step=3)
        info = mlflow.sklearn.log_model(model, name="reg")
    run_id = run.info.run_id

    assert re.fullmatch(r"m-[0-9a-f]{32}", info.model_id)
    logged = mlflow_client.get_logged_model(info.model_id)
    assert logged.status == LoggedModelStatus.READY
    assert logged.name == "reg"
    assert logged.source_run_id == run_id
    assert logged.experiment_id == run.info.experiment_id
    assert logged.artifact_location == f"mlflow-artifacts:/{run.info.experiment_id}/models/{info.model_id}/artifacts"
    # log_model links the run's metrics of the model's step (0) to the model
    assert [(m.key, m.value, m.step, m.run_id) for m in logged.metrics] == [("rmse", 0.25, 0, run_id)]

    expected = model.predict(X)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    by_run = mlflow.sklearn.load_model(f"runs:/{run_id}/reg", dst_path=str(tmp_path / "a"))
    by_id = mlflow.sklearn.load_model(f"models:/{info.model_id}", dst_path=str(tmp_path / "b"))
    np.testing.assert_array_equal(by_run.predict(X), expected)
    np.testing.assert_array_equal(by_id.predict(X), expected)

    # the UI lists a model's files through logged-models/{id}/artifacts/directories
    listing = requests.get(
        f"{gateway.url}/ajax-api/2.0/mlflow/logged-models/{info.model_id}/artifacts/directories", timeout=10
    ).json()
    assert listing["root_uri"] == logged.artifact_location
    names = {f["path"] for f in listing["files"]}
    assert {"MLmodel", "requirements.txt"} <= names

    got = mlflow_client.get_run(run_id)
    assert [(o.model_id, o.step) for o in got.outputs.model_outputs] == [(info.model_id, 0)]
    # search_runs carries the outputs too
    [found] = mlflow_client.search_runs([run.info.experiment_id])
    assert [o.model_id for o in found.outputs.model_outputs] == [info.model_id]


def test_logged_model_crud_and_search(gateway: Gateway, mlflow_client: Any) -> None:
    client = mlflow_client
    exp_id = client.create_experiment("lm")
    run = client.create_run(exp_id)
    run_id = run.info.run_id
    a = client.create_logged_model(
        exp_id, name="alpha", source_run_id=run_id, params={"lr": "0.1"}, tags={"t": "1"}, model_type="sk"
    )
    assert a.status == LoggedModelStatus.PENDING
    assert (a.params, a.tags, a.model_type) == ({"lr": "0.1"}, {"t": "1"}, "sk")
    time.sleep(0.005)
    b = client.create_logged_model(exp_id, name="beta")
    assert re.fullmatch(r"m-[0-9a-f]{32}", b.model_id)

    client.set_logged_model_tags(a.model_id, {"t": "2", "stage": "dev"})
    client.log_model_params(a.model_id, {"depth": "3"})
    client.delete_logged_model_tag(a.model_id, "stage")
    got = client.get_logged_model(a.model_id)
    assert got.tags == {"t": "2"}
    assert got.params == {"lr": "0.1", "depth": "3"}
    with pytest.raises(MlflowException) as no_tag:
        client.delete_logged_model_tag(a.model_id, "stage")
    assert no_tag.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    final = client.finalize_logged_model(a.model_id, LoggedModelStatus.READY)
    assert final.status == LoggedModelStatus.READY
    assert final.last_updated_timestamp >= final.creation_timestamp

    # default order: newest first
    assert [m.model_id for m in client.search_logged_models([exp_id])] == [b.model_id, a.model_id]
    assert [m.model_id for m in client.search_logged_models([exp_id], filter_string="name = 'alpha'")] == [a.model_id]
    assert [m.name for m in client.search_logged_models([exp_id], filter_string="params.lr = '0.1'")] == ["alpha"]
    assert [m.name for m in client.search_logged_models([exp_id], filter_string="name LIKE 'b%'")] == ["beta"]
    both = client.search_logged_models([exp_id], filter_string=f"source_run_id = '{run_id}' AND tags.t = '2'")
    assert [m.model_id for m in both] == [a.model_id]
    ordered = client.search_logged_models([exp_id], order_by=[{"field_name": "name", "ascending": True}])
    assert [m.name for m in ordered] == ["alpha", "beta"]
    page = client.search_logged_models([exp_id], max_results=1)
    assert len(page) == 1 and page.token
    rest = client.search_logged_models([exp_id], max_results=1, page_token=page.token)
    assert [m.model_id for m in rest] == [a.model_id] and not rest.token
    with pytest.raises(MlflowException) as bad_filter:
        client.search_logged_models([exp_id], filter_string="name = 'a' OR name = 'b'")
    assert bad_filter.value.error_code == "INVALID_PARAMETER_VALUE"

    client.delete_logged_model(b.model_id)
    assert [m.model_id for m in client.search_logged_models([exp_id])] == [a.model_id]
    with pytest.raises(MlflowException) as gone:
        client.get_logged_model(b.model_id)
    assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    deleted = requests.get(
        f"{gateway.url}/api/2.0/mlflow/logged-models/{b.model_id}", params={"allow_deleted": "true"}, timeout=10
    )
    assert deleted.json()["model"]["info"]["model_id"] == b.model_id

    # metrics logged with a model id appear on the model, and search can filter on them
    client.log_batch(run_id, metrics=[Metric("acc", 0.9, 1000, 1, model_id=a.model_id)])
    got = client.get_logged_model(a.model_id)
    assert [(m.key, m.value, m.step, m.model_id, m.run_id) for m in got.metrics] == [
        ("acc", 0.9, 1, a.model_id, run_id)
    ]
    assert [m.name for m in client.search_logged_models([exp_id], filter_string="metrics.acc > 0.5")] == ["alpha"]
    assert client.search_logged_models([exp_id], filter_string="metrics.acc > 0.95") == []


def test_logged_model_errors(gateway: Gateway, mlflow_client: Any) -> None:
    client = mlflow_client
    missing = "m-" + "0" * 32
    calls: tuple[Callable[[], Any], ...] = (
        lambda: client.get_logged_model(missing),
        lambda: client.finalize_logged_model(missing, LoggedModelStatus.READY),
        lambda: client.delete_logged_model(missing),
    )
    for call in calls:
        with pytest.raises(MlflowException) as err:
            call()
        assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as no_exp:
        client.create_logged_model("123456789")
    assert no_exp.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as bad_name:
        client.create_logged_model("0", name="a/b")
    assert bad_name.value.error_code == "INVALID_PARAMETER_VALUE"
    # (the client rewords the errors of set_logged_model_tags and log_model_params: checked on the wire)
    for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"):
        for method, path, body in (
            ("GET", "", None),
            ("PATCH", "/tags", {"tags": [{"key": "a", "value": "b"}]}),
            ("DELETE", "/tags/a", None),
            ("POST", "/params", {"params": [{"key": "a", "value": "b"}]}),
        ):
            resp = requests.request(
                method, f"{gateway.url}{prefix}/logged-models/{missing}{path}", json=body, timeout=10
            )
            assert resp.status_code == 404, (method, path)
            assert resp.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    created = requests.post(f"{gateway.url}/ajax-api/2.0/mlflow/logged-models", json={"experiment_id": "0"}, timeout=10)
    assert created.status_code == 200
    body = created.json()["model"]["info"]
    assert body["status"] == "LOGGED_MODEL_PENDING" and body["name"]


def test_run_inputs_and_outputs(gateway: Gateway, mlflow_client: Any) -> None:
    client = mlflow_client
    exp_id = client.create_experiment("io")
    run_id = client.create_run(exp_id).info.run_id
    model = client.create_logged_model(exp_id, name="in")
    dataset = Dataset(name="train", digest="abc123", source_type="local", source='{"uri": "/d"}', schema="{}")
    tags = [InputTag("mlflow.data.context", "training")]
    client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags)], models=[LoggedModelInput(model.model_id)])
    # the same (name, digest) again is ignored, as MLflow's SQL store does
    client.log_inputs(run_id, datasets=[DatasetInput(dataset, [InputTag("mlflow.data.context", "eval")])])
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=5)])

    run = client.get_run(run_id)
    [ds] = run.inputs.dataset_inputs
    assert (ds.dataset.name, ds.dataset.digest, ds.dataset.source, ds.dataset.schema) == (
        "train", "abc123", '{"uri": "/d"}', "{}"
    )  # fmt: skip
    assert [(t.key, t.value) for t in ds.tags] == [("mlflow.data.context", "training")]
    assert [m.model_id for m in run.inputs.model_inputs] == [model.model_id]
    assert [(m.model_id, m.step) for m in run.outputs.model_outputs] == [(model.model_id, 5)]

    resp = requests.post(
        f"{gateway.url}/api/2.0/mlflow/experiments/search-datasets", json={"experiment_ids": [exp_id]}, timeout=10
    )
    assert resp.json() == {
        "dataset_summaries": [{"experiment_id": exp_id, "name": "train", "digest": "abc123", "context": "training"}]
    }
    with pytest.raises(MlflowException) as no_models:
        client.log_outputs(run_id, [])
    assert no_models.value.error_code == "INVALID_PARAMETER_VALUE"


def test_bulk_interval_sampling(gateway: Gateway, mlflow_client: Any) -> None:
    client = mlflow_client
    exp_id = client.create_experiment("bulk")
    r1 = client.create_run(exp_id).info.run_id
    r2 = client.create_run(exp_id).info.run_id
    client.log_batch(r1, metrics=[Metric("loss", float(s), 1000 + s, s) for s in range(100)])
    client.log_batch(r2, metrics=[Metric("loss", math.nan if s == 2 else s * 10.0, 2000 + s, s) for s in range(5)])

    def bulk(**params: Any) -> requests.Response:
        return requests.get(
            f"{gateway.url}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
            params={"run_ids": [r1, r2], "metric_key": "loss", **params},
            timeout=10,
        )

    body = bulk(max_results=10).json()["metrics"]
    steps1 = [m["step"] for m in body if m["run_id"] == r1]
    # NTILE(10) over 100 points keeps every tenth, then the last point replaces the tenth sample
    assert steps1 == [0, 10, 20, 30, 40, 50, 60, 70, 80, 99]
    rows2 = [(m["step"], m["value"]) for m in body if m["run_id"] == r2]
    assert rows2 == [(0, 0.0), (1, 10.0), (2, "NaN"), (3, 30.0), (4, 40.0)]
    assert body[0] == {"key": "loss", "value": 0.0, "timestamp": 1000, "step": 0, "run_id": r1}

    ranged = bulk(max_results=3, start_step=10, end_step=20).json()["metrics"]
    assert [m["step"] for m in ranged if m["run_id"] == r1] == [10, 14, 20]
    assert [m["step"] for m in bulk(max_results=1).json()["metrics"] if m["run_id"] == r1] == [99]
    assert len([m for m in bulk().json()["metrics"] if m["run_id"] == r1]) == 100

    for params in ({"max_results": 0}, {"max_results": 2501}, {"start_step": 1}, {"start_step": 5, "end_step": 1}):
        resp = bulk(**params)
        assert resp.status_code == 400 and resp.json()["error_code"] == "INVALID_PARAMETER_VALUE", params
    too_many = requests.get(
        f"{gateway.url}/api/2.0/mlflow/metrics/get-history-bulk-interval",
        params={"run_ids": [r1] * 101, "metric_key": "loss"},
        timeout=10,
    )
    assert too_many.status_code == 400
