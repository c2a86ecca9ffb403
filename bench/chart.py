"""How soon the run's chart of a 1,000,000-point metric is drawn in a real browser (not a test; bench/README.md).

    python -m bench.chart                                    # mlflow, trackstream-embedded, trackstream-kafka
    python -m bench.chart --systems trackstream-embedded --repeat 3 --points 100000

Each system is started as bench/run.py starts it, one run gets ``--points`` points of ``loss`` (as bench/reads.py
fills its big run: log-batch, 1000 a request; mlflow server's past the first request straight into its
tables), and headless Chromium (Debian's, driven by selenium as in tests/ui) opens the run's chart
view ("Model metrics") two ways, ``--repeat`` times each, after one warm-up load that fills the browser's
cache with the web app's files:

- cold: a navigation from about:blank to ``/#/experiments/<e>/runs/<r>/model-metrics`` (the app files come
  from the browser cache; the app starts from nothing), timed from the navigation's start;
- click: the run's page (Overview) loaded and idle, then a real click on its "Model metrics" tab, timed
  from the tab's pointerdown event.

"Drawn" is the first moment (a MutationObserver installed before the app's own scripts) when a plotly
chart of the view holds the run's points (``gd.data[0].x`` has two or more) and its line is in the SVG
(``.scatterlayer path.js-line`` with a ``d`` of at least one segment). Every time is the page's own clock
(``performance.now()``), so the driver's polling adds nothing.

For each load the bench also keeps the waterfall: every request the page made before the chart was drawn,
with its start, duration and time to first byte (resource timing), the GraphQL operation of each /graphql
call (``fetch`` is wrapped to note it), and the renderer's main-thread figures (CDP Performance.getMetrics:
TaskDuration = main thread busy, wall; ThreadTime = its CPU; ScriptDuration; V8CompileDuration; layout and
style). ``server_ms`` is the sum of the TTFBs of the calls the chart waits for one after another
(server-info, MlflowGetExperimentQuery, GetRun, get-history-bulk-interval).

``--floor`` (on by default) adds one more "system": a stub that serves the same web-app files and, from
memory, the answers the first trackstream system gave to the same calls (recorded beforehand). Its
figures are the web app's own time with a server that costs nothing: no gateway can draw sooner.

Results go to bench/results/<timestamp>-chart.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.reads import log_run
from bench.report import save
from bench.run import Mlflow, System, TrackstreamEmbedded, TrackstreamKafka, free_port, machine_info

SYSTEMS: dict[str, type[System]] = {
    "mlflow": Mlflow,
    "trackstream-embedded": TrackstreamEmbedded,
    "trackstream-kafka": TrackstreamKafka,
}
CHAIN = ("server-info", "MlflowGetExperimentQuery", "GetRun", "get-history-bulk-interval")
METRICS = ("TaskDuration", "ThreadTime", "ScriptDuration", "V8CompileDuration", "LayoutDuration", "RecalcStyleDuration")

# Installed before the app's scripts on every document: the "drawn" watcher and a fetch wrapper noting each
# call's GraphQL operation and body (the floor stub replays them).
WATCH = r"""
(() => {
  performance.setResourceTimingBufferSize(5000);
  window.__calls = [];
  const realFetch = window.fetch;
  window.fetch = function (input, init) {
    const url = typeof input === 'string' ? input : (input && input.url) || String(input);
    const body = init && typeof init.body === 'string' ? init.body : null;
    let op = null;
    if (body) { try { op = JSON.parse(body).operationName || null; } catch (e) {} }
    const call = {url: new URL(url, location.href).href, method: (init && init.method) || 'GET', body, op,
                  start: performance.now(), headers: null};
    window.__calls.push(call);
    const p = realFetch.apply(this, arguments);
    p.then(() => { call.headers = performance.now(); }, () => {});
    return p;
  };
  window.__watch = () => {
    window.__drawn = null;
    window.__points = 0;
    let obs = null;
    const check = () => {
      for (const gd of document.querySelectorAll('.js-plotly-plot')) {
        const line = gd.querySelector('.scatterlayer path.js-line');
        const d = line && line.getAttribute('d');
        const n = gd.data && gd.data[0] && gd.data[0].x ? gd.data[0].x.length : 0;
        if (d && d.includes('L') && n >= 2) {
          window.__drawn = performance.now(); window.__points = n;
          if (obs) obs.disconnect();
          return true;
        }
      }
      return false;
    };
    if (!check()) {
      obs = new MutationObserver(check);
      obs.observe(document, {subtree: true, childList: true, attributes: true, attributeFilter: ['d']});
    }
  };
  window.__watch();
})();
"""
CLICK_ARM = (
    "window.__watch(); window.__clicked = null;"
    "document.addEventListener('pointerdown', () => { window.__clicked = window.__clicked || performance.now(); },"
    " {capture: true, once: true});"
)
COLLECT = """
const since = arguments[0], until = window.__drawn;
const res = performance.getEntriesByType('resource').filter(e => e.startTime >= since - 1 && e.startTime <= until);
return {drawn: until, points: window.__points, calls: window.__calls.filter(c => c.start >= since - 1),
        resources: res.map(e => ({name: e.name, type: e.initiatorType, start: e.startTime, duration: e.duration,
                                  ttfb: e.requestStart ? e.responseStart - e.requestStart : null,
                                  transfer: e.transferSize, size: e.encodedBodySize}))};
