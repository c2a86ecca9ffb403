"""The Kafka broker frozen (SIGSTOP) for 20 s while four clients log through a gateway process, then
resumed: the broker-side picture of a network cut (connections stay open, nothing answers, requests
time out instead of being refused). The gateway acknowledges writes again within 10 s of the broker
answering, without a restart, and every acknowledged point is stored exactly once."""

from __future__ import annotations

import os
import signal
import time

from tests.conftest import SettingsFactory
from tests.faults.conftest import REPO, GatewayProcessFactory, WorkerFactory
from tests.faults.scenario import LoadedGateway

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
    pid = _broker_pid()
    loaded = LoadedGateway(settings, worker_factory, gateway_process_factory)
    gateway, load = loaded.gateway, loaded.load
    try:
        try:
            os.kill(pid, signal.SIGSTOP)
            frozen = time.monotonic()
            try:
                time.sleep(FROZEN)
            finally:
                os.kill(pid, signal.SIGCONT)
            resumed = time.monotonic()
            loaded.wait_for_ack(after=resumed, by="sent")
        finally:
            load.stop()
        figures = load.availability(start=frozen, since=resumed)
        print(f"\nbroker frozen: {figures.describe()}")
        assert figures.first_ack_after is not None, (
            f"no write acknowledged after the broker resumed:\n{gateway.output()}"
        )
        assert figures.first_ack_after <= RECOVERY_BOUND, gateway.output()
        loaded.assert_nothing_lost()
        assert gateway.terminate(timeout=30) in (0, -signal.SIGTERM), gateway.output()
    finally:
        os.kill(pid, signal.SIGCONT)
        loaded.close()
