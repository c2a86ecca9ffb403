"""The model-registry session of the differential test: registered models, model versions, stages,
aliases, tags, searches and their error cases, through the official client and raw REST.

Same recording rules as :mod:`tests.differential.session`: a step is ``[label, result]``; a client
error is ``{"error": code, "status": HTTP status}``; ids become placeholders in order of appearance
(runs ``RUN<n>``, logged models ``MODEL<n>``, experiments ``EXP<n>``) and times are reduced to whether
they are set. Raw REST steps record the status, the error code, and the whole JSON answer on success
(so a field the stock server leaves out and the gateway sends, or the other way round, shows).

Left out on purpose: requests the stock server answers with a 500 (an ``order_by`` naming a field twice,
a transition to a non-active stage with ``archive_existing_versions``) and a wrong HTTP method (its 405
has no JSON body): the gateway answers those with MLflow-shaped 400 and 405 errors by design.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.genai import register_prompt
from mlflow.store.entities.paged_list import PagedList

from tests.differential.session import Recorder, Step, _client_for

_MODEL_ID = re.compile(r"\bm-[0-9a-f]{32}\b")
# Times of registry entities (client attributes and REST fields): compared as "is set", never by value.
_REGISTRY_TIMES = {"creation_timestamp", "last_updated_timestamp"}
_API = "/api/2.0/mlflow/"


def _pause() -> None:
    """Distinct server-assigned times, so orders by time never fall to tie-breaks."""
    time.sleep(0.005)


class RegistryRecorder(Recorder):
    """A :class:`Recorder` that also knows registry entities, logged-model ids and whole JSON answers."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.model_ids: dict[str, str] = {}

    def _model_id(self, match: re.Match[str]) -> str:
        return self.model_ids.setdefault(match.group(0), f"MODEL{len(self.model_ids) + 1}")

    def uri_text(self, value: str | None) -> str | None:
        """A source or download URI with its experiment, run and logged-model ids as placeholders."""
        if value is None:
            return None
        return _MODEL_ID.sub(self._model_id, self.ids.artifact_uri(value))

    def version(self, mv: ModelVersion) -> Any:
        return {
            "name": mv.name,
            "version": mv.version,
            "description": mv.description,
            "user_id": mv.user_id,
            "current_stage": mv.current_stage,
            "source": self.uri_text(mv.source),
            "run_id": self.ids.run(mv.run_id) if mv.run_id and len(mv.run_id) == 32 else mv.run_id,
            "status": mv.status,
            "status_message": mv.status_message,
            "tags": dict(mv.tags),
            "run_link": mv.run_link,
            "aliases": sorted(mv.aliases),
            "model_id": self.uri_text(mv.model_id),
            "has_creation_timestamp": mv.creation_timestamp is not None,
            "has_last_updated_timestamp": mv.last_updated_timestamp is not None,
        }

    def registered_model(self, rm: RegisteredModel) -> Any:
        return {
            "name": rm.name,
            "description": rm.description,
            "tags": dict(rm.tags),
            "aliases": dict(sorted(rm.aliases.items())),
            "latest_versions": [self.version(v) for v in rm.latest_versions],
            "has_creation_timestamp": rm.creation_timestamp is not None,
            "has_last_updated_timestamp": rm.last_updated_timestamp is not None,
        }

    def convert(self, value: Any) -> Any:
        if isinstance(value, RegisteredModel):
            return self.registered_model(value)
        if isinstance(value, ModelVersion):
            return self.version(value)
        if isinstance(value, PagedList):
            return {"items": [self.convert(x) for x in value], "has_token": bool(value.token)}
        return super().convert(value)

    def body(self, value: Any) -> Any:
        """A JSON answer with ids as placeholders and registry times replaced by ``"<time>"``. A ``tags`` list
        is a map in the API (one value per key) whose order the stock server leaves to its database (SQLite
        gives insertion order, MySQL key order): compared sorted by key."""
        if isinstance(value, dict) and isinstance(value.get("tags"), list):
            value = {**value, "tags": sorted(value["tags"], key=lambda t: str(t.get("key")))}
        if isinstance(value, dict):
            return {
                k: "<time>" if k in _REGISTRY_TIMES else "<token>" if k == "next_page_token" else self.body(x)
                for k, x in value.items()
            }
        if isinstance(value, list):
            return [self.body(x) for x in value]
        if isinstance(value, str):
            return self.uri_text(value)
        return value

    def rest_json(self, label: str, method: str, path: str, prefix: str = _API, **kwargs: Any) -> Any:
        return self.rest(label, method, path, prefix, keep_body=True, **kwargs)

    def answer(self, body: Any) -> Any:
        return self.body(body)

    def finish(self) -> list[Step]:
        steps = super().finish()
        return [[label, self._model_ids(value)] for label, value in steps]

    def _model_ids(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self._model_ids(x) for k, x in value.items()}
        if isinstance(value, list):
            return [self._model_ids(x) for x in value]
        if isinstance(value, str):
            return _MODEL_ID.sub(self._model_id, value)
        return value


