"""The embedded gateway's memory: a real ``trackstream serve`` (in-process log, chDB, local directory) stays
within 300 MB of RSS at rest after start-up, and its unpaged metric history is
streamed from chDB in bounded memory whatever the history's length (docs/DESIGN.md, rows 106-109)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.faults.conftest import GatewayProcessFactory

API = "/api/2.0/mlflow"
REST_LIMIT_MB = 300  # issue #14: the embedded gateway's RSS at rest
POINTS = 500_000
HISTORY_GROWTH_LIMIT_MB = 80  # the whole history, above the anonymous RSS before it (materialised: +110 MB)
LEFT_BEHIND_LIMIT_MB = 30


def _status_mb(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon, RssFile and ``Private``: the RSS without pages another process maps too.

    The library pages chDB's start-up touched are paged out only where this process alone maps them
    (MADV_PAGEOUT leaves shared pages): when the test process itself has chDB loaded (other tests of
    the session), those pages are shared with it and stay in the gateway's VmRSS, so the limit is
    asserted on ``Private`` there, on VmRSS otherwise."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            out[name] = int(rest.split()[0]) / 1024
    shared = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Shared_Clean:", "Shared_Dirty:")):
            shared += int(line.split()[1])
    out["Private"] = out["VmRSS"] - shared / 1024
    return out


def _rest_mb(rss: dict[str, float]) -> float:
    chdb_here = "_chdb" in Path("/proc/self/maps").read_text()
    return rss["Private"] if chdb_here else rss["VmRSS"]


class _Peak(threading.Thread):
    """The process's peak anonymous RSS (MB: heaps, stacks; not the library pages a first use of some
    code faults back in), sampled every 10 ms until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.01):
            self.peak = max(self.peak, _status_mb(self.pid)["RssAnon"])


def _settled_rss(pid: int, seconds: float = 12.0) -> dict[str, float]:
    """RSS once the allocators' decay had time to return freed pages (chDB's: 5 s)."""
    time.sleep(seconds)
    return _status_mb(pid)


def test_embedded_gateway_rests_within_300_mb_and_streams_a_long_history_in_bounded_memory(
    gateway_process_factory: GatewayProcessFactory, tmp_path: Path
) -> None:
    gateway = gateway_process_factory(TRACKSTREAM_MODE="embedded", TRACKSTREAM_DATA_DIR=str(tmp_path / "data"))
    url, proc = gateway.url, gateway.process
    at_start = _settled_rss(proc.pid, 2.0)
    assert _rest_mb(at_start) <= REST_LIMIT_MB, f"at rest after start-up: {at_start}"

    with httpx.Client(base_url=url + API, timeout=60) as c:
        exp = c.post("/experiments/create", json={"name": f"rss-{time.time_ns()}"}).json()["experiment_id"]
        run = c.post("/runs/create", json={"experiment_id": exp, "start_time": 0}).json()["run"]["info"]["run_id"]

        def batch(first: int) -> None:
            metrics = [{"key": "loss", "value": (s % 977) / 977, "timestamp": 1_700_000_000_000 + s, "step": s}
                       for s in range(first, first + 1000)]  # fmt: skip
            assert c.post("/runs/log-batch", json={"run_id": run, "metrics": metrics}).status_code == 200

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(batch, range(0, POINTS, 1000)))
        page = c.get("/metrics/get-history", params={"run_id": run, "metric_key": "loss", "max_results": 100})
        assert page.status_code == 200 and len(page.json()["metrics"]) == 100

        whole = {"run_id": run, "metric_key": "loss"}
        assert c.get("/metrics/get-history", params=whole).status_code == 200  # its code paths paged in once
        before = _settled_rss(proc.pid)
        peak = _Peak(proc.pid)
        peak.start()
        with c.stream("GET", "/metrics/get-history", params=whole) as resp:
            assert resp.status_code == 200
            body = resp.read()
        peak.stop.set()
        peak.join()
        points = httpx.Response(200, content=body).json()["metrics"]
        assert [p["step"] for p in points] == list(range(POINTS))  # every point once, in history order
        assert points[-1]["value"] == ((POINTS - 1) % 977) / 977
        growth = peak.peak - before["RssAnon"]
        print(f"anonymous RSS {before['RssAnon']:.0f} MB before the history, peak {peak.peak:.0f} MB")
        assert growth <= HISTORY_GROWTH_LIMIT_MB, f"the {POINTS}-point history took {growth:.0f} MB more heap"

        searched = c.post("/runs/search", json={"experiment_ids": [exp], "order_by": ["metrics.loss DESC"]})
        assert searched.status_code == 200 and len(searched.json()["runs"]) == 1

    # At rest again: the history left no heap behind (RSS as a whole is ~300 MB here: the chDB code the
    # reads ran is paged in again, docs/DESIGN.md row 106)
    after = _settled_rss(proc.pid)
    assert after["RssAnon"] <= before["RssAnon"] + LEFT_BEHIND_LIMIT_MB, f"before {before}, after {after}"
