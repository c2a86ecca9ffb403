"""The tracing session against a stock ``mlflow server`` and the gateway: no differences."""

from __future__ import annotations

from tests.conftest import Gateway
from tests.differential.session import Step
from tests.differential.test_differential import differences
from tests.differential.trace_session import run_trace_session


def test_traces_same_as_stock_mlflow(stock_trace_record: list[Step], gateway: Gateway) -> None:
    ours = run_trace_session(gateway.url)
    diffs = differences(stock_trace_record, ours)
    assert not diffs, f"{len(diffs)} differing line(s) from mlflow server 3.17.2 (- stock, + gateway):\n" + "\n".join(
        diffs
    )
