"""The Kafka broker frozen (SIGSTOP) for 20 s while four clients log through a gateway process, then
resumed: the broker-side picture of a network cut (connections stay open, nothing answers, requests
time out instead of being refused). The gateway acknowledges writes again within 10 s of the broker
answering, without a restart, and every acknowledged point is stored exactly once."""

from __future__ import annotations

import os
import signal
import time

from tests.conftest import SettingsFactory
from tests.faults.conftest import (
    REPO,
    GatewayProcessFactory,
    MetricLoad,
    WorkerFactory,
    assert_stored_once,
    create_runs,
    wait_applied,
)
from trackstream.runtime import build

CLIENTS = 4
POINTS = 100
FROZEN = 20.0  # longer than the producer's request (10 s) and delivery (15 s) timeouts
RECOVERY_BOUND = 10.0


def _broker_pid() -> int:
    services = os.environ.get("TRACKSTREAM_SERVICES_DIR") or str(REPO / ".services")
    with open(os.path.join(services, "kafka", "pid")) as f:
        return int(f.read().strip())


def test_broker_frozen_under_load_recovers_without_restart_and_loses_nothing(
    fault_settings: SettingsFactory, worker_factory: WorkerFactory, gateway_process_factory: GatewayProcessFactory
) -> None:
    settings = fault_settings()
    runtime = build(settings)
    pid = _broker_pid()
    try:
        worker_factory(settings, "metadata")
        metrics_worker = worker_factory(settings, "metrics")
        gateway = gateway_process_factory(settings)
        load = MetricLoad(gateway.url, create_runs(gateway.url, CLIENTS), points=POINTS).start()
        try:
            time.sleep(3)
            os.kill(pid, signal.SIGSTOP)
            frozen = time.monotonic()
            try:
                time.sleep(FROZEN)
            finally:
                os.kill(pid, signal.SIGCONT)
            resumed = time.monotonic()
            deadline = resumed + 60
            while time.monotonic() < deadline:
                if any(a.status == 200 and a.sent > resumed for a in list(load.answers)):
                    break
                time.sleep(0.1)
            time.sleep(3)
        finally:
            load.stop()
        figures = load.availability(start=frozen, since=resumed)
        print(f"\nbroker frozen: {figures.describe()}")
        assert figures.first_ack_after is not None, (
            f"no write acknowledged after the broker resumed:\n{gateway.output()}"
        )
        assert figures.first_ack_after <= RECOVERY_BOUND, gateway.output()

        wait_applied(runtime.events, runtime.group("metrics"), settings.topics.metrics, timeout=90)
        acked = assert_stored_once(settings, load)
        print(f"{acked} points acknowledged, each stored once")
        assert metrics_worker.process.poll() is None, metrics_worker.output()
        assert gateway.terminate(timeout=30) in (0, -signal.SIGTERM), gateway.output()
    finally:
        os.kill(pid, signal.SIGCONT)
        runtime.close()
