"""The one assembly of a gateway and of a sink worker, for the CLI, the tests and the bench.

``gateway(settings)`` gives the Starlette app with its runtime (embedded mode: with every sink's
pipeline as a thread); ``worker(settings, sink)`` gives one sink's pipeline for ``trackstream consume``.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette

from consumers.pipeline import Pipeline
from ingest.app import create_app
from ingest.handlers import ensure_default_experiment
from ingest.security import WebSecurity
from schemas import codec
from trackstream import sql
from trackstream.runtime import Runtime, build
from trackstream.settings import Mode, Settings


@dataclass
class Gateway:
    app: Starlette
    runtime: Runtime


@dataclass
class Worker:
    runtime: Runtime
    pipeline: Pipeline

    def close(self) -> None:
        self.runtime.events.close()
        self.runtime.tables.close()


def gateway(
    settings: Settings,
    *,
    consumers: bool | None = None,
    ready_timeout: float | None = None,
    close_on_shutdown: bool = True,
) -> Gateway:
    """Build the runtime, start its consumers (default: in embedded mode only; ``ready_timeout``: wait
    until they hold their partitions), create the default experiment, and the app.

    ``close_on_shutdown``: the app's shutdown closes the runtime (the CLI); tests close it themselves.
    """
    runtime = build(settings)
    try:
        if settings.mode is Mode.EMBEDDED if consumers is None else consumers:
            runtime.start_consumers()
            if ready_timeout is not None:
                runtime.wait_consumers_ready(ready_timeout)
        ctx = runtime.tracking()
        ensure_default_experiment(ctx)
    except BaseException:  # a start that fails lets go of what it opened (chDB allows one data path a process)
        runtime.close()
        raise
    app = create_app(
        ctx,
        runtime.objects,
        settings.artifact_inline_max_bytes,
        settings.artifact_part_max_bytes,
        on_shutdown=runtime.close if close_on_shutdown else None,
        web=WebSecurity(
            allowed_hosts=settings.allowed_hosts,
            cors_allowed_origins=settings.cors_allowed_origins,
            x_frame_options=settings.x_frame_options,
            enabled=not settings.disable_security_middleware,
        ),
        max_body_bytes=settings.max_request_body_bytes,
        read_timeout=settings.request_read_timeout,
        access_log=settings.access_log,
    )
    if settings.mode is Mode.EMBEDDED:
        from trackstream.tables.chdb import ChdbStore  # as in runtime.build: Kafka mode never loads chDB

        if isinstance(runtime.tables, ChdbStore):
            # Read-only SQL for local clients (trackstream.sql). Not with auth on: SQL would read past every
            # per-experiment permission.
            if not settings.auth_enabled:
                app.router.routes.insert(0, sql.route(runtime.tables))
            # Started, migrated, consumers running: chDB's library pages only its start-up touched go
            # (trackstream.memory; once a process).
            runtime.tables.release_startup_pages()
    app.state.health = runtime.liveness
    app.state.readiness = runtime.readiness
    app.state.before_scrape = runtime.before_scrape
    return Gateway(app, runtime)


def worker(settings: Settings, sink: str, codec_: codec.Codec = codec.DEFAULT) -> Worker:
    """One sink's worker (Kafka mode): its pipeline in its consumer group (``trackstream.registry``)."""
    runtime = build(settings)
    return Worker(runtime, runtime.pipeline(sink, codec_))
