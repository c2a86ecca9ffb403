"""Every route of the gateway with auth on: without credentials, with wrong ones, and as a reader, an
editor, a manager, a user without permission and an admin (issue #8 item 5), in both modes.

The expected answer of each (role, endpoint) pair is written down twice: derived from the endpoint's
declared access (so every route is walked), and by hand for the rules that matter most (a reader reads
and cannot write; an editor writes and cannot delete or manage permissions).
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.routing import Mount, Route

from ingest.auth.access import LEVELS, ON_EXPERIMENT, REGISTERED_MODEL, USER, Access
from ingest.auth.guard import OPEN_PATHS
from ingest.endpoint import Endpoint
from tests.auth.conftest import ADMIN, API, ARTIFACTS, Api, AuthGateway, admin, basic, bearer, grant, new_user

AJAX3 = "/ajax-api/3.0/mlflow"
_PARAM = re.compile(r"\{([a-z_]+)(?::path)?\}")


@dataclass
class World:
    """The resources the matrix works on: experiment E with run R and logged model M, registered model name."""

    experiment_id: str
    experiment_name: str
    run_id: str
    model_id: str
    registered_model: str = field(default_factory=lambda: f"rm-matrix-{uuid.uuid4().hex[:6]}")
    spare_version: str = ""  # a model version made for a delete
    trace_id: str = ""  # trace T, logged to E
    spare_trace: str = ""  # a trace made for a delete
    assessment_id: str = ""  # an assessment of T made for a read, update or delete
    counter: itertools.count = field(default_factory=itertools.count)  # type: ignore[type-arg]

    def unique(self, stem: str) -> str:
        return f"{stem}-{next(self.counter)}-{uuid.uuid4().hex[:6]}"


def _served(gateway: AuthGateway) -> list[tuple[str, str, Endpoint | None]]:
    """(path, method, endpoint record or None) for every route of the app, path parameters filled in."""
    out: list[tuple[str, str, Endpoint | None]] = []
    for route in gateway.app.routes:
        if isinstance(route, Mount):
            out.append((route.path + "/index.html", "GET", None))
        elif isinstance(route, Route):
            spec = getattr(route.endpoint, "spec", None)
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                out.append((_PARAM.sub("x", route.path), method, spec))
    return out


def test_every_route_needs_credentials(auth_gateway: AuthGateway) -> None:
    served = _served(auth_gateway)
    assert len(served) > 60
    anonymous = httpx.Client(base_url=auth_gateway.url, timeout=30)
    wrong = [basic(ADMIN, "not-the-password"), basic("nobody", "whatever-password"), bearer("mlt_0000_nope"),
             {"Authorization": "Digest abc"}]  # fmt: skip
    for path, method, _ in served:
        if path in OPEN_PATHS:  # the probes stay open
            assert anonymous.request(method, path).status_code == 200, path
            continue
        for headers in [{}, *wrong]:
            response = anonymous.request(method, path, headers=headers)
            assert response.status_code == 401, f"{method} {path} with {headers}: {response.status_code}"
            assert response.headers["www-authenticate"] == 'Basic realm="mlflow"'
            assert response.json()["error_code"] == "UNAUTHENTICATED"


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # with its prefix
    fields: Callable[[World], dict[str, Any]] | None = None
    content: bytes | None = None
    exact: bool = True  # allowed -> exactly 200; False: any answer but 401/403/5xx (bogus upload ids)
    setup: Callable[[Api, World], None] | None = None  # run by the admin first (e.g. what the call deletes)
    headers: Callable[[World], dict[str, str]] | None = None


def _model(a: Api, w: World) -> None:
    w.model_id = a.ok("POST", f"{API}/logged-models", {"experiment_id": w.experiment_id})["model"]["info"]["model_id"]


def _file(name: str) -> Callable[[Api, World], None]:
    def put(a: Api, w: World) -> None:
        r = a.client.put(f"{ARTIFACTS}/artifacts/{w.experiment_id}/{w.run_id}/artifacts/{name}", content=b"x")
        assert r.status_code == 200, r.text

    return put


def _tag(a: Api, w: World) -> None:
    a.ok("POST", f"{API}/experiments/set-experiment-tag", {"experiment_id": w.experiment_id, "key": "t", "value": "v"})
    a.ok("POST", f"{API}/runs/set-tag", {"run_id": w.run_id, "key": "t", "value": "v"})
    a.ok("PATCH", f"{API}/logged-models/{w.model_id}/tags", {"tags": [{"key": "t", "value": "v"}]})


def _rename(w: World) -> dict[str, Any]:
    return {"experiment_id": w.experiment_id, "new_name": w.unique("renamed")}


def _permission(w: World) -> dict[str, Any]:
    return {"experiment_id": w.experiment_id, "username": "bystander", "permission": "READ"}


def _rm_permission(w: World) -> dict[str, Any]:
    return {"name": w.registered_model, "username": "bystander", "permission": "READ"}


def _art(w: World, name: str = "f.txt") -> str:
    return f"{w.experiment_id}/{w.run_id}/artifacts/{name}"


MODELS = f"{API}/registered-models"
VERSIONS = f"{API}/model-versions"
API3 = "/api/3.0/mlflow"


def _trace_id() -> str:
    return "tr-" + uuid.uuid4().hex


def _start_trace(w: World, trace_id: str) -> dict[str, Any]:
    location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": w.experiment_id}}
    info = {"trace_id": trace_id, "trace_location": location, "request_time": "2026-01-01T00:00:00Z", "state": "OK"}
    return {"trace": {"trace_info": info}}


def _otlp_span(w: World) -> bytes:
    now = time.time_ns()
    span = {"traceId": uuid.uuid4().hex, "spanId": uuid.uuid4().hex[:16], "name": "s",
            "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 1000)}  # fmt: skip
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


def _trace(a: Api, w: World) -> None:
    """Trace T of experiment E, logged by the admin."""
    w.trace_id = _trace_id()
    a.ok("POST", f"{API3}/traces", _start_trace(w, w.trace_id))


def _spare_trace(a: Api, w: World) -> None:
    w.spare_trace = _trace_id()
    a.ok("POST", f"{API3}/traces", _start_trace(w, w.spare_trace))


def _trace_tag(a: Api, w: World) -> None:
    a.ok("PATCH", f"{API}/traces/{w.trace_id}/tags", {"key": "t", "value": "v"})


def _feedback(w: World) -> dict[str, Any]:
    return {"assessment_name": "correct", "trace_id": w.trace_id, "feedback": {"value": True},
            "source": {"source_type": "HUMAN", "source_id": "matrix"}}  # fmt: skip


def _assessment(a: Api, w: World) -> None:
    made = a.ok("POST", f"{API3}/traces/{w.trace_id}/assessments", {"assessment": _feedback(w)})
    w.assessment_id = made["assessment"]["assessment_id"]


T: Callable[[World], dict[str, Any]] = lambda w: {"trace_id": w.trace_id}  # noqa: E731


def _registered(a: Api, w: World) -> None:
    """The registered model with version 1 and the manager's MANAGE grant (again after a delete revoked it)."""
    a.call("POST", f"{MODELS}/create", {"name": w.registered_model})
    if a.call("GET", f"{VERSIONS}/get", {"name": w.registered_model, "version": "1"}).status_code != 200:
        a.ok("POST", f"{VERSIONS}/create", {"name": w.registered_model, "source": f"runs:/{w.run_id}/model",
                                              "run_id": w.run_id})  # fmt: skip
    a.call("POST", f"{API}/registered-models/permissions/create",
           {"name": w.registered_model, "username": "manager", "permission": "MANAGE"})  # fmt: skip


