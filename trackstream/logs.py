"""Logging: level and format (plain or JSON lines) from the settings, the request id on every line
logged while a request is answered, and secrets masked in every line.

The request id lives in a context variable the gateway's middleware (``ingest.observability``) sets
per request; log calls made in the thread pool for that request see it too (Starlette copies the
context into the thread).
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("trackstream_request_id", default=None)
MASK = "***"

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "request_id"}


class _RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class _Masking:
    """Replace every secret in the formatted line (message, arguments and traceback alike)."""

    secrets: tuple[str, ...] = ()

    def mask(self, line: str) -> str:
        for secret in self.secrets:
            line = line.replace(secret, MASK)
        return line


class PlainFormatter(_Masking, logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(rid)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        record.rid = f" [{rid}]" if rid else ""
        return self.mask(super().format(record))


class JsonFormatter(_Masking, logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, exception, and any ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if rid := getattr(record, "request_id", None):
            out["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in ("rid", "color_message") and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return self.mask(orjson.dumps(out, default=str).decode())


def configure(level: str = "INFO", fmt: str = "plain", secrets: Iterable[str | None] = ()) -> None:
    """Set up the root logger for this process (each uvicorn worker calls it: spawned processes do not
    inherit the parent's handlers). ``secrets``: values never to appear in a line (empty ones ignored)."""
    formatter: _Masking = JsonFormatter() if fmt == "json" else PlainFormatter()
    # longest first, so a secret containing another is masked whole
    formatter.secrets = tuple(sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True))
    handler = logging.StreamHandler(sys.stderr)
    assert isinstance(formatter, logging.Formatter)
    handler.setFormatter(formatter)
    handler.addFilter(_RequestId())
    handler._trackstream = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_trackstream", False) or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # uvicorn's own access log would repeat ours without the request id
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
