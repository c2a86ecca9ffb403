"""The model-registry session against a stock ``mlflow server`` and the gateway: no differences."""

from __future__ import annotations

from tests.conftest import Gateway
from tests.differential.registry_session import run_registry_session
from tests.differential.session import Step
from tests.differential.test_differential import differences


def test_registry_same_as_stock_mlflow(stock_registry_record: list[Step], gateway: Gateway) -> None:
    ours = run_registry_session(gateway.url)
    diffs = differences(stock_registry_record, ours)
    assert not diffs, f"{len(diffs)} differing line(s) from mlflow server 3.17.2 (- stock, + gateway):\n" + "\n".join(
        diffs
    )
