"""The trackstream command: serve (the gateway), consume SINK (one sink worker), migrate, replay (rebuild the
tables from the log), gc (purge deleted runs and experiments). Configuration comes from TRACKSTREAM_*
environment variables; each command's --help lists the ones it reads."""

from __future__ import annotations

import argparse
import gc
import inspect
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterable
from importlib.metadata import version
from typing import Any, NoReturn
from urllib.parse import urlsplit

from pydantic import ValidationError
from starlette.applications import Starlette

from trackstream import logs, registry
from trackstream.settings import ConfigurationError, Mode, Settings, Topics

log = logging.getLogger("trackstream")

# Which settings each command reads (every command also reads the mode, the services and the log settings).
_COMMON = ("mode", "data_dir", "kafka_bootstrap", "clickhouse_url", "s3_*", "log_level", "log_format")
_READS: dict[str, tuple[str, ...]] = {
    "serve": (
        "host", "port", "workers", "topic_*", "create_topics", "consumer_group_prefix", "batch_*",
        "read_barrier_timeout", "artifact_*", "deadletter_*", "allowed_hosts", "cors_allowed_origins",
        "x_frame_options", "disable_security_middleware", "max_request_body_bytes", "request_read_timeout",
        "timeout_keep_alive", "access_log",
    ),
    "consume": (
        "topic_*", "create_topics", "consumer_group_prefix", "batch_*", "deadletter_*", "consumer_*", "metrics_port",
        "metrics_host",
    ),
    "migrate": ("topic_*", "create_topics"),
    "replay": ("topic_*", "consumer_group_prefix", "batch_*"),
    "gc": ("topic_*",),
    "probe": ("port", "metrics_port"),
    "sql": ("host", "port"),
}  # fmt: skip


def _comments(cls: type) -> dict[str, str]:
    """The comment lines right above each field of a settings class: the settings' one documentation."""
    out: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        text = line.strip()
        if text.startswith("#") and not text.startswith("# --"):
            pending.append(text.lstrip("# "))
        elif (m := re.match(r"^(\w+):", text)) and line.startswith("    ") and not line.startswith("     "):
            out[m.group(1)] = " ".join(pending)
            pending = []
        elif not text.startswith("#"):
            pending = []
    return out


