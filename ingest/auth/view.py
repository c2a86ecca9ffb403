"""Users, tokens and permissions: an in-memory view of the ``auth`` topic, the same on every gateway.

Every change is an ``AuthChange`` event with the one constant key ``auth``, so all changes are in one
partition, in one order. Each gateway follows that topic from its first record on a thread and applies
each change by the same rules (:meth:`AuthView.apply`), so every replica reaches the same state and
makes the same decisions: of two creates of one user name, the one earlier in the log wins and the later
is refused, wherever each was sent (docs/DESIGN.md, "Decided events"; here the deciding is done by every
view alike instead of a sink, as the rules need nothing but the view's own state). A request that wrote
a change waits until its own gateway's view applied it and answers that change's outcome.

A permission check is a dict read: it needs neither the store nor the log. The topic is the only copy
(Kafka mode: created to keep its records forever; embedded mode: no group reads it, so the durable log
keeps it whole) and a starting gateway reads it whole before it serves.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ingest.auth.access import LEVELS
from ingest.errors import MlflowError, not_found, unavailable
from schemas import codec
from schemas.events import AUTH, AUTH_KEY, AuthChange
from trackstream.log import EventLog, LogTail, LogUnavailable

log = logging.getLogger(__name__)

TAIL_POLL_SECONDS = 0.2
TAIL_MAX_RECORDS = 5_000
OUTCOMES_KEPT = 10_000
_LENGTH = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    password_hash: str
    is_admin: bool

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "username": self.username, "is_admin": self.is_admin}


@dataclass(frozen=True, slots=True)
class Token:
    token_id: str
    username: str
    digest: str
    expires_ms: int | None
    created_ms: int

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"token_id": self.token_id, "username": self.username, "created_at": self.created_ms}
        if self.expires_ms is not None:
            out["expires_at"] = self.expires_ms
        return out


def _label(resource_type: str) -> tuple[str, str]:
    """How MLflow's messages name a permission on this resource type: (noun, id field)."""
    return ("Experiment", "experiment_id") if resource_type == "experiment" else ("Registered model", "name")


