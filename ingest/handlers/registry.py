"""The model registry: registered models, model versions, their tags, aliases and stages.

Every write is one registry event (``schemas.events.RegisteredModelChange`` / ``ModelVersionChange``)
on the constant key ``"registry"``, decided by the registry sink in log order (``consumers/registry.py``):
whether a name is free, which number a new version gets, whether the model or version still exists.
This module checks only what needs no state (names, aliases, stages, tag keys, the source URI) and waits
for the decision (``EventWriter.decide``), then answers from the read model. No check-then-write here:
N gateway replicas give the answers one stock server gives.
"""

from __future__ import annotations

import json
import posixpath
import re
import urllib.parse
import uuid
from typing import Any

import orjson

from ingest import requests as r
from ingest import validation as v
from ingest.auth.access import EDIT, MANAGE, READ, Access
from ingest.endpoint import API, Endpoint, Reads
from ingest.errors import MlflowError, invalid, not_found
from ingest.handlers.artifact_keys import proxied_root, safe_path, send_file
from ingest.handlers.common import now_ms, str_list
from ingest.handlers.context import Context
from ingest.paging import page_offset, page_token
from schemas.events import LoggedModelData, ModelVersionChange, RegisteredModelChange, Tag
from trackstream.reads import search
from trackstream.reads.registry import IS_PROMPT_TAG

MAX_TAG_KEY_LENGTH = 250
MAX_TAG_VALUE_LENGTH = 100_000
MAX_ALIAS_LENGTH = 255
MAX_SEARCH_MODELS = 1000
MAX_SEARCH_VERSIONS = 200_000
STAGES = {s.lower(): s for s in ("None", "Staging", "Production", "Archived")}
ACTIVE_STAGES = ["Staging", "Production"]
PROMPT_SOURCES = frozenset({"dummy-source", "prompt-template"})
MODEL_VERSIONS_TAG = "mlflow.modelVersions"  # on a logged model: the versions registered from it
_ALIAS = re.compile(r"^[\w\-]*$")
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")
_TAG_KEY = re.compile(r"^[/\w.\- :]*$")


# -- stateless checks, worded as MLflow's validation ---
def _model_name(p: dict[str, Any], field: str = "name") -> str:
    name = v.required(p, field)
    if str(name).strip() == "":
        raise invalid(f"Missing value for required parameter '{field}'.")
    if "/" in name or ":" in name:
        raise invalid(f"Invalid model name '{name}'. Names cannot contain '/' or ':'.")
    if _bad_path(name):
        raise invalid(_invalid_value(field, name, _bad_path_message(name)))
    return str(name)


def _bad_path(name: str) -> bool:
    norm = posixpath.normpath(name)
    return norm != name or norm == "." or norm.startswith("..") or norm.startswith("/")


def _bad_path_message(name: str) -> str:
    return (
        "Names may be treated as files in certain cases, and must not resolve to other names when treated as "
        f"such. This name would resolve to {posixpath.normpath(name)!r}"
    )


def _invalid_value(field: str, value: Any, message: str) -> str:
    shown = orjson.dumps(value).decode() if isinstance(value, str) else str(value)
    return f"Invalid value {shown} for parameter '{field}' supplied: {message}"


def _version(p: dict[str, Any]) -> int:
    value = v.required(p, "version")
    try:
        return int(value)
    except ValueError:
        raise invalid(f"Parameter 'version' must be an integer, got '{value}'.") from None


def _tag_key(key: Any) -> str:
    if key is None:
        raise invalid("Missing value for required parameter 'key'.")
    if not _TAG_KEY.match(key):
        raise invalid(
            _invalid_value(
                "key",
                key,
                "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), "
                "spaces ( ), colon(:) and slashes (/).",
            )
        )
    if _bad_path(key):
        raise invalid(_invalid_value("key", key, _bad_path_message(key)))
    if len(key) > MAX_TAG_KEY_LENGTH:
        raise invalid(f"'key' exceeds the maximum length of {MAX_TAG_KEY_LENGTH} characters")
    return str(key)


