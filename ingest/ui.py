"""The MLflow web app, served as ``mlflow server`` serves it, and the calls it makes beyond the REST API.

``/`` and ``/static-files/...`` come from the UI build inside the installed ``mlflow`` package (the
``ui`` extra); nothing of the UI lives in this repository. Without that package ``/`` answers a plain
text message saying how to install it (docs/DESIGN.md, failure state 48).

The app also polls features this gateway does not have (AI gateway, assistant, telemetry,
evaluation datasets, the model registry): those routes answer what the stock server answers when the
feature holds no data, so the pages show their empty state instead of an error.
"""

from __future__ import annotations

import gzip
import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from ingest.auth.access import Access
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


class UiFiles(StaticFiles):
    """The build's files as the stock server serves them, plus compression and ``immutable``.

    As ``mlflow server``: cached by browsers for 28 days (``max-age``), validators (ETag, Last-Modified)
    answered with 304. Better: a client that accepts gzip gets text files (JS, CSS, JSON, SVG, maps)
    compressed, about 4x smaller (the app's main script: 4.4 MB, 1.2 MB gzipped; a run's chart view loads
    about 10 MB of script). Each file is compressed once, in a thread, and kept in memory by its ETag (the
    whole build's text files gzipped are about 7 MB). The gzipped form carries the file's ETag as a weak
    validator, so a revalidation of either form matches. Names with a content hash are also ``immutable``:
    a reload does not revalidate them.
    """

    def __init__(self, directory: Path) -> None:
        super().__init__(directory=directory)
        self._gzipped: dict[str, bytes] = {}

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code not in (200, 304):
            return response
        response.headers["Cache-Control"] = CACHE_CONTROL + (", immutable" if HASHED.search(path) else "")
        if response.status_code == 304 or not isinstance(response, FileResponse):
            return response
        headers = Headers(scope=scope)
        if Path(path).suffix not in COMPRESSED or "range" in headers or not _accepts_gzip(headers):
            return response
        response.headers["Vary"] = "Accept-Encoding"
        etag = response.headers["etag"]
        body = self._gzipped.get(etag)
        if body is None:
            body = await run_in_threadpool(_gzip, Path(response.path))
            self._gzipped[etag] = body
        out = Response(body, headers={k: v for k, v in response.headers.items() if k != "content-length"})
        out.headers["Content-Encoding"] = "gzip"
        out.headers["ETag"] = "W/" + etag
        return out

    def index(self, scope: Scope, index: Path) -> Response:
        """``index.html`` as Flask serves it: revalidated on every load (no-cache), 304 when unchanged."""
        response = self.file_response(index, index.stat(), scope)
        response.headers["Cache-Control"] = "no-cache"
        return response


CACHE_CONTROL = f"public, max-age={STATIC_MAX_AGE}"
HASHED = re.compile(r"\.[0-9a-f]{8,}\.(chunk\.)?[a-z]+$|\.[0-9a-f]{20,}\.")
COMPRESSED = {".js", ".css", ".json", ".svg", ".map", ".txt", ".html"}


def _accepts_gzip(headers: Headers) -> bool:
    for part in headers.get("accept-encoding", "").split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _gzip(path: Path) -> bytes:
    return gzip.compress(path.read_bytes(), compresslevel=6, mtime=0)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _const(body: dict[str, Any]) -> Any:
    async def endpoint(request: Request) -> Response:
        return _json(body)

    return endpoint


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
        files = UiFiles(build)
        routes.append(Route("/", lambda request: files.index(request.scope, index)))
        routes.append(Mount("/static-files", app=files, name="static-files"))
    routes += api_routes(
        [
            # each query's resolvers pass the permission check of the endpoint they answer with
            Endpoint("/graphql", ("GET", "POST"), _graphql(GraphQL(ctx)), None, raw=True, blocking=False,
                     prefixes=("",), access=Access.user),
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
        Route(ajax3 + "/datasets/search", _const({}), methods=["POST"]),
    ]
    return routes
