"""Trace sink: trace events → ``traces``, ``trace_tags``, ``spans``, ``trace_deletions``,
``trace_assessments`` and ``trace_runs``.

Guarantee: at-least-once writes, exactly-once as seen by readers: span rows are immutable and keyed by
(experiment, trace, span), so a replayed batch collapses; the mutable rows (trace info, tags,
assessments) are versioned by the event's log offset and read with FINAL.

A root span also writes its trace's info row (start, duration, state, previews, the ``mlflow.traceName``
tag), so traces exported by a plain OpenTelemetry SDK are complete. The client's StartTraceV3 row
(``TraceInfo``) always wins over it, whichever comes first on the log: its ``_version`` is raised by
``INFO_VERSION_BASE``.
"""

from __future__ import annotations

import base64
import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from consumers.sink import Event, Sink
from schemas.events import (
    TRACE,
    AssessmentState,
    SpanBatch,
    TraceDeletion,
    TraceInfo,
    TraceRunLinks,
    TraceTags,
)
from trackstream.errors import StoreRejected
from trackstream.tables import TableStore

INFO_VERSION_BASE = 1 << 48
PREVIEW_MAX = 1000  # MLflow's request/response preview length
TRACE_NAME_TAG = "mlflow.traceName"
SPANS_LOCATION_TAG = "mlflow.trace.spansLocation"
TRACKING_STORE = "TRACKING_STORE"


class TraceSink(Sink):
    name = "traces"
    family = TRACE

    def __init__(self, tables: TableStore) -> None:
        self._tables = tables

    def rows(self, event: Event) -> int:
        data = event.data
        return len(data.span_ids) if isinstance(data, SpanBatch) else 1

    def write(self, events: Sequence[Event]) -> None:
        out: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
        for event in events:
            data, offset = event.data, event.message.offset
            if isinstance(data, SpanBatch):
                _spans(data, offset, out)
            elif isinstance(data, TraceInfo):
                _info(out["traces"], data, offset + INFO_VERSION_BASE)
                for tag in data.tags:
                    _tag(out["trace_tags"], data.trace_id, data.experiment_id, tag.key, tag.value, tag.deleted, offset)
            elif isinstance(data, TraceTags):
                for tag in data.tags:
                    _tag(out["trace_tags"], data.trace_id, data.experiment_id, tag.key, tag.value, tag.deleted, offset)
            elif isinstance(data, TraceDeletion):
                for trace_id in data.trace_ids:
                    _append(out["trace_deletions"], experiment_id=data.experiment_id, trace_id=trace_id, time=data.time)
            elif isinstance(data, AssessmentState):
                row = {f.name: getattr(data, f.name) for f in dataclasses.fields(AssessmentState)}
                row["deleted"] = 1 if data.deleted else 0
                _append(out["trace_assessments"], **row, _version=offset)
            elif isinstance(data, TraceRunLinks):
                for trace_id in data.trace_ids:
                    _append(out["trace_runs"], run_id=data.run_id, trace_id=trace_id)
            else:
                raise StoreRejected(f"the trace sink does not take {type(data).__name__} events")
        # spans before trace rows: a reader that finds a trace finds its spans
        for table in ("spans", "trace_runs", "trace_assessments", "trace_tags", "traces", "trace_deletions"):
            if out.get(table):
                self._tables.insert(table, out[table])


def _append(cols: dict[str, list[Any]], **row: Any) -> None:
    for k, v in row.items():
        cols[k].append(v)


def _tag(
    cols: dict[str, list[Any]], trace_id: str, exp: str, key: str, value: str, deleted: bool, version: int
) -> None:
    _append(cols, trace_id=trace_id, experiment_id=exp, key=key, value=value, deleted=1 if deleted else 0,
            _version=version)  # fmt: skip


def _info(cols: dict[str, list[Any]], info: TraceInfo, version: int) -> None:
    _append(
        cols,
        trace_id=info.trace_id,
        experiment_id=info.experiment_id,
        request_time=info.request_time,
        execution_duration=info.execution_duration,
        state=info.state,
        client_request_id=info.client_request_id,
        request_preview=info.request_preview,
        response_preview=info.response_preview,
        metadata_keys=[m.key for m in info.metadata],
        metadata_values=[m.value for m in info.metadata],
        _version=version,
    )


def _attr(keys: Sequence[str], values: Sequence[str], name: str) -> str | None:
    for k, v in zip(keys, values, strict=True):
        if k == name:
            return v
    return None


def _spans(batch: SpanBatch, offset: int, out: dict[str, dict[str, list[Any]]]) -> None:
    exp = batch.experiment_id
    n = len(batch.span_ids)
    spans = out["spans"]
    spans["experiment_id"] += [exp] * n
    spans["trace_id"] += batch.trace_ids
    spans["span_id"] += batch.span_ids
    spans["parent_span_id"] += batch.parent_ids
    spans["name"] += batch.names
    spans["span_type"] += batch.span_types
    spans["kind"] += batch.kinds
    spans["start_time_ns"] += batch.start_ns
    spans["end_time_ns"] += batch.end_ns
    spans["status_code"] += batch.status_codes
    spans["status_message"] += batch.status_messages
    spans["attr_keys"] += [list(k) for k in batch.attr_keys]
    spans["attr_values"] += [list(v) for v in batch.attr_values]
    spans["payload"] += [base64.b64encode(p).decode() if p else "" for p in batch.payloads]
    spans["payload_ref"] += batch.payload_refs
    spans["payload_size"] += batch.sizes
    for i in range(n):
        if batch.parent_ids[i]:
            continue
        trace_id, start, end = batch.trace_ids[i], batch.start_ns[i], batch.end_ns[i]
        keys, values = batch.attr_keys[i], batch.attr_values[i]
        _append(
            out["traces"],
            trace_id=trace_id,
            experiment_id=exp,
            request_time=start // 1_000_000,
            execution_duration=max(0, end - start) // 1_000_000,
            state="ERROR" if batch.status_codes[i] == "ERROR" else "OK",
            client_request_id=None,
            request_preview=_preview(_attr(keys, values, "mlflow.spanInputs")),
            response_preview=_preview(_attr(keys, values, "mlflow.spanOutputs")),
            metadata_keys=[],
            metadata_values=[],
            _version=offset,
        )
        _tag(out["trace_tags"], trace_id, exp, TRACE_NAME_TAG, batch.names[i], False, offset)
        _tag(out["trace_tags"], trace_id, exp, SPANS_LOCATION_TAG, TRACKING_STORE, False, offset)
        if batch.run_id:
            _append(out["trace_runs"], run_id=batch.run_id, trace_id=trace_id)


def _preview(value: str | None) -> str | None:
    return None if value is None else value[:PREVIEW_MAX]
