"""Artifact keys: MLflow's path checks, the limits every object store takes, listing a directory."""

from __future__ import annotations

import mimetypes
import posixpath
import unicodedata
import urllib.parse
from typing import Any

from starlette.concurrency import iterate_in_threadpool
from starlette.responses import StreamingResponse

from ingest.errors import invalid, not_found
from ingest.handlers.context import Context
from trackstream.objects import ObjectNotFound

PROXY_SCHEME = "mlflow-artifacts"
# What every object store takes: S3 limits a key to 1024 bytes of UTF-8, and a client downloading
# artifacts into a directory (and `mlflow server` with a local artifact root) needs every path
# component to fit a file name (255 bytes on common filesystems). Checked before anything is stored,
# so a key no store can hold is a 400 here rather than a dead letter after the 200.
MAX_KEY_BYTES = 1024
MAX_COMPONENT_BYTES = 255
_CHUNK = 1 << 20


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
    if any(unicodedata.category(c) == "Cc" for c in path) or not path.strip():
        raise invalid("Invalid path")  # the S3 client also refuses a name that is only (Unicode) white space
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


def send_file(ctx: Context, key: str) -> StreamingResponse:
    """The object at ``key`` as a download (404 when it does not exist)."""
    try:
        chunks = ctx.store().get(key, _CHUNK)
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