def _spare_version(a: Api, w: World) -> None:
    fields = {"name": w.registered_model, "source": f"runs:/{w.run_id}/model", "run_id": w.run_id}
    w.spare_version = a.ok("POST", f"{VERSIONS}/create", fields)["model_version"]["version"]


def _model_tags(a: Api, w: World) -> None:
    a.ok("POST", f"{MODELS}/set-tag", {"name": w.registered_model, "key": "t", "value": "v"})
    a.ok("POST", f"{VERSIONS}/set-tag", {"name": w.registered_model, "version": "1", "key": "t", "value": "v"})
    a.ok("POST", f"{MODELS}/alias", {"name": w.registered_model, "alias": "champ", "version": "1"})


RM: Callable[[World], dict[str, Any]] = lambda w: {"name": w.registered_model}  # noqa: E731
MV: Callable[[World], dict[str, Any]] = lambda w: {"name": w.registered_model, "version": "1"}  # noqa: E731

E: Callable[[World], dict[str, Any]] = lambda w: {"experiment_id": w.experiment_id}  # noqa: E731
R: Callable[[World], dict[str, Any]] = lambda w: {"run_id": w.run_id}  # noqa: E731
# One call per endpoint and method (first prefix), in an order where each role's allowed calls succeed:
# what a call deletes is created first (setup), restored after, or made anew.
CALLS: dict[tuple[str, str], Call] = {
    ("/experiments/create", "POST"): Call("POST", f"{API}/experiments/create", lambda w: {"name": w.unique("e")}),
    ("/experiments/get", "GET"): Call("GET", f"{API}/experiments/get", E),
    ("/experiments/get-by-name", "GET"): Call(
        "GET", f"{API}/experiments/get-by-name", lambda w: {"experiment_name": w.experiment_name}
    ),
    ("/experiments/search", "GET"): Call("GET", f"{API}/experiments/search", lambda w: {"max_results": 5}),
    ("/experiments/search", "POST"): Call("POST", f"{API}/experiments/search", lambda w: {"max_results": 5}),
    ("/experiments/update", "POST"): Call("POST", f"{API}/experiments/update", _rename),
    ("/experiments/set-experiment-tag", "POST"): Call(
        "POST", f"{API}/experiments/set-experiment-tag", lambda w: {**E(w), "key": "k", "value": "v"}
    ),
    ("/experiments/delete-experiment-tag", "POST"): Call(
        "POST", f"{API}/experiments/delete-experiment-tag", lambda w: {**E(w), "key": "t"}, setup=_tag
    ),
    ("/runs/create", "POST"): Call("POST", f"{API}/runs/create", E),
    ("/runs/update", "POST"): Call("POST", f"{API}/runs/update", lambda w: {**R(w), "status": "RUNNING"}),
    ("/runs/get", "GET"): Call("GET", f"{API}/runs/get", R),
    ("/runs/search", "POST"): Call("POST", f"{API}/runs/search", lambda w: {"experiment_ids": [w.experiment_id]}),
    ("/runs/log-parameter", "POST"): Call(
        "POST", f"{API}/runs/log-parameter", lambda w: {**R(w), "key": w.unique("p"), "value": "1"}
    ),
    ("/runs/set-tag", "POST"): Call("POST", f"{API}/runs/set-tag", lambda w: {**R(w), "key": "k", "value": "v"}),
    ("/runs/delete-tag", "POST"): Call("POST", f"{API}/runs/delete-tag", lambda w: {**R(w), "key": "t"}, setup=_tag),
    ("/runs/log-metric", "POST"): Call(
        "POST", f"{API}/runs/log-metric", lambda w: {**R(w), "key": "m", "value": 1.0, "timestamp": 1, "step": 0}
    ),
    ("/runs/log-batch", "POST"): Call(
        "POST",
        f"{API}/runs/log-batch",
        lambda w: {**R(w), "metrics": [{"key": "m", "value": 2.0, "timestamp": 2, "step": 1}]},
    ),
    ("/metrics/get-history", "GET"): Call("GET", f"{API}/metrics/get-history", lambda w: {**R(w), "metric_key": "m"}),
    ("/metrics/get-history-bulk-interval", "GET"): Call(
        "GET", f"{API}/metrics/get-history-bulk-interval", lambda w: {"run_ids": [w.run_id], "metric_key": "m"}
    ),
    ("/runs/log-inputs", "POST"): Call(
        "POST",
        f"{API}/runs/log-inputs",
        lambda w: {**R(w), "datasets": [{"dataset": {"name": "d", "digest": "1", "source_type": "s", "source": "x"}}]},
    ),
    ("/runs/outputs", "POST"): Call(
        "POST", f"{API}/runs/outputs", lambda w: {**R(w), "models": [{"model_id": w.model_id, "step": 0}]}
    ),
    ("/experiments/search-datasets", "POST"): Call(
        "POST", f"{API}/experiments/search-datasets", lambda w: {"experiment_ids": [w.experiment_id]}
    ),
    ("/logged-models", "POST"): Call("POST", f"{API}/logged-models", E),
    ("/logged-models/search", "POST"): Call(
        "POST", f"{API}/logged-models/search", lambda w: {"experiment_ids": [w.experiment_id]}
    ),
    ("/logged-models/{model_id}", "GET"): Call("GET", f"{API}/logged-models/{{model_id}}"),
    ("/logged-models/{model_id}", "PATCH"): Call(
        "PATCH", f"{API}/logged-models/{{model_id}}", lambda w: {"status": "LOGGED_MODEL_READY"}
    ),
    ("/logged-models/{model_id}/tags", "PATCH"): Call(
        "PATCH", f"{API}/logged-models/{{model_id}}/tags", lambda w: {"tags": [{"key": "k", "value": "v"}]}
    ),
    ("/logged-models/{model_id}/tags/{key:path}", "DELETE"): Call(
        "DELETE", f"{API}/logged-models/{{model_id}}/tags/t", setup=_tag
    ),
    ("/logged-models/{model_id}/params", "POST"): Call(
        "POST", f"{API}/logged-models/{{model_id}}/params", lambda w: {"params": [{"key": w.unique("p"), "value": "1"}]}
    ),
    ("/logged-models/{model_id}/artifacts/directories", "GET"): Call(
        "GET", f"{API}/logged-models/{{model_id}}/artifacts/directories"
    ),
    ("/artifacts", "GET"): Call("GET", f"{ARTIFACTS}/artifacts", lambda w: {"path": f"{w.experiment_id}/{w.run_id}"}),
    ("/artifacts/{path:path}", "PUT"): Call("PUT", f"{ARTIFACTS}/artifacts/{{art}}", content=b"hello"),
    ("/artifacts/{path:path}", "GET"): Call("GET", f"{ARTIFACTS}/artifacts/{{art}}", setup=_file("f.txt")),
    ("/mpu/create/{path:path}", "POST"): Call(
        "POST", f"{ARTIFACTS}/mpu/create/{{art}}", lambda w: {"path": _art(w), "num_parts": 1}, exact=False
    ),
    ("/mpu/part/{path:path}", "PUT"): Call("PUT", f"{ARTIFACTS}/mpu/part/{{art}}", content=b"x", exact=False),
    ("/mpu/complete/{path:path}", "POST"): Call(
        "POST",
        f"{ARTIFACTS}/mpu/complete/{{art}}",
        lambda w: {"path": _art(w), "upload_id": "u", "parts": []},
        exact=False,
    ),
    ("/mpu/abort/{path:path}", "POST"): Call(
        "POST", f"{ARTIFACTS}/mpu/abort/{{art}}", lambda w: {"path": _art(w), "upload_id": "u"}, exact=False
    ),
    ("/artifacts/list", "GET"): Call("GET", f"{API}/artifacts/list", R),
    ("/server-info", "GET"): Call("GET", f"{AJAX3}/server-info"),
    ("/get-artifact", "GET"): Call("GET", "/get-artifact", lambda w: {**R(w), "path": "f.txt"}, setup=_file("f.txt")),
    ("/logged-models/{model_id}/artifacts/files", "GET"): Call(
        "GET",
        "/ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files",
        lambda w: {"artifact_file_path": "f.txt"},
        exact=False,
    ),
    ("/graphql", "GET"): Call("GET", "/graphql", lambda w: {"query": '{ test(inputString: "x") { output } }'}),
    ("/graphql", "POST"): Call("POST", "/graphql", lambda w: {"query": '{ test(inputString: "x") { output } }'}),
    ("/registered-models/search", "GET"): Call("GET", f"{API}/registered-models/search"),
    ("/model-versions/search", "GET"): Call("GET", f"{API}/model-versions/search"),
    ("/metrics/get-history-bulk", "GET"): Call(
        "GET", "/ajax-api/2.0/mlflow/metrics/get-history-bulk", lambda w: {"run_id": [w.run_id], "metric_key": "m"}
    ),
    # the model registry (rm: the registered model, MANAGE for the manager, READ by default for the others)
    ("/registered-models/create", "POST"): Call("POST", f"{MODELS}/create", lambda w: {"name": w.unique("rm")}),
    ("/registered-models/get", "GET"): Call("GET", f"{MODELS}/get", RM),
    ("/registered-models/rename", "POST"): Call(  # onto its own name: refused (400) once allowed
        "POST", f"{MODELS}/rename", lambda w: {**RM(w), "new_name": w.registered_model}, exact=False
    ),
    ("/registered-models/update", "PATCH"): Call("PATCH", f"{MODELS}/update", lambda w: {**RM(w), "description": "d"}),
    ("/registered-models/get-latest-versions", "GET"): Call("GET", f"{MODELS}/get-latest-versions", RM),
    ("/registered-models/get-latest-versions", "POST"): Call("POST", f"{MODELS}/get-latest-versions", RM),
    ("/registered-models/set-tag", "POST"): Call(
        "POST", f"{MODELS}/set-tag", lambda w: {**RM(w), "key": "k", "value": "v"}
    ),
    ("/registered-models/delete-tag", "DELETE"): Call(
        "DELETE", f"{MODELS}/delete-tag", lambda w: {**RM(w), "key": "t"}, setup=_model_tags
    ),
    ("/registered-models/alias", "POST"): Call(
        "POST", f"{MODELS}/alias", lambda w: {**RM(w), "alias": "best", "version": "1"}
    ),
    ("/registered-models/alias", "GET"): Call(
        "GET", f"{MODELS}/alias", lambda w: {**RM(w), "alias": "champ"}, setup=_model_tags
    ),
    ("/registered-models/alias", "DELETE"): Call(
        "DELETE", f"{MODELS}/alias", lambda w: {**RM(w), "alias": "champ"}, setup=_model_tags
    ),
    ("/model-versions/create", "POST"): Call(
        "POST", f"{VERSIONS}/create", lambda w: {**RM(w), "source": f"runs:/{w.run_id}/model", "run_id": w.run_id}
    ),
    ("/model-versions/get", "GET"): Call("GET", f"{VERSIONS}/get", MV),
    ("/model-versions/update", "PATCH"): Call("PATCH", f"{VERSIONS}/update", lambda w: {**MV(w), "description": "d"}),
    ("/model-versions/transition-stage", "POST"): Call(
        "POST",
        f"{VERSIONS}/transition-stage",
        lambda w: {**MV(w), "stage": "Staging", "archive_existing_versions": False},
    ),
    ("/model-versions/get-download-uri", "GET"): Call("GET", f"{VERSIONS}/get-download-uri", MV),
    ("/model-versions/set-tag", "POST"): Call(
        "POST", f"{VERSIONS}/set-tag", lambda w: {**MV(w), "key": "k", "value": "v"}
    ),
    ("/model-versions/delete-tag", "DELETE"): Call(
        "DELETE", f"{VERSIONS}/delete-tag", lambda w: {**MV(w), "key": "t"}, setup=_model_tags
    ),
    ("/model-versions/get-artifact", "GET"): Call(  # no such file: 404 once allowed
        "GET", "/model-versions/get-artifact", lambda w: {**MV(w), "path": "MLmodel"}, exact=False
    ),
    # traces take their experiment's permission (trace T of experiment E, logged by the admin)
    ("/traces", "POST"): Call("POST", f"{API3}/traces", lambda w: _start_trace(w, _trace_id())),
    ("/traces/get", "GET"): Call("GET", f"{API3}/traces/get", T),
    ("/traces/batchGet", "GET"): Call("GET", f"{API3}/traces/batchGet", lambda w: {"trace_ids": [w.trace_id]}),
    ("/traces/batchGetInfos", "POST"): Call(
        "POST", f"{API3}/traces/batchGetInfos", lambda w: {"trace_ids": [w.trace_id]}
    ),
    ("/traces/search", "POST"): Call(
        "POST",
        f"{API3}/traces/search",
        lambda w: {
            "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": w.experiment_id}}]
        },
    ),
    ("/traces/metrics", "POST"): Call(
        "POST",
        f"{API3}/traces/metrics",
        lambda w: {
            "experiment_ids": [w.experiment_id],
            "metric_name": "trace_count",
            "aggregations": [{"aggregation_type": "COUNT"}],
        },
    ),
    ("/traces/delete-traces", "POST"): Call(
        "POST", f"{API}/traces/delete-traces", lambda w: {**E(w), "request_ids": [w.spare_trace]}, setup=_spare_trace
    ),
    ("/traces/link-to-run", "POST"): Call(
        "POST", f"{API}/traces/link-to-run", lambda w: {"trace_ids": [w.trace_id], "run_id": w.run_id}
    ),
    ("/traces/{trace_id}", "GET"): Call("GET", f"{API3}/traces/{{trace}}"),
    ("/traces/{trace_id}/tags", "PATCH"): Call(
        "PATCH", f"{API}/traces/{{trace}}/tags", lambda w: {"key": "k", "value": "v"}
    ),
    ("/traces/{trace_id}/tags", "DELETE"): Call(
        "DELETE", f"{API}/traces/{{trace}}/tags", lambda w: {"key": "t"}, setup=_trace_tag
    ),
    ("/traces/{trace_id}/assessments", "POST"): Call(
        "POST", f"{API3}/traces/{{trace}}/assessments", lambda w: {"assessment": _feedback(w)}
    ),
    ("/traces/{trace_id}/assessments/{assessment_id}", "GET"): Call(
        "GET", f"{API3}/traces/{{trace}}/assessments/{{assessment}}", setup=_assessment
    ),
    ("/traces/{trace_id}/assessments/{assessment_id}", "PATCH"): Call(
        "PATCH",
        f"{API3}/traces/{{trace}}/assessments/{{assessment}}",
        lambda w: {"assessment": {"rationale": "r"}, "update_mask": "rationale"},
        setup=_assessment,
    ),
    ("/traces/{trace_id}/assessments/{assessment_id}", "DELETE"): Call(
        "DELETE", f"{API3}/traces/{{trace}}/assessments/{{assessment}}", setup=_assessment
    ),
    ("/get-trace-artifact", "GET"): Call("GET", f"{API}/get-trace-artifact", lambda w: {"request_id": w.trace_id}),
    ("/v1/traces", "POST"): Call(
        "POST",
        "/v1/traces",
        content=b"",  # the span is made per call (a new trace each time)
        headers=lambda w: {"content-type": "application/json", "x-mlflow-experiment-id": w.experiment_id},
    ),
    ("/experiments/permissions/create", "POST"): Call("POST", f"{API}/experiments/permissions/create", _permission),
    ("/experiments/permissions/get", "GET"): Call("GET", f"{API}/experiments/permissions/get", _permission),
    ("/experiments/permissions/update", "PATCH"): Call(
        "PATCH", f"{API}/experiments/permissions/update", lambda w: {**_permission(w), "permission": "EDIT"}
    ),
    ("/experiments/permissions/delete", "DELETE"): Call("DELETE", f"{API}/experiments/permissions/delete", _permission),
    ("/registered-models/permissions/create", "POST"): Call(
        "POST", f"{API}/registered-models/permissions/create", _rm_permission
    ),
    ("/registered-models/permissions/get", "GET"): Call(
        "GET", f"{API}/registered-models/permissions/get", _rm_permission
    ),
    ("/registered-models/permissions/update", "PATCH"): Call(
        "PATCH", f"{API}/registered-models/permissions/update", lambda w: {**_rm_permission(w), "permission": "EDIT"}
    ),
    ("/registered-models/permissions/delete", "DELETE"): Call(
        "DELETE", f"{API}/registered-models/permissions/delete", _rm_permission
    ),
    # destructive calls last: each is undone (restore) or works on something made for it
    ("/experiments/delete", "POST"): Call("POST", f"{API}/experiments/delete", E),
    ("/experiments/restore", "POST"): Call("POST", f"{API}/experiments/restore", E),
    ("/runs/delete", "POST"): Call("POST", f"{API}/runs/delete", R),
    ("/runs/restore", "POST"): Call("POST", f"{API}/runs/restore", R),
    ("/artifacts/{path:path}", "DELETE"): Call("DELETE", f"{ARTIFACTS}/artifacts/{{art}}", setup=_file("f.txt")),
    ("/logged-models/{model_id}", "DELETE"): Call("DELETE", f"{API}/logged-models/{{model_id}}", setup=_model),
    ("/model-versions/delete", "DELETE"): Call(
        "DELETE", f"{VERSIONS}/delete", lambda w: {**RM(w), "version": w.spare_version}, setup=_spare_version
    ),
    ("/registered-models/delete", "DELETE"): Call("DELETE", f"{MODELS}/delete", RM),
}
# The user routes are checked on their own (test_user_routes.py).
NOT_WALKED: set[str] = set()
ROLES = {"reader": "READ", "editor": "EDIT", "manager": "MANAGE", "stranger": "NO_PERMISSIONS"}