def run_registry_session(uri: str) -> list[Step]:
    rec = RegistryRecorder(uri)
    with _client_for(uri, rec):
        client = MlflowClient(uri)
        exp = client.create_experiment("diff-registry")
        rec.ids.exp(exp)
        runs = [client.create_run(exp, run_name=f"reg-run-{i}").info for i in range(3)]
        for info in runs:
            rec.ids.run(info.run_id)
        sections: list[tuple[str, Callable[[], None]]] = [
            ("registered models", lambda: _registered_models(rec, client)),
            ("model versions", lambda: _model_versions(rec, client, runs)),
            ("stages", lambda: _stages(rec, client)),
            ("aliases", lambda: _aliases(rec, client)),
            ("search registered models", lambda: _search_registered_models(rec, client)),
            ("search model versions", lambda: _search_model_versions(rec, client, runs)),
            ("rest", lambda: _rest(rec, runs)),
            ("prompts", lambda: _prompts(rec, client)),
            ("deletes", lambda: _deletes(rec, client, runs)),
        ]
        for name, section in sections:
            try:
                section()
            except Exception as exc:  # recorded, so the comparison shows where a server broke the script
                rec.note(f"section {name} aborted", f"{type(exc).__name__}: {exc}")
    return rec.finish()


# ---------------------------------------------------------------------------------------------------
def _registered_models(rec: RegistryRecorder, client: MlflowClient) -> None:
    rec.call("create a", client.create_registered_model, "reg-a", {"team": "x", "env": "dev"}, "first model")
    _pause()
    rec.call("create b", client.create_registered_model, "reg-b")
    _pause()
    rec.call("create c", client.create_registered_model, "reg-c", {"team": "y"})
    _pause()
    rec.call("create Reg-D", client.create_registered_model, "Reg-D", {"team": "X"}, "capital")
    _pause()
    rec.call("create e.f", client.create_registered_model, "reg e.f", {"env": "prod"})
    _pause()
    rec.call("create duplicate", client.create_registered_model, "reg-a")
    rec.call("create empty name", client.create_registered_model, "")
    rec.call("create blank name", client.create_registered_model, "  ")
    rec.call("create name with slash", client.create_registered_model, "reg/slash")
    rec.call("create name with colon", client.create_registered_model, "reg:colon")
    rec.call("create bad tag key", client.create_registered_model, "reg-badtag", {"bad|key": "v"})
    rec.call("create tag value too long", client.create_registered_model, "reg-longtag", {"k": "v" * 100_001})
    rec.call("get a", client.get_registered_model, "reg-a")
    rec.call("get missing", client.get_registered_model, "reg-nope")
    rec.call("update a", client.update_registered_model, "reg-a", "new description")
    rec.call("update missing", client.update_registered_model, "reg-nope", "x")
    rec.call("get a after update", client.get_registered_model, "reg-a")
    _pause()
    rec.call("rename b", client.rename_registered_model, "reg-b", "reg-b2")
    rec.call("get old name", client.get_registered_model, "reg-b")
    rec.call("get new name", client.get_registered_model, "reg-b2")
    rec.call("rename onto taken name", client.rename_registered_model, "reg-b2", "reg-a")
    rec.call("rename missing", client.rename_registered_model, "reg-nope", "reg-nope2")
    rec.call("rename to empty", client.rename_registered_model, "reg-b2", "")
    rec.call("rename to slash", client.rename_registered_model, "reg-b2", "x/y")
    _pause()
    rec.call("set tag", client.set_registered_model_tag, "reg-a", "team", "z")
    rec.call("set tag new key", client.set_registered_model_tag, "reg-a", "extra", "1")
    rec.call("set tag missing model", client.set_registered_model_tag, "reg-nope", "k", "v")
    rec.call("set tag bad key", client.set_registered_model_tag, "reg-a", "bad|key", "v")
    rec.call("set tag value too long", client.set_registered_model_tag, "reg-a", "k", "v" * 100_001)
    rec.call("delete tag", client.delete_registered_model_tag, "reg-a", "extra")
    rec.call("delete tag absent key", client.delete_registered_model_tag, "reg-a", "never-set")
    rec.call("delete tag missing model", client.delete_registered_model_tag, "reg-nope", "k")
    rec.call("get a after tags", client.get_registered_model, "reg-a")


