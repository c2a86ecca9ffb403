"""MLflow 3 tracing through the official client and an OpenTelemetry SDK exporter, in both modes: traces are
stored (ClickHouse rows asserted), read back, searched, tagged, assessed and deleted."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import mlflow
import pytest
from mlflow.entities import AssessmentSource
from mlflow.exceptions import MlflowException

from tests.conftest import Gateway
from tests.traces.traced import failing, pipeline


@pytest.fixture
def tracing(gateway: Gateway, mlflow_client: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The client with synchronous trace export, so a traced call has been sent when it returns."""
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
    reset: Any = mlflow.tracing.reset
    reset()
    yield mlflow_client
    reset()


def _rows(gateway: Gateway, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    return gateway.runtime.tables.query(sql, params)


def test_nested_spans_are_stored_and_read_back(gateway: Gateway, tracing: Any) -> None:
    exp = mlflow.set_experiment("traced")
    with mlflow.start_run() as run:
        assert pipeline("why?") == "WHY?"
    trace_id = mlflow.get_last_active_trace_id()
    assert trace_id is not None

    trace = mlflow.get_trace(trace_id)
    assert trace.info.experiment_id == exp.experiment_id
    assert trace.info.state.value == "OK"
    assert trace.info.tags["mlflow.traceName"] == "pipeline"
    assert trace.info.trace_metadata["mlflow.sourceRun"] == run.info.run_id
    spans = {s.name: s for s in trace.data.spans}
    assert set(spans) == {"pipeline", "retrieve", "answer"}
    root = spans["pipeline"]
    assert root.parent_id is None
    assert spans["retrieve"].parent_id == root.span_id and spans["answer"].parent_id == root.span_id
    assert spans["retrieve"].inputs == {"q": "why?"} and spans["retrieve"].outputs == ["doc-1", "doc-2"]
    assert spans["answer"].span_type == "LLM"
    assert root.outputs == "WHY?"

    # the ClickHouse rows: one per span, typed columns for queries, one trace row with the client's info
    rows = _rows(
        gateway,
        "SELECT name, span_type, status_code, parent_span_id = '' FROM spans FINAL "
        "WHERE trace_id = %(t)s ORDER BY name",
        {"t": trace_id},
    )
    assert rows == [("answer", "LLM", "OK", 0), ("pipeline", "UNKNOWN", "OK", 1), ("retrieve", "RETRIEVER", "OK", 0)]
    info = _rows(
        gateway,
        "SELECT experiment_id, state, request_preview FROM traces FINAL WHERE trace_id = %(t)s",
        {"t": trace_id},
    )
    assert info == [(exp.experiment_id, "OK", '{"question": "why?"}')]


def test_search_traces_to_a_dataframe_with_filters_and_order(gateway: Gateway, tracing: Any) -> None:
    exp = mlflow.set_experiment("searched")
    pipeline("a")
    first = mlflow.get_last_active_trace_id()
    time.sleep(0.01)
    with pytest.raises(ValueError):
        failing()
    failed = mlflow.get_last_active_trace_id()
    time.sleep(0.01)
    pipeline("b")
    last = mlflow.get_last_active_trace_id()

    df = mlflow.search_traces(locations=[exp.experiment_id])
    assert list(df["trace_id"]) == [last, failed, first]  # newest first, MLflow's default order
    errors = mlflow.search_traces(locations=[exp.experiment_id], filter_string="attributes.status = 'ERROR'")
    assert list(errors["trace_id"]) == [failed]
    assert errors["state"].iloc[0] == "ERROR"
    oldest = mlflow.search_traces(locations=[exp.experiment_id], order_by=["timestamp_ms ASC"], max_results=2)
    assert list(oldest["trace_id"]) == [first, failed]
    by_span = mlflow.search_traces(locations=[exp.experiment_id], filter_string="span.name = 'retrieve'")
    assert set(by_span["trace_id"]) == {first, last}
    by_name = mlflow.search_traces(locations=[exp.experiment_id], filter_string="trace.name = 'failing'")
    assert list(by_name["trace_id"]) == [failed]
    by_meta = mlflow.search_traces(
        locations=[exp.experiment_id], filter_string="metadata.mlflow.trace_schema.version = '3'"
    )
    assert len(by_meta) == 3
    with pytest.raises(MlflowException, match="Invalid"):
        mlflow.search_traces(locations=[exp.experiment_id], filter_string="attributes.nope = 1")


def test_tags_and_deletes(gateway: Gateway, tracing: Any) -> None:
    client = tracing
    exp = mlflow.set_experiment("tagged")
    ids = []
    for q in ("a", "b", "c"):
        pipeline(q)
        ids.append(mlflow.get_last_active_trace_id())
        time.sleep(0.01)
    client.set_trace_tag(ids[0], "team", "search")
    assert mlflow.get_trace(ids[0]).info.tags["team"] == "search"
    tagged = mlflow.search_traces(locations=[exp.experiment_id], filter_string="tags.team = 'search'")
    assert list(tagged["trace_id"]) == [ids[0]]
    client.delete_trace_tag(ids[0], "team")
    assert "team" not in mlflow.get_trace(ids[0]).info.tags
    with pytest.raises(MlflowException):
        client.delete_trace_tag(ids[0], "team")

    assert client.delete_traces(exp.experiment_id, trace_ids=[ids[2]]) == 1
    assert mlflow.get_trace(ids[2]) is None
    cutoff = mlflow.get_trace(ids[0]).info.request_time
    assert client.delete_traces(exp.experiment_id, max_timestamp_millis=cutoff) == 1
    left = mlflow.search_traces(locations=[exp.experiment_id])
    assert list(left["trace_id"]) == [ids[1]]
    assert _rows(gateway, "SELECT count() FROM trace_deletions FINAL") == [(2,)]


def test_feedback_and_expectations(gateway: Gateway, tracing: Any) -> None:
    exp = mlflow.set_experiment("assessed")
    pipeline("q")
    trace_id = mlflow.get_last_active_trace_id()
    assert trace_id is not None
    human = AssessmentSource(source_type="HUMAN", source_id="reviewer")
    feedback: Any = mlflow.log_feedback(trace_id=trace_id, name="correct", value=True, source=human, rationale="ok")
    expectation: Any = mlflow.log_expectation(trace_id=trace_id, name="expected", value={"answer": "Q"})
    assert feedback.assessment_id.startswith("a-")

    trace = mlflow.get_trace(trace_id)
    by_name = {a.name: a for a in trace.info.assessments}
    assert by_name["correct"].feedback.value is True
    assert by_name["correct"].rationale == "ok" and by_name["correct"].source.source_id == "reviewer"
    assert by_name["expected"].expectation.value == {"answer": "Q"}
    fetched: Any = mlflow.get_assessment(trace_id, expectation.assessment_id)
    assert fetched.expectation.value == {"answer": "Q"}

    mlflow.update_assessment(trace_id, feedback.assessment_id, mlflow.entities.Feedback(name="correct", value=False))
    updated: Any = mlflow.get_assessment(trace_id, feedback.assessment_id)
    assert updated.feedback.value is False
    found = mlflow.search_traces(locations=[exp.experiment_id], filter_string="feedback.correct = 'false'")
    assert list(found["trace_id"]) == [trace_id]
    mlflow.delete_assessment(trace_id, expectation.assessment_id)
    assert [a.name for a in mlflow.get_trace(trace_id).info.assessments] == ["correct"]
    rows = _rows(
        gateway, "SELECT name, kind, deleted FROM trace_assessments FINAL WHERE trace_id = %(t)s ORDER BY name",
        {"t": trace_id},
    )  # fmt: skip
    assert rows == [("correct", "feedback", 0), ("expected", "expectation", 1)]


def test_link_traces_to_a_run(gateway: Gateway, tracing: Any) -> None:
    client = tracing
    exp = mlflow.set_experiment("linked")
    pipeline("q")  # outside any run
    trace_id = mlflow.get_last_active_trace_id()
    run = client.create_run(exp.experiment_id)
    client.link_traces_to_run([trace_id], run.info.run_id)
    found = mlflow.search_traces(locations=[exp.experiment_id], filter_string=f"run_id = '{run.info.run_id}'")
    assert list(found["trace_id"]) == [trace_id]


def test_opentelemetry_sdk_exporter(gateway: Gateway, tracing: Any) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    exp = mlflow.set_experiment("otel")
    exporter = OTLPSpanExporter(
        endpoint=f"{gateway.url}/v1/traces", headers={"x-mlflow-experiment-id": exp.experiment_id}
    )
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("agent") as root:
        root.set_attribute("gen_ai.request.model", "gpt-x")
        with tracer.start_as_current_span("tool") as tool:
            tool.set_status(Status(StatusCode.ERROR, "tool failed"))
    provider.shutdown()
    trace_id = "tr-" + format(root.get_span_context().trace_id, "032x")

    found = mlflow.search_traces(locations=[exp.experiment_id], return_type="list")
    assert [t.info.trace_id for t in found] == [trace_id]
    trace = mlflow.get_trace(trace_id)
    assert {s.name for s in trace.data.spans} == {"agent", "tool"}
    assert trace.info.tags["mlflow.traceName"] == "agent"
    assert _rows(gateway, "SELECT name, status_code FROM spans FINAL WHERE trace_id = %(t)s ORDER BY name",
                 {"t": trace_id}) == [("agent", "UNSET"), ("tool", "ERROR")]  # fmt: skip
    model = _rows(
        gateway,
        "SELECT attr_values[indexOf(attr_keys, 'gen_ai.request.model')] FROM spans FINAL WHERE name = 'agent'",
    )
    assert model == [('"gpt-x"',)]
    by_attr = mlflow.search_traces(
        locations=[exp.experiment_id], filter_string="span.attributes.gen_ai.request.model = 'gpt-x'"
    )
    assert len(by_attr) == 1


def _otlp_json(trace_hex: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceSpans": [{"resource": {}, "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]}]}


