"""The Starlette application: every endpoint of ``ingest.handlers.ENDPOINTS`` as routes, through one adapter.

An endpoint's record (``ingest.endpoint.Endpoint``) says where it is served, its request model, its
handler, whether the handler blocks (the thread pool) or runs on the event loop (the metric hot path),
and which partitions its reads depend on (the read-your-writes barrier the adapter passes first).
Every failure leaves as an MLflow-shaped error; an unexpected exception is logged and answered as
INTERNAL_ERROR without a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ingest.auth import handlers as auth_handlers
from ingest.auth.access import HEADER, Access
from ingest.auth.guard import AuthMiddleware, NeedsThread
from ingest.endpoint import API, ARTIFACTS_API, Endpoint
from ingest.errors import MlflowError, invalid
from ingest.handlers import ENDPOINTS, Context
from ingest.limits import BodyLimit
from ingest.observability import ROUTES as OBSERVABILITY_ROUTES
from ingest.observability import Observability
from ingest.requests import checked, error_message, list_fields
from ingest.security import WebSecurity
from ingest.ui import ui_routes
from trackstream.errors import StoreError, StoreRejected
from trackstream.objects import ObjectStore
from trackstream.settings import DEFAULT_MAX_BODY_BYTES, DEFAULT_READ_TIMEOUT

log = logging.getLogger(__name__)

PREFIXES = API
ARTIFACT_PREFIXES = ARTIFACTS_API


def store_error(exc: StoreError) -> MlflowError:
    """A store's refusal as the client sees it: an outage is retriable (503), data the store will never
    take is the request's fault (400), anything unclassified is ours (500, logged)."""
    if exc.retriable:
        return MlflowError(f"Store error: {exc}", "TEMPORARILY_UNAVAILABLE")
    if isinstance(exc, StoreRejected):
        return invalid(f"The store refused the request: {exc}")
    return MlflowError(f"Store error: {exc}", "INTERNAL_ERROR")


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def error_response(exc: MlflowError) -> Response:
    return json_response(exc.body(), exc.status)


def _check_content_type(request: Request) -> None:
    """The stock server reads a POST or PUT body only when it is declared JSON (which also keeps a browser's
    cross-site "simple" form or text/plain post from reaching a handler)."""
    if request.method not in ("POST", "PUT"):
        return
    declared = request.headers.get("content-type")
    if declared is None:
        raise invalid("Bad Request. Content-Type header is missing.")
    if declared.split(";", 1)[0].strip().lower() != "application/json":
        raise invalid("Bad Request. Content-Type must be one of ['application/json'].")


async def _fields(request: Request, lists: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The request's fields: the query string of a GET (``lists`` name the repeated fields; any other field
    given twice takes its first value, as the stock server does), else the JSON object of the body."""
    if request.method == "GET":
        out: dict[str, Any] = {}
        for key, value in request.query_params.multi_items():
            if key in lists:
                out.setdefault(key, []).append(value)
            else:
                out.setdefault(key, value)
        return out
    _check_content_type(request)
    body = await request.body()
    if not body:
        return {}
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MlflowError(f"Malformed JSON request body: {exc}", "BAD_REQUEST") from None
    if not isinstance(parsed, dict):
        raise MlflowError("Request body must be a JSON object", "BAD_REQUEST")
    return parsed


async def validated_fields(request: Request, model: type[BaseModel]) -> dict[str, Any]:
    """The request's fields once ``model`` accepted them: the fields as sent, with the model's values (int64
    strings as ints, enum numbers as names) over the ones it declares. Unknown fields stay, as the handlers
    ignore them."""
    return checked(model, await _fields(request, list_fields(model)))


ASGIEndpoint = Callable[[Request], Awaitable[Response]]


def _guarded(call: Callable[[Request], Awaitable[Any]]) -> ASGIEndpoint:
    async def endpoint(request: Request) -> Response:
        try:
            result = await call(request)
            return result if isinstance(result, Response) else json_response(result)
        except MlflowError as exc:
            return error_response(exc)
        except StoreError as exc:
            log.warning("store error on %s: %s", request.url.path, exc)
            return error_response(store_error(exc))
        except Exception:
            log.exception("unexpected error on %s", request.url.path)
            return error_response(MlflowError("Internal error; see the gateway log.", "INTERNAL_ERROR"))

    return endpoint


def request_model(endpoint: Any) -> type[BaseModel] | None:
    """The request model a route's endpoint validates against (None: a raw body, or no fields). The
    fuzzer (tests/fuzz) generates requests from it."""
    spec = getattr(endpoint, "spec", None)
    return spec.request if isinstance(spec, Endpoint) else None


async def _typed(request: Request, model: type[BaseModel]) -> BaseModel:
    """Hot write paths: orjson parses the body (twice as fast as pydantic's JSON mode on a full
    log-batch), pydantic checks the fields; bulk lists stay plain for the handler to check by column."""
    fields = await _fields(request)
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise invalid(error_message(exc)) from None


def _values(spec: Endpoint, model: BaseModel) -> dict[str, Any]:
    """A typed request's fields that its access declaration names (no dict of the whole hot-path body)."""
    fields = spec.access.fields if spec.access is not None else ()
    return {f: getattr(model, f, None) for f in fields}


