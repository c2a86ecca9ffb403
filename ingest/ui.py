"""The MLflow web app, served as ``mlflow server`` serves it, and the calls it makes beyond the REST API.

``/`` and ``/static-files/...`` come from the UI build inside the installed ``mlflow`` package (the
``ui`` extra); nothing of the UI lives in this repository. Without that package ``/`` answers a plain
text message saying how to install it (docs/DESIGN.md, failure state 48).

The app also polls features this gateway does not have (AI gateway, assistant, telemetry, tracing,
evaluation datasets, the model registry): those routes answer what the stock server answers when the
feature holds no data, so the pages show their empty state instead of an error.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from ingest.endpoint import Endpoint
from ingest.errors import MlflowError
from ingest.graphql import GraphQL, request_parts
from ingest.handlers import Context

# The build's file names carry content hashes, so browsers may keep them (the stock server's max_age).
STATIC_MAX_AGE = 2419200
UI_MISSING = (
    "The MLflow UI is not installed with this gateway: its web app ships inside the `mlflow` package.\n"
    "Install it with `pip install 'trackstream[ui]'` (`make run` does), then restart the gateway.\n"
    "The MLflow REST API under /api/2.0/mlflow works without it.\n"
)


def ui_build_dir() -> Path | None:
    """The installed ``mlflow`` package's web-app build, found without importing mlflow (slow, heavy)."""
    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        build = Path(location) / "server" / "js" / "build"
        if (build / "index.html").is_file():
            return build
    return None


class _CachedStatic(StaticFiles):
    def file_response(self, full_path: Any, stat_result: Any, scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = f"public, max-age={STATIC_MAX_AGE}"
        return response


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _const(body: dict[str, Any]) -> Any:
    async def endpoint(request: Request) -> Response:
        return _json(body)

    return endpoint


async def _trace_metrics(request: Request) -> Response:
    """No traces: the stock server answers a zero count for ``trace_count`` and no data points otherwise."""
    try:
        fields = await request.json()
    except ValueError:
        fields = {}
    if not isinstance(fields, dict) or fields.get("metric_name") != "trace_count" or fields.get("dimensions"):
        return _json({"data_points": []})
    aggregations = fields.get("aggregations") or []
    values = {a.get("aggregation_type"): 0.0 for a in aggregations if isinstance(a, dict)}
    return _json({"data_points": [{"metric_name": "trace_count", "values": values}]})


async def _workspaces(request: Request) -> Response:
    return PlainTextResponse(
        f"Endpoint: {request.url.path} disabled because the server is running without workspaces support.", 503
    )


ASSISTANT_CONFIG: dict[str, Any] = {"providers": {}, "projects": {}, "remote_access_allowed": False}
ASSISTANT_PROVIDERS: dict[str, Any] = {"providers": [], "resolved": None, "gateway_vendor_options": {}}
UI_TELEMETRY = {"disable_ui_events": [], "disable_ui_telemetry": True, "ui_rollout_percentage": 0}


def _graphql(gql: GraphQL) -> Any:
    async def handler(ctx: Context, request: Request, fields: dict[str, Any]) -> Any:
        body: dict[str, Any] = {}
        if request.method == "POST":
            raw = await request.body()
            try:
                parsed = orjson.loads(raw) if raw else {}
            except ValueError:
                raise MlflowError("Malformed JSON request body", "BAD_REQUEST") from None
            if not isinstance(parsed, dict):
                raise MlflowError("Request body must be a JSON object", "BAD_REQUEST")
            body = parsed
        query, variables, operation = request_parts(request.method, request.query_params, body)
        return await run_in_threadpool(gql.answer, query, variables, operation)

    return handler


def ui_routes(ctx: Context, api_routes: Callable[[list[Endpoint]], list[Route]]) -> list[BaseRoute]:
    """The web app (static files of the installed mlflow package), ``/graphql`` and the small routes the app
    polls. ``api_routes`` turns endpoint records into routes with the API's one adapter."""
    build = ui_build_dir()
    routes: list[BaseRoute] = []
    if build is None:
        routes.append(Route("/", lambda request: PlainTextResponse(UI_MISSING)))
    else:
        index = build / "index.html"
        routes.append(Route("/", lambda request: FileResponse(index)))
        routes.append(Mount("/static-files", app=_CachedStatic(directory=build), name="static-files"))
    routes += api_routes(
        [
            Endpoint("/graphql", ("GET", "POST"), _graphql(GraphQL(ctx)), None, raw=True, blocking=False,
                     prefixes=("",)),
        ]
    )  # fmt: skip
    ajax2, ajax3 = "/ajax-api/2.0/mlflow", "/ajax-api/3.0/mlflow"
    routes += [
        Route(ajax2 + "/gateway-proxy", _const({"endpoints": []}), methods=["GET", "POST"]),
        Route(ajax3 + "/ui-telemetry", _const(UI_TELEMETRY), methods=["GET"]),
        Route(ajax3 + "/ui-telemetry", _const({"status": "disabled"}), methods=["POST"]),
        Route(ajax3 + "/assistant/config", _const(ASSISTANT_CONFIG), methods=["GET"]),
        Route(ajax3 + "/assistant/providers", _const(ASSISTANT_PROVIDERS), methods=["GET"]),
        Route(ajax3 + "/workspaces", _workspaces, methods=["GET"]),
        Route(ajax3 + "/traces/search", _const({}), methods=["POST"]),
        Route(ajax3 + "/traces/metrics", _trace_metrics, methods=["POST"]),
        Route(ajax3 + "/datasets/search", _const({}), methods=["POST"]),
    ]
    return routes