"""


# ---------------------------------------------------------------------------------------------- fill
def log_points(system: System, points: int) -> tuple[str, str]:
    """One experiment, one run named "million" with ``points`` points of ``loss`` (``bench.reads.log_run``)."""
    experiment_id, run_id, seconds = log_run(system, points, name="million")
    url = system.urls[0]
    print(f"  logged {points} points in {seconds:.1f} s", flush=True)
    # Kafka mode answers once the log has the points; the chart reads the store: wait for the last step.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        answer = httpx.get(
            f"{url}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
            params={"run_ids": run_id, "metric_key": "loss", "max_results": 320},
            timeout=60,
        ).json()
        if any(int(m["step"]) == points - 1 for m in answer.get("metrics", [])):
            break
        time.sleep(1)
    return experiment_id, run_id


# ---------------------------------------------------------------------------------------------- browser
class Browser:
    def __init__(self) -> None:
        from tests.ui.browser import start_browser

        self.driver, self.profile = start_browser()
        self.driver.set_page_load_timeout(60)
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH})

    def quit(self) -> None:
        import shutil

        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _wait(self, condition: str, timeout: float = 60) -> Any:
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.02).until(
            lambda d: d.execute_script(f"return {condition}")
        )

    def _metrics(self) -> dict[str, float]:
        raw = self.driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]
        return {m["name"]: float(m["value"]) for m in raw}

    def cold(self, page: str) -> dict[str, Any]:
        """about:blank, then the chart view's URL: the app starts from nothing, its files in the cache."""
        self.driver.get("about:blank")
        self.driver.execute_cdp_cmd("Performance.enable", {"timeDomain": "timeTicks"})
        before = self._metrics()
        self.driver.get(page)
        self._wait("window.__drawn")
        after = self._metrics()
        # the renderer of the new document may be a new process, whose counters start at 0
        load: dict[str, Any] = self.driver.execute_script(COLLECT, 0)
        load["main_thread_ms"] = _metric_delta(before, after)
        return load

    def click(self, run_page: str) -> dict[str, Any]:
        """The run's Overview loaded and idle, then a real click on its "Model metrics" tab."""
        from selenium.webdriver.common.by import By

        tab = "//*[@role='tab' and normalize-space(.)='Model metrics']"
        self.driver.get("about:blank")
        self.driver.get(run_page)
        self._wait("document.body.innerText.includes('million') && !!document.evaluate(\"" + tab + "\", document,"
                   " null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue")  # fmt: skip
        time.sleep(2)  # the page's late calls answered
        self.driver.execute_cdp_cmd("Performance.enable", {"timeDomain": "timeTicks"})
        self.driver.execute_script(CLICK_ARM)
        before = self._metrics()
        self.driver.find_element(By.XPATH, tab).click()
        self._wait("window.__drawn")
        after = self._metrics()
        clicked = float(self.driver.execute_script("return window.__clicked"))
        load: dict[str, Any] = self.driver.execute_script(COLLECT, clicked)
        load["drawn"] -= clicked
        for r in load["resources"]:
            r["start"] -= clicked
        for c in load["calls"]:
            c["start"] -= clicked
            c["headers"] = c["headers"] - clicked if c["headers"] is not None else None
        load["main_thread_ms"] = _metric_delta(before, after)
        return load


def _metric_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    out = {}
    for name in METRICS:
        b, a = before.get(name, 0.0), after.get(name, 0.0)
        out[name] = round((a - b if a >= b else a) * 1000, 1)  # a new renderer process: its own total
    return out


def _label(url: str, base: str, op: str | None) -> str:
    path = url[len(base) :] if url.startswith(base) else url
    if op:
        return f"{path} {op}"
    for name in CHAIN:
        if name in path:
            return name
    return path.split("?", 1)[0]


