"""Every endpoint of every table declares its access (fail closed: an undeclared one is admin-only)."""

from __future__ import annotations

from typing import Any

from ingest.app import NOT_IMPLEMENTED
from ingest.auth import handlers as auth_handlers
from ingest.auth.access import ADMIN, EDIT, MANAGE, ON_EXPERIMENT, READ, Access
from ingest.auth.guard import Guard
from ingest.auth.view import AuthView
from ingest.endpoint import Endpoint
from ingest.handlers import ENDPOINTS
from ingest.ui import ui_routes
from trackstream.log.memory import MemoryLog


def _ui_endpoints() -> list[Endpoint]:
    seen: list[Endpoint] = []

    def collect(endpoints: list[Endpoint]) -> list[Any]:
        seen.extend(endpoints)
        return []

    ui_routes(None, collect)  # type: ignore[arg-type]
    return seen


ALL = [*ENDPOINTS, *auth_handlers.ENDPOINTS, *NOT_IMPLEMENTED, *_ui_endpoints()]


def test_every_endpoint_declares_its_access() -> None:
    undeclared = [(e.path, e.methods) for e in ALL if e.access is None]
    assert undeclared == []
    assert len(ALL) > 60


def test_writes_need_more_than_read_and_deletes_manage() -> None:
    for e in ALL:
        assert e.access is not None
        if e.access.kind not in ON_EXPERIMENT:
            continue
        reads_only = e.methods == ("GET",) or e.path.endswith(
            ("/search", "/search-datasets", "/traces/metrics", "/traces/batchGetInfos")
        )
        deletes = "DELETE" in e.methods or e.path.endswith(("/delete", "/restore", "/delete-traces"))
        if "/permissions/" in e.path:  # managing permissions is MANAGE, reading them too (stock)
            assert e.access.level == MANAGE, e.path
        elif reads_only:
            assert e.access.level == READ, e.path
        elif deletes and "tag" not in e.path and "/assessments/" not in e.path:
            # deleting a tag is an edit, and so is deleting a trace's assessment (the stock app's fallback)
            assert e.access.level == MANAGE, e.path
        else:
            assert e.access.level == EDIT, e.path
        for extra in e.access.also:  # linking traces to a run also reads each trace
            assert extra.level == READ, e.path


def test_an_undeclared_endpoint_is_refused_to_everyone_but_admins() -> None:
    log = MemoryLog()
    log.ensure_topics(["auth"], 1)
    view = AuthView(log, "auth")
    view.start()
    try:
        from ingest.auth.guard import CALLER
        from schemas.events import AuthChange

        view.write(AuthChange(op="create_user", username="u", password_hash="x", is_admin=False, time=1))
        view.write(AuthChange(op="create_user", username="root", password_hash="x", is_admin=True, time=2))
        guard = Guard(view)
        for name, allowed in (("u", False), ("root", True)):
            token = CALLER.set(name)
            try:
                for access in (None, Access(ADMIN)):
                    try:
                        guard.authorize(None, access, {})
                        assert allowed
                    except Exception as exc:
                        assert not allowed and getattr(exc, "error_code", "") == "PERMISSION_DENIED"
            finally:
                CALLER.reset(token)
    finally:
        view.close()
