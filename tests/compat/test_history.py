"""metrics/get-history through the gateway in both modes: keyset pages, the streamed unpaged answer,
tokens from before keyset tokens, and the UI's get-history-bulk."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import orjson
import pytest
import requests
from mlflow.entities import Metric

from ingest.handlers import metrics as handlers
from tests.conftest import Gateway
from trackstream.tables import chdb, clickhouse

Row = tuple[int, int, Any]  # step, timestamp, value as the JSON carries it


def _log(client: Any) -> tuple[str, list[Row]]:
    run_id = client.create_run(client.create_experiment("history")).info.run_id
    points = [Metric("loss", float(s % 3), 1000 + s // 4, s) for s in range(40)]  # timestamps tie by fours
    points += [Metric("loss", math.nan, 1000, 2), Metric("loss", 7.0, 1000, 2)]  # same (timestamp, step)
    client.log_batch(run_id, metrics=points)
    client.log_batch(run_id, metrics=points[:10])  # duplicates: stored once
    rows = sorted(
        {(m.step, m.timestamp, m.value) for m in points},
        key=lambda r: (r[1], r[0], 0.0 if math.isnan(r[2]) else r[2], math.isnan(r[2])),
    )
    return run_id, [(s, ts, "NaN" if math.isnan(v) else v) for s, ts, v in rows]


def _get(gateway: Gateway, **params: Any) -> requests.Response:
    return requests.get(f"{gateway.url}/api/2.0/mlflow/metrics/get-history", params=params, timeout=30)


def _rows(body: dict[str, Any]) -> list[Row]:
    return [(m["step"], m["timestamp"], m["value"]) for m in body.get("metrics", [])]


@pytest.mark.parametrize("chunk", [5, 50_000])
def test_pages_and_the_streamed_answer(
    gateway: Gateway, mlflow_client: Any, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(handlers, "HISTORY_CHUNK", chunk)  # 5: every answer below is streamed,
    if chunk == 5:  # in blocks of 3 points, so that pages end inside blocks and across them
        monkeypatch.setattr(chdb, "LINE_BLOCK", 3)
        monkeypatch.setattr(clickhouse, "LINE_BLOCK", 3)
    run_id, expected = _log(mlflow_client)
    whole = _get(gateway, run_id=run_id, metric_key="loss")
    assert whole.status_code == 200 and "next_page_token" not in whole.json()
    assert _rows(whole.json()) == expected
    for size in (1, 3, 7, 41, 42, 1000):
        got: list[Row] = []
        token, pages = None, 0
        while True:
            params: dict[str, Any] = {"run_id": run_id, "metric_key": "loss", "max_results": size}
            if token:
                params["page_token"] = token
            body = _get(gateway, **params).json()
            page = _rows(body)
            assert len(page) == min(size, len(expected) - len(got)), (size, pages)
            got += page
            pages += 1
            token = body.get("next_page_token")
            if not token:
                break
        assert got == expected, size
        assert pages == max(1, -(-len(expected) // size)), size
    assert [(m.step, m.timestamp) for m in mlflow_client.get_metric_history(run_id, "loss")] == [
        (s, ts) for s, ts, _ in expected
    ]


def test_tokens(gateway: Gateway, mlflow_client: Any) -> None:
    run_id, expected = _log(mlflow_client)
    legacy = base64.b64encode(orjson.dumps({"offset": 10})).decode()  # issued before keyset tokens
    body = _get(gateway, run_id=run_id, metric_key="loss", max_results=5, page_token=legacy).json()
    assert _rows(body) == expected[10:15]
    after = _get(gateway, run_id=run_id, metric_key="loss", max_results=100, page_token=body["next_page_token"])
    assert _rows(after.json()) == expected[15:]
    first = _get(gateway, run_id=run_id, metric_key="loss", max_results=5).json()
    # the run's spans were counted and found few: the token spares the next page that count
    assert orjson.loads(base64.b64decode(first["next_page_token"]))["spans"] == 1
    second = _get(gateway, run_id=run_id, metric_key="loss", max_results=5, page_token=first["next_page_token"])
    assert _rows(second.json()) == expected[5:10]
    huge = base64.b64encode(json.dumps({"after": [10**30, 0, 1.0, 0]}).encode()).decode()  # orjson refuses it
    for bad in ("%%%", base64.b64encode(b'{"after": [1, 2]}').decode(), base64.b64encode(b"[1]").decode(), huge):
        resp = _get(gateway, run_id=run_id, metric_key="loss", page_token=bad)
        assert resp.status_code == 400 and resp.json()["error_code"] == "INVALID_PARAMETER_VALUE", bad
    for size in (0, -1):
        resp = _get(gateway, run_id=run_id, metric_key="loss", max_results=size)
        assert resp.status_code == 400 and resp.json()["error_code"] == "INVALID_PARAMETER_VALUE", size


def test_history_bulk(gateway: Gateway, mlflow_client: Any) -> None:
    exp = mlflow_client.create_experiment("bulk-history")
    r1, r2 = (mlflow_client.create_run(exp).info.run_id for _ in range(2))
    mlflow_client.log_batch(r1, metrics=[Metric("m", float(s), 50 - s, s) for s in range(3)])
    mlflow_client.log_batch(r2, metrics=[Metric("m", 1.0, 5, 0)])
    url = f"{gateway.url}/ajax-api/2.0/mlflow/metrics/get-history-bulk"
    body = requests.get(url, params={"run_id": [r2, r1], "metric_key": "m"}, timeout=10).json()
    by_run = sorted([r1, r2])
    assert [m["run_id"] for m in body["metrics"]] == [r for r in by_run for _ in range(3 if r == r1 else 1)]
    assert [m["step"] for m in body["metrics"] if m["run_id"] == r1] == [2, 1, 0]  # by timestamp
    assert body["metrics"][0].keys() == {"key", "value", "timestamp", "step", "run_id"}
    two: dict[str, Any] = {"run_id": [r1, r2], "metric_key": "m", "max_results": 2}
    limited = requests.get(url, params=two, timeout=10)
    assert len(limited.json()["metrics"]) == 2
    for params in ({"metric_key": "m"}, {"run_id": r1}, {"run_id": [r1] * 101, "metric_key": "m"}):
        resp = requests.get(url, params=params, timeout=10)
        assert resp.status_code == 400 and resp.json()["error_code"] == "INVALID_PARAMETER_VALUE", params


def test_history_body_from_the_store_points() -> None:
    points = [b'{"key":"m","value":%d.0,"timestamp":%d,"step":0}' % (i, i) for i in range(3)]
    kept = list(points)
    assert orjson.loads(handlers._history_json([], 5)) == {"metrics": []}
    assert orjson.loads(handlers._history_json(points[:1], None)) == {"metrics": [orjson.loads(points[0])]}
    assert orjson.loads(handlers._history_json(points, None))["metrics"] == [orjson.loads(p) for p in points]
    one = orjson.loads(handlers._history_json(points[:2], 1))  # one point and the next page's token
    assert one["metrics"] == [orjson.loads(points[0])] and "next_page_token" in one
    assert points == kept  # the store's list is left as it was
