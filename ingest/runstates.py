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

Experiments are not kept: no run write depends on an experiment's state (deleting an experiment writes a
``RunState`` delete for each of its runs), and an ``ExperimentState`` create may be refused by the sink
(a duplicate name), so learning experiments from the log would invent some.

If the tail thread dies the view stops answering (every lookup is a miss, so the store decides, as
before) and :meth:`RunStates.healthy` says so.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
from collections.abc import Mapping
from typing import Any

from schemas import codec
from trackstream.log import LogTail

log = logging.getLogger(__name__)

ACTIVE, DELETED = "active", "deleted"
STORE = -1  # offset of an entry learned from the store: any event from the log is newer
TAIL_POLL_SECONDS = 0.5
TAIL_MAX_RECORDS = 5_000
# About 215 bytes a run (measured with tracemalloc: dict slot, entry tuple, the run id string). Past this
# many, the oldest-learned tenth is dropped; a dropped run is read from the store again on its next write
# (after the barrier, so the store then holds everything the log said about it).
MAX_RUNS = 1_000_000


class RunStates:
    """run_id -> (experiment_id, lifecycle_stage, offset). Lookups are a dict read, no lock: entries are
    replaced whole (a tuple), and writers (the tail thread, request threads) take ``_lock``."""

    def __init__(self, tail: LogTail | None = None, max_runs: int = MAX_RUNS) -> None:
        self._max_runs = max_runs
        self._runs: dict[str, tuple[str | None, str, int]] = {}
        self._lock = threading.Lock()
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
        ``offset`` of its run's partition. Other kinds are ignored."""
        if kind.rsplit(".", 1)[-1] != "RunState":
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
        """Under ``_lock``: drop the oldest-learned tenth once past ``max_runs``."""
        if len(self._runs) > self._max_runs:
            for run_id in list(itertools.islice(self._runs, max(1, self._max_runs // 10))):
                del self._runs[run_id]

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
                    try:
                        decoded = codec.decode(message.value)
                    except codec.InvalidMessage:
                        continue  # the metadata sink dead-letters it; nothing for the view
                    if decoded.family != codec.METADATA:
                        continue
                    event = decoded.record.get("event")
                    if isinstance(event, tuple) and len(event) == 2 and isinstance(event[1], dict):
                        self.observe(str(event[0]), event[1], message.offset)
                        self.applied += 1
        except Exception as exc:  # a dead tail must not leave a view that keeps answering stale states
            self.error = f"run-state tail stopped: {exc!r}"
            log.exception("run-state view: the metadata tail stopped; write checks fall back to the store")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=TAIL_POLL_SECONDS * 4)
        if self._tail is not None:
            self._tail.close()


def _intern(value: str | None) -> str | None:
    return None if value is None else sys.intern(str(value))


def _stage(value: str) -> str:
    return ACTIVE if value == ACTIVE else DELETED if value == DELETED else sys.intern(value)
