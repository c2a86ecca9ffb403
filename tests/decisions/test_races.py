"""Rules decided in log order: N concurrent writers, one answer per rule, and the stores agree.

Every test races N requests (spread over two gateway processes in Kafka mode) and then asserts on
what the tables hold, not only on the answers: a write that answered 200 is stored, a refused one
stored nothing.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import requests

from tests.decisions.conftest import Cluster

N = 20


def _run(cluster: Cluster) -> str:
    exp = cluster.ok("/experiments/create", {"name": f"race-{uuid.uuid4().hex}"})["experiment_id"]
    return str(cluster.ok("/runs/create", {"experiment_id": exp, "start_time": 1})["run"]["info"]["run_id"])


def _settled(cluster: Cluster, run_id: str) -> None:
    """Reads wait until the sinks applied everything the run's partitions held (read-your-writes)."""
    got = requests.get(f"{cluster.urls[0]}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=60)
    assert got.status_code == 200, got.text


def _codes(responses: list[Any]) -> list[str]:
    return sorted("OK" if r.status_code == 200 else f"{r.status_code} {r.json()['error_code']}" for r in responses)


def test_parallel_creates_of_one_name_make_one_experiment(cluster: Cluster) -> None:
    name = f"unique-{uuid.uuid4().hex}"
    responses = cluster.race("/experiments/create", [{"name": name}] * N)
    assert _codes(responses) == ["400 RESOURCE_ALREADY_EXISTS"] * (N - 1) + ["OK"]
    winner = next(r.json()["experiment_id"] for r in responses if r.status_code == 200)
    refused = next(r.json() for r in responses if r.status_code != 200)
    assert refused["message"] == f"Experiment(name={name}) already exists."
    stored = cluster.tables.query("SELECT experiment_id FROM experiments FINAL WHERE name = %(n)s", {"n": name})
    assert stored == [(winner,)]


def test_parallel_renames_onto_one_name_rename_one_experiment(cluster: Cluster) -> None:
    ids = [cluster.ok("/experiments/create", {"name": f"src-{uuid.uuid4().hex}"})["experiment_id"] for _ in range(6)]
    target = f"target-{uuid.uuid4().hex}"
    responses = cluster.race("/experiments/update", [{"experiment_id": i, "new_name": target} for i in ids])
    assert _codes(responses) == ["400 BAD_REQUEST"] * 5 + ["OK"]
    winner = ids[next(i for i, r in enumerate(responses) if r.status_code == 200)]
    assert cluster.tables.query(
        "SELECT experiment_id FROM (SELECT experiment_id, name FROM experiments FINAL) WHERE name = %(n)s",
        {"n": target},
    ) == [(winner,)]


def test_parallel_deletes_of_one_experiment_one_succeeds(cluster: Cluster) -> None:
    exp = cluster.ok("/experiments/create", {"name": f"del-{uuid.uuid4().hex}"})["experiment_id"]
    responses = cluster.race("/experiments/delete", [{"experiment_id": exp}] * 6)
    # the gateway answers early when it already sees the deletion; otherwise the sink refuses in log order
    assert _codes(responses) == ["404 RESOURCE_DOES_NOT_EXIST"] * 5 + ["OK"]
    assert cluster.tables.query(
        "SELECT lifecycle_stage FROM experiments FINAL WHERE experiment_id = %(e)s", {"e": exp}
    ) == [("deleted",)]


def test_parallel_values_of_one_param_one_is_stored(cluster: Cluster) -> None:
    run_id = _run(cluster)
    bodies = [{"run_id": run_id, "key": "lr", "value": f"0.{i}"} for i in range(N)]
    responses = cluster.race("/runs/log-parameter", bodies)
    assert _codes(responses) == ["400 INVALID_PARAMETER_VALUE"] * (N - 1) + ["OK"]
    accepted = bodies[next(i for i, r in enumerate(responses) if r.status_code == 200)]["value"]
    for r in responses:
        if r.status_code != 200:
            assert r.json()["message"].startswith("Changing param values is not allowed. Param with key='lr'")
            assert f"was already logged with value='{accepted}'" in r.json()["message"]
    _settled(cluster, run_id)
    stored = cluster.tables.query("SELECT key, value FROM params FINAL WHERE run_id = %(r)s", {"r": run_id})
    assert stored == [("lr", accepted)]
    # the same value again is accepted (MLflow allows it)
    cluster.ok("/runs/log-parameter", {"run_id": run_id, "key": "lr", "value": accepted})


def test_parallel_log_batches_one_param_value_wins_with_its_tags_and_metrics(cluster: Cluster) -> None:
    run_id = _run(cluster)
    bodies = [
        {
            "run_id": run_id,
            "params": [{"key": "seed", "value": str(i)}],
            "tags": [{"key": f"tag-{i}", "value": "x"}],
            "metrics": [{"key": f"m-{i}", "value": 1.0, "timestamp": 1, "step": 0}],
        }
        for i in range(N)
    ]
    responses = cluster.race("/runs/log-batch", bodies)
    assert _codes(responses) == ["400 INVALID_PARAMETER_VALUE"] * (N - 1) + ["OK"]
    i = next(i for i, r in enumerate(responses) if r.status_code == 200)
    _settled(cluster, run_id)
    q = {"r": run_id}
    assert cluster.tables.query("SELECT key, value FROM params FINAL WHERE run_id = %(r)s", q) == [("seed", str(i))]
    tags = cluster.tables.query("SELECT key FROM run_tags FINAL WHERE run_id = %(r)s AND key LIKE 'tag-%%'", q)
    assert tags == [(f"tag-{i}",)]
    assert cluster.tables.query("SELECT DISTINCT key FROM metrics WHERE run_id = %(r)s", q) == [(f"m-{i}",)]


def test_a_refused_batch_stores_nothing(cluster: Cluster) -> None:
    run_id = _run(cluster)
    cluster.ok("/runs/log-parameter", {"run_id": run_id, "key": "p", "value": "1"})
    metric = {"key": "loss", "value": 0.5, "timestamp": 1, "step": 0}
    # invalid at the gateway: a param key MLflow refuses
    bad = cluster.post("/runs/log-batch", {"run_id": run_id, "metrics": [metric], "params": [{"key": "", "value": "v"}],
                                            "tags": [{"key": "t1", "value": "v"}]})  # fmt: skip
    assert (bad.status_code, bad.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    # refused by the sink: a param that changes a logged value
    changed = cluster.post("/runs/log-batch", {"run_id": run_id, "metrics": [metric],
                                                "params": [{"key": "p", "value": "2"}, {"key": "q", "value": "3"}],
                                                "tags": [{"key": "t2", "value": "v"}]})  # fmt: skip
    assert (changed.status_code, changed.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    _settled(cluster, run_id)
    time.sleep(0.5)  # nothing is in flight: a metric produced by mistake would have been applied by now
    _settled(cluster, run_id)
    q = {"r": run_id}
    assert cluster.tables.query("SELECT count() FROM metrics WHERE run_id = %(r)s", q) == [(0,)]
    assert cluster.tables.query("SELECT key, value FROM params FINAL WHERE run_id = %(r)s", q) == [("p", "1")]
    assert cluster.tables.query(
        "SELECT count() FROM run_tags FINAL WHERE run_id = %(r)s AND key IN ('t1', 't2')", q
    ) == [(0,)]


def test_updates_of_different_fields_of_one_run_both_kept(cluster: Cluster) -> None:
    """Failure state 12: a status update and a rename of one run through two replicas at once."""
    for _ in range(3):
        run_id = _run(cluster)
        responses = cluster.race(
            "/runs/update",
            [{"run_id": run_id, "status": "FINISHED", "end_time": 5}, {"run_id": run_id, "run_name": "renamed"}],
        )
        assert _codes(responses) == ["OK", "OK"]
        _settled(cluster, run_id)
        assert cluster.tables.query(
            "SELECT status, end_time, run_name FROM runs FINAL WHERE run_id = %(r)s", {"r": run_id}
        ) == [("FINISHED", 5, "renamed")]
