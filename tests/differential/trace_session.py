"""The tracing session of the differential test: traces logged by ``@mlflow.trace`` and ``mlflow.start_span``
(nested spans, an error, one under a run), read back, searched with filters and orders, tagged, assessed,
linked to a run and deleted, through the official client and raw REST (issue #16 item 5).

Same recording rules as :mod:`tests.differential.session`. What legitimately differs between two servers is
normalized: trace, span and assessment ids become placeholders in order of appearance (``TRACE<n>``,
``SPAN<n>``, ``ASSESSMENT<n>``), times and durations (request time, span start/end, assessment create/update
times, execution duration) are reduced to whether they are set, and the client-measured
``mlflow.trace.sizeBytes``/``sizeStats`` metadata is left out (its value counts the ids' bytes).

Left out on purpose (deliberate differences, README "Where behaviour differs" under Traces): a bad OTLP
request (``POST /v1/traces``: the stock server answers FastAPI's ``{"detail": ...}``, the gateway an
MLflow-shaped error), and anything that depends on the span endpoint's 10 s cache of an experiment's active
state (spans sent to an experiment deleted a moment ago).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Assessment, AssessmentSource, Feedback, Span, SpanEvent, Trace, TraceInfo

from tests.differential.session import Recorder, Step, _client_for
from tests.traces.traced import failing, pipeline

_TRACE_ID = re.compile(r"\btr-[0-9a-f]{32}\b")
_ASSESSMENT_ID = re.compile(r"\ba-[0-9a-f]{32}\b")
# Client-measured sizes: their values count the ids' and times' characters, which differ run to run.
_SIZE_METADATA = {"mlflow.trace.sizeBytes", "mlflow.trace.sizeStats"}
_TIME_FIELDS = {"request_time", "create_time", "last_update_time", "execution_duration", "timestamp_ms",
                "execution_time_ms", "start_time_ns", "end_time_ns"}  # fmt: skip
_API3 = "/api/3.0/mlflow/"
MISSING = "tr-" + "0" * 32


class TraceRecorder(Recorder):
    """A :class:`Recorder` that also knows traces, spans and assessments."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.traces: dict[str, str] = {}
        self.spans: dict[str, str] = {}
        self.assessments: dict[str, str] = {}

    def trace_id(self, value: str) -> str:
        return self.traces.setdefault(value, f"TRACE{len(self.traces) + 1}")

    def span_id(self, value: str | None) -> str | None:
        if value is None:
            return None
        return self.spans.setdefault(value, f"SPAN{len(self.spans) + 1}")

    def text(self, value: str) -> str:
        value = _TRACE_ID.sub(lambda m: self.trace_id(m.group(0)), value)
        value = _ASSESSMENT_ID.sub(
            lambda m: self.assessments.setdefault(m.group(0), f"ASSESSMENT{len(self.assessments) + 1}"), value
        )
        return self.ids.artifact_uri(value)

    def plain(self, value: Any) -> Any:
        """JSON-able values with ids as placeholders and times reduced to whether they are set."""
        if isinstance(value, dict):
            return {
                self.text(str(k)): (x is not None)
                if k in _TIME_FIELDS
                else self.ids.exp(x)
                if k == "experiment_id" and isinstance(x, str)
                else self.plain(x)
                for k, x in value.items()
                if k not in _SIZE_METADATA
            }
        if isinstance(value, (list, tuple)):
            return [self.plain(x) for x in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def assessment(self, a: Assessment) -> Any:
        out: dict[str, Any] = a.to_dictionary()  # type: ignore[no-untyped-call]
        out.pop("trace_id", None)
        out["trace_id"] = self.trace_id(a.trace_id) if a.trace_id else None
        return self.plain(out)

    def info(self, info: TraceInfo) -> Any:
        return {
            "trace_id": self.trace_id(info.trace_id),
            "experiment_id": self.ids.exp(info.experiment_id) if info.experiment_id else None,
            "state": info.state.value,
            "request_preview": info.request_preview,
            "response_preview": info.response_preview,
            "client_request_id": info.client_request_id,
            "has_request_time": info.request_time is not None,
            "has_execution_duration": info.execution_duration is not None,
            "trace_metadata": self.plain(
                {k: self.ids.run(v) if k == "mlflow.sourceRun" else v for k, v in info.trace_metadata.items()}
            ),
            "tags": self.plain(dict(info.tags)),
            "assessments": sorted(
                (self.assessment(a) for a in info.assessments), key=lambda x: json.dumps(x, sort_keys=True)
            ),
        }

    def span(self, s: Span) -> Any:
        return {
            "name": s.name,
            "span_id": self.span_id(s.span_id),
            "parent_id": self.span_id(s.parent_id),
            "span_type": s.span_type,
            "status": [s.status.status_code.value, s.status.description],
            "inputs": self.plain(s.inputs),
            "outputs": self.plain(s.outputs),
            "attributes": self.plain({k: v for k, v in s.attributes.items() if k not in ("mlflow.traceRequestId",)}),
            "events": [[e.name, self.plain(e.attributes)] for e in s.events],
            "has_times": s.start_time_ns is not None and s.end_time_ns is not None,
        }

    def trace(self, t: Trace) -> Any:
        self.trace_id(t.info.trace_id)
        # spans in start order (ties by name): the order a server returns them in is not part of the API
        spans = sorted(t.data.spans, key=lambda s: (s.start_time_ns, s.name))
        for s in spans:
            self.span_id(s.span_id)
        return {"info": self.info(t.info), "spans": [self.span(s) for s in spans]}

    def convert(self, value: Any) -> Any:
        if isinstance(value, Trace):
            return self.trace(value)
        if isinstance(value, TraceInfo):
            return self.info(value)
        if isinstance(value, Assessment):
            return self.assessment(value)
        return super().convert(value)  # pages and lists too: their items come back through this method

    def rest3(self, label: str, method: str, path: str, **kwargs: Any) -> Any:
        """A raw REST call under ``/api/3.0/mlflow/``, its whole answer recorded."""
        return self.rest(label, method, path, _API3, keep_body=True, **kwargs)

    def answer(self, body: Any) -> Any:
        return self.plain(body)

    def finish(self) -> list[Step]:
        return [[self.text(label), self._placeholders(value)] for label, value in super().finish()]

    def _placeholders(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {self.text(str(k)): self._placeholders(x) for k, x in value.items()}
        if isinstance(value, list):
            return [self._placeholders(x) for x in value]
        if isinstance(value, str):
            return self.text(value)
        return value


def _reset() -> None:
    reset: Callable[[], None] = mlflow.tracing.reset
    reset()


def _pause() -> None:
    """Distinct request times, so orders by time never fall to tie-breaks (ms resolution)."""
    time.sleep(0.02)


def run_trace_session(uri: str) -> list[Step]:
    """The tracing session against ``uri``; trace export is synchronous, so a traced call has reached the
    server when it returns (and the gateway's reads wait for what it acknowledged)."""
    rec = TraceRecorder(uri)
    saved = os.environ.get("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING")
    os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
    _reset()
    try:
        with _client_for(uri, rec):
            client = MlflowClient(uri)
            exp = client.create_experiment("diff-traces")
            rec.ids.exp(exp)
            mlflow.set_experiment(experiment_id=exp)
            traces: dict[str, str] = {}
            sections: list[tuple[str, Callable[[], None]]] = [
                ("log", lambda: _log(rec, client, exp, traces)),
                ("get", lambda: _get(rec, client, traces)),
                ("search", lambda: _search(rec, client, exp, traces)),
                ("tags", lambda: _tags(rec, client, exp, traces)),
                ("assessments", lambda: _assessments(rec, client, exp, traces)),
                ("links", lambda: _links(rec, client, exp, traces)),
                ("deletes", lambda: _deletes(rec, client, exp, traces)),
            ]
            for name, section in sections:
                try:
                    section()
                except Exception as exc:  # recorded, so the comparison shows where a server broke the script
                    rec.note(f"section {name} aborted", f"{type(exc).__name__}: {exc}")
                    while mlflow.active_run():
                        mlflow.end_run()
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", None)
        else:
            os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = saved
        _reset()
    return rec.finish()


def _last(rec: TraceRecorder, traces: dict[str, str], name: str) -> str:
    trace_id = mlflow.get_last_active_trace_id()
    assert trace_id is not None, f"no trace for {name}"
    traces[name] = trace_id
    rec.trace_id(trace_id)
    _pause()
    return trace_id


# ---------------------------------------------------------------------------------------------------
def _log(rec: TraceRecorder, client: MlflowClient, exp: str, traces: dict[str, str]) -> None:
    with mlflow.start_run(run_name="traced") as run:
        rec.ids.run(run.info.run_id)
        rec.call("pipeline under a run", pipeline, "why?")
    _last(rec, traces, "in_run")
    try:
        failing()
    except ValueError as exc:
        rec.note("failing raised", str(exc))
    _last(rec, traces, "failed")
    rec.call("pipeline", pipeline, "b")
    _last(rec, traces, "plain")
    with mlflow.start_span("manual", span_type="CHAIN", attributes={"team": "x"}) as root:
        root.set_inputs({"a": 1})
        with mlflow.start_span("child") as child:
            child.set_inputs("in")
            with mlflow.start_span("grandchild", span_type="TOOL") as grandchild:
                grandchild.add_event(SpanEvent("tick", attributes={"n": 1}))  # type: ignore[abstract]
                grandchild.set_outputs({"ok": True})
            child.set_outputs("out")
        root.set_outputs([1, 2])
    _last(rec, traces, "manual")


def _get(rec: TraceRecorder, client: MlflowClient, traces: dict[str, str]) -> None:
    for name in ("in_run", "failed", "plain", "manual"):
        rec.call(f"get_trace {name}", mlflow.get_trace, traces[name])
    rec.call("client get_trace", client.get_trace, traces["plain"], display=False)
    rec.call("get_trace missing", mlflow.get_trace, MISSING, silent=True)
    rec.call("client get_trace missing", client.get_trace, MISSING, display=False)
    rec.rest3("rest get trace info", "GET", f"traces/{traces['failed']}")
    rec.rest3("rest get trace info missing", "GET", f"traces/{MISSING}")
    rec.rest3("rest batchGetInfos", "POST", "traces/batchGetInfos", json={"trace_ids": [traces["failed"], MISSING]})
    rec.rest3("rest batchGet missing", "GET", "traces/batchGet", params={"trace_ids": [MISSING]})
    rec.rest3("rest batchGetInfos missing", "POST", "traces/batchGetInfos", json={"trace_ids": [MISSING]})


def _ids(found: Any) -> Any:
    return [t.info.trace_id for t in found]


def _search(rec: TraceRecorder, client: MlflowClient, exp: str, traces: dict[str, str]) -> None:
    rec.call("search all", client.search_traces, locations=[exp])
    in_run = mlflow.get_trace(traces["in_run"])
    assert in_run is not None
    after = in_run.info.request_time
    filters = [
        "attributes.status = 'ERROR'",
        "attributes.status != 'ERROR'",
        "trace.status = 'OK'",
        "trace.name = 'failing'",
        "trace.name != 'pipeline'",
        f"attributes.timestamp_ms > {after}",
        f"timestamp_ms <= {after}",
        f"trace.timestamp >= {after} AND attributes.status = 'OK'",
        "attributes.execution_time_ms >= 0",
        "tags.mlflow.traceName = 'manual'",
        "tags.`mlflow.traceName` LIKE '_pipe%'",
        "tags.mlflow.traceName ILIKE '%PIPE%'",
        "metadata.mlflow.trace_schema.version = '3'",
        f"request_metadata.`mlflow.sourceRun` = '{in_run.info.trace_metadata['mlflow.sourceRun']}'",
        "span.name = 'retrieve'",
        "span.name = 'grandchild'",
        "span.type = 'TOOL'",
        "span.name LIKE 'retr%'",
        "span.attributes.team LIKE '%x%'",
        # Left out: `span.attributes.<key> = '<value>'`. The stock SQL store compares the span's whole JSON
        # with a LIKE pattern for `=`, so it never matches; the gateway compares the attribute's value.
        "attributes.status = 'NOPE'",
    ]
    for f in filters:
        label = f"search ids {f.replace(str(after), '<time of TRACE1>')!r}"
        rec.call(label, lambda f=f: _ids(client.search_traces(locations=[exp], filter_string=f)))
    orders = [
        ["timestamp_ms ASC"],
        ["timestamp_ms DESC"],
        ["attributes.timestamp_ms"],
        # Left out: ordering by execution_time. Durations are measured by the client, so two runs of the session
        # order traces of about the same duration differently on any server.
        ["status", "timestamp_ms DESC"],
    ]
    for o in orders:
        rec.call(f"search ids order {o}", lambda o=o: _ids(client.search_traces(locations=[exp], order_by=o)))
    first = client.search_traces(locations=[exp], max_results=3, order_by=["timestamp_ms ASC"])
    rec.note("page 1", {"ids": [rec.trace_id(i) for i in _ids(first)], "has_token": bool(first.token)})
    second = client.search_traces(locations=[exp], max_results=3, order_by=["timestamp_ms ASC"], page_token=first.token)
    rec.note("page 2", {"ids": [rec.trace_id(i) for i in _ids(second)], "has_token": bool(second.token)})
    rec.call("search no spans", client.search_traces, locations=[exp], filter_string="trace.name = 'failing'",
             include_spans=False)  # fmt: skip
    rec.call("fluent search list", mlflow.search_traces, locations=[exp], filter_string="trace.name = 'manual'",
             return_type="list")  # fmt: skip
    rec.call(
        "fluent search run_id",
        lambda: _ids(mlflow.search_traces(run_id=in_run.info.trace_metadata["mlflow.sourceRun"], return_type="list")),
    )
    frame = mlflow.search_traces(locations=[exp], order_by=["timestamp_ms ASC"])
    rec.note("dataframe columns", sorted(frame.columns))
    rec.note("dataframe ids", [rec.trace_id(i) for i in frame["trace_id"]])
    rec.note("dataframe states", list(frame["state"]))
    for bad in ["attributes.nope = 1", "tags.x = ", "span.bogus = 'x'", "attributes.status = 1"]:
        rec.call(f"search bad {bad!r}", client.search_traces, locations=[exp], filter_string=bad)
    rec.call("search bad order", client.search_traces, locations=[exp], order_by=["nope DESC"])
    rec.call("search too many", client.search_traces, locations=[exp], max_results=100_000)
    rec.call("search other experiment", client.search_traces, locations=["0"])


def _tags(rec: TraceRecorder, client: MlflowClient, exp: str, traces: dict[str, str]) -> None:
    trace_id = traces["plain"]
    rec.call("set tag", client.set_trace_tag, trace_id, "team", "search")
    rec.call("set tag fluent", mlflow.set_trace_tag, trace_id, "env", "dev")
    rec.call("tags after set", lambda: mlflow.get_trace(trace_id).info.tags)
    rec.call("search by tag", lambda: _ids(client.search_traces(locations=[exp], filter_string="tags.team = 'search'")))
    rec.call("overwrite tag", client.set_trace_tag, trace_id, "team", "other")
    rec.call("delete tag", client.delete_trace_tag, trace_id, "team")
    rec.call("delete tag again", client.delete_trace_tag, trace_id, "team")
    rec.call("delete tag fluent", mlflow.delete_trace_tag, trace_id, "env")
    rec.call("tags after delete", lambda: mlflow.get_trace(trace_id).info.tags)
    # Left out: a tag set on a missing trace. The stock SQL store answers 400 BAD_REQUEST (its foreign key
    # fails); the gateway answers 404 RESOURCE_DOES_NOT_EXIST, as for every other call naming a missing trace.
    rec.call("delete tag missing trace", client.delete_trace_tag, MISSING, "k")
    rec.call("set tag empty key", client.set_trace_tag, trace_id, "", "v")


def _assessments(rec: TraceRecorder, client: MlflowClient, exp: str, traces: dict[str, str]) -> None:
    trace_id = traces["in_run"]
    human = AssessmentSource(source_type="HUMAN", source_id="reviewer")
    feedback = rec.call(
        "log_feedback", mlflow.log_feedback, trace_id=trace_id, name="correct", value=True, source=human,
        rationale="looks right", metadata={"k": "v"},
    )  # fmt: skip
    rec.call("log_feedback number", mlflow.log_feedback, trace_id=trace_id, name="score", value=0.5)
    expectation = rec.call(
        "log_expectation", mlflow.log_expectation, trace_id=trace_id, name="expected", value={"answer": "WHY?"},
        source=human,
    )  # fmt: skip
    rec.call("assessments on the trace", lambda: mlflow.get_trace(trace_id).info.assessments)
    if feedback is None or expectation is None:
        return
    rec.call("get_assessment", mlflow.get_assessment, trace_id, expectation.assessment_id)
    rec.call("get_assessment missing", mlflow.get_assessment, trace_id, "a-" + "0" * 32)
    rec.call("update_assessment", mlflow.update_assessment, trace_id, feedback.assessment_id,
             Feedback(name="correct", value=False, rationale="wrong after all"))  # fmt: skip
    rec.call("get updated", mlflow.get_assessment, trace_id, feedback.assessment_id)
    for f in ["feedback.correct = 'false'", "feedback.score = '0.5'", "expectation.expected IS NOT NULL"]:
        rec.call(f"search {f!r}", lambda f=f: _ids(client.search_traces(locations=[exp], filter_string=f)))
    rec.call("delete_assessment", mlflow.delete_assessment, trace_id, expectation.assessment_id)
    rec.call("names after delete", lambda: sorted(a.name for a in mlflow.get_trace(trace_id).info.assessments))
    rec.call("log_feedback missing trace", mlflow.log_feedback, trace_id=MISSING, name="x", value=1)


def _links(rec: TraceRecorder, client: MlflowClient, exp: str, traces: dict[str, str]) -> None:
    run = client.create_run(exp, run_name="linked")
    rec.ids.run(run.info.run_id)
    rec.call("link", client.link_traces_to_run, [traces["plain"], traces["manual"]], run.info.run_id)
    rec.call(
        "search run_id",
        lambda: sorted(
            rec.trace_id(i)
            for i in _ids(client.search_traces(locations=[exp], filter_string=f"run_id = '{run.info.run_id}'"))
        ),
    )
    # Left out: a link to a missing run. The stock SQL store does not check the run (its association table has
    # no foreign key) and answers 200; the gateway answers 404 RESOURCE_DOES_NOT_EXIST, as for any missing run.
    rec.call("link too many", client.link_traces_to_run, [f"tr-{i:032x}" for i in range(101)], run.info.run_id)


def _deletes(rec: TraceRecorder, client: MlflowClient, exp: str, traces: dict[str, str]) -> None:
    rec.call("delete by id", client.delete_traces, exp, trace_ids=[traces["manual"]])
    rec.call("get deleted", mlflow.get_trace, traces["manual"], silent=True)
    rec.call("delete by id again", client.delete_traces, exp, trace_ids=[traces["manual"]])
    rec.call("delete other experiment's", client.delete_traces, "0", trace_ids=[traces["plain"]])
    failed = mlflow.get_trace(traces["failed"])
    assert failed is not None
    rec.call("delete up to a time", client.delete_traces, exp, max_timestamp_millis=failed.info.request_time,
             max_traces=1)  # fmt: skip
    rec.call("left", lambda: _ids(client.search_traces(locations=[exp], order_by=["timestamp_ms ASC"])))
    rec.call("delete neither", client.delete_traces, exp)
    rec.call("delete both", client.delete_traces, exp, max_timestamp_millis=1, trace_ids=[traces["plain"]])
    rec.call("delete max_traces with ids", client.delete_traces, exp, max_traces=1, trace_ids=[traces["plain"]])
    rec.call("delete all", client.delete_traces, exp, max_timestamp_millis=int(time.time() * 1000) + 60_000)
    rec.call("left at the end", lambda: _ids(client.search_traces(locations=[exp])))
