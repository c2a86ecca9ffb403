"""The contract of the ``decisions`` table: what the metadata sink decided for one event.

The sink writes one row per decided event, keyed by the event's log position; the gateway that
produced the event reads it back once the sink committed past that position (docs/DESIGN.md,
"Decided events").
"""

from __future__ import annotations

from dataclasses import dataclass

COLUMNS = ("ok", "error_code", "message", "result")


@dataclass(frozen=True, slots=True)
class Decision:
    ok: bool
    error_code: str = ""  # an MLflow error code when refused, e.g. RESOURCE_ALREADY_EXISTS
    message: str = ""
    result: str = ""  # payload of an accepted decision (e.g. an allocated version number)


ACCEPTED = Decision(True)


def refused(error_code: str, message: str) -> Decision:
    return Decision(False, error_code, message)
