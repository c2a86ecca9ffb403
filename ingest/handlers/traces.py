"""Handlers of MLflow 3 tracing: trace infos (``/api/3.0/mlflow/traces…``), trace tags, assessments, deletes,
run links, and the OpenTelemetry span endpoint (``POST /v1/traces``, OTLP/HTTP protobuf or JSON).

Every trace event is keyed by its experiment id (``schemas/events.py``), so a trace's spans, info, tags,
assessments and deletion are applied in one order. A trace id does not name its experiment, so reads wait
for every partition of the traces topic. The MLflow client sends a trace's spans to ``/v1/traces`` as it
ends (one request, one ``SpanBatch`` event), then its info to ``POST /api/3.0/mlflow/traces``; the answer's
``mlflow.trace.spansLocation = TRACKING_STORE`` tag tells it not to upload the spans again as an artifact.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import time
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ingest import requests as r
from ingest import validation as v
from ingest.auth.access import EDIT, HEADER, MANAGE, READ, Access
from ingest.endpoint import EXPERIMENTS_KEY, Endpoint, Reads
from ingest.errors import MlflowError, invalid, not_found
from ingest.handlers.common import ACTIVE, now_ms, str_list
from ingest.handlers.context import Context
from ingest.paging import page_offset, page_token
from schemas.events import (
    AssessmentState,
    Param,
    SpanBatch,
    Tag,
    TraceDeletion,
    TraceInfo,
    TraceRunLinks,
    TraceTags,
)
from trackstream.reads import search
from trackstream.reads.traces import TraceReader

API3 = ("/api/3.0/mlflow", "/ajax-api/3.0/mlflow")
API2 = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
API_BOTH = API2 + API3
OTLP_PATH = "/v1/traces"
EXPERIMENT_HEADER = "x-mlflow-experiment-id"
RUN_HEADER = "x-mlflow-run-id"
SPANS_LOCATION_TAG = "mlflow.trace.spansLocation"
ARTIFACT_LOCATION_TAG = "mlflow.artifactLocation"
TRACKING_STORE = "TRACKING_STORE"
INFO_FINALIZED = "mlflow.trace.infoFinalized"
STATES = ("STATE_UNSPECIFIED", "OK", "ERROR", "IN_PROGRESS")
SEARCH_DEFAULT_MAX_RESULTS = 100  # SearchTracesV3's proto default
SEARCH_MAX_RESULTS = 500
LINK_MAX_TRACES = 100
# A span whose serialized OTLP protobuf is larger than this goes to the object store (claim check); the
# event carries its key. MLflow's span inputs and outputs can hold whole documents (a RAG context).
SPAN_INLINE_MAX_BYTES = 256 * 1024
_STATUS = {Status.STATUS_CODE_OK: "OK", Status.STATUS_CODE_ERROR: "ERROR"}
_TRACES = Reads.all("traces")
# Attribute values in the `spans` columns: compact JSON, which ClickHouse's visitParamExtract* functions read
# (they take no blank after a colon); get_trace answers the original span, unchanged.
_SCALARS = frozenset({"string_value", "bool_value", "int_value", "double_value"})


def reader(ctx: Context) -> TraceReader:
    return TraceReader(ctx.reader.tables)


# -- MLflow JSON of trace infos --
def timestamp_json(ms: int) -> str:
    """A protobuf Timestamp in JSON (RFC 3339, UTC), as MLflow's message_to_json writes it."""
    seconds, millis = divmod(ms, 1000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def parse_timestamp(value: Any, field: str) -> int:
    """A protobuf Timestamp from JSON (RFC 3339 string) or a number of ms, as ms since the epoch."""
    if isinstance(value, bool):
        raise invalid(f"Invalid value {value!r} for parameter '{field}' supplied.")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            head, _, frac = text.rstrip("Z").partition(".")
            offset = ""
            for sign in ("+", "-"):
                if sign in frac:
                    frac, _, rest = frac.partition(sign)
                    offset = sign + rest
            base = datetime.fromisoformat(head + (offset or "+00:00"))
            return int(base.timestamp()) * 1000 + int((frac + "000")[:3] or 0)
        except ValueError:
            pass
    raise invalid(f"Invalid value {value!r} for parameter '{field}' supplied: expected an RFC 3339 timestamp.")


def parse_duration(value: Any) -> int | None:
    """A protobuf Duration from JSON ("1.5s") as ms."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and value.endswith("s"):
        try:
            return round(float(value[:-1]) * 1000)
        except ValueError:
            pass
    raise invalid(f"Invalid value {value!r} for parameter 'execution_duration' supplied: expected a duration.")


def duration_json(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    return f"{seconds}.{millis:03d}s" if millis else f"{seconds}s"


def info_json(row: dict[str, Any]) -> dict[str, Any]:
    """A TraceInfoV3 in MLflow's protobuf JSON (unset optional fields left out)."""
    out: dict[str, Any] = {
        "trace_id": row["trace_id"],
        "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": row["experiment_id"]}},
        "request_time": timestamp_json(row["request_time"]),
        "state": row["state"],
        "trace_metadata": row.get("metadata", {}),
        "tags": row.get("tags", {}),
    }
    for field in ("client_request_id", "request_preview", "response_preview"):
        if row.get(field) is not None:
            out[field] = row[field]
    if row.get("execution_duration") is not None:
        out["execution_duration"] = duration_json(row["execution_duration"])
    if row.get("assessments"):
        out["assessments"] = row["assessments"]
    return out


