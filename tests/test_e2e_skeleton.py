"""The thinnest real path, driven by the official MLflow client, in both modes."""

from __future__ import annotations

import math
from typing import Any

import mlflow

from tests.conftest import Gateway


def test_log_metric_round_trip(gateway: Gateway, mlflow_client: Any) -> None:
    mlflow.set_experiment("skeleton")
    with mlflow.start_run() as run:
        mlflow.log_metric("loss", 0.5, step=1)
        mlflow.log_metrics({"loss": 0.25, "acc": float("nan")}, step=2)
        mlflow.log_param("lr", 0.1)
    run_id = run.info.run_id

    history = mlflow_client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.25)]
    fetched = mlflow_client.get_run(run_id)
    assert fetched.data.metrics["loss"] == 0.25
    assert math.isnan(fetched.data.metrics["acc"])
    assert fetched.data.params == {"lr": "0.1"}
    assert fetched.info.status == "FINISHED"

    # The rows are really in the table store, once each.
    rows = gateway.runtime.tables.query(
        "SELECT count(), uniqExact(step, timestamp, value) FROM metrics WHERE run_id = %(r)s AND key = 'loss'",
        {"r": run_id},
    )
    assert rows == [(2, 2)]
    # The metrics consumer group committed past what it wrote.
    topic = gateway.runtime.settings.topics.metrics
    committed = gateway.runtime.events.committed(gateway.runtime.group("metrics"), topic)
    ends = gateway.runtime.events.end_offsets(topic, list(committed))
    assert committed and committed == ends
