"""The rules decided in log order, as pure functions: (what was decided before, an event) → (the decision,
the change it makes).

A decision depends only on the log prefix before the event (docs/DESIGN.md, "Decided events"), so any
reader of the log in offset order computes the same one. Two readers do: the metadata sink
(``consumers.metadata.Rules``: its state is the tables as they were before the batch, overlaid with the
batch's accepted events) and the gateway's log view (``ingest.runstates.RunStates``: its state is what its
tail of the metadata topic applied, in memory). Both call the functions here, so they cannot drift apart
(``tests/decisions/test_rules_agree.py`` feeds the same random event sequences through both).

A function here reads its :class:`State` and never changes it: the caller applies the returned change,
and only when it keeps the decision (the sink reuses a recorded decision after a replay and must still
apply the change of an accepted one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from schemas import events as ev
from schemas.decisions import ACCEPTED, Decision, refused

EXPERIMENT_COLUMNS = ("experiment_id", "name", "artifact_location", "lifecycle_stage", "creation_time",
                      "last_update_time")  # fmt: skip
ACTIVE, DELETED = "active", "deleted"
EXPERIMENT_OPS = ("create", "rename", "delete", "restore")


class UnknownChange(ValueError):
    """An experiment ``op`` no rule knows (a newer producer, or a corrupt event): no decision exists."""


class State(Protocol):
    """What was decided before the event, as the rules read it."""

    def param(self, run_id: str, key: str) -> str | None:
        """The value the run's param holds, None if it was never logged."""
        ...

    def experiment(self, experiment_id: str) -> Mapping[str, Any] | None:
        """The experiment's row (``EXPERIMENT_COLUMNS``), None if it does not exist."""
        ...

    def name_holder(self, name: str) -> str | None:
        """The id of the experiment (active or deleted) holding ``name``, None if the name is free."""
        ...


def decided(event: ev.Event) -> bool:
    """Whether an event carries a rule, i.e. gets a decision (a row in ``decisions``)."""
    return (isinstance(event, ev.ExperimentState) and event.op is not None) or (
        isinstance(event, ev.RunData) and bool(event.params)
    )


# -- params: a run's events are in one partition (key run_id), so a run's params are decided in one order --
def params(state: State, event: ev.RunData) -> tuple[Decision, dict[str, str]]:
    """Every key is new or holds the same value, else the whole event (its tags too) is refused with the
    stock server's message. Returns the decision and the params it sets (key → value)."""
    run_id = event.run_id
    for param in event.params:
        old = state.param(run_id, param.key)
        if old is not None and old != param.value:
            return refused(
                "INVALID_PARAMETER_VALUE",
                f"Changing param values is not allowed. Param with key='{param.key}' was already logged "
                f"with value='{old}' for run ID='{run_id}'. Attempted logging new value '{param.value}'.",
            ), {}
    return ACCEPTED, {p.key: p.value for p in event.params}


def param_change(event: ev.RunData) -> dict[str, str]:
    """The params an accepted event sets (for a decision reused from the ``decisions`` table)."""
    return {p.key: p.value for p in event.params}


# -- experiments: every ExperimentState is in one partition (key "experiments"), so names are decided
# against every experiment in one order --
def experiment(state: State, event: ev.ExperimentState) -> tuple[Decision, dict[str, Any] | None]:
    """The decision on an experiment change and the experiment's row after it (None: nothing to write,
    a refusal or a rename to the name it has). Raises :class:`UnknownChange` for an unknown ``op``."""
    decision = check_experiment(state, event)
    return decision, (experiment_row(state, event) if decision.ok else None)


def check_experiment(state: State, event: ev.ExperimentState) -> Decision:
    op, exp_id = event.op, event.experiment_id
    current = state.experiment(exp_id)
    if op is None:
        return ACCEPTED
    if op == "create":
        if current is not None or state.name_holder(event.name) is not None:
            return refused("RESOURCE_ALREADY_EXISTS", f"Experiment(name={event.name}) already exists.")
        return ACCEPTED
    if op not in EXPERIMENT_OPS:
        raise UnknownChange(f"unknown experiment change {op!r}")
    if current is None:
        return refused("RESOURCE_DOES_NOT_EXIST", f"No Experiment with id={exp_id} exists")
    if op == "rename":
        if current["lifecycle_stage"] != ACTIVE:
            return refused("INVALID_STATE", "Cannot rename a non-active experiment.")
        holder = state.name_holder(event.name)
        if holder is not None and holder != exp_id:
            # the stock server's SQL store answers a rename onto a taken name with its unique-constraint failure
            return refused("BAD_REQUEST", f"Experiment(name={event.name}) already exists.")
        return ACCEPTED
    if current["lifecycle_stage"] != (ACTIVE if op == "delete" else DELETED):
        return refused("RESOURCE_DOES_NOT_EXIST", f"No Experiment with id={exp_id} exists")
    return ACCEPTED


def experiment_row(state: State, event: ev.ExperimentState) -> dict[str, Any] | None:
    """The row an accepted change leaves: a create (or an undecided v1/v2 state) the event's row; a
    rename, delete or restore only its column (and ``last_update_time``) over the current row."""
    row = {k: getattr(event, k) for k in EXPERIMENT_COLUMNS}
    current = state.experiment(event.experiment_id)
    if event.op in ("rename", "delete", "restore") and current is not None:
        if event.op == "rename" and current["name"] == event.name:
            return None
        changed = ("name",) if event.op == "rename" else ("lifecycle_stage",)
        row = {**current, **{k: getattr(event, k) for k in (*changed, "last_update_time")}}
    return row
