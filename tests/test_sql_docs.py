"""Every ```sql block of docs/SQL.md runs, in both modes (chDB 26 embedded; the ClickHouse server of the
`clickhouse_url` fixture in Kafka mode), on data logged through the gateway, and answers what it should."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag

from tests.conftest import Gateway
from trackstream.tables.base import Row

DOC = Path(__file__).resolve().parents[1] / "docs" / "SQL.md"
EXPERIMENT = "mnist-sweep"  # the name the examples filter on
T0 = 1_700_000_000_000
INF_CLAMP = 1.7976931348623157e308


@dataclass
class Logged:
    """What :func:`log_sweep` wrote: run ids by run name, experiment ids by name."""

    experiments: dict[str, str] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)


# run name -> (lr, loss points by step, final status or None to leave it RUNNING)
SWEEP: dict[str, tuple[str, list[float], str | None]] = {
    "lr-0.1": ("0.1", [2.0, 1.2, 0.9, 0.8, 0.75], "FINISHED"),
    "lr-0.01": ("0.01", [2.0, 1.0, 0.6, 0.4, 0.3], "FINISHED"),  # the best: lowest latest loss
    "lr-0.001": ("0.001", [2.0, 1.8, 1.6, 1.5, 1.4], "FINISHED"),
    "lr-1.0": ("1.0", [2.0, math.inf, math.nan], "FAILED"),  # diverged: latest loss NaN
    "lr-0.5": ("0.5", [2.0], None),
}


def log_sweep(client: Any, experiment: str = EXPERIMENT, other: str = "other-exp") -> Logged:
    """Log the known data the examples are checked against, then pass the read barriers."""
    out = Logged()
    exp_id = out.experiments[experiment] = client.create_experiment(experiment)
    client.set_experiment_tag(exp_id, "owner", "analytics")
    for name, (lr, losses, status) in SWEEP.items():
        # lr-0.01 is created under another name and renamed: the examples must see the current name.
        run = client.create_run(exp_id, run_name="tmp-name" if name == "lr-0.01" else name, start_time=T0)
        run_id = out.runs[name] = run.info.run_id
        metrics = [Metric("loss", v, T0 + 1000 * step, step) for step, v in enumerate(losses)]
        client.log_batch(run_id, metrics=metrics, params=[Param("lr", lr)], tags=[RunTag("team", "vision")])
        if name == "lr-0.01":
            client.update_run(run_id, name="lr-0.01")
        if name == "lr-0.001":
            # Logged last but at an early step: not the latest value, although the lowest.
            client.log_metric(run_id, "loss", 0.01, timestamp=T0 + 99_000, step=1)
            client.set_tag(run_id, "note", "temporary")
            client.delete_tag(run_id, "note")
        if status is not None:
            client.set_terminated(run_id, status, end_time=T0 + 60_000)
    other_id = out.experiments[other] = client.create_experiment(other)
    solo = client.create_run(other_id, run_name="solo", start_time=T0)
    out.runs["solo"] = solo.info.run_id
    client.log_batch(solo.info.run_id, metrics=[Metric("loss", 3.0, T0, 0), Metric("loss", 2.5, T0 + 1000, 1)])
    client.set_terminated(solo.info.run_id, "FINISHED", end_time=T0 + 60_000)
    for run_id in out.runs.values():  # reads wait until the sinks applied the writes (read-your-writes)
        client.get_run(run_id)
        client.get_metric_history(run_id, "loss")
    client.search_runs(list(out.experiments.values()))
    # the registry: two versions of a model (the first registered from the best run, then its model
    # renamed), an alias on the second, and a deleted third version the example must leave out
    client.create_registered_model("tmp-model")
    client.create_model_version("tmp-model", "s3://bucket/best", run_id=out.runs["lr-0.01"])
    client.create_model_version("tmp-model", "s3://bucket/other")
    client.create_model_version("tmp-model", "s3://bucket/dropped")
    client.rename_registered_model("tmp-model", "mnist-model")
    client.set_registered_model_alias("mnist-model", "champion", "2")
    client.set_registered_model_alias("mnist-model", "best", "2")
    client.delete_model_version("mnist-model", "3")
    client.get_registered_model("mnist-model")
    return out


TRACE_EXPERIMENT = "agent-traces"  # the experiment the trace examples filter on
# trace -> (minute after T0, root failed, root ms, [(model, llm call ms, input tokens, output tokens)])
AGENT_TRACES: dict[str, tuple[int, bool, int, list[tuple[str, int, int, int]]]] = {
    "a": (0, False, 100, [("gpt-a", 40, 10, 20)]),
    "b": (0, True, 300, [("gpt-a", 200, 5, 0)]),
    "c": (1, False, 50, [("gpt-b", 20, 7, 3), ("gpt-a", 10, 1, 2)]),
}


def log_traces(url: str, client: Any) -> str:
    """Spans of three agent traces through the OTLP endpoint (one request), then pass the traces barrier."""
    import httpx
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    exp_id = str(client.create_experiment(TRACE_EXPERIMENT))
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for n, (minute, failed, root_ms, calls) in enumerate(AGENT_TRACES.values()):
        trace_id, root_id = bytes([n + 1]) * 16, bytes([n + 1]) * 8
        start = (T0 + 60_000 * minute) * 1_000_000
        error = Status(code=Status.STATUS_CODE_ERROR if failed else Status.STATUS_CODE_OK)
        scope.spans.append(Span(trace_id=trace_id, span_id=root_id, name="agent", start_time_unix_nano=start,
                                end_time_unix_nano=start + root_ms * 1_000_000, status=error))  # fmt: skip
        for i, (model, ms, tokens_in, tokens_out) in enumerate(calls):
            usage = AnyValue()
            for key, value in (("input_tokens", tokens_in), ("output_tokens", tokens_out),
                               ("total_tokens", tokens_in + tokens_out)):  # fmt: skip
                usage.kvlist_value.values.append(KeyValue(key=key, value=AnyValue(int_value=value)))
            span = Span(trace_id=trace_id, span_id=bytes([n + 1, i + 10]) * 4, parent_span_id=root_id, name="llm",
                        start_time_unix_nano=start, end_time_unix_nano=start + ms * 1_000_000)  # fmt: skip
            span.attributes.append(KeyValue(key="gen_ai.request.model", value=AnyValue(string_value=model)))
            span.attributes.append(KeyValue(key="mlflow.chat.tokenUsage", value=usage))
            scope.spans.append(span)
    headers = {"content-type": "application/x-protobuf", "x-mlflow-experiment-id": exp_id}
    answer = httpx.post(f"{url}/v1/traces", content=request.SerializeToString(), headers=headers)
    assert answer.status_code == 200, answer.text
    location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": exp_id}}
    found = httpx.post(f"{url}/api/3.0/mlflow/traces/search", json={"locations": [location]}).json()
    assert len(found["traces"]) == len(AGENT_TRACES)
    return exp_id


def sql_examples() -> dict[str, str]:
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    out: dict[str, str] = {}
    for block in blocks:
        match = re.match(r"--\s*example:\s*(\w+)", block.strip())
        assert match, f"every ```sql block of {DOC.name} must start with '-- example: <name>':\n{block}"
        assert match.group(1) not in out, f"duplicate example name {match.group(1)}"
        out[match.group(1)] = block
    return out


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def check_best_run_per_experiment(rows: list[Row], logged: Logged) -> None:
    mine = {r[0]: r[1:] for r in rows if r[0] in logged.experiments.values()}
    assert mine == {
        logged.experiments[EXPERIMENT]: (EXPERIMENT, logged.runs["lr-0.01"], 0.3),
        logged.experiments["other-exp"]: ("other-exp", logged.runs["solo"], 2.5),
    }


def check_loss_curves(rows: list[Row], logged: Logged) -> None:
    expected: list[tuple[str, int, float]] = []
    for name in sorted(SWEEP):
        points = [(T0 + 1000 * step, step, v) for step, v in enumerate(SWEEP[name][1])]
        if name == "lr-0.001":
            points.append((T0 + 99_000, 1, 0.01))
        for _ts, step, v in sorted(points, key=lambda p: (p[1], p[0])):
            expected.append((name, step, INF_CLAMP if v == math.inf else v))
    assert [r[:2] for r in rows] == [e[:2] for e in expected]
    assert all(_same(float(r[2]), e[2]) for r, e in zip(rows, expected, strict=True)), rows


def check_param_sweep(rows: list[Row], logged: Logged) -> None:
    final = {name: losses[-1] for name, (_lr, losses, _s) in SWEEP.items()}
    expected = sorted(((logged.runs[n], float(SWEEP[n][0]), final[n]) for n in SWEEP), key=lambda e: e[1])
    assert [r[:2] for r in rows] == [e[:2] for e in expected]
    assert all(_same(float(r[2]), e[2]) for r, e in zip(rows, expected, strict=True)), rows


def check_runs_per_status(rows: list[Row], logged: Logged) -> None:
    assert [(r[0], r[1]) for r in rows] == [("FAILED", 1), ("FINISHED", 3), ("RUNNING", 1)]
    assert all(r[2] is not None for r in rows)


def check_top_k_runs(rows: list[Row], logged: Logged) -> None:
    assert [(r[0], float(r[1])) for r in rows] == [("lr-0.01", 0.3), ("lr-0.1", 0.75), ("lr-0.001", 1.4)]


def check_two_runs_side_by_side(rows: list[Row], logged: Logged) -> None:
    # lr-0.001's step 1 was logged twice; the later point (0.01) wins
    expected = [(0, 2.0, 2.0), (1, 1.2, 0.01), (2, 0.9, 1.6), (3, 0.8, 1.5), (4, 0.75, 1.4)]
    assert [(int(r[0]), float(r[1]), float(r[2])) for r in rows] == expected


def check_downsample_long_metric(rows: list[Row], logged: Logged) -> None:
    got = [(int(r[0]), float(r[1]), round(float(r[2]), 9), float(r[3]), int(r[4])) for r in rows]
    assert got == [(0, 1.0, 1.5, 2.0, 2), (2, 0.4, 0.5, 0.6, 2), (4, 0.3, 0.3, 0.3, 1)]


def check_metric_over_time_grafana(rows: list[Row], logged: Logged) -> None:
    assert {r[1] for r in rows} == set(SWEEP)  # every run of the experiment, none of the other
    best = [(r[0], round(float(r[2]), 9)) for r in rows if r[1] == "lr-0.01"]
    assert [v for _, v in best] == [1.5, 0.5, 0.3]
    # DateTime comes back as datetime (ClickHouse server) or text in the server's time zone (chDB)
    times = [t if isinstance(t, datetime) else datetime.fromisoformat(str(t)) for t, _ in best]
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(times)] == [2.0, 2.0]


def check_span_latency_percentiles(rows: list[Row], logged: Logged) -> None:
    # quantileExact(level) is the element at floor(level * n) of the sorted values
    assert [(r[0], r[1], float(r[2]), float(r[3]), float(r[4])) for r in rows] == [
        ("agent", 3, 100.0, 300.0, 300.0),
        ("llm", 4, 40.0, 200.0, 200.0),
    ]


def check_error_rate_over_time(rows: list[Row], logged: Logged) -> None:
    assert [(r[1], r[2], float(r[3])) for r in rows] == [(2, 1, 0.5), (1, 0, 0.0)]
    assert rows[1][0] > rows[0][0]


def check_token_usage_per_model(rows: list[Row], logged: Logged) -> None:
    assert [tuple(r) for r in rows] == [("gpt-a", 3, 16, 22, 38), ("gpt-b", 1, 7, 3, 10)]


def check_registered_versions(rows: list[Row], logged: Logged) -> None:
    assert [tuple(r) for r in rows] == [
        ("mnist-model", 1, "None", "", logged.runs["lr-0.01"]),
        ("mnist-model", 2, "None", "best,champion", None),
    ]


CHECKS: dict[str, Callable[[list[Row], Logged], None]] = {
    "top_k_runs": check_top_k_runs,
    "two_runs_side_by_side": check_two_runs_side_by_side,
    "downsample_long_metric": check_downsample_long_metric,
    "metric_over_time_grafana": check_metric_over_time_grafana,
    "span_latency_percentiles": check_span_latency_percentiles,
    "error_rate_over_time": check_error_rate_over_time,
    "token_usage_per_model": check_token_usage_per_model,
    "best_run_per_experiment": check_best_run_per_experiment,
    "loss_curves": check_loss_curves,
    "param_sweep": check_param_sweep,
    "runs_per_status": check_runs_per_status,
    "registered_versions": check_registered_versions,
}


def test_every_example_has_a_check() -> None:
    assert set(sql_examples()) == set(CHECKS)


def test_sql_examples(gateway: Gateway, mlflow_client: Any) -> None:
    logged = log_sweep(mlflow_client)
    logged.experiments[TRACE_EXPERIMENT] = log_traces(gateway.url, mlflow_client)
    for name, sql in sql_examples().items():
        rows = gateway.runtime.tables.query(sql)
        CHECKS[name](rows, logged)
