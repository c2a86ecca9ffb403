"""A large artifact streams through the gateway both ways (several store parts, checksum indexed), and a
body cut short stores nothing, in both modes."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import requests

from ingest.handlers.artifact_keys import storable_key
from tests.conftest import Gateway

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


def _blocks(seed: bytes, mb: int) -> Iterator[bytes]:
    for i in range(mb):
        yield hashlib.sha256(seed + bytes([i])).digest() * (1 << 15)  # 1 MiB, different each time


def test_large_upload_streams_both_ways(gateway: Gateway, mlflow_client: Any) -> None:
    run = mlflow_client.create_run(mlflow_client.create_experiment("stream"))
    path = f"{gateway.url}{ARTIFACTS}/{run.info.experiment_id}/{run.info.run_id}/artifacts/big.bin"
    mb = 19  # more than two 8 MiB S3 parts, and not a multiple of one
    expected = hashlib.sha256(b"".join(_blocks(b"a", mb))).hexdigest()
    resp = requests.put(path, data=_blocks(b"a", mb), timeout=120)  # chunked: no Content-Length
    assert resp.status_code == 200, resp.text
    digest, size = hashlib.sha256(), 0
    with requests.get(path, stream=True, timeout=120) as got:
        assert got.status_code == 200
        for chunk in got.iter_content(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    assert (size, digest.hexdigest()) == (mb << 20, expected)
    listed = requests.get(
        f"{gateway.url}{ARTIFACTS}",
        params={"path": f"{run.info.experiment_id}/{run.info.run_id}/artifacts"},
        timeout=30,
    ).json()
    assert [(f["path"], int(f["file_size"])) for f in listed["files"]] == [("big.bin", mb << 20)]


def test_a_body_cut_short_stores_nothing(gateway: Gateway, mlflow_client: Any) -> None:
    run = mlflow_client.create_run(mlflow_client.create_experiment("cut"))
    rel = f"{run.info.experiment_id}/{run.info.run_id}/artifacts/cut.bin"
    url = urlparse(gateway.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(
            f"PUT {ARTIFACTS}/{rel} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Length: {20 << 20}\r\n\r\n".encode()
        )
        for block in _blocks(b"c", 5):  # 5 of the 20 MiB announced, then the connection closes
            sock.sendall(block)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the gateway sees the disconnect; nothing may appear
        time.sleep(0.5)
        resp = requests.get(f"{gateway.url}{ARTIFACTS}/{rel}", timeout=30)
        assert resp.status_code == 404, resp.status_code
    assert gateway.runtime.objects.size(storable_key(rel)) is None
    root = gateway.runtime.settings.data_dir
    leftovers = [f for _, _, files in os.walk(root) for f in files if f.startswith(".upload-")]
    assert leftovers == []  # the local store's temp file went with the aborted write
