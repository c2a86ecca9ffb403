"""Trace routes with auth on take their experiment's permission (issue #16), written out by hand: a trace id
resolves to its experiment, a search needs READ on every experiment it names, the span endpoint EDIT on
the experiment of its ``x-mlflow-experiment-id`` header."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from tests.auth.conftest import API, Api, AuthGateway, admin, grant, new_user

API3 = "/api/3.0/mlflow"


def _location(experiment_id: str) -> dict[str, Any]:
    return {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}


def _start(api: Api, experiment_id: str) -> tuple[int, str]:
    trace_id = "tr-" + uuid.uuid4().hex
    info = {"trace_id": trace_id, "trace_location": _location(experiment_id), "request_time": "2026-01-01T00:00:00Z",
            "state": "OK"}  # fmt: skip
    return api.call("POST", f"{API3}/traces", {"trace": {"trace_info": info}}).status_code, trace_id


def _spans(api: Api, experiment_id: str) -> int:
    now = time.time_ns()
    span = {"traceId": uuid.uuid4().hex, "spanId": uuid.uuid4().hex[:16], "name": "s",
            "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 1000)}  # fmt: skip
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})
    headers = {"content-type": "application/json", "x-mlflow-experiment-id": experiment_id}
    return api.client.post("/v1/traces", content=body, headers=headers).status_code


def test_a_trace_takes_its_experiments_permission(auth_gateway: AuthGateway) -> None:
    root = admin(auth_gateway)
    mine = root.ok("POST", f"{API}/experiments/create", {"name": f"t-mine-{uuid.uuid4().hex[:6]}"})["experiment_id"]
    other = root.ok("POST", f"{API}/experiments/create", {"name": f"t-other-{uuid.uuid4().hex[:6]}"})["experiment_id"]
    reader, editor = new_user(auth_gateway, "tr-reader"), new_user(auth_gateway, "tr-editor")
    grant(auth_gateway, "tr-reader", mine, "READ")
    grant(auth_gateway, "tr-editor", mine, "EDIT")
    for name in ("tr-reader", "tr-editor"):
        grant(auth_gateway, name, other, "NO_PERMISSIONS")

    # logging: EDIT on the experiment named in the request (StartTraceV3's location, the span header)
    assert _start(reader, mine)[0] == 403
    status, trace_id = _start(editor, mine)
    assert status == 200
    assert _spans(reader, mine) == 403 and _spans(editor, mine) == 200
    assert _start(editor, other)[0] == 403 and _spans(editor, other) == 403
    _, hidden = _start(root, other)

    # reads: READ on the trace's experiment, resolved from the trace id
    assert reader.call("GET", f"{API3}/traces/get", {"trace_id": trace_id}).status_code == 200
    assert reader.call("GET", f"{API3}/traces/{trace_id}").status_code == 200
    assert reader.call("GET", f"{API3}/traces/get", {"trace_id": hidden}).status_code == 403
    assert reader.call("GET", f"{API3}/traces/{hidden}").status_code == 403
    assert reader.call("GET", f"{API}/get-trace-artifact", {"request_id": hidden}).status_code == 403
    assert reader.call("GET", f"{API3}/traces/batchGet", {"trace_ids": [trace_id, hidden]}).status_code == 403
    assert reader.call("POST", f"{API3}/traces/batchGetInfos", {"trace_ids": [trace_id]}).status_code == 200

    # a search needs READ on every experiment it names (all or nothing, as the stock app)
    found = reader.ok("POST", f"{API3}/traces/search", {"locations": [_location(mine)]})
    assert trace_id in [t["trace_id"] for t in found["traces"]] and len(found["traces"]) == 2  # + the spans' trace
    both = {"locations": [_location(mine), _location(other)]}
    assert reader.call("POST", f"{API3}/traces/search", both).status_code == 403
    assert len(root.ok("POST", f"{API3}/traces/search", both)["traces"]) == 3

    # writes: EDIT for tags and assessments, MANAGE to delete traces
    tag = {"key": "k", "value": "v"}
    assert reader.call("PATCH", f"{API}/traces/{trace_id}/tags", tag).status_code == 403
    assert editor.call("PATCH", f"{API}/traces/{trace_id}/tags", tag).status_code == 200
    assert editor.call("PATCH", f"{API}/traces/{hidden}/tags", tag).status_code == 403
    # a field named like the path parameter does not stand in for it in the check (the handler takes the path's)
    assert editor.call("PATCH", f"{API}/traces/{hidden}/tags", {**tag, "trace_id": trace_id}).status_code == 403
    assert reader.call("GET", f"{API3}/traces/{hidden}", {"trace_id": trace_id}).status_code == 403
    feedback = {"assessment_name": "ok", "trace_id": trace_id, "feedback": {"value": True},
                "source": {"source_type": "HUMAN", "source_id": "x"}}  # fmt: skip
    assert reader.call("POST", f"{API3}/traces/{trace_id}/assessments", {"assessment": feedback}).status_code == 403
    made = editor.ok("POST", f"{API3}/traces/{trace_id}/assessments", {"assessment": feedback})["assessment"]
    path = f"{API3}/traces/{trace_id}/assessments/{made['assessment_id']}"
    assert reader.call("GET", path).status_code == 200
    assert reader.call("DELETE", path).status_code == 403
    assert editor.call("DELETE", path).status_code == 200
    delete = {"experiment_id": mine, "request_ids": [trace_id]}
    assert editor.call("POST", f"{API}/traces/delete-traces", delete).status_code == 403
    manager = new_user(auth_gateway, "tr-manager")
    grant(auth_gateway, "tr-manager", mine, "MANAGE")
    assert manager.ok("POST", f"{API}/traces/delete-traces", delete) == {"traces_deleted": 1}

    # linking traces to a run: EDIT on the run, READ on each trace
    run_id = root.ok("POST", f"{API}/runs/create", {"experiment_id": mine})["run"]["info"]["run_id"]
    _, linked = _start(root, mine)
    link = {"run_id": run_id, "trace_ids": [linked]}
    assert reader.call("POST", f"{API}/traces/link-to-run", link).status_code == 403
    assert editor.call("POST", f"{API}/traces/link-to-run", link).status_code == 200
    hidden_link = {"run_id": run_id, "trace_ids": [hidden]}
    assert editor.call("POST", f"{API}/traces/link-to-run", hidden_link).status_code == 403
