"""Per-step synchronous ``mlflow.log_metric`` loop, trackstream embedded beside the stock server (not a test).

    python -m bench.per_step --steps 300
    python -m bench.per_step --steps 300 --env TRACKSTREAM_BATCH_MIN_SECONDS=0.05

What a newcomer's training loop does: one run, ``mlflow.log_metric("loss", v, step=i)`` per step, each
call waiting for its answer. Starts each system as bench/run.py does (the stock server: sqlite backend,
one worker), times ``--steps`` calls after 20 warm-up calls, prints p50/p90/mean in ms per step for each,
and writes bench/results/<timestamp>-per-step.json. ``--env`` settings apply to the trackstream gateway.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import RESULTS
from bench.run import Mlflow, System, TrackstreamEmbedded, machine_info, percentiles


def _loop(url: str, steps: int) -> list[float]:
    import mlflow

    mlflow.set_tracking_uri(url)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    mlflow.set_experiment(f"per-step-{time.time_ns()}")
    out: list[float] = []
    with mlflow.start_run():
        for i in range(20):  # warm-up: connections, the first inserts
            mlflow.log_metric("warmup", float(i), step=i)
        for i in range(steps):
            start = time.perf_counter()
            mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
            out.append(time.perf_counter() - start)
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the trackstream gateway")
    parser.add_argument("--mlflow-workers", type=int, default=1)
    parser.add_argument("--variant", default=None)
    args = parser.parse_args()
    extra = dict(e.split("=", 1) for e in args.env)
    results: dict[str, Any] = {"steps": args.steps, "env": extra, "machine": machine_info(), "systems": {}}
    for cls in (TrackstreamEmbedded, Mlflow):
        with tempfile.TemporaryDirectory(prefix="per-step-") as tmp:
            system: System = cls(args, Path(tmp))
            saved = {k: os.environ.get(k) for k in extra}
            if cls is TrackstreamEmbedded:
                os.environ.update(extra)
            try:
                system.start()
                times = _loop(system.urls[0], args.steps)
            finally:
                system.stop()
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        stats = {**percentiles(times), "mean_ms": round(statistics.fmean(times) * 1000, 2)}
        results["systems"][cls.name] = stats
        print(f"{cls.name:22} ms per step: {stats}", flush=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}-per-step.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
