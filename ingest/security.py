"""The stock server's web security (``mlflow server`` 3.17, ``mlflow/server/fastapi_security.py``), same
defaults, same refusals:

- Host header validation against DNS rebinding: a Host outside the allowed patterns gets 403 text/plain
  ``Invalid Host header - possible DNS rebinding attack detected`` (``/health`` and ``/version`` exempt).
  Hand-written rather than Starlette's ``TrustedHostMiddleware``, which cannot express MLflow's defaults:
  it drops the port and knows only leading ``*.`` wildcards, where MLflow matches ``fnmatch`` patterns
  such as ``192.168.*`` and ``localhost:*``, and it answers 400 where MLflow answers 403.
- CORS: Starlette's ``CORSMiddleware`` answers preflights and sets the CORS headers, for the allowed
  origins plus localhost; a state-changing API request (POST, PUT, DELETE, PATCH) from any other
  ``Origin`` gets 403 text/plain ``Cross-origin request blocked`` (the browser would send it anyway:
  a text/plain POST needs no preflight).
- ``X-Content-Type-Options: nosniff`` on every response, ``X-Frame-Options`` (default SAMEORIGIN, NONE
  leaves it out); a successful OPTIONS on an API path answers 204.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from urllib.parse import urlparse

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trackstream.settings import default_allowed_hosts

INVALID_HOST_MSG = b"Invalid Host header - possible DNS rebinding attack detected"
CORS_BLOCKED_MSG = b"Cross-origin request blocked"
HOST_CHECK_EXEMPT = ("/health", "/health/live", "/health/ready", "/version")  # probes send a pod IP as Host
STATE_CHANGING = ("POST", "PUT", "DELETE", "PATCH")
API_PREFIXES = ("/api/", "/ajax-api/")
LOCALHOST_ORIGIN_PATTERNS = (
    r"^http://localhost(:[0-9]+)?$",
    r"^http://127\.0\.0\.1(:[0-9]+)?$",
    r"^http://\[::1\](:[0-9]+)?$",
)
_LOCALHOST_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")


@dataclass(frozen=True)
class WebSecurity:
    """``allowed_hosts``: Host header patterns (``*`` allows all); ``cors_allowed_origins``: origins allowed
    besides localhost (``*`` allows all, without credentials); ``x_frame_options``: SAMEORIGIN, DENY or NONE."""

    allowed_hosts: list[str] = field(default_factory=default_allowed_hosts)
    cors_allowed_origins: list[str] = field(default_factory=list)
    x_frame_options: str = "SAMEORIGIN"
    enabled: bool = True

    def middleware(self) -> list[Middleware]:
        """Outermost first, in the order the stock server stacks them."""
        if not self.enabled:
            return []
        out: list[Middleware] = []
        if "*" not in self.allowed_hosts:
            out.append(Middleware(HostValidation, allowed_hosts=self.allowed_hosts))
        if "*" in self.cors_allowed_origins:
            out.append(
                Middleware(
                    CORSMiddleware,
                    allow_origins=["*"],
                    allow_credentials=False,
                    allow_methods=["*"],
                    allow_headers=["*"],
                    expose_headers=["*"],
                )
            )
        else:
            out.append(
                Middleware(
                    CORSMiddleware,
                    allow_origins=self.cors_allowed_origins,
                    allow_origin_regex="|".join(LOCALHOST_ORIGIN_PATTERNS),
                    allow_credentials=True,
                    allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"],
                    allow_headers=["*"],
                    expose_headers=["*"],
                )
            )
            out.append(Middleware(CrossOriginWriteBlock, allowed_origins=self.cors_allowed_origins))
        out.append(Middleware(SecurityHeaders, x_frame_options=self.x_frame_options))
        return out


def _matches(value: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(value, p) if "*" in p else value == p for p in patterns)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


async def _plain(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


class HostValidation:
    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in HOST_CHECK_EXEMPT:
            host = _header(scope, b"host")
            if not host or not _matches(host, self.allowed_hosts):
                await _plain(send, 403, INVALID_HOST_MSG)
                return
        await self.app(scope, receive, send)


def _is_localhost_origin(origin: str) -> bool:
    try:
        return urlparse(origin).hostname in _LOCALHOST_NAMES
    except ValueError:
        return False


class CrossOriginWriteBlock:
    def __init__(self, app: ASGIApp, allowed_origins: list[str]) -> None:
        self.app = app
        self.allowed_origins = allowed_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING and scope["path"].startswith(API_PREFIXES):
            origin = _header(scope, b"origin")
            if origin and not _is_localhost_origin(origin) and not _matches(origin, self.allowed_origins):
                await _plain(send, 403, CORS_BLOCKED_MSG)
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    def __init__(self, app: ASGIApp, x_frame_options: str) -> None:
        self.app = app
        frame = x_frame_options.strip().upper()
        self.frame = frame.encode() if frame and frame != "NONE" else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        options_on_api = scope["method"] == "OPTIONS" and scope["path"].startswith(API_PREFIXES)
        no_content = False

        async def send_with_headers(message: Message) -> None:
            nonlocal no_content
            if message["type"] == "http.response.start":
                replaced = (b"x-content-type-options", b"x-frame-options")
                headers = [(k, v) for k, v in message.get("headers", []) if k not in replaced]
                headers.append((b"x-content-type-options", b"nosniff"))
                if self.frame is not None:
                    headers.append((b"x-frame-options", self.frame))
                if options_on_api and message.get("status") == 200:
                    no_content = True
                    headers = [(k, v) for k, v in headers if k != b"content-length"]
                message = {**message, "headers": headers, "status": 204 if no_content else message["status"]}
            elif message["type"] == "http.response.body" and no_content:
                message = {**message, "body": b""}
            await send(message)

        await self.app(scope, receive, send_with_headers)
