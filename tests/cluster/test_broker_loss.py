"""One broker of three SIGKILLed while four clients log through a gateway process: with replication
factor 3 and ``min.insync.replicas=2`` writes keep being acknowledged (a pause no longer than the
leader election), nothing acknowledged is lost, and the broker, started again, catches up (back in
every partition's in-sync replicas)."""

from __future__ import annotations

import time

from kafka import KafkaAdminClient

from tests.cluster.conftest import Cluster
from tests.conftest import SettingsFactory
from tests.faults.conftest import GatewayProcessFactory, PortWatch, WorkerFactory, local_service
from tests.faults.scenario import LoadedGateway

DOWN = 15.0  # seconds the broker stays down under load
ELECTION_BOUND = 10.0  # longest time without an acknowledged write while a leader is elected


def _replicas(admin: KafkaAdminClient, topics: list[str]) -> dict[tuple[str, int], tuple[int, list[int], list[int]]]:
    """(topic, partition) -> (leader, replicas, in-sync replicas)."""
    return {
        (t["name"], p["partition_index"]): (p["leader_id"], sorted(p["replica_nodes"]), sorted(p["isr_nodes"]))
        for t in admin.describe_topics(topics)
        for p in t["partitions"]
    }


def test_one_broker_killed_under_load_keeps_acknowledging_and_catches_up(
    cluster: Cluster,
    cluster_settings: SettingsFactory,
    worker_factory: WorkerFactory,
    gateway_process_factory: GatewayProcessFactory,
) -> None:
    settings = cluster_settings()
    topics = [settings.topics.metrics, settings.topics.metadata]
    loaded = LoadedGateway(settings, worker_factory, gateway_process_factory)  # creates the topics: RF 3 here
    gateway, load = loaded.gateway, loaded.load
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=10_000)
    try:
        before = _replicas(admin, topics)
        assert all(len(replicas) == 3 == len(isr) for _, replicas, isr in before.values()), before

        try:
            # the broker leading the metrics topic's first partition: its writes must move
            victim = cluster.name_of(before[(settings.topics.metrics, 0)][0])
            local_service("kill", victim)
            killed = time.monotonic()
            time.sleep(DOWN)
            during = load.availability(start=killed, since=time.monotonic())
            watch = PortWatch(int(cluster.bootstrap.split(",")[cluster.brokers[victim] - 1].rpartition(":")[2]))
            watch.arm()
            local_service("start", victim)
            watch.stop()
            assert watch.opened is not None
            restarted = watch.opened  # the broker's port accepts connections again
            deadline = restarted + 90
            while True:  # the returned broker catches up: back in every partition's ISR
                current = _replicas(admin, topics)
                if all(len(isr) == 3 for _, _, isr in current.values()):
                    break
                assert time.monotonic() < deadline, f"{victim} not back in sync 90 s after its start: {current}"
                time.sleep(0.5)
            caught_up = time.monotonic() - restarted
            time.sleep(2)
        finally:
            load.stop()
        whole = load.availability(start=killed, since=killed)
        print(
            f"\none broker of three killed ({victim}) for {DOWN:.0f}s: {during.requests} writes while it was down, "
            f"{during.ok_share:.1%} answered 200, longest without a 200 {during.longest_gap:.1f}s; "
            f"back in every ISR {caught_up:.1f}s after its port opened; whole run {whole.ok_share:.1%} answered 200"
        )
        assert during.ok_share > 0.5, during
        assert during.longest_gap <= ELECTION_BOUND, f"{during}\n{gateway.output()}"
        assert whole.longest_gap <= ELECTION_BOUND, whole

        loaded.assert_nothing_lost()
    finally:
        admin.close()
        loaded.close()