def test_otlp_json_and_a_large_span_by_claim_check(gateway: Gateway, tracing: Any) -> None:
    exp = mlflow.set_experiment("otlp-json")
    trace_hex, span_hex = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    big = "x" * (300 * 1024)  # above the 256 KiB inline bound: the payload goes to the object store
    now = time.time_ns()
    span = {
        "traceId": trace_hex,
        "spanId": span_hex,
        "name": "big",
        "startTimeUnixNano": str(now),
        "endTimeUnixNano": str(now + 5_000_000),
        "attributes": [{"key": "mlflow.spanInputs", "value": {"stringValue": big}}],
        "status": {"code": 1},
    }
    headers = {"content-type": "application/json", "x-mlflow-experiment-id": exp.experiment_id}
    answer = httpx.post(f"{gateway.url}/v1/traces", content=json.dumps(_otlp_json(trace_hex, [span])), headers=headers)
    assert answer.status_code == 200, answer.text
    trace = mlflow.get_trace(f"tr-{trace_hex}")
    assert trace.info.execution_duration == 5
    assert trace.data.spans[0].inputs == big
    (ref, inline), = _rows(gateway, "SELECT payload_ref, payload FROM spans FINAL WHERE trace_id = %(t)s",
                           {"t": f"tr-{trace_hex}"})  # fmt: skip
    assert ref.endswith(f"/spans/{span_hex}.pb") and inline == ""
    assert gateway.runtime.objects.size(ref) is not None
    # the UI's trace view reads the spans in MLflow's own span form
    data = httpx.get(f"{gateway.url}/ajax-api/3.0/mlflow/get-trace-artifact", params={"request_id": f"tr-{trace_hex}"})
    body = data.json()
    assert body["spans"][0]["span_id"] == base64.b64encode(bytes.fromhex(span_hex)).decode()
    assert json.loads(body["spans"][0]["attributes"]["mlflow.spanInputs"]) == big


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        ({"content-type": "text/plain"}, b"x", "Invalid Content-Type"),
        ({"content-type": "application/x-protobuf"}, b"x", "x-mlflow-experiment-id"),
        ({"content-type": "application/x-protobuf", "x-mlflow-experiment-id": "0"}, b"\xff\xff\xff", "Invalid"),
        ({"content-type": "application/json", "x-mlflow-experiment-id": "0"}, b"[1]", "Invalid"),
        ({"content-type": "application/json", "x-mlflow-experiment-id": "0"}, b"{}", "no spans"),
    ],
)
def test_bad_otlp_requests_answer_400(gateway: Gateway, headers: dict[str, str], body: bytes, message: str) -> None:
    answer = httpx.post(f"{gateway.url}/v1/traces", content=body, headers=headers)
    assert answer.status_code == 400
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert message in answer.json()["message"]


