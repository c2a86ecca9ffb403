"""``trackstream replay``: the tables rebuilt from the topics read the same as the tables built live."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelInput, LoggedModelOutput, Metric

from tests.conftest import Gateway, SettingsFactory
from tests.test_sql_docs import log_sweep, log_traces
from trackstream import cli
from trackstream.replay import (
    ReplayError,
    SinkProgress,
    database_url,
    run_replay,
    table_names,
)
from trackstream.settings import Mode, Settings
from trackstream.tables import TableStore
from trackstream.tables.base import Row

# Tables whose rows a replay reproduces exactly once collapsed (FINAL / DISTINCT).
LATEST = (
    "SELECT run_id, key, argMax((step, timestamp, value, is_nan), (step, timestamp, value)) "
    "FROM latest_metrics GROUP BY run_id, key"
)


def dump(tables: TableStore) -> dict[str, list[Row]]:
    """Every table's content as readers see it, sorted.

    ``latest_metrics`` holds one candidate per written batch, and a replay batches differently from the
    live consumers, so it is compared through the reading it exists for: the latest point per (run, key).
    ``metric_buckets`` likewise holds one row per bucket and inserted block: compared through the first
    point per bucket, which the chart sample reads (its point counts are an estimate of the run's size);
    ``metric_spans`` through each bucket's least and greatest timestamp, which the history pages read.
    """
    out: dict[str, list[Row]] = {}
    for name in table_names():
        if name == "metrics":
            sql = "SELECT DISTINCT * FROM metrics"
        elif name == "latest_metrics":
            sql = LATEST
        elif name == "metric_latest":  # aggregate states: compared through the latest point they hold
            sql = "SELECT key, run_id, hex(finalizeAggregation(latest)) FROM metric_latest FINAL"
        elif name == "metric_spans":  # the counts are estimates (replays count again): min and max are exact
            sql = (
                "SELECT run_id, key, bucket, minMerge(min_timestamp), maxMerge(max_timestamp) "
                "FROM metric_spans GROUP BY run_id, key, bucket"
            )
        elif name == "metric_buckets":
            sql = (
                "SELECT run_id, key, bucket, min((first_step, first_timestamp, first_value, first_is_nan)) "
                "FROM metric_buckets GROUP BY run_id, key, bucket"
            )
        else:
            sql = f"SELECT * FROM {name} FINAL"
        out[name] = sorted(tables.query(sql), key=repr)
    return out


@pytest.fixture
def source_url(clickhouse_url: str) -> str:
    """A database of its own, so the comparison sees only this test's rows."""
    from clickhouse_driver import Client

    name = f"ts_replay_src_{uuid.uuid4().hex[:8]}"
    Client.from_url(clickhouse_url).execute(f"CREATE DATABASE {name}")
    return database_url(clickhouse_url, name)


@pytest.fixture
def client_for(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Gateway], MlflowClient]]:
    def make(gateway: Gateway) -> MlflowClient:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", gateway.url)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        mlflow.set_tracking_uri(gateway.url)
        return MlflowClient(gateway.url)

    yield make
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # resets to the default