def _string_map(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, list):  # the map as a list of {key, value} entries
        value = {e.get("key"): e.get("value") for e in value if isinstance(e, dict)}
    if not isinstance(value, dict):
        raise invalid(f"Invalid value {value!r} for parameter '{field}' supplied.")
    return {str(k): "" if x is None else str(x) for k, x in value.items()}


# -- reads shared by the handlers --
def _trace(ctx: Context, trace_id: str) -> dict[str, Any]:
    """The live trace (read after the traces barrier), or 404 as the stock server words it."""
    row = reader(ctx).info(trace_id)
    if row is None:
        raise not_found(f"Trace with ID {trace_id} is not found.")
    return row


def _active_experiment(ctx: Context, experiment_id: str) -> dict[str, Any]:
    ctx.wait("metadata", [EXPERIMENTS_KEY, experiment_id])
    exp = ctx.reader.experiment(experiment_id)
    if exp is None:
        raise not_found(f"No Experiment with id={experiment_id} exists")
    if exp["lifecycle_stage"] != ACTIVE:
        raise invalid(
            f"The experiment {experiment_id} must be in the 'active' state. Current state is {exp['lifecycle_stage']}."
        )
    return exp


# -- trace infos --
def start_trace(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """``StartTraceV3``: the client calls it once the trace ended (its spans went to ``/v1/traces``)."""
    trace = v.required(p, "trace")
    info = trace.get("trace_info") if isinstance(trace, dict) else None
    if not isinstance(info, dict):
        raise invalid("Missing value for required parameter 'trace.trace_info'.")
    trace_id = info.get("trace_id")
    if not isinstance(trace_id, str) or not trace_id:
        raise invalid("Missing value for required parameter 'trace.trace_info.trace_id'.")
    location = info.get("trace_location") or {}
    experiment_id = str(((location.get("mlflow_experiment") or {}) if isinstance(location, dict) else {}).get(
        "experiment_id") or "")  # fmt: skip
    if not experiment_id:
        raise invalid("A trace must be logged to an MLflow experiment (trace_location.mlflow_experiment).")
    exp = _active_experiment(ctx, experiment_id)
    state = info.get("state") or "STATE_UNSPECIFIED"
    if isinstance(state, int) and 0 <= state < len(STATES):
        state = STATES[state]
    if state not in STATES:
        raise invalid(f"Invalid value {state!r} for parameter 'trace.trace_info.state' supplied.")
    tags = _string_map(info.get("tags"), "tags")
    tags[SPANS_LOCATION_TAG] = TRACKING_STORE
    tags.setdefault(ARTIFACT_LOCATION_TAG, f"{exp['artifact_location'].rstrip('/')}/traces/{trace_id}/artifacts")
    metadata = _string_map(info.get("trace_metadata"), "trace_metadata")
    metadata[INFO_FINALIZED] = "true"  # as the stock server marks a trace whose info the client sent
    row: dict[str, Any] = {
        "trace_id": trace_id,
        "experiment_id": experiment_id,
        "request_time": parse_timestamp(info.get("request_time", 0), "request_time"),
        "execution_duration": parse_duration(info.get("execution_duration")),
        "state": state,
        "client_request_id": _opt(info.get("client_request_id")),
        "request_preview": _opt(info.get("request_preview")),
        "response_preview": _opt(info.get("response_preview")),
    }
    ctx.writer.emit(
        TraceInfo(
            **row,
            metadata=[Param(key=k, value=x) for k, x in metadata.items()],
            tags=[Tag(key=k, value=x) for k, x in tags.items()],
        )
    )
    return {"trace": {"trace_info": info_json({**row, "metadata": metadata, "tags": tags})}}


def get_trace_info(ctx: Context, p: dict[str, Any], trace_id: str) -> dict[str, Any]:
    return {"trace": {"trace_info": info_json(_trace(ctx, trace_id))}}


def _spans_json(ctx: Context, trace_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in trace_ids}
    for stored in reader(ctx).spans(trace_ids):
        payload = stored.payload or b"".join(ctx.store().get(stored.ref))
        span = Span()
        span.ParseFromString(payload)
        out[stored.trace_id].append(MessageToDict(span, preserving_proto_field_name=True))
    return out


def get_trace(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """``GET /api/3.0/mlflow/traces/get``: the trace with its spans, as the client's ``mlflow.get_trace`` reads it."""
    trace_id = v.required(p, "trace_id")
    info = _trace(ctx, str(trace_id))
    spans = _spans_json(ctx, [info["trace_id"]])[info["trace_id"]]
    return {"trace": {"trace_info": info_json(info), "spans": spans}}


def _span_dict(span: Span) -> dict[str, Any]:
    """A span as MLflow's ``Span.to_dict`` writes it (the UI's trace view reads this form)."""
    b64 = base64.b64encode
    return {
        "trace_id": b64(span.trace_id).decode(),
        "span_id": b64(span.span_id).decode(),
        "parent_span_id": b64(span.parent_span_id).decode() if span.parent_span_id else None,
        "name": span.name,
        "start_time_unix_nano": span.start_time_unix_nano,
        "end_time_unix_nano": span.end_time_unix_nano,
        "events": [
            {"name": e.name, "time_unix_nano": e.time_unix_nano, "attributes": {a.key: _any_value(a.value) for a in
                                                                                  e.attributes}}
            for e in span.events
        ],
        "status": {"code": Status.StatusCode.Name(span.status.code), "message": span.status.message},
        "attributes": {a.key: json.dumps(_any_value(a.value), ensure_ascii=False) for a in span.attributes},
        "links": [],
    }  # fmt: skip


def trace_artifact(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """``get-trace-artifact?request_id=``: the trace's spans as the UI reads them (``{"spans": [...]}``)."""
    trace_id = p.get("request_id")
    if not trace_id:
        raise MlflowError('Request must include the "request_id" query parameter.', "BAD_REQUEST")
    info = _trace(ctx, str(trace_id))
    out = []
    for stored in reader(ctx).spans([info["trace_id"]]):
        span = Span()
        span.ParseFromString(stored.payload or b"".join(ctx.store().get(stored.ref)))
        out.append(_span_dict(span))
    return {"spans": out}


def batch_get(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    trace_ids = str_list(p.get("trace_ids"))
    if not trace_ids:
        v.required({}, "trace_ids")
    infos = reader(ctx).infos(trace_ids)
    if "experiment_ids" in p:
        allowed = set(str_list(p.get("experiment_ids")))
        infos = [i for i in infos if i["experiment_id"] in allowed]
    if not infos:
        return {}  # an empty repeated field is left out of MLflow's JSON, as the stock server answers
    spans = _spans_json(ctx, [i["trace_id"] for i in infos])
    return {"traces": [{"trace_info": info_json(i), "spans": spans[i["trace_id"]]} for i in infos]}


def batch_get_infos(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    trace_ids = str_list(p.get("trace_ids"))
    if not trace_ids:
        v.required({}, "trace_ids")
    infos = reader(ctx).infos(trace_ids)
    if "experiment_ids" in p:
        allowed = set(str_list(p.get("experiment_ids")))
        infos = [i for i in infos if i["experiment_id"] in allowed]
    return {"trace_infos": [info_json(i) for i in infos]} if infos else {}


def search_traces(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """``SearchTracesV3``: MLflow's trace filter grammar and order_by, compiled by ``trackstream.reads.search``."""
    if p.get("locations") is None:
        v.required({}, "locations")
    locations = v.array_field(p, "locations")
    experiment_ids = [
        str(loc["mlflow_experiment"]["experiment_id"])
        for loc in locations
        if isinstance(loc, dict) and isinstance(loc.get("mlflow_experiment"), dict)
        and loc["mlflow_experiment"].get("experiment_id") is not None
    ]  # fmt: skip
    if not experiment_ids:
        return {}
    limit = p.get("max_results") or SEARCH_DEFAULT_MAX_RESULTS
    if not 0 < limit <= SEARCH_MAX_RESULTS:
        raise invalid(
            f"Invalid value {limit} for parameter 'max_results' supplied: "
            f"It must be at most {SEARCH_MAX_RESULTS} and positive."
        )
    offset = page_offset(p.get("page_token"))
    try:
        page = reader(ctx).search(
            experiment_ids, p.get("filter"), p.get("order_by"), offset, limit, ready=lambda: ctx.wait("traces")
        )
    except search.SearchError as exc:
        raise invalid(str(exc)) from None
    out: dict[str, Any] = {"traces": [info_json(i) for i in page.items]} if page.items else {}
    if page.next_offset is not None:
        out["next_page_token"] = page_token(page.next_offset)
    return out


def trace_metrics(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """``traces/metrics`` (the UI's overview): the total ``trace_count`` of the experiments; other metrics,
    dimensions and time buckets answer no data points (not supported yet)."""
    dimensions, interval = p.get("dimensions"), p.get("time_interval_seconds")
    if p.get("metric_name") != "trace_count" or dimensions or interval:
        return {"data_points": []}
    experiment_ids = str_list(p.get("experiment_ids"))
    start, end = p.get("start_time_ms"), p.get("end_time_ms")
    ctx.wait("traces")
    count = reader(ctx).count(
        experiment_ids, int(start) if start is not None else None, int(end) if end is not None else None
    )
    aggregations = [a for a in v.array_field(p, "aggregations") if isinstance(a, dict)]
    values = {str(a.get("aggregation_type")): float(count) for a in aggregations}
    return {"data_points": [{"metric_name": "trace_count", "values": values}]}


def delete_traces(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """By ids, or every trace of the experiment up to ``max_timestamp_millis`` (at most ``max_traces``)."""
    experiment_id = str(v.required(p, "experiment_id"))
    ids = str_list(p.get("request_ids"))
    max_ts, max_traces = p.get("max_timestamp_millis"), p.get("max_traces")
    if max_ts is None and not ids:
        raise invalid("Either `max_timestamp_millis` or `request_ids` must be specified.")
    if max_ts is not None and ids:
        raise invalid("Only one of `max_timestamp_millis` and `request_ids` can be specified.")
    if ids and max_traces is not None:
        raise invalid("`max_traces` can't be specified if `request_ids` is specified.")
    if max_traces is not None and max_traces <= 0:
        raise invalid(f"`max_traces` must be a positive integer, received {max_traces}.")
    found = reader(ctx)
    if ids:
        doomed = [i["trace_id"] for i in found.infos(ids) if i["experiment_id"] == experiment_id]
    else:
        doomed = found.ids_before(experiment_id, int(str(max_ts)), max_traces)
    if doomed:
        ctx.writer.emit(TraceDeletion(experiment_id=experiment_id, trace_ids=doomed, time=now_ms()))
    return {"traces_deleted": len(doomed)}


# -- tags --
def set_tag(ctx: Context, p: dict[str, Any], trace_id: str) -> dict[str, Any]:
    key = v.required(p, "key")
    value = p.get("value")
    info = _trace(ctx, trace_id)
    tag = Tag(key=str(key), value="" if value is None else str(value))
    ctx.writer.emit(TraceTags(trace_id=trace_id, experiment_id=info["experiment_id"], tags=[tag]))
    return {}


def delete_tag(ctx: Context, p: dict[str, Any], trace_id: str) -> dict[str, Any]:
    key = str(v.required(p, "key"))
    info = _trace(ctx, trace_id)
    if key not in info["tags"]:
        raise not_found(f"No trace tag with key '{key}' for trace with ID '{trace_id}'")
    tag = Tag(key=key, value="", deleted=True)
    ctx.writer.emit(TraceTags(trace_id=trace_id, experiment_id=info["experiment_id"], tags=[tag]))
    return {}


# -- assessments --
def _assessment_state(row: dict[str, Any], experiment_id: str, body: dict[str, Any], deleted: bool) -> AssessmentState:
    if "feedback" in body:
        kind, value = "feedback", (body["feedback"] or {}).get("value")
    elif "expectation" in body:
        expectation = body["expectation"] or {}
        kind = "expectation"
        value = expectation.get("value")
        if value is None and isinstance(expectation.get("serialized_value"), dict):
            value = expectation["serialized_value"].get("value")
    else:
        raise invalid("An assessment needs exactly one of `feedback` or `expectation`.")
    name = body.get("assessment_name")
    if not isinstance(name, str) or not name:
        raise invalid("Missing value for required parameter 'assessment.assessment_name'.")
    return AssessmentState(
        assessment_id=row["assessment_id"],
        trace_id=row["trace_id"],
        experiment_id=experiment_id,
        name=name,
        kind=kind,
        value=json.dumps(value, ensure_ascii=False, sort_keys=True),
        body=json.dumps(body, ensure_ascii=False, sort_keys=True),
        created=row["created"],
        updated=row["updated"],
        deleted=deleted,
    )


def create_assessment(ctx: Context, p: dict[str, Any], trace_id: str) -> dict[str, Any]:
    body = v.required(p, "assessment")
    if not isinstance(body, dict):
        raise invalid("Invalid value for parameter 'assessment' supplied.")
    info = _trace(ctx, trace_id)
    now = now_ms()
    assessment_id = f"a-{uuid.uuid4().hex}"
    created = parse_timestamp(body["create_time"], "create_time") if body.get("create_time") else now
    updated = parse_timestamp(body["last_update_time"], "last_update_time") if body.get("last_update_time") else created
    body = {
        **body,
        "assessment_id": assessment_id,
        "trace_id": trace_id,
        "create_time": timestamp_json(created),
        "last_update_time": timestamp_json(updated),
    }
    body.setdefault("valid", True)
    row = {"assessment_id": assessment_id, "trace_id": trace_id, "created": created, "updated": updated}
    ctx.writer.emit(_assessment_state(row, info["experiment_id"], body, False))
    return {"assessment": body}


def _assessment(ctx: Context, trace_id: str, assessment_id: str) -> dict[str, Any]:
    found = reader(ctx).assessment(trace_id, assessment_id)
    if found is None:
        raise not_found(f"Assessment with ID '{assessment_id}' not found for trace '{trace_id}'")
    return found


def get_assessment(ctx: Context, p: dict[str, Any], trace_id: str, assessment_id: str) -> dict[str, Any]:
    return {"assessment": _assessment(ctx, trace_id, assessment_id)["body"]}


def update_assessment(ctx: Context, p: dict[str, Any], trace_id: str, assessment_id: str) -> dict[str, Any]:
    change = v.required(p, "assessment")
    if not isinstance(change, dict):
        raise invalid("Invalid value for parameter 'assessment' supplied.")
    mask = p.get("update_mask")
    paths = mask.get("paths") if isinstance(mask, dict) else str(mask or "").split(",")
    current = _assessment(ctx, trace_id, assessment_id)
    body = dict(current["body"])
    for path in [x.strip() for x in paths or [] if x and x.strip()]:
        if path in ("feedback", "expectation") and path not in body:
            raise invalid(f"Cannot change an assessment's type: it has no `{path}`.")
        if path in change:
            body[path] = change[path]
    now = now_ms()
    body["last_update_time"] = timestamp_json(now)
    row = {**current, "updated": now}
    ctx.writer.emit(_assessment_state(row, current["experiment_id"], body, False))
    return {"assessment": body}


def delete_assessment(ctx: Context, p: dict[str, Any], trace_id: str, assessment_id: str) -> dict[str, Any]:
    found = reader(ctx).assessment(trace_id, assessment_id)
    if found is not None:  # the stock store's delete is idempotent
        row = {**found, "updated": now_ms()}
        ctx.writer.emit(_assessment_state(row, found["experiment_id"], found["body"], True))
    return {}


# -- links --
def link_to_run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    trace_ids = str_list(v.required(p, "trace_ids"))
    run_id = str(v.required(p, "run_id"))
    if len(trace_ids) > LINK_MAX_TRACES:
        raise invalid(f"Cannot link more than {LINK_MAX_TRACES} traces to a run in a single request.")
    ctx.wait("metadata", [run_id])
    if ctx.reader.run_info(run_id) is None:
        raise not_found(f"Run with id={run_id} not found")
    ctx.writer.emit(TraceRunLinks(run_id=run_id, trace_ids=trace_ids))
    return {}


# -- OTLP/HTTP span ingestion --
def _any_value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_any_value(x) for x in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, which)


def _attributes(span: Span) -> tuple[list[str], list[str], str]:
    """A span's attribute keys, their values as compact JSON, and its ``mlflow.spanType``."""
    keys: list[str] = []
    values: list[str] = []
    span_type = ""
    for attr in span.attributes:
        value = attr.value
        which = value.WhichOneof("value")
        plain: Any = getattr(value, which) if which in _SCALARS else _any_value(value)
        keys.append(attr.key)
        values.append(orjson.dumps(plain, option=orjson.OPT_NON_STR_KEYS).decode())
        if attr.key == "mlflow.spanType" and isinstance(plain, str):
            span_type = plain
    return keys, values, span_type


def _json_ids(body: bytes) -> dict[str, Any]:
    """OTLP JSON writes trace and span ids in hex; protobuf's JSON parser expects base64 for bytes."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("not an object")
    for resource in data.get("resourceSpans", data.get("resource_spans", [])) or []:
        for scope in resource.get("scopeSpans", resource.get("scope_spans", [])) or []:
            for span in scope.get("spans", []) or []:
                for field in ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"):
                    if span.get(field):
                        span[field] = base64.b64encode(bytes.fromhex(span[field])).decode()
    return data


def _decompress(body: bytes, encoding: str | None) -> bytes:
    match (encoding or "").lower():
        case "" | "identity":
            return body
        case "gzip":
            return gzip.decompress(body)
        case "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)
    raise invalid(f"Unsupported Content-Encoding: {encoding}")


def parse_otlp(body: bytes, media_type: str, experiment_id: str, run_id: str | None) -> tuple[SpanBatch, list[int]]:
    """The request's spans as one event, and the indexes of the spans too large to travel inline."""
    request = ExportTraceServiceRequest()
    try:
        if media_type == "application/json":
            ParseDict(_json_ids(body), request, ignore_unknown_fields=True)
        else:
            request.ParseFromString(body)
    except (DecodeError, ValueError, TypeError, AttributeError) as exc:
        raise invalid(f"Invalid OpenTelemetry format: {str(exc)[:200]}") from None
    cols: dict[str, list[Any]] = {
        f.name: [] for f in dataclasses.fields(SpanBatch) if f.name not in ("experiment_id", "run_id")
    }
    large: list[int] = []
    for resource in request.resource_spans:
        for scope in resource.scope_spans:
            for span in scope.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    raise invalid("Invalid OpenTelemetry span: trace_id must be 16 bytes and span_id 8 bytes.")
                keys, values, span_type = _attributes(span)
                payload = span.SerializeToString()
                if len(payload) > SPAN_INLINE_MAX_BYTES:
                    large.append(len(cols["span_ids"]))
                cols["trace_ids"].append("tr-" + span.trace_id.hex())
                cols["span_ids"].append(span.span_id.hex())
                cols["parent_ids"].append(span.parent_span_id.hex())
                cols["names"].append(span.name)
                cols["span_types"].append(span_type)
                cols["kinds"].append(int(span.kind))
                cols["start_ns"].append(span.start_time_unix_nano)
                cols["end_ns"].append(span.end_time_unix_nano)
                cols["status_codes"].append(_STATUS.get(span.status.code, "UNSET"))
                cols["status_messages"].append(span.status.message)
                cols["attr_keys"].append(keys)
                cols["attr_values"].append(values)
                cols["payloads"].append(payload)
                cols["payload_refs"].append("")
                cols["sizes"].append(len(payload))
    if not cols["span_ids"]:
        raise invalid("Invalid OpenTelemetry format - no spans found")
    return SpanBatch(experiment_id=experiment_id, run_id=run_id, **cols), large


def span_object_key(experiment_id: str, trace_id: str, span_id: str) -> str:
    """Where a claim-checked span payload is kept (beside the experiment's artifacts; idempotent by key)."""
    return f"{experiment_id}/traces/{trace_id}/spans/{span_id}.pb"


_known_experiments: dict[str, float] = {}
_KNOWN_FOR = 10.0  # seconds an experiment found active is trusted without a query (the hot path)


def _check_experiment(ctx: Context, experiment_id: str) -> None:
    if _known_experiments.get(experiment_id, 0.0) > time.monotonic():
        return
    _active_experiment(ctx, experiment_id)
    _known_experiments[experiment_id] = time.monotonic() + _KNOWN_FOR


async def otlp_traces(ctx: Context, request: Request, fields: dict[str, Any]) -> Response:
    """``POST /v1/traces``: one ``SpanBatch`` event per request (never one per span); answered, as the stock
    server does, with an empty ExportTraceServiceResponse once the log acknowledged it."""
    media_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media_type not in ("application/x-protobuf", "application/json"):
        raise invalid(
            f"Invalid Content-Type: {request.headers.get('content-type')}. "
            "Expected: application/x-protobuf or application/json"
        )
    experiment_id = request.headers.get(EXPERIMENT_HEADER)
    if not experiment_id:
        raise invalid(f"Missing required header '{EXPERIMENT_HEADER}'.")
    try:
        body = _decompress(await request.body(), request.headers.get("content-encoding"))
    except (OSError, EOFError, zlib.error):
        raise invalid("Failed to decompress the request body") from None
    batch, large = parse_otlp(body, media_type, experiment_id, request.headers.get(RUN_HEADER) or None)
    await run_in_threadpool(_check_experiment, ctx, experiment_id)
    if large:
        await run_in_threadpool(_claim_check, ctx, batch, large)
    await ctx.writer.emit_async(batch)
    if media_type == "application/json":
        return Response(b"{}", media_type="application/json")
    return Response(b"", media_type="application/x-protobuf")


def _claim_check(ctx: Context, batch: SpanBatch, large: list[int]) -> None:
    payloads, refs = batch.payloads, batch.payload_refs
    assert isinstance(payloads, list) and isinstance(refs, list)
    for i in large:
        key = span_object_key(batch.experiment_id, batch.trace_ids[i], batch.span_ids[i])
        ctx.store().put(key, payloads[i])
        payloads[i], refs[i] = b"", key


def _opt(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


# With auth on, a trace takes its experiment's permission, as MLflow's basic-auth app checks traces: READ to
# read one or search an experiment's, EDIT to log one (StartTraceV3, OTLP spans), tag it or write its
# assessments, MANAGE to delete traces (the stock app's delete falls back to the experiment's delete right).
_READ = Access.trace(READ)
_EDIT = Access.trace(EDIT)
_LOCATIONS = "locations[].mlflow_experiment.experiment_id"

ENDPOINTS = [
    Endpoint(
        "/traces",
        ("POST",),
        start_trace,
        r.StartTraceV3,
        prefixes=API3,
        access=Access.experiment(EDIT, "trace.trace_info.trace_location.mlflow_experiment.experiment_id"),
    ),
    Endpoint("/traces/get", ("GET",), get_trace, r.GetTrace, _TRACES, prefixes=API3, access=_READ),
    Endpoint(
        "/traces/batchGet",
        ("GET",),
        batch_get,
        r.BatchGetTraces,
        _TRACES,
        prefixes=API3,
        access=Access.trace(READ, "trace_ids"),
    ),
    Endpoint(  # POST, as the stock server routes BatchGetTraceInfos
        "/traces/batchGetInfos",
        ("POST",),
        batch_get_infos,
        r.BatchGetTraces,
        _TRACES,
        prefixes=API3,
        access=Access.trace(READ, "trace_ids"),
    ),
    # the barrier is passed by the search itself, once the filter parsed; each experiment searched needs READ
    Endpoint(
        "/traces/search",
        ("POST",),
        search_traces,
        r.SearchTracesV3,
        prefixes=API3,
        access=Access.experiment(READ, _LOCATIONS),
    ),
    Endpoint(
        "/traces/metrics",
        ("POST",),
        trace_metrics,
        r.NoFields,
        prefixes=API3,
        access=Access.experiment(READ, "experiment_ids"),
    ),
    Endpoint(
        "/traces/delete-traces",
        ("POST",),
        delete_traces,
        r.DeleteTraces,
        _TRACES,
        prefixes=API_BOTH,
        access=Access.experiment(MANAGE),
    ),
    Endpoint(
        "/traces/link-to-run",
        ("POST",),
        link_to_run,
        r.LinkTracesToRun,
        _TRACES,
        prefixes=API_BOTH,
        access=dataclasses.replace(Access.run(EDIT), also=(Access.trace(READ, "trace_ids"),)),
    ),
    Endpoint("/traces/{trace_id}", ("GET",), get_trace_info, r.NoFields, _TRACES, prefixes=API3, access=_READ),
    Endpoint("/traces/{trace_id}/tags", ("PATCH",), set_tag, r.TraceTag, _TRACES, prefixes=API_BOTH, access=_EDIT),
    Endpoint("/traces/{trace_id}/tags", ("DELETE",), delete_tag, r.TraceTag, _TRACES, prefixes=API_BOTH, access=_EDIT),
    Endpoint(
        "/traces/{trace_id}/assessments",
        ("POST",),
        create_assessment,
        r.AssessmentBody,
        _TRACES,
        prefixes=API3,
        access=_EDIT,
    ),
    Endpoint(
        "/traces/{trace_id}/assessments/{assessment_id}",
        ("GET",),
        get_assessment,
        r.NoFields,
        _TRACES,
        prefixes=API3,
        access=_READ,
    ),
    Endpoint(
        "/traces/{trace_id}/assessments/{assessment_id}",
        ("PATCH",),
        update_assessment,
        r.AssessmentBody,
        _TRACES,
        prefixes=API3,
        access=_EDIT,
    ),
    Endpoint(  # EDIT, as the stock app: deleting an assessment falls back to the experiment's update right
        "/traces/{trace_id}/assessments/{assessment_id}",
        ("DELETE",),
        delete_assessment,
        r.NoFields,
        _TRACES,
        prefixes=API3,
        access=_EDIT,
    ),
    Endpoint(
        "/get-trace-artifact",
        ("GET",),
        trace_artifact,
        r.TraceArtifact,
        _TRACES,
        prefixes=API_BOTH,
        access=Access.trace(READ, "request_id"),
    ),
    Endpoint(
        OTLP_PATH,
        ("POST",),
        otlp_traces,
        None,
        blocking=False,
        raw=True,
        prefixes=("",),
        access=Access.experiment(EDIT, HEADER + EXPERIMENT_HEADER),
    ),
]
