"""A run's inputs (datasets, models) and outputs (models), and the dataset search of the UI."""

from __future__ import annotations

from typing import Any

from ingest import requests as r
from ingest import validation as v
from ingest.auth.access import EDIT, READ, Access
from ingest.endpoint import Endpoint, Reads
from ingest.errors import invalid
from ingest.handlers.common import int_or, str_list
from ingest.handlers.context import Context
from ingest.handlers.entities import active_run
from schemas.events import ModelOutput, RunInputs, RunOutputs, from_dict

MAX_EXPERIMENT_IDS_PER_DATASET_SEARCH = 20
MAX_DATASET_SUMMARIES = 1000


def log_inputs(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    run_id = str(v.required(p, "run_id"))
    datasets = [_dataset_input(d) for d in v.array_field(p, "datasets")]
    model_ids = [str(v.required(m if isinstance(m, dict) else {}, "model_id")) for m in v.array_field(p, "models")]
    info = active_run(ctx, run_id)
    fresh: dict[tuple[str, str], dict[str, Any]] = {}
    for d in datasets:  # MLflow keeps the first input of a (name, digest) and ignores repeats; the
        fresh.setdefault((d["name"], d["digest"]), d)  # sink drops repeats of earlier events, in log order
    if fresh or model_ids:
        ctx.writer.emit(
            from_dict(RunInputs, {"run_id": run_id, "experiment_id": info["experiment_id"],
                                  "datasets": list(fresh.values()), "model_ids": list(dict.fromkeys(model_ids))})
        )  # fmt: skip
    return {}


def log_outputs(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    run_id = str(v.required(p, "run_id"))
    models = p.get("models")
    if not models:
        v.required({}, "models")
    outputs = [
        ModelOutput(model_id=str(v.required(m if isinstance(m, dict) else {}, "model_id")),
                    step=int_or(m.get("step"), 0) or 0)
        for m in v.array_field(p, "models")
    ]  # fmt: skip
    active_run(ctx, run_id)
    ctx.writer.emit(RunOutputs(run_id=run_id, models=outputs))
    return {}


def search_datasets(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    experiment_ids = str_list(p.get("experiment_ids"))
    if not experiment_ids:
        raise invalid("SearchDatasets request must specify at least one experiment_id.")
    if len(experiment_ids) > MAX_EXPERIMENT_IDS_PER_DATASET_SEARCH:
        raise invalid(
            f"SearchDatasets request cannot specify more than {MAX_EXPERIMENT_IDS_PER_DATASET_SEARCH} "
            f"experiment_ids. Received {len(experiment_ids)} experiment_ids."
        )
    summaries = ctx.reader.dataset_summaries(experiment_ids, MAX_DATASET_SUMMARIES)
    return {"dataset_summaries": summaries} if summaries else {}


def _dataset_input(d: Any) -> dict[str, Any]:
    dataset = d.get("dataset") if isinstance(d, dict) else None
    if not isinstance(dataset, dict):
        raise invalid("Dataset input must have a dataset associated with it.")
    out: dict[str, Any] = {}
    for field in ("name", "digest", "source_type", "source"):
        value = dataset.get(field)
        if value is None or value == "":
            raise invalid(f"Missing value for required parameter 'datasets.dataset.{field}'.")
        out[field] = str(value)
    for field in ("schema", "profile"):
        out[field] = None if dataset.get(field) is None else str(dataset[field])
    tags = []
    for t in d.get("tags") or []:
        if not isinstance(t, dict) or not t.get("key"):
            raise invalid("Missing value for required parameter 'datasets.tags.key'.")
        tags.append({"key": str(t["key"]), "value": str(t.get("value") or "")})
    out["tags"] = tags
    return out


# log-inputs and outputs name the run by run_id only (no run_uuid), as MLflow's messages do
ENDPOINTS = [
    Endpoint(
        "/runs/log-inputs",
        ("POST",),
        log_inputs,
        r.LogInputs,
        Reads.keyed("metadata", "run_id"),
        access=Access.run(EDIT),
    ),
    Endpoint(
        "/runs/outputs",
        ("POST",),
        log_outputs,
        r.LogOutputs,
        Reads.keyed("metadata", "run_id"),
        access=Access.run(EDIT),
    ),
    Endpoint(
        "/experiments/search-datasets",
        ("POST",),
        search_datasets,
        r.SearchDatasets,
        Reads.all_metadata,
        access=Access.experiment(READ, "experiment_ids"),
    ),
]
