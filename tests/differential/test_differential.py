"""The same scripted client session against a stock ``mlflow server`` and the gateway: no differences."""

from __future__ import annotations

import difflib
import json
from typing import Any

from tests.conftest import Gateway
from tests.differential.session import Step, run_session


def _line(step: Step) -> str:
    return f"{step[0]}: {_dump(step[1])}"


def _dump(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 1500 else text[:1500] + "…"


def differences(stock: list[Step], ours: list[Step]) -> list[str]:
    """The steps that differ, as a unified diff of one ``label: result`` line per step ('-' stock, '+' gateway)."""
    diff = difflib.unified_diff(
        [_line(s) for s in stock], [_line(s) for s in ours], "stock", "gateway", n=0, lineterm=""
    )
    return [d for d in diff if d[:1] in "+-" and not d.startswith(("---", "+++"))]


def test_same_as_stock_mlflow(stock_record: list[Step], gateway: Gateway) -> None:
    ours = run_session(gateway.url)
    diffs = differences(stock_record, ours)
    assert not diffs, f"{len(diffs)} differing line(s) from mlflow server 3.17.2 (- stock, + gateway):\n" + "\n".join(
        diffs
    )
