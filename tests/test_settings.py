"""Start-up refuses incomplete configuration with a message naming the setting."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from tests.conftest import SettingsFactory
from trackstream.runtime import build
from trackstream.settings import ConfigurationError, Settings, Topics


def test_kafka_mode_names_every_missing_service_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TRACKSTREAM_CLICKHOUSE_URL", "TRACKSTREAM_S3_ENDPOINT", "TRACKSTREAM_S3_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError) as err:
        Settings.model_validate({"mode": "kafka", "kafka_bootstrap": "127.0.0.1:1"})
    message = str(err.value)
    for name in ("TRACKSTREAM_CLICKHOUSE_URL", "TRACKSTREAM_S3_ENDPOINT", "TRACKSTREAM_S3_ACCESS_KEY"):
        assert name in message
    assert "TRACKSTREAM_KAFKA_BOOTSTRAP" not in message


@pytest.mark.parametrize(
    "overrides",
    [{"metrics": ""}, {"artifacts": "bad topic name"}, {"metadata": "trackstream.metrics"}],
)
def test_incomplete_topic_configuration_is_refused(overrides: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Topics.model_validate(overrides)


def test_cli_refuses_to_start_and_names_the_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trackstream.cli", "serve"],
        env={"TRACKSTREAM_MODE": "kafka", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "TRACKSTREAM_KAFKA_BOOTSTRAP" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_topics_stop_start_up_when_not_creating_them(kafka_settings: SettingsFactory) -> None:
    settings = kafka_settings(create_topics=False)
    with pytest.raises(ConfigurationError, match=settings.topics.metrics):
        build(settings)


def test_web_and_resource_settings_default_to_the_stock_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ALLOWED_HOSTS", "CORS_ALLOWED_ORIGINS", "X_FRAME_OPTIONS", "DISABLE_SECURITY_MIDDLEWARE"):
        monkeypatch.delenv(f"TRACKSTREAM_{name}", raising=False)
        monkeypatch.delenv(f"MLFLOW_SERVER_{name}", raising=False)
    s = Settings()
    assert s.allowed_hosts[:4] == ["localhost", "127.0.0.1", "[::1]", "0.0.0.0"]
    assert {"localhost:*", "127.0.0.1:*", "[[]::1]:*", "192.168.*", "10.*", "172.16.*", "172.31.*"} <= set(
        s.allowed_hosts
    )
    assert s.cors_allowed_origins == []
    assert s.x_frame_options == "SAMEORIGIN"
    assert s.disable_security_middleware is False
    assert s.max_request_body_bytes == 100 * 1024 * 1024
    assert s.request_read_timeout == 60
    assert s.timeout_keep_alive == 5


def test_web_settings_take_mlflows_names_and_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_SERVER_ALLOWED_HOSTS", "mlflow.example.com, *.internal:*")
    monkeypatch.setenv("TRACKSTREAM_CORS_ALLOWED_ORIGINS", "https://ui.example.com,https://b.example.com")
    monkeypatch.setenv("MLFLOW_SERVER_X_FRAME_OPTIONS", "deny")
    monkeypatch.setenv("MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE", "true")
    monkeypatch.setenv("TRACKSTREAM_MAX_REQUEST_BODY_BYTES", "2048")
    s = Settings()
    assert s.allowed_hosts == ["mlflow.example.com", "*.internal:*"]
    assert s.cors_allowed_origins == ["https://ui.example.com", "https://b.example.com"]
    assert s.x_frame_options == "deny"
    assert s.disable_security_middleware is True
    assert s.max_request_body_bytes == 2048
    monkeypatch.setenv("TRACKSTREAM_X_FRAME_OPTIONS", "ALLOW-FROM x")
    with pytest.raises(ValidationError, match=r"x_frame_options|X_FRAME_OPTIONS"):
        Settings()
