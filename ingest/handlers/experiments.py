"""Experiments: create, read, search, rename, delete/restore (with their runs), tags.

Every experiment change is decided by the metadata sink in log order (docs/DESIGN.md, "Decided
events"); the checks here only answer early.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from ingest import requests as r
from ingest import validation as v
from ingest.auth.access import EDIT, EXPERIMENT_NAME, MANAGE, READ, Access
from ingest.endpoint import EXPERIMENTS_KEY, Endpoint, Reads
from ingest.errors import MlflowError, invalid, not_found
from ingest.handlers.common import ACTIVE, DEFAULT_EXPERIMENT_ID, DELETED, VIEW_TYPES, now_ms, str_list, tag
from ingest.handlers.context import Context
from ingest.handlers.entities import active_experiment, decide_experiment, experiment, set_run_stage
from ingest.paging import page_offset, page_token
from schemas.events import ExperimentTags, Tag
from trackstream.reads import search

log = logging.getLogger(__name__)


def ensure_default_experiment(ctx: Context) -> None:
    """Create experiment 0 ("Default") unless it exists; called once when a gateway starts.

    With the metadata consumers behind or not running yet (another worker's or replica's create may be
    in the log, unapplied), whether it exists is unknown: the create is produced anyway, and the sink
    refuses a second one in log order. Waiting for them instead failed the worker's start-up after the
    read-barrier timeout, and its restarts again, for as long as they were away."""
    try:
        ctx.wait("metadata", [EXPERIMENTS_KEY])
        exists = ctx.reader.experiment(DEFAULT_EXPERIMENT_ID) is not None
    except MlflowError as exc:
        if exc.error_code != "TEMPORARILY_UNAVAILABLE":
            raise
        exists = False
    if not exists:
        t = now_ms()
        try:
            decide_experiment(
                ctx,
                "create",
                {"experiment_id": DEFAULT_EXPERIMENT_ID, "name": "Default",
                 "artifact_location": f"mlflow-artifacts:/{DEFAULT_EXPERIMENT_ID}",
                 "lifecycle_stage": ACTIVE, "creation_time": t, "last_update_time": t},
            )  # fmt: skip
        except MlflowError as exc:
            if exc.error_code == "TEMPORARILY_UNAVAILABLE":
                # the metadata consumers are not running yet: the event is in the log and is decided
                # when they start, so the gateway need not wait for them
                log.warning("default experiment: %s", exc.message)
            elif exc.error_code != "RESOURCE_ALREADY_EXISTS":  # another replica created it first
                raise


def create_experiment(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    name = v.experiment_name(p.get("name"))
    tags = [tag(t, v.MAX_EXPERIMENT_TAG_VAL_LENGTH) for t in p.get("tags") or []]
    experiment_id = str(random.randint(1, 2**53))
    t = now_ms()
    # name uniqueness is decided by the metadata sink in log order, not checked here
    decide_experiment(
        ctx,
        "create",
        {"experiment_id": experiment_id, "name": name,
         "artifact_location": p.get("artifact_location") or f"mlflow-artifacts:/{experiment_id}",
         "lifecycle_stage": ACTIVE, "creation_time": t, "last_update_time": t},
    )  # fmt: skip
    if tags:
        ctx.writer.emit(ExperimentTags(experiment_id=experiment_id, tags=[Tag(**t) for t in tags]))
    return {"experiment_id": experiment_id}


def get_experiment(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    return {"experiment": experiment(ctx, str(v.required(p, "experiment_id")))}


def get_experiment_by_name(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    name = v.required(p, "experiment_name")
    exp = ctx.reader.experiment_by_name(name)
    if exp is None:
        raise not_found(f"Could not find experiment with name '{name}'")
    return {"experiment": exp}


def search_experiments(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """Parsed and checked before the barrier (``ready``); filter, order and page run in ClickHouse."""
    view = VIEW_TYPES.get(str(p.get("view_type") or "ACTIVE_ONLY"))
    if view is None:
        raise invalid(f"Invalid view_type '{p.get('view_type')}'")
    limit = v.max_results(p.get("max_results"), 1000, v.MAX_RESULTS_SEARCH_EXPERIMENTS)
    offset = page_offset(p.get("page_token"))
    try:
        page = ctx.reader.search_experiments(
            view, p.get("filter"), str_list(p.get("order_by")), offset, limit, ready=lambda: ctx.wait("metadata")
        )
    except search.SearchError as exc:
        raise invalid(str(exc)) from None
    out: dict[str, Any] = {"experiments": page.items}
    if page.next_offset is not None:
        out["next_page_token"] = page_token(page.next_offset)
    return out


def _set_stage(ctx: Context, experiment_id: str, old: str, new: str) -> None:
    exp = experiment(ctx, experiment_id)
    if exp["lifecycle_stage"] != old:  # answered early; the sink decides again in log order
        raise not_found(f"No Experiment with id={experiment_id} exists")
    exp["lifecycle_stage"] = new
    exp["last_update_time"] = now_ms()
    decide_experiment(ctx, "delete" if new == DELETED else "restore", exp)
    for info in ctx.reader.run_ids([experiment_id], (ACTIVE, DELETED)):
        if info["lifecycle_stage"] != new:
            set_run_stage(ctx, info, new)


def delete_experiment(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    _set_stage(ctx, str(v.required(p, "experiment_id")), ACTIVE, DELETED)
    return {}


def restore_experiment(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    _set_stage(ctx, str(v.required(p, "experiment_id")), DELETED, ACTIVE)
    return {}


def update_experiment(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    experiment_id = str(v.required(p, "experiment_id"))
    new_name = v.experiment_name(v.required(p, "new_name"))
    exp = experiment(ctx, experiment_id)
    if exp["lifecycle_stage"] != ACTIVE:
        raise MlflowError("Cannot rename a non-active experiment.", "INVALID_STATE")
    if new_name == exp["name"]:
        return {}
    exp["name"] = new_name
    exp["last_update_time"] = now_ms()
    decide_experiment(ctx, "rename", exp)  # a taken name is refused by the sink, in log order
    return {}


def set_experiment_tag(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    experiment_id = str(v.required(p, "experiment_id"))
    key = v.key_name("tag", v.required(p, "key"))
    t = tag({"key": key, "value": p.get("value")}, v.MAX_EXPERIMENT_TAG_VAL_LENGTH)
    active_experiment(ctx, experiment_id)
    ctx.writer.emit(ExperimentTags(experiment_id=experiment_id, tags=[Tag(**t)]))
    return {}


def delete_experiment_tag(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    experiment_id = str(v.required(p, "experiment_id"))
    key = str(v.required(p, "key"))
    exp = active_experiment(ctx, experiment_id)
    if key not in {t["key"] for t in exp["tags"]}:
        raise not_found(f"No tag with name: {key} in experiment with id {experiment_id}")
    ctx.writer.emit(ExperimentTags(experiment_id=experiment_id, tags=[Tag(key=key, value="", deleted=True)]))
    return {}


ONE = Reads.experiment()
ENDPOINTS = [
    Endpoint(
        "/experiments/create",
        ("POST",),
        create_experiment,
        r.CreateExperiment,
        access=Access.creates("experiment", "experiment_id"),
    ),
    Endpoint("/experiments/get", ("GET",), get_experiment, r.ExperimentId, ONE, access=Access.experiment(READ)),
    Endpoint(
        "/experiments/get-by-name",
        ("GET",),
        get_experiment_by_name,
        r.GetExperimentByName,
        Reads.all_metadata,
        access=Access(EXPERIMENT_NAME, READ, ("experiment_name",)),
    ),
    Endpoint(
        "/experiments/search",
        ("GET", "POST"),
        search_experiments,
        r.SearchExperiments,
        access=Access.search("experiments"),
    ),  # waits itself
    Endpoint(
        "/experiments/update", ("POST",), update_experiment, r.UpdateExperiment, ONE, access=Access.experiment(EDIT)
    ),
    Endpoint(
        "/experiments/delete", ("POST",), delete_experiment, r.ExperimentId, ONE, access=Access.experiment(MANAGE)
    ),
    Endpoint(
        "/experiments/restore", ("POST",), restore_experiment, r.ExperimentId, ONE, access=Access.experiment(MANAGE)
    ),
    Endpoint(
        "/experiments/set-experiment-tag",
        ("POST",),
        set_experiment_tag,
        r.SetExperimentTag,
        ONE,
        access=Access.experiment(EDIT),
    ),
    Endpoint(
        "/experiments/delete-experiment-tag",
        ("POST",),
        delete_experiment_tag,
        r.DeleteExperimentTag,
        ONE,
        access=Access.experiment(EDIT),
    ),
]