def test_replay_rebuilds_every_table(
    kafka_settings: SettingsFactory,
    source_url: str,
    gateway_factory: Callable[[Settings], Gateway],
    client_for: Callable[[Gateway], MlflowClient],
) -> None:
    from trackstream.tables.clickhouse import ClickHouseStore

    settings = kafka_settings(clickhouse_url=source_url)
    gateway = gateway_factory(settings)
    client = client_for(gateway)
    logged = log_sweep(client)
    run_id = logged.runs["lr-0.01"]
    client.log_text(run_id, "hello", "notes/hello.txt")
    client.log_text(run_id, "bye", "notes/bye.txt")
    client.delete_tag(run_id, "team")
    model = client.create_logged_model(
        client.get_run(run_id).info.experiment_id, name="m", source_run_id=run_id, params={"a": "1"}, tags={"t": "v"}
    )
    client.log_batch(run_id, metrics=[Metric("acc", 0.5, 1_700_000_000_000, 0, model_id=model.model_id)])
    dataset = Dataset(name="train", digest="d1", source_type="local", source="{}")
    context = [InputTag("mlflow.data.context", "training")]
    client.log_inputs(run_id, [DatasetInput(dataset, context)], [LoggedModelInput(model.model_id)])
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, 0)])
    client.delete_run(logged.runs["lr-0.5"])
    # traces: spans, infos and tags (log_traces), a tag, a run link, an assessment and a deletion
    trace_exp = log_traces(gateway.url, client)
    trace_ids = ["tr-" + (bytes([n + 1]) * 16).hex() for n in range(3)]
    client.set_trace_tag(trace_ids[0], "team", "search")
    client.link_traces_to_run([trace_ids[0]], run_id)
    feedback = {"assessment_name": "ok", "feedback": {"value": True}, "source": {"source_type": "HUMAN"}}
    answer = httpx.post(
        f"{gateway.url}/api/3.0/mlflow/traces/{trace_ids[0]}/assessments", json={"assessment": feedback}
    )
    assert answer.status_code == 200, answer.text
    client.delete_traces(trace_exp, trace_ids=[trace_ids[2]])
    client.set_registered_model_tag("mnist-model", "owner", "analytics")  # log_sweep registered it
    client.set_model_version_tag("mnist-model", "1", "validated", "yes")
    client.get_model_version("mnist-model", "1")
    client.get_run(run_id)
    assert [f.path for f in client.list_artifacts(run_id, "notes")] == ["notes/bye.txt", "notes/hello.txt"]

    source = ClickHouseStore(source_url)
    original = dump(source)
    for name, rows in original.items():
        assert rows, f"the test logged nothing into {name}"

    # Into a new database: the original stays as it was, the copy reads the same.
    target_db = f"ts_replay_dst_{uuid.uuid4().hex[:8]}"
    result = run_replay(settings, target_db, progress=False, timeout=120)
    assert result.events > 0
    assert all(s.finished for s in result.sinks)
    target = ClickHouseStore(database_url(source_url, target_db))
    try:
        assert dump(target) == original
    finally:
        target.close()
        source.command(f"DROP DATABASE IF EXISTS {target_db}")
    assert dump(source) == original

    # In place: the configured database is truncated and rebuilt.
    run_replay(settings, None, progress=False, timeout=120)
    assert dump(source) == original
    source.close()
    # The gateway still reads (and writes) normally afterwards.
    client.log_param(run_id, "after", "replay")
    assert client.get_run(run_id).data.params["after"] == "replay"


def test_replay_refuses_embedded_mode(embedded_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ReplayError, match="kafka"):
        run_replay(embedded_settings())
    monkeypatch.setenv("TRACKSTREAM_MODE", "embedded")
    with pytest.raises(SystemExit) as exc:
        cli.main(["replay"])
    assert "TRACKSTREAM_MODE=kafka" in str(exc.value.code)


def test_replay_rejects_bad_database_name(tmp_path: Path) -> None:
    settings = Settings(
        mode=Mode.KAFKA,
        data_dir=tmp_path,
        kafka_bootstrap="127.0.0.1:1",
        clickhouse_url="clickhouse://default:@127.0.0.1:1/default",
        s3_endpoint="http://127.0.0.1:1",
        s3_access_key="k",
        s3_secret_key="s",
    )
    with pytest.raises(ReplayError, match="invalid database name"):  # refused before connecting anywhere
        run_replay(settings, "x; DROP DATABASE default", progress=False)


def test_progress_counts_from_the_earliest_offsets() -> None:
    p = SinkProgress("metrics", "t", "g", earliest={0: 5, 1: 0, 2: 3}, end={0: 10, 1: 4, 2: 3})
    assert p.total == 9 and p.done_events == 0 and not p.finished
    p.committed = {0: 7}
    assert p.done_events == 2 and not p.finished
    p.committed = {0: 12, 1: 4}  # a pipeline may read past the captured end
    assert p.done_events == 9 and p.finished


def test_table_names_cover_the_schema() -> None:
    assert set(table_names()) == {
        "metrics",
        "metric_buckets",
        "metric_spans",
        "decisions",
        "latest_metrics",
        "metric_latest",
        "experiments",
        "experiment_tags",
        "runs",
        "params",
        "run_tags",
        "artifacts",
        "logged_models",
        "logged_model_params",
        "logged_model_tags",
        "logged_model_metrics",
        "run_dataset_inputs",
        "run_model_inputs",
        "run_model_outputs",
        "registered_models",
        "model_versions",
        "registered_model_tags",
        "model_version_tags",
        "registered_model_aliases",
    } | {"traces", "trace_tags", "spans", "trace_deletions", "trace_assessments", "trace_runs"}


def test_database_url_keeps_credentials_and_options() -> None:
    url = "clickhouse://u:p@h:9000/default?compression=lz4"
    assert database_url(url, "copy") == "clickhouse://u:p@h:9000/copy?compression=lz4"