def test_unknown_traces_answer_404(gateway: Gateway) -> None:
    answer = httpx.get(f"{gateway.url}/api/3.0/mlflow/traces/get", params={"trace_id": "tr-0"})
    assert answer.status_code == 404 and answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    answer = httpx.patch(f"{gateway.url}/api/2.0/mlflow/traces/tr-0/tags", json={"key": "k", "value": "v"})
    assert answer.status_code == 404


def test_the_ui_traces_page_lists_and_opens_a_trace(gateway: Gateway, tracing: Any) -> None:
    """The calls the web app's Traces page makes: the count, the list, then one trace's info and spans."""
    exp = mlflow.set_experiment("ui")
    pipeline("q")
    trace_id = mlflow.get_last_active_trace_id()
    ajax = f"{gateway.url}/ajax-api/3.0/mlflow"
    count = httpx.post(
        f"{ajax}/traces/metrics",
        json={"experiment_ids": [exp.experiment_id], "metric_name": "trace_count",
              "aggregations": [{"aggregation_type": "COUNT"}], "view_type": "TRACES"},
    ).json()  # fmt: skip
    assert count == {"data_points": [{"metric_name": "trace_count", "values": {"COUNT": 1.0}}]}
    location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": exp.experiment_id}}
    listed = httpx.post(f"{ajax}/traces/search", json={"locations": [location], "max_results": 25}).json()
    assert [t["trace_id"] for t in listed["traces"]] == [trace_id]
    assert listed["traces"][0]["tags"]["mlflow.traceName"] == "pipeline"
    info = httpx.get(f"{ajax}/traces/{trace_id}").json()["trace"]["trace_info"]
    assert info["state"] == "OK" and info["trace_location"]["mlflow_experiment"]["experiment_id"] == exp.experiment_id
    spans = httpx.get(f"{ajax}/get-trace-artifact", params={"request_id": trace_id}).json()["spans"]
    assert sorted(s["name"] for s in spans) == ["answer", "pipeline", "retrieve"]
    assert json.loads(next(s for s in spans if s["name"] == "answer")["attributes"]["mlflow.spanType"]) == "LLM"
