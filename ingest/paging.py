"""Page tokens of the search and history endpoints: an offset into the ordered answer."""

from __future__ import annotations

import base64
import math
from typing import Any

import orjson

from ingest.errors import invalid


def page_token(offset: int) -> str:
    return base64.b64encode(orjson.dumps({"offset": offset})).decode()


def page_offset(token: Any) -> int:
    if not token:
        return 0
    try:
        offset = orjson.loads(base64.b64decode(str(token)))["offset"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except Exception:
        pass
    raise invalid("Invalid page token, could not base64-decode")


def history_token(timestamp: int, step: int, value: float, is_nan: int) -> str:
    """A get-history keyset token: the last point of the page (the next page starts strictly after it)."""
    return base64.b64encode(orjson.dumps({"after": [timestamp, step, value, is_nan]})).decode()


def history_position(token: Any) -> tuple[tuple[int, int, float, int] | None, int]:
    """(the point a keyset token names, 0) or (None, the offset of a token issued before keyset tokens)."""
    if not token:
        return None, 0
    try:
        decoded = orjson.loads(base64.b64decode(str(token)))
        after = decoded.get("after") if isinstance(decoded, dict) else None
        if after is not None:
            ts, step, value, nan = after
            if (
                type(ts) is int
                and type(step) is int
                and -(2**63) <= min(ts, step) <= max(ts, step) < 2**63
                and type(value) in (int, float)
                and math.isfinite(value)
                and nan in (0, 1)
            ):
                return (ts, step, float(value), int(nan)), 0
            raise ValueError(after)
    except Exception:
        raise invalid("Invalid page token, could not base64-decode") from None
    return None, page_offset(token)
