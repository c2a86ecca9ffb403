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
        Settings(mode="kafka", kafka_bootstrap="127.0.0.1:1")
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
        Topics(**overrides)


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
