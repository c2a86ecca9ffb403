"""Bounded resources, measured on a real ``trackstream serve`` process: body size, slow and idle connections."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

API = "/api/2.0/mlflow"
MiB = 1 << 20


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


GatewayProcess = tuple[str, int]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Start an embedded ``trackstream serve`` with extra settings; yields (url, pid)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(**settings: str) -> GatewayProcess:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKSTREAM_")}
        env.update(TRACKSTREAM_MODE="embedded", TRACKSTREAM_PORT=str(port), TRACKSTREAM_DATA_DIR=str(tmp_path / "data"))
        env.update({f"TRACKSTREAM_{k.upper()}": v for k, v in settings.items()})
        proc = subprocess.Popen([sys.executable, "-m", "trackstream.cli", "serve"], env=env)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    return url, proc.pid
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "trackstream serve exited"
            assert time.monotonic() < deadline, "trackstream serve did not answer /health in 90 s"
            time.sleep(0.2)

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _body(total: int, chunk: int = MiB) -> Iterator[bytes]:
    yield b'{"name": "'
    for _ in range(total // chunk):
        yield b"x" * chunk
    yield b'"}'


def test_a_500_mb_streamed_body_is_refused_while_it_streams(serve: Callable[..., GatewayProcess]) -> None:
    url, pid = serve()
    with httpx.Client(base_url=url, timeout=120) as c:
        assert c.get(f"{API}/experiments/search").status_code == 200
        before = _status_kib(pid, "VmRSS")
        started = time.monotonic()
        refused = c.post(
            f"{API}/experiments/create", content=_body(500 * MiB), headers={"Content-Type": "application/json"}
        )
        seconds = time.monotonic() - started
        peak = _status_kib(pid, "VmHWM")
        assert refused.status_code == 413
        assert refused.json()["error_code"] == "RESOURCE_LIMIT_EXCEEDED"
        assert refused.headers["connection"] == "close"
        declared = c.post(
            f"{API}/runs/create", content=b"{" + b" " * (150 * MiB) + b"}", headers={"Content-Type": "application/json"}
        )
        assert declared.status_code == 413
        assert c.get("/health").status_code == 200
    growth_mib = (peak - before) / 1024
    print(
        f"\n500 MB streamed body: 413 after {seconds:.1f} s; RSS {before / 1024:.0f} MiB before, "
        f"peak {peak / 1024:.0f} MiB (+{growth_mib:.0f} MiB)"
    )
    # at most the 100 MiB limit held once as chunks and once joined, never the 500 MB
    assert growth_mib < 300, growth_mib


def test_uploads_stream_past_the_json_limit_and_slow_connections_time_out(serve: Callable[..., GatewayProcess]) -> None:
    url, _pid = serve(max_request_body_bytes=str(MiB), request_read_timeout="2")
    host, port = url.removeprefix("http://").split(":")
    with httpx.Client(base_url=url, timeout=60) as c:
        too_big = c.post(f"{API}/experiments/create", json={"name": "x" * (2 * MiB)})
        assert too_big.status_code == 413 and too_big.json()["error_code"] == "RESOURCE_LIMIT_EXCEEDED"
        run = c.post(f"{API}/runs/create", json={"experiment_id": "0"}).json()["run"]["info"]
        artifact = f"/api/2.0/mlflow-artifacts/artifacts/0/{run['run_id']}/artifacts/big.bin"
        payload = os.urandom(3 * MiB)
        assert c.put(artifact, content=payload).status_code == 200
        assert c.get(artifact).content == payload

        def closed_after(sock: socket.socket) -> float:
            started = time.monotonic()
            sock.settimeout(15)
            assert sock.recv(100) == b""
            return time.monotonic() - started

        with socket.create_connection((host, int(port))) as idle:
            assert 1.5 < closed_after(idle) < 6
        with socket.create_connection((host, int(port))) as drip:
            started = time.monotonic()
            drip.settimeout(0.5)
            closed = False
            for ch in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 40:
                try:
                    drip.send(bytes([ch]))
                    closed = drip.recv(100) == b""
                except TimeoutError:
                    continue
                except OSError:
                    closed = True
                if closed:
                    break
            assert closed and time.monotonic() - started < 6
        with socket.create_connection((host, int(port))) as stalled:
            stalled.sendall(
                b"POST /api/2.0/mlflow/experiments/create HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
            stalled.settimeout(15)
            answer = b""
            while chunk := stalled.recv(4096):  # the 408 closes the connection: read the whole answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
            assert b'"error_code":"BAD_REQUEST"' in answer
        assert c.get("/health").status_code == 200
