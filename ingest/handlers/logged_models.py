"""Handlers of the MLflow 3 logged-model endpoints (``/logged-models…``).

Logged-model events (``LoggedModelState``, ``LoggedModelData``) are keyed by ``model_id``, so a
model's events stay in order in one partition and reads of one model wait only for that partition
(plus the metrics topic, whose points may carry the model id). Searches wait for every partition.
"""

from __future__ import annotations

import uuid
from typing import Any

from ingest import requests as r
from ingest import validation as v
from ingest.auth.access import EDIT, MANAGE, READ, Access
from ingest.endpoint import Endpoint, Reads
from ingest.errors import MlflowError, invalid, not_found
from ingest.handlers.artifact_keys import children, proxied_root, safe_path
from ingest.handlers.common import ACTIVE, DELETED, generate_run_name, now_ms, str_list
from ingest.handlers.context import Context
from ingest.handlers.entities import experiment
from ingest.paging import page_offset, page_token
from schemas.events import LoggedModelData, LoggedModelState, Param, Tag, from_dict
from trackstream.reads import search

STATUSES = (
    "LOGGED_MODEL_STATUS_UNSPECIFIED",
    "LOGGED_MODEL_PENDING",
    "LOGGED_MODEL_READY",
    "LOGGED_MODEL_UPLOAD_FAILED",
)
SEARCH_DEFAULT_MAX_RESULTS = 50  # the SearchLoggedModels proto default the stock handler passes on
_BAD_NAME_CHARS = ("/", ":", ".", "%", '"', "'")
_STATE_FIELDS = (
    "model_id", "experiment_id", "name", "artifact_uri", "creation_timestamp_ms", "last_updated_timestamp_ms",
    "status", "status_message", "lifecycle_stage", "model_type", "source_run_id",
)  # fmt: skip


def status_name(value: Any) -> str:
    if isinstance(value, str) and value in STATUSES:
        return value
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise invalid(f"Invalid value {value!r} for parameter 'status' supplied.") from None
    if not 0 <= number < len(STATUSES):
        raise invalid(f"Invalid value {value!r} for parameter 'status' supplied.")
    return STATUSES[number]


def validate_name(name: Any) -> str | None:
    if name is None or name == "":
        return None  # the stock handler turns "" into None: a random name
    if not isinstance(name, str) or any(c in name for c in _BAD_NAME_CHARS):
        raise invalid(
            f"Invalid model name ({name!r}) provided. Model name must be a non-empty string "
            f"and cannot contain the following characters: {_BAD_NAME_CHARS}"
        )
    return name


def _state(ctx: Context, model_id: str) -> dict[str, Any]:
    """The stored row of a model, deleted or not (MLflow's writes accept deleted models). Read after
    ``MODEL``."""
    row = ctx.reader.logged_model_row(model_id)
    if row is None:
        raise not_found(f"Logged model with ID '{model_id}' not found.")
    return row


def _emit_state(ctx: Context, row: dict[str, Any]) -> None:
    ctx.writer.emit(from_dict(LoggedModelState, {k: row.get(k) for k in _STATE_FIELDS}))


def _emit_data(ctx: Context, model_id: str, params: list[dict[str, str]], tags: list[dict[str, Any]]) -> None:
    if params or tags:
        ctx.writer.emit(
            LoggedModelData(model_id=model_id, params=[Param(**x) for x in params], tags=[Tag(**t) for t in tags])
        )