def _expect_allowed(role: str, access: Access | None) -> bool:
    if role == "admin":
        return True
    assert access is not None
    if access.kind == USER:
        return True
    if access.kind in ON_EXPERIMENT:  # linking traces to a run: EDIT on the run and READ on each trace
        return all(LEVELS[ROLES[role]] >= LEVELS[a.level] for a in (access, *access.also))
    if access.kind == REGISTERED_MODEL:
        held = "MANAGE" if role == "manager" else "READ"  # the manager's grant, else the default
        return LEVELS[held] >= LEVELS[access.level]
    return False  # admin-only and self routes: test_user_routes.py


def _send(api: Api, call: Call, w: World) -> httpx.Response:
    path = call.path.replace("{model_id}", w.model_id).replace("{art}", _art(w))
    path = path.replace("{trace}", w.trace_id).replace("{assessment}", w.assessment_id)
    fields = call.fields(w) if call.fields else None
    headers = call.headers(w) if call.headers else None
    if call.path == "/v1/traces":
        return api.client.request(call.method, path, content=_otlp_span(w), headers=headers)
    if call.content is not None:
        return api.client.request(call.method, path, content=call.content, headers=headers)
    if call.method in ("GET", "DELETE") and fields is None:
        return api.client.request(call.method, path)
    response = api.call(call.method, path, fields)
    if fields and "new_name" in fields and "experiment_id" in fields and response.status_code == 200:
        w.experiment_name = fields["new_name"]
    return response