def _model_versions(rec: RegistryRecorder, client: MlflowClient, runs: list[Any]) -> None:
    r0, r1, r2 = (info.run_id for info in runs)
    create = client.create_model_version
    rec.call("create v1", create, "reg-a", f"runs:/{r0}/model", r0, {"k": "v", "flavor": "sk"}, None, "v one")
    _pause()
    rec.call("create v2", create, "reg-a", f"runs:/{r1}/model", r1, {"k": "w"})
    _pause()
    rec.call("create v3 artifact source", create, "reg-a", f"{runs[2].artifact_uri}/model", r2)
    _pause()
    rec.call("create c v1", create, "reg-c", f"runs:/{r0}/other", r0)
    _pause()
    rec.call("create b2 v1", create, "reg-b2", f"runs:/{r1}/model", r1, {"k": "v"})
    _pause()
    rec.call("create on missing model", create, "reg-nope", f"runs:/{r0}/model", r0)
    rec.call("create source of another run", create, "reg-a", f"runs:/{r0}/model", r1)
    rec.call("create runs source without run_id", create, "reg-a", f"runs:/{r0}/model")
    rec.call("create local path source", create, "reg-a", "/tmp/some/model", r0)
    rec.call("create file uri source", create, "reg-a", "file:///tmp/some/model", r0)
    rec.call("create relative path source", create, "reg-a", f"{runs[0].artifact_uri}/../../x", r0)
    rec.call("create artifact source outside run", create, "reg-a", f"{runs[1].artifact_uri}/model", r0)
    rec.call("create bad tag key", create, "reg-a", f"runs:/{r0}/model", r0, {"bad|key": "v"})
    rec.call("get v1", client.get_model_version, "reg-a", "1")
    rec.call("get v3", client.get_model_version, "reg-a", "3")
    rec.call("get missing version", client.get_model_version, "reg-a", "99")
    rec.call("get version of missing model", client.get_model_version, "reg-nope", "1")
    rec.call("get version not a number", client.get_model_version, "reg-a", "abc")
    rec.call("model after versions", client.get_registered_model, "reg-a")
    _pause()
    rec.call("update v2", client.update_model_version, "reg-a", "2", "second")
    rec.call("update missing version", client.update_model_version, "reg-a", "99", "x")
    rec.call("get v2 after update", client.get_model_version, "reg-a", "2")
    rec.call("set version tag", client.set_model_version_tag, "reg-a", "1", "k", "v2")
    rec.call("set version tag new", client.set_model_version_tag, "reg-a", "1", "extra", "e")
    rec.call("set version tag missing version", client.set_model_version_tag, "reg-a", "99", "k", "v")
    rec.call("set version tag missing model", client.set_model_version_tag, "reg-nope", "1", "k", "v")
    rec.call("set version tag bad key", client.set_model_version_tag, "reg-a", "1", "bad|key", "v")
    rec.call("delete version tag", client.delete_model_version_tag, "reg-a", "1", "extra")
    rec.call("delete version tag absent key", client.delete_model_version_tag, "reg-a", "1", "never-set")
    rec.call("delete version tag missing version", client.delete_model_version_tag, "reg-a", "99", "k")
    rec.call("get v1 after tags", client.get_model_version, "reg-a", "1")
    rec.call("download uri v1", lambda: rec.uri_text(client.get_model_version_download_uri("reg-a", "1")))
    rec.call("download uri v3", lambda: rec.uri_text(client.get_model_version_download_uri("reg-a", "3")))
    rec.call("download uri missing version", client.get_model_version_download_uri, "reg-a", "99")
    rec.call("download uri missing model", client.get_model_version_download_uri, "reg-nope", "1")
    _pause()
    rec.call("copy v2 to c", client.copy_model_version, "models:/reg-a/2", "reg-c")
    _pause()
    rec.call("copy v1 to a new model", client.copy_model_version, "models:/reg-a/1", "reg-copy")
    rec.call("copy missing version", client.copy_model_version, "models:/reg-a/99", "reg-c")
    rec.call("get c v2 (copied)", client.get_model_version, "reg-c", "2")
    rec.call("download uri of copy", lambda: rec.uri_text(client.get_model_version_download_uri("reg-c", "2")))
    rec.call("get reg-copy", client.get_registered_model, "reg-copy")


