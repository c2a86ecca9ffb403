"""Page tokens of the search and history endpoints: an offset into the ordered answer."""

from __future__ import annotations

import base64
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
