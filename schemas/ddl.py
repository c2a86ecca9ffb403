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


_VIEW = re.compile(r"CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO (\w+) AS\s+(SELECT .*)", re.S)


def view_fills() -> list[tuple[str, str]]:
    """(target table, INSERT … SELECT) of every materialized view: what fills a view's target from the
    rows its source already held when the target was created (a view sees only later inserts)."""
    out: list[tuple[str, str]] = []
    for statement in statements():
        if m := _VIEW.fullmatch(statement):
            out.append((m.group(2), f"INSERT INTO {m.group(2)} {m.group(3)}"))
    return out