def _stages(rec: RegistryRecorder, client: MlflowClient) -> None:
    move = client.transition_model_version_stage
    rec.call("latest versions before stages", client.get_latest_versions, "reg-a")
    _pause()
    rec.call("v1 to Staging", move, "reg-a", "1", "Staging")
    _pause()
    rec.call("v2 to production (lower case)", move, "reg-a", "2", "production")
    _pause()
    rec.call("v3 to Staging archiving others", move, "reg-a", "3", "Staging", True)
    rec.call("v1 after archive", client.get_model_version, "reg-a", "1")
    rec.call("v2 after archive", client.get_model_version, "reg-a", "2")
    rec.call("invalid stage", move, "reg-a", "1", "Bogus")
    rec.call("stage of missing version", move, "reg-a", "99", "Staging")
    rec.call("stage of missing model", move, "reg-nope", "1", "Staging")
    rec.call("latest versions", client.get_latest_versions, "reg-a")
    rec.call("latest versions Staging", client.get_latest_versions, "reg-a", ["Staging"])
    rec.call("latest versions staging+archived", client.get_latest_versions, "reg-a", ["staging", "Archived"])
    rec.call("latest versions None stage", client.get_latest_versions, "reg-c", ["None"])
    rec.call("latest versions invalid stage", client.get_latest_versions, "reg-a", ["Bogus"])
    rec.call("latest versions missing model", client.get_latest_versions, "reg-nope")
    _pause()
    rec.call("v3 to None", move, "reg-a", "3", "None")
    rec.call("model after stages", client.get_registered_model, "reg-a")


def _aliases(rec: RegistryRecorder, client: MlflowClient) -> None:
    alias = client.set_registered_model_alias
    rec.call("alias champion v2", alias, "reg-a", "champion", "2")
    _pause()
    rec.call("alias challenger v1", alias, "reg-a", "challenger", "1")
    rec.call("alias second on v1", alias, "reg-a", "Backup_1-x", "1")
    rec.call("alias latest", alias, "reg-a", "latest", "1")
    rec.call("alias LATEST", alias, "reg-a", "LATEST", "1")
    rec.call("alias v1", alias, "reg-a", "v1", "1")
    rec.call("alias V12", alias, "reg-a", "V12", "1")
    rec.call("alias v1a (allowed)", alias, "reg-a", "v1a", "3")
    rec.call("alias with space", alias, "reg-a", "bad alias", "1")
    rec.call("alias with slash", alias, "reg-a", "bad/alias", "1")
    rec.call("alias too long", alias, "reg-a", "a" * 256, "1")
    rec.call("alias empty", alias, "reg-a", "", "1")
    rec.call("alias on missing version", alias, "reg-a", "ghost", "99")
    rec.call("alias on missing model", alias, "reg-nope", "champion", "1")
    rec.call("get by alias champion", client.get_model_version_by_alias, "reg-a", "champion")
    rec.call("get by alias unknown", client.get_model_version_by_alias, "reg-a", "nobody")
    rec.call("get by alias latest", client.get_model_version_by_alias, "reg-a", "latest")
    rec.call("get by alias missing model", client.get_model_version_by_alias, "reg-nope", "champion")
    rec.call("model with aliases", client.get_registered_model, "reg-a")
    rec.call("v1 with aliases", client.get_model_version, "reg-a", "1")
    _pause()
    rec.call("move champion to v3", alias, "reg-a", "champion", "3")
    rec.call("get by alias after move", client.get_model_version_by_alias, "reg-a", "champion")
    rec.call("v2 after alias moved", client.get_model_version, "reg-a", "2")
    rec.call("delete alias challenger", client.delete_registered_model_alias, "reg-a", "challenger")
    rec.call("delete alias never set", client.delete_registered_model_alias, "reg-a", "nobody")
    rec.call("delete alias missing model", client.delete_registered_model_alias, "reg-nope", "champion")
    rec.call("get by deleted alias", client.get_model_version_by_alias, "reg-a", "challenger")
    rec.call("model after alias delete", client.get_registered_model, "reg-a")


