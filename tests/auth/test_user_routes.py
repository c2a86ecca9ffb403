"""The basic-auth app's user and permission routes answer as the stock server's do; tokens; search
results filtered to what the caller may read; the MLflow client logging a run with a password and with
a token; no secret in the gateway's log."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from tests.auth.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    API,
    Api,
    AuthGateway,
    admin,
    basic,
    bearer,
    grant,
    new_user,
)
from tests.conftest import official_client


def test_user_routes(auth_gateway: AuthGateway) -> None:
    root = admin(auth_gateway)
    created = root.ok("POST", f"{API}/users/create", {"username": "ann", "password": "ann-password-12"})["user"]
    assert created["username"] == "ann" and created["is_admin"] is False and isinstance(created["id"], int)
    again = root.call("POST", f"{API}/users/create", {"username": "ann", "password": "ann-password-12"})
    assert again.status_code == 400 and again.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"
    short = root.call("POST", f"{API}/users/create", {"username": "bob", "password": "short"})
    assert short.status_code == 400 and short.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    empty = root.call("POST", f"{API}/users/create", {"username": "", "password": "x"})
    assert empty.status_code == 400
    assert root.ok("GET", f"{API}/users/get", {"username": "ann"}) == {"user": created}
    missing = root.call("GET", f"{API}/users/get", {"username": "nobody"})
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    ann = Api(auth_gateway.url, basic("ann", "ann-password-12"))
    assert ann.ok("GET", f"{API}/users/current")["user"]["username"] == "ann"
    assert ann.ok("GET", f"{API}/users/get", {"username": "ann"})["user"]["username"] == "ann"
    assert ann.call("GET", f"{API}/users/get", {"username": ADMIN}).status_code == 403
    assert ann.call("POST", f"{API}/users/create", {"username": "c", "password": "c-password-123"}).status_code == 403
    assert ann.call("PATCH", f"{API}/users/update-admin", {"username": "ann", "is_admin": True}).status_code == 403
    assert ann.call("DELETE", f"{API}/users/delete", {"username": ADMIN}).status_code == 403

    # self-service password change re-asserts the current one
    change = {"username": "ann", "password": "ann-password-34"}
    assert ann.call("PATCH", f"{API}/users/update-password", change).status_code == 400
    bad = ann.call("PATCH", f"{API}/users/update-password", {**change, "current_password": "wrong-password"})
    assert bad.status_code == 400 and bad.json()["message"] == "Current password does not match."
    assert ann.ok("PATCH", f"{API}/users/update-password", {**change, "current_password": "ann-password-12"}) == {}
    assert ann.call("GET", f"{API}/users/current").status_code == 401  # the old password is gone
    ann = Api(auth_gateway.url, basic("ann", "ann-password-34"))
    assert ann.call("GET", f"{API}/users/current").status_code == 200

    # admin flag
    assert root.ok("PATCH", f"{API}/users/update-admin", {"username": "ann", "is_admin": True}) == {}
    assert ann.ok("GET", f"{API}/users/get", {"username": ADMIN})["user"]["is_admin"] is True
    assert root.ok("PATCH", f"{API}/users/update-admin", {"username": "ann", "is_admin": "false"}) == {}
    assert ann.call("GET", f"{API}/users/get", {"username": ADMIN}).status_code == 403

    # delete: not oneself (400 BAD_REQUEST, as the stock server), then the user and its permissions are gone
    own = root.call("DELETE", f"{API}/users/delete", {"username": ADMIN})
    assert own.status_code == 400 and own.json()["error_code"] == "BAD_REQUEST"
    experiment_id = root.ok("POST", f"{API}/experiments/create", {"name": f"u-{uuid.uuid4().hex[:6]}"})["experiment_id"]
    grant(auth_gateway, "ann", experiment_id, "EDIT")
    assert root.ok("DELETE", f"{API}/users/delete", {"username": "ann"}) == {}
    assert ann.call("GET", f"{API}/users/current").status_code == 401
    gone = root.call("GET", f"{API}/experiments/permissions/get", {"experiment_id": experiment_id, "username": "ann"})
    assert gone.status_code == 404
    assert root.call("DELETE", f"{API}/users/delete", {"username": "ann"}).status_code == 404


def test_permission_routes(auth_gateway: AuthGateway) -> None:
    root = admin(auth_gateway)
    new_user(auth_gateway, "pat")
    experiment_id = root.ok("POST", f"{API}/experiments/create", {"name": f"p-{uuid.uuid4().hex[:6]}"})["experiment_id"]
    key = {"experiment_id": experiment_id, "username": "pat"}
    assert root.call("GET", f"{API}/experiments/permissions/get", key).status_code == 404
    created = root.ok("POST", f"{API}/experiments/permissions/create", {**key, "permission": "READ"})
    user_id = root.ok("GET", f"{API}/users/get", {"username": "pat"})["user"]["id"]
    assert created == {
        "experiment_permission": {"experiment_id": experiment_id, "user_id": user_id, "permission": "READ"}
    }
    dup = root.call("POST", f"{API}/experiments/permissions/create", {**key, "permission": "EDIT"})
    assert dup.status_code == 400 and dup.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"
    bad = root.call("PATCH", f"{API}/experiments/permissions/update", {**key, "permission": "OWNER"})
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert root.ok("PATCH", f"{API}/experiments/permissions/update", {**key, "permission": "MANAGE"}) == {}
    assert root.ok("GET", f"{API}/experiments/permissions/get", key)["experiment_permission"]["permission"] == "MANAGE"
    assert root.ok("DELETE", f"{API}/experiments/permissions/delete", key) == {}
    assert root.call("DELETE", f"{API}/experiments/permissions/delete", key).status_code == 404
    unknown = root.call(
        "POST", f"{API}/experiments/permissions/create", {**key, "username": "nobody", "permission": "READ"}
    )
    assert unknown.status_code == 404

    rm = {"name": "model-a", "username": "pat"}
    got = root.ok("POST", f"{API}/registered-models/permissions/create", {**rm, "permission": "EDIT"})
    assert got == {"registered_model_permission": {"name": "model-a", "user_id": user_id, "permission": "EDIT"}}
    assert root.ok("PATCH", f"{API}/registered-models/permissions/update", {**rm, "permission": "READ"}) == {}
    assert (
        root.ok("GET", f"{API}/registered-models/permissions/get", rm)["registered_model_permission"]["permission"]
        == "READ"
    )
    assert root.ok("DELETE", f"{API}/registered-models/permissions/delete", rm) == {}
    assert root.call("GET", f"{API}/registered-models/permissions/get", rm).status_code == 404


def test_tokens(auth_gateway: AuthGateway) -> None:
    tess = new_user(auth_gateway, "tess")
    minted = tess.ok("POST", f"{API}/users/tokens/create", {"expires_in_seconds": 3600})
    token, info = minted["token"], minted["token_info"]
    assert info["username"] == "tess" and info["expires_at"] > info["created_at"]
    with_token = Api(auth_gateway.url, bearer(token))
    assert with_token.ok("GET", f"{API}/users/current")["user"]["username"] == "tess"
    assert tess.ok("GET", f"{API}/users/tokens/list")["tokens"] == [info]
    # another user can neither mint for, list nor revoke tess's tokens; an admin can
    other = new_user(auth_gateway, "otto")
    assert other.call("POST", f"{API}/users/tokens/create", {"username": "tess"}).status_code == 403
    assert other.call("GET", f"{API}/users/tokens/list", {"username": "tess"}).status_code == 403
    assert other.call("DELETE", f"{API}/users/tokens/delete", {"token_id": info["token_id"]}).status_code == 404
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert Api(auth_gateway.url, bearer(tampered)).call("GET", f"{API}/users/current").status_code == 401
    assert admin(auth_gateway).ok("DELETE", f"{API}/users/tokens/delete", {"token_id": info["token_id"]}) == {}
    assert with_token.call("GET", f"{API}/users/current").status_code == 401


def test_searches_are_filtered_to_what_the_caller_may_read(auth_gateway: AuthGateway) -> None:
    root = admin(auth_gateway)
    hidden = root.ok("POST", f"{API}/experiments/create", {"name": f"hidden-{uuid.uuid4().hex[:6]}"})["experiment_id"]
    shown = root.ok("POST", f"{API}/experiments/create", {"name": f"shown-{uuid.uuid4().hex[:6]}"})["experiment_id"]
    for experiment_id in (hidden, shown):
        root.ok("POST", f"{API}/runs/create", {"experiment_id": experiment_id})
        root.ok("POST", f"{API}/logged-models", {"experiment_id": experiment_id})
    sam = new_user(auth_gateway, "sam")
    grant(auth_gateway, "sam", hidden, "NO_PERMISSIONS")
    everyone = {
        e["experiment_id"] for e in root.ok("GET", f"{API}/experiments/search", {"max_results": 1000})["experiments"]
    }
    seen = {
        e["experiment_id"] for e in sam.ok("GET", f"{API}/experiments/search", {"max_results": 1000})["experiments"]
    }
    assert {hidden, shown} <= everyone
    assert seen == everyone - {hidden}
    runs = sam.ok("POST", f"{API}/runs/search", {"experiment_ids": [hidden, shown]})["runs"]
    assert {r["info"]["experiment_id"] for r in runs} == {shown}
    models = sam.ok("POST", f"{API}/logged-models/search", {"experiment_ids": [hidden, shown]})["models"]
    assert {m["info"]["experiment_id"] for m in models} == {shown}
    # GraphQL answers through the same endpoints: same check, same filter
    query = "query ($i: MlflowSearchRunsInput) { mlflowSearchRuns(input: $i) { runs { info { experimentId } } } }"
    body = sam.ok("POST", "/graphql", {"query": query, "variables": {"i": {"experimentIds": [hidden, shown]}}})
    assert {r["info"]["experimentId"] for r in body["data"]["mlflowSearchRuns"]["runs"]} == {shown}
    get = "query ($i: MlflowGetExperimentInput) { mlflowGetExperiment(input: $i) { experiment { name } } }"
    denied = sam.ok("POST", "/graphql", {"query": get, "variables": {"i": {"experimentId": hidden}}})
    assert denied["data"]["mlflowGetExperiment"] is None and "Permission denied" in str(denied["errors"])


def test_mlflow_client_with_password_and_with_token(
    auth_gateway: AuthGateway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = f"client-{uuid.uuid4().hex}"
    new_user(auth_gateway, "cli", password)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "cli")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    (tmp_path / "notes.txt").write_text("hello")
    with official_client(auth_gateway.url, monkeypatch) as client:
        import mlflow

        experiment_id = client.create_experiment(f"client-{uuid.uuid4().hex[:6]}")
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_param("p", "1")
            mlflow.log_metric("m", 1.5)
            mlflow.log_artifact(str(tmp_path / "notes.txt"))
        got = client.get_run(run.info.run_id)
        assert got.data.params == {"p": "1"} and got.data.metrics == {"m": 1.5}
        assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["notes.txt"]

    token = Api(auth_gateway.url, basic("cli", password)).ok("POST", f"{API}/users/tokens/create")["token"]
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    with official_client(auth_gateway.url, monkeypatch) as client:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_metric("m", 2.5)
        assert client.get_run(run.info.run_id).data.metrics == {"m": 2.5}
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "mlt_0_invalid")
        with pytest.raises(Exception, match=r"401|not authenticated"):
            client.get_run(run.info.run_id)

    logged = caplog.text
    for secret in (password, token, token.rsplit("_", 1)[1], ADMIN_PASSWORD):
        assert secret not in logged
    settings = auth_gateway.runtime.settings
    segments = list((settings.data_dir / "log" / settings.topics.auth).glob("*/*.log"))
    for segment in segments:  # embedded: the auth topic on disk holds hashes and digests, never a secret
        raw = segment.read_bytes()
        assert password.encode() not in raw and token.encode() not in raw
        assert segment.stat().st_mode & 0o077 == 0  # and is readable by the gateway's user alone
