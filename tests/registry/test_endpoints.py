"""Every registry endpoint over REST, in both modes: happy paths, the stock server's errors, and what the
registry tables hold afterwards."""

from __future__ import annotations

from typing import Any

import pytest

from tests.registry.conftest import Registry

RM, MV = "/registered-models", "/model-versions"


def _model(registry: Registry, name: str, **body: object) -> dict[str, object]:
    return dict(registry.ok("POST", f"{RM}/create", {"name": name, **body})["registered_model"])


def _version(registry: Registry, name: str, source: str = "s3://bucket/model", **body: object) -> str:
    return str(
        registry.ok("POST", f"{MV}/create", {"name": name, "source": source, **body})["model_version"]["version"]
    )


def test_registered_model_lifecycle(registry: Registry) -> None:
    created = _model(registry, "m", description="first", tags=[{"key": "team", "value": "a"}])
    assert created["name"] == "m" and created["description"] == "first"
    assert created["tags"] == [{"key": "team", "value": "a"}]
    assert created["creation_timestamp"] == created["last_updated_timestamp"]

    got = registry.ok("GET", f"{RM}/get", {"name": "m"})["registered_model"]
    assert got == created

    updated = registry.ok("PATCH", f"{RM}/update", {"name": "m", "description": "second"})["registered_model"]
    assert updated["description"] == "second"

    registry.ok("POST", f"{RM}/set-tag", {"name": "m", "key": "stage", "value": "dev"})
    registry.ok("DELETE", f"{RM}/delete-tag", {"name": "m", "key": "team"})
    registry.ok("DELETE", f"{RM}/delete-tag", {"name": "m", "key": "never-set"})  # no error, as the stock store
    assert registry.ok("GET", f"{RM}/get", {"name": "m"})["registered_model"]["tags"] == [
        {"key": "stage", "value": "dev"}
    ]

    renamed = registry.ok("POST", f"{RM}/rename", {"name": "m", "new_name": "m2"})["registered_model"]
    assert renamed["name"] == "m2"
    registry.error("GET", f"{RM}/get", {"name": "m"}, 404, "RESOURCE_DOES_NOT_EXIST")

    registry.ok("DELETE", f"{RM}/delete", {"name": "m2"})
    message = registry.error("GET", f"{RM}/get", {"name": "m2"}, 404, "RESOURCE_DOES_NOT_EXIST")
    assert message == "Registered Model with name=m2 not found"
    assert registry.rows("SELECT name, deleted, description FROM registered_models FINAL") == [("m2", 1, "second")]
    # the name is free again: a new model, whose versions start at 1 again
    _model(registry, "m2")
    assert _version(registry, "m2") == "1"


def test_registered_model_errors(registry: Registry) -> None:
    _model(registry, "taken")
    message = registry.error("POST", f"{RM}/create", {"name": "taken"}, 400, "RESOURCE_ALREADY_EXISTS")
    assert message == "Registered Model (name=taken) already exists."
    _model(registry, "other")
    registry.error("POST", f"{RM}/rename", {"name": "other", "new_name": "taken"}, 400, "RESOURCE_ALREADY_EXISTS")
    for method, path, body in [
        ("GET", f"{RM}/get", {"name": "nope"}),
        ("PATCH", f"{RM}/update", {"name": "nope", "description": "x"}),
        ("POST", f"{RM}/rename", {"name": "nope", "new_name": "x"}),
        ("DELETE", f"{RM}/delete", {"name": "nope"}),
        ("POST", f"{RM}/set-tag", {"name": "nope", "key": "k", "value": "v"}),
        ("DELETE", f"{RM}/delete-tag", {"name": "nope", "key": "k"}),
        ("GET", f"{RM}/get-latest-versions", {"name": "nope"}),
        ("POST", f"{MV}/create", {"name": "nope", "source": "s3://b/m"}),
    ]:
        registry.error(method, path, body, 404, "RESOURCE_DOES_NOT_EXIST")
    registry.error("POST", f"{RM}/create", {}, 400, "INVALID_PARAMETER_VALUE")
    message = registry.error("POST", f"{RM}/create", {"name": "a/b"}, 400, "INVALID_PARAMETER_VALUE")
    assert message == "Invalid model name 'a/b'. Names cannot contain '/' or ':'."
    registry.error("POST", f"{RM}/create", {"name": 5}, 400, "INVALID_PARAMETER_VALUE")
    registry.error("POST", f"{RM}/set-tag", {"name": "taken", "key": "bad!key", "value": "v"}, 400,
                   "INVALID_PARAMETER_VALUE")  # fmt: skip
    # refused events wrote nothing but their decisions
    assert registry.rows("SELECT name FROM registered_models FINAL ORDER BY name") == [("other",), ("taken",)]


