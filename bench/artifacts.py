"""A 2 GB artifact through the gateway, the object store's own throughput, and `mlflow server` (not a test).

    python -m bench.artifacts [--mb 2048] [--systems store,trackstream-kafka,trackstream-embedded,mlflow]

One file of ``--mb`` MiB (random bytes) is written to a temp directory on disk (``--dir``, default the
system's temp dir) and deleted afterwards. Each system in turn moves that file up and back down, the way
the MLflow client does with proxied artifacts (``log_artifact`` / ``download_artifacts``):

- ``store``: the object store's own throughput on this machine, no gateway: the ``minio`` client's
  ``fput_object`` / ``fget_object`` of the file straight to SeaweedFS (the services of ``.services/env``),
  with the client's defaults, and again with one part at a time (what the gateway does).
- ``trackstream-kafka``: gateway + consumers on the real services (bench/run.py), the artifacts consumer
  included; ``PUT /api/2.0/mlflow-artifacts/artifacts/<path>`` with the open file as the body (requests
  streams it, as the MLflow client's ``http_artifact_repo`` does), then ``GET`` streamed to a file.
- ``trackstream-embedded``: the same through the embedded gateway (local directory store).
- ``mlflow``: ``mlflow server`` 3.17.2 with its stock proxied artifacts (``--serve-artifacts`` is the
  default; ``--artifacts-destination`` a local directory), the same PUT and GET.

Prints MB/s for each direction, the ratio to the store's own, and the server's peak RSS during each
direction (sampled every 50 ms with bench/reads.py's sampler), and writes
bench/results/<timestamp>-artifacts.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

from bench.reads import ARTIFACTS, PeakRss, server_pids
from bench.report import save
from bench.run import (
    API,
    VENV_BIN,
    Mlflow,
    System,
    TrackstreamEmbedded,
    TrackstreamKafka,
    call,
    machine_info,
    services_env,
)

CHUNK = 1 << 20  # the download's read size (the MLflow client's download_chunk uses 1 MB too)


def make_file(directory: Path, mb: int) -> Path:
    path = directory / "artifact.bin"
    block = os.urandom(16 << 20)
    with open(path, "wb") as f:
        for i in range(0, mb, 16):
            f.write(block[: min(16, mb - i) << 20])
    return path


def _rate(mb: int, seconds: float) -> float:
    return round(mb / seconds, 1)


def store_own(src: Path, mb: int, work: Path) -> dict[str, Any]:
    """The minio client straight to the S3 store: upload from ``src``, download to a file."""
    from minio import Minio

    env = services_env()
    endpoint = urlparse(env["TRACKSTREAM_S3_ENDPOINT"])
    s3 = Minio(endpoint.netloc, env["TRACKSTREAM_S3_ACCESS_KEY"], env["TRACKSTREAM_S3_SECRET_KEY"],
               secure=endpoint.scheme == "https")  # fmt: skip
    bucket = env["TRACKSTREAM_S3_BUCKET"]
    out: dict[str, Any] = {"what": "minio client fput/fget straight to SeaweedFS (same machine)"}
    for label, kwargs in (("defaults", {}), ("one part at a time, 8 MiB parts", {"num_parallel_uploads": 1,
                                                                                   "part_size": 8 << 20})):  # fmt: skip
        key = f"bench-artifacts/{time.time_ns()}.bin"
        start = time.perf_counter()
        s3.fput_object(bucket, key, str(src), **kwargs)
        up = time.perf_counter() - start
        dst = work / "store-download.bin"
        start = time.perf_counter()
        s3.fget_object(bucket, key, str(dst))
        down = time.perf_counter() - start
        assert dst.stat().st_size == mb << 20
        dst.unlink()
        s3.remove_object(bucket, key)
        out[label] = {"upload_mb_s": _rate(mb, up), "download_mb_s": _rate(mb, down)}
    out["upload_mb_s"] = out["defaults"]["upload_mb_s"]
    out["download_mb_s"] = out["defaults"]["download_mb_s"]
    return out


def through_server(system: System, src: Path, mb: int, work: Path, rss: PeakRss) -> dict[str, Any]:
    """PUT the file to the server's proxied-artifacts API, then GET it back to a file, as the client does."""
    url = system.urls[0]
    exp = call(url, "POST", "/experiments/create", {"name": f"artifacts-{time.time_ns()}"})["experiment_id"]
    run = call(url, "POST", "/runs/create", {"experiment_id": exp})["run"]["info"]["run_id"]
    path = f"{url}{ARTIFACTS}/{exp}/{run}/artifacts/big.bin"
    rss.reset()
    before = rss.peak
    start = time.perf_counter()
    with open(src, "rb") as f:
        resp = requests.put(path, data=f, timeout=3600)
    up = time.perf_counter() - start
    assert resp.status_code == 200, resp.text[:300]
    up_rss = rss.peak
    dst = work / "download.bin"
    deadline = time.monotonic() + 300
    while True:  # kafka mode: the read barrier answers 503 until the artifact's index row is applied
        rss.reset()
        start = time.perf_counter()
        with requests.get(path, stream=True, timeout=3600) as got:
            if got.status_code == 503 and time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            assert got.status_code == 200, got.text[:300]
            with open(dst, "wb") as out:
                for chunk in got.iter_content(CHUNK):
                    out.write(chunk)
        break
    down = time.perf_counter() - start
    size = dst.stat().st_size
    dst.unlink()
    assert size == mb << 20, size
    listed = requests.get(url + API + "/artifacts/list", params={"run_id": run}, timeout=60).json()
    return {"upload_mb_s": _rate(mb, up), "download_mb_s": _rate(mb, down), "rss_before_mb": round(before / 2**20),
            "upload_peak_rss_mb": round(up_rss / 2**20), "download_peak_rss_mb": round(rss.peak / 2**20),
            "listed": listed.get("files", [])}  # fmt: skip


