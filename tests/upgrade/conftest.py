from __future__ import annotations

import uuid
from typing import Any

import pytest
from clickhouse_driver import Client

from tests.conftest import Services, SettingsFactory
from trackstream.settings import Settings


@pytest.fixture
def upgrade_settings(kafka_settings: SettingsFactory, services: Services) -> SettingsFactory:
    """Kafka-mode settings with a ClickHouse database of the test's own, so counts cover only this test."""

    def make(**overrides: Any) -> Settings:
        base, _, _ = services.clickhouse_url.rpartition("/")
        database = f"ts_upgrade_{uuid.uuid4().hex[:10]}"
        Client.from_url(services.clickhouse_url).execute(f"CREATE DATABASE {database}")
        return kafka_settings(clickhouse_url=f"{base}/{database}", **overrides)

    return make
