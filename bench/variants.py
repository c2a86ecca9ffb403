"""What-if variants of the gateway, to measure a proposal's gain before anyone changes the code.

    python -m bench.variants run-cache,parse-in-thread serve     (what ``bench/run.py --variant`` starts)

Each variant is a monkeypatch applied in this launcher process, which then runs ``trackstream serve``
in-process. Nothing under ingest/, consumers/ or trackstream/ is modified; the patches are deliberately
minimal (they skip corner cases a real change must handle, noted per variant) and exist only so that
the bench can put a measured number next to each proposal.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

RUN_CACHE_TTL = 5.0


def run_cache() -> None:
    """Cache the per-request active-run check (barrier on the metadata partition + ``runs FINAL`` query).

    Only 'active' answers are cached, for RUN_CACHE_TTL seconds; a delete/restore through this gateway
    drops the entry. A real change must also bound staleness across replicas (documented like state 12).
    """
    from ingest.tracking import Tracking

    original = Tracking._active_run
    original_stage = Tracking._set_run_stage
    cache: dict[str, tuple[float, dict[str, Any]]] = {}
    lock = threading.Lock()

    def _active_run(self: Tracking, run_id: str) -> dict[str, Any]:
        now = time.monotonic()
        hit = cache.get(run_id)
        if hit is not None and now - hit[0] < RUN_CACHE_TTL:
            return dict(hit[1])
        info = original(self, run_id)
        with lock:
            cache[run_id] = (now, dict(info))
        return info

    def _set_run_stage(self: Tracking, info: dict[str, Any], stage: str) -> None:
        with lock:
            cache.pop(info["run_id"], None)
        original_stage(self, info, stage)

    Tracking._active_run = _active_run  # type: ignore[method-assign]
    Tracking._set_run_stage = _set_run_stage  # type: ignore[method-assign]


def _patch_model_endpoint(parse: Callable[[type[Any], bytes], Any]) -> None:
    """Parse the body inside the thread-pool call instead of on the event loop."""
    from pydantic import BaseModel, ValidationError
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request

    from ingest import app

    def model_endpoint(model: type[BaseModel], handler: Callable[[Any], dict[str, Any]]) -> app.Endpoint:
        def work(body: bytes) -> dict[str, Any]:
            try:
                parsed = parse(model, body)
            except ValidationError as exc:
                raise app._model_error(exc) from None
            return handler(parsed)

        async def call(request: Request) -> Any:
            body = await request.body()
            return await run_in_threadpool(work, body)

        return app._guarded(call)

    app.model_endpoint = model_endpoint


def _pydantic_parse(model: type[Any], body: bytes) -> Any:
    return model.model_validate_json(body or b"{}")


def parse_in_thread() -> None:
    _patch_model_endpoint(_pydantic_parse)


class _Metric:
    """Attribute view of one metric dict: what ``Tracking._log`` reads, without a pydantic model per point."""

    __slots__ = ("dataset_digest", "dataset_name", "key", "model_id", "step", "timestamp", "value")

    def __init__(self, m: dict[str, Any]) -> None:
        self.key = m.get("key")
        self.value = m.get("value")
        self.timestamp = m.get("timestamp")
        self.step = m.get("step")
        self.model_id = m.get("model_id")
        self.dataset_name = m.get("dataset_name")
        self.dataset_digest = m.get("dataset_digest")


_SCALAR = (str, int, float, type(None))


def _fast_parse(model: type[Any], body: bytes) -> Any:
    """orjson + slotted objects for log-batch metrics; anything unusual falls back to pydantic (its errors)."""
    import orjson

    from ingest.protocol import LogBatch

    if model is not LogBatch:
        return _pydantic_parse(model, body)
    try:
        d = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        return _pydantic_parse(model, body)
    metrics = d.get("metrics") if isinstance(d, dict) else None
    if (
        not isinstance(d, dict)
        or not isinstance(d.get("run_id"), str | None)
        or not isinstance(metrics, list | None)
        or not all(isinstance(m, dict) and all(isinstance(v, _SCALAR) for v in m.values()) for m in metrics or [])
    ):
        return _pydantic_parse(model, body)
    rest = LogBatch.model_validate({"params": d.get("params") or [], "tags": d.get("tags") or []})
    return LogBatch.model_construct(
        run_id=d.get("run_id"), metrics=[_Metric(m) for m in metrics or []], params=rest.params, tags=rest.tags
    )


def fast_parse() -> None:
    """Skip a pydantic model per metric point (validation rules stay in ingest/validation.py); in the pool."""
    _patch_model_endpoint(_fast_parse)


def linger(ms: int) -> Callable[[], None]:
    def apply() -> None:
        from trackstream.log import kafka

        kafka.PRODUCER_CONFIG["linger_ms"] = ms

    return apply


def barrier_lock() -> None:
    """Serialize the gateway's admin-client calls (end offsets, committed offsets): kafka-python's admin
    client refuses a 6th in-flight request per connection (NodeNotReadyError: max_in_flight) -> 503."""
    from trackstream.log.kafka import KafkaLog

    lock = threading.Lock()
    end_offsets, committed = KafkaLog.end_offsets, KafkaLog.committed

    def locked_end_offsets(self: KafkaLog, topic: str, partitions: Any) -> dict[int, int]:
        with lock:
            return end_offsets(self, topic, partitions)

    def locked_committed(self: KafkaLog, group: str, topic: str) -> dict[int, int]:
        with lock:
            return committed(self, group, topic)

    KafkaLog.end_offsets = locked_end_offsets  # type: ignore[method-assign]
    KafkaLog.committed = locked_committed  # type: ignore[method-assign]


VARIANTS: dict[str, Callable[[], None]] = {
    "run-cache": run_cache,
    "parse-in-thread": parse_in_thread,
    "fast-parse": fast_parse,
    "barrier-lock": barrier_lock,
    "linger0": linger(0),
    "linger10": linger(10),
}


def main() -> None:
    names = [n for n in sys.argv[1].split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"bench.variants: unknown {unknown}; known: {', '.join(VARIANTS)}")
    for name in names:
        VARIANTS[name]()
    print(f"bench.variants: applied {names}", flush=True)
    from trackstream.cli import main as cli_main

    cli_main(sys.argv[2:])


if __name__ == "__main__":
    main()
