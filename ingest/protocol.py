"""Request bodies of the hot write endpoints, checked by pydantic once orjson has parsed them.

Types are permissive on purpose (MLflow clients send int64 as numbers or strings, NaN/±inf as
strings): MLflow's own rules in ``validation`` then decide and word the errors.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

from ingest.requests import Int64, Str, WrongType

Scalar = str | int | float | None


def _number(value: Any) -> Any:
    """A proto double: a JSON number or a string (``"NaN"``, ``"Infinity"``, ``"1.5"``); ``validation`` decides
    which strings are numbers, with MLflow's message."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise WrongType("not a number")
    return value


Double = Annotated[int | float | str, BeforeValidator(_number)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class KeyValue(_Body):
    key: str | None = None
    value: Scalar = None


class LogMetric(_Body):
    """One point: every field checked by type and range here (MLflow's BIGINT bounds for timestamp and step)."""

    run_id: Str | None = None
    run_uuid: Str | None = None
    key: Str | None = None
    value: Double | None = None
    timestamp: Int64 | None = None
    step: Int64 | None = None
    model_id: Str | None = None
    dataset_name: Str | None = None
    dataset_digest: Str | None = None


class LogBatch(_Body):
    """Metric points stay as parsed: building a model per point, or even checking each is a dict, cost
    more than the rest of the request; ``ingest.handlers.metrics.metric_columns`` checks them column by column."""

    run_id: str | None = None
    metrics: list[Any] = []
    params: list[KeyValue] = []
    tags: list[KeyValue] = []
