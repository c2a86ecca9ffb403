"""Readiness checks of the services a process depends on: the log, the tables, the object store.

Each check is one cheap request (the end offset of one partition, ``SELECT 1``, the size of an absent
object), bounded by ``timeout`` seconds in a small thread pool so a hung service makes the probe answer
"not ready" in time instead of hanging it. Results are kept for ``ttl`` seconds: probes from several
sources (kubelet, a load balancer, Prometheus) cost one round of checks.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable

from trackstream.log import EventLog
from trackstream.objects import ObjectStore
from trackstream.tables import TableStore

PROBE_KEY = ".trackstream/health-probe"  # never written: asking its size is a read round trip


class Dependencies:
    def __init__(
        self,
        events: EventLog,
        tables: TableStore,
        objects: ObjectStore,
        topic: str,
        timeout: float = 3.0,
        ttl: float = 1.0,
    ) -> None:
        self._checks: dict[str, Callable[[], object]] = {
            "log": lambda: events.end_offsets(topic, [0]),
            "tables": lambda: tables.query("SELECT 1"),
            "object store": lambda: objects.size(PROBE_KEY),
        }
        self._timeout = timeout
        self._ttl = ttl
        self._pool = concurrent.futures.ThreadPoolExecutor(len(self._checks), thread_name_prefix="readiness")
        self._lock = threading.Lock()
        self._cached: tuple[float, list[str]] | None = None

    def problems(self) -> list[str]:
        """What is unreachable now (empty: all answered), each naming the service and the error."""
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self._ttl:
                return list(self._cached[1])
            futures = {name: self._pool.submit(check) for name, check in self._checks.items()}
            deadline = time.monotonic() + self._timeout
            out: list[str] = []
            for name, future in futures.items():
                try:
                    future.result(timeout=max(0.0, deadline - time.monotonic()))
                except concurrent.futures.TimeoutError:
                    out.append(f"{name}: no answer within {self._timeout:g}s")
                except Exception as exc:
                    out.append(f"{name}: {type(exc).__name__}: {exc}")
            self._cached = (time.monotonic(), out)
            return list(out)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
