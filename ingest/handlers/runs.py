"""Runs: create, read, search, update, delete/restore, and their params and tags one at a time."""

from __future__ import annotations

import uuid
from typing import Any

from ingest import requests as r
from ingest import validation as v
from ingest.auth.access import EDIT, MANAGE, READ, Access
from ingest.endpoint import EXPERIMENTS_KEY, Endpoint, Reads
from ingest.errors import invalid, not_found
from ingest.handlers.common import (
    ACTIVE,
    DEFAULT_EXPERIMENT_ID,
    DELETED,
    RUN_NAME_TAG,
    VIEW_TYPES,
    by_key,
    generate_run_name,
    int_or,
    now_ms,
    run_id,
    str_list,
)
from ingest.handlers.context import Context
from ingest.handlers.entities import (
    active_run,
    emit_run,
    emit_run_data,
    experiment,
    log_params_tags,
    run_info,
    run_state,
    run_tag,
    set_run_stage,
    wait_run,
)
from ingest.paging import page_offset, page_token
from schemas.events import RunData, Tag
from trackstream.reads import search

RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")


def run_experiment(ctx: Context, experiment_id: str) -> str:
    """The artifact location of the experiment a new run goes to, which must be active: from the run-state
    view when it holds the experiment (no barrier, no store: runs/create is answered while ClickHouse is
    down), else from the store after the barrier (the answer is remembered)."""
    view = ctx.run_states
    known = None if view is None else view.experiment(experiment_id)
    if known is None:
        since = 0 if view is None else view.experiment_changes()
        ctx.wait("metadata", [EXPERIMENTS_KEY, experiment_id])
        exp = experiment(ctx, experiment_id)
        known = (exp["lifecycle_stage"], exp["artifact_location"])
        if view is not None and known[0] == ACTIVE:  # a deleted one is read again: a restore elsewhere shows at once
            view.learn_experiment(experiment_id, *known, since=since)
    stage, location = known
    if stage != ACTIVE:
        raise invalid(f"The experiment {experiment_id} must be in the 'active' state. Current state is {stage}.")
    return location


def create_run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    experiment_id = str(p.get("experiment_id") or DEFAULT_EXPERIMENT_ID)
    location = run_experiment(ctx, experiment_id)
    tags = {t["key"]: t["value"] for t in (run_tag(t) for t in p.get("tags") or [])}
    run_name = p.get("run_name") or tags.get(RUN_NAME_TAG) or generate_run_name()
    if p.get("run_name") and tags.get(RUN_NAME_TAG) and tags[RUN_NAME_TAG] != p["run_name"]:
        raise invalid(
            f"Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values "
            f"(run_name='{p['run_name']}', mlflow.runName='{tags[RUN_NAME_TAG]}')."
        )
    tags[RUN_NAME_TAG] = run_name
    new_id = uuid.uuid4().hex
    info = {
        "run_id": new_id, "experiment_id": experiment_id, "run_name": run_name,
        "user_id": str(p.get("user_id") or ""), "status": "RUNNING",
        "start_time": int_or(p.get("start_time"), now_ms()), "end_time": None,
        "artifact_uri": f"{location.rstrip('/')}/{new_id}/artifacts",
        "lifecycle_stage": ACTIVE, "deleted_time": None,
    }  # fmt: skip
    tag_list = [{"key": k, "value": val, "deleted": False} for k, val in tags.items()]
    ctx.writer.emit_all([run_state(info), RunData(run_id=new_id, params=[], tags=[Tag(**t) for t in tag_list])])
    info = {k: val for k, val in info.items() if val is not None}
    info["run_uuid"] = new_id
    return {
        "run": {
            "info": info,
            "data": {"tags": [{"key": t["key"], "value": t["value"]} for t in sorted(tag_list, key=by_key)]},
            "inputs": {},
            "outputs": {},
        }
    }


def delete_run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    set_run_stage(ctx, run_info(ctx, run_id(p)), DELETED)
    return {}


def restore_run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    set_run_stage(ctx, run_info(ctx, run_id(p)), ACTIVE)
    return {}