def test_model_version_lifecycle(registry: Registry) -> None:
    _model(registry, "m")
    assert [_version(registry, "m", f"s3://bucket/{i}") for i in range(3)] == ["1", "2", "3"]
    mv = registry.ok("GET", f"{MV}/get", {"name": "m", "version": "2"})["model_version"]
    assert mv["source"] == "s3://bucket/1" and mv["current_stage"] == "None" and mv["status"] == "READY"

    updated = registry.ok("PATCH", f"{MV}/update", {"name": "m", "version": "2", "description": "d"})
    assert updated["model_version"]["description"] == "d"

    staged = registry.ok(
        "POST",
        f"{MV}/transition-stage",
        {"name": "m", "version": "1", "stage": "production", "archive_existing_versions": False},
    )
    assert staged["model_version"]["current_stage"] == "Production"
    registry.ok("POST", f"{MV}/transition-stage",
                {"name": "m", "version": "2", "stage": "Production", "archive_existing_versions": True})  # fmt: skip
    stages = registry.rows("SELECT version, current_stage FROM model_versions FINAL ORDER BY version")
    assert stages == [(1, "Archived"), (2, "Production"), (3, "None")]

    latest = registry.ok("GET", f"{RM}/get-latest-versions", {"name": "m"})["model_versions"]
    assert {(v["version"], v["current_stage"]) for v in latest} == {("1", "Archived"), ("2", "Production"),
                                                                    ("3", "None")}  # fmt: skip
    prod = registry.ok("POST", f"{RM}/get-latest-versions", {"name": "m", "stages": ["Production"]})
    assert [v["version"] for v in prod["model_versions"]] == ["2"]

    uri = registry.ok("GET", f"{MV}/get-download-uri", {"name": "m", "version": "3"})
    assert uri == {"artifact_uri": "s3://bucket/2"}

    registry.ok("POST", f"{MV}/set-tag", {"name": "m", "version": "3", "key": "k", "value": "v"})
    assert registry.ok("GET", f"{MV}/get", {"name": "m", "version": "3"})["model_version"]["tags"] == [
        {"key": "k", "value": "v"}
    ]
    registry.ok("DELETE", f"{MV}/delete-tag", {"name": "m", "version": "3", "key": "k"})
    assert "tags" not in registry.ok("GET", f"{MV}/get", {"name": "m", "version": "3"})["model_version"]

    registry.ok("DELETE", f"{MV}/delete", {"name": "m", "version": "3"})
    registry.error("GET", f"{MV}/get", {"name": "m", "version": "3"}, 404, "RESOURCE_DOES_NOT_EXIST")
    # a deleted version's number is never given again
    assert _version(registry, "m") == "4"
    assert registry.rows("SELECT version, deleted, source FROM model_versions FINAL ORDER BY version")[2:] == [
        (3, 1, "REDACTED-SOURCE-PATH"),
        (4, 0, "s3://bucket/model"),
    ]
    # renaming the model renames its versions
    registry.ok("POST", f"{RM}/rename", {"name": "m", "new_name": "n"})
    assert registry.ok("GET", f"{MV}/get", {"name": "n", "version": "4"})["model_version"]["name"] == "n"
    assert registry.rows("SELECT DISTINCT name FROM model_versions FINAL") == [("n",)]