def _tag(key: Any, value: Any) -> Tag:
    key = _tag_key(key)
    value = "" if value is None else str(value)
    if len(value) > MAX_TAG_VALUE_LENGTH:
        raise invalid(f"'value' exceeds the maximum length of {MAX_TAG_VALUE_LENGTH} characters")
    return Tag(key=key, value=value)


def _tags(p: dict[str, Any]) -> list[Tag]:
    by_key: dict[str, Tag] = {}
    for t in v.array_field(p, "tags"):
        tag = _tag(t.get("key"), t.get("value"))
        by_key[tag.key] = tag  # repeated keys: the last value wins, as the stock store's dict does
    return list(by_key.values())


def _alias(p: dict[str, Any], reserved: bool) -> str:
    alias = v.required(p, "alias")
    if not _ALIAS.match(alias):
        raise invalid(
            f"Invalid alias name: '{alias}'. Names may only contain alphanumerics, underscores (_), and dashes (-)."
        )
    if len(alias) > MAX_ALIAS_LENGTH:
        raise invalid(f"Registered model alias name exceeds the maximum length of {MAX_ALIAS_LENGTH} characters")
    if reserved:
        if alias.lower() == "latest":
            raise invalid("'latest' alias name (case insensitive) is reserved.")
        if _VERSION_ALIAS.match(alias):
            raise invalid(f"Version alias name '{alias}' is reserved.")
    return str(alias)


def _stage(value: Any) -> str:
    stage = STAGES.get(str(value).lower())
    if stage is None:
        raise invalid(
            f"Invalid Model Version stage: {value}. Value must be one of None, Staging, Production, Archived."
        )
    return stage


def _is_prompt(tags: list[Tag]) -> bool:
    values = {t.key: t.value for t in tags}
    return values.get(IS_PROMPT_TAG, "false").lower() == "true"


# -- reads --
def _registered_model(ctx: Context, name: str) -> dict[str, Any]:
    model = ctx.models().registered_model(name)
    if model is None:
        raise not_found(f"Registered Model with name={name} not found")
    return model


def _model_version(ctx: Context, name: str, version: int) -> dict[str, Any]:
    mv = ctx.models().model_version(name, version)
    if mv is None:
        raise not_found(f"Model Version (name={name}, version={version}) not found")
    return mv


def _wait(ctx: Context) -> None:
    ctx.wait("registry")


