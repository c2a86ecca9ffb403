"""The Starlette application: routes of the MLflow REST API under ``/api/2.0/mlflow`` and ``/ajax-api/2.0/mlflow``.

Handlers are synchronous (blocking Kafka and ClickHouse clients) and run in Starlette's thread pool.
Every failure leaves as an MLflow-shaped error; an unexpected exception is logged and answered as
INTERNAL_ERROR without a traceback.
"""

from __future__ import annotations

import contextlib
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

from ingest import requests as r
from ingest.artifacts import Artifacts, server_info
from ingest.errors import MlflowError, invalid
from ingest.limits import BodyLimit
from ingest.logged_models import LoggedModels
from ingest.protocol import LogBatch, LogMetric
from ingest.requests import error_message, list_fields
from ingest.security import WebSecurity
from ingest.tracking import Tracking
from ingest.ui import ui_routes
from trackstream.errors import StoreError, StoreRejected
from trackstream.objects import ObjectStore
from trackstream.settings import DEFAULT_MAX_BODY_BYTES, DEFAULT_READ_TIMEOUT

log = logging.getLogger(__name__)

# Endpoints of `mlflow server` 3.17 this gateway answers with 501 NOT_IMPLEMENTED (cited by the README).
UNIMPLEMENTED: dict[str, str] = {
    "/registered-models/{rest:path}": "GET, POST, PATCH, DELETE",
    "/model-versions/{rest:path}": "GET, POST, PATCH, DELETE",
}

PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
ARTIFACT_PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")
SERVER_INFO_PATHS = ("/api/3.0/mlflow/server-info", "/ajax-api/3.0/mlflow/server-info")


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
    fields = await _fields(request, list_fields(model))
    try:
        parsed = model.model_validate(fields)
    except ValidationError as exc:
        raise invalid(error_message(exc)) from None
    fields.update(parsed.model_dump(exclude_unset=True, by_alias=True))
    return fields


Endpoint = Callable[[Request], Awaitable[Response]]


def _guarded(call: Callable[[Request], Awaitable[Any]]) -> Endpoint:
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


def _declares(endpoint: Endpoint, model: type[BaseModel] | None) -> Endpoint:
    """Record the request model on the endpoint: the fuzzer (tests/fuzz) generates requests from it."""
    endpoint.request_model = model  # type: ignore[attr-defined]
    return endpoint


def request_model(endpoint: Any) -> type[BaseModel] | None:
    """The request model a route's endpoint validates against (None: a raw body, or no fields)."""
    return getattr(endpoint, "request_model", None)


def dict_endpoint(model: type[BaseModel], handler: Callable[[dict[str, Any]], Any]) -> Endpoint:
    async def call(request: Request) -> Any:
        fields = await validated_fields(request, model)
        return await run_in_threadpool(handler, fields)

    return _declares(_guarded(call), model)


def request_endpoint(handler: Callable[[Request], Any]) -> Endpoint:
    """Handlers that need the raw request (streamed bodies) or return their own Response."""

    async def call(request: Request) -> Any:
        result = handler(request)
        if isinstance(result, Awaitable):
            return await result
        return result

    return _declares(_guarded(call), None)


def sync_request_endpoint(handler: Callable[[Request], Any]) -> Endpoint:
    async def call(request: Request) -> Any:
        return await run_in_threadpool(handler, request)

    return _declares(_guarded(call), None)


def path_endpoint(model: type[BaseModel], handler: Callable[..., Any]) -> Endpoint:
    """Handlers of routes with path parameters: ``handler(*path_params, fields)``."""

    async def call(request: Request) -> Any:
        fields = await validated_fields(request, model)
        return await run_in_threadpool(handler, *request.path_params.values(), fields)

    return _declares(_guarded(call), model)


def request_fields_endpoint(
    model: type[BaseModel], handler: Callable[[Request, dict[str, Any]], dict[str, Any]]
) -> Endpoint:
    """Handlers that need the request itself (its URL) as well as its fields: ``handler(request, fields)``."""

    async def call(request: Request) -> Any:
        fields = await validated_fields(request, model)
        return await run_in_threadpool(handler, request, fields)

    return _declares(_guarded(call), model)


def _not_implemented(what: str) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        return error_response(MlflowError(f"{what} is not implemented by this gateway yet.", "NOT_IMPLEMENTED"))

    return _declares(endpoint, None)