def _names(page: Any) -> Any:
    if page is None:
        return None
    return {"names": [m.name for m in page], "has_token": bool(page.token)}


def _versions(page: Any) -> Any:
    if page is None:
        return None
    return {"versions": [f"{v.name}/{v.version}" for v in page], "has_token": bool(page.token)}


def _search_registered_models(rec: RegistryRecorder, client: MlflowClient) -> None:
    search = client.search_registered_models
    filters = [
        "",
        "name = 'reg-a'",
        "name != 'reg-a'",
        "name LIKE 'reg-%'",
        "name LIKE '%-_'",
        "name ILIKE 'REG-%'",
        "name IN ('reg-a', 'reg-c', 'nope')",
        "name NOT IN ('reg-a')",
        "tags.team = 'x'",
        "tags.team != 'x'",
        "tags.team LIKE 'x%'",
        "tags.team ILIKE 'x'",
        "tags.team = 'z' AND tags.env = 'dev'",
        "tags.`team` = 'y'",
        "name LIKE 'reg%' AND tags.team = 'y'",
        "tags.missing = 'x'",
        'name = "reg-c"',
        # invalid
        "name > 'a'",
        "name = reg-a",
        "foo = 'x'",
        "tags.team IN ('x')",
        "name = 'a' OR name = 'b'",
        "name =",
        "version_number = 1",
        "creation_timestamp > 0",
    ]
    for f in filters:
        rec.call(f"search_registered_models filter {f!r}", lambda f=f: _names(search(f)))
    orders = [
        ["name DESC"],
        ["name ASC"],
        ["last_updated_timestamp DESC"],
        ["last_updated_timestamp ASC"],
        ["timestamp DESC"],
        ["last_updated_timestamp DESC", "name ASC"],
        ["creation_timestamp DESC"],
        ["name UP"],
        ["foo"],
    ]
    for o in orders:
        rec.call(f"search_registered_models order {o}", lambda o=o: _names(search(order_by=o)))
    page = rec.call("search_registered_models page 1", lambda: search(max_results=2))
    rec.note("search_registered_models page 1 names", _names(page))
    pages = 0
    while page is not None and page.token and pages < 10:
        page = search(max_results=2, page_token=page.token)
        rec.note("search_registered_models next page", _names(page))
        pages += 1
    rec.call("search_registered_models bad token", lambda: _names(search(page_token="garbage")))
    rec.call("search_registered_models max_results 1000", lambda: _names(search(max_results=1000)))
    rec.call("search_registered_models max_results 1001", lambda: _names(search(max_results=1001)))
    rec.call("search_registered_models max_results 0", lambda: _names(search(max_results=0)))
    rec.call("search_registered_models entities", search, "name = 'reg-a'")


