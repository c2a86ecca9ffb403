"""The command line: --version, settings in every command's help, start-up errors as one line naming
the variable and its bad value (no traceback, no secret), the port checked before "serving on", and
replay and gc asking before they destroy anything."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway, free_port
from tests.faults.conftest import REPO
from trackstream.settings import Settings, Topics

SECRET = "hunter2-very-secret"


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSTREAM_", "MLFLOW_"))}
    return subprocess.run(
        [sys.executable, "-m", "trackstream.cli", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_version() -> None:
    result = _run(["--version"])
    assert result.returncode == 0
    assert result.stdout.strip() == f"trackstream {version('trackstream')}"


@pytest.mark.parametrize("command", ["serve", "consume", "migrate", "replay", "gc"])
def test_every_command_lists_the_settings_it_reads(command: str) -> None:
    result = _run([command, "--help"])
    assert result.returncode == 0, result.stderr
    assert "``" not in result.stdout  # no reStructuredText markup
    for common in ("TRACKSTREAM_MODE", "TRACKSTREAM_KAFKA_BOOTSTRAP", "TRACKSTREAM_LOG_LEVEL"):
        assert common in result.stdout
    listed = {w for w in result.stdout.split() if w.startswith("TRACKSTREAM_")}
    known = {f"TRACKSTREAM_{n.upper()}" for n in Settings.model_fields} | {
        f"TRACKSTREAM_TOPIC_{n.upper()}" for n in Topics.model_fields
    }
    assert listed <= known, listed - known  # every variable named is a real setting
    if command == "serve":
        assert {"TRACKSTREAM_PORT", "TRACKSTREAM_ACCESS_LOG", "TRACKSTREAM_WORKERS"} <= listed
        assert "TRACKSTREAM_METRICS_PORT" not in listed
    if command == "consume":
        assert {"TRACKSTREAM_METRICS_PORT", "TRACKSTREAM_BATCH_MAX_ROWS"} <= listed
        assert "TRACKSTREAM_PORT" not in listed


def _kafka_env(**overrides: str) -> dict[str, str]:
    dead = free_port()  # nothing listens there
    env = {
        "TRACKSTREAM_MODE": "kafka",
        "TRACKSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{dead}",
        "TRACKSTREAM_CLICKHOUSE_URL": f"clickhouse://default:{SECRET}@127.0.0.1:{dead}/default",
        "TRACKSTREAM_S3_ENDPOINT": f"http://127.0.0.1:{dead}",
        "TRACKSTREAM_S3_ACCESS_KEY": "key",
        "TRACKSTREAM_S3_SECRET_KEY": SECRET,
        "TRACKSTREAM_PORT": str(free_port()),
    }
    env.update(overrides)
    return env


@pytest.mark.parametrize("command", [["serve"], ["consume", "metrics"], ["migrate"]])
def test_unreachable_kafka_is_one_line_at_once(command: list[str]) -> None:
    start = time.monotonic()
    line = _one_line_error(_run(command, _kafka_env()))
    assert time.monotonic() - start < 30
    assert "TRACKSTREAM_KAFKA_BOOTSTRAP=127.0.0.1:" in line
    assert SECRET not in line


def test_a_bad_clickhouse_url_names_the_variable_and_value_but_not_the_password() -> None:
    url = f"http://default:{SECRET}@clickhouse.invalid:8123"
    line = _one_line_error(_run(["serve"], _kafka_env(TRACKSTREAM_CLICKHOUSE_URL=url)))
    assert "TRACKSTREAM_CLICKHOUSE_URL" in line and "clickhouse.invalid:8123" in line
    assert SECRET not in line


@pytest.mark.parametrize(
    ("variable", "bad"),
    [("TRACKSTREAM_PORT", "http"), ("TRACKSTREAM_LOG_FORMAT", "xml"), ("TRACKSTREAM_S3_ENDPOINT", "s3.example.com")],
)
def test_bad_values_name_variable_and_value(variable: str, bad: str) -> None:
    line = _one_line_error(_run(["serve"], _kafka_env(**{variable: bad})))
    assert variable in line and bad in line
    assert SECRET not in line


def test_a_taken_port_stops_serve_before_serving_on(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = _run(["serve"], {"TRACKSTREAM_PORT": str(port), "TRACKSTREAM_DATA_DIR": str(tmp_path / "data")})
    line = _one_line_error(result)
    assert f"TRACKSTREAM_PORT={port}" in line
    assert "serving on" not in result.stdout


def test_replay_asks_before_truncating_and_refuses_without_a_terminal() -> None:
    # No terminal to ask and no --yes: refused before anything is touched (the services are unreachable,
    # so getting past the question would fail differently).
    line = _one_line_error(_run(["replay"], _kafka_env()))
    assert "--yes" in line and "not confirmed" in line
    # --database replays aside, truncating nothing: no question; here it gets as far as the services
    line = _one_line_error(_run(["replay", "--database", "aside"], _kafka_env()))
    assert "not confirmed" not in line


def test_gc_asks_and_checks_its_age(tmp_path: Path) -> None:
    env = {"TRACKSTREAM_DATA_DIR": str(tmp_path / "data"), "TRACKSTREAM_PORT": str(free_port())}
    assert "not confirmed" in _one_line_error(_run(["gc", "--older-than", "30d"], env))
    assert "--older-than '3 weeks'" in _one_line_error(_run(["gc", "--older-than", "3 weeks", "--yes"], env))
    result = _run(["gc", "--older-than", "30d", "--yes"], env)
    assert result.returncode == 0, result.stderr
    assert "purged 0 run(s), 0 experiment(s)" in result.stdout


def test_sql_against_the_embedded_store_while_the_gateway_runs(
    embedded_settings: Any, gateway_factory: Callable[..., Gateway]
) -> None:
    gw = gateway_factory(embedded_settings())
    port = gw.url.rsplit(":", 1)[1]
    with httpx.Client(base_url=gw.url + "/api/2.0/mlflow", timeout=30) as c:
        assert c.post("/experiments/create", json={"name": "sql-visible"}).status_code == 200
    result = _run(["sql", "SELECT name FROM experiments FINAL ORDER BY name", "--format", "TSV"],
                  {"TRACKSTREAM_PORT": port})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Default", "sql-visible"]
    url = gw.url + "/trackstream/sql"
    sql = {"Content-Type": "application/sql"}
    assert httpx.post(url, content="SELECT 1", headers={"Content-Type": "text/plain"}).status_code == 415
    for refused in ("DROP TABLE runs", "SELECT 1; DROP TABLE runs", "SELECT 1 INTO OUTFILE '/tmp/x'"):
        assert httpx.post(url, content=refused, headers=sql).status_code == 400, refused
    assert httpx.post(url, content="SELECT count() FROM runs", headers=sql).status_code == 200
    assert httpx.post(url, content="SELECT count() FROM runs", headers=sql, params={"format": "TSV"}).text == "0\n"
    line = _one_line_error(_run(["sql", "SELECT nope FROM nowhere"], {"TRACKSTREAM_PORT": port}))
    assert "400" in line
    # gc needs the embedded store to itself: with the gateway running it says so at once
    line = _one_line_error(_run(["gc", "--yes"], {"TRACKSTREAM_PORT": port}))
    assert f"TRACKSTREAM_PORT={port}" in line and "stop it first" in line
