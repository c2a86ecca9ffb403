"""Artifact failures through the API (embedded mode).

A claim-check upload (single PUT or multipart) whose event the log does not acknowledge leaves nothing
visible; keys no store can hold are refused with a 400 before anything is stored; keys S3 holds are
held by the local store too; an unclassified sink error is loud (/health 503 and API 503 with the reason).
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway, SettingsFactory
from trackstream.errors import classify_os_error
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


# -- keys every store can hold; an unclassified sink error is loud --

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


@pytest.mark.parametrize("inline_max", [1 << 20, 0], ids=["inline", "claim-check"])
@pytest.mark.parametrize("order", [("x/f", "x/f/child"), ("y/g/child", "y/g")], ids=["file-first", "child-first"])
def test_a_file_and_a_file_below_its_name_are_both_stored(
    embedded_settings: SettingsFactory,
    gateway_factory: Callable[[Settings], Gateway],
    inline_max: int,
    order: tuple[str, str],
) -> None:
    """Once a 200 killed the embedded artifact worker (FileExistsError) and every later artifact request
    answered 503 behind a healthy /health; S3 holds both keys, so the local store must too."""
    gw = gateway_factory(embedded_settings(artifact_inline_max_bytes=inline_max))
    for i, path in enumerate(order):
        put = httpx.put(f"{gw.url}{ARTIFACTS}/0/run/artifacts/{path}", content=f"body-{i}".encode(), timeout=30)
        assert put.status_code == 200, put.text
    for i, path in enumerate(order):
        got = httpx.get(f"{gw.url}{ARTIFACTS}/0/run/artifacts/{path}", timeout=30)
        assert got.status_code == 200, got.text
        assert got.content == f"body-{i}".encode()
    health = httpx.get(f"{gw.url}/health")
    assert (health.status_code, health.text) == (200, "OK")


@pytest.mark.parametrize(
    ("path", "limit"),
    [("n" * 256 + "/f.txt", "255 are allowed"), ("/".join(["d" * 200] * 6), "1024 are allowed")],
    ids=["component-too-long", "key-too-long"],
)
def test_a_path_no_store_can_hold_answers_400_and_stores_nothing(
    embedded_settings: SettingsFactory, gateway_factory: Callable[[Settings], Gateway], path: str, limit: str
) -> None:
    gw = gateway_factory(embedded_settings())
    for inline in (True, False):
        body = b"x" * (10 if inline else 2 << 20)
        put = httpx.put(f"{gw.url}{ARTIFACTS}/0/run/artifacts/{path}", content=body, timeout=30)
        assert put.status_code == 400, put.text
        assert put.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert limit in put.json()["message"]
    mpu = httpx.post(
        f"{gw.url}/api/2.0/mlflow-artifacts/mpu/create/0/run/artifacts", json={"path": "n" * 256, "num_parts": 1}
    )
    assert mpu.status_code == 400
    assert mpu.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    listed = httpx.get(f"{gw.url}{ARTIFACTS}", params={"path": "0/run/artifacts"}, timeout=30)
    assert listed.status_code == 200 and listed.json() == {}
    longest = "n" * 255  # the limit itself is stored
    put = httpx.put(f"{gw.url}{ARTIFACTS}/0/run/artifacts/{longest}", content=b"ok", timeout=30)
    assert put.status_code == 200, put.text
    assert httpx.get(f"{gw.url}{ARTIFACTS}/0/run/artifacts/{longest}", timeout=30).content == b"ok"
    assert httpx.get(f"{gw.url}/health").status_code == 200


def test_an_unclassified_sink_error_makes_the_gateway_unhealthy_and_answers_503_with_the_reason(
    embedded_settings: SettingsFactory,
    gateway_factory: Callable[[Settings], Gateway],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gw = gateway_factory(embedded_settings())
    assert httpx.get(f"{gw.url}/health").text == "OK"

    def broken_disk(key: str, data: bytes) -> None:
        raise classify_os_error(OSError(errno.EIO, "Input/output error"), f"local object store, storing {key!r}")

    monkeypatch.setattr(gw.runtime.objects, "put", broken_disk)
    # acknowledged: the write is in the durable log (the next process's worker applies it), and it
    # stops the worker on the unclassified error
    put = httpx.put(f"{gw.url}{ARTIFACTS}/0/run/artifacts/a.txt", content=b"data", timeout=30)
    assert put.status_code == 200, put.text
    deadline = time.monotonic() + 10
    while gw.runtime.consumer_failure() is None:
        assert time.monotonic() < deadline, "the artifacts worker did not stop"
        time.sleep(0.05)

    health = httpx.get(f"{gw.url}/health")
    assert health.status_code == 503
    assert "artifacts sink worker stopped" in health.text and "EIO" in health.text

    started = time.monotonic()
    for response in (
        httpx.get(f"{gw.url}{ARTIFACTS}", params={"path": "0/run/artifacts"}, timeout=30),
        httpx.get(f"{gw.url}{ARTIFACTS}/0/run/artifacts/a.txt", timeout=30),
    ):
        assert response.status_code == 503
        assert "artifacts sink worker stopped" in response.json()["message"]
    assert time.monotonic() - started < 5
    # the other sinks still work: a metric write is applied and acknowledged
    exp = httpx.post(f"{gw.url}/api/2.0/mlflow/runs/create", json={"experiment_id": "0"}, timeout=30)
    assert exp.status_code == 200, exp.text
    run_id = exp.json()["run"]["info"]["run_id"]
    metric = {"run_id": run_id, "key": "loss", "value": 1.0, "timestamp": 1, "step": 0}
    assert httpx.post(f"{gw.url}/api/2.0/mlflow/runs/log-metric", json=metric, timeout=30).status_code == 200


def test_a_retriable_sink_error_answers_503_with_the_reason_and_applies_the_write_later(
    embedded_settings: SettingsFactory,
    gateway_factory: Callable[[Settings], Gateway],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full disk pauses the embedded artifact worker (it does not stop): the write is acknowledged (it is
    in the durable log), a read of it answers 503 naming the cause, /health stays 200, and once space is
    back the held write is stored."""
    gw = gateway_factory(embedded_settings(read_barrier_timeout=1.0))
    real_put = gw.runtime.objects.put

    def full_disk(key: str, data: bytes) -> None:
        raise classify_os_error(OSError(errno.ENOSPC, "No space left on device"), f"local object store, {key!r}")

    monkeypatch.setattr(gw.runtime.objects, "put", full_disk)
    url = f"{gw.url}{ARTIFACTS}/0/run/artifacts/held.txt"
    put = httpx.put(url, content=b"held", timeout=30)
    assert put.status_code == 200, put.text
    got = httpx.get(url, timeout=30)
    assert got.status_code == 503, got.text
    assert "artifacts store unavailable" in got.json()["message"] and "ENOSPC" in got.json()["message"]
    assert httpx.get(f"{gw.url}/health").status_code == 200
    monkeypatch.setattr(gw.runtime.objects, "put", real_put)
    deadline = time.monotonic() + 20
    while (got := httpx.get(url, timeout=30)).status_code != 200:
        assert time.monotonic() < deadline, got.text
        time.sleep(0.2)
    assert got.content == b"held"


