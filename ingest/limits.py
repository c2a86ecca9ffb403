"""Bounded resources per connection: how large a request body may be and how slowly it may arrive.

``BodyLimit`` is ASGI middleware that counts a body while it streams in, so an oversize body is refused
after at most ``max_bytes`` were read (a declared ``Content-Length`` over the limit is refused before
any), and a body that stops arriving is refused after ``read_timeout``. ``HeadTimeoutProtocol`` is
uvicorn's HTTP protocol with one more timer: uvicorn closes a kept-alive connection that stays idle,
but not a new one that never sends a request, nor one that sends its request head a byte at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ingest.errors import MlflowError
from trackstream.settings import DEFAULT_READ_TIMEOUT


class BodyTooLarge(MlflowError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"Request body exceeds the maximum allowed size of {limit} bytes (TRACKSTREAM_MAX_REQUEST_BODY_BYTES).",
            "RESOURCE_LIMIT_EXCEEDED",
        )

    @property
    def status(self) -> int:
        return 413


class BodyTimeout(MlflowError):
    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"Request body not received within {seconds:g} s (TRACKSTREAM_REQUEST_READ_TIMEOUT).", "BAD_REQUEST"
        )

    @property
    def status(self) -> int:
        return 408


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (413) and bodies that stall for ``read_timeout`` (408).

    Requests that ``streamed(method, path)`` names (artifact uploads, streamed to the object store) get the
    timeout but no size limit. The refusal is raised from ``receive``, which the route adapter answers as an
    MLflow error; if it escapes the application before a response started, it is answered here. Either
    way the response closes the connection, so the rest of an oversize body is never read.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout: float, streamed: Callable[[str, str], bool]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout
        self.streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = None if self.streamed(scope["method"], scope["path"]) else self.max_bytes
        if limit is not None:
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                await _refuse(send, BodyTooLarge(limit))
                return
        received = 0
        body_done = False
        refused: list[MlflowError] = []
        started = False

        async def checked_receive() -> Message:
            nonlocal received, body_done
            if body_done:
                return await receive()  # waiting for a disconnect while a response streams: no deadline
            try:
                async with asyncio.timeout(self.read_timeout):
                    message = await receive()
            except TimeoutError:
                refused.append(BodyTimeout(self.read_timeout))
                raise refused[-1] from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if limit is not None and received > limit:
                    refused.append(BodyTooLarge(limit))
                    raise refused[-1]
            return message

        async def closing_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if refused:
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, checked_receive, closing_send)
        except (BodyTooLarge, BodyTimeout) as exc:
            if started:
                raise
            await _refuse(send, exc)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, exc: MlflowError) -> None:
    body = orjson.dumps(exc.body())
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class HeadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose next request head is not complete within
    ``head_timeout`` seconds of the connection opening or of the previous response (slowloris, idle sockets).
    ``trackstream serve`` sets ``head_timeout`` from ``TRACKSTREAM_REQUEST_READ_TIMEOUT`` in each worker."""

    head_timeout: float = DEFAULT_READ_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # a request already read starts now: its head is complete
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)