def _header_values(spec: Endpoint, request: Request) -> dict[str, Any]:
    """The request headers its access declaration names (``header:<name>`` fields)."""
    fields = spec.access.fields if spec.access is not None else ()
    return {f: request.headers.get(f.removeprefix(HEADER)) for f in fields if f.startswith(HEADER)}


def adapt(spec: Endpoint, ctx: Context) -> ASGIEndpoint:
    """The one adapter from an :class:`Endpoint` to a Starlette endpoint: parse and validate the request
    against its model, pass the read barrier the endpoint declares, check the caller's permission (auth on:
    ``ctx.guard`` enforces ``spec.access``), call the handler in the thread pool (``blocking``) or on the
    event loop, filter a search's answer to what the caller may read, and answer every failure as an
    MLflow error."""
    handler, reads, guard, access = spec.handler, spec.reads, ctx.guard, spec.access

    def run(values: dict[str, Any], path_params: dict[str, Any], args: tuple[Any, ...]) -> Any:
        for topic, keys in reads.plan(values):
            ctx.wait(topic, keys)
        if guard is None:
            return handler(ctx, *args, **({} if spec.raw else path_params))
        guard.authorize(ctx, access, values)
        return guard.after(access, handler(ctx, *args, **({} if spec.raw else path_params)), values)

    async def call(request: Request) -> Any:
        path_params = request.path_params
        if spec.typed:
            assert spec.request is not None
            args: tuple[Any, ...] = (await _typed(request, spec.request),)
            values = {**_values(spec, args[0]), **path_params} if guard is not None else {}
        else:
            fields = await validated_fields(request, spec.request) if spec.request is not None else {}
            args = (request, fields) if spec.raw else (fields,)
            # path parameters over fields of the same name: the handler takes the path's, so the check must
            values = {**fields, **path_params, **_header_values(spec, request)}
        if spec.blocking:
            return await run_in_threadpool(run, values, path_params, args)
        if guard is not None:
            try:
                guard.authorize(ctx, access, values, may_block=False)
            except NeedsThread:
                await run_in_threadpool(guard.authorize, ctx, access, values)
        result = handler(ctx, *args, **({} if spec.raw else path_params))
        result = await result if isinstance(result, Awaitable) else result
        if (
            guard is not None
            and access is not None
            and (access.filter or access.grant or access.revokes or access.renames)
        ):
            result = await run_in_threadpool(guard.after, access, result, values)
        return result

    endpoint = _guarded(call)
    endpoint.spec = spec  # type: ignore[attr-defined]
    return endpoint


def _not_implemented(path: str) -> Callable[..., None]:
    what = path.split("{")[0].rstrip("/")

    def handler(ctx: Context, request: Request, fields: dict[str, Any]) -> None:
        raise MlflowError(f"{what} is not implemented by this gateway yet.", "NOT_IMPLEMENTED")

    return handler