def settings_help(command: str) -> str:
    """The environment variables ``command`` reads, with defaults and what they do."""
    wanted = _COMMON + _READS[command]
    rows: list[tuple[str, str, str]] = []
    for prefix, cls in (("TRACKSTREAM_", Settings), ("TRACKSTREAM_TOPIC_", Topics)):
        notes = _comments(cls)
        for name, field in cls.model_fields.items():
            if name == "topics":
                continue
            key = f"topic_{name}" if cls is Topics else name
            if not any(key == w or (w.endswith("*") and key.startswith(w[:-1])) for w in wanted):
                continue
            default = field.get_default(call_default_factory=True)
            shown = ",".join(map(str, default)) if isinstance(default, list) else default
            rows.append((prefix + name.upper(), "" if shown is None else str(shown), notes.get(name, "")))
    lines = ["environment variables [default]:"]
    for env, default, note in rows:
        shown = default if len(default) <= 40 else default[:37] + "..."
        lines.append(f"  {env} [{shown}]")
        lines += textwrap.wrap(note, 96, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


def _fail(command: str, message: str, secrets: Iterable[str] = ()) -> NoReturn:
    """Stop with one line on stderr (no traceback), secrets masked."""
    for secret in secrets:
        message = message.replace(secret, logs.MASK)
    sys.exit(f"trackstream {command}: {' '.join(message.split())}")


def _settings(command: str) -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            where = "_".join(str(p) for p in e["loc"]).upper()
            msg = e["msg"].removeprefix("Value error, ")
            value = e.get("input")
            named = f"TRACKSTREAM_{where}={value!r}: " if where and not isinstance(value, dict) else ""
            problems.append(named + msg)
        _fail(command, "invalid configuration: " + "; ".join(problems))


def _reach(variable: str, value: str, host: str, port: int, timeout: float = 3.0) -> str | None:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"cannot reach {variable}={value} ({host}:{port}: {exc.strerror or type(exc).__name__})"
    return None


def preflight(settings: Settings) -> list[str]:
    """Kafka mode: every service answers a TCP connection (3 s each), so an unreachable one stops
    start-up at once with one line naming its variable instead of clients retrying for minutes."""
    if settings.mode is not Mode.KAFKA:
        return []
    problems: list[str] = []
    assert settings.kafka_bootstrap and settings.clickhouse_url and settings.s3_endpoint
    brokers = [b.strip() for b in settings.kafka_bootstrap.split(",") if b.strip()]
    kafka = []
    for broker in brokers:
        host, _, port = broker.rpartition(":")
        if not host or not port.isdigit():
            problems.append(f"TRACKSTREAM_KAFKA_BOOTSTRAP={settings.kafka_bootstrap}: {broker!r} is not host:port")
            continue
        kafka.append(_reach("TRACKSTREAM_KAFKA_BOOTSTRAP", settings.kafka_bootstrap, host.strip("[]"), int(port)))
    if kafka and all(kafka):  # one reachable broker is enough to start
        problems.append(next(p for p in kafka if p))
    ch = urlsplit(settings.clickhouse_url)
    ch_port = ch.port or (9440 if ch.scheme == "clickhouses" else 9000)
    shown = ch._replace(netloc=ch.netloc.rsplit("@", 1)[-1]).geturl()
    problems.append(_reach("TRACKSTREAM_CLICKHOUSE_URL", shown, ch.hostname or "", ch_port) or "")
    s3 = urlsplit(settings.s3_endpoint)
    s3_port = s3.port or (443 if s3.scheme == "https" else 80)
    problems.append(_reach("TRACKSTREAM_S3_ENDPOINT", settings.s3_endpoint, s3.hostname or "", s3_port) or "")
    return [p for p in problems if p]


def check_port(host: str, port: int) -> str | None:
    """Whether the gateway can listen on host:port (checked before saying "serving on")."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"TRACKSTREAM_HOST={host}: {exc.strerror or exc}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            return f"TRACKSTREAM_PORT={port} on TRACKSTREAM_HOST={host} cannot be used ({exc.strerror or exc})"
    return None


def _startup_error(exc: BaseException, settings: Settings) -> str:
    """A failure while building the runtime, as one line naming the setting it most likely concerns."""
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ConfigurationError) else str(exc)
    if settings.mode is Mode.EMBEDDED:
        return f"cannot open the embedded store in TRACKSTREAM_DATA_DIR={settings.data_dir} ({text})"
    return f"start-up failed ({text})"


def _configure_logging(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_format, settings.secrets())


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


def _build_gateway(settings: Settings) -> Starlette:
    from ingest.limits import HeadTimeoutProtocol
    from trackstream.assembly import gateway

    HeadTimeoutProtocol.head_timeout = settings.request_read_timeout  # this worker's connections
    try:
        app = gateway(settings).app
    except Exception as exc:
        _fail("serve", _startup_error(exc, settings), settings.secrets())
    _settle_heap()
    return app


def gateway_app() -> Starlette:
    """uvicorn's app factory (several workers): each worker process builds its own runtime from the
    environment and sets up its own logging (a spawned process inherits no handlers)."""
    settings = _settings("serve")
    _configure_logging(settings)
    return _build_gateway(settings)


def serve(settings: Settings) -> None:
    import uvicorn

    from ingest.limits import HeadTimeoutProtocol

    if problem := check_port(settings.host, settings.port):
        _fail("serve", problem)
    if problems := preflight(settings):
        _fail("serve", "; ".join(problems), settings.secrets())
    app: Starlette | str = "trackstream.cli:gateway_app"
    multiproc_dir = None
    if settings.workers > 1:
        from trackstream.metrics import MULTIPROC_ENV

        if not os.environ.get(MULTIPROC_ENV):
            # every worker writes its samples here; /metrics adds them up (trackstream/metrics.py)
            multiproc_dir = os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="trackstream-metrics-")
    else:
        app = _build_gateway(settings)  # one process: build here, so a failure is one line before "serving on"
    url = f"http://{settings.host}:{settings.port}"
    print(
        f"trackstream ({settings.mode.value}, {settings.workers} worker(s)) serving on {url}\n"
        f"  export MLFLOW_TRACKING_URI={url}",
        flush=True,
    )
    try:
        uvicorn.run(
            app,
            factory=isinstance(app, str),
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_config=None,  # trackstream.logs configured the root logger (each worker does it too)
            log_level=settings.log_level.lower(),
            access_log=False,  # ingest.observability writes the access log, with request ids
            # Idle and slow connections: a kept-alive connection closes after timeout_keep_alive idle seconds;
            # HeadTimeoutProtocol also closes a new one whose request head is not in within request_read_timeout
            # (uvicorn alone waits forever), and ingest.limits.BodyLimit times out a stalled body.
            http=HeadTimeoutProtocol,
            timeout_keep_alive=settings.timeout_keep_alive,
        )
    finally:
        if multiproc_dir is not None:
            shutil.rmtree(multiproc_dir, ignore_errors=True)


def consume(settings: Settings, sink: str) -> None:
    from consumers.pipeline import WorkerFailed
    from trackstream.assembly import worker
    from trackstream.probes import ProbeServer

    if settings.mode is not Mode.KAFKA:
        _fail("consume", "needs TRACKSTREAM_MODE=kafka (embedded mode consumes inside 'serve')")
    if settings.metrics_port and (problem := check_port(settings.metrics_host, settings.metrics_port)):
        _fail(
            "consume", problem.replace("TRACKSTREAM_PORT", "TRACKSTREAM_METRICS_PORT").replace("_HOST", "_METRICS_HOST")
        )
    if problems := preflight(settings):
        _fail("consume", "; ".join(problems), settings.secrets())
    try:
        w = worker(settings, sink)
    except Exception as exc:
        _fail("consume", _startup_error(exc, settings), settings.secrets())
    runtime, pipe = w.runtime, w.pipeline
    runtime.track(pipe)
    probes = None
    if settings.metrics_port:
        probes = ProbeServer(settings.metrics_host, settings.metrics_port, runtime, pipe)
        probes.start()
    signal.signal(signal.SIGTERM, lambda *_: pipe.stop())
    signal.signal(signal.SIGINT, lambda *_: pipe.stop())
    where = f"; metrics and probes on :{settings.metrics_port}" if probes else ""
    print(f"trackstream consume {sink}: group {runtime.group(sink)} on {runtime.topic(sink)}{where}", flush=True)
    _settle_heap()
    try:
        pipe.run()
    except WorkerFailed as exc:
        # Loudly: a supervisor restarts the process; the group rebalances the partitions meanwhile.
        _fail("consume", str(exc), settings.secrets())
    finally:
        if probes is not None:
            probes.close()
        w.close()


def _confirm(question: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        return False
    answer = input(f"{question} [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def replay(settings: Settings, database: str | None, yes: bool) -> None:
    from trackstream.replay import ReplayError, run_replay

    if settings.mode is not Mode.KAFKA:
        _fail(
            "replay",
            "needs TRACKSTREAM_MODE=kafka; embedded mode's in-process log keeps no history to replay",
        )
    if database is None and not _confirm(
        "This truncates every table of the configured database and rebuilds it from the log; "
        "readers see missing data until it finishes. Go on?",
        yes,
    ):
        _fail("replay", "not confirmed; pass --yes to truncate and replay (or --database NAME to replay aside)")
    if problems := preflight(settings):
        _fail("replay", "; ".join(problems), settings.secrets())
    try:
        result = run_replay(settings, database)
    except ReplayError as exc:
        _fail("replay", str(exc), settings.secrets())
    except Exception as exc:
        _fail("replay", _startup_error(exc, settings), settings.secrets())
    where = database or "the configured database"
    print(f"trackstream replay: {result.events} events replayed into {where} in {result.seconds:.1f}s", flush=True)


def purge(settings: Settings, older_than: str, run_ids: list[str], experiment_ids: list[str], yes: bool) -> None:
    from trackstream.purge import PurgeError, parse_age, run_gc
    from trackstream.runtime import build

    try:
        age = parse_age(older_than)
    except ValueError as exc:
        _fail("gc", str(exc))
    if not _confirm(
        f"This permanently deletes runs and experiments deleted more than {older_than} ago "
        "(their rows and artifacts). Go on?",
        yes,
    ):
        _fail("gc", "not confirmed; pass --yes to purge")
    if problems := preflight(settings):
        _fail("gc", "; ".join(problems), settings.secrets())
    if settings.mode is Mode.EMBEDDED and check_port(settings.host, settings.port):
        # chDB's directory opens in one process at a time: a second one would wait for the gateway to exit
        _fail(
            "gc",
            f"something listens on TRACKSTREAM_PORT={settings.port} (a running gateway owns "
            f"TRACKSTREAM_DATA_DIR={settings.data_dir}); stop it first",
        )
    try:
        runtime = build(settings)
    except Exception as exc:
        _fail("gc", _startup_error(exc, settings), settings.secrets())
    try:
        result = run_gc(runtime.tables, runtime.objects, age, run_ids, experiment_ids)
    except PurgeError as exc:
        _fail("gc", str(exc), settings.secrets())
    finally:
        runtime.close()
    print(
        f"trackstream gc: purged {len(result.runs)} run(s), {len(result.experiments)} experiment(s), "
        f"{result.objects} artifact object(s)",
        flush=True,
    )


def probe(settings: Settings, which: str) -> None:
    """GET this container's own /health/<which> (the gateway's port, or a sink worker's metrics port):
    the Dockerfile's HEALTHCHECK and compose's, without curl in the image."""
    import urllib.error
    import urllib.request

    port = settings.metrics_port or settings.port
    url = f"http://127.0.0.1:{port}/health/{which}"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            print(answer.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        _fail("probe", f"{url}: {exc.code} {exc.read().decode(errors='replace')}")
    except OSError as exc:
        _fail("probe", f"{url}: {exc}")


def run_sql(settings: Settings, statement: str, fmt: str) -> None:
    """Embedded mode: the running gateway answers (trackstream/sql.py); Kafka mode: the ClickHouse server."""
    import urllib.error
    import urllib.parse
    import urllib.request

    if settings.mode is Mode.KAFKA:
        from trackstream.tables.clickhouse import ClickHouseStore

        assert settings.clickhouse_url
        try:
            for row in ClickHouseStore(settings.clickhouse_url).query(statement):
                print("\t".join(map(str, row)))
        except Exception as exc:
            _fail("sql", f"{type(exc).__name__}: {exc}", settings.secrets())
        return
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    url = f"http://{host}:{settings.port}/trackstream/sql?" + urllib.parse.urlencode({"format": fmt})
    request = urllib.request.Request(url, statement.encode(), {"Content-Type": "application/sql"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=300) as answer:
            sys.stdout.write(answer.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        _fail("sql", f"{exc.code}: {exc.read().decode(errors='replace')}")
    except OSError as exc:
        _fail("sql", f"no gateway answers on {url} ({exc}); start it with `trackstream serve`")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trackstream", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('trackstream')}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, summary: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=settings_help(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    add("serve", "run the gateway (embedded mode: with its consumers, in one process)")
    c = add("consume", "run one sink worker (Kafka mode)")
    c.add_argument("sink", choices=registry.NAMES)
    add("migrate", "create topics and tables")
    r = add("replay", "rebuild the ClickHouse tables from the topics (Kafka mode)")
    r.add_argument(
        "--database",
        help="replay into this (new) database and leave the configured one intact; "
        "default: truncate the configured database's tables and replay into them (asks first)",
    )
    r.add_argument("--yes", action="store_true", help="do not ask before truncating (for scripts)")
    g = add(
        "gc",
        "permanently delete runs and experiments deleted more than --older-than ago: their rows and "
        "artifacts (as `mlflow gc` does for the stock server)",
    )
    g.add_argument(
        "--older-than",
        default="0s",
        help="only what was deleted at least this long ago, e.g. 30d, 12h, 1d2h30m (default 0s: everything deleted)",
    )
    g.add_argument("--run-ids", default="", help="comma-separated: only these runs (each must be deleted)")
    g.add_argument(
        "--experiment-ids", default="", help="comma-separated: only these experiments (each must be deleted)"
    )
    g.add_argument("--yes", action="store_true", help="do not ask (for scripts)")
    p = add(
        "probe", "ask this host's gateway (or sink worker, with TRACKSTREAM_METRICS_PORT) whether it is live or ready"
    )
    p.add_argument("which", choices=("live", "ready"))
    q = add(
        "sql",
        "run one read-only SQL statement on the tables (embedded mode: through the running gateway, which owns "
        "the chDB directory; Kafka mode: on the ClickHouse server)",
    )
    q.add_argument("statement")
    q.add_argument("--format", default="PrettyCompact", help="ClickHouse output format (embedded mode)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    settings = _settings(args.command)
    _configure_logging(settings)
    commands: dict[str, Callable[[], Any]] = {
        "serve": lambda: serve(settings),
        "consume": lambda: consume(settings, args.sink),
        "migrate": lambda: _migrate(settings),
        "replay": lambda: replay(settings, args.database, args.yes),
        "probe": lambda: probe(settings, args.which),
        "sql": lambda: run_sql(settings, args.statement, args.format),
        "gc": lambda: purge(settings, args.older_than, _ids(args.run_ids), _ids(args.experiment_ids), args.yes),
    }
    try:
        commands[args.command]()
    except ConfigurationError as exc:
        _fail(args.command, str(exc), settings.secrets())


def _ids(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _migrate(settings: Settings) -> None:
    from trackstream.runtime import build

    if problems := preflight(settings):
        _fail("migrate", "; ".join(problems), settings.secrets())
    try:
        build(settings).close()
    except Exception as exc:
        _fail("migrate", _startup_error(exc, settings), settings.secrets())


if __name__ == "__main__":
    main()
