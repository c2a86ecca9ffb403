"""Failure state 58: the registry sink is not running. Registry writes answer 503 after the barrier
timeout and are decided later, in log order; the tracking API is not held up."""

from __future__ import annotations

import threading
import time

import pytest

from ingest.errors import MlflowError
from ingest.handlers import ensure_default_experiment
from ingest.handlers.experiments import create_experiment
from ingest.handlers.registry import create_model_version, create_registered_model
from tests.conftest import SettingsFactory
from trackstream.runtime import build


def test_registry_writes_wait_for_their_sink_and_are_decided_later(kafka_settings: SettingsFactory) -> None:
    runtime = build(kafka_settings(read_barrier_timeout=1.0))
    try:
        ctx = runtime.tracking()
        ensure_default_experiment(ctx)
        for name in ("metadata", "metrics", "artifacts"):  # every sink but the registry's
            runtime.pipelines.append(pipe := runtime.pipeline(name))
            thread = threading.Thread(target=pipe.run, daemon=True)
            thread.start()
            runtime.threads.append(thread)
        runtime.wait_consumers_ready(timeout=60)
        create_experiment(ctx, {"name": "tracking goes on"})  # decided by the metadata sink: answered
        with pytest.raises(MlflowError) as lost:
            create_registered_model(ctx, {"name": "late"})
        assert lost.value.error_code == "TEMPORARILY_UNAVAILABLE"
        assert "may still be applied" in lost.value.message

        registry = runtime.pipeline("registry")
        thread = threading.Thread(target=registry.run, daemon=True)
        thread.start()
        runtime.pipelines.append(registry)
        runtime.threads.append(thread)
        deadline = time.monotonic() + 30
        while runtime.tables.query("SELECT name FROM registered_models FINAL") != [("late",)]:
            assert time.monotonic() < deadline, "the registry sink did not decide the event left in the log"
            time.sleep(0.05)
        with pytest.raises(MlflowError) as retried:  # the client's retry, as after a lost response
            create_registered_model(ctx, {"name": "late"})
        assert retried.value.error_code == "RESOURCE_ALREADY_EXISTS"
        answer = create_model_version(ctx, {"name": "late", "source": "s3://bucket/m"})
        assert answer["model_version"]["version"] == "1"
    finally:
        runtime.close()
