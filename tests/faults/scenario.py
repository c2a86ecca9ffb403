"""The scenario the broker fault tests share: a gateway process with its metadata and metrics workers,
four clients logging metric batches through it over HTTP, a fault in the middle, and afterwards every
acknowledged point stored exactly once with the metrics worker still running."""

from __future__ import annotations

import time
from typing import Literal

from tests.faults.conftest import (
    GatewayProcess,
    GatewayProcessFactory,
    MetricLoad,
    Worker,
    WorkerFactory,
    assert_stored_once,
    create_runs,
    wait_applied,
)
from trackstream.runtime import Runtime, build
from trackstream.settings import Settings

CLIENTS = 4
POINTS = 100


class LoadedGateway:
    """Started by the constructor; :meth:`close` (in the test's ``finally``) stops the load and the
    test's own runtime."""

    def __init__(
        self, settings: Settings, worker_factory: WorkerFactory, gateway_process_factory: GatewayProcessFactory
    ) -> None:
        self.settings = settings
        self.runtime: Runtime = build(settings)  # creates the topics; the test's own view of log and tables
        try:
            worker_factory(settings, "metadata")
            self.metrics_worker: Worker = worker_factory(settings, "metrics")
            self.gateway: GatewayProcess = gateway_process_factory(settings)
            self.load = MetricLoad(self.gateway.url, create_runs(self.gateway.url, CLIENTS), points=POINTS).start()
        except BaseException:
            self.runtime.close()
            raise
        time.sleep(3)  # steady state: writes acknowledged

    def wait_for_ack(self, after: float, by: Literal["sent", "answered"], within: float = 60.0) -> None:
        """Until a write sent (or answered) after ``after`` is acknowledged, for ``within`` seconds at
        most, then 3 s more of steady writes."""
        deadline = after + within
        while time.monotonic() < deadline:
            if any(a.status == 200 and getattr(a, by) > after for a in list(self.load.answers)):
                break
            time.sleep(0.1)
        time.sleep(3)

    def assert_nothing_lost(self) -> None:
        """Once the metrics worker caught up: every acknowledged point stored exactly once, and the
        worker still running."""
        wait_applied(self.runtime.events, self.runtime.group("metrics"), self.settings.topics.metrics, timeout=90)
        acked = assert_stored_once(self.settings, self.load)
        print(f"{acked} points acknowledged, each stored once")
        assert self.metrics_worker.process.poll() is None, self.metrics_worker.output()

    def close(self) -> None:
        self.load.stop()
        self.runtime.close()