# -- registered models --
def create_registered_model(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    name = _model_name(p)
    tags = _tags(p)
    ctx.writer.decide(
        RegisteredModelChange(
            op="create",
            name=name,
            model_id=uuid.uuid4().hex,
            tags=tags,
            description=p.get("description"),
            deployment_job_id=p.get("deployment_job_id"),
            time=now_ms(),
        )
    )
    return {"registered_model": _registered_model(ctx, name)}


def get_registered_model(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    return {"registered_model": _registered_model(ctx, _model_name(p))}


def rename_registered_model(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    name = _model_name(p)
    if p.get("new_name") is None or str(p["new_name"]).strip() == "":
        raise invalid("Missing value for required parameter 'new_name'.")
    new_name = _model_name(p, "new_name")
    ctx.writer.decide(RegisteredModelChange(op="rename", name=name, new_name=new_name, time=now_ms()))
    return {"registered_model": _registered_model(ctx, new_name)}


def update_registered_model(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    name = _model_name(p)
    ctx.writer.decide(
        RegisteredModelChange(
            op="update",
            name=name,
            description=p.get("description"),
            deployment_job_id=p.get("deployment_job_id"),
            time=now_ms(),
        )
    )
    return {"registered_model": _registered_model(ctx, name)}


def delete_registered_model(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    ctx.writer.decide(RegisteredModelChange(op="delete", name=_model_name(p), time=now_ms()))
    return {}


def search_registered_models(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    # The stock store bounds only the top: 0 or less gives an empty page with a next-page token.
    limit = _max_results(p, 100, MAX_SEARCH_MODELS, positive=False)
    offset = page_offset(p.get("page_token"))
    try:
        page = ctx.models().search_registered_models(
            p.get("filter"), str_list(p.get("order_by")), offset, limit, ready=lambda: _wait(ctx)
        )
    except search.SearchError as exc:
        raise invalid(str(exc)) from None
    out: dict[str, Any] = {"registered_models": page.items} if page.items else {}
    if page.next_offset is not None:
        out["next_page_token"] = page_token(page.next_offset)
    return out


def _max_results(p: dict[str, Any], default: int, limit: int, positive: bool = True) -> int:
    """The stock server's checks: its handler's bound (worded for the query string a GET carries), then its
    store's positive-integer check."""
    value = p.get("max_results")
    if value is None:
        return default
    n = int(value)
    if n > limit:
        raise invalid(
            f"Invalid value \"{n}\" for parameter 'max_results' supplied:  Hint: Value was of type 'str'. "
            "See the API docs for more information about request parameters."
        )
    if positive and n < 1:
        raise invalid(f"Invalid value for max_results. It must be a positive integer, but got {n}")
    return n


def get_latest_versions(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    name = _model_name(p)
    stages = [_stage(s) for s in str_list(p.get("stages"))] or None
    model = ctx.models().model_row(name)
    if model is None:
        raise not_found(f"Registered Model with name={name} not found")
    versions = ctx.models().latest_versions(model["model_id"], stages)
    return {"model_versions": versions} if versions else {}


def set_registered_model_tag(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    name = _model_name(p)
    v.required(p, "key")
    tag = _tag(p.get("key"), p.get("value"))
    ctx.writer.decide(RegisteredModelChange(op="set_tag", name=name, tags=[tag], time=now_ms()))
    return {}


def delete_registered_model_tag(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    name = _model_name(p)
    key = _tag_key(v.required(p, "key"))
    tag = Tag(key=key, value="", deleted=True)
    ctx.writer.decide(RegisteredModelChange(op="delete_tag", name=name, tags=[tag], time=now_ms()))
    return {}


def set_alias(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    name = _model_name(p)
    alias = _alias(p, reserved=True)
    version = _version(p)
    ctx.writer.decide(RegisteredModelChange(op="set_alias", name=name, alias=alias, version=version, time=now_ms()))
    return {}


def delete_alias(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    name = _model_name(p)
    alias = _alias(p, reserved=False)
    ctx.writer.decide(RegisteredModelChange(op="delete_alias", name=name, alias=alias, time=now_ms()))
    return {}


def _by_alias(ctx: Context, name: str, alias: str) -> dict[str, Any]:
    """The version an alias names; ``latest`` is the newest live version, as in the stock store."""
    model = ctx.models().model_row(name)
    if alias.lower() == "latest":
        versions = ctx.models().latest_versions(model["model_id"]) if model is not None else []
        if model is None:
            raise not_found(f"Registered Model with name={name} not found")
        if not versions:
            raise not_found(f"Latest version not found for model {name}.")
        return max(versions, key=lambda mv: int(mv["version"]))
    if model is None:
        raise not_found(f"Registered Model with name={name} not found")
    version = ctx.models().alias_version(name, alias)
    if version is None:
        raise invalid(f"Registered model alias {alias} not found.")
    return _model_version(ctx, name, version)


def get_by_alias(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    return {"model_version": _by_alias(ctx, _model_name(p), _alias(p, reserved=False))}


# -- model versions --
def _invalid_source(source: str, id_name: str) -> MlflowError:
    return invalid(
        f"Invalid model version source: '{source}'. The {id_name} request parameter must identify the resource "
        "that contains the source."
    )


def _within(source: str, root: str) -> bool:
    def parts(uri: str) -> tuple[str, str, tuple[str, ...]]:
        u = urllib.parse.urlsplit(uri)
        return u.scheme.lower(), u.netloc.lower(), tuple(urllib.parse.unquote(x) for x in u.path.split("/") if x)

    (s_scheme, s_host, s_parts), (r_scheme, r_host, r_parts) = parts(source), parts(root)
    return s_scheme == r_scheme and s_host == r_host and bool(r_parts) and s_parts[: len(r_parts)] == r_parts


def _check_relative(source: str) -> None:
    unquoted = source
    while (once := urllib.parse.unquote_plus(unquoted)) != unquoted:
        unquoted = once
    path = re.sub(r"/+", "/", urllib.parse.urlparse(unquoted).path.rstrip("/"))
    if (
        "\x00" in path
        or any(part == ".." for part in unquoted.split("/"))
        or posixpath.normpath(path or "/") != (path or "/")
    ):
        raise invalid(
            f"Invalid model version source: '{source}'. If supplying a source as an http, https, local file path, "
            "ftp, objectstore, or mlflow-artifacts uri, an absolute path must be provided without relative path "
            "references present. Please provide an absolute path."
        )


def _models_uri(source: str) -> tuple[str | None, str | None, str | None]:
    """``models:/<model_id>`` → (model_id, None, None); ``models:/<name>/<version>`` or ``@alias`` →
    (None, name, version-or-@alias)."""
    path = urllib.parse.urlparse(source).path.lstrip("/")
    if "/" in path:
        name, _, ref = path.rpartition("/")
        return None, name, ref
    if "@" in path:
        name, _, alias = path.partition("@")
        return None, name, "@" + alias
    return (path or None), None, None


def _resolve_source(ctx: Context, p: dict[str, Any], source: str) -> dict[str, Any]:
    """Check the source as the stock server does and resolve where the version's files are: a
    ``models:/<logged model id>`` source is stored at the logged model's artifact location, a
    ``models:/<name>/<version>`` source where that version is (its run and logged model carried over)."""
    run_id, model_id = p.get("run_id"), p.get("model_id")
    has_run_id, has_model_id = "run_id" in p and run_id is not None, "model_id" in p and model_id is not None
    storage_location: str | None = None
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "models" and not parsed.netloc:
        src_model, src_name, ref = _models_uri(source)
        if src_name is not None and ref is not None:  # another model version
            ctx.wait("registry")
            if ref.startswith("@"):
                mv = _by_alias(ctx, src_name, ref[1:])
            else:
                mv = _model_version(ctx, src_name, _version({"version": ref}))
            row = ctx.models().version_row(src_name, int(mv["version"]))
            assert row is not None
            if (has_run_id and (run_id or "") != (row["run_id"] or "")) or (
                has_model_id and (model_id or "") != (row["logged_model_id"] or "")
            ):
                raise invalid(
                    f"Invalid model version source: '{source}'. The run_id and model_id request parameters must "
                    "match the referenced model version."
                )
            source = f"models:/{src_name}/{mv['version']}"
            run_id = run_id if has_run_id else row["run_id"]
            model_id = model_id if has_model_id else row["logged_model_id"]
            storage_location = row["storage_location"] or row["source"]
            return {"source": source, "run_id": run_id, "model_id": model_id, "storage_location": storage_location}
        if src_model is not None and not (model_id and src_model == model_id):
            raise _invalid_source(source, "model_id")
    elif parsed.scheme == "models":
        raise invalid(
            f"Invalid model version source: '{source}'. Registered model sources must use the active model registry."
        )
    if parsed.scheme in ("", "file"):
        id_name = "model_id" if model_id else "run_id"
        raise invalid(
            f"Invalid model version source: '{source}'. To use a local path as a model version source, the "
            f"{id_name} request parameter has to be specified and the local path has to be contained within the "
            f"artifact directory of the run specified by the {id_name}."
        )
    _check_relative(source)
    if model_id:
        ctx.wait("metadata", [model_id])
        logged = ctx.reader.logged_model_row(model_id)
        if parsed.scheme == "runs":
            raise _invalid_source(source, "model_id")
        if parsed.scheme == "mlflow-artifacts" and (logged is None or not _within(source, logged["artifact_uri"])):
            raise _invalid_source(source, "model_id")
        if parsed.scheme == "models":
            if logged is None:
                raise invalid(
                    f"Unable to fetch model from model URI source artifact location '{source}'.Error: Logged model "
                    f"with ID '{model_id}' not found."
                )
            storage_location = logged["artifact_uri"]
        if not run_id and logged is not None:
            run_id = logged.get("source_run_id")
    else:
        if parsed.scheme == "runs":
            src_run = parsed.netloc or None
            src_run_id = parsed.path.lstrip("/").split("/", 1)[0] if src_run is None else None
            if src_run is not None or not (run_id and src_run_id == run_id):
                raise _invalid_source(source, "run_id")
        if parsed.scheme == "mlflow-artifacts":
            if not run_id:
                raise _invalid_source(source, "run_id")
            ctx.wait("metadata", [run_id])
            info = ctx.reader.run_info(run_id)
            if info is None or not _within(source, info["artifact_uri"]):
                raise _invalid_source(source, "run_id")
    return {"source": source, "run_id": run_id, "model_id": model_id, "storage_location": storage_location}


def create_model_version(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    name = _model_name(p)
    source = str(v.required(p, "source"))
    tags = _tags(p)
    if _is_prompt(tags):
        if source not in PROMPT_SOURCES:
            raise invalid(f"Invalid prompt source: '{source}'. Prompt sources must use an MLflow placeholder.")
        resolved = {
            "source": source,
            "run_id": p.get("run_id"),
            "model_id": p.get("model_id"),
            "storage_location": None,
        }
    else:
        resolved = _resolve_source(ctx, p, source)
    result = ctx.writer.decide(
        ModelVersionChange(
            op="create",
            name=name,
            source=resolved["source"],
            storage_location=resolved["storage_location"],
            run_id=resolved["run_id"] or None,
            # The stock handler stores the request's proto defaults: "" when not given.
            run_link=p.get("run_link") or "",
            description=p.get("description") or "",
            model_id=resolved["model_id"] or None,
            tags=tags,
            time=now_ms(),
        )
    )
    version = int(result)
    if resolved["model_id"] and not _is_prompt(tags):
        _link_logged_model(ctx, resolved["model_id"], name, version)
    return {"model_version": _model_version(ctx, name, version)}


def _link_logged_model(ctx: Context, model_id: str, name: str, version: int) -> None:
    """The stock server lists a logged model's registered versions in its ``mlflow.modelVersions`` tag."""
    ctx.wait("metadata", [model_id])
    if ctx.reader.logged_model_row(model_id) is None:
        return
    data = ctx.reader.logged_model_data([model_id]).get(model_id, {})
    current = next((t["value"] for t in data.get("tags", []) if t["key"] == MODEL_VERSIONS_TAG), "[]")
    try:
        listed = json.loads(current)
    except ValueError:
        listed = []
    entry = {"name": name, "version": version}
    if entry not in listed:
        listed.append(entry)
    value = json.dumps(listed)  # the stock server's spacing
    ctx.writer.emit(LoggedModelData(model_id=model_id, params=[], tags=[Tag(key=MODEL_VERSIONS_TAG, value=value)]))


def get_model_version(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    return {"model_version": _model_version(ctx, _model_name(p), _version(p))}


def update_model_version(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    name, version = _model_name(p), _version(p)
    ctx.writer.decide(
        ModelVersionChange(op="update", name=name, version=version, description=p.get("description"), time=now_ms())
    )
    return {"model_version": _model_version(ctx, name, version)}


def transition_stage(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    name, version = _model_name(p), _version(p)
    stage = _stage(v.required(p, "stage"))
    archive = bool(p.get("archive_existing_versions"))
    if archive and stage not in ACTIVE_STAGES:
        raise invalid(
            f"Model version transition cannot archive existing model versions because '{p['stage']}' is not an "
            f"Active stage. Valid stages are {ACTIVE_STAGES}"
        )
    ctx.writer.decide(
        ModelVersionChange(
            op="transition", name=name, version=version, stage=stage, archive_existing_versions=archive, time=now_ms()
        )
    )
    return {"model_version": _model_version(ctx, name, version)}


def delete_model_version(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    ctx.writer.decide(ModelVersionChange(op="delete", name=_model_name(p), version=_version(p), time=now_ms()))
    return {}


def search_model_versions(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    limit = _max_results(p, 10_000, MAX_SEARCH_VERSIONS)
    offset = page_offset(p.get("page_token"))
    try:
        page = ctx.models().search_model_versions(
            p.get("filter"), str_list(p.get("order_by")), offset, limit, ready=lambda: _wait(ctx)
        )
    except search.SearchError as exc:
        raise invalid(str(exc)) from None
    out: dict[str, Any] = {"model_versions": page.items} if page.items else {}
    if page.next_offset is not None:
        out["next_page_token"] = page_token(page.next_offset)
    return out


def get_download_uri(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    name, version = _model_name(p), _version(p)
    location = ctx.models().download_location(name, version)
    if location is None:
        raise not_found(f"Model Version (name={name}, version={version}) not found")
    return {"artifact_uri": location}


def set_model_version_tag(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    name, version = _model_name(p), _version(p)
    v.required(p, "key")
    tag = _tag(p.get("key"), p.get("value"))
    ctx.writer.decide(ModelVersionChange(op="set_tag", name=name, version=version, tags=[tag], time=now_ms()))
    return {}


def delete_model_version_tag(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    name, version = _model_name(p), _version(p)
    tag = Tag(key=_tag_key(v.required(p, "key")), value="", deleted=True)
    ctx.writer.decide(ModelVersionChange(op="delete_tag", name=name, version=version, tags=[tag], time=now_ms()))
    return {}


def _artifact_root(ctx: Context, location: str) -> str:
    """The object-store key prefix of a version's files: ``runs:/<id>/<path>`` through the run's artifact
    URI, ``mlflow-artifacts:`` URIs as they are; other stores are not served by this gateway."""
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme == "runs":
        run_id, _, path = parsed.path.lstrip("/").partition("/")
        ctx.wait("metadata", [run_id])
        info = ctx.reader.run_info(run_id)
        if info is None:
            raise not_found(f"Run with id={run_id} not found")
        location = f"{str(info['artifact_uri']).rstrip('/')}/{path}" if path else str(info["artifact_uri"])
    root = proxied_root(location)
    if root is None:
        raise MlflowError(f"Artifacts at {location} are not served by this gateway", "NOT_IMPLEMENTED")
    return root


def get_artifact(ctx: Context, p: dict[str, Any]) -> Any:
    """A file of a version's artifacts, as the UI's model-version page fetches it."""
    rel = safe_path(v.required(p, "path"))
    name, version = _model_name(p), _version(p)
    location = ctx.models().download_location(name, version)
    if location is None:
        raise not_found(f"Model Version (name={name}, version={version}) not found")
    root = _artifact_root(ctx, location)
    key = f"{root}/{rel}" if root else rel
    ctx.wait("artifacts", [key])
    return send_file(ctx, key)


REGISTRY = Reads.all("registry")
RM, MV = "/registered-models", "/model-versions"
ENDPOINTS = [
    Endpoint(
        f"{RM}/create",
        ("POST",),
        create_registered_model,
        r.CreateRegisteredModel,
        access=Access.creates("registered_model", "registered_model.name"),
    ),
    Endpoint(
        f"{RM}/get",
        ("GET",),
        get_registered_model,
        r.RegisteredModelName,
        REGISTRY,
        access=Access.registered_model(READ),
    ),
    Endpoint(
        f"{RM}/rename",
        ("POST",),
        rename_registered_model,
        r.RenameRegisteredModel,
        access=Access.registered_model(EDIT, renames="new_name"),
    ),
    Endpoint(
        f"{RM}/update",
        ("PATCH",),
        update_registered_model,
        r.UpdateRegisteredModel,
        access=Access.registered_model(EDIT),
    ),
    Endpoint(
        f"{RM}/delete",
        ("DELETE",),
        delete_registered_model,
        r.RegisteredModelName,
        access=Access.registered_model(MANAGE, revokes=True),
    ),
    Endpoint(
        f"{RM}/search", ("GET",), search_registered_models, r.SearchRegistry, access=Access.search("registered_models")
    ),  # waits itself
    Endpoint(
        f"{RM}/get-latest-versions",
        ("GET", "POST"),
        get_latest_versions,
        r.GetLatestVersions,
        REGISTRY,
        access=Access.registered_model(READ),
    ),
    Endpoint(
        f"{RM}/set-tag",
        ("POST",),
        set_registered_model_tag,
        r.SetRegisteredModelTag,
        access=Access.registered_model(EDIT),
    ),
    Endpoint(
        f"{RM}/delete-tag",
        ("DELETE",),
        delete_registered_model_tag,
        r.DeleteRegisteredModelTag,
        access=Access.registered_model(EDIT),
    ),
    Endpoint(f"{RM}/alias", ("POST",), set_alias, r.SetModelAlias, access=Access.registered_model(EDIT)),
    Endpoint(f"{RM}/alias", ("DELETE",), delete_alias, r.ModelAlias, access=Access.registered_model(EDIT)),
    Endpoint(f"{RM}/alias", ("GET",), get_by_alias, r.ModelAlias, REGISTRY, access=Access.registered_model(READ)),
    Endpoint(
        f"{MV}/create", ("POST",), create_model_version, r.CreateModelVersion, access=Access.registered_model(EDIT)
    ),
    Endpoint(
        f"{MV}/get", ("GET",), get_model_version, r.ModelVersionRef, REGISTRY, access=Access.registered_model(READ)
    ),
    Endpoint(
        f"{MV}/update", ("PATCH",), update_model_version, r.UpdateModelVersion, access=Access.registered_model(EDIT)
    ),
    Endpoint(
        f"{MV}/transition-stage",
        ("POST",),
        transition_stage,
        r.TransitionModelVersionStage,
        access=Access.registered_model(EDIT),
    ),
    Endpoint(
        f"{MV}/delete", ("DELETE",), delete_model_version, r.ModelVersionRef, access=Access.registered_model(MANAGE)
    ),
    Endpoint(
        f"{MV}/search", ("GET",), search_model_versions, r.SearchRegistry, access=Access.search("model_versions")
    ),  # waits itself
    Endpoint(
        f"{MV}/get-download-uri",
        ("GET",),
        get_download_uri,
        r.ModelVersionRef,
        REGISTRY,
        access=Access.registered_model(READ),
    ),
    Endpoint(
        f"{MV}/set-tag", ("POST",), set_model_version_tag, r.SetModelVersionTag, access=Access.registered_model(EDIT)
    ),
    Endpoint(
        f"{MV}/delete-tag",
        ("DELETE",),
        delete_model_version_tag,
        r.DeleteModelVersionTag,
        access=Access.registered_model(EDIT),
    ),
    Endpoint(
        f"{MV}/get-artifact",
        ("GET",),
        get_artifact,
        r.GetModelVersionArtifact,
        REGISTRY,
        prefixes=("", API[1]),
        access=Access.registered_model(READ),
    ),
]