def test_each_role_gets_what_its_permission_allows(auth_gateway: AuthGateway) -> None:
    root = admin(auth_gateway)
    name = f"matrix-{uuid.uuid4().hex[:6]}"
    experiment_id = root.ok("POST", f"{API}/experiments/create", {"name": name})["experiment_id"]
    run_id = root.ok("POST", f"{API}/runs/create", {"experiment_id": experiment_id})["run"]["info"]["run_id"]
    w = World(experiment_id, name, run_id, "")
    _model(root, w)
    _trace(root, w)
    users = {role: new_user(auth_gateway, role) for role in ROLES}
    _registered(root, w)
    new_user(auth_gateway, "bystander")
    for role, permission in ROLES.items():
        grant(auth_gateway, role, experiment_id, permission)
    users["admin"] = root

    endpoints = {(s.path, m): s for _, _, s in _served(auth_gateway) if s is not None for m in s.methods}
    walked = {k for k in endpoints if k[0] not in NOT_WALKED and not k[0].startswith("/users/")}
    assert walked == set(CALLS), f"routes without a call in the matrix: {walked ^ set(CALLS)}"

    for role, api in users.items():
        for key, call in CALLS.items():
            if call.setup is not None:
                call.setup(root, w)
            allowed = _expect_allowed(role, endpoints[key].access)
            response = _send(api, call, w)
            where = f"{role}: {call.method} {call.path} -> {response.status_code} {response.text[:200]}"
            if not allowed:
                assert response.status_code == 403, where
                assert response.json() == {"error_code": "PERMISSION_DENIED", "message": "Permission denied"}, where
            elif call.exact:
                assert response.status_code == 200, where
            else:
                assert response.status_code not in (401, 403) and response.status_code < 500, where
        if role != "admin":  # put back what an allowed delete removed, for the next role
            root.call("POST", f"{API}/experiments/restore", {"experiment_id": w.experiment_id})
            root.call("POST", f"{API}/runs/restore", {"run_id": w.run_id})
            _registered(root, w)  # the manager's delete removed it and revoked the grant