def test_model_version_errors(registry: Registry) -> None:
    _model(registry, "m")
    _version(registry, "m")
    message = registry.error("GET", f"{MV}/get", {"name": "m", "version": "9"}, 404, "RESOURCE_DOES_NOT_EXIST")
    assert message == "Model Version (name=m, version=9) not found"
    for method, path, body in [
        ("PATCH", f"{MV}/update", {"name": "m", "version": "9", "description": "x"}),
        ("DELETE", f"{MV}/delete", {"name": "m", "version": "9"}),
        ("POST", f"{MV}/transition-stage", {"name": "m", "version": "9", "stage": "Staging"}),
        ("POST", f"{MV}/set-tag", {"name": "m", "version": "9", "key": "k", "value": "v"}),
        ("GET", f"{MV}/get-download-uri", {"name": "m", "version": "9"}),
        ("POST", f"{RM}/alias", {"name": "m", "alias": "a", "version": "9"}),
    ]:
        registry.error(method, path, body, 404, "RESOURCE_DOES_NOT_EXIST")
    message = registry.error("POST", f"{MV}/transition-stage", {"name": "m", "version": "1", "stage": "Live"}, 400,
                             "INVALID_PARAMETER_VALUE")  # fmt: skip
    assert message == "Invalid Model Version stage: Live. Value must be one of None, Staging, Production, Archived."
    registry.error("POST", f"{MV}/transition-stage",
                   {"name": "m", "version": "1", "stage": "Archived", "archive_existing_versions": True}, 400,
                   "INVALID_PARAMETER_VALUE")  # fmt: skip
    message = registry.error("GET", f"{MV}/get", {"name": "m", "version": "x"}, 400, "INVALID_PARAMETER_VALUE")
    assert message == "Parameter 'version' must be an integer, got 'x'."
    registry.error("POST", f"{MV}/create", {"name": "m"}, 400, "INVALID_PARAMETER_VALUE")
    registry.error("POST", f"{MV}/create", {"name": "m", "source": "/tmp/local"}, 400, "INVALID_PARAMETER_VALUE")
    registry.error("POST", f"{MV}/create", {"name": "m", "source": "s3://b/../etc"}, 400, "INVALID_PARAMETER_VALUE")
    registry.error("POST", f"{MV}/create", {"name": "m", "source": "runs:/abc/model"}, 400, "INVALID_PARAMETER_VALUE")
    # nothing was numbered by the refused creates
    assert registry.rows("SELECT count() FROM model_versions FINAL") == [(1,)]


def test_aliases(registry: Registry) -> None:
    _model(registry, "m")
    _version(registry, "m", "s3://b/1")
    _version(registry, "m", "s3://b/2")
    registry.ok("POST", f"{RM}/alias", {"name": "m", "alias": "champion", "version": "1"})
    registry.ok("POST", f"{RM}/alias", {"name": "m", "alias": "champion", "version": "2"})  # moves it
    registry.ok("POST", f"{RM}/alias", {"name": "m", "alias": "old", "version": "1"})
    mv = registry.ok("GET", f"{RM}/alias", {"name": "m", "alias": "champion"})["model_version"]
    assert (mv["version"], mv["aliases"]) == ("2", ["champion"])
    latest = registry.ok("GET", f"{RM}/alias", {"name": "m", "alias": "latest"})["model_version"]
    assert latest["version"] == "2"
    model = registry.ok("GET", f"{RM}/get", {"name": "m"})["registered_model"]
    assert model["aliases"] == [{"alias": "champion", "version": "2"}, {"alias": "old", "version": "1"}]

    for alias, message in [
        ("latest", "'latest' alias name (case insensitive) is reserved."),
        ("v3", "Version alias name 'v3' is reserved."),
        ("bad alias", "Invalid alias name: 'bad alias'. Names may only contain alphanumerics, underscores (_), "
                      "and dashes (-)."),
    ]:  # fmt: skip
        body = {"name": "m", "alias": alias, "version": "1"}
        assert registry.error("POST", f"{RM}/alias", body, 400, "INVALID_PARAMETER_VALUE") == message
    message = registry.error("GET", f"{RM}/alias", {"name": "m", "alias": "nope"}, 400, "INVALID_PARAMETER_VALUE")
    assert message == "Registered model alias nope not found."
    registry.error("GET", f"{RM}/alias", {"name": "nope", "alias": "a"}, 404, "RESOURCE_DOES_NOT_EXIST")

    # deleting a version deletes its aliases; deleting an alias leaves the version
    registry.ok("DELETE", f"{MV}/delete", {"name": "m", "version": "2"})
    registry.error("GET", f"{RM}/alias", {"name": "m", "alias": "champion"}, 400, "INVALID_PARAMETER_VALUE")
    registry.ok("DELETE", f"{RM}/alias", {"name": "m", "alias": "old"})
    registry.ok("DELETE", f"{RM}/alias", {"name": "m", "alias": "never"})
    assert registry.ok("GET", f"{MV}/get", {"name": "m", "version": "1"})["model_version"]["version"] == "1"
    assert registry.rows("SELECT alias, deleted FROM registered_model_aliases FINAL ORDER BY alias") == [
        ("champion", 1),
        ("old", 1),
    ]


