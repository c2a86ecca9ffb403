"""Proxied artifacts (``/api/2.0/mlflow-artifacts/…``) and the run-relative artifact reads.

Uploads up to ``artifact_inline_max_bytes`` travel inside the artifact event (the consumer stores
them); larger ones are streamed to object storage first and the event only indexes them (claim check).
Multipart uploads (``mpu/*``) hand the client part URLs on this gateway, so parts flow through it into
the object store's own multipart upload; completion assembles the object there and indexes it the same
way. Listing reads the ``artifacts`` index table; downloads stream from object storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import posixpath
import queue
import urllib.parse
from collections.abc import Iterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ingest import requests as r
from ingest import validation as v
from ingest.auth.access import EDIT, MANAGE, READ, Access
from ingest.endpoint import API, ARTIFACTS_API, Endpoint, Reads
from ingest.errors import MlflowError, invalid, not_found
from ingest.handlers.artifact_keys import children, proxied_root, safe_path, send_file, storable_key
from ingest.handlers.common import now_ms
from ingest.handlers.context import Context
from ingest.handlers.entities import run_info
from schemas.events import ArtifactEvent
from trackstream.errors import StoreRejected
from trackstream.objects import MAX_PARTS, InvalidParts, UploadNotFound

_CHUNK = 1 << 20


@contextlib.contextmanager
def _upload_errors() -> Iterator[None]:
    try:
        yield
    except UploadNotFound as exc:
        raise not_found(f"Multipart upload not found: {exc}") from None
    except InvalidParts as exc:
        raise invalid(f"Invalid multipart upload: {exc}") from None


# -- mlflow-artifacts --
class _Pipe(io.RawIOBase):
    """The request body handed from the event loop to the thread writing it to the object store, a few
    blocks at a time: one pass at the speed of the slower side, memory bounded by ``depth`` blocks (the
    body used to be spooled to a temp file whole, then read back: two passes over the disk)."""

    def __init__(self, depth: int = 4) -> None:
        self._blocks: queue.Queue[bytes | None] = queue.Queue(depth)
        self._head = memoryview(b"")
        self._done = False
        self.cut: BaseException | None = None  # set by the feeder: the body was cut short, the reader raises it
        self.reader_gone = False  # set when the store's writer returned or failed: feeding stops

    def feed(self, block: bytes | None) -> None:
        """A block of the body (None: the end); returns without it if the reader is gone."""
        while not self.reader_gone:
            try:
                self._blocks.put(block, timeout=0.2)
                return
            except queue.Full:
                continue

    def stop(self, exc: BaseException) -> None:
        """The body was cut short: the reader raises ``exc`` at its next read (never blocks)."""
        self.cut = exc
        with contextlib.suppress(queue.Full):
            self._blocks.put_nowait(None)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes, fewer only at the end. The blocks are sliced as memoryviews and joined once:
        one copy per byte (a bytearray grown block by block, then turned into bytes, copied each byte twice,
        and cutting a block copied its remainder)."""
        want = size if size is not None and size >= 0 else 1 << 62
        pieces: list[memoryview] = []
        got = 0
        while got < want:
            if self.cut is not None:
                raise self.cut
            if not self._head:
                if self._done:
                    break
                block = self._blocks.get()
                if self.cut is not None:
                    raise self.cut
                if block is None:
                    self._done = True
                    break
                self._head = memoryview(block)
            take = min(want - got, len(self._head))
            pieces.append(self._head[:take])
            self._head = self._head[take:]
            got += take
        return b"".join(pieces)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _BodyCut(Exception):
    """The client stopped sending before the end of the body: nothing is stored."""


async def upload(ctx: Context, request: Request, p: dict[str, Any]) -> dict[str, Any]:
    """A body up to the inline size travels in the event; a larger one streams to the object store while
    it arrives (claim check), its size and checksum computed on the way."""
    key = storable_key(safe_path(request.path_params.get("path")))
    digest = hashlib.sha256()
    size = 0
    head = bytearray()
    body = request.stream()
    async for chunk in body:
        digest.update(chunk)
        size += len(chunk)
        head += chunk
        if size > ctx.artifact_inline_max_bytes:
            break
    record: dict[str, Any] = {"path": key, "op": "PUT", "content": None, "stored": False, "size": size,
              "sha256": "", "time": now_ms()}  # fmt: skip
    if size <= ctx.artifact_inline_max_bytes:
        record["content"] = bytes(head)
    else:
        pipe = _Pipe()

        def store() -> None:
            try:
                ctx.store().put_stream(key, pipe, -1)  # type: ignore[arg-type]
            finally:
                pipe.reader_gone = True

        writer = asyncio.ensure_future(run_in_threadpool(store))
        chunks: list[bytes] = [bytes(head)]
        pending = len(head)
        try:
            async for chunk in body:
                digest.update(chunk)
                size += len(chunk)
                chunks.append(chunk)
                pending += len(chunk)
                if pending >= _CHUNK:  # the chunks joined once into a block (one copy)
                    await run_in_threadpool(pipe.feed, b"".join(chunks))
                    chunks, pending = [], 0
                    if pipe.reader_gone:  # the store failed: its error is the answer
                        break
            await run_in_threadpool(pipe.feed, b"".join(chunks))
            await run_in_threadpool(pipe.feed, None)
        except BaseException as exc:
            pipe.stop(_BodyCut(repr(exc)))
            with contextlib.suppress(BaseException):
                await writer
            raise
        try:
            await writer
        except StoreRejected as exc:  # the key passed storable_key, but this store still refused it
            raise invalid(f"The object store refused the artifact: {exc}") from exc
        record["stored"] = True
        record["size"] = size
    record["sha256"] = digest.hexdigest()
    await run_in_threadpool(_index, ctx, record)
    return {}


