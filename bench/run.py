"""Side-by-side benchmark of trackstream and `mlflow server` on one machine (not a test; see bench/README.md).

    python -m bench.run --system trackstream-kafka --duration 60 --clients 8
    python -m bench.run --system mlflow --mlflow-workers 2
    python -m bench.run --system trackstream-embedded
    python -m bench.run --system clickhouse-raw          # the raw columnar-insert baseline
    python -m bench.run --report                         # compare the latest result of each system

Every run starts its own system under test (fresh SQLite file / chDB dir / ClickHouse database, Kafka
topics and consumer groups unique to the run), drives it from separate load-generator processes, and
writes bench/results/<timestamp>-<system>.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import requests

from bench.procstats import ProcSampler
from bench.report import RESULTS, save

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SYSTEMS = ("mlflow", "trackstream-kafka", "trackstream-embedded", "clickhouse-raw")
API = "/api/2.0/mlflow"
CODE_DIRS = ("ingest", "consumers", "trackstream", "schemas")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def percentiles(values: list[float], scale: float = 1000.0) -> dict[str, float | int | None]:
    """p50/p95/p99/max of ``values`` (seconds) in milliseconds (``scale``)."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    s = sorted(values)

    def q(p: float) -> float:
        return round(s[min(len(s) - 1, int(p * len(s)))] * scale, 2)

    return {"n": len(s), "p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "max": round(s[-1] * scale, 2)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def services_env() -> dict[str, str]:
    """The TRACKSTREAM_* endpoints of the running local services (.services/env), overridden by the environment."""
    out: dict[str, str] = {}
    path = REPO / ".services" / "env"
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.strip().removeprefix("export ").strip()
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                out[k] = v.strip().strip("'\"")
    for k, v in os.environ.items():
        if k.startswith("TRACKSTREAM_") and k in out:
            out[k] = v
    if "TRACKSTREAM_KAFKA_BOOTSTRAP" not in out or "TRACKSTREAM_CLICKHOUSE_URL" not in out:
        sys.exit("bench: no services found (.services/env); start them with `make services-up`")
    return out


def service_pids() -> dict[str, int]:
    pids = {}
    for name in ("kafka", "clickhouse"):
        with contextlib.suppress(OSError, ValueError):
            pids[f"service:{name}"] = int((REPO / ".services" / name / "pid").read_text().strip())
    return pids


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def call(base: str, method: str, path: str, body: Any = None, params: Any = None, tries: int = 60) -> Any:
    """A setup/probe call, retried on 503 and connection errors (the system may still be warming up)."""
    last = ""
    for _ in range(tries):
        try:
            r = requests.request(method, base + API + path, json=body, params=params, timeout=30)
            if r.status_code == 200:
                return r.json()
            last = f"{r.status_code} {r.text[:300]}"
            if r.status_code not in (502, 503, 504):
                break
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.5)
    raise RuntimeError(f"{method} {path} failed: {last}")


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}; see {log}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not healthy after {timeout}s; see {log}")


# ----------------------------------------------------------------------------------------------
# systems under test
# ----------------------------------------------------------------------------------------------
class System:
    name = ""
    has_store_view = False  # store_has() answers from the store itself, not through the API

    def __init__(self, args: argparse.Namespace, run_dir: Path) -> None:
        self.args = args
        self.dir = run_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.urls: list[str] = []
        self.config: dict[str, Any] = {}

    def spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.dir / f"{name}.log"
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=self.dir, start_new_session=True
            )
        self.procs[name] = proc
        return proc

    def start(self) -> None:
        raise NotImplementedError

    def count(self, run_ids: list[str], acked: dict[str, int]) -> int:
        """Points of ``run_ids`` readable in the store (``acked``: points acked per run, for API counting)."""
        raise NotImplementedError

    def store_has(self, run_id: str, key: str, step: int) -> bool | None:
        """Direct store lookup of one point, or None if this system has no separate store view."""
        return None

    def insert_sizes(self) -> dict[str, Any] | None:
        return None

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)  # the session we started for it (workers included)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def cleanup(self) -> None:
        pass