class AuthView:
    def __init__(self, events: EventLog, topic: str, timeout: float = 10.0) -> None:
        self._events = events
        self._topic = topic
        self._timeout = timeout
        self.users: dict[str, User] = {}
        self.tokens: dict[str, Token] = {}
        # (resource type, resource id) -> {username: permission}
        self.permissions: dict[tuple[str, str], dict[str, str]] = {}
        # username -> resource types it holds explicit permissions on (a check without any skips resolving)
        self._explicit: dict[str, dict[str, int]] = {}
        self._next_id = 1
        self._applied: dict[int, int] = {}  # partition -> next offset to apply
        self._outcomes: OrderedDict[tuple[int, int], MlflowError | None] = OrderedDict()
        self._cond = threading.Condition()
        self._tail: LogTail | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: str | None = None
        self.applied = 0  # changes applied

    # -- lookups (request path: dict reads) --
    def user(self, username: str) -> User | None:
        return self.users.get(username)

    def permission(self, resource_type: str, resource_id: str, username: str) -> str | None:
        held = self.permissions.get((resource_type, resource_id))
        return None if held is None else held.get(username)

    def has_explicit(self, username: str, resource_type: str) -> bool:
        return bool(self._explicit.get(username, {}).get(resource_type))

    def tokens_of(self, username: str) -> list[Token]:
        with self._cond:
            return [t for t in self.tokens.values() if t.username == username]

    def healthy(self) -> bool:
        return self.error is None

    # -- the rules, applied in log order --
    def apply(self, c: AuthChange) -> MlflowError | None:
        """Apply one change; return why it was refused (then nothing changed), or None."""
        user = self.users.get(c.username)
        missing = not_found(f"User with username={c.username} not found")
        if c.op == "create_user":
            if user is not None:
                return MlflowError(f"User (username={c.username}) already exists.", "RESOURCE_ALREADY_EXISTS")
            self.users[c.username] = User(self._next_id, c.username, c.password_hash or "", bool(c.is_admin))
            self._next_id += 1
            return None
        if user is None:
            return missing
        if c.op == "update_password":
            self.users[c.username] = User(user.id, user.username, c.password_hash or "", user.is_admin)
        elif c.op == "update_admin":
            self.users[c.username] = User(user.id, user.username, user.password_hash, bool(c.is_admin))
        elif c.op == "delete_user":
            del self.users[c.username]
            for key in [k for k, held in self.permissions.items() if c.username in held]:
                self._drop(key, c.username)
            for token_id in [t.token_id for t in self.tokens.values() if t.username == c.username]:
                del self.tokens[token_id]
        elif c.op in ("create_permission", "update_permission", "delete_permission", "grant"):
            return self._permission(c)
        elif c.op == "create_token":
            assert c.token_id and c.token_hash
            self.tokens[c.token_id] = Token(c.token_id, c.username, c.token_hash, c.expires_ms, c.time)
        elif c.op == "delete_token":
            token = self.tokens.get(c.token_id or "")
            if token is None or token.username != c.username:
                return not_found(f"Token with token_id={c.token_id} not found")
            del self.tokens[token.token_id]
        elif c.op in ("delete_resource", "rename_resource"):
            key = (c.resource_type or "", c.resource_id or "")
            for username, permission in list(self.permissions.get(key, {}).items()):
                self._drop(key, username)
                if c.op == "rename_resource" and c.new_resource_id:
                    self._set((key[0], c.new_resource_id), username, permission)
        else:
            return MlflowError(f"unknown auth change {c.op!r}", "INVALID_STATE")
        return None

    def _permission(self, c: AuthChange) -> MlflowError | None:
        rtype, rid = c.resource_type or "", c.resource_id or ""
        noun, field = _label(rtype)
        key = (rtype, rid)
        held = self.permissions.get(key, {}).get(c.username)
        if c.op == "create_permission" and held is not None:
            return MlflowError(
                f"{noun} permission ({field}={rid}, username={c.username}) already exists.", "RESOURCE_ALREADY_EXISTS"
            )
        if c.op in ("update_permission", "delete_permission") and held is None:
            return not_found(f"{noun} permission with {field}={rid} and username={c.username} not found")
        if c.op == "delete_permission":
            self._drop(key, c.username)
            return None
        if c.permission not in LEVELS:
            return MlflowError(f"Invalid permission '{c.permission}'", "INVALID_PARAMETER_VALUE")
        self._set(key, c.username, str(c.permission))
        return None

    def _set(self, key: tuple[str, str], username: str, permission: str) -> None:
        held = self.permissions.setdefault(key, {})
        if username not in held:
            counts = self._explicit.setdefault(username, {})
            counts[key[0]] = counts.get(key[0], 0) + 1
        held[username] = permission

    def _drop(self, key: tuple[str, str], username: str) -> None:
        held = self.permissions.get(key)
        if held is None or held.pop(username, None) is None:
            return
        if not held:
            del self.permissions[key]
        counts = self._explicit.get(username, {})
        counts[key[0]] = counts.get(key[0], 1) - 1

    # -- writing: produce, then wait for this view to apply it --
    def write(self, change: AuthChange) -> None:
        """Log ``change`` and wait until this view applied it; raise its refusal as an MlflowError.
        503 TEMPORARILY_UNAVAILABLE if the log did not acknowledge it, or the view did not apply it
        within the timeout (it is in the log then, and will be applied)."""
        payload = codec.encode(change)
        try:
            index, offset = self._events.produce(self._topic, AUTH_KEY.encode(), payload, (codec.header(AUTH),))
        except LogUnavailable as exc:
            raise unavailable(f"The event log did not acknowledge the change; nothing was changed. {exc}") from exc
        deadline = time.monotonic() + self._timeout
        with self._cond:
            while self._applied.get(index, 0) <= offset:
                remaining = deadline - time.monotonic()
                if self.error is not None:
                    raise unavailable(f"The auth view stopped: {self.error}")
                if remaining <= 0:
                    raise unavailable("The change is in the log but was not applied in time; it will be applied.")
                self._cond.wait(remaining)
            outcome = self._outcomes.get((index, offset))
        if outcome is not None:
            raise outcome

    def catch_up(self, timeout: float | None = None) -> bool:
        """Wait until the view applied everything the log held when called. False: not in time (or the
        log did not answer)."""
        partitions = self._events.partitions(self._topic)
        try:
            ends = self._events.end_offsets(self._topic, list(range(partitions)))
        except LogUnavailable:
            return False
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        with self._cond:
            while any(self._applied.get(p, 0) < end for p, end in ends.items()):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.error is not None:
                    return False
                self._cond.wait(remaining)
        return True

    # -- following the topic --
    def start(self) -> None:
        """Open the tail at the topic's start and follow it on a thread."""
        # where the tail begins: an embedded log starts above its tables' offsets, not at 0
        partitions = list(range(self._events.partitions(self._topic)))
        self._applied = dict(self._events.start_offsets(self._topic, partitions))
        self._tail = self._events.tail(self._topic, from_start=True)
        self._thread = threading.Thread(target=self._follow, name="auth-view", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        assert self._tail is not None
        try:
            while not self._stop.is_set():
                for message in self._tail.poll(TAIL_POLL_SECONDS, TAIL_MAX_RECORDS):
                    try:
                        change = codec.decode(message.value, message.headers).event
                    except codec.InvalidMessage:
                        log.warning("auth view: skipping an undecodable record at offset %d", message.offset)
                        change = None
                    if change is not None and not isinstance(change, AuthChange):
                        change = None
                    with self._cond:
                        outcome = self.apply(change) if change is not None else None
                        self.applied += 1
                        key = (message.partition.index, message.offset)
                        self._outcomes[key] = outcome
                        if len(self._outcomes) > OUTCOMES_KEPT:
                            self._outcomes.popitem(last=False)
                        self._applied[message.partition.index] = message.offset + 1
                        self._cond.notify_all()
        except Exception as exc:  # a dead view must not keep answering from a stale state
            with self._cond:
                self.error = f"auth view stopped: {exc!r}"
                self._cond.notify_all()
            log.exception("auth view: the auth topic's tail stopped; every request answers 503 until restart")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=TAIL_POLL_SECONDS * 5)
        if self._tail is not None:
            self._tail.close()


