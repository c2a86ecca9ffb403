"""The model-registry flows of the official client, unmodified: register, log with registration, aliases,
tags, stages, copies, searches, loading ``models:/`` URIs and the prompt registry."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from numpy.typing import NDArray
from sklearn.linear_model import LinearRegression

X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 3.0], [4.0, -1.0]])


def _model(slope: float) -> LinearRegression:
    """A linear model whose predictions tell which one was loaded: y = slope * x0 + x1 + 1."""
    y = slope * X[:, 0] + X[:, 1] + 1.0
    return LinearRegression().fit(X, y)


def _expected(slope: float) -> NDArray[np.float64]:
    return np.asarray(slope * X[:, 0] + X[:, 1] + 1.0, dtype=np.float64)


def _predict(uri: str) -> NDArray[np.float64]:
    return np.asarray(mlflow.pyfunc.load_model(uri).predict(X), dtype=np.float64)


def test_register_log_and_load(client: MlflowClient, name: str) -> None:
    mlflow.set_experiment(f"exp-{name}")
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(_model(2.0), name="model")
    first = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    assert (first.name, first.version, first.status) == (name, "1", "READY")
    assert first.run_id == run.info.run_id

    with mlflow.start_run() as run2:
        info = mlflow.sklearn.log_model(_model(-3.0), name="model", registered_model_name=name)
    assert info.registered_model_version == "2"
    second = client.get_model_version(name, "2")
    assert second.run_id == run2.info.run_id
    assert second.source == f"models:/{info.model_id}"

    client.set_registered_model_alias(name, "champion", "2")
    np.testing.assert_allclose(_predict(f"models:/{name}/1"), _expected(2.0), atol=1e-6)
    np.testing.assert_allclose(_predict(f"models:/{name}/2"), _expected(-3.0), atol=1e-6)
    np.testing.assert_allclose(_predict(f"models:/{name}@champion"), _expected(-3.0), atol=1e-6)
    np.testing.assert_allclose(_predict(f"models:/{name}/latest"), _expected(-3.0), atol=1e-6)

    client.set_registered_model_alias(name, "champion", "1")
    np.testing.assert_allclose(_predict(f"models:/{name}@champion"), _expected(2.0), atol=1e-6)
    with pytest.raises(MlflowException) as missing:
        mlflow.pyfunc.load_model(f"models:/{name}/7")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_aliases_tags_stages_copies_and_searches(client: MlflowClient, name: str) -> None:
    mlflow.set_experiment(f"exp-{name}")
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(_model(1.0), name="model", registered_model_name=name)
        mlflow.sklearn.log_model(_model(5.0), name="model-b", registered_model_name=name)
    run_id = run.info.run_id

    client.set_registered_model_tag(name, "team", "vision")
    client.set_model_version_tag(name, "1", "validated", "yes")
    client.update_registered_model(name, "what the model does")
    client.update_model_version(name, "2", "the better one")
    client.set_registered_model_alias(name, "champion", "2")
    client.set_registered_model_alias(name, "challenger", "1")

    model = client.get_registered_model(name)
    assert model.tags == {"team": "vision"}
    assert model.description == "what the model does"
    assert model.aliases == {"champion": "2", "challenger": "1"}
    assert client.get_model_version_by_alias(name, "champion").description == "the better one"
    assert client.get_model_version(name, "1").tags == {"validated": "yes"}
    assert client.get_model_version(name, "1").aliases == ["challenger"]

    with pytest.raises(MlflowException) as reserved:
        client.set_registered_model_alias(name, "latest", "1")
    assert reserved.value.error_code == "INVALID_PARAMETER_VALUE"
    client.delete_registered_model_alias(name, "challenger")
    with pytest.raises(MlflowException) as gone:
        client.get_model_version_by_alias(name, "challenger")
    assert gone.value.error_code == "INVALID_PARAMETER_VALUE"

    assert client.transition_model_version_stage(name, "1", "Production").current_stage == "Production"
    assert client.transition_model_version_stage(name, "2", "Production", True).current_stage == "Production"
    assert client.get_model_version(name, "1").current_stage == "Archived"
    assert [v.version for v in client.get_latest_versions(name, ["Production"])] == ["2"]
    with pytest.raises(MlflowException) as bad_stage:
        client.transition_model_version_stage(name, "1", "Shipped")
    assert bad_stage.value.error_code == "INVALID_PARAMETER_VALUE"

    copy = client.copy_model_version(f"models:/{name}@champion", f"{name}-copy")
    assert (copy.name, copy.version) == (f"{name}-copy", "1")
    assert client.get_model_version_download_uri(f"{name}-copy", "1") == client.get_model_version_download_uri(
        name, "2"
    )
    np.testing.assert_allclose(_predict(f"models:/{name}-copy/1"), _expected(5.0), atol=1e-6)

    found = client.search_registered_models(f"name LIKE '{name}%'", order_by=["name DESC"])
    assert [m.name for m in found] == [f"{name}-copy", name]
    assert [m.name for m in client.search_registered_models(f"tags.team = 'vision' AND name = '{name}'")] == [name]
    versions = client.search_model_versions(f"run_id = '{run_id}'", order_by=["version_number DESC"])
    # The copy keeps its source's run: same run, version 1 of the other model, after name's 1 by name.
    assert [(v.name, v.version) for v in versions] == [(name, "2"), (name, "1"), (f"{name}-copy", "1")]
    assert [v.version for v in client.search_model_versions(f"name = '{name}' AND tags.validated = 'yes'")] == ["1"]
    page = client.search_model_versions(f"name = '{name}'", max_results=1, order_by=["version_number DESC"])
    assert [v.version for v in page] == ["2"] and page.token
    rest = client.search_model_versions(f"name = '{name}'", max_results=1, page_token=page.token)
    assert [v.version for v in rest] == ["1"]

    client.delete_model_version(name, "1")
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["2"]
    client.rename_registered_model(f"{name}-copy", f"{name}-renamed")
    assert client.get_model_version(f"{name}-renamed", "1").name == f"{name}-renamed"
    client.delete_registered_model(f"{name}-renamed")
    with pytest.raises(MlflowException) as deleted:
        client.get_registered_model(f"{name}-renamed")
    assert deleted.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_prompt_registry(client: MlflowClient, name: str) -> None:
    prompt = f"prompt-{name}"
    first = mlflow.genai.register_prompt(prompt, "Hello {{name}}!", commit_message="v1", tags={"lang": "en"})
    assert (first.name, first.version) == (prompt, 1)
    second = mlflow.genai.register_prompt(prompt, "Hi {{name}}, welcome.")
    assert second.version == 2

    assert mlflow.genai.load_prompt(f"prompts:/{prompt}/1").format(name="Ada") == "Hello Ada!"
    assert mlflow.genai.load_prompt(prompt, version=2).format(name="Ada") == "Hi Ada, welcome."
    mlflow.genai.set_prompt_alias(prompt, "production", 1)
    loaded = mlflow.genai.load_prompt(f"prompts:/{prompt}@production")
    assert (loaded.version, loaded.template, loaded.commit_message) == (1, "Hello {{name}}!", "v1")
    assert mlflow.genai.load_prompt(f"prompts:/{prompt}@latest").version == 2

    assert [p.name for p in mlflow.genai.search_prompts(f"name = '{prompt}'")] == [prompt]
    # A prompt is a registered model with a tag; model searches leave it out.
    assert list(client.search_registered_models(f"name = '{prompt}'")) == []
