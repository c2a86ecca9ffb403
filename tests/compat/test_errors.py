"""MLflow error codes as the official client sees them."""

from __future__ import annotations

import time
from typing import Any

import mlflow
import pytest
import requests
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

from tests.conftest import Gateway


def test_error_codes(gateway: Gateway, mlflow_client: Any) -> None:
    client = mlflow_client
    with pytest.raises(MlflowException) as missing:
        client.get_run("0" * 32)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    run = client.create_run("0")
    run_id = run.info.run_id
    client.log_param(run_id, "lr", "0.1")
    client.log_param(run_id, "lr", "0.1")  # the same value again is fine
    with pytest.raises(MlflowException) as changed:
        client.log_param(run_id, "lr", "0.2")
    assert changed.value.error_code == "INVALID_PARAMETER_VALUE"
    assert client.get_run(run_id).data.params == {"lr": "0.1"}

    # The client splits batches itself, so go over the limits on the wire.
    now = int(time.time() * 1000)
    too_many: list[dict[str, Any]] = [{"key": "m", "value": 1.0, "timestamp": now, "step": i} for i in range(1001)]
    resp = requests.post(
        f"{gateway.url}/api/2.0/mlflow/runs/log-batch", json={"run_id": run_id, "metrics": too_many}, timeout=10
    )
    assert resp.status_code == 400 and resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    params = [{"key": f"p{i}", "value": "x"} for i in range(101)]
    resp = requests.post(
        f"{gateway.url}/api/2.0/mlflow/runs/log-batch", json={"run_id": run_id, "params": params}, timeout=10
    )
    assert resp.status_code == 400 and resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    ok = {"key": "fine", "value": 1.0, "timestamp": now, "step": 0}
    bad_batches: tuple[list[Any], ...] = (
        [ok, "not-an-object"],
        [ok, {**ok, "key": ["unhashable"]}],
        [ok, {**ok, "model_id": 7}],
        [ok, {**ok, "timestamp": -1}],
        [ok, {**ok, "value": "abc"}],
    )
    for metrics in bad_batches:
        resp = requests.post(
            f"{gateway.url}/api/2.0/mlflow/runs/log-batch", json={"run_id": run_id, "metrics": metrics}, timeout=10
        )
        assert resp.status_code == 400 and resp.json()["error_code"] == "INVALID_PARAMETER_VALUE", metrics
    with pytest.raises(MlflowException) as bad_key:
        client.log_batch(run_id, metrics=[Metric("../up", 1.0, now, 0)], params=[Param("ok", "1")])
    assert bad_key.value.error_code == "INVALID_PARAMETER_VALUE"
    assert client.get_run(run_id).data.metrics == {}

    # set_experiment on an existing name reuses it; creating it again is RESOURCE_ALREADY_EXISTS.
    first = mlflow.set_experiment("exists")
    again = mlflow.set_experiment("exists")
    assert again.experiment_id == first.experiment_id
    with pytest.raises(MlflowException) as dup:
        client.create_experiment("exists")
    assert dup.value.error_code == "RESOURCE_ALREADY_EXISTS"

    # the registry: a name exists once; a version needs its source
    api = f"{gateway.url}/api/2.0/mlflow"
    assert requests.post(f"{api}/registered-models/create", json={"name": "r"}, timeout=10).status_code == 200
    dup_model = requests.post(f"{api}/registered-models/create", json={"name": "r"}, timeout=10)
    assert dup_model.status_code == 400 and dup_model.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"
    no_source = requests.post(f"{api}/model-versions/create", json={"name": "r"}, timeout=10)
    assert no_source.status_code == 400 and no_source.json()["error_code"] == "INVALID_PARAMETER_VALUE"
