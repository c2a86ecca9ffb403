"""The gateway's observability: request ids, the access log, a line for every 5xx, Prometheus metrics,
and the liveness, readiness and metrics routes.

:class:`Observability` is a plain ASGI middleware (outermost, so it sees every answer, the security
middleware's refusals included): it takes the client's ``X-Request-Id`` when it is a short token or
makes one, sets it for the log lines of the request (``trackstream.logs.REQUEST_ID``) and answers it
in the ``X-Request-Id`` header; it counts the request by route *template* (``/api/2.0/mlflow/runs/get``,
``/static-files``; ``<unmatched>`` for a 404 outside every route) so label values stay bounded.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trackstream import metrics
from trackstream.logs import REQUEST_ID

access_log = logging.getLogger("trackstream.access")
log = logging.getLogger(__name__)

HEADER = "X-Request-Id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UNMATCHED = "<unmatched>"

Problems = Callable[[], list[str]]


class Observability:
    def __init__(self, app: ASGIApp, access: bool = False) -> None:
        self.app = app
        self.access = access
        self._templates: dict[Any, str] | None = None
        self._mounts: list[str] = []

    def _route(self, scope: Scope) -> str:
        if self._templates is None:
            router = scope.get("app")
            routes: list[BaseRoute] = list(getattr(router, "routes", []))
            self._templates = {r.endpoint: r.path for r in routes if isinstance(r, Route)}
            self._mounts = [r.path for r in routes if isinstance(r, Mount)]
        endpoint = scope.get("endpoint")
        if endpoint is not None and (template := self._templates.get(endpoint)):
            return template
        path = str(scope.get("path", ""))
        return next((m for m in self._mounts if path.startswith(m + "/") or path == m), UNMATCHED)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = given if _VALID_ID.match(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        start = time.perf_counter()
        status = 500
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        metrics.HTTP_IN_PROGRESS.inc()
        try:
            await self.app(scope, counting_receive, send_with_id)
        finally:
            metrics.HTTP_IN_PROGRESS.dec()
            elapsed = time.perf_counter() - start
            method, route = scope["method"], self._route(scope)
            metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
            metrics.HTTP_DURATION.labels(method, route).observe(elapsed)
            if received:
                metrics.HTTP_IN_BYTES.labels(route).inc(received)
            line = "%s %s %d %.1fms in=%dB"
            args = (method, scope["path"], status, elapsed * 1000, received)
            fields = {"request_id": request_id, "method": method, "path": scope["path"], "route": route,
                      "status": status, "duration_ms": round(elapsed * 1000, 3), "bytes_in": received}  # fmt: skip
            if status >= 500:
                log.error("answered " + line, *args, extra=fields)
            elif self.access:
                access_log.info(line, *args, extra=fields)
            REQUEST_ID.reset(token)


async def metrics_route(request: Request) -> Response:
    before = getattr(request.app.state, "before_scrape", None)
    if before is not None:
        before()
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


def _answer(problems: list[str]) -> Response:
    if problems:
        return Response("UNHEALTHY: " + "; ".join(problems), status_code=503, media_type="text/plain")
    return Response("OK", media_type="text/plain")


async def live_route(request: Request) -> Response:
    """200 while this process works; 503 naming what a restart fixes (e.g. a stopped consumer thread)."""
    check: Problems | None = getattr(request.app.state, "health", None)
    return _answer(check() if check is not None else [])


async def ready_route(request: Request) -> Response:
    """200 when this process can answer requests now: its services answer (bounded checks in a thread)."""
    check: Problems | None = getattr(request.app.state, "readiness", None)
    return _answer(await run_in_threadpool(check) if check is not None else [])


ROUTES = [
    Route("/metrics", metrics_route),
    Route("/health/live", live_route),
    Route("/health/ready", ready_route),
]
