"""Every ```sql block of docs/SQL.md runs, in both modes (chDB 26 embedded; the ClickHouse server of the
`clickhouse_url` fixture in Kafka mode), on data logged through the gateway, and answers what it should."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
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


def check_registered_versions(rows: list[Row], logged: Logged) -> None:
    assert [tuple(r) for r in rows] == [
        ("mnist-model", 1, "None", "", logged.runs["lr-0.01"]),
        ("mnist-model", 2, "None", "best,champion", None),
    ]


CHECKS: dict[str, Callable[[list[Row], Logged], None]] = {
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
    for name, sql in sql_examples().items():
        rows = gateway.runtime.tables.query(sql)
        CHECKS[name](rows, logged)
