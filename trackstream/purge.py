"""``trackstream gc``: permanently delete runs and experiments that were deleted (soft, lifecycle stage
``deleted``) more than a given time ago — their rows in every table and their artifact objects — as
``mlflow gc`` does for the stock server's stores.

Semantics follow ``mlflow gc``: without ids, every deleted run whose ``deleted_time`` is older than the
age and every deleted experiment whose ``last_update_time`` is (with all of its runs, whatever their
stage, and its logged models); with ``--run-ids``/``--experiment-ids``, exactly those, each of which
must be deleted and old enough, else nothing is purged and the command says which one is not.

It acts on the stores directly, not through the log, in both modes. Why: the tables are a projection
of the log, and a purge is the one operation that must make data *leave* the projection; an event on the
topics would stay in them for their retention and a ``trackstream replay`` would apply the runs'
events again before the purge event, so purging is about the stores whatever carries it. What this
means for operators: purge after the topics' retention has dropped the purged runs' events (the usual
case for an age of days), or expect a ``trackstream replay`` to bring back runs whose events are still
retained (as deleted runs: their deletion is in the log too). A late event for a purged run (a client
still logging to it) recreates rows of a run that no longer has a ``runs`` row; reads never show them
(every read starts from the ``runs`` table) and the next gc of that run id is a no-op for ``runs``.

Rows go with ``ALTER TABLE … DELETE`` (a mutation; ClickHouse 18.16 and chDB alike) and the command
waits until the mutations finished; objects are deleted by the keys of the ``artifacts`` index under
the run's (or experiment's) artifact root.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field

from trackstream.objects import ObjectStore
from trackstream.tables import TableStore

log = logging.getLogger(__name__)

PROXY_SCHEME = "mlflow-artifacts"
# tables keyed by run id; by experiment id; by logged model id
RUN_TABLES = (
    "runs", "params", "run_tags", "metrics", "metric_buckets", "metric_spans", "latest_metrics", "metric_latest",
    "run_dataset_inputs", "run_model_inputs", "run_model_outputs",
)  # fmt: skip
# Tables that name a run but outlive it, as with MLflow's gc: a model version's source run, a logged model's
# metrics, a trace's link to its run.
RUN_REFERENCES = ("model_versions", "logged_model_metrics", "trace_runs")
EXPERIMENT_TABLES = ("experiments", "experiment_tags")
MODEL_TABLES = ("logged_models", "logged_model_params", "logged_model_tags", "logged_model_metrics")

_AGE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class PurgeError(Exception):
    """A named run or experiment cannot be purged (not deleted, too recent, unknown); nothing was."""


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``1d2h30m``, ``90s`` (as ``mlflow gc --older-than``) → seconds."""
    m = _AGE.match(text.strip())
    if not text.strip() or m is None:
        raise ValueError(f"--older-than {text!r}: expected a duration such as 30d, 12h, 1d2h30m or 90s")
    d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    return float(((d * 24 + h) * 60 + mi) * 60 + s)


@dataclass
class GcResult:
    runs: list[str] = field(default_factory=list)
    experiments: list[str] = field(default_factory=list)
    objects: int = 0


def _root(artifact_uri: str) -> str | None:
    parsed = urllib.parse.urlparse(artifact_uri)
    return parsed.path.strip("/") if parsed.scheme == PROXY_SCHEME else None