def _index(ctx: Context, record: dict[str, Any]) -> None:
    try:
        ctx.writer.emit(ArtifactEvent(**record))
    except MlflowError:
        if record["stored"]:  # the claim check was never recorded: take the bytes back out of sight
            ctx.store().delete(record["path"])
        raise


# -- mlflow-artifacts multipart upload --
def _upload_key(directory: Any, p: dict[str, Any]) -> str:
    """MLflow's layout: the URL names the directory, the body's ``path`` the client's local file."""
    name = posixpath.basename(str(v.required(p, "path")).replace("\\", "/"))
    return storable_key(safe_path(posixpath.join(safe_path(directory, allow_empty=True), name)))


def create_upload(ctx: Context, request: Request, p: dict[str, Any]) -> dict[str, Any]:
    key = _upload_key(request.path_params.get("path"), p)
    num_parts = v.bounded_int(p, "num_parts", 0, MAX_PARTS, default=0)
    upload_id = ctx.store().create_upload(key)
    prefix = request.url.path.split("/mpu/create/", 1)[0]
    part_url = f"{request.url.scheme}://{request.url.netloc}{prefix}/mpu/part/{urllib.parse.quote(key)}"
    credentials = []
    for n in range(1, num_parts + 1):
        query = urllib.parse.urlencode({"upload_id": upload_id, "part_number": n})
        credentials.append({"url": f"{part_url}?{query}", "part_number": n, "headers": {}})
    return {"upload_id": upload_id, "credentials": credentials}


async def upload_part(ctx: Context, request: Request, p: dict[str, Any]) -> Response:
    key = storable_key(safe_path(request.path_params.get("path")))
    query = dict(request.query_params)
    upload_id = str(v.required(query, "upload_id"))
    part_number = v.bounded_int(query, "part_number", 1, MAX_PARTS)
    part_max = ctx.artifact_part_max_bytes
    too_big = invalid(f"A multipart upload part may hold at most {part_max} bytes")
    if int(request.headers.get("content-length") or 0) > part_max:
        raise too_big
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > part_max:
            raise too_big
    with _upload_errors():
        etag = await run_in_threadpool(ctx.store().put_part, key, upload_id, part_number, bytes(data))
    return Response(b"{}", media_type="application/json", headers={"ETag": f'"{etag}"'})


def complete_upload(ctx: Context, p: dict[str, Any], path: str) -> dict[str, Any]:
    key = _upload_key(path, p)
    upload_id = str(v.required(p, "upload_id"))
    parts = []
    for part in v.array_field(p, "parts"):
        etag = part.get("etag") if isinstance(part, dict) else None
        if not isinstance(etag, str) or not etag:
            raise invalid(f"Invalid value {part!r} in parameter 'parts': expected part_number and etag.")
        parts.append((v.bounded_int(part, "part_number", 1, MAX_PARTS), etag))
    with _upload_errors():
        ctx.store().complete_upload(key, upload_id, parts)
    # No whole-object digest: the store assembled the parts, and reading it back would cost a full pass.
    record = {"path": key, "op": "PUT", "content": None, "stored": True, "size": ctx.store().size(key) or 0,
              "sha256": "", "time": now_ms()}  # fmt: skip
    _index(ctx, record)
    return {}


def abort_upload(ctx: Context, p: dict[str, Any], path: str) -> dict[str, Any]:
    key = _upload_key(path, p)
    ctx.store().abort_upload(key, str(v.required(p, "upload_id")))
    return {}


def download(ctx: Context, request: Request, p: dict[str, Any]) -> Response:
    key = safe_path(request.path_params.get("path"))
    ctx.wait("artifacts", [key])  # by hand: the key is the normalized path
    return send_file(ctx, key)


def delete(ctx: Context, request: Request, p: dict[str, Any]) -> dict[str, Any]:
    key = safe_path(request.path_params.get("path"))
    for path, _ in ctx.reader.artifact_files(key):
        ctx.writer.emit(ArtifactEvent(path=path, op="DELETE", size=0, sha256="", time=now_ms()))
    return {}


