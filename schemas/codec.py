"""Avro single-object encoding of events (fastavro).

Every message starts with the two marker bytes ``C3 01`` and the schema's 64-bit Rabin fingerprint
(the Avro spec's single-object encoding), so a message names the exact schema version that wrote it.
Decoding resolves that writer schema to the newest reader schema of the same family, so consumers
read old and new versions side by side, and gives the typed event (``schemas/events.py``).

A message written with a schema *newer* than any this process knows (a gateway upgraded before its
consumers) is not invalid: :func:`decode` raises :class:`NewerSchema` when the message's ``schema``
header names a later version of a known family, and the consumer waits for its upgrade instead of
dead-lettering it (docs/DESIGN.md, "Rolling upgrades").
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, overload

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas import events
from schemas.events import ARTIFACT, METADATA, METRICS, REGISTRY, TRACE, Event

__all__ = [
    "ARTIFACT", "AVRO_DIR", "METADATA", "METRICS", "REGISTRY", "TRACE",
    "Codec", "Decoded", "InvalidMessage", "NewerSchema",
]  # fmt: skip

AVRO_DIR = Path(__file__).parent / "avro"
MARKER = b"\xc3\x01"
HEADER = "schema"
_FILE = re.compile(r"^(?P<family>[a-z_]+)\.v(?P<version>\d+)\.avsc$")
_HEADER = re.compile(rb"^(?P<family>[a-z_]+)\.v(?P<version>\d+)$")
# Families whose record wraps a union of event records in this field (metadata: one topic, many kinds).
WRAPPED = {METADATA: "event", REGISTRY: "event", TRACE: "event"}  # families with several kinds on one topic


class InvalidMessage(Exception):
    """A payload that no known schema can decode."""


class NewerSchema(Exception):
    """A payload written with a later version of a known family than this process knows: not invalid,
    just ahead of this consumer (retry it after the upgrade; never dead-letter it)."""

    def __init__(self, family: str, version: int, known: int) -> None:
        super().__init__(
            f"message written with {family}.v{version}, newer than this process's {family}.v{known}: "
            "upgrade this consumer (the message is kept in the log, uncommitted)"
        )
        self.family = family
        self.version = version


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    family: str
    version: int
    schema: Any  # fastavro parsed schema
    fingerprint: bytes


@dataclass(frozen=True, slots=True)
class Decoded:
    family: str
    version: int
    record: dict[str, Any]  # the resolved Avro record (as the newest reader schema has it)
    event: Event  # the typed event


def _fingerprint(parsed: Any) -> bytes:
    value = int(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"), 16)
    return value.to_bytes(8, "little")


class Codec:
    """The schema versions under ``directories`` and the event classes they decode into.

    Production code uses the module-level functions (one codec of ``avro/`` and ``schemas.events``);
    tests build others, e.g. one that also knows a next release's schema.
    """

    def __init__(self, directories: Sequence[Path] = (AVRO_DIR,), types: Mapping[str, type] = events.TYPES) -> None:
        self._dirs = tuple(directories)
        self._types = types

    @cached_property
    def registry(self) -> dict[str, list[SchemaVersion]]:
        """Every schema version, oldest first, by family."""
        found: dict[str, list[SchemaVersion]] = {}
        for path in sorted(p for d in self._dirs for p in d.glob("*.avsc")):
            m = _FILE.match(path.name)
            if not m:
                raise ValueError(f"schema file {path.name} is not named <family>.v<N>.avsc")
            parsed = parse_schema(json.loads(path.read_text()), _write_hint=False)
            found.setdefault(m["family"], []).append(
                SchemaVersion(m["family"], int(m["version"]), parsed, _fingerprint(parsed))
            )
        for versions in found.values():
            versions.sort(key=lambda v: v.version)
        return found

    @cached_property
    def _by_fingerprint(self) -> dict[bytes, SchemaVersion]:
        return {v.fingerprint: v for versions in self.registry.values() for v in versions}

    @cached_property
    def _headers(self) -> dict[str, tuple[str, bytes]]:
        return {f: (HEADER, f"{f}.v{v[-1].version}".encode()) for f, v in self.registry.items()}

    def latest(self, family: str) -> SchemaVersion:
        return self.registry[family][-1]

    def version_of(self, family: str, number: int) -> SchemaVersion:
        for v in self.registry[family]:
            if v.version == number:
                return v
        raise KeyError(f"no schema {family}.v{number}")

    def header(self, family: str) -> tuple[str, bytes]:
        """The Kafka header ``schema`` naming the family and version (``metadata.v3``): it lets an older
        consumer tell a newer writer schema from a corrupt message."""
        return self._headers[family]

    def encode_event(self, event: Event) -> bytes:
        """Encode a typed event with the newest schema of its family."""
        record = events.to_dict(event)
        family = event.FAMILY
        if (field := WRAPPED.get(family)) is not None:
            record = {field: (event.RECORD, record)}
        return _encode(self.latest(family), record)

    def encode_record(self, family: str, record: dict[str, Any], version: int | None = None) -> bytes:
        """Encode an Avro record dict with the newest schema of ``family`` (or an older ``version``, as an
        old producer would)."""
        version_ = self.latest(family) if version is None else self.version_of(family, version)
        return _encode(version_, record)

    def decode(self, payload: bytes, headers: Iterable[tuple[str, bytes]] = ()) -> Decoded:
        """Decode to the typed event. Raises :class:`NewerSchema` when the fingerprint is unknown and
        ``headers`` name a later version of a known family, :class:`InvalidMessage` otherwise."""
        if payload[:2] != MARKER or len(payload) < 10:
            raise InvalidMessage("not an Avro single-object encoded message")
        writer = self._by_fingerprint.get(payload[2:10])
        if writer is None:
            self._raise_if_newer(headers)
            raise InvalidMessage(f"unknown schema fingerprint {payload[2:10].hex()}")
        reader = self.latest(writer.family)
        try:
            record = schemaless_reader(
                io.BytesIO(payload[10:]),
                writer.schema,
                reader.schema if reader is not writer else None,
                return_record_name=True,  # unions of records decode as (name, record)
                return_record_name_override=True,
            )
        except Exception as exc:  # fastavro raises several types for corrupt bodies
            raise InvalidMessage(f"corrupt {writer.family}.v{writer.version} body: {exc}") from exc
        if not isinstance(record, dict):
            raise InvalidMessage("decoded record is not a record")
        return Decoded(writer.family, writer.version, record, self._typed(writer.family, record))

    def _typed(self, family: str, record: dict[str, Any]) -> Event:
        if (field := WRAPPED.get(family)) is not None:
            name, record = record[field]
        else:
            name = self.latest(family).schema["name"]  # the full name, e.g. trackstream.MetricBatch
        cls = self._types.get(name)
        if cls is None:
            raise InvalidMessage(f"no event class for the {family} record {name}")
        try:
            event: Event = events.from_dict(cls, record)
        except (TypeError, KeyError) as exc:
            raise InvalidMessage(f"{name} does not match its event class: {exc}") from exc
        return event

    def _raise_if_newer(self, headers: Iterable[tuple[str, bytes]]) -> None:
        for name, value in headers:
            if name == HEADER and (m := _HEADER.match(value)):
                family = m["family"].decode()
                if family in self.registry and int(m["version"]) > self.latest(family).version:
                    raise NewerSchema(family, int(m["version"]), self.latest(family).version)


def _encode(version: SchemaVersion, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    buf.write(MARKER)
    buf.write(version.fingerprint)
    schemaless_writer(buf, version.schema, record)
    return buf.getvalue()


DEFAULT = Codec()


def registry() -> dict[str, list[SchemaVersion]]:
    return DEFAULT.registry


def latest(family: str) -> SchemaVersion:
    return DEFAULT.latest(family)


def version_of(family: str, number: int) -> SchemaVersion:
    return DEFAULT.version_of(family, number)


def header(family: str) -> tuple[str, bytes]:
    return DEFAULT.header(family)


@overload
def encode(event: Event) -> bytes: ...
@overload
def encode(event: str, record: dict[str, Any], version: int | None = None) -> bytes: ...
def encode(event: Event | str, record: dict[str, Any] | None = None, version: int | None = None) -> bytes:
    """``encode(event)``: a typed event with its family's newest schema. ``encode(family, record,
    version)``: an Avro record dict (tests use it to write as an old producer would)."""
    if isinstance(event, str):
        assert record is not None
        return DEFAULT.encode_record(event, record, version)
    return DEFAULT.encode_event(event)


def decode(payload: bytes, headers: Iterable[tuple[str, bytes]] = ()) -> Decoded:
    return DEFAULT.decode(payload, headers)