def summarize_load(load: dict[str, Any], base: str) -> dict[str, Any]:
    """The waterfall of one load: requests before the chart was drawn, the chain's server time."""
    ops: dict[str, list[float]] = {}
    for c in load["calls"]:
        if c["op"]:
            ops.setdefault(c["url"], []).append(c["start"])
    rows = []
    for r in sorted(load["resources"], key=lambda r: r["start"]):
        op = None
        if r["name"].endswith("/graphql") and ops.get(r["name"]):
            starts = ops[r["name"]]
            nearest = min(starts, key=lambda s: abs(s - r["start"]))
            op = next(c["op"] for c in load["calls"] if c["url"] == r["name"] and c["start"] == nearest)
        rows.append(
            {
                "request": _label(r["name"], base, op),
                "start_ms": round(r["start"]),
                "ms": round(r["duration"], 1),
                "ttfb_ms": None if r["ttfb"] is None else round(r["ttfb"], 1),
                "transfer": r["transfer"],
                "size": r["size"],
                "type": r["type"],
            }
        )
    chain = {}
    for name in CHAIN:
        hits = [row for row in rows if row["request"] == name or row["request"].endswith(" " + name)]
        if hits and hits[0]["ttfb_ms"] is not None:
            chain[name] = hits[0]["ttfb_ms"]
    static = [row for row in rows if "/static-files/" in row["request"]]
    return {
        "drawn_ms": round(load["drawn"]),
        "points": load["points"],
        "main_thread_ms": load["main_thread_ms"],
        "chain_ttfb_ms": chain,
        "server_ms": round(sum(chain.values()), 1),
        "static_files": len(static),
        "static_bytes_transferred": sum(row["transfer"] or 0 for row in static),
        "static_bytes": sum(row["size"] or 0 for row in static),
        "waterfall": rows,
    }


def measure(browser: Browser, base: str, experiment_id: str, run_id: str, repeat: int) -> dict[str, Any]:
    run_page = f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
    chart = f"{run_page}/model-metrics"
    browser.cold(chart)  # warm-up: the browser's cache gets the app's files
    time.sleep(1)
    out: dict[str, Any] = {"cold": [], "click": []}
    for mode in ("cold", "click"):
        for i in range(repeat):
            load = browser.cold(chart) if mode == "cold" else browser.click(run_page)
            summary = summarize_load(load, base)
            out[mode].append(summary)
            main = summary["main_thread_ms"]
            print(
                f"  {mode} {i}: drawn {summary['drawn_ms']} ms ({summary['points']} points); main thread busy "
                f"{main['TaskDuration']:.0f} ms (CPU {main['ThreadTime']:.0f}); server on the chain "
                f"{summary['server_ms']:.0f} ms {summary['chain_ttfb_ms']}",
                flush=True,
            )
        out[f"{mode}_calls"] = load["calls"]
    for mode in ("cold", "click"):
        loads = out[mode]
        out[f"{mode}_summary"] = {
            "drawn_ms_median": statistics.median(x["drawn_ms"] for x in loads),
            "drawn_ms_min": min(x["drawn_ms"] for x in loads),
            "drawn_ms_max": max(x["drawn_ms"] for x in loads),
            "server_ms_median": statistics.median(x["server_ms"] for x in loads),
            "main_thread_busy_ms_median": statistics.median(x["main_thread_ms"]["TaskDuration"] for x in loads),
            "main_thread_cpu_ms_median": statistics.median(x["main_thread_ms"]["ThreadTime"] for x in loads),
            "bulk_interval_ttfb_ms_median": _median_or_none(
                [x["chain_ttfb_ms"].get("get-history-bulk-interval") for x in loads]
            ),
        }
    return out