def test_reader_reads_editor_writes_manager_manages(auth_gateway: AuthGateway) -> None:
    """The rules that matter most, written out by hand (not derived from the declarations)."""
    root = admin(auth_gateway)
    experiment_id = root.ok("POST", f"{API}/experiments/create", {"name": f"rules-{uuid.uuid4().hex[:6]}"})[
        "experiment_id"
    ]
    run_id = root.ok("POST", f"{API}/runs/create", {"experiment_id": experiment_id})["run"]["info"]["run_id"]
    reader, editor, manager = (new_user(auth_gateway, n) for n in ("r1", "e1", "m1"))
    grant(auth_gateway, "r1", experiment_id, "READ")
    grant(auth_gateway, "e1", experiment_id, "EDIT")
    grant(auth_gateway, "m1", experiment_id, "MANAGE")
    metric = {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": 1, "step": 0}
    assert reader.call("GET", f"{API}/runs/get", {"run_id": run_id}).status_code == 200
    assert reader.call("POST", f"{API}/runs/log-metric", metric).status_code == 403
    assert reader.call("POST", f"{API}/runs/create", {"experiment_id": experiment_id}).status_code == 403
    assert editor.call("POST", f"{API}/runs/log-metric", metric).status_code == 200
    assert editor.call("POST", f"{API}/runs/create", {"experiment_id": experiment_id}).status_code == 200
    assert editor.call("POST", f"{API}/runs/delete", {"run_id": run_id}).status_code == 403
    perm = {"experiment_id": experiment_id, "username": "r1", "permission": "EDIT"}
    assert editor.call("PATCH", f"{API}/experiments/permissions/update", perm).status_code == 403
    assert manager.call("PATCH", f"{API}/experiments/permissions/update", perm).status_code == 200
    assert reader.call("POST", f"{API}/runs/log-metric", metric).status_code == 200  # now an editor
    assert manager.call("POST", f"{API}/runs/delete", {"run_id": run_id}).status_code == 200
    # the creator of an experiment gets MANAGE on it, as on the stock server
    own = editor.ok("POST", f"{API}/experiments/create", {"name": f"own-{uuid.uuid4().hex[:6]}"})["experiment_id"]
    assert (
        editor.ok("GET", f"{API}/experiments/permissions/get", {"experiment_id": own, "username": "e1"})[
            "experiment_permission"
        ]["permission"]
        == "MANAGE"
    )
    assert editor.call("POST", f"{API}/experiments/delete", {"experiment_id": own}).status_code == 200
