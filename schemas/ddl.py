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


# Tables a sink derives from another table's rows: what fills one from the rows its source already held
# when it was created (a store migrated before it existed). The sink writes the later rows.
# (ClickHouse 18.16: an alias may not shadow a source column, hence the repeated min(tuple), computed once.)
FILLS = {
    "metric_buckets": "INSERT INTO metric_buckets SELECT run_id, key, bitShiftRight(step, 6) AS bucket, "
    "tupleElement(min((step, timestamp, value, is_nan)), 1) AS first_step, "
    "tupleElement(min((step, timestamp, value, is_nan)), 2) AS first_timestamp, "
    "tupleElement(min((step, timestamp, value, is_nan)), 3) AS first_value, "
    "tupleElement(min((step, timestamp, value, is_nan)), 4) AS first_is_nan, "
    "count() AS points FROM metrics GROUP BY run_id, key, bucket",
}


def view_fills() -> list[tuple[str, str]]:
    """(target table, INSERT … SELECT) of every derived table (``FILLS``) and materialized view: what
    fills it from the rows its source already held when it was created (a view or a sink sees only
    later inserts)."""
    out: list[tuple[str, str]] = list(FILLS.items())
    for statement in statements():
        if m := _VIEW.fullmatch(statement):
            out.append((m.group(2), f"INSERT INTO {m.group(2)} {m.group(3)}"))
    return out
