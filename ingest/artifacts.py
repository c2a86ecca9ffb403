"""Proxied artifacts (``/api/2.0/mlflow-artifacts/…``) and the run-relative artifact reads.

Uploads up to ``inline_max_bytes`` travel inside the artifact event (the consumer stores them);
larger ones are streamed to object storage first and the event only indexes them (claim check).
Multipart uploads (``mpu/*``) hand the client part URLs on this gateway, so parts flow through it into
the object store's own multipart upload; completion assembles the object there and indexes it the same
way. Listing reads the ``artifacts`` index table; downloads stream from object storage.
"""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import posixpath
import tempfile
import unicodedata
import urllib.parse
from collections.abc import Iterator
from typing import Any

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ingest import validation as v
from ingest.errors import MlflowError, invalid, not_found
from ingest.tracking import Tracking, now_ms
from trackstream.errors import StoreRejected
from trackstream.objects import MAX_PARTS, InvalidParts, ObjectNotFound, ObjectStore, UploadNotFound

PROXY_SCHEME = "mlflow-artifacts"
_CHUNK = 1 << 20
# What every object store takes: S3 limits a key to 1024 bytes of UTF-8, and a client downloading
# artifacts into a directory (and `mlflow server` with a local artifact root) needs every path
# component to fit a file name (255 bytes on common filesystems). Checked before anything is stored,
# so a key no store can hold is a 400 here rather than a dead letter after the 200.
MAX_KEY_BYTES = 1024
MAX_COMPONENT_BYTES = 255


def safe_path(path: Any, allow_empty: bool = False) -> str:
    """MLflow's ``validate_path_is_safe``, then normalized to the key form ('a/./b' → 'a/b')."""
    path = "" if path is None else urllib.parse.unquote(str(path))
    if not path:
        if allow_empty:
            return ""
        raise invalid("Invalid path")
    if "#" in path or "\\" in path or ".." in path.split("/") or path.startswith("/") or "\x00" in path:
        raise invalid("Invalid path")
    # Control characters (C0, C1 such as NEL): the S3 client strips some of them, so "x\x85" would be
    # stored as "x"; no store keeps them faithfully, so they are refused before anything is stored.
    if any(unicodedata.category(c) == "Cc" for c in path):
        raise invalid("Invalid path")
    if len(path) >= 2 and path[1] == ":":
        raise invalid("Invalid path")
    norm = posixpath.normpath(path)
    if norm == "." and not allow_empty:
        raise invalid("Invalid path")
    return "" if norm == "." else norm


def storable_key(key: str) -> str:
    """``key`` if every object store can hold it; else 400 INVALID_PARAMETER_VALUE naming the limit."""
    size = len(key.encode())
    if size > MAX_KEY_BYTES:
        raise invalid(f"Invalid path: the artifact key is {size} bytes long; at most {MAX_KEY_BYTES} are allowed")
    for part in key.split("/"):
        if len(part.encode()) > MAX_COMPONENT_BYTES:
            raise invalid(
                f"Invalid path: the path component {part[:40]!r}... is {len(part.encode())} bytes long; "
                f"at most {MAX_COMPONENT_BYTES} are allowed"
            )
    return key


def proxied_root(artifact_uri: str) -> str | None:
    """Key under the artifact root for a ``mlflow-artifacts:`` URI; None for any other scheme."""
    parsed = urllib.parse.urlparse(artifact_uri)
    if parsed.scheme != PROXY_SCHEME:
        return None
    return parsed.path.strip("/")


def children(files: list[tuple[str, int]], prefix: str) -> list[dict[str, Any]]:
    """Immediate children of directory ``prefix`` (names relative to it); [] if ``prefix`` is a file."""
    if prefix and any(p == prefix for p, _ in files):
        return []
    start = len(prefix) + 1 if prefix else 0
    out: dict[str, dict[str, Any]] = {}
    for path, size in files:
        name, sep, _ = path[start:].partition("/")
        if sep:
            out.setdefault(name, {"path": name, "is_dir": True})
        else:
            out[name] = {"path": name, "is_dir": False, "file_size": size}
    return [out[k] for k in sorted(out)]