def import_journal(events: EventLog, topic: str, path: Path) -> int:
    """Move the changes of an auth journal (``<data_dir>/auth/changes.avro``: length-prefixed Avro messages,
    kept by embedded gateways before their log was durable) into the auth topic, once; returns how many.

    Run before the view starts. Records the topic already holds are changes of an import that died before
    renaming the journal: only the rest is produced, so no change is applied twice. A torn last record was
    never acknowledged and is left out. The journal is then renamed ``changes.avro.imported``."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    values: list[bytes] = []
    at = 0
    while at + _LENGTH.size <= len(data):
        (size,) = _LENGTH.unpack_from(data, at)
        if at + _LENGTH.size + size > len(data):
            break
        values.append(data[at + _LENGTH.size : at + _LENGTH.size + size])
        at += _LENGTH.size + size
    partitions = list(range(events.partitions(topic)))
    ends, starts = events.end_offsets(topic, partitions), events.start_offsets(topic, partitions)
    held = sum(ends[p] - starts[p] for p in partitions)
    for value in values[held:]:
        events.produce(topic, AUTH_KEY.encode(), value, (codec.header(AUTH),))
    path.rename(path.with_name(path.name + ".imported"))
    log.info("auth: moved %d changes from %s into the %s topic", len(values) - min(held, len(values)), path, topic)
    return len(values)
