"""Run set-up for sweeps, side by side with `mlflow server` (not a test; see bench/README.md).

    python -m bench.setup                                   # mlflow, trackstream-kafka, trackstream-embedded
    python -m bench.setup --systems trackstream-kafka --duration 20
    python -m bench.setup --code /tmp/trackstream-before --label before   # another checkout's code

What a sweep does for each trial: ``runs/create``, ``runs/log-parameter``, ``runs/set-tag`` and a first
``runs/log-batch`` with 10 params, 5 tags and 10 metrics. ``--clients`` threads (default 4, keep-alive
sessions) do that back to back for ``--duration`` seconds against one system at a time, all runs in one
experiment created beforehand. Prints runs/s (complete set-ups per second), the p50/p99 of a whole set-up,
errors, and each system's ratio to `mlflow server` (SQLite, ``--mlflow-workers`` workers); writes
bench/results/<timestamp>-setup.json.

``--code DIR`` runs the trackstream systems from another checkout (``PYTHONPATH=DIR``; e.g. ``git archive
HEAD | tar -x -C DIR`` of an earlier commit) to measure before/after in one invocation.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from bench.report import RESULTS
from bench.run import API, Mlflow, System, TrackstreamEmbedded, TrackstreamKafka, call, percentiles

SYSTEMS = {"mlflow": Mlflow, "trackstream-kafka": TrackstreamKafka, "trackstream-embedded": TrackstreamEmbedded}


def set_up_runs(url: str, experiment_id: str, clients: int, duration: float) -> dict[str, Any]:
    """``clients`` threads setting up runs for ``duration`` seconds; figures of the complete set-ups."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = time.monotonic() + 0.2
    stop_at = start + duration

    def worker(index: int) -> None:
        session = requests.Session()
        now = int(time.time() * 1000)
        time.sleep(max(0.0, start - time.monotonic()))
        trial = 0
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            try:
                created = session.post(
                    url + API + "/runs/create",
                    json={"experiment_id": experiment_id, "start_time": now, "run_name": f"trial-{index}-{trial}"},
                    timeout=60,
                )
                created.raise_for_status()
                run_id = created.json()["run"]["info"]["run_id"]
                steps: list[tuple[str, dict[str, Any]]] = [
                    ("/runs/log-parameter", {"run_id": run_id, "key": "lr", "value": str(0.001 * (trial + 1))}),
                    ("/runs/set-tag", {"run_id": run_id, "key": "sweep", "value": f"s{index}"}),
                    ("/runs/log-batch", {
                        "run_id": run_id,
                        "params": [{"key": f"p{k}", "value": str(k * trial)} for k in range(10)],
                        "tags": [{"key": f"t{k}", "value": "v"} for k in range(5)],
                        "metrics": [{"key": f"m{k}", "value": k, "timestamp": now, "step": 0} for k in range(10)],
                    }),
                ]  # fmt: skip
                for path, body in steps:
                    r = session.post(url + API + path, json=body, timeout=60)
                    if r.status_code != 200:
                        raise RuntimeError(f"{path} {r.status_code} {r.text[:200]}")
            except (requests.RequestException, RuntimeError) as exc:
                with lock:
                    errors.append(str(exc)[:300])
                continue
            finally:
                trial += 1
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = max(time.monotonic(), stop_at) - start
    out: dict[str, Any] = {"runs": len(latencies), "seconds": round(elapsed, 2),
                           "runs_per_s": round(len(latencies) / elapsed, 1)}  # fmt: skip
    out["setup_ms"] = percentiles(latencies)
    out["errors"] = len(errors)
    if errors:
        out["first_error"] = errors[0]
    return out


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    ns = argparse.Namespace(variant=None, gateways=1, metrics_consumers=1, partitions=None, keep=False,
                            mlflow_workers=args.mlflow_workers, keys=10)  # fmt: skip
    run_dir = Path(tempfile.mkdtemp(prefix=f"trackstream-setup-{name}-"))
    system: System = SYSTEMS[name](ns, run_dir)
    print(f"bench.setup: {name}, logs in {run_dir}", flush=True)
    try:
        system.start()
        url = system.urls[0]
        exp = call(url, "POST", "/experiments/create", {"name": f"sweep-{uuid.uuid4().hex}"})["experiment_id"]
        set_up_runs(url, exp, args.clients, min(3.0, args.duration))  # warm-up, not counted
        figures = set_up_runs(url, exp, args.clients, args.duration)
        figures["config"] = system.config
        return figures
    finally:
        system.stop()
        system.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma list of " + ", ".join(SYSTEMS))
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of set-ups per system (default 20)")
    parser.add_argument("--mlflow-workers", type=int, default=2)
    parser.add_argument("--code", default="", help="run the trackstream systems from this checkout")
    parser.add_argument("--label", default="", help="stored with the result, e.g. 'before' or 'after'")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for name in args.systems.split(","):
        old = os.environ.get("PYTHONPATH")
        if args.code and name != "mlflow":
            os.environ["PYTHONPATH"] = args.code  # the systems' processes import trackstream from there
        try:
            results[name] = measure(name, args)
        finally:
            if old is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = old
        r = results[name]
        print(f"{name:22s} {r['runs_per_s']:7.1f} runs/s  set-up p50={r['setup_ms']['p50']} ms "
              f"p99={r['setup_ms']['p99']} ms  errors={r['errors']}", flush=True)  # fmt: skip
    stock = results.get("mlflow", {}).get("runs_per_s")
    if stock:
        for name, r in results.items():
            r["ratio_to_mlflow"] = round(r["runs_per_s"] / stock, 2)
            print(f"{name:22s} {r['ratio_to_mlflow']:.2f}x mlflow server")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", args.label).strip("-")  # the label is free text, the name a file's
    out = RESULTS / f"{stamp}-setup{'-' + slug if slug else ''}.json"
    out.write_text(json.dumps({"label": args.label, "code": args.code or "this checkout", "clients": args.clients,
                               "duration": args.duration, **results}, indent=1))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
