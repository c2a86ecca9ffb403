"""Read figures side by side: `mlflow server` and trackstream in one invocation (not a test; bench/README.md).

    python -m bench.reads --systems mlflow,trackstream-kafka,trackstream-embedded --points 1000000

For each system: start it (as bench/run.py does), write one run with ``--points`` points of ``loss``
(log-batch, 1000 a request), ``--runs`` small runs in one experiment (a ``loss`` metric at two steps, a
param, a tag) and ``--experiments`` experiments, then time through HTTP, ``--repeat`` times each:

- the chart: get-history-bulk-interval of the big run (the server's default 2500 samples, the UI's 320; and
  10 runs), and get-history-bulk of it (``--charts-only``: these figures only);
- the history: get-history without max_results (every point in one answer, the stock rule), the first,
  last and median 25,000-point page and the whole paged read, and the official client's
  ``get_metric_history``: its own parsing time (its total minus the HTTP time of the same pages), and its
  total against the same pages served from memory (an HTTP server answering each page token's body);
- runs/search (first page, metric filter and metric order_by) and experiments/search (first page);
- artifacts: a ``--artifact-mb`` file uploaded and downloaded through the server, streamed both ways,
  next to the object store's own throughput (S3 for kafka mode, the local disk otherwise).

The gateway's (or mlflow server's) peak RSS is sampled during each figure. Results go to
bench/results/<timestamp>-reads.json and .md with trackstream ÷ mlflow ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests

from bench.procstats import _children, _stat, tree
from bench.report import save
from bench.run import API, Mlflow, System, TrackstreamEmbedded, TrackstreamKafka, call, machine_info

SYSTEMS = {"mlflow": Mlflow, "trackstream-kafka": TrackstreamKafka, "trackstream-embedded": TrackstreamEmbedded}
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


class PeakRss(threading.Thread):
    """Peak RSS (bytes) of the server's process trees, sampled every 50 ms; ``reset`` starts a new figure.

    Besides the total, the peaks of its two parts, read from /proc/PID/status: anonymous memory (heaps,
    stacks: only freeing it lowers it) and file-backed pages (mapped libraries: the kernel can drop clean
    ones and read them back), so a page-out of library pages is not mistaken for a smaller heap."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids, self.stopped = pids, threading.Event()
        self.peak = self.peak_anon = self.peak_file = 0
        self.peak_all = self.peak_anon_all = self.peak_file_all = 0  # since start, across resets

    def parts(self) -> tuple[int, int, int]:
        """(total, anonymous, file-backed and shared-memory) RSS bytes of the trees now."""
        children = _children()
        total = anon = 0
        for pid in self.pids:
            for p in tree(pid, children):
                s = _stat(p)
                total += s[2] if s else 0
                anon += _status_kb(p, "RssAnon") << 10
        return total, anon, max(total - anon, 0)

    def current(self) -> int:
        return self.parts()[0]

    def _sample(self) -> None:
        total, anon, file = self.parts()
        self.peak, self.peak_anon, self.peak_file = (
            max(self.peak, total),
            max(self.peak_anon, anon),
            max(self.peak_file, file),
        )
        self.peak_all, self.peak_anon_all, self.peak_file_all = (
            max(self.peak_all, total),
            max(self.peak_anon_all, anon),
            max(self.peak_file_all, file),
        )

    def run(self) -> None:
        while not self.stopped.wait(0.05):
            self._sample()

    def reset(self, everything: bool = False) -> None:
        """A new figure's peak; ``everything``: also the peak across figures."""
        self.peak = self.peak_anon = self.peak_file = 0
        if everything:
            self.peak_all = self.peak_anon_all = self.peak_file_all = 0
        self._sample()
        self.before = (self.peak, self.peak_anon, self.peak_file)