def model_endpoint(model: type[BaseModel], handler: Callable[[Any], Awaitable[dict[str, Any]]]) -> Endpoint:
    """Hot write paths: orjson parses the body (twice as fast as pydantic's JSON mode on a full
    log-batch), pydantic checks the fields; bulk lists stay plain for the handler to check by column.
    The handler is a coroutine run on the event loop (it takes a thread itself only where it must block)."""

    async def call(request: Request) -> Any:
        fields = await _fields(request)
        try:
            parsed = model.model_validate(fields)
        except ValidationError as exc:
            raise invalid(error_message(exc)) from None
        return await handler(parsed)

    return _declares(_guarded(call), model)


def tracking_routes(t: Tracking) -> list[tuple[str, list[str], Endpoint]]:
    return [
        ("/experiments/create", ["POST"], dict_endpoint(r.CreateExperiment, t.create_experiment)),
        ("/experiments/get", ["GET"], dict_endpoint(r.ExperimentId, t.get_experiment)),
        ("/experiments/get-by-name", ["GET"], dict_endpoint(r.GetExperimentByName, t.get_experiment_by_name)),
        ("/experiments/search", ["GET", "POST"], dict_endpoint(r.SearchExperiments, t.search_experiments)),
        ("/experiments/update", ["POST"], dict_endpoint(r.UpdateExperiment, t.update_experiment)),
        ("/experiments/delete", ["POST"], dict_endpoint(r.ExperimentId, t.delete_experiment)),
        ("/experiments/restore", ["POST"], dict_endpoint(r.ExperimentId, t.restore_experiment)),
        ("/experiments/set-experiment-tag", ["POST"], dict_endpoint(r.SetExperimentTag, t.set_experiment_tag)),
        ("/experiments/delete-experiment-tag", ["POST"], dict_endpoint(r.DeleteExperimentTag, t.delete_experiment_tag)),
        ("/runs/create", ["POST"], dict_endpoint(r.CreateRun, t.create_run)),
        ("/runs/delete", ["POST"], dict_endpoint(r.RunRef, t.delete_run)),
        ("/runs/restore", ["POST"], dict_endpoint(r.RunRef, t.restore_run)),
        ("/runs/update", ["POST"], dict_endpoint(r.UpdateRun, t.update_run)),
        ("/runs/get", ["GET"], dict_endpoint(r.RunRef, t.get_run)),
        ("/runs/search", ["POST"], dict_endpoint(r.SearchRuns, t.search_runs)),
        ("/runs/log-metric", ["POST"], model_endpoint(LogMetric, t.log_metric)),
        ("/runs/log-batch", ["POST"], model_endpoint(LogBatch, t.log_batch)),
        ("/runs/log-parameter", ["POST"], dict_endpoint(r.LogParam, t.log_param)),
        ("/runs/set-tag", ["POST"], dict_endpoint(r.SetTag, t.set_tag)),
        ("/runs/delete-tag", ["POST"], dict_endpoint(r.DeleteTag, t.delete_tag)),
        ("/runs/log-inputs", ["POST"], dict_endpoint(r.LogInputs, t.log_inputs)),
        ("/runs/outputs", ["POST"], dict_endpoint(r.LogOutputs, t.log_outputs)),
        ("/metrics/get-history", ["GET"], dict_endpoint(r.GetMetricHistory, t.metric_history)),
        (
            "/metrics/get-history-bulk-interval",
            ["GET"],
            dict_endpoint(r.GetMetricHistoryBulkInterval, t.metric_history_bulk_interval),
        ),
        ("/experiments/search-datasets", ["POST"], dict_endpoint(r.SearchDatasets, t.search_datasets)),
    ]


def logged_model_routes(m: LoggedModels) -> list[tuple[str, list[str], Endpoint]]:
    return [
        ("/logged-models", ["POST"], dict_endpoint(r.CreateLoggedModel, m.create)),
        ("/logged-models/search", ["POST"], dict_endpoint(r.SearchLoggedModels, m.search)),
        ("/logged-models/{model_id}", ["GET"], path_endpoint(r.GetLoggedModel, m.get)),
        ("/logged-models/{model_id}", ["PATCH"], path_endpoint(r.FinalizeLoggedModel, m.finalize)),
        ("/logged-models/{model_id}", ["DELETE"], path_endpoint(r.NoFields, m.delete)),
        ("/logged-models/{model_id}/tags", ["PATCH"], path_endpoint(r.LoggedModelTags, m.set_tags)),
        (
            "/logged-models/{model_id}/tags/{key:path}",
            ["DELETE"],
            path_endpoint(r.NoFields, lambda i, k, p: m.delete_tag(i, k)),
        ),
        ("/logged-models/{model_id}/params", ["POST"], path_endpoint(r.LoggedModelParams, m.log_params)),
        (
            "/logged-models/{model_id}/artifacts/directories",
            ["GET"],
            path_endpoint(r.ListLoggedModelArtifacts, m.list_artifacts),
        ),
    ]