def _select(tables: TableStore, older_than: float, run_ids: Sequence[str], experiment_ids: Sequence[str],
            now_ms: int) -> tuple[dict[str, str], list[tuple[str, str]]]:  # fmt: skip
    """(run id → artifact uri) and [(experiment id, artifact location)] to purge."""
    cutoff = now_ms - int(older_than * 1000)
    runs = {
        r[0]: (r[1], r[2], r[3])
        for r in tables.query("SELECT run_id, lifecycle_stage, deleted_time, artifact_uri FROM runs FINAL")
    }
    exps = {
        r[0]: (r[1], r[2], r[3])
        for r in tables.query(
            "SELECT experiment_id, lifecycle_stage, last_update_time, artifact_location FROM experiments FINAL"
        )
    }
    chosen_runs: dict[str, str] = {}
    chosen_exps: list[tuple[str, str]] = []
    if not run_ids and not experiment_ids:
        chosen_runs = {k: v[2] for k, v in runs.items() if v[0] == "deleted" and (v[1] or 0) <= cutoff}
        chosen_exps = [(k, v[2]) for k, v in exps.items() if v[0] == "deleted" and v[1] <= cutoff]
    for run_id in run_ids:
        if run_id not in runs:
            raise PurgeError(f"run {run_id} does not exist")
        stage, deleted_time, uri = runs[run_id]
        if stage != "deleted":
            raise PurgeError(f"run {run_id} is not in the deleted lifecycle stage; only deleted runs can be purged")
        if (deleted_time or 0) > cutoff:
            raise PurgeError(f"run {run_id} was deleted less than the required age ago")
        chosen_runs[run_id] = uri
    for exp_id in experiment_ids:
        if exp_id not in exps:
            raise PurgeError(f"experiment {exp_id} does not exist")
        stage, updated, location = exps[exp_id]
        if stage != "deleted":
            raise PurgeError(
                f"experiment {exp_id} is not in the deleted lifecycle stage; only deleted ones can be purged"
            )
        if updated > cutoff:
            raise PurgeError(f"experiment {exp_id} was deleted less than the required age ago")
        chosen_exps.append((exp_id, location))
    if chosen_exps:
        ids = [e for e, _ in chosen_exps]
        for run_id, uri in tables.query(
            "SELECT run_id, artifact_uri FROM runs FINAL WHERE has(%(ids)s, experiment_id)", {"ids": ids}
        ):
            chosen_runs[run_id] = uri
    return chosen_runs, chosen_exps


def _delete(tables: TableStore, table: str, column: str, values: Sequence[str]) -> None:
    if values:
        tables.command(f"ALTER TABLE {table} DELETE WHERE has(%(v)s, {column})", {"v": list(values)})


def _wait_mutations(tables: TableStore, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while tables.query("SELECT count() FROM system.mutations WHERE database = currentDatabase() AND is_done = 0")[0][0]:
        if time.monotonic() > deadline:
            raise PurgeError(f"the row deletions did not finish within {timeout:.0f}s; they go on in the background")
        time.sleep(0.1)


def _delete_objects(tables: TableStore, objects: ObjectStore, roots: Sequence[str]) -> int:
    count = 0
    for root in roots:
        rows = tables.query(
            "SELECT path FROM artifacts FINAL WHERE startsWith(path, %(p)s) AND deleted = 0", {"p": root + "/"}
        )
        for (path,) in rows:
            objects.delete(path)
            count += 1
        _delete(tables, "artifacts", "path", [p for (p,) in rows])
    return count


def run_gc(
    tables: TableStore,
    objects: ObjectStore,
    older_than: float,
    run_ids: Sequence[str] = (),
    experiment_ids: Sequence[str] = (),
    now_ms: int | None = None,
) -> GcResult:
    """Purge what :func:`_select` picks: objects first (their keys come from the index), then rows."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    runs, exps = _select(tables, older_than, run_ids, experiment_ids, now)
    result = GcResult(sorted(runs), sorted(e for e, _ in exps))
    roots = [r for uri in runs.values() if (r := _root(uri))] + [r for _, loc in exps if (r := _root(loc))]
    result.objects = _delete_objects(tables, objects, roots)
    run_list = sorted(runs)
    for table in RUN_TABLES:
        _delete(tables, table, "run_id", run_list)
    exp_list = result.experiments
    if exp_list:
        models = [r[0] for r in tables.query(
            "SELECT model_id FROM logged_models FINAL WHERE has(%(ids)s, experiment_id)", {"ids": exp_list}
        )]  # fmt: skip
        for table in MODEL_TABLES:
            _delete(tables, table, "model_id", models)
        for table in EXPERIMENT_TABLES:
            _delete(tables, table, "experiment_id", exp_list)
    _wait_mutations(tables)
    for run_id in run_list:
        log.info("gc: purged run %s", run_id)
    for exp_id in exp_list:
        log.info("gc: purged experiment %s", exp_id)
    return result
