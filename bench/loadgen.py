"""Load-generator process: T threads, each a keep-alive ``requests.Session`` sending MLflow log-batch requests.

Run by ``bench/run.py`` as a separate process (several of them for more concurrency), never imported by
the system under test. Reads its job as JSON from argv[1], writes its result as JSON to argv[2].

Each thread owns one run (as a training process would) and sends batches of ``metrics`` points over
``keys`` metric keys with increasing steps, until the shared deadline. Every response is timed
(request start -> response fully read); only 200 answers count as acked points.
"""

from __future__ import annotations

import json
import random
import resource
import sys
import threading
import time
from typing import Any

import orjson
import requests


def make_body(run_id: str, keys: list[str], first_step: int, per_key: int) -> bytes:
    ts = int(time.time() * 1000)
    rnd = random.random
    metrics = [
        {"key": k, "value": rnd(), "timestamp": ts, "step": first_step + i} for i in range(per_key) for k in keys
    ]
    return orjson.dumps({"run_id": run_id, "metrics": metrics})


def worker(job: dict[str, Any], run_id: str, url: str, out: dict[str, Any]) -> None:
    keys = [f"{job['key_prefix']}{i}" for i in range(job["keys"])]
    per_key = job["metrics"] // job["keys"]
    points = per_key * len(keys)
    session = requests.Session()
    session.headers["Content-Type"] = "application/json"
    latencies: list[float] = []
    ack_times: list[float] = []
    errors: dict[str, int] = {}
    samples: list[str] = []  # first few error answers, to say why
    step = 0
    deadline = job["start_at"] + job["duration"]
    while time.time() < job["start_at"]:
        time.sleep(0.001)
    while time.time() < deadline:
        body = make_body(run_id, keys, step, per_key)
        t0 = time.perf_counter()
        try:
            r = session.post(url, data=body, timeout=job["timeout"])
            r.content  # noqa: B018  (read the whole answer)
            status = str(r.status_code)
            if status != "200" and len(samples) < 3:
                samples.append(f"{status} {r.text[:300]}")
        except requests.RequestException as exc:
            status = type(exc).__name__
            if len(samples) < 3:
                samples.append(f"{status} {str(exc)[:300]}")
        t1 = time.perf_counter()
        if status == "200":
            latencies.append(t1 - t0)
            ack_times.append(time.time())
            step += per_key
        else:
            errors[status] = errors.get(status, 0) + 1
            time.sleep(0.01)
    out.update(
        run_id=run_id, acked_requests=len(latencies), acked_points=len(latencies) * points, points_per_request=points,
        latencies=latencies, ack_times=ack_times, errors=errors, error_samples=samples, last_step=step,
    )  # fmt: skip


def main() -> None:
    job = json.loads(sys.argv[1])
    threads: list[threading.Thread] = []
    results: list[dict[str, Any]] = []
    urls: list[str] = job["urls"]
    for i, run_id in enumerate(job["run_ids"]):
        out: dict[str, Any] = {}
        results.append(out)
        url = urls[i % len(urls)] + "/api/2.0/mlflow/runs/log-batch"
        t = threading.Thread(target=worker, args=(job, run_id, url, out), daemon=True)
        threads.append(t)
        t.start()
    for t in threads:
        t.join(job["duration"] + job["timeout"] + 30)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(sys.argv[2], "wb") as f:
        f.write(orjson.dumps({"threads": results, "cpu_seconds": usage.ru_utime + usage.ru_stime}))


if __name__ == "__main__":
    main()
