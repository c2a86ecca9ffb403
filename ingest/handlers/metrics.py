"""Metrics: log-metric and log-batch (the hot path), history reads.

log-metric and log-batch run on the event loop and await the log's acknowledgement there; only a miss
of the run-state view and params/tags (which read the store or wait for a decision) take a thread.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Generator
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from ingest import requests as r
from ingest import validation as v
from ingest.auth.access import EDIT, READ, Access
from ingest.endpoint import Endpoint, Reads
from ingest.errors import invalid
from ingest.handlers.common import int_or, run_id, str_list, tag
from ingest.handlers.context import Context
from ingest.handlers.entities import check_active, known_active, log_params_tags
from ingest.paging import history_position, history_token
from ingest.protocol import LogBatch, LogMetric
from schemas.events import MetricBatch
from trackstream.reads.store import HistoryKey, history_point

MAX_RUNS_GET_METRIC_HISTORY_BULK = 100
MAX_RESULTS_PER_RUN = 2500


def metric_columns(metrics: list[Any]) -> dict[str, list[Any]]:
    """Validated metric points as the columns of a MetricBatch event.

    The common case (numbers where numbers belong) is checked column by column, with C-level
    ``map``/``set`` passes rather than Python loops; anything else goes through the per-point rules,
    which raise MLflow's message for the first bad point.
    """
    if set(map(type, metrics)) - {dict}:
        bad = next(m for m in metrics if type(m) is not dict)
        raise invalid(f"Invalid value {bad!r} for parameter 'metrics' supplied: each metric must be an object.")
    present: set[str] = set().union(*metrics)
    keys: list[Any] = [m.get("key") for m in metrics]
    if set(map(type, keys)) != {str}:
        for key in keys:
            v.key_name("metric", key)  # raises for the first key that is not a string
    names = dict.fromkeys(keys)  # distinct keys, first appearance first
    for key in names:
        v.key_name("metric", key)
    values: list[Any] = [m.get("value") for m in metrics]
    timestamps = [m.get("timestamp") for m in metrics]
    steps = [m.get("step") or 0 for m in metrics] if "step" in present else [0] * len(metrics)
    if (
        not set(map(type, values)) - {float, int}
        and set(map(type, timestamps)) == {int}
        and min(timestamps, default=0) >= 0
        and max(timestamps, default=0) <= v.INT64_MAX
        and set(map(type, steps)) == {int}
        and min(steps, default=0) >= v.INT64_MIN
        and max(steps, default=0) <= v.INT64_MAX
    ):
        floats = list(map(float, values))
        if any(map(math.isinf, floats)):
            floats = [v.metric_value(k, x, t, s)[0] for k, x, t, s in zip(keys, floats, timestamps, steps, strict=True)]
    else:
        checked = [v.metric_value(k, x, t, s) for k, x, t, s in zip(keys, values, timestamps, steps, strict=True)]
        floats = [c[0] for c in checked]
        timestamps = [c[1] for c in checked]
        steps = [c[2] for c in checked]
    index = {key: i for i, key in enumerate(names)}
    columns: dict[str, list[Any]] = {
        "keys": [], "key_names": list(names), "key_index": list(map(index.__getitem__, keys)),  # see metric_batch.v2
        "values": floats, "timestamps": timestamps, "steps": steps,
    }  # fmt: skip
    for column, field in (("model_ids", "model_id"), ("dataset_names", "dataset_name"),
                          ("dataset_digests", "dataset_digest")):  # fmt: skip
        given = [m.get(field) or "" for m in metrics] if field in present else []
        if set(map(type, given)) - {str}:
            raise invalid(f"Invalid value for parameter '{field}' supplied: expected a string.")
        columns[column] = given if any(given) else []
    return columns


async def log_metric(ctx: Context, p: LogMetric) -> dict[str, Any]:
    rid = p.run_id or p.run_uuid
    if not rid:
        v.required({}, "run_id")
    assert rid is not None
    await _log(ctx, rid, [p.model_dump(exclude={"run_id", "run_uuid"})], [], [])
    return {}


async def log_batch(ctx: Context, p: LogBatch) -> dict[str, Any]:
    if not p.run_id:
        v.required({}, "run_id")
    assert p.run_id is not None
    v.batch_limits(len(p.metrics), len(p.params), len(p.tags))
    await _log(ctx, p.run_id, p.metrics, p.params, p.tags)
    return {}


async def _log(ctx: Context, rid: str, metrics: list[Any], params: list[Any], tags: list[Any]) -> None:
    """A log-batch is all or nothing: every part is validated before anything is produced; params
    and tags go first, as one event the metadata sink decides (params are immutable), and the
    metrics only once it was accepted. A batch without params needs no decision."""
    if not known_active(ctx, rid):
        await run_in_threadpool(check_active, ctx, rid)
    columns = metric_columns(metrics) if metrics else None
    param_rows = [
        {"key": v.key_name("parameter", kv.key), "value": v.param_value(str(kv.key), kv.value)} for kv in params
    ]
    tag_rows = [tag({"key": kv.key, "value": kv.value}, v.MAX_TAG_VAL_LENGTH) for kv in tags]
    if param_rows or tag_rows:
        await run_in_threadpool(log_params_tags, ctx, rid, param_rows, tag_rows, True)
    if columns is not None:
        await ctx.writer.emit_async(MetricBatch(run_id=rid, **columns))


HISTORY_CHUNK = 50_000
"""A history of more points than this is streamed (the gateway holds a block of LINE_BLOCK points at a time
whatever its length), a shorter one answered in one body; pages of at most this many are span-bounded."""
MAX_HISTORY_BULK = 25000
MAX_RUNS_HISTORY_BULK = 100


def metric_history(ctx: Context, p: dict[str, Any]) -> Any:
    """A run's metric history in MLflow's order. Without ``max_results`` every point in one answer (the
    stock server's rule), read by one query and streamed a block at a time; with it one
    page whose token names its last point (a keyset position: no page skips the points before it)."""
    rid = run_id(p)
    key = str(v.required(p, "metric_key"))
    limit: int | None = None
    if p.get("max_results") is not None:
        limit = int_or(p["max_results"], None)
        if limit is None or limit <= 0:
            raise invalid(
                f"Invalid value {p['max_results']} for parameter 'max_results' supplied. It must be a positive integer."
            )
    position, offset, spans_checked = history_position(p.get("page_token"))
    if offset:  # a token from before keyset tokens: that one page by offset, then keyset tokens again
        rows = ctx.reader.metric_history(rid, key, offset, (limit or MAX_HISTORY_BULK) + 1)
        out: dict[str, Any] = {"metrics": rows[: limit or len(rows)]}
        if limit is not None and len(rows) > limit:
            last = rows[limit - 1]
            nan = last["value"] == "NaN"
            out["next_page_token"] = history_token(
                last["timestamp"], last["step"], 0.0 if nan else last["value"], int(nan)
            )
        return out
    after = HistoryKey(*position) if position else None
    if limit is not None and limit <= HISTORY_CHUNK:  # one page
        page = ctx.reader.metric_history_after(rid, key, after, limit + 1, spans_checked)  # unknown run: empty
        return Response(_history_json(page.points, limit, page.spans_checked), media_type="application/json")
    # every point (the stock rule without max_results) or a page larger than a chunk: one query, streamed
    blocks = ctx.reader.metric_history_lines(rid, key, after, None if limit is None else limit + 1)
    first: list[list[bytes]] = []
    held = 0
    for block in blocks:
        first.append(block)
        held += len(block)
        if held >= HISTORY_CHUNK:
            return StreamingResponse(_stream_history(first, blocks, limit), media_type="application/json")
    return Response(_history_json([p for block in first for p in block], limit), media_type="application/json")


def _history_json(points: list[bytes], limit: int | None, spans_checked: bool = False) -> bytes:
    """The answer's body from the store's JSON points: the first ``limit`` of them, and with one more
    (the query asks for ``limit + 1``) the token of the next page."""
    page = points[:limit]  # a copy (of every point when limit is None), to edit
    tail = b"]}"
    if limit is not None and len(points) > limit:
        tail = b'],"next_page_token":' + orjson.dumps(_token(page[-1], spans_checked)) + b"}"
    if not page:
        return b'{"metrics":[' + tail
    page[0] = b'{"metrics":[' + page[0]  # the brackets on the end points: the ~2 MB body is copied once
    page[-1] += tail
    return b",".join(page)


def _token(point: bytes, spans_checked: bool = False) -> str:
    step, ts, value, nan = history_point(point)
    return history_token(ts, step, value, nan, spans_checked)


def _stream_history(
    first: list[list[bytes]], rest: Generator[list[bytes], None, None], limit: int | None
) -> Generator[bytes, None, None]:
    """The JSON answer block by block (the store's blocks of LINE_BLOCK points, ``first`` already read).
    With a ``limit``, the query asked for one point more: its presence gives the next page's token."""
    sent = 0
    blocks = itertools.chain(first, rest)
    try:
        yield b'{"metrics":['
        for block in blocks:
            page = block if limit is None else block[: limit - sent]
            if page:
                yield (b"," if sent else b"") + b",".join(page)
                sent += len(page)
                last = page[-1]
            if limit is not None and sent >= limit:
                if len(block) > len(page) or next(blocks, None):
                    yield b'],"next_page_token":' + orjson.dumps(_token(last)) + b"}"
                    return
                break
        yield b"]}"
    finally:
        rest.close()


def metric_history_bulk(ctx: Context, p: dict[str, Any]) -> Response:
    """The UI's get-history-bulk (ajax only): several runs' full histories by run id, at most
    ``max_results`` (≤ 25000) points in all."""
    run_ids = str_list(p.get("run_id"))
    if not run_ids:
        raise invalid("GetMetricHistoryBulk request must specify at least one run_id.")
    if len(run_ids) > MAX_RUNS_HISTORY_BULK:
        raise invalid(
            f"GetMetricHistoryBulk request cannot specify more than {MAX_RUNS_HISTORY_BULK} run_ids. "
            f"Received {len(run_ids)} run_ids."
        )
    key = p.get("metric_key")
    if key is None:
        raise invalid("GetMetricHistoryBulk request must specify a metric_key.")
    limit = min(int_or(p.get("max_results"), MAX_HISTORY_BULK), MAX_HISTORY_BULK)
    ctx.wait("metadata", run_ids)
    ctx.wait("metrics", run_ids)
    points = ctx.reader.metric_history_bulk(run_ids, str(key), limit)  # the store's JSON, run ids in
    return Response(_history_json(points, None), media_type="application/json")


def metric_history_bulk_interval(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    run_ids = str_list(p.get("run_ids"))
    if not run_ids:
        v.required({}, "run_ids")
    if len(run_ids) > MAX_RUNS_GET_METRIC_HISTORY_BULK:
        raise invalid(
            f"GetMetricHistoryBulkInterval request must specify at most {MAX_RUNS_GET_METRIC_HISTORY_BULK} "
            f"run_ids. Received {len(run_ids)} run_ids."
        )
    key = str(v.required(p, "metric_key"))
    max_results = MAX_RESULTS_PER_RUN
    if p.get("max_results") is not None:
        max_results = int_or(p["max_results"], None)
        if not 1 <= max_results <= MAX_RESULTS_PER_RUN:
            raise invalid(f"max_results must be between 1 and {MAX_RESULTS_PER_RUN}.")
    start, end = p.get("start_step"), p.get("end_step")
    if (start is None) != (end is None):
        raise invalid("If either start step or end step are specified, both must be specified.")
    if start is not None:
        start, end = int_or(start, None), int_or(end, None)
        if start > end:
            raise invalid(f"end_step must be greater than start_step. Found start_step={start} and end_step={end}.")
    # Waits by hand: for at most MAX_RUNS_GET_METRIC_HISTORY_BULK keys, once the request is known valid.
    ctx.wait("metadata", run_ids)
    ctx.wait("metrics", run_ids)
    samples = ctx.reader.metric_samples(run_ids, key, max_results, start, end)  # sampled in SQL
    return {
        "metrics": [
            {"key": key, "value": "NaN" if nan else value, "timestamp": ts, "step": step, "run_id": rid}
            for rid in run_ids
            for step, ts, value, nan in samples[rid]
        ]
    }


def sample_points(rows: list[tuple[Any, ...]], max_results: int) -> list[tuple[Any, ...]]:
    """MLflow 3.17's SQL-store sampling of one run's metric history, in Python: the reference the SQL
    sampling (``TrackingReader.metric_samples``) is tested against.

    ``rows`` are the run's points ordered by (step, timestamp, value, is_nan). They are split into
    ``max_results`` buckets as SQL ``NTILE`` does (the first ``len % n`` buckets one row larger) and the
    first row of each bucket is kept; then the last point is kept too, replacing the last sample when
    the answer is already full.
    """
    total = len(rows)
    if total == 0:
        return []
    n = max(1, max_results)
    out: list[tuple[Any, ...]] = []
    if total <= n:
        out = list(rows)
    else:
        size, extra = divmod(total, n)
        index = 0
        for bucket in range(n):
            out.append(rows[index])
            index += size + (1 if bucket < extra else 0)
    last = rows[-1]
    if out[-1] != last:
        if len(out) >= n:
            out[-1] = last
        else:
            out.append(last)
    return out


ENDPOINTS = [
    Endpoint("/runs/log-metric", ("POST",), log_metric, LogMetric, blocking=False, typed=True, access=Access.run(EDIT)),
    Endpoint("/runs/log-batch", ("POST",), log_batch, LogBatch, blocking=False, typed=True, access=Access.run(EDIT)),
    Endpoint(
        "/metrics/get-history",
        ("GET",),
        metric_history,
        r.GetMetricHistory,
        Reads.keyed("metrics", "run_id", "run_uuid"),
        access=Access.run(READ),
    ),
    Endpoint(
        "/metrics/get-history-bulk-interval",
        ("GET",),
        metric_history_bulk_interval,
        r.GetMetricHistoryBulkInterval,
        access=Access.run(READ, "run_ids"),
    ),
    Endpoint(
        "/metrics/get-history-bulk",
        ("GET",),
        metric_history_bulk,
        r.GetMetricHistoryBulk,
        prefixes=("/ajax-api/2.0/mlflow",),
        access=Access.run(READ, "run_id"),
    ),
]
