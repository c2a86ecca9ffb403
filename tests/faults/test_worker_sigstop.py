"""A sink worker frozen (SIGSTOP) past its session timeout under HTTP load, then resumed (SIGCONT): the
group hands its partitions to the other worker meanwhile, the frozen one rejoins, and every
acknowledged point is stored exactly once."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.conftest import Gateway, SettingsFactory
from tests.faults.conftest import Load, MetricWrites, WorkerFactory, group_members, wait_applied
from trackstream.settings import Settings

SESSION_TIMEOUT_MS = 6_000
FROZEN_SECONDS = SESSION_TIMEOUT_MS / 1000 + 6


def _wait_members(bootstrap: str, group: str, count: int, timeout: float) -> float:
    """Seconds until ``group`` has ``count`` members."""
    started = time.monotonic()
    while len(group_members(bootstrap, group)) != count:
        assert time.monotonic() - started < timeout, f"{group} did not reach {count} members in {timeout}s"
        time.sleep(0.25)
    return time.monotonic() - started


def test_worker_frozen_past_its_session_timeout_rejoins_and_catches_up(
    fault_settings: SettingsFactory,
    worker_factory: WorkerFactory,
    gateway_factory: Callable[..., Gateway],
) -> None:
    settings: Settings = fault_settings(consumer_session_timeout_ms=SESSION_TIMEOUT_MS)
    assert settings.kafka_bootstrap is not None
    bootstrap = settings.kafka_bootstrap
    gw = gateway_factory(settings, consumers=False)
    events, topic, group = gw.runtime.events, settings.topics.metrics, gw.runtime.group("metrics")
    worker_factory(settings, "metadata")
    frozen = worker_factory(settings, "metrics")
    other = worker_factory(settings, "metrics")
    writes = MetricWrites(gw.url, spread=(events, topic))
    try:
        with Load(writes, pause=0.02) as load:
            _wait_members(bootstrap, group, 2, timeout=60)
            deadline = time.monotonic() + 60
            while len(events.committed(group, topic)) < settings.topics.partitions:  # both workers applying
                assert time.monotonic() < deadline, frozen.output() + other.output()
                time.sleep(0.2)

            frozen.pause()
            stopped = time.monotonic()
            expelled_after = _wait_members(bootstrap, group, 1, timeout=FROZEN_SECONDS + 20)
            time.sleep(max(0.0, FROZEN_SECONDS - (time.monotonic() - stopped)))
            frozen.cont()
            resumed = time.monotonic()
            rejoined_after = _wait_members(bootstrap, group, 2, timeout=60)
            time.sleep(2)
        wait_applied(events, group, topic, timeout=60)
        caught_up = time.monotonic() - resumed

        assert frozen.process.poll() is None, frozen.output()
        assert other.process.poll() is None, other.output()
        stored = writes.assert_stored_exactly_once(gw.runtime.tables)
        during = load.between(stopped, resumed)
        print(
            f"\nworker frozen {resumed - stopped:.1f}s (session timeout {SESSION_TIMEOUT_MS / 1000:.0f}s; expelled "
            f"after {expelled_after:.1f}s): {sum(a.status == 200 for a in during)}/{len(during)} log-batch "
            f"requests acked meanwhile (availability {Load.availability(during):.1%}); rejoined "
            f"{rejoined_after:.1f}s after SIGCONT, all applied {caught_up:.1f}s after it; acked points "
            f"{len(writes.acked)}, stored {stored}, lost {len(writes.acked) - stored}"
        )
        assert Load.availability(during) == 1.0
    finally:
        writes.close()
