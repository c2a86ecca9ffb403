"""The web app's files and the small routes it polls, as the stock server answers them with no data."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

import ingest.ui
from tests.conftest import Gateway
from trackstream.settings import Settings

GatewayFactory = Callable[[Settings], Gateway]


@pytest.fixture
def embedded(gateway_factory: GatewayFactory, embedded_settings: Callable[..., Settings]) -> str:
    return gateway_factory(embedded_settings()).url


def test_index_and_static_files_come_from_the_mlflow_package(embedded: str) -> None:
    build = ingest.ui.ui_build_dir()
    assert build is not None
    index = httpx.get(embedded + "/")
    assert index.status_code == 200
    assert index.text == (build / "index.html").read_text()
    script = next((build / "static" / "js").glob("main.*.js"))
    served = httpx.get(f"{embedded}/static-files/static/js/{script.name}")
    assert served.status_code == 200
    assert served.content == script.read_bytes()
    # the stock server's max-age; the name carries a content hash, so also immutable
    assert served.headers["cache-control"] == f"public, max-age={ingest.ui.STATIC_MAX_AGE}, immutable"
    manifest = httpx.get(f"{embedded}/static-files/manifest.json")
    assert manifest.headers["cache-control"] == f"public, max-age={ingest.ui.STATIC_MAX_AGE}"


def test_static_files_are_gzipped_for_clients_that_accept_it_and_revalidate_with_304(embedded: str) -> None:
    build = ingest.ui.ui_build_dir()
    assert build is not None
    script = next((build / "static" / "js").glob("main.*.js"))
    url = f"{embedded}/static-files/static/js/{script.name}"
    with httpx.Client() as http:
        zipped = http.get(url, headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert "Accept-Encoding" in zipped.headers["vary"]  # (the CORS middleware adds Origin)
        assert int(zipped.headers["content-length"]) < script.stat().st_size / 2
        assert zipped.content == script.read_bytes()  # httpx decodes it
        plain = http.get(url, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert int(plain.headers["content-length"]) == script.stat().st_size
        assert zipped.headers["etag"] == "W/" + plain.headers["etag"]
        for etag, encoding in ((zipped.headers["etag"], "gzip"), (plain.headers["etag"], "identity")):
            again = http.get(url, headers={"If-None-Match": etag, "Accept-Encoding": encoding})
            assert again.status_code == 304
            assert again.content == b""
        images = http.get(f"{embedded}/static-files/favicon.ico", headers={"Accept-Encoding": "gzip"})
        assert images.status_code == 200
        assert "content-encoding" not in images.headers  # compressed formats are sent as they are
        index = http.get(embedded + "/")
        assert index.headers["cache-control"] == "no-cache"
        assert http.get(embedded + "/", headers={"If-None-Match": index.headers["etag"]}).status_code == 304


def test_without_the_ui_package_the_index_says_how_to_install_it(
    gateway_factory: GatewayFactory, embedded_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest.ui, "ui_build_dir", lambda: None)
    url = gateway_factory(embedded_settings()).url
    index = httpx.get(url + "/")
    assert index.status_code == 200
    assert "pip install 'trackstream[ui]'" in index.text
    assert httpx.get(url + "/static-files/static/js/main.js").status_code == 404
    assert httpx.get(url + "/api/2.0/mlflow/experiments/get?experiment_id=0").json()["experiment"]["name"] == "Default"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "answer"),
    [
        (
            "GET",
            "/ajax-api/2.0/mlflow/gateway-proxy?gateway_path=api%2F2.0%2Fendpoints%2F",
            None,
            200,
            {"endpoints": []},
        ),
        ("GET", "/ajax-api/3.0/mlflow/ui-telemetry", None, 200, ingest.ui.UI_TELEMETRY),
        ("POST", "/ajax-api/3.0/mlflow/ui-telemetry", {"records": []}, 200, {"status": "disabled"}),
        ("GET", "/ajax-api/3.0/mlflow/assistant/config", None, 200, ingest.ui.ASSISTANT_CONFIG),
        ("POST", "/ajax-api/3.0/mlflow/traces/search", {"locations": []}, 200, {}),
        ("POST", "/ajax-api/3.0/mlflow/datasets/search", {"experiment_ids": ["0"]}, 200, {}),
        (
            "POST",
            "/ajax-api/3.0/mlflow/traces/metrics",
            {"metric_name": "trace_count", "aggregations": [{"aggregation_type": "COUNT"}]},
            200,
            {"data_points": [{"metric_name": "trace_count", "values": {"COUNT": 0.0}}]},
        ),
        ("GET", "/ajax-api/2.0/mlflow/registered-models/search?filter=", None, 200, {}),
        ("GET", "/api/2.0/mlflow/model-versions/search?filter=run_id%3D%27x%27", None, 200, {}),
        ("GET", "/ajax-api/2.0/mlflow/users/current", None, 404, None),
        ("POST", "/api/2.0/mlflow/registered-models/create", {"name": "m/x"}, 400, None),
    ],
)
def test_small_routes(embedded: str, method: str, path: str, body: object, status: int, answer: object) -> None:
    response = httpx.request(method, embedded + path, json=body)
    assert response.status_code == status
    if answer is not None:
        assert response.json() == answer
