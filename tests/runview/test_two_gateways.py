"""Two gateway replicas on one Kafka: a run deleted through one is refused by the other within the tail's
lag (the stock server refuses writes to a deleted run at once; the former 5 s cache accepted them)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import Gateway, SettingsFactory
from trackstream.settings import Settings

pytestmark = pytest.mark.services

REFUSED_WITHIN = 3.0  # seconds; the tail's lag is milliseconds on an idle broker


def log_metric(url: str, run_id: str, step: int) -> httpx.Response:
    body = {"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 1_700_000_000_000 + step, "step": step}
    return httpx.post(f"{url}/api/2.0/mlflow/runs/log-metric", json=body, timeout=30)


def first_refusal(url: str, run_id: str, since: float) -> tuple[httpx.Response, float]:
    step = 1_000
    while True:
        response = log_metric(url, run_id, step)
        if response.status_code != 200 or time.monotonic() - since > 30:
            return response, time.monotonic() - since
        step += 1
        time.sleep(0.01)


def test_a_delete_through_one_replica_is_refused_by_the_other(
    kafka_settings: SettingsFactory, gateway_factory: Callable[[Settings], Gateway]
) -> None:
    settings = kafka_settings()
    a = gateway_factory(settings)
    b = gateway_factory(settings, consumers=False)  # type: ignore[call-arg]
    created = httpx.post(f"{a.url}/api/2.0/mlflow/runs/create", json={"experiment_id": "0"}, timeout=30)
    assert created.status_code == 200, created.text
    run_id = created.json()["run"]["info"]["run_id"]
    assert log_metric(b.url, run_id, 0).status_code == 200

    deleted = httpx.post(f"{a.url}/api/2.0/mlflow/runs/delete", json={"run_id": run_id}, timeout=30)
    assert deleted.status_code == 200, deleted.text
    response, after = first_refusal(b.url, run_id, time.monotonic())
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": f"The run {run_id} must be in the 'active' state. Current state is deleted.",
    }
    assert after < REFUSED_WITHIN, f"replica B accepted writes to the deleted run for {after:.2f}s"
    print(f"refused by the other replica {after * 1000:.0f} ms after the delete")

    restored = httpx.post(f"{a.url}/api/2.0/mlflow/runs/restore", json={"run_id": run_id}, timeout=30)
    assert restored.status_code == 200, restored.text
    deadline = time.monotonic() + REFUSED_WITHIN
    while (response := log_metric(b.url, run_id, 5_000)).status_code != 200:
        assert time.monotonic() < deadline, response.text
        time.sleep(0.01)
    assert b.runtime.run_states is not None and b.runtime.run_states.healthy()


def test_a_run_created_before_the_gateway_started_is_read_from_the_store_once(
    kafka_settings: SettingsFactory, gateway_factory: Callable[[Settings], Gateway]
) -> None:
    settings = kafka_settings()
    a = gateway_factory(settings)
    created = httpx.post(f"{a.url}/api/2.0/mlflow/runs/create", json={"experiment_id": "0"}, timeout=30)
    run_id = created.json()["run"]["info"]["run_id"]
    httpx.post(f"{a.url}/api/2.0/mlflow/runs/delete", json={"run_id": run_id}, timeout=30).raise_for_status()
    b = gateway_factory(settings, consumers=False)  # type: ignore[call-arg]
    assert b.runtime.run_states is not None and b.runtime.run_states.stage(run_id) is None
    response = log_metric(b.url, run_id, 0)
    assert response.status_code == 400 and response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert b.runtime.run_states.stage(run_id) == "deleted"  # remembered: the next refusal needs no store
