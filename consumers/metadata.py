"""Metadata sink: experiment and run events → ``experiments``, ``experiment_tags``, ``runs``,
``params``, ``run_tags``.

Guarantee: at-least-once writes, exactly-once as seen by readers (ReplacingMergeTree keyed by the
entity's natural key and versioned by the event's log offset; readers use FINAL).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from consumers.sink import Event, Sink
from schemas.codec import METADATA
from trackstream.errors import StoreRejected
from trackstream.tables import TableStore


class MetadataSink(Sink):
    name = "metadata"
    family = METADATA

    def __init__(self, tables: TableStore) -> None:
        self._tables = tables

    def rows(self, event: Event) -> int:
        _, body = event.decoded.record["event"]
        return 1 + len(body.get("params", ())) + len(body.get("tags", ()))

    def write(self, events: Sequence[Event]) -> None:
        tables: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))

        def add(table: str, row: dict[str, Any], version: int) -> None:
            cols = tables[table]
            for name, value in row.items():
                cols[name].append(value)
            cols["_version"].append(version)

        for event in events:
            kind, body = event.decoded.record["event"]
            version = event.message.offset
            match kind.rsplit(".", 1)[-1]:
                case "ExperimentState":
                    add("experiments", body, version)
                case "ExperimentTags":
                    for tag in body["tags"]:
                        add("experiment_tags", {"experiment_id": body["experiment_id"], **_tag(tag)}, version)
                case "RunState":
                    add("runs", body, version)
                case "RunData":
                    for param in body["params"]:
                        add("params", {"run_id": body["run_id"], **param}, version)
                    for tag in body["tags"]:
                        add("run_tags", {"run_id": body["run_id"], **_tag(tag)}, version)
                case other:
                    raise StoreRejected(f"metadata sink does not know event type {other}")
        for table, cols in tables.items():
            self._tables.insert(table, cols)


def _tag(tag: dict[str, Any]) -> dict[str, Any]:
    return {"key": tag["key"], "value": tag["value"], "deleted": 1 if tag["deleted"] else 0}