def update_run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    rid = run_id(p)
    info = active_run(ctx, rid)
    if p.get("status") is not None:
        if p["status"] not in RUN_STATUSES:
            raise invalid(f"Invalid value {p['status']} for parameter 'status' supplied.")
        info["status"] = p["status"]
    if p.get("end_time") is not None:
        info["end_time"] = int_or(p["end_time"], None)
    renamed = p.get("run_name")
    if renamed:
        info["run_name"] = renamed
    changed = tuple(f for f, given in (("status", p.get("status") is not None),
                                       ("end_time", p.get("end_time") is not None),
                                       ("run_name", bool(renamed))) if given)  # fmt: skip
    emit_run(ctx, info, changed)
    if renamed:
        emit_run_data(ctx, rid, [], [{"key": RUN_NAME_TAG, "value": renamed, "deleted": False}])
    info.pop("deleted_time", None)
    return {"run_info": {k: val for k, val in info.items() if val is not None}}


def get_run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    rid = run_id(p)
    run = ctx.reader.run(rid)
    if run is None:
        raise not_found(f"Run with id={rid} not found")
    return {"run": run}


def search_runs(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """Parsed and checked before the barrier (``ready``), so a bad filter answers 400 even while the
    consumers lag; filter, order and page run in ClickHouse (``trackstream.reads.search``)."""
    experiment_ids = [str(e) for e in p.get("experiment_ids") or []]
    view = VIEW_TYPES.get(str(p.get("run_view_type") or "ACTIVE_ONLY"))
    if view is None:
        raise invalid(f"Invalid run_view_type '{p.get('run_view_type')}'")
    limit = v.max_results(p.get("max_results"), 1000, v.MAX_RESULTS_SEARCH_RUNS)
    offset = page_offset(p.get("page_token"))

    def ready() -> None:
        ctx.wait("metadata")
        ctx.wait("metrics")

    try:
        page = ctx.reader.search_runs(
            experiment_ids, view, p.get("filter"), str_list(p.get("order_by")), offset, limit, ready
        )
    except search.SearchError as exc:
        raise invalid(str(exc)) from None
    out: dict[str, Any] = {"runs": page.items}
    if page.next_offset is not None:
        out["next_page_token"] = page_token(page.next_offset)
    return out


def log_param(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    rid = run_id(p)
    key = v.key_name("parameter", v.required(p, "key"))
    log_params_tags(ctx, rid, [{"key": key, "value": v.param_value(key, p.get("value"))}], [])
    return {}


def set_tag(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    rid = run_id(p)
    t = run_tag(p)
    log_params_tags(ctx, rid, [], [t])
    if t["key"] == RUN_NAME_TAG:
        wait_run(ctx, rid)  # mid-way: the run's row as the sink holds it, for the rename
        info = run_info(ctx, rid)
        info["run_name"] = t["value"]
        emit_run(ctx, info, ("run_name",))
    return {}


def delete_tag(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    rid = run_id(p)
    key = v.required(p, "key")
    active_run(ctx, rid)
    if key not in {t["key"] for t in ctx.reader.run_data([rid])[rid]["tags"]}:
        raise not_found(f"No tag with name: {key} in run with id {rid}")
    emit_run_data(ctx, rid, [], [{"key": key, "value": "", "deleted": True}])
    return {}


RUN = Reads.run()
ENDPOINTS = [
    # runs/create: the view, or the barrier on a miss (run_experiment)
    Endpoint(
        "/runs/create",
        ("POST",),
        create_run,
        r.CreateRun,
        access=Access.experiment(EDIT, default=DEFAULT_EXPERIMENT_ID),
    ),
    Endpoint("/runs/delete", ("POST",), delete_run, r.RunRef, RUN, access=Access.run(MANAGE)),
    Endpoint("/runs/restore", ("POST",), restore_run, r.RunRef, RUN, access=Access.run(MANAGE)),
    Endpoint("/runs/update", ("POST",), update_run, r.UpdateRun, RUN, access=Access.run(EDIT)),
    Endpoint(
        "/runs/get",
        ("GET",),
        get_run,
        r.RunRef,
        RUN + Reads.keyed("metrics", "run_id", "run_uuid"),
        access=Access.run(READ),
    ),
    Endpoint(
        "/runs/search", ("POST",), search_runs, r.SearchRuns, access=Access.search("runs")
    ),  # waits itself, once the filter parsed
    Endpoint(
        "/runs/log-parameter", ("POST",), log_param, r.LogParam, access=Access.run(EDIT)
    ),  # check_active waits on a miss only
    Endpoint("/runs/set-tag", ("POST",), set_tag, r.SetTag, access=Access.run(EDIT)),
    Endpoint("/runs/delete-tag", ("POST",), delete_tag, r.DeleteTag, RUN, access=Access.run(EDIT)),
]
