"""Configuration, read once from ``TRACKSTREAM_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from schemas.events import ARTIFACT, AUTH, METADATA, METRICS, REGISTRY, TRACE

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
        METRICS: "metrics",
        METADATA: "metadata",
        ARTIFACT: "artifacts",
        AUTH: "auth",
        TRACE: "traces",
        REGISTRY: "registry",
    }
    # Topic settings created with other configs than the broker's defaults: users and permissions are
    # the auth topic's only copy (in Kafka mode), so it keeps every record (ingest/auth/view.py).
    CONFIGS: ClassVar[dict[str, dict[str, str]]] = {"auth": {"retention.ms": "-1", "retention.bytes": "-1"}}

    # topic names, one per event family, and the dead-letter topic
    metrics: str = "trackstream.metrics"
    metadata: str = "trackstream.metadata"
    artifacts: str = "trackstream.artifacts"
    auth: str = "trackstream.auth"
    traces: str = "trackstream.traces"
    registry: str = "trackstream.registry"
    deadletter: str = "trackstream.deadletter"
    # partitions of each topic created at start-up
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

    # "embedded" (in-process log, chDB, local directory) or "kafka" (Kafka, ClickHouse server, S3)
    mode: Mode = Mode.EMBEDDED
    # the gateway's address
    host: str = "127.0.0.1"
    port: int = Field(default=5000, ge=1, le=65535)
    # embedded mode: tables (chdb/) and artifacts (artifacts/) live here
    data_dir: Path = Path("./data")

    # kafka mode: comma-separated host:port of brokers
    kafka_bootstrap: str | None = None
    # kafka mode: clickhouse://[user[:password]@]host[:port]/database (native protocol)
    clickhouse_url: str | None = None
    # kafka mode: the S3 store's http(s)://host[:port], credentials, bucket and region
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_bucket: str = "trackstream"
    s3_region: str = "us-east-1"

    topics: Topics = Field(default_factory=Topics)
    # Create missing topics at start-up; with False (topics managed elsewhere) a missing one stops start-up.
    create_topics: bool = True
    # consumer groups are <prefix>-<sink>
    consumer_group_prefix: str = "trackstream"

    # Batching: flush by size, by age, or at once when the log is drained.
    batch_max_rows: int = Field(default=50_000, ge=1)
    batch_max_seconds: float = Field(default=0.5, gt=0)
    # Gateway worker processes (Kafka mode only: the embedded log lives in one process).
    workers: int = Field(default=1, ge=1)
    # A drained log flushes the batch once it is this old: under load that makes inserts of
    # thousands of rows instead of one per request; an idle client waits at most this long.
    # Default 0.05 in Kafka mode; 0 in embedded mode, where a read of a write just made waits for its
    # sink in the same process and nothing else shares the engine's time.
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

    # -- operations (trackstream/logs.py, trackstream/metrics.py, ingest/observability.py) --
    log_level: str = Field(default="INFO", pattern=r"(?i)^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    # "plain" lines or "json" (one object per line: time, level, logger, message, request_id)
    log_format: str = Field(default="plain", pattern=r"^(plain|json)$")
    # one INFO line per request (method, path, status, duration, bytes in, request id)
    access_log: bool = False
    # `trackstream consume`: serve /metrics, /health/live and /health/ready on this port (0: not at all).
    # Each worker on one host needs its own port.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    # -- authentication and permissions (ingest/auth): off by default --
    auth_enabled: bool = False
    # The initial admin, created at the first start with auth on (when no user of that name exists yet);
    # ignored afterwards (change the password through users/update-password). MLflow's names work too.
    auth_admin_username: str = Field(
        default="admin",
        min_length=1,
        validation_alias=AliasChoices(
            "TRACKSTREAM_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_USERNAME", "auth_admin_username"
        ),
    )
    auth_admin_password: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "TRACKSTREAM_AUTH_ADMIN_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD", "auth_admin_password"
        ),
    )
    # The permission a user has on an experiment or registered model without an explicit one (MLflow: READ).
    auth_default_permission: Literal["READ", "EDIT", "MANAGE", "NO_PERMISSIONS"] = "READ"
    # Longest lifetime of a bearer token, in seconds (0: tokens live until revoked unless asked otherwise).
    auth_token_max_ttl_seconds: int = Field(default=90 * 24 * 3600, ge=0)

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
        if self.mode is Mode.EMBEDDED and "batch_min_seconds" not in self.model_fields_set:
            self.batch_min_seconds = 0.0
        if self.clickhouse_url is not None:
            _check_clickhouse_url(self.clickhouse_url)
        if self.s3_endpoint is not None and not re.match(r"^https?://[^/\s:]+(:\d{1,5})?/?$", self.s3_endpoint):
            raise ValueError(f"TRACKSTREAM_S3_ENDPOINT={self.s3_endpoint!r} is not an http(s)://host[:port] URL")
        return self

    def secrets(self) -> list[str]:
        """Values never to appear in a log line: secret keys and passwords in URLs."""
        out = [self.s3_secret_key or ""]
        if self.clickhouse_url:
            out.append(urlsplit(self.clickhouse_url).password or "")
        return [s for s in out if s]


def _check_clickhouse_url(url: str) -> None:
    """clickhouse-driver's URL form: ``clickhouse://[user[:password]@]host[:port]/[database]`` (or
    ``clickhouses://`` for TLS); the password never appears in the error."""
    parts = urlsplit(url)
    shown = parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("clickhouse", "clickhouses") or not parts.hostname or port == -1:
        raise ValueError(
            f"TRACKSTREAM_CLICKHOUSE_URL={shown!r} is not a clickhouse://[user[:password]@]host[:port]/database URL"
        )
