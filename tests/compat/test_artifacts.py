"""Proxied artifacts through the official client: upload, list, download, delete, inline and claim check."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import mlflow
import requests

from tests.compat.conftest import INLINE_MAX
from tests.conftest import Gateway


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
    assert info["multipart_uploads_enabled"] is False and info["store_type"] == "SqlStore"
    mpu = requests.post(f"{base}/api/2.0/mlflow-artifacts/mpu/create/0/x", json={"path": "f"}, timeout=10)
    assert mpu.status_code == 501 and mpu.json()["error_code"] == "NOT_IMPLEMENTED"