def _mb(parts: tuple[int, int, int]) -> dict[str, int]:
    return dict(zip(("total_mb", "anon_mb", "file_mb"), (round(b / 2**20) for b in parts), strict=True))


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def timed(fn: Callable[[], Any], repeat: int, rss: PeakRss) -> dict[str, Any]:
    fn()  # warm
    rss.reset()
    before, anon_before, file_before = rss.before
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1),
            "max_ms": round(max(times), 1),
            "peak_rss_mb": round(rss.peak / 2**20), "rss_before_mb": round(before / 2**20),
            "peak_anon_mb": round(rss.peak_anon / 2**20), "anon_before_mb": round(anon_before / 2**20),
            "peak_file_mb": round(rss.peak_file / 2**20), "file_before_mb": round(file_before / 2**20)}  # fmt: skip


def log_run(system: System, points: int, name: str | None = None) -> tuple[str, str, float]:
    """A new experiment with one run holding ``points`` points of ``loss`` (steps 0.., 1000 a request, 4 at once):
    (experiment id, run id, seconds it took)."""
    url = system.urls[0]
    exp = call(url, "POST", "/experiments/create", {"name": f"reads-{time.time_ns()}"})["experiment_id"]
    create = {"experiment_id": exp, "start_time": 0} | ({"run_name": name} if name else {})
    big = call(url, "POST", "/runs/create", create)["run"]["info"]["run_id"]
    t0 = 1_700_000_000_000

    def batch(i: int) -> None:
        metrics = [{"key": "loss", "value": (s % 977) / 977, "timestamp": t0 + s, "step": s}
                   for s in range(i, min(i + 1000, points))]  # fmt: skip
        call(url, "POST", "/runs/log-batch", {"run_id": big, "metrics": metrics})

    start = time.perf_counter()
    if isinstance(system, Mlflow):
        # through the API at ~200 points/s on a busy machine 1M points take over an hour: the big run's
        # points go straight into the SQLite tables the stock server reads (its reads are what is timed)
        batch(0)
        with sqlite3.connect(system.db, timeout=60) as con:
            con.executemany(
                "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, 0)",
                (("loss", (s % 977) / 977, t0 + s, big, s) for s in range(1000, points)),
            )
            con.execute(
                "UPDATE latest_metrics SET value = ?, timestamp = ?, step = ? WHERE run_uuid = ? AND key = 'loss'",
                (((points - 1) % 977) / 977, t0 + points - 1, points - 1, big),
            )
    else:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(batch, range(0, points, 1000)))
    return exp, big, time.perf_counter() - start


def fill(system: System, points: int, runs: int, experiments: int) -> dict[str, Any]:
    url = system.urls[0]
    exp, big, fill_points_s = log_run(system, points)

    def small(i: int) -> str:
        rid = call(url, "POST", "/runs/create", {"experiment_id": exp, "start_time": i})["run"]["info"]["run_id"]
        value = ((i * 7919) % 1000) / 1000
        call(url, "POST", "/runs/log-batch", {
            "run_id": rid, "params": [{"key": "lr", "value": str(i % 10)}],
            "tags": [{"key": "k", "value": f"k{i % 3}"}],
            "metrics": [{"key": "loss", "value": value + 1, "timestamp": i, "step": 0},
                        {"key": "loss", "value": value, "timestamp": i, "step": 1}]})  # fmt: skip
        return str(rid)

    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        small_ids = list(pool.map(small, range(runs)))
        list(pool.map(lambda i: call(url, "POST", "/experiments/create", {"name": f"e-{time.time_ns()}-{i}"}),
                      range(experiments)))  # fmt: skip
    return {"exp": exp, "big": big, "small": small_ids, "fill_points_s": round(fill_points_s, 1),
            "fill_runs_experiments_s": round(time.perf_counter() - start, 1)}  # fmt: skip


def history_pages(url: str, run_id: str) -> Iterator[tuple[float, int, str, bytes]]:
    """(ms, points, the page token asked with, the answer's body) of each 25,000-point page, following the tokens.
    The time ends when the body is received: parsing it here (the standard library's json, ~25 ms a
    25,000-point page) is the client's work, and was counted as the server's before 2026-11-30 late."""
    token = None
    while True:
        params: dict[str, Any] = {"run_id": run_id, "metric_key": "loss", "max_results": 25000}
        if token:
            params["page_token"] = token
        start = time.perf_counter()
        resp = requests.get(url + API + "/metrics/get-history", params=params, timeout=600)  # whole body read
        elapsed = (time.perf_counter() - start) * 1000  # the server's time and the transfer, not our parsing
        body = resp.json()
        yield elapsed, len(body.get("metrics", [])), token or "", resp.content
        token = body.get("next_page_token")
        if not token:
            return


