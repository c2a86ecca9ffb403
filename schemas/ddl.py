"""The ClickHouse DDL under ``clickhouse/``, split into statements."""

from __future__ import annotations

import re
from pathlib import Path

SQL_DIR = Path(__file__).parent / "clickhouse"


def statements() -> list[str]:
    out: list[str] = []
    for path in sorted(SQL_DIR.glob("*.sql")):
        text = re.sub(r"--[^\n]*", "", path.read_text())
        out.extend(s.strip() for s in text.split(";") if s.strip())
    return out
