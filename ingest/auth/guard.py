"""Who is calling and whether they may: one check for every route.

:class:`AuthMiddleware` authenticates every HTTP request but ``/health`` (HTTP basic auth as the MLflow
client sends ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``, or ``Authorization: Bearer`` as
it sends ``MLFLOW_TRACKING_TOKEN``) and answers 401 with ``WWW-Authenticate: Basic`` (the browser then
asks for a login) otherwise. The caller's name travels in a context variable, so it reaches the thread
pool and GraphQL's resolvers.

:meth:`Guard.authorize` enforces an endpoint's declared :class:`~ingest.auth.access.Access`: it is
called by the REST adapter (``ingest.app.adapt``) and by ``Endpoint.invoke`` (GraphQL), after the
endpoint's read barrier. A refusal is 403 PERMISSION_DENIED, given only once the view caught up with the
log's end (a permission granted through another replica a moment ago is then seen).
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ingest.auth import credentials
from ingest.auth.access import (
    ADMIN,
    ARTIFACT,
    EXPERIMENT,
    EXPERIMENT_NAME,
    FILTERS,
    LEVELS,
    MANAGE,
    PUBLIC,
    READ,
    REGISTERED_MODEL,
    RUN,
    SELF,
    TRACE,
    USER,
    Access,
)
from ingest.auth.view import AuthView
from ingest.errors import MlflowError, unavailable
from schemas.events import AuthChange
from trackstream.reads.traces import TraceReader

log = logging.getLogger(__name__)

CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("trackstream_caller", default=None)
OPEN_PATHS = frozenset({"/health", "/health/live", "/health/ready"})  # probes (kubelet, Docker)
UNAUTHENTICATED = (
    "You are not authenticated. Send HTTP basic auth (MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD) "
    "or a bearer token (MLFLOW_TRACKING_TOKEN)."
)
RESOLVED_KEPT = 100_000


class NeedsThread(Exception):
    """The check must block (a store lookup, or catching up with the log): run it in the thread pool."""


def denied() -> MlflowError:
    return MlflowError("Permission denied", "PERMISSION_DENIED")


def now_ms() -> int:
    return int(time.time() * 1000)


class Guard:
    """Authentication and authorization over an :class:`AuthView`."""

    def __init__(self, view: AuthView, default_permission: str = READ, token_ttl_seconds: int = 0) -> None:
        self.view = view
        self.default_permission = default_permission
        self.token_ttl_seconds = token_ttl_seconds
        self._verified = credentials.VerifiedPasswords()
        # run, logged model or trace id -> experiment id: none of them moves, so a found answer is kept
        self._experiment_of: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    # -- authentication --
    def authenticate(self, authorization: str | None, may_block: bool = True) -> str | None:
        """The caller's user name, or None. ``may_block=False`` raises NeedsThread where a password hash
        must be computed (the event loop must not)."""
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer":
            return self._token_user(value)
        if scheme != "basic":
            return None
        try:
            username, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user = self.view.user(username)
        if not sep or user is None:
            return None
        if self._verified.known(username, password, user.password_hash):
            return username
        if not may_block:
            raise NeedsThread
        if not credentials.password_matches(user.password_hash, password):
            return None
        self._verified.remember(username, password, user.password_hash)
        return username

    def _token_user(self, token: str) -> str | None:
        parts = credentials.split_token(token)
        if parts is None:
            return None
        found = self.view.tokens.get(parts[0])
        if found is None or not credentials.digests_equal(found.digest, credentials.token_digest(parts[1])):
            return None
        if found.expires_ms is not None and found.expires_ms <= now_ms():
            return None
        return found.username if found.username in self.view.users else None

    # -- authorization --
    def caller(self) -> str:
        name = CALLER.get()
        if name is None or self.view.user(name) is None:
            raise MlflowError(UNAUTHENTICATED, "UNAUTHENTICATED")
        return name

    def is_admin(self, username: str) -> bool:
        user = self.view.user(username)
        return user is not None and user.is_admin

    def level(self, resource_type: str, resource_id: str, username: str) -> int:
        held = self.view.permission(resource_type, resource_id, username)
        return LEVELS[held if held is not None else self.default_permission]

    def allows(self, resource_type: str, resource_id: str, username: str, need: int) -> bool:
        return self.level(resource_type, resource_id, username) >= need

    def authorize(self, ctx: Any, access: Access | None, values: dict[str, Any], may_block: bool = True) -> None:
        """Raise 403 PERMISSION_DENIED unless the caller may call an endpoint declaring ``access`` with the
        request ``values`` (fields and path parameters). ``may_block=False`` (the event loop) raises
        :class:`NeedsThread` where the check needs the store or the log."""
        if self.view.error is not None:
            raise unavailable(f"Permissions are unavailable: {self.view.error}. See the gateway log.")
        username = self.caller()
        if self.is_admin(username):
            return
        if access is None:
            raise denied()  # fail closed: an endpoint that declares nothing is for admins only
        for one in (access, *access.also):
            self._check(ctx, one, values, username, may_block)

    def _check(self, ctx: Any, access: Access, values: dict[str, Any], username: str, may_block: bool) -> None:
        kind = access.kind
        if kind in (PUBLIC, USER):
            return
        if kind == ADMIN:
            self._refuse(lambda: self.is_admin(username), may_block)
            return
        if kind == SELF:
            named = values.get("username") or username
            if named != username:
                self._refuse(lambda: self.is_admin(username), may_block)
            return
        need = LEVELS[access.level]
        given = next((found for f in access.fields if (found := field_value(values, f))), access.default)
        if kind == ARTIFACT:
            given = str(given or "").lstrip("/").split("/", 1)[0] or None
            if given is None:  # outside any experiment (the artifact root): admins only
                self._refuse(lambda: self.is_admin(username), may_block)
                return
        if given is None:
            return  # the handler refuses the request for its missing field
        rtype = REGISTERED_MODEL if kind == REGISTERED_MODEL else EXPERIMENT
        if not self.view.has_explicit(username, rtype) and LEVELS[self.default_permission] >= need:
            return  # the default permission holds for every resource of this type
        for one in given if isinstance(given, list) else [given]:
            rid = self._resolve(ctx, kind, str(one), may_block)
            if rid is not None:
                self._refuse(functools.partial(self.allows, rtype, rid, username, need), may_block)

    def _refuse(self, allowed: Callable[[], bool], may_block: bool) -> None:
        """403 unless ``allowed()``, asked again once the view caught up with the log."""
        if allowed():
            return
        if not may_block:
            raise NeedsThread
        if not self.view.catch_up():
            raise unavailable("Permissions could not be brought up to date with the event log; retry.")
        if not allowed():
            raise denied()

    def _resolve(self, ctx: Any, kind: str, given: str, may_block: bool) -> str | None:
        """The id the permission is kept on (an experiment id or a model name); None: no such resource
        (the handler answers that)."""
        if kind in (EXPERIMENT, ARTIFACT, REGISTERED_MODEL):
            return given
        cached = self._experiment_of.get((kind, given))
        if cached is not None:
            return cached
        if kind == RUN and ctx.run_states is not None:
            found = ctx.run_states.experiment_of(given)
            if found is not None:
                return str(found)
        if not may_block:
            raise NeedsThread
        if kind == EXPERIMENT_NAME:
            row = ctx.reader.experiment_by_name(given)  # the endpoint's barrier waited for every partition
            return None if row is None else str(row["experiment_id"])
        if kind == TRACE:  # a trace id names no partition: the endpoint's barrier waited for every one
            found_in = TraceReader(ctx.reader.tables).experiment_of(given)
            if found_in is None:
                return None
            experiment_id = found_in
        else:
            ctx.wait("metadata", [given])
            row = ctx.reader.run_info(given) if kind == RUN else ctx.reader.logged_model_row(given)
            if row is None:
                return None
            experiment_id = str(row["experiment_id"])
        with self._lock:
            if len(self._experiment_of) >= RESOLVED_KEPT:
                self._experiment_of.clear()
            self._experiment_of[(kind, given)] = experiment_id
        return experiment_id

    # -- after the handler --
    def after(self, access: Access | None, result: Any, values: dict[str, Any] | None = None) -> Any:
        """Filter a search's answer to what the caller may read; grant the creator MANAGE on what it
        created; drop or move the permissions of a deleted or renamed registered model."""
        if access is None or not isinstance(result, dict):
            return result
        if access.filter is not None:
            result = self._filtered(access.filter, result)
        if access.grant is not None:
            self._grant(access.grant, result)
        if (access.revokes or access.renames) and values is not None:
            self._moved(access, values)
        return result

    def _moved(self, access: Access, values: dict[str, Any]) -> None:
        rid = next((values[f] for f in access.fields if values.get(f)), None)
        new = values.get(access.renames) if access.renames else None
        if rid is None or (access.renames and not new):
            return
        change = AuthChange(
            op="rename_resource" if new else "delete_resource",
            username=self.caller(),
            resource_type=REGISTERED_MODEL if access.kind == REGISTERED_MODEL else EXPERIMENT,
            resource_id=str(rid),
            new_resource_id=str(new) if new else None,
            time=now_ms(),
        )
        try:
            self.view.write(change)
        except MlflowError as exc:
            log.warning("could not %s the permissions of %s: %s", change.op.split("_")[0], rid, exc)

    def _filtered(self, field: str, result: dict[str, Any]) -> dict[str, Any]:
        username = self.caller()
        items = result.get(field)
        if not isinstance(items, list) or self.is_admin(username):
            return result
        path, kind = FILTERS[field]
        rtype = REGISTERED_MODEL if kind == REGISTERED_MODEL else EXPERIMENT
        if not self.view.has_explicit(username, rtype) and LEVELS[self.default_permission] >= LEVELS[READ]:
            return result
        kept = [i for i in items if self.level(rtype, str(_dig(i, path)), username) >= LEVELS[READ]]
        return {**result, field: kept} if kept else {k: v for k, v in result.items() if k != field}

    def _grant(self, grant: tuple[str, str], result: dict[str, Any]) -> None:
        resource_type, path = grant
        resource_id = _dig(result, path)
        if resource_id is None:
            return
        change = AuthChange(
            op="grant",
            username=self.caller(),
            resource_type=resource_type,
            resource_id=str(resource_id),
            permission=MANAGE,
            time=now_ms(),
        )
        try:
            self.view.write(change)
        except MlflowError as exc:  # the resource exists; its creator keeps the default permission
            log.warning("could not grant MANAGE on the new %s %s to its creator: %s", resource_type, resource_id, exc)


def field_value(values: dict[str, Any], name: str) -> Any:
    """The value of an access field in a request's values (see ``ingest.auth.access.HEADER``): a plain name
    or a dotted path into the JSON, or with a ``[]`` step the list of every value found under each item of
    that list (empty ones left out)."""
    head, many, rest = name.partition("[]")
    if not many:
        return _dig(values, name)
    items = _dig(values, head)
    found = [field_value(i, rest[1:]) if rest else i for i in (items if isinstance(items, list) else [])]
    flat = [x for v in found for x in (v if isinstance(v, list) else [v])]
    return [str(x) for x in flat if x not in (None, "")]


def _dig(item: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(item, dict):
            return None
        item = item.get(part)
    return item


class AuthMiddleware:
    """Authenticate every HTTP request but the health probes; 401 with ``WWW-Authenticate: Basic`` otherwise."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self.guard.view.error is not None:  # fail closed: no answer from a view that stopped following the log
            body = {
                "error_code": "TEMPORARILY_UNAVAILABLE",
                "message": f"Authentication is unavailable: {self.guard.view.error}",
            }
            await _send(send, 503, body)
            return
        header = Headers(scope=scope).get("authorization")
        try:
            username = self.guard.authenticate(header, may_block=False)
        except NeedsThread:
            username = await run_in_threadpool(self.guard.authenticate, header)
        if username is None:
            await _send(send, 401, {"error_code": "UNAUTHENTICATED", "message": UNAUTHENTICATED}, True)
            return
        token = CALLER.set(username)
        try:
            await self.app(scope, receive, send)
        finally:
            CALLER.reset(token)


async def _send(send: Send, status: int, body: dict[str, str], challenge: bool = False) -> None:
    payload = orjson.dumps(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if challenge:
        headers.append((b"www-authenticate", b'Basic realm="mlflow"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
