"""Embedded mode after a restart. The log is durable (``trackstream.log.file``): what the previous process
acknowledged and had not applied yet is applied by the next one, and each partition's offsets go on after
its last record. A partition with nothing on disk (a data directory from before the durable log) starts
above every offset the tables hold, so rows written after the restart outrank older ones and a param event
never finds a decision recorded by the previous process at its position (before: the sink reused that stale
decision — a refusal — while the gateway's view had answered 200, and the param was lost)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from trackstream import assembly
from trackstream.log.memory import MemoryLog
from trackstream.settings import Mode, Settings

API = "/api/2.0/mlflow"


def start(data: Path, consumers: bool = True) -> tuple[assembly.Gateway, TestClient]:
    settings = Settings(mode=Mode.EMBEDDED, data_dir=data, batch_max_seconds=0.2, read_barrier_timeout=1.0)
    gateway = assembly.gateway(settings, consumers=consumers, ready_timeout=30, close_on_shutdown=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gateway, TestClient(gateway.app, base_url="http://localhost")


def post(client: TestClient, path: str, body: dict[str, Any], status: int = 200) -> Any:
    response = client.post(API + path, json=body)
    assert response.status_code == status, response.text
    return response.json()


def test_writes_after_a_restart_are_decided_and_stored_as_new(tmp_path: Path) -> None:
    gateway, client = start(tmp_path)
    try:
        old_runs = []
        for _ in range(6):  # a refusal recorded at several positions of every partition
            run_id = post(client, "/runs/create", {"experiment_id": "0"})["run"]["info"]["run_id"]
            post(client, "/runs/log-parameter", {"run_id": run_id, "key": "a", "value": "1"})
            post(client, "/runs/log-parameter", {"run_id": run_id, "key": "a", "value": "2"}, status=400)
            old_runs.append(run_id)
        ((last,),) = gateway.runtime.tables.query("SELECT max(log_offset) FROM decisions")
    finally:
        gateway.runtime.close()

    gateway, client = start(tmp_path)
    try:
        new_runs = []
        for _ in range(6):
            run_id = post(client, "/runs/create", {"experiment_id": "0"})["run"]["info"]["run_id"]
            post(client, "/runs/log-parameter", {"run_id": run_id, "key": "a", "value": "1"})
            post(client, "/runs/log-parameter", {"run_id": run_id, "key": "b", "value": "1"})
            new_runs.append(run_id)
        # a run of the previous process: its params decided by the sink, its update outranks its old row
        post(client, "/runs/log-parameter", {"run_id": old_runs[0], "key": "a", "value": "3"}, status=400)
        post(client, "/runs/update", {"run_id": old_runs[0], "status": "FINISHED"})
        tables = gateway.runtime.tables
        stored = tables.query("SELECT run_id, key, value FROM params FINAL WHERE run_id IN %(ids)s",
                              {"ids": tuple(new_runs)})  # fmt: skip
        assert sorted(stored) == sorted((r, k, "1") for r in new_runs for k in "ab")
        ((first_new,),) = tables.query(
            "SELECT min(log_offset) FROM decisions WHERE log_offset > %(last)s", {"last": last}
        )
        assert first_new > last
        run = client.get(API + "/runs/get", params={"run_id": old_runs[0]}).json()["run"]
        assert run["info"]["status"] == "FINISHED"
        assert {p["key"]: p["value"] for p in run["data"]["params"]} == {"a": "1"}
    finally:
        gateway.runtime.close()


def test_an_in_process_log_started_above_zero() -> None:
    """Offsets from ``first_offset``; nothing below it to wait for; each record read once."""
    log = MemoryLog(first_offset=5)
    log.ensure_topics(["t"], 1)
    assert log.end_offsets("t", [0]) == {0: 5} and log.committed("g", "t") == {0: 5}
    consumer = log.consumer("g", "t")
    assert [log.produce("t", b"k", f"{i}".encode())[1] for i in range(3)] == [5, 6, 7]
    got = consumer.poll(0.1, 10)
    assert [m.offset for m in got] == [5, 6, 7] and consumer.poll(0.05, 10) == []
    consumer.commit({got[-1].partition: 8})
    assert log.committed("g", "t") == {0: 8}


def test_writes_acknowledged_and_not_yet_applied_are_applied_by_the_next_process(tmp_path: Path) -> None:
    """The sinks never ran in the first process (as if it died right after answering): every answered
    write is in the log on disk, and the next process's sinks apply it."""
    gateway, _ = start(tmp_path)  # a first start creates the Default experiment
    gateway.runtime.close()
    gateway, client = start(tmp_path, consumers=False)
    try:
        run_id = post(client, "/runs/create", {"experiment_id": "0", "run_name": "kept"})["run"]["info"]["run_id"]
        post(client, "/runs/log-batch", {
            "run_id": run_id,
            "params": [{"key": "lr", "value": "0.1"}],
            "tags": [{"key": "t", "value": "v"}],
            "metrics": [{"key": "loss", "value": 0.5, "timestamp": 1, "step": s} for s in range(100)],
        })  # fmt: skip
        assert gateway.runtime.tables.query("SELECT count() FROM runs") == [(0,)]  # nothing applied
        busy = client.get(API + "/runs/get", params={"run_id": run_id})
        assert busy.status_code == 503 and busy.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    finally:
        gateway.runtime.close()

    gateway, client = start(tmp_path)
    try:
        run = client.get(API + "/runs/get", params={"run_id": run_id}).json()["run"]
        assert run["info"]["run_name"] == "kept"
        assert {p["key"]: p["value"] for p in run["data"]["params"]} == {"lr": "0.1"}
        assert {t["key"]: t["value"] for t in run["data"]["tags"]}["t"] == "v"
        history = client.get(API + "/metrics/get-history", params={"run_id": run_id, "metric_key": "loss"}).json()
        assert sorted(m["step"] for m in history["metrics"]) == list(range(100))
    finally:
        gateway.runtime.close()
