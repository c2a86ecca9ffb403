"""Latency of the writes that carry a rule (not a test; see bench/README.md).

    python -m bench.latency --system trackstream-kafka --calls 300
    python -m bench.latency --system trackstream-embedded --calls 300

Starts the system as bench/run.py does, then times, one request type after another, ``--calls``
sequential calls and ``--calls`` calls from 4 concurrent clients of: experiments/create (a new name
each), runs/log-parameter (a new key each), runs/log-batch with 10 params + 10 metrics, and
runs/log-batch with 100 metrics only. Prints p50/p99 in ms and writes
bench/results/<timestamp>-latency-<system>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from bench.report import RESULTS
from bench.run import API, TrackstreamEmbedded, TrackstreamKafka, call, percentiles

Body = Callable[[int], tuple[str, dict[str, Any]]]


def _time_calls(url: str, body: Body, calls: int, clients: int) -> dict[str, Any]:
    """``calls`` requests spread over ``clients`` threads (keep-alive sessions); latency of each."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(calls))

    def worker() -> None:
        session = requests.Session()
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            path, payload = body(i)
            t0 = time.perf_counter()
            r = session.post(url + API + path, json=payload, timeout=60)
            elapsed = time.perf_counter() - t0
            with lock:
                if r.status_code == 200:
                    latencies.append(elapsed)
                else:
                    errors.append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = percentiles(latencies)
    out["errors"] = len(errors)
    if errors:
        out["first_error"] = errors[0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", choices=("trackstream-kafka", "trackstream-embedded"), required=True)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--label", default="", help="stored with the result, e.g. 'before' or 'after'")
    args = parser.parse_args()
    ns = argparse.Namespace(variant=None, gateways=1, metrics_consumers=1, partitions=None, keep=False)
    run_dir = Path(tempfile.mkdtemp(prefix="trackstream-latency-"))
    system = (TrackstreamKafka if args.system == "trackstream-kafka" else TrackstreamEmbedded)(ns, run_dir)
    print(f"bench.latency: {args.system}, logs in {run_dir}", flush=True)
    results: dict[str, Any] = {}
    try:
        system.start()
        url = system.urls[0]
        exp = call(url, "POST", "/experiments/create", {"name": f"latency-{uuid.uuid4().hex}"})["experiment_id"]
        now = int(time.time() * 1000)

        def new_run() -> str:
            body = {"experiment_id": exp, "start_time": now}
            return str(call(url, "POST", "/runs/create", body)["run"]["info"]["run_id"])

        for clients in (1, 4):
            run_id = new_run()
            tag = f"{clients}-{uuid.uuid4().hex[:6]}"
            bodies: dict[str, Body] = {
                "create-experiment": lambda i, t=tag: ("/experiments/create", {"name": f"lat-{t}-{i}"}),
                "log-parameter": lambda i, t=tag, r=run_id: (
                    "/runs/log-parameter",
                    {"run_id": r, "key": f"p-{t}-{i}", "value": str(i)},
                ),
                "log-batch 10 params + 10 metrics": lambda i, t=tag, r=run_id: (
                    "/runs/log-batch",
                    {
                        "run_id": r,
                        "params": [{"key": f"b-{t}-{i}-{k}", "value": str(k)} for k in range(10)],
                        "metrics": [{"key": f"m{k}", "value": k, "timestamp": now, "step": i} for k in range(10)],
                    },
                ),
                "log-batch 100 metrics": lambda i, r=run_id: (
                    "/runs/log-batch",
                    {
                        "run_id": r,
                        "metrics": [
                            {"key": f"x{k % 10}", "value": k, "timestamp": now, "step": i * 10 + k // 10}
                            for k in range(100)
                        ],
                    },
                ),
            }
            for name, body in bodies.items():
                _time_calls(url, body, 20, clients)  # warm-up, not counted (distinct names via a shifted index)
                shifted: Body = lambda i, b=body: b(i + 1_000_000)  # noqa: E731
                figures = _time_calls(url, shifted, args.calls, clients)
                results[f"{name} ({clients} client{'s' if clients > 1 else ''})"] = figures
                print(
                    f"{name:34s} clients={clients}  p50={figures['p50']} ms  p99={figures['p99']} ms  "
                    f"errors={figures['errors']}",
                    flush=True,
                )
    finally:
        system.stop()
        system.cleanup()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"{stamp}-latency-{args.system}.json"
    out.write_text(json.dumps({"system": args.system, "label": args.label, "calls": args.calls, **results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