# Endpoints of `mlflow server` 3.17 this gateway answers with 501 NOT_IMPLEMENTED (cited by the README).
UNIMPLEMENTED: dict[str, str] = {}
NOT_IMPLEMENTED = [
    Endpoint(
        path, tuple(methods.split(", ")), _not_implemented(path), None, blocking=False, raw=True, access=Access.user
    )
    for path, methods in UNIMPLEMENTED.items()
]


def routes(endpoints: list[Endpoint], ctx: Context) -> list[Route]:
    """Each endpoint under each of its prefixes, in table order."""
    return [
        Route(prefix + spec.path, adapt(spec, ctx), methods=list(spec.methods))
        for spec in endpoints
        for prefix in spec.prefixes
    ]


async def _health(request: Request) -> Response:
    """200 "OK", or 503 naming each problem (embedded: a sink worker that stopped). The process that
    builds the app sets ``app.state.health`` to a callable returning the problems."""
    check = getattr(request.app.state, "health", None)
    problems: list[str] = check() if check is not None else []
    if problems:
        return Response("UNHEALTHY: " + "; ".join(problems), status_code=503, media_type="text/plain")
    return Response("OK", media_type="text/plain")


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(MlflowError(f"No endpoint {request.method} {request.url.path}", "ENDPOINT_NOT_FOUND"))


async def _bad_method(request: Request, exc: Exception) -> Response:
    return json_response(
        {"error_code": "BAD_REQUEST", "message": f"Method {request.method} not allowed on {request.url.path}"}, 405
    )


def streamed_upload(method: str, path: str) -> bool:
    """Artifact uploads (single PUT and multipart parts) stream to the object store: no JSON body limit."""
    return method == "PUT" and path.startswith(ARTIFACT_PREFIXES)


def create_app(
    context: Context,
    objects: ObjectStore,
    artifact_inline_max_bytes: int,
    artifact_part_max_bytes: int,
    on_shutdown: Callable[[], None] | None = None,
    web: WebSecurity | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    access_log: bool = False,
) -> Starlette:
    """``context`` is the runtime's (``Runtime.tracking()``); the object store and artifact limits are
    added to it here. ``web`` defaults to the stock server's security defaults; ``max_body_bytes``
    bounds JSON bodies and ``read_timeout`` a body that stops arriving (``ingest.limits``)."""
    ctx = dataclasses.replace(
        context,
        objects=objects,
        artifact_inline_max_bytes=artifact_inline_max_bytes,
        artifact_part_max_bytes=artifact_part_max_bytes,
    )
    all_routes: list[BaseRoute] = [Route("/health", _health), Route("/version", _version), *OBSERVABILITY_ROUTES]
    if ctx.guard is not None:  # the basic-auth app's routes exist only with auth on, as in the stock server
        all_routes += routes(auth_handlers.ENDPOINTS, ctx)
    all_routes += routes(ENDPOINTS, ctx)
    # The MLflow web app, /graphql and the small routes it polls (ingest/ui.py), then the unimplemented catch-alls.
    all_routes += ui_routes(ctx, lambda endpoints: routes(endpoints, ctx))
    all_routes += routes(NOT_IMPLEMENTED, ctx)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if on_shutdown is not None:
            await run_in_threadpool(on_shutdown)

    middleware = [
        Middleware(Observability, access=access_log),  # outermost: request ids, metrics, the access log
        *(web or WebSecurity()).middleware(),
        *([Middleware(AuthMiddleware, guard=ctx.guard)] if ctx.guard is not None else []),
        Middleware(BodyLimit, max_bytes=max_body_bytes, read_timeout=read_timeout, streamed=streamed_upload),
    ]
    return Starlette(
        routes=all_routes,
        middleware=middleware,
        exception_handlers={404: _not_found, 405: _bad_method},
        lifespan=lifespan,
    )


async def _version(request: Request) -> Response:
    return Response("3.17.2", media_type="text/plain")
