"""Avro single-object encoding of events (fastavro).

Every message starts with the two marker bytes ``C3 01`` and the schema's 64-bit Rabin fingerprint
(the Avro spec's single-object encoding), so a message names the exact schema version that wrote it.
Decoding resolves that writer schema to the newest reader schema of the same family, so consumers
read old and new versions side by side.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

AVRO_DIR = Path(__file__).parent / "avro"
MARKER = b"\xc3\x01"
_FILE = re.compile(r"^(?P<family>[a-z_]+)\.v(?P<version>\d+)\.avsc$")

METRICS = "metric_batch"
METADATA = "metadata"
ARTIFACT = "artifact"


class InvalidMessage(Exception):
    """A payload that no known schema can decode."""


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
    record: dict[str, Any]


def _fingerprint(parsed: Any) -> bytes:
    value = int(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"), 16)
    return value.to_bytes(8, "little")


@cache
def registry() -> dict[str, list[SchemaVersion]]:
    """Every schema version under ``avro/``, oldest first, by family."""
    found: dict[str, list[SchemaVersion]] = {}
    for path in sorted(AVRO_DIR.glob("*.avsc")):
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


@cache
def _by_fingerprint() -> dict[bytes, SchemaVersion]:
    return {v.fingerprint: v for versions in registry().values() for v in versions}


def latest(family: str) -> SchemaVersion:
    return registry()[family][-1]


def version_of(family: str, number: int) -> SchemaVersion:
    for v in registry()[family]:
        if v.version == number:
            return v
    raise KeyError(f"no schema {family}.v{number}")


def encode(family: str, record: dict[str, Any], version: int | None = None) -> bytes:
    """Encode with the newest schema of ``family`` (or an older ``version``, as an old producer would)."""
    version_ = latest(family) if version is None else version_of(family, version)
    return _encode(version_, record)


def _encode(version: SchemaVersion, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    buf.write(MARKER)
    buf.write(version.fingerprint)
    schemaless_writer(buf, version.schema, record)
    return buf.getvalue()


def header(family: str) -> tuple[str, bytes]:
    """Human-readable schema name for the Kafka header ``schema`` (the payload is self-describing)."""
    return ("schema", f"{family}.v{latest(family).version}".encode())


def decode(payload: bytes) -> Decoded:
    if payload[:2] != MARKER or len(payload) < 10:
        raise InvalidMessage("not an Avro single-object encoded message")
    writer = _by_fingerprint().get(payload[2:10])
    if writer is None:
        raise InvalidMessage(f"unknown schema fingerprint {payload[2:10].hex()}")
    reader = latest(writer.family)
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
    return Decoded(writer.family, writer.version, record)
