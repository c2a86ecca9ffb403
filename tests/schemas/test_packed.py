"""The metric batch's doubles are packed by hand (``codec._Packed``): the bytes are exactly fastavro's, a
message fastavro wrote in several blocks reads the same, and a truncated one is an invalid message."""

from __future__ import annotations

import io
import math
import struct
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer

from schemas import codec, events
from schemas.events import METRICS, MetricBatch

LATEST = codec.latest(METRICS)


def _read(body: bytes) -> Any:
    return schemaless_reader(io.BytesIO(body), LATEST.schema, None)


def _fastavro(record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, LATEST.schema, record)
    return codec.MARKER + LATEST.fingerprint + buf.getvalue()


VALUES = [
    [],
    [1.5],
    [math.nan, -0.0, 1.7976931348623157e308, -1.7976931348623157e308, 5e-324, 3.0],
    [i / 7 for i in range(1000)],
]


@pytest.mark.parametrize("values", VALUES, ids=lambda v: f"{len(v)}-values")
def test_packed_bytes_are_fastavros_and_read_back_the_same(values: list[float]) -> None:
    assert LATEST.packed is not None
    n = len(values)
    event = MetricBatch(
        run_id="r" * 32, key_names=["a", "b"], key_index=[i % 2 for i in range(n)], values=values,
        timestamps=[1_764_500_000_000 + i for i in range(n)], steps=[i - 3 for i in range(n)],
        model_ids=["m"] * n if n == 1 else [],
    )  # fmt: skip
    payload = codec.encode(event)
    assert payload == _fastavro(events.to_dict(event))
    decoded = codec.DEFAULT.decode(payload)
    expected = _read(payload[10:])
    assert decoded.record.keys() == expected.keys()
    assert [struct.pack("<d", x) for x in decoded.record["values"]] == [
        struct.pack("<d", x) for x in expected["values"]
    ]
    assert {k: v for k, v in decoded.record.items() if k != "values"} == {
        k: v for k, v in expected.items() if k != "values"
    }
    assert isinstance(decoded.event, MetricBatch)
    assert (decoded.event.run_id, list(decoded.event.steps), list(decoded.event.model_ids)) == (
        event.run_id, list(event.steps), list(event.model_ids),
    )  # fmt: skip


def test_an_array_written_in_several_blocks_reads_whole() -> None:
    # Avro lets a writer split an array into blocks, and give a block's byte size with a negative count
    def long_(n: int) -> bytes:
        return codec._zigzag(n)

    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    body = bytearray()
    body += long_(1) + b"r"  # run_id
    body += b"\x00" * 3  # keys, key_names, key_index: empty
    body += long_(2) + struct.pack("<2d", *values[:2])
    body += long_(-3) + long_(24) + struct.pack("<3d", *values[2:]) + b"\x00"
    body += long_(5) + b"".join(long_(i) for i in range(5)) + b"\x00"  # timestamps
    body += long_(5) + b"".join(long_(-i) for i in range(5)) + b"\x00"  # steps
    body += b"\x00" * 3
    payload = codec.MARKER + LATEST.fingerprint + bytes(body)
    assert _read(bytes(body))["values"] == values
    decoded = codec.DEFAULT.decode(payload)
    assert decoded.record["values"] == values
    assert decoded.record["steps"] == [0, -1, -2, -3, -4]


def test_a_truncated_batch_is_an_invalid_message() -> None:
    payload = codec.encode(MetricBatch(run_id="r", key_names=["a"], key_index=[0] * 10, values=[1.0] * 10,
                                       timestamps=[1] * 10, steps=[0] * 10))  # fmt: skip
    for cut in (12, 20, 40, len(payload) - 60):
        with pytest.raises(codec.InvalidMessage):
            codec.DEFAULT.decode(payload[:cut])


def test_a_record_without_its_defaulted_fields_is_written_as_fastavro_writes_it() -> None:
    record: dict[str, Any] = {"run_id": "r", "values": [1.0, 2.0], "timestamps": [1, 2], "steps": [0, 1]}
    assert codec.encode(METRICS, record) == _fastavro(record)
    assert codec.DEFAULT.decode(codec.encode(METRICS, record)).record["values"] == [1.0, 2.0]
