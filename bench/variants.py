"""What-if variants of the gateway, to measure a proposal's gain before anyone changes the code.

    python -m bench.variants switch1ms,linger0 serve     (what ``bench/run.py --variant`` starts)

Each variant is a monkeypatch applied in this launcher process, which then runs ``trackstream serve``
in-process. Nothing under ingest/, consumers/ or trackstream/ is modified; the patches are deliberately
minimal (they skip corner cases a real change must handle, noted per variant) and exist only so that
the bench can put a measured number next to each proposal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import orjson


def parse_in_thread() -> None:
    """Parse the log-batch body inside the thread-pool call instead of on the event loop."""
    from pydantic import BaseModel, ValidationError
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request

    from ingest import app
    from ingest.errors import MlflowError

    def model_endpoint(model: type[BaseModel], handler: Callable[[Any], dict[str, Any]]) -> app.Endpoint:
        def work(body: bytes) -> dict[str, Any]:
            try:
                fields = orjson.loads(body or b"{}")
                if not isinstance(fields, dict):
                    raise MlflowError("Request body must be a JSON object", "BAD_REQUEST")
                return handler(model.model_validate(fields))
            except orjson.JSONDecodeError as exc:
                raise MlflowError(f"Malformed JSON request body: {exc}", "BAD_REQUEST") from None
            except ValidationError as exc:
                raise app._model_error(exc) from None

        async def call(request: Request) -> Any:
            body = await request.body()
            return await run_in_threadpool(work, body)

        return app._guarded(call)

    app.model_endpoint = model_endpoint


def switch_interval(ms: float) -> Callable[[], None]:
    """CPython's GIL switch interval (default 5 ms): how long a thread woken by I/O (a Kafka ack, a
    finished handler) may wait for the GIL while another thread computes."""

    def apply() -> None:
        sys.setswitchinterval(ms / 1000)

    return apply


def linger(ms: int) -> Callable[[], None]:
    def apply() -> None:
        from trackstream.log import kafka

        kafka.PRODUCER_CONFIG["linger_ms"] = ms

    return apply


VARIANTS: dict[str, Callable[[], None]] = {
    "parse-in-thread": parse_in_thread,
    "switch1ms": switch_interval(1),
    "switch20ms": switch_interval(20),
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
