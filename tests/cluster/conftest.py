"""The 3-broker Kafka cluster (``deploy/local/services.sh cluster-up``; ``make test-cluster`` starts it).

Its brokers are broker1..3 (replication factor 3, ``min.insync.replicas=2``); ClickHouse and S3 are
the suite's usual services. A test here that finds no cluster FAILS naming the command that starts it.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from clickhouse_driver import Client

from tests.conftest import Services, SettingsFactory
from tests.faults.conftest import gateway_process_factory, worker_factory  # noqa: F401  (fixtures)
from trackstream.settings import Settings

START_CLUSTER = "make test-cluster"


@dataclass(frozen=True)
class Cluster:
    bootstrap: str
    brokers: dict[str, int]  # services.sh name (broker1..3) -> Kafka node id

    def name_of(self, node_id: int) -> str:
        return next(name for name, node in self.brokers.items() if node == node_id)


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    bootstrap = os.environ.get("TRACKSTREAM_CLUSTER_BOOTSTRAP")
    if not bootstrap:
        pytest.fail(
            "This test needs the 3-broker Kafka cluster, but TRACKSTREAM_CLUSTER_BOOTSTRAP is not set. "
            f"Run `{START_CLUSTER}`, or `deploy/local/services.sh cluster-up` and `source .services/cluster-env`.",
            pytrace=False,
        )
    brokers = {f"broker{i}": i for i in range(1, len(bootstrap.split(",")) + 1)}
    return Cluster(bootstrap, brokers)


@pytest.fixture
def cluster_settings(kafka_settings: SettingsFactory, services: Services, cluster: Cluster) -> SettingsFactory:
    """Kafka-mode settings on the cluster, with a ClickHouse database of the test's own."""

    def make(**overrides: Any) -> Settings:
        base, _, _ = services.clickhouse_url.rpartition("/")
        database = f"ts_cluster_{uuid.uuid4().hex[:10]}"
        Client.from_url(services.clickhouse_url).execute(f"CREATE DATABASE {database}")
        return kafka_settings(clickhouse_url=f"{base}/{database}", kafka_bootstrap=cluster.bootstrap, **overrides)

    return make