def _search_model_versions(rec: RegistryRecorder, client: MlflowClient, runs: list[Any]) -> None:
    r0, r1, r2 = (info.run_id for info in runs)
    search = client.search_model_versions
    filters = [
        "",
        "name = 'reg-a'",
        "name != 'reg-a'",
        "name LIKE 'reg-%'",
        "name ILIKE 'REG-C'",
        "name IN ('reg-c', 'reg-b2')",
        f"run_id = '{r0}'",
        f"run_id IN ('{r1}', '{r2}')",
        f"run_id NOT IN ('{r0}')",
        f"run_id != '{r1}'",
        "tags.k = 'v'",
        "tags.k != 'v'",
        "tags.k LIKE 'v%'",
        "version_number = 2",
        "version_number > 1",
        "version_number <= 1",
        "version_number != 2",
        "name = 'reg-a' AND version_number >= 2",
        "name = 'reg-a' AND tags.k = 'w'",
        f"source_path = 'runs:/{r0}/model'",
        "source_path LIKE 'runs:/%'",
        # invalid
        "version_number = 'x'",
        "version_number = 1.5",
        "version_number IN (1, 2)",
        "version_number LIKE '1'",
        "tags.k IN ('v')",
        "foo = 'x'",
        "name = reg-a",
        f"run_id > '{r0}'",
        "source_path IN ('x')",
        "name = 'a' OR name = 'b'",
        "current_stage = 'Staging'",
    ]
    for f in filters:
        rec.call(f"search_model_versions filter {f!r}", lambda f=f: _versions(search(f)))
    orders = [
        ["version_number ASC"],
        ["version_number DESC"],
        ["name DESC", "version_number ASC"],
        ["creation_timestamp ASC"],
        ["creation_timestamp DESC"],
        ["last_updated_timestamp DESC"],
        ["run_id ASC", "name ASC", "version_number ASC"],
        ["foo"],
        ["version_number UP"],
    ]
    for o in orders:
        rec.call(f"search_model_versions order {o}", lambda o=o: _versions(search(order_by=o)))
    page = rec.call("search_model_versions page 1", lambda: search(max_results=3))
    rec.note("search_model_versions page 1 versions", _versions(page))
    pages = 0
    while page is not None and page.token and pages < 10:
        page = search(max_results=3, page_token=page.token)
        rec.note("search_model_versions next page", _versions(page))
        pages += 1
    rec.call("search_model_versions bad token", lambda: _versions(search(page_token="garbage")))
    rec.call("search_model_versions max_results 0", lambda: _versions(search(max_results=0)))
    rec.call("search_model_versions max_results 200001", lambda: _versions(search(max_results=200_001)))
    rec.call("search_model_versions entities", search, "name = 'reg-a'", order_by=["version_number ASC"])


