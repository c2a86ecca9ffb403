"""The official client's registry flows against the gateway, in both modes: register a logged model,
load registered versions by number and alias (the files come through the gateway's artifact proxy),
aliases, tags, stages, copies, searches, and the prompt registry that rides the same endpoints."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import sklearn  # noqa: F401  # the test extra has it; missing, the module fails to import (never a skip)

from tests.conftest import Gateway


def _fit(slope: float) -> Any:
    from sklearn.linear_model import LinearRegression

    x = np.arange(10, dtype=float).reshape(-1, 1)
    return LinearRegression().fit(x, slope * x.ravel() + 1.0)


X = np.array([[0.0], [5.0], [20.0]])


def test_register_load_and_alias(mlflow_client: Any, gateway: Gateway) -> None:
    import mlflow
    import mlflow.pyfunc
    import mlflow.sklearn

    first, second = _fit(2.0), _fit(-3.0)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(first, name="model", registered_model_name="regressor")
    assert str(info.registered_model_version) == "1"
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(second, name="model")
    mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", "regressor")
    assert (mv.name, mv.version) == ("regressor", "2")
    assert mv.run_id == run.info.run_id

    mlflow_client.set_registered_model_alias("regressor", "champion", "2")
    np.testing.assert_allclose(mlflow.pyfunc.load_model("models:/regressor/1").predict(X), first.predict(X))
    np.testing.assert_allclose(mlflow.pyfunc.load_model("models:/regressor/2").predict(X), second.predict(X))
    np.testing.assert_allclose(mlflow.pyfunc.load_model("models:/regressor@champion").predict(X), second.predict(X))
    np.testing.assert_allclose(mlflow.sklearn.load_model("models:/regressor@latest").predict(X), second.predict(X))

    # the version's storage location is the logged model's, under the gateway's artifact scheme
    uri = mlflow_client.get_model_version_download_uri("regressor", "2")
    assert uri.startswith("mlflow-artifacts:/") and "/models/" in uri
    # the logged model lists the version registered from it (the stock server's mlflow.modelVersions tag)
    logged = mlflow_client.get_logged_model(info.model_id)
    assert '"name": "regressor"' in logged.tags["mlflow.modelVersions"]


def test_client_registry_calls(mlflow_client: Any) -> None:
    from mlflow.exceptions import MlflowException

    client = mlflow_client
    client.create_registered_model("clf", tags={"team": "vision"}, description="a classifier")
    for i in range(3):
        client.create_model_version("clf", f"s3://bucket/clf/{i}", tags={"i": str(i)})
    client.transition_model_version_stage("clf", "1", "Production")
    client.transition_model_version_stage("clf", "2", "Production", archive_existing_versions=True)
    assert client.get_model_version("clf", "1").current_stage == "Archived"
    assert [v.version for v in client.get_latest_versions("clf", stages=["Production"])] == ["2"]

    client.set_registered_model_alias("clf", "champion", "3")
    assert client.get_model_version_by_alias("clf", "champion").version == "3"
    assert client.get_registered_model("clf").aliases == {"champion": "3"}
    client.delete_registered_model_alias("clf", "champion")
    with pytest.raises(MlflowException, match="alias champion not found"):
        client.get_model_version_by_alias("clf", "champion")

    client.set_model_version_tag("clf", "3", "validated", "yes")
    client.delete_model_version_tag("clf", "3", "i")
    assert client.get_model_version("clf", "3").tags == {"validated": "yes"}
    client.set_registered_model_tag("clf", "owner", "me")
    client.delete_registered_model_tag("clf", "team")
    assert client.get_registered_model("clf").tags == {"owner": "me"}
    client.update_registered_model("clf", description="updated")
    client.update_model_version("clf", "3", description="best")
    assert client.get_model_version("clf", "3").description == "best"

    copied = client.copy_model_version("models:/clf/3", "clf-copy")
    assert (copied.name, copied.version, copied.source) == ("clf-copy", "1", "models:/clf/3")
    assert copied.tags == {"validated": "yes"} and copied.description == "best"
    assert client.get_model_version_download_uri("clf-copy", "1") == "s3://bucket/clf/2"

    assert [m.name for m in client.search_registered_models(filter_string="name LIKE 'clf%'")] == ["clf", "clf-copy"]
    found = client.search_model_versions("name = 'clf'", order_by=["version_number ASC"])
    assert [v.version for v in found] == ["1", "2", "3"]
    page = client.search_model_versions("name = 'clf'", max_results=2)
    assert len(page) == 2 and page.token

    client.rename_registered_model("clf", "clf-renamed")
    assert client.get_model_version("clf-renamed", "2").name == "clf-renamed"
    client.delete_model_version("clf-renamed", "1")
    client.delete_registered_model("clf-renamed")
    with pytest.raises(MlflowException, match="not found"):
        client.get_registered_model("clf-renamed")
    with pytest.raises(MlflowException, match="already exists"):
        client.create_registered_model("clf-copy")


def test_prompts(mlflow_client: Any) -> None:
    import mlflow
    import mlflow.genai

    first = mlflow.genai.register_prompt(name="greeting", template="Hello {{name}}!", commit_message="first")
    second = mlflow.genai.register_prompt(name="greeting", template="Hi {{name}}, welcome!")
    assert (first.version, second.version) == (1, 2)
    assert mlflow.genai.load_prompt("prompts:/greeting/1").template == "Hello {{name}}!"
    assert mlflow.genai.load_prompt("prompts:/greeting/2").format(name="Ada") == "Hi Ada, welcome!"
    mlflow.genai.set_prompt_alias("greeting", alias="production", version=1)
    assert mlflow.genai.load_prompt("prompts:/greeting@production").version == 1
    assert mlflow.genai.load_prompt("prompts:/greeting@latest").version == 2
    assert [p.name for p in mlflow.genai.search_prompts()] == ["greeting"]
    # prompts stay out of the model searches, as on the stock server
    assert mlflow_client.search_registered_models() == []
