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


def history_token(timestamp: int, step: int, value: float, is_nan: int, spans_checked: bool = False) -> str:
    """A get-history keyset token: the last point of the page (the next page starts strictly after it),
    and whether the run's metric was found to page through its spans (``HistoryPage.spans_checked``)."""
    token: dict[str, Any] = {"after": [timestamp, step, value, is_nan]}
    if spans_checked:
        token["spans"] = 1
    return base64.b64encode(orjson.dumps(token)).decode()


def history_position(token: Any) -> tuple[tuple[int, int, float, int] | None, int, bool]:
    """(the point a keyset token names, 0, whether its spans were checked) or (None, the offset of a token
    issued before keyset tokens, False)."""
    if not token:
        return None, 0, False
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
                return (ts, step, float(value), int(nan)), 0, decoded.get("spans") == 1
            raise ValueError(after)
    except Exception:
        raise invalid("Invalid page token, could not base64-decode") from None
    return None, page_offset(token), False
