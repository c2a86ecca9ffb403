"""The ``trackstream`` command: ``serve`` (gateway), ``consume <sink>`` (one sink worker), ``migrate``,
``replay`` (rebuild the tables from the log)."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys

from pydantic import ValidationError
from starlette.applications import Starlette

from trackstream import registry
from trackstream.settings import ConfigurationError, Mode, Settings


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()]
        sys.exit("trackstream: invalid configuration (TRACKSTREAM_* environment variables):\n" + "\n".join(lines))


def _settle_heap() -> None:
    """Keep the cyclic garbage collector off the hot paths of the long-running processes.

    A log-batch allocates a thousand dicts, so the default thresholds ran a young collection every
    request and a full one (about 50 ms, scanning every module, class and function loaded at start-up)
    every second or so: 2.4 s of collection in a 30 s bench run, measured with ``gc.callbacks``. What
    start-up built is frozen out of the collector's view, and young collections run less often; cyclic
    garbage is still collected, later (memory stays bounded by the larger threshold).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def gateway_app() -> Starlette:
    """uvicorn's app factory: each worker process builds its own runtime from the environment."""
    from ingest.limits import HeadTimeoutProtocol
    from trackstream.assembly import gateway

    settings = _settings()
    HeadTimeoutProtocol.head_timeout = settings.request_read_timeout  # this worker's connections
    app = gateway(settings).app
    _settle_heap()
    return app


def serve(settings: Settings) -> None:
    import uvicorn

    from ingest.limits import HeadTimeoutProtocol

    url = f"http://{settings.host}:{settings.port}"
    print(
        f"trackstream ({settings.mode.value}, {settings.workers} worker(s)) serving on {url}\n"
        f"  export MLFLOW_TRACKING_URI={url}",
        flush=True,
    )
    uvicorn.run(
        "trackstream.cli:gateway_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="warning",
        access_log=False,
        # Idle and slow connections: a kept-alive connection closes after timeout_keep_alive idle seconds;
        # HeadTimeoutProtocol also closes a new one whose request head is not in within request_read_timeout
        # (uvicorn alone waits forever), and ingest.limits.BodyLimit times out a stalled body.
        http=HeadTimeoutProtocol,
        timeout_keep_alive=settings.timeout_keep_alive,
    )


def consume(settings: Settings, sink: str) -> None:
    from consumers.pipeline import WorkerFailed
    from trackstream.assembly import worker

    if settings.mode is not Mode.KAFKA:
        sys.exit("trackstream consume: needs TRACKSTREAM_MODE=kafka (embedded mode consumes inside 'serve')")
    if sink not in registry.NAMES:
        sys.exit(f"trackstream consume: unknown sink {sink!r}; expected one of {', '.join(registry.NAMES)}")
    w = worker(settings, sink)
    runtime, pipe = w.runtime, w.pipeline
    signal.signal(signal.SIGTERM, lambda *_: pipe.stop())
    signal.signal(signal.SIGINT, lambda *_: pipe.stop())
    print(f"trackstream consume {sink}: group {runtime.group(sink)} on {runtime.topic(sink)}", flush=True)
    _settle_heap()
    try:
        pipe.run()
    except WorkerFailed as exc:
        # Loudly: a supervisor restarts the process; the group rebalances the partitions meanwhile.
        sys.exit(f"trackstream consume: {exc}")
    finally:
        w.close()


def replay(settings: Settings, database: str | None) -> None:
    from trackstream.replay import ReplayError, run_replay

    if settings.mode is not Mode.KAFKA:
        sys.exit(
            "trackstream replay: needs TRACKSTREAM_MODE=kafka; embedded mode's in-process log keeps no history "
            "to replay"
        )
    try:
        result = run_replay(settings, database)
    except ReplayError as exc:
        sys.exit(f"trackstream replay: {exc}")
    where = database or "the configured database"
    print(f"trackstream replay: {result.events} events replayed into {where} in {result.seconds:.1f}s", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="trackstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the gateway (embedded mode: with its consumers, in one process)")
    c = sub.add_parser("consume", help="run one sink worker (Kafka mode)")
    c.add_argument("sink", choices=registry.NAMES)
    sub.add_parser("migrate", help="create topics and tables")
    r = sub.add_parser("replay", help="rebuild the ClickHouse tables from the topics (Kafka mode)")
    r.add_argument(
        "--database",
        help="replay into this (new) database and leave the configured one intact; "
        "default: truncate the configured database's tables and replay into them",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings()
    try:
        if args.command == "serve":
            serve(settings)
        elif args.command == "consume":
            consume(settings, args.sink)
        elif args.command == "migrate":
            from trackstream.runtime import build

            build(settings).close()
        elif args.command == "replay":
            replay(settings, args.database)
    except ConfigurationError as exc:
        sys.exit(f"trackstream {args.command}: {exc}")


if __name__ == "__main__":
    main()