@pytest.mark.parametrize("mode", ["embedded", "kafka"])
def test_control_characters_in_an_artifact_path_answer_400_in_both_modes(
    mode: str,
    embedded_settings: SettingsFactory,
    kafka_settings: SettingsFactory,
    gateway_factory: Callable[[Settings], Gateway],
) -> None:
    """The S3 client strips some control characters (NEL, \\x0b), so 'x\\x85' would have been stored as 'x'
    and a GET of '\\x85' failed unclassified (500): found by the route fuzzer."""
    gw = gateway_factory((embedded_settings if mode == "embedded" else kafka_settings)())
    for quoted in ("%C2%85", "%0B%09", "a/b%C2%85", "x%01y"):
        url = f"{gw.url}{ARTIFACTS}/0/run/artifacts/{quoted}"
        for answer in (httpx.put(url, content=b"x", timeout=30), httpx.get(url, timeout=30)):
            assert answer.status_code == 400, (quoted, answer.text)
            assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    listed = httpx.get(f"{gw.url}{ARTIFACTS}", params={"path": "0/run/artifacts"}, timeout=30)
    assert listed.status_code == 200 and listed.json() == {}
    blank = httpx.get(f"{gw.url}{ARTIFACTS}/%E3%80%80", timeout=30)  # a key of white space only (U+3000)
    assert blank.status_code == 400 and blank.json()["error_code"] == "INVALID_PARAMETER_VALUE"
