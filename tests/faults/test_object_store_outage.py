"""Object store (SeaweedFS) stopped under HTTP artifact load: small artifacts, which travel inside the
event, are still acknowledged (the artifact worker pauses until the store returns); large ones, which
the gateway streams to the store first (claim check), get a clear retriable 503. Afterwards every
acknowledged artifact is stored with its bytes and indexed once; nothing refused is visible."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable

import httpx

from tests.conftest import Gateway, SettingsFactory
from tests.faults.conftest import Load, WorkerFactory, local_service, wait_applied
from trackstream.errors import StoreError
from trackstream.settings import Settings

INLINE_MAX = 64 << 10
SMALL, LARGE = 4 << 10, 256 << 10
OUTAGE_SECONDS = 12


def _body(path: str, size: int) -> bytes:
    block = hashlib.sha256(path.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def _first_write(gw: Gateway, root: str) -> float:
    """When the restarted store first took a write (SeaweedFS answers health checks before writes)."""
    deadline = time.monotonic() + 90
    while True:
        try:
            gw.runtime.objects.put(f"{root}-probe", b"probe")
            return time.monotonic()
        except StoreError:
            assert time.monotonic() < deadline, "the object store took no write within 90s of its restart"
            time.sleep(0.2)


def test_object_store_outage_acks_inline_artifacts_and_refuses_claim_checks_clearly(
    fault_settings: SettingsFactory,
    worker_factory: WorkerFactory,
    gateway_factory: Callable[..., Gateway],
) -> None:
    settings: Settings = fault_settings(artifact_inline_max_bytes=INLINE_MAX)
    gw = gateway_factory(settings, consumers=False)
    events, topic, group = gw.runtime.events, settings.topics.artifacts, gw.runtime.group("artifacts")
    worker = worker_factory(settings, "artifacts")
    root = f"0/{uuid.uuid4().hex}/artifacts"
    answers: dict[str, tuple[int, str, str]] = {}  # path -> (status, error_code, kind)
    client = httpx.Client(timeout=60)

    def upload(i: int) -> tuple[str, int]:
        kind = "large" if i % 3 == 2 else "small"
        path = f"{root}/{kind}-{i}.bin"
        try:
            response = client.put(
                f"{gw.url}/api/2.0/mlflow-artifacts/artifacts/{path}",
                content=_body(path, LARGE if kind == "large" else SMALL),
            )
            status = response.status_code
            code = "" if status == 200 else str(response.json().get("error_code"))
        except httpx.HTTPError as exc:
            status, code = 0, type(exc).__name__
        answers[path] = (status, code, kind)
        return kind, status

    try:
        with Load(upload, pause=0.02) as load:
            deadline = time.monotonic() + 60
            while not events.committed(group, topic):
                assert time.monotonic() < deadline, worker.output()
                time.sleep(0.2)
            local_service("stop", "s3")
            down = time.monotonic()
            time.sleep(OUTAGE_SECONDS)
            local_service("start", "s3")
            up = time.monotonic()
            writable = _first_write(gw, root) - up
        wait_applied(events, group, topic, timeout=90)
        recovered = time.monotonic() - up

        assert worker.process.poll() is None, worker.output()
        small = load.between(down + 3, up, "small")  # after the store's own shutdown finished
        large = load.between(down + 3, up, "large")
        assert small and Load.availability(small) == 1.0, "an inline artifact was refused while only S3 was down"
        assert large and all(a.status == 503 for a in large), {a.status for a in large}
        refused = {p for p, (s, _, _) in answers.items() if s != 200}
        assert {answers[p][1] for p in refused} <= {"TEMPORARILY_UNAVAILABLE"}, {answers[p] for p in refused}

        acked = {p for p, (s, _, _) in answers.items() if s == 200}
        rows = gw.runtime.tables.query(
            "SELECT path, count() FROM artifacts FINAL WHERE startsWith(path, %(root)s) AND deleted = 0 GROUP BY path",
            {"root": root + "/"},
        )
        indexed = {str(p): int(n) for p, n in rows}
        assert acked <= set(indexed), f"{len(acked - set(indexed))} acknowledged artifacts are not indexed"
        assert not set(indexed) & refused, "a refused upload is visible"
        assert set(indexed.values()) == {1}
        for path in acked:
            size = LARGE if answers[path][2] == "large" else SMALL
            assert b"".join(gw.runtime.objects.get(path)) == _body(path, size), path
        acked_in_outage = sum(1 for a in load.between(down, up) if a.status == 200)
        print(
            f"\nobject store outage {up - down:.1f}s: small (inline) {sum(a.status == 200 for a in small)}/"
            f"{len(small)} acked ({Load.availability(small):.0%}), large (claim check) "
            f"{sum(a.status == 200 for a in large)}/{len(large)} acked, the rest 503 TEMPORARILY_UNAVAILABLE; "
            f"{acked_in_outage} acked during the outage; the restarted store took its first write {writable:.1f}s "
            f"after it reported healthy, and the worker had applied everything {recovered - writable:.1f}s later; "
            f"acked {len(acked)}, stored {len(acked)}, lost 0"
        )
    finally:
        client.close()
