"""ClickHouse crashes (SIGKILL) for longer than the read barrier while clients keep logging through the
HTTP API: metric, param, tag and small-artifact writes to runs the gateway knows, and new runs in an
experiment it knows, keep being acknowledged (the run-state view answers "is the run active?", decides
params in log order and knows the experiment, without the store), a deleted run and a changed param are
still refused, and once ClickHouse is back every acknowledged point, param and tag is stored exactly once
(a param with the value it was acknowledged with) and every run created is there.

Gateway and sink workers are real processes; the load is 4 client threads over HTTP."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

from tests.conftest import SettingsFactory
from tests.faults.conftest import GatewayProcessFactory, WorkerFactory, local_service, wait_applied
from trackstream.runtime import build

CLIENTS = 4
POINTS = 100  # per log-batch
BEFORE, OUTAGE, AFTER = 3.0, 18.0, 3.0  # seconds; the outage outlasts the 10 s read barrier
PACE = 0.02  # pause between a client's requests (2 cores are shared by the whole suite)
API = "/api/2.0/mlflow"


@dataclass
class Client:
    run_id: str
    acked_points: int = 0
    acked_tags: set[str] = field(default_factory=set)
    acked_artifacts: set[str] = field(default_factory=set)
    acked_params: dict[tuple[str, str], str] = field(default_factory=dict)  # (run_id, key) -> value
    created: list[str] = field(default_factory=list)  # runs created by runs/create during the load
    calls: list[tuple[float, float, str, int]] = field(default_factory=list)  # start, end, kind, status
    failures: list[str] = field(default_factory=list)


def run_client(url: str, client: Client, index: int, stop: threading.Event) -> None:
    batch = 0
    with httpx.Client(base_url=url, timeout=60) as http:
        while not stop.is_set():
            points = [
                {"key": f"m{i % 4}", "value": batch + i / 1000, "timestamp": 1_700_000_000_000 + batch * 1000 + i,
                 "step": batch * POINTS + i}
                for i in range(POINTS)
            ]  # fmt: skip
            calls: list[tuple[str, str, dict[str, object] | bytes]] = [
                ("metrics", "/runs/log-batch", {"run_id": client.run_id, "metrics": points})
            ]
            if batch % 5 == 0:
                calls.append(("tag", "/runs/set-tag", {"run_id": client.run_id, "key": f"load.{batch}", "value": "v"}))
            if batch % 3 == 0:
                param: dict[str, object] = {"run_id": client.run_id, "key": f"p.{batch}", "value": f"{index}:{batch}"}
                calls.append(("param", "/runs/log-parameter", param))
            if batch % 20 == 0:
                calls.append(("artifact", f"/{client.run_id}/artifacts/load/{batch}.txt", f"{index}:{batch}".encode()))
            if batch % 10 == 0:
                calls.append(("create", "/runs/create", {"experiment_id": "0"}))
            for kind, path, body in calls:
                started = time.monotonic()
                if isinstance(body, bytes):
                    response = http.put(f"/api/2.0/mlflow-artifacts/artifacts{path}", content=body)
                else:
                    response = http.post(API + path, json=body)
                client.calls.append((started, time.monotonic(), kind, response.status_code))
                if response.status_code != 200:
                    client.failures.append(f"{kind} {response.status_code} {response.text[:200]}")
                elif kind == "metrics":
                    client.acked_points += POINTS
                elif kind == "tag":
                    client.acked_tags.add(f"load.{batch}")
                elif kind == "param":
                    assert isinstance(body, dict)
                    client.acked_params[(client.run_id, str(body["key"]))] = str(body["value"])
                elif kind == "create":
                    client.created.append(set_up(http, client, response.json()["run"]["info"]["run_id"], batch))
                else:
                    client.acked_artifacts.add(path.lstrip("/"))
            batch += 1
            time.sleep(PACE)


def set_up(http: httpx.Client, client: Client, run_id: str, batch: int) -> str:
    """What a sweep does with a new run: a param, a tag, a first log-batch with params (and a retried
    param, the same value, as after a lost answer)."""
    steps: list[tuple[str, dict[str, object]]] = [
        ("/runs/log-parameter", {"run_id": run_id, "key": "lr", "value": str(batch)}),
        ("/runs/set-tag", {"run_id": run_id, "key": "sweep", "value": "s"}),
        ("/runs/log-batch", {"run_id": run_id, "params": [{"key": f"b{k}", "value": str(k)} for k in range(3)],
                             "metrics": [{"key": "m", "value": 1.0, "timestamp": 1, "step": 0}]}),
        ("/runs/log-parameter", {"run_id": run_id, "key": "lr", "value": str(batch)}),
    ]  # fmt: skip
    for path, body in steps:
        started = time.monotonic()
        response = http.post(API + path, json=body)
        client.calls.append((started, time.monotonic(), "set-up", response.status_code))
        if response.status_code != 200:
            client.failures.append(f"set-up {path} {response.status_code} {response.text[:200]}")
            continue
        if "log-parameter" in path:
            client.acked_params[(run_id, str(body["key"]))] = str(body["value"])
        elif "log-batch" in path:
            client.acked_points += 1
            for p in body["params"]:  # type: ignore[attr-defined]
                client.acked_params[(run_id, p["key"])] = p["value"]
    return run_id


def test_clickhouse_crash_longer_than_the_barrier_refuses_no_write(
    fault_settings: SettingsFactory, worker_factory: WorkerFactory, gateway_process_factory: GatewayProcessFactory
) -> None:
    settings = fault_settings()
    runtime = build(settings)  # the test's own view of the log and the tables
    try:
        workers = [worker_factory(settings, sink) for sink in ("metrics", "metadata", "artifacts")]
        gateway = gateway_process_factory(settings)
        with httpx.Client(base_url=gateway.url + API, timeout=60) as http:
            run_ids = [http.post("/runs/create", json={"experiment_id": "0"}).json()["run"]["info"]["run_id"]
                       for _ in range(CLIENTS + 1)]  # fmt: skip
            deleted = run_ids.pop()
            http.post("/runs/delete", json={"run_id": deleted}).raise_for_status()

        clients = [Client(run_id) for run_id in run_ids]
        stop = threading.Event()
        threads = [
            threading.Thread(target=run_client, args=(gateway.url, c, i, stop), daemon=True)
            for i, c in enumerate(clients)
        ]
        for thread in threads:
            thread.start()
        time.sleep(BEFORE)
        local_service("kill", "clickhouse")
        down = time.monotonic()
        try:
            time.sleep(OUTAGE / 2)
            refused = httpx.post(
                gateway.url + API + "/runs/log-batch",
                json={"run_id": deleted, "metrics": [{"key": "m", "value": 1, "timestamp": 1, "step": 0}]},
                timeout=60,
            )
            changed = httpx.post(  # a param logged before the outage, another value: refused by the view
                gateway.url + API + "/runs/log-parameter",
                json={"run_id": run_ids[0], "key": "p.0", "value": "changed"},
                timeout=60,
            )
            time.sleep(OUTAGE / 2)
        finally:
            local_service("start", "clickhouse")
        up = time.monotonic()
        time.sleep(AFTER)
        stop.set()
        for thread in threads:
            thread.join(timeout=90)
        assert not any(t.is_alive() for t in threads), "a client hung"

        # A deleted run is refused during the outage, as the stock server refuses it.
        assert refused.status_code == 400, refused.text
        assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert changed.status_code == 400, changed.text
        assert "Changing param values is not allowed" in changed.json()["message"]

        calls = [call for c in clients for call in c.calls]
        during = [call for call in calls if down <= call[0] < up]
        failures = [f for c in clients for f in c.failures]
        assert not failures, f"{len(failures)} writes not acknowledged, e.g. {failures[:3]}"
        assert len(during) > 100, f"only {len(during)} writes during the outage"
        latency = sorted(end - start for start, end, _, _ in during)

        for sink in ("metrics", "metadata", "artifacts"):
            wait_applied(runtime.events, runtime.group(sink), getattr(settings.topics, sink), timeout=120)
        caught_up = time.monotonic() - up

        created = [r for c in clients for r in c.created]
        ids = ", ".join(f"'{r}'" for r in run_ids + created)
        ((rows, unique),) = runtime.tables.query(
            f"SELECT count(), uniqExact(run_id, key, step, timestamp, value) FROM metrics FINAL WHERE run_id IN ({ids})"
        )
        acked = sum(c.acked_points for c in clients)
        assert rows == unique == acked, f"stored {rows} ({unique} distinct), acknowledged {acked}"
        tags = runtime.tables.query(
            f"SELECT run_id, key FROM run_tags FINAL WHERE run_id IN ({ids}) AND key LIKE 'load.%' AND deleted = 0"
        )
        assert sorted(tags) == sorted((c.run_id, t) for c in clients for t in c.acked_tags)
        stored = runtime.tables.query(f"SELECT run_id, key, value FROM params FINAL WHERE run_id IN ({ids})")
        acked_params = {k: val for c in clients for k, val in c.acked_params.items()}
        assert len(stored) == len({(r, k) for r, k, _ in stored}), "a param stored twice"
        assert {(r, k): val for r, k, val in stored} == acked_params
        ((runs_stored,),) = runtime.tables.query(
            f"SELECT count() FROM runs FINAL WHERE run_id IN ({', '.join(repr(r) for r in created)})"
        )
        assert runs_stored == len(created)
        kinds_during = {kind for _, _, kind, _ in during}
        assert {"param", "create", "set-up", "tag", "metrics"} <= kinds_during, kinds_during
        paths = {p for (p,) in runtime.tables.query("SELECT path FROM artifacts FINAL WHERE deleted = 0")}
        assert paths >= {p for c in clients for p in c.acked_artifacts}
        ((deleted_points,),) = runtime.tables.query(f"SELECT count() FROM metrics WHERE run_id = '{deleted}'")
        assert deleted_points == 0
        for worker in workers:
            assert worker.process.poll() is None, worker.output()
        assert gateway.process.poll() is None, gateway.output()

        print(
            f"outage={up - down:.1f}s writes={len(calls)} during_outage={len(during)} acknowledged=100% "
            f"p50={latency[len(latency) // 2] * 1000:.0f}ms p99={latency[int(len(latency) * 0.99)] * 1000:.0f}ms "
            f"points={acked} tags={len(tags)} params={len(acked_params)} runs_created={len(created)} "
            f"during_outage_by_kind={ {k: sum(1 for c in during if c[2] == k) for k in sorted(kinds_during)} } "
            f"refused_503=0 caught_up_after_restart={caught_up:.1f}s lost=0 duplicated=0"
        )
    finally:
        runtime.close()