@contextlib.contextmanager
def _upload_errors() -> Iterator[None]:
    try:
        yield
    except UploadNotFound as exc:
        raise not_found(f"Multipart upload not found: {exc}") from None
    except InvalidParts as exc:
        raise invalid(f"Invalid multipart upload: {exc}") from None


class Artifacts:
    def __init__(self, tracking: Tracking, objects: ObjectStore, inline_max_bytes: int, part_max_bytes: int) -> None:
        self.tracking = tracking
        self.objects = objects
        self.inline_max = inline_max_bytes
        self.part_max = part_max_bytes

    def _sync(self, key: str | None = None) -> None:
        self.tracking.barrier.wait(self.tracking.topics.artifacts, [key] if key else None)

    # -- mlflow-artifacts --
    async def upload(self, request: Request) -> dict[str, Any]:
        key = storable_key(safe_path(request.path_params.get("path")))
        digest = hashlib.sha256()
        size = 0
        with tempfile.SpooledTemporaryFile(max_size=max(self.inline_max, 1)) as spool:
            async for chunk in request.stream():
                digest.update(chunk)
                size += len(chunk)
                spool.write(chunk)
            spool.seek(0)
            record: dict[str, Any] = {"path": key, "op": "PUT", "content": None, "stored": False, "size": size,
                      "sha256": digest.hexdigest(), "time": now_ms()}  # fmt: skip
            if size <= self.inline_max:
                record["content"] = spool.read()
            else:
                try:
                    await run_in_threadpool(self.objects.put_stream, key, spool, size)  # type: ignore[arg-type]
                except StoreRejected as exc:  # the key passed storable_key, but this store still refused it
                    raise invalid(f"The object store refused the artifact: {exc}") from exc
                record["stored"] = True
        await run_in_threadpool(self._index, record)
        return {}

    def _index(self, record: dict[str, Any]) -> None:
        try:
            self.tracking.writer.artifact(record)
        except MlflowError:
            if record["stored"]:  # the claim check was never recorded: take the bytes back out of sight
                self.objects.delete(record["path"])
            raise

    # -- mlflow-artifacts multipart upload --
    @staticmethod
    def _upload_key(directory: Any, p: dict[str, Any]) -> str:
        """MLflow's layout: the URL names the directory, the body's ``path`` the client's local file."""
        name = posixpath.basename(str(v.required(p, "path")).replace("\\", "/"))
        return storable_key(safe_path(posixpath.join(safe_path(directory, allow_empty=True), name)))

    def create_upload(self, request: Request, p: dict[str, Any]) -> dict[str, Any]:
        key = self._upload_key(request.path_params.get("path"), p)
        num_parts = v.bounded_int(p, "num_parts", 0, MAX_PARTS, default=0)
        upload_id = self.objects.create_upload(key)
        prefix = request.url.path.split("/mpu/create/", 1)[0]
        part_url = f"{request.url.scheme}://{request.url.netloc}{prefix}/mpu/part/{urllib.parse.quote(key)}"
        credentials = []
        for n in range(1, num_parts + 1):
            query = urllib.parse.urlencode({"upload_id": upload_id, "part_number": n})
            credentials.append({"url": f"{part_url}?{query}", "part_number": n, "headers": {}})
        return {"upload_id": upload_id, "credentials": credentials}

    async def upload_part(self, request: Request) -> Response:
        key = storable_key(safe_path(request.path_params.get("path")))
        query = dict(request.query_params)
        upload_id = str(v.required(query, "upload_id"))
        part_number = v.bounded_int(query, "part_number", 1, MAX_PARTS)
        too_big = invalid(f"A multipart upload part may hold at most {self.part_max} bytes")
        if int(request.headers.get("content-length") or 0) > self.part_max:
            raise too_big
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > self.part_max:
                raise too_big
        with _upload_errors():
            etag = await run_in_threadpool(self.objects.put_part, key, upload_id, part_number, bytes(data))
        return Response(b"{}", media_type="application/json", headers={"ETag": f'"{etag}"'})

    def complete_upload(self, directory: str, p: dict[str, Any]) -> dict[str, Any]:
        key = self._upload_key(directory, p)
        upload_id = str(v.required(p, "upload_id"))
        parts = []
        for part in v.array_field(p, "parts"):
            etag = part.get("etag") if isinstance(part, dict) else None
            if not isinstance(etag, str) or not etag:
                raise invalid(f"Invalid value {part!r} in parameter 'parts': expected part_number and etag.")
            parts.append((v.bounded_int(part, "part_number", 1, MAX_PARTS), etag))
        with _upload_errors():
            self.objects.complete_upload(key, upload_id, parts)
        # No whole-object digest: the store assembled the parts, and reading it back would cost a full pass.
        record = {"path": key, "op": "PUT", "content": None, "stored": True, "size": self.objects.size(key) or 0,
                  "sha256": "", "time": now_ms()}  # fmt: skip
        self._index(record)
        return {}

    def abort_upload(self, directory: str, p: dict[str, Any]) -> dict[str, Any]:
        key = self._upload_key(directory, p)
        self.objects.abort_upload(key, str(v.required(p, "upload_id")))
        return {}

    def download(self, request: Request) -> Response:
        key = safe_path(request.path_params.get("path"))
        self._sync(key)
        return self._send(key)

    def _send(self, key: str) -> Response:
        try:
            chunks = self.objects.get(key, _CHUNK)
        except (ObjectNotFound, ValueError):
            raise not_found(f"Artifact '{key}' does not exist") from None
        name = posixpath.basename(key)
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        quoted = urllib.parse.quote(name)
        headers = {
            "Content-Disposition": f"attachment; filename=\"{name}\"; filename*=UTF-8''{quoted}"
            if name.isascii() and '"' not in name
            else f"attachment; filename*=UTF-8''{quoted}",
            "X-Content-Type-Options": "nosniff",
        }
        return StreamingResponse(iterate_in_threadpool(chunks), media_type=mime, headers=headers)

    def delete(self, request: Request) -> dict[str, Any]:
        key = safe_path(request.path_params.get("path"))
        self._sync()
        for path, _ in self.tracking.reader.artifact_files(key):
            record = {"path": path, "op": "DELETE", "content": None, "stored": False, "size": 0, "sha256": ""}
            self.tracking.writer.artifact({**record, "time": now_ms()})
        return {}

    def list(self, p: dict[str, Any]) -> dict[str, Any]:
        prefix = safe_path(p.get("path"), allow_empty=True)
        self._sync()
        files = children(self.tracking.reader.artifact_files(prefix), prefix)
        return {"files": files} if files else {}

    # -- run-relative (tracking API and UI) --
    def _run_root(self, run_id: Any) -> tuple[str, str | None]:
        info = self.tracking._run_info(str(v.required({"run_id": run_id}, "run_id")))
        uri = str(info["artifact_uri"])
        return uri, proxied_root(uri)

    def list_run(self, p: dict[str, Any]) -> dict[str, Any]:
        rel = safe_path(p.get("path"), allow_empty=True)
        uri, root = self._run_root(p.get("run_id") or p.get("run_uuid"))
        out: dict[str, Any] = {"root_uri": uri}
        if root is None:
            return out
        prefix = posixpath.join(root, rel) if rel else root
        self._sync()
        files = children(self.tracking.reader.artifact_files(prefix), prefix)
        for f in files:
            f["path"] = posixpath.join(rel, f["path"]) if rel else f["path"]
        if files:
            out["files"] = files
        return out

    def get_artifact(self, p: dict[str, Any]) -> Response:
        rel = safe_path(v.required(p, "path"))
        uri, root = self._run_root(p.get("run_id") or p.get("run_uuid"))
        if root is None:
            raise MlflowError(f"Artifacts of run root {uri} are not served by this gateway", "NOT_IMPLEMENTED")
        key = posixpath.join(root, rel) if root else rel
        self._sync(key)
        return self._send(key)


def server_info() -> dict[str, Any]:
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
