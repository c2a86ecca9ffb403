"""The endpoint table and its one adapter (unit tests: an in-process barrier and reader record the calls)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from ingest import requests as r
from ingest.app import routes
from ingest.endpoint import EXPERIMENTS_KEY, Endpoint, Reads
from ingest.errors import not_found
from ingest.handlers import ENDPOINTS, Context
from trackstream.settings import Topics

# Streamed bodies: the handler reads the request itself, no field to validate.
STREAMED = {("/artifacts/{path:path}", "PUT"), ("/mpu/part/{path:path}", "PUT")}
# Only a path parameter, and a body the stock server ignores.
PATH_ONLY = {("/artifacts/{path:path}", "GET"), ("/artifacts/{path:path}", "DELETE")}
# An OTLP/HTTP body: protobuf (or OTLP's JSON), parsed by the handler with the OpenTelemetry messages.
OTLP = {("/v1/traces", "POST")}


class Recorder:
    """Barrier and reader in one: every call is appended to ``calls`` in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def wait(self, topic: str, keys: Any = None) -> None:
        self.calls.append(("wait", topic, None if keys is None else sorted(keys)))

    def run_info(self, run_id: str) -> dict[str, Any] | None:
        self.calls.append(("read", run_id))
        return None


def _client(*endpoints: Endpoint) -> tuple[TestClient, Recorder]:
    rec = Recorder()
    ctx = Context(writer=None, reader=rec, barrier=rec, topics=Topics())  # type: ignore[arg-type]
    return TestClient(Starlette(routes=routes(list(endpoints), ctx))), rec


def test_every_endpoint_declares_a_request_model_unless_its_body_is_streamed() -> None:
    missing = {(e.path, m) for e in ENDPOINTS for m in e.methods if e.request is None}
    assert missing == STREAMED | PATH_ONLY | OTLP
    served = [(p + e.path, m) for e in ENDPOINTS for p in e.prefixes for m in e.methods]
    assert len(served) == len(set(served)), "a path and method served twice"


def test_the_hot_paths_stay_on_the_event_loop() -> None:
    hot = {e.path for e in ENDPOINTS if not e.blocking and not e.raw}
    assert hot == {"/runs/log-metric", "/runs/log-batch"}
    assert all(e.typed for e in ENDPOINTS if e.path in hot)


def test_reads_take_their_keys_from_the_fields() -> None:
    assert list(Reads.run().plan({"run_uuid": "r1"})) == [("metadata", ["r1"])]
    assert list(Reads.run().plan({"run_id": "r2", "run_uuid": "r1"})) == [("metadata", ["r2"])]
    assert list(Reads.run().plan({})) == []  # no key: no wait, the handler refuses the request
    assert list(Reads.experiment(default="0").plan({})) == [("metadata", [EXPERIMENTS_KEY, "0"])]
    assert list(Reads.keyed("metrics", "run_ids").plan({"run_ids": ["a", "b"]})) == [("metrics", ["a", "b"])]
    assert list((Reads.all_metadata + Reads.all("metrics")).plan({})) == [("metadata", None), ("metrics", None)]


def test_an_endpoint_on_the_event_loop_cannot_declare_a_barrier() -> None:
    with pytest.raises(ValueError, match="event loop"):
        Endpoint("/x", ("GET",), lambda ctx, p: {}, r.NoFields, Reads.all_metadata, blocking=False)


def test_the_adapter_passes_the_declared_barrier_before_the_handler() -> None:
    def handler(ctx: Context, p: dict[str, Any], model_id: str) -> dict[str, Any]:
        if ctx.reader.run_info(model_id) is None:
            raise not_found(f"no {model_id}")
        return {}

    reads = Reads.keyed("metadata", "model_id") + Reads.all("metrics")
    client, rec = _client(Endpoint("/m/{model_id}", ("GET",), handler, r.NoFields, reads, prefixes=("/p",)))
    answer = client.get("/p/m/m-1")
    assert answer.status_code == 404
    assert answer.json() == {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no m-1"}
    topics = Topics()
    assert rec.calls == [("wait", topics.metadata, ["m-1"]), ("wait", topics.metrics, None), ("read", "m-1")]


def test_the_request_model_is_checked_before_the_barrier() -> None:
    endpoint = Endpoint("/get", ("GET",), lambda ctx, p: {}, r.GetMetricHistory, Reads.run(), prefixes=("",))
    client, rec = _client(endpoint)
    answer = client.get("/get", params={"run_id": "a", "max_results": "1"})
    assert answer.status_code == 200 and rec.calls == [("wait", Topics().metadata, ["a"])]
    rec.calls.clear()
    bad = client.get("/get", params={"run_id": "a", "max_results": "many"})
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert rec.calls == []
