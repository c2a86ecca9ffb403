"""Deployment: ``mlflow models serve -m models:/<name>@champion --env-manager local``, pointed at the
tracking server by ``MLFLOW_TRACKING_URI``, started as a real process and called over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from sklearn.linear_model import LinearRegression

from tests.conftest import free_port

STARTUP_SECONDS = 180
FRAME = pd.DataFrame({"a": [0.0, 1.0, 2.0, 4.0], "b": [1.0, 0.0, 3.0, -1.0]})


def _fit(slope: float) -> LinearRegression:
    return LinearRegression().fit(FRAME, slope * FRAME["a"] + FRAME["b"] + 1.0)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (it runs its workers as children), SIGKILL after 20 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_models_serve_champion(tracking_uri: str, client: MlflowClient, name: str, tmp_path: Path) -> None:
    mlflow.set_experiment(f"exp-{name}")
    with mlflow.start_run():
        mlflow.sklearn.log_model(_fit(1.0), name="model", registered_model_name=name)
        mlflow.sklearn.log_model(_fit(-2.0), name="model", registered_model_name=name)
    client.set_registered_model_alias(name, "champion", "2")

    port = free_port()
    log = tmp_path / "serve.log"
    # As in an activated virtualenv: the server runs the environment's `uvicorn` by name.
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    cmd = [
        str(bin_dir / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{name}@champion",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"mlflow models serve exited with {process.returncode}:\n{log.read_text()[-6000:]}")
            try:
                if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"mlflow models serve did not answer /ping in {STARTUP_SECONDS}s:\n{log.read_text()[-6000:]}"
                )
            time.sleep(0.5)
        payload = {"dataframe_split": FRAME.to_dict(orient="split")}
        resp = requests.post(f"{url}/invocations", json=payload, timeout=60)
        assert resp.status_code == 200, resp.text
        expected = -2.0 * FRAME["a"] + FRAME["b"] + 1.0
        np.testing.assert_allclose(resp.json()["predictions"], expected.to_numpy(), atol=1e-6)
    finally:
        _stop(process)
