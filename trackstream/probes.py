"""A sink worker's own small HTTP server (``TRACKSTREAM_METRICS_PORT``): ``/metrics``, ``/health/live``
and ``/health/ready``, in a daemon thread beside the pipeline.

- live: the pipeline's loop passed within ``stuck_after`` seconds and it has not stopped on a failure
  (a store outage is not a liveness problem: the loop keeps polling, and a restart would not help);
- ready: live, its stores and the log answer, and its stores take writes (no outage in progress).
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from consumers.pipeline import Pipeline
from trackstream import metrics
from trackstream.health import Dependencies
from trackstream.runtime import Runtime


class ProbeServer:
    def __init__(self, host: str, port: int, runtime: Runtime, pipe: Pipeline, stuck_after: float = 60.0) -> None:
        self._pipe = pipe
        self._stuck_after = stuck_after
        self._deps = Dependencies(runtime.events, runtime.tables, runtime.objects, runtime.topic(pipe.name))
        probes = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, content_type = metrics.exposition()
                    self._answer(200, body, content_type)
                elif path in ("/health/live", "/health/ready", "/health"):
                    problems = probes.liveness() if path != "/health/ready" else probes.readiness()
                    text = "UNHEALTHY: " + "; ".join(problems) if problems else "OK"
                    self._answer(503 if problems else 200, text.encode(), "text/plain; charset=utf-8")
                else:
                    self._answer(404, b"not found", "text/plain")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # probes every few seconds would drown the worker's log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="probes", daemon=True)

    def liveness(self) -> list[str]:
        pipe = self._pipe
        if pipe.failure is not None:
            return [str(pipe.failure)]
        idle = time.monotonic() - pipe.beat
        if idle > self._stuck_after:
            return [f"the {pipe.name} pipeline loop has not run for {idle:.0f}s"]
        return []

    def readiness(self) -> list[str]:
        problems = self.liveness() + self._deps.problems()
        if self._pipe.outage is not None:
            problems.append(f"the {self._pipe.name} sink's store is unavailable: {self._pipe.outage}")
        if stalled := self._pipe.stalled:
            problems.append(stalled)
        return problems

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._deps.close()
