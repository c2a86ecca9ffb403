"""A claim-check upload (single PUT or multipart) whose event the log does not acknowledge leaves nothing visible."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway, SettingsFactory
from trackstream.log import LogUnavailable
from trackstream.settings import Settings


def test_unacknowledged_large_upload_answers_503_and_leaves_nothing(
    embedded_settings: SettingsFactory,
    gateway_factory: Callable[[Settings], Gateway],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gw = gateway_factory(embedded_settings(artifact_inline_max_bytes=1024))
    real_produce = _refuse_artifact_events(gw, monkeypatch)
    path = "0/abc/artifacts/big.bin"
    url = f"{gw.url}/api/2.0/mlflow-artifacts/artifacts/{path}"
    response = httpx.put(url, content=b"x" * 10_000)
    assert response.status_code == 503
    assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert gw.runtime.objects.size(path) is None

    monkeypatch.setattr(gw.runtime.events, "produce", real_produce)
    missing = httpx.get(url)
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def _refuse_artifact_events(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make the log refuse artifact events (as a broker that does not acknowledge); returns the real produce."""
    events = gw.runtime.events
    artifacts_topic = gw.runtime.settings.topics.artifacts
    real_produce = events.produce

    def produce(topic: str, key: bytes, value: bytes, headers: Any = ()) -> tuple[int, int]:
        if topic == artifacts_topic:
            raise LogUnavailable("broker down (test)")
        return real_produce(topic, key, value, headers)

    monkeypatch.setattr(events, "produce", produce)
    return real_produce


def test_unacknowledged_multipart_completion_answers_503_and_leaves_nothing(
    embedded_settings: SettingsFactory,
    gateway_factory: Callable[[Settings], Gateway],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gw = gateway_factory(embedded_settings())
    _refuse_artifact_events(gw, monkeypatch)
    mpu = f"{gw.url}/api/2.0/mlflow-artifacts/mpu"
    upload = {"path": "model.bin", "num_parts": 1}
    created = httpx.post(f"{mpu}/create/0/abc/artifacts", json=upload).json()
    part = httpx.put(created["credentials"][0]["url"], content=b"weights")
    parts = [{"part_number": 1, "etag": part.headers["ETag"]}]
    finish = {**upload, "upload_id": created["upload_id"], "parts": parts}
    done = httpx.post(f"{mpu}/complete/0/abc/artifacts", json=finish)
    assert done.status_code == 503
    assert done.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert gw.runtime.objects.size("0/abc/artifacts/model.bin") is None
    aborted = httpx.post(f"{mpu}/abort/0/abc/artifacts", json={**upload, "upload_id": created["upload_id"]})
    assert aborted.status_code == 200
