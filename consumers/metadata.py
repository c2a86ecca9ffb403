"""Metadata sink: experiment, run and logged-model events → ``experiments``, ``experiment_tags``,
``runs``, ``params``, ``run_tags``, ``logged_models``, ``logged_model_params``, ``logged_model_tags``,
``run_dataset_inputs``, ``run_model_inputs``, ``run_model_outputs``.

Guarantee: at-least-once writes, exactly-once as seen by readers (ReplacingMergeTree keyed by the
entity's natural key and versioned by the event's log offset; readers use FINAL).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson

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
        return 1 + sum(len(body.get(k, ())) for k in ("params", "tags", "datasets", "model_ids", "models"))

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
                case "LoggedModelState":
                    add("logged_models", body, version)
                case "LoggedModelData":
                    for param in body["params"]:
                        add("logged_model_params", {"model_id": body["model_id"], **param}, version)
                    for tag in body["tags"]:
                        add("logged_model_tags", {"model_id": body["model_id"], **_tag(tag)}, version)
                case "RunInputs":
                    for ds in body["datasets"]:
                        row = {"run_id": body["run_id"], "experiment_id": body["experiment_id"], **ds}
                        row["tags"] = orjson.dumps(ds["tags"]).decode()
                        add("run_dataset_inputs", row, version)
                    for model_id in body["model_ids"]:
                        add("run_model_inputs", {"run_id": body["run_id"], "model_id": model_id}, version)
                case "RunOutputs":
                    for out in body["models"]:
                        add("run_model_outputs", {"run_id": body["run_id"], **out}, version)
                case other:
                    raise StoreRejected(f"metadata sink does not know event type {other}")
        for table, cols in tables.items():
            self._tables.insert(table, cols)


def _tag(tag: dict[str, Any]) -> dict[str, Any]:
    return {"key": tag["key"], "value": tag["value"], "deleted": 1 if tag["deleted"] else 0}
