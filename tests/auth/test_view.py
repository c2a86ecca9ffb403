"""The auth view (unit: the in-process log): rules decided in log order, the examples, a restart on the
embedded mode's durable log, and the import of an auth journal from before that log."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any

from fastavro import json_reader

from ingest.auth.view import AuthView, import_journal
from ingest.errors import MlflowError
from schemas import codec
from schemas.events import AuthChange, from_dict
from trackstream.log.file import FileLog
from trackstream.log.memory import MemoryLog

TOPIC = "auth"


def _view(log: MemoryLog) -> AuthView:
    view = AuthView(log, TOPIC, timeout=10)
    view.start()
    assert view.catch_up(10)
    return view


def _examples() -> list[dict[str, Any]]:
    version = codec.latest("auth")
    path = codec.AVRO_DIR / "examples" / "auth.v1.json"
    lines = "\n".join(json.dumps(r) for r in json.loads(path.read_text()))
    return [r for r in json_reader(io.StringIO(lines), version.schema) if isinstance(r, dict)]


def test_the_examples_are_decided_in_log_order() -> None:
    log = MemoryLog()
    log.ensure_topics([TOPIC], 1)
    for record in _examples():
        log.produce(TOPIC, b"auth", codec.encode(from_dict(AuthChange, record)))
    view = _view(log)
    try:
        assert set(view.users) == {"admin", "alice"}
        assert view.users["admin"].is_admin and not view.users["alice"].is_admin
        assert view.users["alice"].password_hash.endswith("YWxpY2U")  # the first create won, the second was refused
        assert view.permission("experiment", "1", "alice") == "EDIT"
        assert view.tokens["0123456789abcdef"].username == "alice"
    finally:
        view.close()


def test_two_views_of_one_log_agree_and_a_writer_gets_its_own_outcome() -> None:
    log = MemoryLog()
    log.ensure_topics([TOPIC], 2)
    first, second = _view(log), _view(log)
    try:
        first.write(AuthChange(op="create_user", username="u", password_hash="h1", is_admin=False, time=1))
        try:
            second.write(AuthChange(op="create_user", username="u", password_hash="h2", is_admin=False, time=2))
            raise AssertionError("the second create of a name must be refused")
        except MlflowError as exc:
            assert exc.error_code == "RESOURCE_ALREADY_EXISTS"
        assert second.catch_up(10) and first.catch_up(10)
        assert first.users == second.users and first.users["u"].password_hash == "h1"
        second.write(
            AuthChange(
                op="grant", username="u", resource_type="experiment", resource_id="7", permission="MANAGE", time=3
            )
        )
        assert first.catch_up(10) and first.permission("experiment", "7", "u") == "MANAGE"
        first.write(AuthChange(op="delete_user", username="u", time=4))
        assert second.catch_up(10) and second.user("u") is None and second.permission("experiment", "7", "u") is None
    finally:
        first.close()
        second.close()


def _durable(path: Path) -> FileLog:
    log = FileLog(path)
    log.ensure_topics([TOPIC], 1)
    return log


def test_the_embedded_auth_topic_survives_a_restart(tmp_path: Path) -> None:
    view = _view(_durable(tmp_path))
    view.write(AuthChange(op="create_user", username="a", password_hash="h", is_admin=True, time=1))
    view.write(
        AuthChange(
            op="create_permission", username="a", resource_type="experiment", resource_id="1", permission="READ", time=2
        )
    )
    view.close()  # the log is not closed: a process that died keeps what was acknowledged
    again = _view(_durable(tmp_path))
    try:
        assert again.user("a") is not None and again.permission("experiment", "1", "a") == "READ"
        again.write(AuthChange(op="create_user", username="b", password_hash="h", is_admin=False, time=3))
        assert again.user("b") is not None and again.users["b"].id == 2  # ids continue in order
    finally:
        again.close()


def test_an_old_journal_is_moved_into_the_topic_once(tmp_path: Path) -> None:
    changes = [
        AuthChange(op="create_user", username=f"u{i}", password_hash="h", is_admin=False, time=i) for i in range(3)
    ]
    journal = tmp_path / "auth" / "changes.avro"
    journal.parent.mkdir()
    frames = [struct.pack(">I", len(v)) + v for v in (codec.encode(c) for c in changes)]
    journal.write_bytes(b"".join(frames) + b"\x00\x00\x01\x00partial")  # a torn last record: never acknowledged
    log = _durable(tmp_path / "log")
    log.produce(TOPIC, b"auth", codec.encode(changes[0]))  # an import that died before renaming the journal
    assert import_journal(log, TOPIC, journal) == 3
    assert not journal.exists() and journal.with_name("changes.avro.imported").exists()
    assert import_journal(log, TOPIC, journal) == 0  # once
    view = _view(_durable(tmp_path / "log"))  # a new process finds them in the topic
    try:
        assert log.end_offsets(TOPIC, [0]) == {0: 3}  # u0 was not produced twice
        assert [view.users[f"u{i}"].id for i in range(3)] == [1, 2, 3]
    finally:
        view.close()


def test_a_renamed_or_deleted_registered_model_takes_its_permissions_along() -> None:
    log = MemoryLog()
    log.ensure_topics([TOPIC], 1)
    view = _view(log)
    try:
        view.write(AuthChange(op="create_user", username="u", password_hash="h", is_admin=False, time=1))
        rm = "registered_model"
        view.write(AuthChange(op="grant", username="u", resource_type=rm, resource_id="a", permission="MANAGE", time=2))
        view.write(
            AuthChange(
                op="rename_resource", username="u", resource_type=rm, resource_id="a", new_resource_id="b", time=3
            )
        )
        assert view.permission("registered_model", "a", "u") is None
        assert view.permission("registered_model", "b", "u") == "MANAGE"
        view.write(AuthChange(op="delete_resource", username="u", resource_type=rm, resource_id="b", time=4))
        assert view.permission("registered_model", "b", "u") is None
        assert not view.has_explicit("u", "registered_model")
    finally:
        view.close()