def _rest(rec: RegistryRecorder, runs: list[Any]) -> None:
    """Whole JSON answers, and requests the client would not send."""
    r0 = runs[0].run_id
    rec.rest_json("REST get model", "GET", "registered-models/get", params={"name": "reg-a"})
    rec.rest_json(
        "REST get model (ajax-api)", "GET", "registered-models/get", "/ajax-api/2.0/mlflow/", params={"name": "reg-a"}
    )
    rec.rest_json("REST get model no name", "GET", "registered-models/get")
    rec.rest_json("REST get model missing", "GET", "registered-models/get", params={"name": "reg-nope"})
    rec.rest_json("REST get version", "GET", "model-versions/get", params={"name": "reg-a", "version": "1"})
    rec.rest_json("REST get version no version", "GET", "model-versions/get", params={"name": "reg-a"})
    rec.rest_json("REST get version abc", "GET", "model-versions/get", params={"name": "reg-a", "version": "abc"})
    rec.rest_json("REST get version 0", "GET", "model-versions/get", params={"name": "reg-a", "version": "0"})
    rec.rest_json("REST get version -1", "GET", "model-versions/get", params={"name": "reg-a", "version": "-1"})
    rec.rest_json(
        "REST download uri", "GET", "model-versions/get-download-uri", params={"name": "reg-a", "version": "2"}
    )
    rec.rest_json("REST alias", "GET", "registered-models/alias", params={"name": "reg-a", "alias": "champion"})
    rec.rest_json("REST alias unknown", "GET", "registered-models/alias", params={"name": "reg-a", "alias": "x"})
    rec.rest_json("REST alias no alias", "GET", "registered-models/alias", params={"name": "reg-a"})
    rec.rest_json("REST latest versions GET", "GET", "registered-models/get-latest-versions", params={"name": "reg-a"})
    rec.rest_json(
        "REST latest versions POST",
        "POST",
        "registered-models/get-latest-versions",
        json={"name": "reg-a", "stages": ["Production", "None"]},
    )
    rec.rest_json(
        "REST search models",
        "GET",
        "registered-models/search",
        params={"filter": "name LIKE 'reg-%'", "max_results": 2},
    )
    rec.rest_json("REST search models max 1001", "GET", "registered-models/search", params={"max_results": 1001})
    rec.rest_json("REST search models max x", "GET", "registered-models/search", params={"max_results": "x"})
    rec.rest_json("REST search models max -1", "GET", "registered-models/search", params={"max_results": -1})
    rec.rest_json(
        "REST search versions",
        "GET",
        "model-versions/search",
        params={"filter": "name = 'reg-a'", "order_by": "version_number ASC"},
    )
    rec.rest_json("REST search versions max 0", "GET", "model-versions/search", params={"max_results": 0})
    rec.rest_json("REST search versions max 200001", "GET", "model-versions/search", params={"max_results": 200001})
    rec.rest_json("REST create model no name", "POST", "registered-models/create", json={})
    rec.rest_json("REST create model name not string", "POST", "registered-models/create", json={"name": 5})
    rec.rest_json(
        "REST create model tags",
        "POST",
        "registered-models/create",
        json={"name": "reg-rest", "tags": [{"key": "a", "value": "1"}], "description": "by REST"},
    )
    rec.rest_json("REST create version no source", "POST", "model-versions/create", json={"name": "reg-rest"})
    rec.rest_json(
        "REST create version",
        "POST",
        "model-versions/create",
        json={"name": "reg-rest", "source": f"runs:/{r0}/m", "run_id": r0, "run_link": "http://x/y"},
    )
    rec.rest_json(
        "REST update model", "PATCH", "registered-models/update", json={"name": "reg-rest", "description": "d2"}
    )
    rec.rest_json("REST update model no name", "PATCH", "registered-models/update", json={"description": "d"})
    rec.rest_json(
        "REST update version",
        "PATCH",
        "model-versions/update",
        json={"name": "reg-rest", "version": "1", "description": "vd"},
    )
    rec.rest_json(
        "REST rename model", "POST", "registered-models/rename", json={"name": "reg-rest", "new_name": "reg-rest2"}
    )
    rec.rest_json("REST rename no new_name", "POST", "registered-models/rename", json={"name": "reg-rest2"})
    rec.rest_json(
        "REST transition",
        "POST",
        "model-versions/transition-stage",
        json={"name": "reg-rest2", "version": "1", "stage": "Production", "archive_existing_versions": False},
    )
    rec.rest_json(
        "REST transition no archive flag",
        "POST",
        "model-versions/transition-stage",
        json={"name": "reg-rest2", "version": "1", "stage": "Staging"},
    )
    rec.rest_json(
        "REST transition bad stage",
        "POST",
        "model-versions/transition-stage",
        json={"name": "reg-rest2", "version": "1", "stage": "Deleted_Internal", "archive_existing_versions": False},
    )
    rec.rest_json(
        "REST set alias", "POST", "registered-models/alias", json={"name": "reg-rest2", "alias": "a1", "version": "1"}
    )
    for label, bad in [("space", "bad alias"), ("slash", "a/b"), ("too long", "a" * 256), ("empty", "")]:
        rec.rest_json(
            f"REST set alias {label}",
            "POST",
            "registered-models/alias",
            json={"name": "reg-rest2", "alias": bad, "version": "1"},
        )
    rec.rest_json(
        "REST set alias no version", "POST", "registered-models/alias", json={"name": "reg-rest2", "alias": "a2"}
    )
    rec.rest_json(
        "REST set alias version abc",
        "POST",
        "registered-models/alias",
        json={"name": "reg-rest2", "alias": "a2", "version": "abc"},
    )
    rec.rest_json(
        "REST set model tag", "POST", "registered-models/set-tag", json={"name": "reg-rest2", "key": "t", "value": "1"}
    )
    rec.rest_json("REST set model tag no key", "POST", "registered-models/set-tag", json={"name": "reg-rest2"})
    rec.rest_json(
        "REST set version tag",
        "POST",
        "model-versions/set-tag",
        json={"name": "reg-rest2", "version": "1", "key": "t", "value": "1"},
    )
    rec.rest_json("REST get renamed model", "GET", "registered-models/get", params={"name": "reg-rest2"})
    rec.rest_json("REST get renamed version", "GET", "model-versions/get", params={"name": "reg-rest2", "version": "1"})
    rec.rest_json("REST delete alias", "DELETE", "registered-models/alias", json={"name": "reg-rest2", "alias": "a1"})
    rec.rest_json(
        "REST delete model tag", "DELETE", "registered-models/delete-tag", json={"name": "reg-rest2", "key": "t"}
    )
    rec.rest_json(
        "REST delete version tag",
        "DELETE",
        "model-versions/delete-tag",
        json={"name": "reg-rest2", "version": "1", "key": "t"},
    )
    rec.rest_json("REST get after deletes", "GET", "model-versions/get", params={"name": "reg-rest2", "version": "1"})