def client_from_memory_ms(pages: dict[str, bytes], run_id: str) -> float:
    """The official client's ``get_metric_history`` against the same pages served from memory (by page
    token, no work per request): the client's own cost of reading them, HTTP on 127.0.0.1 included."""

    class Pages(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = pages[parse_qs(urlparse(self.path).query).get("page_token", [""])[0]]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    from mlflow import MlflowClient

    server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = MlflowClient(f"http://127.0.0.1:{server.server_address[1]}")
        start = time.perf_counter()
        client.get_metric_history(run_id, "loss")
        return (time.perf_counter() - start) * 1000
    finally:
        server.shutdown()
        server.server_close()


def measure(system: System, args: argparse.Namespace, data: dict[str, Any], rss: PeakRss) -> dict[str, Any]:
    url, big, r = system.urls[0], data["big"], args.repeat
    out: dict[str, Any] = {}

    def get(path: str, **params: Any) -> requests.Response:
        resp = requests.get(url + path, params=params, timeout=600)
        assert resp.status_code == 200, resp.text[:300]
        return resp

    interval = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
    if "bulk" not in args.figures:
        return out | measure_rest(system, args, data, rss)
    out["bulk_interval_1run"] = timed(lambda: get(interval, run_ids=[big], metric_key="loss"), r, rss)
    out["bulk_interval_ui"] = timed(lambda: get(interval, run_ids=[big], metric_key="loss", max_results=320), r, rss)
    history_bulk = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
    out["history_bulk"] = timed(lambda: get(history_bulk, run_id=[big], metric_key="loss"), r, rss)
    ten = [big, *data["small"][:9]]
    out["bulk_interval_10runs"] = timed(lambda: get(interval, run_ids=ten, metric_key="loss"), r, rss)
    n = len(get(interval, run_ids=[big], metric_key="loss").json()["metrics"])
    out["bulk_interval_1run"]["points"] = n
    if args.charts_only:
        return out
    return out | measure_rest(system, args, data, rss)


def measure_rest(system: System, args: argparse.Namespace, data: dict[str, Any], rss: PeakRss) -> dict[str, Any]:
    url, big, r = system.urls[0], data["big"], args.repeat
    out: dict[str, Any] = {}

    def get(path: str, **params: Any) -> requests.Response:
        resp = requests.get(url + path, params=params, timeout=3600)
        assert resp.status_code == 200, resp.text[:300]
        return resp

    whole = "/api/2.0/mlflow/metrics/get-history"
    if "unpaged" in args.figures:
        out["history_unpaged"] = timed(lambda: get(whole, run_id=big, metric_key="loss").content, max(1, r // 3), rss)
        out["history_unpaged"]["points"] = len(get(whole, run_id=big, metric_key="loss").json().get("metrics", []))
    pages = list(history_pages(url, big))
    out["history_page_first_ms"] = round(pages[0][0], 1)
    out["history_page_last_ms"] = round(pages[-1][0], 1)
    out["history_page_median_ms"] = round(statistics.median(p[0] for p in pages), 1)
    out["history_pages"] = len(pages)
    http_ms = sum(p[0] for p in pages)
    out["history_paged_read_ms"] = round(http_ms)

    os.environ["MLFLOW_TRACKING_URI"] = url
    from mlflow import MlflowClient

    client = MlflowClient(url)
    start = time.perf_counter()
    got = client.get_metric_history(big, "loss")
    client_ms = (time.perf_counter() - start) * 1000
    memory_ms = client_from_memory_ms({token: body for _, _, token, body in pages}, big)
    out["client_get_metric_history"] = {"total_ms": round(client_ms), "http_ms": round(http_ms),
                                        "client_parse_ms": round(client_ms - http_ms), "points": len(got),
                                        "from_memory_ms": round(memory_ms),
                                        "total_over_memory": round(client_ms / memory_ms, 2)}  # fmt: skip

    body: dict[str, Any] = {"experiment_ids": [data["exp"]], "filter": "metrics.loss < 0.5",
                            "order_by": ["metrics.loss DESC"], "max_results": 100}  # fmt: skip
    search = "/api/2.0/mlflow/runs/search"
    out["runs_search"] = timed(lambda: requests.post(url + search, json=body, timeout=600), r, rss)
    exps = "/api/2.0/mlflow/experiments/search"
    out["experiments_search"] = timed(lambda: requests.post(url + exps, json={"max_results": 100}, timeout=600), r, rss)
    if args.artifact_mb:
        try:
            out["artifacts"] = artifacts(system, args, data, rss)
        except Exception as exc:  # keep the other figures of this system
            out["artifacts"] = {"error": repr(exc)[:500]}
    return out


def _chunks(mb: int) -> Iterator[bytes]:
    block = os.urandom(1 << 20)
    for _ in range(mb):
        yield block


def artifacts(system: System, args: argparse.Namespace, data: dict[str, Any], rss: PeakRss) -> dict[str, Any]:
    url, mb = system.urls[0], args.artifact_mb
    path = f"{url}{ARTIFACTS}/{data['exp']}/{data['big']}/artifacts/big.bin"
    rss.reset()
    before = rss.peak
    start = time.perf_counter()
    resp = requests.put(path, data=_chunks(mb), timeout=3600)
    up = time.perf_counter() - start
    assert resp.status_code == 200, resp.text[:300]
    up_rss = rss.peak
    rss.reset()
    deadline = time.monotonic() + 300
    while True:  # kafka mode: the read barrier answers 503 until the artifact's index row is applied
        start = time.perf_counter()
        size = 0
        with requests.get(path, stream=True, timeout=3600) as got:
            if got.status_code == 503 and time.monotonic() < deadline:
                time.sleep(1)
                continue
            assert got.status_code == 200, got.text[:300]
            for chunk in got.iter_content(1 << 20):
                size += len(chunk)
        break
    down = time.perf_counter() - start
    assert size == mb << 20, size
    out = {"mb": mb, "upload_mb_s": round(mb / up, 1), "download_mb_s": round(mb / down, 1),
           "rss_before_mb": round(before / 2**20),
           "upload_peak_rss_mb": round(up_rss / 2**20), "download_peak_rss_mb": round(rss.peak / 2**20)}  # fmt: skip
    out["store_own"] = store_throughput(system, mb)
    return out


def store_throughput(system: System, mb: int) -> dict[str, Any]:
    """The object store's own throughput for the same size: S3 (kafka mode) or the local disk."""
    if isinstance(system, TrackstreamKafka):
        from urllib.parse import urlparse

        from minio import Minio

        from bench.run import services_env

        env = services_env()
        endpoint = urlparse(env["TRACKSTREAM_S3_ENDPOINT"])
        s3 = Minio(endpoint.netloc, env["TRACKSTREAM_S3_ACCESS_KEY"], env["TRACKSTREAM_S3_SECRET_KEY"],
                   secure=endpoint.scheme == "https")  # fmt: skip
        bucket, key = env["TRACKSTREAM_S3_BUCKET"], f"bench-reads/{time.time_ns()}.bin"
        src = Path(tempfile.mkstemp(prefix="bench-reads-")[1])
        with open(src, "wb") as f:
            for c in _chunks(mb):
                f.write(c)
        start = time.perf_counter()
        s3.fput_object(bucket, key, str(src), part_size=64 << 20)
        up = time.perf_counter() - start
        start = time.perf_counter()
        got = s3.get_object(bucket, key)
        for _ in got.stream(1 << 20):
            pass
        got.close()
        got.release_conn()
        down = time.perf_counter() - start
        s3.remove_object(bucket, key)
        src.unlink()
        return {"what": "S3 (minio client, same machine)", "upload_mb_s": round(mb / up, 1),
                "download_mb_s": round(mb / down, 1)}  # fmt: skip
    dst = system.dir / "disk-probe.bin"
    start = time.perf_counter()
    with open(dst, "wb") as f:
        for c in _chunks(mb):
            f.write(c)
        f.flush()
        os.fsync(f.fileno())
    up = time.perf_counter() - start
    start = time.perf_counter()
    with open(dst, "rb") as f:
        while f.read(1 << 20):
            pass
    down = time.perf_counter() - start
    dst.unlink()
    return {"what": "local disk", "upload_mb_s": round(mb / up, 1), "download_mb_s": round(mb / down, 1)}


def server_pids(system: System) -> list[int]:
    return [p.pid for name, p in system.procs.items() if name.startswith(("gateway", "mlflow"))]


FIGURES = [
    ("bulk-interval, 1 run (ms p50)", ("bulk_interval_1run", "p50_ms")),
    ("bulk-interval, 1 run (ms p95)", ("bulk_interval_1run", "p95_ms")),
    ("bulk-interval, 1 run, max_results=320 as the UI (ms p50)", ("bulk_interval_ui", "p50_ms")),
    ("bulk-interval, 1 run, max_results=320 as the UI (ms p95)", ("bulk_interval_ui", "p95_ms")),
    ("bulk-interval, 10 runs (ms p50)", ("bulk_interval_10runs", "p50_ms")),
    ("get-history-bulk, 1 run, first 25k points (ms p50)", ("history_bulk", "p50_ms")),
    ("get-history unpaged (ms p50)", ("history_unpaged", "p50_ms")),
    ("get-history unpaged: server peak RSS (MB)", ("history_unpaged", "peak_rss_mb")),
    ("  (server RSS before it, MB)", ("history_unpaged", "rss_before_mb")),
    ("  its anonymous part's peak (MB)", ("history_unpaged", "peak_anon_mb")),
    ("  its file-backed part's peak (MB)", ("history_unpaged", "peak_file_mb")),
    ("get-history first 25k page (ms)", ("history_page_first_ms",)),
    ("get-history last 25k page (ms)", ("history_page_last_ms",)),
    ("client get_metric_history total (ms)", ("client_get_metric_history", "total_ms")),
    ("client get_metric_history: its own parsing (ms)", ("client_get_metric_history", "client_parse_ms")),
    ("get-history 25k page, median of the paged read (ms)", ("history_page_median_ms",)),
    ("get-history paged read, all pages (ms)", ("history_paged_read_ms",)),
    ("client get_metric_history, same pages served from memory (ms)", ("client_get_metric_history", "from_memory_ms")),
    ("client get_metric_history total ÷ from memory", ("client_get_metric_history", "total_over_memory")),
    ("runs/search 1st page, metric filter+order (ms p50)", ("runs_search", "p50_ms")),
    ("experiments/search 1st page (ms p50)", ("experiments_search", "p50_ms")),
    ("artifact upload (MB/s)", ("artifacts", "upload_mb_s")),
    ("artifact download (MB/s)", ("artifacts", "download_mb_s")),
    ("artifact upload: server peak RSS (MB)", ("artifacts", "upload_peak_rss_mb")),
    ("artifact download: server peak RSS (MB)", ("artifacts", "download_peak_rss_mb")),
    ("  (server RSS before them, MB)", ("artifacts", "rss_before_mb")),
    ("server RSS after start-up (MB)", ("rss_at_start", "total_mb")),
    ("  anonymous (MB)", ("rss_at_start", "anon_mb")),
    ("  file-backed (MB)", ("rss_at_start", "file_mb")),
    ("server RSS after the fill, at rest (MB)", ("rss_after_fill", "total_mb")),
    ("  anonymous (MB)", ("rss_after_fill", "anon_mb")),
    ("  file-backed (MB)", ("rss_after_fill", "file_mb")),
    ("server peak RSS over every read figure (MB)", ("rss_peak_reads", "total_mb")),
    ("  anonymous part's peak (MB)", ("rss_peak_reads", "anon_mb")),
    ("  file-backed part's peak (MB)", ("rss_peak_reads", "file_mb")),
    ("object store's own upload (MB/s)", ("artifacts", "store_own", "upload_mb_s")),
    ("object store's own download (MB/s)", ("artifacts", "store_own", "download_mb_s")),
]


def _get(d: Any, path: tuple[str, ...]) -> Any:
    for p in path:
        d = d.get(p) if isinstance(d, dict) else None
    return d


def markdown(result: dict[str, Any]) -> str:
    systems = list(result["systems"])
    head = "| figure | " + " | ".join(systems) + " | " + " | ".join(f"{s} ÷ mlflow" for s in systems[1:]) + " |"
    lines = [f"# Reads, {result['timestamp']} ({result['params']})", "", head,
             "|" + "---|" * (1 + len(systems) + len(systems) - 1)]  # fmt: skip
    base = result["systems"].get("mlflow", {})
    for label, path in FIGURES:
        values = [_get(result["systems"][s], path) for s in systems]
        ref = _get(base, path)
        ratios = [
            f"{v / ref:.2f}" if isinstance(v, (int, float)) and isinstance(ref, (int, float)) and ref else "-"
            for v in values[1:]
        ]
        lines.append(f"| {label} | " + " | ".join("-" if v is None else str(v) for v in values) + " | "
                     + " | ".join(ratios) + " |")  # fmt: skip
    lines += ["", "Lower is better for ms and MB of RSS, higher for MB/s. "
              f"Machine: {json.dumps(result['machine'])}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.reads", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--systems", default="mlflow,trackstream-kafka,trackstream-embedded")
    p.add_argument("--points", type=int, default=1_000_000, help="points of the big run (default 1M)")
    p.add_argument("--runs", type=int, default=1000, help="small runs in the experiment (default 1000)")
    p.add_argument("--experiments", type=int, default=500)
    p.add_argument("--artifact-mb", type=int, default=2048, help="artifact size in MiB (0: skip; default 2048)")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--charts-only", action="store_true", help="only the bulk-interval and get-history-bulk figures")
    p.add_argument("--mlflow-workers", type=int, default=2)
    p.add_argument("--note", default="")
    p.add_argument("--figures", default="bulk,unpaged", help="optional figure groups (default: all of bulk,unpaged)")
    args = p.parse_args(argv)
    # what bench/run.py's systems read from their args
    args.variant, args.gateways, args.metrics_consumers, args.partitions, args.keep = "", 1, 1, 0, False
    timestamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    result: dict[str, Any] = {"timestamp": timestamp, "params": {k: v for k, v in vars(args).items()
                              if k in ("points", "runs", "experiments", "artifact_mb", "repeat")},
                              "machine": machine_info(), "note": args.note, "systems": {}}  # fmt: skip
    for name in args.systems.split(","):
        run_dir = Path(tempfile.mkdtemp(prefix=f"trackstream-bench-reads-{name}-"))
        print(f"bench.reads: {name}, logs in {run_dir}", flush=True)
        system = SYSTEMS[name](args, run_dir)
        try:
            system.start()
            rss = PeakRss(server_pids(system))
            rss.start()
            at_start = _mb(rss.parts())
            data = fill(system, args.points, args.runs, args.experiments)
            after_fill = _mb(rss.parts())
            rss.reset(everything=True)  # the peak over the read figures below
            figures = measure(system, args, data, rss) | {"rss_at_start": at_start, "rss_after_fill": after_fill}
            figures["rss_after_reads"] = _mb(rss.parts())
            figures["rss_peak_reads"] = _mb((rss.peak_all, rss.peak_anon_all, rss.peak_file_all))
            figures["fill"] = {k: v for k, v in data.items() if k.startswith("fill")}
            result["systems"][name] = figures
            rss.stopped.set()
            print(json.dumps(figures), flush=True)
        finally:
            system.stop()
            system.cleanup()
    save(f"{timestamp}-reads", result, markdown(result))


if __name__ == "__main__":
    main()
