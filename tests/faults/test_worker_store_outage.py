"""A store outage longer than the worker's max.poll.interval, under HTTP load: the worker pauses its
partitions and keeps polling, so it stays in its group (same member, no rebalance) and then writes
everything acknowledged meanwhile, once."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.conftest import Gateway, SettingsFactory
from tests.faults.conftest import (
    Load,
    MetricWrites,
    WorkerFactory,
    group_members,
    local_service,
    wait_applied,
)
from trackstream.settings import Settings

MAX_POLL_INTERVAL_MS = 8_000
OUTAGE_SECONDS = 2 * MAX_POLL_INTERVAL_MS / 1000


def test_store_outage_longer_than_max_poll_interval_keeps_the_worker_in_its_group(
    fault_settings: SettingsFactory,
    worker_factory: WorkerFactory,
    gateway_factory: Callable[..., Gateway],
) -> None:
    settings: Settings = fault_settings(
        consumer_session_timeout_ms=6_000,
        consumer_max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
    )
    gw = gateway_factory(settings, consumers=False)
    events, topic, group = gw.runtime.events, settings.topics.metrics, gw.runtime.group("metrics")
    assert settings.kafka_bootstrap is not None
    worker_factory(settings, "metadata")
    worker = worker_factory(settings, "metrics")
    writes = MetricWrites(gw.url, spread=(events, topic))
    try:
        with Load(writes, pause=0.02) as load:
            deadline = time.monotonic() + 60
            while not writes.acked or not events.committed(group, topic):
                assert time.monotonic() < deadline, worker.output()
                time.sleep(0.2)
            members_before = group_members(settings.kafka_bootstrap, group)
            assert len(members_before) == 1

            local_service("stop", "clickhouse")
            down = time.monotonic()
            committed_at_stop = events.committed(group, topic)
            time.sleep(OUTAGE_SECONDS)
            assert events.committed(group, topic) == committed_at_stop, "committed while the store was down"
            members_during = group_members(settings.kafka_bootstrap, group)
            local_service("start", "clickhouse")
            up = time.monotonic()
            time.sleep(2)
        wait_applied(events, group, topic, timeout=60)
        recovered = time.monotonic() - up

        assert members_during == members_before, "the paused worker lost its group membership"
        assert group_members(settings.kafka_bootstrap, group) == members_before, "the worker was rebalanced"
        assert worker.process.poll() is None, worker.output()
        stored = writes.assert_stored_exactly_once(gw.runtime.tables)
        during = load.between(down, up)
        print(
            f"\nstore outage {up - down:.1f}s (max.poll.interval {MAX_POLL_INTERVAL_MS / 1000:.0f}s): "
            f"{sum(a.status == 200 for a in during)}/{len(during)} log-batch requests acked during it "
            f"(availability {Load.availability(during):.1%}); caught up {recovered:.1f}s after the store returned; "
            f"acked points {len(writes.acked)}, stored {stored}, lost {len(writes.acked) - stored}"
        )
        assert Load.availability(during) == 1.0
    finally:
        writes.close()
