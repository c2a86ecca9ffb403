"""Issue #14's figures in one table: the newest result of every bench, trackstream ÷ mlflow server and the
target (not a test; bench/README.md).

    python -m bench.report          # prints it and writes bench/results/TARGETS.md

Each figure is read from the newest result file of its bench that holds it (``bench.reads``, ``bench.setup``,
``bench.search``, ``bench.artifacts``; the ingest load from ``bench.run``'s latest plain runs). A ratio is
given only when the stock server's figure comes from the same invocation, as the benches take them side by
side; the "when" column says which invocation each figure is from. Also home of ``save``, which every bench
uses to write its result.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
Value = float | int | None


def save(stem: str, result: dict[str, Any], text: str) -> None:
    """``bench/results/<stem>.json`` and ``.md``, and the markdown on stdout."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)


# the scale a target is set at: results of smaller runs are not read
AT_SCALE: dict[str, Callable[[dict[str, Any]], bool]] = {
    "*-search.json": lambda d: d.get("runs") == 100_000 and d.get("experiments") == 10_000,
    "*-reads.json": lambda d: _dig(d, "params", "points") == 1_000_000,
    "*-artifacts.json": lambda d: d.get("mb") == 2048,
}


def _newest(pattern: str) -> Iterator[tuple[str, dict[str, Any]]]:
    at_scale = AT_SCALE.get(pattern, lambda d: True)
    for path in sorted(RESULTS.glob(pattern), reverse=True):  # names start with the timestamp
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if at_scale(data):
            yield path.name.split("-")[0], data


def _dig(d: Any, *path: str) -> Any:
    for p in path:
        d = d.get(p) if isinstance(d, dict) else None
    return d


def _find(pattern: str, get: Callable[[dict[str, Any], str], Value], system: str) -> tuple[str, Value, Value]:
    """(when, the system's value, mlflow's value in the same file) from the newest file holding the value."""
    for when, data in _newest(pattern):
        value = get(data, system)
        if isinstance(value, (int, float)):
            stock = get(data, "mlflow")
            return when, value, stock if isinstance(stock, (int, float)) else None
    return "-", None, None


def _reads(*path: str) -> Callable[[dict[str, Any], str], Value]:
    return lambda data, system: _dig(data, "systems", system, *path)


def _search(query: str) -> Callable[[dict[str, Any], str], Value]:
    return lambda data, system: _dig(data, "systems", system, "queries", query, "p50_ms")


def _client_overhead(data: dict[str, Any], system: str) -> Value:
    c = _dig(data, "systems", system, "client_get_metric_history") or {}
    total, parse = c.get("total_ms"), c.get("client_parse_ms")
    return round(total / parse, 2) if total and parse else None


def _artifact_share(way: str) -> Callable[[dict[str, Any], str], Value]:
    def get(data: dict[str, Any], system: str) -> Value:
        own, store = _dig(data, "systems", system, f"{way}_mb_s"), _dig(data, "systems", "store", f"{way}_mb_s")
        # the store's own rate is the S3 store's: Kafka mode's (embedded mode writes a local directory)
        return round(own / store, 2) if system == "trackstream-kafka" and own and store else None

    return get


def _peak_rss(data: dict[str, Any], system: str) -> Value:
    figures = _dig(data, "systems", system)
    if not isinstance(figures, dict):
        return None
    peaks = [v for f in figures.values() if isinstance(f, dict) for k, v in f.items() if "peak_rss_mb" in k]
    return max(peaks) if peaks else None


