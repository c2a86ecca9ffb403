"""Configuration, read once from ``TRACKSTREAM_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.events import ARTIFACT, METADATA, METRICS

_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


class ConfigurationError(Exception):
    """The configuration does not match the services (e.g. a topic is missing); start-up stops."""


class Mode(StrEnum):
    EMBEDDED = "embedded"  # in-process log, chDB, local artifact directory
    KAFKA = "kafka"  # Kafka, ClickHouse server, S3


class Topics(BaseSettings):
    """Topic names and partition counts, one topic per event family (every ``str`` field is a topic)."""

    model_config = SettingsConfigDict(env_prefix="TRACKSTREAM_TOPIC_")
    # the topic (field) each event family is produced to; a sink reads the topic its registry entry names
    FAMILIES: ClassVar[dict[str, str]] = {METRICS: "metrics", METADATA: "metadata", ARTIFACT: "artifacts"}

    metrics: str = "trackstream.metrics"
    metadata: str = "trackstream.metadata"
    artifacts: str = "trackstream.artifacts"
    deadletter: str = "trackstream.deadletter"
    partitions: int = Field(default=4, ge=1)

    @model_validator(mode="after")
    def _complete(self) -> Topics:
        names = self.names()
        bad = [f"TRACKSTREAM_TOPIC_{k.upper()}={v!r}" for k, v in names.items() if not _TOPIC_NAME.match(v)]
        if bad:
            raise ValueError(f"invalid or empty topic names ({', '.join(bad)}); use 1-249 of [a-zA-Z0-9._-]")
        if len(set(names.values())) != len(names):
            raise ValueError(f"each event family needs its own topic, got {names}")
        return self

    def names(self) -> dict[str, str]:
        """Every topic by setting name (the event families' and the dead-letter topic)."""
        return {k: v for k, v in self.model_dump().items() if isinstance(v, str)}

    def of_family(self, family: str) -> str:
        return str(getattr(self, self.FAMILIES[family]))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRACKSTREAM_", extra="ignore")

    mode: Mode = Mode.EMBEDDED
    host: str = "127.0.0.1"
    port: int = Field(default=5000, ge=1, le=65535)
    data_dir: Path = Path("./data")

    kafka_bootstrap: str | None = None
    clickhouse_url: str | None = None
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_bucket: str = "trackstream"
    s3_region: str = "us-east-1"

    topics: Topics = Field(default_factory=Topics)
    # Create missing topics at start-up; with False (topics managed elsewhere) a missing one stops start-up.
    create_topics: bool = True
    consumer_group_prefix: str = "trackstream"

    # Batching: flush by size, by age, or at once when the log is drained.
    batch_max_rows: int = Field(default=50_000, ge=1)
    batch_max_seconds: float = Field(default=0.5, gt=0)
    # Gateway worker processes (Kafka mode only: the embedded log lives in one process).
    workers: int = Field(default=1, ge=1)
    # A drained log flushes the batch once it is this old: under load that makes inserts of
    # thousands of rows instead of one per request; an idle client waits at most this long.
    batch_min_seconds: float = Field(default=0.05, ge=0)
    # How long a read waits for the sinks to apply what the log held when the read began.
    read_barrier_timeout: float = Field(default=10.0, gt=0)
    # Artifacts up to this size travel inside the event; larger ones go by claim check.
    artifact_inline_max_bytes: int = Field(default=512 * 1024, ge=0)
    # A multipart upload's part is held in memory while it is stored (MLflow's client sends 10 MiB).
    artifact_part_max_bytes: int = Field(default=64 << 20, ge=5 << 20)
    # A consumer stops (instead of draining the log to the dead-letter topic) past this ratio.
    deadletter_max_ratio: float = Field(default=0.5, gt=0, le=1)
    deadletter_min_messages: int = Field(default=100, ge=1)
    # Kafka consumer group timeouts. A worker whose store is down keeps polling (paused), so an outage
    # longer than max_poll_interval does not cost it its partitions; lower values only speed up tests.
    consumer_session_timeout_ms: int = Field(default=10_000, ge=1_000)
    consumer_max_poll_interval_ms: int = Field(default=300_000, ge=1_000)

    @model_validator(mode="after")
    def _services_given(self) -> Settings:
        if self.mode is Mode.KAFKA:
            missing = [
                f"TRACKSTREAM_{name.upper()}"
                for name in ("kafka_bootstrap", "clickhouse_url", "s3_endpoint", "s3_access_key", "s3_secret_key")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(f"mode=kafka needs {', '.join(missing)}")
        elif self.workers > 1:
            raise ValueError("TRACKSTREAM_WORKERS > 1 needs mode=kafka (the embedded log lives in one process)")
        return self
