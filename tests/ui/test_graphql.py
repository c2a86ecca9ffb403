"""POST /graphql: the schema keeps the stock server's shape, and the UI's queries answer as the stock server's do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from graphql import build_schema, find_breaking_changes

from ingest.graphql import SDL
from tests.conftest import Gateway, official_client
from trackstream.settings import Settings

GET_RUN = """
query GetRun($data: MlflowGetRunInput!) @component(name: "MLflow.ExperimentRunTracking") {
  mlflowGetRun(input: $data) {
    apiError { code message }
    run {
      info { runName status runUuid experimentId startTime endTime lifecycleStage }
      experiment { experimentId name lastUpdateTime }
      modelVersions { name version }
      data { metrics { key value step timestamp } params { key value } tags { key value } }
      inputs { datasetInputs { dataset { name digest } } modelInputs { modelId } }
      outputs { modelOutputs { modelId step } }
    }
  }
}
"""
SEARCH_VERSIONS = """
query SearchModelVersions($input: MlflowSearchModelVersionsInput!) {
  mlflowSearchModelVersions(input: $input) { modelVersions { name version runId currentStage } }
}
"""
SEARCH_RUNS = """
query SearchRuns($data: MlflowSearchRunsInput!) {
  mlflowSearchRuns(input: $data) { runs { info { runName } data { params { key value } } } nextPageToken }
}
"""
BULK = """
query GetMetricHistoryBulkInterval($data: MlflowGetMetricHistoryBulkIntervalInput!) {
  mlflowGetMetricHistoryBulkInterval(input: $data) { __typename metrics { timestamp step runId key value } }
}
"""


def test_schema_has_no_breaking_change_against_the_stock_schema() -> None:
    from mlflow.server.graphql.graphql_schema_extensions import schema as stock

    stock_schema = build_schema(str(stock))
    assert find_breaking_changes(stock_schema, build_schema(SDL)) == []


def _post(url: str, query: str, variables: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=30)


def test_ui_queries(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    with official_client(gateway.url, monkeypatch) as client:
        experiment_id = client.create_experiment("gql")
        run = client.create_run(experiment_id, run_name="gql-run")
        run_id = run.info.run_id
        client.log_param(run_id, "lr", "0.1")
        for step, value in enumerate([1.0, float("nan"), 0.5]):
            client.log_metric(run_id, "loss", value, step=step)
        client.set_terminated(run_id)
        # a version registered from the run: the run page lists it (MlflowRunExtension.modelVersions)
        client.create_registered_model("gql-model")
        artifact_uri = client.get_run(run_id).info.artifact_uri
        client.create_model_version("gql-model", f"{artifact_uri}/model", run_id=run_id)

    body = _post(gateway.url, GET_RUN, {"data": {"runId": run_id}}).json()
    assert body["errors"] is None
    got = body["data"]["mlflowGetRun"]["run"]
    assert got["info"]["runName"] == "gql-run"
    assert got["info"]["status"] == "FINISHED"
    assert got["info"]["runUuid"] == run_id
    assert isinstance(got["info"]["startTime"], str) and int(got["info"]["startTime"]) > 0  # LongString
    assert got["experiment"]["name"] == "gql"
    assert got["modelVersions"] == [{"name": "gql-model", "version": "1"}]
    assert got["data"]["params"] == [{"key": "lr", "value": "0.1"}]
    assert got["data"]["metrics"] == [
        {"key": "loss", "value": 0.5, "step": "2", "timestamp": got["data"]["metrics"][0]["timestamp"]}
    ]

    body = _post(gateway.url, SEARCH_VERSIONS, {"input": {"filter": "name = 'gql-model'"}}).json()
    assert body["data"]["mlflowSearchModelVersions"]["modelVersions"] == [
        {"name": "gql-model", "version": "1", "runId": run_id, "currentStage": "None"}
    ]

    body = _post(gateway.url, SEARCH_RUNS, {"data": {"experimentIds": [experiment_id]}}).json()
    assert [r["info"]["runName"] for r in body["data"]["mlflowSearchRuns"]["runs"]] == ["gql-run"]

    body = _post(gateway.url, BULK, {"data": {"runIds": [run_id], "metricKey": "loss", "maxResults": 320}}).json()
    points = body["data"]["mlflowGetMetricHistoryBulkInterval"]["metrics"]
    assert [(p["step"], p["value"], p["runId"]) for p in points] == [
        ("0", 1.0, run_id),
        ("1", None, run_id),
        ("2", 0.5, run_id),
    ]

    # a handler's error is a GraphQL error beside null data, with 200, as on the stock server
    response = _post(gateway.url, GET_RUN, {"data": {"runId": "missing"}})
    assert response.status_code == 200
    assert response.json() == {"data": {"mlflowGetRun": None}, "errors": ["Run with id=missing not found"]}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("query { bogus }", "Cannot query field 'bogus' on type 'Query'."),
        (
            "query { " + " ".join(f'a{i}: test(inputString: "x") {{ output }}' for i in range(11)) + " }",
            "GraphQL queries should have at most 10 root fields, got 11 root fields.",
        ),
        ("query { test {", None),
    ],
)
def test_bad_queries(
    gateway_factory: Callable[[Settings], Gateway],
    embedded_settings: Callable[..., Settings],
    query: str,
    message: str | None,
) -> None:
    response = _post(gateway_factory(embedded_settings()).url, query)
    if message is None:  # not a GraphQL document: 400 (the stock server answers 500)
        assert response.status_code == 400
        assert response.json()["error_code"] == "BAD_REQUEST"
    else:
        assert response.status_code == 200
        assert response.json() == {"data": None, "errors": [message]}
