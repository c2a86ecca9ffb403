"""Prometheus metrics of the gateway and of the sink workers (``prometheus-client``).

Names follow Prometheus conventions: ``trackstream_`` prefix, ``_total`` counters, ``_seconds`` and
``_bytes`` units. Counters and histograms are module-level and recorded where things happen (the
gateway's middleware, the writer's log, the barrier, the pipeline); what is cheaper to ask at scrape
time (consumer lag, last-commit age, store availability) comes from :data:`SINKS`, a collector over
the pipelines this process runs.

Several uvicorn workers: ``trackstream serve`` with ``TRACKSTREAM_WORKERS`` > 1 sets
``PROMETHEUS_MULTIPROC_DIR`` (a fresh directory, unless given) before the workers start, so every worker
writes its samples to files there and ``/metrics`` — whichever worker answers it — adds them up
(prometheus-client's multiprocess mode). Gauges say how they combine (``multiprocess_mode``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series beside every counter and histogram: half the scrape

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_ROWS = (1, 10, 100, 1_000, 10_000, 50_000, 100_000, 500_000)

# -- the gateway --
HTTP_REQUESTS = Counter(
    "trackstream_http_requests_total",
    "HTTP requests answered, by route template and status",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "trackstream_http_request_duration_seconds",
    "Time from the request's start to the end of its response",
    ["method", "route"],
    buckets=_LATENCY,
)
HTTP_IN_BYTES = Counter("trackstream_http_request_bytes_total", "Request body bytes received", ["route"])
HTTP_IN_PROGRESS = Gauge(
    "trackstream_http_requests_in_progress", "Requests being answered", multiprocess_mode="livesum"
)
PRODUCE_DURATION = Histogram(
    "trackstream_produce_duration_seconds",
    "Time the log took to acknowledge a produced event",
    ["topic"],
    buckets=_LATENCY,
)
PRODUCE_FAILURES = Counter("trackstream_produce_failures_total", "Produces the log did not acknowledge", ["topic"])
BARRIER_WAIT = Histogram(
    "trackstream_read_barrier_wait_seconds",
    "Time a read waited for the sinks to apply earlier writes (read-your-writes)",
    ["topic"],
    buckets=_LATENCY,
)
BARRIER_TIMEOUTS = Counter(
    "trackstream_read_barrier_timeouts_total", "Reads answered 503 because the sinks were behind", ["topic"]
)
ACTIVE_RUNS = Gauge(
    "trackstream_active_runs", "Runs in the gateway's run-state cache (the run-state view)", multiprocess_mode="max"
)

# -- the sinks --
SINK_BATCH_ROWS = Histogram("trackstream_sink_batch_rows", "Rows per batch written", ["sink"], buckets=_ROWS)
SINK_WRITE_DURATION = Histogram(
    "trackstream_sink_write_duration_seconds", "Time one batch write took", ["sink"], buckets=_LATENCY
)
SINK_EVENTS = Counter("trackstream_sink_events_written_total", "Events written and committed", ["sink"])
SINK_RETRIES = Counter(
    "trackstream_sink_retries_total", "Batch writes retried because a store was unavailable", ["sink"]
)
SINK_DEAD_LETTERS = Counter("trackstream_sink_dead_letters_total", "Messages sent to the dead-letter topic", ["sink"])
SINK_COMMITS = Counter("trackstream_sink_commits_total", "Offset commits the log accepted", ["sink"])
SINK_COMMIT_FAILURES = Counter("trackstream_sink_commit_failures_total", "Offset commits the log refused", ["sink"])


class Tracked(Protocol):
    """What the scrape-time collector reads from a pipeline (``consumers.pipeline.Pipeline``)."""

    @property
    def name(self) -> str: ...

    last_commit: float  # time.time() of the last accepted commit; 0: none yet
    started: float  # time.time() the pipeline was built

    @property
    def available(self) -> bool: ...

    @property
    def held_partitions(self) -> int: ...


Positions = Callable[[], tuple[dict[int, int], dict[int, int]]]  # (end offsets, committed offsets)


@dataclass
class _Source:
    pipeline: Tracked
    topic: str
    positions: Positions


class SinkCollector(Collector):
    """Consumer lag per partition, last-commit age and store availability of the pipelines this process
    runs, asked at scrape time. Lag is ``end offset - committed offset`` of the sink's group (a partition
    never committed counts from 0); a log that does not answer leaves the lag out of that scrape."""

    def __init__(self) -> None:
        self._sources: list[_Source] = []
        self._lock = threading.Lock()

    def track(self, pipeline: Tracked, topic: str, positions: Positions) -> None:
        with self._lock:
            self._sources.append(_Source(pipeline, topic, positions))

    def untrack(self, pipelines: Iterable[Tracked]) -> None:
        gone = {id(p) for p in pipelines}
        with self._lock:
            self._sources = [s for s in self._sources if id(s.pipeline) not in gone]

    def describe(self) -> list[Metric]:
        return []  # registered once, before any pipeline: nothing to check for duplicates

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            sources = list(self._sources)
        lag = GaugeMetricFamily(
            "trackstream_sink_consumer_lag_messages",
            "Messages in the log the sink's consumer group has not committed yet",
            labels=["sink", "topic", "partition"],
        )
        age = GaugeMetricFamily(
            "trackstream_sink_last_commit_age_seconds",
            "Seconds since the sink last committed (since start while it has not)",
            labels=["sink"],
        )
        up = GaugeMetricFamily(
            "trackstream_sink_store_available",
            "1 while the sink's stores take writes, 0 during an outage",
            labels=["sink"],
        )
        held = GaugeMetricFamily(
            "trackstream_sink_partitions_held", "Partitions held at a message with a newer schema", labels=["sink"]
        )
        now = time.time()
        for s in sources:
            p = s.pipeline
            age.add_metric([p.name], now - (p.last_commit or p.started))
            up.add_metric([p.name], 1.0 if p.available else 0.0)
            held.add_metric([p.name], float(p.held_partitions))
            try:
                ends, committed = s.positions()
            except Exception:  # the log is unreachable: no lag this scrape (readiness says why)
                continue
            for part, end in sorted(ends.items()):
                lag.add_metric([p.name, s.topic, str(part)], float(max(0, end - committed.get(part, 0))))
        yield from (lag, age, up, held)


SINKS = SinkCollector()
REGISTRY.register(SINKS)


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def exposition() -> tuple[bytes, str]:
    """The text exposition of this process's metrics (multiprocess mode: of every worker's)."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(SINKS)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def timed(histogram: Histogram, failures: Counter | None, label: str) -> _Timer:
    return _Timer(histogram, failures, label)


class _Timer:
    """``with timed(H, F, label):`` observes the duration; an exception also counts a failure."""

    __slots__ = ("_failures", "_histogram", "_label", "_start")

    def __init__(self, histogram: Histogram, failures: Counter | None, label: str) -> None:
        self._histogram, self._failures, self._label = histogram, failures, label
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        self._histogram.labels(self._label).observe(time.perf_counter() - self._start)
        if kind is not None and self._failures is not None:
            self._failures.labels(self._label).inc()


def label_values(names: Sequence[str]) -> None:
    """Create the children of the sink metrics for ``names`` so they are exported (at 0) before any event."""
    for name in names:
        for metric in (SINK_EVENTS, SINK_RETRIES, SINK_DEAD_LETTERS, SINK_COMMITS, SINK_COMMIT_FAILURES):
            metric.labels(name)