def list_artifacts(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    prefix = safe_path(p.get("path"), allow_empty=True)
    files = children(ctx.reader.artifact_files(prefix), prefix)
    return {"files": files} if files else {}


# -- run-relative (tracking API and UI) --
def _run_root(ctx: Context, run_id: Any) -> tuple[str, str | None]:
    info = run_info(ctx, str(v.required({"run_id": run_id}, "run_id")))
    uri = str(info["artifact_uri"])
    return uri, proxied_root(uri)


def list_run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    rel = safe_path(p.get("path"), allow_empty=True)
    uri, root = _run_root(ctx, p.get("run_id") or p.get("run_uuid"))
    out: dict[str, Any] = {"root_uri": uri}
    if root is None:
        return out
    prefix = posixpath.join(root, rel) if rel else root
    files = children(ctx.reader.artifact_files(prefix), prefix)
    for f in files:
        f["path"] = posixpath.join(rel, f["path"]) if rel else f["path"]
    if files:
        out["files"] = files
    return out


def get_artifact(ctx: Context, p: dict[str, Any]) -> Response:
    rel = safe_path(v.required(p, "path"))
    uri, root = _run_root(ctx, p.get("run_id") or p.get("run_uuid"))
    if root is None:
        raise MlflowError(f"Artifacts of run root {uri} are not served by this gateway", "NOT_IMPLEMENTED")
    key = posixpath.join(root, rel) if root else rel
    ctx.wait("artifacts", [key])  # by hand: the key is computed from the run's root
    return send_file(ctx, key)


def logged_model_file(ctx: Context, p: dict[str, Any], model_id: str) -> Response:
    """A logged model's file, as the UI's model page previews it (``ajax-api`` only, as in the stock server)."""
    rel = safe_path(v.required(p, "artifact_file_path"))
    row = ctx.reader.logged_model_row(model_id)
    if row is None:
        raise not_found(f"Logged model with ID '{model_id}' not found.")
    root = proxied_root(row["artifact_uri"])
    if root is None:
        raise MlflowError(
            f"Artifacts of model root {row['artifact_uri']} are not served by this gateway", "NOT_IMPLEMENTED"
        )
    key = f"{root}/{rel}" if root else rel
    ctx.wait("artifacts", [key])
    return send_file(ctx, key)


def server_info(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    return {
        "store_type": "SqlStore",
        "workspaces_enabled": False,
        "trace_archival_enabled": False,
        "multipart_uploads_enabled": True,
        "multipart_downloads_enabled": False,
        "presigned_upload_run_id_supported": False,
        "presigned_upload_model_id_supported": False,
        "features_enabled": {"gateway": False},
    }


def _proxied(path: str, methods: tuple[str, ...], handler: Any, request: Any, **kw: Any) -> Endpoint:
    return Endpoint(path, methods, handler, request, prefixes=ARTIFACTS_API, **kw)


ALL_ARTIFACTS = Reads.all("artifacts")
# Route order matters: "/artifacts" before "/artifacts/{path:path}".
ENDPOINTS = [
    _proxied("/artifacts", ("GET",), list_artifacts, r.ArtifactPath, reads=ALL_ARTIFACTS, access=Access.artifact(READ)),
    _proxied("/artifacts/{path:path}", ("PUT",), upload, None, raw=True, blocking=False, access=Access.artifact(EDIT)),
    _proxied("/artifacts/{path:path}", ("GET",), download, None, raw=True, access=Access.artifact(READ)),
    _proxied(
        "/artifacts/{path:path}",
        ("DELETE",),
        delete,
        None,
        raw=True,
        reads=ALL_ARTIFACTS,
        access=Access.artifact(MANAGE),
    ),
    _proxied(
        "/mpu/create/{path:path}",
        ("POST",),
        create_upload,
        r.CreateMultipartUpload,
        raw=True,
        access=Access.artifact(EDIT),
    ),
    _proxied(
        "/mpu/part/{path:path}", ("PUT",), upload_part, None, raw=True, blocking=False, access=Access.artifact(EDIT)
    ),
    _proxied(
        "/mpu/complete/{path:path}", ("POST",), complete_upload, r.CompleteMultipartUpload, access=Access.artifact(EDIT)
    ),
    _proxied("/mpu/abort/{path:path}", ("POST",), abort_upload, r.AbortMultipartUpload, access=Access.artifact(EDIT)),
    Endpoint(
        "/artifacts/list", ("GET",), list_run, r.ListRunArtifacts, Reads.run() + ALL_ARTIFACTS, access=Access.run(READ)
    ),
    Endpoint(
        "/server-info",
        ("GET",),
        server_info,
        r.NoFields,
        prefixes=("/api/3.0/mlflow", "/ajax-api/3.0/mlflow"),
        access=Access.user,
    ),
    Endpoint(
        "/get-artifact",
        ("GET",),
        get_artifact,
        r.GetArtifact,
        Reads.run(),
        prefixes=("", API[1]),
        access=Access.run(READ),
    ),
    Endpoint(
        "/logged-models/{model_id}/artifacts/files",
        ("GET",),
        logged_model_file,
        r.GetLoggedModelFile,
        Reads.keyed("metadata", "model_id"),
        prefixes=(API[1],),
        access=Access.logged_model(READ),
    ),
]
