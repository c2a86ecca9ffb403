"""Experiment and run lifecycle through the official client."""

from __future__ import annotations

from typing import Any

import mlflow
import pytest
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from tests.conftest import Gateway


def test_experiment_lifecycle(gateway: Gateway, mlflow_client: Any) -> None:
    client = mlflow_client
    exp_id = client.create_experiment("life", tags={"team": "a"})
    client.create_experiment("taken")
    run = client.create_run(exp_id)

    client.rename_experiment(exp_id, "life-2")
    assert client.get_experiment(exp_id).name == "life-2"
    assert client.get_experiment_by_name("life") is None
    with pytest.raises(MlflowException) as taken:
        client.rename_experiment(exp_id, "taken")
    assert taken.value.error_code == "BAD_REQUEST"  # as the stock SQL store answers (unique constraint)

    client.set_experiment_tag(exp_id, "stage", "dev")
    client.delete_experiment_tag(exp_id, "team")
    assert client.get_experiment(exp_id).tags == {"stage": "dev"}
    with pytest.raises(MlflowException) as no_tag:
        client.delete_experiment_tag(exp_id, "team")
    assert no_tag.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    client.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    active = {e.experiment_id for e in client.search_experiments()}
    deleted = {e.experiment_id for e in client.search_experiments(view_type=ViewType.DELETED_ONLY)}
    assert exp_id not in active and exp_id in deleted
    with pytest.raises(MlflowException) as not_active:
        client.create_run(exp_id)
    assert not_active.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as set_deleted:
        mlflow.set_experiment("life-2")
    assert "deleted" in str(set_deleted.value)
    with pytest.raises(MlflowException) as twice:
        client.delete_experiment(exp_id)
    assert twice.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "active"


def test_run_delete_restore(gateway: Gateway, mlflow_client: Any) -> None:
    client = mlflow_client
    exp_id = client.create_experiment("runs-life")
    keep, drop = client.create_run(exp_id), client.create_run(exp_id)
    client.delete_run(drop.info.run_id)
    assert client.get_run(drop.info.run_id).info.lifecycle_stage == "deleted"
    rows = gateway.runtime.tables.query(
        "SELECT deleted_time IS NOT NULL FROM runs FINAL WHERE run_id = %(r)s", {"r": drop.info.run_id}
    )
    assert rows == [(1,)]
    assert [r.info.run_id for r in client.search_runs([exp_id])] == [keep.info.run_id]
    deleted = client.search_runs([exp_id], run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [drop.info.run_id]
    with pytest.raises(MlflowException) as closed:
        client.log_param(drop.info.run_id, "a", "1")
    assert closed.value.error_code == "INVALID_PARAMETER_VALUE"

    client.restore_run(drop.info.run_id)
    assert client.get_run(drop.info.run_id).info.lifecycle_stage == "active"
    assert len(client.search_runs([exp_id])) == 2
