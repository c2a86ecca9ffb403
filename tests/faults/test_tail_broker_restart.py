"""The Kafka broker restarts under a gateway's run-state view: its tail reconnects by itself, resumes at
its position and the view stays healthy, so a delete written after the restart is still refused."""

from __future__ import annotations

import time

from ingest.runstates import ACTIVE, DELETED, RunStates
from ingest.writer import EventWriter
from tests.conftest import SettingsFactory
from tests.faults.conftest import local_service
from tests.runview.test_runstates import run_state
from trackstream.runtime import build


def test_the_tail_survives_a_broker_restart(kafka_settings: SettingsFactory) -> None:
    settings = kafka_settings()
    runtime = build(settings)
    view = RunStates(runtime.events.tail(settings.topics.metadata))
    view.start()
    other_gateway = EventWriter(runtime.events, settings.topics)  # no observer: only the tail tells the view
    try:
        other_gateway.metadata("r1", "RunState", run_state("r1", ACTIVE))
        deadline = time.monotonic() + 10
        while not view.is_active("r1"):
            assert time.monotonic() < deadline, "the tail did not apply the create"
            time.sleep(0.05)

        local_service("stop", "kafka")
        try:
            time.sleep(3)
            assert view.healthy(), view.error
        finally:
            local_service("start", "kafka")
        restarted = time.monotonic()

        deadline = restarted + 60
        while True:  # the client retries until the broker takes writes again
            try:
                other_gateway.metadata("r1", "RunState", run_state("r1", DELETED))
                break
            except Exception as exc:  # 503 while the broker loads
                assert time.monotonic() < deadline, f"the broker did not take writes again: {exc!r}"
                time.sleep(0.5)
        while view.stage("r1") != DELETED:
            assert time.monotonic() < deadline, "the tail did not resume after the restart"
            time.sleep(0.05)
        assert view.healthy(), view.error
        print(f"delete applied by the tail {time.monotonic() - restarted:.1f}s after the broker restart")
    finally:
        view.close()
        runtime.close()
