"""Failure state 38: the decision of a write does not come in time (no metadata consumer)."""

from __future__ import annotations

import time

import pytest

from ingest.errors import MlflowError
from ingest.handlers import ensure_default_experiment
from ingest.handlers.experiments import create_experiment
from tests.conftest import SettingsFactory, retried
from trackstream.runtime import build


def test_an_unknown_outcome_answers_503_and_the_write_is_decided_later(kafka_settings: SettingsFactory) -> None:
    runtime = build(kafka_settings(read_barrier_timeout=1.0))
    try:
        ctx = runtime.tracking()
        ensure_default_experiment(ctx)  # a gateway starts before its consumers: no wait, no error
        with pytest.raises(MlflowError) as lost:
            create_experiment(ctx, {"name": "late"})
        assert lost.value.error_code == "TEMPORARILY_UNAVAILABLE"
        assert "may still be applied" in lost.value.message
        runtime.start_consumers()  # the sink catches up and decides the event still in the log
        runtime.wait_consumers_ready(timeout=60)
        deadline = time.monotonic() + 30
        while runtime.tables.query("SELECT count() FROM decisions") != [(2,)] and time.monotonic() < deadline:
            time.sleep(0.05)
        # the client's retry, as after a lost response
        assert retried(lambda: create_experiment(ctx, {"name": "late"})) == "RESOURCE_ALREADY_EXISTS"
        assert runtime.tables.query("SELECT name FROM experiments FINAL ORDER BY name") == [("Default",), ("late",)]
    finally:
        runtime.close()