SYSTEMS: dict[str, type[System]] = {
    "trackstream-kafka": TrackstreamKafka,
    "trackstream-embedded": TrackstreamEmbedded,
    "mlflow": Mlflow,
}


def markdown(result: dict[str, Any]) -> str:
    store = result["systems"].get("store", {})
    lines = [f"# Artifacts, {result['timestamp']} ({result['mb']} MiB file on disk)", "",
             "| system | upload MB/s | ÷ store | download MB/s | ÷ store | server peak RSS up / down (MB) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name, fig in result["systems"].items():
        if "error" in fig:
            lines.append(f"| {name} | error: {fig['error'][:120]} | | | | |")
            continue
        ratios = []
        for d in ("upload_mb_s", "download_mb_s"):
            ref = store.get(d)
            ratios.append(f"{fig[d] / ref:.2f}" if ref and name != "store" else "-")
        rss = f"{fig['upload_peak_rss_mb']} / {fig['download_peak_rss_mb']} (before {fig['rss_before_mb']})" if (
            "upload_peak_rss_mb" in fig) else "-"  # fmt: skip
        lines.append(f"| {name} | {fig['upload_mb_s']} | {ratios[0]} | {fig['download_mb_s']} | {ratios[1]} | {rss} |")
    if "one part at a time, 8 MiB parts" in store:
        one = store["one part at a time, 8 MiB parts"]
        lines.append(f"| store, one 8 MiB part at a time | {one['upload_mb_s']} | | {one['download_mb_s']} | | - |")
    lines += ["", f"Machine: {json.dumps(result['machine'])}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.artifacts", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--mb", type=int, default=2048, help="file size in MiB (default 2048)")
    p.add_argument("--systems", default="store,trackstream-kafka,trackstream-embedded,mlflow")
    p.add_argument("--dir", default=None, help="directory for the file (default: the system temp dir)")
    p.add_argument("--mlflow-workers", type=int, default=2)
    p.add_argument("--note", default="")
    args = p.parse_args(argv)
    args.variant, args.gateways, args.metrics_consumers, args.partitions, args.keep = "", 1, 1, 0, False
    timestamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    result: dict[str, Any] = {"timestamp": timestamp, "mb": args.mb, "machine": machine_info(), "note": args.note,
                              "systems": {}}  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="bench-artifacts-", dir=args.dir))
    try:
        start = time.perf_counter()
        src = make_file(work, args.mb)
        print(f"bench.artifacts: {args.mb} MiB file in {time.perf_counter() - start:.1f} s at {src}", flush=True)
        for name in args.systems.split(","):
            if name == "store":
                result["systems"]["store"] = store_own(src, args.mb, work)
                print("store", json.dumps(result["systems"]["store"]), flush=True)
                continue
            run_dir = Path(tempfile.mkdtemp(prefix=f"trackstream-bench-artifacts-{name}-"))
            print(f"bench.artifacts: {name}, logs in {run_dir}", flush=True)
            system = SYSTEMS[name](args, run_dir)
            try:
                system.start()
                if isinstance(system, TrackstreamKafka):
                    system.spawn("consume-artifacts", [str(VENV_BIN / "trackstream"), "consume", "artifacts"],
                                 system.env)  # fmt: skip
                rss = PeakRss(server_pids(system))
                rss.start()
                try:
                    result["systems"][name] = through_server(system, src, args.mb, work, rss)
                except Exception as exc:  # keep the other systems' figures
                    result["systems"][name] = {"error": repr(exc)[:500]}
                rss.stopped.set()
                print(name, json.dumps(result["systems"][name]), flush=True)
            finally:
                system.stop()
                system.cleanup()
                shutil.rmtree(run_dir / "data", ignore_errors=True)
                shutil.rmtree(run_dir / "mlartifacts", ignore_errors=True)
                shutil.rmtree(run_dir / "artifacts", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    save(f"{timestamp}-artifacts", result, markdown(result))


if __name__ == "__main__":
    main()
