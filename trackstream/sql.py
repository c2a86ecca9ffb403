"""Read-only SQL against the embedded store while the gateway runs (``trackstream sql``).

chDB lives inside the gateway process and its directory cannot be opened by a second process, so the
embedded gateway answers ``POST /trackstream/sql`` (body: one statement; ``?format=`` any ClickHouse
output format) for clients on a loopback address only. Only reading statements are accepted (the first
keyword, one statement, no ``INTO OUTFILE``). The request must be sent as ``Content-Type:
application/sql``: a browser cannot send that cross-origin without a preflight the gateway refuses, so a
web page cannot make a local browser query it. Kafka mode has no such route: use any ClickHouse client.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from trackstream.errors import StoreError

if TYPE_CHECKING:  # chDB's library is imported by the embedded runtime only (~240 MB of RSS)
    from trackstream.tables.chdb import ChdbStore

PATH = "/trackstream/sql"
CONTENT_TYPE = "application/sql"
_READING = re.compile(r"^\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXISTS|EXPLAIN)\b", re.IGNORECASE)
_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)
_FORMAT = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def route(tables: ChdbStore) -> Route:
    async def answer(request: Request) -> Response:
        if not _loopback(request.client.host if request.client else None):
            return PlainTextResponse("SQL is answered to clients on this machine only", 403)
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != CONTENT_TYPE:
            return PlainTextResponse(f"send the statement as Content-Type: {CONTENT_TYPE}", 415)
        fmt = request.query_params.get("format", "PrettyCompact")
        if not _FORMAT.match(fmt):
            return PlainTextResponse(f"invalid format {fmt!r}", 400)
        sql = (await request.body()).decode("utf-8", errors="replace").strip().rstrip(";").strip()
        if ";" in sql or not _READING.match(sql) or _OUTFILE.search(sql):
            return PlainTextResponse(
                "one reading statement only (SELECT, WITH, SHOW, DESCRIBE, EXISTS, EXPLAIN; no INTO OUTFILE)", 400
            )
        try:
            out = await run_in_threadpool(tables.formatted, sql, fmt)
        except StoreError as exc:
            return PlainTextResponse(str(exc), 400)
        return Response(out, media_type="text/plain; charset=utf-8")

    return Route(PATH, answer, methods=["POST"])
