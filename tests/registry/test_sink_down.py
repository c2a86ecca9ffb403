"""Failure state 58: the registry sink is not running. Registry writes answer 503 after the barrier
timeout and are decided later, in log order; the tracking API is not held up."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from ingest.errors import MlflowError
from ingest.handlers import ensure_default_experiment
from ingest.handlers.experiments import create_experiment
from ingest.handlers.registry import create_model_version, create_registered_model
from tests.conftest import SettingsFactory, retried
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
        # decided by the metadata sink, which runs: answered (retried while its consumer settles in its group)
        assert retried(lambda: create_experiment(ctx, {"name": "tracking goes on"})) == ""
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
        registry.ready.wait(60)
        # the client's retry, as after a lost response (retried while the new consumer settles in its group)
        code = retried(lambda: create_registered_model(ctx, {"name": "late"}))
        assert code == "RESOURCE_ALREADY_EXISTS"
        answers: list[Any] = []
        assert retried(lambda: answers.append(create_model_version(ctx, {"name": "late", "source": "s3://b/m"}))) == ""
        # numbered in log order: 1, unless an attempt timed out after its event was accepted (then the next)
        number = int(answers[-1]["model_version"]["version"])
        assert runtime.tables.query("SELECT max(version), count() FROM model_versions FINAL") == [(number, number)]
    finally:
        runtime.close()