def gateway_cmd(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """``trackstream serve``, or the same through bench/variants.py with ``--variant`` patches applied."""
    if args.variant:
        return [sys.executable, "-m", "bench.variants", args.variant, "serve"], {"PYTHONPATH": str(REPO)}
    return [str(VENV_BIN / "trackstream"), "serve"], {}


class Mlflow(System):
    name = "mlflow"

    def start(self) -> None:
        self.db = self.dir / "mlflow.db"
        port = free_port()
        (self.dir / "artifacts").mkdir()
        cmd = [
            str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{self.db}",
            "--default-artifact-root", str(self.dir / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(self.args.mlflow_workers),
        ]  # fmt: skip
        proc = self.spawn("mlflow-server", cmd)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", proc, 180, self.dir / "mlflow-server.log")
        self.urls = [url]
        self.config = {"workers": self.args.mlflow_workers, "backend": "sqlite", "version": _version("mlflow")}

    def count(self, run_ids: list[str], acked: dict[str, int]) -> int:
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            marks = ",".join("?" * len(run_ids))
            sql = f"SELECT count(*) FROM metrics WHERE run_uuid IN ({marks}) AND key != 'warmup'"
            row = con.execute(sql, run_ids).fetchone()
            return int(row[0])
        finally:
            con.close()


class TrackstreamKafka(System):
    name = "trackstream-kafka"
    has_store_view = True

    def start(self) -> None:
        from clickhouse_driver import Client

        svc = services_env()
        tag = self.dir.name.replace("-", "_")
        self.database = f"ts_bench_{tag}"
        base_url = svc["TRACKSTREAM_CLICKHOUSE_URL"]
        Client.from_url(base_url).execute(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        self.ch = Client.from_url(with_database(base_url, self.database))
        self.topics = {t: f"bench.{tag}.{t}" for t in ("metrics", "metadata", "artifacts", "deadletter")}
        env = dict(svc)
        env.update(
            TRACKSTREAM_MODE="kafka",
            TRACKSTREAM_CLICKHOUSE_URL=with_database(base_url, self.database),
            TRACKSTREAM_CONSUMER_GROUP_PREFIX=f"bench-{tag}",
            TRACKSTREAM_DATA_DIR=str(self.dir / "data"),
            **{f"TRACKSTREAM_TOPIC_{k.upper()}": v for k, v in self.topics.items()},
        )
        if self.args.partitions:
            env["TRACKSTREAM_TOPIC_PARTITIONS"] = str(self.args.partitions)
        self.bootstrap = svc["TRACKSTREAM_KAFKA_BOOTSTRAP"]
        self.env = env  # for a bench that starts more workers (bench/artifacts.py: the artifacts consumer)
        ts = str(VENV_BIN / "trackstream")
        subprocess.run([ts, "migrate"], env={**os.environ, **env}, check=True, capture_output=True, cwd=self.dir)
        gateways = []
        cmd, extra = gateway_cmd(self.args)
        for i in range(self.args.gateways):
            port = free_port()
            gateways.append((self.spawn(f"gateway{i}", cmd, {**env, **extra, "TRACKSTREAM_PORT": str(port)}), port))
        for i in range(self.args.metrics_consumers):
            self.spawn(f"consume-metrics{i}", [ts, "consume", "metrics"], env)
        self.spawn("consume-metadata", [ts, "consume", "metadata"], env)
        for i, (proc, port) in enumerate(gateways):
            url = f"http://127.0.0.1:{port}"
            wait_http(url + "/health", proc, 120, self.dir / f"gateway{i}.log")
            self.urls.append(url)
        self.config = {
            "gateways": self.args.gateways, "metrics_consumers": self.args.metrics_consumers,
            "partitions": int(env.get("TRACKSTREAM_TOPIC_PARTITIONS", "4")), "database": self.database,
            "topics": self.topics, "batch_max_rows": env.get("TRACKSTREAM_BATCH_MAX_ROWS", "50000 (default)"),
            "batch_max_seconds": env.get("TRACKSTREAM_BATCH_MAX_SECONDS", "0.5 (default)"),
            "variant": self.args.variant or None,
        }  # fmt: skip

    def count(self, run_ids: list[str], acked: dict[str, int]) -> int:
        rows = self.ch.execute(
            "SELECT count() FROM metrics WHERE run_id IN %(ids)s AND key != 'warmup'", {"ids": tuple(run_ids)}
        )
        return int(rows[0][0])

    def distinct_count(self, run_ids: list[str]) -> int:
        rows = self.ch.execute(
            "SELECT count() FROM (SELECT DISTINCT run_id, key, step, timestamp, value FROM metrics "
            "WHERE run_id IN %(ids)s AND key != 'warmup')",
            {"ids": tuple(run_ids)},
        )
        return int(rows[0][0])

    def store_has(self, run_id: str, key: str, step: int) -> bool | None:
        rows = self.ch.execute(
            "SELECT count() FROM metrics WHERE run_id = %(r)s AND key = %(k)s AND step = %(s)s",
            {"r": run_id, "k": key, "s": step},
        )
        return bool(rows[0][0])

    def insert_sizes(self) -> dict[str, Any] | None:
        # Every INSERT block becomes one level-0 part; merged parts stay listed (inactive) for
        # old_parts_lifetime (480 s), so level-0 parts are the consumer's inserts of this run's database.
        rows = self.ch.execute(
            "SELECT rows FROM system.parts WHERE database = %(db)s AND table = 'metrics' AND level = 0",
            {"db": self.database},
        )
        sizes = sorted(int(r[0]) for r in rows)
        if not sizes:
            return None
        big = [s for s in sizes if s >= 1000]
        return {
            "inserts": len(sizes), "rows_total": sum(sizes), "rows_avg": round(sum(sizes) / len(sizes), 1),
            "rows_p50": sizes[len(sizes) // 2], "rows_max": sizes[-1],
            "inserts_ge_1000_rows": len(big), "rows_avg_of_those": round(sum(big) / len(big), 1) if big else None,
            "source": "system.parts level-0 parts (one per INSERT block)",
        }  # fmt: skip

    def cleanup(self) -> None:
        if self.args.keep:
            return
        with contextlib.suppress(Exception):
            self.ch.execute(f"DROP DATABASE IF EXISTS {self.database}")
        with contextlib.suppress(Exception):
            from kafka import KafkaAdminClient

            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="trackstream-bench")
            admin.delete_topics(list(self.topics.values()))
            admin.close()


class TrackstreamEmbedded(System):
    name = "trackstream-embedded"

    def start(self) -> None:
        port = free_port()
        env = {"TRACKSTREAM_MODE": "embedded", "TRACKSTREAM_DATA_DIR": str(self.dir / "data"),
               "TRACKSTREAM_PORT": str(port)}  # fmt: skip
        cmd, extra = gateway_cmd(self.args)
        proc = self.spawn("gateway0", cmd, {**env, **extra})
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", proc, 120, self.dir / "gateway0.log")
        self.urls = [url]
        self.config = {"mode": "embedded (in-process log, chDB)", "variant": self.args.variant or None}

    def count(self, run_ids: list[str], acked: dict[str, int]) -> int:
        """Through the API (chDB belongs to the gateway process): get-history of every key of every run."""
        total = 0
        for run_id in run_ids:
            for k in range(self.args.keys):
                token = None
                while True:
                    params = {"run_id": run_id, "metric_key": f"m{k}", "max_results": 25000}
                    if token:
                        params["page_token"] = token
                    page = call(self.urls[0], "GET", "/metrics/get-history", params=params)
                    total += len(page.get("metrics", []))
                    token = page.get("next_page_token")
                    if not token:
                        break
        return total


def _version(package: str) -> str:
    from importlib.metadata import version

    try:
        return version(package)
    except Exception:
        return "?"


# ----------------------------------------------------------------------------------------------
# the probe: readable-after-ack under load
# ----------------------------------------------------------------------------------------------
class Probe(threading.Thread):
    """Logs one marker point every ``period`` s and measures how long until it is readable.

    Even probes poll get-history (the API, read-your-writes barrier included); odd probes poll the store
    directly where the system has one (Kafka mode: the ClickHouse table), else the API too.
    """

    def __init__(self, system: System, run_id: str, start_at: float, until: float, period: float) -> None:
        super().__init__(name="probe", daemon=True)
        self.system, self.run_id, self.start_at, self.until, self.period = system, run_id, start_at, until, period
        self.api: list[float] = []
        self.store: list[float] = []
        self.ack: list[float] = []
        self.timeouts = 0
        self.errors: list[str] = []

    def run(self) -> None:
        base = self.system.urls[0]
        session = requests.Session()
        while time.time() < self.start_at:
            time.sleep(0.005)
        step = 0
        while time.time() < self.until:
            step += 1
            point = {"key": "probe", "value": step, "timestamp": int(time.time() * 1000), "step": step}
            body: dict[str, Any] = {"run_id": self.run_id, "metrics": [point]}
            t0 = time.perf_counter()
            try:
                r = session.post(base + API + "/runs/log-batch", json=body, timeout=30)
            except requests.RequestException as exc:
                self.errors.append(str(exc)[:200])
                continue
            t_ack = time.perf_counter()
            if r.status_code != 200:
                self.errors.append(f"{r.status_code} {r.text[:200]}")
                time.sleep(self.period)
                continue
            self.ack.append(t_ack - t0)
            direct = step % 2 == 1 and self.system.has_store_view
            seen = False
            while time.perf_counter() - t_ack < 30:
                if direct:
                    seen = bool(self.system.store_has(self.run_id, "probe", step))
                else:
                    with contextlib.suppress(requests.RequestException):
                        g = session.get(
                            base + API + "/metrics/get-history",
                            params={"run_id": self.run_id, "metric_key": "probe", "max_results": "25000"},
                            timeout=30,
                        )
                        seen = g.status_code == 200 and any(m["step"] == step for m in g.json().get("metrics", []))
                if seen:
                    break
                time.sleep(0.005)
            t_seen = time.perf_counter()
            if not seen:
                self.timeouts += 1
            else:
                (self.store if direct else self.api).append(t_seen - t_ack)
            time.sleep(max(0.0, self.period - (t_seen - t0)))

    def result(self) -> dict[str, Any]:
        return {
            "readable_via_get_history_ms": percentiles(self.api),
            "visible_in_store_ms": percentiles(self.store) if self.store else None,
            "probe_ack_ms": percentiles(self.ack),
            "timeouts_30s": self.timeouts,
            "errors": self.errors[:10],
        }


# ----------------------------------------------------------------------------------------------
# a load run
# ----------------------------------------------------------------------------------------------
def setup_runs(system: System, n: int, tag: str) -> tuple[list[str], str]:
    base = system.urls[0]
    exp = call(base, "POST", "/experiments/create", {"name": f"bench-{tag}"})["experiment_id"]
    run_ids = []
    for i in range(n + 1):
        run = call(base, "POST", "/runs/create", {"experiment_id": exp, "run_name": f"bench-{i}",
                                                   "start_time": int(time.time() * 1000)})  # fmt: skip
        run_ids.append(run["run"]["info"]["run_id"])
    # warm-up: every run accepts a write and the read path answers (consumers assigned and caught up)
    for url in system.urls:
        for run_id in run_ids:
            body = {"run_id": run_id, "metrics": [{"key": "warmup", "value": 0, "timestamp": 0, "step": 0}]}
            call(url, "POST", "/runs/log-batch", body)
    call(base, "GET", "/metrics/get-history", params={"run_id": run_ids[0], "metric_key": "warmup"})
    return run_ids[:-1], run_ids[-1]


def start_profiler(system: System, args: argparse.Namespace, start_at: float, stem: str) -> subprocess.Popen[bytes]:
    pyspy = shutil.which("py-spy", path=str(VENV_BIN)) or shutil.which("py-spy")
    if not pyspy:
        sys.exit("bench: --profile needs py-spy (pip install -e '.[bench]')")
    pid = system.procs["gateway0"].pid
    out = RESULTS / f"{stem}-gateway.pyspy.txt"
    cmd = [pyspy, "record", "--pid", str(pid), "--rate", str(args.profile_rate), "--duration",
           str(int(args.duration)), "--format", "raw", "--output", str(out), "--nonblocking"]  # fmt: skip
    if args.profile == "wall":
        cmd.append("--idle")
    delay = max(0.0, start_at - time.time())
    time.sleep(delay)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_load(system: System, args: argparse.Namespace, stem: str) -> dict[str, Any]:
    tag = system.dir.name
    run_ids, probe_run = setup_runs(system, args.clients, tag)
    sampler = ProcSampler()
    for name, proc in system.procs.items():
        sampler.add(name, proc.pid)
    for name, pid in service_pids().items():
        if system.name == "trackstream-kafka":
            sampler.add(name, pid, with_children=False)
    start_at = time.time() + 3.0
    procs = max(1, min(args.client_procs, args.clients))
    outs, loaders = [], []
    for i in range(procs):
        mine = run_ids[i::procs]
        job = {"urls": system.urls, "run_ids": mine, "duration": args.duration, "start_at": start_at,
               "metrics": args.metrics, "keys": args.keys, "key_prefix": "m", "timeout": 60}  # fmt: skip
        out = system.dir / f"loadgen{i}.json"
        outs.append(out)
        p = subprocess.Popen([sys.executable, "-m", "bench.loadgen", json.dumps(job), str(out)], cwd=REPO)
        loaders.append(p)
        sampler.add(f"client{i}", p.pid)
    sampler.start()
    probe = Probe(system, probe_run, start_at, start_at + args.duration, args.probe_period)
    probe.start()
    profiler = start_profiler(system, args, start_at, stem) if args.profile else None
    while time.time() < start_at:
        time.sleep(0.005)
    sampler.mark()
    for p in loaders:
        p.wait()
    sampler.end()
    probe.join(60)
    if profiler is not None:
        profiler.wait(60)

    threads = []
    for out in outs:
        data = orjson.loads(out.read_bytes())
        threads.extend(data["threads"])
    latencies = [x for t in threads for x in t["latencies"]]
    ack_times = [x for t in threads for x in t["ack_times"]]
    acked_points = sum(t["acked_points"] for t in threads)
    acked_per_run = {t["run_id"]: t["acked_points"] for t in threads}
    errors: dict[str, int] = {}
    error_samples: list[str] = []
    for t in threads:
        for k, v in t["errors"].items():
            errors[k] = errors.get(k, 0) + v
        error_samples += t.get("error_samples", [])
    last_ack = max(ack_times) if ack_times else start_at
    window = max(last_ack, start_at + args.duration) - start_at

    # end to end: poll the store until every acked point is there
    t_visible = None
    seen = 0
    deadline = time.time() + args.drain_timeout
    poll_seconds = 0.0
    while time.time() < deadline:
        t_poll = time.time()
        seen = system.count(run_ids, acked_per_run)
        poll_seconds = time.time() - t_poll
        if seen >= acked_points:
            t_visible = t_poll  # the count that found everything began here (conservative for a fast count)
            break
        time.sleep(0.1 if system.name != "trackstream-embedded" else 1.0)
    e2e: dict[str, Any] = {"points_readable": seen, "complete": t_visible is not None,
                           "count_query_seconds": round(poll_seconds, 3)}  # fmt: skip
    if t_visible is not None:
        span = t_visible - start_at
        e2e.update(
            seconds_from_load_start=round(span, 2),
            drain_after_last_ack_s=round(max(0.0, t_visible - last_ack), 2),
            points_per_s=round(acked_points / span, 1),
        )
    if isinstance(system, TrackstreamKafka):
        e2e["distinct_points"] = system.distinct_count(run_ids)

    res = {
        "acked_points": acked_points,
        "acked_requests": len(latencies),
        "points_per_request": threads[0]["points_per_request"] if threads else None,
        "acked_points_per_s": round(acked_points / window, 1),
        "acked_requests_per_s": round(len(latencies) / window, 1),
        "ack_latency_ms": percentiles(latencies),
        "errors": errors,
        "error_samples": sorted(set(error_samples))[:10],
        "end_to_end": e2e,
        "readable_after_ack": probe.result(),
        "consumer_inserts": system.insert_sizes(),
        "resources": sampler.report(),
    }
    sampler.stop()
    procs_res = res["resources"]["processes"]
    client_cpu = sum(v["cpu_cores_avg"] for k, v in procs_res.items() if k.startswith("client"))
    res["client_cpu_cores_avg"] = round(client_cpu, 2)
    # CPU cost per acked request, less sensitive to background load than the rates (probe and refused
    # requests are included in the numerator, so it is an upper bound)
    server_roles = {"gateway": ("gateway", "mlflow-server"), "consumers": ("consume-",)}
    per_req: dict[str, float] = {}
    for role, prefixes in server_roles.items():
        cpu = sum(v["cpu_seconds"] for k, v in procs_res.items() if k.startswith(prefixes))
        if cpu and latencies:
            per_req[role] = round(1000.0 * cpu / len(latencies), 2)
    res["cpu_ms_per_acked_request"] = per_req
    if args.profile:
        res["profile"] = summarize_profile(RESULTS / f"{stem}-gateway.pyspy.txt", args, len(latencies))
    return res


# ----------------------------------------------------------------------------------------------
# profile summary (py-spy raw = collapsed stacks "frame;frame;... count")
# ----------------------------------------------------------------------------------------------
def _frame_name(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py-relative)"
    if " (" in frame and frame.endswith(")"):
        func, where = frame[:-1].split(" (", 1)
        path = where.rsplit(":", 1)[0]
        for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
            if marker in path:
                path = path.split(marker, 1)[1]
                break
        return f"{func} ({path})"
    return frame


def summarize_profile(path: Path, args: argparse.Namespace, requests_done: int) -> dict[str, Any]:
    if not path.exists():
        return {"error": f"no profile written at {path}"}
    self_c: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [_frame_name(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        self_c[frames[-1]] = self_c.get(frames[-1], 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
    sec = 1.0 / args.profile_rate
    per_req = 1000.0 * sec / max(requests_done, 1)

    def top(d: dict[str, int], n: int) -> list[dict[str, Any]]:
        rows = sorted(d.items(), key=lambda kv: -kv[1])[:n]
        return [{"frame": k, "share": round(v / max(total, 1), 3), "ms_per_request": round(v * per_req, 3)}
                for k, v in rows]  # fmt: skip

    return {
        "mode": args.profile, "file": str(path.relative_to(REPO)), "samples": total,
        "sampled_seconds": round(total * sec, 1), "requests": requests_done,
        "ms_per_request_total": round(total * per_req, 3),
        "top_self": top(self_c, 25), "top_inclusive": top(incl, 40),
    }  # fmt: skip


# ----------------------------------------------------------------------------------------------
# raw baseline: clickhouse-driver columnar inserts into the metrics table shape
# ----------------------------------------------------------------------------------------------
def raw_baseline(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    from clickhouse_driver import Client

    from schemas import ddl

    svc = services_env()
    database = f"ts_bench_{run_dir.name.replace('-', '_')}_raw"
    base_url = svc["TRACKSTREAM_CLICKHOUSE_URL"]
    Client.from_url(base_url).execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    ch = Client.from_url(with_database(base_url, database))
    try:
        for statement in ddl.statements():
            if "TABLE IF NOT EXISTS metrics " in statement:
                ch.execute(statement)
        n = args.raw_batch
        run_ids = [uuid.uuid4().hex for _ in range(args.clients)]
        keys = [f"m{i}" for i in range(args.keys)]
        per_key = args.metrics // args.keys
        names = "run_id, key, step, timestamp, value, is_nan, model_id, dataset_name, dataset_digest"

        def batch(first_step: int) -> list[list[Any]]:
            # the rows the consumers would write: ``clients`` runs x ``keys`` keys, increasing steps
            ts = int(time.time() * 1000)
            run_col, key_col, step_col = [], [], []
            per_run = n // len(run_ids)
            for r in run_ids:
                for i in range(per_run // len(keys)):
                    for k in keys:
                        run_col.append(r)
                        key_col.append(k)
                        step_col.append(first_step + i)
            m = len(run_col)
            return [run_col, key_col, step_col, [ts] * m, [random.random() for _ in range(m)], [0] * m,
                    [""] * m, [""] * m, [""] * m]  # fmt: skip

        prepared = [batch(i * per_key * 1000) for i in range(4)]
        rows = 0
        inserts = 0
        insert_seconds = 0.0
        build_seconds = 0.0
        t_start = time.perf_counter()
        step = 4 * per_key * 1000
        while time.perf_counter() - t_start < args.duration:
            tb = time.perf_counter()
            cols = prepared[inserts % 4] if args.raw_prebuilt else batch(step)
            step += per_key * 1000
            ti = time.perf_counter()
            ch.execute(f"INSERT INTO metrics ({names}) VALUES", cols, columnar=True)
            te = time.perf_counter()
            build_seconds += ti - tb
            insert_seconds += te - ti
            rows += len(cols[0])
            inserts += 1
        wall = time.perf_counter() - t_start
        stored = int(ch.execute("SELECT count() FROM metrics")[0][0])
        return {
            "rows": rows, "inserts": inserts, "rows_per_insert": rows // max(inserts, 1), "stored_rows": stored,
            "points_per_s_insert_only": round(rows / insert_seconds, 1),
            "points_per_s_wall": round(rows / wall, 1),
            "build_seconds": round(build_seconds, 2), "insert_seconds": round(insert_seconds, 2),
            "database": database, "prebuilt_batches": bool(args.raw_prebuilt),
        }  # fmt: skip
    finally:
        if not args.keep:
            with contextlib.suppress(Exception):
                ch.execute(f"DROP DATABASE IF EXISTS {database}")


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    loadavg = os.getloadavg()
    return {
        "cpus": os.cpu_count(), "loadavg_at_start": loadavg, "python": sys.version.split()[0],
        "git_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                     cwd=REPO).stdout.strip(),
        "git_dirty": bool(subprocess.run(["git", "status", "--porcelain", "--", "ingest", "consumers", "trackstream",
                                          "schemas"], capture_output=True, text=True, cwd=REPO).stdout.strip()),
        # identifies uncommitted changes of the code under test (the sha1 of their diff), for comparing runs
        "code_diff_sha1": hashlib.sha1(subprocess.run(["git", "diff", "HEAD", "--", *CODE_DIRS], capture_output=True,
                                                      cwd=REPO).stdout).hexdigest()[:12],
    }  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    sysname = result["system"]
    lines = [f"# {sysname} — {result['timestamp']}", ""]
    if result.get("note"):
        lines += [f"> {result['note']}", ""]
    lines.append(f"config: `{json.dumps(result['params'])}`  ")
    lines.append(f"system: `{json.dumps(result.get('system_config', {}))}`  ")
    lines.append(f"machine: `{json.dumps(result['machine'])}`")
    lines.append("")
    r = result["result"]
    if sysname == "clickhouse-raw":
        lines += [
            "| figure | value |", "|---|---|",
            f"| raw columnar insert, points/s (insert time only) | {r['points_per_s_insert_only']:,.0f} |",
            f"| raw columnar insert, points/s (wall, incl. building columns) | {r['points_per_s_wall']:,.0f} |",
            f"| rows per insert | {r['rows_per_insert']:,} |",
        ]  # fmt: skip
        return "\n".join(lines) + "\n"
    lat, e2e, rda = r["ack_latency_ms"], r["end_to_end"], r["readable_after_ack"]
    lines += [
        "| figure | value |", "|---|---|",
        f"| acked points/s | {r['acked_points_per_s']:,.0f} ({r['acked_requests_per_s']} req/s x "
        f"{r['points_per_request']} points) |",
        f"| ack latency p50 / p95 / p99 / max (ms) | {lat['p50']} / {lat['p95']} / {lat['p99']} / {lat['max']} |",
        f"| end-to-end points/s (all acked points readable) | {e2e.get('points_per_s', 'INCOMPLETE')} |",
        f"| drain after last ack (s) | {e2e.get('drain_after_last_ack_s', '-')} |",
        f"| readable after ack via get-history p50 / p99 (ms) | {rda['readable_via_get_history_ms']['p50']} / "
        f"{rda['readable_via_get_history_ms']['p99']} (n={rda['readable_via_get_history_ms']['n']}) |",
    ]  # fmt: skip
    if rda.get("visible_in_store_ms"):
        s = rda["visible_in_store_ms"]
        lines.append(f"| visible in ClickHouse after ack p50 / p99 (ms) | {s['p50']} / {s['p99']} (n={s['n']}) |")
    if r.get("consumer_inserts"):
        c = r["consumer_inserts"]
        sizes = f"{c['inserts']} / {c['rows_avg']} / {c['rows_max']}"
        lines.append(f"| consumer inserts: count / avg rows / max rows | {sizes} |")
    lines.append(f"| errors | {r['errors'] or 'none'} |")
    lines.append(f"| client CPU (cores) | {r['client_cpu_cores_avg']} |")
    if r.get("cpu_ms_per_acked_request"):
        lines.append(f"| server CPU ms per acked request | {r['cpu_ms_per_acked_request']} |")
    lines += ["", "| process | CPU cores avg | max RSS MiB |", "|---|---|---|"]
    for name, p in r["resources"]["processes"].items():
        lines.append(f"| {name} | {p['cpu_cores_avg']} | {p['max_rss_mib']} |")
    m = r["resources"].get("machine")
    if m:
        lines.append(f"| (machine busy / other, cores) | {m['busy_cores_avg']} / {m['other_busy_cores_avg']} | |")
    if r.get("profile") and "top_inclusive" in r["profile"]:
        prof = r["profile"]
        lines += ["", f"## gateway profile ({prof['mode']}, {prof['ms_per_request_total']} ms sampled per request)",
                  "", "| frame (inclusive) | share | ms/request |", "|---|---|---|"]  # fmt: skip
        for row in prof["top_inclusive"][:30]:
            lines.append(f"| `{row['frame']}` | {row['share']:.1%} | {row['ms_per_request']} |")
    return "\n".join(lines) + "\n"


def all_results() -> list[dict[str, Any]]:
    """The ingest load's results (the other benches write theirs to the same folder)."""
    out = []
    for path in sorted(RESULTS.glob("*.json")):  # names start with the timestamp
        with contextlib.suppress(Exception):
            data = json.loads(path.read_text())
            if data.get("system") in SYSTEMS and "params" in data:
                out.append(data)
    return out


def plain(data: dict[str, Any]) -> bool:
    """A run of the code as it is: no what-if variant, no profiler attached."""
    return not data["params"].get("variant") and not data["params"].get("profile")


def latest_results() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for data in all_results():
        if plain(data):
            found[data["system"]] = data  # sorted by timestamp: the last one wins
    return found


def _row(d: dict[str, Any]) -> str:
    r, name = d["result"], d["system"]
    if name == "clickhouse-raw":
        return f"| {d['timestamp']} | {name} | | | {r['points_per_s_insert_only']:,.0f} (insert only) | | | | | |"
    rda = r["readable_after_ack"]["readable_via_get_history_ms"]
    other = r["resources"].get("machine", {}).get("other_busy_cores_avg")
    extra = ", ".join(f"{k}={d['params'][k]}" for k in ("variant", "profile", "gateways") if d["params"].get(k))
    if name != "trackstream-kafka":
        extra = ", ".join(f"{k}={d['params'][k]}" for k in ("variant", "profile") if d["params"].get(k))
    if name == "mlflow":
        extra = f"workers={d['params'].get('mlflow_workers')}"
    procs = r["resources"]["processes"]
    gateway_cpu = sum(v["cpu_seconds"] for k, v in procs.items() if k.startswith(("gateway", "mlflow-server")))
    cpu = {"gateway": round(1000 * gateway_cpu / r["acked_requests"], 2)} if r["acked_requests"] else {}
    return (
        f"| {d['timestamp']} | {name} | {extra} | {r['acked_points_per_s']:,.0f} | "
        f"{r['end_to_end'].get('points_per_s', '-')} | {r['ack_latency_ms']['p50']}/{r['ack_latency_ms']['p99']} | "
        f"{rda['p50']}/{rda['p99']} | {sum(r['errors'].values())} | {cpu.get('gateway', '-')} | {other} |"
    )


def _other_load(d: dict[str, Any]) -> float:
    return float(d["result"].get("resources", {}).get("machine", {}).get("other_busy_cores_avg", 0.0))


def report() -> str:
    res = latest_results()
    head = [
        "| when | system | options | acked pts/s | e2e pts/s | ack p50/p99 ms | readable p50/p99 ms | errors | "
        "gateway CPU ms/req | other load (cores) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines = ["# trackstream bench", "", "## latest plain run per system (no variant, no profiler)", "", *head]
    lines += [_row(res[name]) for name in SYSTEMS if name in res]
    k, raw = res.get("trackstream-kafka"), res.get("clickhouse-raw")
    # conservative denominator: the best plain mlflow run on record
    mlflow_runs = [d for d in all_results() if d["system"] == "mlflow" and plain(d)]
    m = max(mlflow_runs, key=lambda d: d["result"]["end_to_end"].get("points_per_s") or 0, default=None)
    lines += ["", "## targets (trackstream-kafka, latest plain run)", ""]
    if k:
        kr = k["result"]
        ke2e = kr["end_to_end"].get("points_per_s")
        noisy = [d["timestamp"] for d in (k, m) if d and _other_load(d) > 0.2]
        if noisy:
            lines.append(f"- NOISY: runs {', '.join(noisy)} had > 0.2 cores of other load: verdicts indicative")
        if m and ke2e and m["result"]["end_to_end"].get("points_per_s"):
            ratio = ke2e / m["result"]["end_to_end"]["points_per_s"]
            lines.append(
                f"- e2e vs mlflow (best mlflow run, {m['timestamp']}): {ratio:.1f}x (target >= 30x): "
                f"{'MET' if ratio >= 30 else 'NOT MET'}"
            )
        if raw and ke2e:
            share = ke2e / raw["result"]["points_per_s_insert_only"]
            lines.append(f"- e2e vs raw insert: {share:.0%} (target >= 40%): {'MET' if share >= 0.4 else 'NOT MET'}")
        p99 = kr["ack_latency_ms"]["p99"]
        lines.append(f"- ack p99: {p99} ms (target <= 50 ms): {'MET' if p99 is not None and p99 <= 50 else 'NOT MET'}")
        rp99 = kr["readable_after_ack"]["readable_via_get_history_ms"]["p99"]
        ok = rp99 is not None and rp99 <= 1000
        lines.append(f"- readable after ack p99: {rp99} ms (target <= 1000 ms): {'MET' if ok else 'NOT MET'}")
    lines += ["", "## every run", "", *head, *(_row(d) for d in all_results())]
    lines += ["", "Figures from a shared 2-core machine are only comparable when taken under the same background "
              "load (see `other load`: busy cores not used by any process of the run). Notes stored with a run "
              "are in its .md file."]  # fmt: skip
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def run_directory(system: str) -> Iterator[Path]:
    tag = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
    path = Path(tempfile.gettempdir()) / f"trackstream-bench-{tag}"
    path.mkdir(parents=True)
    yield path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--system", choices=SYSTEMS)
    p.add_argument("--report", action="store_true", help="write bench/results/SUMMARY.md from the latest results")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    p.add_argument("--clients", type=int, default=8, help="concurrent client workers = runs (default 8)")
    p.add_argument("--client-procs", type=int, default=2, help="load-generator processes sharing them (default 2)")
    p.add_argument("--metrics", type=int, default=1000, help="metric points per log-batch request (default 1000)")
    p.add_argument("--keys", type=int, default=10, help="metric keys per request (default 10)")
    p.add_argument("--probe-period", type=float, default=0.25, help="seconds between readable-after-ack probes")
    p.add_argument("--drain-timeout", type=float, default=180.0, help="max seconds to wait for all acked points")
    p.add_argument("--mlflow-workers", type=int, default=2)
    p.add_argument("--gateways", type=int, default=1, help="trackstream-kafka: gateway processes (default 1)")
    p.add_argument("--metrics-consumers", type=int, default=1, help="trackstream-kafka: metrics consumer processes")
    p.add_argument("--partitions", type=int, default=0, help="trackstream-kafka: partitions per topic (default 4)")
    p.add_argument(
        "--variant",
        default="",
        help="trackstream: what-if gateway patches from bench/variants.py "
        "(comma list, e.g. switch1ms,linger0); never changes the code under ingest/ or trackstream/",
    )
    p.add_argument("--profile", choices=["cpu", "wall"], help="py-spy the first gateway during the load")
    p.add_argument("--profile-rate", type=int, default=100)
    p.add_argument("--raw-batch", type=int, default=50_000, help="clickhouse-raw: rows per insert")
    p.add_argument("--raw-prebuilt", action="store_true", help="clickhouse-raw: time inserts of prebuilt columns")
    p.add_argument("--keep", action="store_true", help="keep the bench database and topics")
    p.add_argument("--note", default="", help="free text stored with the result (e.g. 'noisy: tests running')")
    args = p.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.report:
        text = report()
        (RESULTS / "SUMMARY.md").write_text(text)
        print(text)
        return
    if not args.system:
        p.error("--system or --report is required")

    timestamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    stem = f"{timestamp}-{args.system}"
    params = {k: v for k, v in vars(args).items() if k not in ("report", "system", "note")}
    result: dict[str, Any] = {"system": args.system, "timestamp": timestamp, "params": params,
                              "machine": machine_info(), "note": args.note}  # fmt: skip
    with run_directory(args.system) as run_dir:
        print(f"bench: {args.system}, logs in {run_dir}", flush=True)
        if args.system == "clickhouse-raw":
            result["result"] = raw_baseline(args, run_dir)
        else:
            cls = {"mlflow": Mlflow, "trackstream-kafka": TrackstreamKafka, "trackstream-embedded": TrackstreamEmbedded}
            system = cls[args.system](args, run_dir)
            try:
                system.start()
                result["system_config"] = system.config
                result["result"] = run_load(system, args, stem)
            finally:
                system.stop()
                system.cleanup()
        result["logs"] = str(run_dir)
    save(stem, result, markdown(result))


if __name__ == "__main__":
    main()