def artifact_routes(a: Artifacts) -> list[Route]:
    routes = []
    for prefix in ARTIFACT_PREFIXES:
        routes += [
            Route(prefix + "/artifacts", dict_endpoint(r.ArtifactPath, a.list), methods=["GET"]),
            Route(prefix + "/artifacts/{path:path}", request_endpoint(a.upload), methods=["PUT"]),
            Route(prefix + "/artifacts/{path:path}", sync_request_endpoint(a.download), methods=["GET"]),
            Route(prefix + "/artifacts/{path:path}", sync_request_endpoint(a.delete), methods=["DELETE"]),
            Route(
                prefix + "/mpu/create/{path:path}",
                request_fields_endpoint(r.CreateMultipartUpload, a.create_upload),
                methods=["POST"],
            ),
            Route(prefix + "/mpu/part/{path:path}", request_endpoint(a.upload_part), methods=["PUT"]),
            Route(
                prefix + "/mpu/complete/{path:path}",
                path_endpoint(r.CompleteMultipartUpload, a.complete_upload),
                methods=["POST"],
            ),
            Route(
                prefix + "/mpu/abort/{path:path}",
                path_endpoint(r.AbortMultipartUpload, a.abort_upload),
                methods=["POST"],
            ),
        ]
    for prefix in PREFIXES:
        routes.append(Route(prefix + "/artifacts/list", dict_endpoint(r.ListRunArtifacts, a.list_run), methods=["GET"]))
    for path in SERVER_INFO_PATHS:
        routes.append(Route(path, dict_endpoint(r.NoFields, lambda p: server_info()), methods=["GET"]))
    for path in ("/get-artifact", "/ajax-api/2.0/mlflow/get-artifact"):
        routes.append(Route(path, dict_endpoint(r.GetArtifact, a.get_artifact), methods=["GET"]))
    return routes


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
    tracking: Tracking,
    objects: ObjectStore,
    artifact_inline_max_bytes: int,
    artifact_part_max_bytes: int,
    on_shutdown: Callable[[], None] | None = None,
    web: WebSecurity | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
) -> Starlette:
    """``web`` defaults to the stock server's security defaults; ``max_body_bytes`` bounds JSON bodies and
    ``read_timeout`` a body that stops arriving (``ingest.limits``)."""
    routes: list[BaseRoute] = [Route("/health", _health), Route("/version", _version)]
    # The MLflow web app, POST /graphql and the small routes the app polls (ingest/ui.py); first, so the
    # empty registry searches answer before the registry's 501.
    routes += ui_routes(tracking, Artifacts(tracking, objects, artifact_inline_max_bytes, artifact_part_max_bytes))
    for path, methods, endpoint in tracking_routes(tracking) + logged_model_routes(LoggedModels(tracking)):
        for prefix in PREFIXES:
            routes.append(Route(prefix + path, endpoint, methods=methods))
    routes += artifact_routes(Artifacts(tracking, objects, artifact_inline_max_bytes, artifact_part_max_bytes))
    for path, methods_text in UNIMPLEMENTED.items():
        methods = methods_text.split(", ")
        for prefix in PREFIXES:
            routes.append(Route(prefix + path, _not_implemented(f"{path.split('{')[0].rstrip('/')}"), methods=methods))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if on_shutdown is not None:
            await run_in_threadpool(on_shutdown)

    middleware = [
        *(web or WebSecurity()).middleware(),
        Middleware(BodyLimit, max_bytes=max_body_bytes, read_timeout=read_timeout, streamed=streamed_upload),
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={404: _not_found, 405: _bad_method},
        lifespan=lifespan,
    )


async def _version(request: Request) -> Response:
    return Response("3.17.2", media_type="text/plain")
