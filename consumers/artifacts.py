"""Artifact sink: artifact events → object storage (inline bytes) and the ``artifacts`` index table.

Guarantee: at-least-once; object writes and deletes are idempotent by key and index rows are
versioned by log offset, so a replay leaves the same objects and one visible index row per path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast

from consumers.sink import Event, Sink
from schemas.events import ARTIFACT, ArtifactEvent
from trackstream.objects import ObjectStore
from trackstream.tables import TableStore


class ArtifactSink(Sink):
    name = "artifacts"
    family = ARTIFACT

    def __init__(self, tables: TableStore, objects: ObjectStore) -> None:
        self._tables = tables
        self._objects = objects

    def rows(self, event: Event) -> int:
        return 1

    def write(self, events: Sequence[Event]) -> None:
        cols: dict[str, list[Any]] = defaultdict(list)
        for event in events:
            r = cast(ArtifactEvent, event.data)
            if r.op == "DELETE":
                self._objects.delete(r.path)
            elif r.content is not None:
                self._objects.put(r.path, r.content)
            cols["path"].append(r.path)
            cols["size"].append(r.size)
            cols["sha256"].append(r.sha256)
            cols["time"].append(r.time)
            cols["deleted"].append(1 if r.op == "DELETE" else 0)
            cols["_version"].append(event.message.offset)
        if cols:
            self._tables.insert("artifacts", cols)