def _prompts(rec: RegistryRecorder, client: MlflowClient) -> None:
    """Prompts ride the registry endpoints (tagged models); searches leave them out unless asked."""
    rec.call(
        "register_prompt",
        lambda: register_prompt("diff-prompt", "Hello {{name}}!", commit_message="first").version,
    )
    _pause()
    rec.call("register_prompt v2", lambda: register_prompt("diff-prompt", "Hi {{name}}.").version)
    rec.call("search models hides prompts", lambda: _names(client.search_registered_models("name LIKE 'diff-%'")))
    rec.call(
        "search models for prompts",
        lambda: _names(client.search_registered_models("tags.`mlflow.prompt.is_prompt` = 'true'")),
    )
    rec.call("search versions hides prompts", lambda: _versions(client.search_model_versions("name = 'diff-prompt'")))
    rec.call("get prompt model", client.get_registered_model, "diff-prompt")
    rec.call("get prompt version", client.get_model_version, "diff-prompt", "2")


def _deletes(rec: RegistryRecorder, client: MlflowClient, runs: list[Any]) -> None:
    r0 = runs[0].run_id
    _pause()
    rec.call("delete v2 (has alias)", client.delete_model_version, "reg-a", "2")
    rec.call("get deleted version", client.get_model_version, "reg-a", "2")
    rec.call("delete version again", client.delete_model_version, "reg-a", "2")
    rec.call("delete missing version", client.delete_model_version, "reg-a", "99")
    rec.call("update deleted version", client.update_model_version, "reg-a", "2", "x")
    rec.call("stage deleted version", client.transition_model_version_stage, "reg-a", "2", "Staging")
    rec.call("alias to deleted version", client.set_registered_model_alias, "reg-a", "gone", "2")
    rec.call("tag deleted version", client.set_model_version_tag, "reg-a", "2", "k", "v")
    rec.call("download uri deleted version", client.get_model_version_download_uri, "reg-a", "2")
    rec.call("search after version delete", lambda: _versions(client.search_model_versions("name = 'reg-a'")))
    rec.call("latest after version delete", client.get_latest_versions, "reg-a")
    rec.call("model after version delete", client.get_registered_model, "reg-a")
    _pause()
    rec.call("new version after delete", client.create_model_version, "reg-a", f"runs:/{r0}/m", r0)
    rec.call("delete model c", client.delete_registered_model, "reg-c")
    rec.call("get deleted model", client.get_registered_model, "reg-c")
    rec.call("get version of deleted model", client.get_model_version, "reg-c", "1")
    rec.call("delete model again", client.delete_registered_model, "reg-c")
    rec.call("recreate deleted model name", client.create_registered_model, "reg-c")
    rec.call("recreated model has no versions", lambda: _versions(client.search_model_versions("name = 'reg-c'")))
    _pause()
    rec.call("first version of recreated model", client.create_model_version, "reg-c", f"runs:/{r0}/m", r0)
    rec.call("search after model delete", lambda: _names(client.search_registered_models()))
