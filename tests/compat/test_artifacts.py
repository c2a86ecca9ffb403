"""Proxied artifacts through the official client: upload, list, download, delete, inline and claim check."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pytest
import requests
from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository

from tests.compat.conftest import INLINE_MAX
from tests.conftest import Gateway, SettingsFactory
from trackstream.settings import Settings


def test_artifact_round_trip(small_inline_gateway: Gateway, small_inline_client: Any, tmp_path: Path) -> None:
    client = small_inline_client
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "hello.txt").write_text("hello")
    big = bytes(range(256)) * (INLINE_MAX // 64)  # 4 KiB: above the inline threshold
    (src / "sub" / "big.bin").write_bytes(big)

    mlflow.set_experiment("artifacts")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(src / "hello.txt"))
        mlflow.log_artifacts(str(src / "sub"), artifact_path="dir")
        mlflow.log_text("inner", "dir/deeper/note.txt")
    run_id = run.info.run_id

    top = client.list_artifacts(run_id)
    assert [(f.path, f.is_dir, f.file_size) for f in top] == [("dir", True, None), ("hello.txt", False, 5)]
    inner = client.list_artifacts(run_id, "dir")
    assert [(f.path, f.is_dir, f.file_size) for f in inner] == [
        ("dir/big.bin", False, len(big)),
        ("dir/deeper", True, None),
    ]
    assert client.list_artifacts(run_id, "hello.txt") == []
    assert client.list_artifacts(run_id, "missing") == []

    out = Path(mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(tmp_path / "dl")))
    assert (out / "hello.txt").read_text() == "hello"
    assert (out / "dir" / "big.bin").read_bytes() == big
    assert (out / "dir" / "deeper" / "note.txt").read_text() == "inner"

    # The claim-checked file was indexed with its checksum; the inline one too.
    exp_id = run.info.experiment_id
    rows = small_inline_gateway.runtime.tables.query(
        "SELECT path, size, sha256 FROM artifacts FINAL WHERE path = %(p)s",
        {"p": f"{exp_id}/{run_id}/artifacts/dir/big.bin"},
    )
    assert rows == [(f"{exp_id}/{run_id}/artifacts/dir/big.bin", len(big), hashlib.sha256(big).hexdigest())]

    # Raw API: headers, run-relative listing, UI download, missing file, delete.
    base = small_inline_gateway.url
    key = f"{exp_id}/{run_id}/artifacts/hello.txt"
    resp = requests.get(f"{base}/api/2.0/mlflow-artifacts/artifacts/{key}", timeout=10)
    assert resp.status_code == 200 and resp.content == b"hello"
    assert resp.headers["Content-Disposition"].startswith("attachment")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    listed = requests.get(
        f"{base}/api/2.0/mlflow/artifacts/list", params={"run_id": run_id, "path": "dir"}, timeout=10
    ).json()
    assert listed["root_uri"] == f"mlflow-artifacts:/{exp_id}/{run_id}/artifacts"
    assert {f["path"] for f in listed["files"]} == {"dir/big.bin", "dir/deeper"}
    ui = requests.get(f"{base}/get-artifact", params={"path": "dir/big.bin", "run_uuid": run_id}, timeout=10)
    assert ui.status_code == 200 and ui.content == big
    missing = requests.get(f"{base}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/nope", timeout=10)
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    assert requests.delete(f"{base}/api/2.0/mlflow-artifacts/artifacts/{key}", timeout=10).json() == {}
    assert [f.path for f in client.list_artifacts(run_id)] == ["dir"]
    gone = requests.get(f"{base}/api/2.0/mlflow-artifacts/artifacts/{key}", timeout=10)
    assert gone.status_code == 404


def test_artifact_paths_and_server_info(gateway: Gateway, mlflow_client: Any) -> None:
    base = gateway.url
    for bad in ("0/%2E%2E/%2E%2E/etc/passwd", "0/a%23b"):
        resp = requests.put(f"{base}/api/2.0/mlflow-artifacts/artifacts/{bad}", data=b"x", timeout=10)
        assert resp.status_code == 400, bad
        assert resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    listed = requests.get(f"{base}/api/2.0/mlflow-artifacts/artifacts", params={"path": "../x"}, timeout=10)
    assert listed.status_code == 400 and listed.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert (
        requests.get(f"{base}/api/2.0/mlflow-artifacts/artifacts", params={"path": "0/none"}, timeout=10).json() == {}
    )

    info = requests.get(f"{base}/api/3.0/mlflow/server-info", timeout=10).json()
    assert info["multipart_uploads_enabled"] is True and info["store_type"] == "SqlStore"


def test_multipart_upload_through_the_client(
    gateway: Gateway, mlflow_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(1 << 20))
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(5 << 20))  # S3's smallest part
    multipart_calls: list[str] = []
    real_try: Callable[..., None] = HttpArtifactRepository._try_multipart_upload

    def spy(self: HttpArtifactRepository, local_file: str, artifact_path: str | None = None) -> None:
        multipart_calls.append(local_file)
        real_try(self, local_file, artifact_path)  # raises if the gateway refused: no silent single PUT

    monkeypatch.setattr(HttpArtifactRepository, "_try_multipart_upload", spy)
    data = hashlib.sha256(b"weights").digest() * ((12 << 20) // 32) + b"tail"  # three parts
    local = tmp_path / "weights.bin"
    local.write_bytes(data)

    mlflow.set_experiment("multipart")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(local), artifact_path="model")
    assert multipart_calls == [str(local)]

    run_id = run.info.run_id
    listed = mlflow_client.list_artifacts(run_id, "model")
    assert [(f.path, f.is_dir, f.file_size) for f in listed] == [("model/weights.bin", False, len(data))]
    out = Path(mlflow_client.download_artifacts(run_id, "model/weights.bin", str(tmp_path / "dl")))
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    rows = gateway.runtime.tables.query(
        "SELECT size, sha256, deleted FROM artifacts FINAL WHERE path = %(p)s",
        {"p": f"{run.info.experiment_id}/{run_id}/artifacts/model/weights.bin"},
    )
    assert rows == [(len(data), "", 0)]  # no whole-object digest for a multipart object (docs/SQL.md)


def test_multipart_api_errors(gateway: Gateway) -> None:
    mpu = f"{gateway.url}/api/2.0/mlflow-artifacts/mpu"

    def post(action: str, directory: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(f"{mpu}/{action}/{directory}", json=body, timeout=30)

    def error(resp: requests.Response) -> tuple[int, str]:
        return resp.status_code, resp.json()["error_code"]

    assert error(post("create", "0/r/artifacts", {"num_parts": 1})) == (400, "INVALID_PARAMETER_VALUE")
    assert error(post("create", "0/%2E%2E/x", {"path": "f.bin"})) == (400, "INVALID_PARAMETER_VALUE")
    assert error(post("create", "0/r/artifacts", {"path": "f", "num_parts": 10001})) == (400, "INVALID_PARAMETER_VALUE")

    created = post("create", "0/r/artifacts", {"path": "/home/me/f.bin", "num_parts": 2}).json()
    creds = created["credentials"]
    assert [c["part_number"] for c in creds] == [1, 2]
    assert all(c["url"].startswith(f"{mpu}/part/0/r/artifacts/f.bin?") for c in creds)
    one = requests.put(creds[0]["url"], data=b"p" * (5 << 20), timeout=30)
    two = requests.put(creds[1]["url"], data=b"end", timeout=30)
    assert one.status_code == two.status_code == 200
    etags = [one.headers["ETag"], two.headers["ETag"]]

    upload = {"path": "/home/me/f.bin", "upload_id": created["upload_id"]}
    bogus = requests.put(creds[0]["url"].replace(created["upload_id"], "f" * 32), data=b"x", timeout=30)
    assert error(bogus) == (404, "RESOURCE_DOES_NOT_EXIST")
    bad_number = requests.put(creds[0]["url"].replace("part_number=1", "part_number=0"), data=b"x", timeout=30)
    assert error(bad_number) == (400, "INVALID_PARAMETER_VALUE")
    wrong_etag = [{"part_number": 1, "etag": etags[0]}, {"part_number": 2, "etag": '"' + "0" * 32 + '"'}]
    assert error(post("complete", "0/r/artifacts", {**upload, "parts": wrong_etag})) == (400, "INVALID_PARAMETER_VALUE")
    assert error(post("complete", "0/r/artifacts", {**upload, "parts": [{"part_number": 1}]})) == (
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert post("abort", "0/r/artifacts", upload).json() == {}
    parts = [{"part_number": n, "etag": e} for n, e in ((1, etags[0]), (2, etags[1]))]
    assert error(post("complete", "0/r/artifacts", {**upload, "parts": parts})) == (404, "RESOURCE_DOES_NOT_EXIST")
    missing = requests.get(f"{gateway.url}/api/2.0/mlflow-artifacts/artifacts/0/r/artifacts/f.bin", timeout=30)
    assert error(missing) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_multipart_part_size_limit(
    embedded_settings: SettingsFactory, gateway_factory: Callable[[Settings], Gateway]
) -> None:
    gw = gateway_factory(embedded_settings(artifact_part_max_bytes=5 << 20))
    mpu = f"{gw.url}/api/2.0/mlflow-artifacts/mpu"
    created = requests.post(f"{mpu}/create/0/r/artifacts", json={"path": "f.bin", "num_parts": 1}, timeout=30).json()
    url = created["credentials"][0]["url"]
    over = requests.put(url, data=b"x" * ((5 << 20) + 1), timeout=30)
    assert over.status_code == 400 and over.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    chunked = requests.put(url, data=iter([b"x" * (4 << 20), b"x" * (2 << 20)]), timeout=30)  # no Content-Length
    assert chunked.status_code == 400 and "at most" in chunked.json()["message"]
    assert requests.put(url, data=b"x" * (5 << 20), timeout=30).status_code == 200