def test_searches(registry: Registry) -> None:
    for name in ("alpha", "beta", "gamma"):
        _model(registry, name, tags=[{"key": "team", "value": "vision" if name != "beta" else "nlp"}])
        _version(registry, name, f"s3://b/{name}", run_id="r-" + name)
    _version(registry, "alpha", "s3://b/alpha2")
    _model(registry, "prompt", tags=[{"key": "mlflow.prompt.is_prompt", "value": "true"}])

    def names(body: dict[str, object]) -> list[str]:
        return [m["name"] for m in registry.ok("GET", f"{RM}/search", body).get("registered_models", [])]

    assert names({}) == ["alpha", "beta", "gamma"]  # name order; prompts are left out
    assert names({"filter": "name LIKE 'a%'"}) == ["alpha"]
    assert names({"filter": "name ILIKE '%A%'"}) == ["alpha", "beta", "gamma"]
    assert names({"filter": "tags.team = 'vision'"}) == ["alpha", "gamma"]
    assert names({"filter": "tags.`mlflow.prompt.is_prompt` = 'true'"}) == ["prompt"]
    assert names({"order_by": ["name DESC"]}) == ["gamma", "beta", "alpha"]
    page = registry.ok("GET", f"{RM}/search", {"max_results": 2})
    assert [m["name"] for m in page["registered_models"]] == ["alpha", "beta"]
    rest = registry.ok("GET", f"{RM}/search", {"max_results": 2, "page_token": page["next_page_token"]})
    assert [m["name"] for m in rest["registered_models"]] == ["gamma"] and "next_page_token" not in rest
    assert registry.ok("GET", f"{RM}/search", {"filter": "name = 'none'"}) == {}

    def versions(body: dict[str, object]) -> list[tuple[str, str]]:
        found = registry.ok("GET", f"{MV}/search", body).get("model_versions", [])
        return [(v["name"], v["version"]) for v in found]

    assert versions({"filter": "name = 'alpha'"}) == [("alpha", "2"), ("alpha", "1")]
    assert versions({"filter": "run_id = 'r-beta'"}) == [("beta", "1")]
    assert versions({"filter": "run_id IN ('r-beta', 'r-gamma')", "order_by": ["name"]}) == [
        ("beta", "1"),
        ("gamma", "1"),
    ]
    assert versions({"filter": "name = 'alpha' AND version_number > 1"}) == [("alpha", "2")]
    assert versions({"filter": "source_path = 's3://b/gamma'"}) == [("gamma", "1")]
    assert versions({"filter": "name = 'alpha'", "order_by": ["version_number ASC"]}) == [
        ("alpha", "1"),
        ("alpha", "2"),
    ]
    registry.ok("POST", f"{MV}/set-tag", {"name": "beta", "version": "1", "key": "ok", "value": "yes"})
    assert versions({"filter": "tags.ok = 'yes'"}) == [("beta", "1")]

    bad: list[tuple[str, dict[str, Any]]] = [
        (f"{RM}/search", {"filter": "owner = 'x'"}),
        (f"{RM}/search", {"filter": "name = alpha"}),
        (f"{RM}/search", {"order_by": ["owner"]}),
        (f"{RM}/search", {"max_results": 1001}),
        (f"{MV}/search", {"filter": "version_number > 'x'"}),
        (f"{MV}/search", {"filter": "metrics.a > 1"}),
        (f"{MV}/search", {"filter": "source_path IN ('a')"}),
    ]
    for path, body in bad:
        registry.error("GET", path, body, 400, "INVALID_PARAMETER_VALUE")


@pytest.mark.parametrize("prefix", ["/api/2.0/mlflow", "/ajax-api/2.0/mlflow"])
def test_both_prefixes_serve_the_registry(registry: Registry, prefix: str) -> None:
    import requests

    r = requests.post(registry.url + prefix + f"{RM}/create", json={"name": "p" + prefix[1:4]}, timeout=30)
    assert r.status_code == 200, r.text
    r = requests.get(registry.url + prefix + f"{RM}/search", timeout=30)
    assert r.status_code == 200 and r.json()["registered_models"][0]["name"] == "p" + prefix[1:4]
