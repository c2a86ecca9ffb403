"""Reads and writes of experiments and runs that handlers of several resources need.

The reads here do not pass the barrier: the endpoint declares what it reads (``Reads``), and the
adapter waits before the handler runs. The write check (:func:`check_active`) is the exception: it
asks the run-state view first and waits only on a miss, so the hot path pays a dict lookup.
"""

from __future__ import annotations

from typing import Any

from ingest import validation as v
from ingest.errors import MlflowError, invalid, not_found
from ingest.handlers.common import ACTIVE, DELETED, now_ms, tag
from ingest.handlers.context import Context
from schemas.events import ExperimentState, Param, RunData, RunState, Tag


def experiment(ctx: Context, experiment_id: str) -> dict[str, Any]:
    """Read after ``Reads.experiment``."""
    exp = ctx.reader.experiment(str(experiment_id))
    if exp is None:
        raise not_found(f"No Experiment with id={experiment_id} exists")
    return exp


def active_experiment(ctx: Context, experiment_id: str) -> dict[str, Any]:
    exp = experiment(ctx, experiment_id)
    if exp["lifecycle_stage"] != ACTIVE:
        raise invalid(
            f"The experiment {experiment_id} must be in the 'active' state. Current state is {exp['lifecycle_stage']}."
        )
    return exp


def decide_experiment(ctx: Context, op: str, state: dict[str, Any]) -> None:
    """Emit an experiment change and wait for the metadata sink's decision (raises the refusal).

    The event carries the whole row as this gateway saw it, but the sink applies only what ``op``
    changes (a create: the row; a rename: the name; a delete/restore: the stage) to the row it holds.
    """
    row = {k: state[k] for k in ("experiment_id", "name", "artifact_location", "lifecycle_stage",
                                 "creation_time", "last_update_time")}  # fmt: skip
    ctx.writer.decide(ExperimentState(**row, op=op))


def run_info(ctx: Context, run_id: str) -> dict[str, Any]:
    """Read after ``Reads.run`` (or :func:`wait_run`)."""
    info = ctx.reader.run_info(run_id)
    if info is None:
        raise not_found(f"Run with id={run_id} not found")
    return info


def wait_run(ctx: Context, run_id: str) -> None:
    ctx.wait("metadata", [run_id])


def _not_active(run_id: str, stage: str) -> MlflowError:
    return invalid(f"The run {run_id} must be in the 'active' state. Current state is {stage}.")


def active_run(ctx: Context, run_id: str) -> dict[str, Any]:
    """Read after ``Reads.run``; the answer is remembered by the run-state view."""
    info = run_info(ctx, run_id)
    if ctx.run_states is not None:
        ctx.run_states.learn(info["run_id"], info.get("experiment_id"), info["lifecycle_stage"])
    if info["lifecycle_stage"] != ACTIVE:
        raise _not_active(run_id, info["lifecycle_stage"])
    return info


def known_active(ctx: Context, run_id: str) -> bool:
    """The run-state view knows the run is active: the write needs no further check (no thread, no store)."""
    return ctx.run_states is not None and ctx.run_states.is_active(run_id)


def check_active(ctx: Context, run_id: str) -> None:
    """The write paths' check that a run exists and is active: from the run-state view
    (``ingest.runstates``) when it knows the run (a deleted run is refused without asking the store),
    else from the store after the barrier (a miss; the answer is remembered)."""
    stage = None if ctx.run_states is None else ctx.run_states.stage(run_id)
    if stage is None:
        wait_run(ctx, run_id)
        active_run(ctx, run_id)
    elif stage != ACTIVE:
        raise _not_active(run_id, stage)


def run_state(info: dict[str, Any], changed: tuple[str, ...] | None = None) -> RunState:
    """A run's row; with ``changed`` the sink sets only those columns of the row it holds (so two
    replicas updating different fields of one run both keep theirs; RunState is never refused)."""
    state: dict[str, Any] = {k: info.get(k) for k in (
        "run_id", "experiment_id", "run_name", "user_id", "status", "start_time", "end_time",
        "artifact_uri", "lifecycle_stage", "deleted_time")}  # fmt: skip
    state["changed"] = None if changed is None else list(changed)
    return RunState(**state)


def emit_run(ctx: Context, info: dict[str, Any], changed: tuple[str, ...] | None = None) -> None:
    ctx.writer.emit(run_state(info, changed))


def emit_run_data(ctx: Context, run_id: str, params: list[dict[str, str]], tags: list[dict[str, Any]]) -> None:
    if params or tags:
        ctx.writer.emit(RunData(run_id=run_id, params=[Param(**x) for x in params], tags=[Tag(**t) for t in tags]))


def set_run_stage(ctx: Context, info: dict[str, Any], stage: str) -> None:
    info = dict(info)
    info["lifecycle_stage"] = stage
    info["deleted_time"] = now_ms() if stage == DELETED else None
    if ctx.run_states is not None:
        ctx.run_states.forget(info["run_id"])
    emit_run(ctx, info, ("lifecycle_stage", "deleted_time"))


def log_params_tags(
    ctx: Context, run_id: str, params: list[dict[str, str]], tags: list[dict[str, Any]], checked: bool = False
) -> None:
    """Params and tags as one RunData event. With params it is decided by the metadata sink, which
    refuses the whole event (its tags too) if a param already holds another value."""
    if not params and not tags:
        return
    if not checked:
        check_active(ctx, run_id)
    fresh: dict[str, str] = {}
    for param in params:  # the same key twice in one request: MLflow's answer for a changed value
        old = fresh.get(param["key"])
        if old is not None and old != param["value"]:
            raise invalid(
                f"Changing param values is not allowed. Param with key='{param['key']}' was already "
                f"logged with value='{old}' for run ID='{run_id}'. Attempted logging new value "
                f"'{param['value']}'."
            )
        fresh[param["key"]] = param["value"]
    last_tags = {t["key"]: t for t in tags}  # a key given twice: the last value wins
    event = RunData(
        run_id=run_id,
        params=[Param(key=k, value=val) for k, val in fresh.items()],
        tags=[Tag(**t) for t in last_tags.values()],
    )
    if fresh:
        ctx.writer.decide(event)
    else:
        ctx.writer.emit(event)


def run_tag(t: dict[str, Any]) -> dict[str, Any]:
    return tag(t, v.MAX_TAG_VAL_LENGTH)
