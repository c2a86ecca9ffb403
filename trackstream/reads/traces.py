"""Queries behind the trace endpoints: trace infos (with tags, metadata and assessments), spans, search.

Deleted traces (``trace_deletions``) are left out of every answer. Span payloads come back as stored
(the serialized OTLP span, or the object-store key of a claim-checked one); turning them into MLflow
JSON is the gateway's business.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from trackstream.reads import search
from trackstream.reads.current import Cond, Versioned, cond, current
from trackstream.reads.store import Page, Ready
from trackstream.tables import TableStore

TRACES = Versioned("traces", frozenset({"trace_id", "experiment_id"}))
TRACE_TAGS = search.TRACE_TAGS
TRACE_ASSESSMENTS = search.TRACE_ASSESSMENTS
TRACE_COLUMNS = (
    "trace_id, experiment_id, request_time, execution_duration, state, client_request_id, request_preview, "
    "response_preview, metadata_keys, metadata_values"
)
_NAMES = TRACE_COLUMNS.split(", ")
NOT_DELETED = cond("trace_id NOT IN (SELECT trace_id FROM trace_deletions)", "trace_id")


@dataclass(frozen=True, slots=True)
class StoredSpan:
    trace_id: str
    span_id: str
    payload: bytes  # the serialized OTLP Span; empty when it is in the object store under ``ref``
    ref: str


class TraceReader:
    def __init__(self, tables: TableStore) -> None:
        self._t = tables

    def _rows(self, where: Sequence[Cond], params: dict[str, Any], tail: str = "") -> list[dict[str, Any]]:
        rows = self._t.query(current(TRACES, TRACE_COLUMNS, [*where, NOT_DELETED]) + tail, params)
        return [dict(zip(_NAMES, r, strict=True)) for r in rows]

    def infos(self, trace_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Live trace rows with ``tags``, ``metadata`` (dicts) and ``assessments`` (MLflow JSON dicts)."""
        if not trace_ids:
            return []
        rows = self._rows([cond("trace_id IN %(ids)s", "trace_id")], {"ids": tuple(trace_ids)})
        at = {t: i for i, t in reversed(list(enumerate(trace_ids)))}
        return self._complete(sorted(rows, key=lambda r: at[r["trace_id"]]))  # in the order asked

    def info(self, trace_id: str) -> dict[str, Any] | None:
        found = self.infos([trace_id])
        return found[0] if found else None

    def experiment_of(self, trace_id: str) -> str | None:
        """The experiment of a live trace (the permission check's one query), or None."""
        rows = self._t.query(
            current(TRACES, "trace_id, experiment_id", [cond("trace_id = %(t)s", "trace_id"), NOT_DELETED]),
            {"t": trace_id},
        )
        return str(rows[0][1]) if rows else None

    def _complete(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = tuple(r["trace_id"] for r in rows)
        tags: dict[str, dict[str, str]] = {i: {} for i in ids}
        assessments: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        if ids:
            live = [cond("trace_id IN %(ids)s", "trace_id"), cond("deleted = 0", "deleted")]
            for trace_id, key, value in self._t.query(
                current(TRACE_TAGS, "trace_id, key, value", live) + " ORDER BY trace_id, key", {"ids": ids}
            ):
                tags[trace_id][key] = value
            for trace_id, body in self._t.query(
                "SELECT trace_id, body FROM ("
                + current(TRACE_ASSESSMENTS, "trace_id, body, created", live)
                + ") ORDER BY created",
                {"ids": ids},
            ):
                assessments[trace_id].append(orjson.loads(body))
        for r in rows:
            r["metadata"] = dict(zip(r.pop("metadata_keys"), r.pop("metadata_values"), strict=True))
            r["tags"] = tags[r["trace_id"]]
            r["assessments"] = assessments[r["trace_id"]]
        return rows

    def spans(self, trace_ids: Sequence[str]) -> list[StoredSpan]:
        """The spans of live traces, by trace then start time."""
        if not trace_ids:
            return []
        rows = self._t.query(
            "SELECT trace_id, span_id, payload, payload_ref FROM spans WHERE trace_id IN %(ids)s "
            "AND trace_id NOT IN (SELECT trace_id FROM trace_deletions) "
            "GROUP BY trace_id, span_id, payload, payload_ref, start_time_ns ORDER BY trace_id, start_time_ns, span_id",
            {"ids": tuple(trace_ids)},
        )
        return [StoredSpan(t, s, base64.b64decode(p) if p else b"", ref) for t, s, p, ref in rows]

    def assessment(self, trace_id: str, assessment_id: str) -> dict[str, Any] | None:
        """The live assessment row (``body`` as MLflow JSON), or None."""
        cols = "assessment_id, trace_id, experiment_id, name, kind, value, body, created, updated"
        rows = self._t.query(
            current(
                TRACE_ASSESSMENTS,
                cols,
                [
                    cond("trace_id = %(t)s", "trace_id"),
                    cond("assessment_id = %(a)s", "assessment_id"),
                    cond("deleted = 0", "deleted"),
                ],
            ),
            {"t": trace_id, "a": assessment_id},
        )
        if not rows:
            return None
        row = dict(zip(cols.split(", "), rows[0], strict=True))
        row["body"] = orjson.loads(row["body"])
        return row

    def count(self, experiment_ids: Sequence[str], start_ms: int | None, end_ms: int | None) -> int:
        """Live traces of the experiments that started in [start_ms, end_ms] (either bound optional)."""
        if not experiment_ids:
            return 0
        where = [cond("experiment_id IN %(e)s", "experiment_id")]
        params: dict[str, Any] = {"e": tuple(experiment_ids)}
        if start_ms is not None:
            where.append(cond("request_time >= %(s)s", "request_time"))
            params["s"] = start_ms
        if end_ms is not None:
            where.append(cond("request_time <= %(t)s", "request_time"))
            params["t"] = end_ms
        rows = self._t.query(f"SELECT count() FROM ({current(TRACES, 'trace_id', [*where, NOT_DELETED])})", params)
        return int(rows[0][0])

    def ids_before(self, experiment_id: str, max_timestamp: int, limit: int | None) -> list[str]:
        """Live traces of an experiment that started at or before ``max_timestamp``, oldest first."""
        tail = " ORDER BY request_time, trace_id" + (f" LIMIT {int(limit)}" if limit is not None else "")
        rows = self._rows(
            [cond("experiment_id = %(e)s", "experiment_id"), cond("request_time <= %(ts)s", "request_time")],
            {"e": experiment_id, "ts": max_timestamp},
            tail,
        )
        return [r["trace_id"] for r in rows]

    def search(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None,
        order_by: list[str] | None,
        offset: int,
        limit: int,
        ready: Ready = None,
    ) -> Page:
        """One page of live traces (complete infos). Raises ``search.SearchError`` for a bad filter or order."""
        what = search.TRACES
        clauses = search.parse_filter(what, filter_string)
        order = search.with_defaults(what, search.parse_order_by(what, order_by))
        compiled = search.compile_filter(what, clauses, {"_exps": tuple(experiment_ids)})
        if ready:
            ready()
        where = [cond("experiment_id IN %(_exps)s", "experiment_id"), *compiled.conds]
        terms: list[str] = []
        for o in order:
            terms += search.attr_order_sql(what.order_attrs[o.key], o.ascending)
        columns = _NAMES
        outer = ", ".join(columns)
        sql = f"SELECT {outer} FROM ({current(TRACES, TRACE_COLUMNS, [*where, NOT_DELETED])})"
        sql += f" ORDER BY {', '.join(terms)} LIMIT %(_limit)s OFFSET %(_offset)s"
        params = {**compiled.params, "_limit": limit + 1, "_offset": offset}
        rows = [dict(zip(columns, r, strict=True)) for r in self._t.query(sql, params)]
        more = len(rows) > limit
        items = self._complete(rows[:limit])
        return Page(items, offset + limit if more else None)