# (figure, results pattern, getter, target check on trackstream's value and mlflow's, target text)
Check = Callable[[float, float | None], bool]
FIGURES: list[tuple[str, str, Callable[[dict[str, Any], str], Value], Check, str]] = [
    ("1M-point history, whole answer (ms p50)", "*-reads.json", _reads("history_unpaged", "p50_ms"),
     lambda v, m: v <= 1500, "<= 1,500 ms"),
    ("1M-point history, all 40 pages of 25k (ms, server and transfer)", "*-reads.json",
     _reads("history_paged_read_ms"), lambda v, m: v <= 1500, "<= 1,500 ms"),
    ("official client full read ÷ its own parsing", "*-reads.json", _client_overhead,
     lambda v, m: v <= 1.3, "<= 1.3"),
    ("bulk-interval, UI's 320 points of 1M (ms p50)", "*-reads.json", _reads("bulk_interval_ui", "p50_ms"),
     lambda v, m: v <= 100, "<= 100 ms"),
    ("get-history-bulk, first 25k of 1M (ms p50)", "*-reads.json", _reads("history_bulk", "p50_ms"),
     lambda v, m: m is None or v < m, "ahead of mlflow"),
    ("run set-up, 4 threads (runs/s)", "*-setup*.json", lambda d, s: _dig(d, s, "runs_per_s"),
     lambda v, m: m is not None and v >= 5 * m, ">= 5x mlflow"),
    ("runs/search 100k runs, metric filter + order (ms p50)", "*-search.json",
     _search("runs: metrics.loss < 0.5, order metrics.loss ASC, 100"), lambda v, m: v <= 200, "<= 200 ms"),
    ("experiments/search 10k experiments, first 100 (ms p50)", "*-search.json",
     _search("experiments: default order, 100"), lambda v, m: v <= 50, "<= 50 ms"),
    ("2 GiB upload ÷ the store's own rate", "*-artifacts.json", _artifact_share("upload"),
     lambda v, m: v >= 0.8, ">= 0.8"),
    ("2 GiB download ÷ the store's own rate", "*-artifacts.json", _artifact_share("download"),
     lambda v, m: v >= 0.8, ">= 0.8"),
    ("server peak RSS, reads bench (MB)", "*-reads.json", _peak_rss, lambda v, m: v <= 300, "<= 300 MB"),
    ("server peak RSS, 2 GiB artifact (MB)", "*-artifacts.json",
     lambda d, s: max((_dig(d, "systems", s, k) or 0) for k in ("upload_peak_rss_mb", "download_peak_rss_mb"))
     or None, lambda v, m: v <= 300, "<= 300 MB"),
]  # fmt: skip
SYSTEMS = ("trackstream-kafka", "trackstream-embedded")


def _ingest() -> list[str]:
    from bench.run import all_results, plain

    def target_load(d: dict[str, Any]) -> bool:  # the target's load: 8 clients, a full minute
        return plain(d) and d["params"].get("clients") == 8 and d["params"].get("duration", 0) >= 60

    kafka = next((d for d in reversed(all_results()) if d["system"] == "trackstream-kafka" and target_load(d)), None)
    if not kafka:
        return ["| ingest: no 60 s, 8-client trackstream-kafka run in bench/results | | | | | | |"]
    # the stock server's best plain run on record: the conservative denominator, as bench/run.py's SUMMARY
    stock = [d for d in all_results() if d["system"] == "mlflow" and target_load(d)]
    best = max(stock, key=lambda d: d["result"]["end_to_end"].get("points_per_s") or 0, default=None)
    e2e = kafka["result"]["end_to_end"].get("points_per_s")
    m = best["result"]["end_to_end"].get("points_per_s") if best else None
    p99 = kafka["result"]["ack_latency_ms"]["p99"]
    ratio = f"{e2e / m:.1f}x" if e2e and m else "-"
    return [
        f"| ingest end to end, 8 clients (points/s) | {kafka['timestamp']} | {m or '-'} | {e2e or '-'} | - | "
        f"{ratio} | >= 30x: {'met' if e2e and m and e2e >= 30 * m else 'NOT MET'} |",
        f"| log-batch ack p99, 8 clients (ms) | {kafka['timestamp']} | "
        f"{best['result']['ack_latency_ms']['p99'] if best else '-'} | {p99} | - | - | "
        f"<= 50 ms: {'met' if p99 is not None and p99 <= 50 else 'NOT MET'} |",
    ]


def report() -> str:
    lines = ["# Issue #14's figures: the newest result of each bench", "",
             "| figure | when | mlflow server | trackstream-kafka | trackstream-embedded | kafka ÷ mlflow | target |",
             "|---|---|---|---|---|---|---|", *_ingest()]  # fmt: skip
    for label, pattern, get, check, target in FIGURES:
        found = {s: _find(pattern, get, s) for s in SYSTEMS}
        when = sorted({w for w, _, _ in found.values() if w != "-"}) or ["-"]
        stock = next((m for _, _, m in found.values() if m is not None), None)
        kafka = found["trackstream-kafka"][1]
        ratio = f"{kafka / stock:.2f}" if kafka is not None and stock else "-"
        verdicts = [check(float(v), stock) for _, v, _ in found.values() if v is not None]
        verdict = "met" if verdicts and all(verdicts) else ("NOT MET" if verdicts else "not measured")
        cells = ["-" if v is None else str(v) for _, v, _ in found.values()]
        lines.append(f"| {label} | {', '.join(when)} | {stock if stock is not None else '-'} | "
                     f"{' | '.join(cells)} | {ratio} | {target}: {verdict} |")  # fmt: skip
    lines += ["", "Each figure is the newest one on record; compare the \"when\" of two figures before comparing them "
              "(the machine is shared and its speed drifts). Raw results and notes: bench/results/."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    text = report()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "TARGETS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
