"""Registry rules decided in log order across replicas: two `trackstream serve` gateways on one Kafka
(and the embedded gateway) take concurrent version creates and name creates; the answers and the tables
are what one stock server would give."""

from __future__ import annotations

from tests.decisions.conftest import Cluster

N = 24


def test_concurrent_version_creates_are_numbered_one_to_n(cluster: Cluster) -> None:
    cluster.ok("/registered-models/create", {"name": "raced"})
    bodies = [{"name": "raced", "source": f"s3://bucket/{i}"} for i in range(N)]
    responses = cluster.race("/model-versions/create", bodies)
    assert [r.status_code for r in responses] == [200] * N, [r.text for r in responses if r.status_code != 200]
    numbers = sorted(int(r.json()["model_version"]["version"]) for r in responses)
    assert numbers == list(range(1, N + 1))
    # each answer names the version its own request created
    by_source = {r.json()["model_version"]["source"]: r.json()["model_version"]["version"] for r in responses}
    rows = cluster.tables.query("SELECT version, source FROM model_versions FINAL ORDER BY version")
    assert [v for v, _ in rows] == list(range(1, N + 1))
    assert {source: str(v) for v, source in rows} == by_source


def test_concurrent_creates_of_one_name_make_one_model(cluster: Cluster) -> None:
    bodies = [{"name": "contested", "description": f"by {i}"} for i in range(N)]
    responses = cluster.race("/registered-models/create", bodies)
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [400] * (N - 1), [r.text for r in responses]
    refused = [r.json() for r in responses if r.status_code == 400]
    assert all(e["error_code"] == "RESOURCE_ALREADY_EXISTS" for e in refused)
    winner = next(r.json()["registered_model"] for r in responses if r.status_code == 200)
    rows = cluster.tables.query("SELECT name, description FROM registered_models FINAL")
    assert rows == [("contested", winner["description"])]


def test_concurrent_renames_onto_one_name_leave_one_holder(cluster: Cluster) -> None:
    for i in range(6):
        cluster.ok("/registered-models/create", {"name": f"src{i}"})
    responses = cluster.race("/registered-models/rename", [{"name": f"src{i}", "new_name": "target"} for i in range(6)])
    assert sorted(r.status_code for r in responses) == [200] + [400] * 5
    names = sorted(n for (n,) in cluster.tables.query("SELECT name FROM registered_models FINAL"))
    assert names.count("target") == 1 and len(names) == 6