def _models(ctx: Context, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    data = ctx.reader.logged_model_data([r["model_id"] for r in rows])
    return [_to_json(r, data[r["model_id"]]) for r in rows]


def _model(ctx: Context, model_id: str, allow_deleted: bool = False) -> dict[str, Any]:
    """Read after ``MODEL_AND_METRICS``."""
    row = ctx.reader.logged_model_row(model_id)
    if row is None or (row["lifecycle_stage"] == DELETED and not allow_deleted):
        raise not_found(f"Logged model with ID '{model_id}' not found.")
    return _models(ctx, [row])[0]


# -- endpoints --


def create(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    experiment_id = str(v.required(p, "experiment_id"))
    name = validate_name(p.get("name"))
    params = [_param(x) for x in v.array_field(p, "params")]
    tags = [_tag(x) for x in v.array_field(p, "tags")]
    exp = experiment(ctx, experiment_id)
    if exp["lifecycle_stage"] != ACTIVE:
        raise invalid(
            f"The experiment {experiment_id} must be in the 'active' state. Current state is {exp['lifecycle_stage']}."
        )
    model_id = f"m-{uuid.uuid4().hex}"
    created = now_ms()
    row = {
        "model_id": model_id, "experiment_id": experiment_id, "name": name or generate_run_name(),
        "artifact_uri": f"{exp['artifact_location'].rstrip('/')}/models/{model_id}/artifacts",
        "creation_timestamp_ms": created, "last_updated_timestamp_ms": created, "status": "LOGGED_MODEL_PENDING",
        "status_message": None, "lifecycle_stage": ACTIVE, "model_type": _opt_str(p.get("model_type")),
        "source_run_id": _opt_str(p.get("source_run_id")),
    }  # fmt: skip
    _emit_state(ctx, row)
    params = list({x["key"]: x for x in params}.values())
    tags = list({x["key"]: x for x in tags}.values())
    _emit_data(ctx, model_id, params, tags)
    data = {
        "tags": sorted(({"key": x["key"], "value": x["value"]} for x in tags), key=lambda x: x["key"]),
        "params": sorted(params, key=lambda x: x["key"]),
        "metrics": [],
    }
    return {"model": _to_json(row, data)}


def get(ctx: Context, p: dict[str, Any], model_id: str) -> dict[str, Any]:
    allow_deleted = str(p.get("allow_deleted", "false")).lower() == "true"
    return {"model": _model(ctx, model_id, allow_deleted)}


def finalize(ctx: Context, p: dict[str, Any], model_id: str) -> dict[str, Any]:
    status = status_name(v.required(p, "status"))
    row = _state(ctx, model_id)
    row["status"] = status
    row["last_updated_timestamp_ms"] = now_ms()
    _emit_state(ctx, row)
    data = ctx.reader.logged_model_data([model_id])[model_id]
    return {"model": _to_json(row, data)}


def delete(ctx: Context, p: dict[str, Any], model_id: str) -> dict[str, Any]:
    row = _state(ctx, model_id)
    row["lifecycle_stage"] = DELETED
    row["last_updated_timestamp_ms"] = now_ms()
    _emit_state(ctx, row)
    return {}


def set_tags(ctx: Context, p: dict[str, Any], model_id: str) -> dict[str, Any]:
    tags = [_tag(x) for x in v.array_field(p, "tags")]
    _state(ctx, model_id)
    _emit_data(ctx, model_id, [], list({x["key"]: x for x in tags}.values()))
    return {}


def delete_tag(ctx: Context, p: dict[str, Any], model_id: str, key: str) -> dict[str, Any]:
    _state(ctx, model_id)
    live = {t["key"] for t in ctx.reader.logged_model_data([model_id])[model_id]["tags"]}
    if key not in live:
        raise not_found(f"No tag with key {key!r} found for model with ID {model_id!r}.")
    _emit_data(ctx, model_id, [], [{"key": key, "value": "", "deleted": True}])
    return {}


def log_params(ctx: Context, p: dict[str, Any], model_id: str) -> dict[str, Any]:
    params = [_param(x) for x in v.array_field(p, "params")]
    _state(ctx, model_id)
    _emit_data(ctx, model_id, list({x["key"]: x for x in params}.values()), [])
    return {}


def list_artifacts(ctx: Context, p: dict[str, Any], model_id: str) -> dict[str, Any]:
    """``logged-models/{id}/artifacts/directories``: the model's files directly under a directory."""
    rel = safe_path(p.get("artifact_directory_path"), allow_empty=True)
    uri = _model(ctx, model_id)["info"]["artifact_uri"]
    out: dict[str, Any] = {"root_uri": uri}
    root = proxied_root(uri)
    if root is None:
        return out
    prefix = f"{root}/{rel}" if rel else root
    files = children(ctx.reader.artifact_files(prefix), prefix)
    for f in files:
        f["path"] = f"{rel}/{f['path']}" if rel else f["path"]
    if files:
        out["files"] = files
    return out


def search_models(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    """Parsed and checked before the barrier (``ready``), so a bad filter answers 400 even while the
    consumers lag; the filter, order and page run in ClickHouse (``trackstream.reads.search``)."""
    experiment_ids = str_list(p.get("experiment_ids"))
    if not experiment_ids:
        v.required({}, "experiment_ids")
    datasets = [d for d in v.array_field(p, "datasets") if isinstance(d, dict)]
    if any(not d.get("dataset_name") for d in datasets):
        raise invalid("`dataset_name` in the `datasets` clause must be specified.")
    order = [o for o in v.array_field(p, "order_by") if isinstance(o, dict)]
    limit = SEARCH_DEFAULT_MAX_RESULTS
    if p.get("max_results"):
        limit = v.max_results(p["max_results"], SEARCH_DEFAULT_MAX_RESULTS, 2**31 - 1)
    offset = page_offset(p.get("page_token"))
    try:
        page = ctx.reader.search_logged_models(
            experiment_ids, p.get("filter"), datasets, order, offset, limit, ready=lambda: _wait_all(ctx)
        )
    except search.SearchError as exc:
        raise invalid(str(exc)) from None
    out: dict[str, Any] = {"models": _models(ctx, page.items)} if page.items else {}
    if page.next_offset is not None:
        out["next_page_token"] = page_token(page.next_offset)
    return out


def _wait_all(ctx: Context) -> None:
    ctx.wait("metadata")
    ctx.wait("metrics")


def _to_json(row: dict[str, Any], data: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """A LoggedModel in MLflow's protobuf JSON: unset optional fields and empty lists left out."""
    info: dict[str, Any] = {
        "model_id": row["model_id"],
        "experiment_id": row["experiment_id"],
        "name": row["name"],
        "creation_timestamp_ms": row["creation_timestamp_ms"],
        "last_updated_timestamp_ms": row["last_updated_timestamp_ms"],
        "artifact_uri": row["artifact_uri"],
        "status": row["status"],
    }
    for field in ("model_type", "source_run_id", "status_message"):
        if row.get(field) is not None:
            info[field] = row[field]
    if data["tags"]:
        info["tags"] = data["tags"]
    body: dict[str, Any] = {}
    if data["params"]:
        body["params"] = data["params"]
    if data["metrics"]:
        body["metrics"] = data["metrics"]
    return {"info": info, "data": body}


def _opt_str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _param(x: Any) -> dict[str, str]:
    if not isinstance(x, dict):
        raise invalid(f"Invalid parameter {x!r}")
    key = v.key_name("parameter", x.get("key"))
    return {"key": key, "value": v.param_value(key, x.get("value"))}


def _tag(x: Any) -> dict[str, Any]:
    if not isinstance(x, dict):
        raise invalid(f"Invalid tag {x!r}")
    key = x.get("key")
    if not isinstance(key, str) or not key:
        raise MlflowError("Missing value for required parameter 'key'.", "INVALID_PARAMETER_VALUE")
    return {"key": key, "value": "" if x.get("value") is None else str(x["value"]), "deleted": False}


MODEL = Reads.keyed("metadata", "model_id")
# a model's metric points may come from any run, so every partition of the metrics topic
MODEL_AND_METRICS = MODEL + Reads.all("metrics")
ENDPOINTS = [
    Endpoint(
        "/logged-models", ("POST",), create, r.CreateLoggedModel, Reads.experiment(), access=Access.experiment(EDIT)
    ),
    # the barrier is passed by the search itself, once the filter parsed (search_models)
    Endpoint("/logged-models/search", ("POST",), search_models, r.SearchLoggedModels, access=Access.search("models")),
    Endpoint(
        "/logged-models/{model_id}",
        ("GET",),
        get,
        r.GetLoggedModel,
        MODEL_AND_METRICS,
        access=Access.logged_model(READ),
    ),
    Endpoint(
        "/logged-models/{model_id}",
        ("PATCH",),
        finalize,
        r.FinalizeLoggedModel,
        MODEL,
        access=Access.logged_model(EDIT),
    ),
    Endpoint("/logged-models/{model_id}", ("DELETE",), delete, r.NoFields, MODEL, access=Access.logged_model(MANAGE)),
    Endpoint(
        "/logged-models/{model_id}/tags",
        ("PATCH",),
        set_tags,
        r.LoggedModelTags,
        MODEL,
        access=Access.logged_model(EDIT),
    ),
    Endpoint(
        "/logged-models/{model_id}/tags/{key:path}",
        ("DELETE",),
        delete_tag,
        r.NoFields,
        MODEL,
        access=Access.logged_model(EDIT),
    ),
    Endpoint(
        "/logged-models/{model_id}/params",
        ("POST",),
        log_params,
        r.LoggedModelParams,
        MODEL,
        access=Access.logged_model(EDIT),
    ),
    Endpoint(
        "/logged-models/{model_id}/artifacts/directories",
        ("GET",),
        list_artifacts,
        r.ListLoggedModelArtifacts,
        MODEL_AND_METRICS + Reads.all("artifacts"),
        access=Access.logged_model(READ),
    ),
]
