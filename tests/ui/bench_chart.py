"""Bench, never a test: how soon a run's chart of a 1,000,000-point metric is drawn in the browser.

    python -m tests.ui.bench_chart http://127.0.0.1:5000        # a running gateway (any mode)

Logs one run with a 1,000,000-point metric (1000 log-batch requests of 1000 points), then opens the run's
chart view (Model metrics) in headless Chromium five times and prints, for each, the seconds from
navigation to the first drawn chart line and the latency of the page's get-history-bulk-interval call.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.ui.browser import start_browser

POINTS = 1_000_000
BATCH = 1000


def log_points(url: str) -> tuple[str, str]:
    api = f"{url}/api/2.0/mlflow"
    with httpx.Client(timeout=60) as http:
        experiment_id = http.post(f"{api}/experiments/create", json={"name": f"bench-{time.time_ns()}"}).json()[
            "experiment_id"
        ]
        run_id = http.post(f"{api}/runs/create", json={"experiment_id": experiment_id, "run_name": "million"}).json()[
            "run"
        ]["info"]["run_id"]
        now = int(time.time() * 1000)
        started = time.monotonic()
        for first in range(0, POINTS, BATCH):
            metrics = [
                {"key": "loss", "value": 1.0 / (s + 1), "timestamp": now, "step": s}
                for s in range(first, first + BATCH)
            ]
            http.post(f"{api}/runs/log-batch", json={"run_id": run_id, "metrics": metrics}).raise_for_status()
        print(f"logged {POINTS} points in {time.monotonic() - started:.1f} s")
    return experiment_id, run_id


def bulk_interval_ms(driver: object) -> float | None:
    sent: dict[str, float] = {}
    for entry in driver.get_log("performance"):  # type: ignore[attr-defined]
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent" and "get-history-bulk-interval" in params["request"]["url"]:
            sent[params["requestId"]] = params["timestamp"]
        elif message["method"] == "Network.loadingFinished" and params["requestId"] in sent:
            return float(params["timestamp"] - sent[params["requestId"]]) * 1000
    return None


def main(url: str) -> None:
    experiment_id, run_id = log_points(url)
    driver, _ = start_browser()
    try:
        page = f"{url}/#/experiments/{experiment_id}/runs/{run_id}/model-metrics"
        driver.get(page)  # warm the browser cache of the web app's files
        time.sleep(3)
        drawn = []
        for _ in range(5):
            driver.get("about:blank")
            driver.get_log("performance")  # type: ignore[no-untyped-call]  # selenium is untyped
            started = time.monotonic()
            driver.get(page)
            WebDriverWait(driver, 30, poll_frequency=0.02).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .scatterlayer path")
            )
            drawn.append(time.monotonic() - started)
            print(
                f"chart drawn {drawn[-1]:.2f} s after navigation; "
                f"get-history-bulk-interval {bulk_interval_ms(driver)} ms"
            )
        print(f"median {statistics.median(drawn):.2f} s, max {max(drawn):.2f} s")
    finally:
        driver.quit()


if __name__ == "__main__":
    main(sys.argv[1])
