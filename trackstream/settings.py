"""Configuration, read once from ``TRACKSTREAM_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from schemas.events import ARTIFACT, METADATA, METRICS, REGISTRY

_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


# MLflow's own bound on a request body: the stock server 3.17 sets none on tracking JSON (Flask's
# MAX_CONTENT_LENGTH stays None); its one request-size setting, MLFLOW_GATEWAY_MAX_DECOMPRESSED_REQUEST_SIZE,
# defaults to 100 MiB, which also leaves room for MLflow's largest field (a dataset profile, 16 MiB).
DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024
DEFAULT_READ_TIMEOUT = 60.0


def default_allowed_hosts() -> list[str]:
    """The stock server's default Host patterns: loopback names with any port, and the private ranges."""
    loopback = ["localhost", "127.0.0.1", "[::1]", "0.0.0.0"]
    with_port = [f"{h.replace('[', '[[]', 1)}:*" if h.startswith("[") else f"{h}:*" for h in loopback]
    private = ["192.168.*", "10.*", *[f"172.{i}.*" for i in range(16, 32)], "fc00:*", "fd00:*"]
    return loopback + with_port + private


class ConfigurationError(Exception):
    """The configuration does not match the services (e.g. a topic is missing); start-up stops."""


class Mode(StrEnum):
    EMBEDDED = "embedded"  # in-process log, chDB, local artifact directory
    KAFKA = "kafka"  # Kafka, ClickHouse server, S3


class Topics(BaseSettings):
    """Topic names and partition counts, one topic per event family (every ``str`` field is a topic)."""

    model_config = SettingsConfigDict(env_prefix="TRACKSTREAM_TOPIC_")
    # the topic (field) each event family is produced to; a sink reads the topic its registry entry names
    FAMILIES: ClassVar[dict[str, str]] = {
        METRICS: "metrics", METADATA: "metadata", ARTIFACT: "artifacts", REGISTRY: "registry",
    }  # fmt: skip

    metrics: str = "trackstream.metrics"
    metadata: str = "trackstream.metadata"
    artifacts: str = "trackstream.artifacts"
    registry: str = "trackstream.registry"
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

    # -- web security and bounded resources (ingest/security.py, ingest/limits.py) --
    # The stock server's options, under their MLflow names too, so a deployment's settings carry over.
    # Host header patterns (fnmatch; "*" allows all): default localhost with any port and private ranges.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=default_allowed_hosts,
        validation_alias=AliasChoices("TRACKSTREAM_ALLOWED_HOSTS", "MLFLOW_SERVER_ALLOWED_HOSTS", "allowed_hosts"),
    )
    # Origins allowed to write cross-origin besides localhost ("*": all, without credentials).
    cors_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices(
            "TRACKSTREAM_CORS_ALLOWED_ORIGINS", "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS", "cors_allowed_origins"
        ),
    )
    x_frame_options: str = Field(
        default="SAMEORIGIN",
        pattern=r"(?i)^(SAMEORIGIN|DENY|NONE)$",
        validation_alias=AliasChoices(
            "TRACKSTREAM_X_FRAME_OPTIONS", "MLFLOW_SERVER_X_FRAME_OPTIONS", "x_frame_options"
        ),
    )
    disable_security_middleware: bool = Field(
        default=False,
        validation_alias=AliasChoices(
            "TRACKSTREAM_DISABLE_SECURITY_MIDDLEWARE",
            "MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE",
            "disable_security_middleware",
        ),
    )
    # Largest JSON request body (artifact uploads stream and are not limited by it); larger answers 413.
    max_request_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    # Seconds a connection may take to send its request head, or between two pieces of its body.
    request_read_timeout: float = Field(default=DEFAULT_READ_TIMEOUT, gt=0)
    # Seconds an idle kept-alive connection stays open (uvicorn's default, as the stock server runs it).
    timeout_keep_alive: int = Field(default=5, ge=1)

    @field_validator("allowed_hosts", "cors_allowed_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

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
