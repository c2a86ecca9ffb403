"""Span ingestion side by side: trackstream and ``mlflow server`` (SQLite) in one invocation (not a test).

    python -m bench.traces --duration 20 --systems mlflow,trackstream-kafka,trackstream-embedded
    make bench-traces

Every system gets the same load: ``--clients`` keep-alive HTTP clients spread over ``--client-procs``
processes, each sending ``POST /v1/traces`` (OTLP/HTTP protobuf, the route the MLflow client and any
OpenTelemetry SDK use) with ``--traces-per-request`` traces of ``--spans-per-trace`` spans, shaped like
MLflow LLM spans (type, inputs, outputs, token usage). It counts spans *acknowledged* (200 answers)
per second over ``--duration``, then how long until all of them are *readable* in the store
(``spans`` rows: SQLite for mlflow, ClickHouse for kafka mode; embedded mode acknowledges only what its
sink stored, which a sample of ``batchGet`` reads checks). Writes ``bench/results/traces-<time>.json``
and prints a table with the ratio to mlflow.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from bench.report import RESULTS
from bench.run import (
    VENV_BIN,
    Mlflow,
    System,
    TrackstreamEmbedded,
    free_port,
    machine_info,
    services_env,
    wait_http,
    with_database,
)

INPUTS = json.dumps({"messages": [{"role": "user", "content": "What is the capital of France? " * 4}]})
OUTPUTS = json.dumps({"choices": [{"message": {"role": "assistant", "content": "Paris is the capital. " * 4}}]})
USAGE = {"input_tokens": 42, "output_tokens": 17, "total_tokens": 59}


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, dict):
        any_value = AnyValue()
        for k, x in value.items():
            any_value.kvlist_value.values.append(_kv(k, x))
        return KeyValue(key=key, value=any_value)
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def build_request(traces: int, spans: int, rng: random.Random) -> tuple[bytes, int]:
    """One OTLP export: ``traces`` new traces of ``spans`` spans (a root and its children)."""
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    now = time.time_ns()
    for _ in range(traces):
        trace_id = rng.randbytes(16)
        root_id = rng.randbytes(8)
        for i in range(spans):
            span = Span(
                trace_id=trace_id,
                span_id=root_id if i == 0 else rng.randbytes(8),
                parent_span_id=b"" if i == 0 else root_id,
                name="agent" if i == 0 else f"llm_call_{i}",
                kind=Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=now + i * 1000,
                end_time_unix_nano=now + 5_000_000 + i * 1000,
                status=Status(code=Status.STATUS_CODE_OK),
            )
            span.attributes.extend([
                _kv("mlflow.spanType", "AGENT" if i == 0 else "LLM"),
                _kv("mlflow.spanInputs", INPUTS),
                _kv("mlflow.spanOutputs", OUTPUTS),
                _kv("mlflow.chat.tokenUsage", USAGE),
                _kv("gen_ai.request.model", "gpt-bench"),
            ])  # fmt: skip
            scope.spans.append(span)
    return request.SerializeToString(), traces * spans


def _client_proc(args: dict[str, Any], out: Any) -> None:
    """One load-generator process: ``threads`` keep-alive clients until ``until``; puts (acked spans, errors)."""
    import threading

    acked = [0]
    errors = [0]
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        session = requests.Session()
        headers = {"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": args["experiment_id"]}
        while time.time() < args["until"]:
            body, n = build_request(args["traces"], args["spans"], rng)
            try:
                answer = session.post(args["url"] + "/v1/traces", data=body, headers=headers, timeout=120)
                ok = answer.status_code == 200
            except requests.RequestException:
                ok = False
            with lock:
                if ok:
                    acked[0] += n
                else:
                    errors[0] += 1

    threads = [threading.Thread(target=worker, args=(args["seed"] * 1000 + i,)) for i in range(args["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((acked[0], errors[0]))


class TraceMlflow(Mlflow):
    def spans(self, experiment_id: str) -> int:
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            row = con.execute("SELECT count(*) FROM spans WHERE experiment_id = ?", (int(experiment_id),)).fetchone()
            return int(row[0])
        finally:
            con.close()


class TraceKafka(System):
    """Gateway + ``trackstream consume traces`` (and metadata, for the experiment) on the real services."""

    name = "trackstream-kafka"

    def start(self) -> None:
        from clickhouse_driver import Client

        svc = services_env()
        tag = self.dir.name.replace("-", "_").replace(".", "_")
        self.database = f"ts_bench_{tag}"
        base_url = svc["TRACKSTREAM_CLICKHOUSE_URL"]
        Client.from_url(base_url).execute(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        self.ch = Client.from_url(with_database(base_url, self.database))
        topics = {t: f"bench.{tag}.{t}" for t in ("metrics", "metadata", "artifacts", "traces", "deadletter")}
        env = dict(svc)
        env.update(
            TRACKSTREAM_MODE="kafka",
            TRACKSTREAM_CLICKHOUSE_URL=with_database(base_url, self.database),
            TRACKSTREAM_CONSUMER_GROUP_PREFIX=f"bench-{tag}",
            TRACKSTREAM_DATA_DIR=str(self.dir / "data"),
            **{f"TRACKSTREAM_TOPIC_{k.upper()}": v for k, v in topics.items()},
        )
        ts = str(VENV_BIN / "trackstream")
        subprocess.run([ts, "migrate"], env={**os.environ, **env}, check=True, capture_output=True, cwd=self.dir)
        port = free_port()
        proc = self.spawn("gateway0", [ts, "serve"], {**env, "TRACKSTREAM_PORT": str(port)})
        self.spawn("consume-traces", [ts, "consume", "traces"], env)
        self.spawn("consume-metadata", [ts, "consume", "metadata"], env)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", proc, 120, self.dir / "gateway0.log")
        self.urls = [url]
        self.config = {"database": self.database, "topics": topics, "gateways": 1, "trace_consumers": 1}

    def spans(self, experiment_id: str) -> int:
        rows = self.ch.execute("SELECT count() FROM spans WHERE experiment_id = %(e)s", {"e": experiment_id})
        return int(rows[0][0])

    def cleanup(self) -> None:
        try:
            self.ch.execute(f"DROP DATABASE IF EXISTS {self.database}")
        except Exception as exc:  # a leftover bench database is harmless; say so and go on
            print(f"  (could not drop {self.database}: {exc})")


class TraceEmbedded(TrackstreamEmbedded):
    def spans(self, experiment_id: str) -> int:
        return -1  # chDB belongs to the gateway process: checked by sampling reads instead


def _experiment(url: str) -> str:
    for _ in range(60):
        try:
            answer = requests.post(url + "/api/2.0/mlflow/experiments/create", json={"name": f"bench-{time.time_ns()}"})
            if answer.status_code == 200:
                return str(answer.json()["experiment_id"])
        except requests.RequestException:
            pass
        time.sleep(1)
    raise RuntimeError(f"could not create an experiment on {url}")


def _sample_readable(url: str, experiment_id: str, spans_per_trace: int) -> dict[str, Any]:
    """Embedded mode: a page of traces through the API, and their spans through batchGet."""
    page = requests.post(
        url + "/api/3.0/mlflow/traces/search",
        json={"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}],
              "max_results": 20},
    ).json()  # fmt: skip
    ids = [t["trace_id"] for t in page.get("traces", [])]
    got = requests.get(url + "/api/3.0/mlflow/traces/batchGet", params={"trace_ids": ids}).json()
    counts = [len(t.get("spans", [])) for t in got.get("traces", [])]
    return {"sampled_traces": len(ids), "all_complete": bool(counts) and all(c == spans_per_trace for c in counts)}


def measure(system: System, args: argparse.Namespace) -> dict[str, Any]:
    url = system.urls[0]
    experiment_id = _experiment(url)
    # warm-up: one request, so lazy imports and the first ClickHouse insert are not timed
    body, _ = build_request(1, args.spans_per_trace, random.Random(0))
    headers = {"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": experiment_id}
    requests.post(url + "/v1/traces", data=body, headers=headers, timeout=120)
    warm = args.spans_per_trace
    started = time.time()
    until = started + args.duration
    out: Any = mp.get_context("spawn").Queue()
    per_proc = max(1, args.clients // args.client_procs)
    load = {"url": url, "experiment_id": experiment_id, "until": until, "threads": per_proc,
            "traces": args.traces_per_request, "spans": args.spans_per_trace}  # fmt: skip
    procs = [
        mp.get_context("spawn").Process(target=_client_proc, args=({**load, "seed": i + 1}, out))
        for i in range(args.client_procs)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=args.duration + 300) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    load_end = time.time()
    acked = sum(a for a, _ in results)
    errors = sum(e for _, e in results)
    elapsed = load_end - started
    readable_at = None
    stored = None
    sample = None
    spans = system.spans
    if spans(experiment_id) >= 0:
        deadline = time.time() + 600
        while time.time() < deadline:
            stored = spans(experiment_id) - warm
            if stored >= acked:
                readable_at = time.time()
                break
            time.sleep(0.2)
    else:
        readable_at = load_end  # embedded acknowledges only what its sink stored
        sample = _sample_readable(url, experiment_id, args.spans_per_trace)
    return {
        "system": system.name,
        "config": system.config,
        "spans_acked": acked,
        "failed_requests": errors,
        "load_seconds": round(elapsed, 2),
        "acked_spans_per_s": round(acked / elapsed, 1),
        "spans_stored": stored,
        "readable_after_load_s": round(readable_at - load_end, 2) if readable_at else None,
        "readable_spans_per_s": round(acked / (readable_at - started), 1) if readable_at else None,
        "sample": sample,
    }


SYSTEMS = {"mlflow": TraceMlflow, "trackstream-kafka": TraceKafka, "trackstream-embedded": TraceEmbedded}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default="mlflow,trackstream-kafka,trackstream-embedded")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--traces-per-request", type=int, default=10)
    parser.add_argument("--spans-per-trace", type=int, default=10)
    parser.add_argument("--mlflow-workers", type=int, default=2)
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    # bench.run's system classes read these
    args.variant, args.keep, args.gateways, args.metrics_consumers, args.partitions = None, False, 1, 1, None
    results = []
    for name in args.systems.split(","):
        run_dir = Path(tempfile.mkdtemp(prefix=f"trackstream-bench-traces-{name}-"))
        print(f"[bench.traces] {name}: logs in {run_dir}", flush=True)
        system = SYSTEMS[name](args, run_dir)
        try:
            system.start()
            results.append(measure(system, args))
            print(json.dumps(results[-1]), flush=True)
        finally:
            system.stop()
            system.cleanup()
    base = next((r for r in results if r["system"] == "mlflow"), None)
    lines = ["| system | spans acked/s | spans readable/s | readable after load (s) | failed requests | vs mlflow |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        ratio = ""
        if base and r is not base and base["readable_spans_per_s"]:
            ratio = f"{(r['readable_spans_per_s'] or 0) / base['readable_spans_per_s']:.1f}x"
        lines.append(
            f"| {r['system']} | {r['acked_spans_per_s']:,.0f} | {r['readable_spans_per_s'] or 0:,.0f} | "
            f"{r['readable_after_load_s']} | {r['failed_requests']} | {ratio} |"
        )
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"traces-{stamp}.json"
    path.write_text(json.dumps({"args": vars(args), "machine": machine_info(), "results": results,
                                "table": table, "note": args.note}, indent=1))  # fmt: skip
    print(f"[bench.traces] wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
