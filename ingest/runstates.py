"""The gateway's own view of which runs exist and whether they are active, kept without the stores.

Write paths check "the run exists and is active" on every request. Asking ClickHouse made metric writes
depend on the database the log is meant to buffer: with ClickHouse down every log-batch answered 503.
The view answers from memory instead. It learns a run's state from

1. this gateway's own metadata writes, as soon as the log acknowledged them (:meth:`RunStates.observe`,
   called by the event writer);
2. a tail of the metadata topic (:class:`~trackstream.log.base.LogTail`, no consumer group), applied in
   offset order on a supervised thread, so a delete or restore through any replica is seen within the
   tail's lag;
3. the store, on a miss, after the read barrier (:meth:`RunStates.learn`); such an answer never replaces
   what the log said.

Each entry carries the log offset of the event it came from. A run's events share one partition (they
are keyed by run id), so a lower offset is an older state and is ignored: the tail replaying the
gateway's own create after its own delete does not bring the run back. Events are read field by field —
``run_id``, ``experiment_id``, ``lifecycle_stage`` — and an absent field leaves the entry unchanged, so
field-level patches read as well as whole states.

Experiment changes are not applied as states: an ``ExperimentState`` may be refused by the sink (a
duplicate name), so the view only forgets what it learned of that experiment (below); no run write depends
on an experiment (deleting one writes a ``RunState`` delete for each of its runs).

If the tail thread dies the view stops answering (every lookup is a miss, so the store decides, as
before) and :meth:`RunStates.healthy` says so.

**Param decisions.** The tail applies the metadata topic in offset order, so it can decide what the
metadata sink decides (params are immutable) with the same pure rule (``schemas.rules``), against the
params it saw: the gateway answers a param write once its tail passed the event (:meth:`decision`), with
no store round trip, so param writes keep being acknowledged while ClickHouse is down. It decides only for
runs whose whole history it holds: runs whose create (a ``RunState`` without ``changed``) its tail applied
— every later event of such a run is in the same partition after it, and the tail reads every record
produced after it was opened. Any other run (created before this gateway started, forgotten past the
bound, or after a gap in the tail's offsets) is undecided here and the sink's recorded decision answers,
as before. A param costs the view a dict slot (63 bytes measured with tracemalloc, see
``tests/runview/test_runstates.py``) plus its key and value strings; a run's params go when the run is
forgotten.

**Experiments for run creation.** ``runs/create`` needs the experiment's stage and artifact location.
The view remembers what the store answered (:meth:`learn_experiment`) and forgets an experiment on any
change to it that the log shows (its own writes or the tail), so the next create reads the store again;
an answer read while a change was being applied is not kept.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
from collections.abc import Mapping
from typing import Any

from schemas import codec, rules
from schemas import events as ev
from schemas.decisions import Decision
from trackstream.log import LogTail, Partition

log = logging.getLogger(__name__)

ACTIVE, DELETED = "active", "deleted"
STORE = -1  # offset of an entry learned from the store: any event from the log is newer
TAIL_POLL_SECONDS = 0.5
TAIL_MAX_RECORDS = 5_000
# About 215 bytes a run (measured with tracemalloc: dict slot, entry tuple, the run id string). Past this
# many, the oldest-learned tenth is dropped; a dropped run is read from the store again on its next write
# (after the barrier, so the store then holds everything the log said about it).
MAX_RUNS = 1_000_000
# Decisions the tail made, kept until their gateway reads them (one pops its own); other replicas' events
# are never read here, so past this many the oldest tenth goes (a gateway that comes too late asks the sink).
MAX_DECISIONS = 100_000
MAX_EXPERIMENTS = 100_000


class RunStates:
    """run_id -> (experiment_id, lifecycle_stage, offset). Lookups are a dict read, no lock: entries are
    replaced whole (a tuple), and writers (the tail thread, request threads) take ``_lock``."""

    def __init__(self, tail: LogTail | None = None, max_runs: int = MAX_RUNS) -> None:
        self._max_runs = max_runs
        self._runs: dict[str, tuple[str | None, str, int]] = {}
        self._lock = threading.Lock()
        self._applied_to = threading.Condition(self._lock)  # notified when the tail's positions advance
        # runs whose whole history the tail applied: their params (key -> value), as the sink holds them
        self._params: dict[str, dict[str, str]] = {}
        self._decisions: dict[tuple[Partition, int], Decision] = {}
        self._positions: dict[Partition, int] = {}  # per partition, the next offset the tail applies
        # experiment id -> (lifecycle_stage, artifact_location) as the store answered; ``_exp_changes``
        # counts the experiment changes the log showed, so an answer that raced one is not kept
        self._experiments: dict[str, tuple[str, str]] = {}
        self._exp_changes = 0
        self._tail = tail
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: str | None = None  # why the view stopped, once it has
        self.applied = 0  # events applied from the tail

    # -- lookups (hot path) --
    def stage(self, run_id: str) -> str | None:
        """The run's lifecycle stage as last seen, or None when unknown (or the view is unhealthy)."""
        entry = self._runs.get(run_id)
        if entry is None or self.error is not None:
            return None
        return entry[1]

    def is_active(self, run_id: str) -> bool:
        entry = self._runs.get(run_id)
        return entry is not None and entry[1] == ACTIVE and self.error is None

    def experiment_of(self, run_id: str) -> str | None:
        """The run's experiment as last seen (a run never moves), or None when unknown. For permission checks."""
        entry = self._runs.get(run_id)
        return None if entry is None or self.error is not None else entry[0]

    def __len__(self) -> int:
        return len(self._runs)

    # -- feeding --
    def observe(self, kind: str, body: Mapping[str, Any], offset: int) -> None:
        """Apply one metadata event (``kind`` as ``RunState`` or ``trackstream.RunState``) logged at
        ``offset`` of its run's partition. An experiment change makes the view forget that experiment;
        other kinds are ignored."""
        short = kind.rsplit(".", 1)[-1]
        if short == "ExperimentState":
            self.forget_experiment(str(body.get("experiment_id")))
            return
        if short != "RunState":
            return
        run_id = body.get("run_id")
        if not run_id:
            return
        experiment_id, stage = body.get("experiment_id"), body.get("lifecycle_stage")
        changed = body.get("changed")
        if changed is not None:  # metadata.v3 field-level patch: fields it does not set carry stale values
            experiment_id = experiment_id if "experiment_id" in changed else None
            stage = stage if "lifecycle_stage" in changed else None
        with self._lock:
            old = self._runs.get(run_id)
            if old is not None:
                if offset <= old[2]:
                    return
                experiment_id = experiment_id if experiment_id is not None else old[0]
                stage = stage or old[1]
            if not stage:
                return  # a patch of a run never seen whole: its stage is still unknown
            self._runs[run_id] = (_intern(experiment_id), _stage(stage), offset)
            self._bound()

    def learn(self, run_id: str, experiment_id: str | None, stage: str) -> None:
        """What the store answered after the barrier. Kept only if the log has not said more already."""
        with self._lock:
            if run_id not in self._runs:
                self._runs[run_id] = (_intern(experiment_id), _stage(stage), STORE)
                self._bound()

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def _bound(self) -> None:
        """Under ``_lock``: drop the oldest-learned tenth once past ``max_runs`` (with their params: such a
        run's params are decided by the sink again)."""
        if len(self._runs) > self._max_runs:
            for run_id in list(itertools.islice(self._runs, max(1, self._max_runs // 10))):
                del self._runs[run_id]
                self._params.pop(run_id, None)

    # -- experiments (runs/create) --
    def experiment(self, experiment_id: str) -> tuple[str, str] | None:
        """(lifecycle_stage, artifact_location) as last read from the store, None when not known."""
        entry = self._experiments.get(experiment_id)
        return None if self.error is not None else entry

    def experiment_changes(self) -> int:
        """Take this before a store read of an experiment; pass it to :meth:`learn_experiment`."""
        return self._exp_changes

    def learn_experiment(self, experiment_id: str, stage: str, artifact_location: str, since: int) -> None:
        """Remember the store's answer, unless the log showed an experiment change since ``since``."""
        with self._lock:
            if self._exp_changes == since:
                if len(self._experiments) >= MAX_EXPERIMENTS:
                    self._experiments.clear()
                self._experiments[experiment_id] = (_stage(stage), artifact_location)

    def forget_experiment(self, experiment_id: str) -> None:
        with self._lock:
            self._exp_changes += 1
            self._experiments.pop(experiment_id, None)

    # -- decisions (param writes) --
    def decision(self, partition: Partition, offset: int, timeout: float) -> Decision | None:
        """The view's decision on the event at ``offset`` of ``partition``, once its tail applied it.

        None when the view does not decide it: not a param event of a run whose whole history the view
        holds, or the view stopped (the sink's recorded decision answers then). Raises ``TimeoutError``
        when the tail has not reached the event within ``timeout`` (the view is behind)."""
        with self._applied_to:
            if not self._applied_to.wait_for(
                lambda: self.error is not None or self._positions.get(partition, -1) > offset, timeout
            ):
                raise TimeoutError(
                    f"the gateway's log view has not reached {partition.topic}[{partition.index}]@{offset}"
                )
            if self.error is not None:
                return None
            return self._decisions.pop((partition, offset), None)

    def _apply(self, partition: Partition, offset: int, event: ev.Event | None) -> None:
        """The tail thread: one metadata event, in offset order within its partition."""
        with self._applied_to:
            expected = self._positions.get(partition)
            if expected is not None and offset != expected:
                # records skipped (a tail behind retention) or read twice: the params held may miss events
                log.warning("run-state view: %s offsets jump %d -> %d; param decisions go to the sink", partition,
                            expected, offset)  # fmt: skip
                self._params.clear()
            if isinstance(event, ev.RunState) and event.changed is None and event.run_id not in self._params:
                self._params[event.run_id] = {}  # its create: the tail sees all of the run from here
            elif (
                isinstance(event, ev.RunData) and event.params and (held := self._params.get(event.run_id)) is not None
            ):
                decision, change = rules.params(_Held(event.run_id, held), event)
                held.update(change)
                if len(self._decisions) >= MAX_DECISIONS:
                    for position in list(itertools.islice(self._decisions, MAX_DECISIONS // 10)):
                        del self._decisions[position]
                self._decisions[(partition, offset)] = decision
            self._positions[partition] = offset + 1
            self._applied_to.notify_all()

    # -- the tail thread --
    def start(self) -> None:
        """Follow the tail on a daemon thread (no-op without a tail)."""
        if self._tail is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._follow, name="runstates-tail", daemon=True)
        self._thread.start()

    def healthy(self) -> bool:
        """False once the tail thread stopped on an error (the view then answers nothing). For /health."""
        return self.error is None

    def _follow(self) -> None:
        assert self._tail is not None
        try:
            while not self._stop.is_set():
                for message in self._tail.poll(TAIL_POLL_SECONDS, TAIL_MAX_RECORDS):
                    event: ev.Event | None = None
                    try:
                        decoded = codec.decode(message.value, message.headers)
                    except (codec.InvalidMessage, codec.NewerSchema):
                        # dead-lettered, or held by the sink until it is upgraded: the view cannot tell
                        # whether it carries params, so its run (the key) is no longer decided here
                        decoded = None
                        with self._lock:
                            self._params.pop((message.key or b"").decode(errors="replace"), None)
                    if decoded is not None and decoded.family == codec.METADATA:
                        event = decoded.event
                        record = decoded.record.get("event")
                        if isinstance(record, tuple) and len(record) == 2 and isinstance(record[1], dict):
                            self.observe(str(record[0]), record[1], message.offset)
                        self.applied += 1
                    self._apply(message.partition, message.offset, event)
        except Exception as exc:  # a dead tail must not leave a view that keeps answering stale states
            with self._applied_to:
                self.error = f"run-state tail stopped: {exc!r}"
                self._applied_to.notify_all()
            log.exception("run-state view: the metadata tail stopped; write checks fall back to the store")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=TAIL_POLL_SECONDS * 4)
        if self._tail is not None:
            self._tail.close()


class _Held:
    """One run's params as the ``schemas.rules.State`` the param rule reads (no experiments needed)."""

    __slots__ = ("_held", "_run_id")

    def __init__(self, run_id: str, held: dict[str, str]) -> None:
        self._run_id, self._held = run_id, held

    def param(self, run_id: str, key: str) -> str | None:
        return self._held.get(key) if run_id == self._run_id else None

    def experiment(self, experiment_id: str) -> None:
        return None

    def name_holder(self, name: str) -> None:
        return None


def _intern(value: str | None) -> str | None:
    return None if value is None else sys.intern(str(value))


def _stage(value: str) -> str:
    return ACTIVE if value == ACTIVE else DELETED if value == DELETED else sys.intern(value)