def _median_or_none(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


# ---------------------------------------------------------------------------------------------- floor
class Floor:
    """The web app's files and, from memory, answers recorded from a real gateway: a server costing ~0."""

    def __init__(self, source: str, calls: list[dict[str, Any]]) -> None:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import FileResponse, Response
        from starlette.routing import Mount, Route
        from starlette.staticfiles import StaticFiles

        from ingest.ui import ui_build_dir

        build = ui_build_dir()
        assert build is not None, "the mlflow package's UI build is needed"
        canned: dict[tuple[str, str, str], tuple[int, str, bytes]] = {}
        with httpx.Client(timeout=60) as http:
            for c in calls:
                path = c["url"].split("/", 3)[3]
                key = (c["method"].upper(), "/" + path, c["body"] or "")
                if key not in canned:
                    r = http.request(key[0], source + key[1], content=c["body"] or None,
                                     headers={"content-type": "application/json"} if c["body"] else {})  # fmt: skip
                    canned[key] = (r.status_code, r.headers.get("content-type", "application/json"), r.content)

        async def answer(request: Request) -> Response:
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            body = (await request.body()).decode()
            hit = canned.get((request.method, path, body))
            if hit is None:
                return Response(b'{"error_code": "ENDPOINT_NOT_FOUND"}', 404, media_type="application/json")
            return Response(hit[2], hit[0], media_type=hit[1])

        index = build / "index.html"
        app = Starlette(
            routes=[
                Route("/", lambda request: FileResponse(index)),
                Mount("/static-files", app=StaticFiles(directory=build)),
                Route("/{path:path}", answer, methods=["GET", "POST", "PATCH", "DELETE"]),
            ]
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


# ---------------------------------------------------------------------------------------------- report
def markdown(result: dict[str, Any]) -> str:
    systems = list(result["systems"])
    lines = [
        f"# Chart of a {result['points']:,}-point run drawn in Chromium ({result['timestamp']})",
        "",
        f"{result['repeat']} loads per mode; median (min-max) ms. Load average at start: {result['load_avg']}.",
        "",
        "| figure | " + " | ".join(systems) + " |",
        "|---|" + "---|" * len(systems),
    ]

    def cell(system: str, mode: str, key: str) -> str:
        s = result["systems"][system].get(f"{mode}_summary")
        if not s:
            return "-"
        if key == "drawn":
            return f"{s['drawn_ms_median']:.0f} ({s['drawn_ms_min']:.0f}-{s['drawn_ms_max']:.0f})"
        value = s[key]
        return "-" if value is None else f"{value:.0f}"

    for mode, what in (("cold", "cold navigation to the chart view"), ("click", "click on the Model metrics tab")):
        lines.append(f"| {what}: drawn | " + " | ".join(cell(s, mode, "drawn") for s in systems) + " |")
        for key, label in (
            ("server_ms_median", "server time on the chain (TTFB sum)"),
            ("bulk_interval_ttfb_ms_median", "get-history-bulk-interval TTFB"),
            ("main_thread_busy_ms_median", "renderer main thread busy (wall)"),
            ("main_thread_cpu_ms_median", "renderer main thread CPU"),
        ):
            lines.append(f"| {what}: {label} | " + " | ".join(cell(s, mode, key) for s in systems) + " |")
    lines.append("")
    for system in systems:
        loads = result["systems"][system].get("cold") or []
        if not loads:
            continue
        median = sorted(loads, key=lambda x: x["drawn_ms"])[len(loads) // 2]
        lines += [
            f"## Waterfall of the median cold load: {system} (drawn at {median['drawn_ms']} ms)",
            "",
            "| start ms | ms | TTFB ms | bytes over the wire | request |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['start_ms']} | {r['ms']} | {'' if r['ttfb_ms'] is None else r['ttfb_ms']} | {r['transfer']} "
            f"| {r['request'][:110]} |"
            for r in median["waterfall"]
        ]
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    import os

    p = argparse.ArgumentParser(prog="python -m bench.chart", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--systems", default="mlflow,trackstream-embedded,trackstream-kafka")
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--no-floor", dest="floor", action="store_false", help="skip the zero-cost stub server")
    p.add_argument("--mlflow-workers", type=int, default=2)
    p.add_argument("--keep", action="store_true", help="keep the Kafka-mode database and topics")
    p.add_argument("--variant", default="", help="trackstream: what-if patches of bench/variants.py (e.g. ui-identity)")
    p.add_argument("--note", default="")
    args = p.parse_args(argv)
    # what bench/run.py's systems read from their arguments
    args.gateways, args.metrics_consumers, args.partitions = 1, 1, 0
    timestamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    result: dict[str, Any] = {
        "timestamp": timestamp, "points": args.points, "repeat": args.repeat, "note": args.note,
        "variant": args.variant, "machine": machine_info(), "load_avg": os.getloadavg()[0], "systems": {},
    }  # fmt: skip
    browser = Browser()
    recorded: tuple[str, list[dict[str, Any]]] | None = None
    try:
        for name in args.systems.split(","):
            run_dir = Path(tempfile.mkdtemp(prefix=f"trackstream-chart-{name}-"))
            system = SYSTEMS[name](args, run_dir)
            print(f"{name}: logs in {run_dir}", flush=True)
            try:
                system.start()
                experiment_id, run_id = log_points(system, args.points)
                result["systems"][name] = measure(browser, system.urls[0], experiment_id, run_id, args.repeat)
                if args.floor and recorded is None and name.startswith("trackstream"):
                    calls = result["systems"][name]["cold_calls"] + result["systems"][name]["click_calls"]
                    floor = Floor(system.urls[0], calls)
                    try:
                        print(f"floor (answers of {name} replayed from memory):", flush=True)
                        result["systems"]["floor"] = measure(browser, floor.url, experiment_id, run_id, args.repeat)
                        result["systems"]["floor"]["recorded_from"] = name
                    finally:
                        floor.stop()
                    recorded = (name, calls)
            finally:
                system.stop()
                system.cleanup()
    finally:
        browser.quit()
    save(f"{timestamp}-chart", result, markdown(result))


if __name__ == "__main__":
    main()
